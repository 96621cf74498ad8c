//! Self-metrics, exposed at `GET /metrics` in the Prometheus text format
//! (with the `prometheus-client` crate).
//!
//! Every metric is prefixed `scalecast_`. Components own typed handles to the
//! metrics they update; [`Metrics::register`] lets later stages (engine,
//! forecasts, actuators) add theirs to the same registry.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Label set `{reason="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Label set `{code="..."}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// HTTP status code.
    pub code: String,
}

/// The process's self-metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Metric sets registered by components, one per type ([`Metrics::get_or_init`]).
    sets: Mutex<std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any + Send + Sync>>>,
    /// Samples accepted (durable) from every source.
    pub samples_received: Counter,
    /// Samples refused, by reason.
    pub samples_rejected: Family<ReasonLabel, Counter>,
    /// Staleness markers dropped at ingest.
    pub stale_markers_dropped: Counter,
    /// Write requests answered with 2xx.
    pub write_requests: Counter,
    /// Bytes appended to the WAL.
    pub wal_bytes: Counter,
    /// fsync calls on the WAL (one per group commit).
    pub wal_fsyncs: Counter,
    /// WAL segments on disk.
    pub wal_segments: Gauge,
    /// Samples in memory not yet in Parquet.
    pub head_samples: Gauge,
    /// Samples written to Parquet.
    pub flushed_samples: Counter,
    /// Time to flush a WAL segment to Parquet.
    pub flush_duration: Histogram,
    /// Flush failures (retried).
    pub flush_errors: Counter,
    /// Parquet bytes on disk (samples table).
    pub storage_bytes: Gauge,
    /// Parquet files on disk (samples table).
    pub storage_files: Gauge,
    /// SQL queries run.
    pub queries: Counter,
    /// SQL queries that failed or were refused.
    pub query_errors: Counter,
    /// SQL query latency.
    pub query_duration: Histogram,
    /// 1 once the WAL is replayed and the server is ready.
    pub ready: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Seconds spent replaying the WAL on start.
    pub wal_replay_seconds: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every core metric.
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::default()),
            sets: Mutex::default(),
            samples_received: Counter::default(),
            samples_rejected: Family::default(),
            stale_markers_dropped: Counter::default(),
            write_requests: Counter::default(),
            wal_bytes: Counter::default(),
            wal_fsyncs: Counter::default(),
            wal_segments: Gauge::default(),
            head_samples: Gauge::default(),
            flushed_samples: Counter::default(),
            flush_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            flush_errors: Counter::default(),
            storage_bytes: Gauge::default(),
            storage_files: Gauge::default(),
            queries: Counter::default(),
            query_errors: Counter::default(),
            query_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ready: Gauge::default(),
            wal_replay_seconds: Gauge::default(),
        };
        m.register(
            "scalecast_samples_received",
            "Samples accepted and durable in the WAL",
            m.samples_received.clone(),
        );
        m.register(
            "scalecast_samples_rejected",
            "Samples or requests refused, by reason",
            m.samples_rejected.clone(),
        );
        m.register(
            "scalecast_stale_markers_dropped",
            "Prometheus staleness markers dropped at ingest",
            m.stale_markers_dropped.clone(),
        );
        m.register(
            "scalecast_write_requests",
            "Remote-write requests answered with 2xx",
            m.write_requests.clone(),
        );
        m.register(
            "scalecast_wal_bytes",
            "Bytes appended to the write-ahead log",
            m.wal_bytes.clone(),
        );
        m.register(
            "scalecast_wal_fsyncs",
            "fsync calls on the write-ahead log (group commits)",
            m.wal_fsyncs.clone(),
        );
        m.register(
            "scalecast_wal_segments",
            "Write-ahead log segments on disk",
            m.wal_segments.clone(),
        );
        m.register(
            "scalecast_head_samples",
            "Samples in memory not yet flushed to Parquet",
            m.head_samples.clone(),
        );
        m.register(
            "scalecast_flushed_samples",
            "Samples written to Parquet",
            m.flushed_samples.clone(),
        );
        m.register(
            "scalecast_flush_duration_seconds",
            "Time to flush one WAL segment to Parquet",
            m.flush_duration.clone(),
        );
        m.register(
            "scalecast_flush_errors",
            "Failed flushes (retried)",
            m.flush_errors.clone(),
        );
        m.register(
            "scalecast_storage_bytes",
            "Parquet bytes of the samples table",
            m.storage_bytes.clone(),
        );
        m.register(
            "scalecast_storage_files",
            "Parquet files of the samples table",
            m.storage_files.clone(),
        );
        m.register("scalecast_queries", "SQL queries run", m.queries.clone());
        m.register(
            "scalecast_query_errors",
            "SQL queries refused or failed",
            m.query_errors.clone(),
        );
        m.register(
            "scalecast_query_duration_seconds",
            "SQL query latency",
            m.query_duration.clone(),
        );
        m.register(
            "scalecast_ready",
            "1 once the WAL is replayed and the server accepts data",
            m.ready.clone(),
        );
        m.register(
            "scalecast_wal_replay_seconds",
            "Seconds spent replaying the WAL at start",
            m.wal_replay_seconds.clone(),
        );
        m
    }

    /// Registers a metric under `name` (prefix it with `scalecast_`).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// The component metric set `T` of this registry: created and registered by
    /// `init` on the first call, the same handles afterwards (so a component
    /// started twice, e.g. two sources of one type, shares its families).
    pub fn get_or_init<T: Clone + Send + Sync + 'static>(
        &self,
        init: impl FnOnce(&Metrics) -> T,
    ) -> T {
        let id = std::any::TypeId::of::<T>();
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = sets.get(&id).and_then(|b| b.downcast_ref::<T>()) {
            return v.clone();
        }
        // `init` registers through `self.registry`, a different lock.
        let v = init(self);
        sets.insert(id, Box::new(v.clone()));
        v
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }

    /// Counts refused samples (or a refused request when `samples` is 0).
    pub fn reject(&self, reason: &str, samples: usize) {
        self.samples_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc_by(samples.max(1) as u64);
    }

    /// Counts a successful write request of `samples` samples.
    pub fn request_ok(&self, samples: usize) {
        self.write_requests.inc();
        self.samples_received.inc_by(samples as u64);
    }

    /// Counts dropped staleness markers.
    pub fn stale_dropped(&self, n: usize) {
        if n > 0 {
            self.stale_markers_dropped.inc_by(n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_sets_are_registered_once() {
        #[derive(Clone, Default)]
        struct Set(Counter);
        let m = Metrics::new();
        let a = m.get_or_init(|m| {
            let s = Set::default();
            m.register("scalecast_test_things", "Things", s.0.clone());
            s
        });
        let b = m.get_or_init(|_| -> Set { unreachable!("registered once") });
        a.0.inc();
        b.0.inc();
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE scalecast_test_things counter").count(),
            1
        );
        assert!(text.contains("scalecast_test_things_total 2"), "{text}");
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.request_ok(500);
        m.reject("snappy", 0);
        let text = m.render();
        assert!(
            text.contains("scalecast_samples_received_total 500"),
            "{text}"
        );
        assert!(
            text.contains("scalecast_samples_rejected_total{reason=\"snappy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE scalecast_query_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
