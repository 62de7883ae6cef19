//! spp-worker end to end against a fake proxy: the real binary, real
//! shared-memory rings and doorbells, real plugins (the Rust echo, the C
//! echo, its wrong-ABI variant, and a C test plugin with odd behaviours).

mod harness;

use harness::{behaviours_plugin, cargo_plugin, FakeProxy, Response, Worker, GROUP, INDEX};
use spp_ipc::layout::WorkerState;
use spp_ipc::record::{generation_tag, KIND_CLOSE, KIND_RESPONSE};
use spp_plugin_api::framing::encode_u32_be_prefixed as encode_frame;
use std::sync::atomic::Ordering;

/// Requests in flight at most in the bulk test (well inside the ring).
const WINDOW: usize = 256;

fn echo_plugin() -> std::path::PathBuf {
    cargo_plugin("libspp_echo.so")
}

/// Sends `count` echo frames with at most WINDOW in flight and checks every
/// reply, in order.
fn echo_round_trips(proxy: &mut FakeProxy, worker: &mut Worker, count: usize) {
    let mut sent = 0usize;
    let mut got = Vec::new();
    let mut checked = 0usize;
    while checked < count {
        while sent < count && sent - checked < WINDOW {
            let frame = encode_frame(format!("request {sent}").as_bytes());
            if proxy.push(sent as u64, &frame).is_none() {
                break;
            }
            sent += 1;
        }
        proxy.publish();
        proxy.collect(&mut got, 1, worker);
        for response in got.drain(..) {
            assert_eq!(response.kind, KIND_RESPONSE);
            assert_eq!(
                response.flow, checked as u64,
                "replies come back in request order"
            );
            assert_eq!(
                response.bytes,
                encode_frame(format!("request {checked}").as_bytes())
            );
            checked += 1;
        }
    }
}

#[test]
fn echo_replies_arrive_for_many_requests() {
    const COUNT: usize = 20_000;
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&echo_plugin(), "", 50);
    proxy.wait_ready(&mut worker);
    assert_eq!(proxy.end().worker_pid(), worker.pid() as u32);
    assert_eq!(proxy.end().worker_generation(), 1);

    echo_round_trips(&mut proxy, &mut worker, COUNT);

    // `completed_seq` is written after the replies it covers are published.
    proxy.wait_completed(COUNT as u64, &mut worker);
    let header = proxy.header();
    let stats = &header.stats;
    assert_eq!(stats.requests.load(Ordering::Relaxed), COUNT as u64);
    assert_eq!(stats.replies.load(Ordering::Relaxed), COUNT as u64);
    assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 0);
    assert!(stats.busy_ns.load(Ordering::Relaxed) > 0);
    assert!(header.heartbeat_ms.load(Ordering::Relaxed) > 0);

    assert_eq!(proxy.stop(&mut worker), 0, "stderr:\n{}", worker.stderr());
}

#[test]
fn the_c_echo_plugin_serves_too() {
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&cargo_plugin("libspp_echo_c.so"), "max_payload=100", 0);
    proxy.wait_ready(&mut worker);
    echo_round_trips(&mut proxy, &mut worker, 1000);
    assert_eq!(proxy.stop(&mut worker), 0);
    let stderr = worker.stderr();
    assert!(
        stderr.contains("echo-c: ready (worker)") && stderr.contains("echo-c: fini"),
        "plugin log lines:\n{stderr}"
    );
}

