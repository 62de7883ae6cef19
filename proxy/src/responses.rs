//! Draining the workers' response rings, and failing the requests of a
//! worker that is gone.
//!
//! Per slot and turn, through the pair's proxy end
//! (`spp_ipc::pair::ProxyEnd::drain_responses`): it loads the worker's
//! `completed_seq` first, then takes the published response records
//! (bounded per turn), each handed to
//! [`Clients::deliver`](crate::clients::Clients::deliver), releases the
//! ring space once, and finally the dispatcher pops the in-flight entries
//! the loaded `completed_seq` covers. Loading it first means every reply a
//! worker published before marking its request complete is delivered
//! before the request stops counting as in flight.
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
//! held fails at once with `SPP_EXC_WORKER_DIED` (`req` = NULL). The
//! request it died processing, if any, is booked first in the poison table
//! ([`crate::poison`]).
//!
//! Either way a request leaving its worker leaves the dispatcher's ledger,
//! which hands a connection whose last request left to
//! `Clients::requests_emptied` (a held connection is then listed for the
//! loop to frame again).
//!
//! What one record asks for, and what it counts, is [`action`], a plain
//! function tested on its own.

use crate::clients::Clients;
use crate::event_loop::Proxy;
use crate::flow::{self, Proto};
use crate::hooks::{Hooks, Verdict};
use crate::order::Origin;
use spp_ipc::layout::ProxyTally;
use spp_ipc::pair::ResponseRecord;
use spp_ipc::poison::POISON_DEATHS;
use spp_plugin_api::abi::{SPP_EXC_TIMEOUT, SPP_EXC_WORKER_DIED};
use std::ffi::c_int;

/// Response records taken from one ring per loop turn before the others
/// get a go.
pub const MAX_RESPONSES_PER_TURN: usize = 4096;

/// What one response record asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Deliver `bytes` to `flow`; `close` after them.
    Deliver {
        /// The flow.
        flow: u64,
        /// The response bytes (empty: close).
        bytes: &'a [u8],
        /// `KIND_CLOSE`.
        close: bool,
    },
    /// The worker dropped `flow`'s request as stale: fail it with
    /// `SPP_EXC_TIMEOUT`, `req` being its bytes when the record has them.
    Expire {
        /// The flow.
        flow: u64,
        /// The request bytes, if the record carries them.
        req: Option<&'a [u8]>,
    },
    /// Nothing to do (counted, logged).
    Skip,
}

/// What `record` asks for; counts it in `stats` (`responses`,
/// `stale_failed` or `stale_responses`).
#[inline]
pub fn action<'a>(record: ResponseRecord<'a>, stats: &mut ProxyTally) -> Action<'a> {
    match record {
        ResponseRecord::Reply { flow, bytes, close } => {
            stats.responses += 1;
            Action::Deliver { flow, bytes, close }
        }
        ResponseRecord::Expired { flow, request } => {
            stats.stale_failed += 1;
            Action::Expire {
                flow,
                req: (!request.is_empty()).then_some(request),
            }
        }
        ResponseRecord::Unexpected { kind, len } => {
            stats.stale_responses += 1;
            tracing::debug!(kind, len, "unexpected record in a response ring");
            Action::Skip
        }
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
        let origin = Origin::Worker(s);
        let drained =
            dispatch.drain_responses(s, cap, |record| match action(record, &mut clients.stats) {
                Action::Deliver { flow, bytes, close } => {
                    hooks.deliver_from(clients, origin, flow, bytes, close)
                }
                Action::Expire { flow, req } => {
                    fail_request(hooks, clients, origin, flow, req, SPP_EXC_TIMEOUT, false);
                }
                Action::Skip => {}
            });
        // Only a drain that emptied the ring pops what `completed_seq`
        // covers (pair rule 2): one cut short by `cap` may have left some of
        // those requests' replies in the ring, and the answers held behind
        // a request must not leave before all of its own. The next drain
        // pops.
        if !drained.more {
            dispatch.pop_completed(s, &drained, |flow, last| {
                clients.request_left(flow, s);
                if last {
                    clients.requests_emptied(flow);
                }
            });
        }
        if let Some(e) = &drained.corrupt {
            let (group, index) = dispatch.slot_name(s);
            tracing::error!(
                group,
                worker = index,
                "response ring unreadable, dropping its records: {e}"
            );
            // Their replies may be among the dropped records.
            self.fail_in_flight(s);
        }
        drained.more
    }

    /// Handles every slot whose worker is gone: drain what it published,
    /// then fail what it still held.
    pub(crate) fn fail_gone_workers(&mut self) {
        while let Some(s) = self.gone.pop() {
            self.book_poison(s);
            while self.drain_slot(s, usize::MAX) {}
            self.fail_in_flight(s);
        }
    }

    /// Books the request slot `s`'s gone worker died holding, if any, in
    /// the poison table.
    fn book_poison(&mut self, s: usize) {
        let Some(hash) = self.dispatch.died_holding(s) else {
            return;
        };
        let (group, index) = self.dispatch.slot_name(s);
        let deaths = self.poison.book_death(group, hash, self.clients.now_ms);
        tracing::warn!(
            group,
            worker = index,
            hash = format_args!("{hash:016x}"),
            deaths,
            "worker died processing a request{}",
            if deaths >= POISON_DEATHS {
                "; refusing these bytes from now on (poison)"
            } else {
                ""
            }
        );
    }

    /// Fails every request a frozen worker holds past `msg_timeout` plus a
    /// grace (`dispatch::stall`; loop time `now_ms`): the exception hook
    /// (`SPP_EXC_TIMEOUT`), then the connection closes whatever the hook
    /// said, so a late reply from the worker is never read as the answer
    /// to the connection's next request. Counted in `proxy_expired`.
    pub(crate) fn expire_overdue(&mut self, now_ms: u64) {
        for s in 0..self.dispatch.slot_count() {
            let mut expired = 0u64;
            while let Some((entry, emptied)) = self.dispatch.take_overdue(s, now_ms) {
                expired += 1;
                // The connection closes whatever the hook said (a UDP flow
                // ends in `fail_request` anyway).
                if self.fail_taken(s, entry.flow, emptied, SPP_EXC_TIMEOUT, true) {
                    self.clients.stats.proxy_expired += 1;
                }
            }
            if expired != 0 {
                let (group, worker) = self.dispatch.slot_name(s);
                tracing::warn!(
                    group,
                    worker,
                    expired,
                    "worker frozen: failed requests it held past msg_timeout; their connections close"
                );
            }
        }
    }

    /// Fails every request still in flight in slot `s` with
    /// `SPP_EXC_WORKER_DIED`.
    fn fail_in_flight(&mut self, s: usize) {
        while let Some((entry, emptied)) = self.dispatch.take_in_flight(s) {
            if self.fail_taken(s, entry.flow, emptied, SPP_EXC_WORKER_DIED, false) {
                self.clients.stats.worker_died_failed += 1;
            }
        }
    }

    /// Fails a request taken out of slot `s`'s FIFO (`emptied`: it was its
    /// connection's last in flight) with exception `reason`, if its flow
    /// still exists; `close`: its TCP connection closes whatever the hook
    /// says. The hook's answer takes the request's place in its
    /// connection's answer order. Returns whether it failed one.
    fn fail_taken(
        &mut self,
        s: usize,
        flow: u64,
        emptied: bool,
        reason: c_int,
        close: bool,
    ) -> bool {
        let live = match flow::decode(flow).proto {
            Proto::Tcp => self.clients.conns.slot_of(flow).is_some(),
            Proto::Udp => self.clients.udp_flows.slot_of(flow).is_some(),
        };
        if !live {
            return false;
        }
        let origin = Origin::Worker(s);
        fail_request(
            &mut self.hooks,
            &mut self.clients,
            origin,
            flow,
            None,
            reason,
            close,
        );
        self.clients.request_left(flow, s);
        // A held connection is listed to frame again (after this failure's
        // answer is queued: the loop resumes held connections later in the
        // turn).
        if emptied {
            self.clients.requests_emptied(flow);
        }
        true
    }
}

