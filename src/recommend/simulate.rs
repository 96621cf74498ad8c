//! `scalecast simulate`: replay a trace as demand through scaling policies and price them.
//!
//! # Model of the replay
//! * The trace is put on a regular grid (`--step-secs`, or the median spacing of its
//!   timestamps); empty slots are gaps: no decision is taken there and they are not scored.
//! * At every slot `t_i` the load `d_i` arrives and every policy decides at once (the
//!   simulated decision interval is the trace step). Decisions use only data up to `t_i`.
//! * **Provisioning**: a scale-up becomes usable `--provisioning-delay-secs` after its
//!   decision; a scale-down takes effect at once. Usable replicas at `t` are the minimum of the
//!   desired count over `[t − delay, t)` (instances launched in that window are still booting,
//!   removed ones are gone). Billing follows the desired count (booting instances are paid).
//! * **Scoring** (after the warm-up, with the common `--target-utilization-percent`):
//!   replica-hours and cost; *under-provisioned* minutes where `d_i > usable × capacity ×
//!   target`; *saturated* minutes where `d_i > usable × capacity`; peak over-provisioning
//!   `max(usable − ceil(d_i / (capacity × target)))` in replicas; mean utilization; number of
//!   scaling actions; and the decision latency: for each scale-up (scale-down) decision, the
//!   time since the earliest slot after the previous action from which the data continuously
//!   showed more replicas were needed (fewer sufficed). A scale-up taken before the data
//!   needed it is counted as *ahead* (forecast-driven).
//! * **Baselines** always included: `static-peak` (a fixed fleet sized for the evaluated
//!   peak), `reactive` (threshold rules 70/30 %, ±1 replica, 300 s cooldown both ways) and
//!   `hpa` (tolerance 0.1, 300 s scale-down stabilization, +100 % or +4 / −100 % per decision).
//!   The `oracle` row is a bound, not a policy: each slot's needed replicas with perfect
//!   foresight and no delay (at least one replica) — the most any policy could save.
//!   Without `--policy` a default `predictive` policy (p90 over the look-ahead, HPA-like
//!   fallback) is added; with `--policy FILE` every target of every file is simulated.
//! * **Forecasts** for predictive/hybrid policies come from `crate::forecast`: the model is fitted
//!   on the history so far (at most `--max-history-secs`) at the end of the warm-up and every
//!   `--refit-every-secs`, and updated with every new slot in between.
//!
//! Units: trace values are the total load. `--capacity-per-replica` sets the load one replica
//! carries; by default it is chosen so that the static peak fleet has `--peak-replicas` (20).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::forecast::{ModelConfig, Series, model_by_name};
use crate::recommend::decide::{Inputs, Observation, TargetRecommender};
use crate::recommend::policy::{
    HpaConfig, MetricKind, PolicyFile, PredictiveConfig, ReactiveConfig, RecommenderConfig,
    TargetPolicy, replicas_needed,
};
use crate::recommend::predictive::{ForecastWindow, lookahead_secs};
use crate::recommend::{RecommendError, Result};

/// Default price of a replica-hour: 2 cores + 4 GiB at OpenCost's default prices.
pub const DEFAULT_REPLICA_HOUR_USD: f64 = 2.0 * 0.031611 + 4.0 * 0.004237;

/// Arguments of `scalecast simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// CSV trace (header row required), e.g. a NAB or datacenter_traces file.
    #[arg(long, required_unless_present = "sql")]
    pub trace: Option<PathBuf>,
    /// Instead of a CSV trace: a read-only SQL query over the stored history returning `ts`
    /// and `value` (the demand).
    #[arg(long, value_name = "QUERY", conflicts_with = "trace")]
    pub sql: Option<String>,
    /// Data directory the `--sql` query reads.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Column holding the load (default: `value` if present, else the first column that is
    /// not the timestamp column).
    #[arg(long)]
    pub column: Option<String>,
    /// Column holding timestamps (epoch seconds/milliseconds, RFC 3339 or
    /// `YYYY-MM-DD HH:MM:SS` UTC). Default: `timestamp` if present and `--step-secs` is not set.
    #[arg(long)]
    pub timestamp_column: Option<String>,
    /// Seconds between rows when the trace has no timestamps (rows start at
    /// `--start`); with timestamps it sets the grid step.
    #[arg(long)]
    pub step_secs: Option<u64>,
    /// Start time for traces without timestamps (RFC 3339).
    #[arg(long, default_value = "2024-01-01T00:00:00Z")]
    pub start: String,
    /// Policy YAML files; every target in them is simulated next to the baselines.
    #[arg(long = "policy")]
    pub policies: Vec<PathBuf>,
    /// Load one replica carries at 100 % (overrides the policies' value).
    #[arg(long)]
    pub capacity_per_replica: Option<f64>,
    /// Size replicas so the static peak fleet has this many (overrides the policies' capacity;
    /// for traces in arbitrary units). Default: the first policy file's capacity when
    /// `--policy` is given, otherwise 20.
    #[arg(long)]
    pub peak_replicas: Option<u32>,
    /// Utilization used to score every policy (and to size the baselines).
    #[arg(long, default_value_t = 70.0)]
    pub target_utilization_percent: f64,
    /// Time from a scale-up decision to usable capacity.
    #[arg(long, default_value_t = 300)]
    pub provisioning_delay_secs: u64,
    /// History before scoring starts (forecasts need it; AWS asks for 24 h). Default: one
    /// day, at most a quarter of the trace.
    #[arg(long)]
    pub warmup_secs: Option<u64>,
    /// Refit forecast models this often (AWS refreshes every 6 h).
    #[arg(long, default_value_t = 21_600)]
    pub refit_every_secs: u64,
    /// Longest history a model is fitted on (AWS uses up to 14 days).
    #[arg(long, default_value_t = 1_209_600)]
    pub max_history_secs: u64,
    /// Forecast model of the default predictive policy.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Quantile(s) of the default predictive policy; several values add one policy each
    /// (`predictive-p90`, `predictive-p99`, ...), tracing the cost/availability trade-off.
    #[arg(long = "quantile", default_values_t = [0.9])]
    pub quantiles: Vec<f64>,
    /// Scale-down stabilization of the default predictive policy.
    #[arg(long, default_value_t = 0)]
    pub predictive_stabilization_secs: u64,
    /// Price of one replica-hour, USD (same for every policy).
    #[arg(long, default_value_t = DEFAULT_REPLICA_HOUR_USD)]
    pub replica_hour_usd: f64,
    /// Directory for `simulate.csv`, `simulate.md`, `simulate.svg` and `timeline.csv`.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Do not print the table.
    #[arg(long)]
    pub quiet: bool,
}

/// A trace on a regular grid (`NaN` = gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Display name (file and column).
    pub name: String,
    /// First slot, epoch milliseconds.
    pub start_ms: i64,
    /// Grid step, milliseconds.
    pub step_ms: i64,
    /// Load per slot; `NaN` marks a gap.
    pub values: Vec<f64>,
}

