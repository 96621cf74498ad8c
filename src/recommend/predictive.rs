//! Predictive sizing from a forecast, combined with a reactive recommender (as AWS does).
//!
//! `replicas = ceil(max over the look-ahead window of the forecast quantile /
//! (capacity_per_replica × target utilization))`. The look-ahead window is
//! `(now, now + lookahead]` with `lookahead = provisioning_lead_time + evaluation interval` by
//! default: capacity decided now becomes usable after the lead time and has to carry the load
//! until the next decision's capacity is usable. The quantile is configurable (p90 default);
//! the forecast carries p10/p50/p90 and other quantiles are read from a normal approximation
//! whose spread comes from the p10–p50 (lower half) or p50–p90 (upper half) distance.
//!
//! The result is `max(predictive, reactive)`, so a spike the forecast missed is still caught by
//! the reactive part (HPA-like by default). Without a usable forecast (too little history, a
//! failed model, a window the forecast does not cover) only the reactive part decides, and the
//! reason says so.
//!
//! [`ForecastWindow`] is this module's own view of a forecast (absolute timestamps plus
//! quantiles); [`ForecastWindow::from_forecast`] converts the forecasting stage's output.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::decide::{Observation, Proposal};
use crate::recommend::policy::{PredictiveConfig, TargetPolicy};

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantilePoint {
    /// Time the forecast value refers to.
    pub ts: DateTime<Utc>,
    /// Mean forecast.
    pub mean: f64,
    /// 10 % quantile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90 % quantile.
    pub p90: f64,
}

/// z-score of the 90 % quantile of a standard normal.
const Z90: f64 = 1.281_551_565_545;

impl QuantilePoint {
    /// The `q` quantile: exact at 0.1, 0.5 and 0.9, otherwise a normal approximation with
    /// `σ = (p90 − p50) / z0.9` above the median and `σ = (p50 − p10) / z0.9` below.
    pub fn quantile(&self, q: f64) -> f64 {
        if (q - 0.9).abs() < 1e-12 {
            return self.p90;
        }
        if (q - 0.5).abs() < 1e-12 {
            return self.p50;
        }
        if (q - 0.1).abs() < 1e-12 {
            return self.p10;
        }
        let z = inverse_normal_cdf(q);
        let sigma = if z >= 0.0 {
            (self.p90 - self.p50).max(0.0) / Z90
        } else {
            (self.p50 - self.p10).max(0.0) / Z90
        };
        self.p50 + z * sigma
    }

    /// Probability that the value exceeds `capacity`, from the same split normal.
    pub fn prob_above(&self, capacity: f64) -> f64 {
        let d = capacity - self.p50;
        let sigma = if d >= 0.0 {
            (self.p90 - self.p50).max(0.0) / Z90
        } else {
            (self.p50 - self.p10).max(0.0) / Z90
        };
        if sigma <= 0.0 || !sigma.is_finite() {
            return if self.p50 > capacity { 1.0 } else { 0.0 };
        }
        1.0 - normal_cdf(d / sigma)
    }
}

/// A forecast as the recommenders consume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastWindow {
    /// Model that produced it.
    pub model: String,
    /// Time of the last observation the model had seen.
    pub issued_at: DateTime<Utc>,
    /// Forecast steps in time order.
    pub points: Vec<QuantilePoint>,
}

impl ForecastWindow {
    /// Converts a forecast of the forecasting stage (`issued_at`: time of the last
    /// observation the model had seen).
    pub fn from_forecast(issued_at: DateTime<Utc>, f: &crate::forecast::Forecast) -> Self {
        let n = f
            .mean
            .len()
            .min(f.p10.len())
            .min(f.p50.len())
            .min(f.p90.len());
        let points = (0..n)
            .filter_map(|i| {
                let ts = DateTime::<Utc>::from_timestamp_millis(
                    f.start_ms
                        .saturating_add(f.step_ms.saturating_mul(i as i64)),
                )?;
                Some(QuantilePoint {
                    ts,
                    mean: f.mean[i],
                    p10: f.p10[i],
                    p50: f.p50[i],
                    p90: f.p90[i],
                })
            })
            .collect();
        ForecastWindow {
            model: f.model.clone(),
            issued_at,
            points,
        }
    }

    /// Steps with `now < ts <= now + lookahead_secs`.
    pub fn window(&self, now: DateTime<Utc>, lookahead_secs: u64) -> Vec<&QuantilePoint> {
        let end = now
            .checked_add_signed(crate::recommend::limits::secs(lookahead_secs))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.points
            .iter()
            .filter(|p| p.ts > now && p.ts <= end && p.p50.is_finite() && p.p90.is_finite())
            .collect()
    }
}

/// Effective look-ahead in seconds for a policy.
pub fn lookahead_secs(policy: &TargetPolicy, cfg: &PredictiveConfig) -> u64 {
    cfg.lookahead_secs.unwrap_or(
        cfg.provisioning_lead_time_secs
            .saturating_add(policy.evaluation_interval_secs),
    )
}

