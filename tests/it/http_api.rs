//! The HTTP contract of the data path: statuses, reasons, read-your-writes.

use std::time::Duration;

use scalecast::sources::remote_write::compress;

use crate::common::*;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn write_then_query_within_a_second_then_survive_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(dir.path(), None).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    let t = now_ms();
    let samples: Vec<_> = (0..500)
        .map(|i| {
            sample(
                "node_cpu_seconds_total",
                &[
                    ("cpu", &(i % 4).to_string()),
                    ("instance", "a:9100"),
                    ("mode", "idle"),
                ],
                t + (i / 4) as i64 * 1000,
                i as f64,
            )
        })
        .collect();
    let r = post_write(&client, addr, body(&samples)).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    // Read-your-writes: the 204 means queryable now (the head), no flush needed.
    let started = std::time::Instant::now();
    let rows = sql(&client, addr, "SELECT count(*) AS n, sum(value) AS s FROM samples WHERE labels['instance'] = 'a:9100' AND name = 'node_cpu_seconds_total'").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(rows[0]["n"], 500);
    assert_eq!(rows[0]["s"], (0..500).sum::<i64>() as f64);
    let rows = sql(
        &client,
        addr,
        "SELECT labels['cpu'] AS cpu, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["cpu"], "0");
    assert_eq!(rows[0]["n"], 125);
    // CSV output.
    let csv = client
        .post(format!("http://{addr}/api/v1/sql?format=csv"))
        .json(
            &serde_json::json!({"query": "SELECT name, count(*) AS n FROM samples GROUP BY name"}),
        )
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), 200);
    assert_eq!(
        csv.text().await.expect("text"),
        "name,n\nnode_cpu_seconds_total,500\n"
    );
    // Graceful stop flushes to Parquet; a new server sees the same rows.
    server.shutdown().await;
    let files: Vec<_> = walk(dir.path().join("samples"));
    assert!(
        files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet")),
        "{files:?}"
    );
    let server = start_server(dir.path(), None).await;
    let rows = sql(&client, server.addr, "SELECT count(*) AS n FROM samples").await;
    assert_eq!(rows[0]["n"], 500);
    server.shutdown().await;
}

