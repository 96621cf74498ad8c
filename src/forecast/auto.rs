//! `auto`: per-series, per-horizon weighted ensemble chosen by a rolling-origin backtest on the
//! training part.
//!
//! Fitting on a training series `y[0..n]`:
//! 1. split it into a fit part `y[0..k]` and a validation part `y[k..n]`
//!    (`k = n·(1 − auto_validation_fraction)`, default 30% validation);
//! 2. fit every candidate ([`ModelConfig::auto_candidates`]) on the fit part, then run it over
//!    the validation part exactly like the test protocol: an `H`-step forecast at every origin,
//!    state updated with each observation, no refit;
//! 3. for each horizon `h = 1..H` find convex weights over the candidates that minimise the
//!    validation MAE at that horizon (greedy pairwise weight transfer, steps 0.2 → 0.01);
//!    a model whose weight is 1 is a plain selection, so a noisy series ends up on naive-like
//!    members and a seasonal one on seasonal members;
//! 4. refit the candidates with non-zero weight on the whole training series.
//!
//! Forecast step `h` is `Σ_k w[h][k] · ŷ_k(h)`; beyond `H` the weights of `H` are used.
//! Candidates that fail to fit (too short, no season) are skipped; `naive` always fits, so
//! `auto` works on any series with one finite value. With fewer than
//! [`MIN_VALIDATION`] validation points `auto` falls back to `naive` weights of 1.

use serde::{Deserialize, Serialize};

use crate::forecast::error::{ForecastError, Result};
use crate::forecast::{ModelConfig, PointModel, point_model_by_name};

/// Default candidate pool of `auto`.
pub const DEFAULT_CANDIDATES: [&str; 4] = ["naive", "seasonal_naive", "ets", "linreg"];

/// Minimum number of validation points for a weighted ensemble.
pub const MIN_VALIDATION: usize = 30;

/// What `auto` learned: candidates, weights per horizon and validation MAE per candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoReport {
    /// Candidate names, in weight order.
    pub candidates: Vec<String>,
    /// `weights[h-1][k]`: weight of candidate `k` at horizon `h`.
    pub weights: Vec<Vec<f64>>,
    /// `val_mae[h-1][k]`: validation MAE of candidate `k` at horizon `h`.
    pub val_mae: Vec<Vec<f64>>,
    /// Validation MAE of the ensemble per horizon.
    pub ensemble_mae: Vec<f64>,
    /// Candidates that could not be fitted, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Number of validation points.
    pub n_validation: usize,
}

/// The `auto` model. `model_by_name("auto", ..)`.
pub struct Auto {
    cfg: ModelConfig,
    members: Vec<Box<dyn PointModel>>,
    report: Option<AutoReport>,
}

impl Auto {
    /// An unfitted auto model configured from `cfg`.
    pub fn new(cfg: &ModelConfig) -> Self {
        Auto {
            cfg: cfg.clone(),
            members: Vec::new(),
            report: None,
        }
    }

    /// The selection report after fitting.
    pub fn report(&self) -> Option<&AutoReport> {
        self.report.as_ref()
    }

    fn horizon(&self) -> usize {
        self.cfg.horizon.max(1)
    }
}

