//! Kafka consumer source: samples from Kafka topics, at least once.
//!
//! ```text
//! Kafka ─▶ StreamConsumer (consumer group) ─▶ batch (max messages / bytes / timeout)
//!            ▲ pause / resume                   │ decode each message (blocking pool)
//!            │                                  ├─ poison ─▶ dead-letter topic (+ error header)
//!            │                                  └─ valid ─▶ one WAL record per batch ─▶ Store::ingest
//!            └── store offsets, in order, only once the batch's record is fsynced;
//!                librdkafka commits the stored offsets every commit_interval_secs,
//!                on rebalance and on shutdown
//! ```
//!
//! * **At least once.** An offset is stored only after [`Store::ingest`] returned
//!   `Ok` for every message up to it (batches complete in order even though up to
//!   `max_in_flight_batches` are being decoded and written at once), and only
//!   stored offsets are ever committed (`enable.auto.offset.store=false`). A
//!   crash or a rebalance replays what was not committed: duplicates, never loss.
//!   Storage removes duplicates by (series, timestamp) when it flushes a WAL
//!   segment and when it compacts an hour.
//! * **Poison messages** (undecodable payloads, invalid label sets) never stall
//!   their partition: they are produced, unchanged, to `dead_letter_topic` with
//!   headers saying why, then their offset is stored like any other. Without a
//!   dead-letter topic they are logged and skipped. Either way
//!   `scalecast_kafka_dead_letter_total` counts them. If the dead-letter topic
//!   cannot be written, the batch is retried (nothing is dropped silently).
//! * **Back-pressure.** When the store answers [`Error::Overloaded`], the batch is
//!   retried every `overload_backoff_secs` and every assigned partition is
//!   paused (no more fetching) until the store accepts again.
//! * **Scale-out.** Several scalecast processes with the same `group_id` split
//!   the partitions; librdkafka's group protocol rebalances them.
//!
//! The payload formats are described in [`decode`]; the self-metrics in
//! [`metrics`]. `docs/kafka.md` is the user reference.

pub mod decode;
pub mod metrics;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::decode::{DecodeError, DecodedPayload, PayloadFormat, decode_payload};
use self::metrics::{DeadLetterLabels, GroupLabels, KafkaMetrics, PartitionLabels, TopicLabels};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::samples_schema;
use crate::sources::remote_write::compress;
use crate::store::{IngestRecord, Store};

/// Header names set on dead-lettered messages.
pub mod dead_letter_headers {
    /// The decode error, human-readable.
    pub const ERROR: &str = "scalecast.error";
    /// The decode error kind (`snappy`, `protobuf`, `labels`, `too_large`, `json`).
    pub const ERROR_KIND: &str = "scalecast.error.kind";
    /// Topic the message was consumed from.
    pub const TOPIC: &str = "scalecast.source.topic";
    /// Partition the message was consumed from (decimal).
    pub const PARTITION: &str = "scalecast.source.partition";
    /// Offset of the message (decimal).
    pub const OFFSET: &str = "scalecast.source.offset";
    /// Consumer group that refused it.
    pub const GROUP: &str = "scalecast.group";
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the oldest retained message.
    #[default]
    Earliest,
    /// Only messages produced after the group first joins.
    Latest,
}