/// `flow`'s request `req` (if known) failed for `reason`: the exception
/// hook answers it, or the flow ends. A result < 0, no hook, or `close`
/// closes a TCP connection once the answers before this request's (in
/// request order, `origin` says where it stands) and its own are written;
/// a UDP flow ends either way. Nothing happens for a flow that no longer
/// exists.
fn fail_request(
    hooks: &mut Hooks,
    clients: &mut Clients,
    origin: Origin,
    flow: u64,
    req: Option<&[u8]>,
    reason: c_int,
    close: bool,
) {
    match flow::decode(flow).proto {
        Proto::Tcp => {
            let Some(slot) = clients.conns.slot_of(flow) else {
                return;
            };
            let Some(info) = clients.conns.get(slot).map(|c| c.info) else {
                return;
            };
            // The hook's `reply`/`close` calls answer this request.
            clients.origin = origin;
            let verdict = hooks.exception(clients, &info, req, reason);
            clients.origin = Origin::Local;
            if verdict == Verdict::Close || close {
                clients.close_in_order(flow, origin);
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

    #[test]
    fn replies_and_closes_are_delivered_and_counted() {
        let mut stats = ProxyTally::default();
        let reply = ResponseRecord::Reply {
            flow: 7,
            bytes: b"hi",
            close: false,
        };
        assert_eq!(
            action(reply, &mut stats),
            Action::Deliver {
                flow: 7,
                bytes: b"hi",
                close: false
            }
        );
        let close = ResponseRecord::Reply {
            flow: 7,
            bytes: b"",
            close: true,
        };
        assert_eq!(
            action(close, &mut stats),
            Action::Deliver {
                flow: 7,
                bytes: b"",
                close: true
            }
        );
        assert_eq!(stats.responses, 2);
    }

    #[test]
    fn an_expired_record_fails_its_request_with_its_bytes_if_any() {
        let mut stats = ProxyTally::default();
        let with = ResponseRecord::Expired {
            flow: 3,
            request: b"req",
        };
        assert_eq!(
            action(with, &mut stats),
            Action::Expire {
                flow: 3,
                req: Some(b"req")
            }
        );
        let without = ResponseRecord::Expired {
            flow: 3,
            request: b"",
        };
        assert_eq!(
            action(without, &mut stats),
            Action::Expire { flow: 3, req: None }
        );
        assert_eq!((stats.stale_failed, stats.responses), (2, 0));
    }

    #[test]
    fn other_records_are_counted_stale_and_skipped() {
        let mut stats = ProxyTally::default();
        let odd = ResponseRecord::Unexpected { kind: 99, len: 3 };
        assert_eq!(action(odd, &mut stats), Action::Skip);
        assert_eq!(stats.stale_responses, 1);
    }
}
