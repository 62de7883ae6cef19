//! Both ends of a pair together in one process: one memfd pair region
//! mapped twice (the proxy's mapping and the worker's), as across
//! processes.

use super::*;
use crate::layout::{PairLayout, PairRegion, ProxyRegion, WorkerState};
use crate::ring::{PushError, MIN_CAPACITY};
use proptest::prelude::*;
use spp_plugin_api::abi::SppConnInfo;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

const LAYOUT: PairLayout = PairLayout {
    request_capacity: MIN_CAPACITY,
    response_capacity: MIN_CAPACITY,
};

/// The worker's side of the shared state: its own mapping of the pair,
/// its doorbell, the proxy region and the proxy's doorbell.
struct WorkerSide {
    pair: PairRegion,
    bell: Doorbell,
    proxy: ProxyRegion,
    proxy_bell: Doorbell,
}

fn dup(fd: RawFd) -> RawFd {
    // SAFETY: dup of an fd this test owns.
    let copy = unsafe { libc::dup(fd) };
    assert!(copy >= 0, "dup");
    copy
}

/// A fresh pair: the proxy's end, and the worker's side to attach to.
fn rig(layout: PairLayout) -> (ProxyEnd, WorkerSide) {
    let pair = PairRegion::create(1, 0, layout).unwrap();
    let bell = Doorbell::create().unwrap();
    // SAFETY: fresh fds of our own, each adopted once.
    let worker = unsafe {
        WorkerSide {
            pair: PairRegion::open(dup(pair.raw_fd()), layout).unwrap(),
            bell: Doorbell::from_raw_fd(dup(bell.raw_fd())),
            proxy: ProxyRegion::create().unwrap(),
            proxy_bell: Doorbell::create().unwrap(),
        }
    };
    // SAFETY: the only proxy end of this fresh region.
    let proxy = unsafe { ProxyEnd::attach(pair, bell).unwrap() };
    (proxy, worker)
}

/// The worker takes the slot and attaches both rings.
fn take(w: &WorkerSide) -> (WorkerSlot<'_>, WorkerRequests<'_>, WorkerResponses<'_>) {
    let slot = WorkerSlot::take(&w.pair, &w.proxy_bell, 4242);
    // SAFETY: one worker end per test; `w` outlives them.
    let (requests, responses) = unsafe {
        (
            slot.attach_requests(&w.bell).unwrap(),
            slot.attach_responses(&w.proxy).unwrap(),
        )
    };
    slot.set_ready();
    (slot, requests, responses)
}

fn conn(flow: u64) -> SppConnInfo {
    SppConnInfo {
        flow,
        ..Default::default()
    }
}

/// A reply as the proxy got it: flow, bytes, close.
type Reply = (u64, Vec<u8>, bool);

/// Every response record published, as (flow, bytes, close), and how many
/// in-flight requests the drain popped.
fn drain_all(proxy: &mut ProxyEnd) -> (Vec<Reply>, Vec<InFlight>) {
    let mut got = Vec::new();
    let drained = proxy.drain_responses(usize::MAX, |rec| match rec {
        ResponseRecord::Reply { flow, bytes, close } => got.push((flow, bytes.to_vec(), close)),
        other => panic!("unexpected {other:?}"),
    });
    assert!(drained.corrupt.is_none());
    let mut done = Vec::new();
    proxy.pop_completed(&drained, |entry| done.push(entry));
    (got, done)
}

/// The worker serves every published request of its generation: echoes
/// it, completes it. Returns the flows served and the tags skipped.
fn serve_all(
    requests: &mut WorkerRequests<'_>,
    responses: &mut WorkerResponses<'_>,
) -> (Vec<u64>, Vec<u16>) {
    let (mut served, mut skipped) = (Vec::new(), Vec::new());
    while let Some(record) = requests.peek().unwrap() {
        match record.request {
            Request::Mine { meta, bytes, .. } => {
                responses
                    .push(ResponseKind::Reply, meta.conn.flow, bytes)
                    .unwrap();
                responses.complete(meta.seq);
                served.push(meta.conn.flow);
            }
            Request::OtherGeneration { meta, tag } => {
                responses.complete(meta.seq);
                skipped.push(tag);
            }
            other => panic!("unexpected {other:?}"),
        }
        let stride = record.stride();
        requests.advance(stride);
    }
    requests.release();
    (served, skipped)
}

