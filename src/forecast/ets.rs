//! Exponential smoothing (ETS / Holt-Winters) with fitted parameters and AICc model selection.
//!
//! Innovations state-space form with additive errors (Hyndman et al., *Forecasting with
//! Exponential Smoothing*, 2008). Variants: trend ∈ {N, A, Ad (damped)} × season ∈ {N, A, M}:
//!
//! | season | one-step forecast `ŷ` | level | trend | season |
//! |---|---|---|---|---|
//! | N | `l + φb` | `l + φb + αe` | `φb + βe` | – |
//! | A | `l + φb + s` | `l + φb + αe` | `φb + βe` | `s + γe` |
//! | M | `(l + φb)·s` | `l + φb + αe/s` | `φb + βe/s` | `s + γe/(l + φb)` |
//!
//! with `e = y - ŷ`, `φ = 1` for trend A, `b = 0` for trend N. The `h`-step forecast is
//! `l + (φ + … + φ^h)·b` combined with the seasonal index of the target step.
//!
//! Parameters `α, β, γ, φ` are fitted by minimising the sum of squared one-step errors
//! (equivalently maximising the Gaussian likelihood) with Nelder-Mead under the usual
//! constraints `0 < α < 1`, `0 < β < α`, `0 < γ < 1 − α`, `0.8 ≤ φ ≤ 0.98`. Initial states are
//! set heuristically (classical decomposition of the first up to three seasons), so long
//! seasons such as `m = 288` (one day at 5 minutes) stay cheap. Among the variants the model
//! with the lowest AICc = `n·ln(SSE/n) + 2k + 2k(k+1)/(n−k−1)` wins, where `k` counts the
//! smoothing parameters, the initial states and the error variance.
//!
//! Seasonal variants need a season (configured or detected) and at least two full seasons;
//! multiplicative ones need strictly positive data and [`ModelConfig::ets_multiplicative`].
//! Otherwise only the non-seasonal variants are tried (documented fallback).
//!
//! Why our own code rather than the `augurs` crates: no extra dependency outside the verified
//! set, initial states set heuristically instead of optimised (an optimiser over the 287
//! free seasonal states of `m = 288` is what makes classic AutoETS slow on 5-minute data),
//! and a filter state we can update one observation at a time with NaN gaps, which the
//! backtest protocol and the live stage need. See `docs/forecasting.md`.

use serde::{Deserialize, Serialize};

use crate::forecast::error::{ForecastError, Result};
use crate::forecast::series::{Series, ShiftGuard, detect_period};
use crate::forecast::{ModelConfig, PointModel};

/// Trend component of an ETS variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trend {
    /// No trend.
    None,
    /// Additive (linear) trend.
    Additive,
    /// Additive damped trend (`φ < 1`).
    Damped,
}

/// Seasonal component of an ETS variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Season {
    /// No season.
    None,
    /// Additive season.
    Additive,
    /// Multiplicative season.
    Multiplicative,
}

/// Fitted parameters of one ETS variant (the JSON format of the `ets` model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtsParams {
    /// Variant label, e.g. `ETS(A,Ad,N)`.
    pub label: String,
    /// Trend component.
    pub trend: Trend,
    /// Seasonal component.
    pub season: Season,
    /// Season length in steps (1 when non-seasonal).
    pub m: usize,
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing (0 without trend).
    pub beta: f64,
    /// Season smoothing (0 without season).
    pub gamma: f64,
    /// Damping (1 for an undamped or absent trend).
    pub phi: f64,
    /// Initial level.
    pub l0: f64,
    /// Initial trend.
    pub b0: f64,
    /// Initial seasonal indices for steps `0..m` (empty without season).
    pub s0: Vec<f64>,
    /// Sum of squared one-step errors on the training data.
    pub sse: f64,
    /// Number of training points.
    pub n: usize,
    /// AICc of the fit.
    pub aicc: f64,
}

