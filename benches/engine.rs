//! Throughput of the windowed stream engine: tumbling 60 s windows computing
//! avg / max / p95 over 10 000 series (samples per second on one core).
//!
//! Input: 10 000 series (`cpu{instance, service}`), one sample every 10 s for
//! 10 minutes, fed as one batch per scrape round (10 000 rows), like a
//! remote-write stream. Two groupings: per series (10 000 groups, one sketch
//! per series and window) and by service (100 groups).
//!
//! Run: `cargo bench --bench engine`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use scalecast::engine::{Engine, EngineTransform};
use scalecast::schema::{Label, SamplesBuilder, series_id};

const SERIES: usize = 10_000;
const STEP_MS: i64 = 10_000;
const ROUNDS: i64 = 60; // 10 minutes

fn batches() -> Vec<arrow::record_batch::RecordBatch> {
    let series: Vec<(Vec<Label>, u64)> = (0..SERIES)
        .map(|i| {
            let labels = vec![
                ("instance".to_string(), format!("node-{i}:9100")),
                ("service".to_string(), format!("svc-{}", i % 100)),
            ];
            let id = series_id("cpu", &labels);
            (labels, id)
        })
        .collect();
    (0..ROUNDS)
        .map(|r| {
            let mut b = SamplesBuilder::with_capacity(SERIES);
            for (i, (labels, id)) in series.iter().enumerate() {
                let ts = 1_700_000_000_000 + r * STEP_MS + (i as i64 % 1000);
                let v = ((i as f64) * 0.37 + r as f64 * 1.3).sin().abs() * 100.0;
                b.append_series("cpu", labels, *id, [(ts, v)]);
            }
            b.finish()
        })
        .collect()
}

fn engine(group_by: &str) -> Engine {
    let yaml = format!(
        "metric: cpu\nwindow: {{ type: tumbling, size_secs: 60 }}\ngroup_by: [{group_by}]\naggregates: [avg, max, p95]\nlate_data: drop\n"
    );
    let cfg = match serde_yaml::from_str(&yaml) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    };
    match Engine::build(&[("bench".to_string(), EngineTransform::Window(cfg))]) {
        Ok(e) => e,
        Err(e) => panic!("bench engine: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let input = batches();
    let total: u64 = input.iter().map(|b| b.num_rows() as u64).sum();
    let mut g = c.benchmark_group("engine_tumbling_avg_max_p95");
    g.throughput(Throughput::Elements(total));
    g.sample_size(10);
    for (name, group_by) in [
        ("10k_series_by_series", "instance"),
        ("10k_series_by_service", "service"),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || engine(group_by),
                |mut e| {
                    for batch in &input {
                        if let Err(err) = e.process(batch) {
                            panic!("process: {err}");
                        }
                    }
                    black_box(e.drain_rows().len())
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
