//! Serde configuration of the engine's transforms (the bodies of the
//! `transforms:` entries of the pipeline YAML).
//!
//! The pipeline file maps a transform id to `{ type: window | utilization |
//! cost, inputs: [...], ... }`. `type` and `inputs` belong to the caller's
//! enum; the structs here hold the remaining fields of each variant. Every
//! struct rejects unknown fields, and every `validate` returns all problems it
//! finds as [`ConfigIssue`]s whose `path` is the field path inside the
//! transform body (`window.slide_secs`, `matchers[1]`, `usage.per_series`).
//! Units are part of the field names (`size_secs`, `cpu_core_hour_usd`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::aggregate::{AcrossFunction, AggregateKind, SeriesFunction};
use crate::engine::matcher::{LabelMatcher, Selector};
use crate::engine::{ConfigIssue, EngineError, Result};

/// Default OpenCost price of one CPU core for one hour, in USD.
pub const DEFAULT_CPU_CORE_HOUR_USD: f64 = 0.031611;
/// Default OpenCost price of one GiB of memory for one hour, in USD.
pub const DEFAULT_MEMORY_GIB_HOUR_USD: f64 = 0.004237;
/// Default time (seconds) late samples may still update an emitted window.
pub const DEFAULT_LATE_RETENTION_SECS: u64 = 300;
/// Default label holding a node's instance type (the well-known Kubernetes label
/// is usually relabelled to this name).
pub const DEFAULT_INSTANCE_TYPE_LABEL: &str = "instance_type";

/// Window shape, tagged by `type`.
///
/// ```yaml
/// window: { type: tumbling, size_secs: 60 }
/// window: { type: sliding, size_secs: 300, slide_secs: 60 }
/// ```
/// Windows are aligned to the Unix epoch: a window covers event times
/// `[start, start + size)` with `start` a multiple of the slide (the size for
/// tumbling windows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    /// Non-overlapping windows of `size_secs`.
    Tumbling {
        /// Window length in seconds (> 0).
        size_secs: u64,
    },
    /// Overlapping (hop) windows of `size_secs`, one starting every `slide_secs`.
    Sliding {
        /// Window length in seconds (> 0, a multiple of `slide_secs`).
        size_secs: u64,
        /// Distance between window starts in seconds (> 0, ≤ `size_secs`).
        slide_secs: u64,
    },
}

impl WindowSpec {
    /// Window length in milliseconds.
    pub fn size_ms(&self) -> i64 {
        let s = match self {
            WindowSpec::Tumbling { size_secs } | WindowSpec::Sliding { size_secs, .. } => {
                *size_secs
            }
        };
        secs_to_ms(s)
    }

    /// Distance between window starts in milliseconds (the size for tumbling).
    pub fn slide_ms(&self) -> i64 {
        match self {
            WindowSpec::Tumbling { size_secs } => secs_to_ms(*size_secs),
            WindowSpec::Sliding { slide_secs, .. } => secs_to_ms(*slide_secs),
        }
    }

    fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        const MAX_SECS: u64 = 366 * 24 * 3600;
        match self {
            WindowSpec::Tumbling { size_secs } => {
                if *size_secs == 0 {
                    issues.push(issue(format!("{path}.size_secs"), "must be greater than 0"));
                } else if *size_secs > MAX_SECS {
                    issues.push(issue(
                        format!("{path}.size_secs"),
                        "must be at most 366 days",
                    ));
                }
            }
            WindowSpec::Sliding {
                size_secs,
                slide_secs,
            } => {
                if *size_secs == 0 {
                    issues.push(issue(format!("{path}.size_secs"), "must be greater than 0"));
                } else if *size_secs > MAX_SECS {
                    issues.push(issue(
                        format!("{path}.size_secs"),
                        "must be at most 366 days",
                    ));
                }
                if *slide_secs == 0 {
                    issues.push(issue(
                        format!("{path}.slide_secs"),
                        "must be greater than 0",
                    ));
                } else if slide_secs > size_secs {
                    issues.push(issue(
                        format!("{path}.slide_secs"),
                        format!("must not exceed size_secs ({size_secs})"),
                    ));
                } else if size_secs % slide_secs != 0 {
                    issues.push(issue(
                        format!("{path}.slide_secs"),
                        format!("size_secs ({size_secs}) must be a multiple of slide_secs"),
                    ));
                } else if size_secs / slide_secs > 1_000 {
                    issues.push(issue(
                        format!("{path}.slide_secs"),
                        "at most 1000 overlapping windows (size_secs / slide_secs)",
                    ));
                }
            }
        }
    }
}

