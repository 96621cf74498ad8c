//! Kafka source and publisher against a real Kafka-protocol broker (tansu,
//! installed by `scripts/install-tansu.sh`, started on 127.0.0.1 with a free
//! port and a temporary directory) and librdkafka's mock cluster for fault
//! injection. Tests skip with a printed reason only when tansu cannot be
//! installed.
//!
//! `kill -9` is exercised on a real process: the test binary re-runs itself as
//! a child (`kafka_child_process`, ignored unless the parent sets
//! `SCALECAST_KAFKA_CHILD`), which serves a data directory and consumes with
//! [`scalecast::sources::kafka::run`]; the parent kills it mid-stream and
//! starts another. A second test does the same with the real binary and a
//! `type: kafka` pipeline source once the binary accepts one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use scalecast::metrics::Metrics;
use scalecast::pipeline::Server;
use scalecast::schema::Sample;
use scalecast::sinks::kafka::{KafkaSink, KafkaSinkConfig};
use scalecast::sources::kafka::{KafkaSourceConfig, PayloadFormat, dead_letter_headers, run};
use scalecast::sources::remote_write::{decompress, encode_samples};
use scalecast::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::*;

const METRIC: &str = "kafka_test";
const PER_MESSAGE: usize = 5;
const T0: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------- broker --

/// The tools directory with `bin/tansu` (and maybe `bin/kcat`), installed once.
fn tools() -> Result<PathBuf, String> {
    static TOOLS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-tansu.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!("{} failed ({})", script.display(), out.status));
            }
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("bin/tansu").exists() {
                Ok(dir)
            } else {
                Err(format!("{} did not install tansu", script.display()))
            }
        })
        .clone()
}

/// A tansu broker on 127.0.0.1, killed on drop.
struct Broker {
    _guard: ChildGuard,
    tansu: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker, or prints why it cannot and returns None.
    fn start() -> Option<Broker> {
        let tools = match tools() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("SKIP: no Kafka-protocol broker: {e}");
                return None;
            }
        };
        let tansu = tools.join("bin/tansu");
        let sqlite = std::fs::read_to_string(tools.join("tansu.storage"))
            .is_ok_and(|s| s.split_whitespace().any(|w| w == "sqlite"));
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let storage = if sqlite {
            format!("sqlite://{}/tansu.db", dir.path().display())
        } else {
            // The PyPI build only has memory storage (fetch and commits are
            // exact; the high watermark is not, so no test relies on it).
            "memory://tansu/".to_string()
        };
        let guard = ChildGuard::spawn(
            "tansu",
            Command::new(&tansu)
                .arg("broker")
                .arg("--listener-url")
                .arg(&url)
                .arg("--advertised-listener-url")
                .arg(&url)
                .arg("--storage-engine")
                .arg(&storage),
            &dir.path().join("tansu.log"),
        );
        let b = Broker {
            _guard: guard,
            tansu,
            port,
            _dir: dir,
        };
        // Ready when metadata answers.
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", b.addr())
            .create()
            .expect("metadata client");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while client
            .fetch_metadata(None, Duration::from_millis(500))
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "tansu did not answer metadata on {}",
                b.addr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(b)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let st = Command::new(&self.tansu)
            .args(["topic", "create", name, "--partitions"])
            .arg(partitions.to_string())
            .arg("--broker")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(st.success(), "tansu topic create {name} failed: {st}");
    }
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

async fn produce(p: &FutureProducer, topic: &str, partition: Option<i32>, payload: &[u8]) {
    let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(payload);
    if let Some(part) = partition {
        rec = rec.partition(part);
    }
    if let Err((e, _)) = p.send(rec, Duration::from_secs(30)).await {
        panic!("produce to {topic}: {e}");
    }
}

// -------------------------------------------------------------- payloads --

fn message_samples(i: usize) -> Vec<Sample> {
    (0..PER_MESSAGE)
        .map(|j| {
            sample(
                METRIC,
                &[("msg", &i.to_string()), ("part", &(i % 4).to_string())],
                T0 + (i * PER_MESSAGE + j) as i64,
                i as f64 + j as f64 / 10.0,
            )
        })
        .collect()
}

