//! The `replay` source: feeds a recorded trace (CSV or Parquet) into the live
//! pipeline at a chosen speed, as if it were happening now.
//!
//! Accepted trace shapes:
//! * **NAB**: a CSV with a `timestamp` column (`2014-02-14 14:30:00`, RFC 3339,
//!   or Unix seconds/milliseconds) and a `value` column.
//! * **`datacenter_traces`**: a CSV without a timestamp column, one row every
//!   `step_secs` (300 s by default); the value column is `value_column` (or the
//!   first column).
//! * **Parquet**: a file with a timestamp column (Int64 seconds/milliseconds or
//!   an Arrow timestamp) or none (fixed step), and a numeric value column.
//!
//! Timing: the trace's time axis is mapped onto the wall clock so that the
//! replay position — the trace start plus `prefill_secs` — is "now" when the
//! source starts. The first `prefill_secs` of trace time are written at once
//! (so forecasts have history from the first minute); the rest is written as
//! the wall clock advances, `speed` trace seconds per wall second.
//! With `timestamps: wall` (the default) each sample is stamped with the
//! wall-clock time it stands for (the trace's spacing divided by `speed`; no
//! sample is ever in the future). With `timestamps: trace` the samples keep
//! the trace's spacing (shifted so the replay position is the start time), so
//! at `speed > 1` they run ahead of the wall clock.
//! With `loop: true` the trace starts over after its end, each pass shifted by
//! the trace length (plus one step) so time keeps increasing.
//!
//! ```yaml
//! sources:
//!   demo:
//!     type: replay
//!     path: datasets/nab/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv
//!     metric: cpu_utilization
//!     labels: { service: web }
//!     speed: 60
//!     prefill_secs: 172800
//!     loop: true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::Sample;
use crate::sources::remote_write::encode_samples;
use crate::store::{IngestRecord, Store};

/// How replayed samples are timestamped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timestamps {
    /// The wall-clock time each sample stands for (trace spacing / `speed`).
    #[default]
    Wall,
    /// The trace's own spacing, shifted so the replay position is the start time.
    Trace,
}

/// Configuration of a `replay` source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// The trace: `.csv` or `.parquet` (relative paths are taken from the
    /// working directory).
    pub path: PathBuf,
    /// Metric name given to the samples.
    pub metric: String,
    /// Labels given to the samples.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Column holding the value (default: `value`, else the first column that
    /// is not the timestamp).
    #[serde(default)]
    pub value_column: Option<String>,
    /// Column holding the timestamp (default: `timestamp`, `time`, `ts` or
    /// `date` when present; without one the rows are `step_secs` apart).
    #[serde(default)]
    pub timestamp_column: Option<String>,
    /// Spacing of rows when the trace has no timestamp column.
    #[serde(default = "default_step_secs")]
    pub step_secs: f64,
    /// Trace seconds replayed per wall-clock second.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Trace seconds written at once at start.
    #[serde(default)]
    pub prefill_secs: f64,
    /// Start over after the end.
    #[serde(default, rename = "loop")]
    pub loop_: bool,
    /// How samples are timestamped.
    #[serde(default)]
    pub timestamps: Timestamps,
    /// Wall-clock seconds between two writes.
    #[serde(default = "default_write_interval_secs")]
    pub write_interval_secs: f64,
}

fn default_step_secs() -> f64 {
    300.0
}
fn default_speed() -> f64 {
    60.0
}
fn default_write_interval_secs() -> f64 {
    1.0
}

impl ReplayConfig {
    /// A config with the defaults for `path` and `metric`.
    pub fn new(path: impl Into<PathBuf>, metric: &str) -> ReplayConfig {
        ReplayConfig {
            path: path.into(),
            metric: metric.into(),
            labels: BTreeMap::new(),
            value_column: None,
            timestamp_column: None,
            step_secs: default_step_secs(),
            speed: default_speed(),
            prefill_secs: 0.0,
            loop_: false,
            timestamps: Timestamps::Wall,
            write_interval_secs: default_write_interval_secs(),
        }
    }