/// What happens to a sample whose window was already emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateDataPolicy {
    /// Add it and emit the window again (`is_update = true`); storage keeps
    /// the latest row per (transform, group, window). Only while the window is
    /// within `late_retention_secs` of the watermark; later ones are dropped.
    #[default]
    Update,
    /// Drop it and count it in `late_dropped`.
    Drop,
}

/// Body of a `type: window` transform.
///
/// ```yaml
/// transforms:
///   http_latency_5m:
///     type: window
///     inputs: [prom]
///     metric: http_request_duration_seconds
///     matchers: ['code=~"2.."', 'method!="OPTIONS"']
///     window: { type: sliding, size_secs: 300, slide_secs: 60 }
///     group_by: [service]
///     aggregates: [count, avg, max, p95, p99]
///     allowed_lateness_secs: 30
///     late_data: update
///     late_retention_secs: 300
///     idle_timeout_secs: 120
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTransformConfig {
    /// Metric name to select.
    pub metric: String,
    /// PromQL-style label matchers: `label="v"`, `label!="v"`, `label=~"re"`, `label!~"re"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Window shape.
    pub window: WindowSpec,
    /// Labels to group by (rows per distinct value tuple); empty = one group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Aggregates to compute (see [`AggregateKind`]).
    pub aggregates: Vec<AggregateKind>,
    /// Watermark = max event time − this; windows close when the watermark passes their end.
    #[serde(default)]
    pub allowed_lateness_secs: u64,
    /// Late sample policy.
    #[serde(default)]
    pub late_data: LateDataPolicy,
    /// With `late_data: update`, how long after the watermark passed a window's
    /// end late samples still update it (default 300).
    #[serde(default)]
    pub late_retention_secs: Option<u64>,
    /// Processing-time seconds without matching input after which every open
    /// window is emitted (unset = never).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

impl WindowTransformConfig {
    /// Checks every field; all problems are returned at once.
    pub fn validate(&self) -> Result<()> {
        let mut issues = Vec::new();
        validate_selector(&self.metric, &self.matchers, "", &mut issues);
        self.window.validate("window", &mut issues);
        validate_group_by(&self.group_by, &mut issues);
        if self.aggregates.is_empty() {
            issues.push(issue("aggregates", "list at least one aggregate"));
        }
        for (i, a) in self.aggregates.iter().enumerate() {
            if self.aggregates[..i].contains(a) {
                issues.push(issue(
                    format!("aggregates[{i}]"),
                    format!("`{}` is listed twice", a.name()),
                ));
            }
        }
        validate_timing(
            self.allowed_lateness_secs,
            self.late_data,
            self.late_retention_secs,
            self.idle_timeout_secs,
            &mut issues,
        );
        finish(issues)
    }

    /// The parsed selector (call [`validate`](Self::validate) first for good errors).
    pub fn selector(&self) -> Result<Selector> {
        Selector::new(&self.metric, &self.matchers).map_err(|(i, reason)| {
            EngineError::InvalidConfig {
                issues: vec![issue(format!("matchers[{i}]"), reason)],
            }
        })
    }
}

/// Which resource a utilization transform measures; drives cost pricing and units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// CPU in cores (priced per core-hour).
    #[default]
    Cpu,
    /// Memory in bytes (priced per GiB-hour, 1 GiB = 2^30 bytes).
    Memory,
    /// Anything else (no cost columns).
    Other,
}

impl ResourceKind {
    /// Lower-case name, as written in the config and in the `metric` column.
    pub fn name(&self) -> &'static str {
        match self {
            ResourceKind::Cpu => "cpu",
            ResourceKind::Memory => "memory",
            ResourceKind::Other => "other",
        }
    }
}