/// Filter state: level, trend, seasonal indices (ring buffer, `pos` = index of the next step).
#[derive(Debug, Clone, PartialEq)]
pub struct EtsState {
    l: f64,
    b: f64,
    s: Vec<f64>,
    pos: usize,
}

impl EtsParams {
    fn initial_state(&self) -> EtsState {
        EtsState {
            l: self.l0,
            b: self.b0,
            s: self.s0.clone(),
            pos: 0,
        }
    }

    /// One filter step; returns the one-step error (`NaN` for a gap or a numerical failure).
    fn step(&self, st: &mut EtsState, y: f64) -> f64 {
        let lb = st.l + self.phi * st.b;
        let seas = match self.season {
            Season::None => None,
            _ => st.s.get(st.pos).copied(),
        };
        let yhat = match (self.season, seas) {
            (Season::Additive, Some(s)) => lb + s,
            (Season::Multiplicative, Some(s)) => lb * s,
            _ => lb,
        };
        let e = if y.is_finite() { y - yhat } else { 0.0 };
        match (self.season, seas) {
            (Season::Multiplicative, Some(s)) => {
                let s_safe = if s.abs() < 1e-10 { 1e-10 } else { s };
                let lb_safe = if lb.abs() < 1e-10 { 1e-10 } else { lb };
                st.l = lb + self.alpha * e / s_safe;
                st.b = self.phi * st.b + self.beta * e / s_safe;
                st.s[st.pos] = s + self.gamma * e / lb_safe;
            }
            (Season::Additive, Some(s)) => {
                st.l = lb + self.alpha * e;
                st.b = self.phi * st.b + self.beta * e;
                st.s[st.pos] = s + self.gamma * e;
            }
            _ => {
                st.l = lb + self.alpha * e;
                st.b = self.phi * st.b + self.beta * e;
            }
        }
        if !st.s.is_empty() {
            st.pos = (st.pos + 1) % st.s.len();
        }
        if y.is_finite() { e } else { f64::NAN }
    }

    fn forecast(&self, st: &EtsState, h: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(h);
        let mut damp = 0.0;
        let mut pw = 1.0;
        for j in 0..h {
            pw *= self.phi;
            damp += pw;
            let lb = st.l + damp * st.b;
            let v = if st.s.is_empty() {
                lb
            } else {
                let s = st.s[(st.pos + j) % st.s.len()];
                match self.season {
                    Season::Multiplicative => lb * s,
                    _ => lb + s,
                }
            };
            out.push(v);
        }
        out
    }

    /// Sum of squared one-step errors over `y` (∞ when the filter diverges).
    fn sse_of(&self, y: &[f64]) -> f64 {
        let mut st = self.initial_state();
        let mut sse = 0.0;
        for &v in y {
            let e = self.step(&mut st, v);
            if e.is_finite() {
                sse += e * e;
            } else if v.is_finite() {
                return f64::INFINITY;
            }
        }
        if sse.is_finite() { sse } else { f64::INFINITY }
    }

