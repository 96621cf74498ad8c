//! The `aggregates` Arrow schema: one row per (transform, group, window).
//!
//! Storage keeps the latest row per key `(transform, group_id, window_start)`:
//! a window re-emitted because of late data (`is_update = true`) replaces the
//! earlier row, and a restart recomputes identical rows.
//!
//! | column               | Arrow type                      | null | meaning |
//! |----------------------|---------------------------------|------|---------|
//! | `transform`          | `Utf8`                          | no   | transform id from the pipeline YAML |
//! | `kind`               | `Utf8`                          | no   | `window`, `utilization` or `cost` |
//! | `metric`             | `Utf8`                          | no   | selected metric (window) or resource `cpu` / `memory` / `other` |
//! | `window_start`       | `Timestamp(Millisecond, "UTC")` | no   | inclusive window start (event time) |
//! | `window_end`         | `Timestamp(Millisecond, "UTC")` | no   | exclusive window end |
//! | `labels`             | `Map<Utf8, Utf8>` (keys sorted) | no   | the group: values of the `group_by` labels (absent/empty labels omitted) |
//! | `group_id`           | `UInt64`                        | no   | FNV-1a of transform id + group labels (same hash as `samples.series_id`) |
//! | `series`             | `UInt64`                        | no   | distinct series of the group in the window |
//! | `samples`            | `UInt64`                        | no   | samples used (after de-duplication, non-finite values excluded) |
//! | `count`              | `Float64`                       | yes  | number of samples (window transforms) |
//! | `sum`                | `Float64`                       | yes  | sum of values |
//! | `min`                | `Float64`                       | yes  | smallest value |
//! | `max`                | `Float64`                       | yes  | largest value |
//! | `avg`                | `Float64`                       | yes  | mean value |
//! | `last`               | `Float64`                       | yes  | value of the latest sample |
//! | `p50`                | `Float64`                       | yes  | median (DDSketch, 1 % relative error) |
//! | `p90`                | `Float64`                       | yes  | 90th percentile |
//! | `p95`                | `Float64`                       | yes  | 95th percentile |
//! | `p99`                | `Float64`                       | yes  | 99th percentile |
//! | `rate`               | `Float64`                       | yes  | Σ over series of the per-second counter rate (Prometheus `rate`) |
//! | `increase`           | `Float64`                       | yes  | Σ over series of the counter increase (Prometheus `increase`) |
//! | `usage`              | `Float64`                       | yes  | utilization: resource used (cores or bytes) |
//! | `request`            | `Float64`                       | yes  | utilization: resource requested |
//! | `capacity`           | `Float64`                       | yes  | utilization: resource available |
//! | `utilization`        | `Float64`                       | yes  | `usage / request` |
//! | `saturation`         | `Float64`                       | yes  | `usage / capacity` |
//! | `allocated_cost_usd` | `Float64`                       | yes  | `max(request, usage) × price × window hours` |
//! | `idle_cost_usd`      | `Float64`                       | yes  | `capacity cost − allocated cost` |
//! | `capacity_cost_usd`  | `Float64`                       | yes  | `capacity × price × window hours` |
//! | `is_update`          | `Boolean`                       | no   | true when the row re-emits a window because of late data |
//!
//! Aggregates a transform did not ask for are null; so are values that are
//! undefined (`rate` with fewer than two samples per series, `utilization`
//! without a request, a division by zero).

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::engine::aggregate::{AggregateKind, AggregateValues};
use crate::engine::cost::CostBreakdown;
use crate::schema::{Label, labels_type, ts_type};

