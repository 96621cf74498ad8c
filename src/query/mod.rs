//! Read-only SQL over history with DataFusion.
//!
//! Each query gets a fresh `SessionContext` whose tables are consistent
//! snapshots ([`TableSource`]): the table's Parquet files **plus** its rows not
//! yet flushed (the in-memory head), unioned by [`SnapshotTable`]. So a sample
//! is queryable as soon as its write was acknowledged.
//!
//! SQL is read-only: DDL, DML (`INSERT`, `COPY`), and other statements (`SET`,
//! ...) are refused by DataFusion's `SQLOptions`; URL tables (`FROM
//! 'file.parquet'`) are not enabled, and the only table functions are
//! `generate_series`/`range`, so a query cannot read or write other files.

mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use serde::{Deserialize, Serialize};

pub use self::table::SnapshotTable;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::samples_schema;
use crate::store::Snapshot;

/// One queryable table: a schema, its Parquet files and its in-memory rows.
#[derive(Debug, Clone)]
pub struct TableSource {
    /// SQL name.
    pub name: String,
    /// Arrow schema of files and batches.
    pub schema: SchemaRef,
    /// Parquet files.
    pub files: Vec<PathBuf>,
    /// Rows not in files yet.
    pub batches: Vec<RecordBatch>,
}

impl TableSource {
    /// The `samples` table from a store snapshot.
    pub fn samples(snapshot: Snapshot) -> Self {
        Self {
            name: "samples".into(),
            schema: samples_schema(),
            files: snapshot.files.into_iter().map(|f| f.path).collect(),
            batches: snapshot.head,
        }
    }
}