#[test]
fn a_note_travels_between_meta_and_bytes_and_is_bounded() {
    let (mut proxy, w) = rig(LAYOUT);
    let (_slot, mut requests, _responses) = take(&w);
    let tag = RequestTag::of(proxy.worker_generation());
    proxy
        .push_noted(tag, &conn(1), b"len=4", b"ping", 7)
        .unwrap();
    proxy.push(tag, &conn(2), b"pong", 7).unwrap();
    let too_long = [0u8; spp_plugin_api::abi::SPP_NOTE_MAX + 1];
    assert_eq!(
        proxy.push_noted(tag, &conn(3), &too_long, b"x", 7),
        Err(PushError::TooLarge)
    );
    proxy.publish();
    let mut seen = Vec::new();
    while let Some(record) = requests.peek().unwrap() {
        match record.request {
            Request::Mine { meta, note, bytes } => {
                assert!(meta.conn.note.is_null(), "no pointer crosses the ring");
                assert_eq!(meta.conn.note_len as usize, note.len());
                seen.push((meta.conn.flow, note.to_vec(), bytes.to_vec()));
            }
            other => panic!("unexpected {other:?}"),
        }
        let stride = record.stride();
        requests.advance(stride);
    }
    assert_eq!(
        seen,
        vec![
            (1, b"len=4".to_vec(), b"ping".to_vec()),
            (2, Vec::new(), b"pong".to_vec())
        ]
    );
}

