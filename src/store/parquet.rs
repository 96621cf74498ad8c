//! Time-partitioned Parquet files.
//!
//! Layout (hive-style, one directory per UTC hour):
//! ```text
//! <table dir>/date=2026-11-23/hour=11/seg-00000000000000000042-00000000000000000042.parquet
//! ```
//! A file's name carries the inclusive range of WAL segments it was made from.
//! Writing is idempotent: flushing the same segment again writes the same file
//! name with the same content, so a crash between a Parquet write and the WAL
//! segment's deletion never duplicates data. Compaction merges the files of a
//! closed hour into one whose range covers theirs; on start, files whose range
//! is covered by another file in the same partition (left by an interrupted
//! compaction) are deleted.
//!
//! Rows are sorted by `series_id` then `ts`, with duplicate (series, ts) rows
//! removed (the last one written wins). Compression is zstd; `ts` uses delta
//! encoding and `value` byte-stream-split, which is what makes a node_exporter
//! sample cost a few bytes (see docs/performance.md).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike, Timelike, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoResultExt, Result};
use crate::schema::{SamplesBuilder, SamplesView, col};
use crate::store::wal::sync_dir;

/// Milliseconds in one hour (the partition width).
pub const HOUR_MS: i64 = 3_600_000;

/// Parquet writer settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Rows per row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level (1–22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Merge the files of an hour once the hour is older than this many
    /// seconds; 0 disables compaction.
    #[serde(default = "default_compact_after_secs")]
    pub compact_after_secs: u64,
}

fn default_row_group_rows() -> usize {
    1 << 20
}
fn default_zstd_level() -> i32 {
    3
}
fn default_compact_after_secs() -> u64 {
    2 * 3600
}

impl Default for ParquetConfig {
    fn default() -> Self {
        Self {
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            compact_after_secs: default_compact_after_secs(),
        }
    }
}

impl ParquetConfig {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.row_group_rows < 1024 {
            return Err(("row_group_rows".into(), "must be at least 1024".into()));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(("zstd_level".into(), "must be between 1 and 22".into()));
        }
        Ok(())
    }

    fn writer_properties(&self) -> Result<WriterProperties> {
        let level = ZstdLevel::try_new(self.zstd_level)?;
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_dictionary_enabled(ColumnPath::from(col::TS), false)
            .set_column_encoding(ColumnPath::from(col::TS), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(ColumnPath::from(col::VALUE), false)
            // Map entries cannot prune a query (DataFusion does not push
            // `labels['k'] = v` into Parquet statistics), and their min/max
            // was a tenth of the flush time.
            .set_column_statistics_enabled(label_column("key"), EnabledStatistics::None)
            .set_column_statistics_enabled(label_column("value"), EnabledStatistics::None)
            .set_column_encoding(ColumnPath::from(col::VALUE), Encoding::BYTE_STREAM_SPLIT)
            .build())
    }
}

/// Parquet path of the `labels` map's key or value column.
fn label_column(leaf: &str) -> ColumnPath {
    ColumnPath::new(vec![col::LABELS.into(), "entries".into(), leaf.into()])
}

/// A Parquet file known to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Absolute path.
    pub path: PathBuf,
    /// Start of the partition hour, ms since the epoch.
    pub hour_ms: i64,
    /// First WAL segment covered.
    pub first_seq: u64,
    /// Last WAL segment covered.
    pub last_seq: u64,
    /// Rows in the file.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Directory of the partition holding `hour_ms`.
pub fn partition_dir(table_dir: &Path, hour_ms: i64) -> PathBuf {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(hour_ms).unwrap_or_default();
    table_dir
        .join(format!(
            "date={:04}-{:02}-{:02}",
            t.year(),
            t.month(),
            t.day()
        ))
        .join(format!("hour={:02}", t.hour()))
}

fn parse_partition(date: &str, hour: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let h: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
    Some(d.and_hms_opt(h, 0, 0)?.and_utc().timestamp_millis())
}

fn file_name(first: u64, last: u64) -> String {
    format!("seg-{first:020}-{last:020}.parquet")
}

fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".parquet")?;
    let (a, b) = rest.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Floors a timestamp to its hour.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Sorts the rows of `batches` by (series_id, ts), removes duplicate
