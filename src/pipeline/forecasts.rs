//! The live forecast stage: per configured series, refit on a schedule from
//! the SQL history (AWS predictive scaling style: every 6 h, only with at
//! least 24 h of history, at most 14 days) and write the forecast to the
//! `forecasts` table.
//!
//! ```yaml
//! forecasts:
//!   web_cpu:
//!     sql: "SELECT window_end AS ts, avg AS value FROM aggregates WHERE transform = 'web_load'"
//!     model: auto
//!     step_secs: 300
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::forecast::live::{ForecastRow, RefitPolicy, forecast_rows};
use crate::forecast::{ModelConfig, resample};
use crate::query::{self, QueryConfig, TableSource};
use crate::schema::ts_type;
use crate::store::Store;
use crate::store::table::DerivedTable;

/// Name of the forecasts table.
pub const FORECASTS: &str = "forecasts";

/// One forecast series of the pipeline's `forecasts:` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForecastSeriesConfig {
    /// A read-only query returning `ts` and `value` (over `samples`, `aggregates`, ...).
    pub sql: String,
    /// Model: `naive`, `seasonal_naive`, `ets`, `linreg` or `auto`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Grid step, seconds; the history is resampled to it (default: inferred).
    #[serde(default)]
    pub step_secs: Option<u64>,
    /// Minimum time between refits, seconds.
    #[serde(default = "default_refit_every_secs")]
    pub refit_every_secs: u64,
    /// History needed before the first forecast, seconds.
    #[serde(default = "default_min_history_secs")]
    pub min_history_secs: u64,
    /// Longest history used for a fit, seconds.
    #[serde(default = "default_max_history_secs")]
    pub max_history_secs: u64,
    /// Forecast steps.
    #[serde(default = "default_horizon")]
    pub horizon: usize,
}

fn default_model() -> String {
    "auto".into()
}
fn default_refit_every_secs() -> u64 {
    6 * 3600
}
fn default_min_history_secs() -> u64 {
    24 * 3600
}
fn default_max_history_secs() -> u64 {
    14 * 24 * 3600
}
fn default_horizon() -> usize {
    576
}

impl ForecastSeriesConfig {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if crate::forecast::model_by_name(&self.model, &ModelConfig::default()).is_err() {
            return Err((
                "model".into(),
                format!(
                    "unknown model {:?} (naive, seasonal_naive, ets, linreg, auto)",
                    self.model
                ),
            ));
        }
        if self.sql.trim().is_empty() {
            return Err(("sql".into(), "must be a query returning ts, value".into()));
        }
        if self.step_secs == Some(0) {
            return Err(("step_secs".into(), "must be at least 1".into()));
        }
        if self.refit_every_secs == 0 {
            return Err(("refit_every_secs".into(), "must be at least 1".into()));
        }
        if self.max_history_secs < self.min_history_secs {
            return Err((
                "max_history_secs".into(),
                "must be at least min_history_secs".into(),
            ));
        }
        if self.horizon == 0 || self.horizon > 100_000 {
            return Err((
                "horizon".into(),
                "must be between 1 and 100000 steps".into(),
            ));
        }
        Ok(())
    }

    fn policy(&self) -> RefitPolicy {
        RefitPolicy {
            every_ms: self.refit_every_secs as i64 * 1000,
            min_history_ms: self.min_history_secs as i64 * 1000,
            max_history_ms: self.max_history_secs as i64 * 1000,
            horizon: self.horizon,
        }
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::Utf8, false),
        Field::new("issued_at", ts_type(), false),
        Field::new("target_ts", ts_type(), false),
        Field::new("p10", DataType::Float64, false),
        Field::new("p50", DataType::Float64, false),
        Field::new("p90", DataType::Float64, false),
        Field::new("mean", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
    ]))
});

/// Schema of the `forecasts` table.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Forecast rows as a batch of [`schema`].
pub fn rows_to_batch(rows: &[ForecastRow]) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.series.as_str()),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.issued_at_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.target_ts_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.p10))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.p50))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.p90))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.mean))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.model.as_str()),
        )),
    ];
    Ok(RecordBatch::try_new(schema(), cols)?)
}

/// Reads one series' history with its SQL.
async fn history(
    cfg: &ForecastSeriesConfig,
    tables: Vec<TableSource>,
    views: &[(String, String)],
) -> Result<(Vec<i64>, Vec<f64>)> {
    let sql = format!(
        "SELECT CAST(ts AS BIGINT) AS t, CAST(value AS DOUBLE) AS v FROM ({}) AS h ORDER BY 1",
        cfg.sql
    );
    let r = query::run_sql_with_views(tables, views, &sql, &QueryConfig::default()).await?;
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    for b in &r.batches {
        let (Some(t), Some(v)) = (
            b.column(0).as_any().downcast_ref::<Int64Array>(),
            b.column(1).as_any().downcast_ref::<Float64Array>(),
        ) else {
            return Err(Error::Other(
                "forecast query must return (ts, value)".into(),
            ));
        };
        for i in 0..b.num_rows() {
            ts.push(t.value(i));
            vs.push(v.value(i));
        }
    }
    Ok((ts, vs))
}