impl OffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// Configuration of a `kafka` source.
///
/// ```yaml
/// sources:
///   from_kafka:
///     type: kafka
///     bootstrap_servers: "broker-1:9092,broker-2:9092"
///     topics: [metrics]
///     group_id: scalecast
///     format: auto                 # auto | remote_write | json
///     dead_letter_topic: metrics-dead-letter
///     librdkafka_options:
///       session.timeout.ms: 6000
///       security.protocol: sasl_ssl
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Comma-separated `host:port` list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Topics to subscribe to (a name starting with `^` is a regex, as in librdkafka).
    pub topics: Vec<String>,
    /// Consumer group; processes with the same group split the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Payload format.
    #[serde(default)]
    pub format: PayloadFormat,
    /// Where a group without committed offsets starts.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Topic that receives messages that cannot be decoded; without it they are
    /// logged and skipped.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Messages per WAL record at most.
    #[serde(default = "default_max_batch_messages")]
    pub max_batch_messages: usize,
    /// Payload bytes per WAL record at most (a single larger message is its own batch).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// How long a partial batch waits for more messages, seconds.
    #[serde(default = "default_batch_timeout_secs")]
    pub batch_timeout_secs: f64,
    /// Batches being decoded and written at once (offsets are still stored in order).
    #[serde(default = "default_max_in_flight_batches")]
    pub max_in_flight_batches: usize,
    /// Largest payload accepted once decompressed, bytes (guards against snappy bombs).
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: usize,
    /// How often stored offsets are committed, seconds (`auto.commit.interval.ms`).
    #[serde(default = "default_commit_interval_secs")]
    pub commit_interval_secs: f64,
    /// How long to wait before retrying a batch the store refused as overloaded, seconds.
    #[serde(default = "default_overload_backoff_secs")]
    pub overload_backoff_secs: f64,
    /// How often consumer lag is refreshed, seconds (`statistics.interval.ms`; 0 turns
    /// the lag metric off).
    #[serde(default = "default_stats_interval_secs")]
    pub stats_interval_secs: f64,
    /// Any librdkafka consumer property (`security.protocol`, `sasl.*`,
    /// `session.timeout.ms`, `fetch.max.bytes`, ...). Values may be strings,
    /// numbers or booleans.
    #[serde(default, deserialize_with = "de_options")]
    pub librdkafka_options: BTreeMap<String, String>,
    /// librdkafka producer properties for the dead-letter producer (it already
    /// gets `bootstrap_servers` and `enable.idempotence=true`).
    #[serde(default, deserialize_with = "de_options")]
    pub dead_letter_librdkafka_options: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "scalecast".into()
}
fn default_max_batch_messages() -> usize {
    1000
}
fn default_max_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_batch_timeout_secs() -> f64 {
    0.05
}
fn default_max_in_flight_batches() -> usize {
    4
}
fn default_max_decompressed_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_commit_interval_secs() -> f64 {
    1.0
}
fn default_overload_backoff_secs() -> f64 {
    0.5
}
fn default_stats_interval_secs() -> f64 {
    5.0
}

/// librdkafka property values in YAML may be strings, numbers or booleans.
pub(crate) fn de_options<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
    }
    let m = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Str(s) => s,
            };
            (k, v)
        })
        .collect())
}

/// Properties scalecast sets itself; setting them in `librdkafka_options`
/// would break at-least-once delivery or duplicate a field.
const MANAGED: [(&str, &str); 5] = [
    ("bootstrap.servers", "use bootstrap_servers"),
    ("group.id", "use group_id"),
    (
        "enable.auto.offset.store",
        "scalecast stores offsets itself once samples are durable",
    ),
    (
        "enable.auto.commit",
        "scalecast commits stored offsets itself (see commit_interval_secs)",
    ),
    ("auto.commit.interval.ms", "use commit_interval_secs"),
];