/// Message `i`, in one of the four supported encodings (rotating).
fn payload(i: usize) -> Vec<u8> {
    let s = message_samples(i);
    match i % 4 {
        0 => encode_samples(&s),
        1 => decompress(&encode_samples(&s), 1 << 20).expect("snappy round trip"),
        2 => s
            .iter()
            .map(|x| {
                serde_json::json!({
                    "name": x.name,
                    "labels": x.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
                    "ts_ms": x.ts_ms,
                    "value": x.value,
                })
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        _ => serde_json::json!({
            "name": METRIC,
            "labels": s[0].labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            "samples": s.iter().map(|x| serde_json::json!([x.ts_ms, x.value])).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes(),
    }
}

// ------------------------------------------------------------ scalecast --

/// A server (store + SQL API) with a Kafka source running in-process.
struct Running {
    server: Server,
    stop: watch::Sender<bool>,
    task: JoinHandle<scalecast::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(cfg: KafkaSourceConfig) -> Running {
        Self::start_with(cfg, None).await
    }

    async fn start_with(cfg: KafkaSourceConfig, yaml: Option<&str>) -> Running {
        let dir = tempfile::tempdir().expect("tmp");
        let server = start_server(dir.path(), yaml).await;
        let store: Arc<Store> = server.state.store.get().cloned().expect("store open");
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(cfg, store, server.state.metrics.clone(), rx));
        Running {
            server,
            stop,
            task,
            _dir: dir,
        }
    }

    fn metrics(&self) -> Arc<Metrics> {
        self.server.state.metrics.clone()
    }

    async fn stop(self) {
        let server = self.stop_source().await;
        server.shutdown().await;
    }

    /// Stops the Kafka source (which must end cleanly); the server keeps serving.
    async fn stop_source(self) -> Server {
        let _ = self.stop.send(true);
        let r = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("kafka source stops within 60 s")
            .expect("kafka source task");
        assert!(r.is_ok(), "kafka source ended with {r:?}");
        self.server
    }
}

fn source_cfg(brokers: &str, topic: &str, group: &str) -> KafkaSourceConfig {
    let mut c = KafkaSourceConfig::new(brokers, &[topic]);
    c.group_id = group.into();
    c.commit_interval_secs = 0.2;
    c.stats_interval_secs = 0.5;
    c.overload_backoff_secs = 0.05;
    c.librdkafka_options
        .insert("session.timeout.ms".into(), "6000".into());
    c.librdkafka_options
        .insert("heartbeat.interval.ms".into(), "500".into());
    c
}

/// (distinct (series, ts) pairs, rows) of the test metric.
async fn counts(addr: SocketAddr) -> (u64, u64) {
    let client = reqwest::Client::new();
    let q = format!(
        "SELECT (SELECT count(*) FROM (SELECT DISTINCT series_id, ts FROM samples WHERE name = '{METRIC}')) AS d, \
         (SELECT count(*) FROM samples WHERE name = '{METRIC}') AS n"
    );
    let rows = sql(&client, addr, &q).await;
    let get = |k: &str| rows.first().and_then(|r| r[k].as_u64()).unwrap_or(0);
    (get("d"), get("n"))
}

async fn wait_distinct(addr: SocketAddr, want: u64, what: &str) -> u64 {
    wait_for(Duration::from_secs(90), what, || async move {
        let (d, n) = counts(addr).await;
        assert!(
            d <= want,
            "{d} distinct samples, more than the {want} produced"
        );
        (d == want).then_some(n)
    })
    .await
}

/// The `msg` label values stored for the test metric.
async fn stored_messages(addr: SocketAddr) -> BTreeSet<u64> {
    let client = reqwest::Client::new();
    let rows = sql(
        &client,
        addr,
        &format!("SELECT DISTINCT labels['msg'] AS m FROM samples WHERE name = '{METRIC}'"),
    )
    .await;
    rows.iter()
        .filter_map(|r| r["m"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Committed offsets of `group` on `topic` partitions `0..partitions`.
fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("offsets client");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match c.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(t) => t
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
            .collect(),
        Err(_) => vec![-1; partitions as usize],
    }
}

async fn wait_committed(brokers: &str, group: &str, topic: &str, want: Vec<i64>) {
    let n = want.len() as i32;
    wait_for(Duration::from_secs(60), "offsets to be committed", || {
        let (b, g, t, w) = (
            brokers.to_string(),
            group.to_string(),
            topic.to_string(),
            want.clone(),
        );
        async move {
            let got = tokio::task::spawn_blocking(move || committed(&b, &g, &t, n))
                .await
                .expect("offsets task");
            (got == w).then_some(())
        }
    })
    .await;
}

fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ----------------------------------------------------------------- tests --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_lands_in_samples_and_offsets_are_committed() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("metrics", 4);
    let p = producer(&broker.addr());
    const N: usize = 400;
    let mut per_partition = vec![0i64; 4];
    for i in 0..N {
        let part = (i % 4) as i32;
        produce(&p, "metrics", Some(part), &payload(i)).await;
        per_partition[part as usize] += 1;
    }
    let c = Running::start(source_cfg(&broker.addr(), "metrics", "g-all")).await;
    let rows = wait_distinct(c.server.addr, (N * PER_MESSAGE) as u64, "every sample").await;
    assert!(rows >= (N * PER_MESSAGE) as u64);
    wait_committed(&broker.addr(), "g-all", "metrics", per_partition).await;

    // Values survive the trip exactly (JSON and protobuf alike).
    let client = reqwest::Client::new();
    let v = sql(
        &client,
        c.server.addr,
        &format!("SELECT DISTINCT ts, value FROM samples WHERE name = '{METRIC}' AND labels['msg'] IN ('6', '7') ORDER BY ts"),
    )
    .await;
    let values: Vec<f64> = v.iter().filter_map(|r| r["value"].as_f64()).collect();
    assert_eq!(
        values,
        vec![6.0, 6.1, 6.2, 6.3, 6.4, 7.0, 7.1, 7.2, 7.3, 7.4]
    );

    let text = c.metrics().render();
    assert_eq!(
        metric_value(&text, "scalecast_kafka_messages_total{"),
        N as f64,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "scalecast_kafka_samples_total{"),
        (N * PER_MESSAGE) as f64
    );
    assert!(metric_value(&text, "scalecast_kafka_bytes_total{") > (N * 20) as f64);
    assert!(
        metric_value(&text, "scalecast_kafka_commits_total{") >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "scalecast_kafka_dead_letter_total{"),
        0.0
    );
    // Lag is reported for every assigned partition (its value is only exact on
    // brokers with a correct high watermark, see Broker::start).
    let m = c.metrics();
    wait_for(Duration::from_secs(30), "lag gauges of the 4 partitions", || {
        let m = m.clone();
        async move {
            let text = m.render();
            (0..4)
                .all(|p| {
                    text.contains(&format!(
                        "scalecast_kafka_consumer_lag{{group=\"g-all\",topic=\"metrics\",partition=\"{p}\"}}"
                    ))
                })
                .then_some(())
        }
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_and_never_stalls() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("in", 1);
    broker.create_topic("in-dlq", 1);
    let p = producer(&broker.addr());
    let poison: Vec<Vec<u8>> = vec![
        b"\x00\x01 definitely not a write request".to_vec(),
        br#"{"name":"x","ts_ms":"yesterday","value":1}"#.to_vec(),
        encode_samples(&[sample("", &[("a", "b")], 1, 1.0)]),
    ];
    let mut good = 0;
    for i in 0..30 {
        if i % 10 == 5 {
            produce(&p, "in", Some(0), &poison[i / 10]).await;
        } else {
            produce(&p, "in", Some(0), &payload(i)).await;
            good += 1;
        }
    }
    let mut cfg = source_cfg(&broker.addr(), "in", "g-dlq");
    cfg.dead_letter_topic = Some("in-dlq".into());
    let c = Running::start(cfg).await;
    wait_distinct(c.server.addr, (good * PER_MESSAGE) as u64, "valid samples").await;
    // The partition moved past every poison message.
    wait_committed(&broker.addr(), "g-dlq", "in", vec![30]).await;

    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("dlq reader");
    reader.subscribe(&["in-dlq"]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(60), reader.recv())
            .await
            .expect("dead-lettered message within 60 s")
            .expect("dlq message");
        let mut h = BTreeMap::new();
        if let Some(hs) = m.headers() {
            for x in hs.iter() {
                h.insert(
                    x.key.to_string(),
                    String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                );
            }
        }
        seen.push((m.payload().map(<[u8]>::to_vec), h));
    }
    for (i, (body, h)) in seen.iter().enumerate() {
        assert_eq!(
            body.as_deref(),
            Some(poison[i].as_slice()),
            "payload kept as is"
        );
        assert_eq!(h[dead_letter_headers::TOPIC], "in");
        assert_eq!(h[dead_letter_headers::PARTITION], "0");
        assert_eq!(h[dead_letter_headers::OFFSET], (i * 10 + 5).to_string());
        assert_eq!(h[dead_letter_headers::GROUP], "g-dlq");
        assert!(!h[dead_letter_headers::ERROR].is_empty());
    }
    assert_eq!(seen[0].1[dead_letter_headers::ERROR_KIND], "protobuf");
    assert_eq!(seen[1].1[dead_letter_headers::ERROR_KIND], "json");
    assert_eq!(seen[2].1[dead_letter_headers::ERROR_KIND], "labels");
    let text = c.metrics().render();
    assert_eq!(
        metric_value(&text, "scalecast_kafka_dead_letter_total{"),
        3.0,
        "{text}"
    );
    assert!(text.contains("reason=\"json\""), "{text}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_split_partitions_and_store_everything() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("shared", 4);
    let a = Running::start(source_cfg(&broker.addr(), "shared", "g-split")).await;
    let b = Running::start(source_cfg(&broker.addr(), "shared", "g-split")).await;
    // Wait until the group settled with two partitions each (the lag gauge
    // exists exactly for the assigned partitions).
    let assigned = |m: Arc<Metrics>| {
        m.render()
            .lines()
            .filter(|l| l.starts_with("scalecast_kafka_consumer_lag{"))
            .count()
    };
    wait_for(Duration::from_secs(60), "a 2 + 2 assignment", || {
        let (ma, mb) = (a.metrics(), b.metrics());
        async move { (assigned(ma) == 2 && assigned(mb) == 2).then_some(()) }
    })
    .await;

    let p = producer(&broker.addr());
    const N: usize = 200;
    for i in 0..N {
        produce(&p, "shared", Some((i % 4) as i32), &payload(i)).await;
    }
    let total = (N * PER_MESSAGE) as u64;
    let (da, db) = wait_for(
        Duration::from_secs(90),
        "both stores together to hold every sample",
        || {
            let (x, y) = (a.server.addr, b.server.addr);
            async move {
                let (da, _) = counts(x).await;
                let (db, _) = counts(y).await;
                (da + db == total).then_some((da, db))
            }
        },
    )
    .await;
    assert!(da > 0 && db > 0, "work was not split: {da} + {db}");
    let (ma, mb) = (
        stored_messages(a.server.addr).await,
        stored_messages(b.server.addr).await,
    );
    assert!(
        ma.is_disjoint(&mb),
        "a message was stored by both consumers"
    );
    assert_eq!(ma.len() + mb.len(), N);
    // Each consumer holds whole partitions.
    let parts = |s: &BTreeSet<u64>| s.iter().map(|m| m % 4).collect::<BTreeSet<_>>();
    assert_eq!(parts(&ma).len(), 2, "{ma:?}");
    assert_eq!(parts(&mb).len(), 2, "{mb:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_leaving_mid_stream_hands_over_without_loss() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("handover", 4);
    let a = Running::start(source_cfg(&broker.addr(), "handover", "g-handover")).await;
    let b = Running::start(source_cfg(&broker.addr(), "handover", "g-handover")).await;
    const N: usize = 800;
    let brokers = broker.addr();
    let stream = tokio::spawn(async move {
        let p = producer(&brokers);
        for i in 0..N {
            produce(&p, "handover", Some((i % 4) as i32), &payload(i)).await;
        }
    });
    // Once b has stored part of the stream, it leaves the group (graceful
    // stop: its durable offsets are committed); a takes its partitions over.
    let b_addr = b.server.addr;
    wait_for(
        Duration::from_secs(90),
        "b to store part of the stream",
        || async move {
            let (d, _) = counts(b_addr).await;
            (d >= (N / 8 * PER_MESSAGE) as u64).then_some(())
        },
    )
    .await;
    let producing = !stream.is_finished();
    let b_server = b.stop_source().await;
    let b_msgs_before = stored_messages(b_addr).await;
    b_server.shutdown().await;
    eprintln!(
        "b left with {} messages stored (producer still running: {producing})",
        b_msgs_before.len()
    );
    stream.await.expect("producer");
    let a_addr = a.server.addr;
    wait_for(
        Duration::from_secs(90),
        "a and b together to hold every message",
        || {
            let seen = b_msgs_before.clone();
            async move {
                let mut all = stored_messages(a_addr).await;
                all.extend(seen);
                (all.len() == N).then_some(())
            }
        },
    )
    .await;
    wait_committed(
        &broker.addr(),
        "g-handover",
        "handover",
        vec![(N / 4) as i64; 4],
    )
    .await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_store_pauses_partitions_and_loses_nothing() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("burst", 2);
    let p = producer(&broker.addr());
    const N: usize = 300;
    for i in 0..N {
        produce(&p, "burst", Some((i % 2) as i32), &payload(i)).await;
    }
    // A one-slot ingest queue and one-message batches, eight in flight: the
    // store refuses most concurrent records as overloaded.
    let mut cfg = source_cfg(&broker.addr(), "burst", "g-burst");
    cfg.max_batch_messages = 1;
    cfg.max_in_flight_batches = 8;
    let yaml = "storage:\n  wal:\n    queue_capacity: 1\n    segment_max_bytes: 4096\n    max_unflushed_segments: 1\n";
    let c = Running::start_with(cfg, Some(yaml)).await;
    wait_distinct(
        c.server.addr,
        (N * PER_MESSAGE) as u64,
        "every sample despite overload",
    )
    .await;
    wait_committed(&broker.addr(), "g-burst", "burst", vec![(N / 2) as i64; 2]).await;
    let text = c.metrics().render();
    assert!(
        metric_value(&text, "scalecast_kafka_pauses_total{") >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "scalecast_kafka_paused{"),
        0.0,
        "resumed: {text}"
    );
    c.stop().await;
}

// ------------------------------------------------------------ kill -9 ----

/// Not a test on its own: the child process of
/// `kill_9_mid_stream_then_restart_loses_nothing` (does nothing unless
/// `SCALECAST_KAFKA_CHILD` is set).
#[test]
#[ignore = "child process of kill_9_mid_stream_then_restart_loses_nothing"]
fn kafka_child_process() {
    let Ok(spec) = std::env::var("SCALECAST_KAFKA_CHILD") else {
        return;
    };
    let mut it = spec.splitn(4, '|');
    let (Some(brokers), Some(topic), Some(group), Some(data)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        panic!("SCALECAST_KAFKA_CHILD must be brokers|topic|group|data_dir");
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let server = Server::start(
            scalecast::config::PipelineConfig::embedded_default(),
            Path::new(data),
            Some("127.0.0.1:0"),
        )
        .await
        .expect("child server");
        let store = server.state.store.get().cloned().expect("store");
        let (_stop, rx) = watch::channel(false);
        let mut cfg = source_cfg(brokers, topic, group);
        cfg.max_batch_messages = 20;
        let r = run(cfg, store, server.state.metrics.clone(), rx).await;
        panic!("kafka source returned while it should run until killed: {r:?}");
    });
}

async fn spawn_child(
    brokers: &str,
    topic: &str,
    group: &str,
    data: &Path,
    log: &Path,
) -> (ChildGuard, SocketAddr) {
    let _ = std::fs::remove_file(data.join("api.addr"));
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "kafka::kafka_child_process",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(
        "SCALECAST_KAFKA_CHILD",
        format!("{brokers}|{topic}|{group}|{}", data.display()),
    );
    let guard = ChildGuard::spawn("kafka child", &mut cmd, log);
    let addr_file = data.join("api.addr");
    let addr = wait_for(Duration::from_secs(60), "the child to serve", || {
        let f = addr_file.clone();
        async move {
            let a: SocketAddr = std::fs::read_to_string(&f).ok()?.trim().parse().ok()?;
            reqwest::get(format!("http://{a}/health"))
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(a)
        }
    })
    .await;
    (guard, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("crash", 2);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    const N: usize = 1200;
    // A live stream: one message at a time, each awaited, while the child consumes.
    let brokers = broker.addr();
    let stream = tokio::spawn(async move {
        let p = producer(&brokers);
        for i in 0..N {
            produce(&p, "crash", Some((i % 2) as i32), &payload(i)).await;
        }
    });
    let (mut child, addr) = spawn_child(
        &broker.addr(),
        "crash",
        "g-crash",
        &data,
        &dir.path().join("child1.log"),
    )
    .await;
    let before = wait_for(
        Duration::from_secs(90),
        "the child to store part of the stream",
        || async move {
            let (d, _) = counts(addr).await;
            (d >= (N / 4 * PER_MESSAGE) as u64).then_some(d)
        },
    )
    .await;
    let producing = !stream.is_finished();
    child.kill9();
    eprintln!(
        "kill -9 with {before} of {} samples stored (producer still running: {producing})",
        N * PER_MESSAGE
    );
    let (child2, addr2) = spawn_child(
        &broker.addr(),
        "crash",
        "g-crash",
        &data,
        &dir.path().join("child2.log"),
    )
    .await;
    let (d, _) = counts(addr2).await;
    assert!(
        d >= before,
        "samples stored before the kill were lost: {d} < {before}"
    );
    let rows = wait_distinct(
        addr2,
        (N * PER_MESSAGE) as u64,
        "every sample after the restart",
    )
    .await;
    eprintln!(
        "after the restart: {rows} rows for {} distinct samples",
        N * PER_MESSAGE
    );
    assert_eq!(stored_messages(addr2).await.len(), N);
    stream.await.expect("producer");
    wait_committed(&broker.addr(), "g-crash", "crash", vec![(N / 2) as i64; 2]).await;
    drop(child2);
}

/// The same through the real binary with a `type: kafka` pipeline source.
/// Skips (printing why) while the binary does not accept that source type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_with_kafka_pipeline_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let probe = dir.path().join("probe.yaml");
    std::fs::write(
        &probe,
        "sources:\n  k:\n    type: kafka\n    bootstrap_servers: 127.0.0.1:9\n    topics: [x]\n",
    )
    .expect("probe");
    let check = Command::new(scalecast_bin())
        .arg("validate")
        .arg(&probe)
        .output()
        .expect("scalecast check");
    if !check.status.success() {
        eprintln!(
            "SKIP: this scalecast binary does not accept a `type: kafka` source yet: {} {}",
            String::from_utf8_lossy(&check.stdout).trim(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
        return;
    }
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("bin", 2);
    let cfg = dir.path().join("pipeline.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sources:\n  k:\n    type: kafka\n    bootstrap_servers: {}\n    topics: [bin]\n    group_id: g-bin\n    commit_interval_secs: 0.2\n    librdkafka_options:\n      session.timeout.ms: 6000\n",
            broker.addr()
        ),
    )
    .expect("pipeline");
    let data = dir.path().join("data");
    const N: usize = 600;
    let brokers = broker.addr();
    let stream = tokio::spawn(async move {
        let p = producer(&brokers);
        for i in 0..N {
            produce(&p, "bin", Some((i % 2) as i32), &payload(i)).await;
        }
    });
    let (mut s1, addr) = spawn_scalecast(&data, Some(&cfg), &dir.path().join("s1.log")).await;
    wait_for(
        Duration::from_secs(90),
        "part of the stream",
        || async move {
            let (d, _) = counts(addr).await;
            (d >= (N / 4 * PER_MESSAGE) as u64).then_some(())
        },
    )
    .await;
    let producing = !stream.is_finished();
    s1.kill9();
    eprintln!("scalecast killed mid-stream (producer still running: {producing})");
    let (_s2, addr2) = spawn_scalecast(&data, Some(&cfg), &dir.path().join("s2.log")).await;
    wait_distinct(
        addr2,
        (N * PER_MESSAGE) as u64,
        "every sample after the restart",
    )
    .await;
    assert_eq!(stored_messages(addr2).await.len(), N);
    stream.await.expect("producer");
    wait_committed(&broker.addr(), "g-bin", "bin", vec![(N / 2) as i64; 2]).await;
}

// ------------------------------------------------------------- publisher --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_keys_by_target_and_the_broker_acknowledges() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("recs", 3);
    let metrics = Arc::new(Metrics::new());
    let sink =
        KafkaSink::new(&KafkaSinkConfig::new(broker.addr(), "recs"), &metrics).expect("sink");
    #[derive(serde::Serialize)]
    struct Rec {
        target: String,
        replicas: u32,
    }
    let recs: Vec<(String, Rec)> = (0..12)
        .map(|i| {
            let t = format!("svc-{}", i % 4);
            (
                t.clone(),
                Rec {
                    target: t,
                    replicas: i,
                },
            )
        })
        .collect();
    let delivered = sink.publish_all(&recs).await.expect("published");
    // One target, one partition.
    let mut by_target: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for ((k, _), d) in recs.iter().zip(&delivered) {
        by_target.entry(k).or_default().insert(d.partition);
    }
    assert!(by_target.values().all(|p| p.len() == 1), "{by_target:?}");

    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "recs-reader")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("reader");
    reader.subscribe(&["recs"]).expect("subscribe");
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..recs.len() {
        let m = tokio::time::timeout(Duration::from_secs(60), reader.recv())
            .await
            .expect("record within 60 s")
            .expect("record");
        let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8 key");
        let v: serde_json::Value =
            serde_json::from_slice(m.payload().expect("value")).expect("json");
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["key"], key.as_str());
        assert_eq!(v["record"]["target"], key.as_str());
        assert!(v["published_at_ms"].as_i64().is_some_and(|t| t > T0));
        let ct = m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == "content-type")
                .and_then(|x| x.value.map(<[u8]>::to_vec))
        });
        assert_eq!(ct.as_deref(), Some(&b"application/json"[..]));
        got.entry(key)
            .or_default()
            .push(v["record"]["replicas"].as_u64().expect("replicas"));
    }
    // Per target, in publish order.
    for (k, vals) in &got {
        let want: Vec<u64> = recs
            .iter()
            .filter(|(t, _)| t == k)
            .map(|(_, r)| u64::from(r.replicas))
            .collect();
        assert_eq!(vals, &want, "{k}");
    }
    let text = metrics.render();
    assert_eq!(
        metric_value(&text, "scalecast_kafka_published_total{"),
        12.0,
        "{text}"
    );
}

