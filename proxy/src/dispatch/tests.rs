//! Unit tests of the [`Dispatcher`] in one process: anonymous pair regions
//! (memfds) play the shared memory and the test plays the workers through
//! the pair protocol's worker end (`spp_ipc::pair::WorkerSlot` and
//! friends), with this process's own pid standing in for the worker's (so
//! adoption gets a real pidfd).

use super::*;
use crate::flow::{encode, FlowParts, Proto};
use mio::Poll;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::launch::PairFds;
use spp_ipc::layout::{PairRegion, ProxyRegion};
use spp_ipc::pair::{Request, WorkerSlot};
use std::os::fd::RawFd;
use std::time::Duration;

const RING: usize = 1 << 12;

/// The proxy side under test.
struct Rig {
    dispatch: Dispatcher,
    poll: Poll,
    gone: Vec<usize>,
}

/// What the workers hold: every slot's mapping (in slot order), their
/// doorbells, the proxy's region and doorbell.
struct Shared {
    pairs: Vec<PairRegion>,
    bells: Vec<Doorbell>,
    proxy: ProxyRegion,
    proxy_bell: Doorbell,
}

fn dup(fd: RawFd) -> RawFd {
    // SAFETY: `fd` is open and owned by a value the test keeps alive; the
    // copy is handed to the dispatcher, which takes ownership of it.
    let copy = unsafe { libc::dup(fd) };
    assert!(copy >= 0, "dup: {}", std::io::Error::last_os_error());
    copy
}

/// A dispatcher over `groups` (id, slots), no worker adopted yet.
fn rig(groups: &[(u32, u32)]) -> (Rig, Shared) {
    rig_with_timeout(groups, 0)
}

/// [`rig`] with every group's `msg_timeout` at `msg_timeout_ms`.
fn rig_with_timeout(groups: &[(u32, u32)], msg_timeout_ms: u64) -> (Rig, Shared) {
    rig_with_ring(groups, msg_timeout_ms, RING)
}

/// [`rig_with_timeout`] with rings of `ring` bytes.
fn rig_with_ring(groups: &[(u32, u32)], msg_timeout_ms: u64, ring: usize) -> (Rig, Shared) {
    let layout = PairLayout {
        request_capacity: ring,
        response_capacity: ring,
    };
    let mut pairs = Vec::new();
    let mut bells = Vec::new();
    let mut specs = Vec::new();
    for &(id, n) in groups {
        let mut slots = Vec::new();
        for index in 0..n {
            let pair = PairRegion::create(id, index, layout).unwrap();
            let bell = Doorbell::create().unwrap();
            slots.push(PairFds {
                index,
                region_fd: dup(pair.raw_fd()),
                bell_fd: dup(bell.raw_fd()),
            });
            pairs.push(pair);
            bells.push(bell);
        }
        specs.push(GroupFds {
            id,
            slots,
            msg_timeout_ms,
        });
    }
    let rig = Rig {
        dispatch: Dispatcher::open(&specs, layout).unwrap(),
        poll: Poll::new().unwrap(),
        gone: Vec::new(),
    };
    let shared = Shared {
        pairs,
        bells,
        proxy: ProxyRegion::create().unwrap(),
        proxy_bell: Doorbell::create().unwrap(),
    };
    (rig, shared)
}

impl Shared {
    /// A worker (this process) takes slot `s` and says `Ready`.
    fn ready(&self, s: usize) -> WorkerSlot<'_> {
        let w = WorkerSlot::take(&self.pairs[s], &self.proxy_bell, std::process::id());
        w.set_ready();
        w
    }
}

impl Rig {
    fn scan(&mut self) {
        self.dispatch.scan(self.poll.registry(), &mut self.gone);
    }

    fn push(&mut self, group: u32, flow: u64, prefer: Option<usize>) -> Result<usize, Refusal> {
        self.push_bytes(group, flow, b"request", prefer)
    }

    fn push_bytes(
        &mut self,
        group: u32,
        flow: u64,
        req: &[u8],
        prefer: Option<usize>,
    ) -> Result<usize, Refusal> {
        let info = SppConnInfo {
            flow,
            ..SppConnInfo::default()
        };
        let request = Outgoing {
            conn: &info,
            note: &[],
            bytes: req,
        };
        self.dispatch.push(group, request, 42, prefer, |_| false)
    }

