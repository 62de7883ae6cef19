//! The `spp_host` services table a worker hands its plugin: `reply`,
//! `close`, the L5 routing services `get_route` / `get_route_hash` /
//! `report` ([`crate::l5`], from the route table in [`Shared`], any
//! thread), plus role, group and worker index. `log` and the plugin
//! metrics `count` / `record_latency` (into the pair header's
//! `PluginMetrics` block) are the shared ones of [`spp_ipc::host_kit`].
//!
//! The table and its context are leaked, so they stay at one address for the
//! process's life (plugins keep the pointer, and their threads may outlive
//! `spp_fini`). Calls are routed by thread:
//!
//! * On the worker's main thread (inside a hook) a reply goes straight into
//!   the response ring through the [`Responder`].
//! * On any other thread (a deferred reply) it is copied into a bounded
//!   channel, and the worker's own doorbell is rung if the main loop sleeps;
//!   the main loop forwards the channel into the ring every turn. The
//!   channel is bounded by count ([`DEFERRED_CAPACITY`]) and its replies by
//!   bytes ([`DEFERRED_BYTE_BUDGET`]); over either a reply answers
//!   `SPP_ERR_FULL`. The copies go into pooled buffers, so a steady stream of
//!   deferred replies allocates nothing once the pool is warm.
//!
//! Async mode (`mode = "async"`, [`crate::tasks`]) also fills `defer`,
//! `complete` and `task_timeout_ms`; every other mode keeps the ABI's
//! unsupported ones and 0. `defer` works on the main thread during an
//! async `spp_process` only. `complete` on the main thread goes to the
//! token book at once (`SPP_ERR_UNKNOWN_TOKEN` for a token not in
//! flight); on another thread it joins the deferred channel as
//! [`Deferred::Complete`], behind that thread's earlier replies (full:
//! `SPP_ERR_FULL`, not counted as a dropped reply), and an unknown token
//! found when it is forwarded is counted in `tasks_unknown`.

use crate::attach::Shared;
use crate::downstream;
use crate::l5;
use crate::respond::Responder;
use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};
use crossbeam::queue::ArrayQueue;
use spp_ipc::host_kit::{self, catch_panic, HostCtx, RoleFns, TableRole, PANICKED};
use spp_ipc::l5::table::RouteTable;
use spp_ipc::pair;
use spp_plugin_api::abi::{
    SppCall, SppHost, SppL5Route, SPP_ERR_BAD_ARG, SPP_ERR_FULL, SPP_ERR_TOO_LARGE,
    SPP_ERR_UNSUPPORTED, SPP_L5_SYSTEM, SPP_OK,
};
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Deferred replies (from plugin threads) waiting for the main loop at most.
pub const DEFERRED_CAPACITY: usize = 4096;
/// Reply bytes waiting in the deferred channel at most (over all replies).
pub const DEFERRED_BYTE_BUDGET: usize = 64 << 20;
/// Reply buffers kept for reuse at most.
const POOL_BUFFERS: usize = 256;
/// A buffer with more capacity than this is freed after use rather than
/// pooled, so the pool holds at most `POOL_BUFFERS * POOLED_BUFFER_MAX`
/// bytes (16 MiB) while idle.
const POOLED_BUFFER_MAX: usize = 64 << 10;

