//! The `scalecast` command line (clap). `main.rs` only calls [`main`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::pipeline::{Server, shutdown_signal};
use crate::query::{self, Format, QueryConfig};

/// scalecast: a metrics pipeline and predictive autoscaler.
///
/// Prometheus remote write in, durable write-ahead log, time-partitioned
/// Parquet history, read-only SQL out.
#[derive(Debug, Parser)]
#[command(name = "scalecast", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline (the embedded default when no --config is given).
    Serve(ServeArgs),
    /// The whole product on a shipped trace: replay → aggregates → forecasts →
    /// recommendations → dashboard at http://127.0.0.1:9201/.
    Demo(DemoArgs),
    /// Run a read-only SQL query over the stored history.
    Query(QueryArgs),
    /// Check pipeline files; print `file:line:column: reason` for each problem.
    Validate(ValidateArgs),
    /// Backtest forecasting models on CSV series or SQL history (MASE, coverage, plots).
    Backtest(crate::forecast::backtest::BacktestArgs),
    /// Forecast once: CSV history to p10/p50/p90 rows, or a pipeline's forecast stage (--config).
    Forecast(crate::forecast::live::ForecastArgs),
    /// Replay a trace through scaling policies and report cost and under-provisioning.
    Simulate(crate::recommend::SimulateArgs),
    /// Fetch history from an external system into the store.
    Backfill(BackfillArgs),
    /// Webhook maintenance.
    Webhooks(WebhooksArgs),
}

/// `scalecast webhooks`.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// What to do.
    #[command(subcommand)]
    pub what: WebhooksCommand,
}

/// `scalecast webhooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Re-send the dead letters of a webhook sink (deleted once delivered).
    Replay(crate::sinks::webhook::WebhooksReplayArgs),
}

/// `scalecast backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// What to backfill from.
    #[command(subcommand)]
    pub from: BackfillFrom,
}

/// Backfill origins.
#[derive(Debug, Subcommand)]
pub enum BackfillFrom {
    /// CloudWatch GetMetricData history (e.g. `--since 14d`), with a progress bar.
    Cloudwatch(BackfillCloudwatchCmd),
}

/// `scalecast backfill cloudwatch`.
#[derive(Debug, Args)]
pub struct BackfillCloudwatchCmd {
    /// Data directory to write into (not while a server runs on it).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// What to fetch.
    #[command(flatten)]
    pub args: crate::sources::cloudwatch::BackfillCloudwatchArgs,
}

/// `scalecast serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Pipeline YAML file; without it the embedded default runs (remote write
    /// on 127.0.0.1:9201, data in ./data).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (WAL and Parquet); overrides `data_dir` in the file.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:9201 (port 0 picks a free port, written
    /// to <data-dir>/api.addr); overrides `api.listen`.
    #[arg(long)]
    pub listen: Option<String>,
}

/// `scalecast demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory (created; the demo trace is written into it).
    #[arg(long, default_value = "demo-data")]
    pub data_dir: PathBuf,
    /// Listen address (the dashboard is at its root).
    #[arg(long, default_value = "127.0.0.1:9201")]
    pub listen: String,
    /// Replay speed: trace seconds per wall-clock second.
    #[arg(long)]
    pub speed: Option<f64>,
}

/// `scalecast query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Data directory to read (safe while a server runs on it).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The SQL statement, e.g. "SELECT name, count(*) FROM samples GROUP BY name".
    pub sql: String,
}