#[test]
fn the_two_group_plugin_answers_as_group_2() {
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&cargo_plugin("libspp_two_group.so"), "", 0);
    proxy.wait_ready(&mut worker);
    let big = vec![b'2'; 4000];
    for (flow, payload) in [(1, &b"2-small"[..]), (2, b""), (3, &big)] {
        proxy.push(flow, &encode_frame(payload));
    }
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, 3, &mut worker);
    for (response, payload) in got.iter().zip([&b"2-small"[..], b"", &big]) {
        assert_eq!(
            response.bytes,
            encode_frame(&[&b"g2:"[..], payload].concat())
        );
    }
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn a_sleeping_worker_is_woken_by_its_doorbell() {
    const ROUNDS: u64 = 5;
    let mut proxy = FakeProxy::new();
    // No spinning: the worker goes to sleep as soon as the ring is empty.
    let mut worker = proxy.spawn(&echo_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    let mut rang = 0;
    let mut got = Vec::new();
    for round in 0..ROUNDS {
        proxy.wait_asleep(&mut worker);
        // The worker may wake for its heartbeat between our look and the
        // push; then no ring is needed, and the reply must come anyway.
        if proxy.send(round, &encode_frame(b"wake up")) {
            rang += 1;
        }
        proxy.collect(&mut got, round as usize + 1, &mut worker);
        assert_eq!(
            got[round as usize],
            Response {
                kind: KIND_RESPONSE,
                flow: round,
                bytes: encode_frame(b"wake up")
            }
        );
    }
    assert!(
        rang > 0,
        "the doorbell was never needed: the worker never slept"
    );
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn sigterm_drains_the_ring_then_calls_fini_and_exits_0() {
    const COUNT: u64 = 300;
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 50);
    proxy.wait_ready(&mut worker);
    for flow in 0..COUNT {
        assert!(proxy.push(flow, format!("e{flow}").as_bytes()).is_some());
    }
    proxy.publish();
    // The proxy acknowledges at once: the worker still serves everything
    // already in its ring before it stops.
    assert_eq!(proxy.stop(&mut worker), 0, "stderr:\n{}", worker.stderr());

    let mut got = Vec::new();
    proxy.poll(&mut got);
    assert_eq!(
        got.len() as u64,
        COUNT + 1,
        "every queued request answered, plus fini's reply"
    );
    for (flow, response) in got.iter().take(COUNT as usize).enumerate() {
        assert_eq!(response.flow, flow as u64);
        assert_eq!(response.bytes, format!("e{flow}").as_bytes());
    }
    assert_eq!(
        got[COUNT as usize],
        Response {
            kind: KIND_RESPONSE,
            flow: COUNT - 1,
            bytes: b"fini".to_vec()
        }
    );
    assert_eq!(proxy.end().worker_state(), WorkerState::Draining);
    assert_eq!(proxy.end().completed_seq(), COUNT);
}

#[test]
fn plugin_behaviours_map_to_the_right_records() {
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    let requests: [(u64, &[u8]); 9] = [
        (1, b"i"),
        (2, b"m"),
        (3, b"x"),
        (4, b"p"),
        (5, b"c"),
        (6, b"z"),
        (7, b"L"),
        (8, b"dlater"),
        (9, b"efinal"),
    ];
    for (flow, bytes) in requests {
        proxy.push(flow, bytes);
    }
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, 11, &mut worker);
    // The deferred reply comes from another thread, at any point after its
    // request: check it apart from the in-order ones.
    let deferred_at = got
        .iter()
        .position(|r| r.flow == 8)
        .expect("deferred reply");
    let deferred = got.remove(deferred_at);
    assert_eq!(
        deferred,
        Response {
            kind: KIND_RESPONSE,
            flow: 8,
            bytes: b"deferred:later".to_vec()
        }
    );
    let reply = |flow: u64, bytes: &[u8]| Response {
        kind: KIND_RESPONSE,
        flow,
        bytes: bytes.to_vec(),
    };
    let info = format!("role=2 group={GROUP} index={INDEX} abi=1");
    let expected = vec![
        reply(1, info.as_bytes()),
        reply(2, b"1"),
        reply(2, b"2"),
        reply(2, b"3"),
        Response {
            kind: KIND_CLOSE,
            flow: 3,
            bytes: vec![],
        },
        Response {
            kind: KIND_CLOSE,
            flow: 4,
            bytes: vec![],
        },
        Response {
            kind: KIND_CLOSE,
            flow: 5,
            bytes: vec![],
        },
        reply(6, b""),
        reply(
            7,
            format!("rc={}", spp_plugin_api::abi::SPP_ERR_TOO_LARGE).as_bytes(),
        ),
        reply(9, b"efinal"),
    ];
    assert_eq!(got, expected);
    let stats = &proxy.header().stats;
    assert_eq!(stats.requests.load(Ordering::Relaxed), 9);
    assert_eq!(stats.process_errors.load(Ordering::Relaxed), 1);
    assert_eq!(stats.plugin_panics.load(Ordering::Relaxed), 1);
    assert_eq!(
        stats.replies_dropped.load(Ordering::Relaxed),
        1,
        "the too-large reply"
    );
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn many_deferred_replies_from_other_threads_arrive() {
    const COUNT: u64 = 200;
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    for flow in 0..COUNT {
        proxy.push(flow, format!("d{flow}").as_bytes());
    }
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, COUNT as usize, &mut worker);
    got.sort_by_key(|r| r.flow);
    for (flow, response) in got.iter().enumerate() {
        assert_eq!(response.bytes, format!("deferred:{flow}").as_bytes());
    }
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn a_failing_init_exits_with_the_plugins_code() {
    let proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&echo_plugin(), "bogus=1", 0);
    assert_eq!(worker.exit_code(), 1);
    let stderr = worker.stderr();
    assert!(stderr.contains("spp_init returned 1"), "{stderr}");
    assert!(
        stderr.contains("bad plugin_conf"),
        "the plugin's own log line: {stderr}"
    );

    let proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&behaviours_plugin(), "fail=7", 0);
    assert_eq!(worker.exit_code(), 7);
    assert!(worker.stderr().contains("spp_init returned 7"));
}

