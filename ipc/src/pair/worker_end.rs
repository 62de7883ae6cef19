//! The worker's end of a pair (see the [module doc](super) for the
//! protocol and its memory ordering), in three parts:
//!
//! * [`WorkerSlot`]: taking the slot (pid, a new generation, `Starting`),
//!   the state after that (`Ready`, `Draining`), and the drain
//!   acknowledgement. Small and `Copy`: whoever needs it holds one.
//! * [`WorkerRequests`]: the request ring's consumer. Requests are read in
//!   place ([`WorkerRequests::peek`]) and told apart: this generation's,
//!   another generation's (skip it, but complete it), or not a request.
//!   With nothing to do, [`WorkerRequests::sleep`] announces sleep, looks
//!   once more and blocks on the worker's doorbell.
//! * [`WorkerResponses`]: the response ring's producer. Replies are pushed
//!   locally; [`WorkerResponses::complete`] remembers the last finished
//!   `seq`; [`WorkerResponses::publish`] publishes the ring, then
//!   `completed_seq` (rule 2), and wakes the proxy only if it sleeps.
//!
//! The parts borrow the mapped regions and doorbells (`'a`); a worker
//! process maps them for its whole life.

use super::{sleep_on, RequestTag, Slept};
use crate::doorbell::{wake_if_sleeping, Doorbell, SleepFlag};
use crate::error::IpcError;
use crate::layout::{PairHeader, PairRegion, ProxyRegion, WorkerState};
use crate::record::{
    meta_bytes, split_request, RequestMeta, ResponseMeta, FLOW_ID_SIZE, KIND_CLOSE, KIND_EXPIRED,
    KIND_FLOW_CLOSED, KIND_REQUEST, KIND_RESPONSE, RESPONSE_META_SIZE,
};
use crate::ring::{Consumer, Producer, PushError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The worker's hold on its slot: its generation and the slot's state.
#[derive(Clone, Copy)]
pub struct WorkerSlot<'a> {
    pair: &'a PairRegion,
    proxy_bell: &'a Doorbell,
    generation: u64,
}

impl<'a> WorkerSlot<'a> {
    /// Takes the slot for the worker of `pid`: stores the pid, bumps
    /// `worker_generation` and sets `Starting` (rule 4). From now on the
    /// proxy stamps nothing more for a predecessor it adopted; requests it
    /// already stamped for one are skipped. `proxy_bell` is the proxy's
    /// doorbell (rung when the drain starts).
    pub fn take(pair: &'a PairRegion, proxy_bell: &'a Doorbell, pid: u32) -> Self {
        let header = pair.header();
        header.worker_pid.store(pid, Ordering::Release);
        let generation = header
            .worker_generation
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        header
            .worker_state
            .store(WorkerState::Starting as u32, Ordering::Release);
        WorkerSlot {
            pair,
            proxy_bell,
            generation,
        }
    }

    /// The hold of a worker that already took the slot as `generation`
    /// (another thread of it, or a test): changes nothing in the slot.
    pub fn held(pair: &'a PairRegion, proxy_bell: &'a Doorbell, generation: u64) -> Self {
        WorkerSlot {
            pair,
            proxy_bell,
            generation,
        }
    }

    /// Rings this worker's own doorbell `bell` if its main loop announced
    /// sleep (a plugin thread queued a deferred reply for it). Any thread.
    /// Returns whether it rang.
    #[inline]
    pub fn wake_worker(&self, bell: &Doorbell) -> bool {
        wake_worker(self.pair, bell)
    }

    /// This worker's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The tag of the requests pushed for this worker.
    pub fn tag(&self) -> RequestTag {
        RequestTag::of(self.generation)
    }