// ------------------------------------------------- mock cluster faults ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_down_then_up_loses_nothing() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("m", 2, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let p = producer(&brokers);
    for i in 0..40 {
        produce(&p, "m", Some((i % 2) as i32), &payload(i)).await;
    }
    let c = Running::start(source_cfg(&brokers, "m", "g-mock")).await;
    wait_distinct(c.server.addr, (40 * PER_MESSAGE) as u64, "first wave").await;
    mock.broker_down(1).expect("down");
    let m = c.metrics();
    wait_for(Duration::from_secs(60), "the outage to be reported", || {
        let m = m.clone();
        async move { (metric_value(&m.render(), "scalecast_kafka_errors_total{") >= 1.0).then_some(()) }
    })
    .await;
    assert!(
        !c.task.is_finished(),
        "the source must survive a broker outage"
    );
    mock.broker_up(1).expect("up");
    for i in 40..80 {
        produce(&p, "m", Some((i % 2) as i32), &payload(i)).await;
    }
    wait_distinct(
        c.server.addr,
        (80 * PER_MESSAGE) as u64,
        "second wave after the outage",
    )
    .await;
    wait_committed(&brokers, "g-mock", "m", vec![40, 40]).await;
    // The mock cluster's high watermark is exact: once everything is
    // committed, the lag of both partitions is 0 (not the 40 messages each
    // holds).
    let m = c.metrics();
    wait_for(Duration::from_secs(30), "lag 0 on both partitions", || {
        let m = m.clone();
        async move {
            let text = m.render();
            (0..2)
                .all(|p| {
                    text.lines().any(|l| {
                        l == format!(
                            "scalecast_kafka_consumer_lag{{group=\"g-mock\",topic=\"m\",partition=\"{p}\"}} 0"
                        )
                    })
                })
                .then_some(())
        }
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_commit_errors_are_counted_and_recovered() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("c", 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 3],
    );
    let p = producer(&brokers);
    for i in 0..20 {
        produce(&p, "c", Some(0), &payload(i)).await;
    }
    let c = Running::start(source_cfg(&brokers, "c", "g-commit")).await;
    wait_distinct(c.server.addr, (20 * PER_MESSAGE) as u64, "every sample").await;
    wait_committed(&brokers, "g-commit", "c", vec![20]).await;
    let text = c.metrics().render();
    assert!(
        metric_value(
            &text,
            "scalecast_kafka_errors_total{group=\"g-commit\",kind=\"commit\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "scalecast_kafka_commits_total{") >= 1.0,
        "{text}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_publish_failure_is_an_error_and_counted() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("out", 1, 1).expect("topic");
    let metrics = Arc::new(Metrics::new());
    let mut cfg = KafkaSinkConfig::new(mock.bootstrap_servers(), "out");
    cfg.delivery_timeout_secs = 10.0;
    let sink = KafkaSink::new(&cfg, &metrics).expect("sink");
    sink.publish("ok", &serde_json::json!({"n": 1}))
        .await
        .expect("first publish");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let e = sink
        .publish("bad", &serde_json::json!({"n": 2}))
        .await
        .expect_err("the broker refused it");
    assert!(e.to_string().contains("\"bad\""), "{e}");
    let text = metrics.render();
    assert_eq!(
        metric_value(&text, "scalecast_kafka_publish_errors_total{"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "scalecast_kafka_published_total{"),
        1.0,
        "{text}"
    );
    sink.publish("again", &serde_json::json!({"n": 3}))
        .await
        .expect("recovers");
}

#[test]
fn source_config_is_checked_before_connecting() {
    let mut c = KafkaSourceConfig::new("127.0.0.1:9", &["t"]);
    c.format = PayloadFormat::Json;
    c.librdkafka_options
        .insert("enable.auto.commit".into(), "false".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tmp");
    let metrics = Arc::new(Metrics::new());
    let store =
        Arc::new(Store::open(dir.path(), Default::default(), metrics.clone()).expect("store"));
    let (_tx, rx) = watch::channel(false);
    let e = rt
        .block_on(run(c, store, metrics, rx))
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("librdkafka_options.enable.auto.commit"),
        "{e}"
    );
}
