//! One target's scrape loop: schedule (staggered), fetch (bounded), parse,
//! label, relabel, synthesize `up`/`scrape_*`, store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::discovery::Target;
use super::parse::{self, Format};
use super::relabel::{LabelMap, Relabeler};
use super::{ScrapeMetrics, SourceLabel, SourceReasonLabel, Stored, ingest_retrying, stopped};
use crate::metrics::Metrics;
use crate::schema::{Label, METRIC_NAME_LABEL, Sample, series_id};
use crate::store::Store;

/// The `Accept` header Prometheus 2.42 sends (OpenMetrics preferred).
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Everything a target task needs besides its target.
pub(crate) struct Settings {
    pub source: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub body_limit: u64,
    pub sample_limit: usize,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: Relabeler,
    pub client: reqwest::Client,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub sm: ScrapeMetrics,
}

/// Why a scrape failed (the `reason` label of `scalecast_scrape_failures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeError {
    /// Connection refused/reset, DNS failure.
    Connect(String),
    /// The scrape took longer than the timeout.
    Timeout,
    /// Non-200 answer.
    HttpStatus(u16),
    /// Body above the limit.
    BodyTooLarge(u64),
    /// Body is not valid exposition text.
    Parse(String),
    /// More samples than `sample_limit` after relabeling.
    SampleLimit(usize),
}

impl ScrapeError {
    /// Short reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Connect(_) => "connect",
            ScrapeError::Timeout => "timeout",
            ScrapeError::HttpStatus(_) => "http_status",
            ScrapeError::BodyTooLarge(_) => "body_too_large",
            ScrapeError::Parse(_) => "parse",
            ScrapeError::SampleLimit(_) => "sample_limit",
        }
    }
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Connect(e) => write!(f, "{e}"),
            ScrapeError::Timeout => write!(f, "scrape timed out"),
            ScrapeError::HttpStatus(c) => write!(f, "server returned HTTP status {c}"),
            ScrapeError::BodyTooLarge(n) => write!(f, "body larger than {n} bytes"),
            ScrapeError::Parse(e) => write!(f, "parse error: {e}"),
            ScrapeError::SampleLimit(n) => write!(f, "sample limit {n} exceeded"),
        }
    }
}

/// Delay from `now_ms` to this target's first scrape: targets fire at a
/// fixed phase `key % interval` inside each interval (Prometheus's offset).
pub fn first_delay(now_ms: u64, interval_ms: u64, key: u64) -> Duration {
    if interval_ms == 0 {
        return Duration::ZERO;
    }
    let phase = key % interval_ms;
    let into = now_ms % interval_ms;
    let wait = (phase + interval_ms - into) % interval_ms;
    Duration::from_millis(wait)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Fetches the body (bounded) and its content type.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    limit: u64,
) -> Result<(Vec<u8>, Option<String>), ScrapeError> {
    let work = async {
        let mut resp = client
            .get(url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", timeout.as_secs_f64()),
            )
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ScrapeError::Timeout
                } else {
                    ScrapeError::Connect(error_chain(&e))
                }
            })?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(ScrapeError::HttpStatus(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(ScrapeError::BodyTooLarge(limit));
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ScrapeError::Connect(error_chain(&e)))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(ScrapeError::BodyTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, ct))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Timeout),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Merges target labels into a scraped sample's labels (Prometheus's
/// `honor_labels` semantics) and applies metric relabeling. None when the
/// sample is dropped.
pub fn label_sample(
    s: parse::ParsedSample,
    target_labels: &[Label],
    honor_labels: bool,
    relabel: &Relabeler,
) -> Option<(String, Vec<Label>)> {
    let mut l: LabelMap = s
        .labels
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for (k, v) in target_labels {
        match l.get(k) {
            None => {
                l.insert(k.clone(), v.clone());
            }
            Some(_) if honor_labels => {}
            Some(_) => {
                // Move the exposed value out of the way: exported_<k>,
                // exported_exported_<k>, ... (the first free name).
                let mut name = format!("exported_{k}");
                while l.contains_key(&name) {
                    name = format!("exported_{name}");
                }
                if let Some(old) = l.insert(k.clone(), v.clone()) {
                    l.insert(name, old);
                }
            }
        }
    }
    l.insert(METRIC_NAME_LABEL.into(), s.name);
    if !relabel.is_empty() && !relabel.apply(&mut l) {
        return None;
    }
    let name = l.remove(METRIC_NAME_LABEL).filter(|n| !n.is_empty())?;
    let labels: Vec<Label> = l.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    Some((name, labels))
}

/// How scraped samples are labeled and limited.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOpts<'a> {
    /// See [`super::ScrapeConfig::honor_labels`].
    pub honor_labels: bool,
    /// See [`super::ScrapeConfig::honor_timestamps`].
    pub honor_timestamps: bool,
    /// Metric relabeling rules.
    pub relabel: &'a Relabeler,
    /// See [`super::ScrapeConfig::sample_limit`] (0: none).
    pub sample_limit: usize,
}

