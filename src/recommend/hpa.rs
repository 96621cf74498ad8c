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
    // A small epsilon keeps 7.7 / 7.0 = 1.1000000000000001 inside a 0.1 band.
    if (ratio - 1.0).abs() <= cfg.tolerance + 1e-9 {
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

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn target_tracking_with_tolerance_band() {
        // capacity 1 per replica, target 70 %: 10 replicas carry 7.0 at target.
        let p = TargetPolicy::example("t", 1.0, 1, 100);
        let c = HpaConfig::default();
        assert_eq!(recommend(&p, &c, &obs(7.0, 10)).replicas, 10);
        assert_eq!(
            recommend(&p, &c, &obs(7.7, 10)).replicas,
            10,
            "ratio 1.10 is inside"
        );
        assert_eq!(
            recommend(&p, &c, &obs(6.3, 10)).replicas,
            10,
            "ratio 0.90 is inside"
        );
        // ratio 8/7 = 1.143 → ceil(10 × 1.143) = 12.
        assert_eq!(recommend(&p, &c, &obs(8.0, 10)).replicas, 12);
        // ratio 3.5/7 = 0.5 → 5.
        assert_eq!(recommend(&p, &c, &obs(3.5, 10)).replicas, 5);
        assert_eq!(recommend(&p, &c, &obs(0.0, 10)).replicas, 0);
        let tight = HpaConfig { tolerance: 0.0 };
        assert_eq!(recommend(&p, &tight, &obs(7.7, 10)).replicas, 11);
    }

    #[test]
    fn reason_shows_the_formula() {
        let p = TargetPolicy::example("t", 1.0, 1, 100);
        let r = recommend(&p, &HpaConfig::default(), &obs(14.0, 10));
        assert_eq!(r.replicas, 20);
        assert!(r.reason.contains("ceil(10 × 2.000) = 20"), "{}", r.reason);
        let r = recommend(&p, &HpaConfig::default(), &obs(2.0, 0));
        assert_eq!(r.replicas, 3, "from zero: ceil(2 / 0.7)");
    }
}
