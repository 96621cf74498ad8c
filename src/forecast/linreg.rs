//! Regularised linear regression (linfa ridge / elastic net) on lag and calendar features.
//!
//! A **direct, level-relative** regression: for every horizon `h = 1..=H`
//! ([`ModelConfig::horizon`]) a separate linear model predicts the change from the last
//! observation, `y[t+h] − y[t]`, from features of the origin `t` that are also relative to
//! `y[t]`. The forecast is `y[t] + ĉ_h + w_h · x_h(t)`. Being relative to the last value makes
//! the model follow level shifts at once (a regression on raw lags keeps pulling towards the
//! training mean), and the learnt weights express how much to shrink the last value towards
//! recent means/medians — what beats the naive forecast on noisy CloudWatch series.
//!
//! Features (standardised with the training mean and standard deviation):
//! * `y[t−k] − y[t]` for `k = 1..L` ([`ModelConfig::linreg_lags`]);
//! * rolling mean of the last 12, 48 and 288 values minus `y[t]`, rolling median of the last
//!   12 and 48 values minus `y[t]` (windows capped at a quarter of the training length);
//! * with a season `m` (configured or detected): `y[t+h−m] − y[t]` (beyond `m` steps ahead the
//!   model's own earlier forecast stands in);
//! * Fourier terms `sin/cos(2πk·phase)`, `k = 1..K` ([`ModelConfig::linreg_fourier`]) of the
//!   target's and of the origin's time of day (data ≥ 2 days, step divides a day) and of week
//!   (data ≥ 2 weeks).
//!
//! Fit: ridge (`L1 ratio = 0`, default) solved as least squares on the design augmented with
//! `sqrt(λ·rows)·I` using `linfa_linear::LinearRegression`; with an L1 ratio > 0,
//! `linfa_elasticnet::ElasticNet`. `λ` = [`ModelConfig::linreg_penalty`] on standardised
//! features and target. The fit runs on a copy of the training data clipped to its 0.1% /
//! 99.9% quantiles (one huge spike would otherwise own the squared loss), and at prediction
//! time every feature is clamped to its training range (no extrapolation, e.g. right after a
//! level shift), and the level-shift guard ([`crate::forecast::series::ShiftGuard`]) replaces
//! the history before a detected shift by the new level. Beyond `H` the `H`-step model is applied from pseudo-origins `t + (j − H)`
//! over the history extended with the forecasts already made. Needs `max(30, 3 × features)` rows after the longest lookback;
//! shorter series get [`ForecastError::TooShort`].

use std::collections::VecDeque;

use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::forecast::error::{ForecastError, Result};
use crate::forecast::series::{DAY_MS, SHIFT_RUN, Series, ShiftGuard, WEEK_MS, detect_period};
use crate::forecast::{ModelConfig, PointModel};

/// One horizon's fitted linear model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonFit {
    /// Training mean of each feature.
    pub mean: Vec<f64>,
    /// Training standard deviation of each feature (1 for constant ones).
    pub std: Vec<f64>,
    /// Coefficients on the standardised features (in target units).
    pub coef: Vec<f64>,
    /// Intercept (mean change over `h` steps).
    pub intercept: f64,
    /// Smallest training value of each raw feature; inputs are clamped to `[lo, hi]` so the
    /// model never extrapolates (e.g. right after a level shift).
    pub lo: Vec<f64>,
    /// Largest training value of each raw feature.
    pub hi: Vec<f64>,
}

impl HorizonFit {
    fn predict(&self, x: &[f64]) -> f64 {
        let mut v = self.intercept;
        for (i, xi) in x.iter().enumerate() {
            let xi = xi.clamp(self.lo[i], self.hi[i]);
            v += self.coef[i] * (xi - self.mean[i]) / self.std[i];
        }
        v
    }
}

/// The feature layout and fitted coefficients (the JSON format of the `linreg` model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinRegParams {
    /// Number of lag differences.
    pub lags: usize,
    /// Rolling-mean windows (steps).
    pub mean_windows: Vec<usize>,
    /// Rolling-median windows (steps).
    pub median_windows: Vec<usize>,
    /// Season length of the seasonal-lag feature, if any.
    pub season: Option<usize>,
    /// Fourier cycles: (period in ms, harmonics).
    pub fourier: Vec<(i64, usize)>,
    /// Feature names, in coefficient order.
    pub features: Vec<String>,
    /// `horizons[h-1]`: model of horizon `h`.
    pub horizons: Vec<HorizonFit>,
    /// Ridge / elastic-net penalty used.
    pub penalty: f64,
    /// L1 ratio used.
    pub l1_ratio: f64,
    /// Grid origin of the training series (for calendar phases).
    pub start_ms: i64,
    /// Grid step.
    pub step_ms: i64,
}

