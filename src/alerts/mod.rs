//! Threshold alerts on aggregates and alerts on failed or blocked scaling actions, with
//! firing and resolved messages sent through the webhook sink
//! ([`crate::sinks::webhook::WebhookEvent::alert`]).
//!
//! ```yaml
//! alerts:
//!   rules:
//!     - name: cpu-hot
//!       aggregate: { transform: cpu_util, column: utilization }   # latest window per group
//!       op: ">"
//!       threshold: 0.9
//!       for_secs: 300
//!     - name: queue-depth
//!       sql: "SELECT queue AS key, depth AS value FROM my_view"  # any (key, value) query
//!       op: ">="
//!       threshold: 1000
//!   scaling: { on_failed: true, on_blocked: true }
//! ```
//!
//! Evaluation is a pure function of `(time, values)` ([`AlertEngine::evaluate`]): the caller
//! runs each rule's [`AlertRule::sql`] periodically and passes the rows with the time of
//! evaluation. Semantics follow Prometheus: a key whose value meets the condition is
//! *pending*; after `for_secs` of uninterrupted pending it *fires* (one message); when the
//! condition stops holding, or the key disappears, a firing alert *resolves* (one
//! message). Non-finite values never meet a condition.
//!
//! Scaling alerts ([`AlertEngine::observe_action`]): a failed (and, optionally, blocked)
//! action fires `scaling-failed` / `scaling-blocked` for its target; the next successful
//! action of the target resolves it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actuators::{ActionRecord, ActionResult};
use crate::recommend::limits::secs;

/// Comparison of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `value > threshold`.
    #[serde(rename = ">")]
    Gt,
    /// `value >= threshold`.
    #[serde(rename = ">=")]
    Ge,
    /// `value < threshold`.
    #[serde(rename = "<")]
    Lt,
    /// `value <= threshold`.
    #[serde(rename = "<=")]
    Le,
    /// `value == threshold`.
    #[serde(rename = "==")]
    Eq,
    /// `value != threshold`.
    #[serde(rename = "!=")]
    Ne,
}

impl Comparison {
    /// True when `value` meets the condition (never for NaN or infinities).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
            Comparison::Ne => value != threshold,
        }
    }

    /// The operator as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

/// A value of the `aggregates` view: the latest window of each group of a transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSelector {
    /// Transform id.
    pub transform: String,
    /// Value column (`avg`, `max`, `p95`, `rate`, `utilization`, `idle_cost_usd`, ...).
    pub column: String,
    /// Only rows of this `metric` (a window transform's metric, or `cpu`/`memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// Value columns of the `aggregates` view an [`AggregateSelector`] may name.
pub const AGGREGATE_COLUMNS: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "last",
    "p50",
    "p90",
    "p95",
    "p99",
    "rate",
    "increase",
    "usage",
    "request",
    "capacity",
    "utilization",
    "saturation",
    "allocated_cost_usd",
    "idle_cost_usd",
    "capacity_cost_usd",
];

/// One threshold rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique name (part of every message and idempotency key).
    pub name: String,
    /// A read-only SQL query returning `(key, value)` rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Alternatively, a value of the `aggregates` view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<AggregateSelector>,
    /// Comparison with the threshold.
    pub op: Comparison,
    /// Threshold.
    pub threshold: f64,
    /// How long the condition must hold before firing (default 0: at once).
    #[serde(default)]
    pub for_secs: u64,
    /// Target the alert concerns (copied into messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Severity label (default `warning`).
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Free text added to messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_severity() -> String {
    "warning".into()
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl AlertRule {
    /// The query to run: `sql` as given, or, for `aggregate`, the selected column of the
    /// newest window of each group (`key` = the group id).
    pub fn sql(&self) -> Option<String> {
        if let Some(s) = &self.sql {
            return Some(s.clone());
        }
        let a = self.aggregate.as_ref()?;
        let mut filter = format!("transform = {}", sql_str(&a.transform));
        if let Some(m) = &a.metric {
            filter.push_str(&format!(" AND metric = {}", sql_str(m)));
        }
        Some(format!(
            "SELECT CAST(group_id AS VARCHAR) AS key, CAST({col} AS DOUBLE) AS value FROM aggregates \
             WHERE {filter} AND window_end = (SELECT max(window_end) FROM aggregates WHERE {filter})",
            col = a.column
        ))
    }
}

/// Alerts on scaling actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingAlertConfig {
    /// Fire `scaling-failed` when an actuator fails (default true).
    #[serde(default = "yes")]
    pub on_failed: bool,
    /// Fire `scaling-blocked` when the safety layer refuses (default true).
    #[serde(default = "yes")]
    pub on_blocked: bool,
    /// Severity label (default `critical`).
    #[serde(default = "critical")]
    pub severity: String,
}

