//! Scraper tests against in-process HTTP targets (127.0.0.1:0).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::discovery::{FileSdConfig, Target, TargetGroup};
use super::relabel::{RelabelConfig, Relabeler};
use super::target::{self, ProcessOpts, ScrapeError, first_delay, label_sample, process};
use super::*;
use crate::metrics::Metrics;
use crate::schema::{Label, Sample, batch_to_samples};
use crate::store::{StorageConfig, Store};

const NODE: &str = include_str!("../../../tests/fixtures/node_exporter_1.5.0.prom");

fn lv(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn tgt(labels: &[(&str, &str)]) -> Target {
    Target {
        url: "http://x:1/metrics".into(),
        labels: lv(labels),
        key: 1,
    }
}

#[test]
fn honor_labels_and_exported_prefix() {
    let t = lv(&[("instance", "h:1"), ("job", "node")]);
    let none = Relabeler::default();
    let s = parse::ParsedSample {
        name: "m".into(),
        labels: lv(&[("job", "app"), ("exported_job", "old"), ("x", "")]),
        value: 1.0,
        timestamp_ms: None,
    };
    let (name, l) = label_sample(s.clone(), &t, false, &none).expect("kept");
    assert_eq!(name, "m");
    assert_eq!(
        l,
        lv(&[
            ("exported_exported_job", "app"),
            ("exported_job", "old"),
            ("instance", "h:1"),
            ("job", "node"),
        ])
    );
    let (_, l) = label_sample(s, &t, true, &none).expect("kept");
    assert_eq!(
        l,
        lv(&[("exported_job", "old"), ("instance", "h:1"), ("job", "app")])
    );
}

#[test]
fn metric_relabeling_and_counts() {
    let rules: Vec<RelabelConfig> = serde_yaml::from_str(
        "- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop\n\
         - source_labels: [__name__]\n  regex: 'node_load(.*)'\n  target_label: __name__\n  replacement: 'load_$1'\n",
    )
    .expect("yaml");
    let relabel = Relabeler::new(&rules).expect("rules");
    let t = tgt(&[("instance", "h:1"), ("job", "node")]);
    let opts = ProcessOpts {
        honor_labels: false,
        honor_timestamps: true,
        relabel: &relabel,
        sample_limit: 0,
    };
    let (samples, scraped) = process(NODE.as_bytes(), None, &t, 1000, opts).expect("ok");
    let go = NODE.lines().filter(|l| l.starts_with("go_")).count();
    assert_eq!(scraped, 505);
    assert_eq!(samples.len(), 505 - go);
    assert!(samples.iter().any(|s| s.name == "load_1"));
    assert!(!samples.iter().any(|s| s.name.starts_with("go_")));
    assert!(samples.iter().all(|s| s.ts_ms == 1000));
    // sample_limit fails the scrape as a whole.
    let e = process(
        NODE.as_bytes(),
        None,
        &t,
        1000,
        ProcessOpts {
            sample_limit: 10,
            ..opts
        },
    )
    .expect_err("limit");
    assert_eq!(e, ScrapeError::SampleLimit(10));
    // Explicit timestamps are honored unless told otherwise.
    let body = b"a 1 5000\n";
    let (s, _) = process(body, None, &t, 9000, opts).expect("ok");
    assert_eq!(s[0].ts_ms, 5000);
    let (s, _) = process(
        body,
        None,
        &t,
        9000,
        ProcessOpts {
            honor_timestamps: false,
            ..opts
        },
    )
    .expect("ok");
    assert_eq!(s[0].ts_ms, 9000);
}

#[test]
fn offsets_spread_targets_over_the_interval() {
    // Every target fires at its own phase: key % interval.
    assert_eq!(first_delay(10_000, 1000, 250), Duration::from_millis(250));
    assert_eq!(first_delay(10_300, 1000, 250), Duration::from_millis(950));
    assert_eq!(first_delay(10_250, 1000, 250), Duration::ZERO);
    let phases: std::collections::HashSet<u128> = (0..100u64)
        .map(|i| {
            let key = crate::schema::series_id("u", &lv(&[("i", &i.to_string())]));
            first_delay(0, 15_000, key).as_millis() / 1000
        })
        .collect();
    assert!(
        phases.len() > 8,
        "100 targets in {} one-second slots",
        phases.len()
    );
}

#[test]
fn validation_names_fields() {
    let cfg = |yaml: &str| -> ScrapeConfig { serde_yaml::from_str(yaml).expect(yaml) };
    let bad = |yaml: &str| cfg(yaml).validate().expect_err(yaml);
    let base = "job_name: n\nstatic_configs: [{targets: ['a:1']}]\n";
    assert!(cfg(base).validate().is_ok());
    assert_eq!(
        bad("job_name: n\nstatic_configs: [{targets: ['a:1', 'http://b:2']}]\n").0,
        "static_configs.0.targets.1"
    );
    assert_eq!(
        bad(&format!(
            "{base}scrape_interval_secs: 5\nscrape_timeout_secs: 6\n"
        ))
        .0,
        "scrape_timeout_secs"
    );
    assert_eq!(
        bad(&format!("{base}scrape_interval_secs: 0\n")).0,
        "scrape_interval_secs"
    );
    assert_eq!(
        bad(&format!(
            "{base}metric_relabel_configs: [{{source_labels: [a], regex: '[', action: drop}}]\n"
        ))
        .0,
        "metric_relabel_configs.0.regex"
    );
    assert_eq!(bad(&format!("{base}scheme: https\n")).0, "scheme");
    assert_eq!(bad("job_name: n\n").0, "static_configs");
    assert_eq!(
        bad("job_name: n\nfile_sd_configs: [{files: [/x/t.txt]}]\n").0,
        "file_sd_configs.0.files.0"
    );
    assert!(serde_yaml::from_str::<ScrapeConfig>(&format!("{base}scrape_intervl: 1\n")).is_err());
    // The timeout defaults to 10 s, capped at the interval.
    assert_eq!(
        cfg(&format!("{base}scrape_interval_secs: 2\n")).timeout_secs(),
        2.0
    );
    assert_eq!(cfg(base).timeout_secs(), 10.0);
}

// ---- in-process targets -------------------------------------------------

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr.to_string()
}

