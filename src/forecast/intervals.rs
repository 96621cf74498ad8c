//! Prediction intervals from empirical (conformal) residual quantiles per horizon.
//!
//! [`Calibrated`] turns any [`PointModel`] into a full [`Model`]: after fitting it replays the
//! training data through the model from a short warm-up on, issuing an `H`-step forecast at
//! every origin and recording the signed error `y[t+h] - ŷ_t(h)` for each horizon `h = 1..=H`
//! (`H` = [`ModelConfig::horizon`]). The last [`ModelConfig::residual_window`] errors per
//! horizon form an empirical distribution; `p10/p50/p90` of a forecast are the point forecast
//! plus the 10/50/90% quantiles of that distribution (split-conformal style, with the
//! calibration set rolling forward). Each [`Model::update`] adds the new errors, so the bands
//! adapt online without refitting.
//!
//! Fallbacks (documented, never a panic):
//! * when the replay leaves fewer than [`MIN_RESIDUALS`] 1-step errors (training data barely
//!   longer than the model's warm-up), the 1-step window is seeded with the first differences
//!   of the training data (the naive forecast's errors);
//! * a horizon with fewer than [`MIN_RESIDUALS`] errors borrows the 1-step errors scaled by
//!   `sqrt(h)`; with no error at all (a single training point) the band has zero width;
//! * horizons beyond `H` use the `H`-step quantiles scaled by `sqrt(h / H)`;
//! * when every training value is `>= 0` (CPU, bytes, counts) all outputs are clamped at 0.

use std::collections::VecDeque;

use crate::forecast::error::{ForecastError, Result};
use crate::forecast::series::{Series, fill_gaps};
use crate::forecast::{Forecast, Model, ModelConfig, PointModel};

/// Minimum number of residuals a horizon needs before its own quantiles are used.
pub const MIN_RESIDUALS: usize = 8;

/// A rolling window of residuals kept both in arrival order and sorted, so quantiles are O(1).
#[derive(Debug, Clone, Default)]
pub struct ResidualWindow {
    cap: usize,
    fifo: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl ResidualWindow {
    /// An empty window holding at most `cap` residuals (at least 1).
    pub fn new(cap: usize) -> Self {
        ResidualWindow {
            cap: cap.max(1),
            fifo: VecDeque::new(),
            sorted: Vec::new(),
        }
    }

    /// Adds a residual, evicting the oldest when full. Non-finite values are ignored.
    pub fn push(&mut self, r: f64) {
        if !r.is_finite() {
            return;
        }
        if self.fifo.len() == self.cap
            && let Some(old) = self.fifo.pop_front()
        {
            let pos = self.sorted.partition_point(|v| *v < old);
            if pos < self.sorted.len() {
                self.sorted.remove(pos);
            }
        }
        self.fifo.push_back(r);
        let pos = self.sorted.partition_point(|v| *v < r);
        self.sorted.insert(pos, r);
    }

    /// Number of residuals held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when no residual is held.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Empirical quantile (linear interpolation between order statistics), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_sorted(&self.sorted, q)
    }
}

/// Quantile `q` in `[0, 1]` of an ascending slice (type-7 interpolation); `None` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Wraps a [`PointModel`] with conformal residual-quantile intervals; implements [`Model`].
pub struct Calibrated<P: PointModel> {
    inner: P,
    horizon: usize,
    window: usize,
    residuals: Vec<ResidualWindow>,
    /// Forecast vectors issued at the last `horizon` origins, most recent first.
    pending: VecDeque<Vec<f64>>,
    next_ms: i64,
    step_ms: i64,
    non_negative: bool,
    fitted: bool,
}

impl<P: PointModel> Calibrated<P> {
    /// Wraps `inner`, using `cfg.horizon` and `cfg.residual_window`.
    pub fn new(inner: P, cfg: &ModelConfig) -> Self {
        let horizon = cfg.horizon.max(1);
        Calibrated {
            inner,
            horizon,
            window: cfg.residual_window.max(1),
            residuals: Vec::new(),
            pending: VecDeque::new(),
            next_ms: 0,
            step_ms: 1,
            non_negative: false,
            fitted: false,
        }
    }

