//! The scraper against a real `prometheus-node-exporter`, side by side with a
//! real Prometheus 2.42 scraping the same exporter: scalecast's
//! `scrape_samples_scraped` for the target equals Prometheus's within 5 %, the
//! series count matches, and a stopped exporter turns `up` to 0 within one
//! interval.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scalecast::sources::scrape::discovery::TargetGroup;
use scalecast::sources::scrape::{ScrapeConfig, run};
use tokio::sync::watch;

use crate::common::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Latest `metric{job="node"}` value from Prometheus's query API.
async fn prom_value(client: &reqwest::Client, port: u16, query: &str) -> Option<f64> {
    let v: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_scrape_matches_prometheus_and_down_target_reports_up_0() {
    if let Err(why) = ensure_apt("prometheus", &["prometheus", "prometheus-node-exporter"])
        .and_then(|()| ensure_apt("prometheus-node-exporter", &["prometheus-node-exporter"]))
    {
        eprintln!("SKIP: scrape vs Prometheus test: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(&dir.path().join("data"), None).await;
    let addr = server.addr;
    let store = server.state.store.get().cloned().expect("store ready");
    let client = reqwest::Client::new();

    let ne_port = free_port();
    let mut ne = ChildGuard::spawn(
        "node_exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .arg("--no-collector.systemd"),
        &dir.path().join("node_exporter.log"),
    );
    wait_for(Duration::from_secs(30), "node_exporter", || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{ne_port}/metrics"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;

    let prom_port = free_port();
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg_path,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n"
        ),
    )
    .expect("prometheus.yml");
    let mut prom = ChildGuard::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &dir.path().join("prometheus.log"),
    );

    let cfg: ScrapeConfig = serde_yaml::from_str(&format!(
        "job_name: node\nscrape_interval_secs: 1\nstatic_configs:\n  - targets: ['127.0.0.1:{ne_port}']\n"
    ))
    .expect("scrape config");
    cfg.validate().expect("valid");
    assert_eq!(
        cfg.static_configs,
        vec![TargetGroup {
            targets: vec![format!("127.0.0.1:{ne_port}")],
            labels: Default::default(),
        }]
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = server.state.metrics.clone();
    let task = tokio::spawn(async move { run("node", cfg, store, metrics, stop_rx).await });

    // Five scrapes by scalecast, and Prometheus's own number for the target.
    let ours_q = "SELECT value, CAST(ts AS BIGINT) AS t FROM samples \
                  WHERE name = 'scrape_samples_scraped' AND labels['job'] = 'node' ORDER BY ts DESC";
    let ours: Vec<f64> = wait_for(Duration::from_secs(60), "5 scalecast scrapes", || {
        let client = client.clone();
        async move {
            let rows = sql(&client, addr, ours_q).await;
            (rows.len() >= 5).then(|| {
                rows.iter()
                    .filter_map(|r| r["value"].as_f64())
                    .collect::<Vec<f64>>()
            })
        }
    })
    .await;
    let theirs =
        wait_for(
            Duration::from_secs(60),
            "Prometheus's scrape_samples_scraped",
            || {
                let client = client.clone();
                async move {
                    prom_value(&client, prom_port, "scrape_samples_scraped{job=\"node\"}").await
                }
            },
        )
        .await;
    let latest = ours[0];
    let diff = (latest - theirs).abs() / theirs;
    eprintln!(
        "scrape_samples_scraped: scalecast {latest} (last {} scrapes: {:?}), Prometheus {theirs}, diff {:.2} %",
        ours.len().min(5),
        &ours[..ours.len().min(5)],
        diff * 100.0
    );
    assert!(
        diff <= 0.05,
        "scalecast scraped {latest} samples, Prometheus {theirs}"
    );
    // Series per scrape (exposed + 5 synthesized) against Prometheus's count.
    let rows = sql(
        &client,
        addr,
        "SELECT count(DISTINCT series_id) AS n FROM samples WHERE labels['job'] = 'node' AND ts = \
         (SELECT max(ts) FROM samples WHERE name = 'up' AND labels['job'] = 'node')",
    )
    .await;
    let our_series = rows[0]["n"].as_f64().expect("n");
    let prom_series = wait_for(Duration::from_secs(30), "Prometheus series count", || {
        let client = client.clone();
        async move { prom_value(&client, prom_port, "count({job=\"node\"})").await }
    })
    .await;
    eprintln!("series per scrape: scalecast {our_series}, Prometheus {prom_series}");
    assert!(
        (our_series - prom_series).abs() / prom_series <= 0.05,
        "scalecast {our_series} series, Prometheus {prom_series}"
    );
    let up_rows = sql(
        &client,
        addr,
        "SELECT value FROM samples WHERE name = 'up' AND labels['job'] = 'node'",
    )
    .await;
    assert!(up_rows.iter().all(|r| r["value"].as_f64() == Some(1.0)));

    // Stop the exporter: the next scrape (at most one interval later) is up 0.
    ne.terminate();
    let killed = now_ms();
    let first_down = wait_for(Duration::from_secs(15), "up 0 after the stop", || {
        let client = client.clone();
        async move {
            let rows = sql(
                &client,
                addr,
                &format!(
                    "SELECT value, CAST(ts AS BIGINT) AS t FROM samples WHERE name = 'up' \
                     AND labels['job'] = 'node' AND CAST(ts AS BIGINT) > {killed} ORDER BY ts"
                ),
            )
            .await;
            rows.first().map(|r| {
                (
                    r["value"].as_f64().unwrap_or(-1.0),
                    r["t"].as_i64().unwrap_or(0),
                )
            })
        }
    })
    .await;
    eprintln!(
        "first scrape after the stop: up {} at +{} ms",
        first_down.0,
        first_down.1 - killed
    );
    assert_eq!(
        first_down.0, 0.0,
        "the first scrape after the stop must fail"
    );
    assert!(
        first_down.1 - killed <= 1000 + 500,
        "first scrape after the stop came {} ms later (interval 1000 ms, 500 ms scheduling slack)",
        first_down.1 - killed
    );
    let _ = stop_tx.send(true);
    task.await.expect("join").expect("run");
    let text = server.state.metrics.render();
    assert!(
        text.contains("scalecast_scrape_failures_total{source=\"node\",reason=\"connect\"}"),
        "{text}"
    );
    prom.terminate();
    server.shutdown().await;
}
