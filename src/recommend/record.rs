//! The recommendation record: JSON for `GET /api/v1/recommendations`, Arrow for the
//! `recommendations` Parquet table.
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `ts` | `Timestamp(ms, UTC)` | decision time |
//! | `data_ts` | `Timestamp(ms, UTC)` | time of the newest data the decision used |
//! | `target` | `Utf8` | target name |
//! | `policy` | `Utf8` | policy (file/set) name |
//! | `recommender` | `Utf8` | configured recommender (`reactive`, `hpa`, `predictive`, `vertical`, `hybrid`) |
//! | `decided_by` | `Utf8` | what set the number: a recommender, or a limit (`min_replicas`, `max_replicas`, `schedule:<name>`, `stabilization`, `cooldown`, `scale_up_cooldown`, `max_step`) |
//! | `mode` | `Utf8` | `forecast_only` or `forecast_and_scale` |
//! | `current_replicas` | `UInt32` | replicas before |
//! | `recommended_replicas` | `UInt32` | replicas recommended |
//! | `direction` | `Utf8` | `up`, `down`, `none` |
//! | `load` | `Float64` | observed total load |
//! | `forecast_model` | `Utf8?` | model of the forecast used |
//! | `forecast_quantile` | `Float64?` | quantile used for sizing |
//! | `forecast_value` | `Float64?` | the quantile's peak over the look-ahead window |
//! | `forecast_ts` | `Timestamp(ms, UTC)?` | when that peak is expected |
//! | `forecast_p50`, `forecast_p90` | `Float64?` | median and p90 at that step |
//! | `current_cpu_cores`, `recommended_cpu_cores` | `Float64?` | per-replica CPU request (vertical/hybrid) |
//! | `current_memory_gib`, `recommended_memory_gib` | `Float64?` | per-replica memory request |
//! | `cost_per_hour_before`, `cost_per_hour_after` | `Float64?` | expected USD per hour |
//! | `under_provisioning_probability` | `Float64?` | estimated P(load > recommended capacity × target) over the look-ahead window |
//! | `reason` | `Utf8` | the reason in words |

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::Result;
use crate::recommend::limits::Direction;
use crate::recommend::policy::Mode;

/// The forecast a decision used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastUsed {
    /// Model name.
    pub model: String,
    /// Quantile used for sizing (0.9 = p90).
    pub quantile: f64,
    /// The quantile's peak over the look-ahead window.
    pub value: f64,
    /// When the peak is expected.
    pub at: DateTime<Utc>,
    /// Median at that step.
    pub p50: f64,
    /// p90 at that step.
    pub p90: f64,
    /// Look-ahead window, seconds.
    pub lookahead_secs: u64,
}

