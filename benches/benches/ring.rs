//! Criterion benchmarks of the real SPSC ring (`spp_ipc::ring`) in a memfd
//! region, with the batching the proxy and workers use: the producer
//! publishes once per [`BATCH`] records, the consumer releases once per
//! [`BATCH`] records.
//!
//! * `ring/spsc_two_threads_64B`: a producer thread and a consumer thread
//!   move 64-byte records, both busy-polling; throughput in records/s.
//! * `ring/single_thread_push_pop_64B`: one thread pushes a batch, publishes,
//!   pops it and releases: the cost of the ring itself without cache-line
//!   transfers between cores.
//!
//! Compare ratios within one run (see docs on perf anchors), never absolute
//! numbers across machines.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spp_ipc::record::KIND_REQUEST;
use spp_ipc::ring::{self, Consumer, Producer, PushError};
use spp_ipc::shm::SharedRegion;
use std::time::{Duration, Instant};

/// Payload bytes of every record.
const RECORD_BYTES: usize = 64;
/// Data bytes of the benchmark ring.
const RING_CAPACITY: usize = 1 << 20;
/// Records per publish (producer) and per release (consumer).
const BATCH: u64 = 64;

/// A fresh ring and both of its ends. The region must outlive the ends.
fn ring() -> (SharedRegion, Producer, Consumer) {
    let region = SharedRegion::create("spp-bench-ring", ring::region_size(RING_CAPACITY))
        .expect("memfd region");
    // SAFETY: the region is fresh, page aligned and ours; the callers keep it
    // alive until both ends are gone, and attach exactly one of each.
    let (producer, consumer) = unsafe {
        ring::init(region.as_ptr(), RING_CAPACITY).expect("ring init");
        (
            Producer::attach(region.as_ptr(), RING_CAPACITY).expect("producer"),
            Consumer::attach(region.as_ptr(), RING_CAPACITY).expect("consumer"),
        )
    };
    (region, producer, consumer)
}

/// Pushes `count` records, publishing every [`BATCH`] and whenever full.
fn produce(producer: &mut Producer, count: u64) {
    let mut record = [0u8; RECORD_BYTES];
    for i in 0..count {
        record[..8].copy_from_slice(&i.to_le_bytes());
        loop {
            match producer.push(KIND_REQUEST, 0, &[&record]) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    producer.publish();
                    std::hint::spin_loop();
                }
                Err(PushError::TooLarge) => unreachable!("{RECORD_BYTES} bytes always fit"),
            }
        }
        if (i + 1).is_multiple_of(BATCH) {
            producer.publish();
        }
    }
    producer.publish();
}

/// Pops `count` records, releasing every [`BATCH`] and whenever empty.
fn consume(consumer: &mut Consumer, count: u64) {
    let mut seen = 0u64;
    while seen < count {
        match consumer.peek().expect("ring intact") {
            Some(record) => {
                black_box(record.data);
                let stride = record.stride();
                consumer.advance(stride);
                seen += 1;
                if seen.is_multiple_of(BATCH) {
                    consumer.release();
                }
            }
            None => {
                consumer.release();
                std::hint::spin_loop();
            }
        }
    }
    consumer.release();
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(1));
    group.bench_function("spsc_two_threads_64B", |b| {
        b.iter_custom(|iters| {
            let (region, mut producer, mut consumer) = ring();
            let elapsed = std::thread::scope(|scope| {
                let reader = scope.spawn(move || consume(&mut consumer, iters));
                let started = Instant::now();
                produce(&mut producer, iters);
                reader.join().expect("consumer thread");
                started.elapsed()
            });
            drop(region);
            elapsed
        })
    });
    group.finish();
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("single_thread_push_pop_64B", |b| {
        let (region, mut producer, mut consumer) = ring();
        b.iter(|| {
            produce(&mut producer, BATCH);
            consume(&mut consumer, BATCH);
        });
        drop(region);
    });
    group.finish();
}

/// Shorter than criterion's default (the ring is fast and stable) but with
/// its default sample size, which the two-thread figure needs on a noisy
/// 2-core machine.
fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = two_threads, single_thread
}
criterion_main!(benches);