impl LinRegParams {
    fn lookback(&self) -> usize {
        let w = self
            .mean_windows
            .iter()
            .chain(&self.median_windows)
            .copied()
            .max()
            .unwrap_or(0);
        let s = self.season.unwrap_or(0);
        (self.lags + 1).max(w).max(s).max(1)
    }

    /// Origin features (shared by all horizons) from `hist` (most recent last = `y[t]`).
    fn base_features(&self, hist: &VecDeque<f64>, origin_ms: i64, out: &mut Vec<f64>) {
        out.clear();
        let n = hist.len();
        let last = hist.back().copied().unwrap_or(0.0);
        let at = |back: usize| -> f64 {
            // back = 0 is y[t].
            if back < n {
                hist[n - 1 - back]
            } else {
                hist.front().copied().unwrap_or(0.0)
            }
        };
        for k in 1..=self.lags {
            out.push(at(k) - last);
        }
        for &w in &self.mean_windows {
            let w = w.min(n).max(1);
            let s: f64 = hist.iter().rev().take(w).sum();
            out.push(s / w as f64 - last);
        }
        let mut tmp: Vec<f64> = Vec::new();
        for &w in &self.median_windows {
            let w = w.min(n).max(1);
            tmp.clear();
            tmp.extend(hist.iter().rev().take(w).copied());
            if tmp.is_empty() {
                out.push(0.0);
                continue;
            }
            tmp.sort_by(|a, b| a.total_cmp(b));
            let k = tmp.len();
            let med = if k % 2 == 1 {
                tmp[k / 2]
            } else {
                0.5 * (tmp[k / 2 - 1] + tmp[k / 2])
            };
            out.push(med - last);
        }
        push_fourier(&self.fourier, origin_ms, out);
    }

    /// Adds the horizon-specific features for target time `target_ms`, with `seasonal` the
    /// value one season before the target.
    fn horizon_features(
        &self,
        seasonal: Option<f64>,
        last: f64,
        target_ms: i64,
        out: &mut Vec<f64>,
    ) {
        if self.season.is_some() {
            out.push(seasonal.unwrap_or(last) - last);
        }
        push_fourier(&self.fourier, target_ms, out);
    }
}

fn push_fourier(fourier: &[(i64, usize)], ts_ms: i64, out: &mut Vec<f64>) {
    for &(period, k) in fourier {
        let phase = ts_ms.rem_euclid(period) as f64 / period as f64;
        for j in 1..=k {
            let a = 2.0 * std::f64::consts::PI * j as f64 * phase;
            out.push(a.sin());
            out.push(a.cos());
        }
    }
}

/// Direct level-relative ridge regression. `model_by_name("linreg", ..)`.
#[derive(Debug, Clone)]
pub struct LinReg {
    cfg: ModelConfig,
    params: Option<LinRegParams>,
    hist: VecDeque<f64>,
    /// Timestamp of the next (not yet observed) step.
    next_ms: i64,
    /// Level-shift guard on the one-step errors.
    guard: ShiftGuard,
}

impl LinReg {
    /// An unfitted model configured from `cfg`.
    pub fn new(cfg: &ModelConfig) -> Self {
        LinReg {
            cfg: cfg.clone(),
            params: None,
            hist: VecDeque::new(),
            next_ms: 0,
            guard: ShiftGuard::default(),
        }
    }

    /// The fitted parameters.
    pub fn fitted(&self) -> Option<&LinRegParams> {
        self.params.as_ref()
    }

