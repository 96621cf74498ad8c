//! Runs the stream engine inside a server: durable samples in, rows of the
//! `aggregates` table out.
//!
//! * The engine thread receives every batch once it is durable in the WAL
//!   ([`Store::subscribe`]; a slow engine back-pressures ingest rather than
//!   miss data), calls `advance` every second for idle timeouts, and appends
//!   emitted rows to the derived table `aggregates_log`, flushing it to
//!   Parquet every 10 s and on shutdown.
//! * Each stored row gets an `emitted_at` timestamp (microseconds, strictly
//!   increasing). A window re-emitted because of late data is a new row; the
//!   SQL view `aggregates` keeps the latest row per (transform, group_id,
//!   window_start), so queries see one value per window.
//! * Restart: for each transform the latest stored `window_end` is marked as
//!   emitted, then raw samples from the engine's replay point are re-fed from
//!   the store, which rebuilds the open windows exactly (aggregation is
//!   deterministic), so no window is lost and none is emitted twice with
//!   different values. Open windows are *not* force-closed on shutdown: that
//!   would store partial values.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::config::PipelineConfig;
use crate::engine::{Engine, aggregates_schema};
use crate::error::{Error, Result};
use crate::query::{self, QueryConfig, TableSource};
use crate::store::Store;
use crate::store::table::DerivedTable;

/// Name of the stored table (every emission).
pub const AGGREGATES_LOG: &str = "aggregates_log";
/// Name of the view (latest emission per window).
pub const AGGREGATES: &str = "aggregates";

static STORAGE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = aggregates_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(
        "emitted_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    Arc::new(Schema::new(fields))
});

/// Schema of `aggregates_log`: the engine's aggregates schema plus `emitted_at`.
pub fn storage_schema() -> SchemaRef {
    STORAGE_SCHEMA.clone()
}

/// The `aggregates` view over `aggregates_log`.
pub fn view() -> (String, String) {
    (
        AGGREGATES.to_string(),
        format!(
            "SELECT * EXCEPT (__rn) FROM (SELECT *, row_number() OVER (PARTITION BY transform, group_id, window_start \
             ORDER BY emitted_at DESC) AS __rn FROM {AGGREGATES_LOG}) WHERE __rn = 1"
        ),
    )
}

struct Stamp {
    last_us: i64,
}

impl Stamp {
    fn next(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_micros();
        self.last_us = now.max(self.last_us + 1);
        self.last_us
    }

    fn stamp(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let values: Vec<i64> = (0..batch.num_rows()).map(|_| self.next()).collect();
        let col: ArrayRef = Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"));
        let mut cols = batch.columns().to_vec();
        cols.push(col);
        Ok(RecordBatch::try_new(storage_schema(), cols)?)
    }
}

/// The running engine thread.
pub struct EngineTask {
    handle: Option<JoinHandle<()>>,
}

impl EngineTask {
    /// Waits for the thread (it ends when the store closes).
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ms_literal(ms: i64) -> String {
    format!("to_timestamp_millis({ms})")
}

/// Builds the engine from the pipeline's transforms, recovers it from storage
/// and starts its thread. `None` when the pipeline has no transforms.
pub async fn start(
    cfg: &PipelineConfig,
    store: &Arc<Store>,
    table: Arc<DerivedTable>,
) -> Result<Option<EngineTask>> {
    if cfg.transforms.is_empty() {
        return Ok(None);
    }
    let transforms: Vec<_> = cfg
        .transforms
        .iter()
        .map(|(id, t)| (id.clone(), t.to_engine()))
        .collect();
    let mut engine = Engine::build(&transforms)?;
    // Subscribe before taking the snapshot: a batch in both is de-duplicated
    // by the engine (per series and timestamp), a batch in neither is impossible.
    let rx = store.subscribe(64);

    let q = QueryConfig::default();
    let last = query::run_sql(
        vec![table.source()],
        &format!("SELECT transform, CAST(max(window_end) AS BIGINT) AS through FROM {AGGREGATES_LOG} GROUP BY transform"),
        &q,
    )
    .await?;
    let mut marked = std::collections::HashSet::new();
    for b in &last.batches {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>();
        let through = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        let (Some(ids), Some(through)) = (ids, through) else {
            continue;
        };
        for i in 0..b.num_rows() {
            let id = ids.value(i);
            if cfg.transforms.contains_key(id) {
                engine.mark_emitted(id, through.value(i))?;
                marked.insert(id.to_string());
            }
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    let fresh_from = now - 2 * engine.max_window_ms();
    let from = match (engine.replay_from_ms(), marked.len() < cfg.transforms.len()) {
        (Some(a), true) => a.min(fresh_from),
        (Some(a), false) => a,
        (None, _) => fresh_from,
    };
    let replay = query::run_sql(
        vec![TableSource::samples(store.snapshot())],
        &format!("SELECT * FROM samples WHERE ts >= {}", ms_literal(from)),
        &q,
    )
    .await?;
    let mut replayed = 0usize;
    for b in &replay.batches {
        replayed += b.num_rows();
        engine.replay(b)?;
    }
    tracing::info!(
        transforms = cfg.transforms.len(),
        replayed,
        from_ms = from,
        "stream engine recovered"
    );

    let handle = std::thread::Builder::new()
        .name("scalecast-engine".into())
        .spawn(move || run(engine, rx, &table))
        .map_err(|e| Error::Other(format!("cannot start engine thread: {e}")))?;
    Ok(Some(EngineTask {
        handle: Some(handle),
    }))
}

fn store_rows(engine: &mut Engine, table: &DerivedTable, stamp: &mut Stamp) {
    for b in engine.drain() {
        match stamp.stamp(&b).and_then(|b| table.append(b)) {
            Ok(()) => {}
            Err(e) => tracing::error!(error = %e, "cannot store aggregates"),
        }
    }
}

fn run(mut engine: Engine, rx: Receiver<RecordBatch>, table: &DerivedTable) {
    let mut stamp = Stamp { last_us: 0 };
    let mut last_advance = Instant::now();
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(b) => {
                if let Err(e) = engine.process(&b) {
                    tracing::error!(error = %e, "engine rejected a batch");
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_advance.elapsed() >= Duration::from_secs(1) {
            engine.advance(chrono::Utc::now().timestamp_millis());
            last_advance = Instant::now();
        }
        store_rows(&mut engine, table, &mut stamp);
        if last_flush.elapsed() >= Duration::from_secs(10) {
            if let Err(e) = table.flush() {
                tracing::error!(error = %e, "cannot flush aggregates");
            }
            last_flush = Instant::now();
        }
    }
    store_rows(&mut engine, table, &mut stamp);
    if let Err(e) = table.flush() {
        tracing::error!(error = %e, "cannot flush aggregates at shutdown");
    }
}
