//! The live scaling loop: per target of the pipeline's `scaling:` section,
//! read its demand from the store, let the [`Fleet`] decide, record every
//! [`Recommendation`] in the `recommendations` table, and keep the state the
//! control API and the dashboard show.
//!
//! * Demand: `metric.sql` (any read-only query returning `ts`, `value`) or
//!   `metric.name` + `labels` (the sum over matching series per timestamp of
//!   the `samples` table). Only rows newer than the last one seen are read.
//! * Every target is evaluated once per `evaluation_interval_secs`.
//! * `forecast_only` (the default) records and never acts. Execution
//!   (`forecast_and_scale`) goes through [`crate::recommend::dispatch`] with
//!   the target's actuator when one is configured; the global pause switch
//!   (`POST /api/v1/pause`) stops every action.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, Float64Array, Int64Array};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::query::{self, QueryConfig};
use crate::recommend::policy::{Mode, PolicyFile, TargetPolicy};
use crate::recommend::{Fleet, Recommendation, records_to_batch};
use crate::store::Store;
use crate::store::table::DerivedTable;

/// Name of the recommendations table.
pub const RECOMMENDATIONS: &str = "recommendations";
/// Demand points kept per target for the dashboard.
const MAX_POINTS: usize = 20_000;
/// Recommendations kept in memory for the API.
const MAX_RECENT: usize = 2_000;

/// The last action taken (or refused) for a target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastAction {
    /// When.
    pub ts: DateTime<Utc>,
    /// `recorded` (shadow), `executed`, `blocked`, `failed`.
    pub result: String,
    /// Replicas asked for.
    pub replicas: u32,
    /// Why.
    pub reason: String,
}

/// The next scheduled override of a target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NextSchedule {
    /// Schedule name.
    pub name: String,
    /// Next start.
    pub at: DateTime<Utc>,
    /// Minimum replicas while active.
    pub min_replicas: u32,
}

/// One row of `GET /api/v1/targets`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// `aws_asg`, `k8s_deployment` or `none`.
    pub kind: String,
    /// `forecast_only` or `forecast_and_scale`.
    pub mode: String,
    /// True when the global pause switch is on.
    pub paused: bool,
    /// Replicas now (as reported by the actuator, or the previous recommendation in shadow mode).
    pub current_replicas: Option<u32>,
    /// Latest recommendation.
    pub recommended_replicas: Option<u32>,
    /// Latest demand value.
    pub load: Option<f64>,
    /// Demand the current replicas serve at the target utilization.
    pub capacity: Option<f64>,
    /// load / (current replicas × capacity per replica).
    pub utilization: Option<f64>,
    /// Cost per hour of the current replicas.
    pub cost_per_hour_now: Option<f64>,
    /// Cost per hour with the recommendation.
    pub cost_per_hour_recommended: Option<f64>,
    /// now − recommended.
    pub savings_per_hour: Option<f64>,
    /// Last action.
    pub last_action: Option<LastAction>,
    /// Next scheduled override.
    pub next_schedule: Option<NextSchedule>,
    /// Reason of the latest recommendation.
    pub last_reason: Option<String>,
}

/// One recommendation marker of a timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Marker {
    /// Decision time, ms.
    pub ts_ms: i64,
    /// Recommended replicas.
    pub recommended_replicas: u32,
    /// Replicas at decision time.
    pub current_replicas: u32,
    /// Why.
    pub reason: String,
    /// Recommender or limit that decided.
    pub decided_by: String,
}

/// `GET /api/v1/targets/{name}/timeline`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Timeline {
    /// `[ts_ms, demand]`.
    pub demand: Vec<(i64, f64)>,
    /// `[ts_ms, demand the provisioned replicas serve at the target utilization]`.
    pub capacity: Vec<(i64, f64)>,
    /// `[ts_ms, p10, p50, p90]` of the latest forecast.
    pub forecast: Vec<(i64, f64, f64, f64)>,
    /// Decisions.
    pub recommendations: Vec<Marker>,
}