    /// Drains slot `s`'s responses and pops what completed; returns the
    /// connections whose last request left.
    fn completions(&mut self, s: usize) -> Vec<u64> {
        let drained = self.dispatch.drain_responses(s, usize::MAX, |_| {});
        let mut emptied = Vec::new();
        self.dispatch.pop_completed(s, &drained, |f, last| {
            if last {
                emptied.push(f);
            }
        });
        emptied
    }
}

fn tcp(slot: u32) -> u64 {
    encode(FlowParts {
        epoch: 1,
        shard: 0,
        proto: Proto::Tcp,
        generation: 1,
        slot,
    })
}

/// Worker `w` of `shared` completes every request up to `seq` (serving
/// none) and publishes.
fn complete_up_to(shared: &Shared, w: &WorkerSlot<'_>, seq: u64) {
    // SAFETY: the test is this pair's only response producer, and the
    // mapping outlives the end.
    let mut responses = unsafe { w.attach_responses(&shared.proxy) }.unwrap();
    responses.complete(seq);
    responses.publish();
}

#[test]
fn ready_workers_are_adopted_and_share_by_least_outstanding() {
    let (mut r, shared) = rig(&[(1, 2)]);
    let w0 = shared.ready(0);
    shared.ready(1);
    r.scan();
    assert!(r.dispatch.accepting(0) && r.dispatch.accepting(1));
    // Equal loads: the picks rotate.
    let picks: Vec<_> = (0..4).map(|i| r.push(1, tcp(i), None).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 0, 1]);
    assert_eq!(r.dispatch.in_flight(), 4);
    r.dispatch.publish();
    // Slot 0's requests complete: it is now the least loaded, twice.
    complete_up_to(&shared, &w0, 2);
    assert_eq!(r.completions(0), vec![tcp(0), tcp(2)]);
    assert_eq!(r.dispatch.in_flight(), 2);
    assert_eq!(r.push(1, tcp(5), None), Ok(0));
    assert_eq!(r.push(1, tcp(6), None), Ok(0));
}

#[test]
fn pushes_reach_the_worker_only_when_published_stamped_for_its_generation() {
    let (mut r, shared) = rig(&[(1, 1)]);
    shared.ready(0);
    let w = shared.ready(0); // A second take: generation 2 is the live one.
    r.scan();
    // SAFETY: the test is this pair's only request consumer.
    let mut requests = unsafe { w.attach_requests(&shared.bells[0]) }.unwrap();
    r.push(1, tcp(3), None).unwrap();
    r.push(1, tcp(4), None).unwrap();
    assert!(!requests.has_requests(), "not published yet");
    r.dispatch.publish();
    assert_eq!(w.backlog(), 2, "pushed_seq covers both");
    let mut seen = Vec::new();
    while let Some(rec) = requests.peek().unwrap() {
        let stride = rec.stride();
        match rec.request {
            Request::Mine { meta, bytes, .. } => {
                assert_eq!(bytes, b"request");
                assert_eq!(meta.enqueued_ns, 42);
                seen.push((meta.seq, meta.conn.flow));
            }
            other => panic!("not stamped for generation {}: {other:?}", w.generation()),
        }
        requests.advance(stride);
    }
    assert_eq!(seen, vec![(1, tcp(3)), (2, tcp(4))]);
}

