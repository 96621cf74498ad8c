//! CloudWatch poller: `GetMetricData` on an interval for configured metrics
//! (fixed dimensions, or discovered with `ListMetrics`), written through the
//! WAL like every other source.
//!
//! ```yaml
//! sources:
//!   aws:
//!     type: cloudwatch
//!     region: us-east-1               # else the standard chain (AWS_REGION, profile)
//!     poll_interval_secs: 60
//!     repoll_periods: 5               # CloudWatch data arrives late: re-fetch 5 periods
//!     queries:
//!       - namespace: AWS/EC2
//!         metric_name: CPUUtilization
//!         discover_dimensions: [InstanceId]   # every instance, via ListMetrics
//!         statistics: [Average, Maximum]
//!         period_secs: 60
//!       - namespace: AWS/ApplicationELB
//!         metric_name: RequestCount
//!         dimensions: { LoadBalancer: app/web/0123456789abcdef }
//!         statistics: [Sum]
//!         period_secs: 60
//! ```
//!
//! Samples: name `<namespace>_<metric>_<statistic>` in lower case with
//! non-alphanumerics as `_` (`aws_ec2_cpuutilization_average`, like
//! cloudwatch_exporter and YACE), or `<name>_<statistic>` when `name` is set;
//! labels are the dimensions in snake case (`instance_id`), `region`, and the
//! query's `labels`. The timestamp is the start of the CloudWatch period.
//!
//! Every poll fetches, per period length, the last `repoll_periods` complete
//! periods aligned to period boundaries, so late datapoints are picked up;
//! datapoints already stored with the same value are skipped, and a datapoint
//! whose value changed (late data changed the aggregate) is stored again as a
//! correction with the same timestamp (readers take the last one written).
//! Throttling and transient errors are retried with exponential backoff and
//! jitter; `NextToken` pages are followed.

pub mod api;
pub mod backfill;
pub mod poll;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::api::{CloudwatchApi, ConnectOptions, SdkApi};
use self::poll::{Caller, Dedup, ResolvedQuery};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::sources::scrape::{Stored, ingest_retrying, stopped};
use crate::store::Store;

pub use self::backfill::{BackfillCloudwatchArgs, BackfillReport, backfill, backfill_config};

/// Configuration of a `cloudwatch` source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudwatchConfig {
    /// AWS region; when absent the standard chain decides (`AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, the profile's `region`).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override, e.g. `http://127.0.0.1:5000` for moto or a
    /// CloudWatch-compatible service.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Profile in the shared AWS config/credentials files (default: `AWS_PROFILE`
    /// or `default`). Credentials otherwise come from the standard chain:
    /// environment, shared files, SSO, web identity, ECS/EC2 metadata.
    #[serde(default)]
    pub profile: Option<String>,
    /// Credentials file to use instead of `~/.aws/credentials`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Time between polls, seconds. Default 60.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Complete periods fetched on every poll (CloudWatch data arrives late;
    /// already-stored datapoints are de-duplicated). Default 5.
    #[serde(default = "default_repoll_periods")]
    pub repoll_periods: u32,
    /// How often `discover_dimensions` queries re-run `ListMetrics`, seconds.
    /// Default 300.
    #[serde(default = "default_discovery_interval_secs")]
    pub discovery_interval_secs: u64,
    /// Retries of a throttled or failed call (exponential backoff from 0.5 s
    /// to 30 s, with jitter). Default 5.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Queries per `GetMetricData` request, 1..=500. Default 500.
    #[serde(default = "default_max_queries_per_request")]
    pub max_queries_per_request: usize,
    /// Per-attempt timeout of an API call, seconds. Default 30.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// The metrics to poll.
    pub queries: Vec<QueryConfig>,
}

