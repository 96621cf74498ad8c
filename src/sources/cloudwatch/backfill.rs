//! `scalecast backfill cloudwatch --since 14d ...`: fetches history from
//! CloudWatch with a progress bar, so forecasts can start with two weeks of
//! data (as AWS predictive scaling does).
//!
//! The range `[since, until)` is aligned to period boundaries and cut into
//! windows of at most `window_periods` periods; each window × group of up to
//! 500 queries is one paged `GetMetricData` and one durable store write.
//! Mind CloudWatch's retention: 60 s data is kept 15 days, 300 s data 63 days,
//! 3600 s data 455 days; older periods come back empty.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use super::api::{CloudwatchApi, SdkApi};
use super::poll::{self, ResolvedQuery};
use super::{CloudwatchConfig, QueryConfig, caller, now_ms, resolve_all};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::Sample;
use crate::sources::scrape::{Stored, ingest_retrying};
use crate::store::Store;

/// Arguments of `scalecast backfill cloudwatch`.
///
/// Give either `--config FILE` (a YAML file with the fields of a `cloudwatch`
/// source, without `type`) or one query inline with `--namespace` and
/// `--metric-name`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillCloudwatchArgs {
    /// How far back to start: a duration such as `14d`, `36h`, `90m`, `600s`.
    #[arg(long, value_parser = parse_duration_secs)]
    pub since: u64,
    /// End of the range as a duration before now (default: now).
    #[arg(long, value_parser = parse_duration_secs, default_value = "0s")]
    pub until_ago: u64,
    /// YAML file with a cloudwatch source's settings and queries.
    #[arg(long, conflicts_with_all = ["namespace", "metric_name"])]
    pub config: Option<PathBuf>,
    /// Namespace of the inline query (e.g. `AWS/EC2`).
    #[arg(long, requires = "metric_name")]
    pub namespace: Option<String>,
    /// Metric name of the inline query (e.g. `CPUUtilization`).
    #[arg(long, requires = "namespace")]
    pub metric_name: Option<String>,
    /// Fixed dimension `Name=Value` (repeatable).
    #[arg(long = "dimension", value_parser = parse_dimension)]
    pub dimensions: Vec<(String, String)>,
    /// Dimension discovered with ListMetrics (repeatable), e.g. `InstanceId`.
    #[arg(long = "discover-dimension")]
    pub discover_dimensions: Vec<String>,
    /// Statistic (repeatable). Default `Average`.
    #[arg(long = "statistic")]
    pub statistics: Vec<String>,
    /// Period of the inline query, seconds.
    #[arg(long, default_value_t = 300)]
    pub period_secs: u32,
    /// AWS region (default: the standard chain).
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint override (moto, compatible services).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// Credentials file instead of `~/.aws/credentials`.
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// Periods per request window.
    #[arg(long, default_value_t = 1440)]
    pub window_periods: u32,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Parses `14d`, `36h`, `90m`, `600s`, `2w` or plain seconds.
pub fn parse_duration_secs(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 14d, 36h, 90m or 600s"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use s, m, h, d or w)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn parse_dimension(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("{s:?} is not Name=Value")),
    }
}

impl BackfillCloudwatchArgs {
    /// The source settings these arguments describe (file or inline query),
    /// validated. Command-line connection flags override the file's.
    pub fn to_config(&self) -> std::result::Result<CloudwatchConfig, String> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_yaml::from_str::<CloudwatchConfig>(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => {
                let (Some(ns), Some(m)) = (&self.namespace, &self.metric_name) else {
                    return Err("give --config FILE, or --namespace and --metric-name".into());
                };
                let mut q = QueryConfig::new(ns, m);
                q.dimensions = self.dimensions.iter().cloned().collect();
                q.discover_dimensions = self.discover_dimensions.clone();
                if !self.statistics.is_empty() {
                    q.statistics = self.statistics.clone();
                }
                q.period_secs = self.period_secs;
                let mut c = CloudwatchConfig::new();
                c.queries = vec![q];
                c
            }
        };
        if self.region.is_some() {
            cfg.region = self.region.clone();
        }
        if self.endpoint_url.is_some() {
            cfg.endpoint_url = self.endpoint_url.clone();
        }
        if self.profile.is_some() {
            cfg.profile = self.profile.clone();
        }
        if self.credentials_file.is_some() {
            cfg.credentials_file = self.credentials_file.clone();
        }
        cfg.validate().map_err(|(f, r)| format!("{f}: {r}"))?;
        if self.since <= self.until_ago {
            return Err("--since must be further back than --until-ago".into());
        }
        if self.window_periods == 0 {
            return Err("--window-periods must be at least 1".into());
        }
        Ok(cfg)
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Metric/statistic pairs fetched.
    pub queries: usize,
    /// Window × query-group requests made (each possibly several pages).
    pub requests: usize,
    /// Requests that failed after retries (their windows are missing).
    pub failed_requests: usize,
    /// Samples stored.
    pub samples: usize,
    /// Start of the range (aligned), ms since the epoch.
    pub start_ms: i64,
    /// End of the range (aligned, exclusive), ms since the epoch.
    pub end_ms: i64,
}