/// The forecast-only part: replicas for the peak quantile over the look-ahead window, with the
/// point that set it. `None` when the forecast does not cover the window.
pub fn forecast_replicas(
    policy: &TargetPolicy,
    cfg: &PredictiveConfig,
    now: DateTime<Utc>,
    forecast: &ForecastWindow,
) -> Option<(u32, f64, QuantilePoint)> {
    let window = forecast.window(now, lookahead_secs(policy, cfg));
    let (peak, point) = window
        .iter()
        .map(|p| (p.quantile(cfg.quantile).max(0.0), **p))
        .filter(|(v, _)| v.is_finite())
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some((policy.replicas_for_load(peak), peak, point))
}

/// Probability that the load exceeds `replicas × usable capacity` at some step of the window
/// (the highest per-step probability).
pub fn under_provisioning_probability(
    policy: &TargetPolicy,
    cfg: &PredictiveConfig,
    now: DateTime<Utc>,
    forecast: &ForecastWindow,
    replicas: u32,
) -> Option<f64> {
    let cap = f64::from(replicas) * policy.usable_capacity_per_replica();
    forecast
        .window(now, lookahead_secs(policy, cfg))
        .iter()
        .map(|p| p.prob_above(cap))
        .max_by(f64::total_cmp)
}

/// Combines the forecast sizing with the reactive proposal: `max(predictive, reactive)`.
pub fn recommend(
    policy: &TargetPolicy,
    cfg: &PredictiveConfig,
    obs: &Observation,
    forecast: Option<&ForecastWindow>,
    reactive: Option<Proposal>,
) -> Proposal {
    let q = cfg.quantile;
    let pred = forecast.and_then(|f| forecast_replicas(policy, cfg, obs.ts, f));
    match (pred, reactive) {
        (Some((r, peak, point)), reactive) => {
            let mut reason = format!(
                "forecast p{:.0} peak {peak:.3} at {} within the next {} s needs {r} replicas at {} %",
                q * 100.0,
                point.ts.format("%Y-%m-%dT%H:%M:%SZ"),
                lookahead_secs(policy, cfg),
                policy.target_utilization_percent
            );
            match reactive {
                Some(re) if re.replicas > r => {
                    reason.push_str(&format!(
                        "; the reactive part asks for more ({}: {}) and wins",
                        re.replicas, re.reason
                    ));
                    let mut p = Proposal::new(re.replicas, re.by, reason);
                    p.forecast_point = Some((point, peak));
                    p
                }
                _ => {
                    let mut p = Proposal::new(r, "predictive", reason);
                    p.forecast_point = Some((point, peak));
                    p
                }
            }
        }
        (None, Some(re)) => {
            let why = if forecast.is_some() {
                "the forecast does not cover the look-ahead window"
            } else {
                "no forecast yet"
            };
            Proposal::new(
                re.replicas,
                re.by,
                format!("{why}; reactive: {}", re.reason),
            )
        }
        (None, None) => Proposal::new(
            obs.current_replicas,
            "predictive",
            "no forecast and no reactive fallback configured: keeping the current count"
                .to_string(),
        ),
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    let erf = if z >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

/// Inverse standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9);
/// `q` is clamped to (1e-12, 1 − 1e-12).
pub fn inverse_normal_cdf(q: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = q.clamp(1e-12, 1.0 - 1e-12);
    let plow = 0.024_25;
    if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::decide::{Inputs, TargetRecommender};
    use crate::recommend::policy::RecommenderConfig;
    use chrono::{TimeDelta, TimeZone};
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn flat(ts: i64, p50: f64, p90: f64) -> QuantilePoint {
        QuantilePoint {
            ts: t(ts),
            mean: p50,
            p10: p50 - (p90 - p50),
            p50,
            p90,
        }
    }

    fn window(points: Vec<QuantilePoint>) -> ForecastWindow {
        ForecastWindow {
            model: "test".into(),
            issued_at: t(0),
            points,
        }
    }

    fn policy() -> (TargetPolicy, PredictiveConfig) {
        // capacity 10 at 70 % → 7 per replica; lead 300 + interval 60 → 360 s look-ahead.
        let mut p = TargetPolicy::example("t", 10.0, 2, 30);
        let c = PredictiveConfig {
            provisioning_lead_time_secs: 300,
            ..PredictiveConfig::default()
        };
        p.recommender = RecommenderConfig::Predictive(c.clone());
        (p, c)
    }

    fn obs(load: f64, current: u32) -> Observation {
        Observation {
            ts: t(0),
            data_ts: t(0),
            load,
            current_replicas: current,
        }
    }

    #[test]
    fn quantiles_from_the_split_normal() {
        let p = QuantilePoint {
            ts: t(0),
            mean: 10.0,
            p10: 8.0,
            p50: 10.0,
            p90: 10.0 + Z90,
        };
        assert_eq!(p.quantile(0.9), p.p90);
        assert_eq!(p.quantile(0.5), 10.0);
        assert_eq!(p.quantile(0.1), 8.0);
        assert!((p.quantile(0.975) - (10.0 + 1.959_964)).abs() < 1e-5);
        // Lower half uses σ = 2 / z0.9.
        assert!((p.quantile(0.025) - (10.0 - 1.959_964 * 2.0 / Z90)).abs() < 1e-5);
        assert!((p.prob_above(10.0 + Z90) - 0.1).abs() < 1e-6);
        assert!((p.prob_above(10.0) - 0.5).abs() < 1e-6);
        let certain = flat(0, 5.0, 5.0);
        assert_eq!(certain.prob_above(4.0), 1.0);
        assert_eq!(certain.prob_above(6.0), 0.0);
    }

    #[test]
    fn normal_helpers_are_inverse() {
        for q in [0.001, 0.02, 0.1, 0.5, 0.9, 0.99, 0.9999] {
            let z = inverse_normal_cdf(q);
            assert!((normal_cdf(z) - q).abs() < 2e-7, "q {q} z {z}");
        }
    }

    #[test]
    fn sizes_for_the_peak_quantile_in_the_window() {
        let (p, c) = policy();
        assert_eq!(lookahead_secs(&p, &c), 360);
        // Steps at 60..600 s; only 60..360 count. The p90 peak inside is 34.5 → ceil(34.5/7) = 5;
        // the 70.0 at 420 s is outside the look-ahead.
        let f = window(vec![
            flat(60, 20.0, 25.0),
            flat(180, 30.0, 34.5),
            flat(360, 20.0, 22.0),
            flat(420, 60.0, 70.0),
        ]);
        let r = recommend(&p, &c, &obs(14.0, 2), Some(&f), None);
        assert_eq!((r.replicas, r.by), (5, "predictive"));
        let (point, value) = r.forecast_point.expect("forecast used");
        assert_eq!((point.ts, value), (t(180), 34.5));
        // p50 instead: 30 / 7 → 5 as well; 28 → 4.
        let c50 = PredictiveConfig {
            quantile: 0.5,
            ..c.clone()
        };
        let f2 = window(vec![flat(60, 28.0, 40.0)]);
        assert_eq!(
            recommend(&p, &c50, &obs(1.0, 2), Some(&f2), None).replicas,
            4
        );
    }

    #[test]
    fn max_of_predictive_and_reactive() {
        let (p, c) = policy();
        let f = window(vec![flat(60, 20.0, 34.5)]);
        let low = Proposal::new(3, "hpa", "reactive says 3");
        assert_eq!(
            recommend(&p, &c, &obs(14.0, 2), Some(&f), Some(low)).replicas,
            5
        );
        let spike = Proposal::new(9, "hpa", "reactive says 9");
        let r = recommend(&p, &c, &obs(60.0, 2), Some(&f), Some(spike));
        assert_eq!((r.replicas, r.by), (9, "hpa"));
        assert!(
            r.reason.contains("reactive part asks for more"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn falls_back_without_forecast() {
        let (p, c) = policy();
        let re = Proposal::new(4, "hpa", "hpa");
        let r = recommend(&p, &c, &obs(14.0, 2), None, Some(re.clone()));
        assert_eq!((r.replicas, r.by), (4, "hpa"));
        assert!(r.reason.starts_with("no forecast yet"));
        // A stale forecast that ends before now does not cover the window.
        let stale = window(vec![flat(-60, 100.0, 100.0)]);
        let r = recommend(&p, &c, &obs(14.0, 2), Some(&stale), Some(re));
        assert_eq!(r.replicas, 4);
        assert!(r.reason.contains("does not cover"), "{}", r.reason);
        let r = recommend(&p, &c, &obs(14.0, 2), None, None);
        assert_eq!(r.replicas, 2, "nothing to go on: keep current");
    }

    #[test]
    fn under_provisioning_probability_over_the_window() {
        let (p, c) = policy();
        let f = window(vec![
            flat(60, 20.0, 20.0 + Z90),
            flat(120, 28.0, 28.0 + Z90),
        ]);
        // 4 replicas carry 28 at target: the second step's median sits exactly there → 0.5.
        let prob = under_provisioning_probability(&p, &c, t(0), &f, 4).expect("covered");
        assert!((prob - 0.5).abs() < 1e-6, "{prob}");
        let prob = under_provisioning_probability(&p, &c, t(0), &f, 10).expect("covered");
        assert!(prob < 1e-6);
    }

    proptest! {
        #[test]
        fn never_below_min_or_above_max(
            min in 0u32..10,
            span in 1u32..40,
            current in 0u32..80,
            load in 0.0f64..1e4,
            levels in proptest::collection::vec((0.0f64..1e5, 0.0f64..1e4), 1..8),
        ) {
            let (mut p, c) = policy();
            p.min_replicas = min;
            p.max_replicas = min + span;
            let mut rec = TargetRecommender::new(p, "prop").expect("valid");
            let f = window(
                levels
                    .iter()
                    .enumerate()
                    .map(|(i, (m, w))| flat(60 * (i as i64 + 1), *m, m + w))
                    .collect(),
            );
            let o = Observation { ts: t(0), data_ts: t(0), load, current_replicas: current };
            let r = rec.decide(Inputs::new(o).with_forecast(Some(&f))).expect("decides");
            prop_assert!(r.recommended_replicas >= min);
            prop_assert!(r.recommended_replicas <= min + span);
            let _ = c;
        }
    }
}