fn ms(secs: f64) -> String {
    format!("{}", (secs * 1000.0).round() as u64)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl KafkaSourceConfig {
    /// A configuration with defaults for everything but the brokers and topics.
    pub fn new(bootstrap_servers: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group_id: default_group_id(),
            format: PayloadFormat::default(),
            auto_offset_reset: OffsetReset::default(),
            dead_letter_topic: None,
            max_batch_messages: default_max_batch_messages(),
            max_batch_bytes: default_max_batch_bytes(),
            batch_timeout_secs: default_batch_timeout_secs(),
            max_in_flight_batches: default_max_in_flight_batches(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            commit_interval_secs: default_commit_interval_secs(),
            overload_backoff_secs: default_overload_backoff_secs(),
            stats_interval_secs: default_stats_interval_secs(),
            librdkafka_options: BTreeMap::new(),
            dead_letter_librdkafka_options: BTreeMap::new(),
        }
    }

    /// The librdkafka consumer configuration.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("client.id", "scalecast")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", ms(self.commit_interval_secs))
            .set("auto.offset.reset", self.auto_offset_reset.as_str())
            .set("statistics.interval.ms", ms(self.stats_interval_secs));
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }

    /// The librdkafka configuration of the dead-letter producer.
    pub fn dead_letter_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "scalecast-dead-letter")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        for (k, v) in &self.dead_letter_librdkafka_options {
            c.set(k, v);
        }
        c
    }

    /// Checks the values; errors are `(field path, reason)`.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let e = |f: &str, r: &str| Err((f.to_string(), r.to_string()));
        if self.bootstrap_servers.trim().is_empty() {
            return e("bootstrap_servers", "must not be empty");
        }
        if self.topics.is_empty() {
            return e("topics", "list at least one topic");
        }
        if let Some(i) = self.topics.iter().position(|t| t.trim().is_empty()) {
            return Err((format!("topics.{i}"), "must not be empty".into()));
        }
        if self.group_id.trim().is_empty() {
            return e("group_id", "must not be empty");
        }
        if let Some(dl) = &self.dead_letter_topic {
            if dl.trim().is_empty() {
                return e(
                    "dead_letter_topic",
                    "must not be empty (omit it to skip poison messages)",
                );
            }
            if self.topics.iter().any(|t| t == dl) {
                return e(
                    "dead_letter_topic",
                    "must not be one of the consumed topics",
                );
            }
        }
        if self.max_batch_messages == 0 {
            return e("max_batch_messages", "must be at least 1");
        }
        if self.max_batch_bytes == 0 {
            return e("max_batch_bytes", "must be at least 1");
        }
        if self.max_in_flight_batches == 0 {
            return e("max_in_flight_batches", "must be at least 1");
        }
        if self.max_decompressed_bytes == 0 {
            return e("max_decompressed_bytes", "must be at least 1");
        }
        for (f, v, min) in [
            ("batch_timeout_secs", self.batch_timeout_secs, 0.0),
            ("commit_interval_secs", self.commit_interval_secs, 0.001),
            ("overload_backoff_secs", self.overload_backoff_secs, 0.001),
            ("stats_interval_secs", self.stats_interval_secs, 0.0),
        ] {
            if !v.is_finite() || v < min || v > 86_400.0 {
                return Err((
                    f.into(),
                    format!("must be a number of seconds between {min} and 86400"),
                ));
            }
        }
        for (key, why) in MANAGED {
            if self.librdkafka_options.contains_key(key) {
                return Err((
                    format!("librdkafka_options.{key}"),
                    format!("cannot be set: {why}"),
                ));
            }
        }
        for (field, cfg, opts) in [
            (
                "librdkafka_options",
                self.consumer_config(),
                &self.librdkafka_options,
            ),
            (
                "dead_letter_librdkafka_options",
                self.dead_letter_config(),
                &self.dead_letter_librdkafka_options,
            ),
        ] {
            if let Err(err) = cfg.create_native_config() {
                return Err(match err {
                    KafkaError::ClientConfig(_, desc, key, _) if opts.contains_key(&key) => {
                        (format!("{field}.{key}"), desc)
                    }
                    other => (field.to_string(), other.to_string()),
                });
            }
        }
        Ok(())
    }
}

/// A consumed message, detached from the consumer.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// Callbacks librdkafka runs while the consumer is polled.
struct Ctx {
    group: String,
    km: Arc<KafkaMetrics>,
    assigned: Mutex<BTreeSet<(String, i32)>>,
    rebalances: AtomicU64,
}