    /// The wrapped point model.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Number of residuals currently held for horizon `h` (1-based).
    pub fn residual_count(&self, h: usize) -> usize {
        self.residuals.get(h.wrapping_sub(1)).map_or(0, |w| w.len())
    }

    fn observe(&mut self, y: f64) {
        if y.is_finite() {
            for (k, f) in self.pending.iter().enumerate() {
                if let (Some(pred), Some(win)) = (f.get(k), self.residuals.get_mut(k)) {
                    win.push(y - pred);
                }
            }
        }
    }

    fn issue(&mut self) {
        let f = self.inner.point(self.horizon);
        self.pending.push_front(f);
        self.pending.truncate(self.horizon);
    }

    /// Quantile offsets (q10, q50, q90) for horizon `h` (1-based), with the documented
    /// fallbacks.
    fn offsets(&self, h: usize) -> (f64, f64, f64) {
        let hh = h.min(self.horizon);
        let scale_beyond = if h > self.horizon {
            (h as f64 / self.horizon as f64).sqrt()
        } else {
            1.0
        };
        let pick = |w: &ResidualWindow, s: f64| {
            (
                w.quantile(0.1).unwrap_or(0.0) * s,
                w.quantile(0.5).unwrap_or(0.0) * s,
                w.quantile(0.9).unwrap_or(0.0) * s,
            )
        };
        match self.residuals.get(hh - 1) {
            Some(w) if w.len() >= MIN_RESIDUALS => pick(w, scale_beyond),
            _ => match self.residuals.first() {
                Some(w1) if !w1.is_empty() => pick(w1, (h as f64).sqrt()),
                _ => (0.0, 0.0, 0.0),
            },
        }
    }
}

