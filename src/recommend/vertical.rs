//! VPA-like CPU/memory request recommendations, and the hybrid (replicas + requests) choice.
//!
//! **Vertical** (Kubernetes VPA recommender): usage samples per replica are weighted by an
//! exponential decay with a half-life (24 h default); the request *target* is the weighted
//! `cpu_quantile` / `memory_quantile` (p90 default) plus a safety margin (15 % default), the
//! *lower bound* the p50 and the *upper bound* the p95, each with the same margin, all bounded
//! by `[min, max]` (defaults 25 millicores / 250 MiB up to 64 cores / 256 GiB).
//!
//! **Hybrid** chooses replicas and requests together, for a target whose load metric is total
//! CPU cores: the CPU request per replica is the vertical target `r`; replicas are
//! `ceil(D / (r × target utilization))` where `D` is the current load or, with a predictive
//! configuration and a forecast, the larger of the current load and the forecast quantile peak
//! over the look-ahead window. When that needs more than `max_replicas`, the request is raised
//! (up to `max_cpu_cores`) so that `max_replicas` suffice; when the request cannot grow enough
//! the recommendation is capped and says so. The memory request is the vertical target.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::decide::{Observation, Proposal};
use crate::recommend::policy::{HybridConfig, TargetPolicy, VerticalConfig};
use crate::recommend::predictive::{ForecastWindow, forecast_replicas};
use crate::recommend::{RecommendError, Result};

/// One usage sample of one replica (cores for CPU, GiB for memory).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UsageSample {
    /// Sample time.
    pub ts: DateTime<Utc>,
    /// Usage.
    pub value: f64,
}

/// Lower bound, target and upper bound of one resource request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceBounds {
    /// p50 + margin, bounded.
    pub lower: f64,
    /// configured quantile + margin, bounded: the recommended request.
    pub target: f64,
    /// p95 + margin, bounded.
    pub upper: f64,
}

/// A vertical recommendation for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerticalRecommendation {
    /// CPU request per replica, cores.
    pub cpu_cores: ResourceBounds,
    /// Memory request per replica, GiB.
    pub memory_gib: ResourceBounds,
    /// Why, in words.
    pub reason: String,
}

/// Weighted quantile of `(value, weight)` pairs (weights > 0), by the lower empirical
/// quantile of the cumulative weight. `None` for no positive total weight.
pub fn weighted_quantile(samples: &mut [(f64, f64)], q: f64) -> Option<f64> {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = samples.iter().map(|s| s.1).sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let goal = q.clamp(0.0, 1.0) * total;
    let mut acc = 0.0;
    for (v, w) in samples.iter() {
        acc += w;
        if acc >= goal - 1e-12 * total {
            return Some(*v);
        }
    }
    samples.last().map(|s| s.0)
}

fn decayed(samples: &[UsageSample], now: DateTime<Utc>, half_life_secs: u64) -> Vec<(f64, f64)> {
    let hl = half_life_secs.max(1) as f64;
    samples
        .iter()
        .filter(|s| s.value.is_finite() && s.value >= 0.0 && s.ts <= now)
        .map(|s| {
            let age = now.signed_duration_since(s.ts).num_milliseconds() as f64 / 1000.0;
            (s.value, (-(age / hl) * std::f64::consts::LN_2).exp())
        })
        .filter(|(_, w)| *w > 0.0)
        .collect()
}

fn bounds(
    samples: &[UsageSample],
    now: DateTime<Utc>,
    cfg: &VerticalConfig,
    q: f64,
    min: f64,
    max: f64,
    what: &str,
) -> Result<ResourceBounds> {
    let mut w = decayed(samples, now, cfg.half_life_secs);
    let m = 1.0 + cfg.safety_margin_percent / 100.0;
    let mut at = |q: f64| {
        weighted_quantile(&mut w, q)
            .map(|v| (v * m).clamp(min, max))
            .ok_or_else(|| {
                RecommendError::Input(format!("no usable {what} usage samples at or before {now}"))
            })
    };
    Ok(ResourceBounds {
        lower: at(0.5)?,
        target: at(q)?,
        upper: at(0.95)?,
    })
}