/// (series_id, ts) rows keeping the one that came last (later batch, later
/// row), and splits them by UTC hour of `ts`: one sorted batch per hour.
///
/// One sort of plain keys, then each row is copied once into its hour's
/// batch; no concatenation and no generic `take` of the labels map (both
/// were most of the flush time, see docs/performance.md).
pub fn sort_dedup_by_hour(batches: &[RecordBatch]) -> Result<BTreeMap<i64, RecordBatch>> {
    let views: Vec<SamplesView<'_>> = batches
        .iter()
        .map(|b| {
            SamplesView::new(b)
                .ok_or_else(|| Error::Storage("batch does not have the samples schema".into()))
        })
        .collect::<Result<_>>()?;
    // Arrival index of each batch's first row: the order rows came in.
    let mut batch_starts = Vec::with_capacity(views.len());
    let mut total = 0usize;
    for b in batches {
        batch_starts.push(total);
        total += b.num_rows();
    }
    if total as u64 >= 1 << ARRIVAL_BITS {
        return Err(Error::Storage(format!(
            "{total} rows in one flush is above the limit"
        )));
    }
    // One vector of rows per hour; nearly always a single hour.
    let mut hours: Vec<(i64, Vec<Row>)> = Vec::new();
    let mut current = usize::MAX;
    for (v, &base) in views.iter().zip(&batch_starts) {
        let (ts, ids, values) = (v.ts.values(), v.series_id.values(), v.value.values());
        for r in 0..ts.len() {
            let hour = hour_of(ts[r]);
            if hours.get(current).is_none_or(|h| h.0 != hour) {
                current = match hours.iter().position(|h| h.0 == hour) {
                    Some(i) => i,
                    None => {
                        let cap = if hours.is_empty() { total } else { 0 };
                        hours.push((hour, Vec::with_capacity(cap)));
                        hours.len() - 1
                    }
                };
            }
            hours[current]
                .1
                .push(Row::new(ids[r], (ts[r] - hour) as u64, base + r, values[r]));
        }
    }
    let mut out = BTreeMap::new();
    for (hour, mut rows) in hours {
        // Arrival is the lowest part of the key, so the last of equal
        // (series, ts) sorts last and wins.
        rows.sort_unstable_by_key(|r| r.key);
        let mut builder = SamplesBuilder::with_capacity(rows.len());
        // Rows of one series share name and labels (the series id is the
        // series identity): copy those from the series' first row, which
        // stays in cache; time and value travel in the sort key. Walking the
        // rows in sorted order jumps between batches, so reading any column
        // of every row cost a cache miss per row and column.
        let mut s = 0;
        while s < rows.len() {
            let series = rows[s].series();
            let e = rows[s..]
                .iter()
                .position(|r| r.series() != series)
                .map_or(rows.len(), |p| s + p);
            let run = &rows[s..e];
            let points = run.iter().enumerate().filter_map(|(i, r)| {
                let superseded = run
                    .get(i + 1)
                    .is_some_and(|n| n.ms_in_hour() == r.ms_in_hour());
                (!superseded).then_some((hour + r.ms_in_hour() as i64, r.value))
            });
            let first = run[0].arrival();
            let b = batch_starts.partition_point(|&start| start <= first) - 1;
            builder.append_series_of(&views[b], first - batch_starts[b], points);
            s = e;
        }
        out.insert(hour, builder.finish());
    }
    Ok(out)
}

const ARRIVAL_BITS: u32 = 42;
const MS_BITS: u32 = 22;

/// One row in file order. `key` packs, from high to low bits: the series id
/// (64), milliseconds into the hour (22; an hour has 3.6M), and the arrival
/// index (42), so one integer comparison sorts by (series, ts, arrival).
struct Row {
    key: u128,
    value: f64,
}

impl Row {
    fn new(series: u64, ms_in_hour: u64, arrival: usize, value: f64) -> Self {
        Self {
            key: (u128::from(series) << 64)
                | (u128::from(ms_in_hour) << ARRIVAL_BITS)
                | arrival as u128,
            value,
        }
    }
    fn series(&self) -> u64 {
        (self.key >> 64) as u64
    }
    fn ms_in_hour(&self) -> u64 {
        (self.key >> ARRIVAL_BITS) as u64 & ((1 << MS_BITS) - 1)
    }
    fn arrival(&self) -> usize {
        (self.key as u64 & ((1 << ARRIVAL_BITS) - 1)) as usize
    }
}