fn walk(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

/// A request too large to decode on the async worker (it goes to the
/// blocking pool) is stored whole, like a small one, and so is a bad one
/// of that size refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_decode_off_the_async_workers() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(dir.path(), None).await;
    let (addr, client, t) = (server.addr, reqwest::Client::new(), now_ms());
    let samples: Vec<_> = (0..8000)
        .map(|i| {
            sample(
                "big_request_metric",
                &[
                    ("instance", &format!("host-{:05}.example.internal:9100", i)),
                    ("job", "node-exporter-with-a-long-job-name"),
                ],
                t,
                f64::from(i),
            )
        })
        .collect();
    let req = body(&samples);
    let decompressed = snap::raw::decompress_len(&req).expect("snappy");
    assert!(
        decompressed > 512 * 1024,
        "{decompressed} bytes is inline-sized"
    );
    assert_eq!(post_write(&client, addr, req).await.status(), 204);
    let rows = sql(
        &client,
        addr,
        "SELECT count(*) AS n, sum(value) AS s FROM samples WHERE name = 'big_request_metric'",
    )
    .await;
    assert_eq!(rows[0]["n"], 8000);
    assert_eq!(rows[0]["s"], f64::from(7999 * 8000 / 2));
    // The same size with one bad series: 400, nothing of it stored.
    let mut bad = samples.clone();
    bad[4000].name = String::new();
    let r = post_write(&client, addr, body(&bad)).await;
    assert_eq!(r.status(), 400);
    let rows = sql(&client, addr, "SELECT count(*) AS n FROM samples").await;
    assert_eq!(rows[0]["n"], 8000);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_inputs_get_documented_statuses_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let yaml = "sources:\n  prom:\n    type: remote_write\n    max_body_bytes: 65536\n    max_decompressed_bytes: 524288\n";
    let server = start_server(dir.path(), Some(yaml)).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    let good = body(&[sample("kept", &[("a", "b")], now_ms(), 42.0)]);
    assert_eq!(post_write(&client, addr, good.clone()).await.status(), 204);

    let protobuf_of_garbage = compress(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    let missing_name = body(&[sample("x", &[], 1, 1.0)]);
    // Replace the metric name label by another name: no __name__ left.
    let no_name = {
        use prost::Message;
        let req = scalecast::sources::prompb::WriteRequest {
            timeseries: vec![scalecast::sources::prompb::TimeSeries {
                labels: vec![scalecast::sources::prompb::Label {
                    name: "job".into(),
                    value: "x".into(),
                }],
                samples: vec![scalecast::sources::prompb::Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
            }],
            metadata: vec![],
        };
        compress(&req.encode_to_vec())
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("garbage", b"this is not snappy".to_vec(), 400, "snappy"),
        (
            "truncated snappy",
            good[..good.len() / 2].to_vec(),
            400,
            "snappy",
        ),
        (
            "snappy of garbage protobuf",
            protobuf_of_garbage,
            400,
            "protobuf",
        ),
        ("missing __name__", no_name, 400, "__name__"),
        ("huge body", vec![0u8; 70_000], 413, "limit"),
    ];
    let _ = missing_name;
    for (what, b, want, reason) in cases {
        let r = post_write(&client, addr, b).await;
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, want, "{what}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{what}: {text}"
        );
    }
    // A compressed bomb: small body, huge decompressed size.
    let bomb = compress(&vec![0u8; 1024 * 1024]);
    assert!(bomb.len() < 65536);
    assert_eq!(post_write(&client, addr, bomb).await.status(), 413);
    // Chunked body (no Content-Length) above the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![1u8; 8192])).collect();
    let r = client
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("chunked");
    assert_eq!(r.status(), 413);
    // Wrong headers.
    for (ct, ce) in [
        ("application/x-protobuf", "gzip"),
        ("application/json", "snappy"),
    ] {
        let r = client
            .post(format!("http://{addr}/api/v1/write"))
            .header("Content-Type", ct)
            .header("Content-Encoding", ce)
            .body(good.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 415, "{ct} {ce}");
    }
    let r = client
        .post(format!("http://{addr}/api/v1/write"))
        .body(good.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415, "no Content-Encoding");
    // Empty and metadata-only requests are fine.
    assert_eq!(post_write(&client, addr, compress(&[])).await.status(), 204);
    // Refused SQL.
    let r = client
        .post(format!("http://{addr}/api/v1/sql"))
        .json(&serde_json::json!({"query": "DROP TABLE samples"}))
        .send()
        .await
        .expect("sql");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("query refused")),
        "{v}"
    );
    let r = client
        .post(format!("http://{addr}/api/v1/sql"))
        .body("not json")
        .send()
        .await
        .expect("sql");
    assert_eq!(r.status(), 400);
    // The accepted sample is intact and alone.
    let rows = sql(&client, addr, "SELECT name, value FROM samples").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "kept");
    assert_eq!(rows[0]["value"], 42.0);
    // Rejections are counted by reason.
    let metrics = get_text(&client, &format!("http://{addr}/metrics")).await;
    for reason in [
        "snappy",
        "protobuf",
        "labels",
        "too_large",
        "content_encoding",
        "content_type",
    ] {
        assert!(
            metrics.contains(&format!(
                "scalecast_samples_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason} missing in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("scalecast_samples_received_total 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_token_protects_write_and_query_not_health() {
    let dir = tempfile::tempdir().expect("tmp");
    let yaml =
        "api:\n  auth:\n    bearer_token: s3cret\nsources:\n  prom:\n    type: remote_write\n";
    let server = start_server(dir.path(), Some(yaml)).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    let b = body(&[sample("m", &[], now_ms(), 1.0)]);
    let r = post_write(&client, addr, b.clone()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let r = client
        .post(format!("http://{addr}/api/v1/write"))
        .bearer_auth("s3cret")
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(b)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = client
        .post(format!("http://{addr}/api/v1/sql"))
        .json(&serde_json::json!({"query": "SELECT 1"}))
        .send()
        .await
        .expect("sql");
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("http://{addr}/api/v1/sql"))
        .bearer_auth("wrong")
        .json(&serde_json::json!({"query": "SELECT 1"}))
        .send()
        .await
        .expect("sql");
    assert_eq!(r.status(), 401);
    assert_eq!(
        client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("metrics")
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn overload_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tmp");
    // One sealed segment waiting for its flush is already "too many".
    let yaml = "storage:\n  wal:\n    max_unflushed_segments: 1\n    segment_max_bytes: 4096\n  parquet:\n    row_group_rows: 1024\nsources:\n  prom:\n    type: remote_write\n    retry_after_secs: 3\n";
    let server = start_server(dir.path(), Some(yaml)).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    // Fire many concurrent writes; some must be refused with 503 + Retry-After
    // while a segment flushes, and every 204 must be stored.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for i in 0..30 {
                let samples: Vec<_> = (0..200)
                    .map(|j| {
                        sample(
                            "load",
                            &[("w", &w.to_string()), ("i", &i.to_string())],
                            1_000 + j,
                            j as f64,
                        )
                    })
                    .collect();
                let r = post_write(&client, addr, body(&samples)).await;
                match r.status().as_u16() {
                    204 => accepted.push(i),
                    503 => {
                        assert_eq!(
                            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                            Some("3")
                        );
                        refused += 1;
                    }
                    s => panic!("unexpected status {s}"),
                }
            }
            (w, accepted, refused)
        }));
    }
    let mut accepted_total = 0;
    let mut refused_total = 0;
    for t in tasks {
        let (_, a, r) = t.await.expect("task");
        accepted_total += a.len();
        refused_total += r;
    }
    let rows = sql(
        &client,
        addr,
        "SELECT count(*) AS n FROM samples WHERE name = 'load'",
    )
    .await;
    assert_eq!(
        rows[0]["n"],
        (accepted_total * 200) as i64,
        "every acknowledged sample is stored"
    );
    assert!(accepted_total > 0);
    eprintln!("overload test: {accepted_total} accepted, {refused_total} refused with 503");
    assert!(
        refused_total > 0,
        "a 1-segment backlog with 4 KiB segments must refuse some of 480 concurrent requests"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(dir.path(), None).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{}/health", server.addr))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    let text = get_text(&client, &format!("http://{}/metrics", server.addr)).await;
    for m in [
        "scalecast_ready 1",
        "scalecast_wal_segments",
        "scalecast_flush_duration_seconds",
        "scalecast_queries_total",
    ] {
        assert!(text.contains(m), "{m} missing");
    }
    let r = client
        .get(format!("http://{}/nope", server.addr))
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
    server.shutdown().await;
}