fn yes() -> bool {
    true
}
fn critical() -> String {
    "critical".into()
}

impl Default for ScalingAlertConfig {
    fn default() -> Self {
        ScalingAlertConfig {
            on_failed: true,
            on_blocked: true,
            severity: critical(),
        }
    }
}

/// `alerts:` section of the pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Threshold rules.
    #[serde(default)]
    pub rules: Vec<AlertRule>,
    /// Alerts on scaling actions.
    #[serde(default)]
    pub scaling: ScalingAlertConfig,
    /// How often the rules are evaluated (default 30 s).
    #[serde(default = "default_eval")]
    pub evaluation_interval_secs: u64,
}

fn default_eval() -> u64 {
    30
}

impl AlertsConfig {
    /// Checks the rules; the error names the field (relative to `alerts`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.evaluation_interval_secs == 0 {
            return Err((
                "evaluation_interval_secs".into(),
                "must be at least 1".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            if r.name.trim().is_empty() {
                return Err((at("name"), "must not be empty".into()));
            }
            if !seen.insert(r.name.as_str()) || r.name.starts_with("scaling-") {
                return Err((
                    at("name"),
                    format!("{:?} is duplicated or reserved (scaling-*)", r.name),
                ));
            }
            match (&r.sql, &r.aggregate) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err((at("sql"), "set exactly one of sql and aggregate".into()));
                }
                (Some(s), None) if s.trim().is_empty() => {
                    return Err((at("sql"), "must not be empty".into()));
                }
                (None, Some(a)) => {
                    if a.transform.trim().is_empty() {
                        return Err((at("aggregate.transform"), "must not be empty".into()));
                    }
                    if !AGGREGATE_COLUMNS.contains(&a.column.as_str()) {
                        return Err((
                            at("aggregate.column"),
                            format!(
                                "{:?} is not one of {}",
                                a.column,
                                AGGREGATE_COLUMNS.join(", ")
                            ),
                        ));
                    }
                }
                _ => {}
            }
            if !r.threshold.is_finite() {
                return Err((at("threshold"), "must be a finite number".into()));
            }
        }
        Ok(())
    }
}

/// A firing or resolved alert (the `alert` field of webhook events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// Rule name (`scaling-failed` / `scaling-blocked` for action alerts).
    pub rule: String,
    /// Key of the row (group, queue, ...; the target for action alerts).
    pub key: String,
    /// Target concerned, if any.
    pub target: Option<String>,
    /// `firing` or `resolved`.
    pub state: String,
    /// True for a resolve message.
    pub resolved: bool,
    /// Severity label.
    pub severity: String,
    /// The value that fired (or the last one seen when resolving; `None` when the key
    /// disappeared or for action alerts).
    pub value: Option<f64>,
    /// Comparison, e.g. `> 0.9` (empty for action alerts).
    pub condition: String,
    /// When the condition started to hold (pending start); stable for one episode.
    pub since: DateTime<Utc>,
    /// Time of this message.
    pub at: DateTime<Utc>,
    /// One sentence.
    pub summary: String,
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    pending_since: Option<DateTime<Utc>>,
    firing: bool,
    last_value: Option<f64>,
}

/// Alert state of every rule and key; pure (no clock, no I/O).
#[derive(Debug, Clone, Default)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    scaling: ScalingAlertConfig,
    state: BTreeMap<(String, String), KeyState>,
}

