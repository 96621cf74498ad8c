//! The windowed stream engine: turns raw samples (the `samples` schema) into
//! per-window aggregates, utilization and cost rows (the `aggregates`
//! schema, [`schema::aggregates_schema`]).
//!
//! Life cycle (config → build → runtime, as in Vector):
//!
//! 1. Parse the transform bodies ([`config::WindowTransformConfig`],
//!    [`config::UtilizationTransformConfig`], [`config::CostTransformConfig`])
//!    and `validate()` them.
//! 2. [`Engine::build`] with `(id, EngineTransform)` pairs.
//! 3. Feed [`Engine::process`] with samples batches, call [`Engine::advance`]
//!    with processing time (idle timeouts), collect [`Engine::drain`].
//!
//! Event time drives everything: each transform keeps a watermark (max event
//! time − `allowed_lateness_secs`, [`watermark`]) and emits a window when the
//! watermark reaches its end. Window state lives in ordered maps keyed by
//! window (or pane) start, one operator per file ([`tumbling`], [`sliding`]).
//! Aggregation is deterministic ([`aggregate`]): re-feeding the same samples
//! yields identical rows, which restart recovery relies on
//! ([`Engine::mark_emitted`], [`Engine::replay`], [`Engine::replay_from_ms`]).
//! `docs/engine.md` describes the design for users.

pub mod aggregate;
pub mod config;
pub mod cost;
pub mod matcher;
pub mod schema;
pub mod sliding;
pub mod state;
pub mod tumbling;
pub mod utilization;
pub mod watermark;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::engine::aggregate::{AggregateSet, aggregate_group};
use crate::engine::config::{
    CostTransformConfig, DEFAULT_LATE_RETENTION_SECS, LateDataPolicy, UtilizationTransformConfig,
    WindowSpec, WindowTransformConfig, secs_to_ms,
};
use crate::engine::matcher::Selector;
use crate::engine::schema::{AggregateRow, RowKind, UtilizationValues, rows_to_batch};
use crate::engine::sliding::SlidingOperator;
use crate::engine::state::{
    ClosedWindow, IdMap, InsertMode, Inserted, OperatorParams, SeriesData, SeriesMeta,
    WindowOperator,
};
use crate::engine::tumbling::TumblingOperator;
use crate::engine::utilization::UtilizationSpec;
use crate::engine::watermark::Watermark;
use crate::schema::{Label, SamplesView, samples_schema, series_id};

pub use crate::engine::schema::aggregates_schema;

/// One configuration problem: the field path inside the transform body
/// (`window.slide_secs`, `matchers[1]`) and a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Field path, dot-separated, with `[i]` for list items.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A transform configuration is invalid.
    #[error("invalid configuration: {}", .issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig {
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
    /// Building the engine failed for a transform (with the transform id).
    #[error("transform `{id}`: {source}")]
    Transform {
        /// Transform id.
        id: String,
        /// The underlying error.
        #[source]
        source: Box<EngineError>,
    },
    /// The transform graph is inconsistent (unknown input, duplicate id, ...).
    #[error("transform `{id}`: {reason}")]
    Graph {
        /// Transform id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// An input batch does not have the samples schema.
    #[error("input batch does not have the samples schema: {0}")]
    Schema(String),
    /// An unknown transform id was named.
    #[error("unknown transform `{0}`")]
    UnknownTransform(String),
}

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

/// One engine transform: the body of a `transforms:` entry (its `type` picks
/// the variant). Window and utilization transforms read samples; a cost
/// transform reads the rows of the utilization transforms listed in `inputs`.
// Built once at start-up from the pipeline file; boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EngineTransform {
    /// `type: window`.
    Window(WindowTransformConfig),
    /// `type: utilization`.
    Utilization(UtilizationTransformConfig),
    /// `type: cost`, with the ids of the utilization transforms it prices.
    Cost {
        /// Utilization transform ids (the entry's `inputs`).
        inputs: Vec<String>,
        /// Pricing.
        config: CostTransformConfig,
    },
}

