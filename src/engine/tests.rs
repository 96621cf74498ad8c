//! End-to-end tests of the engine: feed batches, advance time, collect rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::*;
use crate::engine::aggregate::extrapolated_delta;
use crate::engine::schema::AggregateRow;
use crate::schema::{Sample, samples_to_batch};

fn s(name: &str, labels: &[(&str, &str)], ts: i64, v: f64) -> Sample {
    Sample::new(name, labels, ts, v)
}

fn window(yaml: &str) -> EngineTransform {
    EngineTransform::Window(serde_yaml::from_str(yaml).unwrap())
}

fn engine(transforms: Vec<(&str, EngineTransform)>) -> Engine {
    let t: Vec<(String, EngineTransform)> = transforms
        .into_iter()
        .map(|(id, t)| (id.to_string(), t))
        .collect();
    Engine::build(&t).unwrap()
}

fn feed(e: &mut Engine, samples: &[Sample]) {
    e.process(&samples_to_batch(samples)).unwrap();
}

fn stats(e: &Engine, id: &str) -> TransformStats {
    e.stats()
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, s)| s)
        .unwrap()
}

/// Latest row per (transform, group, window start), as storage keeps them.
fn latest(rows: &[AggregateRow]) -> BTreeMap<(String, u64, i64), AggregateRow> {
    let mut m = BTreeMap::new();
    for r in rows {
        m.insert(
            (r.transform.to_string(), r.group_id, r.window_start),
            r.clone(),
        );
    }
    m
}

const TUMBLING: &str = r#"
metric: cpu
window: { type: tumbling, size_secs: 60 }
group_by: [instance]
aggregates: [count, sum, min, max, avg, last, p50, p95, rate, increase]
late_data: drop
"#;

#[test]
fn out_of_order_and_duplicate_samples_give_the_same_rows_as_ordered_input() {
    let a = [("instance", "a")];
    let b = [("instance", "b")];
    let ordered = vec![
        s("cpu", &a, 0, 1.0),
        s("cpu", &b, 5_000, 10.0),
        s("cpu", &a, 15_000, 2.0),
        s("cpu", &a, 30_000, 3.0),
        s("cpu", &b, 35_000, 30.0),
        s("cpu", &a, 45_000, 4.0),
        s("cpu", &a, 61_000, 9.0),
    ];
    let mut e1 = engine(vec![("t", window(TUMBLING))]);
    feed(&mut e1, &ordered);
    let rows1 = e1.drain_rows();

    let mut shuffled = vec![
        ordered[5].clone(),
        ordered[3].clone(),
        ordered[0].clone(),
        ordered[4].clone(),
        ordered[3].clone(), // duplicate
    ];
    let rest = vec![
        ordered[1].clone(),
        ordered[2].clone(),
        ordered[0].clone(), // duplicate
        ordered[6].clone(),
    ];
    let mut e2 = engine(vec![("t", window(TUMBLING))]);
    feed(&mut e2, &shuffled);
    assert!(e2.drain_rows().is_empty(), "window still open");
    feed(&mut e2, &rest);
    let rows2 = e2.drain_rows();
    assert_eq!(rows1, rows2);
    assert_eq!(stats(&e2, "t").duplicates, 2);

    assert_eq!(rows1.len(), 2);
    // Rows of one window come in group_id order.
    let by = |inst: &str| {
        rows1
            .iter()
            .find(|r| r.labels[0].1 == inst)
            .cloned()
            .unwrap()
    };
    let ra = &by("a");
    assert_eq!(&*ra.labels, &[("instance".to_string(), "a".to_string())]);
    assert_eq!((ra.window_start, ra.window_end), (0, 60_000));
    assert_eq!(ra.values.count, Some(4.0));
    assert_eq!(ra.values.sum, Some(10.0));
    assert_eq!(ra.values.min, Some(1.0));
    assert_eq!(ra.values.max, Some(4.0));
    assert_eq!(ra.values.avg, Some(2.5));
    assert_eq!(ra.values.last, Some(4.0));
    // Counter 1 → 4 over 45 s, extrapolated to the window: durationToStart 0,
    // durationToEnd 15 s < 1.1 × 15 s → increase 3 × 60 / 45 = 4.
    assert!((ra.values.increase.unwrap() - 4.0).abs() < 1e-12);
    assert!((ra.values.rate.unwrap() - 4.0 / 60.0).abs() < 1e-12);
    assert_eq!(ra.series, 1);
    assert_eq!(ra.samples, 4);
    assert_eq!(by("b").values.max, Some(30.0));
    shuffled.clear();
}

