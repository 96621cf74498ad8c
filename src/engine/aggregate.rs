//! Aggregate functions over the samples of one window.
//!
//! Every function works on each series' samples sorted by time with duplicate
//! timestamps removed ([`crate::engine::state`] does that), and walks series in
//! `series_id` order, so the result depends only on the set of samples, never
//! on arrival order or batch boundaries: re-feeding the same samples gives
//! bit-identical values.
//!
//! * `count`, `sum`, `min`, `max`, `avg`: over every sample of every series of
//!   the group.
//! * `last`: the value of the latest sample of the group (ties between series
//!   at the same timestamp go to the highest `series_id`).
//! * `p50`, `p90`, `p95`, `p99`: from a [`DDSketch`] (relative error 1 %) of
//!   every sample of the group; sketches are mergeable, bins are
//!   order-independent.
//! * `rate`, `increase`: per series, Prometheus' `extrapolatedRate` over the
//!   window (see [`extrapolated_delta`]), then summed over the group's series —
//!   the same as `sum by (group) (rate(metric[size]))` evaluated at the window end.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// One aggregate a `window` transform can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    /// Number of samples.
    Count,
    /// Sum of sample values.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean value.
    Avg,
    /// Value of the latest sample.
    Last,
    /// Median (DDSketch).
    P50,
    /// 90th percentile (DDSketch).
    P90,
    /// 95th percentile (DDSketch).
    P95,
    /// 99th percentile (DDSketch).
    P99,
    /// Per-second counter rate (Prometheus `rate`), summed over series.
    Rate,
    /// Counter increase over the window (Prometheus `increase`), summed over series.
    Increase,
}

impl AggregateKind {
    /// Every aggregate, in column order.
    pub const ALL: [AggregateKind; 12] = [
        AggregateKind::Count,
        AggregateKind::Sum,
        AggregateKind::Min,
        AggregateKind::Max,
        AggregateKind::Avg,
        AggregateKind::Last,
        AggregateKind::P50,
        AggregateKind::P90,
        AggregateKind::P95,
        AggregateKind::P99,
        AggregateKind::Rate,
        AggregateKind::Increase,
    ];

    /// The config / column name.
    pub fn name(&self) -> &'static str {
        match self {
            AggregateKind::Count => "count",
            AggregateKind::Sum => "sum",
            AggregateKind::Min => "min",
            AggregateKind::Max => "max",
            AggregateKind::Avg => "avg",
            AggregateKind::Last => "last",
            AggregateKind::P50 => "p50",
            AggregateKind::P90 => "p90",
            AggregateKind::P95 => "p95",
            AggregateKind::P99 => "p99",
            AggregateKind::Rate => "rate",
            AggregateKind::Increase => "increase",
        }
    }

    fn quantile(&self) -> Option<f64> {
        match self {
            AggregateKind::P50 => Some(0.5),
            AggregateKind::P90 => Some(0.9),
            AggregateKind::P95 => Some(0.95),
            AggregateKind::P99 => Some(0.99),
            _ => None,
        }
    }

    fn bit(&self) -> u16 {
        1 << (*self as u16)
    }
}

/// A set of [`AggregateKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateSet(u16);

impl AggregateSet {
    /// The set of the given kinds.
    pub fn of(kinds: &[AggregateKind]) -> Self {
        Self(kinds.iter().fold(0, |acc, k| acc | k.bit()))
    }

    /// True when `k` is in the set.
    pub fn contains(&self, k: AggregateKind) -> bool {
        self.0 & k.bit() != 0
    }

    fn any_quantile(&self) -> bool {
        [
            AggregateKind::P50,
            AggregateKind::P90,
            AggregateKind::P95,
            AggregateKind::P99,
        ]
        .iter()
        .any(|k| self.contains(*k))
    }
}