#[test]
fn a_long_turn_publishes_every_few_records_and_every_share_of_bytes() {
    use slot::{publish_every_bytes, PUBLISH_EVERY_RECORDS};
    let ring = 1 << 20;
    let (mut r, shared) = rig_with_ring(&[(1, 1)], 0, ring);
    let w = shared.ready(0);
    r.scan();
    let batch = u64::from(PUBLISH_EVERY_RECORDS);
    for i in 1..batch {
        r.push(1, tcp(i as u32), None).unwrap();
    }
    assert_eq!(
        w.backlog(),
        0,
        "fewer than a batch waits for the turn's end"
    );
    r.push(1, tcp(0), None).unwrap();
    assert_eq!(w.backlog(), batch, "a full batch is published at once");
    // Bytes: one request short of the share waits, the one that reaches
    // it publishes both.
    let share = publish_every_bytes(ring);
    assert!(share < ring / 8, "a ring holds many shares");
    r.push_bytes(1, tcp(1), &vec![1; share - 1], None).unwrap();
    assert_eq!(w.backlog(), batch);
    r.push_bytes(1, tcp(2), &[2], None).unwrap();
    assert_eq!(w.backlog(), batch + 2);
    // The end of the turn publishes the rest, once.
    r.push(1, tcp(3), None).unwrap();
    r.dispatch.publish();
    assert_eq!(w.backlog(), batch + 3);
    assert_eq!(r.dispatch.dirty, Vec::<usize>::new());
}

#[test]
fn a_full_ring_is_waited_for_once_until_it_has_room_again() {
    let (mut r, shared) = rig(&[(1, 1)]);
    let w = shared.ready(0);
    r.scan();
    // SAFETY: the test is this pair's only request consumer.
    let mut requests = unsafe { w.attach_requests(&shared.bells[0]) }.unwrap();
    let big = vec![0u8; RING / 4];
    let mut pushed = 0;
    let started = std::time::Instant::now();
    while r.push_bytes(1, tcp(1), &big, None).is_ok() {
        pushed += 1;
    }
    assert!(
        started.elapsed() >= Duration::from_nanos(slot::FULL_WAIT_NS),
        "the full ring was waited for"
    );
    assert!(r.dispatch.slots[0].gave_up_waiting);
    assert_eq!(w.backlog(), pushed, "the wait published what was pushed");
    // Failing at once now, until the worker frees room.
    assert_eq!(r.push_bytes(1, tcp(1), &big, None), Err(Refusal::QueueFull));
    assert!(requests.peek().unwrap().is_some());
    let stride = requests.peek().unwrap().unwrap().stride();
    requests.advance(stride);
    requests.release();
    assert_eq!(r.push_bytes(1, tcp(1), &big, None), Ok(0));
    assert!(
        !r.dispatch.slots[0].gave_up_waiting,
        "room again: waits again"
    );
}

#[test]
fn a_small_ring_is_published_after_a_share_of_it() {
    assert_eq!(
        slot::publish_every_bytes(4 << 20),
        slot::PUBLISH_EVERY_BYTES
    );
    assert_eq!(
        slot::publish_every_bytes(64 << 10),
        (64 << 10) / slot::PUBLISH_RING_SHARE
    );
}

#[test]
fn completions_pop_in_flight_and_name_connections_whose_last_request_left() {
    let (mut r, shared) = rig(&[(1, 1)]);
    let w = shared.ready(0);
    r.scan();
    let flow = tcp(9);
    r.push(1, flow, None).unwrap();
    r.push(1, flow, Some(0)).unwrap();
    r.dispatch.publish();
    assert_eq!(r.dispatch.affinity(flow), (Affinity::Stick(0), 2));
    complete_up_to(&shared, &w, 1);
    assert!(r.completions(0).is_empty());
    complete_up_to(&shared, &w, 2);
    assert_eq!(r.completions(0), vec![flow]);
    assert_eq!(r.dispatch.affinity(flow), (Affinity::Free, 0));
    assert_eq!(r.dispatch.in_flight(), 0);
}

#[test]
fn a_draining_worker_is_acknowledged_and_its_connections_hold() {
    let (mut r, shared) = rig(&[(1, 2)]);
    let w0 = shared.ready(0);
    shared.ready(1);
    r.scan();
    let flow = tcp(1);
    assert_eq!(r.push(1, flow, Some(0)), Ok(0));
    w0.start_draining();
    assert!(shared.proxy_bell.wait(Duration::ZERO), "the proxy is rung");
    assert!(!w0.drain_acked());
    r.scan();
    assert!(w0.drain_acked());
    assert_eq!(w0.backlog(), 1, "what it got was published before the ack");
    assert!(!r.dispatch.accepting(0));
    assert_eq!(r.dispatch.affinity(flow), (Affinity::Hold(0), 1));
    // Anything else goes to the other worker, even when asked for slot 0.
    assert_eq!(r.push(1, tcp(2), Some(0)), Ok(1));
    assert!(r.gone.is_empty(), "draining is not gone");
}