thread_local! {
    /// Set on the thread that installed the services: the worker's main
    /// thread, the only one that may touch the response ring.
    static ON_MAIN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Set once the services are installed; they exist once per process.
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn on_main_thread() -> bool {
    ON_MAIN_THREAD.with(Cell::get)
}

/// A value only the main thread may reach.
struct MainThreadOnly<T>(T);

// SAFETY: the value is only reachable through `get`, which hands it out on
// the one thread marked in `ON_MAIN_THREAD` (marked once per process, see
// `INSTALLED`) and returns `None` everywhere else. The wrapper is leaked, so
// it is never dropped on another thread either.
unsafe impl<T: Send> Sync for MainThreadOnly<T> {}

impl<T> MainThreadOnly<T> {
    fn get(&self) -> Option<&T> {
        on_main_thread().then_some(&self.0)
    }
}

/// A reply made off the main thread, on its way to the ring.
enum Deferred {
    /// Bytes for a flow (empty = close after flush).
    Reply { flow: u64, bytes: Vec<u8> },
    /// Close the flow after flush.
    Close { flow: u64 },
    /// Complete a deferred request (async mode).
    Complete { token: u64, rc: c_int },
}

/// The worker's part of the table's context.
struct WorkerCtx {
    responder: MainThreadOnly<RefCell<Responder>>,
    deferred_tx: Sender<Deferred>,
    deferred_rx: Receiver<Deferred>,
    /// Deferred replies refused (channel full, over budget or too large),
    /// counted by plugin threads and folded into `replies_dropped` by the
    /// main thread.
    deferred_dropped: AtomicU64,
    /// Bytes of the replies in the deferred channel.
    deferred_bytes: AtomicUsize,
    /// The most `deferred_bytes` may reach ([`DEFERRED_BYTE_BUDGET`]).
    byte_budget: usize,
    /// Emptied reply buffers, for plugin threads to fill again.
    pool: ArrayQueue<Vec<u8>>,
    max_reply: usize,
    shared: &'static Shared,
}

/// The context behind the table's `ctx`.
type Ctx = HostCtx<WorkerCtx>;

/// The installed services: the table for `spp_init` and the main loop's
/// handle on the response side.
#[derive(Clone, Copy)]
pub struct HostServices {
    ctx: &'static Ctx,
    table: &'static SppHost,
}

impl HostServices {
    /// Builds and leaks the table; marks the calling thread as the main
    /// thread. `None` if the services were installed before.
    ///
    /// `task_timeout_ms`: `Some` in async mode, whose `defer`, `complete`
    /// and `task_timeout_ms` the table then carries.
    pub fn install(
        shared: &'static Shared,
        responder: Responder,
        group: u32,
        worker_index: u32,
        task_timeout_ms: Option<u64>,
    ) -> Option<Self> {
        if INSTALLED.swap(true, Ordering::AcqRel) {
            return None;
        }
        ON_MAIN_THREAD.with(|main| main.set(true));
        Some(Self::build_for(
            shared,
            responder,
            (group, worker_index),
            DEFERRED_BYTE_BUDGET,
            task_timeout_ms,
        ))
    }

    /// Builds and leaks the table and its context (no async requests).
    #[cfg(test)]
    fn build(
        shared: &'static Shared,
        responder: Responder,
        group: u32,
        worker_index: u32,
        byte_budget: usize,
    ) -> Self {
        Self::build_for(shared, responder, (group, worker_index), byte_budget, None)
    }

    /// Builds and leaks the table and its context; with `task_timeout_ms`,
    /// for async mode.
    fn build_for(
        shared: &'static Shared,
        responder: Responder,
        (group, worker_index): (u32, u32),
        byte_budget: usize,
        task_timeout_ms: Option<u64>,
    ) -> Self {
        let (deferred_tx, deferred_rx) = bounded(DEFERRED_CAPACITY);
        let ctx: &'static Ctx = Box::leak(Box::new(HostCtx::new(
            &shared.pair_header().plugin,
            WorkerCtx {
                max_reply: responder.max_reply(),
                responder: MainThreadOnly(RefCell::new(responder)),
                deferred_tx,
                deferred_rx,
                deferred_dropped: AtomicU64::new(0),
                deferred_bytes: AtomicUsize::new(0),
                byte_budget,
                pool: ArrayQueue::new(POOL_BUFFERS),
                shared,
            },
        )));
        let mut table = host_kit::table(
            TableRole::Worker {
                group,
                index: worker_index,
            },
            ctx,
            RoleFns {
                reply: host_reply,
                close: host_close,
                get_route: host_get_route,
                get_route_hash: host_get_route_hash,
                report: host_report,
                sleep: host_sleep,
                call: host_call,
                call_many: host_call_many,
            },
        );
        // Deferred replies are also bounded by the byte budget.
        table.max_reply = ctx.role.max_reply.min(byte_budget) as u64;
        if let Some(ms) = task_timeout_ms {
            table.defer = host_defer;
            table.complete = host_complete;
            table.task_timeout_ms = ms;
        }
        let table: &'static SppHost = Box::leak(Box::new(table));
        HostServices { ctx, table }
    }

    /// The table to pass to `spp_init`; valid for the process's life.
    pub fn table(&self) -> *const SppHost {
        self.table
    }

    /// Runs `f` on the response side. `None` off the main thread or while a
    /// hook that replied is still being called back into (re-entry).
    pub fn with_responder<R>(&self, f: impl FnOnce(&mut Responder) -> R) -> Option<R> {
        let cell = self.ctx.role.responder.get()?;
        let mut responder = cell.try_borrow_mut().ok()?;
        Some(f(&mut responder))
    }

    /// Whether plugin threads have replies waiting.
    pub fn has_deferred(&self) -> bool {
        !self.ctx.role.deferred_rx.is_empty()
    }

    /// Moves up to `limit` deferred replies into the response ring (main
    /// thread). Returns how many it moved.
    pub fn forward_deferred(&self, limit: usize) -> usize {
        let ctx = &self.ctx.role;
        self.with_responder(|responder| {
            let mut moved = 0;
            while moved < limit {
                let Ok(item) = ctx.deferred_rx.try_recv() else {
                    break;
                };
                // The plugin was told SPP_OK when the reply was queued; a
                // drop now is counted in `replies_dropped` by the responder.
                let _ = match item {
                    Deferred::Reply { flow, bytes } => {
                        let rc = responder.reply(flow, &bytes);
                        ctx.recycle(bytes);
                        rc
                    }
                    Deferred::Close { flow } => responder.close(flow),
                    Deferred::Complete { token, rc } => {
                        if !crate::tasks::complete_forwarded(token, rc) {
                            responder.tally().tasks_unknown += 1;
                        }
                        SPP_OK
                    }
                };
                moved += 1;
            }
            moved
        })
        .unwrap_or(0)
    }

    /// Folds plugin threads' refusals into the counters, then publishes the
    /// response ring (and `completed_seq`), waking the proxy if it sleeps.
    pub fn publish(&self) {
        let dropped = &self.ctx.role.deferred_dropped;
        self.with_responder(|responder| {
            if dropped.load(Ordering::Relaxed) != 0 {
                responder.tally().replies_dropped += dropped.swap(0, Ordering::Relaxed);
            }
            responder.publish();
        });
    }
}

