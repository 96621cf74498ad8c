//! HPA-like target tracking (Kubernetes `autoscaling/v2` algorithm).
//!
//! `desired = ceil(current × currentMetric / target)`, where the metric is the per-replica
//! utilization `load / (current × capacity_per_replica)` and the target is
//! `target_utilization_percent`; this equals `ceil(load / (capacity_per_replica × target))`.
//! When `|currentMetric / target − 1| <= tolerance` (0.1 by default) the current count is kept.
//! Scale-down stabilization (300 s by default) and the rate policies (max step up/down per
//! decision) are the policy's limits, applied by [`crate::recommend::limits`]; the simulator's
//! HPA baseline uses HPA's defaults (+100 % or +4 per decision, whichever is larger; −100 %).

use crate::recommend::decide::{Observation, Proposal};
use crate::recommend::policy::{HpaConfig, TargetPolicy};

/// Proposes a replica count by target tracking (limits are applied later).
pub fn recommend(policy: &TargetPolicy, cfg: &HpaConfig, obs: &Observation) -> Proposal {
    let current = obs.current_replicas;
    let load = obs.load.max(0.0);
    let target = policy.target_utilization_percent;
    let desired = policy.replicas_for_load(load);
    if current == 0 {
        return Proposal::new(
            desired,
            "hpa",
            format!("no replicas running; {desired} carry load {load:.3} at {target} %"),
        );
    }
    let util = 100.0 * load / (f64::from(current) * policy.capacity_per_replica);
    let ratio = util / target;
    if (ratio - 1.0).abs() <= cfg.tolerance {
        return Proposal::new(
            current,
            "hpa",
            format!(
                "utilization {util:.1} % is within {:.0} % of the target {target} %",
                cfg.tolerance * 100.0
            ),
        );
    }
    Proposal::new(
        desired,
        "hpa",
        format!(
            "utilization {util:.1} % vs target {target} %: ceil({current} × {ratio:.3}) = {desired}"
        ),
    )
}
