//! Prometheus scraper: pulls `/metrics` from targets on an interval, like a
//! Prometheus `scrape_config`, and writes the samples through the WAL.
//!
//! ```yaml
//! sources:
//!   node:
//!     type: scrape
//!     job_name: node
//!     scrape_interval_secs: 15
//!     scrape_timeout_secs: 10
//!     static_configs:
//!       - targets: ['127.0.0.1:9100']
//!         labels: { env: prod }
//!     file_sd_configs:
//!       - files: ['/etc/scalecast/targets/*.json']
//!     metric_relabel_configs:
//!       - source_labels: [__name__]
//!         regex: 'go_.*'
//!         action: drop
//! ```
//!
//! * One task per target, so a slow or hung target delays nobody else; each
//!   scrape is bounded by `scrape_timeout_secs` and `body_size_limit_bytes`.
//! * Scrapes are staggered: a target is scraped at a fixed phase inside the
//!   interval derived from a hash of its URL and labels (as Prometheus does),
//!   so 100 targets do not all fire at the same instant.
//! * Every scrape also writes `up`, `scrape_duration_seconds`,
//!   `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling` and
//!   `scrape_series_added` with the target's labels. A failed scrape (refused,
//!   timeout, non-200, too large, unparsable, over `sample_limit`) writes
//!   `up 0` at the scheduled time, so a dead target shows within one interval.
//! * Samples carry the scrape's start time unless the exposition has explicit
//!   timestamps and `honor_timestamps` is on.
//! * The body is parsed by [`parse`] (text format 0.0.4 and OpenMetrics 1.0);
//!   see that module for why `prometheus-parse` is not used.
//! * When the store is overloaded the scrape's samples are retried with
//!   backoff (never dropped); the target's next scrape waits meanwhile.

pub mod discovery;
pub mod parse;
pub mod relabel;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::discovery::{FileSd, FileSdConfig, Target, TargetDefaults, TargetGroup};
use self::relabel::{RelabelConfig, Relabeler};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::Sample;
use crate::sources::remote_write::encode_samples;
use crate::store::{IngestRecord, Store};

/// Configuration of a `scrape` source (one Prometheus-style job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Value of the `job` label of every target.
    pub job_name: String,
    /// Time between two scrapes of a target, seconds. Default 15.
    #[serde(default = "default_interval")]
    pub scrape_interval_secs: f64,
    /// Time a scrape may take (connect, headers, body), seconds; at most
    /// `scrape_interval_secs`. Default 10 (capped at the interval).
    #[serde(default)]
    pub scrape_timeout_secs: Option<f64>,
    /// HTTP path of the metrics endpoint. Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// URL scheme. Only `http` is built in (the HTTP client has no TLS).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// URL query parameters added to every scrape.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// When true, labels exposed by the target win over the target labels
    /// (`job`, `instance`, ...); when false (default) a clashing exposed label
    /// is renamed `exported_<name>`.
    #[serde(default)]
    pub honor_labels: bool,
    /// Use timestamps present in the exposition (default true); when false
    /// every sample gets the scrape's start time.
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// Largest accepted response body, bytes (uncompressed; no gzip is
    /// requested). A larger body fails the scrape. Default 10 MiB.
    #[serde(default = "default_body_size_limit_bytes")]
    pub body_size_limit_bytes: u64,
    /// Most samples accepted per scrape after metric relabeling; more fails
    /// the scrape (`up 0`, nothing stored). 0 (default) means no limit.
    #[serde(default)]
    pub sample_limit: usize,
    /// Fixed target lists.
    #[serde(default)]
    pub static_configs: Vec<TargetGroup>,
    /// Target lists read from JSON/YAML files, reloaded on change.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Rules applied to each target's labels before scraping.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped sample (name in `__name__`) before storing.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

fn default_interval() -> f64 {
    15.0
}
fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_true() -> bool {
    true
}
fn default_body_size_limit_bytes() -> u64 {
    10 * 1024 * 1024
}

/// Default timeout when none is configured, seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;