impl AlertEngine {
    /// An engine for `cfg` (validate it first).
    pub fn new(cfg: &AlertsConfig) -> Self {
        AlertEngine {
            rules: cfg.rules.clone(),
            scaling: cfg.scaling.clone(),
            state: BTreeMap::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Keys currently firing, as `(rule, key)`.
    pub fn firing(&self) -> Vec<(String, String)> {
        self.state
            .iter()
            .filter(|(_, s)| s.firing)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Evaluates rule `rule` at `now` on the `(key, value)` rows of its query; returns the
    /// firing and resolved messages to send. An unknown rule name yields nothing.
    pub fn evaluate(
        &mut self,
        rule: &str,
        now: DateTime<Utc>,
        values: &[(String, f64)],
    ) -> Vec<AlertMessage> {
        let Some(r) = self.rules.iter().find(|r| r.name == rule).cloned() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut present = std::collections::BTreeSet::new();
        for (key, value) in values {
            present.insert(key.clone());
            let st = self.state.entry((r.name.clone(), key.clone())).or_default();
            if r.op.holds(*value, r.threshold) {
                let since = *st.pending_since.get_or_insert(now);
                st.last_value = Some(*value);
                if !st.firing && now.signed_duration_since(since) >= secs(r.for_secs) {
                    st.firing = true;
                    out.push(message(&r, key, false, Some(*value), since, now));
                }
            } else {
                if st.firing
                    && let Some(since) = st.pending_since
                {
                    out.push(message(&r, key, true, Some(*value), since, now));
                }
                *st = KeyState::default();
            }
        }
        // Keys that disappeared resolve (and stop pending).
        let gone: Vec<String> = self
            .state
            .iter()
            .filter(|((n, k), _)| *n == r.name && !present.contains(k))
            .map(|((_, k), _)| k.clone())
            .collect();
        for key in gone {
            if let Some(st) = self.state.remove(&(r.name.clone(), key.clone()))
                && st.firing
                && let Some(since) = st.pending_since
            {
                out.push(message(&r, &key, true, None, since, now));
            }
        }
        out
    }

    /// Updates the scaling alerts with one action record; returns messages to send.
    pub fn observe_action(&mut self, rec: &ActionRecord) -> Vec<AlertMessage> {
        let mut out = Vec::new();
        for (rule, result, enabled) in [
            (
                "scaling-failed",
                ActionResult::Failed,
                self.scaling.on_failed,
            ),
            (
                "scaling-blocked",
                ActionResult::Blocked,
                self.scaling.on_blocked,
            ),
        ] {
            if !enabled {
                continue;
            }
            let id = (rule.to_string(), rec.target.clone());
            if rec.result == result {
                let st = self.state.entry(id).or_default();
                if !st.firing {
                    st.firing = true;
                    st.pending_since = Some(rec.ts);
                    out.push(self.action_message(rule, rec, false, rec.ts));
                }
            } else if rec.result == ActionResult::Ok
                && let Some(st) = self.state.remove(&id)
                && st.firing
            {
                let since = st.pending_since.unwrap_or(rec.ts);
                out.push(self.action_message(rule, rec, true, since));
            }
        }
        out
    }

    fn action_message(
        &self,
        rule: &str,
        rec: &ActionRecord,
        resolved: bool,
        since: DateTime<Utc>,
    ) -> AlertMessage {
        let summary = if resolved {
            format!(
                "{rule} resolved for {}: {} ({} → {})",
                rec.target, rec.reason, rec.from_replicas, rec.to_replicas
            )
        } else {
            format!(
                "scaling {} for {} via {} ({} → {} requested {}): {}",
                rec.result.as_str(),
                rec.target,
                rec.actuator,
                rec.from_replicas,
                rec.to_replicas,
                rec.requested_replicas,
                rec.reason
            )
        };
        AlertMessage {
            rule: rule.to_string(),
            key: rec.target.clone(),
            target: Some(rec.target.clone()),
            state: if resolved { "resolved" } else { "firing" }.into(),
            resolved,
            severity: self.scaling.severity.clone(),
            value: None,
            condition: String::new(),
            since,
            at: rec.ts,
            summary,
        }
    }
}

fn message(
    r: &AlertRule,
    key: &str,
    resolved: bool,
    value: Option<f64>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AlertMessage {
    let condition = format!("{} {}", r.op.as_str(), r.threshold);
    let v = value.map_or_else(|| "no value".to_string(), |v| v.to_string());
    let mut summary = if resolved {
        format!("{} resolved for {key}: {v} (was {condition})", r.name)
    } else {
        format!(
            "{} firing for {key}: {v} {condition} for {} s",
            r.name,
            now.signed_duration_since(since).num_seconds()
        )
    };
    if let Some(d) = &r.description {
        summary.push_str(&format!(" — {d}"));
    }
    AlertMessage {
        rule: r.name.clone(),
        key: key.to_string(),
        target: r.target.clone(),
        state: if resolved { "resolved" } else { "firing" }.into(),
        resolved,
        severity: r.severity.clone(),
        value,
        condition,
        since,
        at: now,
        summary,
    }
}

/// Turns a rule query's result into `(key, value)` rows for [`AlertEngine::evaluate`]:
/// the first column is the key (any type, cast to text), the second the value (cast to
/// `Float64`). Rows with a null key or value are dropped (no value never meets a
/// condition, so such a key resolves like a vanished one).
pub fn rows_from_batches(
    batches: &[arrow::array::RecordBatch],
) -> Result<Vec<(String, f64)>, String> {
    use arrow::array::{Array, Float64Array, StringArray};
    use arrow::datatypes::DataType;
    let mut out = Vec::new();
    for b in batches {
        if b.num_columns() < 2 {
            return Err(format!(
                "an alert query must return (key, value); got {} column(s)",
                b.num_columns()
            ));
        }
        let keys = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| format!("key column: {e}"))?;
        let vals = arrow::compute::cast(b.column(1), &DataType::Float64)
            .map_err(|e| format!("value column: {e}"))?;
        let (Some(keys), Some(vals)) = (
            keys.as_any().downcast_ref::<StringArray>(),
            vals.as_any().downcast_ref::<Float64Array>(),
        ) else {
            return Err("unexpected column types after cast".into());
        };
        for i in 0..b.num_rows() {
            if keys.is_valid(i) && vals.is_valid(i) {
                out.push((keys.value(i).to_string(), vals.value(i)));
            }
        }
    }
    Ok(out)
}

/// Sends messages through the webhook sink (one event each).
pub fn publish(
    sink: &crate::sinks::webhook::WebhookSink,
    msgs: &[AlertMessage],
) -> Result<(), crate::sinks::webhook::WebhookError> {
    for m in msgs {
        sink.send(&crate::sinks::webhook::WebhookEvent::alert(m))?;
    }
    Ok(())
}

/// Forwards the action records of an actuator to the scaling alerts until the actuator is
/// dropped: the task the pipeline spawns per actuator
/// (`tokio::spawn(forward_actions(act.subscribe(), engine, sink))`).
pub async fn forward_actions(
    mut rx: tokio::sync::broadcast::Receiver<ActionRecord>,
    engine: std::sync::Arc<std::sync::Mutex<AlertEngine>>,
    sink: std::sync::Arc<crate::sinks::webhook::WebhookSink>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(rec) => {
                let msgs = engine
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe_action(&rec);
                if let Err(e) = publish(&sink, &msgs) {
                    tracing::warn!("alert not sent: {e}");
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "scaling alerts lagged behind the actuator");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    }

    fn cfg() -> AlertsConfig {
        serde_yaml::from_str(
            r#"
rules:
  - name: cpu-hot
    aggregate: { transform: cpu_util, column: utilization }
    op: ">"
    threshold: 0.9
    for_secs: 300
    target: web
"#,
        )
        .expect("parses")
    }

    fn kv(k: &str, v: f64) -> (String, f64) {
        (k.to_string(), v)
    }

    #[test]
    fn fires_after_for_secs_and_resolves_once() {
        let c = cfg();
        assert_eq!(c.validate(), Ok(()));
        let mut e = AlertEngine::new(&c);
        assert!(
            e.evaluate("cpu-hot", t(0), &[kv("a", 0.95)]).is_empty(),
            "pending"
        );
        assert!(e.evaluate("cpu-hot", t(299), &[kv("a", 0.97)]).is_empty());
        let m = e.evaluate("cpu-hot", t(300), &[kv("a", 0.96), kv("b", 0.5)]);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].key.as_str(), m[0].resolved, m[0].since),
            ("a", false, t(0))
        );
        assert_eq!(m[0].target.as_deref(), Some("web"));
        assert!(
            e.evaluate("cpu-hot", t(330), &[kv("a", 0.99)]).is_empty(),
            "fires once"
        );
        assert_eq!(e.firing(), vec![("cpu-hot".to_string(), "a".to_string())]);
        let m = e.evaluate("cpu-hot", t(360), &[kv("a", 0.4)]);
        assert_eq!(m.len(), 1);
        assert!(m[0].resolved && m[0].state == "resolved" && m[0].since == t(0));
        assert!(e.evaluate("cpu-hot", t(390), &[kv("a", 0.4)]).is_empty());
    }