    /// Checks the config; the error is `(field path, reason)`.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let bad = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
        if self.path.as_os_str().is_empty() {
            return bad("path", "must not be empty");
        }
        match extension(&self.path).as_deref() {
            Some("csv") | Some("parquet") => {}
            _ => return bad("path", "must end in .csv or .parquet"),
        }
        if !valid_metric_name(&self.metric) {
            return bad("metric", "must match [a-zA-Z_:][a-zA-Z0-9_:]*");
        }
        for k in self.labels.keys() {
            if !valid_label_name(k) || k == "__name__" {
                return Err((
                    format!("labels.{k}"),
                    "label names must match [a-zA-Z_][a-zA-Z0-9_]* and not be __name__".into(),
                ));
            }
        }
        if !(self.step_secs.is_finite() && self.step_secs > 0.0) {
            return bad("step_secs", "must be a positive number of seconds");
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return bad("speed", "must be a positive number (1 = real time)");
        }
        if !(self.prefill_secs.is_finite() && self.prefill_secs >= 0.0) {
            return bad(
                "prefill_secs",
                "must be zero or a positive number of seconds",
            );
        }
        if !(self.write_interval_secs.is_finite()
            && (0.01..=3600.0).contains(&self.write_interval_secs))
        {
            return bad("write_interval_secs", "must be between 0.01 and 3600");
        }
        Ok(())
    }
}

fn extension(p: &Path) -> Option<String> {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// A loaded trace: `(trace time ms, value)` sorted by time, no NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Points, sorted by time.
    pub points: Vec<(i64, f64)>,
    /// Spacing used to loop (median spacing, or `step_secs`).
    pub step_ms: i64,
}

impl Trace {
    /// Trace time of the first point.
    pub fn start_ms(&self) -> i64 {
        self.points.first().map(|p| p.0).unwrap_or(0)
    }

    /// Length of one pass: last − first + one step.
    pub fn period_ms(&self) -> i64 {
        match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) => b.0 - a.0 + self.step_ms,
            _ => self.step_ms,
        }
    }
}

fn trace_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("replay trace {}: {reason}", path.display()))
}

/// Loads the trace named by `cfg` (CSV or Parquet).
pub fn load_trace(cfg: &ReplayConfig) -> Result<Trace> {
    let step_ms = (cfg.step_secs * 1000.0).round() as i64;
    let mut points = match extension(&cfg.path).as_deref() {
        Some("parquet") => load_parquet(cfg, step_ms)?,
        _ => load_csv(cfg, step_ms)?,
    };
    points.retain(|p| p.1.is_finite());
    if points.is_empty() {
        return Err(trace_err(&cfg.path, "no data rows with a finite value"));
    }
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    let step = if points.len() >= 2 {
        let mut gaps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
        gaps.sort_unstable();
        gaps[gaps.len() / 2].max(1)
    } else {
        step_ms.max(1)
    };
    Ok(Trace {
        points,
        step_ms: step,
    })
}

fn find_timestamp_column(
    headers: &[String],
    wanted: Option<&str>,
    path: &Path,
) -> Result<Option<usize>> {
    match wanted {
        Some(name) => headers
            .iter()
            .position(|h| h == name)
            .map(Some)
            .ok_or_else(|| {
                trace_err(
                    path,
                    format!(
                        "no timestamp column {name:?} (columns: {})",
                        headers.join(", ")
                    ),
                )
            }),
        None => Ok(headers.iter().position(|h| {
            matches!(
                h.to_ascii_lowercase().as_str(),
                "timestamp" | "time" | "ts" | "date"
            )
        })),
    }
}

