//! Reactive threshold rules (the seed guide's recommender).
//!
//! The observed per-replica load is compared with two thresholds: above `scale_up_threshold`
//! the target grows by `scale_up_increment` replicas (or by `scale_up_factor`, rounded up, at
//! least one), below `scale_down_threshold` it shrinks by `scale_down_increment` (or by
//! `scale_down_factor`, rounded down, at least one). Between the thresholds nothing changes.
//!
//! Thresholds are utilization percent (`100 × load / (replicas × capacity_per_replica)`) for
//! `cpu`, `memory` and `custom` metrics (defaults 70/30 and 80/40) and requests per second per
//! replica for `requests` (defaults 1000/500). The 300 s cooldown of the seed guide is the
//! policy's `cooldown_secs` / `scale_up_cooldown_secs`, applied by [`crate::recommend::limits`].

use crate::recommend::decide::{Observation, Proposal};
use crate::recommend::policy::{ReactiveConfig, TargetPolicy};

/// The per-replica value compared with the thresholds (`+inf` with load on zero replicas).
pub fn per_replica_value(policy: &TargetPolicy, load: f64, replicas: u32) -> f64 {
    let load = load.max(0.0);
    if replicas == 0 {
        return if load > 0.0 { f64::INFINITY } else { 0.0 };
    }
    let per = load / f64::from(replicas);
    if policy.metric.kind.thresholds_per_replica() {
        per
    } else {
        100.0 * per / policy.capacity_per_replica
    }
}

/// Effective `(up, down)` thresholds.
pub fn thresholds(policy: &TargetPolicy, cfg: &ReactiveConfig) -> (f64, f64) {
    let (du, dd) = policy.metric.kind.default_thresholds();
    (
        cfg.scale_up_threshold.unwrap_or(du),
        cfg.scale_down_threshold.unwrap_or(dd),
    )
}

