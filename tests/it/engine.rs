//! The stream engine inside the server: windows close on the watermark, a
//! restart in the middle of an open window rebuilds it from stored samples,
//! and no window is ever stored with two different values.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

const PIPELINE: &str = r#"
sources:
  prom:
    type: remote_write
transforms:
  w:
    type: window
    inputs: [prom]
    metric: m
    window: { type: tumbling, size_secs: 10 }
    group_by: [k]
    aggregates: [count, sum, avg]
    allowed_lateness_secs: 0
    idle_timeout_secs: 3600
"#;

async fn write_range(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    base: i64,
    secs: std::ops::Range<i64>,
) {
    let samples: Vec<_> = secs
        .map(|i| sample("m", &[("k", "a")], base + i * 1000, i as f64))
        .collect();
    assert_eq!(post_write(client, addr, body(&samples)).await.status(), 204);
}

async fn windows(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    table: &str,
    base: i64,
) -> Vec<(i64, i64, f64)> {
    sql(
        client,
        addr,
        &format!("SELECT CAST(window_start AS BIGINT) - {base} AS s, CAST(count AS BIGINT) AS c, sum FROM {table} WHERE transform = 'w' ORDER BY s, emitted_at"),
    )
    .await
    .iter()
    .map(|r| (r["s"].as_i64().expect("s"), r["c"].as_i64().expect("c"), r["sum"].as_f64().expect("sum")))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_an_open_window_loses_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_millis();
    let base = now.div_euclid(10_000) * 10_000 - 120_000;

    let server = start_server(dir.path(), Some(PIPELINE)).await;
    write_range(&client, server.addr, base, 0..26).await; // windows 0 and 10 close; 20 stays open
    let addr = server.addr;
    let got = wait_for(Duration::from_secs(20), "two closed windows", || {
        let client = client.clone();
        async move {
            let w = windows(&client, addr, "aggregates", base).await;
            (w.len() == 2).then_some(w)
        }
    })
    .await;
    assert_eq!(got, vec![(0, 10, 45.0), (10_000, 10, 145.0)]);
    server.shutdown().await;

    // Restart: the open window [20 s, 30 s) is rebuilt from the stored samples.
    let server = start_server(dir.path(), Some(PIPELINE)).await;
    let addr = server.addr;
    write_range(&client, addr, base, 26..36).await;
    let got = wait_for(
        Duration::from_secs(20),
        "the window open at the restart",
        || {
            let client = client.clone();
            async move {
                let w = windows(&client, addr, "aggregates", base).await;
                (w.len() == 3).then_some(w)
            }
        },
    )
    .await;
    assert_eq!(
        got[2],
        (20_000, 10, (20..30).sum::<i64>() as f64),
        "{got:?}"
    );
    // Every stored emission of a window has the same value.
    let mut seen: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for (s, c, sum) in windows(&client, addr, "aggregates_log", base).await {
        if let Some(prev) = seen.insert(s, (c, sum)) {
            assert_eq!(
                prev,
                (c, sum),
                "window {s} stored twice with different values"
            );
        }
    }
    assert_eq!(seen.len(), 3);
    server.shutdown().await;
}
