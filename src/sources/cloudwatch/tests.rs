//! Poller tests over an in-memory CloudWatch (paging, throttling,
//! alignment, de-duplication, discovery, backfill).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::api::{
    ApiError, CloudwatchApi, DataPage, DataRequest, DataResult, ErrorKind, ListPage, ListRequest,
    MetricId,
};
use super::poll::{self, Admit, Dedup, window};
use super::*;
use crate::schema::batch_to_samples;
use crate::store::StorageConfig;

/// Datapoints per (metric, stat, period), paged `page` datapoints at a time;
/// the first `throttle` calls are throttled.
#[derive(Default)]
struct Fake {
    data: BTreeMap<(MetricId, String, u32), BTreeMap<i64, f64>>,
    page: usize,
    throttle: AtomicU32,
    calls: Mutex<Vec<DataRequest>>,
    list_page: usize,
}

fn mid(ns: &str, name: &str, dims: &[(&str, &str)]) -> MetricId {
    let mut dimensions: Vec<(String, String)> = dims
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    dimensions.sort();
    MetricId {
        namespace: ns.into(),
        metric_name: name.into(),
        dimensions,
    }
}

impl CloudwatchApi for Fake {
    async fn get_metric_data(&self, req: &DataRequest) -> Result<DataPage, ApiError> {
        if self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ApiError {
                kind: ErrorKind::Throttled,
                message: "Throttling: Rate exceeded".into(),
            });
        }
        if let Ok(mut c) = self.calls.lock() {
            c.push(req.clone());
        }
        // Flatten every (id, ts, value) in the window, then page.
        let mut flat: Vec<(String, i64, f64)> = Vec::new();
        for q in &req.queries {
            if let Some(points) = self
                .data
                .get(&(q.metric.clone(), q.stat.clone(), q.period_secs))
            {
                for (t, v) in points.range(req.start_ms..req.end_ms) {
                    flat.push((q.id.clone(), *t, *v));
                }
            }
        }
        let from: usize = req
            .next_token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let page = self.page.max(1);
        let to = (from + page).min(flat.len());
        let mut results: Vec<DataResult> = Vec::new();
        for (id, t, v) in &flat[from..to] {
            match results.iter_mut().find(|r| &r.id == id) {
                Some(r) => {
                    r.timestamps_ms.push(*t);
                    r.values.push(*v);
                }
                None => results.push(DataResult {
                    id: id.clone(),
                    timestamps_ms: vec![*t],
                    values: vec![*v],
                }),
            }
        }
        Ok(DataPage {
            results,
            next_token: (to < flat.len()).then(|| to.to_string()),
        })
    }

    async fn list_metrics(&self, req: &ListRequest) -> Result<ListPage, ApiError> {
        let all: Vec<MetricId> = self
            .data
            .keys()
            .map(|k| k.0.clone())
            .filter(|m| m.namespace == req.namespace && m.metric_name == req.metric_name)
            .filter(|m| {
                req.dimensions.iter().all(|(k, v)| {
                    m.dimensions
                        .iter()
                        .any(|(a, b)| a == k && v.as_ref().is_none_or(|v| v == b))
                })
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let from: usize = req
            .next_token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let page = self.list_page.max(1);
        let to = (from + page).min(all.len());
        Ok(ListPage {
            metrics: all[from..to].to_vec(),
            next_token: (to < all.len()).then(|| to.to_string()),
        })
    }
}

fn test_caller(metrics: &Arc<Metrics>) -> Caller {
    let mut cfg = CloudwatchConfig::new();
    cfg.max_retries = 3;
    caller(&cfg, "cw", metrics)
}

const MIN: i64 = 60_000;
// 2026-11-23T00:00:00Z, a multiple of every period used here.
const T0: i64 = 1_795_392_000_000;

#[test]
fn windows_align_to_period_boundaries() {
    assert_eq!(window(T0 + 59_999, 60, 5), (T0 - 5 * MIN, T0));
    assert_eq!(window(T0 + 60_000, 60, 5), (T0 - 4 * MIN, T0 + MIN));
    assert_eq!(window(T0 + 7 * MIN, 300, 2), (T0 - 5 * MIN, T0 + 5 * MIN));
    // Periods are aligned to the epoch, not to the poll time.
    let (s, e) = window(T0 + 123_456, 3600, 1);
    assert_eq!((s % 3_600_000, e % 3_600_000), (0, 0));
}

#[test]
fn names_and_labels() {
    assert_eq!(poll::snake_label("InstanceId"), "instance_id");
    assert_eq!(
        poll::snake_label("DBInstanceIdentifier"),
        "db_instance_identifier"
    );
    assert_eq!(
        poll::snake_label("AutoScalingGroupName"),
        "auto_scaling_group_name"
    );
    assert_eq!(poll::snake_label("Load Balancer"), "load_balancer");
    let mut q = QueryConfig::new("AWS/EC2", "CPUUtilization");
    assert_eq!(
        poll::sample_name(&q, "Average"),
        "aws_ec2_cpuutilization_average"
    );
    assert_eq!(
        poll::sample_name(&q, "p99.9"),
        "aws_ec2_cpuutilization_p99_9"
    );
    q.name = Some("ec2_cpu".into());
    q.labels = [("team".to_string(), "web".to_string())].into();
    let r = poll::resolve(
        &q,
        &[mid("AWS/EC2", "CPUUtilization", &[("InstanceId", "i-1")])],
        "eu-west-1",
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].name, "ec2_cpu_average");
    let l: Vec<(&str, &str)> = r[0]
        .labels
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        l,
        vec![
            ("instance_id", "i-1"),
            ("region", "eu-west-1"),
            ("team", "web")
        ]
    );
}

