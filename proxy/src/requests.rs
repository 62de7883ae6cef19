//! Handing one framed request to a worker: `spp_route` picks the group
//! (no hook → `SPP_DEFAULT_GROUP`), the dispatcher queues it to the least-loaded
//! worker, and when that is impossible the request fails through the
//! plugin's `spp_exception` hook (no hook → the connection closes).
//!
//! Also where the exception hook is called for every reason (counted in
//! `exceptions`), and where the plugin's queued `reply`/`close` service
//! calls are applied (see `host.rs`), right after each hook that may have
//! made them. Both exist as free functions too, over the parts of the
//! proxy they need, for a caller that holds a borrow of a response ring.

use crate::clients::Clients;
use crate::dispatch::Refusal;
use crate::event_loop::Proxy;
use crate::host::{HostServices, OpQueue};
use spp_plugin_api::abi::{
    SppConnInfo, SPP_DEFAULT_GROUP, SPP_EXC_NO_WORKER, SPP_EXC_QUEUE_FULL, SPP_HOOK_PANICKED,
};
use spp_plugin_api::host::PluginLibrary;
use std::ffi::c_int;

/// Rounds of applying service calls made by hooks that ran while applying
/// the previous round (a `close` hook replying, say) before giving up.
const MAX_OP_ROUNDS: usize = 8;

/// What happens to a connection whose request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it open (the plugin answered, say).
    Keep,
    /// Close it once its pending bytes are written.
    Close,
}

impl Proxy {
    /// Routes and queues one request, to worker slot `prefer` if that
    /// serves the routed group (see `Dispatcher::push`). Returns the slot
    /// used. `Err` means it was not queued; the exception hook has run and
    /// says what to do with the connection.
    ///
    /// The request is stamped with `now_ns`, read again here once
    /// [`CLOCK_REFRESH_REQUESTS`](crate::event_loop::CLOCK_REFRESH_REQUESTS)
    /// requests used it (callers read it at the start of each batch; the
    /// bound is documented there).
    #[inline]
    pub(crate) fn submit(
        &mut self,
        info: &SppConnInfo,
        req: &[u8],
        prefer: Option<usize>,
    ) -> Result<usize, Verdict> {
        if self.clock_budget == 0 {
            self.refresh_request_clock();
        }
        self.clock_budget -= 1;
        let group = match self.plugin.route(info, req) {
            None => SPP_DEFAULT_GROUP,
            Some(SPP_HOOK_PANICKED) => {
                self.clients.stats.plugin_panics += 1;
                return Err(Verdict::Close);
            }
            Some(g) => match u32::try_from(g) {
                Ok(g) => g,
                Err(_) => return self.refuse(info, req, Refusal::NoWorker),
            },
        };
        match self.dispatch.push(group, info, req, self.now_ns, prefer) {
            Ok(slot) => return Ok(slot),
            Err(Refusal::NoWorker) => {}
            Err(refusal) => return self.refuse(info, req, refusal),
        }
        // A worker may have become ready since the last scan: look once.
        if self
            .dispatch
            .scan_group(group, self.poll.registry(), &mut self.gone)
        {
            if let Ok(slot) = self.dispatch.push(group, info, req, self.now_ns, prefer) {
                return Ok(slot);
            }
        }
        self.refuse(info, req, Refusal::NoWorker)
    }

    fn refuse(
        &mut self,
        info: &SppConnInfo,
        req: &[u8],
        refusal: Refusal,
    ) -> Result<usize, Verdict> {
        let reason = match refusal {
            Refusal::NoWorker => {
                self.clients.stats.no_worker += 1;
                SPP_EXC_NO_WORKER
            }
            Refusal::QueueFull => {
                self.clients.stats.ring_full += 1;
                SPP_EXC_QUEUE_FULL
            }
            Refusal::TooLarge => {
                // Larger than a ring can ever hold: like an oversized request.
                self.clients.stats.oversized += 1;
                tracing::warn!(
                    flow = info.flow,
                    len = req.len(),
                    "request larger than the request ring can hold"
                );
                return Err(Verdict::Close);
            }
        };
        Err(self.raise(info, Some(req), reason))
    }

    /// Calls `spp_exception` for a request that could not be served and
    /// applies whatever the plugin answered through the host services.
    pub(crate) fn raise(
        &mut self,
        info: &SppConnInfo,
        req: Option<&[u8]>,
        reason: c_int,
    ) -> Verdict {
        let Proxy {
            clients,
            ops,
            plugin,
            host,
            ..
        } = self;
        raise(clients, ops, plugin, host, info, req, reason)
    }

    /// Applies the `reply`/`close` calls plugin hooks queued.
    pub(crate) fn apply_host_ops(&mut self) {
        apply_host_ops(&mut self.clients, &mut self.ops, self.plugin, self.host);
    }

    /// Adds the plugin's `reply`/`close` calls refused since the last look
    /// to `host_refused`, and logs those refused because the queue was full
    /// (once per loop turn at most).
    pub(crate) fn count_refused_ops(&mut self) {
        let refused = self.host.take_refused();
        self.clients.stats.host_refused += refused.total;
        if refused.full != 0 {
            tracing::warn!(
                refused = refused.full,
                "plugin queued too many reply/close calls in one hook; refused with SPP_ERR_FULL"
            );
        }
    }
}

/// [`Proxy::raise`] over the parts of the proxy it needs, for callers that
/// hold a borrow of another part (a response ring). Counts `exceptions`
/// when the plugin has the hook.
pub(crate) fn raise(
    clients: &mut Clients,
    ops: &mut OpQueue,
    plugin: &PluginLibrary,
    host: &HostServices,
    info: &SppConnInfo,
    req: Option<&[u8]>,
    reason: c_int,
) -> Verdict {
    let answer = plugin.exception(info, req, reason);
    if answer.is_some() {
        clients.stats.exceptions += 1;
    }
    let verdict = match answer {
        None => Verdict::Close,
        Some(SPP_HOOK_PANICKED) => {
            clients.stats.plugin_panics += 1;
            Verdict::Close
        }
        Some(code) if code < 0 => Verdict::Close,
        Some(_) => Verdict::Keep,
    };
    apply_host_ops(clients, ops, plugin, host);
    verdict
}

/// [`Proxy::apply_host_ops`] over the parts of the proxy it needs.
pub(crate) fn apply_host_ops(
    clients: &mut Clients,
    ops: &mut OpQueue,
    plugin: &PluginLibrary,
    host: &HostServices,
) {
    for _ in 0..MAX_OP_ROUNDS {
        if !host.has_ops() || !host.take_ops(ops) {
            return;
        }
        for op in &ops.ops {
            clients.deliver(plugin, op.flow, ops.bytes(op), op.close);
        }
        ops.clear();
    }
    if host.has_ops() {
        tracing::warn!("plugin keeps queueing replies from its close hook; dropping them");
        host.take_ops(ops);
        ops.clear();
    }
}