/// A static value for groups whose labels all equal `match`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticOverride {
    /// Group labels that must all be equal (`{instance: "node-1:9100"}`).
    #[serde(rename = "match")]
    pub match_labels: BTreeMap<String, String>,
    /// Value in the measure's unit (cores, bytes, ...).
    pub value: f64,
}

/// How one utilization quantity (usage, request or capacity) is obtained: from
/// a metric (per-series function, then a function across the group's series),
/// or from a static value (with per-group overrides).
///
/// ```yaml
/// usage:    { metric: node_cpu_seconds_total, matchers: ['mode!="idle"'], per_series: rate, across: sum }
/// capacity: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: last, across: count }
/// request:  { value: 2.0, overrides: [ { match: { instance: "big:9100" }, value: 8 } ] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureConfig {
    /// Metric to select (exclusive with `value`).
    #[serde(default)]
    pub metric: Option<String>,
    /// Label matchers for `metric`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Function applied to each series' samples in the window (default `last`).
    #[serde(default)]
    pub per_series: SeriesFunction,
    /// Function combining the per-series results of a group (default `sum`).
    #[serde(default)]
    pub across: AcrossFunction,
    /// Factor applied to the result (e.g. 0.001 for millicores → cores).
    #[serde(default = "one")]
    pub scale: f64,
    /// Only for `usage`: the metric measures the idle part, so
    /// `usage = capacity − value` (e.g. the `mode="idle"` CPU counter).
    #[serde(default)]
    pub from_idle: bool,
    /// Static value (exclusive with `metric`).
    #[serde(default)]
    pub value: Option<f64>,
    /// Per-group static values; the first whose `match` fits the group wins.
    #[serde(default)]
    pub overrides: Vec<StaticOverride>,
}

fn one() -> f64 {
    1.0
}

impl MeasureConfig {
    fn validate(&self, path: &str, allow_idle: bool, issues: &mut Vec<ConfigIssue>) {
        match (&self.metric, self.value) {
            (Some(_), Some(_)) => issues.push(issue(
                format!("{path}.value"),
                "give either `metric` or `value`, not both",
            )),
            (None, None) if self.overrides.is_empty() => issues.push(issue(
                path.to_string(),
                "give `metric` (with matchers) or a static `value`",
            )),
            _ => {}
        }
        if let Some(metric) = &self.metric {
            validate_selector(metric, &self.matchers, &format!("{path}."), issues);
            if !self.overrides.is_empty() {
                issues.push(issue(
                    format!("{path}.overrides"),
                    "overrides only apply to static values",
                ));
            }
        } else if !self.matchers.is_empty() {
            issues.push(issue(
                format!("{path}.matchers"),
                "matchers need a `metric`",
            ));
        }
        if !self.scale.is_finite() || self.scale <= 0.0 {
            issues.push(issue(format!("{path}.scale"), "must be a positive number"));
        }
        if let Some(v) = self.value
            && (!v.is_finite() || v < 0.0)
        {
            issues.push(issue(
                format!("{path}.value"),
                "must be a finite number ≥ 0",
            ));
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if !o.value.is_finite() || o.value < 0.0 {
                issues.push(issue(
                    format!("{path}.overrides[{i}].value"),
                    "must be a finite number ≥ 0",
                ));
            }
            if o.match_labels.is_empty() {
                issues.push(issue(
                    format!("{path}.overrides[{i}].match"),
                    "list at least one label",
                ));
            }
        }
        if self.from_idle && !allow_idle {
            issues.push(issue(
                format!("{path}.from_idle"),
                "only `usage` can be derived from an idle measure",
            ));
        }
    }

    /// The parsed selector, if this measure reads a metric.
    pub fn selector(&self) -> Result<Option<Selector>> {
        match &self.metric {
            None => Ok(None),
            Some(m) => Selector::new(m, &self.matchers)
                .map(Some)
                .map_err(|(i, reason)| EngineError::InvalidConfig {
                    issues: vec![issue(format!("matchers[{i}]"), reason)],
                }),
        }
    }