    /// The pair region.
    pub fn region(&self) -> &'a PairRegion {
        self.pair
    }

    fn header(&self) -> &'a PairHeader {
        self.pair.header()
    }

    /// Attaches the consuming end of the request ring, dropping whatever a
    /// dead predecessor left in it. `bell` is this worker's doorbell.
    ///
    /// # Safety
    /// No other request consumer of this pair may exist while the result
    /// lives (one worker per slot), and the mapping must outlive it.
    pub unsafe fn attach_requests(
        &self,
        bell: &'a Doorbell,
    ) -> Result<WorkerRequests<'a>, IpcError> {
        // SAFETY: forwarded from the caller.
        let mut consumer = unsafe { self.pair.request_consumer()? };
        consumer.discard_all();
        Ok(WorkerRequests {
            consumer,
            tag: self.tag(),
            sleep: SleepFlag(&self.header().worker_sleeping),
            bell,
        })
    }

    /// Attaches the producing end of the response ring; `proxy` holds the
    /// proxy's sleep flag. Continues after the slot's `completed_seq`.
    ///
    /// # Safety
    /// No other response producer of this pair may exist while the result
    /// lives (one worker per slot), and the mapping must outlive it.
    pub unsafe fn attach_responses(
        &self,
        proxy: &'a ProxyRegion,
    ) -> Result<WorkerResponses<'a>, IpcError> {
        // SAFETY: forwarded from the caller.
        let producer = unsafe { self.pair.response_producer()? };
        let stored_seq = self.header().completed_seq.load(Ordering::Relaxed);
        Ok(WorkerResponses {
            producer,
            completed_seq: &self.header().completed_seq,
            proxy_sleeping: &proxy.header().proxy_sleeping,
            proxy_bell: self.proxy_bell,
            done_seq: stored_seq,
            stored_seq,
        })
    }

    /// The plugin's `spp_init` refused: the worker is about to exit with
    /// its code (the controller reads this to say so).
    pub fn set_init_failed(&self) {
        self.header()
            .worker_state
            .store(WorkerState::InitFailed as u32, Ordering::Release);
    }

    /// Says which optional hooks the worker's plugin has
    /// (`layout::HOOK_*` bits; 0 for none). Call before [`Self::set_ready`]:
    /// the proxy reads it once it adopted the worker.
    pub fn set_hooks(&self, hooks: u32) {
        self.header().worker_hooks.store(hooks, Ordering::Release);
    }

    /// The worker serves: the proxy adopts it at its next scan.
    pub fn set_ready(&self) {
        self.header()
            .worker_state
            .store(WorkerState::Ready as u32, Ordering::Release);
    }

    /// The worker leaves service: `Draining`, and the proxy's doorbell rung
    /// so that its scan (which stops pushing and acknowledges) comes now
    /// rather than at its next timer.
    pub fn start_draining(&self) {
        self.header()
            .worker_state
            .store(WorkerState::Draining as u32, Ordering::Release);
        self.proxy_bell.ring();
    }

    /// Whether the proxy acknowledged this worker's drain (Acquire, rule 3):
    /// once true, the request ring holds every request it will ever get.
    pub fn drain_acked(&self) -> bool {
        self.header().drain_ack.load(Ordering::Acquire) == self.generation
    }

    /// Requests pushed and not completed, as the shared sequence numbers
    /// say (for logs).
    pub fn backlog(&self) -> u64 {
        let header = self.header();
        let pushed = header.pushed_seq.load(Ordering::Acquire);
        let completed = header.completed_seq.load(Ordering::Acquire);
        pushed.saturating_sub(completed)
    }
}

/// A request-ring record as the worker sees it.
#[derive(Clone, Copy, Debug)]
pub enum Request<'r> {
    /// A request for this worker's generation: serve it, then
    /// [`WorkerResponses::complete`] its `seq`.
    Mine {
        /// Its meta (connection, `seq`, enqueue time; `conn.note` is null:
        /// hand the plugin `meta.conn.with_note(note)`).
        meta: &'r RequestMeta,
        /// The request's note (`set_note` in the proxy), in place in the
        /// ring; empty without one.
        note: &'r [u8],
        /// The request bytes, in place in the ring.
        bytes: &'r [u8],
    },
    /// A request stamped for another generation (pushed for a dead
    /// predecessor; the proxy failed it): do not serve it, but complete its
    /// `seq` so `completed_seq` keeps pace with `pushed_seq`.
    OtherGeneration {
        /// Its meta.
        meta: &'r RequestMeta,
        /// The tag it carries.
        tag: u16,
    },
    /// A request record too short for its meta: the ring cannot be trusted.
    Malformed {
        /// Its payload length.
        len: usize,
    },
    /// Connections this worker served requests of closed
    /// (`KIND_FLOW_CLOSED`, for this generation): call the plugin's
    /// `spp_flow_closed` for each of [`FlowsClosed::iter`]. Completes
    /// nothing.
    FlowsClosed(FlowsClosed<'r>),
    /// A record of another kind: skip it.
    UnknownKind {
        /// Its kind.
        kind: u16,
    },
}

