//! [`ProxyEnd`]: the proxy's end of one pair (see the [module
//! doc](super) for the protocol and its memory ordering).
//!
//! Per loop turn the proxy [`push`](ProxyEnd::push)es requests (locally:
//! invisible to the worker), [`publish`](ProxyEnd::publish)es once per
//! pushed-to pair (stores `pushed_seq`, then the ring's write index, then
//! rings the worker's doorbell if it sleeps), and
//! [`drain_responses`](ProxyEnd::drain_responses) takes the response
//! records (bounded per turn) and then
//! [`pop_completed`](ProxyEnd::pop_completed) pops the in-flight requests
//! the `completed_seq` loaded before the drain covers.

use super::{InFlight, RequestTag};
use crate::doorbell::{wake_if_sleeping, Doorbell};
use crate::error::IpcError;
use crate::layout::{PairHeader, PairRegion, WorkerState};
use crate::record::{
    max_request_len, meta_bytes, split_request, split_response, RequestMeta, FLOW_CLOSED_BATCH,
    FLOW_ID_SIZE, KIND_CLOSE, KIND_EXPIRED, KIND_FLOW_CLOSED, KIND_REQUEST, KIND_RESPONSE,
    REQUEST_META_SIZE,
};
use crate::ring::{Consumer, Producer, PushError};
use spp_plugin_api::abi::{SppConnInfo, SPP_NOTE_MAX};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// One response record, as the proxy sees it (borrowed from the ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseRecord<'r> {
    /// Bytes for `flow` (`KIND_RESPONSE`), or a close of `flow` once its
    /// pending bytes are written (`KIND_CLOSE`, `close` set; `bytes` then
    /// is what the record carries, normally nothing).
    Reply {
        /// The flow the bytes go to.
        flow: u64,
        /// The bytes.
        bytes: &'r [u8],
        /// Close the flow after flushing.
        close: bool,
    },
    /// The worker dropped `flow`'s request because it waited past its
    /// group's `msg_timeout` (`KIND_EXPIRED`); `request` holds the request
    /// bytes, or nothing when they did not fit the response ring.
    Expired {
        /// The flow of the request.
        flow: u64,
        /// The request bytes (may be empty).
        request: &'r [u8],
    },
    /// A record of another kind, or too short for its meta: counted and
    /// skipped.
    Unexpected {
        /// Its kind.
        kind: u16,
        /// Its payload length.
        len: usize,
    },
}

/// What one [`ProxyEnd::drain_responses`] did.
#[derive(Debug)]
pub struct Drained {
    /// Records taken.
    pub taken: usize,
    /// The bound was reached and records remain.
    pub more: bool,
    /// The ring held a record that cannot be valid: everything published
    /// in it was dropped ([`ProxyEnd::discard_responses`]), so replies of
    /// requests still in flight may be lost; the caller fails them.
    pub corrupt: Option<IpcError>,
    /// `completed_seq` as loaded before the first record (rule 2).
    completed: u64,
}

impl Drained {
    /// The `completed_seq` loaded before this drain.
    pub fn completed_seq(&self) -> u64 {
        self.completed
    }
}

/// The proxy's end of one pair region.
pub struct ProxyEnd {
    requests: Producer,
    responses: Consumer,
    /// The `seq` the next push gets.
    next_seq: u64,
    /// Pushed since the last publish.
    unpublished: bool,
    /// Requests pushed and not yet seen completed, oldest first.
    in_flight: VecDeque<InFlight>,
    worker_bell: Doorbell,
    // Last: the rings above point into this mapping.
    pair: PairRegion,
}