/// Counters of one transform (monotonic since build).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransformStats {
    /// Selected samples received (including late and non-finite ones).
    pub samples_in: u64,
    /// Samples added to an open window.
    pub accepted: u64,
    /// Late samples that updated emitted windows (re-emitted).
    pub late_updated: u64,
    /// Late samples dropped (policy `drop`, or beyond the late retention).
    pub late_dropped: u64,
    /// Samples ignored because their value was NaN or ±Inf (e.g. staleness markers).
    pub non_finite_dropped: u64,
    /// Duplicate `(series, ts)` samples removed at first emission.
    pub duplicates: u64,
    /// Windows emitted for the first time.
    pub windows_emitted: u64,
    /// Windows emitted again because of late data.
    pub windows_reemitted: u64,
    /// Output rows produced.
    pub rows_emitted: u64,
    /// Times the idle timeout flushed open windows.
    pub idle_flushes: u64,
    /// Replayed samples that rebuilt state of windows emitted before a restart.
    pub replay_rebuilt: u64,
    /// Replayed samples ignored (their windows were emitted before the restart
    /// and are older than the replay start).
    pub replay_skipped: u64,
}

enum Kind {
    Window {
        selector: Selector,
        wanted: AggregateSet,
    },
    Utilization(Box<UtilizationSpec>),
}

struct GroupInfo {
    labels: Arc<[Label]>,
    id: u64,
}

struct Runtime {
    id: String,
    id_arc: Arc<str>,
    kind: Kind,
    metric: Arc<str>,
    group_by: Vec<String>,
    /// series_id → meta (None: not selected).
    cache: IdMap<Option<SeriesMeta>>,
    groups: Vec<GroupInfo>,
    group_index: HashMap<Vec<Label>, u32>,
    op: Box<dyn WindowOperator>,
    window_size_ms: i64,
    wm: Watermark,
    stats: TransformStats,
    /// Replay start returned by the last `mark_emitted`, until replay begins.
    pending_replay_from: Option<i64>,
}

/// Upper bound of the per-transform series cache; it is cleared when full.
const SERIES_CACHE_LIMIT: usize = 4_000_000;