/// One metric (or a family of metrics found by discovery) and its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Namespace, e.g. `AWS/EC2`.
    pub namespace: String,
    /// Metric name, e.g. `CPUUtilization`.
    pub metric_name: String,
    /// Fixed dimensions `name: value`. Without `discover_dimensions` they
    /// identify exactly one metric.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Dimension names whose values are discovered with `ListMetrics`: every
    /// metric whose dimension names are exactly `dimensions` ∪ these is polled.
    #[serde(default)]
    pub discover_dimensions: Vec<String>,
    /// Only discover metrics with data in the last 3 hours.
    #[serde(default)]
    pub recently_active_only: bool,
    /// Statistics: `SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum`, or
    /// extended ones (`p99`, `p99.9`, `tm90`, `IQM`, `TM(10%:90%)`...).
    /// Default `[Average]`.
    #[serde(default = "default_statistics")]
    pub statistics: Vec<String>,
    /// Period, seconds: 1, 5, 10, 20, 30 or a multiple of 60. Default 300.
    #[serde(default = "default_period_secs")]
    pub period_secs: u32,
    /// Sample name prefix (the statistic is appended); default
    /// `<namespace>_<metric_name>` sanitized.
    #[serde(default)]
    pub name: Option<String>,
    /// Extra labels on every sample of this query.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_poll_interval_secs() -> u64 {
    60
}
fn default_repoll_periods() -> u32 {
    5
}
fn default_discovery_interval_secs() -> u64 {
    300
}
fn default_max_retries() -> u32 {
    5
}
fn default_max_queries_per_request() -> usize {
    500
}
fn default_request_timeout_secs() -> u64 {
    30
}
fn default_statistics() -> Vec<String> {
    vec!["Average".into()]
}
fn default_period_secs() -> u32 {
    300
}

/// True for a statistic CloudWatch accepts.
pub fn valid_statistic(s: &str) -> bool {
    if matches!(
        s,
        "SampleCount" | "Average" | "Sum" | "Minimum" | "Maximum" | "IQM"
    ) {
        return true;
    }
    let num = |t: &str| {
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        !int.is_empty()
            && int.len() <= 3
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && t.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v))
    };
    for p in ["p", "tm", "wm", "tc", "ts"] {
        if let Some(rest) = s.strip_prefix(p)
            && num(rest)
        {
            return true;
        }
    }
    for p in ["TM(", "WM(", "TC(", "TS(", "PR("] {
        if s.starts_with(p) && s.ends_with(')') && s.len() > p.len() + 1 {
            return true;
        }
    }
    false
}

/// True for a period CloudWatch accepts.
pub fn valid_period(p: u32) -> bool {
    matches!(p, 1 | 5 | 10 | 20 | 30) || (p > 0 && p.is_multiple_of(60))
}

fn is_label_name(s: &str) -> bool {
    crate::sources::scrape::parse::is_label_name(s)
}

impl QueryConfig {
    /// A query for one metric with every default.
    pub fn new(namespace: &str, metric_name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            metric_name: metric_name.into(),
            dimensions: BTreeMap::new(),
            discover_dimensions: Vec::new(),
            recently_active_only: false,
            statistics: default_statistics(),
            period_secs: default_period_secs(),
            name: None,
            labels: BTreeMap::new(),
        }
    }

    /// Checks the values; errors are `(field path, reason)`.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let e = |f: &str, r: String| Err((f.to_string(), r));
        if self.namespace.trim().is_empty() || self.namespace.len() > 255 {
            return e("namespace", "must be 1 to 255 characters".into());
        }
        if self.metric_name.trim().is_empty() || self.metric_name.len() > 255 {
            return e("metric_name", "must be 1 to 255 characters".into());
        }
        if !valid_period(self.period_secs) {
            return e(
                "period_secs",
                format!(
                    "{} is not a CloudWatch period (1, 5, 10, 20, 30 or a multiple of 60)",
                    self.period_secs
                ),
            );
        }
        if self.statistics.is_empty() {
            return e("statistics", "must not be empty".into());
        }
        for (i, s) in self.statistics.iter().enumerate() {
            if !valid_statistic(s) {
                return e(
                    &format!("statistics.{i}"),
                    format!(
                        "{s:?} is not a statistic (SampleCount, Average, Sum, Minimum, Maximum, pNN, tmNN, ...)"
                    ),
                );
            }
        }
        let mut names: Vec<&String> = self
            .dimensions
            .keys()
            .chain(self.discover_dimensions.iter())
            .collect();
        if names.len() > 30 {
            return e("dimensions", "at most 30 dimensions".into());
        }
        for (i, d) in self.discover_dimensions.iter().enumerate() {
            if d.is_empty() {
                return e(
                    &format!("discover_dimensions.{i}"),
                    "must not be empty".into(),
                );
            }
        }
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return e(
                "discover_dimensions",
                format!("{:?} is also a fixed dimension", w[0]),
            );
        }
        if self.recently_active_only && self.discover_dimensions.is_empty() {
            return e(
                "recently_active_only",
                "only applies with discover_dimensions".into(),
            );
        }
        if let Some(n) = &self.name
            && !crate::sources::scrape::parse::is_metric_name(n)
        {
            return e("name", format!("{n:?} is not a valid metric name"));
        }
        for k in self.labels.keys() {
            if !is_label_name(k) {
                return e(
                    &format!("labels.{k}"),
                    format!("{k:?} is not a valid label name"),
                );
            }
        }
        Ok(())
    }
}

