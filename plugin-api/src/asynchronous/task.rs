//! The task around one request: runs [`AsyncPlugin::process`] with its
//! bounds and ends the deferred request.
//!
//! * Panics are caught per poll ([`CatchPanic`]): the request fails with
//!   [`TaskFailure::Panicked`] (counter [`PANICKED`]), nothing else does.
//! * The group's `task_timeout` ([`task_timeout`]) bounds the future; past
//!   it the future is dropped and the request fails with
//!   [`TaskFailure::TimedOut`] (counter [`TIMED_OUT`]). A deferred
//!   request's task is bounded by the deadline book ([`super::deadline`],
//!   no timer per task); the one-at-a-time fallback by a tokio timer
//!   ([`Limit`]).
//! * The answer is sent (`host.reply`), then the request completed
//!   (`host.complete`, rc -1 when the [`Reply`] closes or the answer could
//!   not be queued). A full queue is retried every [`RETRY_STEP`], for at
//!   most [`RETRY_FOR`], by sleeping in the task (never spinning: on the
//!   worker's thread the room is made by the loop the task returns to).
//! * A task dropped before it completed its request (its flow closed, the
//!   runtime shut down) completes it with rc -1 from its [`Pending`] guard
//!   (counter [`CANCELLED`]), so the host never waits for it to expire.
//! * The TCP flows' tasks are tracked by id with their `AbortHandle`
//!   ([`track`], [`cancel_flow`]) for `spp_flow_closed`.

use super::plugin::{AsyncPlugin, Reply, Request, TaskFailure};
use super::pooled::PooledBox;
use crate::abi::{SppHost, SPP_ERR_FULL, SPP_OK, SPP_TASK_GRACE_MS};
use crate::plugin::{Host, HostError};
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::ffi::c_int;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

/// Plugin counter: tasks that panicked.
pub const PANICKED: &str = "async_task_panicked";
/// Plugin counter: tasks that passed the group's `task_timeout`.
pub const TIMED_OUT: &str = "async_task_timed_out";
/// Plugin counter: tasks dropped before they completed their request (a
/// closed flow, a shutdown).
pub const CANCELLED: &str = "async_task_cancelled";

/// How long a task waits between two tries of a full reply queue (or
/// deferred channel).
pub const RETRY_STEP: Duration = Duration::from_millis(1);
/// How long a task keeps retrying a full queue before it gives up (closes
/// the connection): half the host's grace, so the request still completes
/// before the host expires it.
pub const RETRY_FOR: Duration = Duration::from_millis(SPP_TASK_GRACE_MS / 2);

/// The `complete` rc of a request whose connection closes.
const RC_CLOSE: c_int = -1;

/// Set once `spp_fini` tore the runtime down: a guard dropped later (a
/// thread-local destructor at exit) no longer calls the host.
pub(crate) static FINISHED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Requests this thread completed (a task's end, a cancellation).
    static COMPLETED: Cell<u64> = const { Cell::new(0) };
    /// Who waits for the next completion ([`completion_since`]).
    static WAITER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// The next task id of this thread.
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
    /// Running TCP tasks of this thread: flow → (task id, abort handle).
    static FLOWS: RefCell<FxHashMap<u64, (u64, AbortHandle)>> = RefCell::new(FxHashMap::default());
}

/// Requests completed on this thread so far.
pub(crate) fn completed() -> u64 {
    COMPLETED.with(Cell::get)
}

/// A request was completed on this thread: wake whoever waits for it.
fn note_completion() {
    COMPLETED.with(|c| c.set(c.get().wrapping_add(1)));
    if let Ok(Some(waker)) = WAITER.try_with(|w| w.borrow_mut().take()) {
        waker.wake();
    }
}

/// Ready once this thread completed a request after `seen`
/// ([`completed`]).
pub(crate) fn completion_since(seen: u64) -> impl Future<Output = ()> {
    std::future::poll_fn(move |cx| {
        if completed() != seen {
            return Poll::Ready(());
        }
        WAITER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        Poll::Pending
    })
}

/// A fresh task id of this thread.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id.wrapping_add(1));
        id
    })
}

/// Records task `id` of `flow` for [`cancel_flow`]. The host runs a
/// flow's requests one at a time, so a flow has one task at most; a newer
/// one (started once the older completed its request, while that one is
/// still being dropped) takes its place.
pub(crate) fn track(id: u64, flow: u64, handle: AbortHandle) {
    FLOWS.with(|f| f.borrow_mut().insert(flow, (id, handle)));
}

