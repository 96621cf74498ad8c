//! Tumbling (fixed, non-overlapping) windows: `[k × size, (k + 1) × size)`.
//!
//! State is a `BTreeMap` keyed by window start holding the raw points of each
//! window. A window is emitted once the watermark reaches its end. With
//! `late_data: update` an emitted window stays in the map for the late
//! retention so late samples can be added and the window emitted again; with
//! `late_data: drop` it is removed as soon as it is emitted.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::state::{
    ClosedWindow, InsertMode, Inserted, OperatorParams, SeriesMeta, WindowBuf, WindowOperator,
    align_down, finalize,
};

#[derive(Debug, Default)]
struct Win {
    buf: WindowBuf,
    emitted: bool,
}

/// The tumbling window operator.
#[derive(Debug)]
pub struct TumblingOperator {
    size: i64,
    retention: Option<i64>,
    windows: BTreeMap<i64, Win>,
    /// Every window ending at or before this was emitted.
    emitted_through: Option<i64>,
    /// Windows ending at or before this were emitted before a restart.
    restored_through: Option<i64>,
    /// Emitted windows starting before this have no rebuilt state.
    complete_from: i64,
    /// Earliest event time seen in replay: windows starting before it may
    /// have been replayed only partly, so late data must not re-emit them.
    replay_min: Option<i64>,
    dirty: BTreeSet<i64>,
    /// Series count of the last emitted window: capacity hint for new ones.
    size_hint: usize,
}

impl TumblingOperator {
    /// A tumbling operator of `params.size_ms` (the slide is ignored).
    pub fn new(params: OperatorParams) -> Self {
        Self {
            size: params.size_ms.max(1),
            retention: params.update_retention_ms,
            windows: BTreeMap::new(),
            emitted_through: None,
            restored_through: None,
            complete_from: i64::MIN,
            replay_min: None,
            dirty: BTreeSet::new(),
            size_hint: 0,
        }
    }

    fn emit(&mut self, start: i64, is_update: bool, out: &mut Vec<ClosedWindow>) {
        let end = start.saturating_add(self.size);
        if self.retention.is_none() && !is_update {
            if let Some(w) = self.windows.remove(&start) {
                self.size_hint = w.buf.series.len();
                out.push(finalize(
                    start,
                    end,
                    false,
                    w.buf
                        .series
                        .into_iter()
                        .map(|(id, s)| (id, s.meta, s.points)),
                ));
            }
            return;
        }
        if let Some(w) = self.windows.get_mut(&start) {
            w.emitted = true;
            self.size_hint = w.buf.series.len();
            out.push(finalize(
                start,
                end,
                is_update,
                w.buf
                    .series
                    .iter()
                    .map(|(id, s)| (*id, s.meta, s.points.clone())),
            ));
        }
    }

    fn emit_until(&mut self, limit: i64, out: &mut Vec<ClosedWindow>) {
        let last_start = limit.saturating_sub(self.size);
        let due: Vec<i64> = self
            .windows
            .range(..=last_start)
            .filter(|(_, w)| !w.emitted)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            self.dirty.remove(&s);
            self.emit(s, false, out);
        }
        let through = align_down(limit, self.size);
        if self.emitted_through.is_none_or(|t| through > t) {
            self.emitted_through = Some(through);
        }
    }

    /// Windows ending before the restore point and starting at or after this
    /// have complete rebuilt state.
    fn rebuilt_from(&self) -> i64 {
        let replayed = self.replay_min.map_or(i64::MAX, |m| {
            align_down(m.saturating_add(self.size - 1), self.size)
        });
        self.complete_from.max(replayed)
    }

    fn rebuildable(&self, start: i64, end: i64) -> bool {
        !(self.restored_through.is_some_and(|r| end <= r) && start < self.rebuilt_from())
    }
}