impl CloudwatchConfig {
    /// A config with every default and no query.
    pub fn new() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            profile: None,
            credentials_file: None,
            poll_interval_secs: default_poll_interval_secs(),
            repoll_periods: default_repoll_periods(),
            discovery_interval_secs: default_discovery_interval_secs(),
            max_retries: default_max_retries(),
            max_queries_per_request: default_max_queries_per_request(),
            request_timeout_secs: default_request_timeout_secs(),
            queries: Vec::new(),
        }
    }

    /// Checks the values; errors are `(field path, reason)` with 0-based list
    /// indices as path segments (`queries.1.period_secs`).
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let e = |f: &str, r: String| Err((f.to_string(), r));
        if let Some(r) = &self.region
            && (r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return e(
                "region",
                format!("{r:?} is not a region name like us-east-1"),
            );
        }
        if let Some(u) = &self.endpoint_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return e(
                "endpoint_url",
                format!("{u:?} must start with http:// or https://"),
            );
        }
        if self.poll_interval_secs == 0 {
            return e("poll_interval_secs", "must be at least 1".into());
        }
        if self.repoll_periods == 0 || self.repoll_periods > 1440 {
            return e("repoll_periods", "must be between 1 and 1440".into());
        }
        if self.discovery_interval_secs == 0 {
            return e("discovery_interval_secs", "must be at least 1".into());
        }
        if self.max_retries > 20 {
            return e("max_retries", "must be at most 20".into());
        }
        if !(1..=500).contains(&self.max_queries_per_request) {
            return e(
                "max_queries_per_request",
                "must be between 1 and 500 (the GetMetricData limit)".into(),
            );
        }
        if self.request_timeout_secs == 0 {
            return e("request_timeout_secs", "must be at least 1".into());
        }
        if self.queries.is_empty() {
            return e("queries", "must list at least one query".into());
        }
        for (i, q) in self.queries.iter().enumerate() {
            q.validate()
                .map_err(|(f, r)| (format!("queries.{i}.{f}"), r))?;
        }
        Ok(())
    }

    /// Connection settings for [`SdkApi::connect`].
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            credentials_file: self.credentials_file.clone(),
            attempt_timeout: Some(Duration::from_secs(self.request_timeout_secs)),
        }
    }
}

impl Default for CloudwatchConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Label set `{source="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source id.
    pub source: String,
}

/// Label set `{source="...", operation="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// Source id.
    pub source: String,
    /// `GetMetricData` or `ListMetrics`.
    pub operation: String,
}

/// Self-metrics of the CloudWatch sources (registered once per [`Metrics`]).
#[derive(Clone, Default)]
pub struct CloudwatchMetrics {
    /// API calls made (every attempt).
    pub api_calls: Family<OpLabel, Counter>,
    /// Calls answered with throttling.
    pub throttles: Family<OpLabel, Counter>,
    /// Calls that failed otherwise.
    pub api_errors: Family<OpLabel, Counter>,
    /// Polls run.
    pub polls: Family<SourceLabel, Counter>,
    /// Samples stored.
    pub samples: Family<SourceLabel, Counter>,
    /// Re-polled datapoints skipped as already stored.
    pub duplicates: Family<SourceLabel, Counter>,
    /// Re-polled datapoints stored again because their value changed.
    pub corrections: Family<SourceLabel, Counter>,
    /// Metrics (× statistics) currently polled.
    pub queries: Family<SourceLabel, Gauge>,
}

