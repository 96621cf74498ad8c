//! Signed webhooks: `POST` JSON events to configured URLs, with retries, a dead-letter
//! directory and replay.
//!
//! # Event (the request body)
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "id": "rec_5f1c…",                 // the idempotency key, also in `Idempotency-Key`
//!   "type": "recommendation",          // recommendation | scaling_action | alert_firing | alert_resolved
//!   "target": "web",                   // null for alerts not tied to a target
//!   "created_at": "2026-11-23T12:00:00Z",
//!   "recommendation": { … },           // type recommendation: the Recommendation record
//!   "action": { … },                   // type scaling_action: the ActionRecord
//!   "alert": { … }                     // alert_*: the AlertMessage
//! }
//! ```
//!
//! # Headers
//!
//! * `Content-Type: application/json`
//! * `Idempotency-Key: <id>`: the same on every retry and on replay; receivers dedupe by it.
//! * `X-Scalecast-Timestamp: <unix seconds>` of this attempt.
//! * `X-Scalecast-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` when a
//!   secret is configured; each attempt is signed afresh (receivers should reject
//!   timestamps older than a few minutes), see [`verify`].
//!
//! # Delivery
//!
//! Each URL has its own worker and bounded queue (`queue_capacity`), so a slow receiver does
//! not hold up the others. A delivery is retried up to `max_attempts` times with
//! exponential backoff and full jitter (`sleep = random(0, min(max_backoff, initial ×
//! 2^attempt))`, at least what a `Retry-After` asks for, capped at `max_backoff_secs`) on
//! network errors, timeouts, 408, 425, 429 and 5xx; other 4xx answers are permanent. A
//! delivery that fails for good — or that does not fit in a full queue, or is still queued
//! at shutdown — is written to `dead_letter_dir` as one JSON file ([`DeadLetter`]), so a
//! receiver that is down for minutes loses nothing: `scalecast webhooks replay`
//! ([`replay`]) re-sends the files and deletes each one that is accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::actuators::ActionRecord;
use crate::alerts::AlertMessage;
use crate::recommend::record::Recommendation;

/// Version of the event schema.
pub const SCHEMA_VERSION: u32 = 1;
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Scalecast-Signature";
/// Header carrying the attempt's unix time.
pub const TIMESTAMP_HEADER: &str = "X-Scalecast-Timestamp";
/// Header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Errors of the webhook sink.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configuration is unusable.
    #[error("webhook configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The event could not be encoded.
    #[error("encoding the event: {0}")]
    Encode(String),
}

/// `webhooks:` section of the pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receivers; every event goes to each of them.
    pub urls: Vec<String>,
    /// HMAC secret (prefer `secret_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// File holding the HMAC secret (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Attempts per delivery before it is dead-lettered (default 8).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff ceiling (default 0.5 s).
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_secs: f64,
    /// Largest backoff ceiling (default 60 s).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: f64,
    /// Timeout of one request (default 10 s).
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Where failed deliveries are written, one JSON file each.
    pub dead_letter_dir: PathBuf,
    /// Deliveries queued in memory per URL (default 10 000); beyond, straight to disk.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> f64 {
    0.5
}
fn default_max_backoff() -> f64 {
    60.0
}
fn default_timeout() -> f64 {
    10.0
}
fn default_queue() -> usize {
    10_000
}

impl WebhookConfig {
    /// A configuration with defaults for `urls` and `dead_letter_dir`.
    pub fn new(urls: Vec<String>, dead_letter_dir: impl Into<PathBuf>) -> Self {
        WebhookConfig {
            urls,
            secret: None,
            secret_file: None,
            max_attempts: default_max_attempts(),
            initial_backoff_secs: default_initial_backoff(),
            max_backoff_secs: default_max_backoff(),
            timeout_secs: default_timeout(),
            dead_letter_dir: dead_letter_dir.into(),
            queue_capacity: default_queue(),
        }
    }

