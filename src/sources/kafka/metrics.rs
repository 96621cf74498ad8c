//! Self-metrics of the Kafka source (and the dead-letter producer).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `scalecast_kafka_messages_total` | counter | `group`, `topic` |
//! | `scalecast_kafka_bytes_total` | counter (payload bytes) | `group`, `topic` |
//! | `scalecast_kafka_samples_total` | counter (samples made durable) | `group`, `topic` |
//! | `scalecast_kafka_dead_letter_total` | counter (poison messages) | `group`, `topic`, `reason` |
//! | `scalecast_kafka_errors_total` | counter | `group`, `kind` (`consume`, `client`, `commit`, `dead_letter`, `ingest`, `decode`) |
//! | `scalecast_kafka_commits_total` | counter (successful offset commits) | `group` |
//! | `scalecast_kafka_consumer_lag` | gauge (messages, high watermark − committed offset) | `group`, `topic`, `partition` |
//! | `scalecast_kafka_paused` | gauge (1 while partitions are paused for back-pressure) | `group` |
//! | `scalecast_kafka_pauses_total` | counter | `group` |
//!
//! The families are registered once per [`Metrics`] registry and shared by
//! every Kafka source of the process.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;

/// `{group, topic}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
}

/// `{group, topic, partition}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// `{group, topic, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Consumer group.
    pub group: String,
    /// Topic the message came from.
    pub topic: String,
    /// Decode error kind.
    pub reason: String,
}

/// `{group, kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Consumer group.
    pub group: String,
    /// What failed.
    pub kind: String,
}

/// `{group}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Consumer group.
    pub group: String,
}

/// Metric families of the Kafka source (see the module docs).
#[derive(Default)]
pub struct KafkaMetrics {
    /// Messages received.
    pub messages: Family<TopicLabels, Counter>,
    /// Payload bytes received.
    pub bytes: Family<TopicLabels, Counter>,
    /// Samples made durable.
    pub samples: Family<TopicLabels, Counter>,
    /// Poison messages (dead-lettered or, without a dead-letter topic, skipped).
    pub dead_letter: Family<DeadLetterLabels, Counter>,
    /// Errors by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Successful offset commits.
    pub commits: Family<GroupLabels, Counter>,
    /// Consumer lag per partition.
    pub lag: Family<PartitionLabels, Gauge>,
    /// 1 while paused for back-pressure.
    pub paused: Family<GroupLabels, Gauge>,
    /// Times partitions were paused for back-pressure.
    pub pauses: Family<GroupLabels, Counter>,
}

impl KafkaMetrics {
    /// The Kafka families of `metrics`, registering them on first use.
    pub fn of(metrics: &Arc<Metrics>) -> Arc<KafkaMetrics> {
        metrics.get_or_init(|metrics| {
            let k = Arc::new(KafkaMetrics::default());
            metrics.register(
                "scalecast_kafka_messages",
                "Kafka messages received",
                k.messages.clone(),
            );
            metrics.register(
                "scalecast_kafka_bytes",
                "Kafka payload bytes received",
                k.bytes.clone(),
            );
            metrics.register(
                "scalecast_kafka_samples",
                "Samples from Kafka made durable in the WAL",
                k.samples.clone(),
            );
            metrics.register(
                "scalecast_kafka_dead_letter",
                "Kafka messages that could not be decoded (sent to the dead-letter topic, or skipped without one)",
                k.dead_letter.clone(),
            );
            metrics.register(
                "scalecast_kafka_errors",
                "Kafka source errors by kind",
                k.errors.clone(),
            );
            metrics.register(
                "scalecast_kafka_commits",
                "Successful Kafka offset commits",
                k.commits.clone(),
            );
            metrics.register(
                "scalecast_kafka_consumer_lag",
                "Messages between the committed offset and the high watermark, per partition",
                k.lag.clone(),
            );
            metrics.register(
                "scalecast_kafka_paused",
                "1 while the Kafka source has paused its partitions because ingest is overloaded",
                k.paused.clone(),
            );
            metrics.register(
                "scalecast_kafka_pauses",
                "Times the Kafka source paused its partitions for back-pressure",
                k.pauses.clone(),
            );
            k
        })
    }

    /// Counts one error of `kind`.
    pub fn error(&self, group: &str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                group: group.into(),
                kind: kind.into(),
            })
            .inc();
    }
}
