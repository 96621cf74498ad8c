//! The live scaling loop: demand from the store → recommendations in the API
//! and the `recommendations` table; decision latency with explicit clocks.

use std::sync::Arc;
use std::time::Duration;

use scalecast::metrics::Metrics;
use scalecast::pipeline::scaling::{ScalingState, evaluate};
use scalecast::recommend::{Fleet, PolicyFile};
use scalecast::store::{IngestRecord, StorageConfig, Store};

use crate::common::*;

const POLICY: &str = r#"
targets:
  - name: web
    kind: none
    metric: { kind: requests, name: demand, labels: { app: web } }
    capacity_per_replica: 10
    target_utilization_percent: 50
    min_replicas: 1
    max_replicas: 20
    max_step_up_replicas: 100
    max_step_up_percent: 1000
    cooldown_secs: 0
    scale_up_cooldown_secs: 0
    scale_down_stabilization_secs: 0
    evaluation_interval_secs: 1
    recommender: { kind: hpa, tolerance: 0.1 }
"#;

fn pipeline() -> String {
    let indented: String = POLICY.lines().map(|l| format!("  {l}\n")).collect();
    format!("sources:\n  prom:\n    type: remote_write\nscaling:\n{indented}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_reach_the_api_and_the_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(dir.path(), Some(&pipeline())).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_millis();
    // 42 requests/s in total over two series → HPA-like: ceil(42 / (10 × 50%)) = 9.
    let samples: Vec<_> = (0..5)
        .flat_map(|i| {
            let ts = now - (5 - i) * 1000;
            [
                sample("demand", &[("app", "web"), ("pod", "a")], ts, 20.0),
                sample("demand", &[("app", "web"), ("pod", "b")], ts, 22.0),
            ]
        })
        .collect();
    assert_eq!(
        post_write(&client, addr, body(&samples)).await.status(),
        204
    );
    let targets: Vec<serde_json::Value> =
        wait_for(Duration::from_secs(30), "a recommendation for web", || {
            let client = client.clone();
            async move {
                let v: Vec<serde_json::Value> =
                    try_get_json(&client, &format!("http://{addr}/api/v1/targets")).await?;
                v[0]["recommended_replicas"].as_u64().is_some().then_some(v)
            }
        })
        .await;
    assert_eq!(targets[0]["name"], "web");
    assert_eq!(targets[0]["mode"], "forecast_only");
    assert_eq!(targets[0]["recommended_replicas"], 9, "{targets:?}");
    assert!((targets[0]["load"].as_f64().expect("load") - 42.0).abs() < 1e-9);
    let recs: Vec<serde_json::Value> = get_json(
        &client,
        &format!("http://{addr}/api/v1/recommendations?target=web&limit=5"),
    )
    .await;
    assert!(!recs.is_empty());
    assert_eq!(recs[0]["target"], "web");
    assert!(recs[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let rows = sql(&client, addr, "SELECT count(*) AS n, max(recommended_replicas) AS r FROM recommendations WHERE target = 'web'").await;
    assert!(rows[0]["n"].as_i64().unwrap_or(0) >= 1);
    assert_eq!(rows[0]["r"], 9);
    let tl: serde_json::Value = get_json(
        &client,
        &format!("http://{addr}/api/v1/targets/web/timeline?range_secs=3600"),
    )
    .await;
    assert_eq!(tl["demand"].as_array().map(|a| a.len()), Some(5));
    assert_eq!(tl["demand"][0][1], 42.0);
    let r = client
        .get(format!("http://{addr}/api/v1/targets/nope/timeline"))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
    // Scaling self-metrics.
    let m = get_text(&client, &format!("http://{addr}/metrics")).await;
    assert!(
        m.contains("scalecast_recommended_replicas{target=\"web\"} 9"),
        "{m}"
    );
    assert!(
        m.contains("scalecast_scaling_operations_total{target=\"web\""),
        "{m}"
    );
    // Kill switch.
    let r = client
        .post(format!("http://{addr}/api/v1/pause"))
        .json(&serde_json::json!({"paused": true}))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);
    let t: Vec<serde_json::Value> =
        get_json(&client, &format!("http://{addr}/api/v1/targets")).await;
    assert_eq!(t[0]["paused"], true);
    let r = client
        .post(format!("http://{addr}/api/v1/pause"))
        .body("{\"pause\": 1}")
        .send()
        .await
        .expect("bad pause");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json error");
    assert!(v["error"].as_str().is_some());
    // Config, and validation of a candidate config.
    let cfg: serde_json::Value = get_json(&client, &format!("http://{addr}/api/v1/config")).await;
    assert_eq!(cfg["scaling"]["targets"][0]["name"], "web");
    let v: serde_json::Value = client
        .post(format!("http://{addr}/api/v1/config/validate"))
        .body("sources:\n  x:\n    type: remote_write\n    bogus: 1\n")
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(v["valid"], false);
    assert!(
        v["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("<request>:4:5:") && e.contains("bogus")),
        "{v}"
    );
    server.shutdown().await;
}

/// Scale-up decided within one evaluation interval (60 s) of the data that
/// triggers it, scale-down within one interval too with stabilization 0:
/// the seeds' targets are < 2 min up and < 1 min down (data → decision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_follow_data_within_one_interval() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(
        Store::open(
            dir.path(),
            StorageConfig::default(),
            Arc::new(Metrics::new()),
        )
        .expect("store"),
    );
    let policy = PolicyFile::from_yaml_str(&POLICY.replace(
        "evaluation_interval_secs: 1",
        "evaluation_interval_secs: 60",
    ))
    .expect("policy");
    let table = Arc::new(
        scalecast::store::table::DerivedTable::open(
            dir.path(),
            "recommendations",
            scalecast::recommend::recommendations_schema(),
            1_000,
        )
        .expect("table"),
    );
    let state = ScalingState::new(policy.clone(), table).expect("state");
    let mut fleet = Fleet::new(&policy, "test").expect("fleet");
    let catalog = |s: &Store| {
        (
            vec![scalecast::query::TableSource::samples(s.snapshot())],
            vec![],
        )
    };
    let t0 = 1_800_000_000_000_i64;
    let ingest = |ts: i64, v: f64| {
        let s = [sample("demand", &[("app", "web")], ts, v)];
        let rec = IngestRecord {
            wal_payload: body(&s).into(),
            batch: scalecast::schema::samples_to_batch(&s),
        };
        let store = store.clone();
        async move { store.ingest(rec).await.expect("ingest") }
    };
    // Steady 10 req/s → 2 replicas.
    for m in 0..5 {
        ingest(t0 + m * 60_000, 10.0).await;
    }
    let first = evaluate(&state, &mut fleet, &store, &catalog, t0 + 5 * 60_000).await;
    assert_eq!(first[0].recommended_replicas, 2);
    // A spike arrives at t_spike; the next evaluation is due 60 s after the first.
    let t_spike = t0 + 5 * 60_000 + 10_000;
    ingest(t_spike, 80.0).await;
    let none = evaluate(&state, &mut fleet, &store, &catalog, t_spike + 1_000).await;
    assert!(none.is_empty(), "not due yet");
    let up = evaluate(&state, &mut fleet, &store, &catalog, t0 + 6 * 60_000).await;
    assert_eq!(up[0].recommended_replicas, 16);
    let latency_up = up[0].ts.timestamp_millis() - t_spike;
    assert!(
        latency_up < 120_000,
        "scale-up {latency_up} ms after the data"
    );
    // Demand drops; with stabilization 0 the next evaluation scales down.
    let t_drop = t0 + 6 * 60_000 + 5_000;
    ingest(t_drop, 10.0).await;
    let down = evaluate(&state, &mut fleet, &store, &catalog, t0 + 7 * 60_000).await;
    assert_eq!(down[0].recommended_replicas, 2);
    let latency_down = down[0].ts.timestamp_millis() - t_drop;
    assert!(
        latency_down < 60_000,
        "scale-down {latency_down} ms after the data"
    );
    eprintln!(
        "decision latency: up {latency_up} ms, down {latency_down} ms (evaluation interval 60 s)"
    );
    store.close();
}

/// `scalecast forecast --config`: the pipeline's forecast stage, once, from the
/// stored history into the `forecasts` table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_stage_runs_once_from_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "sources:\n  prom:\n    type: remote_write\nforecasts:\n  load:\n    sql: \"SELECT ts, value FROM samples WHERE name = 'load'\"\n    model: ets\n    step_secs: 300\n    horizon: 12\n",
    )
    .expect("pipeline");
    let server = start_server(&data, None).await;
    let client = reqwest::Client::new();
    let t0 = chrono::Utc::now().timestamp_millis() - 2 * 86_400_000;
    let samples: Vec<_> = (0..576)
        .map(|i| {
            sample(
                "load",
                &[],
                t0 + i * 300_000,
                50.0 + 10.0 * ((i as f64) * std::f64::consts::TAU / 288.0).sin(),
            )
        })
        .collect();
    assert_eq!(
        post_write(&client, server.addr, body(&samples))
            .await
            .status(),
        204
    );
    server.shutdown().await;
    let out = std::process::Command::new(scalecast_bin())
        .args(["forecast", "--config"])
        .arg(&pipeline)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(scalecast_bin())
        .args(["query", "--format", "csv", "--data-dir"])
        .arg(&data)
        .arg("SELECT count(*) AS n, min(model) AS m FROM forecasts WHERE series = 'load'")
        .output()
        .expect("query");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("n,m\n12,ets"), "{text}");
}
