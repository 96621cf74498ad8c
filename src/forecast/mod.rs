//! Forecasting stage: per-series models, automatic selection by backtest, calibrated quantile
//! bands, and a reproducible backtest (issue 7).
//!
//! # Data model
//! * [`Series`] — a regular grid (`start_ms + i * step_ms`, epoch milliseconds), `NaN` = gap.
//!   Build one from irregular samples with [`resample`]; see [`series`] for how gaps are
//!   handled (interpolated for fitting, skipped online).
//! * [`Forecast`] — `h` steps from `start_ms` (one step after the last observation): point
//!   forecast `mean` and the quantiles `p10`, `p50`, `p90`, plus the model name.
//!
//! # Using a model
//! ```no_run
//! use scalecast::forecast::{ModelConfig, Series, model_by_name};
//! # fn main() -> scalecast::forecast::Result<()> {
//! let history = Series::new(0, 300_000, vec![1.0; 2_000])?; // 5-minute grid
//! let mut model = model_by_name("auto", &ModelConfig::default())?;
//! model.fit(&history)?;              // estimate parameters once
//! let f = model.predict(12)?;        // next hour: f.mean, f.p10, f.p50, f.p90
//! model.update(1.2);                 // new observation: state moves on, no refit
//! let params = model.params();       // fitted parameters as JSON (see models/README.md)
//! # let _ = (f, params); Ok(()) }
//! ```
//! * `fit` may be called again to refit (e.g. every 6 h); it replaces all state.
//! * `update(NaN)` records a gap: the clock advances one step, the state follows its own
//!   forecast.
//! * `predict(h)` errors before `fit` and for `h == 0`; `h` may exceed
//!   [`ModelConfig::horizon`] (bands widen with `sqrt(h / horizon)` there).
//! * Models are `Send` (one per series, any thread), not `Sync`.
//!
//! # Models ([`model_by_name`])
//! | name | file | what |
//! |---|---|---|
//! | `naive` | [`naive`] | last value |
//! | `seasonal_naive` | [`seasonal_naive`] | value one season ago (season detected or configured) |
//! | `ets` | [`ets`] | exponential smoothing (none/additive/damped trend × none/additive/multiplicative season), SSE/likelihood fitted, chosen by AICc |
//! | `linreg` | [`linreg`] | direct, level-relative ridge / elastic net (linfa) per horizon on lags, rolling means/medians, daily/weekly Fourier terms |
//! | `auto` | [`auto`] | per-horizon weighted ensemble of the above, weights from a rolling-origin backtest on the training part |
//!
//! Every model gets intervals from [`intervals::Calibrated`]: empirical residual quantiles per
//! horizon, updated online. `ets` and `linreg` carry a level-shift guard
//! ([`series::ShiftGuard`]) that moves their state to a new level after a sustained step.
//!
//! # Choosing outputs, horizons and cost (for consumers such as recommendations)
//! * Capacity planning: use `p90` (or `p50` + margin). For absolute-error use `p50` is the
//!   better point forecast on spiky metrics (NAB MASE of `auto`: p50 0.472 / 0.563 vs mean
//!   0.491 / 0.615 at h = 1 / 12); `mean` is the model's conditional-mean estimate.
//! * [`ModelConfig::horizon`] (`H`, default 12) is the longest horizon with its own calibrated
//!   band, `auto` weights and `linreg` model. Longer horizons work (`linreg` chains its `H`-step
//!   model, bands grow with `sqrt(h / H)`), but if you consume e.g. 1-hour-ahead values at a
//!   1-minute step, set `H` to 60. Fit cost grows roughly linearly with `H` for `linreg` and
//!   `auto` (≈ 0.3 s for `auto` on 3,225 points with `H = 12`, release build); `update` +
//!   `predict` stay in microseconds.
//!
//! # Backtests
//! [`backtest::run`] (the `scalecast backtest` CLI, arguments [`backtest::BacktestArgs`])
//! reads `timestamp,value` CSV files; [`backtest::backtest_series`] takes `(name, Series)`
//! pairs from any source (e.g. a SQL query over history). For live forecasts,
//! [`forecast_series`] fits and predicts one series in a single call, and [`live`] has the
//! refit policy (every 6 h, ≥ 24 h of history, ≤ 14 days used) and table rows
//! ([`live::forecast_rows`]: series, issued_at, target_ts, p10, p50, p90, mean, model);
//! [`live::run`] (arguments [`live::ForecastArgs`]) is a one-shot `scalecast forecast` over CSV
//! files.
//!
//! # Errors
//! All functions return [`Result`] with [`ForecastError`]; no input makes this module panic.