    /// Checks the settings; the error names the field (relative to `webhooks`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.urls.is_empty() {
            return Err(("urls".into(), "at least one URL is required".into()));
        }
        for (i, u) in self.urls.iter().enumerate() {
            if reqwest::Url::parse(u)
                .ok()
                .filter(|p| matches!(p.scheme(), "http" | "https"))
                .is_none()
            {
                return Err((format!("urls[{i}]"), format!("not an http(s) URL: {u:?}")));
            }
        }
        if self.secret.is_some() && self.secret_file.is_some() {
            return Err((
                "secret".into(),
                "set either secret or secret_file, not both".into(),
            ));
        }
        if self.secret.as_deref().is_some_and(str::is_empty) {
            return Err(("secret".into(), "must not be empty".into()));
        }
        if self.max_attempts == 0 {
            return Err(("max_attempts".into(), "must be at least 1".into()));
        }
        for (f, v) in [
            ("initial_backoff_secs", self.initial_backoff_secs),
            ("max_backoff_secs", self.max_backoff_secs),
            ("timeout_secs", self.timeout_secs),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e7) {
                return Err((
                    f.into(),
                    format!("must be a positive number of seconds, got {v}"),
                ));
            }
        }
        if self.max_backoff_secs < self.initial_backoff_secs {
            return Err((
                "max_backoff_secs".into(),
                "must not be below initial_backoff_secs".into(),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(("queue_capacity".into(), "must be at least 1".into()));
        }
        if self.dead_letter_dir.as_os_str().is_empty() {
            return Err(("dead_letter_dir".into(), "must not be empty".into()));
        }
        Ok(())
    }

    /// The secret from `secret` or `secret_file`.
    pub fn load_secret(&self) -> Result<Option<Vec<u8>>, WebhookError> {
        load_secret(self.secret.as_deref(), self.secret_file.as_deref())
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            initial: Duration::from_secs_f64(self.initial_backoff_secs.clamp(0.0, 1e7)),
            max: Duration::from_secs_f64(self.max_backoff_secs.clamp(0.0, 1e7)),
        }
    }
}

fn load_secret(secret: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>, WebhookError> {
    if let Some(s) = secret {
        return Ok(Some(s.as_bytes().to_vec()));
    }
    let Some(f) = file else { return Ok(None) };
    let text = std::fs::read_to_string(f).map_err(|e| WebhookError::Io {
        path: f.display().to_string(),
        reason: e.to_string(),
    })?;
    let t = text.trim_end_matches(['\n', '\r']);
    if t.is_empty() {
        return Err(WebhookError::Config(format!(
            "secret file {} is empty",
            f.display()
        )));
    }
    Ok(Some(t.as_bytes().to_vec()))
}

/// Kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A scaling recommendation.
    Recommendation,
    /// An action of an actuator (ok, blocked or failed).
    ScalingAction,
    /// An alert started firing.
    AlertFiring,
    /// A firing alert resolved.
    AlertResolved,
}

/// The JSON body of every webhook (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The idempotency key.
    pub id: String,
    /// Kind of event.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Target concerned, if any.
    pub target: Option<String>,
    /// When the event was made.
    pub created_at: DateTime<Utc>,
    /// `recommendation` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    /// `scaling_action` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionRecord>,
    /// `alert_firing` / `alert_resolved` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertMessage>,
}

/// A stable key: `<prefix>_` + 32 hex digits of SHA-256 over the parts.
pub fn idempotency_key(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    format!("{prefix}_{}", &hex(&d)[..32])
}

impl WebhookEvent {
    fn base(event_type: EventType, id: String, target: Option<String>) -> Self {
        WebhookEvent {
            schema_version: SCHEMA_VERSION,
            id,
            event_type,
            target,
            created_at: Utc::now(),
            recommendation: None,
            action: None,
            alert: None,
        }
    }

    /// A `recommendation` event; the key is derived from target, decision time and count.
    pub fn recommendation(rec: &Recommendation) -> Self {
        let id = idempotency_key(
            "rec",
            &[
                &rec.target,
                &rec.ts.timestamp_millis().to_string(),
                &rec.recommended_replicas.to_string(),
            ],
        );
        let mut e = Self::base(EventType::Recommendation, id, Some(rec.target.clone()));
        e.recommendation = Some(rec.clone());
        e
    }

    /// A `scaling_action` event; the key is derived from target, time and result.
    pub fn action(rec: &ActionRecord) -> Self {
        let id = idempotency_key(
            "act",
            &[
                &rec.target,
                &rec.ts.timestamp_nanos_opt().unwrap_or(0).to_string(),
                rec.result.as_str(),
                &rec.to_replicas.to_string(),
            ],
        );
        let mut e = Self::base(EventType::ScalingAction, id, Some(rec.target.clone()));
        e.action = Some(rec.clone());
        e
    }