#[test]
fn requests_and_replies_become_visible_only_when_published() {
    let (mut proxy, w) = rig(LAYOUT);
    let (slot, mut requests, mut responses) = take(&w);
    assert_eq!(proxy.worker_state(), WorkerState::Ready);
    assert_eq!(proxy.worker_generation(), slot.generation());
    assert_eq!(proxy.worker_pid(), 4242);
    let tag = RequestTag::of(proxy.worker_generation());
    for flow in 10..13 {
        let seq = proxy.push(tag, &conn(flow), b"ping", 7).unwrap();
        assert_eq!(seq, flow - 9);
    }
    assert!(proxy.has_unpublished());
    assert!(!requests.has_requests(), "not published yet");
    assert!(!proxy.publish(), "the worker is awake: no ring");
    assert!(!proxy.has_unpublished());
    assert_eq!(proxy.in_flight(), 3);

    let (served, skipped) = serve_all(&mut requests, &mut responses);
    assert_eq!(served, vec![10, 11, 12]);
    assert!(skipped.is_empty());
    let (got, done) = drain_all(&mut proxy);
    assert!(
        got.is_empty() && done.is_empty(),
        "the worker has not published"
    );
    assert_eq!(proxy.completed_seq(), 0);

    assert!(responses.publish());
    assert_eq!(proxy.completed_seq(), 3);
    let (got, done) = drain_all(&mut proxy);
    assert_eq!(
        got,
        (10..13)
            .map(|f| (f, b"ping".to_vec(), false))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        done,
        (10..13)
            .map(|flow| InFlight {
                seq: flow - 9,
                flow,
                enqueued_ns: 7,
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(proxy.in_flight(), 0);
    assert_eq!(slot.backlog(), 0);
}

#[test]
fn a_dead_worker_names_the_request_it_held_only_while_in_flight() {
    let (mut proxy, w) = rig(LAYOUT);
    let (_slot, _requests, _responses) = take(&w);
    let tag = RequestTag::of(proxy.worker_generation());
    assert_eq!(proxy.died_holding(), None, "nothing in process");
    let seqs: Vec<u64> = [&b"fine"[..], b"poison", b"later"]
        .iter()
        .zip(1..)
        .map(|(req, flow)| proxy.push(tag, &conn(flow), req, 7).unwrap())
        .collect();
    proxy.publish();
    // The worker died inside `spp_process` with the second request.
    let header = w.pair.header();
    header.in_process_seq.store(seqs[1], Ordering::Relaxed);
    let hash = crate::poison::request_hash(b"poison");
    assert_eq!(proxy.died_holding(), Some(hash));
    // Once its requests failed, what it left names nothing: a successor
    // that dies holding none is not booked again.
    while proxy.take_in_flight().is_some() {}
    assert_eq!(proxy.died_holding(), None);
}

#[test]
fn a_completion_is_published_after_its_replies() {
    let (mut proxy, w) = rig(LAYOUT);
    let (_slot, mut requests, mut responses) = take(&w);
    let tag = RequestTag::of(proxy.worker_generation());
    proxy.push(tag, &conn(1), b"a", 0).unwrap();
    proxy.push(tag, &conn(2), b"b", 0).unwrap();
    proxy.publish();
    let record = requests.peek().unwrap().unwrap();
    let Request::Mine { meta, .. } = record.request else {
        panic!("a request of this generation");
    };
    assert_eq!(meta.seq, 1);
    let stride = record.stride();
    requests.advance(stride);
    responses.push(ResponseKind::Reply, 1, b"one").unwrap();
    responses.push(ResponseKind::Close, 1, b"").unwrap();
    responses.complete(1);
    assert_eq!(proxy.completed_seq(), 0, "stored at the publish");
    responses.publish();
    // A drain cut short by its bound: the completed_seq it loaded first
    // covers seq 1, whose close is still in the ring.
    let mut first = Vec::new();
    let drained = proxy.drain_responses(1, |rec| first.push(format!("{rec:?}")));
    assert_eq!((drained.taken, drained.more), (1, true));
    assert_eq!(drained.completed_seq(), 1);
    let (rest, done) = drain_all(&mut proxy);
    assert_eq!(rest, vec![(1, Vec::new(), true)]);
    assert_eq!(
        done,
        vec![InFlight {
            seq: 1,
            flow: 1,
            enqueued_ns: 0
        }]
    );
    assert_eq!(proxy.pop_completed(&drained, |_| {}), 0, "popped once");
    assert_eq!(proxy.in_flight(), 1);
    assert_eq!(
        proxy.oldest_in_flight().map(|f| f.seq),
        Some(2),
        "the oldest left"
    );
    assert_eq!(
        proxy.take_in_flight(),
        Some(InFlight {
            seq: 2,
            flow: 2,
            enqueued_ns: 0
        })
    );
    assert_eq!(proxy.take_in_flight(), None);
}

#[test]
fn requests_for_another_generation_are_told_apart_and_old_ones_dropped() {
    let (mut proxy, w) = rig(LAYOUT);
    // Pushed for generation 0 before any worker took the slot: dropped at
    // attach.
    proxy.push(RequestTag::of(0), &conn(1), b"old", 0).unwrap();
    proxy.publish();
    let (slot, mut requests, mut responses) = take(&w);
    assert_eq!(slot.generation(), 1);
    assert_eq!(requests.tag(), RequestTag::of(1));
    assert!(
        !requests.has_requests(),
        "the predecessor's requests are gone"
    );
    proxy
        .push(RequestTag::of(0), &conn(2), b"stale", 0)
        .unwrap();
    proxy.push(slot.tag(), &conn(3), b"fresh", 0).unwrap();
    proxy.publish();
    let (served, skipped) = serve_all(&mut requests, &mut responses);
    assert_eq!(served, vec![3]);
    assert_eq!(skipped, vec![RequestTag::of(0).raw()]);
    responses.publish();
    assert_eq!(proxy.completed_seq(), 3, "the skipped one completes too");
    let (got, done) = drain_all(&mut proxy);
    assert_eq!(got, vec![(3, b"fresh".to_vec(), false)]);
    assert_eq!(done.len(), 3);

    // A successor takes a new generation (one worker end at a time).
    let _ = (requests, responses);
    let (next, _r, _s) = take(&w);
    assert_eq!(next.generation(), 2);
    assert_eq!(proxy.worker_generation(), 2);
}

#[test]
fn a_restarted_proxy_continues_after_pushed_seq() {
    let (mut proxy, w) = rig(LAYOUT);
    let tag = RequestTag::of(0);
    proxy.push(tag, &conn(1), b"x", 0).unwrap();
    proxy.push(tag, &conn(2), b"x", 0).unwrap();
    proxy.publish();
    proxy.push(tag, &conn(3), b"unpublished", 0).unwrap();
    assert_eq!(proxy.last_pushed_seq(), 3);
    drop(proxy);
    // SAFETY: the previous end is gone; fresh fds of our own.
    let again = unsafe {
        ProxyEnd::attach(
            PairRegion::open(dup(w.pair.raw_fd()), LAYOUT).unwrap(),
            Doorbell::create().unwrap(),
        )
        .unwrap()
    };
    assert_eq!(again.last_pushed_seq(), 2, "after the published pushed_seq");
}

#[test]
fn the_drain_handshake() {
    let (mut proxy, w) = rig(LAYOUT);
    let (slot, requests, _responses) = take(&w);
    let tag = slot.tag();
    slot.start_draining();
    assert!(w.proxy_bell.wait(Duration::ZERO), "the proxy was rung");
    assert_eq!(proxy.worker_state(), WorkerState::Draining);
    assert!(!slot.drain_acked());
    proxy.push(tag, &conn(1), b"last", 0).unwrap();
    assert!(proxy.ack_drain(slot.generation() + 1) && !slot.drain_acked());
    assert!(proxy.ack_drain(slot.generation()), "newly acknowledged");
    assert!(!proxy.ack_drain(slot.generation()), "only once");
    assert_eq!(proxy.drain_ack(), slot.generation());
    assert!(slot.drain_acked());
    assert!(
        requests.has_requests(),
        "what was pushed before the ack is published with it"
    );
    assert_eq!(slot.backlog(), 1);
}

#[test]
fn a_sleeping_worker_is_rung_once_per_sleep() {
    let (mut proxy, w) = rig(LAYOUT);
    let (slot, requests, _responses) = take(&w);
    let tag = slot.tag();
    assert_eq!(
        requests.sleep(Duration::ZERO, || false),
        Slept::TimedOut,
        "nothing to do, nobody rings"
    );
    // The push lands between the announce and the block: the publish
    // sees the flag and rings, so the sleep ends at once.
    let mut rang = None;
    let slept = requests.sleep(Duration::from_secs(10), || {
        assert!(proxy.worker_sleeping(), "announced");
        proxy.push(tag, &conn(1), b"x", 0).unwrap();
        rang = Some(proxy.publish());
        false
    });
    assert_eq!((slept, rang), (Slept::Rung, Some(true)));
    assert!(!proxy.worker_sleeping(), "cleared");
    // Work already there: no block.
    assert_eq!(
        requests.sleep(Duration::from_secs(10), || false),
        Slept::Work
    );
    proxy.push(tag, &conn(2), b"x", 0).unwrap();
    assert!(!proxy.publish(), "awake: no ring");
}

#[test]
fn another_thread_of_the_worker_wakes_its_main_loop() {
    let (proxy, w) = rig(LAYOUT);
    let (slot, requests, _responses) = take(&w);
    // A plugin thread's deferred reply, through another hold on the slot.
    let other_thread = WorkerSlot::held(&w.pair, &w.proxy_bell, slot.generation());
    assert_eq!(other_thread.tag(), slot.tag());
    assert!(!other_thread.wake_worker(&w.bell), "awake: no ring");
    let slept = requests.sleep(Duration::from_secs(10), || {
        assert!(proxy.worker_sleeping());
        assert!(other_thread.wake_worker(&w.bell));
        false
    });
    assert_eq!(slept, Slept::Rung);
    assert_eq!(proxy.worker_generation(), 1, "a hold bumps nothing");
}

#[test]
fn a_sleeping_proxy_is_woken_by_replies_and_by_bare_completions() {
    let (mut proxy, w) = rig(LAYOUT);
    let (slot, mut requests, mut responses) = take(&w);
    let sleep = ProxySleep::new(&w.proxy);
    proxy.push(slot.tag(), &conn(1), b"x", 0).unwrap();
    proxy.push(slot.tag(), &conn(2), b"x", 0).unwrap();
    proxy.publish();
    serve_all(&mut requests, &mut responses);
    let slept = sleep.sleep(&w.proxy_bell, Duration::from_secs(10), || {
        assert!(sleep.announced());
        assert!(responses.publish());
        false
    });
    assert_eq!(slept, Slept::Rung);
    assert!(!sleep.announced());
    // Nothing new: no wake.
    sleep.announce();
    assert!(!responses.publish() && sleep.announced());
    // A completion without a reply wakes it.
    responses.complete(5);
    assert!(!responses.publish(), "no records");
    assert!(!sleep.announced(), "but woken");
    assert!(w.proxy_bell.wait(Duration::ZERO));
    sleep.clear();
    assert_eq!(proxy.completed_seq(), 5);
}

#[test]
fn expired_records_reach_the_proxy_as_such_and_oversized_replies_are_refused() {
    let (mut proxy, w) = rig(LAYOUT);
    let (_slot, _requests, mut responses) = take(&w);
    responses
        .push(ResponseKind::Expired, 9, b"late request")
        .unwrap();
    responses.push(ResponseKind::Expired, 8, b"").unwrap();
    responses.publish();
    let mut got = Vec::new();
    let drained = proxy.drain_responses(usize::MAX, |rec| match rec {
        ResponseRecord::Expired { flow, request } => got.push((flow, request.to_vec())),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(drained.taken, 2);
    assert_eq!(got, vec![(9, b"late request".to_vec()), (8, Vec::new())]);
    assert_eq!(
        responses.max_payload(),
        crate::ring::max_payload_for(MIN_CAPACITY) - crate::record::RESPONSE_META_SIZE
    );
    assert!(responses
        .push(
            ResponseKind::Reply,
            1,
            &vec![0; responses.max_payload() + 1]
        )
        .is_err());
}

/// Many requests between two threads: every in-flight entry a drain that
/// emptied the ring pops has had its reply delivered first (rule 2), in
/// order.
#[test]
fn two_threads_keep_replies_ahead_of_completions() {
    const N: u64 = 200_000;
    let layout = PairLayout {
        request_capacity: 1 << 16,
        response_capacity: 1 << 16,
    };
    let (mut proxy, w) = rig(layout);
    let w = &w;
    // Set if the proxy side panics, so the worker thread ends and the
    // scope can report the panic instead of waiting for it forever.
    let failed = AtomicBool::new(false);
    struct SetOnPanic<'a>(&'a AtomicBool);
    impl Drop for SetOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::SeqCst);
            }
        }
    }
    std::thread::scope(|scope| {
        let (slot, mut requests, mut responses) = take(w);
        let tag = slot.tag();
        let failed = &failed;
        scope.spawn(move || {
            let mut served = 0;
            while served < N && !failed.load(Ordering::SeqCst) {
                let (flows, _) = serve_all(&mut requests, &mut responses);
                served += flows.len() as u64;
                responses.publish();
                if flows.is_empty() {
                    requests.sleep(Duration::from_millis(10), || false);
                }
            }
        });
        let _guard = SetOnPanic(failed);
        let sleep = ProxySleep::new(&w.proxy);
        let (mut next_flow, mut delivered, mut popped) = (0u64, 0u64, 0u64);
        while popped < N {
            while next_flow < N {
                match proxy.push(tag, &conn(next_flow), &next_flow.to_le_bytes(), 0) {
                    Ok(_) => next_flow += 1,
                    Err(PushError::Full) => break,
                    Err(PushError::TooLarge) => unreachable!(),
                }
            }
            proxy.publish();
            let drained = proxy.drain_responses(1024, |rec| {
                let ResponseRecord::Reply { flow, bytes, .. } = rec else {
                    panic!("unexpected {rec:?}");
                };
                assert_eq!(flow, delivered, "replies in order");
                assert_eq!(bytes, flow.to_le_bytes());
                delivered += 1;
            });
            let emptied = !drained.more;
            proxy.pop_completed(&drained, |entry| {
                assert_eq!(entry.flow, popped);
                if emptied {
                    assert!(entry.flow < delivered, "completed before its reply");
                }
                popped += 1;
            });
            if drained.taken == 0 {
                sleep.sleep(&w.proxy_bell, Duration::from_millis(10), || {
                    proxy.responses_waiting()
                });
            }
        }
    });
    assert_eq!(proxy.in_flight(), 0);
}