/// Proposes a replica count from the thresholds (limits are applied later).
pub fn recommend(policy: &TargetPolicy, cfg: &ReactiveConfig, obs: &Observation) -> Proposal {
    let current = obs.current_replicas;
    let (up, down) = thresholds(policy, cfg);
    let v = per_replica_value(policy, obs.load, current);
    let unit = if policy.metric.kind.thresholds_per_replica() {
        " per replica"
    } else {
        " %"
    };
    let (replicas, reason) = if v > up {
        let next = match cfg.scale_up_factor {
            Some(f) => {
                let scaled = (f64::from(current) * f).ceil();
                (scaled.min(u32::MAX as f64) as u32).max(current.saturating_add(1))
            }
            None => current.saturating_add(cfg.scale_up_increment.unwrap_or(1)),
        };
        (
            next,
            format!("load {v:.1}{unit} is above the scale-up threshold {up}{unit}"),
        )
    } else if v < down && current > 0 {
        let next = match cfg.scale_down_factor {
            Some(f) => {
                let scaled = (f64::from(current) * f).floor() as u32;
                scaled.min(current - 1)
            }
            None => current.saturating_sub(cfg.scale_down_increment.unwrap_or(1)),
        };
        (
            next,
            format!("load {v:.1}{unit} is below the scale-down threshold {down}{unit}"),
        )
    } else {
        (
            current,
            format!("load {v:.1}{unit} is within the thresholds {down}–{up}{unit}"),
        )
    };
    Proposal::new(replicas, "reactive", reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::policy::MetricKind;
    use chrono::{TimeZone, Utc};

    fn obs(load: f64, current: u32) -> Observation {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Observation {
            ts: t,
            data_ts: t,
            load,
            current_replicas: current,
        }
    }

    fn cpu_policy() -> TargetPolicy {
        let mut p = TargetPolicy::example("t", 10.0, 1, 20);
        p.metric.kind = MetricKind::Cpu;
        p
    }

    #[test]
    fn cpu_thresholds_70_30() {
        let p = cpu_policy();
        let c = ReactiveConfig::default();
        // 4 replicas × 10 = 40 capacity.
        assert_eq!(recommend(&p, &c, &obs(32.0, 4)).replicas, 5, "80 % > 70 %");
        assert_eq!(
            recommend(&p, &c, &obs(28.0, 4)).replicas,
            4,
            "70 % is not above 70 %"
        );
        assert_eq!(
            recommend(&p, &c, &obs(20.0, 4)).replicas,
            4,
            "50 % is inside"
        );
        assert_eq!(
            recommend(&p, &c, &obs(12.0, 4)).replicas,
            4,
            "30 % is not below 30 %"
        );
        assert_eq!(recommend(&p, &c, &obs(8.0, 4)).replicas, 3, "20 % < 30 %");
        let r = recommend(&p, &c, &obs(32.0, 4));
        assert_eq!(r.by, "reactive");
        assert!(r.reason.contains("80.0 %"), "{}", r.reason);
    }

    #[test]
    fn memory_and_requests_defaults() {
        let mut p = cpu_policy();
        p.metric.kind = MetricKind::Memory;
        let c = ReactiveConfig::default();
        assert_eq!(recommend(&p, &c, &obs(30.0, 4)).replicas, 4, "75 % < 80 %");
        assert_eq!(recommend(&p, &c, &obs(34.0, 4)).replicas, 5, "85 % > 80 %");
        assert_eq!(
            recommend(&p, &c, &obs(15.0, 4)).replicas,
            3,
            "37.5 % < 40 %"
        );
        p.metric.kind = MetricKind::Requests;
        p.capacity_per_replica = 1500.0;
        // requests: rps per replica against 1000 / 500.
        assert_eq!(
            recommend(&p, &c, &obs(4400.0, 4)).replicas,
            5,
            "1100 rps > 1000"
        );
        assert_eq!(
            recommend(&p, &c, &obs(2400.0, 4)).replicas,
            4,
            "600 rps inside"
        );
        assert_eq!(
            recommend(&p, &c, &obs(1600.0, 4)).replicas,
            3,
            "400 rps < 500"
        );
    }

    #[test]
    fn increments_and_factors() {
        let p = cpu_policy();
        let inc = ReactiveConfig {
            scale_up_increment: Some(3),
            scale_down_increment: Some(2),
            ..Default::default()
        };
        assert_eq!(recommend(&p, &inc, &obs(36.0, 4)).replicas, 7);
        assert_eq!(recommend(&p, &inc, &obs(4.0, 4)).replicas, 2);
        let fac = ReactiveConfig {
            scale_up_factor: Some(1.5),
            scale_down_factor: Some(0.75),
            ..Default::default()
        };
        assert_eq!(
            recommend(&p, &fac, &obs(36.0, 4)).replicas,
            6,
            "ceil(4 × 1.5)"
        );
        assert_eq!(
            recommend(&p, &fac, &obs(2.0, 1)).replicas,
            0,
            "down by at least one"
        );
        assert_eq!(
            recommend(&p, &fac, &obs(10.0, 1)).replicas,
            2,
            "ceil(1.5) = 2"
        );
        assert_eq!(
            recommend(&p, &fac, &obs(4.0, 4)).replicas,
            3,
            "floor(4 × 0.75)"
        );
        let custom = ReactiveConfig {
            scale_up_threshold: Some(90.0),
            scale_down_threshold: Some(10.0),
            ..Default::default()
        };
        assert_eq!(recommend(&p, &custom, &obs(32.0, 4)).replicas, 4);
    }

    #[test]
    fn zero_replicas_with_load_scales_up() {
        let p = cpu_policy();
        let c = ReactiveConfig::default();
        assert_eq!(recommend(&p, &c, &obs(5.0, 0)).replicas, 1);
        assert_eq!(recommend(&p, &c, &obs(0.0, 0)).replicas, 0);
    }
}
