//! Runs a pipeline: config → build → runtime (the Vector pattern).
//!
//! [`Server::start`] binds the API listener first (so `/health` answers 503
//! while the WAL is replayed), opens the store, then marks itself ready.
//! [`Server::shutdown`] stops accepting requests, lets in-flight ones finish,
//! and closes the store, which flushes everything to Parquet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod aggregates;
pub mod forecasts;
pub mod scaling;

use crate::api::{self, AppState};
use crate::config::PipelineConfig;
use crate::error::{Error, IoResultExt, Result};
use crate::metrics::Metrics;
use crate::query::TableSource;
use crate::store::table::DerivedTable;
use crate::store::{Snapshot, Store};

/// A running pipeline.
pub struct Server {
    /// The address the API listens on.
    pub addr: SocketAddr,
    /// Shared state (store, metrics).
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    http: Option<JoinHandle<()>>,
    engine: Option<aggregates::EngineTask>,
    source_stop: tokio::sync::watch::Sender<bool>,
    sources: Vec<JoinHandle<()>>,
    webhooks: Option<Arc<crate::sinks::webhook::WebhookSink>>,
    forwarders: Vec<JoinHandle<()>>,
}

/// Starts the pulling sources (scraper, CloudWatch, Kafka); remote write is
/// served by the API router.
fn spawn_sources(
    cfg: &PipelineConfig,
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
    stop: &tokio::sync::watch::Sender<bool>,
) -> Vec<JoinHandle<()>> {
    use crate::config::SourceConfig;
    let mut tasks = Vec::new();
    for (id, source) in &cfg.sources {
        let (id, store, metrics, rx) =
            (id.clone(), store.clone(), metrics.clone(), stop.subscribe());
        let task = match source.clone() {
            SourceConfig::RemoteWrite(_) => continue,
            SourceConfig::Scrape(c) => tokio::spawn(async move {
                if let Err(e) = crate::sources::scrape::run(&id, c, store, metrics, rx).await {
                    tracing::error!(source = %id, error = %e, "scrape source stopped");
                }
            }),
            SourceConfig::Cloudwatch(c) => tokio::spawn(async move {
                if let Err(e) = crate::sources::cloudwatch::run(&id, c, store, metrics, rx).await {
                    tracing::error!(source = %id, error = %e, "cloudwatch source stopped");
                }
            }),
            SourceConfig::Replay(c) => tokio::spawn(async move {
                if let Err(e) = crate::sources::replay::run(&id, c, store, metrics, rx).await {
                    tracing::error!(source = %id, error = %e, "replay source stopped");
                }
            }),
            SourceConfig::Kafka(c) => tokio::spawn(async move {
                if let Err(e) = crate::sources::kafka::run(c, store, metrics, rx).await {
                    tracing::error!(source = %id, error = %e, "kafka source stopped");
                }
            }),
        };
        tasks.push(task);
    }
    tasks
}

/// What a query runs over: the tables and the views (name, SQL).
pub type Catalog = (Vec<TableSource>, Vec<(String, String)>);

/// Builds the [`Catalog`] of a running store, for a query started now.
pub type CatalogFn = dyn Fn(&Store) -> Catalog + Send + Sync;

/// Every SQL table and view of a data directory, for one query: `samples`,
/// the derived tables and the `aggregates` view.
pub fn catalog(samples: Snapshot, derived: Vec<TableSource>) -> Catalog {
    let mut tables = vec![TableSource::samples(samples)];
    tables.extend(derived);
    (tables, vec![aggregates::view()])
}