/// Convex weights minimising `Σ_t |y_t − Σ_k w_k f_{t,k}|` by greedy pairwise transfers.
/// `preds[t][k]`; starts from the best single model.
pub fn fit_weights(actual: &[f64], preds: &[Vec<f64>], k: usize) -> Vec<f64> {
    let loss = |w: &[f64]| -> f64 {
        actual
            .iter()
            .zip(preds)
            .map(|(a, p)| (a - p.iter().zip(w).map(|(x, wi)| x * wi).sum::<f64>()).abs())
            .sum()
    };
    if k == 0 {
        return Vec::new();
    }
    let mut w = vec![0.0; k];
    let mut best_single = 0;
    let mut best_loss = f64::INFINITY;
    for i in 0..k {
        let mut e = vec![0.0; k];
        e[i] = 1.0;
        let l = loss(&e);
        if l < best_loss {
            best_loss = l;
            best_single = i;
        }
    }
    w[best_single] = 1.0;
    if !best_loss.is_finite() {
        return w;
    }
    for step in [0.2, 0.1, 0.05, 0.02, 0.01] {
        let mut improved = true;
        let mut rounds = 0;
        while improved && rounds < 50 {
            improved = false;
            rounds += 1;
            for from in 0..k {
                for to in 0..k {
                    if from == to || w[from] < step - 1e-12 {
                        continue;
                    }
                    let mut cand = w.clone();
                    cand[from] -= step;
                    cand[to] += step;
                    let l = loss(&cand);
                    if l < best_loss - 1e-12 * best_loss.abs() {
                        best_loss = l;
                        w = cand;
                        improved = true;
                    }
                }
            }
        }
    }
    // Clean rounding noise.
    for v in w.iter_mut() {
        if *v < 1e-9 {
            *v = 0.0;
        }
    }
    let s: f64 = w.iter().sum();
    if s > 0.0 {
        w.iter_mut().for_each(|v| *v /= s);
    }
    w
}