/// Writes one Parquet file atomically (temp file, fsync, rename, fsync dir).
pub fn write_file(path: &Path, batch: &RecordBatch, cfg: &ParquetConfig) -> Result<u64> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Storage(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).with_path(dir)?;
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).with_path(&tmp)?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(cfg.writer_properties()?))?;
    w.write(batch)?;
    let file = w.into_inner()?;
    file.sync_all().with_path(&tmp)?;
    let bytes = file.metadata().with_path(&tmp)?.len();
    drop(file);
    fs::rename(&tmp, path).with_path(path)?;
    sync_dir(dir)?;
    Ok(bytes)
}

/// Writes the rows from WAL segments `first..=last` into one file per hour.
pub fn write_segment_range(
    table_dir: &Path,
    batches: &[RecordBatch],
    first: u64,
    last: u64,
    cfg: &ParquetConfig,
) -> Result<Vec<FileMeta>> {
    let mut out = Vec::new();
    for (hour, part) in sort_dedup_by_hour(batches)? {
        let path = partition_dir(table_dir, hour).join(file_name(first, last));
        let bytes = write_file(&path, &part, cfg)?;
        out.push(FileMeta {
            path,
            hour_ms: hour,
            first_seq: first,
            last_seq: last,
            rows: part.num_rows() as u64,
            bytes,
        });
    }
    Ok(out)
}

/// Reads a whole Parquet file into batches.
pub fn read_file(path: &Path) -> Result<Vec<RecordBatch>> {
    let f = File::open(path).with_path(path)?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
    let mut out = Vec::new();
    for b in reader {
        out.push(b?);
    }
    Ok(out)
}

/// Scans a table directory: deletes temp files and files superseded by a
/// compacted file, and returns the catalog sorted by (hour, first_seq).
pub fn scan_table(table_dir: &Path, repair: bool) -> Result<Vec<FileMeta>> {
    let mut files = Vec::new();
    let Ok(dates) = fs::read_dir(table_dir) else {
        return Ok(files);
    };
    for date in dates.flatten() {
        let date_name = date.file_name().to_string_lossy().to_string();
        let Ok(hours) = fs::read_dir(date.path()) else {
            continue;
        };
        for hour in hours.flatten() {
            let hour_name = hour.file_name().to_string_lossy().to_string();
            let Some(hour_ms) = parse_partition(&date_name, &hour_name) else {
                continue;
            };
            let mut part: Vec<FileMeta> = Vec::new();
            for f in fs::read_dir(hour.path()).with_path(hour.path())?.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let path = f.path();
                if name.ends_with(".tmp") {
                    if repair {
                        let _ = fs::remove_file(&path);
                    }
                    continue;
                }
                let Some((first, last)) = parse_file_name(&name) else {
                    continue;
                };
                let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
                let rows = File::open(&path)
                    .ok()
                    .and_then(|fh| SerializedFileReader::new(fh).ok())
                    .map(|r| r.metadata().file_metadata().num_rows() as u64);
                let Some(rows) = rows else {
                    tracing::warn!(path = %path.display(), "skipping unreadable Parquet file");
                    continue;
                };
                part.push(FileMeta {
                    path,
                    hour_ms,
                    first_seq: first,
                    last_seq: last,
                    rows,
                    bytes,
                });
            }
            // Drop files covered by a wider file (interrupted compaction).
            let covered: Vec<bool> = part
                .iter()
                .map(|a| {
                    part.iter().any(|b| {
                        b.path != a.path
                            && b.first_seq <= a.first_seq
                            && a.last_seq <= b.last_seq
                            && (b.first_seq, b.last_seq) != (a.first_seq, a.last_seq)
                    })
                })
                .collect();
            for (f, c) in part.into_iter().zip(covered) {
                if c {
                    if repair {
                        tracing::info!(path = %f.path.display(), "removing file superseded by compaction");
                        let _ = fs::remove_file(&f.path);
                    }
                } else {
                    files.push(f);
                }
            }
        }
    }
    files.sort_by_key(|f| (f.hour_ms, f.first_seq));
    Ok(files)
}