/// Forgets task `id` of `flow` (it ended), unless a newer task of the
/// flow took its place.
fn untrack(id: u64, flow: u64) {
    let _ = FLOWS.try_with(|f| {
        if let Ok(mut flows) = f.try_borrow_mut() {
            if flows.get(&flow).is_some_and(|(known, _)| *known == id) {
                flows.remove(&flow);
            }
        }
    });
}

/// Aborts the tracked task of `flow`; returns how many (0 or 1). It is
/// dropped (and completes its request) the next time its runtime runs.
pub(crate) fn cancel_flow(flow: u64) -> usize {
    let handle = FLOWS.with(|f| f.borrow_mut().remove(&flow));
    match handle {
        Some((_, handle)) => {
            handle.abort();
            1
        }
        None => 0,
    }
}

/// Tasks tracked on this thread (tests).
#[cfg(test)]
pub(crate) fn tracked() -> usize {
    FLOWS.with(|f| f.borrow().len())
}

/// A future whose panics are caught per poll: it then ends with
/// [`TaskFailure::Panicked`] and is not polled again.
pub(crate) struct CatchPanic<F>(pub F);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, TaskFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: the field is pinned with `self` and
        // never moved out or handed out unpinned.
        let inner = unsafe { self.map_unchecked_mut(|m| &mut m.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(TaskFailure::Panicked)),
        }
    }
}

/// End of the ABI 1 fields `defer`, `complete` and `task_timeout_ms`.
fn async_end() -> usize {
    std::mem::offset_of!(SppHost, task_timeout_ms) + std::mem::size_of::<u64>()
}

/// `host.defer` during `spp_process`: the token, or `None` when the host
/// (this role, this mode, an older host) has no async requests.
pub(crate) fn defer(host: Host) -> Option<u64> {
    if !host.has(async_end()) {
        return None;
    }
    let raw = host.raw();
    let mut token = 0u64;
    // SAFETY: `token` is a valid, writable u64 for the call; `ctx` is the
    // host's own.
    let rc = unsafe { (raw.defer)(raw.ctx, &mut token) };
    (rc == SPP_OK).then_some(token)
}

/// `host.complete(token, rc)`.
fn complete(host: Host, token: u64, rc: c_int) -> c_int {
    if !host.has(async_end()) {
        return crate::abi::SPP_ERR_UNSUPPORTED;
    }
    let raw = host.raw();
    // SAFETY: plain call into the host's table with its own `ctx`.
    unsafe { (raw.complete)(raw.ctx, token, rc) }
}

/// The group's `task_timeout`: `None` when the host says 0 (or is older).
pub(crate) fn task_timeout(host: Host) -> Option<Duration> {
    if !host.has(async_end()) || host.raw().task_timeout_ms == 0 {
        return None;
    }
    Some(Duration::from_millis(host.raw().task_timeout_ms))
}

/// The counter of a failure.
fn counter(why: TaskFailure) -> &'static str {
    match why {
        TaskFailure::TimedOut => TIMED_OUT,
        TaskFailure::Panicked => PANICKED,
    }
}

/// How a task's time is bounded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Limit {
    /// Not at all (the host says `task_timeout_ms` 0, or is older).
    None,
    /// By a tokio timer of its own (one task at a time: the fallback).
    Timer(Duration),
    /// By the thread's deadline book, which whoever drives the runtime
    /// scans ([`super::deadline`]).
    Scanned(Duration),
}

impl Limit {
    /// The host's `task_timeout` as a timer of its own.
    pub(crate) fn timer(host: Host) -> Self {
        task_timeout(host).map_or(Limit::None, Limit::Timer)
    }

    /// The host's `task_timeout` in the deadline book.
    pub(crate) fn scanned(host: Host) -> Self {
        task_timeout(host).map_or(Limit::None, Limit::Scanned)
    }
}

/// Runs `req` through the plugin, bounded by `limit`: the plugin's
/// [`Reply`], or [`AsyncPlugin::failed`]'s when the task failed (a panic in
/// `failed` closes the connection).
pub(crate) async fn serve<P: AsyncPlugin>(
    plugin: &P,
    host: Host,
    req: Request,
    limit: Limit,
) -> Reply {
    let flow = req.flow();
    // On a pooled block: the task stays small (see `pooled`).
    let work = CatchPanic(PooledBox::new(plugin.process(req)));
    let outcome = match limit {
        Limit::None => work.await,
        Limit::Timer(timeout) => tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(TaskFailure::TimedOut)),
        Limit::Scanned(timeout) => super::deadline::Bounded::new(work, timeout)
            .await
            .unwrap_or(Err(TaskFailure::TimedOut)),
    };
    match outcome {
        Ok(reply) => reply,
        Err(why) => {
            let _ = host.count(counter(why), 1);
            catch_unwind(AssertUnwindSafe(|| plugin.failed(flow, why))).unwrap_or_else(|_| {
                let _ = host.count(PANICKED, 1);
                Reply::close()
            })
        }
    }
}