#[test]
fn a_replaced_worker_is_gone_and_its_successor_adopted_once_ready() {
    let (mut r, shared) = rig(&[(1, 1)]);
    shared.ready(0);
    r.scan();
    r.push(1, tcp(0), None).unwrap();
    let successor = WorkerSlot::take(&shared.pairs[0], &shared.proxy_bell, std::process::id());
    r.scan();
    assert_eq!(r.gone, vec![0]);
    assert!(!r.dispatch.accepting(0), "the successor is not ready yet");
    let (failed, last) = r.dispatch.take_in_flight(0).unwrap();
    assert_eq!((failed.seq, failed.flow, last), (1, tcp(0), true));
    assert_eq!(r.dispatch.take_in_flight(0), None);
    successor.set_ready();
    r.scan();
    assert!(r.dispatch.accepting(0));
    assert_eq!(r.gone, vec![0], "retired once");
    // Our own pid is alive: its pidfd is not readable.
    assert!(!r.dispatch.worker_exited(0, r.poll.registry()));
}

#[test]
fn a_generation_seen_down_is_never_adopted_again() {
    let (mut r, shared) = rig(&[(1, 1)]);
    let first = shared.ready(0);
    r.scan();
    // The controller's word after the worker died.
    spp_ipc::pair::mark_worker_down(&shared.pairs[0]);
    r.scan();
    assert_eq!(r.gone, vec![0]);
    // The same generation says Ready again: not adopted.
    WorkerSlot::held(&shared.pairs[0], &shared.proxy_bell, first.generation()).set_ready();
    r.scan();
    assert!(!r.dispatch.accepting(0));
    shared.ready(0);
    r.scan();
    assert!(r.dispatch.accepting(0), "a new generation is");
}

#[test]
fn refusals_name_why() {
    let (mut r, shared) = rig(&[(1, 1)]);
    assert_eq!(
        r.push(1, tcp(0), None),
        Err(Refusal::NoWorker),
        "none adopted"
    );
    assert_eq!(
        r.push(2, tcp(0), None),
        Err(Refusal::NoWorker),
        "no group 2"
    );
    assert_eq!(r.push(1000, tcp(0), None), Err(Refusal::NoWorker));
    shared.ready(0);
    assert!(r.dispatch.scan_group(1, r.poll.registry(), &mut r.gone));
    let huge = vec![0u8; RING * 2];
    assert_eq!(r.push_bytes(1, tcp(0), &huge, None), Err(Refusal::TooLarge));
    assert!(r.dispatch.max_request_len().unwrap() < RING);
    let big = vec![0u8; RING / 4];
    let mut refusal = None;
    for _ in 0..8 {
        if let Err(e) = r.push_bytes(1, tcp(1), &big, None) {
            refusal = Some(e);
            break;
        }
    }
    assert_eq!(refusal, Some(Refusal::QueueFull));
}

#[test]
fn a_slot_is_settled_when_its_ring_is_empty_and_its_worker_sleeps_or_is_gone() {
    let (mut r, shared) = rig(&[(1, 1)]);
    assert!(r.dispatch.settled(0, false), "no worker");
    let w = shared.ready(0);
    r.scan();
    assert!(!r.dispatch.settled(0, false));
    assert!(r.dispatch.settled(0, true), "quiet long enough");
    // SAFETY: the test is this pair's only request consumer.
    let requests = unsafe { w.attach_requests(&shared.bells[0]) }.unwrap();
    // Looked at while the worker has announced sleep.
    let mut asleep = false;
    requests.sleep(Duration::ZERO, || {
        asleep = r.dispatch.settled(0, false);
        true
    });
    assert!(asleep);
    assert!(!r.dispatch.responses_waiting());
}