/// Merges the given files of one partition into one, returning its metadata.
/// The caller swaps the catalog and deletes the inputs afterwards.
pub fn compact(
    table_dir: &Path,
    inputs: &[FileMeta],
    cfg: &ParquetConfig,
) -> Result<Option<FileMeta>> {
    if inputs.len() < 2 {
        return Ok(None);
    }
    let hour = inputs[0].hour_ms;
    let first = inputs.iter().map(|f| f.first_seq).min().unwrap_or(0);
    let last = inputs.iter().map(|f| f.last_seq).max().unwrap_or(0);
    let mut batches = Vec::new();
    // Oldest first so that sort_dedup_by_hour keeps the newest duplicate.
    let mut ordered: Vec<&FileMeta> = inputs.iter().collect();
    ordered.sort_by_key(|f| f.first_seq);
    for f in ordered {
        batches.extend(read_file(&f.path)?);
    }
    let mut parts = sort_dedup_by_hour(&batches)?;
    if parts.keys().any(|&h| h != hour) {
        return Err(Error::Storage(format!(
            "files of the partition starting at {hour} ms hold rows of other hours; not compacting"
        )));
    }
    let merged = parts
        .remove(&hour)
        .unwrap_or_else(|| RecordBatch::new_empty(crate::schema::samples_schema()));
    let path = partition_dir(table_dir, hour).join(file_name(first, last));
    let bytes = write_file(&path, &merged, cfg)?;
    Ok(Some(FileMeta {
        path,
        hour_ms: hour,
        first_seq: first,
        last_seq: last,
        rows: merged.num_rows() as u64,
        bytes,
    }))
}