#[test]
fn validation() {
    let ok: CloudwatchConfig = serde_yaml::from_str(
        "region: us-east-1\nqueries:\n  - namespace: AWS/EC2\n    metric_name: CPUUtilization\n    discover_dimensions: [InstanceId]\n    statistics: [Average, p99, tm90, 'TM(10%:90%)']\n    period_secs: 60\n",
    )
    .expect("yaml");
    assert!(ok.validate().is_ok(), "{:?}", ok.validate());
    let bad = |yaml: &str| -> (String, String) {
        let c: CloudwatchConfig = serde_yaml::from_str(yaml).expect(yaml);
        c.validate().expect_err(yaml)
    };
    let q = "queries:\n  - namespace: N\n    metric_name: M\n";
    assert_eq!(
        bad(&format!("{q}    period_secs: 90\n")).0,
        "queries.0.period_secs"
    );
    assert_eq!(
        bad(&format!("{q}    statistics: [Average, p101]\n")).0,
        "queries.0.statistics.1"
    );
    assert_eq!(
        bad(&format!("{q}    statistics: [Mean]\n")).0,
        "queries.0.statistics.0"
    );
    assert_eq!(
        bad(&format!(
            "{q}    dimensions: {{A: x}}\n    discover_dimensions: [A]\n"
        ))
        .0,
        "queries.0.discover_dimensions"
    );
    assert_eq!(bad("queries: []\n").0, "queries");
    assert_eq!(
        bad(&format!("endpoint_url: localhost:5000\n{q}")).0,
        "endpoint_url"
    );
    assert_eq!(
        bad(&format!("max_queries_per_request: 501\n{q}")).0,
        "max_queries_per_request"
    );
    assert_eq!(
        bad(&format!("{q}    labels: {{'a-b': x}}\n")).0,
        "queries.0.labels.a-b"
    );
    assert!(serde_yaml::from_str::<CloudwatchConfig>(&format!("{q}    perod_secs: 60\n")).is_err());
    for (p, ok) in [
        (1, true),
        (20, true),
        (60, true),
        (300, true),
        (45, false),
        (0, false),
    ] {
        assert_eq!(valid_period(p), ok, "{p}");
    }
}

#[test]
fn dedup_skips_repeats_and_keeps_corrections() {
    let mut d = Dedup::default();
    assert_eq!(d.admit(1, 100, 1.0), Admit::New);
    assert_eq!(d.admit(1, 100, 1.0), Admit::Same);
    assert_eq!(d.admit(1, 100, 2.0), Admit::Changed);
    assert_eq!(d.admit(2, 100, 2.0), Admit::New);
    assert_eq!(d.admit(1, 200, f64::NAN), Admit::New);
    assert_eq!(d.admit(1, 200, f64::NAN), Admit::Same);
    d.prune(150);
    assert_eq!(d.len(), 1);
    assert_eq!(d.admit(1, 100, 2.0), Admit::New);
}

fn fake_with_cpu(instances: usize, minutes: i64) -> Fake {
    let mut f = Fake {
        page: 7,
        list_page: 2,
        ..Default::default()
    };
    for i in 0..instances {
        let m = mid(
            "AWS/EC2",
            "CPUUtilization",
            &[("InstanceId", &format!("i-{i}"))],
        );
        let points: BTreeMap<i64, f64> = (0..minutes)
            .map(|k| (T0 + k * MIN, (i * 1000) as f64 + k as f64))
            .collect();
        f.data.insert((m, "Average".into(), 60), points);
    }
    // A metric with an extra dimension: not matched by discovery on InstanceId only.
    f.data.insert(
        (
            mid(
                "AWS/EC2",
                "CPUUtilization",
                &[("InstanceId", "i-x"), ("ImageId", "ami-1")],
            ),
            "Average".into(),
            60,
        ),
        [(T0, 99.0)].into(),
    );
    f
}