impl PointModel for Auto {
    fn name(&self) -> String {
        match &self.report {
            Some(r) => {
                let used: Vec<&str> = r
                    .candidates
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| r.weights.iter().any(|w| w[*k] > 0.0))
                    .map(|(_, n)| n.as_str())
                    .collect();
                format!("auto({})", used.join("+"))
            }
            None => "auto".to_string(),
        }
    }

    fn min_points(&self) -> usize {
        1
    }

    fn warmup(&self) -> usize {
        self.members.iter().map(|m| m.warmup()).max().unwrap_or(1)
    }

    fn fit_params(&mut self, y: &[f64], start_ms: i64, step_ms: i64) -> Result<()> {
        let n = y.len();
        if n == 0 {
            return Err(ForecastError::EmptySeries("auto: no values".into()));
        }
        let hmax = self.horizon();
        let k_fit = ((n as f64) * (1.0 - self.cfg.auto_validation_fraction)).floor() as usize;
        let n_val = n.saturating_sub(k_fit);
        let mut names: Vec<String> = Vec::new();
        let mut skipped = Vec::new();
        // preds[h-1][t][k]
        let mut preds: Vec<Vec<Vec<f64>>> = vec![Vec::new(); hmax];
        let mut actuals: Vec<Vec<f64>> = vec![Vec::new(); hmax];
        if n_val >= MIN_VALIDATION && k_fit >= 2 {
            let mut per_model: Vec<Vec<Vec<f64>>> = Vec::new(); // [k][origin][h]
            for name in &self.cfg.auto_candidates {
                let mut m = point_model_by_name(name, &self.cfg)?;
                if let Err(e) = m.fit_params(&y[..k_fit], start_ms, step_ms) {
                    skipped.push((name.clone(), e.to_string()));
                    continue;
                }
                if name == "seasonal_naive" && m.params()["season"].is_null() {
                    skipped.push((name.clone(), "no season detected".into()));
                    continue;
                }
                let mut fc = Vec::with_capacity(n_val);
                for &v in &y[k_fit..n] {
                    fc.push(m.point(hmax));
                    m.update(v);
                }
                names.push(name.clone());
                per_model.push(fc);
            }
            for h in 1..=hmax {
                for (o, t) in (k_fit..n).enumerate() {
                    let target = t - 1 + h;
                    if target >= n {
                        break;
                    }
                    actuals[h - 1].push(y[target]);
                    preds[h - 1].push(per_model.iter().map(|fc| fc[o][h - 1]).collect());
                }
            }
        }
        let kk = names.len();
        let (weights, val_mae, ens_mae) = if kk == 0 {
            names = vec!["naive".to_string()];
            (
                vec![vec![1.0]; hmax],
                vec![vec![f64::NAN]; hmax],
                vec![f64::NAN; hmax],
            )
        } else {
            let mut weights = Vec::with_capacity(hmax);
            let mut val_mae = Vec::with_capacity(hmax);
            let mut ens_mae = Vec::with_capacity(hmax);
            for h in 0..hmax {
                let a = &actuals[h];
                let p = &preds[h];
                let cnt = a.len().max(1) as f64;
                let maes: Vec<f64> = (0..kk)
                    .map(|k| a.iter().zip(p).map(|(y, f)| (y - f[k]).abs()).sum::<f64>() / cnt)
                    .collect();
                let w = fit_weights(a, p, kk);
                let e = a
                    .iter()
                    .zip(p)
                    .map(|(y, f)| (y - f.iter().zip(&w).map(|(x, wi)| x * wi).sum::<f64>()).abs())
                    .sum::<f64>()
                    / cnt;
                weights.push(w);
                val_mae.push(maes);
                ens_mae.push(e);
            }
            (weights, val_mae, ens_mae)
        };
        // Refit the members that carry weight on the whole training series.
        let mut members = Vec::new();
        let mut kept_names = Vec::new();
        let mut kept_cols = Vec::new();
        for (k, name) in names.iter().enumerate() {
            if !weights.iter().any(|w| w[k] > 0.0) {
                continue;
            }
            let mut m = point_model_by_name(name, &self.cfg)?;
            match m.fit_params(y, start_ms, step_ms) {
                Ok(()) => {
                    members.push(m);
                    kept_names.push(name.clone());
                    kept_cols.push(k);
                }
                Err(e) => skipped.push((name.clone(), format!("refit: {e}"))),
            }
        }
        if members.is_empty() {
            let mut m = point_model_by_name("naive", &self.cfg)?;
            m.fit_params(y, start_ms, step_ms)?;
            members.push(m);
            kept_names = vec!["naive".to_string()];
            kept_cols = Vec::new();
        }
        let weights: Vec<Vec<f64>> = if kept_cols.is_empty() {
            vec![vec![1.0]; hmax]
        } else {
            weights
                .iter()
                .map(|w| {
                    let v: Vec<f64> = kept_cols.iter().map(|k| w[*k]).collect();
                    let s: f64 = v.iter().sum();
                    if s > 0.0 {
                        v.iter().map(|x| x / s).collect()
                    } else {
                        vec![1.0 / v.len() as f64; v.len()]
                    }
                })
                .collect()
        };
        let val_mae = val_mae
            .iter()
            .map(|row| {
                if kept_cols.is_empty() {
                    vec![f64::NAN]
                } else {
                    kept_cols
                        .iter()
                        .map(|k| row.get(*k).copied().unwrap_or(f64::NAN))
                        .collect()
                }
            })
            .collect();
        self.members = members;
        self.report = Some(AutoReport {
            candidates: kept_names,
            weights,
            val_mae,
            ensemble_mae: ens_mae,
            skipped,
            n_validation: n_val,
        });
        Ok(())
    }

    fn reset(&mut self, y: &[f64]) -> Result<()> {
        for m in &mut self.members {
            m.reset(y)?;
        }
        Ok(())
    }

    fn update(&mut self, y: f64) {
        for m in &mut self.members {
            m.update(y);
        }
    }

    fn point(&self, h: usize) -> Vec<f64> {
        let Some(r) = &self.report else {
            return vec![f64::NAN; h];
        };
        let fc: Vec<Vec<f64>> = self.members.iter().map(|m| m.point(h)).collect();
        (0..h)
            .map(|j| {
                let w = &r.weights[j.min(r.weights.len() - 1)];
                fc.iter().zip(w).map(|(f, wi)| wi * f[j]).sum()
            })
            .collect()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "selection": self.report,
            "members": self.members.iter().map(|m| serde_json::json!({"name": m.name(), "params": m.params()})).collect::<Vec<_>>(),
        })
    }
}

