//! Handing one framed request to a worker: `spp_route` picks the group
//! (no hook → `SPP_DEFAULT_GROUP`), the dispatcher queues it to the
//! least-loaded worker (or the one its connection sticks to), and when that
//! is impossible the request fails through the plugin's `spp_exception`
//! hook (no hook → the connection closes).
//!
//! While the poison table ([`crate::poison`]) holds an armed entry, each
//! request is hashed after routing and refused (`SPP_EXC_POISON`, counted
//! in `poison_refused`) when its bytes killed
//! [`POISON_DEATHS`](spp_ipc::poison::POISON_DEATHS) workers of
//! its group.
//!
//! Answer order (`crate::order`): a TCP connection's request goes only to
//! a slot that holds none of its unfinished requests or its latest one;
//! when every accepting worker of the group fails that, nothing is queued
//! and the caller holds the connection's framing ([`NotQueued::Busy`]).
//!
//! The decisions are plain functions ([`route_decision`],
//! [`refusal_decision`]) so they are tested without a plugin or a worker;
//! `Proxy::submit` strings them together with the hooks runner and the
//! dispatcher.

use crate::dispatch::{Outgoing, Refusal};
use crate::event_loop::Proxy;
use crate::hooks::Verdict;
use spp_ipc::layout::ProxyTally;
use spp_ipc::poison::request_hash;
use spp_plugin_api::abi::{
    SppConnInfo, SPP_DEFAULT_GROUP, SPP_EXC_NO_WORKER, SPP_EXC_POISON, SPP_EXC_QUEUE_FULL,
    SPP_HOOK_PANICKED,
};
use std::ffi::c_int;

/// What `spp_route`'s answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Queue it to this group.
    Group(u32),
    /// The hook panicked: close the connection.
    Panicked,
    /// Not a group id: fails as [`Refusal::NoWorker`].
    Invalid,
}

/// Reads `spp_route`'s answer (`None`: no hook).
#[inline]
pub fn route_decision(answer: Option<c_int>) -> Route {
    match answer {
        None => Route::Group(SPP_DEFAULT_GROUP),
        Some(SPP_HOOK_PANICKED) => Route::Panicked,
        Some(g) => u32::try_from(g).map_or(Route::Invalid, Route::Group),
    }
}

/// What becomes of a request the dispatcher refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The exception hook gets it with this reason.
    Raise(c_int),
    /// Close the connection (no hook call): the request can never fit.
    Close,
    /// Not a failure: it waits (framing holds) until the connection's
    /// requests in flight have left.
    Hold,
}

/// Why `Proxy::submit` did not queue a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotQueued {
    /// It failed; the exception hook has run and says what becomes of the
    /// connection.
    Failed(Verdict),
    /// It must wait (see [`Refusal::Busy`]): the caller holds framing
    /// before it and frames it again, for `group`, once the connection's
    /// requests in flight have left.
    Busy {
        /// The group `spp_route` gave it.
        group: u32,
    },
}

/// Counts `refusal` in `stats` and says how the request fails.
pub fn refusal_decision(refusal: Refusal, stats: &mut ProxyTally) -> Failure {
    match refusal {
        Refusal::NoWorker => {
            stats.no_worker += 1;
            Failure::Raise(SPP_EXC_NO_WORKER)
        }
        Refusal::QueueFull => {
            stats.ring_full += 1;
            Failure::Raise(SPP_EXC_QUEUE_FULL)
        }
        Refusal::TooLarge => {
            // Larger than a ring can ever hold: like an oversized request.
            stats.oversized += 1;
            Failure::Close
        }
        Refusal::Busy => Failure::Hold,
    }
}

impl Proxy {
    /// Routes and queues one request with its `note` (from the input hook's
    /// `set_note`; only the worker sees it), to worker slot `prefer` if that
    /// serves the routed group (see `Dispatcher::push`). Returns the slot
    /// used. `routed`: the group `spp_route` already gave it (framing
    /// held before it, [`NotQueued::Busy`]); 0 to route it now.
    ///
    /// The request is stamped by the [`RequestClock`](crate::event_loop::RequestClock)
    /// (callers refresh it at the start of each batch; the bound is
    /// documented at [`CLOCK_REFRESH_REQUESTS`](crate::event_loop::CLOCK_REFRESH_REQUESTS)).
    #[inline]
    pub(crate) fn submit(
        &mut self,
        info: &SppConnInfo,
        note: &[u8],
        req: &[u8],
        prefer: Option<usize>,
        routed: u32,
    ) -> Result<usize, NotQueued> {
        let now_ns = self.clock.stamp();
        let group = if routed != 0 {
            routed
        } else {
            match route_decision(self.hooks.route(&mut self.clients, info, req)) {
                Route::Group(g) => g,
                Route::Panicked => {
                    self.clients.stats.plugin_panics += 1;
                    return Err(NotQueued::Failed(Verdict::Close));
                }
                Route::Invalid => return self.refuse(info, req, 0, Refusal::NoWorker),
            }
        };
        if self.poison.armed() {
            if let Some(verdict) = self.refuse_poison(info, req, group) {
                return Err(NotQueued::Failed(verdict));
            }
        }
        match self.push(group, info, note, req, now_ns, prefer) {
            Ok(slot) => return Ok(slot),
            Err(Refusal::NoWorker) => {}
            Err(refusal) => return self.refuse(info, req, group, refusal),
        }
        // A worker may have become ready since the last scan: look once.
        if self
            .dispatch
            .scan_group(group, self.io.registry(), &mut self.gone)
        {
            match self.push(group, info, note, req, now_ns, prefer) {
                Ok(slot) => return Ok(slot),
                Err(Refusal::Busy) => return self.refuse(info, req, group, Refusal::Busy),
                Err(_) => {}
            }
        }
        self.refuse(info, req, group, Refusal::NoWorker)
    }