fn find_value_column(
    headers: &[String],
    wanted: Option<&str>,
    ts: Option<usize>,
    path: &Path,
) -> Result<usize> {
    match wanted {
        Some(name) => headers.iter().position(|h| h == name).ok_or_else(|| {
            trace_err(
                path,
                format!("no value column {name:?} (columns: {})", headers.join(", ")),
            )
        }),
        None => headers
            .iter()
            .position(|h| h == "value")
            .or_else(|| (0..headers.len()).find(|i| Some(*i) != ts))
            .ok_or_else(|| trace_err(path, "no value column")),
    }
}

/// Parses a timestamp cell: Unix seconds or milliseconds, RFC 3339, or
/// `YYYY-MM-DD HH:MM[:SS[.f]]` (UTC) — the same rules as `scalecast backtest`.
pub use crate::forecast::backtest::parse_timestamp;

fn load_csv(cfg: &ReplayConfig, step_ms: i64) -> Result<Vec<(i64, f64)>> {
    let path = &cfg.path;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| trace_err(path, e))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| trace_err(path, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let ts_idx = find_timestamp_column(&headers, cfg.timestamp_column.as_deref(), path)?;
    let v_idx = find_value_column(&headers, cfg.value_column.as_deref(), ts_idx, path)?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| trace_err(path, format!("line {line}: {e}")))?;
        let t = match ts_idx {
            Some(c) => {
                let cell = rec.get(c).unwrap_or("");
                parse_timestamp(cell).ok_or_else(|| {
                    trace_err(path, format!("line {line}: bad timestamp {cell:?}"))
                })?
            }
            None => (i as i64).saturating_mul(step_ms),
        };
        let cell = rec.get(v_idx).unwrap_or("").trim();
        let v = if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            cell.parse::<f64>().map_err(|_| {
                trace_err(
                    path,
                    format!(
                        "line {line}, column {:?}: bad number {cell:?}",
                        headers[v_idx]
                    ),
                )
            })?
        };
        out.push((t, v));
    }
    Ok(out)
}

fn load_parquet(cfg: &ReplayConfig, step_ms: i64) -> Result<Vec<(i64, f64)>> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let path = &cfg.path;
    let file = std::fs::File::open(path).map_err(|e| trace_err(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| trace_err(path, e))?;
    let schema = builder.schema().clone();
    let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let ts_idx = find_timestamp_column(&headers, cfg.timestamp_column.as_deref(), path)?;
    let v_idx = find_value_column(&headers, cfg.value_column.as_deref(), ts_idx, path)?;
    let reader = builder.build().map_err(|e| trace_err(path, e))?;
    let mut out = Vec::new();
    let mut row = 0i64;
    for batch in reader {
        let batch = batch.map_err(|e| trace_err(path, e))?;
        let v_col = arrow::compute::cast(batch.column(v_idx), &DataType::Float64).map_err(|e| {
            trace_err(
                path,
                format!("column {:?} is not numeric: {e}", headers[v_idx]),
            )
        })?;
        let values = v_col.as_primitive::<Float64Type>();
        let times: Option<Vec<Option<i64>>> = match ts_idx {
            None => None,
            Some(c) => {
                let col = batch.column(c);
                let ms: Vec<Option<i64>> = match col.data_type() {
                    DataType::Timestamp(unit, _) => {
                        let raw = arrow::compute::cast(col, &DataType::Int64)
                            .map_err(|e| trace_err(path, e))?;
                        let div: (i64, i64) = match unit {
                            TimeUnit::Second => (1000, 1),
                            TimeUnit::Millisecond => (1, 1),
                            TimeUnit::Microsecond => (1, 1000),
                            TimeUnit::Nanosecond => (1, 1_000_000),
                        };
                        let a = raw.as_primitive::<Int64Type>();
                        (0..a.len())
                            .map(|i| (!a.is_null(i)).then(|| a.value(i) * div.0 / div.1))
                            .collect()
                    }
                    DataType::Utf8 | DataType::LargeUtf8 => {
                        let s = arrow::compute::cast(col, &DataType::Utf8)
                            .map_err(|e| trace_err(path, e))?;
                        let a = s.as_string::<i32>();
                        (0..a.len())
                            .map(|i| {
                                if a.is_null(i) {
                                    None
                                } else {
                                    parse_timestamp(a.value(i))
                                }
                            })
                            .collect()
                    }
                    _ => {
                        let f = arrow::compute::cast(col, &DataType::Float64).map_err(|e| {
                            trace_err(
                                path,
                                format!("column {:?} is not a timestamp: {e}", headers[c]),
                            )
                        })?;
                        let a = f.as_primitive::<Float64Type>();
                        (0..a.len())
                            .map(|i| {
                                if a.is_null(i) {
                                    None
                                } else {
                                    parse_timestamp(&a.value(i).to_string())
                                }
                            })
                            .collect()
                    }
                };
                Some(ms)
            }
        };
        for i in 0..batch.num_rows() {
            let t = match &times {
                None => row.saturating_mul(step_ms),
                Some(ms) => ms[i].ok_or_else(|| {
                    trace_err(path, format!("row {}: null or bad timestamp", row + 1))
                })?,
            };
            let v = if values.is_null(i) {
                f64::NAN
            } else {
                values.value(i)
            };
            out.push((t, v));
            row += 1;
        }
    }
    Ok(out)
}