impl ProxyEnd {
    /// Attaches the proxy's ends of `pair`'s rings; `worker_bell` is the
    /// worker's doorbell. The first push continues after the region's
    /// `pushed_seq`.
    ///
    /// # Safety
    /// No other proxy end of this pair region may exist, in this process
    /// or another, while this one lives.
    pub unsafe fn attach(pair: PairRegion, worker_bell: Doorbell) -> Result<Self, IpcError> {
        // SAFETY: the caller guarantees this is the only request producer
        // and response consumer; both live inside `Self`, which drops them
        // before the mapping (field order).
        let (requests, responses) =
            unsafe { (pair.request_producer()?, pair.response_consumer()?) };
        let next_seq = pair
            .header()
            .pushed_seq
            .load(Ordering::Acquire)
            .wrapping_add(1);
        Ok(ProxyEnd {
            requests,
            responses,
            next_seq,
            unpublished: false,
            in_flight: VecDeque::new(),
            worker_bell,
            pair,
        })
    }

    #[inline]
    fn header(&self) -> &PairHeader {
        self.pair.header()
    }

    /// The pair region (its header's counters, fd and layout).
    pub fn region(&self) -> &PairRegion {
        &self.pair
    }

    /// The worker's doorbell.
    pub fn worker_bell(&self) -> &Doorbell {
        &self.worker_bell
    }

    /// The largest request the request ring can carry.
    pub fn max_request_len(&self) -> usize {
        max_request_len(self.pair.layout().request_capacity)
    }

    /// Pushes one request for `conn` stamped with `tag`, queued at
    /// `enqueued_ns` (CLOCK_MONOTONIC), without a note. See
    /// [`Self::push_noted`].
    #[inline]
    pub fn push(
        &mut self,
        tag: RequestTag,
        conn: &SppConnInfo,
        req: &[u8],
        enqueued_ns: u64,
    ) -> Result<u64, PushError> {
        self.push_noted(tag, conn, &[], req, enqueued_ns)
    }

    /// Pushes one request for `conn` with its `note` (the plugin's
    /// `set_note`; at most `SPP_NOTE_MAX` bytes, else `TooLarge`) stamped
    /// with `tag`, queued at `enqueued_ns` (CLOCK_MONOTONIC). The record is
    /// meta | note | request; the meta's `conn.note_len` says the note's
    /// length and its `conn.note` is null. Invisible to the worker until
    /// [`Self::publish`]. Returns its `seq`; it is in flight from now on.
    #[inline]
    pub fn push_noted(
        &mut self,
        tag: RequestTag,
        conn: &SppConnInfo,
        note: &[u8],
        req: &[u8],
        enqueued_ns: u64,
    ) -> Result<u64, PushError> {
        if note.len() > SPP_NOTE_MAX {
            return Err(PushError::TooLarge);
        }
        let seq = self.next_seq;
        let meta = RequestMeta {
            conn: SppConnInfo {
                note: std::ptr::null(),
                note_len: note.len() as u32,
                ..*conn
            },
            seq,
            enqueued_ns,
        };
        let body = REQUEST_META_SIZE + note.len();
        self.requests
            .push_with(KIND_REQUEST, tag.raw(), body + req.len(), |dst| {
                dst[..REQUEST_META_SIZE].copy_from_slice(meta_bytes(&meta));
                dst[REQUEST_META_SIZE..body].copy_from_slice(note);
                dst[body..].copy_from_slice(req);
            })?;
        self.next_seq = seq.wrapping_add(1);
        self.unpublished = true;
        self.in_flight.push_back(InFlight {
            seq,
            flow: conn.flow,
            enqueued_ns,
        });
        Ok(seq)
    }

    /// Pushes one `KIND_FLOW_CLOSED` record telling the worker of `tag`
    /// that `flows` (at most [`FLOW_CLOSED_BATCH`]; the rest is ignored)
    /// closed. Invisible until [`Self::publish`]; no `seq`, nothing in
    /// flight. `Err(Full)`: no room now, try again later.
    pub fn push_flows_closed(&mut self, tag: RequestTag, flows: &[u64]) -> Result<(), PushError> {
        let flows = &flows[..flows.len().min(FLOW_CLOSED_BATCH)];
        if flows.is_empty() {
            return Ok(());
        }
        self.requests.push_with(
            KIND_FLOW_CLOSED,
            tag.raw(),
            flows.len() * FLOW_ID_SIZE,
            |dst| {
                for (slot, flow) in dst.chunks_exact_mut(FLOW_ID_SIZE).zip(flows) {
                    slot.copy_from_slice(&flow.to_ne_bytes());
                }
            },
        )?;
        self.unpublished = true;
        Ok(())
    }