impl ScrapeConfig {
    /// A config for `job_name` with every default and no targets.
    pub fn new(job_name: &str) -> Self {
        Self {
            job_name: job_name.into(),
            scrape_interval_secs: default_interval(),
            scrape_timeout_secs: None,
            metrics_path: default_metrics_path(),
            scheme: default_scheme(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            body_size_limit_bytes: default_body_size_limit_bytes(),
            sample_limit: 0,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }

    /// The effective timeout, seconds.
    pub fn timeout_secs(&self) -> f64 {
        self.scrape_timeout_secs
            .unwrap_or(DEFAULT_TIMEOUT_SECS.min(self.scrape_interval_secs))
    }

    /// Checks the values. Errors are `(field path, reason)`; list indices are
    /// 0-based path segments (`static_configs.0.targets.2`).
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let e = |f: &str, r: String| Err((f.to_string(), r));
        if self.job_name.trim().is_empty() {
            return e("job_name", "must not be empty".into());
        }
        let iv = self.scrape_interval_secs;
        if !iv.is_finite() || iv < 0.01 {
            return e(
                "scrape_interval_secs",
                format!("must be at least 0.01, got {iv}"),
            );
        }
        if let Some(t) = self.scrape_timeout_secs {
            if !t.is_finite() || t <= 0.0 {
                return e(
                    "scrape_timeout_secs",
                    format!("must be greater than 0, got {t}"),
                );
            }
            if t > iv {
                return e(
                    "scrape_timeout_secs",
                    format!("{t} is longer than scrape_interval_secs ({iv})"),
                );
            }
        }
        if !self.metrics_path.starts_with('/') {
            return e("metrics_path", "must start with '/'".into());
        }
        match self.scheme.as_str() {
            "http" => {}
            "https" => {
                return e(
                    "scheme",
                    "https is not supported by this build (the HTTP client has no TLS); use http"
                        .into(),
                );
            }
            other => return e("scheme", format!("{other:?} is not http")),
        }
        if self.body_size_limit_bytes == 0 {
            return e("body_size_limit_bytes", "must be greater than 0".into());
        }
        if self.static_configs.is_empty() && self.file_sd_configs.is_empty() {
            return e(
                "static_configs",
                "no targets: set static_configs or file_sd_configs".into(),
            );
        }
        for (i, g) in self.static_configs.iter().enumerate() {
            for (j, t) in g.targets.iter().enumerate() {
                if let Err(r) = discovery::check_address(t) {
                    return e(&format!("static_configs.{i}.targets.{j}"), r);
                }
            }
            for k in g.labels.keys() {
                if !parse::is_label_name(k) {
                    return e(
                        &format!("static_configs.{i}.labels.{k}"),
                        format!("{k:?} is not a valid label name"),
                    );
                }
            }
        }
        for (i, f) in self.file_sd_configs.iter().enumerate() {
            if f.files.is_empty() {
                return e(
                    &format!("file_sd_configs.{i}.files"),
                    "must not be empty".into(),
                );
            }
            for (j, p) in f.files.iter().enumerate() {
                let ext = p
                    .extension()
                    .and_then(|x| x.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if !matches!(ext.as_str(), "json" | "yml" | "yaml") {
                    return e(
                        &format!("file_sd_configs.{i}.files.{j}"),
                        format!("{} must end in .json, .yml or .yaml", p.display()),
                    );
                }
                if p.parent()
                    .is_some_and(|d| d.to_string_lossy().contains(['*', '?']))
                {
                    return e(
                        &format!("file_sd_configs.{i}.files.{j}"),
                        "wildcards are only allowed in the file name".into(),
                    );
                }
            }
            let r = f.refresh_interval_secs;
            if !r.is_finite() || r < 0.1 {
                return e(
                    &format!("file_sd_configs.{i}.refresh_interval_secs"),
                    format!("must be at least 0.1, got {r}"),
                );
            }
        }
        Relabeler::new(&self.relabel_configs)
            .map_err(|(f, r)| (format!("relabel_configs.{f}"), r))?;
        Relabeler::new(&self.metric_relabel_configs)
            .map_err(|(f, r)| (format!("metric_relabel_configs.{f}"), r))?;
        for k in self.params.keys() {
            if k.is_empty() {
                return e("params", "parameter names must not be empty".into());
            }
        }
        Ok(())
    }
}

/// Label set `{source="..."}` of the scraper's self-metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source id from the pipeline file.
    pub source: String,
}

/// Label set `{source="...", reason="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceReasonLabel {
    /// Source id from the pipeline file.
    pub source: String,
    /// Why (`connect`, `timeout`, `http_status`, `body_too_large`, `parse`,
    /// `sample_limit`, `other`).
    pub reason: String,
}