/// Sends `reply`'s answer to `flow` at once (the synchronous fallback): the
/// `spp_process` return code.
pub(crate) fn reply_now(host: Host, flow: u64, reply: &Reply) -> c_int {
    let sent = match reply.body() {
        Some(body) => host.reply(flow, body),
        None => Ok(()),
    };
    if sent.is_err() || reply.closes() {
        RC_CLOSE
    } else {
        SPP_OK
    }
}

/// Sends `reply`'s answer, retrying a full queue: the `complete` rc.
async fn reply_deferred(host: Host, flow: u64, reply: &Reply) -> c_int {
    if let Some(body) = reply.body() {
        // The clock is read only once the queue was found full.
        let mut full_since = None;
        loop {
            match host.reply(flow, body) {
                Ok(()) => break,
                Err(HostError::Full)
                    if full_since.get_or_insert_with(Instant::now).elapsed() < RETRY_FOR =>
                {
                    tokio::time::sleep(RETRY_STEP).await;
                }
                Err(_) => return RC_CLOSE,
            }
        }
    }
    if reply.closes() {
        RC_CLOSE
    } else {
        SPP_OK
    }
}

/// The deferred request a task owes the host: completed with rc -1 when
/// the task is dropped before it did so itself.
pub(crate) struct Pending {
    host: Host,
    token: u64,
    /// The task's id and the flow it is tracked under (none for UDP).
    id: u64,
    flow: Option<u64>,
    armed: bool,
}

impl Pending {
    /// Request `token` of task `id`, tracked under `flow` (TCP) for
    /// [`cancel_flow`].
    pub(crate) fn new(host: Host, token: u64, id: u64, flow: Option<u64>) -> Self {
        Pending {
            host,
            token,
            id,
            flow,
            armed: true,
        }
    }

    /// Completes the request with `rc`, retrying a full channel.
    async fn complete(&mut self, rc: c_int) {
        let mut full_since = None;
        while complete(self.host, self.token, rc) == SPP_ERR_FULL
            && full_since.get_or_insert_with(Instant::now).elapsed() < RETRY_FOR
        {
            tokio::time::sleep(RETRY_STEP).await;
        }
        self.armed = false;
        note_completion();
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(flow) = self.flow {
            untrack(self.id, flow);
        }
        if self.armed && !FINISHED.load(Ordering::Acquire) {
            let _ = self.host.count(CANCELLED, 1);
            let _ = complete(self.host, self.token, RC_CLOSE);
            note_completion();
        }
    }
}

/// The whole task of deferred request `token`: serve, reply, complete.
pub(crate) async fn deferred<P: AsyncPlugin>(
    plugin: &'static P,
    host: Host,
    mut pending: Pending,
    req: Request,
    limit: Limit,
) {
    let flow = req.flow();
    let reply = serve(plugin, host, req, limit).await;
    let rc = reply_deferred(host, flow, &reply).await;
    pending.complete(rc).await;
}

/// The task of deferred request `token`, and the TCP flow it belongs to
/// (for the driven executor, which tracks flows itself).
pub(crate) fn deferred_task<P: AsyncPlugin>(
    plugin: &'static P,
    host: Host,
    token: u64,
    req: Request,
) -> (Option<u64>, impl Future<Output = ()>) {
    let flow = (!req.is_udp()).then_some(req.flow());
    let pending = Pending::new(host, token, next_id(), None);
    (
        flow,
        deferred(plugin, host, pending, req, Limit::scanned(host)),
    )
}

/// Spawns the task of deferred request `token` on the current `LocalSet`
/// (or `local`), tracking a TCP flow's task for cancellation.
pub(crate) fn spawn<P: AsyncPlugin>(
    local: Option<&tokio::task::LocalSet>,
    plugin: &'static P,
    host: Host,
    token: u64,
    req: Request,
) {
    let id = next_id();
    let flow = req.flow();
    let udp = req.is_udp();
    let task = deferred(
        plugin,
        host,
        Pending::new(host, token, id, (!udp).then_some(flow)),
        req,
        Limit::scanned(host),
    );
    let handle = match local {
        Some(local) => local.spawn_local(task),
        None => tokio::task::spawn_local(task),
    };
    if !udp {
        track(id, flow, handle.abort_handle());
    }
}
