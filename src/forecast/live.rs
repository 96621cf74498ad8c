//! Building blocks of the live forecast stage (issue 7 item 5).
//!
//! The pipeline stage owns scheduling, the SQL read of the history and the Parquet write; this
//! file provides the pure parts so that stage stays thin:
//! * [`RefitPolicy`] — when to refit (AWS predictive scaling style: every 6 h, only with at
//!   least 24 h of history, using at most 14 days);
//! * [`forecast_rows`] — fit a model on one series' history and turn the forecast into rows
//!   `(series, issued_at, target_ts, p10, p50, p90, mean, model)` ready for a table;
//! * [`ForecastArgs`] / [`run`] — a one-shot `scalecast forecast` over CSV files (the same
//!   input layout as `scalecast backtest`), printing or writing the rows as CSV. The SQL
//!   history input is added by the pipeline stage on top of [`forecast_rows`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::forecast::backtest::{expand_inputs, load_csv};
use crate::forecast::error::{ForecastError, Result};
use crate::forecast::series::{DAY_MS, Series};
use crate::forecast::{ModelConfig, forecast_series};

/// When the live stage refits and how much history it uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefitPolicy {
    /// Minimum time between two refits of a series (ms). Default 6 h.
    pub every_ms: i64,
    /// Minimum history span needed before the first forecast (ms). Default 24 h.
    pub min_history_ms: i64,
    /// Longest history used for a fit (ms); older points are dropped. Default 14 days.
    pub max_history_ms: i64,
    /// Forecast horizon in steps. Default 576 (48 h at 5 minutes).
    pub horizon: usize,
}

impl Default for RefitPolicy {
    fn default() -> Self {
        RefitPolicy {
            every_ms: 6 * 3_600_000,
            min_history_ms: DAY_MS,
            max_history_ms: 14 * DAY_MS,
            horizon: 576,
        }
    }
}

impl RefitPolicy {
    /// True when a series last fitted at `last_fit_ms` (`None` = never) should be refitted at
    /// `now_ms`, given its history `s`.
    pub fn due(&self, last_fit_ms: Option<i64>, now_ms: i64, s: &Series) -> bool {
        let span = (s.len() as i64).saturating_mul(s.step_ms);
        if span < self.min_history_ms || s.finite_count() == 0 {
            return false;
        }
        match last_fit_ms {
            None => true,
            Some(t) => now_ms.saturating_sub(t) >= self.every_ms,
        }
    }

    /// The tail of `s` the policy fits on (at most `max_history_ms`).
    pub fn window(&self, s: &Series) -> Series {
        let max_len = if s.step_ms > 0 {
            (self.max_history_ms / s.step_ms).max(1) as usize
        } else {
            s.len()
        };
        let skip = s.len().saturating_sub(max_len);
        Series {
            start_ms: s.timestamp(skip),
            step_ms: s.step_ms,
            values: s.values[skip..].to_vec(),
        }
    }
}

/// One forecast point as stored by the live stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRow {
    /// Series name (metric + labels, as the caller names it).
    pub series: String,
    /// When the forecast was issued (epoch ms).
    pub issued_at_ms: i64,
    /// Target timestamp (epoch ms).
    pub target_ts_ms: i64,
    /// 10% quantile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90% quantile.
    pub p90: f64,
    /// Point forecast.
    pub mean: f64,
    /// Model as fitted (e.g. `auto(ets+linreg)`).
    pub model: String,
}

/// Fits `model_name` on the policy window of `history` and returns `policy.horizon` rows
/// issued at `issued_at_ms`, plus the fitted parameters.
///
/// Errors when the history is shorter than `policy.min_history_ms` or the model cannot fit.
pub fn forecast_rows(
    series: &str,
    history: &Series,
    model_name: &str,
    cfg: &ModelConfig,
    policy: &RefitPolicy,
    issued_at_ms: i64,
) -> Result<(Vec<ForecastRow>, serde_json::Value)> {
    let span = (history.len() as i64).saturating_mul(history.step_ms);
    if span < policy.min_history_ms {
        return Err(ForecastError::TooShort {
            what: format!(
                "live forecast of {series} (needs {} ms of history)",
                policy.min_history_ms
            ),
            needed: (policy.min_history_ms / history.step_ms.max(1)).max(1) as usize,
            got: history.len(),
        });
    }
    let window = policy.window(history);
    let (f, params) = forecast_series(model_name, cfg, &window, policy.horizon.max(1))?;
    let rows = (0..f.len())
        .map(|i| ForecastRow {
            series: series.to_string(),
            issued_at_ms,
            target_ts_ms: f.timestamp(i),
            p10: f.p10[i],
            p50: f.p50[i],
            p90: f.p90[i],
            mean: f.mean[i],
            model: f.model.clone(),
        })
        .collect();
    Ok((rows, params))
}