    fn n_params(&self) -> usize {
        let smoothing = 1
            + usize::from(self.trend != Trend::None)
            + usize::from(self.season != Season::None)
            + usize::from(self.trend == Trend::Damped);
        let states = 1
            + usize::from(self.trend != Trend::None)
            + if self.season != Season::None {
                self.m.saturating_sub(1)
            } else {
                0
            };
        smoothing + states + 1
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// Minimises `f` with the Nelder-Mead simplex method from `x0` (initial step `step`), at most
/// `max_evals` evaluations. Returns the best point and value.
pub fn nelder_mead(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    max_evals: usize,
) -> (Vec<f64>, f64) {
    let d = x0.len();
    if d == 0 {
        let v = f(x0);
        return (Vec::new(), v);
    }
    let mut simplex: Vec<Vec<f64>> = vec![x0.to_vec()];
    for i in 0..d {
        let mut p = x0.to_vec();
        p[i] += step;
        simplex.push(p);
    }
    let mut vals: Vec<f64> = simplex.iter().map(|p| f(p)).collect();
    let mut evals = d + 1;
    while evals < max_evals {
        let mut idx: Vec<usize> = (0..=d).collect();
        idx.sort_by(|a, b| vals[*a].total_cmp(&vals[*b]));
        simplex = idx.iter().map(|i| simplex[*i].clone()).collect();
        vals = idx.iter().map(|i| vals[*i]).collect();
        let spread = (vals[d] - vals[0]).abs();
        if spread <= 1e-10 * (vals[0].abs() + 1e-12) {
            break;
        }
        let mut centroid = vec![0.0; d];
        for p in &simplex[..d] {
            for (c, x) in centroid.iter_mut().zip(p) {
                *c += x / d as f64;
            }
        }
        let along = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&simplex[d])
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let xr = along(-1.0);
        let fr = f(&xr);
        evals += 1;
        if fr < vals[0] {
            let xe = along(-2.0);
            let fe = f(&xe);
            evals += 1;
            if fe < fr {
                simplex[d] = xe;
                vals[d] = fe;
            } else {
                simplex[d] = xr;
                vals[d] = fr;
            }
        } else if fr < vals[d - 1] {
            simplex[d] = xr;
            vals[d] = fr;
        } else {
            let (xc, fc) = if fr < vals[d] {
                let xc = along(-0.5);
                let fc = f(&xc);
                (xc, fc)
            } else {
                let xc = along(0.5);
                let fc = f(&xc);
                (xc, fc)
            };
            evals += 1;
            if fc < vals[d].min(fr) {
                simplex[d] = xc;
                vals[d] = fc;
            } else {
                let best = simplex[0].clone();
                for i in 1..=d {
                    simplex[i] = best
                        .iter()
                        .zip(&simplex[i])
                        .map(|(b, x)| b + 0.5 * (x - b))
                        .collect();
                    vals[i] = f(&simplex[i]);
                    evals += 1;
                }
            }
        }
    }
    let mut best = 0;
    for i in 1..vals.len() {
        if vals[i] < vals[best] {
            best = i;
        }
    }
    (simplex[best].clone(), vals[best])
}

/// Heuristic initial states `(l0, b0, s0)` for a variant.
fn initial_states(y: &[f64], trend: Trend, season: Season, m: usize) -> (f64, f64, Vec<f64>) {
    if season == Season::None || m < 2 || y.len() < 2 * m {
        let k = y.len().clamp(1, 10);
        let l0 = y[..k].iter().sum::<f64>() / k as f64;
        let b0 = if trend != Trend::None && y.len() >= 4 {
            let half = (y.len().min(20)) / 2;
            let a = y[..half].iter().sum::<f64>() / half as f64;
            let b = y[half..2 * half].iter().sum::<f64>() / half as f64;
            (b - a) / half as f64
        } else {
            0.0
        };
        return (l0 - b0, b0, Vec::new());
    }
    let k = (y.len() / m).min(3);
    let means: Vec<f64> = (0..k)
        .map(|j| y[j * m..(j + 1) * m].iter().sum::<f64>() / m as f64)
        .collect();
    let b0 = if trend != Trend::None && k >= 2 {
        (means[k - 1] - means[0]) / ((k - 1) * m) as f64
    } else {
        0.0
    };
    let mut s0 = vec![0.0; m];
    for (i, s) in s0.iter_mut().enumerate() {
        let mut acc = 0.0;
        for (j, mu) in means.iter().enumerate() {
            let base = mu + b0 * (i as f64 - (m as f64 - 1.0) / 2.0);
            let v = y[j * m + i];
            acc += match season {
                Season::Multiplicative => {
                    if base.abs() > 1e-12 {
                        v / base
                    } else {
                        1.0
                    }
                }
                _ => v - base,
            };
        }
        *s = acc / k as f64;
    }
    match season {
        Season::Multiplicative => {
            let mean = s0.iter().sum::<f64>() / m as f64;
            if mean.abs() > 1e-12 {
                s0.iter_mut().for_each(|s| *s /= mean);
            }
        }
        _ => {
            let mean = s0.iter().sum::<f64>() / m as f64;
            s0.iter_mut().for_each(|s| *s -= mean);
        }
    }
    let l0 = means[0] - b0 * (m as f64 + 1.0) / 2.0;
    (l0, b0, s0)
}

/// Fits one ETS variant on gap-free `y` by SSE minimisation. `m` is ignored without season.
pub fn fit_variant(y: &[f64], trend: Trend, season: Season, m: usize) -> Result<EtsParams> {
    let m_eff = if season == Season::None { 1 } else { m };
    let label = format!(
        "ETS(A,{},{})",
        match trend {
            Trend::None => "N",
            Trend::Additive => "A",
            Trend::Damped => "Ad",
        },
        match season {
            Season::None => "N",
            Season::Additive => "A",
            Season::Multiplicative => "M",
        }
    );
    if y.len() < 4 {
        return Err(ForecastError::TooShort {
            what: label.clone(),
            needed: 4,
            got: y.len(),
        });
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(ForecastError::InvalidInput(format!(
            "{label}: fit needs gap-free data"
        )));
    }
    if season != Season::None && (m < 2 || y.len() < 2 * m) {
        return Err(ForecastError::TooShort {
            what: format!("{label} with season {m}"),
            needed: 2 * m.max(2),
            got: y.len(),
        });
    }
    if season == Season::Multiplicative && y.iter().any(|v| *v <= 0.0) {
        return Err(ForecastError::InvalidInput(format!(
            "{label}: multiplicative season needs strictly positive data"
        )));
    }
    let (l0, b0, s0) = initial_states(y, trend, season, m_eff);
    let template = EtsParams {
        label: label.clone(),
        trend,
        season,
        m: m_eff,
        alpha: 0.5,
        beta: 0.0,
        gamma: 0.0,
        phi: 1.0,
        l0,
        b0,
        s0,
        sse: f64::NAN,
        n: y.len(),
        aicc: f64::NAN,
    };
    let has_b = trend != Trend::None;
    let has_s = season != Season::None;
    let has_phi = trend == Trend::Damped;
    let decode = |x: &[f64], p: &mut EtsParams| {
        let mut it = x.iter();
        p.alpha = 0.0001 + 0.9998 * sigmoid(*it.next().unwrap_or(&0.0));
        p.beta = if has_b {
            p.alpha * 0.999 * sigmoid(*it.next().unwrap_or(&0.0))
        } else {
            0.0
        };
        p.gamma = if has_s {
            (1.0 - p.alpha) * 0.999 * sigmoid(*it.next().unwrap_or(&0.0))
        } else {
            0.0
        };
        p.phi = if has_phi {
            0.8 + 0.18 * sigmoid(*it.next().unwrap_or(&0.0))
        } else {
            1.0
        };
    };
    let mut x0 = vec![logit(0.3)];
    if has_b {
        x0.push(logit(0.1));
    }
    if has_s {
        x0.push(logit(0.1));
    }
    if has_phi {
        x0.push(logit(0.5));
    }
    let mut work = template.clone();
    let mut objective = |x: &[f64]| {
        decode(x, &mut work);
        work.sse_of(y)
    };
    let (xbest, sse) = nelder_mead(&mut objective, &x0, 1.0, 150 * x0.len() + 100);
    if !sse.is_finite() {
        return Err(ForecastError::fit(
            label,
            "SSE is not finite for any parameters",
        ));
    }
    let mut p = template;
    decode(&xbest, &mut p);
    p.sse = sse;
    let n = y.len() as f64;
    let k = p.n_params() as f64;
    let sigma2 = (sse / n).max(1e-300);
    p.aicc = if n - k - 1.0 > 0.0 {
        n * sigma2.ln() + 2.0 * k + 2.0 * k * (k + 1.0) / (n - k - 1.0)
    } else {
        f64::INFINITY
    };
    Ok(p)
}

/// ETS with automatic variant selection by AICc. `model_by_name("ets", ..)`.
#[derive(Debug, Clone)]
pub struct AutoEts {
    configured_season: Option<usize>,
    threshold: f64,
    allow_trend: bool,
    allow_mult: bool,
    fitted: Option<EtsParams>,
    state: Option<EtsState>,
    /// (label, AICc) of every variant tried.
    tried: Vec<(String, f64)>,
    /// Level-shift guard on the one-step errors.
    guard: ShiftGuard,
}

impl AutoEts {
    /// An unfitted model configured from `cfg`.
    pub fn new(cfg: &ModelConfig) -> Self {
        AutoEts {
            configured_season: cfg.season,
            threshold: cfg.season_threshold,
            allow_trend: cfg.ets_trend,
            allow_mult: cfg.ets_multiplicative,
            fitted: None,
            state: None,
            tried: Vec::new(),
            guard: ShiftGuard::default(),
        }
    }

