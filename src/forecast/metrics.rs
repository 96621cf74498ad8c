//! Accuracy metrics: MASE (mean absolute scaled error) and interval coverage.
//!
//! MASE follows the issue-7 protocol: absolute errors of the test forecasts divided by the
//! in-sample MAE of the seasonal naive forecast with season `m` on the training part (lag-1
//! naive when the training part has `m` points or fewer). The same scale is used for every
//! horizon, so MASE values of different horizons are comparable.

/// In-sample MAE of the seasonal naive forecast with lag `m` on `train` (lag 1 when
/// `train.len() <= m` or `m == 0`). Pairs with a non-finite value are skipped.
///
/// Returns `None` when no pair is usable or the MAE is 0 (constant training data): MASE is
/// then undefined.
pub fn mase_scale(train: &[f64], m: usize) -> Option<f64> {
    let lag = if m == 0 || train.len() <= m { 1 } else { m };
    let mut sum = 0.0;
    let mut n = 0usize;
    for i in lag..train.len() {
        let d = train[i] - train[i - lag];
        if d.is_finite() {
            sum += d.abs();
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let mae = sum / n as f64;
    (mae > 0.0 && mae.is_finite()).then_some(mae)
}

/// Mean absolute error over pairs where both values are finite; `None` when there is none.
pub fn mae(actual: &[f64], forecast: &[f64]) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (a, f) in actual.iter().zip(forecast) {
        let d = a - f;
        if d.is_finite() {
            sum += d.abs();
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// Fraction of finite `actual` values inside `[lo, hi]` (inclusive); `None` when there is none.
pub fn coverage(actual: &[f64], lo: &[f64], hi: &[f64]) -> Option<f64> {
    let mut inside = 0usize;
    let mut n = 0usize;
    for ((a, l), h) in actual.iter().zip(lo).zip(hi) {
        if a.is_finite() && l.is_finite() && h.is_finite() {
            n += 1;
            if *a >= *l && *a <= *h {
                inside += 1;
            }
        }
    }
    (n > 0).then(|| inside as f64 / n as f64)
}

/// Mean of the finite values; `None` when there is none.
pub fn finite_mean(v: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for x in v {
        if x.is_finite() {
            sum += x;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_uses_season_or_lag_one() {
        // m = 2: |3-1| + |4-2| + |7-3| = 8 over 3 pairs.
        let t = [1.0, 2.0, 3.0, 4.0, 7.0];
        assert_eq!(mase_scale(&t, 2), Some(8.0 / 3.0));
        // Shorter than m: lag 1: (1+1+1+3)/4.
        assert_eq!(mase_scale(&t, 5), Some(1.5));
        assert_eq!(mase_scale(&[2.0; 10], 2), None);
        assert_eq!(mase_scale(&[1.0], 1), None);
        assert_eq!(mase_scale(&[1.0, f64::NAN, 3.0], 1), None);
    }

    #[test]
    fn mae_and_coverage() {
        assert_eq!(mae(&[1.0, 2.0, f64::NAN], &[2.0, 0.0, 1.0]), Some(1.5));
        assert_eq!(mae(&[], &[]), None);
        let cov = coverage(&[1.0, 5.0, 3.0, 9.0], &[0.0; 4], &[4.0; 4]);
        assert_eq!(cov, Some(0.5));
        assert_eq!(finite_mean([1.0, f64::NAN, 3.0]), Some(2.0));
    }
}