pub mod auto;
pub mod backtest;
pub mod error;
pub mod ets;
pub mod intervals;
pub mod linreg;
pub mod live;
pub mod metrics;
pub mod naive;
pub mod plot;
pub mod seasonal_naive;
pub mod series;

use serde::{Deserialize, Serialize};

pub use error::{ForecastError, Result};
pub use series::{Series, resample};

/// A forecast of `h` steps on the grid `start_ms + i * step_ms`, `i = 0..h`.
///
/// `start_ms` is one step after the last observation the model has seen. All vectors have
/// length `h`; `p10 <= p50 <= p90` at every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Timestamp of the first forecast step, epoch milliseconds.
    pub start_ms: i64,
    /// Grid step in milliseconds.
    pub step_ms: i64,
    /// Point forecast (conditional mean estimate of the model).
    pub mean: Vec<f64>,
    /// 10% quantile.
    pub p10: Vec<f64>,
    /// Median (point forecast plus the median residual).
    pub p50: Vec<f64>,
    /// 90% quantile.
    pub p90: Vec<f64>,
    /// Name of the model that produced it (`auto` reports its ensemble, e.g. `auto(ets+naive)`).
    pub model: String,
}

impl Forecast {
    /// Number of steps.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    /// True for a zero-step forecast.
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// Timestamp of step `i` (0-based).
    pub fn timestamp(&self, i: usize) -> i64 {
        self.start_ms
            .saturating_add(self.step_ms.saturating_mul(i as i64))
    }
}

/// A fitted forecasting model with quantile bands; what other modules use.
///
/// Obtain one with [`model_by_name`]. See the module docs for the life cycle.
pub trait Model: Send {
    /// Model name (`auto` includes its chosen components).
    fn name(&self) -> String;
    /// Estimates parameters on `s` and sets the state to the end of `s`. Replaces any earlier
    /// fit. Errors on an empty/all-NaN series or one too short for the model.
    fn fit(&mut self, s: &Series) -> Result<()>;
    /// Feeds the next observation (one step after the last one); `NaN` marks a gap. Parameters
    /// are not refitted; state and interval residuals are. Ignored before `fit`.
    fn update(&mut self, y: f64);
    /// Forecasts `h >= 1` steps ahead from the current state.
    fn predict(&self, h: usize) -> Result<Forecast>;
    /// Fitted parameters as JSON (format in `models/README.md`); `null` fields before `fit`.
    fn params(&self) -> serde_json::Value;
}

/// A point forecaster: the building block wrapped by [`intervals::Calibrated`].
///
/// Implement this to add a model; `fit_params` receives a gap-filled series (no `NaN`).
pub trait PointModel: Send {
    /// Model name.
    fn name(&self) -> String;
    /// Minimum number of finite training points.
    fn min_points(&self) -> usize {
        2
    }
    /// Number of leading points needed before in-sample forecasts are meaningful (interval
    /// calibration starts there).
    fn warmup(&self) -> usize {
        1
    }
    /// Estimates parameters on gap-free `y` (value `i` at `start_ms + i * step_ms`) and leaves
    /// the state at the end of `y`.
    fn fit_params(&mut self, y: &[f64], start_ms: i64, step_ms: i64) -> Result<()>;
    /// Keeps the parameters and recomputes the state from `y`, which starts at the same
    /// `start_ms` as the fitted series (any length ≥ 1).
    fn reset(&mut self, y: &[f64]) -> Result<()>;
    /// Feeds the next observation; `NaN` = gap (state follows its own one-step forecast).
    fn update(&mut self, y: f64);
    /// Point forecasts for steps `1..=h`.
    fn point(&self, h: usize) -> Vec<f64>;
    /// Fitted parameters as JSON.
    fn params(&self) -> serde_json::Value;
}