/// Self-metrics of every scrape source (registered once per [`Metrics`]).
#[derive(Clone, Default)]
pub struct ScrapeMetrics {
    /// Scrapes attempted.
    pub scrapes: Family<SourceLabel, Counter>,
    /// Failed scrapes by reason.
    pub failures: Family<SourceReasonLabel, Counter>,
    /// Samples stored (scraped after relabeling, plus the 5 synthesized).
    pub samples: Family<SourceLabel, Counter>,
    /// Targets currently scraped.
    pub targets: Family<SourceLabel, Gauge>,
    /// Store retries because the ingest queue was full.
    pub store_retries: Family<SourceLabel, Counter>,
    /// Scrape results the store refused (WAL I/O errors); dropped.
    pub store_errors: Family<SourceLabel, Counter>,
    /// file_sd files that failed to read or parse.
    pub sd_errors: Family<SourceLabel, Counter>,
    /// Target-set changes applied.
    pub sd_updates: Family<SourceLabel, Counter>,
}

impl ScrapeMetrics {
    /// The scrape metrics of `metrics`, registering them on first use.
    pub fn get(metrics: &Arc<Metrics>) -> ScrapeMetrics {
        metrics.get_or_init(|metrics| {
            let m = ScrapeMetrics::default();
            metrics.register(
                "scalecast_scrape_scrapes",
                "Scrapes attempted",
                m.scrapes.clone(),
            );
            metrics.register(
                "scalecast_scrape_failures",
                "Failed scrapes, by reason",
                m.failures.clone(),
            );
            metrics.register(
                "scalecast_scrape_samples",
                "Samples stored by the scraper (including synthesized up/scrape_*)",
                m.samples.clone(),
            );
            metrics.register(
                "scalecast_scrape_targets",
                "Targets currently scraped",
                m.targets.clone(),
            );
            metrics.register(
                "scalecast_scrape_store_retries",
                "Scrape results retried because the ingest queue was full",
                m.store_retries.clone(),
            );
            metrics.register(
                "scalecast_scrape_store_errors",
                "Scrape results the store refused (WAL errors) and that were dropped",
                m.store_errors.clone(),
            );
            metrics.register(
                "scalecast_scrape_sd_errors",
                "file_sd files that failed to read or parse",
                m.sd_errors.clone(),
            );
            metrics.register(
                "scalecast_scrape_sd_updates",
                "Target-set changes applied",
                m.sd_updates.clone(),
            );
            m
        })
    }
}

/// Resolves when `rx` says stop (true) or its sender is gone.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Outcome of [`ingest_retrying`].
#[derive(Debug)]
pub(crate) enum Stored {
    /// Durable in the WAL.
    Yes,
    /// A stop was requested while waiting for the store.
    Stopped,
    /// The store is closed (shutdown): nothing more can be written.
    Closed,
    /// The store refused the write for another reason (WAL I/O error...).
    Failed(Error),
}