    /// The worker's optional hooks (`PairHeader::worker_hooks`, as it
    /// stored them before `Ready`).
    #[inline]
    pub fn worker_hooks(&self) -> u32 {
        self.header().worker_hooks.load(Ordering::Acquire)
    }

    /// Whether requests were pushed since the last publish.
    #[inline]
    pub fn has_unpublished(&self) -> bool {
        self.unpublished
    }

    /// Publishes what was pushed since the last publish (nothing if
    /// nothing was): stores `pushed_seq`, then the ring's write index
    /// (rule 1), then wakes the worker if it announced sleep. Returns
    /// whether it rang the worker's doorbell.
    #[inline]
    pub fn publish(&mut self) -> bool {
        if !self.unpublished {
            return false;
        }
        self.unpublished = false;
        self.header()
            .pushed_seq
            .store(self.next_seq.wrapping_sub(1), Ordering::Release);
        self.requests.publish();
        wake_if_sleeping(&self.header().worker_sleeping, &self.worker_bell)
    }

    /// The drain handshake: the worker of `generation` is `Draining` and
    /// gets nothing more (the caller stopped pushing to it). Publishes what
    /// was pushed, then stores `drain_ack` = `generation` (rule 3). Returns
    /// whether it was not acknowledged already.
    pub fn ack_drain(&mut self, generation: u64) -> bool {
        if self.drain_ack() == generation {
            return false;
        }
        self.publish();
        self.header().drain_ack.store(generation, Ordering::Release);
        true
    }

    /// The generation whose drain was acknowledged last.
    pub fn drain_ack(&self) -> u64 {
        self.header().drain_ack.load(Ordering::Acquire)
    }

    /// The worker's `completed_seq`, as of now (Acquire).
    #[inline]
    pub fn completed_seq(&self) -> u64 {
        self.header().completed_seq.load(Ordering::Acquire)
    }

    /// The `seq` of the last request pushed (published or not).
    pub fn last_pushed_seq(&self) -> u64 {
        self.next_seq.wrapping_sub(1)
    }

