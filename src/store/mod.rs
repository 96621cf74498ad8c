//! Durable storage: write-ahead log, in-memory head, Parquet history.
//!
//! The data path of every sample:
//!
//! ```text
//! source ──IngestRecord──▶ ingest queue ──▶ WAL writer thread
//!                                             │ append records, one fsync per group
//!                                             │ push batches into the head (queryable)
//!                                             │ acknowledge (the 2xx / the Kafka commit)
//!                                             ▼
//!                          segment sealed (size or age) ──▶ flusher thread
//!                                             │ sort + dedupe, one Parquet file per hour
//!                                             │ swap head → catalog, delete the segment
//!                                             ▼
//!                          maintenance: compaction of closed hours, retention
//! ```
//!
//! A record is acknowledged only after the fsync that covers it. On start,
//! every WAL segment left on disk is replayed into the head (a torn tail is
//! truncated) and flushed again; flushing is idempotent (see
//! [`parquet`](self::parquet)), so a crash at any point neither loses an
//! acknowledged sample nor duplicates one.

pub mod parquet;
pub mod table;
pub mod wal;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use self::parquet::{FileMeta, HOUR_MS, ParquetConfig};
use self::wal::{KIND_WRITE_REQUEST, SegmentWriter};
use crate::error::{Error, IoResultExt, Result};
use crate::metrics::Metrics;
use crate::sources::remote_write::decode_body;

/// Write-ahead log settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// Seal a segment (and flush it to Parquet) once it holds this many bytes.
    #[serde(default = "default_segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// Seal a non-empty segment once it is this old, seconds.
    #[serde(default = "default_segment_max_age_secs")]
    pub segment_max_age_secs: u64,
    /// Write requests that may wait for the WAL writer; beyond this, sources
    /// get "overloaded" (HTTP 503 with `Retry-After`).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Sealed segments allowed to wait for their flush before ingest is
    /// refused as overloaded (bounds memory).
    #[serde(default = "default_max_unflushed_segments")]
    pub max_unflushed_segments: usize,
}

fn default_segment_max_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_segment_max_age_secs() -> u64 {
    60
}
fn default_queue_capacity() -> usize {
    1024
}
fn default_max_unflushed_segments() -> usize {
    8
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_max_bytes: default_segment_max_bytes(),
            segment_max_age_secs: default_segment_max_age_secs(),
            queue_capacity: default_queue_capacity(),
            max_unflushed_segments: default_max_unflushed_segments(),
        }
    }
}

/// Storage settings (`storage:` in the pipeline file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Write-ahead log.
    #[serde(default)]
    pub wal: WalConfig,
    /// Parquet files.
    #[serde(default)]
    pub parquet: ParquetConfig,
    /// Delete samples older than this many seconds (whole hours); 0 keeps
    /// everything.
    #[serde(default = "default_retention_secs")]
    pub retention_secs: u64,
    /// How often compaction and retention run, seconds.
    #[serde(default = "default_maintenance_interval_secs")]
    pub maintenance_interval_secs: u64,
}

fn default_retention_secs() -> u64 {
    15 * 24 * 3600
}
fn default_maintenance_interval_secs() -> u64 {
    60
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            wal: WalConfig::default(),
            parquet: ParquetConfig::default(),
            retention_secs: default_retention_secs(),
            maintenance_interval_secs: default_maintenance_interval_secs(),
        }
    }
}

impl StorageConfig {
    /// Checks the values; errors name the field path below `storage`.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.wal.segment_max_bytes < 4096 {
            return Err((
                "wal.segment_max_bytes".into(),
                "must be at least 4096".into(),
            ));
        }
        if self.wal.segment_max_age_secs == 0 {
            return Err((
                "wal.segment_max_age_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.wal.queue_capacity == 0 {
            return Err(("wal.queue_capacity".into(), "must be at least 1".into()));
        }
        if self.wal.max_unflushed_segments == 0 {
            return Err((
                "wal.max_unflushed_segments".into(),
                "must be at least 1".into(),
            ));
        }
        if self.maintenance_interval_secs == 0 {
            return Err((
                "maintenance_interval_secs".into(),
                "must be at least 1".into(),
            ));
        }
        self.parquet
            .validate()
            .map_err(|(f, r)| (format!("parquet.{f}"), r))
    }
}

