//! The CloudWatch poller and backfill against the moto server (`moto[server]`
//! from PyPI, installed by `scripts/install-moto.sh`): data put with the AWS
//! SDK lands in `samples` with the values CloudWatch's statistics give.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use clap::Parser;
use scalecast::sources::cloudwatch::{BackfillCloudwatchArgs, CloudwatchConfig, backfill, run};
use tokio::sync::watch;

use crate::common::*;

const MIN: i64 = 60_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn sdk_client(url: &str) -> aws_sdk_cloudwatch::Client {
    let conf = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    aws_sdk_cloudwatch::Client::from_conf(conf)
}

/// Puts `(instance, ts_ms, value)` datapoints of `AWS/EC2 CPUUtilization`.
async fn put(client: &aws_sdk_cloudwatch::Client, points: &[(String, i64, f64)]) {
    for chunk in points.chunks(100) {
        let mut req = client.put_metric_data().namespace("AWS/EC2");
        for (inst, ts, v) in chunk {
            req = req.metric_data(
                MetricDatum::builder()
                    .metric_name("CPUUtilization")
                    .dimensions(Dimension::builder().name("InstanceId").value(inst).build())
                    .timestamp(DateTime::from_millis(*ts))
                    .value(*v)
                    .build(),
            );
        }
        req.send().await.expect("PutMetricData");
    }
}