impl WorkerCtx {
    fn reply(&self, flow: u64, data: &[u8]) -> c_int {
        if let Some(cell) = self.responder.get() {
            return match cell.try_borrow_mut() {
                Ok(mut responder) => responder.reply(flow, data),
                Err(_) => SPP_ERR_UNSUPPORTED,
            };
        }
        if data.len() > self.max_reply || data.len() > self.byte_budget {
            self.deferred_dropped.fetch_add(1, Ordering::Relaxed);
            return SPP_ERR_TOO_LARGE;
        }
        if !self.reserve(data.len()) {
            self.deferred_dropped.fetch_add(1, Ordering::Relaxed);
            return SPP_ERR_FULL;
        }
        let mut bytes = self.pool.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(data);
        self.defer(Deferred::Reply { flow, bytes })
    }

    /// Takes `len` bytes of the deferred budget; `false` if that would go
    /// over it.
    fn reserve(&self, len: usize) -> bool {
        self.deferred_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                queued
                    .checked_add(len)
                    .filter(|&total| total <= self.byte_budget)
            })
            .is_ok()
    }

    /// Gives back a deferred reply's bytes and budget once it left the
    /// channel.
    fn recycle(&self, bytes: Vec<u8>) {
        self.deferred_bytes
            .fetch_sub(bytes.len(), Ordering::Relaxed);
        if bytes.capacity() <= POOLED_BUFFER_MAX {
            // A full pool just frees the buffer.
            let _ = self.pool.push(bytes);
        }
    }

    fn close(&self, flow: u64) -> c_int {
        if let Some(cell) = self.responder.get() {
            return match cell.try_borrow_mut() {
                Ok(mut responder) => responder.close(flow),
                Err(_) => SPP_ERR_UNSUPPORTED,
            };
        }
        self.defer(Deferred::Close { flow })
    }

    /// `complete` (async mode): into the token book on the main thread,
    /// through the deferred channel elsewhere (behind this thread's
    /// earlier replies).
    fn complete(&self, token: u64, rc: c_int) -> c_int {
        if on_main_thread() {
            return crate::tasks::complete_here(token, rc);
        }
        match self.deferred_tx.try_send(Deferred::Complete { token, rc }) {
            Ok(()) => {
                pair::wake_worker(&self.shared.pair, &self.shared.bell);
                SPP_OK
            }
            // The plugin retries; the request stays in flight.
            Err(_) => SPP_ERR_FULL,
        }
    }

    /// Queues a reply from a plugin thread and wakes the main loop if it
    /// sleeps (the same sleep-flag protocol the proxy uses).
    fn defer(&self, item: Deferred) -> c_int {
        match self.deferred_tx.try_send(item) {
            Ok(()) => {
                pair::wake_worker(&self.shared.pair, &self.shared.bell);
                SPP_OK
            }
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                if let Deferred::Reply { bytes, .. } = item {
                    self.recycle(bytes);
                }
                self.deferred_dropped.fetch_add(1, Ordering::Relaxed);
                SPP_ERR_FULL
            }
        }
    }
}