/// Configuration shared by all models (serde-friendly; every field has a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Season length in steps; `None` detects a daily/weekly season from the data
    /// ([`series::detect_period`]), `Some(0)` or `Some(1)` disables seasonality.
    pub season: Option<usize>,
    /// Autocorrelation threshold for season detection.
    pub season_threshold: f64,
    /// Longest horizon the interval calibration and `auto` weights are computed for.
    pub horizon: usize,
    /// Number of recent residuals per horizon kept for the quantile bands.
    pub residual_window: usize,
    /// ETS: allow a (damped) trend.
    pub ets_trend: bool,
    /// ETS: allow multiplicative seasonality (only used on strictly positive data).
    pub ets_multiplicative: bool,
    /// linreg: number of autoregressive lags.
    pub linreg_lags: usize,
    /// linreg: number of Fourier harmonics for the daily and the weekly cycle.
    pub linreg_fourier: usize,
    /// linreg: elastic-net penalty (on standardised features).
    pub linreg_penalty: f64,
    /// linreg: L1 ratio (0 = ridge, 1 = lasso).
    pub linreg_l1_ratio: f64,
    /// auto: candidate models.
    pub auto_candidates: Vec<String>,
    /// auto: fraction of the training part used as validation in the rolling-origin backtest.
    pub auto_validation_fraction: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            season: None,
            season_threshold: 0.3,
            horizon: 12,
            residual_window: 1000,
            ets_trend: true,
            ets_multiplicative: true,
            linreg_lags: 12,
            linreg_fourier: 3,
            linreg_penalty: 0.01,
            linreg_l1_ratio: 0.0,
            auto_candidates: auto::DEFAULT_CANDIDATES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            auto_validation_fraction: 0.3,
        }
    }
}