/// VPA-like requests from per-replica usage samples taken at or before `now`.
pub fn recommend(
    cfg: &VerticalConfig,
    now: DateTime<Utc>,
    cpu: &[UsageSample],
    memory: &[UsageSample],
) -> Result<VerticalRecommendation> {
    let c = bounds(
        cpu,
        now,
        cfg,
        cfg.cpu_quantile,
        cfg.min_cpu_cores,
        cfg.max_cpu_cores,
        "cpu",
    )?;
    let mem = bounds(
        memory,
        now,
        cfg,
        cfg.memory_quantile,
        cfg.min_memory_gib,
        cfg.max_memory_gib,
        "memory",
    )?;
    let reason = format!(
        "requests from usage p{:.0} cpu / p{:.0} memory (half-life {} s) + {} % margin: \
         cpu {:.3} cores (range {:.3}–{:.3}), memory {:.3} GiB (range {:.3}–{:.3})",
        cfg.cpu_quantile * 100.0,
        cfg.memory_quantile * 100.0,
        cfg.half_life_secs,
        cfg.safety_margin_percent,
        c.target,
        c.lower,
        c.upper,
        mem.target,
        mem.lower,
        mem.upper
    );
    Ok(VerticalRecommendation {
        cpu_cores: c,
        memory_gib: mem,
        reason,
    })
}