impl Runtime {
    fn new(id: &str, t: &EngineTransform) -> Result<Self> {
        let (kind, metric, window, group_by, lateness, policy, retention, idle) = match t {
            EngineTransform::Window(c) => {
                c.validate()?;
                (
                    Kind::Window {
                        selector: c.selector()?,
                        wanted: AggregateSet::of(&c.aggregates),
                    },
                    c.metric.clone(),
                    c.window.clone(),
                    c.group_by.clone(),
                    c.allowed_lateness_secs,
                    c.late_data,
                    c.late_retention_secs,
                    c.idle_timeout_secs,
                )
            }
            EngineTransform::Utilization(c) => (
                Kind::Utilization(Box::new(UtilizationSpec::new(c.clone())?)),
                c.resource.name().to_string(),
                c.window.clone(),
                c.group_by.clone(),
                c.allowed_lateness_secs,
                c.late_data,
                c.late_retention_secs,
                c.idle_timeout_secs,
            ),
            EngineTransform::Cost { .. } => {
                return Err(EngineError::Graph {
                    id: id.to_string(),
                    reason: "cost transforms do not read samples".into(),
                });
            }
        };
        let params = OperatorParams {
            size_ms: window.size_ms(),
            slide_ms: window.slide_ms(),
            update_retention_ms: match policy {
                LateDataPolicy::Update => {
                    Some(secs_to_ms(retention.unwrap_or(DEFAULT_LATE_RETENTION_SECS)))
                }
                LateDataPolicy::Drop => None,
            },
        };
        let op: Box<dyn WindowOperator> = match window {
            WindowSpec::Tumbling { .. } => Box::new(TumblingOperator::new(params)),
            WindowSpec::Sliding { .. } => Box::new(SlidingOperator::new(params)),
        };
        Ok(Self {
            id: id.to_string(),
            id_arc: Arc::from(id),
            kind,
            metric: Arc::from(metric.as_str()),
            group_by,
            cache: IdMap::default(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            op,
            window_size_ms: params.size_ms,
            wm: Watermark::new(secs_to_ms(lateness), idle.map(secs_to_ms)),
            stats: TransformStats::default(),
            pending_replay_from: None,
        })
    }

    fn wants_metric(&self, name: &str) -> bool {
        match &self.kind {
            Kind::Window { selector, .. } => selector.metric == name,
            Kind::Utilization(u) => u.wants_metric(name),
        }
    }

    /// Selection and grouping of the series in row `i` (cache miss path).
    fn classify(&mut self, view: &SamplesView<'_>, i: usize) -> Option<SeriesMeta> {
        let name = view.name.value(i);
        if !self.wants_metric(name) {
            return None;
        }
        let labels = view.labels_at(i);
        let roles = match &self.kind {
            Kind::Window { selector, .. } => {
                let get = |k: &str| labels.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
                u8::from(selector.matches(name, get))
            }
            Kind::Utilization(u) => u.roles(name, &labels),
        };
        if roles == 0 {
            return None;
        }
        let mut key: Vec<Label> = self
            .group_by
            .iter()
            .filter_map(|g| {
                labels
                    .iter()
                    .find(|(k, v)| k == g && !v.is_empty())
                    .cloned()
            })
            .collect();
        key.sort();
        let group = match self.group_index.get(&key) {
            Some(g) => *g,
            None => {
                let g = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
                self.groups.push(GroupInfo {
                    id: series_id(&self.id, &key),
                    labels: key.clone().into(),
                });
                self.group_index.insert(key, g);
                g
            }
        };
        Some(SeriesMeta { group, roles })
    }

    fn ingest(&mut self, view: &SamplesView<'_>, mode: InsertMode, now: Option<i64>) {
        let n = view.ts.len();
        let ids = view.series_id.values();
        let tss = view.ts.values();
        let vals = view.value.values();
        let has_nulls = view.ts.null_count() > 0
            || view.series_id.null_count() > 0
            || view.value.null_count() > 0
            || view.name.null_count() > 0;
        let mut any = false;
        let mut wm = self.wm.current().unwrap_or(i64::MIN);
        for i in 0..n {
            if has_nulls
                && (view.ts.is_null(i)
                    || view.series_id.is_null(i)
                    || view.value.is_null(i)
                    || view.name.is_null(i))
            {
                continue;
            }
            let sid = ids[i];
            let meta = match self.cache.get(&sid) {
                Some(m) => *m,
                None => {
                    if self.cache.len() >= SERIES_CACHE_LIMIT {
                        self.cache.clear();
                    }
                    let m = self.classify(view, i);
                    self.cache.insert(sid, m);
                    m
                }
            };
            let Some(meta) = meta else {
                continue;
            };
            self.stats.samples_in += 1;
            let v = vals[i];
            if !v.is_finite() {
                self.stats.non_finite_dropped += 1;
                continue;
            }
            let ts = tss[i];
            match self.op.insert(sid, meta, ts, v, wm, mode) {
                Inserted::Accepted => self.stats.accepted += 1,
                Inserted::LateUpdated => self.stats.late_updated += 1,
                Inserted::LateDropped => self.stats.late_dropped += 1,
                Inserted::Rebuilt => self.stats.replay_rebuilt += 1,
                Inserted::Skipped => self.stats.replay_skipped += 1,
            }
            self.wm.observe(ts);
            wm = self.wm.current().unwrap_or(i64::MIN);
            any = true;
        }
        if any {
            self.wm.touch(now);
        }
    }

    /// Turns closed windows into rows.
    fn rows(&mut self, closed: Vec<ClosedWindow>, out: &mut Vec<AggregateRow>) {
        for w in closed {
            if w.is_update {
                self.stats.windows_reemitted += 1;
            } else {
                self.stats.windows_emitted += 1;
                self.stats.duplicates += w.duplicates;
            }
            // Series ordered by (group id, series id): each group is one run,
            // its series in ascending id order.
            let groups = &self.groups;
            let mut refs: Vec<(u64, u32, &SeriesData)> = w
                .series
                .iter()
                .filter_map(|s| {
                    groups
                        .get(s.meta.group as usize)
                        .map(|g| (g.id, s.meta.group, s))
                })
                .collect();
            refs.sort_unstable_by_key(|(gid, g, s)| (*gid, *g, s.id));
            let ordered: Vec<&SeriesData> = refs.iter().map(|r| r.2).collect();
            let mut i = 0;
            while i < ordered.len() {
                let g = ordered[i].meta.group;
                let mut j = i + 1;
                while j < ordered.len() && ordered[j].meta.group == g {
                    j += 1;
                }
                let series = &ordered[i..j];
                i = j;
                let Some(gi) = groups.get(g as usize) else {
                    continue;
                };
                let mut row = AggregateRow {
                    transform: self.id_arc.clone(),
                    kind: RowKind::Window,
                    metric: self.metric.clone(),
                    window_start: w.start,
                    window_end: w.end,
                    labels: gi.labels.clone(),
                    group_id: gi.id,
                    series: series.len() as u64,
                    samples: series.iter().map(|s| s.points.len() as u64).sum(),
                    values: Default::default(),
                    utilization: UtilizationValues::default(),
                    cost: Default::default(),
                    is_update: w.is_update,
                };
                match &self.kind {
                    Kind::Window { wanted, .. } => {
                        row.values = aggregate_group(
                            series.iter().map(|s| (s.id, s.points.as_slice())),
                            w.start,
                            w.end,
                            *wanted,
                        );
                    }
                    Kind::Utilization(u) => {
                        row.kind = RowKind::Utilization;
                        let (values, cost) = u.compute(&gi.labels, series, w.start, w.end);
                        row.utilization = values;
                        row.cost = cost;
                    }
                }
                self.stats.rows_emitted += 1;
                out.push(row);
            }
        }
    }
}

struct CostRuntime {
    id: String,
    id_arc: Arc<str>,
    inputs: Vec<String>,
    config: CostTransformConfig,
    stats: TransformStats,
}

/// The engine: every window / utilization / cost transform of a pipeline.
pub struct Engine {
    runtimes: Vec<Runtime>,
    costs: Vec<CostRuntime>,
    pending: Vec<AggregateRow>,
    now_ms: Option<i64>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field(
                "transforms",
                &self.runtimes.iter().map(|r| &r.id).collect::<Vec<_>>(),
            )
            .field(
                "costs",
                &self.costs.iter().map(|c| &c.id).collect::<Vec<_>>(),
            )
            .field("pending_rows", &self.pending.len())
            .finish()
    }
}

