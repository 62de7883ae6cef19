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
//! Either way a request leaving its worker leaves the dispatcher's ledger,
//! which hands a connection whose last request left to
//! `Clients::requests_emptied` (a held connection is then listed for the
//! loop to frame again).
//!
//! The decision for one record is [`classify`], a plain function tested
//! on its own.

use crate::clients::Clients;
use crate::event_loop::Proxy;
use crate::flow::{self, Proto};
use crate::hooks::{Hooks, Verdict};
use spp_ipc::record::{split_response, KIND_CLOSE, KIND_EXPIRED, KIND_RESPONSE};
use spp_plugin_api::abi::{SPP_EXC_TIMEOUT, SPP_EXC_WORKER_DIED};
use std::ffi::c_int;

/// Response records taken from one ring per loop turn before the others
/// get a go.
pub const MAX_RESPONSES_PER_TURN: usize = 4096;

/// What one response record asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Deliver `bytes` to `flow`; `close` after them.
    Deliver {
        /// The flow.
        flow: u64,
        /// The response bytes (empty: close).
        bytes: &'a [u8],
        /// `KIND_CLOSE`.
        close: bool,
    },
    /// The worker dropped `flow`'s request `req` as stale.
    Expired {
        /// The flow.
        flow: u64,
        /// The request bytes, if the record carries them.
        req: Option<&'a [u8]>,
    },
    /// Not a record a response ring should hold.
    Unexpected,
}

/// Reads one response record of `kind` with payload `data`.
#[inline]
pub fn classify(kind: u16, data: &[u8]) -> Record<'_> {
    match (kind, split_response(data)) {
        (KIND_RESPONSE | KIND_CLOSE, Some((meta, bytes))) => Record::Deliver {
            flow: meta.flow,
            bytes,
            close: kind == KIND_CLOSE,
        },
        (KIND_EXPIRED, Some((meta, bytes))) => Record::Expired {
            flow: meta.flow,
            req: (!bytes.is_empty()).then_some(bytes),
        },
        _ => Record::Unexpected,
    }
}

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
            hooks,
            ..
        } = self;
        let completed = dispatch.completed_seq(s);
        let consumer = dispatch.responses(s);
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
            match classify(record.kind, record.data) {
                Record::Deliver { flow, bytes, close } => {
                    clients.stats.responses += 1;
                    hooks.deliver(clients, flow, bytes, close);
                }
                Record::Expired { flow, req } => {
                    clients.stats.stale_failed += 1;
                    fail_request(hooks, clients, flow, req, SPP_EXC_TIMEOUT);
                }
                Record::Unexpected => {
                    clients.stats.stale_responses += 1;
                    tracing::debug!(
                        kind = record.kind,
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
        dispatch.pop_completed(s, completed, |flow| clients.requests_emptied(flow));
        if let Some(e) = corrupt {
            let (group, index) = dispatch.slot_name(s);
            tracing::error!(
                group,
                worker = index,
                "response ring unreadable, dropping its records: {e}"
            );
            dispatch.responses(s).discard_all();
            // Their replies may be among the dropped records.
            self.fail_in_flight(s);
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
        while let Some((entry, emptied)) = self.dispatch.take_in_flight(s) {
            let live = match flow::decode(entry.flow).proto {
                Proto::Tcp => self.clients.conns.slot_of(entry.flow).is_some(),
                Proto::Udp => self.clients.udp_flows.slot_of(entry.flow).is_some(),
            };
            if !live {
                continue;
            }
            // A held connection is listed to frame again (after this
            // failure's answer is queued: the loop resumes held connections
            // later in the turn).
            if emptied {
                self.clients.requests_emptied(entry.flow);
            }
            self.clients.stats.worker_died_failed += 1;
            fail_request(
                &mut self.hooks,
                &mut self.clients,
                entry.flow,
                None,
                SPP_EXC_WORKER_DIED,
            );
        }
    }
}

/// `flow`'s request `req` (if known) failed for `reason`: the exception
/// hook answers it, or the flow ends. A result < 0, or no hook, closes a
/// TCP connection once its pending bytes are written; a UDP flow ends
/// either way. Nothing happens for a flow that no longer exists.
fn fail_request(
    hooks: &mut Hooks,
    clients: &mut Clients,
    flow: u64,
    req: Option<&[u8]>,
    reason: c_int,
) {
    match flow::decode(flow).proto {
        Proto::Tcp => {
            let Some(slot) = clients.conns.slot_of(flow) else {
                return;
            };
            let Some(info) = clients.conns.get(slot).map(|c| c.info) else {
                return;
            };
            if hooks.exception(clients, &info, req, reason) == Verdict::Close {
                clients.close_after_flush(flow);
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
            hooks.exception(clients, &info, req, reason);
            if let Some(slot) = clients.udp_flows.slot_of(flow) {
                clients.udp_flows.remove(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_ipc::record::{meta_bytes, ResponseMeta, KIND_REQUEST};

    fn record(flow: u64, bytes: &[u8]) -> Vec<u8> {
        let mut data = meta_bytes(&ResponseMeta { flow }).to_vec();
        data.extend_from_slice(bytes);
        data
    }

    #[test]
    fn responses_and_closes_are_delivered() {
        let data = record(7, b"hi");
        assert_eq!(
            classify(KIND_RESPONSE, &data),
            Record::Deliver {
                flow: 7,
                bytes: b"hi",
                close: false
            }
        );
        assert_eq!(
            classify(KIND_CLOSE, &data),
            Record::Deliver {
                flow: 7,
                bytes: b"hi",
                close: true
            }
        );
    }

    #[test]
    fn an_expired_record_carries_its_request_if_any() {
        assert_eq!(
            classify(KIND_EXPIRED, &record(3, b"req")),
            Record::Expired {
                flow: 3,
                req: Some(b"req")
            }
        );
        assert_eq!(
            classify(KIND_EXPIRED, &record(3, b"")),
            Record::Expired { flow: 3, req: None }
        );
    }

    #[test]
    fn other_kinds_and_short_records_are_unexpected() {
        assert_eq!(classify(KIND_REQUEST, &record(1, b"x")), Record::Unexpected);
        assert_eq!(classify(KIND_RESPONSE, &[1, 2, 3]), Record::Unexpected);
    }
}