#[tokio::test]
async fn poll_pages_dedups_and_discovers() {
    let fake = fake_with_cpu(3, 20);
    let metrics = Arc::new(Metrics::new());
    let caller = test_caller(&metrics);
    let mut cfg = CloudwatchConfig::new();
    let mut q = QueryConfig::new("AWS/EC2", "CPUUtilization");
    q.discover_dimensions = vec!["InstanceId".into()];
    q.period_secs = 60;
    cfg.queries = vec![q];
    cfg.max_queries_per_request = 2;
    let resolved = resolve_all(&fake, &caller, &cfg, "us-east-1", &BTreeMap::new()).await;
    let all: Vec<ResolvedQuery> = resolved.into_values().flatten().collect();
    assert_eq!(
        all.len(),
        3,
        "ListMetrics pages followed, extra-dimension metric left out"
    );
    let mut dedup = Dedup::default();
    // At T0 + 10 min + 30 s the last 5 complete minutes are 5..10.
    let now = T0 + 10 * MIN + 30_000;
    let (s1, st) = poll::poll_once(&fake, &caller, &all, now, 5, 2, &mut dedup).await;
    assert_eq!(st.datapoints, 15);
    assert_eq!(s1.len(), 15);
    assert_eq!(st.failed_requests, 0);
    let mut ts: Vec<i64> = s1.iter().map(|s| s.ts_ms).collect();
    ts.sort();
    ts.dedup();
    assert_eq!(ts, (5..10).map(|k| T0 + k * MIN).collect::<Vec<_>>());
    for s in &s1 {
        let inst = s
            .labels
            .iter()
            .find(|(k, _)| k == "instance_id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let i: i64 = inst.trim_start_matches("i-").parse().unwrap_or(-1);
        let k = (s.ts_ms - T0) / MIN;
        assert_eq!(s.value, (i * 1000 + k) as f64, "{s:?}");
        assert_eq!(s.name, "aws_ec2_cpuutilization_average");
    }
    // Two queries per request, 7 datapoints per page: both limits paged.
    {
        let calls = fake.calls.lock().expect("calls");
        assert!(calls.iter().all(|c| c.queries.len() <= 2));
        assert!(calls.iter().any(|c| c.next_token.is_some()));
        assert!(
            calls
                .iter()
                .all(|c| c.start_ms % MIN == 0 && c.end_ms % MIN == 0)
        );
    }
    // One minute later: 4 of 5 periods are re-polled duplicates, 1 is new.
    let (s2, st) = poll::poll_once(&fake, &caller, &all, now + MIN, 5, 2, &mut dedup).await;
    assert_eq!((st.new, st.duplicates, st.changed), (3, 12, 0));
    assert!(s2.iter().all(|s| s.ts_ms == T0 + 10 * MIN));
    let text = metrics.render();
    assert!(
        text.contains("scalecast_cloudwatch_duplicates_total{source=\"cw\"} 12"),
        "{text}"
    );
}

#[tokio::test]
async fn late_data_is_stored_as_a_correction() {
    let mut fake = fake_with_cpu(1, 10);
    let metrics = Arc::new(Metrics::new());
    let caller = test_caller(&metrics);
    let mut q = QueryConfig::new("AWS/EC2", "CPUUtilization");
    q.dimensions = [("InstanceId".to_string(), "i-0".to_string())].into();
    q.period_secs = 60;
    let all = poll::resolve(&q, &[poll::static_metric(&q)], "r");
    let mut dedup = Dedup::default();
    let now = T0 + 10 * MIN;
    let (s, _) = poll::poll_once(&fake, &caller, &all, now, 3, 500, &mut dedup).await;
    assert_eq!(s.len(), 3);
    // A late datapoint changes minute 8's average.
    let key = (
        mid("AWS/EC2", "CPUUtilization", &[("InstanceId", "i-0")]),
        "Average".to_string(),
        60,
    );
    if let Some(points) = fake.data.get_mut(&key) {
        points.insert(T0 + 8 * MIN, 42.0);
    }
    let (s, st) = poll::poll_once(&fake, &caller, &all, now, 3, 500, &mut dedup).await;
    assert_eq!((st.new, st.changed, st.duplicates), (0, 1, 2));
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].ts_ms, s[0].value), (T0 + 8 * MIN, 42.0));
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_counted() {
    let fake = fake_with_cpu(1, 5);
    fake.throttle.store(3, Ordering::SeqCst);
    let metrics = Arc::new(Metrics::new());
    // Millisecond backoffs keep the test fast (tokio's paused clock needs the
    // test-util feature, which the crate does not enable).
    let caller = Caller {
        base: std::time::Duration::from_millis(2),
        cap: std::time::Duration::from_millis(8),
        ..test_caller(&metrics)
    };
    let q = {
        let mut q = QueryConfig::new("AWS/EC2", "CPUUtilization");
        q.dimensions = [("InstanceId".to_string(), "i-0".to_string())].into();
        q.period_secs = 60;
        q
    };
    let all = poll::resolve(&q, &[poll::static_metric(&q)], "r");
    let refs: Vec<&ResolvedQuery> = all.iter().collect();
    let points = poll::fetch_window(&fake, &caller, &refs, T0, T0 + 5 * MIN)
        .await
        .expect("succeeds after 3 throttles");
    assert_eq!(points.len(), 5);
    let text = metrics.render();
    assert!(
        text.contains(
            "scalecast_cloudwatch_throttles_total{source=\"cw\",operation=\"GetMetricData\"} 3"
        ),
        "{text}"
    );
    // More throttles than retries: the error comes back.
    fake.throttle.store(10, Ordering::SeqCst);
    let e = poll::fetch_window(&fake, &caller, &refs, T0, T0 + 5 * MIN)
        .await
        .expect_err("gives up after max_retries");
    assert_eq!(e.kind, ErrorKind::Throttled);
}