/// The model's rings: requests may fill theirs, responses never do
/// (120 steps × 7 requests × 2 replies of 24 bytes).
const MODEL_LAYOUT: PairLayout = PairLayout {
    request_capacity: 1 << 14,
    response_capacity: 1 << 17,
};

/// One step of the model.
#[derive(Clone, Debug)]
enum Step {
    /// The proxy pushes this many requests (as many as fit).
    Push(u8),
    /// The proxy publishes.
    Publish,
    /// The worker serves up to this many requests (as many as it can
    /// answer), each with this many replies.
    Serve(u8, u8),
    /// The worker publishes.
    WorkerPublish,
    /// The proxy drains up to this many records, then pops.
    Drain(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..8).prop_map(Step::Push),
        Just(Step::Publish),
        (1u8..8, 0u8..3).prop_map(|(n, r)| Step::Serve(n, r)),
        Just(Step::WorkerPublish),
        (1u8..16).prop_map(Step::Drain),
    ]
}

proptest! {
    /// Any interleaving of the two ends' steps: `seq`s are handed out in
    /// order, a drain that empties the ring pops a request only after every
    /// reply it made was delivered, `completed_seq` never passes `pushed_seq`, and once both
    /// sides flush, nothing is left in flight.
    #[test]
    fn seq_and_completion_stay_ordered(steps in prop::collection::vec(step(), 1..120)) {
        let (mut proxy, w) = rig(MODEL_LAYOUT);
        let (slot, mut requests, mut responses) = take(&w);
        let tag = slot.tag();
        // Per seq: replies made, replies delivered.
        let mut made = vec![0u32; 1];
        let mut delivered = vec![0u32; 1];
        let mut next_flow = 1u64;
        let mut popped = 0u64;
        let mut pushed = 0u64;
        let drain = |proxy: &mut ProxyEnd, cap: usize, made: &[u32], delivered: &mut Vec<u32>, popped: &mut u64| {
            let drained = proxy.drain_responses(cap, |rec| {
                let ResponseRecord::Reply { flow, .. } = rec else { panic!("{rec:?}") };
                delivered[flow as usize] += 1;
            });
            assert!(drained.corrupt.is_none());
            let emptied = !drained.more;
            proxy.pop_completed(&drained, |entry| {
                *popped += 1;
                assert_eq!(entry.seq, *popped, "popped in seq order");
                assert_eq!(entry.flow, entry.seq);
                if emptied {
                    assert_eq!(delivered[entry.flow as usize], made[entry.flow as usize],
                        "every reply of seq {} delivered before it completes", entry.seq);
                }
            });
        };
        for step in steps {
            match step {
                Step::Push(n) => {
                    for _ in 0..n {
                        if proxy.push(tag, &conn(next_flow), b"req", 0).is_err() {
                            break;
                        }
                        prop_assert_eq!(proxy.last_pushed_seq(), next_flow);
                        next_flow += 1;
                        made.push(0);
                        delivered.push(0);
                    }
                }
                Step::Publish => {
                    proxy.publish();
                    pushed = proxy.last_pushed_seq();
                }
                Step::Serve(n, replies) => {
                    for _ in 0..n {
                        let Some(record) = requests.peek().unwrap() else { break };
                        let Request::Mine { meta, .. } = record.request else { panic!() };
                        let (seq, flow) = (meta.seq, meta.conn.flow);
                        let stride = record.stride();
                        for _ in 0..replies {
                            // The response ring is big enough for every
                            // reply of a run.
                            responses.push(ResponseKind::Reply, flow, b"re").unwrap();
                        }
                        made[flow as usize] += u32::from(replies);
                        responses.complete(seq);
                        requests.advance(stride);
                    }
                    requests.release();
                }
                Step::WorkerPublish => {
                    responses.publish();
                }
                Step::Drain(cap) => {
                    drain(&mut proxy, usize::from(cap), &made, &mut delivered, &mut popped);
                }
            }
            prop_assert!(proxy.completed_seq() <= pushed, "completed passes pushed");
            prop_assert!(popped <= proxy.completed_seq());
        }
        // Flush both sides.
        proxy.publish();
        loop {
            let mut any = false;
            while let Some(record) = requests.peek().unwrap() {
                let Request::Mine { meta, .. } = record.request else { panic!() };
                let seq = meta.seq;
                let stride = record.stride();
                responses.complete(seq);
                requests.advance(stride);
                any = true;
            }
            requests.release();
            responses.publish();
            drain(&mut proxy, usize::MAX, &made, &mut delivered, &mut popped);
            if !any {
                break;
            }
        }
        prop_assert_eq!(proxy.in_flight(), 0);
        prop_assert_eq!(popped, next_flow - 1);
    }
}