impl Trace {
    /// Time of slot `i`.
    pub fn ts(&self, i: usize) -> DateTime<Utc> {
        let ms = self
            .start_ms
            .saturating_add(self.step_ms.saturating_mul(i as i64));
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Puts `(ts_ms, value)` points (e.g. rows of a SQL query over history) on a regular
    /// grid: `step_ms` or the median spacing; several values in a slot are averaged, empty
    /// slots are gaps.
    pub fn from_points(
        name: &str,
        ts_ms: &[i64],
        values: &[f64],
        step_ms: Option<i64>,
    ) -> Result<Trace> {
        if let Some(v) = values.iter().find(|v| v.is_finite() && **v < 0.0) {
            return Err(RecommendError::Input(format!(
                "negative load {v}: a load must be >= 0"
            )));
        }
        let s = crate::forecast::resample(ts_ms, values, step_ms)
            .map_err(|e| RecommendError::Input(e.to_string()))?;
        Ok(Trace {
            name: name.to_string(),
            start_ms: s.start_ms,
            step_ms: s.step_ms,
            values: s.values,
        })
    }

    /// Step in seconds (at least 1).
    pub fn step_secs(&self) -> u64 {
        u64::try_from(self.step_ms / 1000).unwrap_or(1).max(1)
    }
}

/// A simulated policy.
#[derive(Debug, Clone)]
pub enum SimPolicy {
    /// A fixed fleet sized for the evaluated peak at the scoring utilization.
    StaticPeak,
    /// Reference bound, not a policy: exactly the replicas each slot's load needs, usable at
    /// once (perfect foresight, no provisioning delay).
    Oracle,
    /// A target policy run through [`TargetRecommender`].
    Target(Box<TargetPolicy>),
}

/// Replay settings (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Load one replica carries at 100 %.
    pub capacity_per_replica: f64,
    /// Utilization every policy is scored at, percent.
    pub target_utilization_percent: f64,
    /// Scale-up provisioning delay, seconds.
    pub provisioning_delay_secs: u64,
    /// Slots before scoring starts.
    pub warmup_slots: usize,
    /// Refit interval, slots.
    pub refit_every_slots: usize,
    /// Longest fitting history, slots.
    pub max_history_slots: usize,
    /// Price of a replica-hour, USD.
    pub replica_hour_usd: f64,
    /// Show a progress bar.
    pub progress: bool,
}

/// Distribution of decision latencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Decisions measured (excluding `ahead`).
    pub count: usize,
    /// Scale-ups decided before the data needed them (forecast-driven).
    pub ahead: usize,
    /// Median latency, seconds.
    pub p50_secs: Option<f64>,
    /// 95th percentile, seconds.
    pub p95_secs: Option<f64>,
    /// Maximum, seconds.
    pub max_secs: Option<f64>,
}

impl LatencyStats {
    fn from(mut v: Vec<f64>, ahead: usize) -> Self {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if v.is_empty() {
                None
            } else {
                let idx = ((v.len() - 1) as f64 * p).round() as usize;
                Some(v[idx.min(v.len() - 1)])
            }
        };
        LatencyStats {
            count: v.len(),
            ahead,
            p50_secs: q(0.5),
            p95_secs: q(0.95),
            max_secs: v.last().copied(),
        }
    }
}

/// One policy's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// Policy name.
    pub name: String,
    /// Recommender (`static`, `reactive`, `hpa`, `predictive`, ...).
    pub recommender: String,
    /// Replica-hours billed over the scored period.
    pub replica_hours: f64,
    /// Cost over the scored period, USD.
    pub cost_usd: f64,
    /// Cost relative to `static-peak`, percent (negative = cheaper).
    pub cost_vs_static_percent: f64,
    /// Minutes with load above usable capacity × target.
    pub under_provisioned_minutes: f64,
    /// The same as a share of the scored time, percent.
    pub under_provisioned_percent: f64,
    /// Minutes with load above usable capacity (100 %).
    pub saturated_minutes: f64,
    /// Largest surplus of usable replicas over the replicas needed.
    pub peak_over_provisioning_replicas: i64,
    /// Mean of load / (usable × capacity), percent.
    pub mean_utilization_percent: f64,
    /// Number of scaling actions.
    pub actions: usize,
    /// Scale-up decision latency.
    pub scale_up_latency: LatencyStats,
    /// Scale-down decision latency.
    pub scale_down_latency: LatencyStats,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulateReport {
    /// Trace name.
    pub trace: String,
    /// Slots in the trace.
    pub slots: usize,
    /// Slots scored (after warm-up, without gaps).
    pub scored_slots: usize,
    /// Warm-up slots.
    pub warmup_slots: usize,
    /// Grid step, seconds.
    pub step_secs: u64,
    /// Load per replica at 100 %.
    pub capacity_per_replica: f64,
    /// Scoring utilization, percent.
    pub target_utilization_percent: f64,
    /// Provisioning delay, seconds.
    pub provisioning_delay_secs: u64,
    /// Price of a replica-hour, USD.
    pub replica_hour_usd: f64,
    /// Replicas of the static peak fleet.
    pub static_peak_replicas: u32,
    /// Per-policy results, baselines first.
    pub policies: Vec<PolicyResult>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Per-slot outputs of a replay, for plots and the timeline CSV.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Desired replicas after each slot's decision, per policy.
    pub desired: Vec<Vec<u32>>,
    /// Usable replicas at each slot, per policy.
    pub usable: Vec<Vec<u32>>,
    /// Forecast band (p10, p50, p90) for each slot, made one slot earlier, of the first
    /// forecasting policy.
    pub band: Vec<Option<(f64, f64, f64)>>,
}

fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        if !v.is_finite() {
            return None;
        }
        // Heuristic: values above 1e11 are milliseconds (1e11 s is year 5138).
        return Some(if v.abs() >= 1e11 {
            v as i64
        } else {
            (v * 1000.0) as i64
        });
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// Reads a CSV trace (see [`SimulateArgs`] for the column rules) onto a regular grid.
pub fn read_trace(
    path: &Path,
    column: Option<&str>,
    timestamp_column: Option<&str>,
    step_secs: Option<u64>,
    start: DateTime<Utc>,
) -> Result<Trace> {
    let csv_err = |reason: String| RecommendError::Csv {
        path: path.display().to_string(),
        reason,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_err(e.to_string()))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_err(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let ts_col = match timestamp_column {
        Some(c) => Some(find(c).ok_or_else(|| {
            csv_err(format!(
                "no timestamp column {c:?} (columns: {})",
                headers.join(", ")
            ))
        })?),
        None if step_secs.is_none() => find("timestamp"),
        None => None,
    };
    let val_col = match column {
        Some(c) => find(c)
            .ok_or_else(|| csv_err(format!("no column {c:?} (columns: {})", headers.join(", "))))?,
        None => find("value")
            .or_else(|| (0..headers.len()).find(|i| Some(*i) != ts_col))
            .ok_or_else(|| csv_err("no value column".into()))?,
    };
    if ts_col.is_none() && step_secs.is_none() {
        return Err(csv_err(
            "no timestamp column: pass --timestamp-column or --step-secs".into(),
        ));
    }
    let mut ts = Vec::new();
    let mut vals = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_err(e.to_string()))?;
        let row = line + 2;
        let raw = rec.get(val_col).unwrap_or("");
        let v = if raw.is_empty() {
            f64::NAN
        } else {
            raw.parse::<f64>()
                .map_err(|e| csv_err(format!("line {row}: value {raw:?}: {e}")))?
        };
        let t = match ts_col {
            Some(c) => {
                let raw = rec.get(c).unwrap_or("");
                parse_ts(raw).ok_or_else(|| {
                    csv_err(format!("line {row}: timestamp {raw:?} not understood"))
                })?
            }
            None => {
                let step = step_secs.unwrap_or(300) as i64 * 1000;
                start
                    .timestamp_millis()
                    .saturating_add(step.saturating_mul(line as i64))
            }
        };
        ts.push(t);
        vals.push(v);
    }
    if vals.iter().all(|v| !v.is_finite()) {
        return Err(csv_err("no finite value in the trace".into()));
    }
    if let Some(v) = vals.iter().find(|v| v.is_finite() && **v < 0.0) {
        return Err(csv_err(format!("negative load {v}: a load must be >= 0")));
    }
    let series = crate::forecast::resample(&ts, &vals, step_secs.map(|s| s as i64 * 1000))
        .map_err(|e| csv_err(e.to_string()))?;
    Ok(Trace {
        name: format!(
            "{}:{}",
            path.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            headers[val_col]
        ),
        start_ms: series.start_ms,
        step_ms: series.step_ms,
        values: series.values,
    })
}