impl<P: PointModel> Model for Calibrated<P> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn fit(&mut self, s: &Series) -> Result<()> {
        let name = self.inner.name();
        s.check(&name, self.inner.min_points())?;
        let y = fill_gaps(&s.values)?;
        self.inner.fit_params(&y, s.start_ms, s.step_ms)?;
        // Replay the training data for calibration errors.
        let warm = self.inner.warmup().clamp(1, y.len());
        self.inner.reset(&y[..warm])?;
        self.residuals = (0..self.horizon)
            .map(|_| ResidualWindow::new(self.window))
            .collect();
        self.pending.clear();
        self.issue();
        for (&raw, &filled) in s.values[warm..].iter().zip(&y[warm..]) {
            self.observe(raw);
            self.inner.update(filled);
            self.issue();
        }
        if self
            .residuals
            .first()
            .is_some_and(|w| w.len() < MIN_RESIDUALS)
            && let Some(w) = self.residuals.first_mut()
        {
            for pair in s.values.windows(2) {
                w.push(pair[1] - pair[0]);
            }
        }
        self.non_negative = y.iter().all(|v| *v >= 0.0);
        self.next_ms = s.next_ms();
        self.step_ms = s.step_ms;
        self.fitted = true;
        Ok(())
    }

    fn update(&mut self, y: f64) {
        if !self.fitted {
            return;
        }
        self.observe(y);
        self.inner.update(y);
        self.issue();
        self.next_ms = self.next_ms.saturating_add(self.step_ms);
    }

    fn predict(&self, h: usize) -> Result<Forecast> {
        if !self.fitted {
            return Err(ForecastError::NotFitted(self.inner.name()));
        }
        if h == 0 {
            return Err(ForecastError::InvalidInput("horizon must be >= 1".into()));
        }
        let point = match self.pending.front() {
            Some(f) if f.len() >= h => f[..h].to_vec(),
            _ => self.inner.point(h),
        };
        let mut mean = Vec::with_capacity(h);
        let mut p10 = Vec::with_capacity(h);
        let mut p50 = Vec::with_capacity(h);
        let mut p90 = Vec::with_capacity(h);
        let clamp = |v: f64| {
            if self.non_negative { v.max(0.0) } else { v }
        };
        for (j, m) in point.iter().enumerate() {
            let (q10, q50, q90) = self.offsets(j + 1);
            mean.push(clamp(*m));
            p10.push(clamp(m + q10));
            p50.push(clamp(m + q50));
            p90.push(clamp(m + q90));
        }
        Ok(Forecast {
            start_ms: self.next_ms,
            step_ms: self.step_ms,
            mean,
            p10,
            p50,
            p90,
            model: self.inner.name(),
        })
    }

    fn params(&self) -> serde_json::Value {
        let mut q = Vec::new();
        for h in 1..=self.horizon.min(self.residuals.len()) {
            let (a, b, c) = self.offsets(h);
            q.push(serde_json::json!({"h": h, "q10": a, "q50": b, "q90": c}));
        }
        serde_json::json!({
            "model": self.inner.name(),
            "params": self.inner.params(),
            "intervals": {
                "method": "empirical residual quantiles per horizon (rolling conformal)",
                "horizon": self.horizon,
                "window": self.window,
                "non_negative_clamp": self.non_negative,
                "offsets": q,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::ModelConfig;

    #[test]
    fn window_quantiles_and_eviction() {
        let mut w = ResidualWindow::new(5);
        for v in [5.0, 1.0, 3.0, 2.0, 4.0] {
            w.push(v);
        }
        assert_eq!(w.quantile(0.0), Some(1.0));
        assert_eq!(w.quantile(0.5), Some(3.0));
        assert_eq!(w.quantile(1.0), Some(5.0));
        assert_eq!(w.quantile(0.25), Some(2.0));
        // Evicts 5.0 (the oldest).
        w.push(0.0);
        assert_eq!(w.len(), 5);
        assert_eq!(w.quantile(1.0), Some(4.0));
        assert_eq!(w.quantile(0.0), Some(0.0));
        w.push(f64::NAN);
        assert_eq!(w.len(), 5);
        assert_eq!(ResidualWindow::new(3).quantile(0.5), None);
    }

    #[test]
    fn bands_cover_about_80_percent_out_of_sample() {
        // AR(1) noise around a level: fit on 2,000 points, then count how often the next 3,000
        // observations fall inside [p10, p90] at h = 1 and h = 6.
        use crate::forecast::{Series, model_by_name};
        let e = crate::forecast::ets::tests::noise(5000, 21);
        let mut y = vec![50.0];
        for t in 1..5000 {
            let prev: f64 = y[t - 1];
            y.push(50.0 + 0.6 * (prev - 50.0) + e[t]);
        }
        let cfg = ModelConfig {
            season: Some(0),
            horizon: 6,
            ..ModelConfig::default()
        };
        for name in ["naive", "ets", "linreg", "auto"] {
            let mut m = model_by_name(name, &cfg).unwrap();
            m.fit(&Series::new(0, 300_000, y[..2000].to_vec()).unwrap())
                .unwrap();
            let (mut in1, mut in6, mut n6) = (0, 0, 0);
            for t in 2000..5000 {
                let f = m.predict(6).unwrap();
                if y[t] >= f.p10[0] && y[t] <= f.p90[0] {
                    in1 += 1;
                }
                if t + 5 < 5000 {
                    n6 += 1;
                    if y[t + 5] >= f.p10[5] && y[t + 5] <= f.p90[5] {
                        in6 += 1;
                    }
                }
                m.update(y[t]);
            }
            let c1 = in1 as f64 / 3000.0;
            let c6 = in6 as f64 / n6 as f64;
            assert!((0.75..=0.85).contains(&c1), "{name}: h1 coverage {c1}");
            assert!((0.75..=0.85).contains(&c6), "{name}: h6 coverage {c6}");
        }
    }

    #[test]
    fn short_training_seeds_bands_from_differences() {
        use crate::forecast::{Series, model_by_name};
        // Season 10 on 12 points: the replay has almost nothing to work with.
        let cfg = ModelConfig {
            season: Some(10),
            ..ModelConfig::default()
        };
        let vals = vec![1.0, 3.0, 2.0, 4.0, 3.0, 5.0, 4.0, 6.0, 5.0, 7.0, 6.0, 8.0];
        let mut m = model_by_name("seasonal_naive", &cfg).unwrap();
        m.fit(&Series::new(0, 1, vals).unwrap()).unwrap();
        let f = m.predict(1).unwrap();
        assert!(f.p90[0] > f.p10[0], "band must not collapse: {f:?}");
    }

    #[test]
    fn interpolated_quantile() {
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.1), Some(1.0));
        assert_eq!(quantile_sorted(&[7.0], 0.9), Some(7.0));
        assert_eq!(quantile_sorted(&[], 0.9), None);
    }
}