/// One recommendation (see the module docs for the columns). `Default` is an
/// empty record for struct-update syntax (`..Default::default()`), not a
/// meaningful decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Recommendation {
    /// Decision time.
    pub ts: DateTime<Utc>,
    /// Time of the newest data used.
    pub data_ts: DateTime<Utc>,
    /// Target name.
    pub target: String,
    /// Policy (file/set) name.
    pub policy: String,
    /// Configured recommender.
    pub recommender: String,
    /// The recommender or limit that set the final number.
    pub decided_by: String,
    /// Mode of the target.
    pub mode: Mode,
    /// Replicas before.
    pub current_replicas: u32,
    /// Replicas recommended.
    pub recommended_replicas: u32,
    /// Direction of the change.
    pub direction: Direction,
    /// Observed total load.
    pub load: f64,
    /// Forecast used, if any.
    pub forecast: Option<ForecastUsed>,
    /// Current per-replica CPU request, cores.
    pub current_cpu_cores: Option<f64>,
    /// Recommended per-replica CPU request, cores.
    pub recommended_cpu_cores: Option<f64>,
    /// Current per-replica memory request, GiB.
    pub current_memory_gib: Option<f64>,
    /// Recommended per-replica memory request, GiB.
    pub recommended_memory_gib: Option<f64>,
    /// Expected cost before, USD per hour.
    pub cost_per_hour_before: Option<f64>,
    /// Expected cost after, USD per hour.
    pub cost_per_hour_after: Option<f64>,
    /// Estimated probability of under-provisioning over the look-ahead window.
    pub under_provisioning_probability: Option<f64>,
    /// Reason in words.
    pub reason: String,
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    Arc::new(Schema::new(vec![
        f("ts", ts_type(), false),
        f("data_ts", ts_type(), false),
        f("target", DataType::Utf8, false),
        f("policy", DataType::Utf8, false),
        f("recommender", DataType::Utf8, false),
        f("decided_by", DataType::Utf8, false),
        f("mode", DataType::Utf8, false),
        f("current_replicas", DataType::UInt32, false),
        f("recommended_replicas", DataType::UInt32, false),
        f("direction", DataType::Utf8, false),
        f("load", DataType::Float64, false),
        f("forecast_model", DataType::Utf8, true),
        f("forecast_quantile", DataType::Float64, true),
        f("forecast_value", DataType::Float64, true),
        f("forecast_ts", ts_type(), true),
        f("forecast_p50", DataType::Float64, true),
        f("forecast_p90", DataType::Float64, true),
        f("current_cpu_cores", DataType::Float64, true),
        f("recommended_cpu_cores", DataType::Float64, true),
        f("current_memory_gib", DataType::Float64, true),
        f("recommended_memory_gib", DataType::Float64, true),
        f("cost_per_hour_before", DataType::Float64, true),
        f("cost_per_hour_after", DataType::Float64, true),
        f("under_provisioning_probability", DataType::Float64, true),
        f("reason", DataType::Utf8, false),
    ]))
});

