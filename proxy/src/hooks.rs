//! The hooks runner: owns the plugin and its `spp_host` table, runs every
//! hook, and applies the `reply`/`close` calls the plugin queued through
//! the table right after each hook returns — callers never flush by hand.
//!
//! Hooks that run inside a [`Clients`] operation (the `close` hook, called
//! when a connection closes) are reached through a [`HookCall`], which
//! only [`Hooks::with`] hands out, so the queued calls of those hooks are
//! applied after that operation too. Applying a call may close a
//! connection, whose close hook may queue more: up to [`MAX_OP_ROUNDS`]
//! rounds are applied before the rest is dropped.
//!
//! The plugin library and the table are leaked: plugin threads may still
//! run after `spp_fini`, so their code and the table stay mapped until the
//! process is gone.

use crate::clients::Clients;
use crate::host::{HostServices, Note, OpQueue};
use crate::order::Origin;
use spp_ipc::layout::ProxyTally;
use spp_plugin_api::abi::{SppConnInfo, SPP_HOOK_PANICKED};
use spp_plugin_api::host::PluginLibrary;
use std::ffi::{c_int, CStr};
use std::path::Path;

/// Rounds of applying service calls made by hooks that ran while applying
/// the previous round (a `close` hook replying, say) before giving up.
pub const MAX_OP_ROUNDS: usize = 8;

/// What happens to a connection whose request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it open (the plugin answered, say).
    Keep,
    /// Close it once its pending bytes are written.
    Close,
}

/// Leave to call the `close` hook from inside a [`Clients`] operation;
/// handed out by [`Hooks::with`] only, which applies what it queued.
#[derive(Clone, Copy)]
pub struct HookCall<'a>(Option<&'a PluginLibrary>);

impl HookCall<'_> {
    /// `spp_close(info, leftover)`, then `spp_conn_free(info, ctx)` for a
    /// connection that has a plugin context.
    #[inline]
    pub fn close(self, info: &SppConnInfo, leftover: &[u8], plugin_ctx: Option<usize>) {
        if let Some(plugin) = self.0 {
            plugin.close(info, leftover);
            if let Some(ctx) = plugin_ctx {
                plugin.conn_free(info, ctx);
            }
        }
    }

    /// A leave that calls no plugin, for unit tests of [`Clients`].
    #[cfg(test)]
    pub fn none() -> HookCall<'static> {
        HookCall(None)
    }
}

/// The plugin, its host table, and the queue its service calls are
/// applied from.
pub struct Hooks {
    plugin: &'static PluginLibrary,
    host: &'static HostServices,
    ops: OpQueue,
}

impl Hooks {
    /// A runner for `plugin` with host table `host` (both leaked).
    pub fn new(plugin: &'static PluginLibrary, host: &'static HostServices) -> Self {
        Hooks {
            plugin,
            host,
            ops: OpQueue::default(),
        }
    }

    /// The plugin's path, for messages.
    pub fn path(&self) -> &Path {
        self.plugin.path()
    }

    /// `spp_init(host, conf)`; its result code.
    pub fn init(&mut self, clients: &mut Clients, conf: &CStr) -> c_int {
        // SAFETY: `self.host` is leaked, so the table stays valid and in
        // place for the process's life (past `spp_fini`).
        let code = unsafe { self.plugin.init(self.host.table(), conf) };
        self.flush(clients);
        code
    }

    /// `spp_fini`. The library stays loaded (leaked).
    pub fn fini(&mut self, clients: &mut Clients) {
        self.plugin.fini();
        self.flush(clients);
    }

    /// `spp_input(info, bytes)`: the length of the first request, 0 for
    /// more bytes needed, < 0 to reject, [`SPP_HOOK_PANICKED`]; `None`
    /// without the hook.
    #[inline]
    pub fn input(
        &mut self,
        clients: &mut Clients,
        info: &SppConnInfo,
        bytes: &[u8],
    ) -> Option<c_int> {
        self.host.begin_input();
        let verdict = self.plugin.input(info, bytes);
        self.host.end_input();
        self.flush(clients);
        verdict
    }

    /// The note the last input hook set with `set_note` (none after the
    /// first take): the caller submits it with the request that hook framed.
    #[inline]
    pub fn take_note(&self) -> Note {
        self.host.take_note()
    }