    /// The selected variant's parameters after fitting.
    pub fn selected(&self) -> Option<&EtsParams> {
        self.fitted.as_ref()
    }
}

impl PointModel for AutoEts {
    fn name(&self) -> String {
        "ets".to_string()
    }

    fn min_points(&self) -> usize {
        4
    }

    fn warmup(&self) -> usize {
        self.fitted.as_ref().map_or(1, |p| p.m.max(10))
    }

    fn fit_params(&mut self, y: &[f64], start_ms: i64, step_ms: i64) -> Result<()> {
        let m = match self.configured_season {
            Some(p) if p >= 2 => Some(p),
            Some(_) => None,
            None => Series::new(start_ms, step_ms, y.to_vec())
                .ok()
                .and_then(|s| detect_period(&s, self.threshold)),
        };
        let trends: &[Trend] = if self.allow_trend {
            &[Trend::None, Trend::Additive, Trend::Damped]
        } else {
            &[Trend::None]
        };
        let mut seasons = vec![Season::None];
        if let Some(m) = m
            && y.len() >= 2 * m
        {
            seasons.push(Season::Additive);
            if self.allow_mult && y.iter().all(|v| *v > 0.0) {
                seasons.push(Season::Multiplicative);
            }
        }
        self.tried.clear();
        let mut best: Option<EtsParams> = None;
        let mut last_err = None;
        for &s in &seasons {
            for &t in trends {
                match fit_variant(y, t, s, m.unwrap_or(1)) {
                    Ok(p) => {
                        self.tried.push((p.label.clone(), p.aicc));
                        if best.as_ref().is_none_or(|b| p.aicc < b.aicc) {
                            best = Some(p);
                        }
                    }
                    Err(e) => last_err = Some(e),
                }
            }
        }
        let best = match best {
            Some(b) => b,
            None => {
                return Err(last_err
                    .unwrap_or_else(|| ForecastError::fit("ets", "no variant could be fitted")));
            }
        };
        // Robust scale of the in-sample one-step errors for the level-shift guard.
        let mut st = best.initial_state();
        let errs: Vec<f64> = y.iter().map(|v| best.step(&mut st, *v)).collect();
        self.guard = ShiftGuard::new(ShiftGuard::robust_scale(errs));
        self.fitted = Some(best);
        self.reset(y)
    }