/// Turns a fetched body into the samples to store, and the number of
/// samples in the exposition.
pub fn process(
    body: &[u8],
    content_type: Option<&str>,
    target: &Target,
    ts_ms: i64,
    o: ProcessOpts<'_>,
) -> Result<(Vec<Sample>, usize), ScrapeError> {
    let ProcessOpts {
        honor_labels,
        honor_timestamps,
        relabel,
        sample_limit,
    } = o;
    let parsed = parse::parse_bytes(body, Format::from_content_type(content_type))
        .map_err(|e| ScrapeError::Parse(e.to_string()))?;
    let scraped = parsed.samples.len();
    let mut out = Vec::with_capacity(scraped + 5);
    for s in parsed.samples {
        let ts = match s.timestamp_ms {
            Some(t) if honor_timestamps => t,
            _ => ts_ms,
        };
        let value = s.value;
        if let Some((name, labels)) = label_sample(s, &target.labels, honor_labels, relabel) {
            out.push(Sample {
                name,
                labels,
                ts_ms: ts,
                value,
            });
        }
    }
    if sample_limit > 0 && out.len() > sample_limit {
        return Err(ScrapeError::SampleLimit(sample_limit));
    }
    Ok((out, scraped))
}

/// The five synthesized series, with the target's labels.
pub fn synthesized(
    target: &Target,
    ts_ms: i64,
    up: bool,
    duration: Duration,
    scraped: usize,
    post_relabel: usize,
    added: usize,
) -> Vec<Sample> {
    [
        ("up", if up { 1.0 } else { 0.0 }),
        ("scrape_duration_seconds", duration.as_secs_f64()),
        ("scrape_samples_scraped", scraped as f64),
        ("scrape_samples_post_metric_relabeling", post_relabel as f64),
        ("scrape_series_added", added as f64),
    ]
    .into_iter()
    .map(|(name, value)| Sample {
        name: name.into(),
        labels: target.labels.clone(),
        ts_ms,
        value,
    })
    .collect()
}

/// The loop of one target until `stop` or `shutdown`.
pub(crate) async fn scrape_loop(
    target: Arc<Target>,
    s: Arc<Settings>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let source = SourceLabel {
        source: s.source.clone(),
    };
    let wait = first_delay(now_ms() as u64, s.interval.as_millis() as u64, target.key);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + wait, s.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_series: HashSet<u64> = HashSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped(&mut stop) => return,
            _ = stopped(&mut shutdown) => return,
        }
        let ts = now_ms();
        let started = Instant::now();
        s.sm.scrapes.get_or_create(&source).inc();
        // A stop during the fetch ends the task at once (a hung target must
        // not hold up a target-set change or the shutdown).
        let fetched = tokio::select! {
            r = fetch(&s.client, &target.url, s.timeout, s.body_limit) => r,
            _ = stopped(&mut stop) => return,
            _ = stopped(&mut shutdown) => return,
        };
        let result = fetched.and_then(|(body, ct)| {
            process(
                &body,
                ct.as_deref(),
                &target,
                ts,
                ProcessOpts {
                    honor_labels: s.honor_labels,
                    honor_timestamps: s.honor_timestamps,
                    relabel: &s.metric_relabel,
                    sample_limit: s.sample_limit,
                },
            )
        });
        let duration = started.elapsed();
        let mut samples = match result {
            Ok((samples, scraped)) => {
                let ids: HashSet<u64> = samples
                    .iter()
                    .map(|x| series_id(&x.name, &x.labels))
                    .collect();
                let added = ids.difference(&last_series).count();
                last_series = ids;
                let post = samples.len();
                let mut all = samples;
                all.extend(synthesized(
                    &target, ts, true, duration, scraped, post, added,
                ));
                all
            }
            Err(e) => {
                tracing::debug!(source = %s.source, url = %target.url, error = %e, "scrape failed");
                s.sm.failures
                    .get_or_create(&SourceReasonLabel {
                        source: s.source.clone(),
                        reason: e.reason().into(),
                    })
                    .inc();
                last_series.clear();
                synthesized(&target, ts, false, duration, 0, 0, 0)
            }
        };
        let n = samples.len();
        let sm = s.sm.clone();
        let src = source.clone();
        let stored = ingest_retrying(&s.store, &samples, &mut shutdown, || {
            sm.store_retries.get_or_create(&src).inc();
        })
        .await;
        samples.clear();
        match stored {
            Stored::Yes => {}
            Stored::Stopped | Stored::Closed => return,
            Stored::Failed(e) => {
                tracing::error!(source = %s.source, url = %target.url, error = %e, "cannot store scrape");
                s.sm.store_errors.get_or_create(&source).inc();
                continue;
            }
        }
        s.sm.samples.get_or_create(&source).inc_by(n as u64);
        s.metrics.samples_received.inc_by(n as u64);
    }
}