#[test]
fn the_observer_sees_requests_waiting_until_completed_and_the_liveness_stamps() {
    let (mut proxy, w) = rig(LAYOUT);
    let (_slot, _requests, mut responses) = take(&w);
    let seen = PairObserver::new(&w.pair);
    assert_eq!(seen.worker_pid(), 4242);
    assert!(!seen.requests_waiting());
    let tag = RequestTag::of(proxy.worker_generation());
    proxy.push(tag, &conn(1), b"a", 0).unwrap();
    assert!(!seen.requests_waiting(), "not published");
    proxy.publish();
    assert!(seen.requests_waiting());
    responses.complete(1);
    responses.publish();
    assert!(!seen.requests_waiting());
    w.pair.header().heartbeat_ms.store(77, Ordering::Relaxed);
    w.pair
        .header()
        .in_process_since_ms
        .store(5, Ordering::Relaxed);
    assert_eq!((seen.heartbeat_ms(), seen.in_process_since_ms()), (77, 5));
    assert_eq!(
        (
            proxy.worker_heartbeat_ms(),
            proxy.worker_in_process_since_ms()
        ),
        (77, 5)
    );
}

#[test]
fn closed_flows_follow_their_requests_and_only_reach_their_generation() {
    let (mut proxy, w) = rig(LAYOUT);
    let (slot, mut requests, _responses) = take(&w);
    slot.set_hooks(crate::layout::HOOK_FLOW_CLOSED);
    assert_eq!(proxy.worker_hooks(), crate::layout::HOOK_FLOW_CLOSED);
    let tag = RequestTag::of(proxy.worker_generation());
    proxy.push(tag, &conn(7), b"last words", 1).unwrap();
    let many: Vec<u64> = (100..100 + crate::record::FLOW_CLOSED_BATCH as u64 + 5).collect();
    proxy.push_flows_closed(tag, &[7]).unwrap();
    proxy.push_flows_closed(tag, &many).unwrap();
    proxy
        .push_flows_closed(RequestTag::from_raw(tag.raw().wrapping_add(1)), &[9])
        .unwrap();
    assert!(proxy.has_unpublished());
    assert!(
        requests.peek().unwrap().is_none(),
        "invisible before publish"
    );
    proxy.publish();
    assert_eq!(proxy.in_flight(), 1, "closes take no seq");

    let mut seen = Vec::new();
    while let Some(record) = requests.peek().unwrap() {
        match record.request {
            Request::Mine { meta, .. } => seen.push(format!("req {}", meta.conn.flow)),
            Request::FlowsClosed(flows) => {
                seen.push(format!("closed {:?}", flows.iter().collect::<Vec<_>>()))
            }
            other => panic!("unexpected {other:?}"),
        }
        let stride = record.stride();
        requests.advance(stride);
    }
    let first_batch: Vec<u64> = many[..crate::record::FLOW_CLOSED_BATCH].to_vec();
    assert_eq!(
        seen,
        vec![
            "req 7".to_string(),
            "closed [7]".to_string(),
            format!("closed {first_batch:?}"),
            "closed []".to_string(),
        ],
        "in ring order, batches capped, another generation's close is empty"
    );
}