    fn reset(&mut self, y: &[f64]) -> Result<()> {
        let p = self
            .fitted
            .as_ref()
            .ok_or_else(|| ForecastError::NotFitted("ets".into()))?;
        let mut st = p.initial_state();
        for &v in y {
            p.step(&mut st, v);
        }
        self.state = Some(st);
        self.guard.clear();
        Ok(())
    }

    /// Filter step plus the level-shift guard: after [`crate::forecast::series::SHIFT_RUN`] consecutive one-step errors
    /// of one sign, each beyond [`crate::forecast::series::SHIFT_SIGMAS`] robust error scales, the level jumps to the
    /// data (trend reset to 0, season kept). Parameters are unchanged; this only moves state.
    fn update(&mut self, y: f64) {
        let (Some(p), Some(st)) = (self.fitted.as_ref(), self.state.as_mut()) else {
            return;
        };
        let e = p.step(st, y);
        if !e.is_finite() {
            return;
        }
        if self.guard.observe(e) {
            // The index just used is pos - 1 (the filter has advanced).
            let m = st.s.len();
            let s_used = if m > 0 {
                st.s[(st.pos + m - 1) % m]
            } else {
                0.0
            };
            st.l = match p.season {
                Season::Additive if m > 0 => y - s_used,
                Season::Multiplicative if m > 0 && s_used.abs() > 1e-10 => y / s_used,
                _ => y,
            };
            st.b = 0.0;
        }
    }

