//! Utilization: usage of a resource per group (workload, node) against its
//! request and its capacity.
//!
//! Each of usage, request and capacity is a [`MeasureConfig`]: either a metric
//! (a per-series function over the window, then a function across the group's
//! series, times `scale`) or a static value with per-group overrides. Then
//!
//! * `usage` = the usage measure, or `capacity − measure` with `from_idle`,
//! * `utilization = usage / request`, `saturation = usage / capacity`
//!   (null when the divisor is missing or zero).
//!
//! Per-instance CPU busy fraction the way Prometheus computes
//! `1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))`:
//! usage from the idle counter's rate summed over CPUs with `from_idle`,
//! capacity = count of the idle series (one per CPU), so
//! `saturation = 1 − Σ idle rate / #CPUs` (see `docs/engine.md`).

use crate::engine::Result;
use crate::engine::aggregate::{across_value, series_value};
use crate::engine::config::{MeasureConfig, UtilizationTransformConfig};
use crate::engine::cost::{self, CostBreakdown};
use crate::engine::matcher::Selector;
use crate::engine::schema::UtilizationValues;
use crate::engine::state::SeriesData;
use crate::schema::Label;

/// Role bit of series selected by the usage measure.
pub const ROLE_USAGE: u8 = 1;
/// Role bit of series selected by the request measure.
pub const ROLE_REQUEST: u8 = 2;
/// Role bit of series selected by the capacity measure.
pub const ROLE_CAPACITY: u8 = 4;

/// A built utilization transform.
#[derive(Debug, Clone)]
pub struct UtilizationSpec {
    /// The configuration.
    pub config: UtilizationTransformConfig,
    usage: Option<Selector>,
    request: Option<Selector>,
    capacity: Option<Selector>,
}

impl UtilizationSpec {
    /// Builds the selectors of a validated configuration.
    pub fn new(config: UtilizationTransformConfig) -> Result<Self> {
        config.validate()?;
        let usage = config.usage.selector()?;
        let request = match &config.request {
            Some(m) => m.selector()?,
            None => None,
        };
        let capacity = match &config.capacity {
            Some(m) => m.selector()?,
            None => None,
        };
        Ok(Self {
            config,
            usage,
            request,
            capacity,
        })
    }

    /// True when some measure selects metric `name` (cheap pre-filter).
    pub fn wants_metric(&self, name: &str) -> bool {
        [&self.usage, &self.request, &self.capacity]
            .into_iter()
            .flatten()
            .any(|s| s.metric == name)
    }

    /// Role bits of a series (0 when not selected).
    pub fn roles(&self, name: &str, labels: &[Label]) -> u8 {
        let get = |k: &str| labels.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        let mut roles = 0;
        for (sel, bit) in [
            (&self.usage, ROLE_USAGE),
            (&self.request, ROLE_REQUEST),
            (&self.capacity, ROLE_CAPACITY),
        ] {
            if sel.as_ref().is_some_and(|s| s.matches(name, get)) {
                roles |= bit;
            }
        }
        roles
    }

    /// Usage, request, capacity, ratios and cost of one group in `[start, end)`.
    /// `series` are the group's series in ascending id order.
    pub fn compute(
        &self,
        group: &[Label],
        series: &[&SeriesData],
        start: i64,
        end: i64,
    ) -> (UtilizationValues, CostBreakdown) {
        let c = &self.config;
        let raw_usage = measure(&c.usage, ROLE_USAGE, group, series, start, end);
        let request = c
            .request
            .as_ref()
            .and_then(|m| measure(m, ROLE_REQUEST, group, series, start, end));
        let capacity = c
            .capacity
            .as_ref()
            .and_then(|m| measure(m, ROLE_CAPACITY, group, series, start, end));
        let values = derive(raw_usage, request, capacity, c.usage.from_idle);
        let cost = match &c.pricing {
            Some(p) => cost::compute(
                p,
                c.resource,
                group,
                values.usage,
                values.request,
                values.capacity,
                end.saturating_sub(start),
            ),
            None => CostBreakdown::default(),
        };
        (values, cost)
    }
}

