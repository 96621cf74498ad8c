//! Scaling policy configuration (YAML), its defaults and its validation.
//!
//! A policy file lists scaling *targets*. Each target says what is scaled (`kind`), how the
//! load is measured (`metric`), how much load one replica serves (`capacity_per_replica` at
//! `target_utilization_percent`), the hard limits (`min_replicas`, `max_replicas`, steps,
//! cooldowns, stabilization), scheduled overrides (cron, like AWS scheduled actions), the
//! recommender that decides, and whether scalecast only records (`forecast_only`, the default)
//! or also acts (`forecast_and_scale`).
//!
//! Every struct uses `deny_unknown_fields`: a typo is a parse error, not a silently ignored
//! setting. Units are part of field names (`*_secs`, `*_percent`, `*_gib`, `*_usd`).
//! [`PolicyFile::validate`] reports every problem at once, each with the dotted field path.
//!
//! ```yaml
//! targets:
//!   - name: web
//!     kind: k8s_deployment
//!     namespace: prod
//!     deployment: web
//!     metric: { kind: cpu, name: container_cpu_usage_cores, labels: { app: web } }
//!     capacity_per_replica: 2.0          # cores per pod
//!     target_utilization_percent: 70
//!     min_replicas: 2
//!     max_replicas: 40
//!     recommender: { kind: predictive, quantile: 0.9, provisioning_lead_time_secs: 300 }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::{RecommendError, Result};

/// OpenCost's default CPU price, USD per core-hour.
pub const DEFAULT_CPU_CORE_HOUR_USD: f64 = 0.031611;
/// OpenCost's default memory price, USD per GiB-hour.
pub const DEFAULT_MEMORY_GIB_HOUR_USD: f64 = 0.004237;

/// Longest accepted scheduled-override duration (one leap year).
pub const MAX_SCHEDULE_SECS: u64 = 366 * 86_400;

/// A policy file: one or more scaling targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The targets this file configures; names must be unique.
    pub targets: Vec<TargetPolicy>,
}

/// What kind of thing a target scales (decides which actuator of issue 9 may act on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// An AWS Auto Scaling group (`asg_name` required).
    AwsAsg,
    /// A Kubernetes Deployment's scale subresource (`namespace`, `deployment` required).
    K8sDeployment,
    /// Publish-only: recommendations are recorded and published, never executed.
    #[default]
    None,
}

/// Whether recommendations are only recorded or also executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Shadow mode (default): record and publish, never call an actuator.
    #[default]
    ForecastOnly,
    /// Record and execute through the target's actuator.
    ForecastAndScale,
}

impl Mode {
    /// The YAML/JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ForecastOnly => "forecast_only",
            Mode::ForecastAndScale => "forecast_and_scale",
        }
    }
}

/// What the load metric measures; decides the reactive thresholds' defaults and units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// CPU: thresholds are utilization percent (default 70 / 30).
    Cpu,
    /// Memory: thresholds are utilization percent (default 80 / 40).
    Memory,
    /// Request rate: thresholds are requests per second per replica (default 1000 / 500).
    Requests,
    /// Anything else: thresholds are utilization percent (default 70 / 30).
    #[default]
    Custom,
}

impl MetricKind {
    /// Default (scale-up above, scale-down below) thresholds of the reactive recommender.
    pub fn default_thresholds(self) -> (f64, f64) {
        match self {
            MetricKind::Cpu | MetricKind::Custom => (70.0, 30.0),
            MetricKind::Memory => (80.0, 40.0),
            MetricKind::Requests => (1000.0, 500.0),
        }
    }

    /// True when thresholds are per-replica rates (requests) rather than utilization percent.
    pub fn thresholds_per_replica(self) -> bool {
        matches!(self, MetricKind::Requests)
    }
}

/// Where the load comes from: either a SQL query over the aggregates, or a metric name plus
/// label matchers. The value must be the *total* load of the target in the same unit as
/// [`TargetPolicy::capacity_per_replica`] (cores, rps, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// What the metric measures (default `custom`).
    #[serde(default)]
    pub kind: MetricKind,
    /// A SQL query over the aggregate tables returning `(ts, value)` rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A metric name (alternative to `sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Exact-match label selectors applied with `name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A scheduled override: while active, the minimum (and optionally maximum) replica count is
/// replaced, like an AWS scheduled action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledOverride {
    /// Name shown in reasons.
    pub name: String,
    /// Cron expression, evaluated in UTC. Five fields (`min hour dom month dow`, as in AWS and
    /// crontab) or six/seven fields with seconds (and year) first, as the `cron` crate accepts.
    pub cron: String,
    /// How long the override stays active after each fire time.
    pub duration_secs: u64,
    /// Minimum replicas while active.
    pub min_replicas: u32,
    /// Optional maximum replicas while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
}

impl ScheduledOverride {
    /// Parses [`ScheduledOverride::cron`] into a schedule (five fields get a `0` seconds
    /// field prepended).
    pub fn schedule(&self) -> Result<cron::Schedule> {
        parse_cron(&self.cron)
    }