impl Engine {
    /// Validates and builds every transform. Cost transforms must list only
    /// utilization transforms of the same engine as inputs.
    pub fn build(transforms: &[(String, EngineTransform)]) -> Result<Engine> {
        let mut runtimes = Vec::new();
        let mut costs = Vec::new();
        for (i, (id, t)) in transforms.iter().enumerate() {
            if transforms[..i].iter().any(|(other, _)| other == id) {
                return Err(EngineError::Graph {
                    id: id.clone(),
                    reason: "duplicate transform id".into(),
                });
            }
            let wrap = |e: EngineError| EngineError::Transform {
                id: id.clone(),
                source: Box::new(e),
            };
            match t {
                EngineTransform::Cost { inputs, config } => {
                    config.validate().map_err(wrap)?;
                    if inputs.is_empty() {
                        return Err(EngineError::Graph {
                            id: id.clone(),
                            reason: "a cost transform needs at least one input".into(),
                        });
                    }
                    for input in inputs {
                        let ok = transforms.iter().any(|(other, t)| {
                            other == input && matches!(t, EngineTransform::Utilization(_))
                        });
                        if !ok {
                            return Err(EngineError::Graph {
                                id: id.clone(),
                                reason: format!(
                                    "input `{input}` is not a utilization transform of this pipeline"
                                ),
                            });
                        }
                    }
                    costs.push(CostRuntime {
                        id: id.clone(),
                        id_arc: Arc::from(id.as_str()),
                        inputs: inputs.clone(),
                        config: config.clone(),
                        stats: TransformStats::default(),
                    });
                }
                _ => runtimes.push(Runtime::new(id, t).map_err(wrap)?),
            }
        }
        Ok(Engine {
            runtimes,
            costs,
            pending: Vec::new(),
            now_ms: None,
        })
    }