/// The worker's context behind a table's `ctx`.
///
/// # Safety
/// `ctx` must be null or the table's `ctx`.
unsafe fn worker_ctx<'a>(ctx: *mut c_void) -> Option<&'a WorkerCtx> {
    // SAFETY: the only `ctx` we hand out is a leaked `&'static Ctx`.
    unsafe { Ctx::from_ctx(ctx) }.map(|ctx| &ctx.role)
}

/// `spp_host.reply`: into the ring on the main thread, deferred elsewhere.
///
/// # Safety
/// `ctx` must be the table's `ctx`; `data` must point to `len` readable bytes
/// (or `len` must be 0).
unsafe extern "C" fn host_reply(ctx: *mut c_void, flow: u64, data: *const u8, len: usize) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: forwarded from the caller.
        let Some(ctx) = (unsafe { worker_ctx(ctx) }) else {
            return SPP_ERR_UNSUPPORTED;
        };
        let data = match (data.is_null(), len) {
            (_, 0) => &[][..],
            (true, _) => return SPP_ERR_BAD_ARG,
            // SAFETY: the caller guarantees `len` readable bytes at `data`.
            (false, _) => unsafe { std::slice::from_raw_parts(data, len) },
        };
        ctx.reply(flow, data)
    })
}

/// `spp_host.close`: as for [`host_reply`].
///
/// # Safety
/// `ctx` must be the table's `ctx`.
unsafe extern "C" fn host_close(ctx: *mut c_void, flow: u64) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: forwarded from the caller.
        match unsafe { worker_ctx(ctx) } {
            Some(ctx) => ctx.close(flow),
            None => SPP_ERR_UNSUPPORTED,
        }
    })
}

/// `spp_host.defer` (async mode): the token of the request inside
/// `spp_process` on the main thread; `SPP_ERR_BAD_ARG` for a null
/// `token`, `SPP_ERR_UNSUPPORTED` anywhere else.
///
/// # Safety
/// `token` must be null or writable.
unsafe extern "C" fn host_defer(_ctx: *mut c_void, token: *mut u64) -> c_int {
    catch_panic(PANICKED, || {
        if token.is_null() {
            return SPP_ERR_BAD_ARG;
        }
        if !on_main_thread() {
            return SPP_ERR_UNSUPPORTED;
        }
        match crate::tasks::defer() {
            Ok(t) => {
                // SAFETY: non-null and writable (caller).
                unsafe { token.write(t) };
                SPP_OK
            }
            Err(code) => code,
        }
    })
}

