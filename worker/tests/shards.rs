//! A worker fed by two proxy shards (`WorkerLaunch::other_shards`): the
//! real spp-worker with two pair regions, two proxy regions and proxy
//! doorbells, one worker doorbell; each shard played by its own
//! [`FakeProxy`] through the proxy end of its own pair.

mod harness;

use harness::{behaviours_plugin, cargo_plugin, FakeProxy, Response, Worker, DEADLINE};
use spp_ipc::flow_shard::{shard_of, with_shard};
use spp_ipc::launch::{AsyncSpec, MicroThreadSpec};
use spp_ipc::layout::WorkerState;
use spp_ipc::record::KIND_RESPONSE;
use spp_plugin_api::framing::encode_u32_be_prefixed as encode_frame;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Requests in flight per shard at most in the load test.
const WINDOW: usize = 128;

/// Shard 0 (whose launch carries the others) and shard 1 of one slot.
fn two_shards() -> (FakeProxy, FakeProxy) {
    let zero = FakeProxy::new();
    let one = zero.shard();
    (zero, one)
}

/// Waits until the worker is Ready on both pairs.
fn wait_ready(shards: &[&FakeProxy], worker: &mut Worker) {
    for shard in shards {
        shard.wait_ready(worker);
    }
}

/// Every response on `shard` until it holds `want`; then a last poll shows
/// nothing more came.
fn exactly(shard: &mut FakeProxy, want: usize, worker: &mut Worker) -> Vec<Response> {
    let mut got = Vec::new();
    shard.collect(&mut got, want, worker);
    shard.poll(&mut got);
    assert_eq!(got.len(), want, "{got:?}");
    got
}