    /// True when a fire time falls within `(now - duration_secs, now]`.
    pub fn is_active(&self, schedule: &cron::Schedule, now: DateTime<Utc>) -> bool {
        let dur = crate::recommend::limits::secs(self.duration_secs);
        let Some(from) = now.checked_sub_signed(dur) else {
            return false;
        };
        // `after` is exclusive of `from`; a fire exactly at `from` has already expired.
        match schedule.after(&from).next() {
            Some(fire) => fire <= now,
            None => false,
        }
    }
}

/// Parses a cron expression; five-field expressions get a `0` seconds field prepended.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expr}")
    } else {
        expr.to_string()
    };
    cron::Schedule::from_str(&full)
        .map_err(|e| RecommendError::Policy(format!("cron expression {expr:?}: {e}")))
}

/// Which reactive recommender backs up the predictive one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReactiveFallback {
    /// HPA-like target tracking (default; what AWS combines predictive scaling with).
    #[default]
    Hpa,
    /// Threshold rules.
    Reactive,
    /// Predictive only (not recommended: a surprise spike is not caught).
    None,
}

/// Settings of the threshold recommender (seed guide's rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReactiveConfig {
    /// Scale up when above (percent utilization, or rps per replica for `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_threshold: Option<f64>,
    /// Scale down when below (same unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_threshold: Option<f64>,
    /// Replicas added per scale-up (default 1; ignored when `scale_up_factor` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_increment: Option<u32>,
    /// Replicas removed per scale-down (default 1; ignored when `scale_down_factor` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_increment: Option<u32>,
    /// Multiply replicas by this on scale-up (seed framework: 1.5), rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_factor: Option<f64>,
    /// Multiply replicas by this on scale-down (seed framework: 0.75), rounded down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_factor: Option<f64>,
}

/// Settings of the HPA-like recommender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaConfig {
    /// No change while `|metric / target - 1| <= tolerance` (default 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            tolerance: default_tolerance(),
        }
    }
}

/// Settings of the predictive recommender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictiveConfig {
    /// Forecast model name (see `crate::forecast::model_by_name`), default `auto`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Forecast quantile used for sizing, in (0, 1) (default 0.9 = p90).
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// Time from a decision to usable capacity (instance boot, pod start), default 300 s.
    #[serde(default = "default_lead_time")]
    pub provisioning_lead_time_secs: u64,
    /// Look-ahead window; default = lead time + the evaluation interval, so the capacity
    /// decided now covers demand until the next decision's capacity is usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead_secs: Option<u64>,
    /// The reactive recommender combined as `max(predictive, reactive)` (default `hpa`).
    #[serde(default)]
    pub reactive: ReactiveFallback,
    /// Tolerance of the HPA-like fallback (default 0: the current load always fits at the
    /// target utilization; HPA's own 0.1 would let the fleet run up to 10 % over target).
    #[serde(default)]
    pub reactive_tolerance: f64,
    /// History needed before forecasts are trusted (AWS: 24 h). Before that only the
    /// reactive part decides.
    #[serde(default = "default_min_history")]
    pub min_history_secs: u64,
    /// Refit the model this often (AWS refreshes forecasts every 6 h); in between every new
    /// value only updates the model's state.
    #[serde(default = "default_refit")]
    pub refit_every_secs: u64,
    /// Longest history a model is fitted on (AWS uses up to 14 days).
    #[serde(default = "default_max_history")]
    pub max_history_secs: u64,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        PredictiveConfig {
            model: default_model(),
            quantile: default_quantile(),
            provisioning_lead_time_secs: default_lead_time(),
            lookahead_secs: None,
            reactive: ReactiveFallback::default(),
            reactive_tolerance: 0.0,
            min_history_secs: default_min_history(),
            refit_every_secs: default_refit(),
            max_history_secs: default_max_history(),
        }
    }
}

/// Settings of the VPA-like vertical recommender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerticalConfig {
    /// Usage quantile for the CPU request target (default 0.9).
    #[serde(default = "default_quantile")]
    pub cpu_quantile: f64,
    /// Usage quantile for the memory request target (default 0.9).
    #[serde(default = "default_quantile")]
    pub memory_quantile: f64,
    /// Safety margin added to the quantile (default 15 %).
    #[serde(default = "default_margin")]
    pub safety_margin_percent: f64,
    /// Half-life of the usage sample weights (default 24 h, as VPA).
    #[serde(default = "default_half_life")]
    pub half_life_secs: u64,
    /// Lower bound of the CPU request (default 0.025 cores = 25 millicores).
    #[serde(default = "default_min_cpu")]
    pub min_cpu_cores: f64,
    /// Upper bound of the CPU request (default 64 cores).
    #[serde(default = "default_max_cpu")]
    pub max_cpu_cores: f64,
    /// Lower bound of the memory request (default 250 MiB).
    #[serde(default = "default_min_mem")]
    pub min_memory_gib: f64,
    /// Upper bound of the memory request (default 256 GiB).
    #[serde(default = "default_max_mem")]
    pub max_memory_gib: f64,
    /// Per-replica CPU usage metric (cores), used by the caller to fetch samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage: Option<MetricSpec>,
    /// Per-replica memory usage metric (GiB), used by the caller to fetch samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage: Option<MetricSpec>,
}