    /// The static value for a group with these labels, if any.
    pub fn static_value(&self, group: &[(String, String)]) -> Option<f64> {
        let label = |k: &str| group.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        self.overrides
            .iter()
            .find(|o| {
                o.match_labels
                    .iter()
                    .all(|(k, v)| label(k).unwrap_or("") == v)
            })
            .map(|o| o.value)
            .or(self.value)
            .map(|v| v * self.scale)
    }
}

/// Body of a `type: utilization` transform: usage against request and capacity
/// per group (workload, node, ...) and window.
///
/// ```yaml
/// transforms:
///   node_cpu:
///     type: utilization
///     inputs: [prom]
///     resource: cpu
///     window: { type: tumbling, size_secs: 60 }
///     group_by: [instance]
///     usage:    { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: rate, across: sum, from_idle: true }
///     capacity: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: last, across: count }
///     request:  { value: 2 }
///     pricing:  { cpu_core_hour_usd: 0.031611 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtilizationTransformConfig {
    /// Resource measured (unit: cores for cpu, bytes for memory).
    #[serde(default)]
    pub resource: ResourceKind,
    /// Window shape.
    pub window: WindowSpec,
    /// Labels identifying a workload / node (one output row per group).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How usage is measured.
    pub usage: MeasureConfig,
    /// How the request is obtained (optional; `utilization` is null without it).
    #[serde(default)]
    pub request: Option<MeasureConfig>,
    /// How the capacity is obtained (optional; `saturation` is null without it).
    #[serde(default)]
    pub capacity: Option<MeasureConfig>,
    /// Prices for the cost columns (null cost columns when absent).
    #[serde(default)]
    pub pricing: Option<PricingConfig>,
    /// See [`WindowTransformConfig::allowed_lateness_secs`].
    #[serde(default)]
    pub allowed_lateness_secs: u64,
    /// See [`WindowTransformConfig::late_data`].
    #[serde(default)]
    pub late_data: LateDataPolicy,
    /// See [`WindowTransformConfig::late_retention_secs`].
    #[serde(default)]
    pub late_retention_secs: Option<u64>,
    /// See [`WindowTransformConfig::idle_timeout_secs`].
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

impl UtilizationTransformConfig {
    /// Checks every field; all problems are returned at once.
    pub fn validate(&self) -> Result<()> {
        let mut issues = Vec::new();
        self.window.validate("window", &mut issues);
        validate_group_by(&self.group_by, &mut issues);
        self.usage.validate("usage", true, &mut issues);
        if self.usage.metric.is_none() {
            issues.push(issue("usage.metric", "usage must come from a metric"));
        }
        if let Some(r) = &self.request {
            r.validate("request", false, &mut issues);
        }
        if let Some(c) = &self.capacity {
            c.validate("capacity", false, &mut issues);
        }
        if self.usage.from_idle && self.capacity.is_none() {
            issues.push(issue(
                "usage.from_idle",
                "usage = capacity − idle needs a `capacity`",
            ));
        }
        if let Some(p) = &self.pricing {
            p.validate("pricing", &mut issues);
        }
        validate_timing(
            self.allowed_lateness_secs,
            self.late_data,
            self.late_retention_secs,
            self.idle_timeout_secs,
            &mut issues,
        );
        finish(issues)
    }
}

/// Hourly price of one instance type, split into CPU and memory parts the way
/// OpenCost splits custom node prices (in proportion to the default prices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypePrice {
    /// Price of one instance for one hour, USD.
    pub hourly_usd: f64,
    /// CPU cores of the instance type.
    pub cpu_cores: f64,
    /// Memory of the instance type, GiB.
    pub memory_gib: f64,
}

