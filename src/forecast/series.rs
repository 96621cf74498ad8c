//! Regular time series, resampling of irregular samples, gap handling and season detection.
//!
//! Every model works on a [`Series`]: a regular grid `start_ms + i * step_ms` with one value per
//! slot, where `NaN` marks a gap (no sample fell into that slot).
//!
//! # Gaps
//! * [`resample`] puts each sample in the slot nearest to its timestamp; several samples in one
//!   slot are averaged; slots without a sample become `NaN`.
//! * Fitting uses [`fill_gaps`]: interior gaps are linearly interpolated, leading gaps take the
//!   first finite value, trailing gaps the last one. A series without any finite value is an
//!   [`ForecastError::EmptySeries`] error.
//! * During online use ([`crate::forecast::Model::update`]) a `NaN` observation advances the
//!   clock by one step, the model keeps its own one-step forecast as the state, and no residual
//!   is recorded for interval calibration.

use serde::{Deserialize, Serialize};

use crate::forecast::error::{ForecastError, Result};

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds in one week.
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Upper bound on the number of slots [`resample`] will allocate (guards against a tiny step
/// over a huge time range).
pub const MAX_SLOTS: usize = 50_000_000;

/// A regular time series: value `i` belongs to timestamp `start_ms + i * step_ms` (Unix epoch
/// milliseconds). `NaN` marks a gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Timestamp of the first value, Unix epoch milliseconds.
    pub start_ms: i64,
    /// Grid step in milliseconds (> 0).
    pub step_ms: i64,
    /// One value per grid slot; `NaN` is a gap.
    pub values: Vec<f64>,
}

impl Series {
    /// Builds a series, checking that `step_ms > 0`.
    pub fn new(start_ms: i64, step_ms: i64, values: Vec<f64>) -> Result<Self> {
        if step_ms <= 0 {
            return Err(ForecastError::InvalidInput(format!(
                "step_ms must be > 0, got {step_ms}"
            )));
        }
        Ok(Series {
            start_ms,
            step_ms,
            values,
        })
    }

    /// Number of grid slots (including gaps).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the series has no slot at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Timestamp of slot `i`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.start_ms
            .saturating_add(self.step_ms.saturating_mul(i as i64))
    }

    /// Timestamp one step after the last slot (where a forecast starts).
    pub fn next_ms(&self) -> i64 {
        self.timestamp(self.values.len())
    }

    /// Number of finite values.
    pub fn finite_count(&self) -> usize {
        self.values.iter().filter(|v| v.is_finite()).count()
    }

    /// The first `n` slots as a new series (all of it when `n >= len`).
    pub fn head(&self, n: usize) -> Series {
        Series {
            start_ms: self.start_ms,
            step_ms: self.step_ms,
            values: self.values[..n.min(self.values.len())].to_vec(),
        }
    }

    /// Checks the series can be fitted: valid step, at least `min_finite` finite values.
    pub fn check(&self, what: &str, min_finite: usize) -> Result<()> {
        if self.step_ms <= 0 {
            return Err(ForecastError::InvalidInput(format!(
                "step_ms must be > 0, got {}",
                self.step_ms
            )));
        }
        if self.values.is_empty() {
            return Err(ForecastError::EmptySeries(format!("{what}: no values")));
        }
        let finite = self.finite_count();
        if finite == 0 {
            return Err(ForecastError::EmptySeries(format!(
                "{what}: all {} values are NaN/inf",
                self.values.len()
            )));
        }
        if finite < min_finite {
            return Err(ForecastError::TooShort {
                what: what.to_string(),
                needed: min_finite,
                got: finite,
            });
        }
        Ok(())
    }
}

