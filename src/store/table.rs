//! Derived tables: `aggregates`, `forecasts`, `recommendations`, ...
//!
//! Rows produced by scalecast itself (not received from outside) are appended
//! to a [`DerivedTable`]: they are buffered in memory (queryable at once) and
//! written as one Parquet file per flush, partitioned by UTC hour of the
//! write, under `<data_dir>/<table>/date=.../hour=.../part-<ms>-<n>.parquet`.
//! A flush happens when the buffer reaches `flush_rows` rows, when
//! [`DerivedTable::flush`] is called (periodically by the owner, and on
//! shutdown), or on every append when `flush_rows` is 1.
//!
//! These rows can be recomputed from the samples (the engine replays raw
//! samples on restart), so buffering them does not weaken the durability of
//! accepted data. Tables whose rows are "latest wins" (re-emitted windows) are
//! de-duplicated at query time by a view (see [`crate::query`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::parquet::{ParquetConfig, hour_of, partition_dir, write_file};
use crate::error::{Error, Result};
use crate::query::TableSource;

struct Buffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    files: Vec<PathBuf>,
}

/// An append-only table of rows scalecast derives.
pub struct DerivedTable {
    name: String,
    dir: PathBuf,
    schema: SchemaRef,
    flush_rows: usize,
    parquet: ParquetConfig,
    buf: Mutex<Buffer>,
    seq: AtomicU64,
}

fn list_parquet(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

impl DerivedTable {
    /// Opens (creating) table `name` under `data_dir`, listing its files.
    pub fn open(data_dir: &Path, name: &str, schema: SchemaRef, flush_rows: usize) -> Result<Self> {
        let dir = data_dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let files = list_parquet(&dir);
        Ok(Self {
            name: name.to_string(),
            dir,
            schema,
            flush_rows: flush_rows.max(1),
            parquet: ParquetConfig::default(),
            buf: Mutex::new(Buffer {
                batches: Vec::new(),
                rows: 0,
                files,
            }),
            seq: AtomicU64::new(0),
        })
    }

    /// The table's name in SQL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends rows (must have the table's schema); flushes when the buffer
    /// is full. Blocking (file I/O).
    pub fn append(&self, batch: RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::Storage(format!(
                "table {}: batch schema does not match",
                self.name
            )));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let full = {
            let mut b = self.lock();
            b.rows += batch.num_rows();
            b.batches.push(batch);
            b.rows >= self.flush_rows
        };
        if full { self.flush() } else { Ok(()) }
    }

    /// Writes buffered rows to a new Parquet file. Blocking.
    pub fn flush(&self) -> Result<()> {
        let mut b = self.lock();
        if b.batches.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&self.schema, &b.batches)?;
        let now = chrono::Utc::now().timestamp_millis();
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path =
            partition_dir(&self.dir, hour_of(now)).join(format!("part-{now:013}-{n:06}.parquet"));
        write_file(&path, &all, &self.parquet)?;
        b.files.push(path);
        b.batches.clear();
        b.rows = 0;
        Ok(())
    }

    /// A consistent snapshot for a query.
    pub fn source(&self) -> TableSource {
        let b = self.lock();
        TableSource {
            name: self.name.clone(),
            schema: self.schema.clone(),
            files: b.files.clone(),
            batches: b.batches.clone(),
        }
    }

    /// Reads the table without opening it for writes (CLI queries).
    pub fn read_only_source(data_dir: &Path, name: &str, schema: SchemaRef) -> TableSource {
        TableSource {
            name: name.to_string(),
            schema,
            files: list_parquet(&data_dir.join(name)),
            batches: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    fn batch(k: &str, v: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![k])),
                Arc::new(Int64Array::from(vec![v])),
            ],
        )
        .expect("batch")
    }

    #[tokio::test]
    async fn buffered_rows_are_queryable_and_flushed_rows_persist() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = DerivedTable::open(dir.path(), "things", schema(), 3).expect("open");
        t.append(batch("a", 1)).expect("append");
        t.append(batch("b", 2)).expect("append");
        let src = t.source();
        assert_eq!((src.files.len(), src.batches.len()), (0, 2));
        t.append(batch("c", 3)).expect("append (flushes)");
        let src = t.source();
        assert_eq!((src.files.len(), src.batches.len()), (1, 0));
        t.append(batch("d", 4)).expect("append");
        t.flush().expect("flush");
        let again = DerivedTable::read_only_source(dir.path(), "things", schema());
        assert_eq!(again.files.len(), 2);
        let r = crate::query::run_sql(
            vec![again],
            "SELECT sum(v) AS s FROM things",
            &Default::default(),
        )
        .await
        .expect("sql");
        let json =
            String::from_utf8(crate::query::render(&r, crate::query::Format::Json).expect("json"))
                .expect("utf8");
        assert_eq!(json.trim(), "[{\"s\":10}]");
        assert!(
            t.append(RecordBatch::new_empty(Arc::new(Schema::new(vec![
                Field::new("x", DataType::Int64, false)
            ]))))
            .is_err()
        );
    }
}