/// `scalecast validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Demo(a) => demo(a).await,
        Command::Query(a) => query_cmd(a).await,
        Command::Validate(a) => Ok(validate(&a.files)),
        Command::Backtest(a) if a.sql.is_some() => {
            let sql = a.sql.clone().unwrap_or_default();
            let mut series = Vec::new();
            for (name, ts, vs) in sql_series(&a.data_dir, &sql).await? {
                let step = a.step_seconds.map(|s| s * 1000);
                series.push((name, crate::forecast::resample(&ts, &vs, step)?));
            }
            tokio::task::spawn_blocking(move || {
                crate::forecast::backtest::run_with_series(&a, series)
            })
            .await
            .map_err(|e| Error::Other(format!("backtest task failed: {e}")))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(a) if a.sql.is_some() => {
            let sql = a.sql.clone().unwrap_or_default();
            let mut all = sql_series(&a.data_dir, &sql).await?;
            if all.len() != 1 {
                return Err(Error::Other(format!(
                    "--sql must return one series (ts, value) for simulate; got {}",
                    all.len()
                )));
            }
            let (name, ts, vs) = all.remove(0);
            let step = a.step_secs.map(|s| s as i64 * 1000);
            let trace = crate::recommend::simulate::Trace::from_points(&name, &ts, &vs, step)?;
            tokio::task::spawn_blocking(move || {
                crate::recommend::simulate::run_with_trace(&a, trace)
            })
            .await
            .map_err(|e| Error::Other(format!("simulate task failed: {e}")))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest(a) => {
            tokio::task::spawn_blocking(move || crate::forecast::backtest::run(&a))
                .await
                .map_err(|e| Error::Other(format!("backtest task failed: {e}")))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Forecast(a) if a.config.is_some() => forecast_stage_once(&a).await,
        Command::Forecast(a) => {
            tokio::task::spawn_blocking(move || crate::forecast::live::run(&a))
                .await
                .map_err(|e| Error::Other(format!("forecast task failed: {e}")))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill(BackfillArgs {
            from: BackfillFrom::Cloudwatch(c),
        }) => {
            let dir = c.data_dir.clone();
            let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
            let store = tokio::task::spawn_blocking(move || {
                crate::store::Store::open(&dir, crate::store::StorageConfig::default(), metrics)
            })
            .await
            .map_err(|e| Error::Other(format!("store open task failed: {e}")))??;
            let report = crate::sources::cloudwatch::backfill(&c.args, &store).await;
            tokio::task::spawn_blocking(move || store.close())
                .await
                .map_err(|e| Error::Other(format!("store close task failed: {e}")))?;
            let r = report?;
            let when = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            };
            println!(
                "backfilled {} samples for {} metric/statistic pairs from {} to {} in {} requests ({} failed after retries)",
                r.samples,
                r.queries,
                when(r.start_ms),
                when(r.end_ms),
                r.requests,
                r.failed_requests
            );
            Ok(if r.failed_requests == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Webhooks(WebhooksArgs {
            what: WebhooksCommand::Replay(a),
        }) => {
            let r = crate::sinks::webhook::replay(&a)
                .await
                .map_err(|e| Error::Other(format!("webhooks replay: {e}")))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&r).unwrap_or_else(|_| format!("{r:?}"))
            );
            Ok(if r.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Simulate(a) => {
            tokio::task::spawn_blocking(move || crate::recommend::run(&a))
                .await
                .map_err(|e| Error::Other(format!("simulate task failed: {e}")))??;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<PipelineConfig> {
    match path {
        None => Ok(PipelineConfig::embedded_default()),
        Some(p) => PipelineConfig::load(p).map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            Error::Other(format!("invalid pipeline:\n{}", lines.join("\n")))
        }),
    }
}

async fn serve(a: ServeArgs) -> Result<ExitCode> {
    let cfg = load_config(a.config.as_deref())?;
    let data_dir = a
        .data_dir
        .clone()
        .or_else(|| cfg.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    let server = Server::start(cfg, &data_dir, a.listen.as_deref()).await?;
    eprintln!(
        "scalecast listening on http://{addr}  (remote write: http://{addr}/api/v1/write, SQL: POST http://{addr}/api/v1/sql)",
        addr = server.addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down: flushing to Parquet");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn demo(a: DemoArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.data_dir).map_err(|e| Error::io(&a.data_dir, e))?;
    let trace = a.data_dir.join("demo-trace-ec2_cpu_utilization_5f5533.csv");
    std::fs::write(&trace, crate::config::DEMO_TRACE).map_err(|e| Error::io(&trace, e))?;
    let trace = std::fs::canonicalize(&trace).map_err(|e| Error::io(&trace, e))?;
    let mut yaml = crate::config::demo_pipeline(&trace);
    if let Some(speed) = a.speed {
        yaml = yaml.replace("speed: 60 ", &format!("speed: {speed} "));
    }
    let cfg = PipelineConfig::load_str(&yaml, Path::new("<demo pipeline>")).map_err(|errs| {
        Error::Other(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let server = Server::start(cfg, &a.data_dir, Some(&a.listen)).await?;
    eprintln!(
        "scalecast demo: replaying a 14-day CloudWatch trace at {}x into {}\n  dashboard:       http://{addr}/\n  targets:         http://{addr}/api/v1/targets\n  SQL:             scalecast query --data-dir {} \"SELECT * FROM recommendations ORDER BY ts DESC LIMIT 5\"\nCtrl-C to stop.",
        a.speed.unwrap_or(60.0),
        a.data_dir.display(),
        a.data_dir.display(),
        addr = server.addr
    );
    shutdown_signal().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs `sql` over a data directory (read-only) and returns one `(name, ts_ms,
/// values)` per distinct `series` column value (one unnamed series without it).
async fn sql_series(data_dir: &Path, sql: &str) -> Result<Vec<(String, Vec<i64>, Vec<f64>)>> {
    use arrow::array::{Array, Float64Array, Int64Array, StringArray};
    if !data_dir.exists() {
        return Err(Error::Other(format!(
            "data directory {} does not exist",
            data_dir.display()
        )));
    }
    let dir = data_dir.to_path_buf();
    let (tables, views) =
        tokio::task::spawn_blocking(move || crate::pipeline::read_only_catalog(&dir))
            .await
            .map_err(|e| Error::Other(format!("snapshot task failed: {e}")))??;
    let probe = query::run_sql_with_views(
        tables.clone(),
        &views,
        &format!("SELECT * FROM ({sql}) AS q LIMIT 0"),
        &QueryConfig::default(),
    )
    .await?;
    let has_series = probe.schema.field_with_name("series").is_ok();
    let series_col = if has_series {
        "CAST(series AS VARCHAR)"
    } else {
        "'sql'"
    };
    let wrapped = format!(
        "SELECT {series_col} AS s, CAST(ts AS BIGINT) AS t, CAST(value AS DOUBLE) AS v FROM ({sql}) AS q ORDER BY 1, 2"
    );
    let r = query::run_sql_with_views(tables, &views, &wrapped, &QueryConfig::default()).await?;
    let mut out: Vec<(String, Vec<i64>, Vec<f64>)> = Vec::new();
    for b in &r.batches {
        let (Some(s), Some(t), Some(v)) = (
            b.column(0).as_any().downcast_ref::<StringArray>(),
            b.column(1).as_any().downcast_ref::<Int64Array>(),
            b.column(2).as_any().downcast_ref::<Float64Array>(),
        ) else {
            return Err(Error::Other(
                "the query must return ts (timestamp) and value (number)".into(),
            ));
        };
        for i in 0..b.num_rows() {
            if t.is_null(i) || v.is_null(i) {
                continue;
            }
            let name = s.value(i);
            if out.last().is_none_or(|(n, _, _)| n != name) {
                out.push((name.to_string(), Vec::new(), Vec::new()));
            }
            if let Some(last) = out.last_mut() {
                last.1.push(t.value(i));
                last.2.push(v.value(i));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Other(format!("the query returned no rows: {sql}")));
    }
    Ok(out)
}

/// `scalecast forecast --config PIPELINE`: the pipeline's forecast stage, once.
async fn forecast_stage_once(a: &crate::forecast::live::ForecastArgs) -> Result<ExitCode> {
    use crate::pipeline::forecasts;
    let cfg = load_config(a.config.as_deref())?;
    if cfg.forecasts.is_empty() {
        return Err(Error::Other(
            "the pipeline has no `forecasts:` section".into(),
        ));
    }
    if !a.data_dir.exists() {
        return Err(Error::Other(format!(
            "data directory {} does not exist",
            a.data_dir.display()
        )));
    }
    let table = crate::store::table::DerivedTable::open(
        &a.data_dir,
        forecasts::FORECASTS,
        forecasts::schema(),
        100_000,
    )?;
    let dir = a.data_dir.clone();
    let catalog = move || crate::pipeline::read_only_catalog(&dir).unwrap_or_default();
    let mut last = std::collections::BTreeMap::new();
    let now = chrono::Utc::now().timestamp_millis();
    let done = forecasts::run_once(&cfg.forecasts, &mut last, &catalog, &table, now).await;
    println!(
        "{done} of {} series forecast into the `forecasts` table of {}",
        cfg.forecasts.len(),
        a.data_dir.display()
    );
    Ok(if done == cfg.forecasts.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn query_cmd(a: QueryArgs) -> Result<ExitCode> {
    if !a.data_dir.exists() {
        return Err(Error::Other(format!(
            "data directory {} does not exist",
            a.data_dir.display()
        )));
    }
    let dir = a.data_dir.clone();
    let (tables, views) =
        tokio::task::spawn_blocking(move || crate::pipeline::read_only_catalog(&dir))
            .await
            .map_err(|e| Error::Other(format!("snapshot task failed: {e}")))??;
    let result = query::run_sql_with_views(tables, &views, &a.sql, &QueryConfig::default()).await?;
    let bytes = query::render(&result, a.format)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .map_err(|e| Error::Other(format!("stdout: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for f in files {
        match PipelineConfig::load(f) {
            Ok(_) => println!("{}: ok", f.display()),
            Err(errs) => {
                bad += 1;
                for e in errs {
                    println!("{e}");
                }
            }
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