/// Removes partitions whose hour ends before `cutoff_ms`; returns removed files.
pub fn remove_partitions_before(files: &[FileMeta], cutoff_ms: i64) -> Vec<FileMeta> {
    let mut removed = Vec::new();
    for f in files {
        if f.hour_ms + HOUR_MS <= cutoff_ms {
            match fs::remove_file(&f.path) {
                Ok(()) => removed.push(f.clone()),
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "retention: cannot remove file")
                }
            }
            if let Some(dir) = f.path.parent() {
                let _ = fs::remove_dir(dir); // only succeeds once empty
                if let Some(date) = dir.parent() {
                    let _ = fs::remove_dir(date);
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Sample, batch_to_samples, samples_to_batch};

    fn s(name: &str, ts: i64, v: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: vec![("i".into(), "a".into())],
            ts_ms: ts,
            value: v,
        }
    }

    #[test]
    fn sort_dedup_keeps_last_duplicate_and_sorts_by_series_then_time() {
        let b = samples_to_batch(&[
            s("b", 2, 1.0),
            s("a", 5, 1.0),
            s("a", 1, 1.0),
            s("a", 5, 2.0),
            s("b", 2, 3.0),
        ]);
        let parts = sort_dedup_by_hour(&[b]).expect("sort");
        assert_eq!(parts.len(), 1);
        let out: Vec<Sample> = parts.values().flat_map(batch_to_samples).collect();
        assert_eq!(out.len(), 3);
        let a5 = out
            .iter()
            .find(|x| x.name == "a" && x.ts_ms == 5)
            .expect("a@5");
        assert_eq!(a5.value, 2.0);
        let b2 = out.iter().find(|x| x.name == "b").expect("b@2");
        assert_eq!(b2.value, 3.0);
        // within a series, time ascending
        let a: Vec<i64> = out
            .iter()
            .filter(|x| x.name == "a")
            .map(|x| x.ts_ms)
            .collect();
        assert_eq!(a, vec![1, 5]);
    }

    proptest::proptest! {
        /// Against a reference: per hour, one row per (series, ts), the one
        /// that arrived last, sorted by (series_id, ts).
        #[test]
        fn sort_dedup_by_hour_matches_reference(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..4, 0i64..3, 0u32..5), 0..20),
                0..5,
            )
        ) {
            let h = 1_763_895_600_000_i64;
            let mut n = 0.0;
            let batches: Vec<Vec<Sample>> = batches
                .into_iter()
                .map(|b| {
                    b.into_iter()
                        .map(|(series, hour, ms)| {
                            n += 1.0;
                            s(&format!("m{series}"), h + hour * HOUR_MS + i64::from(ms) * 1000, n)
                        })
                        .collect()
                })
                .collect();
            let mut want: BTreeMap<i64, BTreeMap<(u64, i64), Sample>> = BTreeMap::new();
            for x in batches.iter().flatten() {
                want.entry(hour_of(x.ts_ms))
                    .or_default()
                    .insert((crate::schema::series_id(&x.name, &x.labels), x.ts_ms), x.clone());
            }
            let record_batches: Vec<RecordBatch> =
                batches.iter().map(|b| samples_to_batch(b)).collect();
            let got = sort_dedup_by_hour(&record_batches).expect("sort");
            let got: BTreeMap<i64, Vec<Sample>> =
                got.iter().map(|(h, b)| (*h, batch_to_samples(b))).collect();
            let want: BTreeMap<i64, Vec<Sample>> =
                want.into_iter().map(|(h, m)| (h, m.into_values().collect())).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn writes_hour_partitions_idempotently_and_rescans() {
        let dir = tempfile::tempdir().expect("tmp");
        let h = 1_763_895_600_000_i64; // 2025-11-23T11:00:00Z
        let b = samples_to_batch(&[
            s("a", h + 1, 1.0),
            s("a", h + HOUR_MS + 1, 2.0),
            s("a", h - 1, 0.5),
        ]);
        let cfg = ParquetConfig::default();
        let metas =
            write_segment_range(dir.path(), std::slice::from_ref(&b), 3, 3, &cfg).expect("write");
        assert_eq!(metas.len(), 3);
        assert!(
            metas[1]
                .path
                .to_string_lossy()
                .contains("date=2025-11-23/hour=11/seg-")
        );
        // Flushing the same segment again (crash before WAL deletion) changes nothing.
        let again = write_segment_range(dir.path(), &[b], 3, 3, &cfg).expect("rewrite");
        assert_eq!(again, metas);
        let scanned = scan_table(dir.path(), true).expect("scan");
        assert_eq!(scanned.len(), 3);
        assert_eq!(scanned.iter().map(|f| f.rows).sum::<u64>(), 3);
        let rows: Vec<Sample> = read_file(&scanned[1].path)
            .expect("read")
            .iter()
            .flat_map(batch_to_samples)
            .collect();
        assert_eq!(rows, vec![s("a", h + 1, 1.0)]);
    }

    #[test]
    fn compaction_supersedes_inputs_even_if_interrupted() {
        let dir = tempfile::tempdir().expect("tmp");
        let h = 1_763_895_600_000_i64;
        let cfg = ParquetConfig::default();
        let a = write_segment_range(
            dir.path(),
            &[samples_to_batch(&[s("a", h + 1, 1.0)])],
            1,
            1,
            &cfg,
        )
        .expect("a");
        let b = write_segment_range(
            dir.path(),
            &[samples_to_batch(&[s("a", h + 1, 9.0), s("a", h + 2, 2.0)])],
            2,
            2,
            &cfg,
        )
        .expect("b");
        let inputs: Vec<FileMeta> = a.into_iter().chain(b).collect();
        let merged = compact(dir.path(), &inputs, &cfg)
            .expect("compact")
            .expect("some");
        assert_eq!((merged.first_seq, merged.last_seq, merged.rows), (1, 2, 2));
        // Crash before deleting the inputs: the rescan removes them.
        let scanned = scan_table(dir.path(), true).expect("scan");
        assert_eq!(scanned, vec![merged.clone()]);
        let rows: Vec<Sample> = read_file(&merged.path)
            .expect("read")
            .iter()
            .flat_map(batch_to_samples)
            .collect();
        assert_eq!(rows, vec![s("a", h + 1, 9.0), s("a", h + 2, 2.0)]);
    }

    #[test]
    fn retention_removes_whole_old_hours() {
        let dir = tempfile::tempdir().expect("tmp");
        let h = 1_763_895_600_000_i64;
        let cfg = ParquetConfig::default();
        let metas = write_segment_range(
            dir.path(),
            &[samples_to_batch(&[
                s("a", h + 1, 1.0),
                s("a", h + HOUR_MS, 2.0),
            ])],
            1,
            1,
            &cfg,
        )
        .expect("w");
        let removed = remove_partitions_before(&metas, h + HOUR_MS + 10);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].hour_ms, h);
        assert_eq!(scan_table(dir.path(), false).expect("scan").len(), 1);
    }
}