/// Column names of [`aggregates_schema`].
pub mod col {
    /// Transform id.
    pub const TRANSFORM: &str = "transform";
    /// Transform kind.
    pub const KIND: &str = "kind";
    /// Metric or resource.
    pub const METRIC: &str = "metric";
    /// Window start.
    pub const WINDOW_START: &str = "window_start";
    /// Window end.
    pub const WINDOW_END: &str = "window_end";
    /// Group labels.
    pub const LABELS: &str = "labels";
    /// Group id.
    pub const GROUP_ID: &str = "group_id";
    /// Distinct series.
    pub const SERIES: &str = "series";
    /// Samples used.
    pub const SAMPLES: &str = "samples";
    /// Usage.
    pub const USAGE: &str = "usage";
    /// Request.
    pub const REQUEST: &str = "request";
    /// Capacity.
    pub const CAPACITY: &str = "capacity";
    /// Utilization.
    pub const UTILIZATION: &str = "utilization";
    /// Saturation.
    pub const SATURATION: &str = "saturation";
    /// Allocated cost.
    pub const ALLOCATED_COST_USD: &str = "allocated_cost_usd";
    /// Idle cost.
    pub const IDLE_COST_USD: &str = "idle_cost_usd";
    /// Capacity cost.
    pub const CAPACITY_COST_USD: &str = "capacity_cost_usd";
    /// Late re-emission flag.
    pub const IS_UPDATE: &str = "is_update";
}

static AGGREGATES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(col::TRANSFORM, DataType::Utf8, false),
        Field::new(col::KIND, DataType::Utf8, false),
        Field::new(col::METRIC, DataType::Utf8, false),
        Field::new(col::WINDOW_START, ts_type(), false),
        Field::new(col::WINDOW_END, ts_type(), false),
        Field::new(col::LABELS, labels_type(), false),
        Field::new(col::GROUP_ID, DataType::UInt64, false),
        Field::new(col::SERIES, DataType::UInt64, false),
        Field::new(col::SAMPLES, DataType::UInt64, false),
    ];
    for k in AggregateKind::ALL {
        fields.push(Field::new(k.name(), DataType::Float64, true));
    }
    for name in [
        col::USAGE,
        col::REQUEST,
        col::CAPACITY,
        col::UTILIZATION,
        col::SATURATION,
        col::ALLOCATED_COST_USD,
        col::IDLE_COST_USD,
        col::CAPACITY_COST_USD,
    ] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new(col::IS_UPDATE, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
});

/// The schema of window results (see the module docs).
pub fn aggregates_schema() -> SchemaRef {
    AGGREGATES_SCHEMA.clone()
}

/// Kind of transform that produced a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A `window` transform.
    Window,
    /// A `utilization` transform.
    Utilization,
    /// A `cost` transform.
    Cost,
}

impl RowKind {
    /// The value of the `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            RowKind::Window => "window",
            RowKind::Utilization => "utilization",
            RowKind::Cost => "cost",
        }
    }
}

/// Utilization figures of one row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UtilizationValues {
    /// Resource used.
    pub usage: Option<f64>,
    /// Resource requested.
    pub request: Option<f64>,
    /// Resource available.
    pub capacity: Option<f64>,
    /// `usage / request`.
    pub utilization: Option<f64>,
    /// `usage / capacity`.
    pub saturation: Option<f64>,
}

/// One output row (one group in one window of one transform).
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    /// Transform id.
    pub transform: Arc<str>,
    /// Transform kind.
    pub kind: RowKind,
    /// Metric or resource name.
    pub metric: Arc<str>,
    /// Inclusive window start (ms).
    pub window_start: i64,
    /// Exclusive window end (ms).
    pub window_end: i64,
    /// Group labels, sorted by name.
    pub labels: Arc<[Label]>,
    /// Group id.
    pub group_id: u64,
    /// Distinct series.
    pub series: u64,
    /// Samples used.
    pub samples: u64,
    /// Window aggregates.
    pub values: AggregateValues,
    /// Utilization figures.
    pub utilization: UtilizationValues,
    /// Cost figures.
    pub cost: CostBreakdown,
    /// Late re-emission.
    pub is_update: bool,
}