/// The flow ids of a `KIND_FLOW_CLOSED` record, in place in the ring.
#[derive(Clone, Copy, Debug)]
pub struct FlowsClosed<'r> {
    bytes: &'r [u8],
}

impl<'r> FlowsClosed<'r> {
    /// The closed flows, in the order the proxy closed them (a trailing
    /// partial id, which a sound proxy never writes, is ignored).
    pub fn iter(&self) -> impl Iterator<Item = u64> + 'r {
        self.bytes.chunks_exact(FLOW_ID_SIZE).map(|id| {
            let mut raw = [0u8; FLOW_ID_SIZE];
            raw.copy_from_slice(id);
            u64::from_ne_bytes(raw)
        })
    }
}

/// One record taken from the request ring; valid until
/// [`WorkerRequests::advance`] moves past it.
#[derive(Clone, Copy, Debug)]
pub struct RequestRecord<'r> {
    /// What it is.
    pub request: Request<'r>,
    stride: u64,
}

impl RequestRecord<'_> {
    /// Bytes it occupies; pass to [`WorkerRequests::advance`].
    #[inline]
    pub fn stride(&self) -> u64 {
        self.stride
    }
}

/// The worker's end of the request ring.
pub struct WorkerRequests<'a> {
    consumer: Consumer,
    tag: RequestTag,
    sleep: SleepFlag<'a>,
    bell: &'a Doorbell,
}

impl WorkerRequests<'_> {
    /// The next published record, read in place. It stays valid (and the
    /// ring space taken) until [`Self::advance`] and [`Self::release`].
    #[inline]
    pub fn peek(&mut self) -> Result<Option<RequestRecord<'_>>, IpcError> {
        let tag = self.tag.raw();
        let Some(record) = self.consumer.peek()? else {
            return Ok(None);
        };
        let request = if record.kind == KIND_FLOW_CLOSED {
            if record.flags == tag {
                Request::FlowsClosed(FlowsClosed { bytes: record.data })
            } else {
                // For a predecessor: this worker never served those flows.
                Request::FlowsClosed(FlowsClosed { bytes: &[] })
            }
        } else if record.kind != KIND_REQUEST {
            Request::UnknownKind { kind: record.kind }
        } else {
            match split_request(record.data) {
                None => Request::Malformed {
                    len: record.data.len(),
                },
                Some(parts) if record.flags == tag => Request::Mine {
                    meta: parts.meta,
                    note: parts.note,
                    bytes: parts.bytes,
                },
                Some(parts) => Request::OtherGeneration {
                    meta: parts.meta,
                    tag: record.flags,
                },
            }
        };
        Ok(Some(RequestRecord {
            request,
            stride: record.stride(),
        }))
    }

    /// Consumes the record last returned by [`Self::peek`].
    #[inline]
    pub fn advance(&mut self, stride: u64) {
        self.consumer.advance(stride);
    }

    /// Frees the space of everything consumed so far (once per batch).
    #[inline]
    pub fn release(&mut self) {
        self.consumer.release();
    }

    /// Whether a published request may be waiting (one shared load).
    #[inline]
    pub fn has_requests(&self) -> bool {
        self.consumer.has_data()
    }

    /// The tag of this worker's requests.
    pub fn tag(&self) -> RequestTag {
        self.tag
    }

    /// The pair's `worker_sleeping` flag (for [`super::sleep_all`]).
    pub(super) fn sleep_flag(&self) -> SleepFlag<'_> {
        self.sleep
    }

    /// Nothing to do: announce sleep, look once more (requests, then
    /// `other_work`), block on the worker's doorbell for at most `timeout`
    /// only if there is none, clear the flag.
    pub fn sleep(&self, timeout: Duration, other_work: impl FnOnce() -> bool) -> Slept {
        self.sleep_with(timeout, other_work, |timeout| self.bell.wait(timeout))
    }

    /// [`sleep`](Self::sleep), blocking in `block` instead of on the bell
    /// alone: for a loop that also waits on other fds in one epoll set
    /// holding the bell (`block` must return when the bell is rung, clear
    /// it, and answer whether it was).
    pub fn sleep_with(
        &self,
        timeout: Duration,
        other_work: impl FnOnce() -> bool,
        block: impl FnOnce(Duration) -> bool,
    ) -> Slept {
        sleep_on(
            self.sleep,
            timeout,
            || self.has_requests() || other_work(),
            block,
        )
    }
}

