//! The crate's error type and [`Result`] alias (in the style of DataFusion's
//! `DataFusionError`).
//!
//! Each variant says *which part* of scalecast failed; the message says why. HTTP
//! handlers map variants to status codes in [`crate::api`]; the CLI prints them.

use std::path::PathBuf;

/// Result type used throughout scalecast.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in scalecast.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline file is invalid. `file:line:column: reason`, like a compiler.
    #[error("{}:{line}:{column}: {reason}", file.display())]
    Config {
        /// The pipeline file.
        file: PathBuf,
        /// 1-based line of the offending field (0 when unknown).
        line: usize,
        /// 1-based column of the offending field (0 when unknown).
        column: usize,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// Input from a client or a source could not be decoded or is invalid
    /// (bad snappy, bad protobuf, bad label set). Maps to HTTP 400.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The ingest queue is full: the caller should retry later. Maps to 503
    /// with `Retry-After`.
    #[error("overloaded: {0}")]
    Overloaded(String),

    /// A SQL statement was refused (not read-only) or failed to plan. Maps to 400.
    #[error("query refused: {0}")]
    QueryRefused(String),

    /// The write-ahead log failed (disk full, I/O error). Nothing was acknowledged.
    #[error("write-ahead log: {0}")]
    Wal(String),

    /// Parquet storage failed.
    #[error("storage: {0}")]
    Storage(String),

    /// The process is shutting down or a component stopped.
    #[error("shutting down: {0}")]
    Shutdown(String),

    /// An I/O error with the path it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An error from Arrow.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// An error from Parquet.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// An error from DataFusion while executing a query.
    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    /// A stream-engine error (configuration, schema).
    #[error("engine: {0}")]
    Engine(#[from] crate::engine::EngineError),

    /// A forecasting error (bad series, model failure).
    #[error("forecast: {0}")]
    Forecast(#[from] crate::forecast::ForecastError),

    /// A recommendation/policy error.
    #[error("recommend: {0}")]
    Recommend(#[from] crate::recommend::RecommendError),

    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Adds a path to I/O results: `fs::read(p).with_path(p)?`.
pub trait IoResultExt<T> {
    /// Maps an `io::Error` into [`Error::Io`] with `path`.
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn with_path(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