impl ModelConfig {
    /// Checks value ranges.
    pub fn validate(&self) -> Result<()> {
        if self.horizon == 0 {
            return Err(ForecastError::InvalidConfig("horizon must be >= 1".into()));
        }
        if self.residual_window == 0 {
            return Err(ForecastError::InvalidConfig(
                "residual_window must be >= 1".into(),
            ));
        }
        if !(self.season_threshold.is_finite() && (0.0..1.0).contains(&self.season_threshold)) {
            return Err(ForecastError::InvalidConfig(
                "season_threshold must be in [0, 1)".into(),
            ));
        }
        if !(self.linreg_penalty.is_finite() && self.linreg_penalty >= 0.0) {
            return Err(ForecastError::InvalidConfig(
                "linreg_penalty must be >= 0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.linreg_l1_ratio) {
            return Err(ForecastError::InvalidConfig(
                "linreg_l1_ratio must be in [0, 1]".into(),
            ));
        }
        if !(self.auto_validation_fraction > 0.0 && self.auto_validation_fraction < 0.9) {
            return Err(ForecastError::InvalidConfig(
                "auto_validation_fraction must be in (0, 0.9)".into(),
            ));
        }
        Ok(())
    }

    /// Season length for `s`: the configured one, or a detected daily/weekly one. `None` for
    /// no season (also when configured as 0 or 1).
    pub fn season_for(&self, s: &Series) -> Option<usize> {
        match self.season {
            Some(p) if p >= 2 => Some(p),
            Some(_) => None,
            None => series::detect_period(s, self.season_threshold),
        }
    }
}

/// Names accepted by [`model_by_name`].
pub const MODEL_NAMES: [&str; 5] = ["naive", "seasonal_naive", "ets", "linreg", "auto"];

/// Builds an unfitted model by name: `naive`, `seasonal_naive`, `ets`, `linreg`, `auto`.
///
/// Errors on an unknown name or an invalid `cfg`.
pub fn model_by_name(name: &str, cfg: &ModelConfig) -> Result<Box<dyn Model>> {
    cfg.validate()?;
    use intervals::Calibrated;
    Ok(match name {
        "naive" => Box::new(Calibrated::new(naive::Naive::new(), cfg)),
        "seasonal_naive" | "snaive" => Box::new(Calibrated::new(
            seasonal_naive::SeasonalNaive::new(cfg),
            cfg,
        )),
        "ets" => Box::new(Calibrated::new(ets::AutoEts::new(cfg), cfg)),
        "linreg" => Box::new(Calibrated::new(linreg::LinReg::new(cfg), cfg)),
        "auto" => Box::new(Calibrated::new(auto::Auto::new(cfg), cfg)),
        other => return Err(ForecastError::UnknownModel(other.to_string())),
    })
}

/// Builds the point model behind a name (used by `auto` for its candidates).
pub fn point_model_by_name(name: &str, cfg: &ModelConfig) -> Result<Box<dyn PointModel>> {
    Ok(match name {
        "naive" => Box::new(naive::Naive::new()),
        "seasonal_naive" | "snaive" => Box::new(seasonal_naive::SeasonalNaive::new(cfg)),
        "ets" => Box::new(ets::AutoEts::new(cfg)),
        "linreg" => Box::new(linreg::LinReg::new(cfg)),
        other => return Err(ForecastError::UnknownModel(other.to_string())),
    })
}

/// Fits `model_name` on `history` and forecasts `h` steps: the live forecast stage in one call
/// (e.g. for each series returned by a SQL query over history). Returns the forecast and the
/// fitted parameters.
pub fn forecast_series(
    model_name: &str,
    cfg: &ModelConfig,
    history: &Series,
    h: usize,
) -> Result<(Forecast, serde_json::Value)> {
    let mut m = model_by_name(model_name, cfg)?;
    m.fit(history)?;
    let f = m.predict(h)?;
    Ok((f, m.params()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -1e3f64..1e3,
            1 => Just(f64::NAN),
            1 => Just(0.0),
            1 => Just(f64::INFINITY),
            1 => Just(1e12),
            1 => Just(-1e300),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// No model panics on arbitrary input: it fits or returns an error, and a fitted model
        /// predicts a finite point and ordered bands after arbitrary updates.
        #[test]
        fn models_never_panic(
            vals in proptest::collection::vec(value(), 0..400),
            updates in proptest::collection::vec(value(), 0..20),
            season in proptest::option::of(0usize..30),
        ) {
            let cfg = ModelConfig { season, ..ModelConfig::default() };
            for name in MODEL_NAMES {
                let mut m = model_by_name(name, &cfg).unwrap();
                let s = Series::new(0, 300_000, vals.clone()).unwrap();
                if m.fit(&s).is_err() {
                    prop_assert!(m.predict(1).is_err());
                    continue;
                }
                for u in &updates {
                    m.update(*u);
                }
                let f = m.predict(30).unwrap();
                prop_assert_eq!(f.len(), 30);
                for i in 0..30 {
                    prop_assert!(
                        f.mean[i].is_finite() && f.p10[i] <= f.p50[i] && f.p50[i] <= f.p90[i],
                        "{name}: step {i}: mean {} band {} {} {}", f.mean[i], f.p10[i], f.p50[i], f.p90[i]
                    );
                }
                let _ = m.params();
            }
        }
    }

    #[test]
    fn by_name_and_config_errors() {
        assert!(matches!(
            model_by_name("prophet", &ModelConfig::default()),
            Err(ForecastError::UnknownModel(_))
        ));
        let bad = ModelConfig {
            horizon: 0,
            ..ModelConfig::default()
        };
        assert!(matches!(
            model_by_name("naive", &bad),
            Err(ForecastError::InvalidConfig(_))
        ));
        let (f, p) = forecast_series(
            "auto",
            &ModelConfig::default(),
            &Series::new(0, 60_000, vec![1.0, 2.0, 3.0]).unwrap(),
            2,
        )
        .unwrap();
        assert_eq!(f.start_ms, 180_000);
        assert!(p.is_object());
    }
}