fn test_router() -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], NODE) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "a 1\n"
            }),
        )
        .route(
            "/big",
            get(|| async { "x 1\n".repeat(100_000).into_response() }),
        )
        .route("/bad", get(|| async { "a{ 1\n" }))
        .route(
            "/om",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0",
                    )],
                    "# TYPE c counter\nc_total{a=\"x\"} 3 1700000000.25\n# EOF\n",
                )
            }),
        )
}

fn open_store(dir: &std::path::Path, metrics: &Arc<Metrics>) -> Arc<Store> {
    Arc::new(Store::open(dir, StorageConfig::default(), metrics.clone()).expect("store"))
}

fn stored(store: &Store) -> Vec<Sample> {
    store
        .snapshot()
        .head
        .iter()
        .flat_map(batch_to_samples)
        .collect()
}

fn label<'a>(s: &'a Sample, k: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.as_str())
}

/// Waits (real time: the targets are real sockets) until `f` holds.
async fn until(what: &str, store: &Store, f: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    for _ in 0..300 {
        let s = stored(store);
        if f(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn up_of<'a>(samples: &'a [Sample], path: &str) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == "up" && label(s, "path") == Some(path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_big_and_bad_targets_do_not_block_the_good_one() {
    let addr = serve(test_router()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let metrics = Arc::new(Metrics::new());
    let store = open_store(dir.path(), &metrics);
    let mut cfg = ScrapeConfig::new("t");
    cfg.scrape_interval_secs = 0.3;
    cfg.scrape_timeout_secs = Some(0.2);
    cfg.body_size_limit_bytes = 100_000;
    // One target per path: the path travels in a label set by relabeling.
    cfg.static_configs = ["metrics", "slow", "big", "bad", "om"]
        .iter()
        .map(|p| TargetGroup {
            targets: vec![addr.clone()],
            labels: [("path".to_string(), p.to_string())].into(),
        })
        .collect();
    cfg.relabel_configs = serde_yaml::from_str(
        "- source_labels: [path]\n  target_label: __metrics_path__\n  replacement: '/$1'\n",
    )
    .expect("yaml");
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run("t", cfg, store.clone(), metrics.clone(), rx));
    let samples = until(
        "3 good scrapes and a failure of each bad one",
        &store,
        |s| {
            up_of(s, "metrics").len() >= 3
                && ["slow", "big", "bad"]
                    .iter()
                    .all(|p| !up_of(s, p).is_empty())
        },
    )
    .await;
    let _ = tx.send(true);
    task.await.expect("join").expect("run");
    for s in up_of(&samples, "metrics") {
        assert_eq!(s.value, 1.0);
        assert_eq!(label(s, "job"), Some("t"));
        assert_eq!(label(s, "instance"), Some(addr.as_str()));
    }
    for p in ["slow", "big", "bad"] {
        assert!(up_of(&samples, p).iter().all(|s| s.value == 0.0), "{p}");
    }
    // The good target's synthesized series match the exposition.
    let scraped: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "scrape_samples_scraped" && label(s, "path") == Some("metrics"))
        .map(|s| s.value)
        .collect();
    assert!(scraped.iter().all(|&v| v == 505.0), "{scraped:?}");
    let added: Vec<(i64, f64)> = samples
        .iter()
        .filter(|s| s.name == "scrape_series_added" && label(s, "path") == Some("metrics"))
        .map(|s| (s.ts_ms, s.value))
        .collect();
    // The first scrape adds every series, later ones none.
    let mut added = added;
    added.sort_by_key(|x| x.0);
    assert_eq!(added.first().map(|x| x.1), Some(505.0), "{added:?}");
    assert!(added[1..].iter().all(|x| x.1 == 0.0), "{added:?}");
    // OpenMetrics: float-second timestamp honored.
    let c = samples
        .iter()
        .find(|s| s.name == "c_total")
        .expect("OpenMetrics sample");
    assert_eq!((c.ts_ms, c.value), (1_700_000_000_250, 3.0));
    // Every sample of one scrape has the same timestamp.
    let node: Vec<&Sample> = samples.iter().filter(|s| s.name == "node_load1").collect();
    assert!(node.len() >= 3);
    let text = metrics.render();
    for reason in ["timeout", "body_too_large", "parse"] {
        assert!(
            text.contains(&format!(
                "scalecast_scrape_failures_total{{source=\"t\",reason=\"{reason}\"}}"
            )),
            "{reason} missing in\n{text}"
        );
    }
    assert!(
        text.contains("scalecast_scrape_targets{source=\"t\"} 0"),
        "{text}"
    );
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_changes_start_and_stop_targets() {
    let addr = serve(test_router()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&dir.path().join("data"), &metrics);
    let sd = dir.path().join("targets.yaml");
    std::fs::write(
        &sd,
        format!("- targets: ['{addr}']\n  labels: {{ team: a }}\n"),
    )
    .expect("write");
    let mut cfg = ScrapeConfig::new("sd");
    cfg.scrape_interval_secs = 0.2;
    cfg.file_sd_configs = vec![FileSdConfig {
        files: vec![sd.clone()],
        refresh_interval_secs: 0.1,
    }];
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run("sd", cfg, store.clone(), metrics.clone(), rx));
    until("team a scraped", &store, |s| {
        s.iter()
            .any(|x| x.name == "up" && label(x, "team") == Some("a") && x.value == 1.0)
    })
    .await;
    std::fs::write(
        &sd,
        format!("- targets: ['{addr}']\n  labels: {{ team: bb }}\n"),
    )
    .expect("write");
    let s = until("team bb scraped", &store, |s| {
        s.iter()
            .any(|x| x.name == "up" && label(x, "team") == Some("bb"))
    })
    .await;
    // Once bb is scraped, a is no longer: at most one more a-scrape was in
    // flight when the change was applied.
    let first_bb = s
        .iter()
        .filter(|x| x.name == "up" && label(x, "team") == Some("bb"))
        .map(|x| x.ts_ms)
        .min()
        .unwrap_or(i64::MAX);
    let s = until("two more bb scrapes", &store, |s| {
        s.iter()
            .filter(|x| x.name == "up" && label(x, "team") == Some("bb"))
            .count()
            >= 3
    })
    .await;
    let late_a = s
        .iter()
        .filter(|x| x.name == "up" && label(x, "team") == Some("a") && x.ts_ms > first_bb)
        .count();
    assert!(
        late_a <= 1,
        "{late_a} scrapes of the removed target after the change"
    );
    let _ = tx.send(true);
    task.await.expect("join").expect("run");
    let text = metrics.render();
    assert!(
        text.contains("scalecast_scrape_sd_updates_total{source=\"sd\"} 2"),
        "{text}"
    );
    store.close();
}

#[tokio::test]
async fn fetch_bounds_body_and_reports_status() {
    let addr = serve(test_router()).await;
    let client = reqwest::Client::new();
    let t = Duration::from_secs(5);
    let (body, ct) = target::fetch(&client, &format!("http://{addr}/metrics"), t, 1 << 20)
        .await
        .expect("ok");
    assert_eq!(body.len(), NODE.len());
    assert_eq!(ct.as_deref(), Some("text/plain; version=0.0.4"));
    assert_eq!(
        target::fetch(&client, &format!("http://{addr}/big"), t, 1000)
            .await
            .expect_err("too big"),
        ScrapeError::BodyTooLarge(1000)
    );
    assert_eq!(
        target::fetch(&client, &format!("http://{addr}/nope"), t, 1000)
            .await
            .expect_err("404"),
        ScrapeError::HttpStatus(404)
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let e = target::fetch(&client, &format!("http://127.0.0.1:{port}/"), t, 1000)
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), "connect");
}
