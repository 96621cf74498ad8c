//! Webhooks end to end against receivers implemented here (axum on 127.0.0.1:0): retries
//! until a flaky receiver accepts, exactly one effective delivery by idempotency key, the
//! HMAC signature checked independently with `hmac`/`sha2`, dead letters while a receiver
//! is down and their replay, nothing lost on a full queue or at shutdown, and alerts sent
//! through the same machinery, both from the alert engine directly and from a rule in a
//! running pipeline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use scalecast::alerts::{AlertEngine, AlertsConfig, publish};
use scalecast::recommend::Recommendation;
use scalecast::recommend::limits::Direction;
use scalecast::recommend::policy::Mode;
use scalecast::sinks::webhook::{
    DeadLetter, WebhookConfig, WebhookEvent, WebhookSink, WebhooksReplayArgs, replay,
};

const SECRET: &str = "whsec_test";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    signature: String,
    timestamp: String,
    body: Vec<u8>,
}

/// A receiver that fails the first `fail_first` requests with 503, then accepts; it
/// processes each idempotency key once (the dedupe a receiver is expected to do).
#[derive(Default)]
struct Receiver {
    fail_first: AtomicU32,
    seen: Mutex<Vec<Seen>>,
    processed: Mutex<BTreeMap<String, Vec<u8>>>,
    bad_signatures: AtomicU32,
}

/// Checks `X-Scalecast-Signature` the way a receiver in any language would.
fn signature_ok(header: &str, ts_header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_string()),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (Utc::now().timestamp() - t).abs() <= 300);
    expected == v1 && t == ts_header && fresh
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let seen = Seen {
        key: h("idempotency-key"),
        signature: h("x-scalecast-signature"),
        timestamp: h("x-scalecast-timestamp"),
        body: body.to_vec(),
    };
    if !signature_ok(&seen.signature, &seen.timestamp, &seen.body) {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        r.seen.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
        return StatusCode::UNAUTHORIZED;
    }
    r.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(seen.clone());
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.processed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(seen.key)
        .or_insert(seen.body);
    StatusCode::OK
}

async fn start_receiver(r: Arc<Receiver>, addr: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(r);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let local = listener.local_addr().expect("addr");
    let h = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (local, h)
}

fn recommendation(target: &str, minute: u32, replicas: u32) -> Recommendation {
    let t = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, minute, 0)
        .single()
        .unwrap_or_default();
    Recommendation {
        ts: t,
        data_ts: t,
        target: target.into(),
        policy: "test".into(),
        recommender: "hpa".into(),
        decided_by: "hpa".into(),
        mode: Mode::ForecastOnly,
        current_replicas: 2,
        recommended_replicas: replicas,
        direction: Direction::of(2, replicas),
        load: 1.0,
        reason: "test".into(),
        ..Default::default()
    }
}

