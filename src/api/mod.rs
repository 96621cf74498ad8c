//! The HTTP API (axum): ingest, SQL, health and self-metrics.
//!
//! | method & path | what | auth |
//! |---|---|---|
//! | `POST /api/v1/write` | Prometheus remote write 1.0 ([`crate::sources::remote_write`]) | token |
//! | `POST /api/v1/sql` | read-only SQL, JSON body `{"query": "..."}`, `?format=json\|csv` | token |
//! | `GET /health` | 200 once the WAL is replayed, 503 before | none |
//! | `GET /` | the dashboard ([`dashboard`]) | none (the page asks for the token) |
//! | `GET /metrics` | self-metrics, Prometheus/OpenMetrics text | none |
//!
//! Every error is a JSON body `{"error": "<reason>"}` with a fitting status.
//! `docs/api.md` is the reference.

pub mod dashboard;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::config::PipelineConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::query::{self, Format, QueryConfig};
use crate::sources::remote_write;
use crate::store::Store;
use crate::store::table::DerivedTable;

/// Shared state of every handler.
pub struct AppState {
    /// Set once the WAL has been replayed.
    pub store: OnceLock<Arc<Store>>,
    /// The derived tables (`aggregates_log`, `recommendations`, `forecasts`), set with the store.
    pub derived: OnceLock<Vec<Arc<DerivedTable>>>,
    /// The scaling loop, when the pipeline has a `scaling:` section.
    pub scaling: OnceLock<Arc<crate::pipeline::scaling::ScalingState>>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// Query limits.
    pub query: QueryConfig,
    /// Bearer token, when auth is on.
    pub token: Option<String>,
    /// The running pipeline (for `GET /api/v1/config`).
    pub config: PipelineConfig,
}

impl AppState {
    /// The store, or a 503 answer while the WAL is still being replayed.
    #[allow(clippy::result_large_err)] // an axum Response is the natural error of a handler step
    pub fn store(&self) -> Result<&Arc<Store>, Response> {
        self.store.get().ok_or_else(|| {
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: replaying the write-ahead log",
            )
        })
    }
}

/// A JSON error answer `{"error": reason}`.
pub fn api_error(code: StatusCode, reason: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

/// Maps a crate error to an HTTP answer.
pub fn error_response(e: &Error) -> Response {
    let code = match e {
        Error::InvalidInput(_) | Error::QueryRefused(_) | Error::Config { .. } => {
            StatusCode::BAD_REQUEST
        }
        Error::Overloaded(_) | Error::Shutdown(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(code, &e.to_string())
}

/// Builds the router for a pipeline.
pub fn router(state: Arc<AppState>, cfg: &PipelineConfig) -> Router {
    let mut protected = Router::new()
        .route("/api/v1/sql", post(sql_handler))
        .route("/api/v1/pause", post(pause_handler))
        .route("/api/v1/scale", post(scale_handler))
        .route("/api/v1/config/validate", post(validate_handler));
    for (_, rw) in cfg.remote_write_sources() {
        let rw = Arc::new(rw.clone());
        let path = rw.path.clone();
        let handler = move |State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body| {
            let rw = rw.clone();
            async move { remote_write::handle(st, rw, headers, body).await }
        };
        // The handler enforces max_body_bytes itself, with a JSON 413.
        protected = protected.route(&path, post(handler).layer(DefaultBodyLimit::disable()));
    }
    let protected = protected.layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/targets", get(targets_handler))
        .route("/api/v1/targets/{name}/timeline", get(timeline_handler))
        .route("/api/v1/recommendations", get(recommendations_handler))
        .route("/api/v1/config", get(config_handler))
        .route("/metrics", get(metrics_handler))
        .merge(protected)
        .merge(dashboard::routes())
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
        if !ok {
            let mut r = api_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.store.get() {
        Some(_) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "starting", "reason": "replaying the write-ahead log"})),
        )
            .into_response(),
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn scaling(state: &AppState) -> Option<&Arc<crate::pipeline::scaling::ScalingState>> {
    state.scaling.get()
}

async fn targets_handler(State(state): State<Arc<AppState>>) -> Response {
    let targets = scaling(&state).map(|s| s.targets()).unwrap_or_default();
    axum::Json(targets).into_response()
}

/// Query string of the timeline endpoint.
#[derive(Debug, Deserialize)]
pub struct TimelineParams {
    /// How far back, seconds (default 3600).
    #[serde(default)]
    pub range_secs: Option<i64>,
}

async fn timeline_handler(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(p): Query<TimelineParams>,
) -> Response {
    let range_ms = p.range_secs.unwrap_or(3600).clamp(60, 366 * 86_400) * 1000;
    match scaling(&state).and_then(|s| s.timeline(&name, range_ms)) {
        Some(t) => axum::Json(t).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            &format!("no scaling target named {name:?}"),
        ),
    }
}

/// Query string of `GET /api/v1/recommendations`.
#[derive(Debug, Deserialize)]
pub struct RecommendationsParams {
    /// Only this target.
    #[serde(default)]
    pub target: Option<String>,
    /// At most this many (default 100, max 2000).
    #[serde(default)]
    pub limit: Option<usize>,
}

async fn recommendations_handler(
    State(state): State<Arc<AppState>>,
    Query(p): Query<RecommendationsParams>,
) -> Response {
    let limit = p.limit.unwrap_or(100).min(2000);
    let recs = scaling(&state)
        .map(|s| s.recommendations(p.target.as_deref(), limit))
        .unwrap_or_default();
    axum::Json(recs).into_response()
}

/// Body of `POST /api/v1/pause`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// `true` stops every actuator call (recommendations are still recorded).
    pub paused: bool,
}