    /// `Dispatcher::push`, keeping a TCP connection's answers in order: a
    /// slot its [`Order`](crate::order::Order) refuses is busy, and the
    /// slot used is recorded there.
    #[inline]
    fn push(
        &mut self,
        group: u32,
        info: &SppConnInfo,
        note: &[u8],
        req: &[u8],
        now_ns: u64,
        prefer: Option<usize>,
    ) -> Result<usize, Refusal> {
        let conns = &self.clients.conns;
        let order = conns
            .slot_of(info.flow)
            .and_then(|slot| conns.get(slot))
            .map(|c| &c.order);
        let request = Outgoing {
            conn: info,
            note,
            bytes: req,
        };
        let slot = self.dispatch.push(group, request, now_ns, prefer, |s| {
            order.is_some_and(|o| !o.may_push(s))
        })?;
        if let Some(conn) = self.clients.conns.lookup_mut(info.flow) {
            conn.order.pushed(slot);
        }
        Ok(slot)
    }

    /// Refuses `req` if the poison table says its bytes killed workers of
    /// `group`: counted, logged with its hash (thinned to powers of two per
    /// hash), and failed through the exception hook (`SPP_EXC_POISON`).
    #[cold]
    fn refuse_poison(&mut self, info: &SppConnInfo, req: &[u8], group: u32) -> Option<Verdict> {
        let hash = request_hash(req);
        let refused = self.poison.check(group, hash, self.clients.now_ms)?;
        self.clients.stats.poison_refused += 1;
        if refused.refused.is_power_of_two() {
            tracing::warn!(
                flow = info.flow,
                group,
                hash = format_args!("{hash:016x}"),
                deaths = refused.deaths,
                refused = refused.refused,
                "refusing a poison request (workers died processing these bytes)"
            );
        }
        Some(
            self.hooks
                .exception(&mut self.clients, info, Some(req), SPP_EXC_POISON),
        )
    }

    fn refuse(
        &mut self,
        info: &SppConnInfo,
        req: &[u8],
        group: u32,
        refusal: Refusal,
    ) -> Result<usize, NotQueued> {
        match refusal_decision(refusal, &mut self.clients.stats) {
            Failure::Raise(reason) => Err(NotQueued::Failed(self.hooks.exception(
                &mut self.clients,
                info,
                Some(req),
                reason,
            ))),
            Failure::Close => {
                tracing::warn!(
                    flow = info.flow,
                    len = req.len(),
                    "request larger than the request ring can hold"
                );
                Err(NotQueued::Failed(Verdict::Close))
            }
            Failure::Hold => Err(NotQueued::Busy { group }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_hook_means_the_default_group() {
        assert_eq!(route_decision(None), Route::Group(SPP_DEFAULT_GROUP));
        assert_eq!(route_decision(Some(9)), Route::Group(9));
    }

    #[test]
    fn a_panicked_or_negative_route_does_not_queue() {
        assert_eq!(route_decision(Some(SPP_HOOK_PANICKED)), Route::Panicked);
        assert_eq!(route_decision(Some(-3)), Route::Invalid);
    }

    #[test]
    fn refusals_are_counted_and_fail_as_the_abi_says() {
        let mut stats = ProxyTally::default();
        assert_eq!(
            refusal_decision(Refusal::NoWorker, &mut stats),
            Failure::Raise(SPP_EXC_NO_WORKER)
        );
        assert_eq!(
            refusal_decision(Refusal::QueueFull, &mut stats),
            Failure::Raise(SPP_EXC_QUEUE_FULL)
        );
        assert_eq!(
            refusal_decision(Refusal::TooLarge, &mut stats),
            Failure::Close
        );
        assert_eq!(refusal_decision(Refusal::Busy, &mut stats), Failure::Hold);
        assert_eq!(
            (stats.no_worker, stats.ring_full, stats.oversized),
            (1, 1, 1)
        );
    }
}
