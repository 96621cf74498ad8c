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
