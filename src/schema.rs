//! The one Arrow schema every source produces, and helpers to build it.
//!
//! Every source (remote write, scraper, CloudWatch, Kafka, replay) turns what it
//! receives into [`Sample`]s and then into Arrow [`RecordBatch`]es with
//! [`samples_schema`]. The same schema is what the `samples` SQL table exposes and
//! what the Parquet files hold. `docs/schema.md` documents it for users.
//!
//! | column      | Arrow type                         | meaning                                            |
//! |-------------|------------------------------------|----------------------------------------------------|
//! | `ts`        | `Timestamp(Millisecond, "UTC")`    | sample time (event time), UTC                      |
//! | `name`      | `Utf8`                             | metric name (the `__name__` label)                 |
//! | `value`     | `Float64`                          | sample value                                       |
//! | `labels`    | `Map<Utf8, Utf8>` (keys sorted)    | every label except `__name__`                      |
//! | `series_id` | `UInt64`                           | stable FNV-1a hash of name and sorted labels       |

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, MapArray, MapBuilder, MapFieldNames,
    StringArray, StringBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder,
    UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

/// Column names of [`samples_schema`].
pub mod col {
    /// Sample timestamp, milliseconds since the epoch, UTC.
    pub const TS: &str = "ts";
    /// Metric name.
    pub const NAME: &str = "name";
    /// Sample value.
    pub const VALUE: &str = "value";
    /// Labels other than `__name__`.
    pub const LABELS: &str = "labels";
    /// Stable series identifier (hash of name + labels).
    pub const SERIES_ID: &str = "series_id";
}

/// The label that carries the metric name in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// A label pair.
pub type Label = (String, String);

/// One sample of one series, the unit every source produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels without `__name__`, sorted by name, no empty values.
    pub labels: Vec<Label>,
    /// Milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A sample of metric `name`; `labels` are sorted by name here (the
    /// order they are given in does not matter).
    pub fn new(name: &str, labels: &[(&str, &str)], ts_ms: i64, value: f64) -> Self {
        let mut labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        Self {
            name: name.into(),
            labels,
            ts_ms,
            value,
        }
    }
}

fn map_field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".to_string(),
        key: "key".to_string(),
        value: "value".to_string(),
    }
}

/// The Arrow type of the `labels` column.
pub fn labels_type() -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// The Arrow type of the `ts` column.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

static SAMPLES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::TS, ts_type(), false),
        Field::new(col::NAME, DataType::Utf8, false),
        Field::new(col::VALUE, DataType::Float64, false),
        Field::new(col::LABELS, labels_type(), false),
        Field::new(col::SERIES_ID, DataType::UInt64, false),
    ]))
});

/// The schema of raw samples (see the module docs).
pub fn samples_schema() -> SchemaRef {
    SAMPLES_SCHEMA.clone()
}

/// Stable 64-bit FNV-1a hash of a series identity (name and sorted labels).
///
/// The value is part of the on-disk format: it must never change between
/// versions. Separators (0xff, 0xfe) cannot appear in valid UTF-8, so distinct
/// label sets cannot collide by concatenation.
pub fn series_id<K: AsRef<str>, V: AsRef<str>>(name: &str, labels: &[(K, V)]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    feed(name.as_bytes());
    for (k, v) in labels {
        feed(&[0xff]);
        feed(k.as_ref().as_bytes());
        feed(&[0xfe]);
        feed(v.as_ref().as_bytes());
    }
    h
}

/// Incrementally builds a samples [`RecordBatch`].
pub struct SamplesBuilder {
    ts: TimestampMillisecondBuilder,
    name: StringBuilder,
    value: Float64Builder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    series_id: UInt64Builder,
    len: usize,
}

impl Default for SamplesBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl SamplesBuilder {
    /// A builder with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ts: TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC"),
            name: StringBuilder::with_capacity(n, n * 16),
            value: Float64Builder::with_capacity(n),
            labels: MapBuilder::with_capacity(
                Some(map_field_names()),
                StringBuilder::with_capacity(n * 4, n * 16),
                StringBuilder::with_capacity(n * 4, n * 16),
                n,
            )
            .with_values_field(Field::new("value", DataType::Utf8, true)),
            series_id: UInt64Builder::with_capacity(n),
            len: 0,
        }
    }

    /// Appends every sample of one series whose id is already known.
    /// `labels` are owned or borrowed pairs, sorted, without `__name__`.
    pub fn append_series<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        name: &str,
        labels: &[(K, V)],
        id: u64,
        points: impl IntoIterator<Item = (i64, f64)>,
    ) {
        for (ts, v) in points {
            self.ts.append_value(ts);
            self.name.append_value(name);
            self.value.append_value(v);
            for (k, val) in labels {
                self.labels.keys().append_value(k.as_ref());
                self.labels.values().append_value(val.as_ref());
            }
            // MapBuilder::append only fails when key and value counts differ,
            // which the loop above rules out.
            let _ = self.labels.append(true);
            self.series_id.append_value(id);
            self.len += 1;
        }
    }

    /// Appends `points` of the series of row `i` of `src`: name, labels and
    /// series id are copied from that row, time and value from each point.
    pub fn append_series_of(
        &mut self,
        src: &SamplesView<'_>,
        i: usize,
        points: impl IntoIterator<Item = (i64, f64)>,
    ) {
        let labels: Vec<(&str, &str)> = src
            .label_range(i)
            .map(|j| (src.label_keys.value(j), src.label_values.value(j)))
            .collect();
        self.append_series(src.name.value(i), &labels, src.series_id.value(i), points);
    }

    /// Appends one sample.
    pub fn append(&mut self, s: &Sample) {
        let id = series_id(&s.name, &s.labels);
        self.append_series(&s.name, &s.labels, id, [(s.ts_ms, s.value)]);
    }

    /// Number of rows appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no row was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finishes the batch (the builder can be reused).
    pub fn finish(&mut self) -> RecordBatch {
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.series_id.finish()),
        ];
        // The columns are built to match the schema exactly, with equal lengths.
        RecordBatch::try_new(samples_schema(), columns)
            .unwrap_or_else(|e| unreachable!("samples builder produced an invalid batch: {e}"))
    }
}