/// Converts irregular samples into a regular [`Series`].
///
/// * `ts_ms` and `values` must have the same length; samples need not be sorted.
/// * Non-finite values are dropped (they become gaps).
/// * `step_ms`: grid step; `None` infers it as the median of the positive differences between
///   consecutive sorted timestamps.
/// * The grid starts at the earliest timestamp; each sample goes to the nearest slot; several
///   samples in one slot are averaged; empty slots are `NaN`.
///
/// Errors: empty input, length mismatch, no finite value, non-positive step, only one distinct
/// timestamp without an explicit step, or more than [`MAX_SLOTS`] slots.
pub fn resample(ts_ms: &[i64], values: &[f64], step_ms: Option<i64>) -> Result<Series> {
    if ts_ms.len() != values.len() {
        return Err(ForecastError::InvalidInput(format!(
            "{} timestamps but {} values",
            ts_ms.len(),
            values.len()
        )));
    }
    let mut pts: Vec<(i64, f64)> = ts_ms
        .iter()
        .copied()
        .zip(values.iter().copied())
        .filter(|(_, v)| v.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(ForecastError::EmptySeries(
            "resample: no finite sample".to_string(),
        ));
    }
    pts.sort_by_key(|p| p.0);
    let step = match step_ms {
        Some(s) if s <= 0 => {
            return Err(ForecastError::InvalidInput(format!(
                "step_ms must be > 0, got {s}"
            )));
        }
        Some(s) => s,
        None => {
            let mut diffs: Vec<i64> = pts
                .windows(2)
                .map(|w| w[1].0.saturating_sub(w[0].0))
                .filter(|d| *d > 0)
                .collect();
            if diffs.is_empty() {
                return Err(ForecastError::InvalidInput(
                    "cannot infer the step from a single distinct timestamp; pass step_ms"
                        .to_string(),
                ));
            }
            diffs.sort_unstable();
            diffs[diffs.len() / 2]
        }
    };
    let start = pts[0].0;
    let end = pts[pts.len() - 1].0;
    let span = (end as i128 - start as i128) / step as i128;
    let n = span + 1;
    if n > MAX_SLOTS as i128 {
        return Err(ForecastError::InvalidInput(format!(
            "resample would create {n} slots (step {step} ms); more than {MAX_SLOTS}"
        )));
    }
    let n = n as usize;
    let mut sum = vec![0.0f64; n];
    let mut cnt = vec![0u32; n];
    for (t, v) in pts {
        let off = (t as i128 - start as i128) as f64 / step as f64;
        let idx = (off.round() as i128).clamp(0, n as i128 - 1) as usize;
        sum[idx] += v;
        cnt[idx] += 1;
    }
    let values = sum
        .into_iter()
        .zip(cnt)
        .map(|(s, c)| if c == 0 { f64::NAN } else { s / c as f64 })
        .collect();
    Ok(Series {
        start_ms: start,
        step_ms: step,
        values,
    })
}

/// Fills gaps for fitting: interior `NaN`/inf runs are linearly interpolated, leading ones take
/// the first finite value, trailing ones the last finite value.
///
/// Errors with [`ForecastError::EmptySeries`] when no value is finite.
pub fn fill_gaps(values: &[f64]) -> Result<Vec<f64>> {
    let first = values
        .iter()
        .position(|v| v.is_finite())
        .ok_or_else(|| ForecastError::EmptySeries("no finite value to fill gaps from".into()))?;
    let mut out = values.to_vec();
    for v in out.iter_mut().take(first) {
        *v = values[first];
    }
    let mut last = first;
    for i in first + 1..values.len() {
        if values[i].is_finite() {
            if i > last + 1 {
                let a = values[last];
                let b = values[i];
                let span = (i - last) as f64;
                for (k, slot) in out.iter_mut().enumerate().take(i).skip(last + 1) {
                    *slot = a + (b - a) * (k - last) as f64 / span;
                }
            }
            last = i;
        }
    }
    for v in out.iter_mut().skip(last + 1) {
        *v = values[last];
    }
    Ok(out)
}