    #[test]
    fn a_dip_restarts_the_pending_clock_and_missing_keys_resolve() {
        let mut e = AlertEngine::new(&cfg());
        e.evaluate("cpu-hot", t(0), &[kv("a", 0.95)]);
        e.evaluate("cpu-hot", t(200), &[kv("a", f64::NAN)]); // NaN never holds
        assert!(e.evaluate("cpu-hot", t(400), &[kv("a", 0.95)]).is_empty());
        let m = e.evaluate("cpu-hot", t(700), &[kv("a", 0.95)]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].since, t(400));
        let m = e.evaluate("cpu-hot", t(730), &[]);
        assert_eq!(m.len(), 1);
        assert!(m[0].resolved);
        assert_eq!(m[0].value, None);
        assert!(e.evaluate("nope", t(0), &[kv("a", 1.0)]).is_empty());
    }

    #[test]
    fn zero_for_secs_fires_at_once() {
        let mut c = cfg();
        c.rules[0].for_secs = 0;
        c.rules[0].op = Comparison::Le;
        let mut e = AlertEngine::new(&c);
        assert_eq!(e.evaluate("cpu-hot", t(0), &[kv("a", 0.9)]).len(), 1);
    }

    #[test]
    fn action_alerts_fire_on_failed_and_blocked_and_resolve_on_ok() {
        let mut e = AlertEngine::new(&AlertsConfig::default());
        let mut rec = ActionRecord {
            ts: t(0),
            target: "web".into(),
            actuator: "k8s".into(),
            source: "recommendation".into(),
            from_replicas: 2,
            requested_replicas: 5,
            to_replicas: 2,
            result: ActionResult::Failed,
            reason: "forbidden".into(),
        };
        let m = e.observe_action(&rec);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].rule.as_str(), m[0].resolved),
            ("scaling-failed", false)
        );
        rec.ts = t(0) + TimeDelta::seconds(60);
        assert!(e.observe_action(&rec).is_empty(), "already firing");
        rec.result = ActionResult::Blocked;
        let m = e.observe_action(&rec);
        assert_eq!(m[0].rule, "scaling-blocked");
        rec.result = ActionResult::Ok;
        rec.ts = t(120);
        let m = e.observe_action(&rec);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|m| m.resolved));
        assert_eq!(m[0].since, t(0));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |yaml: &str| -> String {
            let c: AlertsConfig = serde_yaml::from_str(yaml).expect("parses");
            c.validate().err().map(|e| e.0).unwrap_or_default()
        };
        assert_eq!(
            bad("rules: [{name: a, op: '>', threshold: 1}]"),
            "rules[0].sql"
        );
        assert_eq!(
            bad(
                "rules: [{name: a, aggregate: {transform: t, column: avgg}, op: '>', threshold: 1}]"
            ),
            "rules[0].aggregate.column"
        );
        assert_eq!(
            bad(
                "rules: [{name: a, sql: x, op: '>', threshold: 1}, {name: a, sql: y, op: '<', threshold: 1}]"
            ),
            "rules[1].name"
        );
        assert!(
            serde_yaml::from_str::<AlertsConfig>(
                "rules: [{name: a, sql: x, op: '=>', threshold: 1}]"
            )
            .is_err()
        );
        assert!(
            serde_yaml::from_str::<AlertsConfig>(
                "rules: [{name: a, sql: x, op: '>', threshold: 1, for: 3}]"
            )
            .is_err()
        );
        let sql = cfg().rules[0].sql().expect("aggregate sql");
        assert!(
            sql.contains("transform = 'cpu_util'") && sql.contains("utilization"),
            "{sql}"
        );
    }
}