/// `spp_host.complete` (async mode): see [`WorkerCtx::complete`].
///
/// # Safety
/// `ctx` must be the table's `ctx`.
unsafe extern "C" fn host_complete(ctx: *mut c_void, token: u64, rc: c_int) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: forwarded from the caller.
        match unsafe { worker_ctx(ctx) } {
            Some(ctx) => ctx.complete(token, rc),
            None => SPP_ERR_UNSUPPORTED,
        }
    })
}

/// `spp_host.sleep`: suspends the calling micro-thread
/// ([`crate::microthread::sleep`]); `SPP_ERR_UNSUPPORTED` outside one.
///
/// # Safety
/// Any arguments (nothing is dereferenced).
unsafe extern "C" fn host_sleep(_ctx: *mut c_void, ms: u64) -> c_int {
    catch_panic(PANICKED, || crate::microthread::sleep(ms))
}

/// `spp_host.call`: [`downstream::call`] on the calling micro-thread;
/// `SPP_ERR_UNSUPPORTED` outside one.
///
/// # Safety
/// `ctx` must be the table's `ctx`; `call` null or a valid record.
unsafe extern "C" fn host_call(ctx: *mut c_void, call: *mut SppCall) -> c_int {
    // SAFETY: forwarded from the caller.
    catch_panic(PANICKED, || unsafe {
        downstream::call(routes_of(ctx), call)
    })
}

/// `spp_host.call_many`: [`downstream::call_many`].
///
/// # Safety
/// `ctx` must be the table's `ctx`; `calls` null or `n` valid records.
unsafe extern "C" fn host_call_many(
    ctx: *mut c_void,
    calls: *mut SppCall,
    n: usize,
    wait_for: usize,
) -> c_int {
    // SAFETY: forwarded from the caller.
    catch_panic(PANICKED, || unsafe {
        downstream::call_many(routes_of(ctx), calls, n, wait_for)
    })
}

/// The route table the services answer from (`None`: L5 is off here).
///
/// # Safety
/// `ctx` must be the table's `ctx` (or null).
unsafe fn routes_of<'a>(ctx: *mut c_void) -> Option<&'a RouteTable> {
    // SAFETY: forwarded from the caller.
    let ctx = unsafe { worker_ctx(ctx) }?;
    ctx.shared.routes.as_ref()
}

/// `spp_host.get_route`: [`l5::get_route`].
///
/// # Safety
/// `ctx` must be the table's `ctx`; `out` null or writable.
unsafe extern "C" fn host_get_route(
    ctx: *mut c_void,
    modid: u32,
    cmdid: u32,
    out: *mut SppL5Route,
) -> c_int {
    // SAFETY: forwarded from the caller.
    catch_panic(SPP_L5_SYSTEM, || unsafe {
        l5::get_route(routes_of(ctx), modid, cmdid, out)
    })
}

/// `spp_host.get_route_hash`: [`l5::get_route_hash`].
///
/// # Safety
/// As for [`host_get_route`].
unsafe extern "C" fn host_get_route_hash(
    ctx: *mut c_void,
    modid: u32,
    cmdid: u32,
    key: u64,
    out: *mut SppL5Route,
) -> c_int {
    // SAFETY: forwarded from the caller.
    catch_panic(SPP_L5_SYSTEM, || unsafe {
        l5::get_route_hash(routes_of(ctx), modid, cmdid, key, out)
    })
}

/// `spp_host.report`: [`l5::report`].
///
/// # Safety
/// `ctx` must be the table's `ctx`; `route` null or readable.
unsafe extern "C" fn host_report(
    ctx: *mut c_void,
    route: *const SppL5Route,
    result: c_int,
    latency_us: u64,
) -> c_int {
    // SAFETY: forwarded from the caller.
    catch_panic(SPP_L5_SYSTEM, || unsafe {
        l5::report(routes_of(ctx), route, result, latency_us)
    })
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