/// Sample autocorrelation of `y` at `lag` (0 when undefined).
pub fn acf(y: &[f64], lag: usize) -> f64 {
    let n = y.len();
    if lag == 0 {
        return 1.0;
    }
    if lag >= n {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let den: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    if den <= 0.0 || !den.is_finite() {
        return 0.0;
    }
    let num: f64 = (lag..n).map(|i| (y[i] - mean) * (y[i - lag] - mean)).sum();
    num / den
}

/// Calendar season lengths (in steps) that fit the grid: one day and one week, when the step
/// divides them exactly.
pub fn calendar_periods(step_ms: i64) -> Vec<usize> {
    [DAY_MS, WEEK_MS]
        .iter()
        .filter(|p| step_ms > 0 && *p % step_ms == 0 && *p / step_ms >= 2)
        .map(|p| (p / step_ms) as usize)
        .collect()
}

/// Detects a daily or weekly season from the data.
///
/// Candidates are the calendar periods of [`calendar_periods`] for which the series holds at
/// least two full cycles. The gap-filled series is detrended (least-squares line) and its
/// autocorrelation at each candidate lag must exceed `threshold` and the autocorrelation at
/// half the lag; the qualifying candidate with the highest autocorrelation wins.
/// Returns `None` when no candidate qualifies (too short or no season).
pub fn detect_period(s: &Series, threshold: f64) -> Option<usize> {
    let y = fill_gaps(&s.values).ok()?;
    // Remove a linear trend so that a drifting level does not look seasonal.
    let n = y.len();
    if n < 4 {
        return None;
    }
    let tbar = (n as f64 - 1.0) / 2.0;
    let ybar = y.iter().sum::<f64>() / n as f64;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (i, v) in y.iter().enumerate() {
        let dt = i as f64 - tbar;
        sxy += dt * (v - ybar);
        sxx += dt * dt;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let resid: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v - ybar - slope * (i as f64 - tbar))
        .collect();
    let mut best: Option<(usize, f64)> = None;
    for p in calendar_periods(s.step_ms) {
        if n < 2 * p {
            continue;
        }
        let r = acf(&resid, p);
        // Require the seasonal lag to beat the half-season lag: a real season has a trough there.
        let half = acf(&resid, p / 2);
        if r > threshold && r > half && best.is_none_or(|(_, br)| r > br) {
            best = Some((p, r));
        }
    }
    best.map(|(p, _)| p)
}

/// Level-shift guard: this many consecutive one-step errors of the same sign ...
pub const SHIFT_RUN: i32 = 6;
/// ... each larger than this many robust error scales mean the level has moved.
pub const SHIFT_SIGMAS: f64 = 4.0;

/// Detects level shifts from one-step forecast errors (used by `ets` and `linreg` online).
///
/// After fitting, a model sets [`ShiftGuard::scale`] to a robust scale of its in-sample
/// one-step errors ([`ShiftGuard::robust_scale`]). [`ShiftGuard::observe`] returns `true` once
/// [`SHIFT_RUN`] consecutive errors of one sign each exceed [`SHIFT_SIGMAS`] scales; the model
/// then moves its state to the new level (parameters are never changed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShiftGuard {
    /// Robust scale of in-sample one-step errors.
    pub scale: f64,
    /// Signed length of the current run of large errors.
    pub run: i32,
    /// Number of shifts detected since the last fit/reset.
    pub resets: usize,
}

impl ShiftGuard {
    /// A guard with the given error scale.
    pub fn new(scale: f64) -> Self {
        ShiftGuard {
            scale: if scale.is_finite() {
                scale.max(0.0)
            } else {
                0.0
            },
            run: 0,
            resets: 0,
        }
    }