#[test]
fn counter_resets_are_handled_like_prometheus() {
    let mut e = engine(vec![("t", window(TUMBLING))]);
    let l = [("instance", "a")];
    // 100, 110, restart → 5, 15 every 15 s from t = 0.
    feed(
        &mut e,
        &[
            s("cpu", &l, 0, 100.0),
            s("cpu", &l, 15_000, 110.0),
            s("cpu", &l, 30_000, 5.0),
            s("cpu", &l, 45_000, 15.0),
            s("cpu", &l, 60_000, 20.0),
        ],
    );
    let rows = e.drain_rows();
    assert_eq!(rows.len(), 1);
    // Increase: (15 − 100) + 110 = 25 over 45 s sampled; durationToStart 0;
    // durationToZero = 45 × 100 / 25 = 180 s (no clamp); durationToEnd 15 s →
    // extrapolated to 60 s: 25 × 60 / 45.
    let inc = rows[0].values.increase.unwrap();
    assert!((inc - 25.0 * 60.0 / 45.0).abs() < 1e-9, "{inc}");
    assert!(inc > 0.0);
}

#[test]
fn late_samples_update_or_are_dropped_and_counted() {
    let l = [("instance", "a")];
    let update = TUMBLING.replace(
        "late_data: drop",
        "late_data: update\nlate_retention_secs: 120",
    );
    let mut e = engine(vec![("drop", window(TUMBLING)), ("upd", window(&update))]);
    feed(
        &mut e,
        &[s("cpu", &l, 10_000, 1.0), s("cpu", &l, 70_000, 5.0)],
    );
    let first = e.drain_rows();
    assert_eq!(first.len(), 2, "window [0, 60s) of both transforms");
    assert!(
        first
            .iter()
            .all(|r| r.values.count == Some(1.0) && !r.is_update)
    );

    feed(&mut e, &[s("cpu", &l, 20_000, 3.0)]);
    let second = e.drain_rows();
    assert_eq!(second.len(), 1);
    let r = &second[0];
    assert_eq!(&*r.transform, "upd");
    assert!(r.is_update);
    assert_eq!(
        (r.window_start, r.values.count, r.values.sum),
        (0, Some(2.0), Some(4.0))
    );
    assert_eq!(stats(&e, "drop").late_dropped, 1);
    assert_eq!(stats(&e, "upd").late_updated, 1);
    assert_eq!(stats(&e, "upd").windows_reemitted, 1);

    // Beyond the retention (window end 60 s + 120 s ≤ watermark) → dropped.
    feed(&mut e, &[s("cpu", &l, 200_000, 1.0)]);
    e.drain_rows();
    feed(&mut e, &[s("cpu", &l, 30_000, 1.0)]);
    assert!(e.drain_rows().is_empty());
    assert_eq!(stats(&e, "upd").late_dropped, 1);
}

#[test]
fn allowed_lateness_delays_emission() {
    let y = TUMBLING.replace("late_data: drop", "allowed_lateness_secs: 30");
    let mut e = engine(vec![("t", window(&y))]);
    let l = [("instance", "a")];
    feed(
        &mut e,
        &[s("cpu", &l, 10_000, 1.0), s("cpu", &l, 80_000, 1.0)],
    );
    assert!(e.drain_rows().is_empty(), "watermark 50 s < 60 s");
    assert_eq!(e.watermark("t").unwrap(), Some(50_000));
    feed(&mut e, &[s("cpu", &l, 50_000, 2.0)]);
    assert!(e.drain_rows().is_empty());
    feed(&mut e, &[s("cpu", &l, 90_000, 1.0)]);
    let rows = e.drain_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].values.count,
        Some(2.0),
        "the 50 s sample was not late"
    );
}

