//! Draining the workers' response rings, and failing the requests of a
//! worker that is gone.
//!
//! Per slot and turn: load the worker's `completed_seq` first, then take
//! the published response records (bounded per turn) and hand each to
//! [`Clients::deliver`](crate::clients::Clients::deliver), release the ring
//! space once, and finally pop the in-flight entries the loaded
//! `completed_seq` covers. Loading it first means every reply a worker
//! published before marking its request complete is delivered before the
//! request stops counting as in flight.
//!
//! A `KIND_EXPIRED` record means the worker dropped a request that
//! waited past its group's `msg_timeout`: it counts `stale_failed`, and if
//! the flow is still live the exception hook gets it (`SPP_EXC_TIMEOUT`,
//! `req` = the request bytes straight from the ring, or NULL when the
//! record carries none). A result < 0, or no hook, closes a TCP connection
//! once its pending bytes are written; a UDP flow ends either way. The
//! hook runs in ring order, so its answer lands between the responses
//! around it.
//!
//! A gone worker's ring is drained completely, then everything it still
//! held fails at once with `SPP_EXC_WORKER_DIED` (`req` = NULL).
//!
//! Either way a request leaving its worker goes through
//! `Clients::request_left`, which lists a held connection (`conn::HELD`)
//! whose last request left, for the loop to frame again.

use crate::clients::Clients;
use crate::conn::CLOSE_AFTER_FLUSH;
use crate::event_loop::Proxy;
use crate::flow::{self, Proto};
use crate::host::{HostServices, OpQueue};
use crate::requests::{self, Verdict};
use spp_ipc::record::{split_response, KIND_CLOSE, KIND_EXPIRED, KIND_RESPONSE};
use spp_plugin_api::abi::{SPP_EXC_TIMEOUT, SPP_EXC_WORKER_DIED};
use spp_plugin_api::host::PluginLibrary;

/// Response records taken from one ring per loop turn before the others
/// get a go.
pub const MAX_RESPONSES_PER_TURN: usize = 4096;

impl Proxy {
    /// Drains every response ring (bounded per ring). Returns whether a
    /// ring still holds records.
    pub(crate) fn drain_responses(&mut self) -> bool {
        let mut more = false;
        for s in 0..self.dispatch.slot_count() {
            more |= self.drain_slot(s, MAX_RESPONSES_PER_TURN);
        }
        more
    }