    /// 1.4826 × median of `|errors|` (the MAD scale of a normal), or their mean when the
    /// median is 0; non-finite errors are ignored; 0 for no error.
    pub fn robust_scale(errors: impl IntoIterator<Item = f64>) -> f64 {
        let mut v: Vec<f64> = errors
            .into_iter()
            .filter(|e| e.is_finite())
            .map(f64::abs)
            .collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let med = v[v.len() / 2];
        if med > 0.0 {
            1.4826 * med
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// Feeds one one-step error; `true` when a level shift is detected (the run restarts).
    pub fn observe(&mut self, e: f64) -> bool {
        if !e.is_finite() {
            return false;
        }
        let big = e != 0.0 && e.abs() > SHIFT_SIGMAS * self.scale;
        let sign = if e > 0.0 { 1 } else { -1 };
        self.run = if !big {
            0
        } else if self.run.signum() == sign {
            self.run + sign
        } else {
            sign
        };
        if self.run.abs() >= SHIFT_RUN {
            self.run = 0;
            self.resets += 1;
            true
        } else {
            false
        }
    }

    /// Clears the run and the reset count (after a refit or reset).
    pub fn clear(&mut self) {
        self.run = 0;
        self.resets = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_regular_is_identity() {
        let ts: Vec<i64> = (0..5).map(|i| 1000 + i * 300_000).collect();
        let v = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        let s = resample(&ts, &v, None).unwrap();
        assert_eq!(s.start_ms, 1000);
        assert_eq!(s.step_ms, 300_000);
        assert_eq!(s.values, v);
        assert_eq!(s.next_ms(), 1000 + 5 * 300_000);
    }

    #[test]
    fn resample_irregular_with_gap_and_duplicates() {
        // step 10; samples at 0, 11 (-> slot 1), 12 (-> slot 1), 40 (-> slot 4), unsorted.
        let ts = vec![40, 0, 12, 11];
        let v = vec![4.0, 0.0, 3.0, 1.0];
        let s = resample(&ts, &v, Some(10)).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s.values[0], 0.0);
        assert_eq!(s.values[1], 2.0);
        assert!(s.values[2].is_nan() && s.values[3].is_nan());
        assert_eq!(s.values[4], 4.0);
    }

    #[test]
    fn resample_bad_input() {
        assert!(matches!(
            resample(&[], &[], None),
            Err(ForecastError::EmptySeries(_))
        ));
        assert!(matches!(
            resample(&[1, 2], &[1.0], None),
            Err(ForecastError::InvalidInput(_))
        ));
        assert!(matches!(
            resample(&[1, 2], &[f64::NAN, f64::INFINITY], None),
            Err(ForecastError::EmptySeries(_))
        ));
        assert!(matches!(
            resample(&[5, 5], &[1.0, 2.0], None),
            Err(ForecastError::InvalidInput(_))
        ));
        assert!(matches!(
            resample(&[0, 10], &[1.0, 2.0], Some(0)),
            Err(ForecastError::InvalidInput(_))
        ));
        assert!(matches!(
            resample(&[0, i64::MAX / 2], &[1.0, 2.0], Some(1)),
            Err(ForecastError::InvalidInput(_))
        ));
    }

    #[test]
    fn fill_gaps_interpolates_and_carries() {
        let v = vec![f64::NAN, 1.0, f64::NAN, f64::NAN, 4.0, f64::NAN];
        assert_eq!(fill_gaps(&v).unwrap(), vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        assert!(fill_gaps(&[f64::NAN]).is_err());
        assert!(fill_gaps(&[]).is_err());
    }

    #[test]
    fn detects_daily_season() {
        let step = 300_000;
        let m = (DAY_MS / step) as usize;
        let vals: Vec<f64> = (0..4 * m)
            .map(|i| {
                10.0 + 3.0 * (2.0 * std::f64::consts::PI * i as f64 / m as f64).sin()
                    + 0.01 * i as f64
            })
            .collect();
        let s = Series::new(0, step, vals).unwrap();
        assert_eq!(detect_period(&s, 0.3), Some(288));
        // Too short for two cycles: nothing detected.
        assert_eq!(detect_period(&s.head(m + 10), 0.3), None);
        // White-ish noise: no season.
        let noise: Vec<f64> = (0..4 * m)
            .map(|i| ((i as f64 * 12.9898).sin() * 43758.5453).fract())
            .collect();
        let s = Series::new(0, step, noise).unwrap();
        assert_eq!(detect_period(&s, 0.3), None);
    }

    #[test]
    fn shift_guard_needs_a_run_of_one_sign() {
        let mut g = ShiftGuard::new(ShiftGuard::robust_scale([1.0, -1.0, 1.0]));
        assert!((g.scale - 1.4826).abs() < 1e-12);
        for _ in 0..SHIFT_RUN - 1 {
            assert!(!g.observe(10.0));
        }
        // A small error breaks the run.
        assert!(!g.observe(0.1));
        for _ in 0..SHIFT_RUN - 1 {
            assert!(!g.observe(-10.0));
        }
        // Sign change restarts the run.
        assert!(!g.observe(10.0));
        for _ in 0..SHIFT_RUN - 2 {
            assert!(!g.observe(10.0));
        }
        assert!(g.observe(10.0));
        assert_eq!(g.resets, 1);
        assert!(!g.observe(f64::NAN));
        assert_eq!(ShiftGuard::robust_scale([0.0, 0.0, 3.0]), 1.0);
        assert_eq!(ShiftGuard::robust_scale([]), 0.0);
    }

    #[test]
    fn check_reports_short_and_empty() {
        let s = Series::new(0, 1, vec![f64::NAN; 3]).unwrap();
        assert!(matches!(
            s.check("x", 1),
            Err(ForecastError::EmptySeries(_))
        ));
        let s = Series::new(0, 1, vec![1.0; 3]).unwrap();
        assert!(matches!(
            s.check("x", 5),
            Err(ForecastError::TooShort {
                needed: 5,
                got: 3,
                ..
            })
        ));
        assert!(Series::new(0, 0, vec![]).is_err());
    }
}