/// Runs `scalecast backfill cloudwatch` into `store`.
pub async fn backfill(args: &BackfillCloudwatchArgs, store: &Store) -> Result<BackfillReport> {
    let cfg = args.to_config().map_err(Error::InvalidInput)?;
    let api = SdkApi::connect(&cfg.connect_options())
        .await
        .map_err(Error::Other)?;
    let now = now_ms();
    let range = (
        now - args.since as i64 * 1000,
        now - args.until_ago as i64 * 1000,
    );
    let region = api.region().to_string();
    backfill_config(
        &api,
        &cfg,
        &region,
        range,
        args.window_periods,
        !args.no_progress,
        store,
    )
    .await
}

/// Backfills every query of `cfg` over `range` = `[start_ms, end_ms)`, over
/// any [`CloudwatchApi`]. A request that still fails after retries is
/// counted in the report and skipped; storage errors abort.
pub async fn backfill_config<A: CloudwatchApi>(
    api: &A,
    cfg: &CloudwatchConfig,
    region: &str,
    range: (i64, i64),
    window_periods: u32,
    progress: bool,
    store: &Store,
) -> Result<BackfillReport> {
    let metrics = Arc::new(Metrics::new());
    let caller = caller(cfg, "backfill", &metrics);
    let resolved = resolve_all(api, &caller, cfg, region, &BTreeMap::new()).await;
    let all: Vec<ResolvedQuery> = resolved.into_values().flatten().collect();
    let mut by_period: BTreeMap<u32, Vec<&ResolvedQuery>> = BTreeMap::new();
    for q in &all {
        by_period.entry(q.period_secs).or_default().push(q);
    }
    // Plan: (period, window start, window end, chunk of queries).
    let chunk_size = cfg.max_queries_per_request.clamp(1, 500);
    let mut plan: Vec<(i64, i64, &[&ResolvedQuery])> = Vec::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (period, qs) in &by_period {
        let p = i64::from(*period) * 1000;
        let start = range.0.div_euclid(p) * p;
        let end = range.1.div_euclid(p) * p;
        lo = lo.min(start);
        hi = hi.max(end);
        let step = p * i64::from(window_periods.max(1));
        let mut w = start;
        while w < end {
            let we = (w + step).min(end);
            for chunk in qs.chunks(chunk_size) {
                plan.push((w, we, chunk));
            }
            w = we;
        }
    }
    let bar = if progress {
        ProgressBar::with_draw_target(Some(plan.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} requests, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut report = BackfillReport {
        queries: all.len(),
        start_ms: if lo == i64::MAX { range.0 } else { lo },
        end_ms: if hi == i64::MIN { range.1 } else { hi },
        ..Default::default()
    };
    // Never stops early: the receiver's sender lives until the end.
    let (_keep, mut stop) = watch::channel(false);
    for (ws, we, chunk) in plan {
        report.requests += 1;
        match poll::fetch_window(api, &caller, chunk, ws, we).await {
            Ok(points) => {
                let samples: Vec<Sample> = points
                    .into_iter()
                    .map(|(i, ts, v)| Sample {
                        name: chunk[i].name.clone(),
                        labels: chunk[i].labels.clone(),
                        ts_ms: ts,
                        value: v,
                    })
                    .collect();
                match ingest_retrying(store, &samples, &mut stop, || {}).await {
                    Stored::Yes => {}
                    Stored::Stopped | Stored::Closed => {
                        bar.abandon_with_message("store closed");
                        return Err(Error::Shutdown("store closed during the backfill".into()));
                    }
                    Stored::Failed(e) => {
                        bar.abandon_with_message("store error");
                        return Err(e);
                    }
                }
                report.samples += samples.len();
            }
            Err(e) => {
                report.failed_requests += 1;
                bar.suspend(|| {
                    tracing::warn!(error = %e, start_ms = ws, end_ms = we, "backfill request failed");
                });
            }
        }
        bar.set_message(format!("{} samples", report.samples));
        bar.inc(1);
    }
    bar.finish_with_message(format!("{} samples", report.samples));
    Ok(report)
}