/// Aggregate results of one group in one window; `None` when not requested or
/// undefined (e.g. `rate` with fewer than two samples in every series).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AggregateValues {
    /// `count`.
    pub count: Option<f64>,
    /// `sum`.
    pub sum: Option<f64>,
    /// `min`.
    pub min: Option<f64>,
    /// `max`.
    pub max: Option<f64>,
    /// `avg`.
    pub avg: Option<f64>,
    /// `last`.
    pub last: Option<f64>,
    /// `p50`.
    pub p50: Option<f64>,
    /// `p90`.
    pub p90: Option<f64>,
    /// `p95`.
    pub p95: Option<f64>,
    /// `p99`.
    pub p99: Option<f64>,
    /// `rate` (per second).
    pub rate: Option<f64>,
    /// `increase`.
    pub increase: Option<f64>,
}

impl AggregateValues {
    /// The value of one aggregate.
    pub fn get(&self, k: AggregateKind) -> Option<f64> {
        match k {
            AggregateKind::Count => self.count,
            AggregateKind::Sum => self.sum,
            AggregateKind::Min => self.min,
            AggregateKind::Max => self.max,
            AggregateKind::Avg => self.avg,
            AggregateKind::Last => self.last,
            AggregateKind::P50 => self.p50,
            AggregateKind::P90 => self.p90,
            AggregateKind::P95 => self.p95,
            AggregateKind::P99 => self.p99,
            AggregateKind::Rate => self.rate,
            AggregateKind::Increase => self.increase,
        }
    }

    fn set(&mut self, k: AggregateKind, v: Option<f64>) {
        let slot = match k {
            AggregateKind::Count => &mut self.count,
            AggregateKind::Sum => &mut self.sum,
            AggregateKind::Min => &mut self.min,
            AggregateKind::Max => &mut self.max,
            AggregateKind::Avg => &mut self.avg,
            AggregateKind::Last => &mut self.last,
            AggregateKind::P50 => &mut self.p50,
            AggregateKind::P90 => &mut self.p90,
            AggregateKind::P95 => &mut self.p95,
            AggregateKind::P99 => &mut self.p99,
            AggregateKind::Rate => &mut self.rate,
            AggregateKind::Increase => &mut self.increase,
        };
        *slot = v;
    }
}

/// Function applied to one series' samples in a window (utilization measures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesFunction {
    /// Latest value.
    #[default]
    Last,
    /// Mean value.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum of values.
    Sum,
    /// Number of samples.
    Count,
    /// Per-second counter rate (Prometheus extrapolation, counter resets handled).
    Rate,
    /// Counter increase over the window.
    Increase,
}

/// Function combining per-series results of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcrossFunction {
    /// Sum.
    #[default]
    Sum,
    /// Mean.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Number of series with a value (e.g. CPUs from per-CPU counters).
    Count,
}

/// Prometheus' `extrapolatedRate` for counters over the range
/// `[range_start_ms, range_end_ms)` with samples `points` (sorted by time,
/// unique timestamps, finite values).
///
/// Returns the increase (`is_rate = false`) or the per-second rate
/// (`is_rate = true`, divided by the range length), `None` with fewer than two
/// samples. Counter resets (a value lower than its predecessor) add the
/// predecessor's value, as Prometheus does. Extrapolation follows Prometheus
/// 2.x: the sampled interval is extended to a range boundary when the gap to it
/// is below 1.1 × the average sample spacing, otherwise by half a spacing; the
/// start is never extrapolated below a zero counter value.
pub fn extrapolated_delta(
    points: &[(i64, f64)],
    range_start_ms: i64,
    range_end_ms: i64,
    is_rate: bool,
) -> Option<f64> {
    let (first, last) = match points {
        [first, .., last] => (*first, *last),
        _ => return None,
    };
    let mut delta = last.1 - first.1;
    let mut prev = first.1;
    for &(_, v) in &points[1..] {
        if v < prev {
            delta += prev;
        }
        prev = v;
    }
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    if sampled <= 0.0 {
        return None;
    }
    let mut to_start = (first.0 - range_start_ms) as f64 / 1000.0;
    let to_end = (range_end_ms - last.0) as f64 / 1000.0;
    let avg_step = sampled / (points.len() - 1) as f64;
    if delta > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    let mut result = delta * (interval / sampled);
    if is_rate {
        let range = (range_end_ms - range_start_ms) as f64 / 1000.0;
        if range <= 0.0 {
            return None;
        }
        result /= range;
    }
    Some(result)
}