    /// Takes up to `cap` records from slot `s`'s response ring. Returns
    /// whether records remain.
    fn drain_slot(&mut self, s: usize, cap: usize) -> bool {
        let Proxy {
            dispatch,
            clients,
            ops,
            plugin,
            host,
            ..
        } = self;
        let completed = dispatch.completed_seq(s);
        let consumer = dispatch.slot_mut(s).consumer();
        let mut taken = 0;
        let mut more = false;
        let mut corrupt = None;
        loop {
            let record = match consumer.peek() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    corrupt = Some(e);
                    break;
                }
            };
            let stride = record.stride();
            match (record.kind, split_response(record.data)) {
                (KIND_RESPONSE | KIND_CLOSE, Some((meta, bytes))) => {
                    clients.stats.responses += 1;
                    clients.deliver(plugin, meta.flow, bytes, record.kind == KIND_CLOSE);
                }
                (KIND_EXPIRED, Some((meta, bytes))) => {
                    clients.stats.stale_failed += 1;
                    fail_expired(clients, ops, plugin, host, meta.flow, bytes);
                }
                (kind, _) => {
                    clients.stats.stale_responses += 1;
                    tracing::debug!(
                        kind,
                        len = record.data.len(),
                        "unexpected record in a response ring"
                    );
                }
            }
            consumer.advance(stride);
            taken += 1;
            if taken >= cap {
                more = consumer.has_data();
                break;
            }
        }
        consumer.release();
        dispatch.pop_completed(s, completed, |flow| clients.request_done(flow));
        if let Some(e) = corrupt {
            let (group, index) = dispatch.slot_mut(s).name();
            tracing::error!(
                group,
                worker = index,
                "response ring unreadable, dropping its records: {e}"
            );
            dispatch.slot_mut(s).consumer().discard_all();
            // Their replies may be among the dropped records.
            self.fail_in_flight(s);
        }
        if taken != 0 {
            self.apply_host_ops();
        }
        more
    }

    /// Handles every slot whose worker is gone: drain what it published,
    /// then fail what it still held.
    pub(crate) fn fail_gone_workers(&mut self) {
        while let Some(s) = self.gone.pop() {
            while self.drain_slot(s, usize::MAX) {}
            self.fail_in_flight(s);
        }
    }

    /// Fails every request still in flight in slot `s` with
    /// `SPP_EXC_WORKER_DIED`.
    fn fail_in_flight(&mut self, s: usize) {
        while let Some(entry) = self.dispatch.take_in_flight(s) {
            match flow::decode(entry.flow).proto {
                Proto::Tcp => {
                    let Some(slot) = self.clients.conns.slot_of(entry.flow) else {
                        continue;
                    };
                    let Some(info) = self.clients.conns.get(slot).map(|c| c.info) else {
                        continue;
                    };
                    // A held connection is listed to frame again (after
                    // this failure's answer is queued: the loop resumes
                    // held connections later in the turn).
                    self.clients.request_left(slot);
                    self.clients.stats.worker_died_failed += 1;
                    if self.raise(&info, None, SPP_EXC_WORKER_DIED) == Verdict::Close {
                        if let Some(conn) = self.clients.conns.lookup_mut(entry.flow) {
                            conn.flags |= crate::conn::CLOSE_AFTER_FLUSH;
                        }
                    }
                    self.clients.mark_flush(slot);
                }
                Proto::Udp => {
                    let Some(slot) = self.clients.udp_flows.slot_of(entry.flow) else {
                        continue;
                    };
                    let Some(info) = self.clients.udp_flows.get(slot).map(|f| f.info) else {
                        continue;
                    };
                    self.clients.stats.worker_died_failed += 1;
                    self.raise(&info, None, SPP_EXC_WORKER_DIED);
                    if let Some(slot) = self.clients.udp_flows.slot_of(entry.flow) {
                        self.clients.udp_flows.remove(slot);
                    }
                }
            }
        }
    }
}

/// A worker dropped `flow`'s request `req` (may be empty) as stale: the
/// exception hook answers it or the flow ends (see the module doc).
fn fail_expired(
    clients: &mut Clients,
    ops: &mut OpQueue,
    plugin: &PluginLibrary,
    host: &HostServices,
    flow: u64,
    req: &[u8],
) {
    let req = (!req.is_empty()).then_some(req);
    match flow::decode(flow).proto {
        Proto::Tcp => {
            let Some(slot) = clients.conns.slot_of(flow) else {
                return;
            };
            let Some(info) = clients.conns.get(slot).map(|c| c.info) else {
                return;
            };
            let verdict = requests::raise(clients, ops, plugin, host, &info, req, SPP_EXC_TIMEOUT);
            if verdict == Verdict::Close {
                if let Some(conn) = clients.conns.lookup_mut(flow) {
                    conn.flags |= CLOSE_AFTER_FLUSH;
                }
            }
            clients.mark_flush(slot);
        }
        Proto::Udp => {
            let Some(info) = clients
                .udp_flows
                .slot_of(flow)
                .and_then(|slot| clients.udp_flows.get(slot))
                .map(|f| f.info)
            else {
                return;
            };
            requests::raise(clients, ops, plugin, host, &info, req, SPP_EXC_TIMEOUT);
            if let Some(slot) = clients.udp_flows.slot_of(flow) {
                clients.udp_flows.remove(slot);
            }
        }
    }
}
