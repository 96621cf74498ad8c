//! # scalecast
//!
//! A metrics pipeline and predictive autoscaler in one binary. Metrics come in
//! (Prometheus remote write today; scraper, CloudWatch, Kafka and trace replay
//! as those stages land), are made durable in a write-ahead log, kept as
//! time-partitioned Parquet history and served by read-only SQL (DataFusion).
//!
//! ```text
//! remote write ─▶ decode + validate ─▶ WAL (fsync, group commit) ─▶ 2xx
//!                                         │
//!                                         ├─▶ head (in memory, queryable at once)
//!                                         └─▶ Parquet per hour (zstd, sorted)
//!                                                   │
//!                            SQL (DataFusion) ◀─────┘  CLI `scalecast query`, HTTP `/api/v1/sql`
//! ```
//!
//! # Layout
//!
//! | module | role |
//! |---|---|
//! | [`cli`] | the command line; `main.rs` only calls [`cli::main`] |
//! | [`config`] | pipeline YAML: parsing, strict validation with `file:line:column` errors |
//! | [`pipeline`] | config → running server (API + store), graceful shutdown |
//! | [`api`] | HTTP endpoints (axum) and the dashboard |
//! | [`aws`] | AWS SDK configuration shared by the CloudWatch source and the ASG actuator |
//! | [`actuators`] | execute decisions safely: dry-run, AWS Auto Scaling, Kubernetes `/scale` |
//! | [`alerts`] | threshold alerts on aggregates and on failed/blocked scaling operations |
//! | [`sources`] | inputs: remote write, scraper, CloudWatch, Kafka |
//! | [`sinks`] | outputs other than storage: the Kafka publisher |
//! | [`schema`] | the one Arrow schema every source produces |
//! | [`store`] | WAL, in-memory head, Parquet files, compaction, retention |
//! | [`query`] | read-only SQL over store snapshots |
//! | [`metrics`] | self-metrics for `/metrics` |
//! | [`engine`] | windowed aggregation in event time, utilization and cost (`aggregates` table) |
//! | [`forecast`] | per-series models (naive, seasonal naive, ETS, linfa ridge, auto), intervals, backtests |
//! | [`recommend`] | scaling policies, recommenders (reactive, HPA-like, predictive, vertical), `simulate` |
//! | [`error`] | the [`Error`] enum and [`Result`] alias |
//!
//! `docs/architecture.md` describes the data path; `docs/schema.md`,
//! `docs/configuration.md` and `docs/api.md` are the references.

#![warn(missing_docs)]

pub mod actuators;
pub mod alerts;
pub mod api;
pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod forecast;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod recommend;
pub mod schema;
pub mod sinks;
pub mod sources;
pub mod store;

pub use error::{Error, Result};