/// Applies a [`SeriesFunction`] to one series' samples in `[start, end)`.
pub fn series_value(f: SeriesFunction, points: &[(i64, f64)], start: i64, end: i64) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let values = points.iter().map(|p| p.1);
    Some(match f {
        SeriesFunction::Last => points[points.len() - 1].1,
        SeriesFunction::Avg => values.sum::<f64>() / points.len() as f64,
        SeriesFunction::Min => values.fold(f64::INFINITY, f64::min),
        SeriesFunction::Max => values.fold(f64::NEG_INFINITY, f64::max),
        SeriesFunction::Sum => values.sum(),
        SeriesFunction::Count => points.len() as f64,
        SeriesFunction::Rate => return extrapolated_delta(points, start, end, true),
        SeriesFunction::Increase => return extrapolated_delta(points, start, end, false),
    })
}

/// Combines per-series values (in `series_id` order) with an [`AcrossFunction`].
pub fn across_value(f: AcrossFunction, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let it = values.iter().copied();
    Some(match f {
        AcrossFunction::Sum => it.sum(),
        AcrossFunction::Avg => it.sum::<f64>() / values.len() as f64,
        AcrossFunction::Min => it.fold(f64::INFINITY, f64::min),
        AcrossFunction::Max => it.fold(f64::NEG_INFINITY, f64::max),
        AcrossFunction::Count => values.len() as f64,
    })
}

/// The `q` quantile a default-configured [`DDSketch`] (relative accuracy 1 %,
/// 2048 bins) holding `values` reports, bit for bit.
///
/// When the values span fewer bins than the sketch's bin limit (no bin
/// collapsing, the usual case) the sketch's answer is the bin value of the
/// `floor(q × (n − 1))`-th smallest value, which is found with a selection
/// instead of filling a sketch; otherwise the sketch is built. `values` is
/// reordered.
pub fn ddsketch_quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let config = SketchConfig::defaults();
    let min_value = config.min_possible();
    let (mut pos_lo, mut pos_hi) = (f64::INFINITY, 0.0f64);
    let (mut neg_lo, mut neg_hi) = (f64::INFINITY, 0.0f64);
    for &v in values.iter() {
        if v > min_value {
            pos_lo = pos_lo.min(v);
            pos_hi = pos_hi.max(v);
        } else if v < -min_value {
            neg_lo = neg_lo.min(-v);
            neg_hi = neg_hi.max(-v);
        }
    }
    let span = |lo: f64, hi: f64| {
        if lo.is_finite() {
            i64::from(config.key(hi)) - i64::from(config.key(lo))
        } else {
            0
        }
    };
    // Bins grow in chunks of 128 up to 2048; stay well inside to avoid collapsing.
    if span(pos_lo, pos_hi) >= 1_900 || span(neg_lo, neg_hi) >= 1_900 || q == 0.0 || q == 1.0 {
        let mut sketch = DDSketch::new(config);
        for &v in values.iter() {
            sketch.add(v);
        }
        return sketch.quantile(q).ok().flatten();
    }
    let rank = (q * (values.len() as f64 - 1.0)) as usize;
    let rank = rank.min(values.len() - 1);
    let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    let v = *v;
    Some(if v > min_value {
        config.value(config.key(v))
    } else if v < -min_value {
        -config.value(config.key(-v))
    } else {
        0.0
    })
}

