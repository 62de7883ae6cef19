//! Taking a batch of requests from a pair's ring into a runtime that holds
//! several at once (micro-thread and async mode), and ending such a turn:
//! what both modes share; each mode says through [`Holder`] how it admits
//! a request.

use crate::error::WorkerError;
use crate::serve::{peek_request, Handler, Server, BATCH_MAX};
use spp_ipc::pair::Request;
use spp_ipc::record::{RequestMeta, NS_PER_MS};
use std::sync::atomic::Ordering;

/// A runtime holding several requests at once.
pub trait Holder {
    /// Whether another request may be taken from pair `pair`'s ring.
    fn can_take(&self, pair: usize) -> bool;
    /// A request of pair `pair` done the moment it was taken (expired,
    /// another generation's).
    fn done_at_once(&mut self, handler: &Handler, pair: usize, seq: u64);
    /// Takes a request of pair `pair` (the ring's bytes, valid until the
    /// ring is released after the batch).
    fn admit(
        &mut self,
        handler: &mut Handler,
        pair: usize,
        meta: &RequestMeta,
        note: &[u8],
        req: &[u8],
    );
    /// After a plugin hook ran (`spp_process`, `spp_flow_closed`): apply
    /// what it completed meanwhile. Nothing by default.
    fn after_hook(&mut self, _handler: &mut Handler) {}
}

/// Takes up to [`BATCH_MAX`] records of pair `pair` while `rt` has room:
/// expired and other generations' requests are completed at once, closed
/// flows reported to the plugin (`spp_flow_closed`, on the main thread,
/// outside any request). Returns how many records it took.
pub fn take_batch<R: Holder>(
    server: &mut Server,
    rt: &mut R,
    pair: usize,
    now: u64,
) -> Result<usize, WorkerError> {
    let mut served = 0;
    while served < BATCH_MAX && rt.can_take(pair) {
        let (group, index) = (server.group, server.index);
        let record = peek_request(&mut server.requests[pair], group, index)?;
        let Some(record) = record else { break };
        let stride = record.stride();
        let handler = &mut server.handler;
        match record.request {
            Request::Mine { meta, note, bytes } => {
                if handler.expired(pair, meta, bytes, now) {
                    rt.done_at_once(handler, pair, meta.seq);
                } else {
                    rt.admit(handler, pair, meta, note, bytes);
                    rt.after_hook(handler);
                }
            }
            Request::OtherGeneration { meta, tag } => {
                handler.skip_logged(meta, tag);
                rt.done_at_once(handler, pair, meta.seq);
            }
            Request::FlowsClosed(flows) => {
                for flow in flows.iter() {
                    handler.plugin.flow_closed(flow);
                }
                rt.after_hook(handler);
            }
            Request::Malformed { len } => {
                return Err(WorkerError::BadRecord { group, index, len });
            }
            Request::UnknownKind { kind } => {
                tracing::warn!(kind, "skipping a request-ring record of unknown kind");
            }
        }
        server.requests[pair].advance(stride);
        served += 1;
    }
    Ok(served)
}

/// Ends a turn that began at `started` (CLOCK_MONOTONIC ns): releases
/// every request ring, adds `busy_ns` of plugin time, publishes the
/// responses, beats, and shows `in_flight` held requests in the stats.
pub fn end_turn(server: &mut Server, started: u64, busy_ns: u64, in_flight: usize) {
    for requests in &mut server.requests {
        requests.release();
    }
    if busy_ns > 0 {
        server.host.with_responder(|r| r.tally().busy_ns += busy_ns);
    }
    server.host.publish();
    server.shared.beat(started / NS_PER_MS);
    server
        .shared
        .pair_header()
        .stats
        .in_flight
        .store(in_flight as u64, Ordering::Relaxed);
}