impl Default for VerticalConfig {
    fn default() -> Self {
        VerticalConfig {
            cpu_quantile: default_quantile(),
            memory_quantile: default_quantile(),
            safety_margin_percent: default_margin(),
            half_life_secs: default_half_life(),
            min_cpu_cores: default_min_cpu(),
            max_cpu_cores: default_max_cpu(),
            min_memory_gib: default_min_mem(),
            max_memory_gib: default_max_mem(),
            cpu_usage: None,
            memory_usage: None,
        }
    }
}

/// Settings of the hybrid recommender: replicas and per-replica requests chosen together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    /// How requests are sized.
    #[serde(default)]
    pub vertical: VerticalConfig,
    /// When set, replicas follow the forecast; otherwise HPA-like on the current load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictive: Option<PredictiveConfig>,
}

/// The recommender that decides for a target, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecommenderConfig {
    /// Threshold rules.
    Reactive(ReactiveConfig),
    /// HPA-like target tracking (default).
    Hpa(HpaConfig),
    /// Forecast-driven, combined with a reactive fallback.
    Predictive(PredictiveConfig),
    /// CPU/memory requests only (replicas unchanged).
    Vertical(VerticalConfig),
    /// Replicas and requests together.
    Hybrid(HybridConfig),
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        RecommenderConfig::Hpa(HpaConfig::default())
    }
}

impl RecommenderConfig {
    /// The recommender's name as used in records.
    pub fn name(&self) -> &'static str {
        match self {
            RecommenderConfig::Reactive(_) => "reactive",
            RecommenderConfig::Hpa(_) => "hpa",
            RecommenderConfig::Predictive(_) => "predictive",
            RecommenderConfig::Vertical(_) => "vertical",
            RecommenderConfig::Hybrid(_) => "hybrid",
        }
    }
}

/// Per-replica resources (current requests), used for cost and by the vertical recommender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores per replica.
    pub cpu_cores: f64,
    /// Memory GiB per replica.
    pub memory_gib: f64,
}

/// Prices used for the expected cost of a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Price of one replica-hour; when absent it is derived from `resources` and the
    /// per-resource prices below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_hour_usd: Option<f64>,
    /// USD per core-hour (OpenCost default 0.031611).
    #[serde(default = "default_cpu_price")]
    pub cpu_core_hour_usd: f64,
    /// USD per GiB-hour (OpenCost default 0.004237).
    #[serde(default = "default_mem_price")]
    pub memory_gib_hour_usd: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            replica_hour_usd: None,
            cpu_core_hour_usd: DEFAULT_CPU_CORE_HOUR_USD,
            memory_gib_hour_usd: DEFAULT_MEMORY_GIB_HOUR_USD,
        }
    }
}

/// One scaling target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    /// Unique target name.
    pub name: String,
    /// What is scaled (default `none`: publish-only).
    #[serde(default)]
    pub kind: TargetKind,
    /// AWS Auto Scaling group name (`kind: aws_asg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asg_name: Option<String>,
    /// AWS region (`kind: aws_asg`; default from the credential chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Kubernetes namespace (`kind: k8s_deployment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kubernetes Deployment name (`kind: k8s_deployment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Record only (default) or also act.
    #[serde(default)]
    pub mode: Mode,
    /// The load metric (total load of the target).
    pub metric: MetricSpec,
    /// Load one replica serves at 100 % utilization, in the metric's unit.
    pub capacity_per_replica: f64,
    /// Utilization the fleet is sized for (default 70 %).
    #[serde(default = "default_target_util")]
    pub target_utilization_percent: f64,
    /// Never recommend fewer replicas.
    pub min_replicas: u32,
    /// Never recommend more replicas.
    pub max_replicas: u32,
    /// Largest scale-up per decision, in replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step_up_replicas: Option<u32>,
    /// Largest scale-up per decision, in percent of current replicas. With both limits the
    /// larger step is allowed (HPA's `selectPolicy: Max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step_up_percent: Option<f64>,
    /// Largest scale-down per decision, in replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step_down_replicas: Option<u32>,
    /// Largest scale-down per decision, in percent of current replicas (larger step wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step_down_percent: Option<f64>,
    /// No scale-down sooner than this after the previous scaling action (default 300 s).
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// No scale-up sooner than this after the previous scale-up (default 0: scale-ups are
    /// never delayed by a cooldown).
    #[serde(default)]
    pub scale_up_cooldown_secs: u64,
    /// Scale down only to the highest recommendation of this window (HPA, default 300 s).
    #[serde(default = "default_cooldown")]
    pub scale_down_stabilization_secs: u64,
    /// How often decisions are taken (default 60 s).
    #[serde(default = "default_interval")]
    pub evaluation_interval_secs: u64,
    /// Scheduled minimum-capacity overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduledOverride>,
    /// The recommender (default HPA-like).
    #[serde(default)]
    pub recommender: RecommenderConfig,
    /// Current per-replica requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Prices.
    #[serde(default)]
    pub pricing: Pricing,
}