/// Computes the requested aggregates of one group: `series` are `(series_id,
/// points)` in ascending `series_id` order, each sorted with unique timestamps.
pub fn aggregate_group<'a>(
    series: impl IntoIterator<Item = (u64, &'a [(i64, f64)])>,
    start: i64,
    end: i64,
    wanted: AggregateSet,
) -> AggregateValues {
    let mut count = 0u64;
    let mut sum = 0.0f64;
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    let mut last: Option<(i64, u64, f64)> = None;
    let mut rate: Option<f64> = None;
    let mut increase: Option<f64> = None;
    let want_sketch = wanted.any_quantile();
    let mut sketch_values: Vec<f64> = Vec::new();
    let want_rate = wanted.contains(AggregateKind::Rate);
    let want_increase = wanted.contains(AggregateKind::Increase);
    for (id, points) in series {
        let Some(&(lts, lv)) = points.last() else {
            continue;
        };
        count += points.len() as u64;
        for &(_, v) in points {
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if want_sketch {
            sketch_values.extend(points.iter().map(|p| p.1));
        }
        if last.is_none_or(|(t, i, _)| (lts, id) > (t, i)) {
            last = Some((lts, id, lv));
        }
        if want_rate && let Some(r) = extrapolated_delta(points, start, end, true) {
            rate = Some(rate.unwrap_or(0.0) + r);
        }
        if want_increase && let Some(r) = extrapolated_delta(points, start, end, false) {
            increase = Some(increase.unwrap_or(0.0) + r);
        }
    }
    let mut out = AggregateValues::default();
    if count == 0 {
        return out;
    }
    for k in AggregateKind::ALL {
        if !wanted.contains(k) {
            continue;
        }
        let v = match k {
            AggregateKind::Count => Some(count as f64),
            AggregateKind::Sum => Some(sum),
            AggregateKind::Min => Some(min),
            AggregateKind::Max => Some(max),
            AggregateKind::Avg => Some(sum / count as f64),
            AggregateKind::Last => last.map(|l| l.2),
            AggregateKind::Rate => rate,
            AggregateKind::Increase => increase,
            q => q
                .quantile()
                .and_then(|q| ddsketch_quantile(&mut sketch_values, q)),
        };
        out.set(k, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn rate_matches_prometheus_without_extrapolation_gap() {
        // Samples every 15 s inside a 60 s window starting 5 s after its start:
        // durationToStart 5 s < 16.5 s threshold → extrapolate to the start;
        // durationToEnd 10 s → to the end. Increase 3 × 15 = 45 over 45 s
        // sampled, extended to 60 s → 60; rate 1/s.
        let pts: Vec<(i64, f64)> = (0..4)
            .map(|i| (5_000 + i * 15_000, 100.0 + 15.0 * i as f64))
            .collect();
        let inc = extrapolated_delta(&pts, 0, 60_000, false).unwrap();
        assert!(close(inc, 60.0), "{inc}");
        let r = extrapolated_delta(&pts, 0, 60_000, true).unwrap();
        assert!(close(r, 1.0), "{r}");
    }

    #[test]
    fn rate_handles_counter_resets_like_prometheus() {
        // 10, 20, 30, reset to 5, 15: increase = (15 - 10) + 30 = 35 over 40 s sampled.
        let pts = vec![
            (10_000, 10.0),
            (20_000, 20.0),
            (30_000, 30.0),
            (40_000, 5.0),
            (50_000, 15.0),
        ];
        // Window [10s, 50s]: no extrapolation (samples on both boundaries).
        let inc = extrapolated_delta(&pts, 10_000, 50_000, false).unwrap();
        assert!(close(inc, 40.0 * 35.0 / 40.0), "{inc}");
        // A window much larger than the sampled span: extrapolate half a step each side.
        let inc = extrapolated_delta(&pts, -100_000, 200_000, false).unwrap();
        assert!(close(inc, 35.0 * (40.0 + 10.0) / 40.0), "{inc}");
    }

    #[test]
    fn rate_does_not_extrapolate_below_zero() {
        // Counter starts at 1 and gains 10 over 10 s: zero point is 1 s before the
        // first sample, closer than the 8 s gap to the window start.
        let pts = vec![(8_000, 1.0), (18_000, 11.0)];
        let inc = extrapolated_delta(&pts, 0, 18_000, false).unwrap();
        assert!(close(inc, 10.0 * 11.0 / 10.0), "{inc}");
        assert_eq!(extrapolated_delta(&pts[..1], 0, 18_000, false), None);
        assert_eq!(extrapolated_delta(&[], 0, 18_000, true), None);
    }

    #[test]
    fn group_aggregates_are_correct_and_deterministic() {
        let a: Vec<(i64, f64)> = vec![(0, 1.0), (1_000, 2.0), (2_000, 3.0)];
        let b: Vec<(i64, f64)> = vec![(500, 10.0), (2_000, 20.0)];
        let all = AggregateSet::of(&AggregateKind::ALL);
        let v = aggregate_group([(1, a.as_slice()), (2, b.as_slice())], 0, 3_000, all);
        assert_eq!(v.count, Some(5.0));
        assert_eq!(v.sum, Some(36.0));
        assert_eq!(v.min, Some(1.0));
        assert_eq!(v.max, Some(20.0));
        assert!(close(v.avg.unwrap(), 7.2));
        // Both series end at 2 s: the tie goes to the higher series id.
        assert_eq!(v.last, Some(20.0));
        let p50 = v.p50.unwrap();
        assert!((p50 - 3.0).abs() <= 0.03, "{p50}");
        // DDSketch ranks are floor(q × (n − 1)): p99 of 5 samples is the 4th.
        let p99 = v.p99.unwrap();
        assert!((p99 - 10.0).abs() <= 0.1, "{p99}");
        assert!(v.rate.is_some() && v.increase.is_some());
        let only = AggregateSet::of(&[AggregateKind::Max]);
        let w = aggregate_group([(1, a.as_slice())], 0, 3_000, only);
        assert_eq!(w.max, Some(3.0));
        assert_eq!(w.sum, None);
        assert_eq!(aggregate_group([], 0, 1, all), AggregateValues::default());
    }

    proptest::proptest! {
        #[test]
        fn quantile_shortcut_equals_the_sketch(
            values in proptest::collection::vec(
                proptest::prop_oneof![-1e6f64..1e6, -1.0f64..1.0, proptest::strategy::Just(0.0), 1e-12f64..1e-8],
                1..300,
            ),
            q in proptest::prop_oneof![
                proptest::strategy::Just(0.5), proptest::strategy::Just(0.9),
                proptest::strategy::Just(0.95), proptest::strategy::Just(0.99), 0.0f64..=1.0
            ],
        ) {
            let mut sketch = DDSketch::new(SketchConfig::defaults());
            for v in &values {
                sketch.add(*v);
            }
            let want = sketch.quantile(q).ok().flatten();
            let mut vs = values.clone();
            let got = ddsketch_quantile(&mut vs, q);
            proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits));
        }
    }

    #[test]
    fn quantile_falls_back_to_the_sketch_for_wide_ranges() {
        let mut vs: Vec<f64> = (0..100).map(|i| 10f64.powi(i % 40 - 20)).collect();
        let mut sketch = DDSketch::new(SketchConfig::defaults());
        for v in &vs {
            sketch.add(*v);
        }
        let want = sketch.quantile(0.95).ok().flatten();
        assert_eq!(ddsketch_quantile(&mut vs, 0.95), want);
        assert_eq!(ddsketch_quantile(&mut [], 0.5), None);
    }

    #[test]
    fn series_and_across_functions() {
        let p = vec![(0, 4.0), (1_000, 2.0), (2_000, 6.0)];
        assert_eq!(series_value(SeriesFunction::Last, &p, 0, 3_000), Some(6.0));
        assert_eq!(series_value(SeriesFunction::Avg, &p, 0, 3_000), Some(4.0));
        assert_eq!(series_value(SeriesFunction::Min, &p, 0, 3_000), Some(2.0));
        assert_eq!(series_value(SeriesFunction::Max, &p, 0, 3_000), Some(6.0));
        assert_eq!(series_value(SeriesFunction::Sum, &p, 0, 3_000), Some(12.0));
        assert_eq!(series_value(SeriesFunction::Count, &p, 0, 3_000), Some(3.0));
        assert_eq!(series_value(SeriesFunction::Last, &[], 0, 3_000), None);
        assert_eq!(across_value(AcrossFunction::Avg, &[1.0, 3.0]), Some(2.0));
        assert_eq!(
            across_value(AcrossFunction::Count, &[1.0, 3.0, 0.0]),
            Some(3.0)
        );
        assert_eq!(across_value(AcrossFunction::Max, &[]), None);
    }
}