    /// Signed amount by which the current rolling mean/median features exceed their 1-step
    /// training range (0 when inside).
    fn level_excess(&self) -> f64 {
        let (Some(p), Some(fit)) = (
            self.params.as_ref(),
            self.params.as_ref().and_then(|p| p.horizons.first()),
        ) else {
            return 0.0;
        };
        let mut buf = Vec::new();
        let origin_ms = self.next_ms.saturating_sub(p.step_ms);
        p.base_features(&self.hist, origin_ms, &mut buf);
        let first = p.lags;
        let last = p.lags + p.mean_windows.len() + p.median_windows.len();
        (first..last.min(buf.len()))
            .map(|i| {
                let x = buf[i];
                if x > fit.hi[i] {
                    x - fit.hi[i]
                } else if x < fit.lo[i] {
                    x - fit.lo[i]
                } else {
                    0.0
                }
            })
            .sum()
    }
}

/// Standardises the columns of `x` in place; returns (mean, std).
fn standardise(x: &mut Array2<f64>) -> (Vec<f64>, Vec<f64>) {
    let (rows, nf) = x.dim();
    let mut mean = vec![0.0; nf];
    let mut std = vec![1.0; nf];
    for c in 0..nf {
        let col = x.column(c);
        let mu = col.sum() / rows.max(1) as f64;
        let var = col.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / rows.max(1) as f64;
        mean[c] = mu;
        std[c] = if var > 1e-24 { var.sqrt() } else { 1.0 };
    }
    for mut row in x.rows_mut() {
        for c in 0..nf {
            row[c] = (row[c] - mean[c]) / std[c];
        }
    }
    (mean, std)
}

