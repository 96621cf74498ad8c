//! Sliding (hop) windows: a window of `size` starts every `slide`
//! (`size` is a multiple of `slide`), so each sample belongs to
//! `size / slide` windows.
//!
//! Samples are stored once, in *panes* of `slide` length (a `BTreeMap` keyed
//! by pane start); a window is assembled from its `size / slide` panes when it
//! is emitted. Windows are emitted in start order once the watermark reaches
//! their end; empty windows are skipped. A pane is dropped once every window
//! containing it was emitted (and, with `late_data: update`, once the latest of
//! those windows left the late retention).

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::state::{
    ClosedWindow, IdMap, InsertMode, Inserted, OperatorParams, SeriesMeta, WindowBuf,
    WindowOperator, align_down, finalize,
};

/// The sliding window operator.
#[derive(Debug)]
pub struct SlidingOperator {
    size: i64,
    slide: i64,
    retention: Option<i64>,
    panes: BTreeMap<i64, WindowBuf>,
    /// Start of the first window not emitted yet.
    next_start: i64,
    /// False until the first window is emitted (or a restore).
    started: bool,
    restored_through: Option<i64>,
    complete_from: i64,
    /// Earliest event time seen in replay: windows starting before it may
    /// have been replayed only partly, so late data must not re-emit them.
    replay_min: Option<i64>,
    dirty: BTreeSet<i64>,
}

impl SlidingOperator {
    /// A sliding operator; `size_ms` must be a multiple of `slide_ms`
    /// (validated by the config; otherwise the size is rounded up).
    pub fn new(params: OperatorParams) -> Self {
        let slide = params.slide_ms.max(1);
        let size = params.size_ms.max(slide);
        let size = size.div_euclid(slide).saturating_mul(slide)
            + if size % slide == 0 { 0 } else { slide };
        Self {
            size,
            slide,
            retention: params.update_retention_ms,
            panes: BTreeMap::new(),
            next_start: i64::MAX,
            started: false,
            restored_through: None,
            complete_from: i64::MIN,
            replay_min: None,
            dirty: BTreeSet::new(),
        }
    }

    fn emit(&self, start: i64, is_update: bool, out: &mut Vec<ClosedWindow>) {
        let end = start.saturating_add(self.size);
        let mut merged: IdMap<(SeriesMeta, Vec<(i64, f64)>)> = IdMap::default();
        for (_, pane) in self.panes.range(start..end) {
            for (id, s) in &pane.series {
                merged
                    .entry(*id)
                    .or_insert_with(|| (s.meta, Vec::with_capacity(s.points.len())))
                    .1
                    .extend_from_slice(&s.points);
            }
        }
        if merged.is_empty() {
            return;
        }
        out.push(finalize(
            start,
            end,
            is_update,
            merged.into_iter().map(|(id, (meta, pts))| (id, meta, pts)),
        ));
    }

    /// Emits windows in order while their end is ≤ `limit`.
    fn emit_until(&mut self, limit: i64, out: &mut Vec<ClosedWindow>) {
        if !self.started && self.panes.is_empty() {
            return;
        }
        // First window whose end is beyond `limit`.
        let first_open = align_down(limit, self.slide)
            .saturating_sub(self.size)
            .saturating_add(self.slide);
        while self.next_start.saturating_add(self.size) <= limit {
            match self.panes.range(self.next_start..).next().map(|(p, _)| *p) {
                None => {
                    self.next_start = first_open;
                    break;
                }
                Some(p) if p >= self.next_start.saturating_add(self.size) => {
                    // Windows before the first one containing `p` are empty.
                    let first_with_data = p.saturating_sub(self.size).saturating_add(self.slide);
                    self.next_start = first_with_data.min(first_open);
                }
                Some(_) => {
                    self.dirty.remove(&self.next_start);
                    self.emit(self.next_start, false, out);
                    self.next_start = self.next_start.saturating_add(self.slide);
                }
            }
            self.started = true;
        }
        if !self.started && first_open > self.next_start {
            self.started = true;
        }
        if self.started && first_open > self.next_start {
            self.next_start = first_open;
        }
    }

    /// Windows ending before the restore point and starting at or after this
    /// have complete rebuilt state.
    fn rebuilt_from(&self) -> i64 {
        let replayed = self.replay_min.map_or(i64::MAX, |m| {
            align_down(m.saturating_add(self.slide - 1), self.slide)
        });
        self.complete_from.max(replayed)
    }

