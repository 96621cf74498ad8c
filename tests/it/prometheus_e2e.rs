//! Real Prometheus 2.42 + node_exporter remote-writing into scalecast: the
//! values scalecast stores for a series equal, timestamp by timestamp, what
//! Prometheus's own query API returns; and scalecast's windowed CPU
//! utilization per instance matches Prometheus's
//! `1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))`
//! at the window ends within 2%.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Starts node_exporter and Prometheus (remote-writing to `rw_url`) in `dir`;
/// returns None (after printing why) if they cannot be installed.
pub fn start_prometheus(
    dir: &std::path::Path,
    rw_url: &str,
) -> Option<(ChildGuard, ChildGuard, u16, u16)> {
    if let Err(why) = ensure_apt("prometheus", &["prometheus", "prometheus-node-exporter"]) {
        eprintln!("SKIP: real Prometheus test: {why}");
        return None;
    }
    let ne_port = free_port();
    let ne = ChildGuard::spawn(
        "node_exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .arg("--no-collector.systemd"),
        &dir.join("node_exporter.log"),
    );
    let prom_port = free_port();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\nremote_write:\n  - url: {rw_url}\n    queue_config:\n      max_samples_per_send: 2000\n      batch_send_deadline: 1s\n    metadata_config:\n      send_interval: 5s\n"
    );
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).expect("prometheus.yml");
    let prom = ChildGuard::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--storage.remote.flush-deadline=1s"),
        &dir.join("prometheus.log"),
    );
    Some((ne, prom, ne_port, prom_port))
}

/// The pipeline under test: remote write in, per-instance CPU utilization and
/// per-CPU user-mode rate in one-minute tumbling windows (docs/engine.md).
const PIPELINE: &str = r#"
sources:
  prometheus:
    type: remote_write
transforms:
  node_cpu:
    type: utilization
    inputs: [prometheus]
    resource: cpu
    window: { type: tumbling, size_secs: 60 }
    group_by: [instance]
    usage:    { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: rate, across: sum, from_idle: true }
    capacity: { metric: node_cpu_seconds_total, matchers: ['mode="idle"'], per_series: last, across: count }
    allowed_lateness_secs: 5
    idle_timeout_secs: 120
  user_rate:
    type: window
    inputs: [prometheus]
    metric: node_cpu_seconds_total
    matchers: ['mode="user"']
    window: { type: tumbling, size_secs: 60 }
    group_by: [cpu]
    aggregates: [rate, count]
    allowed_lateness_secs: 5
"#;