impl Ctx {
    fn labels(&self, topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels {
            group: self.group.clone(),
            topic: topic.to_string(),
            partition: partition.to_string(),
        }
    }
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, t) in &s.topics {
            for (&p, part) in &t.partitions {
                if p < 0 || !assigned.contains(&(topic.clone(), p)) {
                    continue;
                }
                let lag = if part.consumer_lag >= 0 {
                    part.consumer_lag
                } else if part.hi_offset >= 0 && part.committed_offset < 0 {
                    // Nothing committed yet: everything up to the watermark is lag.
                    part.hi_offset - part.lo_offset.max(0)
                } else {
                    continue;
                };
                self.km.lag.get_or_create(&self.labels(topic, p)).set(lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.km.error(&self.group, "client");
        tracing::warn!(group = %self.group, error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(
        &self,
        _c: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    assigned.insert((e.topic().to_string(), e.partition()));
                }
                tracing::info!(group = %self.group, partitions = ?assigned, "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    assigned.remove(&(e.topic().to_string(), e.partition()));
                    self.km.lag.remove(&self.labels(e.topic(), e.partition()));
                }
                tracing::info!(group = %self.group, revoked = tpl.count(), "kafka partitions revoked");
            }
            Rebalance::Error(e) => {
                self.km.error(&self.group, "rebalance");
                tracing::warn!(group = %self.group, error = %e, "kafka rebalance error");
            }
        }
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.km
                    .commits
                    .get_or_create(&GroupLabels {
                        group: self.group.clone(),
                    })
                    .inc();
                tracing::debug!(group = %self.group, partitions = offsets.count(), "offsets committed");
            }
            // Nothing was stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.km.error(&self.group, "commit");
                tracing::warn!(group = %self.group, error = %e, "offset commit failed (retried at the next commit)");
            }
        }
    }
}

/// What every batch task shares.
struct Shared {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    km: Arc<KafkaMetrics>,
    group: String,
    format: PayloadFormat,
    max_decompressed: usize,
    dead_letter: Option<(FutureProducer, String)>,
    backoff: Duration,
    /// Batch tasks currently waiting because the store is overloaded.
    overloaded: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    /// Sleeps `backoff`, returning false if shutdown was requested meanwhile.
    async fn backoff(&self) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => !self.stopping(),
            _ = rx.changed() => false,
        }
    }
}

/// Decrements the overloaded counter when a waiting task ends, however it ends.
struct OverloadGuard<'a>(&'a AtomicUsize);

impl Drop for OverloadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A batch decoded and merged, ready for the WAL.
struct Prepared {
    record: Option<IngestRecord>,
    samples_by_topic: HashMap<String, u64>,
    stale: usize,
    poison: Vec<(Msg, DecodeError)>,
}

fn prepare(msgs: Vec<Msg>, format: PayloadFormat, max: usize) -> Result<Prepared> {
    let mut raw: Vec<u8> = Vec::new();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut samples_by_topic: HashMap<String, u64> = HashMap::new();
    let mut stale = 0usize;
    let mut poison = Vec::new();
    for m in msgs {
        let Some(payload) = m.payload.as_deref().filter(|p| !p.is_empty()) else {
            // Tombstones and empty messages carry no samples.
            continue;
        };
        match decode_payload(payload, format, max) {
            Ok(d) => {
                stale += d.stale_dropped;
                let rows = d.batch.num_rows();
                if rows > 0 {
                    raw.extend_from_slice(&d.raw);
                    batches.push(d.batch);
                    *samples_by_topic.entry(m.topic.clone()).or_default() += rows as u64;
                }
            }
            Err(e) => poison.push((m, e)),
        }
    }
    let record = if batches.is_empty() {
        None
    } else {
        let batch = arrow::compute::concat_batches(&samples_schema(), &batches)?;
        Some(IngestRecord {
            wal_payload: Bytes::from(compress(&raw)),
            batch,
        })
    };
    Ok(Prepared {
        record,
        samples_by_topic,
        stale,
        poison,
    })
}