/// What a source hands to the store: the WAL payload (a snappy-compressed
/// remote-write `WriteRequest`) and the same samples already decoded.
#[derive(Debug, Clone)]
pub struct IngestRecord {
    /// Snappy-compressed `WriteRequest`, written to the WAL as is.
    pub wal_payload: Bytes,
    /// The decoded samples (samples schema).
    pub batch: RecordBatch,
}

struct Pending {
    rec: IngestRecord,
    ack: oneshot::Sender<Result<()>>,
}

/// A consistent view of the samples table: Parquet files plus the unflushed
/// head, taken under one lock so no row is seen twice or missed.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Parquet files.
    pub files: Vec<FileMeta>,
    /// Batches not yet in Parquet.
    pub head: Vec<RecordBatch>,
}

impl Snapshot {
    /// Rows in the snapshot.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum::<u64>()
            + self.head.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    }
}

#[derive(Default)]
struct State {
    head: BTreeMap<u64, Vec<RecordBatch>>,
    head_rows: usize,
    files: Vec<FileMeta>,
    unflushed: usize,
    wal_segments: usize,
}

struct Inner {
    cfg: StorageConfig,
    wal_dir: PathBuf,
    samples_dir: PathBuf,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    subscribers: Mutex<Vec<SyncSender<RecordBatch>>>,
    /// Held (locked) for the life of the store.
    _lock: fs::File,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a thread panicked while holding it; the state
        // itself is still consistent (every update is a single step).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_gauges(&self, st: &State) {
        self.metrics.head_samples.set(st.head_rows as i64);
        self.metrics.wal_segments.set(st.wal_segments as i64);
        self.metrics.storage_files.set(st.files.len() as i64);
        self.metrics
            .storage_bytes
            .set(st.files.iter().map(|f| f.bytes).sum::<u64>() as i64);
    }
}

/// The storage engine. See the module docs.
pub struct Store {
    inner: Arc<Inner>,
    tx: Mutex<Option<SyncSender<Pending>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Paths under a data directory.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// Directory of the samples table.
pub fn samples_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("samples")
}