/// Arrow schema of the `recommendations` table.
pub fn recommendations_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds one `recommendations` batch from records.
pub fn records_to_batch(records: &[Recommendation]) -> Result<RecordBatch> {
    let n = records.len();
    let ts_b = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let s_b = || StringBuilder::with_capacity(n, n * 16);
    let f_b = || Float64Builder::with_capacity(n);
    let (mut ts, mut data_ts, mut forecast_ts) = (ts_b(), ts_b(), ts_b());
    let (mut target, mut policy, mut recommender, mut decided_by, mut mode) =
        (s_b(), s_b(), s_b(), s_b(), s_b());
    let (mut direction, mut forecast_model, mut reason) = (s_b(), s_b(), s_b());
    let mut current = UInt32Builder::with_capacity(n);
    let mut recommended = UInt32Builder::with_capacity(n);
    let (mut load, mut fq, mut fv, mut f50, mut f90) = (f_b(), f_b(), f_b(), f_b(), f_b());
    let (mut ccpu, mut rcpu, mut cmem, mut rmem) = (f_b(), f_b(), f_b(), f_b());
    let (mut cb, mut ca, mut pu) = (f_b(), f_b(), f_b());
    for r in records {
        ts.append_value(r.ts.timestamp_millis());
        data_ts.append_value(r.data_ts.timestamp_millis());
        target.append_value(&r.target);
        policy.append_value(&r.policy);
        recommender.append_value(&r.recommender);
        decided_by.append_value(&r.decided_by);
        mode.append_value(r.mode.as_str());
        current.append_value(r.current_replicas);
        recommended.append_value(r.recommended_replicas);
        direction.append_value(r.direction.as_str());
        load.append_value(r.load);
        match &r.forecast {
            Some(f) => {
                forecast_model.append_value(&f.model);
                fq.append_value(f.quantile);
                fv.append_value(f.value);
                forecast_ts.append_value(f.at.timestamp_millis());
                f50.append_value(f.p50);
                f90.append_value(f.p90);
            }
            None => {
                forecast_model.append_null();
                fq.append_null();
                fv.append_null();
                forecast_ts.append_null();
                f50.append_null();
                f90.append_null();
            }
        }
        ccpu.append_option(r.current_cpu_cores);
        rcpu.append_option(r.recommended_cpu_cores);
        cmem.append_option(r.current_memory_gib);
        rmem.append_option(r.recommended_memory_gib);
        cb.append_option(r.cost_per_hour_before);
        ca.append_option(r.cost_per_hour_after);
        pu.append_option(r.under_provisioning_probability);
        reason.append_value(&r.reason);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(data_ts.finish()),
        Arc::new(target.finish()),
        Arc::new(policy.finish()),
        Arc::new(recommender.finish()),
        Arc::new(decided_by.finish()),
        Arc::new(mode.finish()),
        Arc::new(current.finish()),
        Arc::new(recommended.finish()),
        Arc::new(direction.finish()),
        Arc::new(load.finish()),
        Arc::new(forecast_model.finish()),
        Arc::new(fq.finish()),
        Arc::new(fv.finish()),
        Arc::new(forecast_ts.finish()),
        Arc::new(f50.finish()),
        Arc::new(f90.finish()),
        Arc::new(ccpu.finish()),
        Arc::new(rcpu.finish()),
        Arc::new(cmem.finish()),
        Arc::new(rmem.finish()),
        Arc::new(cb.finish()),
        Arc::new(ca.finish()),
        Arc::new(pu.finish()),
        Arc::new(reason.finish()),
    ];
    Ok(RecordBatch::try_new(recommendations_schema(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, StringArray, UInt32Array};
    use chrono::TimeZone;

    fn rec(with_forecast: bool) -> Recommendation {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Recommendation {
            ts: t,
            data_ts: t,
            target: "web".into(),
            policy: "prod".into(),
            recommender: "predictive".into(),
            decided_by: "predictive".into(),
            mode: Mode::ForecastOnly,
            current_replicas: 3,
            recommended_replicas: 5,
            direction: Direction::Up,
            load: 12.5,
            forecast: with_forecast.then(|| ForecastUsed {
                model: "ets".into(),
                quantile: 0.9,
                value: 20.0,
                at: t,
                p50: 15.0,
                p90: 20.0,
                lookahead_secs: 360,
            }),
            current_cpu_cores: None,
            recommended_cpu_cores: None,
            current_memory_gib: None,
            recommended_memory_gib: None,
            cost_per_hour_before: Some(0.3),
            cost_per_hour_after: Some(0.5),
            under_provisioning_probability: with_forecast.then_some(0.1),
            reason: "because".into(),
        }
    }

    #[test]
    fn batch_matches_schema_and_values() {
        let b = records_to_batch(&[rec(true), rec(false)]).expect("batch");
        assert_eq!(b.schema(), recommendations_schema());
        assert_eq!(b.num_rows(), 2);
        let col = |n: &str| b.column_by_name(n).expect(n).clone();
        let target = col("target");
        let target = target.as_any().downcast_ref::<StringArray>().expect("utf8");
        assert_eq!(target.value(0), "web");
        let rr = col("recommended_replicas");
        let rr = rr.as_any().downcast_ref::<UInt32Array>().expect("u32");
        assert_eq!(rr.value(1), 5);
        let fv = col("forecast_value");
        let fv = fv.as_any().downcast_ref::<Float64Array>().expect("f64");
        assert_eq!((fv.value(0), fv.is_null(1)), (20.0, true));
        let mode = col("mode");
        let mode = mode.as_any().downcast_ref::<StringArray>().expect("utf8");
        assert_eq!(mode.value(0), "forecast_only");
        assert_eq!(col("forecast_ts").null_count(), 1);
        assert!(records_to_batch(&[]).expect("empty batch").num_rows() == 0);
    }

    #[test]
    fn json_round_trip() {
        let r = rec(true);
        let s = serde_json::to_string(&r).expect("json");
        assert!(s.contains("\"mode\":\"forecast_only\""), "{s}");
        assert!(s.contains("\"direction\":\"up\""), "{s}");
        let back: Recommendation = serde_json::from_str(&s).expect("parse");
        assert_eq!(back, r);
    }
}