/// Decodes, dead-letters and ingests one batch. Returns the samples made durable.
async fn process_batch(sh: Arc<Shared>, msgs: Vec<Msg>) -> Result<u64> {
    let (format, max) = (sh.format, sh.max_decompressed);
    let prepared = tokio::task::spawn_blocking(move || prepare(msgs, format, max))
        .await
        .map_err(|e| Error::Other(format!("kafka decode task failed: {e}")))??;
    let Prepared {
        record,
        samples_by_topic,
        stale,
        poison,
    } = prepared;
    let dead = dead_letter_all(&sh, poison);
    let ingest = async {
        match record {
            Some(rec) => ingest_with_retry(&sh, rec).await,
            None => Ok(()),
        }
    };
    let (dead, ingest) = tokio::join!(dead, ingest);
    dead?;
    ingest?;
    let mut total = 0;
    for (topic, n) in samples_by_topic {
        sh.km
            .samples
            .get_or_create(&TopicLabels {
                group: sh.group.clone(),
                topic,
            })
            .inc_by(n);
        total += n;
    }
    sh.metrics.samples_received.inc_by(total);
    sh.metrics.stale_dropped(stale);
    Ok(total)
}

async fn ingest_with_retry(sh: &Shared, rec: IngestRecord) -> Result<()> {
    let mut guard: Option<OverloadGuard<'_>> = None;
    loop {
        match sh.store.ingest(rec.clone()).await {
            Ok(()) => return Ok(()),
            Err(Error::Overloaded(why)) => {
                if guard.is_none() {
                    sh.overloaded.fetch_add(1, Ordering::SeqCst);
                    guard = Some(OverloadGuard(&sh.overloaded));
                    tracing::debug!(group = %sh.group, reason = %why, "store overloaded; pausing and retrying");
                }
                if !sh.backoff().await {
                    return Err(Error::Shutdown(
                        "kafka source stopped while the store was overloaded".into(),
                    ));
                }
            }
            Err(e) => {
                sh.km.error(&sh.group, "ingest");
                return Err(e);
            }
        }
    }
}

async fn dead_letter_all(sh: &Shared, poison: Vec<(Msg, DecodeError)>) -> Result<()> {
    let sends = poison
        .into_iter()
        .map(|(m, err)| dead_letter_one(sh, m, err));
    for r in futures::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

async fn dead_letter_one(sh: &Shared, m: Msg, err: DecodeError) -> Result<()> {
    let labels = DeadLetterLabels {
        group: sh.group.clone(),
        topic: m.topic.clone(),
        reason: err.kind.to_string(),
    };
    sh.metrics.reject(&format!("kafka_{}", err.kind), 0);
    let Some((producer, dl_topic)) = &sh.dead_letter else {
        tracing::warn!(group = %sh.group, topic = %m.topic, partition = m.partition, offset = m.offset,
            error = %err, "skipping a Kafka message that cannot be decoded (no dead_letter_topic)");
        sh.km.dead_letter.get_or_create(&labels).inc();
        return Ok(());
    };
    let partition = m.partition.to_string();
    let offset = m.offset.to_string();
    let message = err.to_string();
    loop {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: dead_letter_headers::ERROR,
                value: Some(message.as_str()),
            })
            .insert(Header {
                key: dead_letter_headers::ERROR_KIND,
                value: Some(err.kind),
            })
            .insert(Header {
                key: dead_letter_headers::TOPIC,
                value: Some(m.topic.as_str()),
            })
            .insert(Header {
                key: dead_letter_headers::PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: dead_letter_headers::OFFSET,
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: dead_letter_headers::GROUP,
                value: Some(sh.group.as_str()),
            });
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dl_topic).headers(headers);
        if let Some(k) = &m.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(p) = &m.payload {
            rec = rec.payload(p.as_slice());
        }
        match producer.send(rec, Duration::from_secs(5)).await {
            Ok(_) => {
                sh.km.dead_letter.get_or_create(&labels).inc();
                tracing::warn!(group = %sh.group, topic = %m.topic, partition = m.partition, offset = m.offset,
                    dead_letter_topic = %dl_topic, error = %err, "Kafka message dead-lettered");
                return Ok(());
            }
            Err((e, _)) => {
                sh.km.error(&sh.group, "dead_letter");
                tracing::error!(group = %sh.group, dead_letter_topic = %dl_topic, error = %e,
                    "cannot write to the dead-letter topic; retrying (the partition waits)");
                if !sh.backoff().await {
                    return Err(Error::Shutdown(
                        "kafka source stopped while dead-lettering".into(),
                    ));
                }
            }
        }
    }
}