/// One validation problem: the dotted field path and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path, e.g. `targets[0].max_replicas`.
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn default_tolerance() -> f64 {
    0.1
}
fn default_model() -> String {
    "auto".to_string()
}
fn default_quantile() -> f64 {
    0.9
}
fn default_lead_time() -> u64 {
    300
}
fn default_min_history() -> u64 {
    86_400
}
fn default_refit() -> u64 {
    21_600
}
fn default_max_history() -> u64 {
    14 * 86_400
}
fn default_margin() -> f64 {
    15.0
}
fn default_half_life() -> u64 {
    86_400
}
fn default_min_cpu() -> f64 {
    0.025
}
fn default_max_cpu() -> f64 {
    64.0
}
fn default_min_mem() -> f64 {
    250.0 / 1024.0
}
fn default_max_mem() -> f64 {
    256.0
}
fn default_cpu_price() -> f64 {
    DEFAULT_CPU_CORE_HOUR_USD
}
fn default_mem_price() -> f64 {
    DEFAULT_MEMORY_GIB_HOUR_USD
}
fn default_target_util() -> f64 {
    70.0
}
fn default_cooldown() -> u64 {
    300
}
fn default_interval() -> u64 {
    60
}

impl PolicyFile {
    /// Parses YAML (unknown fields are errors). Does not validate; call [`Self::validate`].
    pub fn from_yaml_str(text: &str) -> Result<Self> {
        serde_yaml::from_str(text).map_err(|e| RecommendError::Policy(e.to_string()))
    }

    /// Reads and parses a YAML file, then validates it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| RecommendError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file = Self::from_yaml_str(&text)
            .map_err(|e| RecommendError::Policy(format!("{}: {e}", path.display())))?;
        file.validate().map_err(|errs| {
            RecommendError::Invalid(errs.into_iter().map(|e| e.to_string()).collect())
        })?;
        Ok(file)
    }

    /// Checks every target; returns all problems, each naming its field.
    pub fn validate(&self) -> std::result::Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        if self.targets.is_empty() {
            errs.push(FieldError {
                field: "targets".into(),
                reason: "at least one target is required".into(),
            });
        }
        let mut seen = BTreeMap::new();
        for (i, t) in self.targets.iter().enumerate() {
            let prefix = format!("targets[{i}]");
            if let Some(j) = seen.insert(t.name.clone(), i) {
                errs.push(FieldError {
                    field: format!("{prefix}.name"),
                    reason: format!("duplicate target name {:?} (also targets[{j}])", t.name),
                });
            }
            t.validate_into(&prefix, &mut errs);
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

struct Check<'a> {
    prefix: &'a str,
    errs: &'a mut Vec<FieldError>,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.errs.push(FieldError {
            field: format!("{}.{field}", self.prefix),
            reason: reason.into(),
        });
    }
    fn positive(&mut self, field: &str, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.fail(field, format!("must be a finite number > 0, got {v}"));
        }
    }
    fn quantile(&mut self, field: &str, q: f64) {
        if !(q.is_finite() && q > 0.0 && q < 1.0) {
            self.fail(
                field,
                format!("must be a quantile strictly between 0 and 1, got {q}"),
            );
        }
    }
    fn percent(&mut self, field: &str, v: Option<f64>) {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            self.fail(field, format!("must be a finite percentage > 0, got {v}"));
        }
    }
}