/// The baseline policies, sized with `capacity` at `target_percent`, plus the `oracle`
/// reference bound.
pub fn baselines(
    capacity: f64,
    target_percent: f64,
    max_replicas: u32,
) -> Vec<(String, SimPolicy)> {
    let mut reactive = TargetPolicy::example("reactive", capacity, 1, max_replicas);
    reactive.metric.kind = MetricKind::Cpu;
    reactive.target_utilization_percent = target_percent;
    reactive.recommender = RecommenderConfig::Reactive(ReactiveConfig::default());
    reactive.cooldown_secs = 300;
    reactive.scale_up_cooldown_secs = 300;
    reactive.scale_down_stabilization_secs = 0;
    let mut hpa = TargetPolicy::example("hpa", capacity, 1, max_replicas);
    hpa.target_utilization_percent = target_percent;
    hpa.recommender = RecommenderConfig::Hpa(HpaConfig::default());
    hpa.cooldown_secs = 0;
    hpa.scale_down_stabilization_secs = 300;
    hpa.max_step_up_percent = Some(100.0);
    hpa.max_step_up_replicas = Some(4);
    hpa.max_step_down_percent = Some(100.0);
    vec![
        ("static-peak".into(), SimPolicy::StaticPeak),
        ("reactive".into(), SimPolicy::Target(Box::new(reactive))),
        ("hpa".into(), SimPolicy::Target(Box::new(hpa))),
        ("oracle".into(), SimPolicy::Oracle),
    ]
}

/// The default predictive policy of the simulator.
pub fn default_predictive(
    capacity: f64,
    target_percent: f64,
    max_replicas: u32,
    model: &str,
    quantile: f64,
    lead_time_secs: u64,
    stabilization_secs: u64,
) -> TargetPolicy {
    let mut p = TargetPolicy::example("predictive", capacity, 1, max_replicas);
    p.target_utilization_percent = target_percent;
    p.recommender = RecommenderConfig::Predictive(PredictiveConfig {
        model: model.to_string(),
        quantile,
        provisioning_lead_time_secs: lead_time_secs,
        ..PredictiveConfig::default()
    });
    p.cooldown_secs = 0;
    p.scale_down_stabilization_secs = stabilization_secs;
    p
}

struct ForecastRunner {
    model: Box<dyn crate::forecast::Model>,
    fitted_at: Option<usize>,
    failed: Option<String>,
}