/// Evaluates one measure for a group: static value, or per-series function
/// over the series carrying `role`, combined across series, times `scale`.
pub fn measure(
    m: &MeasureConfig,
    role: u8,
    group: &[Label],
    series: &[&SeriesData],
    start: i64,
    end: i64,
) -> Option<f64> {
    if m.metric.is_none() {
        return m.static_value(group);
    }
    let per_series: Vec<f64> = series
        .iter()
        .filter(|s| s.meta.roles & role != 0)
        .filter_map(|s| series_value(m.per_series, &s.points, start, end))
        .collect();
    across_value(m.across, &per_series).map(|v| v * m.scale)
}

/// Derives the output figures from the measured quantities.
pub fn derive(
    usage: Option<f64>,
    request: Option<f64>,
    capacity: Option<f64>,
    from_idle: bool,
) -> UtilizationValues {
    let usage = if from_idle {
        match (capacity, usage) {
            (Some(c), Some(idle)) => Some(c - idle),
            _ => None,
        }
    } else {
        usage
    };
    let ratio = |num: Option<f64>, den: Option<f64>| match (num, den) {
        (Some(n), Some(d)) if d != 0.0 && d.is_finite() && n.is_finite() => Some(n / d),
        _ => None,
    };
    UtilizationValues {
        usage,
        request,
        capacity,
        utilization: ratio(usage, request),
        saturation: ratio(usage, capacity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::SeriesMeta;

    #[test]
    fn idle_counter_gives_prometheus_busy_fraction() {
        let yaml = r#"
resource: cpu
window: { type: tumbling, size_secs: 60 }
group_by: [instance]
usage: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: rate, across: sum, from_idle: true }
capacity: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: last, across: count }
request: { value: 1.5 }
"#;
        let cfg: UtilizationTransformConfig = serde_yaml::from_str(yaml).unwrap();
        let spec = UtilizationSpec::new(cfg).unwrap();
        let idle = vec![
            ("cpu".to_string(), "0".to_string()),
            ("mode".to_string(), "idle".to_string()),
        ];
        assert_eq!(
            spec.roles("node_cpu_seconds_total", &idle),
            ROLE_USAGE | ROLE_CAPACITY
        );
        let user = vec![("mode".to_string(), "user".to_string())];
        assert_eq!(spec.roles("node_cpu_seconds_total", &user), 0);
        assert!(spec.wants_metric("node_cpu_seconds_total"));
        // Two CPUs sampled every 15 s on the window boundaries: cpu0 idle 75 %,
        // cpu1 idle 25 % → Prometheus: 1 − avg(0.75, 0.25) = 0.5.
        let meta = SeriesMeta {
            group: 0,
            roles: ROLE_USAGE | ROLE_CAPACITY,
        };
        let mk = |id, per_sec: f64| SeriesData {
            id,
            meta,
            points: (0..5)
                .map(|i| (i * 15_000, 1000.0 + per_sec * 15.0 * i as f64))
                .collect(),
        };
        let (a, b) = (mk(1, 0.75), mk(2, 0.25));
        let (v, cost) = spec.compute(&[], &[&a, &b], 0, 60_000);
        assert_eq!(v.capacity, Some(2.0));
        let usage = v.usage.unwrap();
        assert!((usage - 1.0).abs() < 1e-9, "{usage}");
        assert!((v.saturation.unwrap() - 0.5).abs() < 1e-9);
        assert!((v.utilization.unwrap() - 1.0 / 1.5).abs() < 1e-9);
        assert_eq!(cost, CostBreakdown::default());
    }

    #[test]
    fn derive_handles_missing_and_zero_divisors() {
        let v = derive(Some(2.0), None, Some(0.0), false);
        assert_eq!(v.utilization, None);
        assert_eq!(v.saturation, None);
        let v = derive(Some(1.0), Some(4.0), Some(8.0), false);
        assert_eq!((v.utilization, v.saturation), (Some(0.25), Some(0.125)));
        assert_eq!(derive(Some(1.0), None, None, true).usage, None);
    }
}
