//! criterion: remote-write decode → Arrow (snappy + protobuf + validation +
//! RecordBatch), per 500-sample node_exporter-like request.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scalecast::schema::Sample;
use scalecast::sources::remote_write::{decode_body, encode_samples};

fn request() -> Vec<u8> {
    let mut samples = Vec::new();
    for cpu in 0..16 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            samples.push(Sample {
                name: "node_cpu_seconds_total".into(),
                labels: vec![
                    ("cpu".into(), cpu.to_string()),
                    ("instance".into(), "10.0.0.1:9100".into()),
                    ("job".into(), "node".into()),
                    ("mode".into(), mode.into()),
                ],
                ts_ms: 1_700_000_000_000,
                value: 12345.67 + cpu as f64,
            });
        }
    }
    let mut i = 0;
    while samples.len() < 500 {
        samples.push(Sample {
            name: format!("node_metric_{i}"),
            labels: vec![
                ("instance".into(), "10.0.0.1:9100".into()),
                ("job".into(), "node".into()),
            ],
            ts_ms: 1_700_000_000_000,
            value: i as f64,
        });
        i += 1;
    }
    encode_samples(&samples)
}

fn bench(c: &mut Criterion) {
    let body = request();
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(500));
    g.bench_function("decode_500_samples_to_arrow", |b| {
        b.iter(|| decode_body(std::hint::black_box(&body), 64 << 20).map(|d| d.batch.num_rows()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