    /// Requests pushed and not yet seen completed.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes up to `cap` published response records, oldest first, handing
    /// each to `on_record`, then frees their ring space at once. Loads
    /// `completed_seq` first (rule 2); pass the result to
    /// [`Self::pop_completed`]. Unless cut short by `cap`
    /// ([`Drained::more`]), every reply of the requests that pops has been
    /// handed to `on_record` by then. On a corrupt record, drops everything
    /// published in the ring and says so in [`Drained::corrupt`].
    #[inline]
    pub fn drain_responses(
        &mut self,
        cap: usize,
        mut on_record: impl FnMut(ResponseRecord<'_>),
    ) -> Drained {
        let completed = self.completed_seq();
        let mut taken = 0;
        let mut more = false;
        let mut corrupt = None;
        loop {
            let record = match self.responses.peek() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    corrupt = Some(e);
                    break;
                }
            };
            let stride = record.stride();
            on_record(match (record.kind, split_response(record.data)) {
                (KIND_RESPONSE | KIND_CLOSE, Some((meta, bytes))) => ResponseRecord::Reply {
                    flow: meta.flow,
                    bytes,
                    close: record.kind == KIND_CLOSE,
                },
                (KIND_EXPIRED, Some((meta, request))) => ResponseRecord::Expired {
                    flow: meta.flow,
                    request,
                },
                (kind, _) => ResponseRecord::Unexpected {
                    kind,
                    len: record.data.len(),
                },
            });
            self.responses.advance(stride);
            taken += 1;
            if taken >= cap {
                more = self.responses.has_data();
                break;
            }
        }
        self.responses.release();
        if corrupt.is_some() {
            self.discard_responses();
        }
        Drained {
            taken,
            more,
            corrupt,
            completed,
        }
    }

    /// Pops the in-flight requests `drained`'s `completed_seq` covers,
    /// oldest first, handing each to `done`. Returns how many. Call it
    /// after a drain that emptied the ring (not [`Drained::more`]): only
    /// then are all those requests' replies delivered (rule 2).
    #[inline]
    pub fn pop_completed(&mut self, drained: &Drained, mut done: impl FnMut(InFlight)) -> usize {
        let mut popped = 0;
        while let Some(&front) = self.in_flight.front() {
            if front.seq > drained.completed {
                break;
            }
            self.in_flight.pop_front();
            done(front);
            popped += 1;
        }
        popped
    }

    /// The worker's `heartbeat_ms` (CLOCK_MONOTONIC ms of its last loop
    /// turn or finished call).
    #[inline]
    pub fn worker_heartbeat_ms(&self) -> u64 {
        self.header().heartbeat_ms.load(Ordering::Relaxed)
    }

    /// The worker's `in_process_since_ms` (0: not inside `spp_process`).
    #[inline]
    pub fn worker_in_process_since_ms(&self) -> u64 {
        self.header().in_process_since_ms.load(Ordering::Relaxed)
    }

    /// The oldest request still in flight.
    #[inline]
    pub fn oldest_in_flight(&self) -> Option<InFlight> {
        self.in_flight.front().copied()
    }

    /// Takes the oldest request still in flight (to fail it: its worker is
    /// gone, or its replies were dropped).
    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.pop_front()
    }

    /// Whether the response ring holds published records.
    #[inline]
    pub fn responses_waiting(&self) -> bool {
        self.responses.has_data()
    }

    /// Whether the worker completed a request still in our FIFO: news for a
    /// sleeping proxy even with no reply in the ring (a request answered
    /// later from another thread, or not at all), since a held connection
    /// may wait for it to leave.
    #[inline]
    pub fn completions_waiting(&self) -> bool {
        self.in_flight
            .front()
            .is_some_and(|oldest| oldest.seq <= self.completed_seq())
    }

    /// Drops every published response record.
    pub fn discard_responses(&mut self) {
        self.responses.discard_all();
    }

    /// The worker's state (Acquire).
    #[inline]
    pub fn worker_state(&self) -> WorkerState {
        super::PairObserver::new(&self.pair).worker_state()
    }

    /// The worker's generation (Acquire; see rule 4).
    #[inline]
    pub fn worker_generation(&self) -> u64 {
        self.header().worker_generation.load(Ordering::Acquire)
    }

    /// The pid of the worker that took the slot last.
    pub fn worker_pid(&self) -> u32 {
        self.header().worker_pid.load(Ordering::Acquire)
    }

    /// The [`request_hash`](crate::poison::request_hash) of the request
    /// the worker died processing (its `in_process_seq`), if that request
    /// is still in flight here (so it was this worker's, not a
    /// predecessor's) and still in the request ring (a request in process
    /// is never released). Call once the worker is gone, before its
    /// requests are failed; it walks the unreleased records.
    pub fn died_holding(&self) -> Option<u64> {
        let seq = self.header().in_process_seq.load(Ordering::Acquire);
        if seq == 0 || !self.in_flight.iter().any(|f| f.seq == seq) {
            return None;
        }
        let payload = self.requests.find_unreleased(|kind, payload| {
            kind == KIND_REQUEST && split_request(payload).is_some_and(|p| p.meta.seq == seq)
        })?;
        // The request bytes only: the note is not part of what killed it.
        split_request(payload).map(|p| crate::poison::request_hash(p.bytes))
    }

    /// Whether the worker announced sleep and nobody woke it since.
    pub fn worker_sleeping(&self) -> bool {
        self.header().worker_sleeping.load(Ordering::Acquire) != 0
    }
}