#[test]
fn a_worker_fed_by_two_shards_answers_each_on_its_own_ring() {
    const COUNT: usize = 3000;
    let (mut zero, mut one) = two_shards();
    let spec = zero.launch_with_shards(&[&one], &cargo_plugin("libspp_echo.so"), "", 50);
    let mut worker = zero.spawn_spec(&spec);
    wait_ready(&[&zero, &one], &mut worker);
    for shard in [&zero, &one] {
        assert_eq!(shard.end().worker_pid(), worker.pid() as u32);
        assert_eq!(shard.end().worker_generation(), 1);
    }

    // Both shards load the worker at once; each checks its own answers,
    // in its own order.
    let mut sent = [0usize; 2];
    let mut checked = [0usize; 2];
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while checked.iter().any(|&c| c < COUNT) {
        assert!(Instant::now() < deadline, "checked only {checked:?}");
        for (k, shard) in [&mut zero, &mut one].into_iter().enumerate() {
            while sent[k] < COUNT && sent[k] - checked[k] < WINDOW {
                let flow = with_shard(sent[k] as u64, k as u16);
                let frame = encode_frame(format!("shard {k} request {}", sent[k]).as_bytes());
                if shard.push(flow, &frame).is_none() {
                    break;
                }
                sent[k] += 1;
            }
            shard.publish();
        }
        for (k, shard) in [&mut zero, &mut one].into_iter().enumerate() {
            if checked[k] == sent[k] {
                continue;
            }
            shard.collect(&mut got, 1, &mut worker);
            for response in got.drain(..) {
                assert_eq!(response.kind, KIND_RESPONSE);
                assert_eq!(
                    response.flow,
                    with_shard(checked[k] as u64, k as u16),
                    "shard {k}: only its own answers, in its order"
                );
                assert_eq!(usize::from(shard_of(response.flow)), k);
                assert_eq!(
                    response.bytes,
                    encode_frame(format!("shard {k} request {}", checked[k]).as_bytes())
                );
                checked[k] += 1;
            }
        }
    }

    for shard in [&zero, &one] {
        shard.wait_completed(COUNT as u64, &mut worker);
        assert!(
            shard.header().heartbeat_ms.load(Ordering::Relaxed) > 0,
            "every pair shows the heartbeat"
        );
    }
    // The worker's counters live in shard 0's pair only.
    let stats = &zero.header().stats;
    assert_eq!(stats.requests.load(Ordering::Relaxed), 2 * COUNT as u64);
    assert_eq!(stats.replies.load(Ordering::Relaxed), 2 * COUNT as u64);
    assert_eq!(stats.replies_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(one.header().stats.requests.load(Ordering::Relaxed), 0);

    worker.signal(libc::SIGTERM);
    zero.ack_drain(&mut worker);
    one.ack_drain(&mut worker);
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
}

#[test]
fn a_worker_fed_by_two_shards_drains_only_once_both_acknowledged() {
    let (mut zero, mut one) = two_shards();
    let spec = zero.launch_with_shards(&[&one], &behaviours_plugin(), "", 0);
    let mut worker = zero.spawn_spec(&spec);
    wait_ready(&[&zero, &one], &mut worker);

    worker.signal(libc::SIGTERM);
    // Every shard sees the drain on its own pair.
    zero.ack_drain(&mut worker);
    one.wait_state(WorkerState::Draining, &mut worker);
    // Shard 1 has not acknowledged: it may still push, and is served.
    let flow = with_shard(7, 1);
    one.send(flow, b"elate");
    let got = exactly(&mut one, 1, &mut worker);
    assert_eq!(
        (got[0].flow, got[0].bytes.as_slice()),
        (flow, &b"elate"[..])
    );
    assert!(worker.try_status().is_none(), "still draining shard 1");

    one.ack_drain_now();
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
    let mut rest = Vec::new();
    zero.poll(&mut rest);
    assert!(
        rest.iter().all(|r| shard_of(r.flow) == 0),
        "nothing of shard 1 on shard 0's ring: {rest:?}"
    );
}

#[test]
fn a_deferred_reply_lands_on_the_shard_of_its_flow() {
    let (mut zero, mut one) = two_shards();
    let spec = zero.launch_with_shards(&[&one], &behaviours_plugin(), "", 0);
    let mut worker = zero.spawn_spec(&spec);
    wait_ready(&[&zero, &one], &mut worker);

    // Answered later, from a plugin thread: the worker picks the pair by
    // the flow's shard bits.
    let (flow0, flow1) = (with_shard(3, 0), with_shard(3, 1));
    one.send(flow1, b"dfor-one");
    zero.send(flow0, b"dfor-zero");
    let got1 = exactly(&mut one, 1, &mut worker);
    let got0 = exactly(&mut zero, 1, &mut worker);
    assert_eq!(
        (got1[0].flow, got1[0].bytes.as_slice()),
        (flow1, &b"deferred:for-one"[..])
    );
    assert_eq!(
        (got0[0].flow, got0[0].bytes.as_slice()),
        (flow0, &b"deferred:for-zero"[..])
    );
    for shard in [&zero, &one] {
        shard.wait_completed(1, &mut worker);
    }
    worker.signal(libc::SIGTERM);
    zero.ack_drain(&mut worker);
    one.ack_drain(&mut worker);
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
}

#[test]
fn micro_thread_replies_after_a_sleep_land_on_their_own_shard() {
    const PER_SHARD: usize = 20;
    let (mut zero, mut one) = two_shards();
    let mut spec = zero.launch_with_shards(
        &[&one],
        &cargo_plugin("libspp_sleep_echo.so"),
        "sleep_ms=20",
        0,
    );
    spec.microthreads = Some(MicroThreadSpec {
        max_in_flight: 64,
        stack_size: 256 << 10,
    });
    let mut worker = zero.spawn_spec(&spec);
    wait_ready(&[&zero, &one], &mut worker);

    // Both shards' requests sleep at the same time, interleaved.
    for i in 0..PER_SHARD {
        for (k, shard) in [&mut zero, &mut one].into_iter().enumerate() {
            let frame = encode_frame(format!("{k}/{i}").as_bytes());
            assert!(shard.push(with_shard(i as u64, k as u16), &frame).is_some());
        }
    }
    zero.publish();
    one.publish();
    for (k, shard) in [&mut zero, &mut one].into_iter().enumerate() {
        let mut got = exactly(shard, PER_SHARD, &mut worker);
        got.sort_by_key(|r| r.flow);
        for (i, response) in got.iter().enumerate() {
            assert_eq!(response.flow, with_shard(i as u64, k as u16), "shard {k}");
            assert_eq!(response.bytes, encode_frame(format!("{k}/{i}").as_bytes()));
        }
        shard.wait_completed(PER_SHARD as u64, &mut worker);
    }
    worker.signal(libc::SIGTERM);
    zero.ack_drain(&mut worker);
    one.ack_drain(&mut worker);
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
}

#[test]
fn async_completions_land_on_their_own_shard_and_keep_a_flows_order() {
    const PER_SHARD: usize = 20;
    // From a plugin thread (deferred channel) and inside spp_poll.
    for conf in ["delay_ms=20", "delay_ms=20,driven=1"] {
        let (mut zero, mut one) = two_shards();
        let mut spec =
            zero.launch_with_shards(&[&one], &cargo_plugin("libspp_defer_c.so"), conf, 0);
        spec.async_tasks = Some(AsyncSpec {
            max_in_flight: 64,
            task_timeout_ms: 5000,
        });
        let mut worker = zero.spawn_spec(&spec);
        wait_ready(&[&zero, &one], &mut worker);

        // Per shard: one flow of PER_SHARD pipelined requests (one at a
        // time, in order) and PER_SHARD flows of one request (at once).
        for (k, shard) in [&mut zero, &mut one].into_iter().enumerate() {
            let piped = with_shard(1000, k as u16);
            for i in 0..PER_SHARD {
                let frame = encode_frame(format!("{k}/p{i}").as_bytes());
                assert!(shard.push(piped, &frame).is_some());
                let frame = encode_frame(format!("{k}/{i}").as_bytes());
                assert!(shard.push(with_shard(i as u64, k as u16), &frame).is_some());
            }
            shard.publish();
        }
        for (k, shard) in [&mut zero, &mut one].into_iter().enumerate() {
            let got = exactly(shard, 2 * PER_SHARD, &mut worker);
            let piped: Vec<_> = got
                .iter()
                .filter(|r| r.flow == with_shard(1000, k as u16))
                .map(|r| r.bytes.clone())
                .collect();
            let want: Vec<_> = (0..PER_SHARD)
                .map(|i| encode_frame(format!("{k}/p{i}").as_bytes()))
                .collect();
            assert_eq!(piped, want, "{conf}: shard {k}'s pipelined flow in order");
            let mut single: Vec<_> = got
                .iter()
                .filter(|r| r.flow != with_shard(1000, k as u16))
                .collect();
            single.sort_by_key(|r| r.flow);
            for (i, response) in single.iter().enumerate() {
                assert_eq!(response.flow, with_shard(i as u64, k as u16), "{conf}");
                assert_eq!(response.bytes, encode_frame(format!("{k}/{i}").as_bytes()));
            }
            shard.wait_completed(2 * PER_SHARD as u64, &mut worker);
        }
        zero.wait_until(&mut worker, "nothing in flight", |h| {
            h.stats.in_flight.load(Ordering::Relaxed) == 0
        });
        worker.signal(libc::SIGTERM);
        zero.ack_drain(&mut worker);
        one.ack_drain(&mut worker);
        assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
    }
}

#[test]
fn shards_out_of_order_or_sharing_a_pair_are_refused_at_start() {
    let (zero, one) = two_shards();
    let plugin = behaviours_plugin();
    let mut spec = zero.launch_with_shards(&[&one], &plugin, "", 0);
    spec.other_shards[0].shard = 2;
    let mut worker = zero.spawn_spec(&spec);
    assert_eq!(worker.exit_code(), spp_ipc::launch::exit_code::SETUP);
    assert!(worker.stderr().contains("in order"), "{}", worker.stderr());

    // Shard 1's pair is shard 0's again.
    let mut spec = zero.launch_with_shards(&[&one], &plugin, "", 0);
    spec.other_shards[0].region_fd = zero.pair().raw_fd();
    let mut worker = zero.spawn_spec(&spec);
    assert_eq!(worker.exit_code(), spp_ipc::launch::exit_code::SETUP);
    assert!(worker.stderr().contains("both fd"), "{}", worker.stderr());
}

/// A file name in the test's scratch dir, removed first.
fn release_file(name: &str) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_flooding_shard_does_not_starve_another() {
    /// Shard 0's echoes before its second wait: more than two batches.
    const BEFORE: u64 = 200;
    const AFTER: u64 = 50;
    let (mut zero, mut one) = two_shards();
    let spec = zero.launch_with_shards(&[&one], &behaviours_plugin(), "", 0);
    let mut worker = zero.spawn_spec(&spec);
    wait_ready(&[&zero, &one], &mut worker);
    let (first, second) = (release_file("flood-first"), release_file("flood-second"));

    // Hold the worker inside shard 0's first request while both shards
    // queue: shard 0 a flood with a second wait deep inside it, shard 1
    // one request.
    zero.send(1, format!("w{}", first.display()).as_bytes());
    zero.wait_until(&mut worker, "inside process", |h| {
        h.in_process_since_ms.load(Ordering::Relaxed) != 0
    });
    for flow in 2..2 + BEFORE {
        zero.push(flow, format!("e{flow}").as_bytes());
    }
    let held = 2 + BEFORE;
    zero.push(held, format!("w{}", second.display()).as_bytes());
    for flow in held + 1..=held + AFTER {
        zero.push(flow, format!("e{flow}").as_bytes());
    }
    zero.publish();
    let trickle = with_shard(1, 1);
    one.send(trickle, b"etrickle");
    std::fs::write(&first, b"").expect("create the first release file");

    // Shard 0 gets a bounded batch per turn: shard 1 is answered before
    // the worker reaches shard 0's second wait.
    let got = exactly(&mut one, 1, &mut worker);
    assert_eq!(
        (got[0].flow, got[0].bytes.as_slice()),
        (trickle, &b"etrickle"[..])
    );

    // Inside shard 0's second wait: every pair shows "inside process"
    // (each shard's overdue rule reads its own pair); only shard 0's pair
    // names the request (its seq, for poison).
    zero.wait_until(&mut worker, "inside the second wait", |h| {
        h.in_process_seq.load(Ordering::Relaxed) == held
    });
    assert_ne!(one.header().in_process_since_ms.load(Ordering::Relaxed), 0);
    assert_eq!(one.header().in_process_seq.load(Ordering::Relaxed), 0);

    std::fs::write(&second, b"").expect("create the second release file");
    let got = exactly(&mut zero, (held + AFTER) as usize, &mut worker);
    let flows: Vec<u64> = got.iter().map(|r| r.flow).collect();
    assert_eq!(flows, (1..=held + AFTER).collect::<Vec<_>>(), "in order");
    worker.signal(libc::SIGTERM);
    zero.ack_drain(&mut worker);
    one.ack_drain(&mut worker);
    assert_eq!(worker.exit_code(), 0, "stderr:\n{}", worker.stderr());
    let _ = std::fs::remove_file(&first);
    let _ = std::fs::remove_file(&second);
}