/// Hybrid: replicas and per-replica requests chosen together (see the module docs). Returns
/// the replica proposal (before the policy's limits) and the requests.
pub fn recommend_hybrid(
    policy: &TargetPolicy,
    cfg: &HybridConfig,
    obs: &Observation,
    forecast: Option<&ForecastWindow>,
    cpu: &[UsageSample],
    memory: &[UsageSample],
) -> Result<(Proposal, VerticalRecommendation)> {
    let mut v = recommend(&cfg.vertical, obs.ts, cpu, memory)?;
    let util = policy.target_utilization();
    let mut demand = obs.load.max(0.0);
    let mut demand_from = format!("current load {demand:.3} cores");
    let mut forecast_point = None;
    if let (Some(p), Some(f)) = (&cfg.predictive, forecast)
        && let Some((_, peak, point)) = forecast_replicas(policy, p, obs.ts, f)
    {
        forecast_point = Some((point, peak));
        if peak > demand {
            demand = peak;
            demand_from = format!(
                "forecast p{:.0} peak {peak:.3} cores (current {:.3})",
                p.quantile * 100.0,
                obs.load
            );
        }
    }
    let mut r = v.cpu_cores.target;
    let mut replicas = crate::recommend::policy::replicas_needed(demand, r * util);
    let max = policy.max_replicas.max(1);
    let why;
    if replicas > max {
        let needed = demand / (f64::from(max) * util);
        let raised = needed.min(cfg.vertical.max_cpu_cores);
        r = r.max(raised);
        replicas = crate::recommend::policy::replicas_needed(demand, r * util);
        why = if replicas > max {
            format!(
                "{demand_from} needs more than max_replicas {max} even at max_cpu_cores {}: \
                 capped, expect saturation",
                cfg.vertical.max_cpu_cores
            )
        } else {
            format!(
                "{demand_from} would need more than max_replicas {max} at the usage-based \
                 request {:.3}; request raised to {r:.3} cores so {replicas} replicas suffice",
                v.cpu_cores.target
            )
        };
        v.cpu_cores.target = r;
        v.cpu_cores.upper = v.cpu_cores.upper.max(r);
    } else if replicas < policy.min_replicas {
        why = format!(
            "{demand_from} fits in {replicas} replicas of {r:.3} cores; min_replicas {} keeps \
             more replicas, requests stay at the usage-based size",
            policy.min_replicas
        );
    } else {
        why = format!(
            "{demand_from} at {} % of {r:.3}-core requests needs {replicas} replicas: scale \
             horizontally for load, size requests from usage",
            policy.target_utilization_percent
        );
    }
    let reason = format!("{why}; {}", v.reason);
    let mut p = Proposal::new(replicas, "hybrid", reason);
    p.forecast_point = forecast_point;
    Ok((p, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::policy::Resources;
    use chrono::{TimeDelta, TimeZone};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    /// Ten samples 0.1, 0.2, ..., 1.0 (scaled), all at `now`.
    fn tenths(scale: f64) -> Vec<UsageSample> {
        (1..=10)
            .map(|i| UsageSample {
                ts: t(0),
                value: f64::from(i) * scale / 10.0,
            })
            .collect()
    }

    #[test]
    fn weighted_quantile_lower_empirical() {
        let mut v: Vec<(f64, f64)> = (1..=10).map(|i| (f64::from(i), 1.0)).collect();
        assert_eq!(weighted_quantile(&mut v, 0.9), Some(9.0));
        assert_eq!(weighted_quantile(&mut v, 0.5), Some(5.0));
        assert_eq!(weighted_quantile(&mut v, 1.0), Some(10.0));
        let mut skew = vec![(1.0, 1.0), (100.0, 9.0)];
        assert_eq!(weighted_quantile(&mut skew, 0.5), Some(100.0));
        assert_eq!(weighted_quantile(&mut [], 0.5), None);
    }

    #[test]
    fn vpa_target_is_p90_plus_15_percent_bounded() {
        let cfg = VerticalConfig::default();
        let v = recommend(&cfg, t(0), &tenths(1.0), &tenths(4.0)).expect("samples");
        assert!((v.cpu_cores.target - 0.9 * 1.15).abs() < 1e-12);
        assert!((v.cpu_cores.lower - 0.5 * 1.15).abs() < 1e-12);
        assert!((v.cpu_cores.upper - 1.0 * 1.15).abs() < 1e-12);
        assert!((v.memory_gib.target - 3.6 * 1.15).abs() < 1e-12);
        let tight = VerticalConfig {
            max_cpu_cores: 0.8,
            ..VerticalConfig::default()
        };
        let v = recommend(&tight, t(0), &tenths(1.0), &tenths(4.0)).expect("samples");
        assert_eq!(v.cpu_cores.target, 0.8, "bounded by max_cpu_cores");
        let idle = recommend(&cfg, t(0), &tenths(0.001), &tenths(0.01)).expect("samples");
        assert_eq!(idle.cpu_cores.target, 0.025, "25 millicores minimum");
        assert_eq!(idle.memory_gib.target, 250.0 / 1024.0, "250 MiB minimum");
    }

    #[test]
    fn old_samples_decay_with_the_half_life() {
        let cfg = VerticalConfig {
            half_life_secs: 3600,
            ..VerticalConfig::default()
        };
        // Nine old samples at 4 cores (10 half-lives ago: weight 1/1024 each) and one recent
        // sample at 1 core: the recent one dominates every quantile.
        let mut cpu: Vec<UsageSample> = (0..9)
            .map(|_| UsageSample {
                ts: t(-36_000),
                value: 4.0,
            })
            .collect();
        cpu.push(UsageSample {
            ts: t(0),
            value: 1.0,
        });
        let v = recommend(&cfg, t(0), &cpu, &tenths(1.0)).expect("samples");
        assert!(
            (v.cpu_cores.target - 1.15).abs() < 1e-12,
            "{}",
            v.cpu_cores.target
        );
        // Future samples are ignored; no usable sample is an error, not a panic.
        let future = [UsageSample {
            ts: t(60),
            value: 9.0,
        }];
        assert!(recommend(&cfg, t(0), &future, &tenths(1.0)).is_err());
    }

    #[test]
    fn hybrid_raises_requests_when_replicas_cap() {
        let mut p = TargetPolicy::example("h", 1.0, 2, 10);
        p.resources = Some(Resources {
            cpu_cores: 1.0,
            memory_gib: 2.0,
        });
        let cfg = HybridConfig::default();
        let at = |load: f64, cur: u32| Observation {
            ts: t(0),
            data_ts: t(0),
            load,
            current_replicas: cur,
        };
        // Request r = 1.035; 5 cores at 70 % → ceil(5 / 0.7245) = 7 replicas.
        let (prop, v) =
            recommend_hybrid(&p, &cfg, &at(5.0, 4), None, &tenths(1.0), &tenths(4.0)).expect("ok");
        assert_eq!(prop.replicas, 7);
        assert!((v.cpu_cores.target - 1.035).abs() < 1e-12);
        assert!(
            prop.reason.contains("scale horizontally"),
            "{}",
            prop.reason
        );
        // 10 cores would need 14 > max 10: request raised to 10 / (10 × 0.7) = 1.4286.
        let (prop, v) =
            recommend_hybrid(&p, &cfg, &at(10.0, 4), None, &tenths(1.0), &tenths(4.0)).expect("ok");
        assert_eq!(prop.replicas, 10);
        assert!((v.cpu_cores.target - 10.0 / 7.0).abs() < 1e-9);
        assert!(prop.reason.contains("request raised"), "{}", prop.reason);
        // Beyond max_cpu_cores too: capped and said so.
        let (prop, _) =
            recommend_hybrid(&p, &cfg, &at(1e4, 4), None, &tenths(1.0), &tenths(4.0)).expect("ok");
        assert!(prop.replicas > 10, "limits cap it later");
        assert!(prop.reason.contains("expect saturation"), "{}", prop.reason);
        // Small load: min_replicas keeps more replicas.
        let (prop, _) =
            recommend_hybrid(&p, &cfg, &at(0.5, 4), None, &tenths(1.0), &tenths(4.0)).expect("ok");
        assert_eq!(prop.replicas, 1);
        assert!(prop.reason.contains("min_replicas 2"), "{}", prop.reason);
    }
}