/// What a response record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseKind {
    /// Bytes for the flow (`KIND_RESPONSE`).
    Reply,
    /// Close the flow once its pending bytes are written (`KIND_CLOSE`).
    Close,
    /// The flow's request waited past `msg_timeout` and was not processed
    /// (`KIND_EXPIRED`; the bytes are the request's, or none).
    Expired,
}

impl ResponseKind {
    #[inline]
    fn record_kind(self) -> u16 {
        match self {
            ResponseKind::Reply => KIND_RESPONSE,
            ResponseKind::Close => KIND_CLOSE,
            ResponseKind::Expired => KIND_EXPIRED,
        }
    }
}

/// The worker's end of the response ring, and `completed_seq`.
pub struct WorkerResponses<'a> {
    producer: Producer,
    completed_seq: &'a std::sync::atomic::AtomicU64,
    proxy_sleeping: &'a AtomicU32,
    proxy_bell: &'a Doorbell,
    /// `seq` of the last request finished.
    done_seq: u64,
    /// The `done_seq` last stored in `completed_seq`.
    stored_seq: u64,
}

impl WorkerResponses<'_> {
    /// Pushes one response record for `flow` (locally: invisible to the
    /// proxy until [`Self::publish`]).
    #[inline]
    pub fn push(&mut self, kind: ResponseKind, flow: u64, data: &[u8]) -> Result<(), PushError> {
        let meta = ResponseMeta { flow };
        self.producer
            .push(kind.record_kind(), 0, &[meta_bytes(&meta), data])
    }

    /// The largest `data` a response record can ever carry.
    pub fn max_payload(&self) -> usize {
        self.producer
            .max_payload()
            .saturating_sub(RESPONSE_META_SIZE)
    }

    /// Records that request `seq` is finished (served, expired or
    /// skipped); stored in `completed_seq` at the next publish, after the
    /// responses it made.
    #[inline]
    pub fn complete(&mut self, seq: u64) {
        self.done_seq = seq;
    }

    /// Makes every pushed record visible, then stores `completed_seq` if it
    /// moved (rule 2), and wakes the proxy if it sleeps and either happened
    /// (a request may complete without a reply, and the proxy still waits
    /// for it). Returns whether records were published.
    #[inline]
    pub fn publish(&mut self) -> bool {
        let published = self.producer.publish();
        let completed = self.done_seq != self.stored_seq;
        if completed {
            self.completed_seq.store(self.done_seq, Ordering::Release);
            self.stored_seq = self.done_seq;
        }
        if published || completed {
            self.wake_proxy();
        }
        published
    }

    /// Rings the proxy's doorbell if it announced sleep (a worker waiting
    /// for room in a full ring, after publishing). Returns whether it rang.
    #[inline]
    pub fn wake_proxy(&self) -> bool {
        wake_if_sleeping(self.proxy_sleeping, self.proxy_bell)
    }
}

/// Rings the worker doorbell `bell` of pair `pair` if that worker's main
/// loop announced sleep: what [`WorkerSlot::wake_worker`] does, for a
/// thread of the worker that holds no slot (a plugin thread queuing a
/// deferred reply). Returns whether it rang.
#[inline]
pub fn wake_worker(pair: &PairRegion, bell: &Doorbell) -> bool {
    wake_if_sleeping(&pair.header().worker_sleeping, bell)
}
