//! Unit tests of the [`Dispatcher`] in one process: anonymous pair regions
//! (memfds) play the shared memory, the test plays the controller and the
//! worker by writing the pair headers, and this process's own pid stands
//! in for the worker's (so adoption gets a real pidfd).

use super::*;
use crate::flow::{encode, FlowParts, Proto};
use mio::Poll;
use spp_ipc::doorbell::Doorbell;
use spp_ipc::launch::PairFds;
use spp_ipc::layout::{PairRegion, WorkerState};
use spp_ipc::record::{generation_tag, split_request};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

const RING: usize = 1 << 12;

struct Rig {
    dispatch: Dispatcher,
    /// The test's own mapping of every slot, in slot order.
    pairs: Vec<PairRegion>,
    poll: Poll,
    gone: Vec<usize>,
}

fn dup(fd: RawFd) -> RawFd {
    // SAFETY: `fd` is open and owned by a value the rig keeps alive; the
    // copy is handed to the dispatcher, which takes ownership of it.
    let copy = unsafe { libc::dup(fd) };
    assert!(copy >= 0, "dup: {}", std::io::Error::last_os_error());
    copy
}

/// A dispatcher over `groups` (id, slots), no worker adopted yet.
fn rig(groups: &[(u32, u32)]) -> Rig {
    let layout = PairLayout {
        request_capacity: RING,
        response_capacity: RING,
    };
    let mut pairs = Vec::new();
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
        }
        specs.push(GroupFds { id, slots });
    }
    Rig {
        dispatch: Dispatcher::open(&specs, layout).unwrap(),
        pairs,
        poll: Poll::new().unwrap(),
        gone: Vec::new(),
    }
}

impl Rig {
    /// Worker `generation` of slot `s` says `state`.
    fn worker(&self, s: usize, generation: u64, state: WorkerState) {
        let h = self.pairs[s].header();
        h.worker_pid.store(std::process::id(), Ordering::Release);
        h.worker_generation.store(generation, Ordering::Release);
        h.worker_state.store(state as u32, Ordering::Release);
    }

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
        self.dispatch.push(group, &info, req, 42, prefer)
    }
}

fn tcp(slot: u32) -> u64 {
    encode(FlowParts {
        epoch: 1,
        proto: Proto::Tcp,
        generation: 1,
        slot,
    })
}

#[test]
fn ready_workers_are_adopted_and_share_by_least_outstanding() {
    let mut r = rig(&[(1, 2)]);
    r.worker(0, 1, WorkerState::Ready);
    r.worker(1, 1, WorkerState::Ready);
    r.scan();
    assert!(r.dispatch.accepting(0) && r.dispatch.accepting(1));
    // Equal loads: the picks rotate.
    let picks: Vec<_> = (0..4).map(|i| r.push(1, tcp(i), None).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 0, 1]);
    assert_eq!(r.dispatch.in_flight(), 4);
    // Slot 0's requests complete: it is now the least loaded, twice.
    r.pairs[0]
        .header()
        .completed_seq
        .store(2, Ordering::Release);
    let completed = r.dispatch.completed_seq(0);
    r.dispatch.pop_completed(0, completed, |_| {});
    assert_eq!(r.dispatch.in_flight(), 2);
    assert_eq!(r.push(1, tcp(5), None), Ok(0));
    assert_eq!(r.push(1, tcp(6), None), Ok(0));
}

#[test]
fn pushes_reach_the_worker_only_when_published_stamped_for_its_generation() {
    let mut r = rig(&[(1, 1)]);
    r.worker(0, 7, WorkerState::Ready);
    r.scan();
    // SAFETY: the test is the only request consumer of this pair.
    let mut requests = unsafe { r.pairs[0].request_consumer() }.unwrap();
    r.push(1, tcp(3), None).unwrap();
    r.push(1, tcp(4), None).unwrap();
    assert!(!requests.has_data(), "not published yet");
    r.dispatch.publish();
    assert_eq!(r.pairs[0].header().pushed_seq.load(Ordering::Acquire), 2);
    let mut seen = Vec::new();
    while let Some(rec) = requests.peek().unwrap() {
        assert_eq!(rec.flags, generation_tag(7));
        let (meta, req) = split_request(rec.data).unwrap();
        assert_eq!(req, b"request");
        assert_eq!(meta.enqueued_ns, 42);
        seen.push((meta.seq, meta.conn.flow));
        let stride = rec.stride();
        requests.advance(stride);
    }
    assert_eq!(seen, vec![(1, tcp(3)), (2, tcp(4))]);
}