impl TargetPolicy {
    /// Checks this target alone; problems are reported with `prefix` (e.g. `targets[0]`).
    pub fn validate(&self, prefix: &str) -> std::result::Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        self.validate_into(prefix, &mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    fn validate_into(&self, prefix: &str, errs: &mut Vec<FieldError>) {
        let mut c = Check { prefix, errs };
        if self.name.trim().is_empty() {
            c.fail("name", "must not be empty");
        }
        match self.kind {
            TargetKind::AwsAsg => {
                if self.asg_name.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    c.fail("asg_name", "required when kind is aws_asg");
                }
            }
            TargetKind::K8sDeployment => {
                if self
                    .namespace
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    c.fail("namespace", "required when kind is k8s_deployment");
                }
                if self
                    .deployment
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    c.fail("deployment", "required when kind is k8s_deployment");
                }
            }
            TargetKind::None => {
                if self.mode == Mode::ForecastAndScale {
                    c.fail(
                        "mode",
                        "forecast_and_scale needs an actuator; kind none is publish-only",
                    );
                }
            }
        }
        match (&self.metric.sql, &self.metric.name) {
            (Some(_), Some(_)) => c.fail("metric", "give either sql or name, not both"),
            (None, None) => c.fail("metric", "give sql or name"),
            (Some(q), None) if q.trim().is_empty() => c.fail("metric.sql", "must not be empty"),
            (None, Some(n)) if n.trim().is_empty() => c.fail("metric.name", "must not be empty"),
            _ => {}
        }
        if self.metric.sql.is_some() && !self.metric.labels.is_empty() {
            c.fail("metric.labels", "labels only apply with name, not with sql");
        }
        c.positive("capacity_per_replica", self.capacity_per_replica);
        let u = self.target_utilization_percent;
        if !(u.is_finite() && u > 0.0 && u <= 100.0) {
            c.fail(
                "target_utilization_percent",
                format!("must be in (0, 100], got {u}"),
            );
        }
        if self.max_replicas == 0 {
            c.fail("max_replicas", "must be at least 1");
        }
        if self.min_replicas > self.max_replicas {
            c.fail(
                "min_replicas",
                format!(
                    "min_replicas {} is above max_replicas {}",
                    self.min_replicas, self.max_replicas
                ),
            );
        }
        if self.max_step_up_replicas == Some(0) {
            c.fail(
                "max_step_up_replicas",
                "must be at least 1 (omit for no limit)",
            );
        }
        if self.max_step_down_replicas == Some(0) {
            c.fail(
                "max_step_down_replicas",
                "must be at least 1 (omit for no limit)",
            );
        }
        c.percent("max_step_up_percent", self.max_step_up_percent);
        c.percent("max_step_down_percent", self.max_step_down_percent);
        if let Some(p) = self.max_step_down_percent
            && p > 100.0
        {
            c.fail(
                "max_step_down_percent",
                format!("must be at most 100, got {p}"),
            );
        }
        if self.evaluation_interval_secs == 0 {
            c.fail("evaluation_interval_secs", "must be at least 1");
        }
        for (i, s) in self.schedules.iter().enumerate() {
            let f = format!("schedules[{i}]");
            if let Err(e) = s.schedule() {
                c.fail(&format!("{f}.cron"), e.to_string());
            }
            if s.duration_secs == 0 || s.duration_secs > MAX_SCHEDULE_SECS {
                c.fail(
                    &format!("{f}.duration_secs"),
                    format!(
                        "must be between 1 and {MAX_SCHEDULE_SECS} (a year), got {}",
                        s.duration_secs
                    ),
                );
            }
            if s.min_replicas > self.max_replicas && s.max_replicas.is_none() {
                c.fail(
                    &format!("{f}.min_replicas"),
                    format!(
                        "{} is above the target's max_replicas {} (set max_replicas on the schedule to raise it)",
                        s.min_replicas, self.max_replicas
                    ),
                );
            }
            if let Some(mx) = s.max_replicas
                && mx < s.min_replicas
            {
                c.fail(
                    &format!("{f}.max_replicas"),
                    format!(
                        "{mx} is below the schedule's min_replicas {}",
                        s.min_replicas
                    ),
                );
            }
        }
        if let Some(r) = &self.resources {
            c.positive("resources.cpu_cores", r.cpu_cores);
            c.positive("resources.memory_gib", r.memory_gib);
        }
        if let Some(p) = self.pricing.replica_hour_usd
            && !(p.is_finite() && p >= 0.0)
        {
            c.fail("pricing.replica_hour_usd", format!("must be >= 0, got {p}"));
        }
        for (f, v) in [
            ("pricing.cpu_core_hour_usd", self.pricing.cpu_core_hour_usd),
            (
                "pricing.memory_gib_hour_usd",
                self.pricing.memory_gib_hour_usd,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                c.fail(f, format!("must be >= 0, got {v}"));
            }
        }
        match &self.recommender {
            RecommenderConfig::Reactive(r) => validate_reactive(&mut c, r, self.metric.kind),
            RecommenderConfig::Hpa(h) => validate_hpa(&mut c, h),
            RecommenderConfig::Predictive(p) => validate_predictive(&mut c, "recommender", p),
            RecommenderConfig::Vertical(v) => {
                validate_vertical(&mut c, "recommender", v);
                if self.resources.is_none() {
                    c.fail("resources", "required by the vertical recommender");
                }
            }
            RecommenderConfig::Hybrid(h) => {
                validate_vertical(&mut c, "recommender.vertical", &h.vertical);
                if let Some(p) = &h.predictive {
                    validate_predictive(&mut c, "recommender.predictive", p);
                }
                if self.resources.is_none() {
                    c.fail("resources", "required by the hybrid recommender");
                }
            }
        }
    }

    /// Target utilization as a fraction (0, 1].
    pub fn target_utilization(&self) -> f64 {
        self.target_utilization_percent / 100.0
    }

    /// Load the fleet may carry per replica at the target utilization.
    pub fn usable_capacity_per_replica(&self) -> f64 {
        self.capacity_per_replica * self.target_utilization()
    }

    /// Replicas needed to carry `load` at the target utilization (not clamped).
    pub fn replicas_for_load(&self, load: f64) -> u32 {
        replicas_needed(load, self.usable_capacity_per_replica())
    }

    /// Cost of one replica-hour, if it can be known.
    pub fn replica_hour_usd(&self) -> Option<f64> {
        self.pricing.replica_hour_usd.or_else(|| {
            self.resources.as_ref().map(|r| {
                r.cpu_cores * self.pricing.cpu_core_hour_usd
                    + r.memory_gib * self.pricing.memory_gib_hour_usd
            })
        })
    }

    /// A minimal valid policy, handy for tests and the simulator's baselines.
    pub fn example(name: &str, capacity_per_replica: f64, min: u32, max: u32) -> Self {
        TargetPolicy {
            name: name.to_string(),
            kind: TargetKind::None,
            asg_name: None,
            region: None,
            namespace: None,
            deployment: None,
            mode: Mode::ForecastOnly,
            metric: MetricSpec {
                kind: MetricKind::Custom,
                sql: None,
                name: Some("load".into()),
                labels: BTreeMap::new(),
            },
            capacity_per_replica,
            target_utilization_percent: default_target_util(),
            min_replicas: min,
            max_replicas: max,
            max_step_up_replicas: None,
            max_step_up_percent: None,
            max_step_down_replicas: None,
            max_step_down_percent: None,
            cooldown_secs: default_cooldown(),
            scale_up_cooldown_secs: 0,
            scale_down_stabilization_secs: default_cooldown(),
            evaluation_interval_secs: default_interval(),
            schedules: Vec::new(),
            recommender: RecommenderConfig::default(),
            resources: None,
            pricing: Pricing::default(),
        }
    }
}