/// Builds an `aggregates` batch from rows.
pub fn rows_to_batch(rows: &[AggregateRow]) -> RecordBatch {
    let n = rows.len();
    let mut transform = StringBuilder::with_capacity(n, n * 16);
    let mut kind = StringBuilder::with_capacity(n, n * 8);
    let mut metric = StringBuilder::with_capacity(n, n * 24);
    let mut start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut end = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut labels = MapBuilder::new(
        Some(MapFieldNames {
            entry: "entries".to_string(),
            key: "key".to_string(),
            value: "value".to_string(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    )
    .with_values_field(Field::new("value", DataType::Utf8, true));
    let mut group_id = UInt64Builder::with_capacity(n);
    let mut series = UInt64Builder::with_capacity(n);
    let mut samples = UInt64Builder::with_capacity(n);
    let mut aggs: Vec<Float64Builder> = (0..AggregateKind::ALL.len())
        .map(|_| Float64Builder::with_capacity(n))
        .collect();
    let mut extra: Vec<Float64Builder> = (0..8).map(|_| Float64Builder::with_capacity(n)).collect();
    let mut is_update = BooleanBuilder::with_capacity(n);
    for r in rows {
        transform.append_value(&*r.transform);
        kind.append_value(r.kind.name());
        metric.append_value(&*r.metric);
        start.append_value(r.window_start);
        end.append_value(r.window_end);
        for (k, v) in r.labels.iter() {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        // Only fails when key and value counts differ, which the loop rules out.
        let _ = labels.append(true);
        group_id.append_value(r.group_id);
        series.append_value(r.series);
        samples.append_value(r.samples);
        for (b, k) in aggs.iter_mut().zip(AggregateKind::ALL) {
            b.append_option(r.values.get(k));
        }
        let u = &r.utilization;
        let c = &r.cost;
        for (b, v) in extra.iter_mut().zip([
            u.usage,
            u.request,
            u.capacity,
            u.utilization,
            u.saturation,
            c.allocated_usd,
            c.idle_usd,
            c.capacity_usd,
        ]) {
            b.append_option(v);
        }
        is_update.append_value(r.is_update);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(transform.finish()),
        Arc::new(kind.finish()),
        Arc::new(metric.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(labels.finish()),
        Arc::new(group_id.finish()),
        Arc::new(series.finish()),
        Arc::new(samples.finish()),
    ];
    for mut b in aggs.into_iter().chain(extra) {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(is_update.finish()));
    // Columns are built to match the schema exactly, with equal lengths.
    RecordBatch::try_new(aggregates_schema(), columns)
        .unwrap_or_else(|e| unreachable!("aggregates builder produced an invalid batch: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, StringArray};

    #[test]
    fn rows_round_trip_into_the_schema() {
        let values = AggregateValues {
            avg: Some(1.5),
            ..Default::default()
        };
        let row = AggregateRow {
            transform: "t".into(),
            kind: RowKind::Window,
            metric: "m".into(),
            window_start: 0,
            window_end: 60_000,
            labels: vec![("instance".into(), "a".into())].into(),
            group_id: 7,
            series: 1,
            samples: 2,
            values,
            utilization: UtilizationValues::default(),
            cost: CostBreakdown::default(),
            is_update: false,
        };
        let batch = rows_to_batch(&[row.clone(), row]);
        assert_eq!(batch.schema(), aggregates_schema());
        assert_eq!(batch.num_rows(), 2);
        let avg = batch
            .column_by_name("avg")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .map(|a| a.value(0));
        assert_eq!(avg, Some(1.5));
        let p95 = batch.column_by_name("p95").map(|c| c.is_null(0));
        assert_eq!(p95, Some(true));
        let kind = batch
            .column_by_name("kind")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .map(|a| a.value(1).to_string());
        assert_eq!(kind.as_deref(), Some("window"));
        assert_eq!(rows_to_batch(&[]).num_rows(), 0);
    }
}