    /// Whether TCP framing goes through `spp_input_ctx` with a context per
    /// connection.
    #[inline]
    pub fn has_input_ctx(&self) -> bool {
        self.plugin.has_input_ctx()
    }

    /// `spp_conn_open(info)`: the new connection's context (an address).
    /// What the hook queued is applied by the next hook call (the
    /// `spp_input_ctx` that follows at once), after the caller stored the
    /// context, so a close it asked for frees the context too.
    pub fn conn_open(&mut self, info: &SppConnInfo) -> usize {
        self.plugin.conn_open(info)
    }

    /// `spp_input_ctx(info, ctx, bytes)`, as [`Self::input`].
    #[inline]
    pub fn input_ctx(
        &mut self,
        clients: &mut Clients,
        info: &SppConnInfo,
        ctx: usize,
        bytes: &[u8],
    ) -> Option<c_int> {
        self.host.begin_input();
        let verdict = self.plugin.input_ctx(info, ctx, bytes);
        self.host.end_input();
        self.flush(clients);
        verdict
    }

    /// `spp_route(info, req)`: the group id; `None` without the hook.
    #[inline]
    pub fn route(
        &mut self,
        clients: &mut Clients,
        info: &SppConnInfo,
        req: &[u8],
    ) -> Option<c_int> {
        let group = self.plugin.route(info, req);
        self.flush(clients);
        group
    }

    /// `spp_exception` for a request that could not be served; counts
    /// `exceptions` when the plugin has the hook, and says what becomes of
    /// the connection (closed without the hook or on a result < 0).
    pub fn exception(
        &mut self,
        clients: &mut Clients,
        info: &SppConnInfo,
        req: Option<&[u8]>,
        reason: c_int,
    ) -> Verdict {
        let answer = self.plugin.exception(info, req, reason);
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
        self.flush(clients);
        verdict
    }

    /// Runs `f`, which may call the `close` hook through its [`HookCall`],
    /// then applies what the hooks queued.
    #[inline]
    pub fn with<R>(
        &mut self,
        clients: &mut Clients,
        f: impl FnOnce(&mut Clients, HookCall<'_>) -> R,
    ) -> R {
        let r = f(clients, HookCall(Some(self.plugin)));
        self.flush(clients);
        r
    }

    /// Delivers response bytes made by `origin` to `flow` (see
    /// `Clients::deliver_from`; a connection it closes gets its `close`
    /// hook).
    #[inline]
    pub fn deliver_from(
        &mut self,
        clients: &mut Clients,
        origin: Origin,
        flow: u64,
        bytes: &[u8],
        close: bool,
    ) {
        clients.deliver_from(HookCall(Some(self.plugin)), origin, flow, bytes, close);
        self.flush(clients);
    }

    /// Whether the plugin queued calls not applied yet (only left over
    /// when it kept queueing past [`MAX_OP_ROUNDS`]).
    #[inline]
    pub fn has_queued(&self) -> bool {
        self.host.has_ops()
    }

    /// Applies the `reply`/`close` calls hooks queued (cheap when none).
    #[inline]
    fn flush(&mut self, clients: &mut Clients) {
        if self.host.has_ops() {
            self.apply(clients);
        }
    }

    fn apply(&mut self, clients: &mut Clients) {
        let hook = HookCall(Some(self.plugin));
        for _ in 0..MAX_OP_ROUNDS {
            if !self.host.has_ops() || !self.host.take_ops(&mut self.ops) {
                return;
            }
            for op in &self.ops.ops {
                clients.deliver(hook, op.flow, self.ops.bytes(op), op.close);
            }
            self.ops.clear();
        }
        if self.host.has_ops() {
            tracing::warn!("plugin keeps queueing replies from its close hook; dropping them");
            self.host.take_ops(&mut self.ops);
            self.ops.clear();
        }
    }

    /// Adds the plugin's `reply`/`close` calls refused since the last look
    /// to `host_refused`, and logs those refused because the queue was full
    /// (once per loop turn at most).
    pub fn count_refused(&self, stats: &mut ProxyTally) {
        let refused = self.host.take_refused();
        stats.host_refused += refused.total;
        if refused.full != 0 {
            tracing::warn!(
                refused = refused.full,
                "plugin queued too many reply/close calls in one hook; refused with SPP_ERR_FULL"
            );
        }
    }
}