/// Runs every series whose refit is due at `now_ms` (all of them when
/// `last_fit` is empty) and appends their rows to `table`. Returns the number
/// of series forecast; failures are logged per series.
pub async fn run_once(
    series: &BTreeMap<String, ForecastSeriesConfig>,
    last_fit: &mut BTreeMap<String, i64>,
    store_catalog: &(dyn Fn() -> (Vec<TableSource>, Vec<(String, String)>) + Send + Sync),
    table: &DerivedTable,
    now_ms: i64,
) -> usize {
    let mut done = 0;
    for (name, cfg) in series {
        let (tables, views) = store_catalog();
        let (ts, vs) = match history(cfg, tables, &views).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(series = %name, error = %e, "forecast history query failed");
                continue;
            }
        };
        if ts.is_empty() {
            continue;
        }
        let s = match resample(&ts, &vs, cfg.step_secs.map(|s| s as i64 * 1000)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(series = %name, error = %e, "cannot resample forecast history");
                continue;
            }
        };
        let policy = cfg.policy();
        if !policy.due(last_fit.get(name).copied(), now_ms, &s) {
            continue;
        }
        let model_cfg = ModelConfig {
            horizon: cfg.horizon,
            ..ModelConfig::default()
        };
        match forecast_rows(name, &s, &cfg.model, &model_cfg, &policy, now_ms) {
            Ok((rows, _params)) => match rows_to_batch(&rows)
                .and_then(|b| table.append(b))
                .and_then(|()| table.flush())
            {
                Ok(()) => {
                    last_fit.insert(name.clone(), now_ms);
                    done += 1;
                    tracing::info!(series = %name, rows = rows.len(), "forecast written");
                }
                Err(e) => tracing::error!(series = %name, error = %e, "cannot store forecast"),
            },
            Err(e) => tracing::warn!(series = %name, error = %e, "forecast failed"),
        }
    }
    done
}

/// The stage's loop: checks every minute which series are due.
pub async fn run(
    series: BTreeMap<String, ForecastSeriesConfig>,
    store: Arc<Store>,
    catalog: Arc<super::CatalogFn>,
    table: Arc<DerivedTable>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut last_fit = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let cat = move || catalog(&store);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() { return Ok(()); }
            }
        }
        run_once(
            &series,
            &mut last_fit,
            &cat,
            &table,
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Sample, samples_to_batch};
    use crate::store::Snapshot;

    #[tokio::test]
    async fn refits_on_schedule_and_writes_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let table = DerivedTable::open(dir.path(), FORECASTS, schema(), 100_000).expect("table");
        let t0 = 1_800_000_000_000_i64;
        let step = 300_000;
        // Two days of a daily sine at 5 minutes.
        let samples: Vec<Sample> = (0..576)
            .map(|i| Sample {
                name: "load".into(),
                labels: vec![],
                ts_ms: t0 + i * step,
                value: 50.0 + 20.0 * ((i as f64) * std::f64::consts::TAU / 288.0).sin(),
            })
            .collect();
        let batch = samples_to_batch(&samples);
        let catalog = move || {
            (
                vec![TableSource::samples(Snapshot {
                    files: vec![],
                    head: vec![batch.clone()],
                })],
                vec![],
            )
        };
        let cfg = ForecastSeriesConfig {
            sql: "SELECT ts, value FROM samples WHERE name = 'load'".into(),
            model: "seasonal_naive".into(),
            step_secs: Some(300),
            refit_every_secs: 6 * 3600,
            min_history_secs: 24 * 3600,
            max_history_secs: 14 * 86_400,
            horizon: 12,
        };
        cfg.validate().expect("valid");
        let series = BTreeMap::from([("load".to_string(), cfg.clone())]);
        let mut last = BTreeMap::new();
        let now = t0 + 576 * step;
        assert_eq!(run_once(&series, &mut last, &catalog, &table, now).await, 1);
        assert_eq!(
            run_once(&series, &mut last, &catalog, &table, now + 3_600_000).await,
            0,
            "not due for 6 h"
        );
        assert_eq!(
            run_once(&series, &mut last, &catalog, &table, now + 6 * 3_600_000).await,
            1
        );
        let r = query::run_sql(
            vec![table.source()],
            "SELECT count(*) AS n, count(DISTINCT issued_at) AS i, min(CAST(target_ts AS BIGINT)) AS first, max(p90 - p10) AS band FROM forecasts",
            &QueryConfig::default(),
        )
        .await
        .expect("sql");
        let json =
            String::from_utf8(query::render(&r, query::Format::Json).expect("json")).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(&json).expect("parse");
        assert_eq!(v[0]["n"], 24);
        assert_eq!(v[0]["i"], 2);
        assert_eq!(
            v[0]["first"], now,
            "the first forecast step follows the last observation"
        );
        assert!(v[0]["band"].as_f64().is_some_and(|b| b >= 0.0));
        // Too little history: nothing is written.
        let short = ForecastSeriesConfig {
            min_history_secs: 3 * 86_400,
            max_history_secs: 14 * 86_400,
            ..cfg
        };
        let series = BTreeMap::from([("load".to_string(), short)]);
        assert_eq!(
            run_once(&series, &mut BTreeMap::new(), &catalog, &table, now).await,
            0
        );
        assert!(
            ForecastSeriesConfig {
                model: "prophet".into(),
                ..series["load"].clone()
            }
            .validate()
            .is_err()
        );
    }
}