async fn prom_instant(
    client: &reqwest::Client,
    port: u16,
    query: &str,
    time_s: f64,
) -> Vec<serde_json::Value> {
    let v: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[
            ("query", query.to_string()),
            ("time", format!("{time_s:.3}")),
        ])
        .send()
        .await
        .expect("prometheus query")
        .json()
        .await
        .expect("json");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn prom_value(r: &serde_json::Value) -> f64 {
    r["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("numeric value")
}

/// Asserts that each row's value column is within 2% (of at least `floor`)
/// of `promql` evaluated by Prometheus at the row's window end `t`, for the
/// series whose `label` equals the row's column of that name. Returns the
/// number of values compared.
async fn within_2pct_of_prometheus(
    client: &reqwest::Client,
    prom_port: u16,
    rows: &[serde_json::Value],
    (label, column): (&str, &str),
    promql: &str,
    floor: f64,
) -> usize {
    for r in rows {
        let t = r["t"].as_i64().expect("t") as f64 / 1000.0;
        let key = r[label].as_str().expect("label column");
        let ours = r[column].as_f64().expect("value column");
        let theirs = prom_instant(client, prom_port, promql, t)
            .await
            .iter()
            .find(|x| x["metric"][label] == key)
            .map(prom_value)
            .unwrap_or_else(|| panic!("Prometheus has no series with {label}={key}"));
        assert!(
            (ours - theirs).abs() <= 0.02 * theirs.abs().max(floor),
            "{column} of {label}={key} at {t}: scalecast {ours}, Prometheus {theirs}"
        );
    }
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_matches_prometheus_queries() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(&dir.path().join("data"), Some(PIPELINE)).await;
    let addr = server.addr;
    let Some((_ne, mut prom, _ne_port, prom_port)) =
        start_prometheus(dir.path(), &format!("http://{addr}/api/v1/write"))
    else {
        server.shutdown().await;
        return;
    };
    let client = reqwest::Client::new();
    // Prometheus sends its first batch ~5.5 s after start; wait for 15 s of data.
    let series =
        "name = 'node_cpu_seconds_total' AND labels['cpu'] = '0' AND labels['mode'] = 'idle'";
    wait_for(
        Duration::from_secs(90),
        "15 samples of node_cpu_seconds_total in scalecast",
        || {
            let client = client.clone();
            async move {
                let rows = sql(
                    &client,
                    addr,
                    &format!("SELECT count(*) AS n FROM samples WHERE {series}"),
                )
                .await;
                (rows[0]["n"].as_i64().unwrap_or(0) >= 15).then_some(())
            }
        },
    )
    .await;
    // Metadata-only requests arrive every 5 s and must have been accepted.
    let ours: BTreeMap<i64, f64> = sql(
        &client,
        addr,
        &format!("SELECT CAST(ts AS BIGINT) AS t, value FROM samples WHERE {series} ORDER BY ts"),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r["t"].as_i64().expect("t"),
            r["value"].as_f64().expect("value"),
        )
    })
    .collect();
    // Prometheus's own raw samples of the same series.
    let url = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let v: serde_json::Value = client
        .get(&url)
        .query(&[(
            "query",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}[10m]",
        )])
        .send()
        .await
        .expect("prometheus query")
        .json()
        .await
        .expect("json");
    let values = v["data"]["result"][0]["values"]
        .as_array()
        .cloned()
        .expect("range vector from Prometheus");
    let theirs: BTreeMap<i64, f64> = values
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
            let val: f64 = p[1].as_str().and_then(|s| s.parse().ok()).expect("value");
            (t, val)
        })
        .collect();
    let mut compared = 0;
    for (t, val) in &ours {
        if let Some(p) = theirs.get(t) {
            assert_eq!(
                val, p,
                "value at {t} differs: scalecast {val}, Prometheus {p}"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 10,
        "only {compared} common timestamps (ours {}, theirs {})",
        ours.len(),
        theirs.len()
    );
    // Every series of the job arrived: compare with Prometheus's count.
    let prom_count: serde_json::Value = client
        .get(&url)
        .query(&[("query", "count({job=\"node\"})")])
        .send()
        .await
        .expect("count")
        .json()
        .await
        .expect("json");
    let want: i64 = prom_count["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("count");
    let rows = sql(
        &client,
        addr,
        "SELECT count(DISTINCT series_id) AS n FROM samples WHERE labels['job'] = 'node'",
    )
    .await;
    let got = rows[0]["n"].as_i64().expect("n");
    assert!(
        got >= want * 95 / 100,
        "scalecast has {got} series of job=node, Prometheus {want}"
    );
    // Nothing failed on Prometheus's side.
    let m = get_text(&client, &format!("http://127.0.0.1:{prom_port}/metrics")).await;
    let failed: f64 = m
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        failed, 0.0,
        "Prometheus reports failed remote-write samples"
    );
    eprintln!("prometheus e2e: compared {compared} samples; {got} series (Prometheus {want})");

    // Windowed utilization: wait for a full one-minute window (it starts after
    // scalecast's first sample), then compare at its end.
    let first_ms: i64 = sql(
        &client,
        addr,
        &format!("SELECT CAST(min(ts) AS BIGINT) AS t FROM samples WHERE {series}"),
    )
    .await[0]["t"]
        .as_i64()
        .expect("first sample");
    let full = format!("CAST(window_start AS BIGINT) >= {first_ms}");
    let rows = wait_for(Duration::from_secs(240), "a full node_cpu window in aggregates", || {
        let client = client.clone();
        let full = full.clone();
        async move {
            let rows = sql(
                &client,
                addr,
                &format!("SELECT labels['instance'] AS instance, CAST(window_end AS BIGINT) AS t, saturation, usage, capacity FROM aggregates WHERE transform = 'node_cpu' AND {full} ORDER BY t"),
            )
            .await;
            (!rows.is_empty()).then_some(rows)
        }
    })
    .await;
    let mut checked = within_2pct_of_prometheus(
        &client,
        prom_port,
        &rows,
        ("instance", "saturation"),
        "1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"}[1m]))",
        1e-9,
    )
    .await;
    // Per-CPU user-mode rate (exercises the arithmetic even when the machine is saturated).
    let full_rows = sql(
        &client,
        addr,
        &format!("SELECT labels['cpu'] AS cpu, CAST(window_end AS BIGINT) AS t, rate FROM aggregates WHERE transform = 'user_rate' AND {full} AND rate IS NOT NULL ORDER BY t"),
    )
    .await;
    checked += within_2pct_of_prometheus(
        &client,
        prom_port,
        &full_rows,
        ("cpu", "rate"),
        "sum by (cpu) (rate(node_cpu_seconds_total{mode=\"user\"}[1m]))",
        1e-3,
    )
    .await;
    assert!(checked >= 2, "compared {checked} window values");
    eprintln!("prometheus e2e: {checked} window values within 2% of Prometheus");
    prom.terminate();
    server.shutdown().await;
}