#[derive(Default)]
struct TargetState {
    last_data_ms: Option<i64>,
    next_eval_ms: i64,
    timeline: Timeline,
    status: Option<TargetStatus>,
}

/// Label set `{target, direction, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OperationLabels {
    /// Target name.
    pub target: String,
    /// `up`, `down` or `none`.
    pub direction: String,
    /// `recorded` (shadow), `executed`, `blocked`, `failed`.
    pub result: String,
}

/// Label set `{target}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TargetLabel {
    /// Target name.
    pub target: String,
}

type FloatGauge = prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>;

/// The scaling self-metrics (the seed framework's names).
#[derive(Default, Clone)]
pub struct ScalingMetrics {
    /// `scalecast_scaling_operations_total{target,direction,result}`.
    pub operations: prometheus_client::metrics::family::Family<
        OperationLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    /// `scalecast_scaling_cost_dollars_per_hour{target}` (with the recommendation).
    pub cost: prometheus_client::metrics::family::Family<TargetLabel, FloatGauge>,
    /// `scalecast_scaling_savings_dollars_per_hour` (all targets: now − recommended).
    pub savings: FloatGauge,
    /// `scalecast_recommended_replicas{target}`.
    pub recommended: prometheus_client::metrics::family::Family<
        TargetLabel,
        prometheus_client::metrics::gauge::Gauge,
    >,
}

impl ScalingMetrics {
    /// Creates and registers the metrics.
    pub fn register(m: &crate::metrics::Metrics) -> Self {
        let s = Self::default();
        m.register(
            "scalecast_scaling_operations",
            "Scaling decisions by target, direction and result",
            s.operations.clone(),
        );
        m.register(
            "scalecast_scaling_cost_dollars_per_hour",
            "Cost per hour of each target with its latest recommendation",
            s.cost.clone(),
        );
        m.register(
            "scalecast_scaling_savings_dollars_per_hour",
            "Cost per hour saved by the latest recommendations, all targets",
            s.savings.clone(),
        );
        m.register(
            "scalecast_recommended_replicas",
            "Latest recommended replicas per target",
            s.recommended.clone(),
        );
        s
    }
}

/// The loop's shared state, read by the API.
pub struct ScalingState {
    /// Actuators of the `forecast_and_scale` targets, by target name.
    actuators: BTreeMap<String, Arc<crate::actuators::SafeActuator>>,
    /// Where recommendations are published, when configured.
    webhooks: Mutex<Option<Arc<crate::sinks::webhook::WebhookSink>>>,
    /// Kafka topic every recommendation is published to, when configured.
    kafka: Option<Arc<crate::sinks::kafka::KafkaSink>>,
    /// Self-metrics (set with [`ScalingState::with_metrics`]).
    metrics: Option<ScalingMetrics>,
    /// Global kill switch: no actuator is called while it is on.
    pub paused: Arc<AtomicBool>,
    policy: PolicyFile,
    targets: Mutex<BTreeMap<String, TargetState>>,
    recent: Mutex<VecDeque<Recommendation>>,
    table: Arc<DerivedTable>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL reading a target's demand newer than `after_ms`.
pub fn demand_sql(t: &TargetPolicy, after_ms: i64) -> Result<String> {
    if let Some(sql) = &t.metric.sql {
        return Ok(format!(
            "SELECT CAST(ts AS BIGINT) AS t, CAST(value AS DOUBLE) AS v FROM ({sql}) AS demand WHERE CAST(ts AS BIGINT) > {after_ms} ORDER BY 1"
        ));
    }
    let Some(name) = &t.metric.name else {
        return Err(Error::Other(format!(
            "target {}: metric needs `sql` or `name`",
            t.name
        )));
    };
    let mut filter = format!("name = {}", sql_str(name));
    for (k, v) in &t.metric.labels {
        filter.push_str(&format!(" AND labels[{}] = {}", sql_str(k), sql_str(v)));
    }
    Ok(format!(
        "SELECT CAST(ts AS BIGINT) AS t, sum(value) AS v FROM samples WHERE {filter} AND ts > to_timestamp_millis({after_ms}) GROUP BY 1 ORDER BY 1"
    ))
}

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::ForecastOnly => "forecast_only",
        Mode::ForecastAndScale => "forecast_and_scale",
    }
}

