//! Kafka publisher: records (scaling recommendations, ...) as JSON, keyed by
//! target, with an idempotent producer.
//!
//! Every message is:
//!
//! * **key**: the target the record is about (UTF-8), so every record of one
//!   target lands in one partition, in order;
//! * **value**: a JSON envelope, schema version 1:
//!
//!   ```json
//!   {"schema_version": 1, "key": "web", "published_at_ms": 1700000000000, "record": { ... }}
//!   ```
//!
//!   `record` is the caller's record serialized with serde (for recommendations,
//!   the recommendation record documented with the scaling stage);
//! * **headers**: `content-type: application/json` and
//!   `scalecast.schema_version: 1`.
//!
//! The producer runs with `enable.idempotence=true` (no duplicates or
//! reordering from internal retries, `acks=all`). [`KafkaSink::publish`]
//! returns only once the broker acknowledged the message; a delivery failure
//! (after librdkafka's own retries, within `delivery_timeout_secs`) is returned
//! as an error and counted in `scalecast_kafka_publish_errors_total`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Version of the JSON envelope (the `schema_version` field).
pub const SCHEMA_VERSION: u32 = 1;

/// Configuration of a Kafka publisher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Topic to publish to.
    pub topic: String,
    /// How long one message may take to be acknowledged, retries included, seconds
    /// (librdkafka `delivery.timeout.ms`).
    #[serde(default = "default_delivery_timeout_secs")]
    pub delivery_timeout_secs: f64,
    /// Any librdkafka producer property (`compression.type`, `security.protocol`, ...).
    #[serde(default, deserialize_with = "de_options")]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_delivery_timeout_secs() -> f64 {
    30.0
}

use crate::sources::kafka::de_options;

/// Properties the sink sets itself.
const MANAGED: [(&str, &str); 4] = [
    ("bootstrap.servers", "use bootstrap_servers"),
    ("enable.idempotence", "the publisher is always idempotent"),
    ("delivery.timeout.ms", "use delivery_timeout_secs"),
    ("message.timeout.ms", "use delivery_timeout_secs"),
];

impl KafkaSinkConfig {
    /// A configuration with defaults.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            delivery_timeout_secs: default_delivery_timeout_secs(),
            librdkafka_options: BTreeMap::new(),
        }
    }

    /// The librdkafka producer configuration.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "scalecast-publisher")
            .set("enable.idempotence", "true")
            .set(
                "delivery.timeout.ms",
                format!("{}", (self.delivery_timeout_secs * 1000.0).round() as u64),
            );
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }

    /// Checks the values; errors are `(field path, reason)`.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(("bootstrap_servers".into(), "must not be empty".into()));
        }
        if self.topic.trim().is_empty() {
            return Err(("topic".into(), "must not be empty".into()));
        }
        let t = self.delivery_timeout_secs;
        if !t.is_finite() || !(0.001..=86_400.0).contains(&t) {
            return Err((
                "delivery_timeout_secs".into(),
                "must be a number of seconds between 0.001 and 86400".into(),
            ));
        }
        for (key, why) in MANAGED {
            if self.librdkafka_options.contains_key(key) {
                return Err((
                    format!("librdkafka_options.{key}"),
                    format!("cannot be set: {why}"),
                ));
            }
        }
        if let Err(err) = self.producer_config().create_native_config() {
            return Err(match err {
                KafkaError::ClientConfig(_, desc, key, _)
                    if self.librdkafka_options.contains_key(&key) =>
                {
                    (format!("librdkafka_options.{key}"), desc)
                }
                other => ("librdkafka_options".into(), other.to_string()),
            });
        }
        Ok(())
    }
}

/// The JSON value of every published message.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, R: Serialize + ?Sized> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The message key (the target).
    pub key: &'a str,
    /// When scalecast published it, milliseconds since the epoch (UTC).
    pub published_at_ms: i64,
    /// The record.
    pub record: &'a R,
}

/// Where a message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// `{topic}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkTopicLabel {
    /// Topic.
    pub topic: String,
}

/// Publisher self-metrics.
#[derive(Default)]
pub struct SinkMetrics {
    /// `scalecast_kafka_published_total{topic}`: messages acknowledged by the broker.
    pub published: Family<SinkTopicLabel, Counter>,
    /// `scalecast_kafka_publish_errors_total{topic}`: messages that could not be
    /// serialized or delivered.
    pub errors: Family<SinkTopicLabel, Counter>,
}

impl SinkMetrics {
    /// The publisher families of `metrics`, registered on first use.
    pub fn of(metrics: &Arc<Metrics>) -> Arc<SinkMetrics> {
        metrics.get_or_init(|metrics| {
            let m = Arc::new(SinkMetrics::default());
            metrics.register(
                "scalecast_kafka_published",
                "Records published to Kafka and acknowledged",
                m.published.clone(),
            );
            metrics.register(
                "scalecast_kafka_publish_errors",
                "Records that could not be published to Kafka",
                m.errors.clone(),
            );
            m
        })
    }
}