/// Replays `trace` through `policies` (see the module docs) and returns the report and the
/// per-slot timeline.
pub fn simulate_trace(
    trace: &Trace,
    policies: &[(String, SimPolicy)],
    opts: &SimOptions,
) -> Result<(SimulateReport, Timeline)> {
    let n = trace.values.len();
    if n == 0 {
        return Err(RecommendError::Input("empty trace".into()));
    }
    if !(opts.capacity_per_replica.is_finite() && opts.capacity_per_replica > 0.0) {
        return Err(RecommendError::Input(format!(
            "capacity per replica must be > 0, got {}",
            opts.capacity_per_replica
        )));
    }
    if !(opts.target_utilization_percent > 0.0 && opts.target_utilization_percent <= 100.0) {
        return Err(RecommendError::Input(format!(
            "target utilization must be in (0, 100], got {}",
            opts.target_utilization_percent
        )));
    }
    let warmup = opts.warmup_slots.min(n.saturating_sub(1));
    let step_secs = trace.step_secs();
    let usable_per_replica = opts.capacity_per_replica * opts.target_utilization_percent / 100.0;
    let needed: Vec<Option<u32>> = trace
        .values
        .iter()
        .map(|v| {
            v.is_finite()
                .then(|| replicas_needed(*v, usable_per_replica))
        })
        .collect();
    let peak = trace.values[warmup..]
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let static_replicas = replicas_needed(peak, usable_per_replica).max(1);
    let first_load = trace
        .values
        .iter()
        .copied()
        .find(|v| v.is_finite())
        .unwrap_or(0.0);

    // Recommenders and forecast runners.
    let mut recs: Vec<Option<TargetRecommender>> = Vec::with_capacity(policies.len());
    let mut runners: BTreeMap<String, ForecastRunner> = BTreeMap::new();
    let mut horizon_slots = 1usize;
    for (name, p) in policies {
        match p {
            SimPolicy::StaticPeak | SimPolicy::Oracle => recs.push(None),
            SimPolicy::Target(tp) => {
                let mut tp = (**tp).clone();
                tp.evaluation_interval_secs = step_secs;
                let r = TargetRecommender::new(tp, name)?;
                if let Some(c) = r.predictive_config() {
                    let la = lookahead_secs(r.policy(), c);
                    horizon_slots = horizon_slots.max(la.div_ceil(step_secs) as usize);
                    if !runners.contains_key(&c.model) {
                        let cfg = ModelConfig {
                            horizon: horizon_slots.max(1),
                            ..ModelConfig::default()
                        };
                        let model = model_by_name(&c.model, &cfg)
                            .map_err(|e| RecommendError::Forecast(e.to_string()))?;
                        runners.insert(
                            c.model.clone(),
                            ForecastRunner {
                                model,
                                fitted_at: None,
                                failed: None,
                            },
                        );
                    }
                }
                recs.push(Some(r));
            }
        }
    }
    let band_model = recs
        .iter()
        .flatten()
        .find_map(|r| r.predictive_config().map(|c| c.model.clone()));

    let pb = if opts.progress {
        let pb = indicatif::ProgressBar::new(n as u64);
        if let Ok(style) = indicatif::ProgressStyle::default_bar()
            .template("{spinner} simulate [{bar:40}] {pos}/{len} slots ({eta})")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };

    let np = policies.len();
    let mut desired: Vec<Vec<u32>> = vec![Vec::with_capacity(n); np];
    let mut usable: Vec<Vec<u32>> = vec![Vec::with_capacity(n); np];
    let mut band = Vec::with_capacity(n);
    band.push(None);
    let initial: Vec<u32> = policies
        .iter()
        .zip(&recs)
        .map(|((_, p), r)| match (p, r) {
            (SimPolicy::StaticPeak, _) => static_replicas,
            (SimPolicy::Oracle, _) => replicas_needed(first_load, usable_per_replica).max(1),
            (_, Some(r)) => {
                let pol = r.policy();
                pol.replicas_for_load(first_load)
                    .clamp(pol.min_replicas, pol.max_replicas)
            }
            _ => 1,
        })
        .collect();
    let delay_ms = i64::try_from(opts.provisioning_delay_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let mut forecasts: BTreeMap<String, ForecastWindow> = BTreeMap::new();

    for i in 0..n {
        let t = trace.ts(i);
        let load = trace.values[i];
        // Usable replicas: min of desired over [t - delay, t).
        for k in 0..np {
            if matches!(policies[k].1, SimPolicy::Oracle) {
                let prev = if i == 0 {
                    initial[k]
                } else {
                    desired[k][i - 1]
                };
                usable[k].push(needed[i].map_or(prev, |x| x.max(1)));
                continue;
            }
            let mut u = if i == 0 {
                initial[k]
            } else {
                desired[k][i - 1]
            };
            let window_start = trace.start_ms + trace.step_ms * i as i64 - delay_ms;
            let mut j = i;
            while j > 0 {
                // Slot j-1's decision is in effect over [t_{j-1}, t_j).
                let end = trace.start_ms + trace.step_ms * j as i64;
                if end <= window_start {
                    break;
                }
                u = u.min(desired[k][j - 1]);
                j -= 1;
            }
            if j == 0 && trace.start_ms > window_start {
                u = u.min(initial[k]);
            }
            usable[k].push(u);
        }
        // Forecasts (after this slot's data).
        forecasts.clear();
        let hist_start = (i + 1).saturating_sub(opts.max_history_slots.max(1));
        for (name, run) in runners.iter_mut() {
            if run.failed.is_some() || i + 1 < warmup.max(2) {
                continue;
            }
            let refit = match run.fitted_at {
                None => true,
                Some(f) => i + 1 - f >= opts.refit_every_slots.max(1),
            };
            if refit {
                let s = Series {
                    start_ms: trace.start_ms + trace.step_ms * hist_start as i64,
                    step_ms: trace.step_ms,
                    values: trace.values[hist_start..=i].to_vec(),
                };
                match run.model.fit(&s) {
                    Ok(()) => run.fitted_at = Some(i + 1),
                    Err(e) => {
                        tracing::warn!(model = %name, error = %e, "forecast fit failed; reactive only");
                        run.failed = Some(e.to_string());
                        continue;
                    }
                }
            } else {
                run.model.update(load);
            }
            match run.model.predict(horizon_slots.max(1)) {
                Ok(f) => {
                    forecasts.insert(name.clone(), ForecastWindow::from_forecast(t, &f));
                }
                Err(e) => {
                    tracing::warn!(model = %name, error = %e, "forecast failed");
                }
            }
        }
        // The one-step forecast made now is for the next slot.
        if i + 1 < n {
            band.push(band_model.as_ref().and_then(|m| {
                forecasts
                    .get(m)
                    .and_then(|f| f.points.first())
                    .map(|p| (p.p10, p.p50, p.p90))
            }));
        }
        // Decisions.
        for k in 0..np {
            let prev = if i == 0 {
                initial[k]
            } else {
                desired[k][i - 1]
            };
            let next = match &mut recs[k] {
                None if matches!(policies[k].1, SimPolicy::Oracle) => {
                    needed[i].map_or(prev, |x| x.max(1))
                }
                None => static_replicas,
                Some(r) if load.is_finite() => {
                    let fw = r.predictive_config().and_then(|c| forecasts.get(&c.model));
                    let obs = Observation {
                        ts: t,
                        data_ts: t,
                        load,
                        current_replicas: prev,
                    };
                    r.decide(Inputs::new(obs).with_forecast(fw))?
                        .recommended_replicas
                }
                Some(_) => prev,
            };
            desired[k].push(next);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();

    // Scoring.
    let step_h = step_secs as f64 / 3600.0;
    let step_min = step_secs as f64 / 60.0;
    let scored: Vec<usize> = (warmup..n)
        .filter(|i| trace.values[*i].is_finite())
        .collect();
    let mut results = Vec::with_capacity(np);
    for (k, (name, p)) in policies.iter().enumerate() {
        let replica_hours: f64 = (warmup..n).map(|i| f64::from(desired[k][i]) * step_h).sum();
        let mut under = 0usize;
        let mut sat = 0usize;
        let mut over = i64::MIN;
        let mut util_sum = 0.0;
        for &i in &scored {
            let u = f64::from(usable[k][i]);
            let d = trace.values[i];
            if d > u * usable_per_replica * (1.0 + 1e-12) {
                under += 1;
            }
            if d > u * opts.capacity_per_replica * (1.0 + 1e-12) {
                sat += 1;
            }
            over = over.max(i64::from(usable[k][i]) - i64::from(needed[i].unwrap_or(0)));
            util_sum += if u > 0.0 {
                (d / (u * opts.capacity_per_replica)).min(10.0)
            } else {
                0.0
            };
        }
        let (ups, downs, up_ahead) =
            latencies(&desired[k], &needed, &initial[k], warmup, step_secs);
        let actions = (warmup.max(1)..n)
            .filter(|i| desired[k][*i] != desired[k][i - 1])
            .count()
            + usize::from(warmup == 0 && desired[k][0] != initial[k]);
        results.push(PolicyResult {
            name: name.clone(),
            recommender: match p {
                SimPolicy::StaticPeak => "static".into(),
                SimPolicy::Oracle => "oracle".into(),
                SimPolicy::Target(t) => t.recommender.name().into(),
            },
            replica_hours,
            cost_usd: replica_hours * opts.replica_hour_usd,
            cost_vs_static_percent: 0.0,
            under_provisioned_minutes: under as f64 * step_min,
            under_provisioned_percent: if scored.is_empty() {
                0.0
            } else {
                100.0 * under as f64 / scored.len() as f64
            },
            saturated_minutes: sat as f64 * step_min,
            peak_over_provisioning_replicas: if over == i64::MIN { 0 } else { over },
            mean_utilization_percent: if scored.is_empty() {
                0.0
            } else {
                100.0 * util_sum / scored.len() as f64
            },
            actions,
            scale_up_latency: LatencyStats::from(ups, up_ahead),
            scale_down_latency: LatencyStats::from(downs, 0),
        });
    }
    let static_cost = static_replicas as f64 * step_h * (n - warmup) as f64 * opts.replica_hour_usd;
    for r in &mut results {
        r.cost_vs_static_percent = if static_cost > 0.0 {
            100.0 * (r.cost_usd - static_cost) / static_cost
        } else {
            0.0
        };
    }
    let report = SimulateReport {
        trace: trace.name.clone(),
        slots: n,
        scored_slots: scored.len(),
        warmup_slots: warmup,
        step_secs,
        capacity_per_replica: opts.capacity_per_replica,
        target_utilization_percent: opts.target_utilization_percent,
        provisioning_delay_secs: opts.provisioning_delay_secs,
        replica_hour_usd: opts.replica_hour_usd,
        static_peak_replicas: static_replicas,
        policies: results,
        files: Vec::new(),
    };
    Ok((
        report,
        Timeline {
            desired,
            usable,
            band,
        },
    ))
}

/// Decision latencies (see the module docs): `(scale-up secs, scale-down secs, ups ahead)`.
fn latencies(
    desired: &[u32],
    needed: &[Option<u32>],
    initial: &u32,
    warmup: usize,
    step_secs: u64,
) -> (Vec<f64>, Vec<f64>, usize) {
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    let mut ahead = 0;
    let mut last_action = 0usize;
    let mut prev = *initial;
    for j in 0..desired.len() {
        let d = desired[j];
        if d != prev && j >= warmup {
            if d > prev {
                // Earliest e in [last_action, j] with needed > prev on every slot e..=j.
                if needed[j].is_some_and(|x| x > prev) {
                    let mut e = j;
                    while e > last_action && needed[e - 1].is_some_and(|x| x > prev) {
                        e -= 1;
                    }
                    ups.push(((j - e) as u64 * step_secs) as f64);
                } else {
                    ahead += 1;
                }
            } else {
                let mut e = j;
                if needed[j].is_some_and(|x| x <= d) {
                    while e > last_action && needed[e - 1].is_some_and(|x| x <= d) {
                        e -= 1;
                    }
                }
                downs.push(((j - e) as u64 * step_secs) as f64);
            }
        }
        if d != prev {
            last_action = j;
        }
        prev = d;
    }
    (ups, downs, ahead)
}

/// Renders the per-policy table (terminal and markdown use the same layout).
pub fn render_table(r: &SimulateReport) -> String {
    let mut s = String::new();
    let fmt_lat = |l: &LatencyStats| match (l.p50_secs, l.max_secs) {
        (Some(p), Some(m)) => format!("{p:.0}/{m:.0}"),
        _ => "-".to_string(),
    };
    let _ = writeln!(
        s,
        "| policy | replica-h | cost $ | vs static | under-prov min | under % | saturated min | peak over | mean util % | actions | up p50/max s | up ahead | down p50/max s |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in &r.policies {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.2} | {:+.1}% | {:.0} | {:.3} | {:.0} | {} | {:.1} | {} | {} | {} | {} |",
            p.name,
            p.replica_hours,
            p.cost_usd,
            p.cost_vs_static_percent,
            p.under_provisioned_minutes,
            p.under_provisioned_percent,
            p.saturated_minutes,
            p.peak_over_provisioning_replicas,
            p.mean_utilization_percent,
            p.actions,
            fmt_lat(&p.scale_up_latency),
            p.scale_up_latency.ahead,
            fmt_lat(&p.scale_down_latency),
        );
    }
    s
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| RecommendError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `simulate.csv` (one row per policy).
pub fn write_csv(r: &SimulateReport, path: &Path) -> Result<()> {
    let err = |e: csv::Error| RecommendError::Csv {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record([
        "trace",
        "policy",
        "recommender",
        "replica_hours",
        "cost_usd",
        "cost_vs_static_percent",
        "under_provisioned_minutes",
        "under_provisioned_percent",
        "saturated_minutes",
        "peak_over_provisioning_replicas",
        "mean_utilization_percent",
        "actions",
        "scale_up_p50_secs",
        "scale_up_max_secs",
        "scale_up_ahead",
        "scale_down_p50_secs",
        "scale_down_max_secs",
    ])
    .map_err(err)?;
    let o = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for p in &r.policies {
        w.write_record([
            r.trace.clone(),
            p.name.clone(),
            p.recommender.clone(),
            format!("{}", p.replica_hours),
            format!("{}", p.cost_usd),
            format!("{}", p.cost_vs_static_percent),
            format!("{}", p.under_provisioned_minutes),
            format!("{}", p.under_provisioned_percent),
            format!("{}", p.saturated_minutes),
            format!("{}", p.peak_over_provisioning_replicas),
            format!("{}", p.mean_utilization_percent),
            format!("{}", p.actions),
            o(p.scale_up_latency.p50_secs),
            o(p.scale_up_latency.max_secs),
            format!("{}", p.scale_up_latency.ahead),
            o(p.scale_down_latency.p50_secs),
            o(p.scale_down_latency.max_secs),
        ])
        .map_err(err)?;
    }
    w.flush().map_err(|source| RecommendError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Renders the markdown report (settings + table).
pub fn render_markdown(r: &SimulateReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# scalecast simulate: {}\n", r.trace);
    let _ = writeln!(
        s,
        "{} slots of {} s ({} warm-up, {} scored); capacity per replica {:.6}; scored at {} % \
         target utilization; provisioning delay {} s; {:.4} USD per replica-hour; static peak \
         fleet {} replicas.\n",
        r.slots,
        r.step_secs,
        r.warmup_slots,
        r.scored_slots,
        r.capacity_per_replica,
        r.target_utilization_percent,
        r.provisioning_delay_secs,
        r.replica_hour_usd,
        r.static_peak_replicas
    );
    s.push_str(&render_table(r));
    s.push_str(
        "\nunder-prov: load above usable capacity × target; saturated: above 100 % of usable \
         capacity; latencies from the first slot whose data justified the change to the \
         decision; `up ahead`: scale-ups decided before the data needed them.\n",
    );
    s
}

/// Writes the per-slot timeline CSV.
pub fn write_timeline(
    trace: &Trace,
    names: &[String],
    tl: &Timeline,
    capacity_usable: f64,
    path: &Path,
) -> Result<()> {
    let err = |e: csv::Error| RecommendError::Csv {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let mut header = vec![
        "ts".to_string(),
        "load".into(),
        "p10".into(),
        "p50".into(),
        "p90".into(),
    ];
    for n in names {
        header.push(format!("{n}_desired"));
        header.push(format!("{n}_usable"));
        header.push(format!("{n}_usable_capacity"));
    }
    w.write_record(&header).map_err(err)?;
    for i in 0..trace.values.len() {
        let mut row = vec![trace.ts(i).to_rfc3339(), format!("{}", trace.values[i])];
        match tl.band.get(i).copied().flatten() {
            Some((a, b, c)) => row.extend([format!("{a}"), format!("{b}"), format!("{c}")]),
            None => row.extend([String::new(), String::new(), String::new()]),
        }
        for k in 0..names.len() {
            let d = tl.desired[k][i];
            let u = tl.usable[k][i];
            row.push(d.to_string());
            row.push(u.to_string());
            row.push(format!("{}", f64::from(u) * capacity_usable));
        }
        w.write_record(&row).map_err(err)?;
    }
    w.flush().map_err(|source| RecommendError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Draws the SVG: load, one-step forecast band, usable capacity (× target) per policy.
pub fn plot_svg(
    trace: &Trace,
    names: &[String],
    tl: &Timeline,
    capacity_usable: f64,
    path: &Path,
) -> Result<()> {
    use plotters::prelude::*;
    let perr = |e: String| RecommendError::Plot(e);
    let n = trace.values.len();
    // Downsample to at most ~1500 buckets: max of each bucket keeps peaks visible.
    let bucket = n.div_ceil(1500).max(1);
    let xs: Vec<f64> = (0..n)
        .step_by(bucket)
        .map(|i| (i as f64 * trace.step_secs() as f64) / 3600.0)
        .collect();
    let agg = |f: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (0..n)
            .step_by(bucket)
            .map(|s| {
                (s..(s + bucket).min(n))
                    .map(f)
                    .filter(|v| v.is_finite())
                    .fold(f64::NAN, f64::max)
            })
            .collect()
    };
    let load = agg(&|i| trace.values[i]);
    let p10 = agg(&|i| tl.band.get(i).copied().flatten().map_or(f64::NAN, |b| b.0));
    let p90 = agg(&|i| tl.band.get(i).copied().flatten().map_or(f64::NAN, |b| b.2));
    let caps: Vec<Vec<f64>> = (0..names.len())
        .map(|k| agg(&|i| f64::from(tl.usable[k][i]) * capacity_usable))
        .collect();
    let finite = || {
        load.iter()
            .chain(p10.iter())
            .chain(p90.iter())
            .chain(caps.iter().flatten())
            .copied()
            .filter(|v| v.is_finite())
    };
    let ymax = finite().fold(0.0f64, f64::max) * 1.05;
    let ymin = (finite().fold(f64::INFINITY, f64::min) * 0.9).clamp(0.0, ymax * 0.99);
    let xmax = xs.last().copied().unwrap_or(1.0).max(1e-9);
    let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| perr(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} — load vs usable capacity × target", trace.name),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, ymin..ymax.max(1e-9))
        .map_err(|e| perr(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("load")
        .draw()
        .map_err(|e| perr(e.to_string()))?;
    let band: Vec<(f64, f64, f64)> = xs
        .iter()
        .zip(p10.iter().zip(&p90))
        .filter(|(_, (a, b))| a.is_finite() && b.is_finite())
        .map(|(x, (a, b))| (*x, *a, *b))
        .collect();
    if !band.is_empty() {
        let poly: Vec<(f64, f64)> = band
            .iter()
            .map(|(x, _, hi)| (*x, *hi))
            .chain(band.iter().rev().map(|(x, lo, _)| (*x, *lo)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(poly, BLUE.mix(0.15).filled())))
            .map_err(|e| perr(e.to_string()))?
            .label("forecast p10–p90 (1 step)")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.15).filled())
            });
    }
    chart
        .draw_series(LineSeries::new(
            xs.iter()
                .zip(&load)
                .filter(|(_, v)| v.is_finite())
                .map(|(x, v)| (*x, *v)),
            BLACK.stroke_width(1),
        ))
        .map_err(|e| perr(e.to_string()))?
        .label("load")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    let palette = [
        RGBColor(128, 128, 128),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(23, 190, 207),
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
    ];
    for (k, name) in names.iter().enumerate() {
        let c = palette[k % palette.len()];
        chart
            .draw_series(LineSeries::new(
                xs.iter()
                    .zip(&caps[k])
                    .filter(|(_, v)| v.is_finite())
                    .map(|(x, v)| (*x, *v)),
                c.stroke_width(1),
            ))
            .map_err(|e| perr(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| perr(e.to_string()))?;
    root.present().map_err(|e| perr(e.to_string()))?;
    Ok(())
}

/// `scalecast simulate`: reads the trace and policies, replays, prints the table (unless
/// `--quiet`) and writes the report files when `--out-dir` is given.
pub fn run(args: &SimulateArgs) -> Result<SimulateReport> {
    let start = DateTime::parse_from_rfc3339(&args.start)
        .map_err(|e| RecommendError::Input(format!("--start {:?}: {e}", args.start)))?
        .with_timezone(&Utc);
    let Some(path) = &args.trace else {
        return Err(RecommendError::Input(
            "--trace FILE or --sql QUERY is required".into(),
        ));
    };
    let trace = read_trace(
        path,
        args.column.as_deref(),
        args.timestamp_column.as_deref(),
        args.step_secs,
        start,
    )?;
    run_with_trace(args, trace)
}

/// `scalecast simulate` on a trace already loaded (e.g. from SQL over history).
pub fn run_with_trace(args: &SimulateArgs, trace: Trace) -> Result<SimulateReport> {
    let n = trace.values.len();
    let step = trace.step_secs();
    let warmup_secs = args
        .warmup_secs
        .unwrap_or_else(|| 86_400u64.min(n as u64 * step / 4));
    let warmup = (warmup_secs / step) as usize;
    if warmup + 1 >= n {
        return Err(RecommendError::Input(format!(
            "warm-up of {warmup} slots leaves nothing to score in {n} slots"
        )));
    }
    if args.quantiles.is_empty() {
        return Err(RecommendError::Input("--quantile needs a value".into()));
    }
    if let Some(q) = args.quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
        return Err(RecommendError::Input(format!(
            "--quantile must be in (0, 1), got {q}"
        )));
    }
    let target = args.target_utilization_percent;
    let mut files = Vec::with_capacity(args.policies.len());
    for path in &args.policies {
        files.push(PolicyFile::load(path)?);
    }
    let file_capacity = files
        .first()
        .and_then(|f| f.targets.first())
        .map(|t| t.capacity_per_replica);
    // Explicit capacity > explicit peak size > the first policy's capacity > 20 at peak.
    let peak_replicas = match (args.capacity_per_replica, args.peak_replicas, file_capacity) {
        (Some(_), _, _) => None,
        (None, Some(n), _) => Some(n),
        (None, None, Some(_)) => None,
        (None, None, None) => Some(20),
    };
    let peak = trace.values[warmup..]
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let capacity = match (args.capacity_per_replica, peak_replicas, file_capacity) {
        (Some(c), _, _) => c,
        (None, Some(n), _) => {
            if n == 0 {
                return Err(RecommendError::Input("--peak-replicas must be >= 1".into()));
            }
            let c = peak / (f64::from(n) * target / 100.0);
            if !(c > 0.0 && c.is_finite()) {
                return Err(RecommendError::Input(
                    "the trace's peak load is 0: pass --capacity-per-replica".into(),
                ));
            }
            c
        }
        (None, None, Some(c)) => c,
        (None, None, None) => 1.0,
    };
    if !(capacity > 0.0 && capacity.is_finite()) {
        return Err(RecommendError::Input(format!(
            "capacity per replica must be > 0, got {capacity}"
        )));
    }
    let static_size = replicas_needed(peak, capacity * target / 100.0).max(1);
    let max_replicas = static_size.saturating_mul(3).max(10);
    let mut policies = baselines(capacity, target, max_replicas);
    if args.policies.is_empty() {
        for q in &args.quantiles {
            let name = if args.quantiles.len() == 1 {
                "predictive".to_string()
            } else {
                format!("predictive-p{}", format!("{}", q * 100.0).replace('.', "_"))
            };
            let mut p = default_predictive(
                capacity,
                target,
                max_replicas,
                &args.model,
                *q,
                args.provisioning_delay_secs,
                args.predictive_stabilization_secs,
            );
            p.name = name.clone();
            policies.push((name, SimPolicy::Target(Box::new(p))));
        }
    }
    for file in files {
        for mut t in file.targets {
            if args.capacity_per_replica.is_some() || peak_replicas.is_some() {
                t.capacity_per_replica = capacity;
                // Rescaled trace: keep the policy's max at least the baselines' max.
                t.max_replicas = t.max_replicas.max(max_replicas);
            }
            let name = t.name.clone();
            policies.push((name, SimPolicy::Target(Box::new(t))));
        }
    }
    let opts = SimOptions {
        capacity_per_replica: capacity,
        target_utilization_percent: target,
        provisioning_delay_secs: args.provisioning_delay_secs,
        warmup_slots: warmup,
        refit_every_slots: (args.refit_every_secs / step).max(1) as usize,
        max_history_slots: (args.max_history_secs / step).max(2) as usize,
        replica_hour_usd: args.replica_hour_usd,
        progress: !args.no_progress && !args.quiet,
    };
    let (mut report, tl) = simulate_trace(&trace, &policies, &opts)?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|source| RecommendError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let names: Vec<String> = policies.iter().map(|(n, _)| n.clone()).collect();
        let usable = capacity * target / 100.0;
        let csv_path = dir.join("simulate.csv");
        write_csv(&report, &csv_path)?;
        let md_path = dir.join("simulate.md");
        write_file(&md_path, &render_markdown(&report))?;
        let tl_path = dir.join("timeline.csv");
        write_timeline(&trace, &names, &tl, usable, &tl_path)?;
        let svg_path = dir.join("simulate.svg");
        plot_svg(&trace, &names, &tl, usable, &svg_path)?;
        report.files = vec![csv_path, md_path, tl_path, svg_path];
    }
    if !args.quiet {
        println!("{}", render_markdown(&report));
        for f in &report.files {
            println!("wrote {}", f.display());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::policy::HpaConfig;
    use std::io::Write as _;

    fn trace(values: Vec<f64>, step_secs: i64) -> Trace {
        Trace {
            name: "test".into(),
            start_ms: 1_704_067_200_000, // 2024-01-01T00:00:00Z
            step_ms: step_secs * 1000,
            values,
        }
    }

    fn exact_hpa() -> (String, SimPolicy) {
        let mut p = TargetPolicy::example("hpa0", 1.0, 1, 10);
        p.target_utilization_percent = 100.0;
        p.recommender = RecommenderConfig::Hpa(HpaConfig { tolerance: 0.0 });
        p.cooldown_secs = 0;
        p.scale_down_stabilization_secs = 0;
        ("hpa0".into(), SimPolicy::Target(Box::new(p)))
    }

    fn opts(delay: u64, warmup: usize) -> SimOptions {
        SimOptions {
            capacity_per_replica: 1.0,
            target_utilization_percent: 100.0,
            provisioning_delay_secs: delay,
            warmup_slots: warmup,
            refit_every_slots: 10,
            max_history_slots: 1000,
            replica_hour_usd: 1.0,
            progress: false,
        }
    }

    /// Hand-checked: load 1,1,4,4,1,1 per minute; 1 replica carries 1 at 100 %.
    #[test]
    fn tiny_trace_totals_by_hand() {
        let tr = trace(vec![1.0, 1.0, 4.0, 4.0, 1.0, 1.0], 60);
        let pols = vec![
            ("static-peak".to_string(), SimPolicy::StaticPeak),
            exact_hpa(),
            ("oracle".to_string(), SimPolicy::Oracle),
        ];
        let (r, tl) = simulate_trace(&tr, &pols, &opts(60, 0)).expect("simulates");
        assert_eq!(r.static_peak_replicas, 4);
        assert_eq!(r.scored_slots, 6);
        let [st, hpa, oracle] = &r.policies[..] else {
            panic!("three policies")
        };
        // Static: 4 replicas × 6 min = 0.4 replica-hours.
        assert!((st.replica_hours - 0.4).abs() < 1e-12);
        assert_eq!((st.under_provisioned_minutes, st.actions), (0.0, 0));
        assert_eq!(st.peak_over_provisioning_replicas, 3);
        // HPA decides 1,1,4,4,1,1; the 4 ordered at minute 2 is usable at minute 3.
        assert_eq!(tl.desired[1], vec![1, 1, 4, 4, 1, 1]);
        assert_eq!(tl.usable[1], vec![1, 1, 1, 4, 4, 1]);
        assert!((hpa.replica_hours - 0.2).abs() < 1e-12);
        assert!((hpa.cost_usd - 0.2).abs() < 1e-12);
        assert!((hpa.cost_vs_static_percent + 50.0).abs() < 1e-9);
        assert_eq!(hpa.under_provisioned_minutes, 1.0);
        assert!((hpa.under_provisioned_percent - 100.0 / 6.0).abs() < 1e-9);
        assert_eq!(hpa.saturated_minutes, 1.0);
        assert_eq!(hpa.actions, 2);
        assert_eq!(
            hpa.peak_over_provisioning_replicas, 3,
            "4 usable for load 1 at minute 4"
        );
        assert!((hpa.mean_utilization_percent - 100.0 * 8.25 / 6.0).abs() < 1e-9);
        assert_eq!(hpa.scale_up_latency.count, 1);
        assert_eq!(
            hpa.scale_up_latency.max_secs,
            Some(0.0),
            "decided on the same slot"
        );
        assert_eq!(hpa.scale_down_latency.max_secs, Some(0.0));
        // Oracle: exactly the need, never short.
        assert!((oracle.replica_hours - 0.2).abs() < 1e-12);
        assert_eq!(oracle.under_provisioned_minutes, 0.0);
    }

    #[test]
    fn provisioning_delay_and_warmup() {
        let tr = trace(vec![1.0, 1.0, 4.0, 4.0, 1.0, 1.0], 60);
        // 120 s delay: the 4 ordered at minute 2 arrives at minute 4.
        let (r, tl) = simulate_trace(&tr, &[exact_hpa()], &opts(120, 0)).expect("simulates");
        assert_eq!(tl.usable[0], vec![1, 1, 1, 1, 4, 1]);
        assert_eq!(r.policies[0].under_provisioned_minutes, 2.0);
        // Zero delay still cannot help the slot whose data triggered the decision.
        let (r, tl) = simulate_trace(&tr, &[exact_hpa()], &opts(0, 0)).expect("simulates");
        assert_eq!(tl.usable[0], vec![1, 1, 1, 4, 4, 1]);
        assert_eq!(r.policies[0].under_provisioned_minutes, 1.0);
        // Warm-up of 3 slots: only minutes 3..5 are scored and billed.
        let (r, _) = simulate_trace(&tr, &[exact_hpa()], &opts(60, 3)).expect("simulates");
        assert_eq!(r.scored_slots, 3);
        assert!((r.policies[0].replica_hours - 6.0 / 60.0).abs() < 1e-12);
        assert_eq!(r.policies[0].under_provisioned_minutes, 0.0);
    }

    #[test]
    fn stabilization_delays_scale_down_decisions() {
        let tr = trace(vec![4.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 60);
        let (name, SimPolicy::Target(mut p)) = exact_hpa() else {
            panic!("target policy")
        };
        p.scale_down_stabilization_secs = 180;
        let (r, tl) =
            simulate_trace(&tr, &[(name, SimPolicy::Target(p))], &opts(60, 0)).expect("ok");
        // Load drops at minute 2; the window still holds 4s until minute 2 + 180 s.
        assert_eq!(tl.desired[0], vec![4, 4, 4, 4, 1, 1, 1, 1]);
        assert_eq!(r.policies[0].scale_down_latency.max_secs, Some(120.0));
    }

    #[test]
    fn gaps_are_not_scored_and_hold_the_count() {
        let tr = trace(vec![2.0, f64::NAN, 2.0], 60);
        let (r, tl) = simulate_trace(&tr, &[exact_hpa()], &opts(60, 0)).expect("simulates");
        assert_eq!(r.scored_slots, 2);
        assert_eq!(tl.desired[0], vec![2, 2, 2]);
    }

    #[test]
    fn trace_from_sql_rows() {
        let t = Trace::from_points("q", &[0, 60_000, 180_000], &[1.0, 2.0, 4.0], Some(60_000))
            .expect("grid");
        assert_eq!(t.step_secs(), 60);
        assert_eq!(t.values.len(), 4);
        assert!(t.values[2].is_nan());
        assert!(Trace::from_points("q", &[0], &[-1.0], Some(60_000)).is_err());
        assert!(Trace::from_points("q", &[], &[], Some(60_000)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn totals_are_consistent_on_random_traces(
            values in proptest::collection::vec(0.0f64..50.0, 2..120),
            delay in 0u64..900,
            warmup in 0usize..10,
        ) {
            let tr = trace(values.clone(), 60);
            let (name, SimPolicy::Target(mut p)) = exact_hpa() else {
                panic!("target policy")
            };
            p.max_replicas = 100;
            let pols = vec![
                ("static-peak".to_string(), SimPolicy::StaticPeak),
                (name, SimPolicy::Target(p)),
                ("oracle".to_string(), SimPolicy::Oracle),
            ];
            let (r, tl) = simulate_trace(&tr, &pols, &opts(delay, warmup)).expect("simulates");
            let scored_min = r.scored_slots as f64;
            for (k, pr) in r.policies.iter().enumerate() {
                proptest::prop_assert!(pr.under_provisioned_minutes <= scored_min);
                proptest::prop_assert!(pr.saturated_minutes <= pr.under_provisioned_minutes);
                let billed: u32 = tl.desired[k][r.warmup_slots..].iter().sum();
                proptest::prop_assert!((pr.replica_hours - f64::from(billed) / 60.0).abs() < 1e-9);
                // Usable never exceeds what was ordered before (delay only removes capacity);
                // the oracle (k = 2) is instantaneous by definition.
                for i in (1..values.len()).filter(|_| k != 2) {
                    let ordered = tl.desired[k][..i].iter().max().copied().unwrap_or(0);
                    proptest::prop_assert!(tl.usable[k][i] <= ordered.max(tl.usable[k][0]));
                }
            }
            // Static and oracle are never short; nothing is cheaper than the oracle except by
            // being short.
            proptest::prop_assert_eq!(r.policies[0].under_provisioned_minutes, 0.0);
            proptest::prop_assert_eq!(r.policies[2].under_provisioned_minutes, 0.0);
            proptest::prop_assert!(r.policies[2].replica_hours <= r.policies[0].replica_hours + 1e-9);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(simulate_trace(&trace(vec![], 60), &[exact_hpa()], &opts(0, 0)).is_err());
        let mut o = opts(0, 0);
        o.capacity_per_replica = 0.0;
        assert!(simulate_trace(&trace(vec![1.0], 60), &[exact_hpa()], &o).is_err());
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        p
    }

    #[test]
    fn reads_traces_with_and_without_timestamps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let nab = write(
            dir.path(),
            "nab.csv",
            "timestamp,value\n2014-02-14 14:30:00,1.5\n2014-02-14 14:35:00,2.5\n2014-02-14 14:45:00,4\n\
             2014-02-14 14:50:00,4\n",
        );
        let t = read_trace(&nab, None, None, None, start).expect("reads");
        assert_eq!(t.step_ms, 300_000);
        assert_eq!(t.values.len(), 5, "the missing 14:40 slot is a gap");
        assert!(t.values[2].is_nan());
        assert_eq!(t.ts(0).to_rfc3339(), "2014-02-14T14:30:00+00:00");
        let dc = write(dir.path(), "dc.csv", "cpu,mem\n10,1\n20,2\n30,3\n");
        let t = read_trace(&dc, Some("mem"), None, Some(300), start).expect("reads");
        assert_eq!(
            (t.values.clone(), t.step_ms, t.ts(0)),
            (vec![1.0, 2.0, 3.0], 300_000, start)
        );
        assert_eq!(t.name, "dc.csv:mem");
        let secs = write(dir.path(), "s.csv", "timestamp,cpu_usage\n0,5\n300,6\n");
        let t = read_trace(&secs, Some("cpu_usage"), None, None, start).expect("reads");
        assert_eq!((t.start_ms, t.values.clone()), (0, vec![5.0, 6.0]));
        // Errors name the problem.
        let e = read_trace(&dc, Some("nope"), None, Some(300), start).expect_err("no column");
        assert!(e.to_string().contains("no column \"nope\""), "{e}");
        let e = read_trace(&dc, None, None, None, start).expect_err("no time");
        assert!(e.to_string().contains("--step-secs"), "{e}");
        let bad = write(dir.path(), "bad.csv", "timestamp,value\n0,1\n300,abc\n");
        let e = read_trace(&bad, None, None, None, start).expect_err("bad value");
        assert!(e.to_string().contains("line 3"), "{e}");
        let neg = write(dir.path(), "neg.csv", "timestamp,value\n0,1\n300,-1\n");
        assert!(read_trace(&neg, None, None, None, start).is_err());
    }

    /// A perfectly periodic daily trace: a seasonal forecast sees the rise coming, HPA-like
    /// scaling reacts one provisioning delay late.
    #[test]
    fn run_writes_reports_and_predictive_beats_reactive_on_a_periodic_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut csv = String::from("timestamp,value\n");
        for i in 0..(288 * 5) {
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let v = 100.0 + 80.0 * phase.sin().max(-0.5);
            let _ = writeln!(csv, "{},{v}", 1_704_067_200 + i * 300);
        }
        let trace = write(dir.path(), "daily.csv", &csv);
        let out = dir.path().join("out");
        let args = SimulateArgs {
            trace: Some(trace),
            sql: None,
            data_dir: PathBuf::from("data"),
            column: None,
            timestamp_column: None,
            step_secs: None,
            start: "2024-01-01T00:00:00Z".into(),
            policies: vec![],
            capacity_per_replica: None,
            peak_replicas: None,
            target_utilization_percent: 70.0,
            provisioning_delay_secs: 300,
            warmup_secs: Some(2 * 86_400),
            refit_every_secs: 21_600,
            max_history_secs: 1_209_600,
            model: "seasonal_naive".into(),
            quantiles: vec![0.9],
            predictive_stabilization_secs: 0,
            replica_hour_usd: DEFAULT_REPLICA_HOUR_USD,
            out_dir: Some(out.clone()),
            no_progress: true,
            quiet: true,
        };
        let r = run(&args).expect("runs");
        let names: Vec<&str> = r.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["static-peak", "reactive", "hpa", "oracle", "predictive"]
        );
        assert_eq!(r.static_peak_replicas, 20);
        let by = |n: &str| r.policies.iter().find(|p| p.name == n).expect(n);
        let (pred, hpa) = (by("predictive"), by("hpa"));
        assert_eq!(pred.under_provisioned_minutes, 0.0, "{pred:?}");
        assert!(hpa.under_provisioned_minutes > 0.0, "{hpa:?}");
        assert!(pred.cost_vs_static_percent <= -20.0, "{pred:?}");
        assert!(pred.scale_up_latency.ahead > 0, "forecast-driven scale-ups");
        for f in [
            "simulate.csv",
            "simulate.md",
            "timeline.csv",
            "simulate.svg",
        ] {
            assert!(out.join(f).exists(), "{f} written");
        }
        let csv = std::fs::read_to_string(out.join("simulate.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 6, "header + 5 policies");
        let svg = std::fs::read_to_string(out.join("simulate.svg")).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("predictive"));
        let md = std::fs::read_to_string(out.join("simulate.md")).expect("md");
        assert!(md.contains("| predictive |"), "{md}");
        // A policy file is simulated next to the baselines.
        let pol = write(
            dir.path(),
            "p.yaml",
            "targets: [{name: mine, metric: {name: load}, capacity_per_replica: 1, min_replicas: 1, max_replicas: 5}]",
        );
        let r = run(&SimulateArgs {
            policies: vec![pol.clone()],
            out_dir: None,
            ..args.clone()
        })
        .expect("runs");
        assert_eq!(r.policies.last().map(|p| p.name.as_str()), Some("mine"));
        assert_eq!(r.policies.len(), 5);
        // The file's capacity (1 per replica) is used as is: peak 180 at 70 % → 258 replicas.
        assert_eq!(r.capacity_per_replica, 1.0);
        assert_eq!(r.static_peak_replicas, 258);
        let r = run(&SimulateArgs {
            policies: vec![pol],
            peak_replicas: Some(10),
            out_dir: None,
            ..args
        })
        .expect("runs");
        assert_eq!(r.static_peak_replicas, 10, "--peak-replicas rescales");
    }
}