    fn rebuildable(&self, start: i64) -> bool {
        !(self
            .restored_through
            .is_some_and(|r| start.saturating_add(self.size) <= r)
            && start < self.rebuilt_from())
    }

    /// Marks the emitted windows containing pane `p` that are still within
    /// the late retention as needing re-emission; true if any was marked.
    fn mark_dirty(&mut self, p: i64, watermark: i64) -> bool {
        let Some(r) = self.retention else {
            return false;
        };
        let mut marked = false;
        let mut w = p.saturating_sub(self.size).saturating_add(self.slide);
        while w <= p && w < self.next_start {
            if w.saturating_add(self.size).saturating_add(r) > watermark && self.rebuildable(w) {
                self.dirty.insert(w);
                marked = true;
            }
            w = w.saturating_add(self.slide);
        }
        marked
    }
}

impl WindowOperator for SlidingOperator {
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
        let p = align_down(ts, self.slide);
        let first_window = p.saturating_sub(self.size).saturating_add(self.slide);
        if mode == InsertMode::Replay {
            self.replay_min = Some(self.replay_min.map_or(ts, |m| m.min(ts)));
        }
        if !self.started {
            self.next_start = self.next_start.min(first_window);
            self.panes.entry(p).or_default().push(id, meta, ts, v);
            return Inserted::Accepted;
        }
        let restored_only = self
            .restored_through
            .is_some_and(|r| p.saturating_add(self.size) <= r);
        if p >= self.next_start {
            // At least one open window contains it.
            self.panes.entry(p).or_default().push(id, meta, ts, v);
            if first_window < self.next_start && mode == InsertMode::Live {
                self.mark_dirty(p, watermark);
            }
            return Inserted::Accepted;
        }
        // Every window containing the sample was emitted.
        if mode == InsertMode::Replay && restored_only {
            if p < self.complete_from {
                return Inserted::Skipped;
            }
            self.panes.entry(p).or_default().push(id, meta, ts, v);
            return Inserted::Rebuilt;
        }
        let within = self
            .retention
            .is_some_and(|r| p.saturating_add(self.size).saturating_add(r) > watermark);
        if within && self.rebuildable(p) && self.mark_dirty(p, watermark) {
            self.panes.entry(p).or_default().push(id, meta, ts, v);
            Inserted::LateUpdated
        } else {
            Inserted::LateDropped
        }
    }

    fn close(&mut self, watermark: i64, out: &mut Vec<ClosedWindow>) {
        self.emit_until(watermark, out);
        for w in std::mem::take(&mut self.dirty) {
            if w < self.next_start {
                self.emit(w, true, out);
            }
        }
        while let Some((&p, _)) = self.panes.first_key_value() {
            let all_emitted = self.started && p < self.next_start;
            let expired = match self.retention {
                None => true,
                Some(r) => p.saturating_add(self.size).saturating_add(r) <= watermark,
            };
            if all_emitted && expired {
                self.panes.pop_first();
            } else {
                break;
            }
        }
    }

    fn close_all(&mut self, out: &mut Vec<ClosedWindow>) {
        if let Some((&p, _)) = self.panes.last_key_value() {
            self.emit_until(p.saturating_add(self.size), out);
        }
    }

    fn has_open(&self) -> bool {
        self.panes
            .last_key_value()
            .is_some_and(|(&p, _)| !self.started || p >= self.next_start)
    }

    fn earliest_state_ms(&self) -> Option<i64> {
        self.panes.first_key_value().map(|(p, _)| *p)
    }

    fn restore(&mut self, through_ms: i64) -> i64 {
        let through = align_down(through_ms, self.slide);
        self.restored_through = Some(self.restored_through.map_or(through, |r| r.max(through)));
        let first_open = through.saturating_sub(self.size).saturating_add(self.slide);
        if !self.started || first_open > self.next_start {
            self.next_start = first_open;
        }
        self.started = true;
        let start = match self.retention {
            Some(r) => align_down(
                through.saturating_sub(r).saturating_sub(self.size),
                self.slide,
            )
            .saturating_add(self.slide),
            None => first_open,
        };
        self.complete_from = start;
        start
    }

    fn emitted_through(&self) -> Option<i64> {
        self.started.then(|| {
            self.next_start
                .saturating_sub(self.slide)
                .saturating_add(self.size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: SeriesMeta = SeriesMeta { group: 0, roles: 1 };

    fn op(retention: Option<i64>) -> SlidingOperator {
        // 30 s windows every 10 s.
        SlidingOperator::new(OperatorParams {
            size_ms: 30_000,
            slide_ms: 10_000,
            update_retention_ms: retention,
        })
    }

    fn spans(out: &[ClosedWindow]) -> Vec<(i64, i64, usize)> {
        out.iter()
            .map(|w| {
                (
                    w.start,
                    w.end,
                    w.series.iter().map(|s| s.points.len()).sum(),
                )
            })
            .collect()
    }

    #[test]
    fn overlapping_windows_share_samples() {
        let mut o = op(None);
        for ts in [0, 5_000, 15_000, 25_000, 35_000] {
            assert_eq!(
                o.insert(1, META, ts, 1.0, 0, InsertMode::Live),
                Inserted::Accepted
            );
        }
        let mut out = Vec::new();
        o.close(40_000, &mut out);
        // Windows ending ≤ 40 s: [-20,10) [-10,20) [0,30) [10,40).
        assert_eq!(
            spans(&out),
            vec![
                (-20_000, 10_000, 2),
                (-10_000, 20_000, 3),
                (0, 30_000, 4),
                (10_000, 40_000, 3)
            ]
        );
        out.clear();
        o.close(70_000, &mut out);
        assert_eq!(spans(&out), vec![(20_000, 50_000, 2), (30_000, 60_000, 1)]);
        assert!(!o.has_open());
        assert_eq!(o.earliest_state_ms(), None);
        // A sample whose every window was emitted is dropped.
        assert_eq!(
            o.insert(1, META, 12_000, 1.0, 70_000, InsertMode::Live),
            Inserted::LateDropped
        );
    }

    #[test]
    fn gaps_are_skipped_without_emitting_empty_windows() {
        let mut o = op(None);
        o.insert(1, META, 0, 1.0, 0, InsertMode::Live);
        let mut out = Vec::new();
        o.close(10_000_000, &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        // A sample in an old, unseen stretch is late; one in the future is open.
        assert_eq!(
            o.insert(1, META, 9_000_000, 1.0, 10_000_000, InsertMode::Live),
            Inserted::LateDropped
        );
        assert_eq!(
            o.insert(1, META, 9_995_000, 1.0, 10_000_000, InsertMode::Live),
            Inserted::Accepted
        );
        o.close(10_020_000, &mut out);
        // [9_970_000, 10_000_000) had closed before the sample arrived: only the
        // two windows still open get it.
        assert_eq!(
            spans(&out),
            vec![(9_980_000, 10_010_000, 1), (9_990_000, 10_020_000, 1)]
        );
    }

    #[test]
    fn late_update_reemits_every_affected_window() {
        let mut o = op(Some(60_000));
        for ts in [0, 10_000, 20_000] {
            o.insert(1, META, ts, 1.0, 0, InsertMode::Live);
        }
        let mut out = Vec::new();
        o.close(30_000, &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        // 15 s belongs to [-10,20), [0,30) (emitted) and [10,40) (open).
        assert_eq!(
            o.insert(1, META, 15_000, 1.0, 30_000, InsertMode::Live),
            Inserted::Accepted
        );
        o.close(30_000, &mut out);
        assert_eq!(spans(&out), vec![(-10_000, 20_000, 3), (0, 30_000, 4)]);
        assert!(out.iter().all(|w| w.is_update));
        out.clear();
        assert_eq!(
            o.insert(1, META, 5_000, 2.0, 30_000, InsertMode::Live),
            Inserted::LateUpdated
        );
        o.close(30_000, &mut out);
        assert_eq!(
            spans(&out),
            vec![(-20_000, 10_000, 2), (-10_000, 20_000, 4), (0, 30_000, 5)]
        );
    }

    #[test]
    fn restore_sets_first_open_window_and_replay_start() {
        let mut o = op(None);
        assert_eq!(o.restore(100_000), 80_000);
        assert_eq!(o.emitted_through(), Some(100_000));
        assert_eq!(
            o.insert(1, META, 75_000, 1.0, 0, InsertMode::Replay),
            Inserted::Skipped
        );
        assert_eq!(
            o.insert(1, META, 85_000, 1.0, 0, InsertMode::Replay),
            Inserted::Accepted
        );
        let mut out = Vec::new();
        o.close(110_000, &mut out);
        assert_eq!(spans(&out), vec![(80_000, 110_000, 1)]);
        let mut u = op(Some(20_000));
        // Windows ending after 80 s may still be updated → replay from 60 s.
        assert_eq!(u.restore(100_000), 60_000);
    }
}