/// Builds a batch from samples.
pub fn samples_to_batch(samples: &[Sample]) -> RecordBatch {
    let mut b = SamplesBuilder::with_capacity(samples.len());
    for s in samples {
        b.append(s);
    }
    b.finish()
}

/// Typed column views of a samples batch.
pub struct SamplesView<'a> {
    /// `ts` column.
    pub ts: &'a TimestampMillisecondArray,
    /// `name` column.
    pub name: &'a StringArray,
    /// `value` column.
    pub value: &'a Float64Array,
    /// `labels` column.
    pub labels: &'a MapArray,
    /// `series_id` column.
    pub series_id: &'a UInt64Array,
    /// Keys of every row's labels (the map's entries, rows delimited by
    /// `labels.value_offsets()`).
    pub label_keys: &'a StringArray,
    /// Values of every row's labels, aligned with `label_keys`.
    pub label_values: &'a StringArray,
}

impl<'a> SamplesView<'a> {
    /// Views `batch`, or `None` if it does not have the samples schema.
    pub fn new(batch: &'a RecordBatch) -> Option<Self> {
        let labels: &MapArray = batch.column(3).as_any().downcast_ref()?;
        Some(Self {
            ts: batch.column(0).as_any().downcast_ref()?,
            name: batch.column(1).as_any().downcast_ref()?,
            value: batch.column(2).as_any().downcast_ref()?,
            labels,
            series_id: batch.column(4).as_any().downcast_ref()?,
            label_keys: labels.keys().as_any().downcast_ref()?,
            label_values: labels.values().as_any().downcast_ref()?,
        })
    }

    /// Range of row `i`'s entries in `label_keys` / `label_values`.
    pub fn label_range(&self, i: usize) -> std::ops::Range<usize> {
        let o = self.labels.value_offsets();
        o[i] as usize..o[i + 1] as usize
    }

    /// Labels of row `i`, in stored (sorted) order.
    pub fn labels_at(&self, i: usize) -> Vec<Label> {
        self.label_range(i)
            .map(|j| {
                (
                    self.label_keys.value(j).to_string(),
                    self.label_values.value(j).to_string(),
                )
            })
            .collect()
    }

    /// Value of label `key` in row `i`, if present.
    pub fn label(&self, i: usize, key: &str) -> Option<String> {
        self.label_range(i)
            .find(|&j| self.label_keys.value(j) == key)
            .map(|j| self.label_values.value(j).to_string())
    }

    /// Row `i` as a [`Sample`].
    pub fn sample(&self, i: usize) -> Sample {
        Sample {
            name: self.name.value(i).to_string(),
            labels: self.labels_at(i),
            ts_ms: self.ts.value(i),
            value: self.value.value(i),
        }
    }
}

/// Converts a samples batch back into [`Sample`]s (tests, replay tools).
pub fn batch_to_samples(batch: &RecordBatch) -> Vec<Sample> {
    match SamplesView::new(batch) {
        Some(v) => (0..batch.num_rows()).map(|i| v.sample(i)).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, labels: &[(&str, &str)], ts: i64, v: f64) -> Sample {
        Sample::new(name, labels, ts, v)
    }

    #[test]
    fn round_trip_through_batch() {
        let input = vec![
            s("up", &[("instance", "a:1"), ("job", "node")], 1000, 1.0),
            s("up", &[], 2000, 0.0),
            s("x", &[("k", "")], 3000, f64::NAN),
        ];
        let batch = samples_to_batch(&input);
        assert_eq!(batch.schema(), samples_schema());
        let out = batch_to_samples(&batch);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], input[0]);
        assert_eq!(out[1], input[1]);
        assert!(out[2].value.is_nan());
        let view = SamplesView::new(&batch).expect("schema");
        assert_eq!(view.label(0, "job").as_deref(), Some("node"));
        assert_eq!(view.label(1, "job"), None);
        assert_eq!(view.series_id.value(0), series_id("up", &input[0].labels));
    }

    #[test]
    fn series_id_is_stable_and_separates_labels() {
        // Pinned: this value is part of the on-disk format.
        assert_eq!(series_id::<&str, &str>("up", &[]), 0x08c4_3a07_b566_d980);
        let a = series_id("m", &[("ab", "c")]);
        let b = series_id("m", &[("a", "bc")]);
        assert_ne!(a, b);
        assert_eq!(a, series_id("m", &[("ab", "c")]));
    }
}