impl WindowOperator for TumblingOperator {
    #[inline]
    fn insert(
        &mut self,
        id: u64,
        meta: SeriesMeta,
        ts: i64,
        v: f64,
        watermark: i64,
        mode: InsertMode,
    ) -> Inserted {
        let start = align_down(ts, self.size);
        let end = start.saturating_add(self.size);
        if mode == InsertMode::Replay {
            self.replay_min = Some(self.replay_min.map_or(ts, |m| m.min(ts)));
        }
        if self.emitted_through.is_none_or(|t| end > t) {
            let hint = self.size_hint;
            self.windows
                .entry(start)
                .or_insert_with(|| Win {
                    buf: WindowBuf::with_capacity(hint),
                    emitted: false,
                })
                .buf
                .push(id, meta, ts, v);
            return Inserted::Accepted;
        }
        if mode == InsertMode::Replay && self.restored_through.is_some_and(|r| end <= r) {
            if start < self.complete_from {
                return Inserted::Skipped;
            }
            let w = self.windows.entry(start).or_insert_with(|| Win {
                buf: WindowBuf::default(),
                emitted: true,
            });
            w.buf.push(id, meta, ts, v);
            return Inserted::Rebuilt;
        }
        match self.retention {
            Some(r) if end.saturating_add(r) > watermark && self.rebuildable(start, end) => {
                let w = self.windows.entry(start).or_insert_with(|| Win {
                    buf: WindowBuf::default(),
                    emitted: true,
                });
                w.buf.push(id, meta, ts, v);
                self.dirty.insert(start);
                Inserted::LateUpdated
            }
            _ => Inserted::LateDropped,
        }
    }

    fn close(&mut self, watermark: i64, out: &mut Vec<ClosedWindow>) {
        self.emit_until(watermark, out);
        for s in std::mem::take(&mut self.dirty) {
            self.emit(s, true, out);
        }
        if let Some(r) = self.retention {
            while let Some((&s, w)) = self.windows.first_key_value() {
                if w.emitted && s.saturating_add(self.size).saturating_add(r) <= watermark {
                    self.windows.pop_first();
                } else {
                    break;
                }
            }
        }
    }

    fn close_all(&mut self, out: &mut Vec<ClosedWindow>) {
        if let Some((&s, _)) = self.windows.last_key_value() {
            self.emit_until(s.saturating_add(self.size), out);
        }
    }

    fn has_open(&self) -> bool {
        self.windows
            .last_key_value()
            .is_some_and(|(_, w)| !w.emitted)
    }

    fn earliest_state_ms(&self) -> Option<i64> {
        self.windows.first_key_value().map(|(s, _)| *s)
    }

    fn restore(&mut self, through_ms: i64) -> i64 {
        let through = align_down(through_ms, self.size);
        self.restored_through = Some(self.restored_through.map_or(through, |r| r.max(through)));
        if self.emitted_through.is_none_or(|t| through > t) {
            self.emitted_through = Some(through);
        }
        let start = match self.retention {
            Some(r) => align_down(through.saturating_sub(r), self.size),
            None => through,
        };
        self.complete_from = start;
        start
    }