#[test]
fn idle_timeout_flushes_open_windows_in_processing_time() {
    let y = TUMBLING.replace("late_data: drop", "late_data: drop\nidle_timeout_secs: 30");
    let mut e = engine(vec![("t", window(&y))]);
    let l = [("instance", "a")];
    e.advance(1_000_000);
    feed(
        &mut e,
        &[s("cpu", &l, 10_000, 1.0), s("cpu", &l, 20_000, 2.0)],
    );
    e.advance(1_029_000);
    assert!(e.drain_rows().is_empty());
    e.advance(1_030_000);
    let rows = e.drain_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].values.avg, Some(1.5));
    assert_eq!(stats(&e, "t").idle_flushes, 1);
    // Nothing open any more: further advances emit nothing.
    e.advance(2_000_000);
    assert!(e.drain_rows().is_empty());
    assert_eq!(stats(&e, "t").idle_flushes, 1);
    // The window was emitted: a sample for it is now late (drop policy).
    feed(&mut e, &[s("cpu", &l, 30_000, 1.0)]);
    assert_eq!(stats(&e, "t").late_dropped, 1);
}

#[test]
fn sliding_windows_overlap() {
    let y = r#"
metric: lat
window: { type: sliding, size_secs: 30, slide_secs: 10 }
aggregates: [count, max, p50]
late_data: drop
"#;
    let mut e = engine(vec![("s", window(y))]);
    let samples: Vec<Sample> = (0..6)
        .map(|i| s("lat", &[], i * 10_000 + 1_000, i as f64))
        .collect();
    feed(&mut e, &samples);
    let rows = e.drain_rows();
    let got: Vec<(i64, Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|r| (r.window_start, r.values.count, r.values.max))
        .collect();
    // Samples at 1, 11, ..., 51 s (values 0..5); watermark 51 s closes windows
    // ending ≤ 51 s.
    assert_eq!(
        got,
        vec![
            (-20_000, Some(1.0), Some(0.0)),
            (-10_000, Some(2.0), Some(1.0)),
            (0, Some(3.0), Some(2.0)),
            (10_000, Some(3.0), Some(3.0)),
            (20_000, Some(3.0), Some(4.0)),
        ]
    );
    assert!(rows.iter().all(|r| r.window_end - r.window_start == 30_000));
}

#[test]
fn empty_nan_and_wrong_schema_inputs_do_not_panic() {
    let mut e = engine(vec![("t", window(TUMBLING))]);
    feed(&mut e, &[]);
    let l = [("instance", "a")];
    feed(
        &mut e,
        &[
            s("cpu", &l, 0, f64::NAN),
            s("cpu", &l, 1_000, f64::INFINITY),
            s("other", &l, 2_000, 1.0),
            s("cpu", &[("instance", "a"), ("x", "")], 3_000, 1.0),
        ],
    );
    let st = stats(&e, "t");
    assert_eq!(st.non_finite_dropped, 2);
    assert_eq!(st.accepted, 1);
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let bad = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Float64Array::from(vec![1.0])),
        ],
    )
    .unwrap();
    assert!(matches!(e.process(&bad), Err(EngineError::Schema(_))));
    assert!(matches!(
        e.mark_emitted("nope", 0),
        Err(EngineError::UnknownTransform(_))
    ));
}

