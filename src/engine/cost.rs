//! OpenCost-style cost of one workload (or node) in one window.
//!
//! * `allocated = max(request, usage) × unit price × hours` (usage alone when
//!   there is no request),
//! * `capacity cost = capacity × unit price × hours`,
//! * `idle = capacity cost − allocated` (negative when a workload is allocated
//!   more than the capacity; not clamped, so sums stay consistent),
//!
//! where `hours` is the window length. CPU quantities are cores and are priced
//! per core-hour; memory quantities are bytes and are priced per GiB-hour
//! (1 GiB = 2^30 bytes). When the group has an instance type label listed in
//! the pricing table, the instance's hourly price is split between CPU and
//! memory in proportion to the table's per-unit prices (as OpenCost splits
//! custom node prices) and the resulting per-core / per-GiB prices are used.

use crate::engine::config::{PricingConfig, ResourceKind};
use crate::schema::Label;

/// Bytes in one GiB.
pub const GIB: f64 = 1_073_741_824.0;

/// Cost figures of one row, USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostBreakdown {
    /// `max(request, usage) × price × hours`.
    pub allocated_usd: Option<f64>,
    /// `capacity cost − allocated`.
    pub idle_usd: Option<f64>,
    /// `capacity × price × hours`.
    pub capacity_usd: Option<f64>,
}

/// Price of one unit (core or byte) for one hour for a group, `None` for
/// [`ResourceKind::Other`].
pub fn unit_price_per_hour(
    pricing: &PricingConfig,
    resource: ResourceKind,
    group: &[Label],
) -> Option<f64> {
    let instance = group
        .iter()
        .find(|(k, _)| *k == pricing.instance_type_label)
        .and_then(|(_, v)| pricing.instance_types.get(v));
    let cpu_weight = pricing.cpu_core_hour_usd;
    let mem_weight = pricing.memory_gib_hour_usd;
    match resource {
        ResourceKind::Other => None,
        ResourceKind::Cpu => Some(match instance {
            Some(t) if t.cpu_cores > 0.0 => {
                let cpu = t.cpu_cores * cpu_weight;
                let total = cpu + t.memory_gib.max(0.0) * mem_weight;
                if total > 0.0 {
                    t.hourly_usd * (cpu / total) / t.cpu_cores
                } else {
                    t.hourly_usd / t.cpu_cores
                }
            }
            _ => cpu_weight,
        }),
        ResourceKind::Memory => Some(
            match instance {
                Some(t) if t.memory_gib > 0.0 => {
                    let mem = t.memory_gib * mem_weight;
                    let total = mem + t.cpu_cores.max(0.0) * cpu_weight;
                    if total > 0.0 {
                        t.hourly_usd * (mem / total) / t.memory_gib
                    } else {
                        t.hourly_usd / t.memory_gib
                    }
                }
                _ => mem_weight,
            } / GIB,
        ),
    }
}

/// Computes the cost columns of one group in one window of `window_ms`.
pub fn compute(
    pricing: &PricingConfig,
    resource: ResourceKind,
    group: &[Label],
    usage: Option<f64>,
    request: Option<f64>,
    capacity: Option<f64>,
    window_ms: i64,
) -> CostBreakdown {
    let Some(price) = unit_price_per_hour(pricing, resource, group) else {
        return CostBreakdown::default();
    };
    let hours = window_ms as f64 / 3_600_000.0;
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    let allocated_units = match (finite(usage), finite(request)) {
        (Some(u), Some(r)) => Some(u.max(r)),
        (Some(u), None) => Some(u),
        (None, Some(r)) => Some(r),
        (None, None) => None,
    };
    let allocated_usd = allocated_units.map(|u| u * price * hours);
    let capacity_usd = finite(capacity).map(|c| c * price * hours);
    let idle_usd = match (capacity_usd, allocated_usd) {
        (Some(c), Some(a)) => Some(c - a),
        (Some(c), None) => Some(c),
        _ => None,
    };
    CostBreakdown {
        allocated_usd,
        idle_usd,
        capacity_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::InstanceTypePrice;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn cpu_cost_matches_hand_computed_figures() {
        // 1.5 cores used, 2 requested, 4 on the node, one hour at $0.031611:
        // allocated = max(2, 1.5) × 0.031611 = 0.063222
        // capacity  = 4 × 0.031611          = 0.126444
        // idle      = 0.126444 − 0.063222   = 0.063222
        let c = compute(
            &PricingConfig::default(),
            ResourceKind::Cpu,
            &[],
            Some(1.5),
            Some(2.0),
            Some(4.0),
            3_600_000,
        );
        assert!(close(c.allocated_usd, 0.063222), "{c:?}");
        assert!(close(c.capacity_usd, 0.126444), "{c:?}");
        assert!(close(c.idle_usd, 0.063222), "{c:?}");
    }

    #[test]
    fn memory_cost_uses_gib_hours_and_usage_above_request() {
        // 3 GiB used, 2 GiB requested, 8 GiB capacity, 30 minutes at $0.004237:
        // allocated = 3 × 0.004237 × 0.5 = 0.0063555
        // capacity  = 8 × 0.004237 × 0.5 = 0.016948
        // idle      = 0.0105925
        let c = compute(
            &PricingConfig::default(),
            ResourceKind::Memory,
            &[],
            Some(3.0 * GIB),
            Some(2.0 * GIB),
            Some(8.0 * GIB),
            1_800_000,
        );
        assert!(close(c.allocated_usd, 0.0063555), "{c:?}");
        assert!(close(c.capacity_usd, 0.016948), "{c:?}");
        assert!(close(c.idle_usd, 0.0105925), "{c:?}");
        let none = compute(
            &PricingConfig::default(),
            ResourceKind::Other,
            &[],
            Some(1.0),
            None,
            None,
            1,
        );
        assert_eq!(none, CostBreakdown::default());
    }

    #[test]
    fn instance_type_price_is_split_like_opencost() {
        let mut p = PricingConfig::default();
        p.instance_types.insert(
            "m5.large".into(),
            InstanceTypePrice {
                hourly_usd: 0.096,
                cpu_cores: 2.0,
                memory_gib: 8.0,
            },
        );
        let group = vec![("instance_type".to_string(), "m5.large".to_string())];
        let cpu = unit_price_per_hour(&p, ResourceKind::Cpu, &group).unwrap_or(f64::NAN);
        let mem = unit_price_per_hour(&p, ResourceKind::Memory, &group).unwrap_or(f64::NAN) * GIB;
        // The two parts add up to the instance price.
        assert!((cpu * 2.0 + mem * 8.0 - 0.096).abs() < 1e-12);
        let cpu_share = 2.0 * 0.031611 / (2.0 * 0.031611 + 8.0 * 0.004237);
        assert!((cpu - 0.096 * cpu_share / 2.0).abs() < 1e-12);
        // A full node's CPU for an hour costs the CPU part of the instance price.
        let c = compute(
            &p,
            ResourceKind::Cpu,
            &group,
            Some(0.5),
            None,
            Some(2.0),
            3_600_000,
        );
        assert!(close(c.capacity_usd, 0.096 * cpu_share));
        // Unknown instance types fall back to the per-unit prices.
        let other = vec![("instance_type".to_string(), "x".to_string())];
        assert_eq!(
            unit_price_per_hour(&p, ResourceKind::Cpu, &other),
            Some(0.031611)
        );
    }
}