fn decode_records(records: &[wal::Record]) -> Vec<RecordBatch> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        if r.kind != KIND_WRITE_REQUEST {
            tracing::warn!(kind = r.kind, "skipping WAL record of unknown kind");
            continue;
        }
        match decode_body(&r.payload, usize::MAX) {
            Ok(d) if d.batch.num_rows() > 0 => out.push(d.batch),
            Ok(_) => {}
            Err((_, e)) => tracing::error!(error = %e, "skipping undecodable WAL record"),
        }
    }
    out
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Opens (creating) the store in `data_dir`, replays the WAL and starts
    /// the writer and flusher threads. Blocking: call from `spawn_blocking`.
    pub fn open(data_dir: &Path, cfg: StorageConfig, metrics: Arc<Metrics>) -> Result<Store> {
        let started = Instant::now();
        let wal_dir = wal_dir(data_dir);
        let samples_dir = samples_dir(data_dir);
        fs::create_dir_all(&wal_dir).with_path(&wal_dir)?;
        fs::create_dir_all(&samples_dir).with_path(&samples_dir)?;
        // One writer per data directory: a second server (or a backfill while
        // a server runs) would interleave WAL segments.
        let lock_path = data_dir.join("LOCK");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_path(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Other(format!(
                    "data directory {} is in use by another scalecast process (lock {})",
                    data_dir.display(),
                    lock_path.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }

        let files = parquet::scan_table(&samples_dir, true)?;
        let mut state = State {
            files,
            ..State::default()
        };
        let segs = wal::list_segments(&wal_dir)?;
        let mut replayed = 0usize;
        for &seq in &segs {
            let path = wal::segment_path(&wal_dir, seq);
            let contents = wal::read_segment(&path)?;
            if let Some(why) = &contents.torn {
                tracing::warn!(segment = %path.display(), reason = %why, valid_bytes = contents.valid_len,
                    file_bytes = contents.file_len, "WAL segment has a torn tail; truncating it");
                wal::repair_segment(&path, &contents)?;
            }
            let batches = decode_records(&contents.records);
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            replayed += rows;
            state.head_rows += rows;
            state.head.insert(seq, batches);
        }
        state.unflushed = segs.len();
        state.wal_segments = segs.len();
        let next_seq = segs.last().map_or(1, |s| s + 1);
        let segment = SegmentWriter::create(&wal_dir, next_seq)?;
        state.wal_segments += 1;

        let inner = Arc::new(Inner {
            cfg: cfg.clone(),
            wal_dir,
            samples_dir,
            state: Mutex::new(state),
            metrics,
            subscribers: Mutex::new(Vec::new()),
            _lock: lock,
        });
        inner.publish_gauges(&inner.lock());
        let elapsed = started.elapsed().as_secs_f64();
        inner.metrics.wal_replay_seconds.set(elapsed);
        tracing::info!(
            segments = segs.len(),
            samples = replayed,
            seconds = elapsed,
            "WAL replayed"
        );

        let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(cfg.wal.queue_capacity);
        let (flush_tx, flush_rx) = std::sync::mpsc::channel::<u64>();
        for &seq in &segs {
            // Receiver is alive: it is moved into the flusher below.
            let _ = flush_tx.send(seq);
        }
        let w_inner = inner.clone();
        let writer = std::thread::Builder::new()
            .name("scalecast-wal".into())
            .spawn(move || writer_loop(&w_inner, rx, segment, flush_tx))
            .map_err(|e| Error::Other(format!("cannot start WAL writer thread: {e}")))?;
        let f_inner = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("scalecast-flush".into())
            .spawn(move || flusher_loop(&f_inner, flush_rx))
            .map_err(|e| Error::Other(format!("cannot start flusher thread: {e}")))?;
        Ok(Store {
            inner,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(vec![writer, flusher]),
        })
    }

    /// Appends a record durably. Returns once it is fsynced in the WAL and
    /// visible to queries, or [`Error::Overloaded`] at once when the queue or
    /// the flusher is behind (nothing is written then).
    pub async fn ingest(&self, rec: IngestRecord) -> Result<()> {
        let rx = self.submit(rec)?;
        rx.await
            .map_err(|_| Error::Shutdown("WAL writer stopped before acknowledging".into()))?
    }

    /// Like [`Store::ingest`] for threads that are not async (blocking).
    pub fn ingest_blocking(&self, rec: IngestRecord) -> Result<()> {
        let rx = self.submit(rec)?;
        rx.blocking_recv()
            .map_err(|_| Error::Shutdown("WAL writer stopped before acknowledging".into()))?
    }

    fn submit(&self, rec: IngestRecord) -> Result<oneshot::Receiver<Result<()>>> {
        {
            let st = self.inner.lock();
            if st.unflushed >= self.inner.cfg.wal.max_unflushed_segments {
                return Err(Error::Overloaded(format!(
                    "{} WAL segments are waiting for their Parquet flush; retry later",
                    st.unflushed
                )));
            }
        }
        let (ack, rx) = oneshot::channel();
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(Error::Shutdown("store is closed".into()));
        };
        match tx.try_send(Pending { rec, ack }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Error::Overloaded(format!(
                "ingest queue is full ({} requests waiting for the WAL); retry later",
                self.inner.cfg.wal.queue_capacity
            ))),
            Err(TrySendError::Disconnected(_)) => Err(Error::Shutdown("WAL writer stopped".into())),
        }
    }

    /// A consistent snapshot of the samples table for a query.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.inner.lock();
        Snapshot {
            files: st.files.clone(),
            head: st.head.values().flatten().cloned().collect(),
        }
    }

    /// Receives every batch once it is durable (for the stream engine).
    ///
    /// The channel is bounded by `capacity` batches and the WAL writer blocks
    /// on a full channel, so a slow consumer applies back-pressure to ingest
    /// (the queue fills, sources get 503) instead of silently missing data.
    /// Batches replayed from the WAL at start are not sent; consumers read
    /// those from [`Store::snapshot`].
    pub fn subscribe(&self, capacity: usize) -> Receiver<RecordBatch> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Seals the open segment, flushes everything to Parquet and stops the
    /// threads. Blocking.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let threads: Vec<JoinHandle<()>> = match self.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
        // No more batches will come: let subscribers see the end.
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Reads a data directory without modifying it (for `scalecast query`
    /// while a server may be running): Parquet files plus every WAL segment
    /// not yet covered by a Parquet file.
    pub fn read_only_snapshot(data_dir: &Path) -> Result<Snapshot> {
        let files = parquet::scan_table(&samples_dir(data_dir), false)?;
        let flushed_up_to = files.iter().map(|f| f.last_seq).max().unwrap_or(0);
        let mut head = Vec::new();
        let wal_dir = wal_dir(data_dir);
        for seq in wal::list_segments(&wal_dir)? {
            if seq <= flushed_up_to
                && files
                    .iter()
                    .any(|f| f.first_seq <= seq && seq <= f.last_seq)
            {
                continue;
            }
            let path = wal::segment_path(&wal_dir, seq);
            match wal::read_segment(&path) {
                Ok(c) => head.extend(decode_records(&c.records)),
                // The segment may have been flushed and deleted meanwhile.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Snapshot { files, head })
    }

    /// Data directory paths (WAL, samples table).
    pub fn dirs(&self) -> (&Path, &Path) {
        (&self.inner.wal_dir, &self.inner.samples_dir)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

const MAX_GROUP: usize = 4096;

fn writer_loop(
    inner: &Inner,
    rx: Receiver<Pending>,
    mut segment: SegmentWriter,
    flush_tx: std::sync::mpsc::Sender<u64>,
) {
    let max_age = Duration::from_secs(inner.cfg.wal.segment_max_age_secs);
    let mut opened = Instant::now();
    let mut group: Vec<Pending> = Vec::with_capacity(64);
    let mut framed: Vec<u8> = Vec::with_capacity(1 << 20);
    loop {
        let wait = max_age
            .saturating_sub(opened.elapsed())
            .max(Duration::from_millis(1));
        let disconnected = match rx.recv_timeout(wait) {
            Ok(p) => {
                group.push(p);
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(p) => group.push(p),
                        Err(_) => break,
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if !group.is_empty() {
            framed.clear();
            for p in &group {
                wal::encode_record(&mut framed, KIND_WRITE_REQUEST, &p.rec.wal_payload);
            }
            let before = segment.len();
            match segment.append_and_sync(&framed) {
                Ok(()) => {
                    inner.metrics.wal_bytes.inc_by(framed.len() as u64);
                    inner.metrics.wal_fsyncs.inc();
                    let mut rows = 0usize;
                    {
                        let mut st = inner.lock();
                        let entry = st.head.entry(segment.seq).or_default();
                        for p in &group {
                            rows += p.rec.batch.num_rows();
                            entry.push(p.rec.batch.clone());
                        }
                        st.head_rows += rows;
                        inner.publish_gauges(&st);
                    }
                    let batches: Vec<RecordBatch> =
                        group.iter().map(|p| p.rec.batch.clone()).collect();
                    for p in group.drain(..) {
                        let _ = p.ack.send(Ok(()));
                    }
                    publish(inner, batches);
                }
                Err(e) => {
                    tracing::error!(error = %e, "WAL append failed; refusing the group and starting a new segment");
                    for p in group.drain(..) {
                        let _ = p.ack.send(Err(Error::Wal(e.to_string())));
                    }
                    // The failed bytes may be partly on disk: seal the segment at
                    // its last good length so replay never sees them as valid.
                    if let Ok(f) = fs::OpenOptions::new().write(true).open(segment.path()) {
                        let _ = f.set_len(before);
                        let _ = f.sync_all();
                    }
                    match roll(inner, &mut segment, &flush_tx) {
                        Ok(()) => opened = Instant::now(),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot open a new WAL segment; retrying in 1s");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                    continue;
                }
            }
        }
        let full = segment.len() >= inner.cfg.wal.segment_max_bytes;
        let old = opened.elapsed() >= max_age;
        if disconnected {
            if !segment.is_empty() {
                let _ = flush_tx.send(segment.seq);
                inner.lock().unflushed += 1;
            } else {
                let _ = fs::remove_file(segment.path());
                let mut st = inner.lock();
                st.wal_segments = st.wal_segments.saturating_sub(1);
            }
            return;
        }
        if (full || old) && !segment.is_empty() {
            if let Err(e) = roll(inner, &mut segment, &flush_tx) {
                tracing::error!(error = %e, "cannot roll WAL segment; continuing in the current one");
            }
            opened = Instant::now();
        } else if old {
            opened = Instant::now();
        }
    }
}

/// Hands durable batches to subscribers, dropping the ones that hung up.
fn publish(inner: &Inner, batches: Vec<RecordBatch>) {
    let mut subs = inner.subscribers.lock().unwrap_or_else(|p| p.into_inner());
    if subs.is_empty() {
        return;
    }
    subs.retain(|tx| batches.iter().all(|b| tx.send(b.clone()).is_ok()));
}

fn roll(
    inner: &Inner,
    segment: &mut SegmentWriter,
    flush_tx: &std::sync::mpsc::Sender<u64>,
) -> Result<()> {
    let next = SegmentWriter::create(&inner.wal_dir, segment.seq + 1)?;
    let sealed = std::mem::replace(segment, next);
    {
        let mut st = inner.lock();
        st.unflushed += 1;
        st.wal_segments += 1;
        inner.publish_gauges(&st);
    }
    let _ = flush_tx.send(sealed.seq);
    Ok(())
}

fn flusher_loop(inner: &Inner, rx: Receiver<u64>) {
    let interval = Duration::from_secs(inner.cfg.maintenance_interval_secs);
    let mut last_maintenance = Instant::now();
    loop {
        match rx.recv_timeout(interval) {
            Ok(seq) => {
                let mut attempt = 0u32;
                while let Err(e) = flush_segment(inner, seq) {
                    attempt += 1;
                    inner.metrics.flush_errors.inc();
                    let wait = Duration::from_millis(200 * u64::from(attempt.min(25)));
                    tracing::error!(segment = seq, error = %e, attempt, "flush failed; data stays in the WAL, retrying");
                    std::thread::sleep(wait);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_maintenance.elapsed() >= interval {
            maintenance(inner, now_ms());
            last_maintenance = Instant::now();
        }
    }
}

/// Writes segment `seq` to Parquet, swaps it from the head into the catalog
/// and deletes the WAL segment.
fn flush_segment(inner: &Inner, seq: u64) -> Result<()> {
    let started = Instant::now();
    let (batches, covered_hours): (Vec<RecordBatch>, Vec<i64>) = {
        let st = inner.lock();
        let batches = st.head.get(&seq).cloned().unwrap_or_default();
        // Hours where a compacted file already covers this segment (the WAL
        // file outlived a flush): do not write them again.
        let covered = st
            .files
            .iter()
            .filter(|f| {
                f.first_seq <= seq && seq <= f.last_seq && (f.first_seq, f.last_seq) != (seq, seq)
            })
            .map(|f| f.hour_ms)
            .collect();
        (batches, covered)
    };
    let mut metas =
        parquet::write_segment_range(&inner.samples_dir, &batches, seq, seq, &inner.cfg.parquet)?;
    metas.retain(|m| {
        if covered_hours.contains(&m.hour_ms) {
            let _ = fs::remove_file(&m.path);
            false
        } else {
            true
        }
    });
    let rows: u64 = metas.iter().map(|m| m.rows).sum();
    {
        let mut st = inner.lock();
        for m in metas {
            if let Some(existing) = st.files.iter_mut().find(|f| f.path == m.path) {
                *existing = m;
            } else {
                st.files.push(m);
            }
        }
        st.files.sort_by_key(|f| (f.hour_ms, f.first_seq));
        if let Some(b) = st.head.remove(&seq) {
            let n: usize = b.iter().map(|x| x.num_rows()).sum();
            st.head_rows = st.head_rows.saturating_sub(n);
        }
        st.unflushed = st.unflushed.saturating_sub(1);
        inner.publish_gauges(&st);
    }
    let path = wal::segment_path(&inner.wal_dir, seq);
    match fs::remove_file(&path) {
        Ok(()) => {
            let mut st = inner.lock();
            st.wal_segments = st.wal_segments.saturating_sub(1);
            inner.publish_gauges(&st);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(segment = %path.display(), error = %e, "cannot delete flushed WAL segment")
        }
    }
    inner.metrics.flushed_samples.inc_by(rows);
    inner
        .metrics
        .flush_duration
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(segment = seq, rows, "flushed WAL segment to Parquet");
    Ok(())
}

/// Compaction of closed hours and retention.
fn maintenance(inner: &Inner, now: i64) {
    if inner.cfg.retention_secs > 0 {
        let cutoff = now - (inner.cfg.retention_secs as i64) * 1000;
        let old: Vec<FileMeta> = {
            let st = inner.lock();
            st.files
                .iter()
                .filter(|f| f.hour_ms + HOUR_MS <= cutoff)
                .cloned()
                .collect()
        };
        if !old.is_empty() {
            let removed = parquet::remove_partitions_before(&old, cutoff);
            let mut st = inner.lock();
            st.files
                .retain(|f| !removed.iter().any(|r| r.path == f.path));
            inner.publish_gauges(&st);
            tracing::info!(files = removed.len(), "retention removed old partitions");
        }
    }
    let compact_after = inner.cfg.parquet.compact_after_secs as i64 * 1000;
    if compact_after == 0 {
        return;
    }
    let groups: Vec<Vec<FileMeta>> = {
        let st = inner.lock();
        let mut by_hour: BTreeMap<i64, Vec<FileMeta>> = BTreeMap::new();
        for f in &st.files {
            if f.hour_ms + HOUR_MS + compact_after <= now {
                by_hour.entry(f.hour_ms).or_default().push(f.clone());
            }
        }
        by_hour.into_values().filter(|v| v.len() > 1).collect()
    };
    for inputs in groups {
        match parquet::compact(&inner.samples_dir, &inputs, &inner.cfg.parquet) {
            Ok(Some(merged)) => {
                {
                    let mut st = inner.lock();
                    st.files
                        .retain(|f| !inputs.iter().any(|i| i.path == f.path));
                    st.files.push(merged.clone());
                    st.files.sort_by_key(|f| (f.hour_ms, f.first_seq));
                    inner.publish_gauges(&st);
                }
                for f in &inputs {
                    if f.path != merged.path {
                        let _ = fs::remove_file(&f.path);
                    }
                }
                tracing::info!(
                    files = inputs.len(),
                    rows = merged.rows,
                    "compacted hour partition"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "compaction failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Sample, batch_to_samples, samples_to_batch};
    use crate::sources::remote_write::encode_samples;

    fn rec(samples: &[Sample]) -> IngestRecord {
        IngestRecord {
            wal_payload: Bytes::from(encode_samples(samples)),
            batch: samples_to_batch(samples),
        }
    }

    fn sample(ts: i64) -> Sample {
        Sample {
            name: "m".into(),
            labels: vec![("i".into(), "x".into())],
            ts_ms: ts,
            value: ts as f64,
        }
    }

    fn all_rows(snap: &Snapshot) -> Vec<Sample> {
        let mut out: Vec<Sample> = snap.head.iter().flat_map(batch_to_samples).collect();
        for f in &snap.files {
            for b in parquet::read_file(&f.path).expect("read") {
                out.extend(batch_to_samples(&b));
            }
        }
        out.sort_by_key(|s| s.ts_ms);
        out
    }

    #[test]
    fn ingest_is_visible_then_flushed_on_close_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = Arc::new(Metrics::new());
        let store =
            Store::open(dir.path(), StorageConfig::default(), metrics.clone()).expect("open");
        store
            .ingest_blocking(rec(&[sample(1), sample(2)]))
            .expect("ingest");
        store.ingest_blocking(rec(&[sample(3)])).expect("ingest");
        assert_eq!(
            store
                .snapshot()
                .head
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            3
        );
        store.close();
        drop(store);
        let snap = Store::read_only_snapshot(dir.path()).expect("snapshot");
        assert!(snap.head.is_empty(), "everything flushed on close");
        assert_eq!(all_rows(&snap), vec![sample(1), sample(2), sample(3)]);
        let store = Store::open(dir.path(), StorageConfig::default(), metrics).expect("reopen");
        assert_eq!(
            all_rows(&store.snapshot()),
            vec![sample(1), sample(2), sample(3)]
        );
    }

    #[test]
    fn replays_unflushed_segments_and_truncates_torn_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        // Write a WAL by hand as a crashed process would leave it.
        let wal_dir = wal_dir(dir.path());
        fs::create_dir_all(&wal_dir).expect("mkdir");
        let mut seg = SegmentWriter::create(&wal_dir, 4).expect("seg");
        let mut buf = Vec::new();
        wal::encode_record(&mut buf, KIND_WRITE_REQUEST, &encode_samples(&[sample(10)]));
        wal::encode_record(&mut buf, KIND_WRITE_REQUEST, &encode_samples(&[sample(11)]));
        seg.append_and_sync(&buf).expect("append");
        seg.append_and_sync(&[9, 9, 9]).expect("torn tail");
        drop(seg);
        let store = Store::open(
            dir.path(),
            StorageConfig::default(),
            Arc::new(Metrics::new()),
        )
        .expect("open");
        assert_eq!(all_rows(&store.snapshot()), vec![sample(10), sample(11)]);
        // New writes go to a later segment.
        store.ingest_blocking(rec(&[sample(12)])).expect("ingest");
        store.close();
        let snap = Store::read_only_snapshot(dir.path()).expect("snap");
        assert_eq!(all_rows(&snap), vec![sample(10), sample(11), sample(12)]);
        assert!(snap.files.iter().any(|f| f.first_seq == 4));
    }

    #[test]
    fn subscribers_receive_every_durable_batch() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(
            dir.path(),
            StorageConfig::default(),
            Arc::new(Metrics::new()),
        )
        .expect("open");
        let rx = store.subscribe(1);
        let reader = std::thread::spawn(move || {
            let mut rows = 0;
            while let Ok(b) = rx.recv() {
                rows += b.num_rows();
            }
            rows
        });
        for i in 0..20 {
            store
                .ingest_blocking(rec(&[sample(i), sample(i + 100)]))
                .expect("ingest");
        }
        store.close();
        // The subscription ends at close, even while the store is still referenced.
        assert_eq!(reader.join().expect("reader"), 40);
        drop(store);
    }

    #[test]
    fn a_data_directory_has_one_writer() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Store::open(
            dir.path(),
            StorageConfig::default(),
            Arc::new(Metrics::new()),
        )
        .expect("first");
        let err = Store::open(
            dir.path(),
            StorageConfig::default(),
            Arc::new(Metrics::new()),
        )
        .err()
        .expect("second refused");
        assert!(
            err.to_string()
                .contains("in use by another scalecast process"),
            "{err}"
        );
        drop(a);
        Store::open(
            dir.path(),
            StorageConfig::default(),
            Arc::new(Metrics::new()),
        )
        .expect("free again");
    }

    #[test]
    fn overload_is_reported_not_blocking() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = StorageConfig::default();
        cfg.wal.max_unflushed_segments = 1;
        let store = Store::open(dir.path(), cfg, Arc::new(Metrics::new())).expect("open");
        store.inner.lock().unflushed = 1; // the flusher is behind
        let err = store
            .ingest_blocking(rec(&[sample(1)]))
            .expect_err("overloaded");
        assert!(matches!(err, Error::Overloaded(_)), "{err}");
        store.inner.lock().unflushed = 0;
        store
            .ingest_blocking(rec(&[sample(1)]))
            .expect("accepted again");
    }

    #[test]
    fn size_roll_flushes_while_running() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = StorageConfig::default();
        cfg.wal.segment_max_bytes = 4096;
        let store = Store::open(dir.path(), cfg, Arc::new(Metrics::new())).expect("open");
        let samples: Vec<Sample> = (0..2000).map(sample).collect();
        for chunk in samples.chunks(100) {
            store.ingest_blocking(rec(chunk)).expect("ingest");
        }
        // Flushes happen in the background; wait for at least one file.
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.snapshot().files.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let snap = store.snapshot();
        assert!(!snap.files.is_empty(), "a sealed segment was flushed");
        assert_eq!(
            all_rows(&snap),
            samples,
            "no row lost or doubled across head and files"
        );
    }
}
