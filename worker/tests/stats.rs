//! What a worker publishes about each request, against the fake proxy:
//! stale requests sent back as `KIND_EXPIRED` and counted, the queue-wait
//! and process-time histograms, `busy_ns`, the hang stamp
//! `in_process_since_ms`, and the plugin's own metrics (host services).

mod harness;

use harness::{behaviours_plugin, cargo_plugin, FakeProxy, Response, RING_CAPACITY};
use spp_ipc::layout::PairLayout;
use spp_ipc::record::{monotonic_ns, KIND_EXPIRED, KIND_RESPONSE, NS_PER_MS};
use spp_ipc::ring::MIN_CAPACITY;
use spp_plugin_api::abi::SPP_ERR_BAD_NAME;
use spp_plugin_api::framing::encode_u32_be_prefixed as encode_frame;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The group's `msg_timeout` in the stale-request tests: far longer than
/// any pause of a busy test machine, so a fresh request never expires.
const MSG_TIMEOUT: Duration = Duration::from_secs(10);
/// How old the stale requests claim to be.
const STALE_AGE: Duration = Duration::from_secs(30);
/// The sample behaviours.c's 't' records (its `LATENCY_SAMPLE_NS`).
const LATENCY_SAMPLE_NS: u64 = 1500;

fn response(kind: u16, flow: u64, bytes: &[u8]) -> Response {
    Response {
        kind,
        flow,
        bytes: bytes.to_vec(),
    }
}

#[test]
fn a_stale_request_goes_back_expired_with_its_bytes_and_is_counted() {
    // A response ring smaller than the request ring, so a request can be
    // too large to go back whole.
    let mut proxy = FakeProxy::with_layout(PairLayout {
        request_capacity: RING_CAPACITY,
        response_capacity: MIN_CAPACITY,
    });
    let mut spec = proxy.launch(&behaviours_plugin(), "", 0);
    spec.msg_timeout_ms = MSG_TIMEOUT.as_millis() as u64;
    let mut worker = proxy.spawn_spec(&spec);
    proxy.wait_ready(&mut worker);

    let too_big = vec![b'e'; MIN_CAPACITY];
    proxy.push_aged(1, b"estale", STALE_AGE);
    proxy.push_aged(2, &too_big, STALE_AGE);
    proxy.push(3, b"efresh");
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, 3, &mut worker);
    assert_eq!(
        got,
        vec![
            response(KIND_EXPIRED, 1, b"estale"),
            response(KIND_EXPIRED, 2, b""),
            response(KIND_RESPONSE, 3, b"efresh"),
        ],
        "the stale ones are not processed; the too-large one goes back without its bytes"
    );
    proxy.wait_completed(3, &mut worker);
    let header = proxy.header();
    let stats = &header.stats;
    assert_eq!(stats.stale_dropped.load(Ordering::Relaxed), 2);
    assert_eq!(
        stats.requests.load(Ordering::Relaxed),
        1,
        "only the fresh one"
    );
    assert_eq!(stats.replies.load(Ordering::Relaxed), 1);
    assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 0);
    let queue_wait = header.queue_wait.snapshot();
    assert_eq!(queue_wait.count, 3, "every request taken has its wait");
    assert!(
        queue_wait.max_ns >= STALE_AGE.as_nanos() as u64,
        "the stale ones' wait: {queue_wait:?}"
    );
    assert_eq!(header.process_time.snapshot().count, 1);
    assert_eq!(proxy.stop(&mut worker), 0, "stderr:\n{}", worker.stderr());
    assert!(worker.stderr().contains("waited longer than msg_timeout"));
}

