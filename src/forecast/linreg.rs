//! Regularised linear regression (linfa elastic net / ridge) on lag and calendar features.
//!
//! One-step model `y[t] = c + w · x[t]`, iterated recursively for longer horizons (each
//! prediction is fed back as the newest lag). Features of target step `t` (all standardised
//! with the training mean and standard deviation before the fit):
//!
//! * lags `y[t-1] … y[t-L]` ([`ModelConfig::linreg_lags`], default 12);
//! * rolling means of the last 48 and 288 values (4 h and 1 day at 5 minutes; shortened to a
//!   quarter of the training length on short series) — they let the model shrink the last
//!   value towards a local level, which is what wins on noisy series;
//! * with a season `m` (configured or detected): the mean of `y[t-m-1], y[t-m], y[t-m+1]`;
//! * Fourier terms `sin/cos(2πk·phase)`, `k = 1..K` ([`ModelConfig::linreg_fourier`]), of the
//!   target's time of day (when the training data covers ≥ 2 days and the step divides a day)
//!   and of its time of week (≥ 2 weeks of data).
//!
//! The fit is `linfa_elasticnet::ElasticNet` with penalty [`ModelConfig::linreg_penalty`] and
//! L1 ratio [`ModelConfig::linreg_l1_ratio`] (0 = ridge, the default). Needs at least
//! `max(30, 3 × features)` training rows after the longest lookback; shorter series get a
//! [`ForecastError::TooShort`] error.

use std::collections::VecDeque;

use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::forecast::error::{ForecastError, Result};
use crate::forecast::series::{DAY_MS, Series, WEEK_MS, detect_period};
use crate::forecast::{ModelConfig, PointModel};

/// The feature layout and fitted coefficients (the JSON format of the `linreg` model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinRegParams {
    /// Number of lags.
    pub lags: usize,
    /// Rolling-mean windows (steps).
    pub mean_windows: Vec<usize>,
    /// Season length of the seasonal-lag feature, if any.
    pub season: Option<usize>,
    /// Fourier cycles: (period in ms, harmonics).
    pub fourier: Vec<(i64, usize)>,
    /// Feature names, in coefficient order.
    pub features: Vec<String>,
    /// Training mean of each feature.
    pub mean: Vec<f64>,
    /// Training standard deviation of each feature (1 for constant ones).
    pub std: Vec<f64>,
    /// Coefficients on the standardised features.
    pub coef: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
    /// Elastic-net penalty used.
    pub penalty: f64,
    /// L1 ratio used.
    pub l1_ratio: f64,
    /// Grid origin and step of the training series (for calendar phases).
    pub start_ms: i64,
    /// Grid step.
    pub step_ms: i64,
}

impl LinRegParams {
    fn lookback(&self) -> usize {
        let w = self.mean_windows.iter().copied().max().unwrap_or(0);
        let s = self.season.map_or(0, |m| m + 1);
        self.lags.max(w).max(s).max(1)
    }

    /// Raw features for the target following `hist` (most recent last) at time `ts_ms`.
    fn features(&self, hist: &VecDeque<f64>, ts_ms: i64, out: &mut Vec<f64>) {
        out.clear();
        let n = hist.len();
        let at = |back: usize| -> f64 {
            // back = 1 is the newest value.
            if back <= n { hist[n - back] } else { hist.front().copied().unwrap_or(0.0) }
        };
        for k in 1..=self.lags {
            out.push(at(k));
        }
        for &w in &self.mean_windows {
            let w = w.min(n).max(1);
            let s: f64 = hist.iter().rev().take(w).sum();
            out.push(s / w as f64);
        }
        if let Some(m) = self.season {
            out.push((at(m + 1) + at(m) + at(m.saturating_sub(1).max(1))) / 3.0);
        }
        for &(period, k) in &self.fourier {
            let phase = (ts_ms.rem_euclid(period)) as f64 / period as f64;
            for j in 1..=k {
                let a = 2.0 * std::f64::consts::PI * j as f64 * phase;
                out.push(a.sin());
                out.push(a.cos());
            }
        }
    }

    fn predict_one(&self, x: &[f64]) -> f64 {
        let mut v = self.intercept;
        for (i, xi) in x.iter().enumerate() {
            v += self.coef[i] * (xi - self.mean[i]) / self.std[i];
        }
        v
    }
}

/// Ridge / elastic-net autoregression with calendar terms. `model_by_name("linreg", ..)`.
#[derive(Debug, Clone)]
pub struct LinReg {
    cfg: ModelConfig,
    params: Option<LinRegParams>,
    hist: VecDeque<f64>,
    /// Timestamp of the next (not yet observed) step.
    next_ms: i64,
}

impl LinReg {
    /// An unfitted model configured from `cfg`.
    pub fn new(cfg: &ModelConfig) -> Self {
        LinReg {
            cfg: cfg.clone(),
            params: None,
            hist: VecDeque::new(),
            next_ms: 0,
        }
    }