async fn pause_handler(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let req: PauseRequest = if body.is_empty() {
        PauseRequest { paused: true }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("body must be {{\"paused\": true|false}}: {e}"),
                );
            }
        }
    };
    let Some(s) = scaling(&state) else {
        return api_error(
            StatusCode::CONFLICT,
            "the pipeline has no scaling section: nothing to pause",
        );
    };
    s.paused
        .store(req.paused, std::sync::atomic::Ordering::SeqCst);
    tracing::warn!(paused = req.paused, "global scaling pause switch changed");
    axum::Json(serde_json::json!({ "paused": req.paused })).into_response()
}

/// Body of `POST /api/v1/scale`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// Target name.
    pub target: String,
    /// Replicas wanted (clamped to the target's min/max).
    pub replicas: u32,
}

async fn scale_handler(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let req: ScaleRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("body must be {{\"target\": \"name\", \"replicas\": N}}: {e}"),
            );
        }
    };
    let Some(s) = scaling(&state) else {
        return api_error(StatusCode::CONFLICT, "the pipeline has no scaling section");
    };
    match s.scale_manual(&req.target, req.replicas).await {
        Ok(rec) => {
            let code = match rec.result {
                crate::actuators::ActionResult::Ok => StatusCode::OK,
                crate::actuators::ActionResult::Blocked => StatusCode::CONFLICT,
                crate::actuators::ActionResult::Failed => StatusCode::BAD_GATEWAY,
            };
            let mut v = serde_json::to_value(&rec).unwrap_or_default();
            if code != StatusCode::OK
                && let Some(o) = v.as_object_mut()
            {
                o.insert(
                    "error".into(),
                    serde_json::Value::String(rec.reason.clone()),
                );
            }
            (code, axum::Json(v)).into_response()
        }
        Err(Error::InvalidInput(msg)) if msg.starts_with("no scaling target") => {
            api_error(StatusCode::NOT_FOUND, &msg)
        }
        Err(e) => api_error(StatusCode::CONFLICT, &e.to_string()),
    }
}

async fn config_handler(State(state): State<Arc<AppState>>) -> Response {
    let mut cfg = state.config.clone();
    if let Some(a) = cfg.api.auth.as_mut()
        && a.bearer_token.is_some()
    {
        a.bearer_token = Some("<redacted>".into());
    }
    axum::Json(cfg).into_response()
}

async fn validate_handler(body: axum::body::Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return api_error(StatusCode::BAD_REQUEST, "body must be UTF-8 YAML");
    };
    let result = PipelineConfig::load_str(text, std::path::Path::new("<request>"));
    let errors: Vec<String> = match result {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    };
    axum::Json(serde_json::json!({ "valid": errors.is_empty(), "errors": errors })).into_response()
}

/// Body of `POST /api/v1/sql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// The statement.
    pub query: String,
}

/// Query string of `POST /api/v1/sql`.
#[derive(Debug, Deserialize)]
pub struct SqlParams {
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

async fn sql_handler(
    State(state): State<Arc<AppState>>,
    Query(params): Query<SqlParams>,
    body: axum::body::Bytes,
) -> Response {
    let format = match params.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("unknown format {other:?}: use json or csv"),
            );
        }
    };
    let req: SqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("body must be JSON {{\"query\": \"...\"}}: {e}"),
            );
        }
    };
    let store = match state.store() {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(derived) = state.derived.get() else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: replaying the write-ahead log",
        );
    };
    let (tables, views) = crate::pipeline::catalog(
        store.snapshot(),
        derived.iter().map(|t| t.source()).collect(),
    );
    let result = match query::run_sql_metered(
        tables,
        &views,
        &req.query,
        &state.query,
        &state.metrics,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match query::render(&result, format) {
        Ok(bytes) => {
            let ct = match format {
                Format::Csv => "text/csv; charset=utf-8",
                _ => "application/json",
            };
            ([(header::CONTENT_TYPE, ct)], Body::from(bytes)).into_response()
        }
        Err(e) => error_response(&e),
    }
}
