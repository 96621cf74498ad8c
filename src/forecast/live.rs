//! Building blocks of the live forecast stage (issue 7 item 5).
//!
//! The pipeline stage owns scheduling, the SQL read of the history and the Parquet write; this
//! file provides the pure parts so that stage stays thin:
//! * [`RefitPolicy`] — when to refit (AWS predictive scaling style: every 6 h, only with at
//!   least 24 h of history, using at most 14 days);
//! * [`forecast_rows`] — fit a model on one series' history and turn the forecast into rows
//!   `(series, issued_at, target_ts, p10, p50, p90, mean, model)` ready for a table.

use serde::{Deserialize, Serialize};

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
}