#[tokio::test]
async fn backfill_fetches_the_whole_range_in_windows() {
    let fake = fake_with_cpu(2, 3 * 24 * 60);
    let dir = tempfile::tempdir().expect("tmp");
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(dir.path(), StorageConfig::default(), metrics).expect("store");
    let mut cfg = CloudwatchConfig::new();
    let mut q = QueryConfig::new("AWS/EC2", "CPUUtilization");
    q.discover_dimensions = vec!["InstanceId".into()];
    q.period_secs = 60;
    cfg.queries = vec![q];
    // Two days from T0 + 12 h (not aligned: the range is aligned down).
    let range = (T0 + 12 * 60 * MIN + 1234, T0 + 60 * 60 * MIN + 1234);
    let report = backfill_config(&fake, &cfg, "us-east-1", range, 720, false, &store)
        .await
        .expect("backfill");
    assert_eq!(report.queries, 2);
    assert_eq!(report.requests, 4, "48 h of minutes in 12 h windows");
    assert_eq!(report.failed_requests, 0);
    assert_eq!(report.samples, 2 * 48 * 60);
    assert_eq!(
        (report.start_ms, report.end_ms),
        (T0 + 12 * 60 * MIN, T0 + 60 * 60 * MIN)
    );
    let stored: Vec<crate::schema::Sample> = store
        .snapshot()
        .head
        .iter()
        .flat_map(batch_to_samples)
        .collect();
    assert_eq!(stored.len(), report.samples);
    let first = stored
        .iter()
        .filter(|s| {
            s.labels
                .iter()
                .any(|(k, v)| k == "instance_id" && v == "i-1")
        })
        .min_by_key(|s| s.ts_ms)
        .expect("i-1 samples");
    assert_eq!(
        (first.ts_ms, first.value),
        (T0 + 12 * 60 * MIN, 1000.0 + 720.0)
    );
    store.close();
}

#[test]
fn backfill_args() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        a: BackfillCloudwatchArgs,
    }
    let cli = Cli::try_parse_from([
        "x",
        "--since",
        "14d",
        "--namespace",
        "AWS/EC2",
        "--metric-name",
        "CPUUtilization",
        "--discover-dimension",
        "InstanceId",
        "--statistic",
        "Maximum",
        "--period-secs",
        "3600",
        "--region",
        "us-east-1",
    ])
    .expect("parses");
    assert_eq!(cli.a.since, 14 * 86_400);
    let cfg = cli.a.to_config().expect("valid");
    assert_eq!(cfg.queries[0].statistics, vec!["Maximum".to_string()]);
    assert_eq!(cfg.queries[0].period_secs, 3600);
    assert_eq!(cfg.region.as_deref(), Some("us-east-1"));
    assert!(Cli::try_parse_from(["x", "--since", "14x"]).is_err());
    let no_query = Cli::try_parse_from(["x", "--since", "1d"]).expect("parses");
    assert!(no_query.a.to_config().is_err());
    assert_eq!(backfill::parse_duration_secs("90m"), Ok(5400));
    assert_eq!(backfill::parse_duration_secs("2w"), Ok(14 * 86_400));
}
