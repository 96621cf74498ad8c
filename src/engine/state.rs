//! Window state shared by the operators: raw samples per series per window
//! (or pane), and the [`WindowOperator`] interface the tumbling and sliding
//! operators implement.
//!
//! Windows keep raw `(ts, value)` points instead of running partial
//! aggregates. That makes every aggregate a pure function of the *set* of
//! samples (sorted and de-duplicated at emission), which is what restart
//! recovery needs: re-feeding the same samples gives identical values, and a
//! duplicate `(series, ts)` never counts twice.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that are already hashes (`series_id`): one multiply.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// `HashMap` keyed by series id.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// What a transform knows about a selected series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesMeta {
    /// Index of the series' group in the transform's group table.
    pub group: u32,
    /// Bit set of the roles the series plays (utilization: usage / request /
    /// capacity; window transforms use bit 0).
    pub roles: u8,
}

/// Raw points of one series inside one window or pane.
#[derive(Debug, Clone)]
pub struct SeriesBuf {
    /// Series metadata.
    pub meta: SeriesMeta,
    /// Points in arrival order (sorted and de-duplicated at emission).
    pub points: Vec<(i64, f64)>,
}

/// Raw samples of one window (tumbling) or pane (sliding).
#[derive(Debug, Clone, Default)]
pub struct WindowBuf {
    /// Points per series id.
    pub series: IdMap<SeriesBuf>,
}

impl WindowBuf {
    /// An empty buffer with room for `series` series.
    pub fn with_capacity(series: usize) -> Self {
        Self {
            series: IdMap::with_capacity_and_hasher(series, Default::default()),
        }
    }

    /// Adds one point.
    #[inline]
    pub fn push(&mut self, id: u64, meta: SeriesMeta, ts: i64, v: f64) {
        self.series
            .entry(id)
            .or_insert_with(|| SeriesBuf {
                meta,
                points: Vec::with_capacity(8),
            })
            .points
            .push((ts, v));
    }

    /// True when no point was added.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// One series' points in an emitted window: sorted by time, unique timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Series id.
    pub id: u64,
    /// Series metadata.
    pub meta: SeriesMeta,
    /// Sorted, de-duplicated points.
    pub points: Vec<(i64, f64)>,
}

/// A window ready to be turned into output rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// Inclusive start (ms).
    pub start: i64,
    /// Exclusive end (ms).
    pub end: i64,
    /// True when this re-emits an already emitted window (late data).
    pub is_update: bool,
    /// Series in ascending id order.
    pub series: Vec<SeriesData>,
    /// Duplicate `(series, ts)` points removed while finalizing.
    pub duplicates: u64,
}

/// Sorts points by time and removes duplicate timestamps. Among duplicates the
/// greatest value (IEEE total order) is kept, so the outcome does not depend on
/// arrival order. Returns the number of points removed.
pub fn sort_dedup(points: &mut Vec<(i64, f64)>) -> u64 {
    if points.windows(2).all(|w| w[0].0 < w[1].0) {
        return 0;
    }
    points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let before = points.len();
    // Keep the last (greatest) point of each run of equal timestamps.
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(before);
    for &p in points.iter() {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    *points = out;
    (before - points.len()) as u64
}

/// Builds a [`ClosedWindow`] from per-series point lists (any order).
pub fn finalize(
    start: i64,
    end: i64,
    is_update: bool,
    series: impl IntoIterator<Item = (u64, SeriesMeta, Vec<(i64, f64)>)>,
) -> ClosedWindow {
    let mut duplicates = 0;
    let mut out: Vec<SeriesData> = series
        .into_iter()
        .map(|(id, meta, mut points)| {
            duplicates += sort_dedup(&mut points);
            SeriesData { id, meta, points }
        })
        .collect();
    out.sort_unstable_by_key(|s| s.id);
    ClosedWindow {
        start,
        end,
        is_update,
        series: out,
        duplicates,
    }
}

/// How [`WindowOperator::insert`] treats samples of already emitted windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    /// Normal input: late samples follow the late-data policy.
    Live,
    /// Restart replay: samples of windows emitted before the restart rebuild
    /// their state silently (no re-emission).
    Replay,
}

/// What happened to one inserted sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Added to at least one open window.
    Accepted,
    /// Added to emitted windows that will be emitted again.
    LateUpdated,
    /// Dropped: its windows were emitted and cannot be updated.
    LateDropped,
    /// Replay: added to the rebuilt state of an emitted window.
    Rebuilt,
    /// Replay: belongs to a window emitted before the restart whose state is
    /// not rebuilt (before the replay start); ignored.
    Skipped,
}

/// Parameters shared by the window operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorParams {
    /// Window length (ms).
    pub size_ms: i64,
    /// Distance between window starts (ms); equals `size_ms` for tumbling.
    pub slide_ms: i64,
    /// `Some(retention_ms)` when late data updates emitted windows.
    pub update_retention_ms: Option<i64>,
}

/// A window operator: assigns samples to windows and closes windows when the
/// watermark passes their end. State is kept in ordered maps keyed by window
/// (or pane) start.
pub trait WindowOperator: Send {
    /// Adds one sample; `watermark` is the transform's current watermark.
    fn insert(
        &mut self,
        id: u64,
        meta: SeriesMeta,
        ts: i64,
        v: f64,
        watermark: i64,
        mode: InsertMode,
    ) -> Inserted;

    /// Emits every window whose end is ≤ `watermark`, re-emits windows that
    /// late data changed, and drops state that can no longer change.
    fn close(&mut self, watermark: i64, out: &mut Vec<ClosedWindow>);

    /// Emits every open window now (idle timeout).
    fn close_all(&mut self, out: &mut Vec<ClosedWindow>);

    /// True when some window with data has not been emitted yet.
    fn has_open(&self) -> bool;

    /// Earliest event time held in state (`None` when empty).
    fn earliest_state_ms(&self) -> Option<i64>;

    /// Declares windows ending at or before `through_ms` as emitted (restart)
    /// and returns the earliest event time a replay must start from.
    fn restore(&mut self, through_ms: i64) -> i64;

    /// End of the last window emitted so far (`None` before any emission).
    fn emitted_through(&self) -> Option<i64>;
}

/// `floor(ts / step) * step`, also for negative times.
#[inline]
pub fn align_down(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step).saturating_mul(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_dedup_is_order_independent() {
        let mut a = vec![(3, 1.0), (1, 5.0), (3, 2.0), (2, 0.0), (1, 5.0)];
        let mut b = vec![(1, 5.0), (3, 2.0), (2, 0.0), (3, 1.0), (1, 5.0)];
        assert_eq!(sort_dedup(&mut a), 2);
        assert_eq!(sort_dedup(&mut b), 2);
        assert_eq!(a, vec![(1, 5.0), (2, 0.0), (3, 2.0)]);
        assert_eq!(a, b);
        let mut sorted = vec![(1, 1.0), (2, 2.0)];
        assert_eq!(sort_dedup(&mut sorted), 0);
    }

    #[test]
    fn align_down_handles_negative_times() {
        assert_eq!(align_down(61_000, 60_000), 60_000);
        assert_eq!(align_down(-1, 60_000), -60_000);
        assert_eq!(align_down(0, 60_000), 0);
    }
}