    fn emitted_through(&self) -> Option<i64> {
        self.emitted_through
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: SeriesMeta = SeriesMeta { group: 0, roles: 1 };

    fn op(retention: Option<i64>) -> TumblingOperator {
        TumblingOperator::new(OperatorParams {
            size_ms: 60_000,
            slide_ms: 60_000,
            update_retention_ms: retention,
        })
    }

    fn values(w: &ClosedWindow) -> Vec<(u64, Vec<(i64, f64)>)> {
        w.series.iter().map(|s| (s.id, s.points.clone())).collect()
    }

    #[test]
    fn emits_when_watermark_passes_end_out_of_order_and_deduped() {
        let mut o = op(None);
        let live = InsertMode::Live;
        assert_eq!(o.insert(2, META, 30_000, 3.0, 0, live), Inserted::Accepted);
        assert_eq!(o.insert(1, META, 10_000, 1.0, 0, live), Inserted::Accepted);
        assert_eq!(o.insert(1, META, 5_000, 0.5, 0, live), Inserted::Accepted);
        assert_eq!(o.insert(1, META, 10_000, 1.0, 0, live), Inserted::Accepted);
        assert_eq!(o.insert(1, META, 70_000, 7.0, 0, live), Inserted::Accepted);
        let mut out = Vec::new();
        o.close(59_999, &mut out);
        assert!(out.is_empty());
        assert!(o.has_open());
        o.close(60_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].start, out[0].end, out[0].is_update),
            (0, 60_000, false)
        );
        assert_eq!(out[0].duplicates, 1);
        assert_eq!(
            values(&out[0]),
            vec![
                (1, vec![(5_000, 0.5), (10_000, 1.0)]),
                (2, vec![(30_000, 3.0)])
            ]
        );
        // Drop policy: the emitted window is gone, a late sample is dropped.
        assert_eq!(
            o.insert(1, META, 20_000, 9.0, 60_000, live),
            Inserted::LateDropped
        );
        assert_eq!(o.earliest_state_ms(), Some(60_000));
        assert_eq!(o.emitted_through(), Some(60_000));
    }

    #[test]
    fn late_samples_update_within_retention() {
        let mut o = op(Some(120_000));
        let live = InsertMode::Live;
        o.insert(1, META, 10_000, 1.0, 0, live);
        let mut out = Vec::new();
        o.close(60_000, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        assert_eq!(
            o.insert(1, META, 20_000, 2.0, 60_000, live),
            Inserted::LateUpdated
        );
        o.close(60_000, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_update);
        assert_eq!(
            values(&out[0]),
            vec![(1, vec![(10_000, 1.0), (20_000, 2.0)])]
        );
        out.clear();
        // Past end + retention the state is evicted and late data is dropped.
        o.close(180_000, &mut out);
        assert_eq!(o.earliest_state_ms(), None);
        assert_eq!(
            o.insert(1, META, 30_000, 3.0, 180_000, live),
            Inserted::LateDropped
        );
    }

    #[test]
    fn idle_close_all_emits_open_windows() {
        let mut o = op(None);
        o.insert(1, META, 10_000, 1.0, 0, InsertMode::Live);
        o.insert(1, META, 70_000, 2.0, 0, InsertMode::Live);
        let mut out = Vec::new();
        o.close_all(&mut out);
        assert_eq!(
            out.iter().map(|w| w.start).collect::<Vec<_>>(),
            vec![0, 60_000]
        );
        assert!(!o.has_open());
        assert_eq!(o.emitted_through(), Some(120_000));
    }

    #[test]
    fn restore_rebuilds_emitted_windows_silently() {
        let mut o = op(Some(60_000));
        assert_eq!(o.restore(120_000), 60_000);
        let replay = InsertMode::Replay;
        assert_eq!(o.insert(1, META, 30_000, 1.0, 0, replay), Inserted::Skipped);
        assert_eq!(o.insert(1, META, 90_000, 1.0, 0, replay), Inserted::Rebuilt);
        assert_eq!(
            o.insert(1, META, 130_000, 1.0, 0, replay),
            Inserted::Accepted
        );
        let mut out = Vec::new();
        o.close(120_000, &mut out);
        assert!(out.is_empty(), "rebuilt windows are not emitted again");
        // Late data for a rebuilt window re-emits it with its full state.
        assert_eq!(
            o.insert(1, META, 100_000, 2.0, 125_000, InsertMode::Live),
            Inserted::LateUpdated
        );
        // Late data for a window whose state was not rebuilt is dropped.
        assert_eq!(
            o.insert(1, META, 50_000, 2.0, 125_000, InsertMode::Live),
            Inserted::LateDropped
        );
        o.close(125_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            values(&out[0]),
            vec![(1, vec![(90_000, 1.0), (100_000, 2.0)])]
        );
    }

    #[test]
    fn replay_started_late_never_reemits_partial_windows() {
        let mut o = op(Some(60_000));
        assert_eq!(o.restore(120_000), 60_000);
        // The caller replays from 90 s instead of 60 s: [60 s, 120 s) is partial.
        assert_eq!(
            o.insert(1, META, 90_000, 1.0, 0, InsertMode::Replay),
            Inserted::Rebuilt
        );
        assert_eq!(
            o.insert(1, META, 100_000, 2.0, 125_000, InsertMode::Live),
            Inserted::LateDropped
        );
    }
}
