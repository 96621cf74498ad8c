//! `kill -9` in the middle of a stream of writes loses no acknowledged sample
//! and duplicates none.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

const PER_REQUEST: usize = 100;

fn request_samples(writer: usize, seq: usize) -> Vec<scalecast::schema::Sample> {
    (0..PER_REQUEST)
        .map(|j| {
            sample(
                "crash_test",
                &[
                    ("writer", &writer.to_string()),
                    ("req", &seq.to_string()),
                    ("j", &(j % 10).to_string()),
                ],
                1_700_000_000_000 + (seq * PER_REQUEST + j) as i64,
                (seq * PER_REQUEST + j) as f64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    // Small segments so that flushes to Parquet happen while we write, and
    // the kill can land during a flush as well as during a WAL append.
    let cfg = dir.path().join("pipeline.yaml");
    std::fs::write(
        &cfg,
        "storage:\n  wal:\n    segment_max_bytes: 65536\n    max_unflushed_segments: 64\n  parquet:\n    row_group_rows: 4096\nsources:\n  prom:\n    type: remote_write\n",
    )
    .expect("config");
    let log1 = dir.path().join("scalecast-1.log");
    let (mut child, addr) = spawn_scalecast(&data, Some(&cfg), &log1).await;

    let acked: Arc<Mutex<BTreeSet<(usize, usize)>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<(usize, usize)>>> = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, acked, sent) = (client.clone(), acked.clone(), sent.clone());
        writers.push(tokio::spawn(async move {
            for seq in 0.. {
                let b = body(&request_samples(w, seq));
                sent.lock().expect("lock").insert((w, seq));
                let r = client
                    .post(format!("http://{addr}/api/v1/write"))
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .body(b)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 204 => {
                        acked.lock().expect("lock").insert((w, seq));
                    }
                    Ok(r) if r.status() == 503 => {}
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let some acknowledged data and a few segment flushes accumulate.
    wait_for(Duration::from_secs(60), "300 acknowledged requests", || {
        let n = acked.lock().expect("lock").len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    child.kill9();
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let acked = acked.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    let flushed_before = walk_parquet(&data.join("samples"));
    eprintln!(
        "crash test: {} sent, {} acknowledged, {} Parquet files before restart",
        sent.len(),
        acked.len(),
        flushed_before
    );

    let log2 = dir.path().join("scalecast-2.log");
    let (mut child, addr) = spawn_scalecast(&data, Some(&cfg), &log2).await;
    let rows = sql(
        &client,
        addr,
        "SELECT labels['writer'] AS w, labels['req'] AS r, count(*) AS n, count(DISTINCT ts) AS d FROM samples WHERE name = 'crash_test' GROUP BY 1, 2",
    )
    .await;
    let mut found: BTreeMap<(usize, usize), (i64, i64)> = BTreeMap::new();
    for row in rows {
        let w: usize = row["w"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("writer label");
        let r: usize = row["r"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("req label");
        found.insert(
            (w, r),
            (row["n"].as_i64().expect("n"), row["d"].as_i64().expect("d")),
        );
    }
    for key in &acked {
        assert_eq!(
            found.get(key),
            Some(&(PER_REQUEST as i64, PER_REQUEST as i64)),
            "acknowledged request {key:?} must be stored exactly once"
        );
    }
    for (key, (n, d)) in &found {
        assert!(sent.contains(key), "{key:?} was never sent");
        assert_eq!(
            (*n, *d),
            (PER_REQUEST as i64, PER_REQUEST as i64),
            "request {key:?} is stored whole or not at all, never twice"
        );
    }
    let unacked_but_stored = found.keys().filter(|k| !acked.contains(k)).count();
    eprintln!(
        "crash test: {unacked_but_stored} requests were durable but not acknowledged before the kill (allowed)"
    );
    // A second, graceful restart keeps exactly the same rows.
    child.terminate();
    let log3 = dir.path().join("scalecast-3.log");
    let (_child, addr) = spawn_scalecast(&data, Some(&cfg), &log3).await;
    let rows = sql(
        &client,
        addr,
        "SELECT count(*) AS n FROM samples WHERE name = 'crash_test'",
    )
    .await;
    assert_eq!(
        rows[0]["n"].as_i64(),
        Some((found.len() * PER_REQUEST) as i64)
    );
}

fn walk_parquet(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                n += 1;
            }
        }
    }
    n
}