/// Maps trace time onto sample timestamps (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// Wall-clock ms at which the replay position is reached.
    pub start_wall_ms: i64,
    /// Trace time (ms) of the replay position: trace start + prefill.
    pub anchor_ms: i64,
    /// Trace seconds per wall second.
    pub speed: f64,
    /// Timestamp mode.
    pub timestamps: Timestamps,
}

impl Clock {
    /// Timestamp of a sample at trace time `t_ms` (already shifted by loops).
    pub fn stamp(&self, t_ms: i64) -> i64 {
        let d = (t_ms - self.anchor_ms) as f64;
        match self.timestamps {
            Timestamps::Wall => self.start_wall_ms + (d / self.speed).round() as i64,
            Timestamps::Trace => self.start_wall_ms + d as i64,
        }
    }

    /// Trace time reached at wall-clock `now_ms`.
    pub fn position(&self, now_ms: i64) -> i64 {
        let e = (now_ms - self.start_wall_ms).max(0) as f64;
        self.anchor_ms + (e * self.speed).round() as i64
    }
}

/// Cursor over a (possibly looping) trace.
#[derive(Debug, Clone)]
pub struct Cursor {
    trace: Arc<Trace>,
    index: usize,
    pass: i64,
    looping: bool,
}

impl Cursor {
    /// A cursor at the trace start.
    pub fn new(trace: Arc<Trace>, looping: bool) -> Cursor {
        Cursor {
            trace,
            index: 0,
            pass: 0,
            looping,
        }
    }

    /// True once a non-looping trace is exhausted.
    pub fn done(&self) -> bool {
        !self.looping && self.index >= self.trace.points.len()
    }

    /// Points (loop-shifted trace time, value) with time `<= until_ms`, at
    /// most `max` of them.
    pub fn take_until(&mut self, until_ms: i64, max: usize) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let period = self.trace.period_ms();
        while out.len() < max {
            if self.index >= self.trace.points.len() {
                if !self.looping {
                    break;
                }
                self.index = 0;
                self.pass += 1;
            }
            let (t, v) = self.trace.points[self.index];
            let t = t + self.pass * period;
            if t > until_ms {
                break;
            }
            out.push((t, v));
            self.index += 1;
        }
        out
    }
}

/// Label set `{source="..."}` of the replay self-metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Default)]
struct ReplayMetrics {
    samples: Family<SourceLabel, Counter>,
    store_retries: Family<SourceLabel, Counter>,
    store_errors: Family<SourceLabel, Counter>,
    passes: Family<SourceLabel, Counter>,
}