/// `ceil(load / usable)`, 0 for non-positive load; saturates at `u32::MAX`.
pub fn replicas_needed(load: f64, usable_per_replica: f64) -> u32 {
    if !(load.is_finite() && load > 0.0 && usable_per_replica > 0.0) {
        return 0;
    }
    // Guard against 2.0000000001 from float noise turning into 3.
    let r = load / usable_per_replica;
    let c = (r - 1e-9).ceil();
    if c >= u32::MAX as f64 {
        u32::MAX
    } else {
        c.max(0.0) as u32
    }
}

fn validate_reactive(c: &mut Check<'_>, r: &ReactiveConfig, kind: MetricKind) {
    let (du, dd) = kind.default_thresholds();
    let up = r.scale_up_threshold.unwrap_or(du);
    let down = r.scale_down_threshold.unwrap_or(dd);
    if !(up.is_finite() && up > 0.0) {
        c.fail(
            "recommender.scale_up_threshold",
            format!("must be > 0, got {up}"),
        );
    }
    if !(down.is_finite() && down >= 0.0) {
        c.fail(
            "recommender.scale_down_threshold",
            format!("must be >= 0, got {down}"),
        );
    }
    if down >= up {
        c.fail(
            "recommender.scale_down_threshold",
            format!("{down} must be below scale_up_threshold {up}"),
        );
    }
    if r.scale_up_increment == Some(0) {
        c.fail("recommender.scale_up_increment", "must be at least 1");
    }
    if r.scale_down_increment == Some(0) {
        c.fail("recommender.scale_down_increment", "must be at least 1");
    }
    if let Some(f) = r.scale_up_factor
        && !(f.is_finite() && f > 1.0)
    {
        c.fail(
            "recommender.scale_up_factor",
            format!("must be > 1, got {f}"),
        );
    }
    if let Some(f) = r.scale_down_factor
        && !(f.is_finite() && f > 0.0 && f < 1.0)
    {
        c.fail(
            "recommender.scale_down_factor",
            format!("must be in (0, 1), got {f}"),
        );
    }
}

fn validate_hpa(c: &mut Check<'_>, h: &HpaConfig) {
    if !(h.tolerance.is_finite() && h.tolerance >= 0.0 && h.tolerance < 1.0) {
        c.fail(
            "recommender.tolerance",
            format!("must be in [0, 1), got {}", h.tolerance),
        );
    }
}

fn validate_predictive(c: &mut Check<'_>, at: &str, p: &PredictiveConfig) {
    c.quantile(&format!("{at}.quantile"), p.quantile);
    if p.model.trim().is_empty() {
        c.fail(&format!("{at}.model"), "must not be empty");
    }
    if !(p.reactive_tolerance.is_finite() && (0.0..1.0).contains(&p.reactive_tolerance)) {
        c.fail(
            &format!("{at}.reactive_tolerance"),
            format!("must be in [0, 1), got {}", p.reactive_tolerance),
        );
    }
    if p.refit_every_secs == 0 {
        c.fail(&format!("{at}.refit_every_secs"), "must be at least 1");
    }
    if p.max_history_secs < p.min_history_secs {
        c.fail(
            &format!("{at}.max_history_secs"),
            format!(
                "{} is below min_history_secs {}",
                p.max_history_secs, p.min_history_secs
            ),
        );
    }
    if p.lookahead_secs == Some(0) {
        c.fail(
            &format!("{at}.lookahead_secs"),
            "must be at least 1 (omit for the default)",
        );
    }
}