#[cfg(test)]
mod sql_tests {
    use super::*;
    use arrow::array::{
        Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    /// The generated query runs on DataFusion over the `aggregates` columns it uses and
    /// returns the newest window of every group of the transform.
    #[tokio::test]
    async fn aggregate_rule_sql_selects_the_newest_window_per_group() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("transform", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("group_id", DataType::UInt64, false),
            Field::new("utilization", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["cpu", "cpu", "cpu", "cpu", "mem"])),
                Arc::new(StringArray::from(vec![
                    "cpu", "cpu", "cpu", "cpu", "memory",
                ])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![
                        60_000, 60_000, 120_000, 120_000, 180_000,
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(UInt64Array::from(vec![1, 2, 1, 2, 1])),
                Arc::new(Float64Array::from(vec![
                    Some(0.5),
                    Some(0.99),
                    Some(0.95),
                    None,
                    Some(0.1),
                ])),
            ],
        )
        .expect("batch");
        let ctx = SessionContext::new();
        ctx.register_batch("aggregates", batch).expect("register");
        let rule: AlertRule = serde_yaml::from_str(
            "{name: hot, aggregate: {transform: cpu, column: utilization, metric: cpu}, op: '>', threshold: 0.9}",
        )
        .expect("rule");
        let sql = rule.sql().expect("sql");
        let batches = ctx
            .sql(&sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let rows = rows_from_batches(&batches).expect("(key, value) rows");
        // Group 2's newest value is null: dropped.
        assert_eq!(rows, vec![("1".to_string(), 0.95)]);
        let mut e = AlertEngine::new(&AlertsConfig {
            rules: vec![rule],
            ..Default::default()
        });
        let m = e.evaluate("hot", chrono::Utc::now(), &rows);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].key, "1");
        let one = ctx
            .sql("SELECT 1 AS only")
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        assert!(rows_from_batches(&one).is_err());
    }
}