/// Query settings (`query:` in the pipeline file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Memory a single query may use, bytes (sorts and aggregations beyond it fail
    /// with "resources exhausted").
    #[serde(default = "default_memory_limit_bytes")]
    pub memory_limit_bytes: usize,
    /// Longest a query may run, seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_memory_limit_bytes() -> usize {
    1 << 30
}
fn default_timeout_secs() -> u64 {
    60
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit_bytes: default_memory_limit_bytes(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

/// The answer to a query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Output schema.
    pub schema: SchemaRef,
    /// Output rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Classifies a DataFusion error: problems with the statement are the
/// caller's (400), the rest are ours.
fn classify(e: DataFusionError) -> Error {
    let root = e.find_root();
    match root {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => Error::QueryRefused(e.to_string()),
        _ => Error::DataFusion(e),
    }
}

/// Runs one read-only SQL statement over `tables`.
pub async fn run_sql(
    tables: Vec<TableSource>,
    sql: &str,
    cfg: &QueryConfig,
) -> Result<QueryResult> {
    run_sql_with_views(tables, &[], sql, cfg).await
}

/// Like [`run_sql`], with views `(name, SELECT ...)` defined over the tables
/// first (by scalecast itself, before the read-only restriction applies):
/// e.g. `aggregates` as the latest version of each window in `aggregates_log`.
pub async fn run_sql_with_views(
    tables: Vec<TableSource>,
    views: &[(String, String)],
    sql: &str,
    cfg: &QueryConfig,
) -> Result<QueryResult> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(cfg.memory_limit_bytes, 1.0)
        .build_arc()
        .map_err(Error::DataFusion)?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(2);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for t in tables {
        let name = t.name.clone();
        let provider = SnapshotTable::try_new(t).await?;
        ctx.register_table(name.as_str(), Arc::new(provider))
            .map_err(Error::DataFusion)?;
    }
    for (name, select) in views {
        let df = ctx.sql(select).await.map_err(Error::DataFusion)?;
        ctx.register_table(name.as_str(), df.into_view())
            .map_err(Error::DataFusion)?;
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let work = async {
        let df = ctx.sql_with_options(sql, options).await.map_err(classify)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(classify)?;
        Ok::<_, Error>(QueryResult { schema, batches })
    };
    match tokio::time::timeout(std::time::Duration::from_secs(cfg.timeout_secs), work).await {
        Ok(r) => r,
        Err(_) => Err(Error::QueryRefused(format!(
            "query ran longer than {} s and was cancelled",
            cfg.timeout_secs
        ))),
    }
}

/// Runs a query (with views) and records metrics.
pub async fn run_sql_metered(
    tables: Vec<TableSource>,
    views: &[(String, String)],
    sql: &str,
    cfg: &QueryConfig,
    metrics: &Metrics,
) -> Result<QueryResult> {
    let started = Instant::now();
    metrics.queries.inc();
    let r = run_sql_with_views(tables, views, sql, cfg).await;
    metrics
        .query_duration
        .observe(started.elapsed().as_secs_f64());
    if r.is_err() {
        metrics.query_errors.inc();
    }
    r
}

/// Output formats of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Renders a result in `format`.
pub fn render(result: &QueryResult, format: Format) -> Result<Vec<u8>> {
    let batches: Vec<&RecordBatch> = result.batches.iter().collect();
    match format {
        Format::Table => {
            let empty = [RecordBatch::new_empty(result.schema.clone())];
            let shown: &[RecordBatch] = if result.batches.is_empty() {
                &empty
            } else {
                &result.batches
            };
            let s = arrow::util::pretty::pretty_format_batches(shown)?;
            Ok(format!("{s}\n").into_bytes())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(result.schema.clone()))?;
                }
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(out)
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            w.write_batches(&batches)?;
            w.finish()?;
            let out = w.into_inner();
            // The writer emits nothing for zero rows; an empty array is clearer.
            if out.is_empty() {
                Ok(b"[]".to_vec())
            } else {
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Sample, samples_to_batch};
    use crate::store::parquet::{ParquetConfig, write_segment_range};

    fn sample(inst: &str, ts: i64, v: f64) -> Sample {
        Sample {
            name: "cpu".into(),
            labels: vec![("instance".into(), inst.into())],
            ts_ms: ts,
            value: v,
        }
    }

    async fn query(files: Vec<PathBuf>, head: Vec<RecordBatch>, sql: &str) -> Result<QueryResult> {
        let t = TableSource {
            name: "samples".into(),
            schema: samples_schema(),
            files,
            batches: head,
        };
        run_sql(vec![t], sql, &QueryConfig::default()).await
    }

    #[tokio::test]
    async fn unions_files_and_head_and_filters_by_label() {
        let dir = tempfile::tempdir().expect("tmp");
        let metas = write_segment_range(
            dir.path(),
            &[samples_to_batch(&[
                sample("a", 1_000, 1.0),
                sample("b", 1_000, 2.0),
            ])],
            1,
            1,
            &ParquetConfig::default(),
        )
        .expect("write");
        let files = metas.into_iter().map(|m| m.path).collect();
        let head = vec![samples_to_batch(&[sample("a", 2_000, 3.0)])];
        let r = query(
            files,
            head,
            "SELECT ts, value FROM samples WHERE labels['instance'] = 'a' ORDER BY ts",
        )
        .await
        .expect("query");
        let json = String::from_utf8(render(&r, Format::Json).expect("json")).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json array");
        let rows = v.as_array().expect("array");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["value"], 1.0);
        assert_eq!(rows[1]["value"], 3.0);
        let csv = String::from_utf8(render(&r, Format::Csv).expect("csv")).expect("utf8");
        assert!(csv.starts_with("ts,value\n"), "{csv}");
    }

    #[tokio::test]
    async fn empty_tables_are_queryable() {
        let r = query(vec![], vec![], "SELECT count(*) AS n FROM samples")
            .await
            .expect("query");
        let json = String::from_utf8(render(&r, Format::Json).expect("json")).expect("utf8");
        assert_eq!(json.trim(), "[{\"n\":0}]");
    }

    #[tokio::test]
    async fn refuses_anything_but_reads() {
        for sql in [
            "CREATE TABLE t AS SELECT 1",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
            "INSERT INTO samples SELECT * FROM samples",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "DROP TABLE samples",
            "SET datafusion.execution.batch_size = 1",
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM read_parquet('/tmp/x.parquet')",
        ] {
            let err = query(vec![], vec![], sql).await.expect_err(sql);
            assert!(matches!(err, Error::QueryRefused(_)), "{sql}: {err}");
        }
        // Syntax errors are the caller's too.
        let err = query(vec![], vec![], "SELEC 1").await.expect_err("syntax");
        assert!(matches!(err, Error::QueryRefused(_)));
    }
}