#[test]
fn completions_pop_in_flight_and_name_connections_whose_last_request_left() {
    let mut r = rig(&[(1, 1)]);
    r.worker(0, 1, WorkerState::Ready);
    r.scan();
    let flow = tcp(9);
    r.push(1, flow, None).unwrap();
    r.push(1, flow, Some(0)).unwrap();
    assert_eq!(r.dispatch.affinity(flow), (Affinity::Stick(0), 2));
    let mut emptied = Vec::new();
    r.dispatch.pop_completed(0, 1, |f| emptied.push(f));
    assert!(emptied.is_empty());
    r.dispatch.pop_completed(0, 2, |f| emptied.push(f));
    assert_eq!(emptied, vec![flow]);
    assert_eq!(r.dispatch.affinity(flow), (Affinity::Free, 0));
    assert_eq!(r.dispatch.in_flight(), 0);
}

#[test]
fn a_draining_worker_is_acknowledged_and_its_connections_hold() {
    let mut r = rig(&[(1, 2)]);
    r.worker(0, 3, WorkerState::Ready);
    r.worker(1, 1, WorkerState::Ready);
    r.scan();
    let flow = tcp(1);
    assert_eq!(r.push(1, flow, Some(0)), Ok(0));
    r.worker(0, 3, WorkerState::Draining);
    r.scan();
    assert_eq!(r.pairs[0].header().drain_ack.load(Ordering::Acquire), 3);
    assert_eq!(
        r.pairs[0].header().pushed_seq.load(Ordering::Acquire),
        1,
        "what it got was published before the ack"
    );
    assert!(!r.dispatch.accepting(0));
    assert_eq!(r.dispatch.affinity(flow), (Affinity::Hold(0), 1));
    // Anything else goes to the other worker, even when asked for slot 0.
    assert_eq!(r.push(1, tcp(2), Some(0)), Ok(1));
    assert!(r.gone.is_empty(), "draining is not gone");
}

#[test]
fn a_stopped_worker_is_gone_and_its_generation_is_never_adopted_again() {
    let mut r = rig(&[(1, 1)]);
    r.worker(0, 1, WorkerState::Ready);
    r.scan();
    r.push(1, tcp(0), None).unwrap();
    r.worker(0, 1, WorkerState::Down);
    r.scan();
    assert_eq!(r.gone, vec![0]);
    let (failed, last) = r.dispatch.take_in_flight(0).unwrap();
    assert_eq!((failed.seq, failed.flow, last), (1, tcp(0), true));
    assert_eq!(r.dispatch.take_in_flight(0), None);
    // The dead generation says Ready again: not adopted.
    r.worker(0, 1, WorkerState::Ready);
    r.scan();
    assert!(!r.dispatch.accepting(0));
    // Its successor is.
    r.worker(0, 2, WorkerState::Ready);
    r.scan();
    assert!(r.dispatch.accepting(0));
    assert_eq!(r.gone, vec![0], "only the first retirement");
}

#[test]
fn a_replaced_worker_is_retired_and_its_successor_adopted_in_one_scan() {
    let mut r = rig(&[(1, 1)]);
    r.worker(0, 1, WorkerState::Ready);
    r.scan();
    r.worker(0, 2, WorkerState::Ready);
    r.scan();
    assert_eq!(r.gone, vec![0]);
    assert!(r.dispatch.accepting(0));
    // Our own pid is alive: its pidfd is not readable.
    assert!(!r.dispatch.worker_exited(0, r.poll.registry()));
}

#[test]
fn refusals_name_why() {
    let mut r = rig(&[(1, 1)]);
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
    r.worker(0, 1, WorkerState::Ready);
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
    let mut r = rig(&[(1, 1)]);
    assert!(r.dispatch.settled(0, false), "no worker");
    r.worker(0, 1, WorkerState::Ready);
    r.scan();
    assert!(!r.dispatch.settled(0, false));
    assert!(r.dispatch.settled(0, true), "quiet long enough");
    r.pairs[0]
        .header()
        .worker_sleeping
        .store(1, Ordering::Release);
    assert!(r.dispatch.settled(0, false));
    assert!(!r.dispatch.responses_waiting());
}