#[test]
fn without_a_msg_timeout_an_old_request_is_processed() {
    let mut proxy = FakeProxy::new();
    // The harness's spec has `msg_timeout_ms: 0`.
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    proxy.push_aged(1, b"eold", STALE_AGE);
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(got, vec![response(KIND_RESPONSE, 1, b"eold")]);
    assert_eq!(
        proxy.header().stats.stale_dropped.load(Ordering::Relaxed),
        0
    );
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn a_request_inside_process_is_stamped_and_timed() {
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    let release = release_file("inside-process");
    proxy.send(1, format!("w{}", release.display()).as_bytes());

    proxy.wait_until(&mut worker, "in_process_since_ms", |h| {
        h.in_process_since_ms.load(Ordering::Relaxed) != 0
    });
    let seen_inside = Instant::now();
    let header = proxy.header();
    let since_ms = header.in_process_since_ms.load(Ordering::Relaxed);
    assert!(
        since_ms <= monotonic_ns() / NS_PER_MS,
        "a CLOCK_MONOTONIC ms in the past: {since_ms}"
    );
    assert_eq!(
        header.stats.requests.load(Ordering::Relaxed),
        1,
        "counted before the call"
    );
    assert_eq!(header.process_time.snapshot().count, 0, "not returned yet");

    // Taken before the file exists: the call cannot return before it.
    let released = Instant::now();
    std::fs::write(&release, b"").expect("create the release file");
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(got, vec![response(KIND_RESPONSE, 1, b"woke")]);
    let _ = std::fs::remove_file(&release);

    let header = proxy.header();
    // The batch ended before its replies were published.
    assert_eq!(header.in_process_since_ms.load(Ordering::Relaxed), 0);
    let process_time = header.process_time.snapshot();
    assert_eq!(process_time.count, 1);
    // The call began before we saw the stamp and returned after we made
    // the file, so it lasted at least the time in between.
    let between = released.duration_since(seen_inside).as_nanos() as u64;
    assert!(
        process_time.sum_ns >= between,
        "{} ns inside process, {between} ns between stamp and release",
        process_time.sum_ns
    );
    assert_eq!(
        header.stats.busy_ns.load(Ordering::Relaxed),
        process_time.sum_ns,
        "busy_ns is the time inside process"
    );
    assert_eq!(header.queue_wait.snapshot().count, 1);
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn every_request_of_a_bulk_run_is_timed() {
    const COUNT: u64 = 2000;
    const WINDOW: u64 = 256;
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&cargo_plugin("libspp_echo.so"), "", 50);
    proxy.wait_ready(&mut worker);
    let mut got = Vec::new();
    let mut sent = 0;
    while (got.len() as u64) < COUNT {
        while sent < COUNT && sent - (got.len() as u64) < WINDOW {
            if proxy.push(sent, &encode_frame(b"x")).is_none() {
                break;
            }
            sent += 1;
        }
        proxy.publish();
        let want = got.len() + 1;
        proxy.collect(&mut got, want, &mut worker);
    }
    proxy.wait_completed(COUNT, &mut worker);
    let header = proxy.header();
    let process_time = header.process_time.snapshot();
    assert_eq!(header.queue_wait.snapshot().count, COUNT);
    assert_eq!(process_time.count, COUNT);
    assert_eq!(
        process_time.buckets.iter().sum::<u64>(),
        COUNT,
        "each in one bucket"
    );
    assert_eq!(
        header.stats.busy_ns.load(Ordering::Relaxed),
        process_time.sum_ns
    );
    assert_eq!(header.in_process_since_ms.load(Ordering::Relaxed), 0);
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn plugin_counters_and_latencies_show_in_the_pair_header() {
    /// `MetricName` state of a slot being claimed (ipc's `CLAIMING`).
    const CLAIMING: u64 = 1;
    let mut proxy = FakeProxy::new();
    // A predecessor killed while claiming the first counter slot.
    proxy.header().plugin.counters[0]
        .name
        .state
        .store(CLAIMING, Ordering::Release);
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    let requests: [(u64, &[u8]); 4] = [
        (1, b"kcache_hits"),
        (2, b"kcache_hits"),
        (3, b"tdb_query"),
        (4, b"kbad name"),
    ];
    for (flow, bytes) in requests {
        proxy.push(flow, bytes);
    }
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, 4, &mut worker);
    let codes: Vec<_> = got.iter().map(|r| r.bytes.clone()).collect();
    let bad = format!("rc={SPP_ERR_BAD_NAME}").into_bytes();
    assert_eq!(
        codes,
        vec![b"rc=0".to_vec(), b"rc=0".to_vec(), b"rc=0".to_vec(), bad]
    );

    let plugin = &proxy.header().plugin;
    let snapshot = plugin.snapshot();
    assert_eq!(snapshot.counters, vec![("cache_hits".to_string(), 2)]);
    assert_eq!(
        plugin.counters[0].name.get().as_deref(),
        Some("cache_hits"),
        "the half-claimed slot was recovered at start-up"
    );
    assert_eq!(snapshot.latencies.len(), 1);
    let (name, histogram) = &snapshot.latencies[0];
    assert_eq!(name, "db_query");
    assert_eq!(histogram.count, 1);
    assert_eq!(histogram.sum_ns, LATENCY_SAMPLE_NS);
    assert_eq!(snapshot.refused, 1, "the bad name");
    assert_eq!(proxy.stop(&mut worker), 0);
}

/// A path for the 'w' behaviour to wait on; does not exist yet.
fn release_file(what: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("release-{what}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}