impl PointModel for Box<dyn PointModel> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn min_points(&self) -> usize {
        (**self).min_points()
    }
    fn warmup(&self) -> usize {
        (**self).warmup()
    }
    fn fit_params(&mut self, y: &[f64], start_ms: i64, step_ms: i64) -> Result<()> {
        (**self).fit_params(y, start_ms, step_ms)
    }
    fn reset(&mut self, y: &[f64]) -> Result<()> {
        (**self).reset(y)
    }
    fn update(&mut self, y: f64) {
        (**self).update(y)
    }
    fn point(&self, h: usize) -> Vec<f64> {
        (**self).point(h)
    }
    fn params(&self) -> serde_json::Value {
        (**self).params()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{Series, model_by_name};

    #[test]
    fn weights_pick_exact_member_and_blend() {
        let actual = vec![1.0, 2.0, 3.0, 4.0];
        // Member 1 is exact.
        let preds: Vec<Vec<f64>> = actual.iter().map(|a| vec![a + 1.0, *a]).collect();
        assert_eq!(fit_weights(&actual, &preds, 2), vec![0.0, 1.0]);
        // Members err in opposite directions: the 50/50 blend is exact.
        let preds: Vec<Vec<f64>> = actual.iter().map(|a| vec![a + 1.0, a - 1.0]).collect();
        let w = fit_weights(&actual, &preds, 2);
        assert!(
            (w[0] - 0.5).abs() < 1e-9 && (w[1] - 0.5).abs() < 1e-9,
            "{w:?}"
        );
    }

    #[test]
    fn seasonal_series_gets_seasonal_members_and_noise_gets_naive_like() {
        let m = 24;
        let e = crate::forecast::ets::tests::noise(m * 30, 9);
        let seasonal: Vec<f64> = (0..m * 30)
            .map(|t| {
                100.0 + 20.0 * (2.0 * std::f64::consts::PI * t as f64 / m as f64).sin() + 0.5 * e[t]
            })
            .collect();
        let cfg = ModelConfig {
            season: Some(m),
            ..ModelConfig::default()
        };
        let mut a = Auto::new(&cfg);
        a.fit_params(&seasonal, 0, 3_600_000).unwrap();
        let r = a.report().unwrap();
        let naive_w: f64 = r
            .candidates
            .iter()
            .position(|c| c == "naive")
            .map_or(0.0, |k| r.weights[11][k]);
        assert!(naive_w < 0.2, "naive weight {naive_w} in {r:?}");

        // A random walk (unit steps): every member worth its weight is naive-like, so the
        // ensemble forecast stays close to the last value: within 0.3 of the h-step error
        // standard deviation sqrt(h).
        let mut rw = vec![0.0];
        for t in 1..m * 30 {
            let prev: f64 = rw[t - 1];
            rw.push(prev + e[t]);
        }
        let mut a = Auto::new(&cfg);
        a.fit_params(&rw, 0, 3_600_000).unwrap();
        let last = rw[rw.len() - 1];
        for (j, v) in a.point(12).iter().enumerate() {
            let sd = ((j + 1) as f64).sqrt();
            assert!(
                (v - last).abs() < 0.3 * sd,
                "h{}: {v} vs last {last}",
                j + 1
            );
        }
        let r = a.report().unwrap();
        let seasonal_w: f64 = r
            .candidates
            .iter()
            .position(|c| c == "seasonal_naive")
            .map_or(0.0, |k| r.weights[0][k]);
        assert!(
            seasonal_w < 0.2,
            "seasonal weight {seasonal_w} on a random walk"
        );
    }

    #[test]
    fn tiny_and_bad_series() {
        let mut model = model_by_name("auto", &ModelConfig::default()).unwrap();
        // Too short for validation: naive fallback.
        model
            .fit(&Series::new(0, 1, vec![1.0, 2.0, 3.0]).unwrap())
            .unwrap();
        assert_eq!(model.predict(2).unwrap().mean, vec![3.0, 3.0]);
        assert_eq!(model.name(), "auto(naive)");
        assert!(model.fit(&Series::new(0, 1, vec![]).unwrap()).is_err());
        assert!(
            model
                .fit(&Series::new(0, 1, vec![f64::NAN; 5]).unwrap())
                .is_err()
        );
        // Constant series: exact.
        model
            .fit(&Series::new(0, 1, vec![2.5; 400]).unwrap())
            .unwrap();
        let f = model.predict(3).unwrap();
        assert!(f.mean.iter().all(|v| (v - 2.5).abs() < 1e-9));
    }
}