/// Pricing table (OpenCost defaults when fields are omitted).
///
/// ```yaml
/// pricing:
///   cpu_core_hour_usd: 0.031611
///   memory_gib_hour_usd: 0.004237
///   instance_type_label: instance_type
///   instance_types:
///     m5.large: { hourly_usd: 0.096, cpu_cores: 2, memory_gib: 8 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// USD per CPU core-hour.
    #[serde(default = "default_cpu_price")]
    pub cpu_core_hour_usd: f64,
    /// USD per GiB-hour of memory.
    #[serde(default = "default_memory_price")]
    pub memory_gib_hour_usd: f64,
    /// Group label holding the instance type.
    #[serde(default = "default_instance_type_label")]
    pub instance_type_label: String,
    /// Per instance type hourly prices; they override the per-unit prices for
    /// groups whose instance type label is listed.
    #[serde(default)]
    pub instance_types: BTreeMap<String, InstanceTypePrice>,
}

fn default_cpu_price() -> f64 {
    DEFAULT_CPU_CORE_HOUR_USD
}
fn default_memory_price() -> f64 {
    DEFAULT_MEMORY_GIB_HOUR_USD
}
fn default_instance_type_label() -> String {
    DEFAULT_INSTANCE_TYPE_LABEL.to_string()
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            cpu_core_hour_usd: DEFAULT_CPU_CORE_HOUR_USD,
            memory_gib_hour_usd: DEFAULT_MEMORY_GIB_HOUR_USD,
            instance_type_label: DEFAULT_INSTANCE_TYPE_LABEL.to_string(),
            instance_types: BTreeMap::new(),
        }
    }
}

impl PricingConfig {
    fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        let p = |f: &str| {
            if path.is_empty() {
                f.to_string()
            } else {
                format!("{path}.{f}")
            }
        };
        for (name, v) in [
            ("cpu_core_hour_usd", self.cpu_core_hour_usd),
            ("memory_gib_hour_usd", self.memory_gib_hour_usd),
        ] {
            if !v.is_finite() || v < 0.0 {
                issues.push(issue(p(name), "must be a finite price ≥ 0"));
            }
        }
        if !is_label(&self.instance_type_label) {
            issues.push(issue(p("instance_type_label"), "not a valid label name"));
        }
        for (name, t) in &self.instance_types {
            if !t.hourly_usd.is_finite() || t.hourly_usd < 0.0 {
                issues.push(issue(
                    p(&format!("instance_types.{name}.hourly_usd")),
                    "must be a finite price ≥ 0",
                ));
            }
            for (f, v) in [("cpu_cores", t.cpu_cores), ("memory_gib", t.memory_gib)] {
                if !v.is_finite() || v < 0.0 {
                    issues.push(issue(
                        p(&format!("instance_types.{name}.{f}")),
                        "must be a finite number ≥ 0",
                    ));
                }
            }
            if t.cpu_cores <= 0.0 && t.memory_gib <= 0.0 {
                issues.push(issue(
                    p(&format!("instance_types.{name}")),
                    "give cpu_cores or memory_gib (> 0)",
                ));
            }
        }
    }
}

/// Body of a `type: cost` transform: prices the rows of the utilization
/// transforms named in its `inputs` (handled by the caller) with its own table.
///
/// ```yaml
/// transforms:
///   node_cpu_cost:
///     type: cost
///     inputs: [node_cpu]
///     pricing: { cpu_core_hour_usd: 0.04 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostTransformConfig {
    /// The pricing table (OpenCost defaults when omitted).
    #[serde(default)]
    pub pricing: PricingConfig,
}

impl CostTransformConfig {
    /// Checks every field; all problems are returned at once.
    pub fn validate(&self) -> Result<()> {
        let mut issues = Vec::new();
        self.pricing.validate("pricing", &mut issues);
        finish(issues)
    }
}

pub(crate) fn secs_to_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn issue(path: impl Into<String>, reason: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        path: path.into(),
        reason: reason.into(),
    }
}

fn finish(issues: Vec<ConfigIssue>) -> Result<()> {
    if issues.is_empty() {
        Ok(())
    } else {
        Err(EngineError::InvalidConfig { issues })
    }
}

