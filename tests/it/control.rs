//! The control plane end to end: a `forecast_and_scale` target acts through
//! the (default dry-run) actuator behind the safety layer, `POST
//! /api/v1/scale` is clamped and refused while paused, and every
//! recommendation is published as a signed webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;

use crate::common::*;

fn pipeline(hook: &str, dead: &std::path::Path) -> String {
    format!(
        r#"
sources:
  prom:
    type: remote_write
webhooks:
  urls: ["{hook}"]
  secret: s3cret
  dead_letter_dir: "{dead}"
scaling:
  targets:
    - name: asg
      kind: aws_asg
      asg_name: web-asg
      region: us-east-1
      mode: forecast_and_scale
      metric: {{ kind: requests, name: demand }}
      capacity_per_replica: 10
      target_utilization_percent: 50
      min_replicas: 2
      max_replicas: 8
      max_step_up_replicas: 100
      cooldown_secs: 0
      scale_up_cooldown_secs: 0
      scale_down_stabilization_secs: 0
      evaluation_interval_secs: 1
      recommender: {{ kind: hpa }}
"#,
        dead = dead.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_clamped_paused_and_published() {
    let dir = tempfile::tempdir().expect("tmp");
    // A webhook receiver that records what it gets.
    let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let g = g.clone();
            async move {
                let sig = headers
                    .get("x-scalecast-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if let Ok(v) = serde_json::from_str(&body) {
                    g.lock().expect("lock").push((sig, v));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_addr = listener.local_addr().expect("addr");
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let yaml = pipeline(
        &format!("http://{hook_addr}/hook"),
        &dir.path().join("dead"),
    );
    let server = start_server(&dir.path().join("data"), Some(&yaml)).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_millis();
    // 42 req/s at 5 per replica → 9, clamped to max 8.
    assert_eq!(
        post_write(&client, addr, body(&[sample("demand", &[], now, 42.0)]))
            .await
            .status(),
        204
    );
    let t: Vec<serde_json::Value> = wait_for(Duration::from_secs(30), "an executed action", || {
        let client = client.clone();
        async move {
            let v: Vec<serde_json::Value> =
                try_get_json(&client, &format!("http://{addr}/api/v1/targets")).await?;
            (v[0]["last_action"]["result"] == "ok").then_some(v)
        }
    })
    .await;
    assert_eq!(t[0]["mode"], "forecast_and_scale");
    assert_eq!(t[0]["recommended_replicas"], 8);
    assert_eq!(t[0]["last_action"]["replicas"], 8);

    // Manual scale is clamped to min/max whatever is asked.
    for (ask, want) in [(0, 2), (10_000, 8)] {
        let r = client
            .post(format!("http://{addr}/api/v1/scale"))
            .json(&serde_json::json!({"target": "asg", "replicas": ask}))
            .send()
            .await
            .expect("scale");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["to_replicas"], want, "{v}");
    }
    let r = client
        .post(format!("http://{addr}/api/v1/scale"))
        .json(&serde_json::json!({"target": "nope", "replicas": 3}))
        .send()
        .await
        .expect("scale");
    assert_eq!(r.status(), 404);
    // The kill switch blocks every action, manual ones included.
    let r = client
        .post(format!("http://{addr}/api/v1/pause"))
        .json(&serde_json::json!({"paused": true}))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("http://{addr}/api/v1/scale"))
        .json(&serde_json::json!({"target": "asg", "replicas": 5}))
        .send()
        .await
        .expect("scale");
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["result"], "blocked");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    let m = get_text(&client, &format!("http://{addr}/metrics")).await;
    assert!(
        m.contains(
            "scalecast_scaling_operations_total{target=\"asg\",direction=\"up\",result=\"ok\"}"
        ),
        "{m}"
    );
    assert!(m.contains("result=\"blocked\""), "{m}");

    // Recommendations arrive as signed webhooks.
    let events = wait_for(Duration::from_secs(30), "a recommendation webhook", || {
        let got = got.clone();
        async move {
            let g = got.lock().expect("lock").clone();
            g.iter()
                .any(|(_, v)| v["type"] == "recommendation")
                .then_some(g)
        }
    })
    .await;
    let (sig, ev) = events
        .iter()
        .find(|(_, v)| v["type"] == "recommendation")
        .expect("event");
    assert!(sig.starts_with("t=") && sig.contains(",v1="), "{sig}");
    assert_eq!(ev["recommendation"]["target"], "asg");
    server.shutdown().await;
    receiver.abort();
}

/// Every recommendation is published to a Kafka topic, keyed by target
/// (librdkafka's mock cluster; the publisher itself is tested against a real
/// broker in `kafka.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_are_published_to_kafka() {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    mock.create_topic("recs", 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tmp");
    let yaml = format!(
        "sources:\n  prom:\n    type: remote_write\nrecommendations_kafka:\n  bootstrap_servers: \"{bootstrap}\"\n  topic: recs\nscaling:\n  targets:\n    - name: web\n      kind: none\n      metric: {{ kind: requests, name: demand }}\n      capacity_per_replica: 10\n      target_utilization_percent: 50\n      min_replicas: 1\n      max_replicas: 20\n      evaluation_interval_secs: 1\n      recommender: {{ kind: hpa }}\n"
    );
    let server = start_server(dir.path(), Some(&yaml)).await;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        post_write(
            &client,
            server.addr,
            body(&[sample("demand", &[], now, 42.0)])
        )
        .await
        .status(),
        204
    );
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "test")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&["recs"]).expect("subscribe");
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 s")
        .expect("message");
    assert_eq!(msg.key(), Some(&b"web"[..]));
    let v: serde_json::Value =
        serde_json::from_slice(msg.payload().expect("payload")).expect("json");
    assert_eq!(v["record"]["target"], "web");
    assert_eq!(v["record"]["recommended_replicas"], 9);
    server.shutdown().await;
}