fn validate_vertical(c: &mut Check<'_>, at: &str, v: &VerticalConfig) {
    c.quantile(&format!("{at}.cpu_quantile"), v.cpu_quantile);
    c.quantile(&format!("{at}.memory_quantile"), v.memory_quantile);
    if !(v.safety_margin_percent.is_finite() && v.safety_margin_percent >= 0.0) {
        c.fail(
            &format!("{at}.safety_margin_percent"),
            format!("must be >= 0, got {}", v.safety_margin_percent),
        );
    }
    if v.half_life_secs == 0 {
        c.fail(&format!("{at}.half_life_secs"), "must be at least 1");
    }
    c.positive(&format!("{at}.min_cpu_cores"), v.min_cpu_cores);
    c.positive(&format!("{at}.min_memory_gib"), v.min_memory_gib);
    if v.max_cpu_cores.is_nan() || v.max_cpu_cores < v.min_cpu_cores {
        c.fail(
            &format!("{at}.max_cpu_cores"),
            format!(
                "{} is below min_cpu_cores {}",
                v.max_cpu_cores, v.min_cpu_cores
            ),
        );
    }
    if v.max_memory_gib.is_nan() || v.max_memory_gib < v.min_memory_gib {
        c.fail(
            &format!("{at}.max_memory_gib"),
            format!(
                "{} is below min_memory_gib {}",
                v.max_memory_gib, v.min_memory_gib
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FULL: &str = r#"
targets:
  - name: web
    kind: k8s_deployment
    namespace: prod
    deployment: web
    mode: forecast_and_scale
    metric: { kind: cpu, name: container_cpu_usage_cores, labels: { app: web } }
    capacity_per_replica: 2.0
    target_utilization_percent: 60
    min_replicas: 2
    max_replicas: 40
    max_step_up_replicas: 4
    max_step_up_percent: 100
    max_step_down_percent: 50
    cooldown_secs: 120
    scale_down_stabilization_secs: 300
    schedules:
      - { name: business-hours, cron: "0 8 * * Mon-Fri", duration_secs: 36000, min_replicas: 6 }
    recommender: { kind: predictive, model: ets, quantile: 0.95, provisioning_lead_time_secs: 240 }
    resources: { cpu_cores: 2, memory_gib: 4 }
  - name: batch
    kind: aws_asg
    asg_name: batch-asg
    metric: { kind: requests, sql: "SELECT ts, value FROM utilization_5m WHERE target = 'batch'" }
    capacity_per_replica: 1000
    min_replicas: 1
    max_replicas: 10
    recommender: { kind: reactive, scale_up_factor: 1.5, scale_down_factor: 0.75 }
"#;

    fn errors_of(yaml: &str) -> Vec<FieldError> {
        match PolicyFile::from_yaml_str(yaml) {
            Ok(f) => f.validate().err().unwrap_or_default(),
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn has_field(errs: &[FieldError], field: &str) -> bool {
        errs.iter().any(|e| e.field == field)
    }

    #[test]
    fn full_policy_parses_and_validates() {
        let f = PolicyFile::from_yaml_str(FULL).expect("parses");
        assert_eq!(f.validate(), Ok(()));
        let web = &f.targets[0];
        assert_eq!(web.kind, TargetKind::K8sDeployment);
        assert_eq!(web.mode, Mode::ForecastAndScale);
        assert_eq!(web.metric.kind, MetricKind::Cpu);
        assert_eq!(
            web.metric.labels.get("app").map(String::as_str),
            Some("web")
        );
        match &web.recommender {
            RecommenderConfig::Predictive(p) => {
                assert_eq!(p.model, "ets");
                assert_eq!(p.quantile, 0.95);
                assert_eq!(p.provisioning_lead_time_secs, 240);
                assert_eq!(p.reactive, ReactiveFallback::Hpa);
            }
            other => panic!("wrong recommender {other:?}"),
        }
        // 2 cores × 0.031611 + 4 GiB × 0.004237 (OpenCost defaults).
        let price = web.replica_hour_usd().expect("priced");
        assert!((price - 0.080170).abs() < 1e-9, "{price}");
        assert!((web.usable_capacity_per_replica() - 1.2).abs() < 1e-12);
        let batch = &f.targets[1];
        assert_eq!(
            batch.mode,
            Mode::ForecastOnly,
            "mode defaults to forecast_only"
        );
        assert_eq!(batch.cooldown_secs, 300);
        assert_eq!(batch.scale_down_stabilization_secs, 300);
        assert_eq!(batch.target_utilization_percent, 70.0);
    }

    #[test]
    fn defaults_are_hpa_and_shadow_mode() {
        let f = PolicyFile::from_yaml_str(
            "targets: [{name: a, metric: {name: m}, capacity_per_replica: 1, min_replicas: 1, max_replicas: 3}]",
        )
        .expect("parses");
        assert_eq!(f.validate(), Ok(()));
        let t = &f.targets[0];
        assert_eq!(t.kind, TargetKind::None);
        assert_eq!(t.mode, Mode::ForecastOnly);
        assert_eq!(
            t.recommender,
            RecommenderConfig::Hpa(HpaConfig { tolerance: 0.1 })
        );
        assert_eq!(t.replica_hour_usd(), None);
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        let base = "targets: [{name: a, metric: {name: m}, capacity_per_replica: 1, min_replicas: 1, max_replicas: 3";
        for extra in [
            ", colldown_secs: 5",
            ", metric2: 1",
            ", recommender: {kind: hpa, tolerence: 0.2}",
            ", recommender: {kind: predictive, quantil: 0.9}",
            ", schedules: [{name: s, cron: '* * * * *', duration_secs: 1, min_replicas: 1, minreplicas: 2}]",
        ] {
            let yaml = format!("{base}{extra}}}]");
            assert!(
                PolicyFile::from_yaml_str(&yaml).is_err(),
                "accepted unknown field in {yaml}"
            );
        }
        assert!(PolicyFile::from_yaml_str(&format!("{base}}}], extra: 1")).is_err());
        assert!(
            PolicyFile::from_yaml_str(&format!("{base}, recommender: {{kind: magic}}}}]")).is_err()
        );
    }

    #[test]
    fn validate_names_each_bad_field() {
        let errs = errors_of(
            r#"
targets:
  - name: a
    kind: aws_asg
    mode: forecast_and_scale
    metric: { name: m, sql: "select 1" }
    capacity_per_replica: 0
    target_utilization_percent: 120
    min_replicas: 5
    max_replicas: 3
    max_step_up_replicas: 0
    max_step_down_percent: 150
    schedules: [{ name: s, cron: "not a cron", duration_secs: 0, min_replicas: 1 }]
    recommender: { kind: predictive, quantile: 1.5 }
  - name: a
    kind: k8s_deployment
    metric: { name: m }
    capacity_per_replica: 1
    min_replicas: 0
    max_replicas: 0
    recommender: { kind: reactive, scale_up_threshold: 20, scale_down_threshold: 30 }
  - name: c
    mode: forecast_and_scale
    metric: { sql: "select 1", labels: { a: b } }
    capacity_per_replica: 1
    min_replicas: 1
    max_replicas: 2
    recommender: { kind: vertical, cpu_quantile: 0, max_cpu_cores: 0.01 }
"#,
        );
        for field in [
            "targets[0].asg_name",
            "targets[0].metric",
            "targets[0].capacity_per_replica",
            "targets[0].target_utilization_percent",
            "targets[0].min_replicas",
            "targets[0].max_step_up_replicas",
            "targets[0].max_step_down_percent",
            "targets[0].schedules[0].cron",
            "targets[0].schedules[0].duration_secs",
            "targets[0].recommender.quantile",
            "targets[1].name",
            "targets[1].namespace",
            "targets[1].deployment",
            "targets[1].max_replicas",
            "targets[1].recommender.scale_down_threshold",
            "targets[2].mode",
            "targets[2].metric.labels",
            "targets[2].recommender.cpu_quantile",
            "targets[2].recommender.max_cpu_cores",
            "targets[2].resources",
        ] {
            assert!(has_field(&errs, field), "no error for {field}: {errs:#?}");
        }
        assert!(errs.iter().all(|e| !e.reason.is_empty()));
    }

    #[test]
    fn empty_file_is_invalid() {
        let errs = errors_of("targets: []");
        assert!(has_field(&errs, "targets"));
    }

    #[test]
    fn five_field_cron_and_activity_window() {
        let s = ScheduledOverride {
            name: "biz".into(),
            cron: "0 9 * * Mon-Fri".into(),
            duration_secs: 3600,
            min_replicas: 5,
            max_replicas: None,
        };
        let sched = s.schedule().expect("five fields parse");
        // 2024-01-01 is a Monday.
        let at = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2024, 1, d, h, m, 0).unwrap();
        assert!(!s.is_active(&sched, at(1, 8, 59)));
        assert!(s.is_active(&sched, at(1, 9, 0)), "active at the fire time");
        assert!(s.is_active(&sched, at(1, 9, 59)));
        assert!(!s.is_active(&sched, at(1, 10, 0)), "expired after duration");
        assert!(!s.is_active(&sched, at(6, 9, 30)), "Saturday");
        // Six fields (with seconds) are accepted as well.
        assert!(parse_cron("30 0 9 * * *").is_ok());
        assert!(parse_cron("0 9 * *").is_err());
    }

    #[test]
    fn replicas_needed_rounds_up_without_float_noise() {
        assert_eq!(replicas_needed(0.0, 7.0), 0);
        assert_eq!(replicas_needed(-3.0, 7.0), 0);
        assert_eq!(replicas_needed(f64::NAN, 7.0), 0);
        assert_eq!(replicas_needed(14.0, 7.0), 2);
        assert_eq!(replicas_needed(14.01, 7.0), 3);
        assert_eq!(
            replicas_needed(1.4, 0.7),
            2,
            "1.4 / 0.7 is 2.0000000000000004"
        );
        assert_eq!(replicas_needed(1e30, 1.0), u32::MAX);
    }

    #[test]
    fn shipped_example_policies_validate() {
        let dir = Path::new(file!())
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(|root| root.join("pipelines/policies"))
            .expect("repo root");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("pipelines/policies exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
                PolicyFile::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "expected example policies in {}", dir.display());
    }
}