fn is_label(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn validate_selector(
    metric: &str,
    matchers: &[String],
    prefix: &str,
    issues: &mut Vec<ConfigIssue>,
) {
    let valid_metric = {
        let mut c = metric.chars();
        matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_' || x == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    };
    if !valid_metric {
        issues.push(issue(
            format!("{prefix}metric"),
            format!("`{metric}` is not a valid metric name"),
        ));
    }
    for (i, m) in matchers.iter().enumerate() {
        if let Err(e) = LabelMatcher::parse(m) {
            issues.push(issue(format!("{prefix}matchers[{i}]"), e));
        }
    }
}

fn validate_group_by(group_by: &[String], issues: &mut Vec<ConfigIssue>) {
    for (i, l) in group_by.iter().enumerate() {
        if !is_label(l) {
            issues.push(issue(
                format!("group_by[{i}]"),
                format!("`{l}` is not a valid label name"),
            ));
        } else if group_by[..i].contains(l) {
            issues.push(issue(
                format!("group_by[{i}]"),
                format!("`{l}` is listed twice"),
            ));
        }
    }
}

fn validate_timing(
    lateness: u64,
    policy: LateDataPolicy,
    retention: Option<u64>,
    idle: Option<u64>,
    issues: &mut Vec<ConfigIssue>,
) {
    if policy == LateDataPolicy::Drop && retention.is_some() {
        issues.push(issue(
            "late_retention_secs",
            "only applies with `late_data: update`",
        ));
    }
    const MAX: u64 = 366 * 24 * 3600;
    if lateness > MAX {
        issues.push(issue("allowed_lateness_secs", "must be at most 366 days"));
    }
    if retention.is_some_and(|r| r > MAX) {
        issues.push(issue("late_retention_secs", "must be at most 366 days"));
    }
    if idle == Some(0) {
        issues.push(issue(
            "idle_timeout_secs",
            "must be greater than 0 (omit it to disable)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(r: Result<()>) -> Vec<String> {
        match r {
            Err(EngineError::InvalidConfig { issues }) => {
                issues.into_iter().map(|i| i.path).collect()
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(()) => Vec::new(),
        }
    }

    #[test]
    fn window_config_parses_and_validates() {
        let yaml = r#"
metric: http_requests_total
matchers: ['code=~"5.."', 'method!="GET"']
window: { type: sliding, size_secs: 300, slide_secs: 60 }
group_by: [service]
aggregates: [count, rate, p95]
allowed_lateness_secs: 10
late_data: drop
idle_timeout_secs: 30
"#;
        let c: WindowTransformConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(c.late_data, LateDataPolicy::Drop);
        assert_eq!(c.window.size_ms(), 300_000);
        assert_eq!(c.window.slide_ms(), 60_000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn window_config_errors_name_their_fields() {
        let c = WindowTransformConfig {
            metric: "bad metric".into(),
            matchers: vec!["ok=\"1\"".into(), "mode=~\"(\"".into()],
            window: WindowSpec::Sliding {
                size_secs: 60,
                slide_secs: 120,
            },
            group_by: vec!["a".into(), "a".into(), "1x".into()],
            aggregates: vec![AggregateKind::Avg, AggregateKind::Avg],
            allowed_lateness_secs: 0,
            late_data: LateDataPolicy::Update,
            late_retention_secs: None,
            idle_timeout_secs: Some(0),
        };
        assert_eq!(
            paths(c.validate()),
            vec![
                "metric",
                "matchers[1]",
                "window.slide_secs",
                "group_by[1]",
                "group_by[2]",
                "aggregates[1]",
                "idle_timeout_secs"
            ]
        );
        let mut c4 = c.clone();
        c4.late_data = LateDataPolicy::Drop;
        c4.late_retention_secs = Some(10);
        assert!(paths(c4.validate()).contains(&"late_retention_secs".to_string()));
        let zero = WindowSpec::Tumbling { size_secs: 0 };
        let mut c2 = c.clone();
        c2.window = zero;
        assert!(paths(c2.validate()).contains(&"window.size_secs".to_string()));
        let mut c3 = c;
        c3.window = WindowSpec::Sliding {
            size_secs: 100,
            slide_secs: 30,
        };
        assert!(paths(c3.validate()).contains(&"window.slide_secs".to_string()));
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_rejected_by_serde() {
        let bad = [
            "metric: m\nwindow: {type: tumbling, size_secs: 60}\naggregates: [avg]\nsize: 3\n",
            "metric: m\nwindow: {type: tumbling, size_secs: 60, slide_secs: 5}\naggregates: [avg]\n",
            "metric: m\nwindow: {type: hopping, size_secs: 60}\naggregates: [avg]\n",
            "metric: m\nwindow: {type: tumbling, size_secs: 60}\naggregates: [median]\n",
            "metric: m\nwindow: {type: tumbling, size_secs: 60}\naggregates: [avg]\nlate_data: keep\n",
        ];
        for y in bad {
            assert!(
                serde_yaml::from_str::<WindowTransformConfig>(y).is_err(),
                "accepted: {y}"
            );
        }
    }

    /// The shape the pipeline file uses: an enum tagged by `type` whose
    /// variants are these bodies (`inputs` removed by the caller first).
    #[test]
    fn bodies_work_as_variants_of_a_type_tagged_enum() {
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Transform {
            Window(WindowTransformConfig),
            Utilization(UtilizationTransformConfig),
            Cost(CostTransformConfig),
        }
        let w: Transform = serde_yaml::from_str(
            "type: window\nmetric: m\nwindow: { type: tumbling, size_secs: 60 }\naggregates: [avg]\n",
        )
        .unwrap();
        assert!(matches!(&w, Transform::Window(c) if c.metric == "m"));
        let c: Transform = serde_yaml::from_str("type: cost\n").unwrap();
        assert!(matches!(&c, Transform::Cost(c) if c.pricing == PricingConfig::default()));
        let u: std::result::Result<Transform, _> = serde_yaml::from_str(
            "type: utilization\nwindow: { type: tumbling, size_secs: 60 }\nusage: { metric: m }\n",
        );
        assert!(
            matches!(&u, Ok(Transform::Utilization(c)) if c.usage.metric.as_deref() == Some("m"))
        );
        let typo = serde_yaml::from_str::<Transform>(
            "type: window\nmetric: m\nwindow: { type: tumbling, size_secs: 60 }\naggregates: [avg]\nsize_sec: 1\n",
        );
        assert!(typo.is_err());
    }

    #[test]
    fn utilization_and_cost_configs_validate() {
        let yaml = r#"
resource: cpu
window: { type: tumbling, size_secs: 60 }
group_by: [instance]
usage: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: rate, across: sum, from_idle: true }
capacity: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: last, across: count }
request: { value: 2, overrides: [ { match: { instance: "big:9100" }, value: 8 } ] }
pricing: { cpu_core_hour_usd: 0.05 }
"#;
        let c: UtilizationTransformConfig = serde_yaml::from_str(yaml).unwrap();
        assert!(c.validate().is_ok());
        let req = c.request.clone().unwrap();
        let big = vec![("instance".to_string(), "big:9100".to_string())];
        assert_eq!(req.static_value(&big), Some(8.0));
        assert_eq!(req.static_value(&[]), Some(2.0));
        let p = c.pricing.clone().unwrap();
        assert_eq!(p.memory_gib_hour_usd, DEFAULT_MEMORY_GIB_HOUR_USD);

        let mut bad = c.clone();
        bad.capacity = None;
        bad.request = Some(MeasureConfig {
            metric: Some("kube_pod_container_resource_requests".into()),
            value: Some(1.0),
            from_idle: true,
            scale: 0.0,
            ..req
        });
        let ps = paths(bad.validate());
        for want in [
            "request.value",
            "request.overrides",
            "request.scale",
            "request.from_idle",
            "usage.from_idle",
        ] {
            assert!(ps.contains(&want.to_string()), "{want} missing in {ps:?}");
        }

        let cost: CostTransformConfig = serde_yaml::from_str(
            "pricing: { instance_types: { m5.large: { hourly_usd: -1, cpu_cores: 2, memory_gib: 8 } } }",
        )
        .unwrap();
        assert_eq!(
            paths(cost.validate()),
            vec!["pricing.instance_types.m5.large.hourly_usd"]
        );
        assert!(CostTransformConfig::default().validate().is_ok());
    }
}