    /// Feeds one samples batch (live data). Windows whose end the watermark
    /// reached are emitted into the pending output.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<()> {
        self.feed(batch, InsertMode::Live)
    }

    /// Feeds one samples batch during restart recovery, after
    /// [`mark_emitted`](Self::mark_emitted): samples of windows emitted before
    /// the restart rebuild their state without emitting them again; everything
    /// else behaves like [`process`](Self::process).
    pub fn replay(&mut self, batch: &RecordBatch) -> Result<()> {
        for rt in &mut self.runtimes {
            rt.pending_replay_from = None;
        }
        self.feed(batch, InsertMode::Replay)
    }

    /// Like [`process`](Self::process), but feeds only the named window /
    /// utilization transforms: for routing by each transform's `inputs` when
    /// a pipeline has several sources.
    pub fn process_into(&mut self, transforms: &[&str], batch: &RecordBatch) -> Result<()> {
        let mut only = Vec::with_capacity(transforms.len());
        for t in transforms {
            let i = self
                .runtimes
                .iter()
                .position(|r| r.id == *t)
                .ok_or_else(|| EngineError::UnknownTransform(t.to_string()))?;
            only.push(i);
        }
        self.feed_some(batch, InsertMode::Live, Some(&only))
    }

    fn feed(&mut self, batch: &RecordBatch, mode: InsertMode) -> Result<()> {
        self.feed_some(batch, mode, None)
    }

    fn feed_some(
        &mut self,
        batch: &RecordBatch,
        mode: InsertMode,
        only: Option<&[usize]>,
    ) -> Result<()> {
        check_schema(batch)?;
        let view = SamplesView::new(batch)
            .ok_or_else(|| EngineError::Schema("column types do not match".into()))?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let now = self.now_ms;
        for i in 0..self.runtimes.len() {
            if only.is_some_and(|o| !o.contains(&i)) {
                continue;
            }
            let rt = &mut self.runtimes[i];
            rt.ingest(&view, mode, now);
            let mut closed = Vec::new();
            if let Some(wm) = rt.wm.current() {
                rt.op.close(wm, &mut closed);
            }
            self.emit(i, closed);
        }
        Ok(())
    }

    fn emit(&mut self, runtime: usize, closed: Vec<ClosedWindow>) {
        if closed.is_empty() {
            return;
        }
        let start = self.pending.len();
        self.runtimes[runtime].rows(closed, &mut self.pending);
        let id = &self.runtimes[runtime].id;
        let mut priced = Vec::new();
        for c in &mut self.costs {
            if !c.inputs.iter().any(|i| i == id) {
                continue;
            }
            let Kind::Utilization(u) = &self.runtimes[runtime].kind else {
                continue;
            };
            for row in &self.pending[start..] {
                let mut r = row.clone();
                r.transform = c.id_arc.clone();
                r.kind = RowKind::Cost;
                r.group_id = series_id(&c.id, &r.labels);
                r.cost = cost::compute(
                    &c.config.pricing,
                    u.config.resource,
                    &r.labels,
                    r.utilization.usage,
                    r.utilization.request,
                    r.utilization.capacity,
                    r.window_end.saturating_sub(r.window_start),
                );
                c.stats.rows_emitted += 1;
                if r.is_update {
                    c.stats.windows_reemitted += 1;
                } else {
                    c.stats.windows_emitted += 1;
                }
                priced.push(r);
            }
        }
        self.pending.extend(priced);
    }

    /// Sets processing time and emits every open window of transforms whose
    /// input has been idle for their `idle_timeout_secs`.
    pub fn advance(&mut self, now_ms: i64) {
        self.now_ms = Some(now_ms);
        for i in 0..self.runtimes.len() {
            let rt = &mut self.runtimes[i];
            if !rt.op.has_open() || !rt.wm.idle(now_ms) {
                continue;
            }
            let mut closed = Vec::new();
            rt.op.close_all(&mut closed);
            rt.stats.idle_flushes += 1;
            tracing::debug!(transform = %rt.id, windows = closed.len(), "idle timeout: flushing open windows");
            self.emit(i, closed);
        }
    }

    /// Takes the rows emitted so far as `aggregates` batches (empty when none).
    pub fn drain(&mut self) -> Vec<RecordBatch> {
        const CHUNK: usize = 65_536;
        let rows = std::mem::take(&mut self.pending);
        rows.chunks(CHUNK).map(rows_to_batch).collect()
    }

    /// Takes the rows emitted so far as structs (tests, in-process consumers).
    pub fn drain_rows(&mut self) -> Vec<AggregateRow> {
        std::mem::take(&mut self.pending)
    }

    /// Restart: declares every window of `transform` ending at or before
    /// `through_ms` (the latest `window_end` stored for it) as already
    /// emitted, so a replay never emits them again (late data may still update
    /// the ones whose state the replay rebuilt). Returns the earliest event
    /// time the replay must start from for this transform.
    pub fn mark_emitted(&mut self, transform: &str, through_ms: i64) -> Result<i64> {
        let rt = self
            .runtimes
            .iter_mut()
            .find(|r| r.id == transform)
            .ok_or_else(|| EngineError::UnknownTransform(transform.to_string()))?;
        let from = rt.op.restore(through_ms);
        rt.pending_replay_from = Some(from);
        Ok(from)
    }

    /// The earliest event time the engine needs to recompute every window it
    /// holds open or can still update (after [`mark_emitted`](Self::mark_emitted):
    /// where the replay must start). Raw samples before it are no longer
    /// needed by the engine. `None` when the engine holds no state.
    pub fn replay_from_ms(&self) -> Option<i64> {
        self.runtimes
            .iter()
            .filter_map(
                |r| match (r.op.earliest_state_ms(), r.pending_replay_from) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            )
            .min()
    }

    /// End of the last window `transform` emitted (all earlier windows were emitted).
    pub fn emitted_through(&self, transform: &str) -> Result<Option<i64>> {
        self.runtimes
            .iter()
            .find(|r| r.id == transform)
            .map(|r| r.op.emitted_through())
            .ok_or_else(|| EngineError::UnknownTransform(transform.to_string()))
    }

    /// Current watermark of `transform` (`None` before its first sample).
    pub fn watermark(&self, transform: &str) -> Result<Option<i64>> {
        self.runtimes
            .iter()
            .find(|r| r.id == transform)
            .map(|r| r.wm.current())
            .ok_or_else(|| EngineError::UnknownTransform(transform.to_string()))
    }

    /// Counters of every transform, in build order (cost transforms last).
    pub fn stats(&self) -> Vec<(String, TransformStats)> {
        self.runtimes
            .iter()
            .map(|r| (r.id.clone(), r.stats))
            .chain(self.costs.iter().map(|c| (c.id.clone(), c.stats)))
            .collect()
    }

    /// Largest window size of any transform (ms), for replay planning.
    pub fn max_window_ms(&self) -> i64 {
        self.runtimes
            .iter()
            .map(|r| r.window_size_ms)
            .max()
            .unwrap_or(0)
    }
}

fn check_schema(batch: &RecordBatch) -> Result<()> {
    let want = samples_schema();
    let got = batch.schema();
    if got.fields().len() != want.fields().len() {
        return Err(EngineError::Schema(format!(
            "expected {} columns, got {}",
            want.fields().len(),
            got.fields().len()
        )));
    }
    for (w, g) in want.fields().iter().zip(got.fields().iter()) {
        let same_type = match (w.data_type(), g.data_type()) {
            // Map field names may differ between writers; the view checks the layout.
            (DataType::Map(..), DataType::Map(..)) => true,
            (a, b) => a == b,
        };
        if w.name() != g.name() || !same_type {
            return Err(EngineError::Schema(format!(
                "column `{}` should be `{}: {}`, got `{}: {}`",
                g.name(),
                w.name(),
                w.data_type(),
                g.name(),
                g.data_type()
            )));
        }
    }
    Ok(())
}