#[test]
fn a_wrong_abi_version_exits_with_status_2_naming_file_and_versions() {
    let plugin = cargo_plugin("libspp_echo_c_abi99.so");
    let proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&plugin, "", 0);
    assert_eq!(worker.exit_code(), 2);
    let stderr = worker.stderr();
    assert!(
        stderr.contains(&plugin.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(
        stderr.contains("ABI version 99") && stderr.contains("version 1"),
        "names both versions: {stderr}"
    );
    assert_eq!(
        proxy.end().worker_state(),
        WorkerState::Starting,
        "never Ready"
    );
}

#[test]
fn a_missing_plugin_or_launch_spec_exits_with_status_2() {
    let proxy = FakeProxy::new();
    let missing = std::path::Path::new("/nonexistent/libspp_missing.so");
    let mut worker = proxy.spawn(missing, "", 0);
    assert_eq!(worker.exit_code(), 2);
    assert!(worker.stderr().contains("/nonexistent/libspp_missing.so"));

    let mut worker = Worker::spawn(None, Vec::new());
    assert_eq!(worker.exit_code(), 2);
    assert!(worker.stderr().contains("SPP_LAUNCH is not set"));

    let mut worker = Worker::spawn(Some("{\"role\":\"worker\"}".into()), Vec::new());
    assert_eq!(worker.exit_code(), 2);
    assert!(worker.stderr().contains("SPP_LAUNCH is malformed"));
}

#[test]
fn a_new_worker_drops_its_dead_predecessors_requests() {
    let mut proxy = FakeProxy::new();
    for flow in 0..10 {
        proxy.push(flow, &encode_frame(b"stale"));
    }
    proxy.publish();
    let mut worker = proxy.spawn(&echo_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    proxy.send(100, &encode_frame(b"fresh"));
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(
        got,
        vec![Response {
            kind: KIND_RESPONSE,
            flow: 100,
            bytes: encode_frame(b"fresh")
        }]
    );
    assert_eq!(proxy.stop(&mut worker), 0);
}

#[test]
fn requests_stamped_for_another_generation_are_skipped_but_completed() {
    let mut proxy = FakeProxy::new();
    let mut worker = proxy.spawn(&echo_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    let generation = proxy.end().worker_generation();
    // Pushed for the predecessor (and failed by the proxy when it adopted
    // this worker), after this worker's start-up discard.
    let stale = generation_tag(generation.wrapping_sub(1));
    assert_ne!(stale, proxy.current_tag());
    proxy.push_tagged(1, &encode_frame(b"stale"), stale);
    proxy.push(2, &encode_frame(b"fresh"));
    proxy.publish();
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    // Both are completed (the stale one unserved), so the proxy's
    // accounting of the slot stays level.
    proxy.wait_completed(2, &mut worker);
    proxy.poll(&mut got);
    assert_eq!(
        got,
        vec![Response {
            kind: KIND_RESPONSE,
            flow: 2,
            bytes: encode_frame(b"fresh")
        }],
        "only the request for this generation is answered"
    );
    let stats = &proxy.header().stats;
    assert_eq!(stats.requests.load(Ordering::Relaxed), 1);
    assert_eq!(stats.replies.load(Ordering::Relaxed), 1);
    assert_eq!(proxy.stop(&mut worker), 0);
    assert!(worker.stderr().contains("another worker generation"));
}

#[test]
fn a_request_pushed_after_sigterm_before_the_proxy_noticed_is_served() {
    let mut proxy = FakeProxy::new();
    // No spinning: the draining worker sleeps and must be woken by the push.
    let mut worker = proxy.spawn(&behaviours_plugin(), "", 0);
    proxy.wait_ready(&mut worker);
    worker.signal(libc::SIGTERM);
    proxy.wait_state(WorkerState::Draining, &mut worker);
    // A proxy that has not scanned the slot since still dispatches to it.
    proxy.send(5, b"elate");
    let mut got = Vec::new();
    proxy.collect(&mut got, 1, &mut worker);
    assert_eq!(
        got[0],
        Response {
            kind: KIND_RESPONSE,
            flow: 5,
            bytes: b"elate".to_vec()
        }
    );
    proxy.ack_drain(&mut worker);
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
    proxy.poll(&mut got);
    assert_eq!(got.len(), 2, "then fini's reply: {got:?}");
    assert_eq!(got[1].bytes, b"fini");
    assert_eq!(proxy.end().completed_seq(), 1);
}