/// Arguments of a one-shot `scalecast forecast` over CSV files.
#[derive(Debug, Clone, clap::Args)]
pub struct ForecastArgs {
    /// CSV files, directories or globs (layout as for `scalecast backtest`).
    #[arg(required_unless_present = "config", value_name = "CSV")]
    pub inputs: Vec<String>,
    /// Instead of CSV files: run the `forecasts:` stage of this pipeline file once over
    /// the stored history of `--data-dir`, writing the `forecasts` table.
    #[arg(long, value_name = "PIPELINE", conflicts_with = "inputs")]
    pub config: Option<PathBuf>,
    /// Data directory for `--config`.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Model name.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Forecast horizon in steps.
    #[arg(long, default_value_t = 576)]
    pub horizon: usize,
    /// Season length in steps (default: detect; 0 = none).
    #[arg(long)]
    pub season: Option<usize>,
    /// Minimum history in hours.
    #[arg(long, default_value_t = 24.0)]
    pub min_history_hours: f64,
    /// Longest history used, in days.
    #[arg(long, default_value_t = 14.0)]
    pub max_history_days: f64,
    /// Timestamp column name.
    #[arg(long)]
    pub timestamp_column: Option<String>,
    /// Value column(s), comma separated, or `all`.
    #[arg(long)]
    pub value_column: Option<String>,
    /// Grid step in seconds (default: inferred; 300 without timestamps).
    #[arg(long)]
    pub step_seconds: Option<i64>,
    /// Write the rows to this CSV file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs [`ForecastArgs`]: one forecast per input series, issued now. Series that fail (too
/// short, ...) are reported on stderr and skipped; an error is returned only when no series
/// could be forecast or the output cannot be written.
pub fn run(args: &ForecastArgs) -> Result<Vec<ForecastRow>> {
    let policy = RefitPolicy {
        every_ms: RefitPolicy::default().every_ms,
        min_history_ms: (args.min_history_hours * 3_600_000.0).max(0.0) as i64,
        max_history_ms: (args.max_history_days * DAY_MS as f64).max(1.0) as i64,
        horizon: args.horizon,
    };
    let cfg = ModelConfig {
        season: args.season,
        ..ModelConfig::default()
    };
    let issued_at = chrono::Utc::now().timestamp_millis();
    let mut rows = Vec::new();
    let mut failures = 0usize;
    for f in expand_inputs(&args.inputs)? {
        let series = load_csv(
            &f,
            args.timestamp_column.as_deref(),
            args.value_column.as_deref(),
            args.step_seconds,
        )?;
        for (name, s) in series {
            match forecast_rows(&name, &s, &args.model, &cfg, &policy, issued_at) {
                Ok((mut r, _)) => rows.append(&mut r),
                Err(e) => {
                    failures += 1;
                    eprintln!("{name}: {e}");
                }
            }
        }
    }
    if rows.is_empty() {
        return Err(ForecastError::InvalidInput(format!(
            "no series could be forecast ({failures} failed)"
        )));
    }
    let mut text = String::from("series,issued_at,target_ts,p10,p50,p90,mean,model\n");
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| ms.to_string())
    };
    for r in &rows {
        text.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},\"{}\"\n",
            r.series.replace('"', "\"\""),
            iso(r.issued_at_ms),
            iso(r.target_ts_ms),
            r.p10,
            r.p50,
            r.p90,
            r.mean,
            r.model
        ));
    }
    match &args.out {
        Some(p) => std::fs::write(p, text).map_err(|e| ForecastError::io(p, e))?,
        None => print!("{text}"),
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_needs_a_day_and_waits_six_hours() {
        let p = RefitPolicy::default();
        let step = 300_000;
        let short = Series::new(0, step, vec![1.0; 100]).unwrap();
        assert!(!p.due(None, 0, &short));
        let day = Series::new(0, step, vec![1.0; 288]).unwrap();
        assert!(p.due(None, 0, &day));
        assert!(!p.due(Some(0), 5 * 3_600_000, &day));
        assert!(p.due(Some(0), 6 * 3_600_000, &day));
        let long = Series::new(0, step, vec![1.0; 288 * 20]).unwrap();
        let w = p.window(&long);
        assert_eq!(w.len(), 288 * 14);
        assert_eq!(w.next_ms(), long.next_ms());
    }

    #[test]
    fn rows_cover_the_horizon_from_the_next_step() {
        let step = 300_000;
        let vals: Vec<f64> = (0..600).map(|i| 10.0 + (i % 288) as f64 * 0.01).collect();
        let s = Series::new(1_000_000, step, vals).unwrap();
        let policy = RefitPolicy {
            horizon: 24,
            ..RefitPolicy::default()
        };
        let (rows, params) =
            forecast_rows("cpu", &s, "naive", &ModelConfig::default(), &policy, 42).unwrap();
        assert_eq!(rows.len(), 24);
        assert_eq!(rows[0].target_ts_ms, s.next_ms());
        assert_eq!(rows[23].target_ts_ms, s.next_ms() + 23 * step);
        assert!(
            rows.iter()
                .all(|r| r.p10 <= r.p50 && r.p50 <= r.p90 && r.issued_at_ms == 42)
        );
        assert!(params.is_object());
        let short = Series::new(0, step, vec![1.0; 10]).unwrap();
        assert!(forecast_rows("cpu", &short, "auto", &ModelConfig::default(), &policy, 0).is_err());
    }

    #[test]
    fn cli_run_writes_rows() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("cpu.csv");
        let mut text = String::from("timestamp,value\n");
        for i in 0..600 {
            text.push_str(&format!("{},{}\n", 1_400_000_000 + i * 300, 10 + i % 5));
        }
        std::fs::write(&input, text).unwrap();
        let out = dir.path().join("f.csv");
        let args = ForecastArgs {
            config: None,
            data_dir: PathBuf::from("data"),
            inputs: vec![input.display().to_string()],
            model: "ets".into(),
            horizon: 6,
            season: None,
            min_history_hours: 24.0,
            max_history_days: 14.0,
            timestamp_column: None,
            value_column: None,
            step_seconds: None,
            out: Some(out.clone()),
        };
        let rows = run(&args).unwrap();
        assert_eq!(rows.len(), 6);
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written.lines().count(), 7);
        assert!(written.lines().nth(1).unwrap().starts_with("\"cpu\","));
        let mut bad = args.clone();
        bad.min_history_hours = 1000.0;
        assert!(run(&bad).is_err());
    }
}