    /// The fitted parameters.
    pub fn fitted(&self) -> Option<&LinRegParams> {
        self.params.as_ref()
    }
}

impl PointModel for LinReg {
    fn name(&self) -> String {
        "linreg".to_string()
    }

    fn min_points(&self) -> usize {
        40
    }

    fn warmup(&self) -> usize {
        self.params.as_ref().map_or(1, |p| p.lookback())
    }

    fn fit_params(&mut self, y: &[f64], start_ms: i64, step_ms: i64) -> Result<()> {
        let n = y.len();
        if y.iter().any(|v| !v.is_finite()) {
            return Err(ForecastError::InvalidInput(
                "linreg: fit needs gap-free data".into(),
            ));
        }
        let lags = self.cfg.linreg_lags.max(1).min(n / 4).max(1);
        let cap = (n / 4).max(2);
        let mut mean_windows: Vec<usize> = [48usize, 288]
            .iter()
            .map(|w| (*w).min(cap))
            .filter(|w| *w > lags)
            .collect();
        mean_windows.dedup();
        let season = match self.cfg.season {
            Some(p) if p >= 2 => Some(p),
            Some(_) => None,
            None => Series::new(start_ms, step_ms, y.to_vec())
                .ok()
                .and_then(|s| detect_period(&s, self.cfg.season_threshold)),
        }
        .filter(|m| *m + 1 < n / 3);
        let span_ms = (n as i64).saturating_mul(step_ms);
        let mut fourier = Vec::new();
        if self.cfg.linreg_fourier > 0 {
            for period in [DAY_MS, WEEK_MS] {
                if step_ms > 0 && period % step_ms == 0 && period / step_ms >= 4 && span_ms >= 2 * period {
                    fourier.push((period, self.cfg.linreg_fourier));
                }
            }
        }
        let mut p = LinRegParams {
            lags,
            mean_windows,
            season,
            fourier,
            features: Vec::new(),
            mean: Vec::new(),
            std: Vec::new(),
            coef: Vec::new(),
            intercept: 0.0,
            penalty: self.cfg.linreg_penalty,
            l1_ratio: self.cfg.linreg_l1_ratio,
            start_ms,
            step_ms,
        };
        let mut names: Vec<String> = (1..=p.lags).map(|k| format!("lag{k}")).collect();
        names.extend(p.mean_windows.iter().map(|w| format!("mean{w}")));
        if let Some(m) = p.season {
            names.push(format!("season_lag{m}"));
        }
        for (period, k) in &p.fourier {
            let label = if *period == DAY_MS { "day" } else { "week" };
            for j in 1..=*k {
                names.push(format!("sin_{label}_{j}"));
                names.push(format!("cos_{label}_{j}"));
            }
        }
        let nf = names.len();
        let lb = p.lookback();
        let rows = n.saturating_sub(lb);
        let needed = (3 * nf).max(30);
        if rows < needed {
            return Err(ForecastError::TooShort {
                what: format!("linreg ({nf} features, lookback {lb})"),
                needed: lb + needed,
                got: n,
            });
        }
        let mut x = Array2::<f64>::zeros((rows, nf));
        let mut target = Array1::<f64>::zeros(rows);
        let mut hist: VecDeque<f64> = y[..lb].iter().copied().collect();
        let mut buf = Vec::with_capacity(nf);
        for (r, t) in (lb..n).enumerate() {
            let ts = start_ms.saturating_add((t as i64).saturating_mul(step_ms));
            p.features(&hist, ts, &mut buf);
            for (c, v) in buf.iter().enumerate() {
                x[[r, c]] = *v;
            }
            target[r] = y[t];
            hist.push_back(y[t]);
            if hist.len() > lb {
                hist.pop_front();
            }
        }
        let mut mean = vec![0.0; nf];
        let mut std = vec![1.0; nf];
        for c in 0..nf {
            let col = x.column(c);
            let mu = col.sum() / rows as f64;
            let var = col.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / rows as f64;
            mean[c] = mu;
            std[c] = if var > 1e-24 { var.sqrt() } else { 1.0 };
        }
        for r in 0..rows {
            for c in 0..nf {
                x[[r, c]] = (x[[r, c]] - mean[c]) / std[c];
            }
        }
        let y_mean = target.sum() / rows as f64;
        let y_var = target.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / rows as f64;
        if y_var <= 1e-24 {
            // Constant target: the intercept alone is exact.
            p.features = names;
            p.mean = mean;
            p.std = std;
            p.coef = vec![0.0; nf];
            p.intercept = y_mean;
        } else {
            // Scale the target to unit variance so the penalty means the same on every series.
            let y_sd = y_var.sqrt();
            let scaled = target.mapv(|v| (v - y_mean) / y_sd);
            let ds = Dataset::new(x, scaled);
            let model = ElasticNet::params()
                .penalty(p.penalty)
                .l1_ratio(p.l1_ratio)
                .with_intercept(true)
                .max_iterations(2000)
                .tolerance(1e-6)
                .fit(&ds)
                .map_err(|e| ForecastError::fit("linreg", e.to_string()))?;
            p.coef = model.hyperplane().iter().map(|c| c * y_sd).collect();
            p.intercept = y_mean + model.intercept() * y_sd;
            p.features = names;
            p.mean = mean;
            p.std = std;
            if p.coef.iter().any(|c| !c.is_finite()) || !p.intercept.is_finite() {
                return Err(ForecastError::fit("linreg", "non-finite coefficients"));
            }
        }
        self.params = Some(p);
        self.reset(y)
    }