fn config(url: String, dead: &Path) -> WebhookConfig {
    WebhookConfig {
        secret: Some(SECRET.into()),
        max_attempts: 6,
        initial_backoff_secs: 0.01,
        max_backoff_secs: 0.05,
        timeout_secs: 2.0,
        ..WebhookConfig::new(vec![url], dead)
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dead_letters(dir: &Path) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dead-letter dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let bytes = std::fs::read(&p).expect("read");
            out.push(serde_json::from_slice(&bytes).expect("a dead letter"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_receiver_gets_exactly_one_effective_delivery() {
    let r = Arc::new(Receiver::default());
    r.fail_first.store(3, Ordering::SeqCst);
    let (addr, server) = start_receiver(r.clone(), "127.0.0.1:0").await;
    let dead = tempfile::tempdir().expect("tmp");
    let sink =
        WebhookSink::start(&config(format!("http://{addr}/hook"), dead.path())).expect("sink");
    let event = WebhookEvent::recommendation(&recommendation("web", 0, 5));
    sink.send(&event).expect("queued");
    eventually("the delivery", || {
        sink.stats().delivered.load(Ordering::SeqCst) == 1
    })
    .await;

    let seen = r.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 4, "3 failures, then one success");
    assert!(
        seen.iter().all(|s| s.key == event.id),
        "same key on every retry"
    );
    assert_eq!(r.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(sink.stats().retries.load(Ordering::SeqCst), 3);
    let processed = r.processed.lock().expect("lock").clone();
    assert_eq!(processed.len(), 1);
    // The body is the documented schema.
    let body: serde_json::Value = serde_json::from_slice(&processed[&event.id]).expect("JSON body");
    assert_eq!(body["schema_version"], 1);
    assert_eq!(body["type"], "recommendation");
    assert_eq!(body["id"], event.id.as_str());
    assert_eq!(body["target"], "web");
    assert_eq!(body["recommendation"]["recommended_replicas"], 5);

    // The same event sent again (e.g. after a restart) carries the same key: the receiver
    // accepts it and still has one effective delivery.
    sink.send(&WebhookEvent::recommendation(&recommendation("web", 0, 5)))
        .expect("queued");
    eventually("the duplicate", || {
        sink.stats().delivered.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(r.processed.lock().expect("lock").len(), 1);
    sink.shutdown(Duration::from_secs(5)).await;
    assert!(dead_letters(dead.path()).is_empty());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_dead_letters_then_replay_delivers_everything() {
    // Reserve a port, then close it: the receiver is down.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dead = tempfile::tempdir().expect("tmp");
    let mut cfg = config(format!("http://{addr}/hook"), dead.path());
    cfg.max_attempts = 3;
    let sink = WebhookSink::start(&cfg).expect("sink");
    let events: Vec<WebhookEvent> = (0..5)
        .map(|i| WebhookEvent::recommendation(&recommendation("web", i, 3 + i)))
        .collect();
    for e in &events {
        sink.send(e).expect("queued");
    }
    eventually("5 dead letters", || {
        sink.stats().dead_lettered.load(Ordering::SeqCst) == 5
    })
    .await;
    sink.shutdown(Duration::from_secs(5)).await;
    let letters = dead_letters(dead.path());
    assert_eq!(letters.len(), 5);
    for d in &letters {
        assert_eq!(d.attempts, 3);
        assert_eq!(d.url, format!("http://{addr}/hook"));
        assert!(!d.error.is_empty());
        assert_eq!(d.headers.get("Idempotency-Key"), Some(&d.idempotency_key));
        let body: serde_json::Value = serde_json::from_str(&d.body).expect("JSON body");
        assert_eq!(body["id"], d.idempotency_key.as_str());
    }

    // Replay while still down: kept, attempts counted.
    let secret_file = dead.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("secret");
    let args = WebhooksReplayArgs {
        dead_letter_dir: dead.path().to_path_buf(),
        secret: None,
        secret_file: Some(secret_file),
        max_attempts: 1,
        initial_backoff_secs: 0.0,
        max_backoff_secs: 0.0,
        timeout_secs: 2.0,
    };
    let rep = replay(&args).await.expect("replay runs");
    assert_eq!((rep.found, rep.delivered, rep.failed), (5, 0, 5));
    assert!(dead_letters(dead.path()).iter().all(|d| d.attempts == 4));

    // The receiver comes back on the same address; replay delivers and deletes.
    let r = Arc::new(Receiver::default());
    let (_, server) = start_receiver(r.clone(), &addr.to_string()).await;
    let rep = replay(&args).await.expect("replay runs");
    assert_eq!((rep.found, rep.delivered, rep.failed), (5, 5, 0), "{rep:?}");
    assert!(dead_letters(dead.path()).is_empty());
    let processed = r.processed.lock().expect("lock").clone();
    let want: BTreeSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(processed.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(
        r.bad_signatures.load(Ordering::SeqCst),
        0,
        "replay re-signs"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_and_shutdown_lose_nothing() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dead = tempfile::tempdir().expect("tmp");
    let mut cfg = config(format!("http://{addr}/hook"), dead.path());
    cfg.queue_capacity = 1;
    cfg.max_attempts = 1000;
    cfg.initial_backoff_secs = 30.0;
    cfg.max_backoff_secs = 60.0;
    let sink = WebhookSink::start(&cfg).expect("sink");
    for i in 0..4 {
        sink.send(&WebhookEvent::recommendation(&recommendation("web", i, 4)))
            .expect("accepted");
    }
    // One in flight (retrying), one queued, the rest overflowed straight to disk.
    sink.shutdown(Duration::from_millis(200)).await;
    let letters = dead_letters(dead.path());
    assert_eq!(letters.len(), 4, "{letters:#?}");
    let keys: BTreeSet<_> = letters.iter().map(|d| d.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 4);
    assert!(letters.iter().any(|d| d.error == "in-memory queue full"));
    assert!(
        letters
            .iter()
            .any(|d| d.error == "shut down before delivery")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_and_resolve_through_webhooks() {
    let r = Arc::new(Receiver::default());
    let (addr, server) = start_receiver(r.clone(), "127.0.0.1:0").await;
    let dead = tempfile::tempdir().expect("tmp");
    let sink =
        WebhookSink::start(&config(format!("http://{addr}/hook"), dead.path())).expect("sink");
    let cfg: AlertsConfig = serde_yaml::from_str(
        "rules: [{name: util-high, sql: 'SELECT key, value FROM u', op: '>', threshold: 0.9, for_secs: 300, target: web}]",
    )
    .expect("alerts config");
    assert_eq!(cfg.validate(), Ok(()));
    let mut engine = AlertEngine::new(&cfg);
    let at = |s: i64| {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    };
    let hot = vec![("web".to_string(), 0.95)];
    for s in [0, 60, 120, 180, 240] {
        assert!(engine.evaluate("util-high", at(s), &hot).is_empty());
    }
    let firing = engine.evaluate("util-high", at(300), &hot);
    let resolved = engine.evaluate("util-high", at(360), &[("web".to_string(), 0.5)]);
    publish(&sink, &firing).expect("sent");
    publish(&sink, &resolved).expect("sent");
    eventually("both alert messages", || {
        sink.stats().delivered.load(Ordering::SeqCst) == 2
    })
    .await;
    let processed = r.processed.lock().expect("lock").clone();
    let mut types: Vec<String> = processed
        .values()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(b).expect("JSON");
            assert_eq!(v["alert"]["rule"], "util-high");
            assert_eq!(v["target"], "web");
            v["type"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["alert_firing", "alert_resolved"]);
    sink.shutdown(Duration::from_secs(5)).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_does_not_hold_up_a_live_one() {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let r = Arc::new(Receiver::default());
    let (up, server) = start_receiver(r.clone(), "127.0.0.1:0").await;
    let dead = tempfile::tempdir().expect("tmp");
    let mut cfg = config(format!("http://{down}/hook"), dead.path());
    cfg.urls.push(format!("http://{up}/hook"));
    // The dead URL keeps retrying for a long time; the live one must not wait for it.
    cfg.max_attempts = 1000;
    cfg.initial_backoff_secs = 5.0;
    cfg.max_backoff_secs = 30.0;
    let sink = WebhookSink::start(&cfg).expect("sink");
    for i in 0..3 {
        sink.send(&WebhookEvent::recommendation(&recommendation(
            "api",
            i,
            2 + i,
        )))
        .expect("queued");
    }
    eventually("three deliveries to the live receiver", || {
        r.processed.lock().map(|p| p.len()).unwrap_or(0) == 3
    })
    .await;
    assert_eq!(sink.stats().delivered.load(Ordering::SeqCst), 3);
    // At shutdown the dead URL's three deliveries go to disk, for that URL only.
    sink.shutdown(Duration::from_millis(100)).await;
    let letters = dead_letters(dead.path());
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|d| d.url == format!("http://{down}/hook"))
    );
    server.abort();
}

/// The whole pipeline: a rule in the pipeline file, evaluated by the server over
/// its own `samples` table, fires when a written sample crosses the threshold
/// and resolves when a later one falls back, each message signed and
/// delivered to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_alert_rule_fires_and_resolves_on_written_samples() {
    let r = Arc::new(Receiver::default());
    let (hook, server) = start_receiver(r.clone(), "127.0.0.1:0").await;
    let dir = tempfile::tempdir().expect("tmp");
    let yaml = format!(
        r#"
sources:
  in:
    type: remote_write
webhooks:
  urls: ["http://{hook}/hook"]
  secret: {SECRET}
  initial_backoff_secs: 0.01
  max_backoff_secs: 0.05
  dead_letter_dir: {dead}
alerts:
  evaluation_interval_secs: 1
  rules:
    - name: demand-high
      sql: "SELECT name AS key, last_value(value ORDER BY ts) AS value FROM samples WHERE name = 'demand' GROUP BY name"
      op: ">"
      threshold: 100
      for_secs: 0
      target: web
"#,
        dead = dir.path().join("dead").display()
    );
    let sc = crate::common::start_server(&dir.path().join("data"), Some(&yaml)).await;
    let (client, addr) = (reqwest::Client::new(), sc.addr);
    let now = Utc::now().timestamp_millis();
    let write = |value: f64, ts: i64| {
        let client = client.clone();
        async move {
            crate::common::post_write(
                &client,
                addr,
                crate::common::body(&[crate::common::sample("demand", &[], ts, value)]),
            )
            .await
            .status()
        }
    };
    let types = |r: &Receiver| -> Vec<String> {
        r.processed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_slice(b).expect("JSON");
                assert_eq!(v["alert"]["rule"], "demand-high", "{v}");
                assert_eq!(v["target"], "web", "{v}");
                v["type"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    };
    assert_eq!(write(50.0, now - 2000).await, 204);
    // Below the threshold: evaluations run, nothing is sent.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(types(&r).is_empty());
    assert_eq!(write(150.0, now - 1000).await, 204);
    eventually("the firing message", || types(&r) == ["alert_firing"]).await;
    assert_eq!(write(40.0, now).await, 204);
    eventually("the resolved message", || types(&r).len() == 2).await;
    let mut got = types(&r);
    got.sort();
    assert_eq!(got, ["alert_firing", "alert_resolved"]);
    assert_eq!(r.bad_signatures.load(Ordering::SeqCst), 0);
    sc.shutdown().await;
    server.abort();
}
