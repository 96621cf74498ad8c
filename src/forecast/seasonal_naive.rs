//! Seasonal naive forecaster: every future step equals the value one season earlier.
//!
//! The season length comes from [`ModelConfig::season`] or is detected from the data (daily or
//! weekly, [`crate::forecast::series::detect_period`]).
//!
//! Documented fallback: when no season is configured or detected, or the training data is
//! shorter than one season, the model behaves as the naive (lag-1) forecaster and reports
//! `"season": null` in its parameters.

use std::collections::VecDeque;

use crate::forecast::error::Result;
use crate::forecast::series::{Series, detect_period};
use crate::forecast::{ModelConfig, PointModel};

/// Seasonal naive forecaster. Construct with [`SeasonalNaive::new`] or
/// `model_by_name("seasonal_naive", ..)`.
#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    configured: Option<usize>,
    threshold: f64,
    season: Option<usize>,
    /// The last `season` values (or the last value in fallback mode), oldest first.
    buf: VecDeque<f64>,
}

impl SeasonalNaive {
    /// An unfitted model using `cfg.season` (or detection).
    pub fn new(cfg: &ModelConfig) -> Self {
        SeasonalNaive {
            configured: cfg.season,
            threshold: cfg.season_threshold,
            season: None,
            buf: VecDeque::new(),
        }
    }

    /// The season length in use after fitting (`None` = naive fallback).
    pub fn season(&self) -> Option<usize> {
        self.season
    }

    fn lag(&self) -> usize {
        self.season.unwrap_or(1)
    }
}

impl PointModel for SeasonalNaive {
    fn name(&self) -> String {
        "seasonal_naive".to_string()
    }

    fn min_points(&self) -> usize {
        1
    }

    fn warmup(&self) -> usize {
        self.lag()
    }

    fn fit_params(&mut self, y: &[f64], start_ms: i64, step_ms: i64) -> Result<()> {
        let period = match self.configured {
            Some(p) if p >= 2 => Some(p),
            Some(_) => None,
            None => Series::new(start_ms, step_ms, y.to_vec())
                .ok()
                .and_then(|s| detect_period(&s, self.threshold)),
        };
        self.season = period.filter(|p| *p <= y.len());
        if period.is_some() && self.season.is_none() {
            tracing::warn!(
                season = period,
                n = y.len(),
                "seasonal_naive: series shorter than one season, falling back to naive"
            );
        }
        self.reset(y)
    }

    fn reset(&mut self, y: &[f64]) -> Result<()> {
        let lag = self.lag();
        self.buf = y[y.len().saturating_sub(lag)..].iter().copied().collect();
        // Shorter than a season (calibration warm-up): pad with the first value.
        let first = self.buf.front().copied().unwrap_or(f64::NAN);
        while self.buf.len() < lag {
            self.buf.push_front(first);
        }
        Ok(())
    }

    fn update(&mut self, y: f64) {
        let lag = self.lag();
        let v = if y.is_finite() {
            y
        } else {
            // Gap: repeat the value one season ago (the model's own forecast).
            self.buf.front().copied().unwrap_or(f64::NAN)
        };
        self.buf.push_back(v);
        while self.buf.len() > lag {
            self.buf.pop_front();
        }
    }

    fn point(&self, h: usize) -> Vec<f64> {
        let lag = self.buf.len();
        if lag == 0 {
            return vec![f64::NAN; h];
        }
        (0..h).map(|j| self.buf[j % lag]).collect()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "season": self.season })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::model_by_name;

    #[test]
    fn pure_season_is_forecast_exactly() {
        let cfg = ModelConfig {
            season: Some(4),
            ..ModelConfig::default()
        };
        let pattern = [1.0, 5.0, 2.0, 8.0];
        let vals: Vec<f64> = (0..20).map(|i| pattern[i % 4]).collect();
        let mut m = model_by_name("seasonal_naive", &cfg).unwrap();
        m.fit(&Series::new(0, 1, vals).unwrap()).unwrap();
        let f = m.predict(6).unwrap();
        assert_eq!(f.mean, vec![1.0, 5.0, 2.0, 8.0, 1.0, 5.0]);
        assert_eq!(f.p10, f.mean);
        m.update(1.0);
        assert_eq!(m.predict(2).unwrap().mean, vec![5.0, 2.0]);
        m.update(f64::NAN);
        assert_eq!(m.predict(2).unwrap().mean, vec![2.0, 8.0]);
    }

    #[test]
    fn detects_daily_season() {
        let step = 3_600_000; // hourly, season 24
        let vals: Vec<f64> = (0..24 * 5)
            .map(|i| ((i % 24) as f64 - 12.0).abs())
            .collect();
        let mut p = SeasonalNaive::new(&ModelConfig::default());
        p.fit_params(&vals, 0, step).unwrap();
        assert_eq!(p.season(), Some(24));
        assert_eq!(p.point(2), vec![12.0, 11.0]);
    }

    #[test]
    fn too_short_for_season_falls_back_to_naive() {
        let cfg = ModelConfig {
            season: Some(10),
            ..ModelConfig::default()
        };
        let mut p = SeasonalNaive::new(&cfg);
        p.fit_params(&[1.0, 2.0, 3.0], 0, 1).unwrap();
        assert_eq!(p.season(), None);
        assert_eq!(p.point(3), vec![3.0; 3]);
    }
}