/// Fits `target ≈ c + w·x` on standardised `x` with ridge (augmented least squares, linfa-linear)
/// or elastic net (linfa-elasticnet). Returns (coef in target units, intercept).
fn fit_linear(
    mut x: Array2<f64>,
    target: Array1<f64>,
    penalty: f64,
    l1_ratio: f64,
) -> Result<HorizonFit> {
    let (rows, nf) = x.dim();
    let lo: Vec<f64> = (0..nf)
        .map(|c| x.column(c).iter().copied().fold(f64::INFINITY, f64::min))
        .collect();
    let hi: Vec<f64> = (0..nf)
        .map(|c| {
            x.column(c)
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let (mean, std) = standardise(&mut x);
    let y_mean = target.sum() / rows.max(1) as f64;
    let y_var = target.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / rows.max(1) as f64;
    if y_var <= 1e-24 || nf == 0 {
        return Ok(HorizonFit {
            mean,
            std,
            coef: vec![0.0; nf],
            intercept: y_mean,
            lo,
            hi,
        });
    }
    let y_sd = y_var.sqrt();
    let scaled = target.mapv(|v| (v - y_mean) / y_sd);
    let coef_std: Vec<f64> = if l1_ratio > 0.0 {
        let ds = Dataset::new(x, scaled);
        let model = ElasticNet::params()
            .penalty(penalty)
            .l1_ratio(l1_ratio)
            .with_intercept(false)
            .max_iterations(2000)
            .tolerance(1e-6)
            .fit(&ds)
            .map_err(|e| ForecastError::fit("linreg", e.to_string()))?;
        model.hyperplane().to_vec()
    } else {
        // Ridge: minimise |Xw - y|² + λ·rows·|w|² as least squares on [X; sqrt(λ·rows)·I].
        let ridge = (penalty.max(0.0) * rows as f64).sqrt().max(1e-8);
        let mut xa = Array2::<f64>::zeros((rows + nf, nf));
        xa.slice_mut(ndarray::s![..rows, ..]).assign(&x);
        for c in 0..nf {
            xa[[rows + c, c]] = ridge;
        }
        let mut ya = Array1::<f64>::zeros(rows + nf);
        ya.slice_mut(ndarray::s![..rows]).assign(&scaled);
        let ds = Dataset::new(xa, ya);
        let model = LinearRegression::new()
            .with_intercept(false)
            .fit(&ds)
            .map_err(|e| ForecastError::fit("linreg", e.to_string()))?;
        model.params().to_vec()
    };
    let coef: Vec<f64> = coef_std.iter().map(|c| c * y_sd).collect();
    if coef.iter().any(|c| !c.is_finite()) {
        return Err(ForecastError::fit("linreg", "non-finite coefficients"));
    }
    Ok(HorizonFit {
        mean,
        std,
        coef,
        intercept: y_mean,
        lo,
        hi,
    })
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
        if n < self.min_points() {
            return Err(ForecastError::TooShort {
                what: "linreg".into(),
                needed: self.min_points(),
                got: n,
            });
        }
        if y.iter().any(|v| !v.is_finite()) {
            return Err(ForecastError::InvalidInput(
                "linreg: fit needs gap-free data".into(),
            ));
        }
        // Robust fitting copy: clip the extreme 0.1% tails (a single 1000x spike would
        // otherwise dominate the squared loss); forecasting uses the real data.
        let mut sorted = y.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        let (clip_lo, clip_hi) = (q(0.001), q(0.999));
        let yc: Vec<f64> = y.iter().map(|v| v.clamp(clip_lo, clip_hi)).collect();
        let y_raw = y;
        let y = &yc[..];
        let hmax = self.cfg.horizon.max(1);
        let cap = (n / 4).max(2);
        let lags = self.cfg.linreg_lags.min(cap);
        let windows = |ws: &[usize]| -> Vec<usize> {
            let mut v: Vec<usize> = ws
                .iter()
                .map(|w| (*w).min(cap))
                .filter(|w| *w >= 3)
                .collect();
            v.dedup();
            v
        };
        let mean_windows = windows(&[12, 48, 288]);
        let median_windows = windows(&[12, 48]);
        let season = match self.cfg.season {
            Some(p) if p >= 2 => Some(p),
            Some(_) => None,
            None => Series::new(start_ms, step_ms, y.to_vec())
                .ok()
                .and_then(|s| detect_period(&s, self.cfg.season_threshold)),
        }
        .filter(|m| *m < n / 3);
        let span_ms = (n as i64).saturating_mul(step_ms);
        let mut fourier = Vec::new();
        if self.cfg.linreg_fourier > 0 {
            for period in [DAY_MS, WEEK_MS] {
                if step_ms > 0
                    && period % step_ms == 0
                    && period / step_ms >= 4
                    && span_ms >= 2 * period
                {
                    fourier.push((period, self.cfg.linreg_fourier));
                }
            }
        }
        let mut p = LinRegParams {
            lags,
            mean_windows,
            median_windows,
            season,
            fourier,
            features: Vec::new(),
            horizons: Vec::new(),
            penalty: self.cfg.linreg_penalty,
            l1_ratio: self.cfg.linreg_l1_ratio,
            start_ms,
            step_ms,
        };
        let mut names: Vec<String> = (1..=p.lags).map(|k| format!("lag{k}-last")).collect();
        names.extend(p.mean_windows.iter().map(|w| format!("mean{w}-last")));
        names.extend(p.median_windows.iter().map(|w| format!("median{w}-last")));
        let fourier_names = |at: &str| -> Vec<String> {
            let mut v = Vec::new();
            for (period, k) in &p.fourier {
                let label = if *period == DAY_MS { "day" } else { "week" };
                for j in 1..=*k {
                    v.push(format!("sin_{label}_{j}@{at}"));
                    v.push(format!("cos_{label}_{j}@{at}"));
                }
            }
            v
        };
        names.extend(fourier_names("origin"));
        if let Some(m) = p.season {
            names.push(format!("season_lag{m}-last"));
        }
        names.extend(fourier_names("target"));
        let nf = names.len();
        let lb = p.lookback();
        // Origins t = lb-1 .. n-1-h.
        let rows_max = n.saturating_sub(lb);
        let needed = (3 * nf).max(30);
        if rows_max < needed + hmax {
            return Err(ForecastError::TooShort {
                what: format!("linreg ({nf} features, lookback {lb}, horizon {hmax})"),
                needed: lb + needed + hmax,
                got: n,
            });
        }
        let ts = |i: usize| start_ms.saturating_add((i as i64).saturating_mul(step_ms));
        // Base features for every origin.
        let mut base: Vec<Vec<f64>> = Vec::with_capacity(n - lb + 1);
        let mut hist: VecDeque<f64> = y[..lb - 1].iter().copied().collect();
        let mut buf = Vec::new();
        for (t, &v) in y.iter().enumerate().skip(lb - 1) {
            hist.push_back(v);
            if hist.len() > lb {
                hist.pop_front();
            }
            p.base_features(&hist, ts(t), &mut buf);
            base.push(buf.clone());
        }
        for h in 1..=hmax {
            let rows = n - (lb - 1) - h;
            let mut x = Array2::<f64>::zeros((rows, nf));
            let mut target = Array1::<f64>::zeros(rows);
            for r in 0..rows {
                let t = lb - 1 + r;
                let last = y[t];
                buf.clear();
                buf.extend_from_slice(&base[r]);
                let seasonal = p.season.map(|m| {
                    let idx = t + h;
                    if idx >= m { y[idx - m] } else { last }
                });
                p.horizon_features(seasonal, last, ts(t + h), &mut buf);
                for (c, v) in buf.iter().enumerate() {
                    x[[r, c]] = *v;
                }
                target[r] = y[t + h] - last;
            }
            p.horizons
                .push(fit_linear(x, target, p.penalty, p.l1_ratio)?);
        }
        p.features = names;
        self.params = Some(p);
        // Scale 0: any excess of the level features over their training range counts.
        self.guard = ShiftGuard::new(0.0);
        self.reset(y_raw)
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
        self.guard.clear();
        Ok(())
    }

    fn update(&mut self, y: f64) {
        let Some(p) = self.params.as_ref() else {
            return;
        };
        let v = if y.is_finite() {
            y
        } else {
            self.point(1).first().copied().unwrap_or(f64::NAN)
        };
        let v = if v.is_finite() {
            v
        } else {
            self.hist.back().copied().unwrap_or(0.0)
        };
        self.hist.push_back(v);
        if self.hist.len() > p.lookback() {
            self.hist.pop_front();
        }
        // Level-shift guard: the rolling mean/median features (relative to the last value)
        // outside their training range, in the same direction, SHIFT_RUN steps in a row.
        let shifted = y.is_finite() && {
            let excess = self.level_excess();
            self.guard.observe(excess)
        };
        if shifted {
            // Level shift: forget the old level. The history before the last SHIFT_RUN
            // observations is replaced by their mean, so lags, means and medians describe the
            // new level only.
            let k = (SHIFT_RUN as usize).min(self.hist.len());
            let n = self.hist.len();
            let level = self.hist.iter().skip(n - k).sum::<f64>() / k.max(1) as f64;
            for v in self.hist.iter_mut().take(n - k) {
                *v = level;
            }
        }
        self.next_ms = self.next_ms.saturating_add(p.step_ms);
    }

    fn point(&self, h: usize) -> Vec<f64> {
        let Some(p) = self.params.as_ref() else {
            return vec![f64::NAN; h];
        };
        let Some(&last) = self.hist.back() else {
            return vec![f64::NAN; h];
        };
        let origin_ms = self.next_ms.saturating_sub(p.step_ms);
        let mut base = Vec::new();
        p.base_features(&self.hist, origin_ms, &mut base);
        let nb = base.len();
        let mut out: Vec<f64> = Vec::with_capacity(h);
        let mut buf = base.clone();
        let nh = self.hist.len();
        let hm = p.horizons.len();
        // Value at step `rel` relative to the origin (0 = y[t], < 0 history, > 0 forecasts).
        let value_at = |rel: i64, out: &[f64]| -> f64 {
            if rel <= 0 {
                let back = (-rel) as usize;
                if back < nh {
                    self.hist[nh - 1 - back]
                } else {
                    self.hist[0]
                }
            } else {
                out.get(rel as usize - 1).copied().unwrap_or(last)
            }
        };
        // Direct part: steps 1..=H from the real origin.
        for j in 1..=h.min(hm) {
            let model = &p.horizons[j - 1];
            buf.truncate(nb);
            let seasonal = p.season.map(|m| value_at(j as i64 - m as i64, &out));
            let target_ms = origin_ms.saturating_add((j as i64).saturating_mul(p.step_ms));
            p.horizon_features(seasonal, last, target_ms, &mut buf);
            out.push(last + model.predict(&buf));
        }
        // Beyond H: the H-step model from pseudo-origins t + (j − H), history extended with
        // the forecasts already made.
        if h > hm {
            let lb = p.lookback();
            let model = &p.horizons[hm - 1];
            let mut ext = self.hist.clone();
            let mut added = 0usize;
            for j in hm + 1..=h {
                let o = j - hm;
                while added < o {
                    ext.push_back(out[added]);
                    if ext.len() > lb {
                        ext.pop_front();
                    }
                    added += 1;
                }
                let o_last = ext.back().copied().unwrap_or(last);
                let o_ms = origin_ms.saturating_add((o as i64).saturating_mul(p.step_ms));
                p.base_features(&ext, o_ms, &mut buf);
                let seasonal = p.season.map(|m| value_at(j as i64 - m as i64, &out));
                let target_ms = origin_ms.saturating_add((j as i64).saturating_mul(p.step_ms));
                p.horizon_features(seasonal, o_last, target_ms, &mut buf);
                out.push(o_last + model.predict(&buf));
            }
        }
        out
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "fit": self.params,
            "shift_guard": "rolling mean/median features outside their training range",
            "level_resets_since_fit": self.guard.resets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::model_by_name;

    #[test]
    fn recovers_ar1_mean_reversion() {
        // y[t] = 10 + 0.7 (y[t-1] - 10) + e: E[y[t+h] | y[t]] = 10 + 0.7^h (y[t] - 10).
        // Fit on 4000 points, then check the forecasts on 1000 new points against that truth.
        let e = crate::forecast::ets::tests::noise(5000, 5);
        let mut y = vec![10.0];
        for t in 1..5000 {
            let prev: f64 = y[t - 1];
            y.push(10.0 + 0.7 * (prev - 10.0) + e[t]);
        }
        let cfg = ModelConfig {
            season: Some(0),
            linreg_lags: 1,
            linreg_fourier: 0,
            linreg_penalty: 0.0,
            horizon: 3,
            ..ModelConfig::default()
        };
        let mut m = LinReg::new(&cfg);
        m.fit_params(&y[..4000], 0, 1).unwrap();
        let mut dev = [0.0f64; 3];
        for t in 4000..4999 {
            let f = m.point(3);
            for (h, d) in dev.iter_mut().enumerate() {
                *d += (f[h] - (10.0 + 0.7f64.powi(h as i32 + 1) * (y[t - 1] - 10.0))).abs();
            }
            m.update(y[t]);
        }
        for (h, d) in dev.iter().enumerate() {
            let mad = d / 999.0;
            // Noise sd is 1; the forecasts must sit close to the true conditional mean.
            assert!(mad < 0.12, "h{}: mean |forecast - truth| = {mad}", h + 1);
        }
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
        model
            .fit(&Series::new(0, step, y.clone()).unwrap())
            .unwrap();
        let f = model.predict(24).unwrap();
        for (j, v) in f.mean.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * (y.len() + j) as f64 / m as f64;
            let truth = 50.0 + 10.0 * ph.sin() + 4.0 * (2.0 * ph).cos();
            assert!((v - truth).abs() < 0.1, "step {j}: {v} vs {truth}");
        }
    }

    #[test]
    fn follows_a_level_shift() {
        // Noise around 30, then the level drops to 0: forecasts must follow within a few steps.
        let e = crate::forecast::ets::tests::noise(3000, 8);
        let y: Vec<f64> = (0..3000).map(|t| 30.0 + e[t]).collect();
        let cfg = ModelConfig {
            season: Some(0),
            ..ModelConfig::default()
        };
        let mut m = LinReg::new(&cfg);
        m.fit_params(&y, 0, 300_000).unwrap();
        for _ in 0..SHIFT_RUN {
            m.update(0.0);
        }
        // The level-shift guard fired after SHIFT_RUN steps: the old level is forgotten.
        let f = m.point(12);
        assert!(f.iter().all(|v| v.abs() < 1.0), "{f:?}");
        assert_eq!(m.params()["level_resets_since_fit"], 1);
    }

    #[test]
    fn short_and_constant_input() {
        let mut model = model_by_name("linreg", &ModelConfig::default()).unwrap();
        assert!(matches!(
            model.fit(&Series::new(0, 1, vec![1.0; 10]).unwrap()),
            Err(ForecastError::TooShort { .. })
        ));
        model
            .fit(&Series::new(0, 1, vec![4.0; 500]).unwrap())
            .unwrap();
        let f = model.predict(3).unwrap();
        assert!(
            f.mean.iter().all(|v| (v - 4.0).abs() < 1e-9),
            "{:?}",
            f.mean
        );
        assert!(
            model
                .fit(&Series::new(0, 1, vec![f64::NAN; 500]).unwrap())
                .is_err()
        );
    }
}