#[test]
fn a_stalled_worker_is_passed_over_and_a_frozen_ones_old_requests_handed_back() {
    let (mut r, shared) = rig_with_timeout(&[(1, 2)], 500);
    shared.ready(0);
    let w1 = shared.ready(1);
    r.scan();
    assert_eq!(r.push(1, tcp(0), None), Ok(0));
    assert_eq!(r.push(1, tcp(1), None), Ok(1));
    r.dispatch.publish();
    r.dispatch.observe_progress(0);
    // Slot 1 finishes its request; slot 0 does not, past 500 / 2 ms.
    complete_up_to(&shared, &w1, 1);
    assert_eq!(r.completions(1), vec![tcp(1)]);
    r.dispatch.observe_progress(300);
    // Tied or not, new requests go to slot 1, each pick counted.
    let picks: Vec<_> = (2..6).map(|i| r.push(1, tcp(i), None).unwrap()).collect();
    assert_eq!(picks, vec![1; 4]);
    assert_eq!(r.dispatch.take_stalled_skips(), 4);
    assert_eq!(r.dispatch.take_stalled_skips(), 0, "taken");
    // Slot 1 beats (its heartbeat is fresh): nothing of it is overdue; slot
    // 0's worker never stamped one and holds a request older than 700 ms.
    shared.pairs[1]
        .header()
        .heartbeat_ms
        .store(700, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(r.dispatch.take_overdue(1, 701), None);
    assert_eq!(r.dispatch.take_overdue(0, 700), None, "within the grace");
    let (entry, last) = r.dispatch.take_overdue(0, 701).expect("overdue");
    assert_eq!((entry.flow, last), (tcp(0), true));
    assert_eq!(r.dispatch.take_overdue(0, 702), None, "nothing more there");
    // Nothing in flight there any more, but still frozen: still passed over
    // (slot 1 keeps finishing its requests).
    complete_up_to(&shared, &w1, 5);
    assert_eq!(r.completions(1).len(), 4);
    r.dispatch.observe_progress(750);
    assert_eq!(r.push(1, tcp(9), None), Ok(1));
    // Every worker of the group stalled: the least loaded still gets it.
    r.dispatch.observe_progress(1200);
    assert!(r.push(1, tcp(10), None).is_ok());
}

#[test]
fn a_busy_slot_is_passed_over_and_all_busy_is_its_own_refusal() {
    let (mut r, shared) = rig(&[(1, 2)]);
    shared.ready(0);
    shared.ready(1);
    r.scan();
    let info = SppConnInfo {
        flow: tcp(0),
        ..SppConnInfo::default()
    };
    let x = |conn| Outgoing {
        conn,
        note: &[],
        bytes: b"x",
    };
    // Slot 0 busy: the preferred slot and the least loaded both give way.
    for _ in 0..3 {
        assert_eq!(r.dispatch.push(1, x(&info), 42, Some(0), |s| s == 0), Ok(1));
    }
    assert_eq!(
        r.dispatch.push(1, x(&info), 42, None, |_| true),
        Err(Refusal::Busy)
    );
    assert_eq!(
        r.dispatch.push(2, x(&info), 42, None, |_| true),
        Err(Refusal::NoWorker),
        "an unknown group is not busy"
    );
}

#[test]
fn a_successor_adopted_in_the_same_scan_does_not_hide_what_its_predecessor_died_on() {
    let (mut r, shared) = rig(&[(1, 1)]);
    shared.ready(0);
    r.scan();
    assert_eq!(r.push_bytes(1, tcp(0), b"poison", None), Ok(0));
    r.dispatch.publish();
    let header = shared.pairs[0].header();
    // The worker dies inside `spp_process` of request 1 ...
    header
        .in_process_seq
        .store(1, std::sync::atomic::Ordering::Relaxed);
    // ... and its successor is Ready before the proxy looks: one scan
    // retires the one and adopts the other.
    shared.ready(0);
    r.scan();
    assert_eq!(r.gone, vec![0]);
    assert!(r.dispatch.accepting(0));
    // The successor takes a request of its own before the gone slot is
    // handled (pushes of the same turn).
    assert_eq!(r.push_bytes(1, tcp(1), b"innocent", None), Ok(0));
    r.dispatch.publish();
    header
        .in_process_seq
        .store(2, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        r.dispatch.died_holding(0),
        Some(spp_ipc::poison::request_hash(b"poison")),
        "the hash read at retirement"
    );
    assert_eq!(r.dispatch.died_holding(0), None, "booked once");
}