    fn point(&self, h: usize) -> Vec<f64> {
        match (self.fitted.as_ref(), self.state.as_ref()) {
            (Some(p), Some(st)) => p.forecast(st, h),
            _ => vec![f64::NAN; h],
        }
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "selected": self.fitted,
            "error_scale": self.guard.scale,
            "level_resets_since_fit": self.guard.resets,
            "candidates_aicc": self.tried.iter().map(|(l, a)| serde_json::json!({"variant": l, "aicc": a})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::forecast::model_by_name;
    use crate::forecast::series::SHIFT_RUN;

    /// Deterministic standard normal noise (xorshift + Box-Muller) for reproducible tests.
    pub(crate) fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.max(1);
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let u1 = next().max(1e-300);
                let u2 = next();
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect()
    }

    /// Simulates ETS(A,N,A) with the given smoothing parameters.
    fn simulate_ana(n: usize, m: usize, alpha: f64, gamma: f64, sigma: f64) -> Vec<f64> {
        let e = noise(n, 42);
        let mut l = 50.0;
        let mut s: Vec<f64> = (0..m)
            .map(|i| 10.0 * (2.0 * std::f64::consts::PI * i as f64 / m as f64).sin())
            .collect();
        let mut y = Vec::with_capacity(n);
        for (t, &et) in e.iter().enumerate().take(n) {
            let i = t % m;
            let err = sigma * et;
            y.push(l + s[i] + err);
            l += alpha * err;
            s[i] += gamma * err;
        }
        y
    }

    #[test]
    fn recovers_ana_parameters_and_selects_variant() {
        let m = 12;
        let y = simulate_ana(1200, m, 0.3, 0.1, 1.0);
        let cfg = ModelConfig {
            season: Some(m),
            ets_multiplicative: false,
            ..ModelConfig::default()
        };
        let mut ets = AutoEts::new(&cfg);
        ets.fit_params(&y, 0, 1).unwrap();
        let p = ets.selected().unwrap();
        assert_eq!(p.season, Season::Additive, "picked {}", p.label);
        assert!((p.alpha - 0.3).abs() < 0.08, "alpha {}", p.alpha);
        assert!((p.gamma - 0.1).abs() < 0.08, "gamma {}", p.gamma);
        assert!(p.beta < 0.05, "beta {}", p.beta);
    }

    #[test]
    fn recovers_simple_exponential_smoothing_alpha() {
        let e = noise(2000, 7);
        let mut l = 100.0;
        let mut y = Vec::new();
        for v in e {
            y.push(l + v);
            l += 0.6 * v;
        }
        let p = fit_variant(&y, Trend::None, Season::None, 1).unwrap();
        assert!((p.alpha - 0.6).abs() < 0.05, "alpha {}", p.alpha);
    }

    #[test]
    fn recovers_linear_trend() {
        let e = noise(500, 3);
        let y: Vec<f64> = (0..500)
            .map(|t| 5.0 + 0.5 * t as f64 + 0.1 * e[t])
            .collect();
        let mut ets = AutoEts::new(&ModelConfig {
            season: Some(0),
            ..ModelConfig::default()
        });
        ets.fit_params(&y, 0, 1).unwrap();
        let f = ets.point(10);
        for (j, v) in f.iter().enumerate() {
            let truth = 5.0 + 0.5 * (500 + j) as f64;
            assert!((v - truth).abs() < 1.0, "step {j}: {v} vs {truth}");
        }
    }

    #[test]
    fn pure_seasonal_signal_forecast_is_near_exact() {
        let m = 24;
        let y: Vec<f64> = (0..m * 10)
            .map(|t| 20.0 + 5.0 * (2.0 * std::f64::consts::PI * t as f64 / m as f64).sin())
            .collect();
        let cfg = ModelConfig {
            season: Some(m),
            ..ModelConfig::default()
        };
        let mut model = model_by_name("ets", &cfg).unwrap();
        model
            .fit(&Series::new(0, 3_600_000, y.clone()).unwrap())
            .unwrap();
        let f = model.predict(2 * m).unwrap();
        for (j, v) in f.mean.iter().enumerate() {
            let truth =
                20.0 + 5.0 * (2.0 * std::f64::consts::PI * (y.len() + j) as f64 / m as f64).sin();
            assert!((v - truth).abs() < 0.05, "step {j}: {v} vs {truth}");
        }
    }

    #[test]
    fn multiplicative_season_is_fitted_on_positive_data() {
        let m = 12;
        let e = noise(600, 11);
        let y: Vec<f64> = (0..600)
            .map(|t| {
                let level = 100.0 + 0.2 * t as f64;
                level * (1.0 + 0.3 * (2.0 * std::f64::consts::PI * t as f64 / m as f64).sin())
                    + 0.5 * e[t]
            })
            .collect();
        let p = fit_variant(&y, Trend::Damped, Season::Multiplicative, m).unwrap();
        assert!(p.aicc.is_finite());
        let q = fit_variant(&y, Trend::Damped, Season::Additive, m).unwrap();
        assert!(p.sse < q.sse, "mult {} add {}", p.sse, q.sse);
        assert!(fit_variant(&[-1.0; 40], Trend::None, Season::Multiplicative, 4).is_err());
    }

    #[test]
    fn short_and_constant_series() {
        // Too short for two seasons: falls back to non-seasonal variants.
        let cfg = ModelConfig {
            season: Some(50),
            ..ModelConfig::default()
        };
        let mut ets = AutoEts::new(&cfg);
        ets.fit_params(&[1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0], 0, 1)
            .unwrap();
        assert_eq!(ets.selected().unwrap().season, Season::None);
        assert!(fit_variant(&[1.0; 10], Trend::None, Season::Additive, 50).is_err());
        // Constant: exact forecast.
        let mut model = model_by_name("ets", &ModelConfig::default()).unwrap();
        model
            .fit(&Series::new(0, 1, vec![3.0; 100]).unwrap())
            .unwrap();
        let f = model.predict(5).unwrap();
        assert!(f.mean.iter().all(|v| (v - 3.0).abs() < 1e-9));
        // Too short for the model at all.
        let mut model = model_by_name("ets", &ModelConfig::default()).unwrap();
        assert!(matches!(
            model.fit(&Series::new(0, 1, vec![1.0, 2.0]).unwrap()),
            Err(ForecastError::TooShort { .. })
        ));
    }

    #[test]
    fn level_shift_guard_follows_a_step() {
        // Noise around 30 fitted with a small alpha, then the level drops to 0.
        let e = noise(2000, 13);
        let y: Vec<f64> = (0..2000).map(|t| 30.0 + 0.5 * e[t]).collect();
        let mut ets = AutoEts::new(&ModelConfig {
            season: Some(0),
            ..ModelConfig::default()
        });
        ets.fit_params(&y, 0, 1).unwrap();
        assert!(ets.selected().unwrap().alpha < 0.2);
        for _ in 0..SHIFT_RUN {
            ets.update(0.0);
        }
        let f = ets.point(3);
        assert!(f.iter().all(|v| v.abs() < 1.0), "{f:?}");
        assert_eq!(ets.params()["level_resets_since_fit"], 1);
    }

    #[test]
    fn nelder_mead_minimises_quadratic() {
        let mut f = |x: &[f64]| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
        let (x, v) = nelder_mead(&mut f, &[0.0, 0.0], 0.5, 2000);
        assert!(v < 1e-8 && (x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3);
    }
}