/// A dispatched batch: its task and the next offset to store per partition.
struct InFlight {
    task: JoinHandle<Result<u64>>,
    next_offsets: BTreeMap<(String, i32), i64>,
}

/// Messages waiting to form a batch.
#[derive(Default)]
struct Accumulator {
    msgs: Vec<Msg>,
    bytes: usize,
    deadline: Option<Instant>,
}

enum Event {
    Shutdown,
    Done(std::result::Result<Result<u64>, tokio::task::JoinError>),
    Message(KafkaResult<Msg>),
    Flush,
    Tick,
}

/// Runs a Kafka source until `shutdown` turns true (or its sender is dropped).
///
/// Returns `Ok(())` after a clean stop (every durable batch's offsets
/// committed), or an error when the consumer cannot be created or the store
/// fails (other than "overloaded", which is waited out).
pub async fn run(
    cfg: KafkaSourceConfig,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    cfg.validate()
        .map_err(|(f, r)| Error::Other(format!("kafka source: {f}: {r}")))?;
    let km = KafkaMetrics::of(&metrics);
    let group = cfg.group_id.clone();
    let ctx = Ctx {
        group: group.clone(),
        km: km.clone(),
        assigned: Mutex::new(BTreeSet::new()),
        rebalances: AtomicU64::new(0),
    };
    let consumer: StreamConsumer<Ctx> = cfg
        .consumer_config()
        .create_with_context(ctx)
        .map_err(|e| Error::Other(format!("kafka consumer: {e}")))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| Error::Other(format!("kafka subscribe {topics:?}: {e}")))?;
    let dead_letter = match &cfg.dead_letter_topic {
        Some(t) => Some((
            cfg.dead_letter_config()
                .create::<FutureProducer>()
                .map_err(|e| Error::Other(format!("kafka dead-letter producer: {e}")))?,
            t.clone(),
        )),
        None => None,
    };
    let sh = Arc::new(Shared {
        store,
        metrics,
        km: km.clone(),
        group: group.clone(),
        format: cfg.format,
        max_decompressed: cfg.max_decompressed_bytes,
        dead_letter,
        backoff: secs(cfg.overload_backoff_secs),
        overloaded: AtomicUsize::new(0),
        shutdown: shutdown.clone(),
    });
    tracing::info!(group = %group, topics = ?cfg.topics, brokers = %cfg.bootstrap_servers, "kafka source started");

    let group_labels = GroupLabels {
        group: group.clone(),
    };
    let linger = secs(cfg.batch_timeout_secs);
    let mut acc = Accumulator::default();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut paused = false;
    let mut paused_at_rebalance = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure: Option<Error> = None;

    loop {
        // Back-pressure: pause while any batch waits for an overloaded store.
        let overloaded = sh.overloaded.load(Ordering::SeqCst) > 0;
        let rebalances = consumer.context().rebalances.load(Ordering::SeqCst);
        if overloaded && (!paused || rebalances != paused_at_rebalance) {
            if let Ok(assignment) = consumer.assignment()
                && let Err(e) = consumer.pause(&assignment)
            {
                tracing::warn!(group = %group, error = %e, "cannot pause partitions");
            }
            if !paused {
                km.pauses.get_or_create(&group_labels).inc();
                km.paused.get_or_create(&group_labels).set(1);
                tracing::info!(group = %group, "store overloaded: kafka partitions paused");
            }
            paused = true;
            paused_at_rebalance = rebalances;
        } else if !overloaded && paused {
            if let Ok(assignment) = consumer.assignment()
                && let Err(e) = consumer.resume(&assignment)
            {
                tracing::warn!(group = %group, error = %e, "cannot resume partitions");
            }
            paused = false;
            km.paused.get_or_create(&group_labels).set(0);
            tracing::info!(group = %group, "store accepts again: kafka partitions resumed");
        }

        let acc_full = acc.msgs.len() >= cfg.max_batch_messages || acc.bytes >= cfg.max_batch_bytes;
        let can_dispatch = in_flight.len() < cfg.max_in_flight_batches;
        if !acc.msgs.is_empty()
            && can_dispatch
            && (acc_full || acc.deadline.is_some_and(|d| d <= Instant::now()))
        {
            let msgs = std::mem::take(&mut acc.msgs);
            acc = Accumulator::default();
            let mut next_offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for m in &msgs {
                let e = next_offsets
                    .entry((m.topic.clone(), m.partition))
                    .or_insert(m.offset + 1);
                *e = (*e).max(m.offset + 1);
            }
            let task = tokio::spawn(process_batch(sh.clone(), msgs));
            in_flight.push_back(InFlight { task, next_offsets });
            continue;
        }
        let receive = !acc_full || paused;
        let deadline = acc.deadline;

        let ev = tokio::select! {
            biased;
            r = shutdown.changed() => match r {
                Ok(()) if !*shutdown.borrow() => Event::Tick,
                _ => Event::Shutdown,
            },
            r = async {
                match in_flight.front_mut() {
                    Some(f) => (&mut f.task).await,
                    None => std::future::pending().await,
                }
            } => Event::Done(r),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if can_dispatch => Event::Flush,
            m = consumer.recv(), if receive => Event::Message(m.map(|m| Msg {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
            })),
            _ = tick.tick(), if paused || overloaded => Event::Tick,
        };

        match ev {
            Event::Shutdown => break,
            Event::Tick | Event::Flush => {}
            Event::Message(Ok(m)) => {
                let len = m.payload.as_ref().map_or(0, Vec::len);
                let labels = TopicLabels {
                    group: group.clone(),
                    topic: m.topic.clone(),
                };
                km.messages.get_or_create(&labels).inc();
                km.bytes.get_or_create(&labels).inc_by(len as u64);
                if acc.msgs.is_empty() {
                    acc.deadline = Some(Instant::now() + linger);
                }
                acc.bytes += len;
                acc.msgs.push(m);
            }
            // Only with `enable.partition.eof=true`: not an error.
            Event::Message(Err(KafkaError::PartitionEOF(_))) => {}
            Event::Message(Err(e)) => {
                km.error(&group, "consume");
                tracing::warn!(group = %group, error = %e, "kafka consume error");
            }
            Event::Done(r) => {
                let Some(done) = in_flight.pop_front() else {
                    continue;
                };
                match r {
                    Ok(Ok(_)) => store_offsets(&consumer, &group, &done.next_offsets),
                    Ok(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    Err(e) => {
                        failure = Some(Error::Other(format!("kafka batch task failed: {e}")));
                        break;
                    }
                }
            }
        }
    }

    // Stop: batches already handed to the store finish (a batch waiting on an
    // overloaded store gives up); offsets are stored in order up to the first
    // batch that did not complete, then committed.
    let mut ok = failure.is_none();
    while let Some(f) = in_flight.pop_front() {
        match f.task.await {
            Ok(Ok(_)) if ok => store_offsets(&consumer, &group, &f.next_offsets),
            Ok(Ok(_)) => {}
            Ok(Err(Error::Shutdown(_))) => ok = false,
            Ok(Err(e)) => {
                ok = false;
                failure.get_or_insert(e);
            }
            Err(e) => {
                ok = false;
                failure.get_or_insert(Error::Other(format!("kafka batch task failed: {e}")));
            }
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(group = %group, error = %e, "final offset commit failed"),
    }
    km.paused.get_or_create(&group_labels).set(0);
    drop(consumer);
    tracing::info!(group = %group, "kafka source stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn store_offsets<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    group: &str,
    next: &BTreeMap<(String, i32), i64>,
) {
    let mut tpl = TopicPartitionList::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(group, error = %e, "bad offset");
        }
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // Typically the partition was revoked meanwhile: its new owner replays
        // from the last commit (duplicates, no loss).
        tracing::debug!(group, error = %e, "cannot store offsets (partition revoked?)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> std::result::Result<KafkaSourceConfig, String> {
        let c: KafkaSourceConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map_err(|(f, r)| format!("{f}: {r}"))?;
        Ok(c)
    }

    #[test]
    fn yaml_with_defaults_and_typed_options() {
        let c = parse(
            "bootstrap_servers: 127.0.0.1:9092\ntopics: [metrics]\nlibrdkafka_options:\n  session.timeout.ms: 6000\n  enable.partition.eof: false\n  client.rack: r1\n",
        )
        .expect("valid");
        assert_eq!(c.group_id, "scalecast");
        assert_eq!(c.format, PayloadFormat::Auto);
        assert_eq!(c.librdkafka_options["session.timeout.ms"], "6000");
        assert_eq!(c.librdkafka_options["enable.partition.eof"], "false");
        let cc = c.consumer_config();
        assert_eq!(cc.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(cc.get("auto.commit.interval.ms"), Some("1000"));
        assert_eq!(cc.get("client.rack"), Some("r1"));
        assert_eq!(
            c.dead_letter_config().get("enable.idempotence"),
            Some("true")
        );
    }

    #[test]
    fn invalid_values_name_the_field() {
        let base = "bootstrap_servers: b:9092\ntopics: [m]\n";
        let cases = [
            ("bootstrap_servers: ''\ntopics: [m]\n", "bootstrap_servers"),
            ("bootstrap_servers: b:1\ntopics: []\n", "topics"),
            ("bootstrap_servers: b:1\ntopics: [a, '']\n", "topics.1"),
            (
                &format!("{base}dead_letter_topic: m\n"),
                "dead_letter_topic",
            ),
            (
                &format!("{base}max_batch_messages: 0\n"),
                "max_batch_messages",
            ),
            (
                &format!("{base}batch_timeout_secs: -1\n"),
                "batch_timeout_secs",
            ),
            (
                &format!("{base}overload_backoff_secs: 0\n"),
                "overload_backoff_secs",
            ),
            (
                &format!("{base}librdkafka_options:\n  enable.auto.offset.store: true\n"),
                "librdkafka_options.enable.auto.offset.store",
            ),
            (
                &format!("{base}librdkafka_options:\n  group.id: x\n"),
                "librdkafka_options.group.id",
            ),
            (
                &format!("{base}librdkafka_options:\n  no.such.property: 1\n"),
                "librdkafka_options.no.such.property",
            ),
            (
                &format!("{base}librdkafka_options:\n  session.timeout.ms: soon\n"),
                "librdkafka_options.session.timeout.ms",
            ),
            (
                &format!("{base}dead_letter_librdkafka_options:\n  acks: maybe\n"),
                "dead_letter_librdkafka_options.acks",
            ),
        ];
        for (yaml, field) in cases {
            let e = parse(yaml).expect_err(yaml);
            assert!(e.starts_with(&format!("{field}: ")), "{yaml:?} gave {e:?}");
        }
        let e = parse(&format!("{base}topic: x\n")).expect_err("unknown field");
        assert!(e.contains("unknown field `topic`"), "{e}");
    }
}