impl ReplayMetrics {
    fn get(metrics: &Arc<Metrics>) -> ReplayMetrics {
        metrics.get_or_init(|metrics| {
            let m = ReplayMetrics::default();
            metrics.register(
                "scalecast_replay_samples",
                "Samples written by replay sources",
                m.samples.clone(),
            );
            metrics.register(
                "scalecast_replay_store_retries",
                "Replay writes retried because the ingest queue was full",
                m.store_retries.clone(),
            );
            metrics.register(
                "scalecast_replay_store_errors",
                "Replay writes the store refused (dropped)",
                m.store_errors.clone(),
            );
            metrics.register(
                "scalecast_replay_passes",
                "Times a looping replay started over",
                m.passes.clone(),
            );
            m
        })
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Samples per WAL record.
const CHUNK: usize = 10_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What every write of one replay source needs.
struct Writer<'a> {
    id: &'a str,
    cfg: &'a ReplayConfig,
    clock: &'a Clock,
    store: &'a Store,
    metrics: &'a Metrics,
    rm: &'a ReplayMetrics,
}

/// Writes `points` (trace time, value) as samples; false when stopping.
async fn write(w: &Writer<'_>, points: &[(i64, f64)], stop: &mut watch::Receiver<bool>) -> bool {
    let Writer {
        id,
        cfg,
        clock,
        store,
        metrics,
        rm,
    } = *w;
    if points.is_empty() {
        return true;
    }
    let labels: Vec<(String, String)> = cfg
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let samples: Vec<Sample> = points
        .iter()
        .map(|&(t, v)| Sample {
            name: cfg.metric.clone(),
            labels: labels.clone(),
            ts_ms: clock.stamp(t),
            value: v,
        })
        .collect();
    let rec = IngestRecord {
        wal_payload: bytes::Bytes::from(encode_samples(&samples)),
        batch: crate::schema::samples_to_batch(&samples),
    };
    let label = SourceLabel { source: id.into() };
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.ingest(rec.clone()).await {
            Ok(()) => {
                rm.samples
                    .get_or_create(&label)
                    .inc_by(samples.len() as u64);
                metrics.samples_received.inc_by(samples.len() as u64);
                return true;
            }
            Err(Error::Overloaded(why)) => {
                rm.store_retries.get_or_create(&label).inc();
                tracing::debug!(source = id, %why, ?backoff, "store overloaded; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(stop) => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(Error::Shutdown(_)) => return false,
            Err(e) => {
                rm.store_errors.get_or_create(&label).inc();
                tracing::warn!(source = id, error = %e, samples = samples.len(), "replay write refused; dropped");
                return true;
            }
        }
    }
}

/// Runs a replay source until the trace ends (without `loop`) or `shutdown`
/// turns true. Errors: an invalid config or an unreadable trace.
pub async fn run(
    id: &str,
    cfg: ReplayConfig,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    cfg.validate()
        .map_err(|(f, r)| Error::Other(format!("sources.{id}.{f}: {r}")))?;
    let load_cfg = cfg.clone();
    let trace = tokio::task::spawn_blocking(move || load_trace(&load_cfg))
        .await
        .map_err(|e| Error::Other(format!("sources.{id}: loading the trace: {e}")))?
        .map_err(|e| Error::Other(format!("sources.{id}: {e}")))?;
    let trace = Arc::new(trace);
    let rm = ReplayMetrics::get(&metrics);
    let label = SourceLabel { source: id.into() };
    let clock = Clock {
        start_wall_ms: now_ms(),
        anchor_ms: trace.start_ms() + (cfg.prefill_secs * 1000.0).round() as i64,
        speed: cfg.speed,
        timestamps: cfg.timestamps,
    };
    tracing::info!(
        source = id,
        points = trace.points.len(),
        step_ms = trace.step_ms,
        speed = cfg.speed,
        "replay started"
    );
    let mut cursor = Cursor::new(trace, cfg.loop_);
    let w = Writer {
        id,
        cfg: &cfg,
        clock: &clock,
        store: &store,
        metrics: &metrics,
        rm: &rm,
    };
    let mut passes = 0i64;
    // Prefill: everything before the anchor, at once.
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let chunk = cursor.take_until(clock.anchor_ms - 1, CHUNK);
        if chunk.is_empty() {
            break;
        }
        if !write(&w, &chunk, &mut shutdown).await {
            return Ok(());
        }
    }
    let tick = Duration::from_secs_f64(cfg.write_interval_secs);
    loop {
        let until = clock.position(now_ms());
        loop {
            let chunk = cursor.take_until(until, CHUNK);
            if chunk.is_empty() {
                break;
            }
            if !write(&w, &chunk, &mut shutdown).await {
                return Ok(());
            }
        }
        if cursor.pass > passes {
            rm.passes
                .get_or_create(&label)
                .inc_by((cursor.pass - passes) as u64);
            passes = cursor.pass;
        }
        if cursor.done() {
            tracing::info!(source = id, "replay reached the end of the trace");
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stopped(&mut shutdown) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_file(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(body.as_bytes()).expect("write");
        p
    }

    #[test]
    fn nab_shape_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_file(
            dir.path(),
            "nab.csv",
            "timestamp,value\n2014-02-14 14:30:00,0.132\n2014-02-14 14:35:00,0.134\n2014-02-14 14:40:00,0.5\n",
        );
        let t = load_trace(&ReplayConfig::new(&p, "cpu")).expect("loads");
        assert_eq!(t.points.len(), 3);
        assert_eq!(t.step_ms, 300_000);
        assert_eq!(t.points[0], (1_392_388_200_000, 0.132));
        assert_eq!(t.points[2].1, 0.5);
        assert_eq!(t.period_ms(), 900_000);
    }

    #[test]
    fn datacenter_shape_uses_fixed_step_and_value_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_file(
            dir.path(),
            "dc.csv",
            "cpu_util_percent,mem_util_percent\n16.1,87.1\n18.4,86.8\n,86.0\n20.0,85.0\n",
        );
        let mut cfg = ReplayConfig::new(&p, "cpu");
        let t = load_trace(&cfg).expect("loads");
        // First column by default; the empty cell is skipped.
        assert_eq!(t.points, vec![(0, 16.1), (300_000, 18.4), (900_000, 20.0)]);
        cfg.value_column = Some("mem_util_percent".into());
        cfg.step_secs = 60.0;
        let t = load_trace(&cfg).expect("loads");
        assert_eq!(t.points[3], (180_000, 85.0));
        assert_eq!(t.step_ms, 60_000);
    }

    #[test]
    fn shipped_traces_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = if root.join("datasets").exists() {
            root.to_path_buf()
        } else {
            PathBuf::from("/work/main")
        };
        let nab = root.join("datasets/nab/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv");
        let t = load_trace(&ReplayConfig::new(&nab, "cpu")).expect("NAB trace");
        assert!(t.points.len() > 3000, "{}", t.points.len());
        assert_eq!(t.step_ms, 300_000);
        let dc = root
            .join("datasets/datacenter_traces/alibaba2018__machine_usage_grouped_300_seconds.csv");
        let t = load_trace(&ReplayConfig::new(&dc, "cpu")).expect("alibaba trace");
        assert_eq!(t.points.len(), 2243);
        assert_eq!(t.points[1].0, 300_000);
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = ReplayConfig::new(dir.path().join("nope.csv"), "cpu");
        let e = load_trace(&missing).expect_err("missing file").to_string();
        assert!(e.contains("nope.csv"), "{e}");
        let p = write_file(dir.path(), "badts.csv", "timestamp,value\nyesterday,1\n");
        let e = load_trace(&ReplayConfig::new(&p, "cpu"))
            .expect_err("bad ts")
            .to_string();
        assert!(e.contains("line 2") && e.contains("bad timestamp"), "{e}");
        let p = write_file(
            dir.path(),
            "badv.csv",
            "timestamp,value\n1000,1\n1060,abc\n",
        );
        let e = load_trace(&ReplayConfig::new(&p, "cpu"))
            .expect_err("bad value")
            .to_string();
        assert!(e.contains("line 3") && e.contains("bad number"), "{e}");
        let p = write_file(dir.path(), "ragged.csv", "timestamp,value\n1000,1,2\n");
        let e = load_trace(&ReplayConfig::new(&p, "cpu"))
            .expect_err("ragged")
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let p = write_file(dir.path(), "empty.csv", "timestamp,value\n");
        let e = load_trace(&ReplayConfig::new(&p, "cpu"))
            .expect_err("empty")
            .to_string();
        assert!(e.contains("no data rows"), "{e}");
        let mut cfg = ReplayConfig::new(&p, "cpu");
        cfg.value_column = Some("load".into());
        let e = load_trace(&cfg).expect_err("column").to_string();
        assert!(e.contains("no value column \"load\""), "{e}");
        let p = write_file(dir.path(), "junk.parquet", "not parquet");
        let e = load_trace(&ReplayConfig::new(&p, "cpu"))
            .expect_err("parquet")
            .to_string();
        assert!(e.contains("junk.parquet"), "{e}");
    }