#[test]
fn build_rejects_bad_graphs_and_configs() {
    let bad_window = window(&TUMBLING.replace("size_secs: 60", "size_secs: 0"));
    let t = vec![("w".to_string(), bad_window)];
    match Engine::build(&t) {
        Err(EngineError::Transform { id, source }) => {
            assert_eq!(id, "w");
            assert!(source.to_string().contains("window.size_secs"), "{source}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let cost = EngineTransform::Cost {
        inputs: vec!["w".into()],
        config: CostTransformConfig::default(),
    };
    let t = vec![
        ("w".to_string(), window(TUMBLING)),
        ("c".to_string(), cost.clone()),
    ];
    assert!(matches!(Engine::build(&t), Err(EngineError::Graph { .. })));
    let t = vec![
        ("w".to_string(), window(TUMBLING)),
        ("w".to_string(), window(TUMBLING)),
    ];
    assert!(matches!(Engine::build(&t), Err(EngineError::Graph { .. })));
}

/// The YAML documented in docs/engine.md for the Prometheus comparison.
const NODE_CPU: &str = r#"
resource: cpu
window: { type: tumbling, size_secs: 60 }
group_by: [instance]
usage:
  metric: node_cpu_seconds_total
  matchers: ['mode="idle"']
  per_series: rate
  across: sum
  from_idle: true
capacity:
  metric: node_cpu_seconds_total
  matchers: ['mode="idle"']
  per_series: last
  across: count
idle_timeout_secs: 120
"#;

/// Synthetic node_exporter CPU counters: `cpus` CPUs per instance, scraped
/// every 15 s with a 3.7 s offset, idle fraction varying per CPU and minute.
fn node_cpu_samples(instances: &[&str], cpus: usize, minutes: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    for (ii, inst) in instances.iter().enumerate() {
        for cpu in 0..cpus {
            let cpu_s = cpu.to_string();
            let mut idle = 1000.0 * (cpu + 1) as f64;
            let mut user = 10.0;
            for k in 0..(minutes * 4) {
                let ts = 3_700 + k * 15_000;
                let frac = 0.2 + 0.6 * (((k / 4) as usize + cpu + ii) % 5) as f64 / 4.0;
                idle += 15.0 * frac;
                user += 15.0 * (1.0 - frac);
                let base = [("instance", *inst), ("cpu", cpu_s.as_str())];
                let mut li = base.to_vec();
                li.push(("mode", "idle"));
                let mut lu = base.to_vec();
                lu.push(("mode", "user"));
                out.push(s("node_cpu_seconds_total", &li, ts, idle));
                out.push(s("node_cpu_seconds_total", &lu, ts, user));
            }
        }
    }
    out
}

#[test]
fn node_cpu_utilization_matches_the_promql_expression() {
    let cfg: UtilizationTransformConfig = serde_yaml::from_str(NODE_CPU).unwrap();
    let mut e = engine(vec![("node_cpu", EngineTransform::Utilization(cfg))]);
    let samples = node_cpu_samples(&["n1:9100", "n2:9100"], 4, 6);
    feed(&mut e, &samples);
    let rows = e.drain_rows();
    assert_eq!(rows.len(), 2 * 5, "5 complete minutes × 2 instances");
    for r in &rows {
        // Prometheus: 1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))
        // evaluated at the window end, from the same samples.
        let inst = &r.labels[0].1;
        let mut rates = Vec::new();
        for cpu in 0..4 {
            let pts: Vec<(i64, f64)> = samples
                .iter()
                .filter(|x| {
                    x.labels.contains(&("instance".into(), inst.clone()))
                        && x.labels.contains(&("cpu".into(), cpu.to_string()))
                        && x.labels.contains(&("mode".into(), "idle".into()))
                        && x.ts_ms > r.window_end - 60_000
                        && x.ts_ms <= r.window_end
                })
                .map(|x| (x.ts_ms, x.value))
                .collect();
            rates
                .push(extrapolated_delta(&pts, r.window_end - 60_000, r.window_end, true).unwrap());
        }
        let prom = 1.0 - rates.iter().sum::<f64>() / rates.len() as f64;
        let ours = r.utilization.saturation.unwrap();
        assert!((ours - prom).abs() <= 0.02 * prom.abs(), "{ours} vs {prom}");
        assert_eq!(r.utilization.capacity, Some(4.0));
        assert_eq!(r.kind, RowKind::Utilization);
    }
}

#[test]
fn cost_of_a_fixed_input_equals_the_hand_computed_figure() {
    // Two pods of one workload, CPU usage counters growing 0.5 and 0.25 core-seconds
    // per second, request 1 core (static), node capacity 4 cores (static), priced at
    // $0.04 per core-hour in a separate cost transform; one-hour tumbling window.
    let util = r#"
resource: cpu
window: { type: tumbling, size_secs: 3600 }
group_by: [workload]
usage: { metric: container_cpu_usage_seconds_total, per_series: rate, across: sum }
request: { value: 1 }
capacity: { value: 4 }
pricing: {}
"#;
    let cfg: UtilizationTransformConfig = serde_yaml::from_str(util).unwrap();
    let cost = EngineTransform::Cost {
        inputs: vec!["web".into()],
        config: serde_yaml::from_str("pricing: { cpu_core_hour_usd: 0.04 }").unwrap(),
    };
    let mut e = engine(vec![
        ("web", EngineTransform::Utilization(cfg)),
        ("web_cost", cost),
    ]);
    let mut samples = Vec::new();
    for k in 0..=60 {
        let ts = k * 60_000;
        samples.push(s(
            "container_cpu_usage_seconds_total",
            &[("workload", "web"), ("pod", "web-1")],
            ts,
            0.5 * (ts / 1000) as f64,
        ));
        samples.push(s(
            "container_cpu_usage_seconds_total",
            &[("workload", "web"), ("pod", "web-2")],
            ts,
            0.25 * (ts / 1000) as f64,
        ));
    }
    feed(&mut e, &samples);
    let rows = e.drain_rows();
    assert_eq!(rows.len(), 2);
    let (u, c) = (&rows[0], &rows[1]);
    assert_eq!((&*u.transform, &*c.transform), ("web", "web_cost"));
    // Samples at 0..59 min in the window: exact rate 0.75 cores (no extrapolation
    // gap at the start; 60 s to the end = one step, extrapolated exactly).
    let usage = u.utilization.usage.unwrap();
    assert!((usage - 0.75).abs() < 1e-12, "{usage}");
    assert_eq!(u.utilization.utilization, Some(usage / 1.0));
    assert_eq!(u.utilization.saturation, Some(usage / 4.0));
    // Default OpenCost price in the utilization row: allocated = max(1, 0.75) ×
    // 0.031611 × 1 h; capacity 4 × 0.031611; idle = 0.126444 − 0.031611.
    assert!((u.cost.allocated_usd.unwrap() - 0.031611).abs() < 1e-12);
    assert!((u.cost.capacity_usd.unwrap() - 0.126444).abs() < 1e-12);
    assert!((u.cost.idle_usd.unwrap() - 0.094833).abs() < 1e-12);
    // Cost transform at $0.04: allocated 0.04, capacity 0.16, idle 0.12.
    assert!((c.cost.allocated_usd.unwrap() - 0.04).abs() < 1e-12);
    assert!((c.cost.capacity_usd.unwrap() - 0.16).abs() < 1e-12);
    assert!((c.cost.idle_usd.unwrap() - 0.12).abs() < 1e-12);
    assert_eq!(c.kind, RowKind::Cost);
    assert_ne!(c.group_id, u.group_id);
    let batches = e.drain();
    assert!(batches.is_empty());
}

/// A restart in the middle of an open window: a second engine that marks the
/// stored windows as emitted and replays raw samples from `replay_from_ms`
/// emits every remaining window exactly as an uninterrupted engine does, and
/// nothing it emitted before.
#[test]
fn restart_in_the_middle_of_an_open_window_recomputes_identically() {
    for policy in ["drop", "update"] {
        for shape in [
            "{ type: tumbling, size_secs: 60 }",
            "{ type: sliding, size_secs: 120, slide_secs: 30 }",
        ] {
            let y = format!(
                "metric: cpu\nwindow: {shape}\ngroup_by: [instance]\naggregates: [count, sum, avg, max, p95, rate]\nlate_data: {policy}\nallowed_lateness_secs: 5\n"
            );
            let samples: Vec<Sample> = (0..80)
                .flat_map(|k| {
                    let ts = 2_000 + k * 7_000;
                    [
                        s("cpu", &[("instance", "a")], ts, (k * k) as f64),
                        s("cpu", &[("instance", "b")], ts + 1_000, (k * 3) as f64),
                    ]
                })
                .collect();
            // Uninterrupted run.
            let mut full = engine(vec![("t", window(&y))]);
            for chunk in samples.chunks(7) {
                feed(&mut full, chunk);
            }
            let reference = latest(&full.drain_rows());

            // Crash after 93 samples (mid-window), keeping what was stored.
            let mut first = engine(vec![("t", window(&y))]);
            for chunk in samples[..93].chunks(7) {
                feed(&mut first, chunk);
            }
            let stored = first.drain_rows();
            let through = stored.iter().map(|r| r.window_end).max().unwrap();

            let mut second = engine(vec![("t", window(&y))]);
            let from = second.mark_emitted("t", through).unwrap();
            assert_eq!(second.replay_from_ms(), Some(from));
            // The store replays raw samples (here in reverse order) from `from`.
            let mut replay: Vec<Sample> = samples[..93]
                .iter()
                .filter(|x| x.ts_ms >= from)
                .cloned()
                .collect();
            replay.reverse();
            second.replay(&samples_to_batch(&replay)).unwrap();
            for chunk in samples[93..].chunks(5) {
                feed(&mut second, chunk);
            }
            let after = second.drain_rows();
            for r in &after {
                assert!(r.window_end > through, "{policy} {shape}: re-emitted {r:?}");
            }
            let mut merged = latest(&stored);
            for (k, r) in latest(&after) {
                assert!(!merged.contains_key(&k), "emitted twice");
                merged.insert(k, r);
            }
            assert_eq!(merged, reference, "{policy} {shape}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Any permutation of the input, with duplicates, split into any batches,
    /// yields identical rows once all windows are closed.
    #[test]
    fn aggregation_is_independent_of_order_batching_and_duplicates(
        values in proptest::collection::vec((0i64..600, -1e6f64..1e6), 1..120),
        seed in any::<u64>(),
        split in 1usize..20,
    ) {
        let y = "metric: m\nwindow: { type: sliding, size_secs: 120, slide_secs: 60 }\ngroup_by: [g]\naggregates: [count, sum, min, max, avg, last, p50, p99, rate, increase]\nallowed_lateness_secs: 10000\n";
        // Unique timestamps per series (seconds), two series.
        let mut uniq = BTreeMap::new();
        for (i, (t, v)) in values.iter().enumerate() {
            uniq.insert((i % 2, *t), *v);
        }
        let samples: Vec<Sample> = uniq
            .iter()
            .map(|((g, t), v)| s("m", &[("g", if *g == 0 { "x" } else { "y" })], t * 1000, *v))
            .collect();
        let mut a = engine(vec![("t", window(y))]);
        feed(&mut a, &samples);
        a.advance(0);
        let mut flush = a.drain_rows();
        flush.extend(close_everything(&mut a));

        let mut shuffled = samples.clone();
        shuffled.extend(samples.iter().step_by(3).cloned());
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut b = engine(vec![("t", window(y))]);
        for chunk in shuffled.chunks(split) {
            feed(&mut b, chunk);
        }
        let mut rows_b = b.drain_rows();
        rows_b.extend(close_everything(&mut b));
        prop_assert_eq!(latest(&flush), latest(&rows_b));
    }
}

/// Pushes the watermark far ahead with a sample of another series of the
/// same transform so every window closes.
fn close_everything(e: &mut Engine) -> Vec<AggregateRow> {
    feed(e, &[s("m", &[("g", "zz")], 100_000_000, 0.0)]);
    e.drain_rows()
        .into_iter()
        .filter(|r| &*r.labels != [("g".to_string(), "zz".to_string())].as_slice())
        .collect()
}

#[test]
fn drain_produces_aggregates_batches() {
    let mut e = engine(vec![("t", window(TUMBLING))]);
    let l = [("instance", "a")];
    feed(&mut e, &[s("cpu", &l, 0, 1.0), s("cpu", &l, 60_000, 2.0)]);
    let batches = e.drain();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].schema(), aggregates_schema());
    assert_eq!(batches[0].num_rows(), 1);
    assert!(e.drain().is_empty());
    assert_eq!(e.max_window_ms(), 60_000);
    assert_eq!(e.emitted_through("t").unwrap(), Some(60_000));
    assert_eq!(e.replay_from_ms(), Some(60_000));
}

#[test]
fn engine_can_move_to_another_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let e = engine(vec![("t", window(TUMBLING))]);
    assert_send(&e);
    let handle = std::thread::spawn(move || {
        let mut e = e;
        feed(&mut e, &[s("cpu", &[("instance", "a")], 0, 1.0)]);
        stats(&e, "t").accepted
    });
    assert_eq!(handle.join().ok(), Some(1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Arbitrary timestamps (including the extremes of i64), values (NaN,
    /// ±Inf), processing times and restarts never panic, and every selected
    /// sample is accounted for exactly once in the counters.
    #[test]
    fn weird_input_never_panics_and_counters_add_up(
        ops in proptest::collection::vec(
            (
                prop_oneof![
                    Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(-1i64),
                    -10_000_000i64..10_000_000, any::<i64>()
                ],
                prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), any::<f64>(), -1e3f64..1e3],
                0u8..4,
                0u8..3,
            ),
            1..60,
        ),
        sliding in any::<bool>(),
        update in any::<bool>(),
        restore_at in proptest::option::of(prop_oneof![Just(i64::MIN), Just(i64::MAX), -10_000_000i64..10_000_000]),
    ) {
        let shape = if sliding {
            "{ type: sliding, size_secs: 30, slide_secs: 10 }"
        } else {
            "{ type: tumbling, size_secs: 20 }"
        };
        let policy = if update { "update\nlate_retention_secs: 60" } else { "drop" };
        let y = format!(
            "metric: m\nwindow: {shape}\ngroup_by: [g]\naggregates: [count, sum, min, max, avg, last, p50, p90, p95, p99, rate, increase]\nlate_data: {policy}\nidle_timeout_secs: 5\n"
        );
        let util = "resource: memory\nwindow: { type: tumbling, size_secs: 20 }\ngroup_by: [g]\nusage: { metric: m, per_series: rate }\ncapacity: { metric: m, per_series: max, across: max }\nrequest: { value: 0 }\npricing: {}\n";
        let mut e = engine(vec![
            ("w", window(&y)),
            ("u", EngineTransform::Utilization(serde_yaml::from_str(util).unwrap())),
        ]);
        if let Some(t) = restore_at {
            e.mark_emitted("w", t).unwrap();
            e.mark_emitted("u", t).unwrap();
        }
        let mut now = 0i64;
        for (i, (ts, v, g, action)) in ops.iter().enumerate() {
            let sample = s("m", &[("g", ["a", "b", "c", ""][*g as usize])], *ts, *v);
            match action {
                0 => feed(&mut e, &[sample]),
                1 => e.replay(&samples_to_batch(&[sample])).unwrap(),
                _ => {
                    now = now.saturating_add(3_000 * i as i64);
                    e.advance(now);
                    feed(&mut e, &[sample]);
                }
            }
        }
        e.advance(i64::MAX);
        let rows = e.drain_rows();
        for r in &rows {
            prop_assert!(r.window_end > r.window_start || r.window_end == i64::MAX);
        }
        let _ = e.drain();
        let _ = e.replay_from_ms();
        for (_, st) in e.stats() {
            prop_assert_eq!(
                st.samples_in,
                st.accepted + st.late_updated + st.late_dropped + st.non_finite_dropped
                    + st.replay_rebuilt + st.replay_skipped
            );
        }
    }
}

#[test]
fn process_into_routes_batches_to_named_transforms() {
    let mut e = engine(vec![("a", window(TUMBLING)), ("b", window(TUMBLING))]);
    let l = [("instance", "x")];
    let batch = samples_to_batch(&[s("cpu", &l, 0, 1.0), s("cpu", &l, 60_000, 1.0)]);
    e.process_into(&["b"], &batch).unwrap();
    let rows = e.drain_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(&*rows[0].transform, "b");
    assert_eq!(stats(&e, "a").samples_in, 0);
    assert!(matches!(
        e.process_into(&["zz"], &batch),
        Err(EngineError::UnknownTransform(_))
    ));
}