    fn reset(&mut self, y: &[f64]) -> Result<()> {
        let p = self
            .params
            .as_ref()
            .ok_or_else(|| ForecastError::NotFitted("linreg".into()))?;
        let lb = p.lookback();
        self.hist = y[y.len().saturating_sub(lb)..].iter().copied().collect();
        self.next_ms = p
            .start_ms
            .saturating_add((y.len() as i64).saturating_mul(p.step_ms));
        Ok(())
    }

    fn update(&mut self, y: f64) {
        let Some(p) = self.params.as_ref() else {
            return;
        };
        let v = if y.is_finite() {
            y
        } else {
            let mut buf = Vec::new();
            p.features(&self.hist, self.next_ms, &mut buf);
            p.predict_one(&buf)
        };
        self.hist.push_back(v);
        if self.hist.len() > p.lookback() {
            self.hist.pop_front();
        }
        self.next_ms = self.next_ms.saturating_add(p.step_ms);
    }

    fn point(&self, h: usize) -> Vec<f64> {
        let Some(p) = self.params.as_ref() else {
            return vec![f64::NAN; h];
        };
        let mut hist = self.hist.clone();
        let lb = p.lookback();
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(h);
        for j in 0..h {
            let ts = self
                .next_ms
                .saturating_add((j as i64).saturating_mul(p.step_ms));
            p.features(&hist, ts, &mut buf);
            let v = p.predict_one(&buf);
            out.push(v);
            hist.push_back(v);
            if hist.len() > lb {
                hist.pop_front();
            }
        }
        out
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::model_by_name;

    #[test]
    fn recovers_ar1_coefficient() {
        // y[t] = 10 + 0.7 (y[t-1] - 10) + e, hourly so no Fourier/season terms confuse it.
        let e = crate::forecast::ets::tests::noise(3000, 5);
        let mut y = vec![10.0];
        for t in 1..3000 {
            let prev: f64 = y[t - 1];
            y.push(10.0 + 0.7 * (prev - 10.0) + e[t]);
        }
        let cfg = ModelConfig {
            season: Some(0),
            linreg_lags: 1,
            linreg_fourier: 0,
            linreg_penalty: 0.0,
            ..ModelConfig::default()
        };
        let mut m = LinReg::new(&cfg);
        m.fit_params(&y, 0, 1).unwrap();
        let p = m.fitted().unwrap();
        // Effective lag-1 weight: standardised coefficient / std; rolling means absorb little.
        let lag1 = p.coef[0] / p.std[0];
        let total: f64 = p.coef.iter().zip(&p.std).map(|(c, s)| c / s).sum();
        assert!((lag1 - 0.7).abs() < 0.08, "lag1 {lag1}");
        assert!((total - 0.7).abs() < 0.05, "sum {total}");
    }

    #[test]
    fn pure_daily_season_forecast_is_near_exact() {
        let step = 300_000;
        let m = 288;
        let y: Vec<f64> = (0..m * 6)
            .map(|t| {
                let ph = 2.0 * std::f64::consts::PI * t as f64 / m as f64;
                50.0 + 10.0 * ph.sin() + 4.0 * (2.0 * ph).cos()
            })
            .collect();
        let cfg = ModelConfig {
            linreg_penalty: 0.0,
            ..ModelConfig::default()
        };
        let mut model = model_by_name("linreg", &cfg).unwrap();
        model.fit(&Series::new(0, step, y.clone()).unwrap()).unwrap();
        let f = model.predict(24).unwrap();
        for (j, v) in f.mean.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * (y.len() + j) as f64 / m as f64;
            let truth = 50.0 + 10.0 * ph.sin() + 4.0 * (2.0 * ph).cos();
            assert!((v - truth).abs() < 0.1, "step {j}: {v} vs {truth}");
        }
    }

    #[test]
    fn short_and_constant_input() {
        let mut model = model_by_name("linreg", &ModelConfig::default()).unwrap();
        assert!(matches!(
            model.fit(&Series::new(0, 1, vec![1.0; 10]).unwrap()),
            Err(ForecastError::TooShort { .. })
        ));
        model.fit(&Series::new(0, 1, vec![4.0; 500]).unwrap()).unwrap();
        let f = model.predict(3).unwrap();
        assert!(f.mean.iter().all(|v| (v - 4.0).abs() < 1e-9), "{:?}", f.mean);
    }
}