    #[test]
    fn parquet_trace_loads() {
        use arrow::array::{Float64Array, Int64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("timestamp", DataType::Int64, false),
            Field::new("value", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![
                    1_700_000_000,
                    1_700_000_060,
                    1_700_000_120,
                ])),
                Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])),
            ],
        )
        .expect("batch");
        let f = std::fs::File::create(&p).expect("create");
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let t = load_trace(&ReplayConfig::new(&p, "cpu")).expect("loads");
        assert_eq!(
            t.points,
            vec![(1_700_000_000_000, 1.0), (1_700_000_120_000, 3.0)]
        );
    }

    #[test]
    fn clock_shifts_to_now_and_applies_speed() {
        let wall = Clock {
            start_wall_ms: 1_000_000_000,
            anchor_ms: 50_000_000,
            speed: 60.0,
            timestamps: Timestamps::Wall,
        };
        // The replay position is "now".
        assert_eq!(wall.stamp(50_000_000), 1_000_000_000);
        // One trace hour before it is one wall minute earlier.
        assert_eq!(wall.stamp(50_000_000 - 3_600_000), 1_000_000_000 - 60_000);
        // After 10 wall seconds, 10 trace minutes have been replayed.
        assert_eq!(wall.position(1_000_010_000), 50_000_000 + 600_000);
        let trace = Clock {
            timestamps: Timestamps::Trace,
            ..wall
        };
        assert_eq!(
            trace.stamp(50_000_000 - 3_600_000),
            1_000_000_000 - 3_600_000
        );
        assert_eq!(trace.stamp(50_000_000 + 300_000), 1_000_000_000 + 300_000);
    }

    #[test]
    fn cursor_loops_with_increasing_time() {
        let trace = Arc::new(Trace {
            points: vec![(0, 1.0), (1000, 2.0), (2000, 3.0)],
            step_ms: 1000,
        });
        let mut c = Cursor::new(trace.clone(), false);
        assert_eq!(c.take_until(1000, 10), vec![(0, 1.0), (1000, 2.0)]);
        assert_eq!(c.take_until(10_000, 10), vec![(2000, 3.0)]);
        assert!(c.done());
        let mut c = Cursor::new(trace, true);
        let got = c.take_until(4000, 10);
        assert_eq!(
            got,
            vec![(0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 1.0), (4000, 2.0)]
        );
        assert!(!c.done());
        assert_eq!(c.take_until(100_000, 2).len(), 2);
    }

    #[test]
    fn config_validation() {
        let ok: ReplayConfig = serde_yaml::from_str(
            "path: a.csv\nmetric: cpu_load\nlabels: {service: web}\nspeed: 120\nprefill_secs: 86400\nloop: true\ntimestamps: trace\n",
        )
        .expect("parses");
        assert!(ok.loop_);
        assert_eq!(ok.timestamps, Timestamps::Trace);
        assert_eq!(ok.validate(), Ok(()));
        assert!(serde_yaml::from_str::<ReplayConfig>("path: a.csv\nmetric: x\nsped: 2\n").is_err());
        let field = |c: ReplayConfig| c.validate().expect_err("invalid").0;
        let mut c = ok.clone();
        c.speed = 0.0;
        assert_eq!(field(c), "speed");
        let mut c = ok.clone();
        c.metric = "1bad".into();
        assert_eq!(field(c), "metric");
        let mut c = ok.clone();
        c.path = "trace.txt".into();
        assert_eq!(field(c), "path");
        let mut c = ok.clone();
        c.prefill_secs = -1.0;
        assert_eq!(field(c), "prefill_secs");
        let mut c = ok.clone();
        c.labels.insert("bad-name".into(), "x".into());
        assert_eq!(field(c), "labels.bad-name");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_prefills_then_replays_at_speed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 1 point per trace second, 600 points.
        let mut body = String::from("timestamp,value\n");
        for i in 0..600 {
            body.push_str(&format!("{},{}\n", 1_600_000_000 + i, i));
        }
        let p = write_file(dir.path(), "t.csv", &body);
        let metrics = Arc::new(Metrics::new());
        let data = dir.path().join("data");
        let m2 = metrics.clone();
        let store = Arc::new(
            tokio::task::spawn_blocking(move || {
                Store::open(&data, crate::store::StorageConfig::default(), m2)
            })
            .await
            .expect("join")
            .expect("store"),
        );
        let mut cfg = ReplayConfig::new(&p, "replayed");
        cfg.labels.insert("job".into(), "demo".into());
        cfg.prefill_secs = 300.0;
        cfg.speed = 100.0;
        cfg.write_interval_secs = 0.05;
        let (tx, rx) = watch::channel(false);
        let started = now_ms();
        let h = tokio::spawn(run("r", cfg, store.clone(), metrics.clone(), rx));
        // Prefill (300 points) is immediate; the other 300 trace seconds take 3 s at 100x.
        let mut prefilled_at = None;
        let mut done_at = None;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rows = store.snapshot().rows();
            if prefilled_at.is_none() && rows >= 300 {
                prefilled_at = Some(now_ms() - started);
            }
            if rows >= 600 {
                done_at = Some(now_ms() - started);
                break;
            }
        }
        let prefilled_at = prefilled_at.expect("prefill written");
        let done_at = done_at.expect("whole trace written");
        assert!(prefilled_at < 1500, "prefill took {prefilled_at} ms");
        assert!(
            (2500..6000).contains(&done_at),
            "300 trace seconds at 100x took {done_at} ms"
        );
        h.await.expect("join").expect("run ends at the trace end");
        let _ = tx.send(true);
        let text = metrics.render();
        assert!(
            text.contains("scalecast_replay_samples_total{source=\"r\"} 600"),
            "{text}"
        );
        // Timestamps: wall-clock, the prefill 3 s (300 s / 100) before start, none in the future.
        let snap = store.snapshot();
        let mut ts: Vec<i64> = Vec::new();
        for b in &snap.head {
            ts.extend(crate::schema::batch_to_samples(b).iter().map(|s| s.ts_ms));
        }
        if !ts.is_empty() {
            let min = ts.iter().min().copied().unwrap_or(0);
            let max = ts.iter().max().copied().unwrap_or(0);
            assert!(
                (min - (started - 3000)).abs() < 500,
                "first stamp {min} vs start {started}"
            );
            assert!(max <= now_ms(), "no sample in the future");
            assert!((max - min - 5990).abs() < 50, "span {}", max - min);
        }
        store.close();
    }
}