fn kind_str(t: &TargetPolicy) -> String {
    serde_json::to_value(t.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl ScalingState {
    /// Creates the state for `policy`, recording into `table` (`recommendations`).
    pub fn new(policy: PolicyFile, table: Arc<DerivedTable>) -> Result<Self> {
        let mut targets = BTreeMap::new();
        for t in &policy.targets {
            targets.insert(t.name.clone(), TargetState::default());
        }
        Ok(Self {
            actuators: BTreeMap::new(),
            webhooks: Mutex::new(None),
            kafka: None,
            metrics: None,
            paused: Arc::new(AtomicBool::new(false)),
            policy,
            targets: Mutex::new(targets),
            recent: Mutex::default(),
            table,
        })
    }

    /// Executes decisions of `forecast_and_scale` targets through these actuators.
    pub fn with_actuators(
        mut self,
        actuators: BTreeMap<String, Arc<crate::actuators::SafeActuator>>,
    ) -> Self {
        self.actuators = actuators;
        self
    }

    /// Shares the actuators' kill switch (`POST /api/v1/pause` sets it).
    pub fn with_paused(mut self, paused: Arc<AtomicBool>) -> Self {
        self.paused = paused;
        self
    }

    /// Publishes every recommendation to these webhooks.
    pub fn with_webhooks(self, sink: Arc<crate::sinks::webhook::WebhookSink>) -> Self {
        *lock(&self.webhooks) = Some(sink);
        self
    }

    /// Publishes every recommendation to this Kafka sink (key: target name).
    pub fn with_kafka(mut self, sink: Arc<crate::sinks::kafka::KafkaSink>) -> Self {
        self.kafka = Some(sink);
        self
    }

    /// Stops publishing (shutdown: the pipeline then drains the sink).
    pub fn detach_webhooks(&self) {
        lock(&self.webhooks).take();
    }

    /// The actuator of `target`, if it has one.
    pub fn actuator(&self, target: &str) -> Option<&Arc<crate::actuators::SafeActuator>> {
        self.actuators.get(target)
    }

    /// Manual scale (`POST /api/v1/scale`): clamped to min/max, refused while paused.
    pub async fn scale_manual(
        &self,
        target: &str,
        replicas: u32,
    ) -> Result<crate::actuators::ActionRecord> {
        let Some(t) = self.policy.targets.iter().find(|t| t.name == target) else {
            return Err(Error::InvalidInput(format!(
                "no scaling target named {target:?}"
            )));
        };
        let Some(act) = self.actuators.get(target) else {
            return Err(Error::InvalidInput(format!(
                "target {target:?} has no actuator (mode {}, kind {}): only forecast_and_scale targets with an aws_asg or k8s_deployment kind can be scaled",
                mode_str(t.mode),
                kind_str(t)
            )));
        };
        let rec = act.scale_manual(t, replicas).await;
        self.count_action(&rec);
        if let Some(st) = lock(&self.targets)
            .get_mut(target)
            .and_then(|s| s.status.as_mut())
        {
            st.last_action = Some(action_summary(&rec));
        }
        Ok(rec)
    }

    fn count_action(&self, rec: &crate::actuators::ActionRecord) {
        if let Some(m) = &self.metrics {
            m.operations
                .get_or_create(&OperationLabels {
                    target: rec.target.clone(),
                    direction: rec.direction().into(),
                    result: rec.result.as_str().into(),
                })
                .inc();
        }
    }

    /// Registers and updates the scaling self-metrics in `m`.
    pub fn with_metrics(mut self, m: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(ScalingMetrics::register(m));
        self
    }

    /// The recommendations table (for queries).
    pub fn table(&self) -> &Arc<DerivedTable> {
        &self.table
    }

    /// The policies.
    pub fn policy(&self) -> &PolicyFile {
        &self.policy
    }

    /// Status of every target, in name order.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let paused = self.paused.load(Ordering::Relaxed);
        let st = lock(&self.targets);
        self.policy
            .targets
            .iter()
            .map(|t| {
                let mut s = st
                    .get(&t.name)
                    .and_then(|x| x.status.clone())
                    .unwrap_or_else(|| TargetStatus {
                        name: t.name.clone(),
                        kind: kind_str(t),
                        mode: mode_str(t.mode).into(),
                        paused,
                        current_replicas: None,
                        recommended_replicas: None,
                        load: None,
                        capacity: None,
                        utilization: None,
                        cost_per_hour_now: None,
                        cost_per_hour_recommended: None,
                        savings_per_hour: None,
                        last_action: None,
                        next_schedule: None,
                        last_reason: None,
                    });
                s.paused = paused;
                s.next_schedule = next_schedule(t, Utc::now());
                s
            })
            .collect()
    }

    /// Timeline of `target` over the last `range_ms`, or `None` for an unknown target.
    pub fn timeline(&self, target: &str, range_ms: i64) -> Option<Timeline> {
        let st = lock(&self.targets);
        let tl = &st.get(target)?.timeline;
        let newest = tl
            .demand
            .last()
            .map(|p| p.0)
            .unwrap_or_else(|| Utc::now().timestamp_millis());
        let from = newest - range_ms;
        Some(Timeline {
            demand: tl.demand.iter().filter(|p| p.0 >= from).copied().collect(),
            capacity: tl
                .capacity
                .iter()
                .filter(|p| p.0 >= from)
                .copied()
                .collect(),
            forecast: tl.forecast.clone(),
            recommendations: tl
                .recommendations
                .iter()
                .filter(|m| m.ts_ms >= from)
                .cloned()
                .collect(),
        })
    }

    /// Recent recommendations, newest first, optionally for one target.
    pub fn recommendations(&self, target: Option<&str>, limit: usize) -> Vec<Recommendation> {
        lock(&self.recent)
            .iter()
            .rev()
            .filter(|r| target.is_none_or(|t| r.target == t))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Drops the oldest entries so that at most `max` remain.
fn keep_last<T>(v: &mut Vec<T>, max: usize) {
    let excess = v.len().saturating_sub(max);
    v.drain(..excess);
}

fn action_summary(a: &crate::actuators::ActionRecord) -> LastAction {
    LastAction {
        ts: a.ts,
        result: a.result.as_str().to_string(),
        replicas: a.to_replicas,
        reason: a.reason.clone(),
    }
}

fn next_schedule(t: &TargetPolicy, now: DateTime<Utc>) -> Option<NextSchedule> {
    t.schedules
        .iter()
        .filter_map(|s| {
            let cron = crate::recommend::policy::parse_cron(&s.cron).ok()?;
            let at = cron.after(&now).next()?;
            Some(NextSchedule {
                name: s.name.clone(),
                at,
                min_replicas: s.min_replicas,
            })
        })
        .min_by_key(|n| n.at)
}

async fn read_demand(
    t: &TargetPolicy,
    after_ms: i64,
    store: &Store,
    catalog: &super::CatalogFn,
) -> Result<Vec<(i64, f64)>> {
    let sql = demand_sql(t, after_ms)?;
    let (tables, views) = catalog(store);
    let r = query::run_sql_with_views(tables, &views, &sql, &QueryConfig::default()).await?;
    let mut out = Vec::new();
    for b in &r.batches {
        let ts = b.column(0).as_any().downcast_ref::<Int64Array>();
        let v = b.column(1).as_any().downcast_ref::<Float64Array>();
        let (Some(ts), Some(v)) = (ts, v) else {
            return Err(Error::Other(format!(
                "target {}: demand query must return (BIGINT ts, DOUBLE value)",
                t.name
            )));
        };
        for i in 0..b.num_rows() {
            if !ts.is_null(i) && !v.is_null(i) {
                out.push((ts.value(i), v.value(i)));
            }
        }
    }
    Ok(out)
}

/// Evaluates every due target once at `now_ms`; returns the recommendations made.
pub async fn evaluate(
    state: &ScalingState,
    fleet: &mut Fleet,
    store: &Store,
    catalog: &super::CatalogFn,
    now_ms: i64,
) -> Vec<Recommendation> {
    let mut made = Vec::new();
    for t in state.policy.targets.clone() {
        let (due, after) = {
            let st = lock(&state.targets);
            let Some(s) = st.get(&t.name) else { continue };
            (now_ms >= s.next_eval_ms, s.last_data_ms.unwrap_or(-1))
        };
        if !due {
            continue;
        }
        let interval_ms = t.evaluation_interval_secs.max(1) as i64 * 1000;
        let points = match read_demand(&t, after, store, catalog).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target = %t.name, error = %e, "cannot read demand");
                Vec::new()
            }
        };
        for &(ts, v) in &points {
            if let Some(at) = DateTime::<Utc>::from_timestamp_millis(ts) {
                let _ = fleet.observe(&t.name, at, v);
            }
        }
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_else(Utc::now);
        let act = state.actuators.get(&t.name).cloned();
        let current = match &act {
            Some(a) => match a.current_replicas(&t).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target = %t.name, error = %e, "cannot read current replicas");
                    None
                }
            },
            None => None,
        };
        let decided = fleet.decide(&t.name, now, current, &[], &[]);
        let mut action = None;
        if let (Ok(rec), Some(a)) = (&decided, &act) {
            let before = a.last_action(&t.name);
            let outcome = crate::recommend::dispatch(&t, rec, a.as_ref()).await;
            let after = a.last_action(&t.name);
            if after != before {
                if let Some(r) = &after {
                    state.count_action(r);
                }
                action = after.as_ref().map(action_summary);
            }
            tracing::debug!(target = %t.name, ?outcome, "dispatched");
        }
        if let (Ok(rec), Some(k)) = (&decided, &state.kafka) {
            // Delivery is awaited in the background; errors are counted by the sink.
            let (k, rec) = (k.clone(), rec.clone());
            tokio::spawn(async move {
                if let Err(e) = k.publish(&rec.target, &rec).await {
                    tracing::warn!(target = %rec.target, error = %e, "recommendation not published to Kafka");
                }
            });
        }
        let sink = lock(&state.webhooks).clone();
        if let (Ok(rec), Some(sink)) = (&decided, sink)
            && let Err(e) = sink.send(&crate::sinks::webhook::WebhookEvent::recommendation(rec))
        {
            tracing::warn!(target = %t.name, error = %e, "recommendation not published");
        }
        let forecast = fleet.forecast(&t.name, 48);
        let mut st = lock(&state.targets);
        let Some(s) = st.get_mut(&t.name) else {
            continue;
        };
        s.next_eval_ms = now_ms + interval_ms;
        if let Some(&(ts, _)) = points.last() {
            s.last_data_ms = Some(ts);
        }
        s.timeline.demand.extend(points.iter().copied());
        keep_last(&mut s.timeline.demand, MAX_POINTS);
        if let Some(f) = forecast {
            s.timeline.forecast = (0..f.p50.len())
                .map(|i| {
                    (
                        f.start_ms + i as i64 * f.step_ms,
                        f.p10[i],
                        f.p50[i],
                        f.p90[i],
                    )
                })
                .collect();
        }
        let rec = match decided {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(target = %t.name, error = %e, "no decision yet");
                continue;
            }
        };
        let cap_per = t.capacity_per_replica * t.target_utilization_percent / 100.0;
        s.timeline.capacity.push((
            rec.ts.timestamp_millis(),
            f64::from(rec.current_replicas) * cap_per,
        ));
        s.timeline.recommendations.push(Marker {
            ts_ms: rec.ts.timestamp_millis(),
            recommended_replicas: rec.recommended_replicas,
            current_replicas: rec.current_replicas,
            reason: rec.reason.clone(),
            decided_by: rec.decided_by.clone(),
        });
        keep_last(&mut s.timeline.capacity, MAX_POINTS);
        keep_last(&mut s.timeline.recommendations, MAX_POINTS);
        let capacity = f64::from(rec.current_replicas) * t.capacity_per_replica;
        s.status = Some(TargetStatus {
            name: t.name.clone(),
            kind: kind_str(&t),
            mode: mode_str(t.mode).into(),
            paused: state.paused.load(Ordering::Relaxed),
            current_replicas: Some(rec.current_replicas),
            recommended_replicas: Some(rec.recommended_replicas),
            load: Some(rec.load),
            capacity: Some(f64::from(rec.current_replicas) * cap_per),
            utilization: (capacity > 0.0).then(|| rec.load / capacity),
            cost_per_hour_now: rec.cost_per_hour_before,
            cost_per_hour_recommended: rec.cost_per_hour_after,
            savings_per_hour: rec
                .cost_per_hour_before
                .zip(rec.cost_per_hour_after)
                .map(|(a, b)| a - b),
            last_action: action
                .or_else(|| {
                    s.status
                        .as_ref()
                        .and_then(|x| x.last_action.clone())
                        .filter(|_| act.is_some())
                })
                .or(Some(LastAction {
                    ts: rec.ts,
                    result: if t.mode == Mode::ForecastOnly {
                        "recorded (forecast_only)".into()
                    } else {
                        "recorded (no actuator)".into()
                    },
                    replicas: rec.recommended_replicas,
                    reason: rec.reason.clone(),
                })),
            next_schedule: next_schedule(&t, now),
            last_reason: Some(rec.reason.clone()),
        });
        drop(st);
        if let Some(m) = &state.metrics {
            let direction = serde_json::to_value(rec.direction)
                .ok()
                .and_then(|v| v.as_str().map(str::to_lowercase))
                .unwrap_or_default();
            // Executed decisions are counted by the actuator's record.
            if act.is_none() {
                m.operations
                    .get_or_create(&OperationLabels {
                        target: t.name.clone(),
                        direction,
                        result: "recorded".into(),
                    })
                    .inc();
            }
            let label = TargetLabel {
                target: t.name.clone(),
            };
            m.recommended
                .get_or_create(&label)
                .set(i64::from(rec.recommended_replicas));
            if let Some(c) = rec.cost_per_hour_after {
                m.cost.get_or_create(&label).set(c);
            }
        }
        made.push(rec);
    }
    if let Some(m) = &state.metrics {
        let saved: f64 = state
            .targets()
            .iter()
            .filter_map(|t| t.savings_per_hour)
            .sum();
        m.savings.set(saved);
    }
    if !made.is_empty() {
        {
            let mut recent = lock(&state.recent);
            recent.extend(made.iter().cloned());
            while recent.len() > MAX_RECENT {
                recent.pop_front();
            }
        }
        match records_to_batch(&made) {
            Ok(b) => {
                if let Err(e) = state.table.append(b) {
                    tracing::error!(error = %e, "cannot store recommendations");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot convert recommendations"),
        }
    }
    made
}

/// Runs the loop until `shutdown` turns true; flushes the table at the end.
pub async fn run(
    state: Arc<ScalingState>,
    store: Arc<Store>,
    catalog: Arc<super::CatalogFn>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut fleet = Fleet::new(&state.policy, "pipeline")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_flush = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() { break; }
            }
        }
        evaluate(
            &state,
            &mut fleet,
            &store,
            catalog.as_ref(),
            Utc::now().timestamp_millis(),
        )
        .await;
        if last_flush.elapsed() >= Duration::from_secs(30) {
            let t = state.table.clone();
            let _ = tokio::task::spawn_blocking(move || t.flush()).await;
            last_flush = tokio::time::Instant::now();
        }
    }
    let t = state.table.clone();
    tokio::task::spawn_blocking(move || t.flush())
        .await
        .map_err(|e| Error::Other(format!("flush task: {e}")))?
}