impl CloudwatchMetrics {
    /// The CloudWatch metrics of `metrics`, registering them on first use.
    pub fn get(metrics: &Arc<Metrics>) -> CloudwatchMetrics {
        metrics.get_or_init(|metrics| {
            let m = CloudwatchMetrics::default();
            metrics.register(
                "scalecast_cloudwatch_api_calls",
                "CloudWatch API calls (every attempt), by operation",
                m.api_calls.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_throttles",
                "CloudWatch calls answered with throttling",
                m.throttles.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_api_errors",
                "CloudWatch calls that failed (not throttling)",
                m.api_errors.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_polls",
                "CloudWatch polls run",
                m.polls.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_samples",
                "Samples stored from CloudWatch",
                m.samples.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_duplicates",
                "Re-polled datapoints skipped as already stored",
                m.duplicates.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_corrections",
                "Re-polled datapoints stored again because their value changed",
                m.corrections.clone(),
            );
            metrics.register(
                "scalecast_cloudwatch_queries",
                "Metric/statistic pairs currently polled",
                m.queries.clone(),
            );
            m
        })
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn caller(cfg: &CloudwatchConfig, id: &str, metrics: &Arc<Metrics>) -> Caller {
    Caller {
        max_retries: cfg.max_retries,
        base: Duration::from_millis(500),
        cap: Duration::from_secs(30),
        metrics: CloudwatchMetrics::get(metrics),
        source: id.into(),
    }
}

/// Resolves every query: fixed ones directly, discovery ones with
/// `ListMetrics`. A failed discovery keeps `previous` results of that query.
pub async fn resolve_all<A: CloudwatchApi>(
    api: &A,
    caller: &Caller,
    cfg: &CloudwatchConfig,
    region: &str,
    previous: &BTreeMap<usize, Vec<ResolvedQuery>>,
) -> BTreeMap<usize, Vec<ResolvedQuery>> {
    let mut out = BTreeMap::new();
    for (i, q) in cfg.queries.iter().enumerate() {
        let resolved = if q.discover_dimensions.is_empty() {
            poll::resolve(q, &[poll::static_metric(q)], region)
        } else {
            match poll::discover(api, caller, q).await {
                Ok(ms) => poll::resolve(q, &ms, region),
                Err(e) => {
                    tracing::warn!(source = %caller.source, query = i, error = %e, "ListMetrics failed; keeping the previous metrics");
                    previous.get(&i).cloned().unwrap_or_default()
                }
            }
        };
        out.insert(i, resolved);
    }
    out
}

/// Runs a CloudWatch source until `shutdown` turns true (or its sender is
/// dropped). `id` is the source id (logs, self-metrics).
///
/// Errors only for an invalid config or when no region can be found.
pub async fn run(
    id: &str,
    cfg: CloudwatchConfig,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    cfg.validate()
        .map_err(|(f, r)| Error::Other(format!("sources.{id}.{f}: {r}")))?;
    let api = SdkApi::connect(&cfg.connect_options())
        .await
        .map_err(|e| Error::Other(format!("sources.{id}: {e}")))?;
    let region = api.region().to_string();
    run_with(id, &cfg, &api, &region, store, metrics, shutdown).await;
    Ok(())
}

/// The poll loop over any [`CloudwatchApi`] (the SDK in production).
pub async fn run_with<A: CloudwatchApi>(
    id: &str,
    cfg: &CloudwatchConfig,
    api: &A,
    region: &str,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let caller = caller(cfg, id, &metrics);
    let cm = caller.metrics.clone();
    let label = SourceLabel { source: id.into() };
    let mut dedup = Dedup::default();
    let mut resolved: BTreeMap<usize, Vec<ResolvedQuery>> = BTreeMap::new();
    let mut next_discovery = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(cfg.poll_interval_secs));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        if tokio::time::Instant::now() >= next_discovery {
            resolved = resolve_all(api, &caller, cfg, region, &resolved).await;
            next_discovery =
                tokio::time::Instant::now() + Duration::from_secs(cfg.discovery_interval_secs);
            let n: usize = resolved.values().map(Vec::len).sum();
            cm.queries.get_or_create(&label).set(n as i64);
        }
        let all: Vec<ResolvedQuery> = resolved.values().flatten().cloned().collect();
        let (samples, st) = poll::poll_once(
            api,
            &caller,
            &all,
            now_ms(),
            cfg.repoll_periods,
            cfg.max_queries_per_request,
            &mut dedup,
        )
        .await;
        cm.polls.get_or_create(&label).inc();
        tracing::debug!(source = id, ?st, "CloudWatch poll");
        let n = samples.len();
        match ingest_retrying(&store, &samples, &mut shutdown, || {}).await {
            Stored::Yes => {}
            Stored::Stopped | Stored::Closed => return,
            Stored::Failed(e) => {
                // Forget what was seen so the next poll stores the window again.
                tracing::error!(source = id, error = %e, "cannot store CloudWatch samples; will re-fetch");
                dedup = Dedup::default();
                continue;
            }
        }
        cm.samples.get_or_create(&label).inc_by(n as u64);
        metrics.samples_received.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests;