fn credentials_file(dir: &Path) -> PathBuf {
    let p = dir.join("credentials");
    std::fs::write(
        &p,
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .expect("credentials");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_stores_cloudwatch_statistics_from_moto() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some((mut moto, url)) = start_moto(dir.path()) else {
        return;
    };
    wait_moto(&url).await;
    let cw = sdk_client(&url);
    // Two instances, 8 complete minutes ending 2 minutes ago; two raw values
    // per minute (v and v + 2), so Average = v + 1 and Maximum = v + 2.
    let end = now_ms().div_euclid(MIN) * MIN - 2 * MIN;
    let start = end - 8 * MIN;
    let mut points = Vec::new();
    for (i, inst) in ["i-aaa", "i-bbb"].iter().enumerate() {
        for k in 0..8 {
            let v = (i * 100 + k) as f64;
            let ts = start + k as i64 * MIN;
            points.push((inst.to_string(), ts + 5_000, v));
            points.push((inst.to_string(), ts + 35_000, v + 2.0));
        }
    }
    put(&cw, &points).await;

    let server = start_server(&dir.path().join("data"), None).await;
    let addr = server.addr;
    let store = server.state.store.get().cloned().expect("store");
    let cfg: CloudwatchConfig = serde_yaml::from_str(&format!(
        "region: us-east-1\nendpoint_url: {url}\ncredentials_file: {}\npoll_interval_secs: 1\nrepoll_periods: 15\nqueries:\n  - namespace: AWS/EC2\n    metric_name: CPUUtilization\n    discover_dimensions: [InstanceId]\n    statistics: [Average, Maximum]\n    period_secs: 60\n",
        credentials_file(dir.path()).display()
    ))
    .expect("config");
    cfg.validate().expect("valid");
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = server.state.metrics.clone();
    let task = tokio::spawn(async move { run("aws", cfg, store, metrics, stop_rx).await });

    let client = reqwest::Client::new();
    let q = "SELECT name, labels['instance_id'] AS inst, labels['region'] AS region, \
             CAST(ts AS BIGINT) AS t, value FROM samples \
             WHERE name LIKE 'aws_ec2_cpuutilization_%' ORDER BY name, inst, ts";
    let rows = wait_for(Duration::from_secs(60), "32 CloudWatch samples", || {
        let client = client.clone();
        async move {
            let rows = sql(&client, addr, q).await;
            (rows.len() >= 32).then_some(rows)
        }
    })
    .await;
    assert_eq!(rows.len(), 32, "{rows:?}");
    for r in &rows {
        let inst = r["inst"].as_str().expect("instance_id");
        let i = if inst == "i-aaa" { 0 } else { 1 };
        let t = r["t"].as_i64().expect("t");
        assert_eq!((t - start) % MIN, 0, "period-aligned timestamp {t}");
        let k = (t - start) / MIN;
        assert!((0..8).contains(&k), "{r}");
        let v = (i * 100 + k) as f64;
        let want = match r["name"].as_str() {
            Some("aws_ec2_cpuutilization_average") => v + 1.0,
            Some("aws_ec2_cpuutilization_maximum") => v + 2.0,
            other => panic!("unexpected name {other:?}"),
        };
        assert_eq!(r["value"].as_f64(), Some(want), "{r}");
        assert_eq!(r["region"].as_str(), Some("us-east-1"));
    }
    // Later polls re-fetch the same periods and store nothing new.
    let polls = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("scalecast_cloudwatch_polls_total{source=\"aws\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = polls(&server.state.metrics.render());
    let metrics = server.state.metrics.clone();
    wait_for(Duration::from_secs(30), "two more polls", || {
        let text = metrics.render();
        async move { (polls(&text) >= before + 2).then_some(()) }
    })
    .await;
    let again = sql(&client, addr, q).await;
    assert_eq!(again.len(), 32, "re-polled periods were stored twice");
    let text = server.state.metrics.render();
    assert!(
        text.contains(
            "scalecast_cloudwatch_api_calls_total{source=\"aws\",operation=\"ListMetrics\"}"
        ),
        "{text}"
    );
    let _ = stop_tx.send(true);
    task.await.expect("join").expect("run");
    server.shutdown().await;
    moto.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fetches_three_days_from_moto() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some((mut moto, url)) = start_moto(dir.path()) else {
        return;
    };
    wait_moto(&url).await;
    let cw = sdk_client(&url);
    // Hourly values for the last 3 days (one datapoint per hour).
    const HOUR: i64 = 60 * MIN;
    let last = now_ms().div_euclid(HOUR) * HOUR - HOUR;
    let points: Vec<(String, i64, f64)> = (0..72)
        .map(|k| ("i-bf".to_string(), last - k * HOUR + 60_000, k as f64 * 1.5))
        .collect();
    put(&cw, &points).await;

    let data = dir.path().join("data");
    let metrics = std::sync::Arc::new(scalecast::metrics::Metrics::new());
    let store = scalecast::store::Store::open(&data, Default::default(), metrics).expect("store");
    let creds = credentials_file(dir.path());
    let args = {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: BackfillCloudwatchArgs,
        }
        Cli::parse_from([
            "backfill",
            "--since",
            "4d",
            "--namespace",
            "AWS/EC2",
            "--metric-name",
            "CPUUtilization",
            "--dimension",
            "InstanceId=i-bf",
            "--statistic",
            "Sum",
            "--period-secs",
            "3600",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &url,
            "--credentials-file",
            creds.to_str().expect("utf-8 path"),
            "--window-periods",
            "24",
            "--no-progress",
        ])
        .a
    };
    let report = backfill(&args, &store).await.expect("backfill");
    eprintln!("backfill report: {report:?}");
    assert_eq!(report.failed_requests, 0);
    assert_eq!(report.requests, 4, "96 hours in 24-hour windows");
    assert_eq!(report.samples, 72);
    let stored: Vec<scalecast::schema::Sample> = store
        .snapshot()
        .head
        .iter()
        .flat_map(scalecast::schema::batch_to_samples)
        .collect();
    assert_eq!(stored.len(), 72);
    for s in &stored {
        assert_eq!(s.name, "aws_ec2_cpuutilization_sum");
        let k = (last - s.ts_ms) / HOUR;
        assert_eq!(s.ts_ms % HOUR, 0);
        assert_eq!(s.value, k as f64 * 1.5, "{s:?}");
    }
    store.close();
    moto.terminate();
}