    /// An `alert_firing` or `alert_resolved` event; the key is derived from the alert's
    /// rule, key, state and start time, so a retried or replayed message dedupes.
    pub fn alert(msg: &AlertMessage) -> Self {
        let event_type = if msg.resolved {
            EventType::AlertResolved
        } else {
            EventType::AlertFiring
        };
        let id = idempotency_key(
            "alert",
            &[
                &msg.rule,
                &msg.key,
                if msg.resolved { "resolved" } else { "firing" },
                &msg.since.timestamp_millis().to_string(),
            ],
        );
        let mut e = Self::base(event_type, id, msg.target.clone());
        e.alert = Some(msg.clone());
        e
    }
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

fn hmac_hex(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The `X-Scalecast-Signature` value for `body` sent at unix time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hmac_hex(secret, t, body))
}

/// Checks a signature header (what a receiver does): the `v1` HMAC must match and `t`
/// must be within `tolerance_secs` of `now`. Constant-time comparison.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), String> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or("no t= timestamp")?;
    if (now - t).abs() > tolerance_secs {
        return Err(format!(
            "timestamp {t} is outside the tolerance of {tolerance_secs} s"
        ));
    }
    let expected = hmac_hex(secret, t, body);
    let ok = sigs.iter().any(|s| {
        s.len() == expected.len()
            && s.bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err("no matching v1 signature".into())
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    max_attempts: u32,
    initial: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(max, initial × 2^attempt)]`, at least `floor`.
    fn backoff(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        let jittered = Duration::from_secs_f64(rand::random_range(0.0..=exp.as_secs_f64()));
        match floor {
            Some(f) => jittered.max(f.min(self.max)),
            None => jittered,
        }
    }
}

/// One failed delivery on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Receiver.
    pub url: String,
    /// Headers of the last attempt (the signature is redone on replay).
    pub headers: BTreeMap<String, String>,
    /// The exact JSON body.
    pub body: String,
    /// The last error.
    pub error: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The idempotency key.
    pub idempotency_key: String,
    /// When the first attempt was made (or the delivery was queued).
    pub first_attempt_at: DateTime<Utc>,
    /// When it was written.
    pub dead_lettered_at: DateTime<Utc>,
}

/// Counters of a sink.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Deliveries accepted by a receiver.
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Deliveries written to the dead-letter directory.
    pub dead_lettered: AtomicU64,
    /// Dead letters that could not be written (disk full, ...): the only loss.
    pub lost: AtomicU64,
}

#[derive(Debug, Clone)]
struct Delivery {
    url: String,
    key: String,
    body: Arc<String>,
    attempts: u32,
    first: DateTime<Utc>,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    Retry(String, Option<Duration>),
    Permanent(String),
}

struct Shared {
    http: reqwest::Client,
    secret: Option<Vec<u8>>,
    retry: RetryPolicy,
    dir: PathBuf,
    stats: WebhookStats,
}

impl Shared {
    fn headers(&self, key: &str, body: &str) -> BTreeMap<String, String> {
        let t = Utc::now().timestamp();
        let mut h = BTreeMap::new();
        h.insert("Content-Type".into(), "application/json".into());
        h.insert(IDEMPOTENCY_HEADER.into(), key.to_string());
        h.insert(TIMESTAMP_HEADER.into(), t.to_string());
        if let Some(s) = &self.secret {
            h.insert(SIGNATURE_HEADER.into(), sign(s, t, body.as_bytes()));
        }
        h
    }

    async fn attempt(&self, url: &str, key: &str, body: &str) -> Attempt {
        let mut req = self.http.post(url).body(body.to_string());
        for (k, v) in self.headers(key, body) {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Attempt::Delivered;
                }
                let retry_after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text: String = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                let msg = format!("HTTP {status}: {}", text.trim());
                let code = status.as_u16();
                if code >= 500 || matches!(code, 408 | 425 | 429) {
                    Attempt::Retry(msg, retry_after)
                } else {
                    Attempt::Permanent(msg)
                }
            }
            Err(e) => {
                let mut msg = format!("{e}");
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                Attempt::Retry(msg, None)
            }
        }
    }

    /// Tries `d` until delivered, permanent failure, attempts exhausted or shutdown.
    async fn deliver(&self, mut d: Delivery, stop: &mut watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                self.dead_letter(&d, "shut down before delivery");
                return;
            }
            d.attempts += 1;
            match self.attempt(&d.url, &d.key, &d.body).await {
                Attempt::Delivered => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Attempt::Permanent(e) => {
                    tracing::warn!(url = %d.url, key = %d.key, "webhook refused: {e}");
                    self.dead_letter(&d, &e);
                    return;
                }
                Attempt::Retry(e, floor) => {
                    if d.attempts >= self.retry.max_attempts {
                        tracing::warn!(url = %d.url, key = %d.key, attempts = d.attempts, "webhook failed: {e}");
                        self.dead_letter(&d, &e);
                        return;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = self.retry.backoff(d.attempts - 1, floor);
                    tracing::debug!(url = %d.url, attempt = d.attempts, ?wait, "webhook retry: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    fn dead_letter(&self, d: &Delivery, error: &str) {
        let dl = DeadLetter {
            url: d.url.clone(),
            headers: self.headers(&d.key, &d.body),
            body: d.body.to_string(),
            error: error.to_string(),
            attempts: d.attempts,
            idempotency_key: d.key.clone(),
            first_attempt_at: d.first,
            dead_lettered_at: Utc::now(),
        };
        match write_dead_letter(&self.dir, &dl) {
            Ok(p) => {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %d.url, key = %d.key, file = %p.display(), "webhook dead-lettered: {error}");
            }
            Err(e) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(url = %d.url, key = %d.key, "webhook LOST, dead letter not written: {e}");
            }
        }
    }
}

/// Writes `dl` atomically (temp file + rename) as `<ms>-<key>-<url hash>.json`.
pub fn write_dead_letter(dir: &Path, dl: &DeadLetter) -> Result<PathBuf, WebhookError> {
    let io = |p: &Path, e: std::io::Error| WebhookError::Io {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let url_hash = &idempotency_key("u", &[&dl.url])[2..10];
    let key: String = dl
        .idempotency_key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(80)
        .collect();
    let name = format!(
        "{}-{key}-{url_hash}.json",
        dl.dead_lettered_at.timestamp_millis()
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let json = serde_json::to_vec_pretty(dl).map_err(|e| WebhookError::Encode(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(path)
}

/// The webhook publisher: one worker and bounded queue per URL.
pub struct WebhookSink {
    shared: Arc<Shared>,
    queues: Vec<(String, mpsc::Sender<Delivery>)>,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl WebhookSink {
    /// Validates `cfg`, reads the secret, creates the dead-letter directory and starts the
    /// workers (needs a Tokio runtime).
    pub fn start(cfg: &WebhookConfig) -> Result<WebhookSink, WebhookError> {
        cfg.validate()
            .map_err(|(f, r)| WebhookError::Config(format!("{f}: {r}")))?;
        let secret = cfg.load_secret()?;
        std::fs::create_dir_all(&cfg.dead_letter_dir).map_err(|e| WebhookError::Io {
            path: cfg.dead_letter_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_secs))
            .user_agent(concat!("scalecast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Config(format!("HTTP client: {e}")))?;
        let shared = Arc::new(Shared {
            http,
            secret,
            retry: cfg.retry(),
            dir: cfg.dead_letter_dir.clone(),
            stats: WebhookStats::default(),
        });
        let (stop, _) = watch::channel(false);
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for url in &cfg.urls {
            let (tx, mut rx) = mpsc::channel::<Delivery>(cfg.queue_capacity);
            let sh = shared.clone();
            let mut stop_rx = stop.subscribe();
            workers.push(tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    sh.deliver(d, &mut stop_rx).await;
                }
            }));
            queues.push((url.clone(), tx));
        }
        Ok(WebhookSink {
            shared,
            queues,
            stop,
            workers,
        })
    }

    /// Counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.shared.stats
    }

    /// Queues `event` for every URL. Never blocks and never drops: when a URL's queue is
    /// full the delivery goes straight to the dead-letter directory.
    pub fn send(&self, event: &WebhookEvent) -> Result<(), WebhookError> {
        let body = Arc::new(
            serde_json::to_string(event).map_err(|e| WebhookError::Encode(e.to_string()))?,
        );
        for (url, tx) in &self.queues {
            let d = Delivery {
                url: url.clone(),
                key: event.id.clone(),
                body: body.clone(),
                attempts: 0,
                first: Utc::now(),
            };
            match tx.try_send(d) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(d)) => {
                    self.shared.dead_letter(&d, "in-memory queue full");
                }
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    self.shared.dead_letter(&d, "sink stopped");
                }
            }
        }
        Ok(())
    }

    /// Stops accepting events, lets the workers finish within `grace`; whatever is not
    /// delivered by then (in flight or queued) is dead-lettered.
    pub async fn shutdown(self, grace: Duration) {
        let WebhookSink {
            shared: _,
            queues,
            stop,
            workers,
        } = self;
        drop(queues);
        let deadline = tokio::time::Instant::now() + grace;
        let mut stopped = false;
        for mut w in workers {
            if !stopped {
                // Polling `&mut w` leaves the handle usable if it does not finish in time.
                if tokio::time::timeout_at(deadline, &mut w).await.is_ok() {
                    continue;
                }
                let _ = stop.send(true);
                stopped = true;
            }
            let _ = w.await;
        }
    }
}

/// Options of [`replay_dead_letters`].
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// HMAC secret to sign with (the signature is redone with a fresh timestamp).
    pub secret: Option<Vec<u8>>,
    /// Attempts per dead letter in this run (with the backoff below).
    pub max_attempts: u32,
    /// First backoff ceiling.
    pub initial_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Request timeout.
    pub timeout: Duration,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Dead-letter files found.
    pub found: usize,
    /// Delivered and deleted.
    pub delivered: usize,
    /// Still failing (kept, with the new error and attempt count).
    pub failed: usize,
    /// `(file, error)` for every file not delivered, unreadable ones included.
    pub errors: Vec<(String, String)>,
}

/// Re-sends every `*.json` dead letter in `dir` (oldest first); deletes each one a receiver
/// accepts and rewrites the others with the new error and attempt count.
pub async fn replay_dead_letters(
    dir: &Path,
    opts: &ReplayOptions,
) -> Result<ReplayReport, WebhookError> {
    let rd = std::fs::read_dir(dir).map_err(|e| WebhookError::Io {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    let http = reqwest::Client::builder()
        .timeout(opts.timeout)
        .user_agent(concat!("scalecast/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookError::Config(format!("HTTP client: {e}")))?;
    let shared = Shared {
        http,
        secret: opts.secret.clone(),
        retry: RetryPolicy {
            max_attempts: opts.max_attempts.max(1),
            initial: opts.initial_backoff,
            max: opts.max_backoff,
        },
        dir: dir.to_path_buf(),
        stats: WebhookStats::default(),
    };
    let mut report = ReplayReport {
        found: files.len(),
        ..Default::default()
    };
    for f in files {
        let name = f.display().to_string();
        let dl: DeadLetter = match std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("not a dead letter: {e}")))
        {
            Ok(d) => d,
            Err(e) => {
                report.failed += 1;
                report.errors.push((name, e));
                continue;
            }
        };
        let mut last = String::new();
        let mut attempts = dl.attempts;
        let mut delivered = false;
        for i in 0..shared.retry.max_attempts {
            attempts += 1;
            match shared.attempt(&dl.url, &dl.idempotency_key, &dl.body).await {
                Attempt::Delivered => {
                    delivered = true;
                    break;
                }
                Attempt::Permanent(e) => {
                    last = e;
                    break;
                }
                Attempt::Retry(e, floor) => {
                    last = e;
                    if i + 1 < shared.retry.max_attempts {
                        tokio::time::sleep(shared.retry.backoff(i, floor)).await;
                    }
                }
            }
        }
        if delivered {
            if let Err(e) = std::fs::remove_file(&f) {
                // Delivered but not deleted: a later replay re-sends; the key dedupes.
                report
                    .errors
                    .push((name, format!("delivered, but not deleted: {e}")));
            }
            report.delivered += 1;
        } else {
            let updated = DeadLetter {
                error: last.clone(),
                attempts,
                ..dl
            };
            if let Ok(json) = serde_json::to_vec_pretty(&updated) {
                let tmp = f.with_extension("json.tmp");
                if std::fs::write(&tmp, json).is_ok() {
                    let _ = std::fs::rename(&tmp, &f);
                }
            }
            report.failed += 1;
            report.errors.push((name, last));
        }
    }
    Ok(report)
}

/// `scalecast webhooks replay`: re-send the dead letters of a directory.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhooksReplayArgs {
    /// The dead-letter directory (`webhooks.dead_letter_dir`).
    #[arg(long)]
    pub dead_letter_dir: PathBuf,
    /// HMAC secret (prefer --secret-file or the environment).
    #[arg(long, env = "SCALECAST_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// File holding the HMAC secret.
    #[arg(long, conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,
    /// Attempts per dead letter in this run.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// First backoff ceiling, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub initial_backoff_secs: f64,
    /// Largest backoff ceiling, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub max_backoff_secs: f64,
    /// Request timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_secs: f64,
}

/// Runs `scalecast webhooks replay`.
pub async fn replay(args: &WebhooksReplayArgs) -> Result<ReplayReport, WebhookError> {
    let secs = |name: &str, v: f64| {
        if (0.0..1e7).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(WebhookError::Config(format!(
                "--{name} must be a non-negative number of seconds, got {v}"
            )))
        }
    };
    let opts = ReplayOptions {
        secret: load_secret(args.secret.as_deref(), args.secret_file.as_deref())?,
        max_attempts: args.max_attempts.max(1),
        initial_backoff: secs("initial-backoff-secs", args.initial_backoff_secs)?,
        max_backoff: secs("max-backoff-secs", args.max_backoff_secs)?,
        timeout: secs("timeout-secs", args.timeout_secs)?,
    };
    replay_dead_letters(&args.dead_letter_dir, &opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_tamper() {
        let body = br#"{"a":1}"#;
        let h = sign(b"s3cret", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify(b"s3cret", &h, body, 1_700_000_010, 300), Ok(()));
        assert!(verify(b"other", &h, body, 1_700_000_010, 300).is_err());
        assert!(verify(b"s3cret", &h, br#"{"a":2}"#, 1_700_000_010, 300).is_err());
        assert!(verify(b"s3cret", &h, body, 1_700_001_000, 300).is_err());
        assert!(verify(b"s3cret", "garbage", body, 0, 300).is_err());
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("any key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 0..40 {
            let ceil = Duration::from_millis(100)
                .saturating_mul(2u32.saturating_pow(attempt.min(30)))
                .min(Duration::from_secs(1));
            for _ in 0..20 {
                assert!(p.backoff(attempt, None) <= ceil);
            }
        }
        // Retry-After raises the floor, still capped at max.
        assert!(p.backoff(0, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
        assert_eq!(
            p.backoff(0, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn config_validation_and_defaults() {
        let c: WebhookConfig =
            serde_yaml::from_str("urls: [http://x/h]\ndead_letter_dir: /tmp/dl\n").expect("parses");
        assert_eq!(c.max_attempts, 8);
        assert_eq!(c.validate(), Ok(()));
        assert!(
            serde_yaml::from_str::<WebhookConfig>("urls: []\ndead_letter_dir: d\nretries: 3")
                .is_err()
        );
        let mut bad = c.clone();
        bad.urls.push("ftp://x".into());
        assert_eq!(bad.validate().map_err(|e| e.0), Err("urls[1]".to_string()));
        let mut bad = c.clone();
        bad.max_backoff_secs = 0.1;
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("max_backoff_secs".to_string())
        );
        let mut bad = c;
        bad.secret = Some("a".into());
        bad.secret_file = Some("f".into());
        assert_eq!(bad.validate().map_err(|e| e.0), Err("secret".to_string()));
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = idempotency_key("rec", &["web", "1"]);
        assert_eq!(a, idempotency_key("rec", &["web", "1"]));
        assert_ne!(a, idempotency_key("rec", &["web1", ""]));
        assert!(a.starts_with("rec_") && a.len() == 36);
    }

    #[tokio::test]
    async fn replay_of_a_missing_or_garbage_directory_is_an_error_not_a_panic() {
        let opts = ReplayOptions {
            secret: None,
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            timeout: Duration::from_secs(1),
        };
        let dir = tempfile::tempdir().expect("tmp");
        let err = replay_dead_letters(&dir.path().join("nope"), &opts)
            .await
            .expect_err("missing dir");
        assert!(err.to_string().contains("nope"), "{err}");
        std::fs::write(dir.path().join("x.json"), "{not json").expect("write");
        let r = replay_dead_letters(dir.path(), &opts)
            .await
            .expect("report");
        assert_eq!((r.found, r.delivered, r.failed), (1, 0, 1));
        assert!(
            r.errors[0].1.contains("not a dead letter"),
            "{:?}",
            r.errors
        );
        assert!(
            dir.path().join("x.json").exists(),
            "unreadable files are kept"
        );
    }
}