/// The derived tables: (name, schema, rows buffered before a flush).
fn derived_tables() -> [(&'static str, arrow::datatypes::SchemaRef, usize); 3] {
    [
        (
            aggregates::AGGREGATES_LOG,
            aggregates::storage_schema(),
            50_000,
        ),
        (
            scaling::RECOMMENDATIONS,
            crate::recommend::recommendations_schema(),
            1_000,
        ),
        (forecasts::FORECASTS, forecasts::schema(), 100_000),
    ]
}

/// The same, read from a data directory without opening it for writing.
pub fn read_only_catalog(data_dir: &Path) -> Result<Catalog> {
    let snapshot = Store::read_only_snapshot(data_dir)?;
    let derived = derived_tables()
        .into_iter()
        .map(|(name, schema, _)| DerivedTable::read_only_source(data_dir, name, schema))
        .collect();
    Ok(catalog(snapshot, derived))
}

/// Evaluates every alert rule once (read-only SQL over the store) and sends
/// the firing/resolved messages.
async fn evaluate_alerts(
    engine: &std::sync::Mutex<crate::alerts::AlertEngine>,
    sink: &crate::sinks::webhook::WebhookSink,
    catalog: &CatalogFn,
    store: &Store,
) {
    let rules: Vec<crate::alerts::AlertRule> = engine
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .rules()
        .to_vec();
    for rule in rules {
        let Some(sql) = rule.sql() else { continue };
        let (tables, views) = catalog(store);
        let rows = match crate::query::run_sql_with_views(
            tables,
            &views,
            &sql,
            &crate::query::QueryConfig::default(),
        )
        .await
        {
            Ok(r) => crate::alerts::rows_from_batches(&r.batches),
            Err(e) => Err(e.to_string()),
        };
        match rows {
            Ok(rows) => {
                let msgs = engine.lock().unwrap_or_else(|p| p.into_inner()).evaluate(
                    &rule.name,
                    chrono::Utc::now(),
                    &rows,
                );
                if let Err(e) = crate::alerts::publish(sink, &msgs) {
                    tracing::warn!(rule = %rule.name, error = %e, "alert not sent");
                }
            }
            Err(e) => tracing::warn!(rule = %rule.name, error = %e, "alert query failed"),
        }
    }
}

/// Name of the file in the data directory that holds the bound API address.
pub const ADDR_FILE: &str = "api.addr";

impl Server {
    /// Starts the pipeline. `listen` overrides `api.listen`; port 0 picks a
    /// free port (see [`Server::addr`] and `<data_dir>/api.addr`).
    pub async fn start(
        cfg: PipelineConfig,
        data_dir: &Path,
        listen: Option<&str>,
    ) -> Result<Server> {
        let metrics = Arc::new(Metrics::new());
        let token = match &cfg.api.auth {
            Some(a) => Some(
                a.token()
                    .map_err(|e| Error::Other(format!("api.auth: {e}")))?,
            ),
            None => None,
        };
        let listen = listen.unwrap_or(&cfg.api.listen).to_string();
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|e| Error::Other(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("listener address: {e}")))?;
        std::fs::create_dir_all(data_dir).with_path(data_dir)?;
        let addr_file = data_dir.join(ADDR_FILE);
        std::fs::write(&addr_file, addr.to_string()).with_path(&addr_file)?;

        let state = Arc::new(AppState {
            store: OnceLock::new(),
            derived: OnceLock::new(),
            scaling: OnceLock::new(),
            metrics: metrics.clone(),
            query: cfg.query.clone(),
            token,
            config: cfg.clone(),
        });
        let app = api::router(state.clone(), &cfg);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(%addr, data_dir = %data_dir.display(), "listening; replaying the WAL");

        let dir: PathBuf = data_dir.to_path_buf();
        let storage = cfg.storage.clone();
        let m = metrics.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, storage, m))
            .await
            .map_err(|e| Error::Other(format!("store open task failed: {e}")))??;
        let store = Arc::new(store);
        let mut derived = Vec::new();
        for (name, schema, flush_rows) in derived_tables() {
            derived.push(Arc::new(DerivedTable::open(
                data_dir, name, schema, flush_rows,
            )?));
        }
        let (aggs, recs, fcs) = (derived[0].clone(), derived[1].clone(), derived[2].clone());
        let engine = aggregates::start(&cfg, &store, aggs).await?;
        let (source_stop, _) = tokio::sync::watch::channel(false);
        let mut sources = spawn_sources(&cfg, &store, &metrics, &source_stop);
        let for_catalog = derived.clone();
        let catalog_fn: Arc<CatalogFn> = Arc::new(move |st: &Store| {
            catalog(
                st.snapshot(),
                for_catalog.iter().map(|t| t.source()).collect(),
            )
        });
        let webhooks = match &cfg.webhooks {
            Some(w) => Some(Arc::new(
                crate::sinks::webhook::WebhookSink::start(w)
                    .map_err(|e| Error::Other(format!("webhooks: {e}")))?,
            )),
            None => None,
        };
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut forwarders = Vec::new();
        let mut actuators = std::collections::BTreeMap::new();
        if let Some(policy) = &cfg.scaling {
            actuators =
                crate::actuators::build_all(&policy.targets, &cfg.actuators, paused.clone())
                    .await
                    .map_err(|(target, e)| {
                        Error::Other(format!("actuator of target {target:?}: {e}"))
                    })?;
        }
        if let (Some(alerts), Some(sink)) = (&cfg.alerts, &webhooks) {
            let engine = Arc::new(std::sync::Mutex::new(crate::alerts::AlertEngine::new(
                alerts,
            )));
            for act in actuators.values() {
                forwarders.push(tokio::spawn(crate::alerts::forward_actions(
                    act.subscribe(),
                    engine.clone(),
                    sink.clone(),
                )));
            }
            let (sink, cat, store2, every) = (
                sink.clone(),
                catalog_fn.clone(),
                store.clone(),
                alerts.evaluation_interval_secs.max(1),
            );
            let mut rx = source_stop.subscribe();
            sources.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        r = rx.changed() => { if r.is_err() || *rx.borrow() { return; } }
                    }
                    evaluate_alerts(&engine, &sink, cat.as_ref(), &store2).await;
                }
            }));
        }
        if let Some(policy) = &cfg.scaling {
            let mut st = scaling::ScalingState::new(policy.clone(), recs)?
                .with_metrics(&metrics)
                .with_actuators(actuators)
                .with_paused(paused);
            if let Some(sink) = &webhooks {
                st = st.with_webhooks(sink.clone());
            }
            if let Some(k) = &cfg.recommendations_kafka {
                st = st.with_kafka(Arc::new(crate::sinks::kafka::KafkaSink::new(k, &metrics)?));
            }
            let scaling = Arc::new(st);
            let (st2, store2, cat, rx) = (
                scaling.clone(),
                store.clone(),
                catalog_fn.clone(),
                source_stop.subscribe(),
            );
            sources.push(tokio::spawn(async move {
                if let Err(e) = scaling::run(st2, store2, cat, rx).await {
                    tracing::error!(error = %e, "scaling loop stopped");
                }
            }));
            let _ = state.scaling.set(scaling);
        }
        if !cfg.forecasts.is_empty() {
            let (series, store2, cat, rx) = (
                cfg.forecasts.clone(),
                store.clone(),
                catalog_fn.clone(),
                source_stop.subscribe(),
            );
            sources.push(tokio::spawn(async move {
                if let Err(e) = forecasts::run(series, store2, cat, fcs, rx).await {
                    tracing::error!(error = %e, "forecast stage stopped");
                }
            }));
        }
        // Set exactly once, here.
        let _ = state.derived.set(derived);
        let _ = state.store.set(store);
        metrics.ready.set(1);
        tracing::info!(%addr, "ready");
        Ok(Server {
            addr,
            state,
            stop: Some(stop_tx),
            http: Some(http),
            engine,
            source_stop,
            sources,
            webhooks,
            forwarders,
        })
    }

    /// Stops the HTTP server (in-flight requests finish) and closes the store.
    pub async fn shutdown(mut self) {
        // Pulling sources first: they finish (and commit) what they ingested.
        let _ = self.source_stop.send(true);
        for t in self.sources.drain(..) {
            let _ = t.await;
        }
        // Alert forwarders wait for their actuator's events forever: stop them.
        for t in self.forwarders.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(s) = self.state.scaling.get() {
            s.detach_webhooks();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(http) = self.http.take() {
            let _ = http.await;
        }
        if let Some(store) = self.state.store.get().cloned() {
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
        // The store closed its subscriptions: the engine drains and flushes.
        if let Some(engine) = self.engine.take() {
            let _ = tokio::task::spawn_blocking(move || engine.join()).await;
        }
        // Deliver or dead-letter what the webhooks still hold.
        if let Some(sink) = self.webhooks.take() {
            match Arc::try_unwrap(sink) {
                Ok(sink) => sink.shutdown(std::time::Duration::from_secs(5)).await,
                Err(_) => tracing::warn!(
                    "webhook sink still in use at shutdown; queued events not flushed"
                ),
            }
        }
        if let Some(derived) = self.state.derived.get().cloned() {
            let _ = tokio::task::spawn_blocking(move || {
                for t in derived {
                    if let Err(e) = t.flush() {
                        tracing::error!(table = t.name(), error = %e, "cannot flush at shutdown");
                    }
                }
            })
            .await;
        }
        tracing::info!("stopped");
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
