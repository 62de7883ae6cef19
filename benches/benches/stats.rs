//! What the per-request figures cost the worker: recording one latency in
//! a shared-memory histogram as its single writer (plain load + store, the
//! path `spp-worker` takes per request) against the same record with
//! `fetch_add` (the path plugin threads take), against the baseline of
//! bumping one plain counter. Run: `cargo bench -p spp-benches --bench stats`.

mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spp_ipc::histogram::SharedHistogram;
use spp_ipc::plugin_metrics::PluginMetrics;
use std::sync::atomic::{AtomicU64, Ordering};

/// Samples per iteration: spread over many buckets like real latencies.
const SAMPLES: u64 = 1024;

fn zeroed<T>() -> Box<T> {
    // SAFETY: only used for the shared-memory blocks, whose fields are all
    // atomics, for which all-zero is valid.
    unsafe { Box::<T>::new_zeroed().assume_init() }
}

/// A latency-like value for sample `i`: 1 µs .. ~1 ms.
fn sample(i: u64) -> u64 {
    1_000 + (i * 7_919) % 1_000_000
}

fn stats(c: &mut Criterion) {
    let mut group = c.benchmark_group("stats");
    group.throughput(Throughput::Elements(SAMPLES));

    let counter = AtomicU64::new(0);
    group.bench_function("baseline_counter_store", |b| {
        b.iter(|| {
            for i in 0..SAMPLES {
                let v = counter.load(Ordering::Relaxed);
                counter.store(v.wrapping_add(black_box(sample(i))), Ordering::Relaxed);
            }
        })
    });

    let hist: Box<SharedHistogram> = zeroed();
    group.bench_function("histogram_record_single_writer", |b| {
        b.iter(|| {
            for i in 0..SAMPLES {
                hist.record(black_box(sample(i)));
            }
        })
    });
    group.bench_function("histogram_record_shared", |b| {
        b.iter(|| {
            for i in 0..SAMPLES {
                hist.record_shared(black_box(sample(i)));
            }
        })
    });

    let metrics: Box<PluginMetrics> = zeroed();
    for n in 0..16 {
        let _ = metrics.count(format!("counter_{n}").as_bytes(), 0);
    }
    group.bench_function("plugin_count_by_name_16_names", |b| {
        b.iter(|| {
            for _ in 0..SAMPLES {
                let _ = metrics.count(black_box(b"counter_15"), 1);
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = stats
}
criterion_main!(benches);