/// Writes samples durably, retrying with backoff (50 ms doubling to 2 s)
/// while the store is overloaded: overload never drops samples.
pub(crate) async fn ingest_retrying(
    store: &Store,
    samples: &[Sample],
    stop: &mut watch::Receiver<bool>,
    mut on_retry: impl FnMut(),
) -> Stored {
    if samples.is_empty() {
        return Stored::Yes;
    }
    let rec = IngestRecord {
        wal_payload: bytes::Bytes::from(encode_samples(samples)),
        batch: crate::schema::samples_to_batch(samples),
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.ingest(rec.clone()).await {
            Ok(()) => return Stored::Yes,
            Err(Error::Overloaded(why)) => {
                on_retry();
                tracing::debug!(%why, ?backoff, "store overloaded; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(stop) => return Stored::Stopped,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(Error::Shutdown(_)) => return Stored::Closed,
            Err(e) => return Stored::Failed(e),
        }
    }
}

/// Runs a scrape source until `shutdown` turns true (or its sender is
/// dropped). `id` is the source id (used in logs and self-metrics).
///
/// Returns an error only for an invalid config; scrape failures are
/// reported as `up 0` and in the self-metrics.
pub async fn run(
    id: &str,
    cfg: ScrapeConfig,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    cfg.validate()
        .map_err(|(f, r)| Error::Other(format!("sources.{id}.{f}: {r}")))?;
    let target_relabel = Relabeler::new(&cfg.relabel_configs)
        .map_err(|(f, r)| Error::Other(format!("sources.{id}.relabel_configs.{f}: {r}")))?;
    let metric_relabel = Relabeler::new(&cfg.metric_relabel_configs)
        .map_err(|(f, r)| Error::Other(format!("sources.{id}.metric_relabel_configs.{f}: {r}")))?;
    let sm = ScrapeMetrics::get(&metrics);
    let source = SourceLabel { source: id.into() };
    let client = reqwest::Client::builder()
        .user_agent(concat!("scalecast/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs_f64(cfg.timeout_secs()))
        .build()
        .map_err(|e| Error::Other(format!("sources.{id}: HTTP client: {e}")))?;
    let settings = Arc::new(target::Settings {
        source: id.to_string(),
        interval: Duration::from_secs_f64(cfg.scrape_interval_secs),
        timeout: Duration::from_secs_f64(cfg.timeout_secs()),
        body_limit: cfg.body_size_limit_bytes,
        sample_limit: cfg.sample_limit,
        honor_labels: cfg.honor_labels,
        honor_timestamps: cfg.honor_timestamps,
        metric_relabel,
        client,
        store,
        metrics: metrics.clone(),
        sm: sm.clone(),
    });
    let defaults = TargetDefaults {
        job: &cfg.job_name,
        scheme: &cfg.scheme,
        metrics_path: &cfg.metrics_path,
        params: &cfg.params,
        interval_secs: cfg.scrape_interval_secs,
        timeout_secs: cfg.timeout_secs(),
    };
    let mut file_sd = FileSd::default();
    let refresh = cfg
        .file_sd_configs
        .iter()
        .map(|f| f.refresh_interval_secs)
        .fold(f64::INFINITY, f64::min);
    let mut running: HashMap<u64, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    let mut first = true;
    loop {
        let mut changed = first;
        if !cfg.file_sd_configs.is_empty() {
            let o = file_sd.refresh(&cfg.file_sd_configs);
            for err in &o.errors {
                tracing::warn!(source = id, error = %err, "file_sd");
            }
            if !o.errors.is_empty() {
                sm.sd_errors
                    .get_or_create(&source)
                    .inc_by(o.errors.len() as u64);
            }
            changed |= o.changed;
        }
        first = false;
        if changed {
            let groups = cfg
                .static_configs
                .iter()
                .map(|g| (None, g))
                .chain(file_sd.groups().map(|(p, g)| (Some(p), g)));
            let (targets, errors) = discovery::build_targets(groups, &defaults, &target_relabel);
            for err in errors {
                tracing::warn!(source = id, error = %err, "target skipped");
            }
            reconcile(&mut running, targets, &settings, &shutdown).await;
            sm.targets.get_or_create(&source).set(running.len() as i64);
            sm.sd_updates.get_or_create(&source).inc();
            tracing::info!(
                source = id,
                targets = running.len(),
                "scrape targets updated"
            );
        }
        if refresh.is_finite() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(refresh)) => {}
                _ = stopped(&mut shutdown) => break,
            }
        } else {
            stopped(&mut shutdown).await;
            break;
        }
    }
    for (_, (stop, handle)) in running.drain() {
        let _ = stop.send(true);
        let _ = handle.await;
    }
    sm.targets.get_or_create(&source).set(0);
    Ok(())
}

/// Stops tasks of targets that went away and starts tasks for new ones.
async fn reconcile(
    running: &mut HashMap<u64, (watch::Sender<bool>, JoinHandle<()>)>,
    targets: Vec<Target>,
    settings: &Arc<target::Settings>,
    shutdown: &watch::Receiver<bool>,
) {
    let wanted: HashMap<u64, Target> = targets.into_iter().map(|t| (t.key, t)).collect();
    let gone: Vec<u64> = running
        .keys()
        .filter(|k| !wanted.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        if let Some((stop, handle)) = running.remove(&k) {
            let _ = stop.send(true);
            let _ = handle.await;
        }
    }
    for (k, t) in wanted {
        if running.contains_key(&k) {
            continue;
        }
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(target::scrape_loop(
            Arc::new(t),
            settings.clone(),
            rx,
            shutdown.clone(),
        ));
        running.insert(k, (tx, handle));
    }
}

#[cfg(test)]
mod tests;
