//! Forecasting speed (criterion): fit and update+predict per model on a NAB-sized series, and
//! the whole 17-series NAB backtest of `auto` (issue 7 speed target: < 10 s in release).
//!
//! Run: `cargo bench --bench forecast`. The NAB group reads `datasets/nab/realAWSCloudwatch`
//! (or `$SCALECAST_DATASETS/nab/realAWSCloudwatch`) and is skipped when absent.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use scalecast::forecast::backtest::{Protocol, backtest_series, expand_inputs, load_csv};
use scalecast::forecast::{MODEL_NAMES, ModelConfig, Series, model_by_name};

/// 3,225 five-minute points (the NAB training size): daily cycle, noise, rare spikes.
fn synthetic() -> Series {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let values = (0..3225)
        .map(|t| {
            let day = (2.0 * std::f64::consts::PI * t as f64 / 288.0).sin();
            let spike = if rnd() < 0.01 { 30.0 } else { 0.0 };
            40.0 + 8.0 * day + 3.0 * (rnd() - 0.5) + spike
        })
        .collect();
    Series {
        start_ms: 1_400_000_000_000,
        step_ms: 300_000,
        values,
    }
}

fn datasets_dir() -> PathBuf {
    std::env::var_os("SCALECAST_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets"))
}

fn bench_models(c: &mut Criterion) {
    let s = synthetic();
    let cfg = ModelConfig::default();
    let mut fit = c.benchmark_group("fit_3225_points");
    fit.sample_size(10);
    for name in MODEL_NAMES {
        fit.bench_function(name, |b| {
            b.iter(|| {
                let mut m = model_by_name(name, &cfg).expect("known model");
                m.fit(black_box(&s)).expect("fit");
                m
            })
        });
    }
    fit.finish();
    let mut step = c.benchmark_group("update_and_predict_h12");
    for name in MODEL_NAMES {
        let mut m = model_by_name(name, &cfg).expect("known model");
        m.fit(&s).expect("fit");
        let mut i = 0usize;
        step.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                m.update(black_box(s.values[i % s.values.len()]));
                m.predict(black_box(12)).expect("predict")
            })
        });
    }
    step.finish();
}

fn bench_nab(c: &mut Criterion) {
    let dir = datasets_dir().join("nab/realAWSCloudwatch");
    let Ok(files) = expand_inputs(&[dir.display().to_string()]) else {
        eprintln!("skipping NAB backtest bench: {} not found", dir.display());
        return;
    };
    let mut series = Vec::new();
    for f in &files {
        series.extend(load_csv(f, None, None, None).expect("NAB csv"));
    }
    let cfg = ModelConfig::default();
    let mut g = c.benchmark_group("backtest_nab_17_series");
    g.sample_size(10);
    for (label, threads) in [("auto_1_thread", 1), ("auto_all_cores", 0)] {
        let p = Protocol {
            threads,
            ..Protocol::default()
        };
        g.bench_function(label, |b| {
            b.iter(|| {
                backtest_series(black_box(&series), &["auto".to_string()], &cfg, &p)
                    .expect("backtest")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_models, bench_nab);
criterion_main!(benches);
