//! Kafka consume throughput: samples/s from a pre-filled topic into durable
//! storage (decode + WAL fsync, offsets committed), compared in the same run
//! with `kcat -C -e` reading the same topic to /dev/null (the ceiling: fetch
//! only, no decoding, no disk).
//!
//! ```sh
//! cargo bench --bench kafka_consume             # release
//! cargo test --bench kafka_consume               # dev profile, quicker to build
//! KAFKA_BENCH_MESSAGES=4000 KAFKA_BENCH_SAMPLES=250 cargo bench --bench kafka_consume
//! ```
//!
//! The broker is tansu on 127.0.0.1 (installed by `scripts/install-tansu.sh`).
//! Each message is a snappy remote-write request of `KAFKA_BENCH_SAMPLES`
//! samples (default 2000 messages x 500 samples = 1 M samples, 100 series per
//! message, labels like node_exporter's).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scalecast::metrics::Metrics;
use scalecast::schema::Sample;
use scalecast::sources::kafka::{KafkaSourceConfig, run};
use scalecast::sources::remote_write::encode_samples;
use scalecast::store::Store;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19092)
}

fn message(i: usize, per: usize) -> Vec<u8> {
    let series = 100.min(per).max(1);
    let samples: Vec<Sample> = (0..per)
        .map(|j| {
            let s = j % series;
            let mut labels = vec![
                ("cpu".to_string(), (s % 16).to_string()),
                ("instance".to_string(), format!("node-{}:9100", i % 50)),
                ("job".to_string(), "node".to_string()),
                (
                    "mode".to_string(),
                    ["idle", "user", "system", "iowait"][s % 4].to_string(),
                ),
            ];
            labels.sort();
            Sample {
                name: "node_cpu_seconds_total".into(),
                labels,
                ts_ms: 1_700_000_000_000 + (i * per + j) as i64,
                value: (i * per + j) as f64 * 0.01,
            }
        })
        .collect();
    encode_samples(&samples)
}

fn main() {
    // `cargo test --bench` passes harness flags; `--list` must print nothing.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let messages = env_usize("KAFKA_BENCH_MESSAGES", 2000);
    let per = env_usize("KAFKA_BENCH_SAMPLES", 500);
    let total = (messages * per) as u64;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-tansu.sh");
    let out = match Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(o) if o.status.success() => o,
        other => {
            eprintln!("kafka_consume: SKIP, cannot install tansu: {other:?}");
            return;
        }
    };
    let tools = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kafka_consume: no temp dir: {e}");
            return;
        }
    };
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let brokers = format!("127.0.0.1:{port}");
    let sqlite =
        std::fs::read_to_string(tools.join("tansu.storage")).is_ok_and(|s| s.contains("sqlite"));
    let storage = if sqlite {
        format!("sqlite://{}/tansu.db", dir.path().display())
    } else {
        "memory://tansu/".to_string()
    };
    let broker = match Command::new(tools.join("bin/tansu"))
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", &storage, "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => Kill(c),
        Err(e) => {
            eprintln!("kafka_consume: cannot start tansu: {e}");
            return;
        }
    };
    let meta: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kafka_consume: client: {e}");
            return;
        }
    };
    let t = Instant::now();
    while meta
        .fetch_metadata(None, Duration::from_millis(500))
        .is_err()
    {
        if t.elapsed() > Duration::from_secs(30) {
            eprintln!("kafka_consume: broker not ready");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = Command::new(tools.join("bin/tansu"))
        .args([
            "topic",
            "create",
            "bench",
            "--partitions",
            "4",
            "--broker",
            &url,
        ])
        .stdout(Stdio::null())
        .status();
    if !created.is_ok_and(|s| s.success()) {
        eprintln!("kafka_consume: cannot create the topic");
        return;
    }

    let rt = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kafka_consume: runtime: {e}");
            return;
        }
    };
    // Pre-fill.
    let payloads: Vec<Vec<u8>> = (0..messages).map(|i| message(i, per)).collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let filled = rt.block_on(async {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("linger.ms", "20")
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        let sends = payloads.iter().enumerate().map(|(i, b)| {
            let p = p.clone();
            async move {
                let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to("bench")
                    .partition((i % 4) as i32)
                    .payload(b.as_slice());
                p.send(rec, Duration::from_secs(60))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e.to_string())
            }
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
        Ok::<Duration, String>(t.elapsed())
    });
    let fill = match filled {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kafka_consume: pre-fill failed: {e}");
            return;
        }
    };
    println!(
        "kafka_consume: topic pre-filled with {messages} messages x {per} samples = {total} samples, {:.1} MB snappy, in {:.2} s (storage {storage})",
        bytes as f64 / 1e6,
        fill.as_secs_f64()
    );

    // Ceiling: kcat reading the whole topic to /dev/null.
    let kcat = tools.join("bin/kcat");
    let kcat_secs = if kcat.exists() {
        let t = Instant::now();
        let st = Command::new(&kcat)
            .args([
                "-C",
                "-b",
                &brokers,
                "-t",
                "bench",
                "-e",
                "-q",
                "-o",
                "beginning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match st {
            Ok(s) if s.success() => Some(t.elapsed().as_secs_f64()),
            other => {
                eprintln!("kafka_consume: kcat failed: {other:?}");
                None
            }
        }
    } else {
        eprintln!("kafka_consume: no kcat; ceiling skipped");
        None
    };

    // scalecast: consume into the store (WAL fsync) until every sample is durable.
    let metrics = Arc::new(Metrics::new());
    let data = dir.path().join("data");
    let store = match Store::open(&data, Default::default(), metrics.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("kafka_consume: store: {e}");
            return;
        }
    };
    let mut cfg = KafkaSourceConfig::new(brokers.clone(), &["bench"]);
    cfg.group_id = "bench".into();
    cfg.librdkafka_options
        .insert("session.timeout.ms".into(), "6000".into());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let result = rt.block_on(async {
        let t = Instant::now();
        let task = tokio::spawn(run(cfg, store.clone(), metrics.clone(), rx));
        let mut first: Option<Instant> = None;
        loop {
            let got = metrics.samples_received.get();
            if got > 0 && first.is_none() {
                first = Some(Instant::now());
            }
            if got >= total {
                break;
            }
            if task.is_finished() || t.elapsed() > Duration::from_secs(1800) {
                return Err(format!("stopped early at {got}/{total} samples"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let done = Instant::now();
        let _ = stop.send(true);
        let _ = task.await;
        Ok((done - t, first.map(|f| done - f).unwrap_or_default()))
    });
    let (wall, steady) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kafka_consume: {e}");
            return;
        }
    };
    store.close();
    let rate = total as f64 / wall.as_secs_f64();
    let steady_rate = total as f64 / steady.as_secs_f64().max(1e-9);
    println!(
        "kafka_consume: scalecast  {total} samples in {:.2} s = {:.0} samples/s ({:.0} samples/s after the first batch landed; group join {:.2} s)",
        wall.as_secs_f64(),
        rate,
        steady_rate,
        (wall - steady).as_secs_f64()
    );
    if let Some(k) = kcat_secs {
        let krate = total as f64 / k;
        println!(
            "kafka_consume: kcat -C -e {total} samples in {k:.2} s = {krate:.0} samples/s (fetch only, the ceiling)"
        );
        println!(
            "kafka_consume: ratio scalecast/kcat = {:.2} (wall), {:.2} (after the first batch)",
            rate / krate,
            steady_rate / krate
        );
    }
    drop(broker);
}