/// An idempotent Kafka publisher of JSON records.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    labels: SinkTopicLabel,
    metrics: Arc<SinkMetrics>,
    queue_timeout: Duration,
}

impl KafkaSink {
    /// Creates the producer (connections are made lazily).
    pub fn new(cfg: &KafkaSinkConfig, metrics: &Arc<Metrics>) -> Result<KafkaSink> {
        cfg.validate()
            .map_err(|(f, r)| Error::Other(format!("kafka sink: {f}: {r}")))?;
        let producer: FutureProducer = cfg
            .producer_config()
            .create()
            .map_err(|e| Error::Other(format!("kafka producer: {e}")))?;
        Ok(KafkaSink {
            producer,
            topic: cfg.topic.clone(),
            labels: SinkTopicLabel {
                topic: cfg.topic.clone(),
            },
            metrics: SinkMetrics::of(metrics),
            queue_timeout: Duration::from_secs_f64(cfg.delivery_timeout_secs),
        })
    }

    /// The topic this sink publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The JSON value published for `record` under `key` at `now_ms`.
    pub fn encode<R: Serialize + ?Sized>(key: &str, record: &R, now_ms: i64) -> Result<Vec<u8>> {
        serde_json::to_vec(&Envelope {
            schema_version: SCHEMA_VERSION,
            key,
            published_at_ms: now_ms,
            record,
        })
        .map_err(|e| Error::Other(format!("cannot serialize record for {key:?}: {e}")))
    }

    /// Publishes one record keyed by `key` and waits for the broker's
    /// acknowledgement. Errors are counted and returned.
    pub async fn publish<R: Serialize + ?Sized>(&self, key: &str, record: &R) -> Result<Delivered> {
        let value = match Self::encode(key, record, chrono::Utc::now().timestamp_millis()) {
            Ok(v) => v,
            Err(e) => {
                self.metrics.errors.get_or_create(&self.labels).inc();
                return Err(e);
            }
        };
        let version = SCHEMA_VERSION.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            })
            .insert(Header {
                key: "scalecast.schema_version",
                value: Some(version.as_str()),
            });
        let rec = FutureRecord::to(&self.topic)
            .key(key)
            .payload(&value)
            .headers(headers);
        match self.producer.send(rec, self.queue_timeout).await {
            Ok(d) => {
                self.metrics.published.get_or_create(&self.labels).inc();
                Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                })
            }
            Err((e, _)) => {
                self.metrics.errors.get_or_create(&self.labels).inc();
                tracing::warn!(topic = %self.topic, key, error = %e, "kafka publish failed");
                Err(Error::Other(format!(
                    "kafka: cannot publish record {key:?} to topic {:?}: {e}",
                    self.topic
                )))
            }
        }
    }

    /// Publishes several records concurrently (each keyed by its target) and
    /// waits for all of them. Returns the deliveries in input order, or the
    /// first error once every send has finished.
    pub async fn publish_all<R: Serialize>(
        &self,
        records: &[(String, R)],
    ) -> Result<Vec<Delivered>> {
        let results =
            futures::future::join_all(records.iter().map(|(k, r)| self.publish(k, r))).await;
        results.into_iter().collect()
    }

    /// Waits until every queued message is delivered or `timeout` passes
    /// (blocking; call before shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|e| Error::Other(format!("kafka flush: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Rec {
        target: String,
        replicas: u32,
    }

    #[test]
    fn envelope_schema() {
        let v = KafkaSink::encode(
            "web",
            &Rec {
                target: "web".into(),
                replicas: 3,
            },
            1_700_000_000_000,
        )
        .expect("serializable");
        let j: serde_json::Value = serde_json::from_slice(&v).expect("json");
        assert_eq!(
            j,
            serde_json::json!({
                "schema_version": 1,
                "key": "web",
                "published_at_ms": 1_700_000_000_000i64,
                "record": {"target": "web", "replicas": 3}
            })
        );
    }

    #[test]
    fn unserializable_record_is_an_error() {
        let mut m = std::collections::HashMap::new();
        m.insert((1, 2), "tuple keys are not JSON object keys");
        let e = KafkaSink::encode("k", &m, 0).expect_err("tuple keys");
        assert!(e.to_string().contains("cannot serialize"), "{e}");
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut c = KafkaSinkConfig::new("b:9092", "recs");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.producer_config().get("enable.idempotence"), Some("true"));
        c.librdkafka_options
            .insert("enable.idempotence".into(), "false".into());
        assert_eq!(
            c.validate().expect_err("managed").0,
            "librdkafka_options.enable.idempotence"
        );
        c.librdkafka_options.clear();
        c.librdkafka_options
            .insert("compression.type".into(), "brotli".into());
        assert_eq!(
            c.validate().expect_err("bad value").0,
            "librdkafka_options.compression.type"
        );
        c.librdkafka_options.clear();
        c.topic = " ".into();
        assert_eq!(c.validate().expect_err("topic").0, "topic");
        let y: std::result::Result<KafkaSinkConfig, _> =
            serde_yaml::from_str("bootstrap_servers: b\ntopic: t\nlinger: 1\n");
        assert!(y.is_err());
    }
}
