//! The default placement: the plugin's runtime on the worker's own thread,
//! driven by the host through `spp_poll`.
//!
//! The state is thread-local, created on first use in the worker role
//! (`spp_init` makes it, to run `init` inside the runtime's context): a
//! current-thread tokio runtime (`enable_all`), a `LocalSet` the tasks are
//! spawned on, and an `AsyncFd` over the host's doorbell, registered once.
//! Nothing runs unless the host calls in: `spp_poll(fd, 0, ..)` runs what
//! is ready once and never blocks (the runtime's I/O and timers are looked
//! at with a zero timeout, so a task woken by them runs at the latest in
//! the next call); `spp_poll(fd, ms, ..)` runs what is ready and, unless a
//! request was completed, waits (tasks keep running meanwhile) until the
//! doorbell is readable (its readiness is cleared, the fd never read), a
//! task completes a request, or `ms` pass.
//!
//! Busy time: a call with `wait_ms = 0` never waits, so all of it is busy;
//! a waiting call reports the time spent polling the requests' tasks
//! (their own polls, summed by the task wrapper), not the wait.

use super::task;
use crate::plugin::Host;
use std::cell::RefCell;
use std::ffi::c_int;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

/// The host's doorbell, polled for readability only: never read, never
/// closed here.
struct Doorbell(RawFd);

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The runtime of this thread. Fields drop in order: the doorbell's
/// registration, then the tasks, then the runtime.
pub(crate) struct Driven {
    wake: RefCell<Option<(RawFd, Rc<AsyncFd<Doorbell>>)>>,
    local: LocalSet,
    rt: Runtime,
}

thread_local! {
    static DRIVEN: RefCell<Option<Rc<Driven>>> = const { RefCell::new(None) };
}

/// This thread's runtime, made on first use.
pub(crate) fn get() -> std::io::Result<Rc<Driven>> {
    DRIVEN.with(|cell| {
        if let Some(d) = cell.borrow().as_ref() {
            return Ok(d.clone());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let d = Rc::new(Driven {
            wake: RefCell::new(None),
            local: LocalSet::new(),
            rt,
        });
        *cell.borrow_mut() = Some(d.clone());
        Ok(d)
    })
}

/// This thread's runtime if it was made.
pub(crate) fn existing() -> Option<Rc<Driven>> {
    DRIVEN.with(|cell| cell.borrow().clone())
}

/// Tears this thread's runtime down: tasks still running are dropped
/// (their requests completed with rc -1).
pub(crate) fn shutdown() {
    let Some(d) = DRIVEN.with(|cell| cell.borrow_mut().take()) else {
        return;
    };
    if let Ok(Driven { wake, local, rt }) = Rc::try_unwrap(d) {
        drop(wake);
        let _inside = rt.enter();
        drop(local);
    }
}

impl Driven {
    /// Runs `f` inside the runtime's context (and the task set's).
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let _rt = self.rt.enter();
        let _local = self.local.enter();
        f()
    }

    /// The task set the requests' tasks are spawned on.
    pub(crate) fn local(&self) -> &LocalSet {
        &self.local
    }

    /// Runs `fut` to completion on this runtime (the synchronous fallback):
    /// the tasks run meanwhile.
    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(self.local.run_until(fut))
    }

    /// Runs the ready tasks once; never blocks.
    pub(crate) fn run_ready(&self) {
        self.block_on(tokio::task::yield_now());
    }

    /// The doorbell `fd` registered with the runtime (once per fd); `None`
    /// when there is none or it cannot be polled.
    fn doorbell(&self, fd: c_int) -> Option<Rc<AsyncFd<Doorbell>>> {
        if fd < 0 {
            return None;
        }
        let mut wake = self.wake.borrow_mut();
        if let Some((known, bell)) = wake.as_ref() {
            if *known == fd {
                return Some(bell.clone());
            }
        }
        *wake = None;
        let _rt = self.rt.enter();
        // SAFETY: `fd` is the worker's doorbell, open for the worker's
        // whole life (past `spp_fini`, which drops this registration), and
        // `Doorbell` always returns it.
        let bell =
            unsafe { AsyncFd::register_with_interest(Doorbell(fd), tokio::io::Interest::READABLE) };
        let bell = Rc::new(bell.ok()?);
        *wake = Some((fd, bell.clone()));
        Some(bell)
    }

    /// `spp_poll(wake_fd, wait_ms, ..)`; returns the busy nanoseconds.
    pub(crate) fn poll(&self, wake_fd: c_int, wait_ms: u32) -> u64 {
        if wait_ms == 0 {
            // Nothing in this call waits (the runtime's I/O and timers are
            // looked at with a zero timeout): all of it is busy time, the
            // runtime's own work and `tokio::spawn`ed tasks (a client's
            // connection driver) included.
            let start = std::time::Instant::now();
            self.run_ready();
            let whole = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            return whole.max(task::take_busy());
        }
        let bell = self.doorbell(wake_fd);
        let seen = task::completed();
        self.block_on(async move {
            tokio::task::yield_now().await;
            if task::completed() != seen {
                return;
            }
            let rung = async {
                match &bell {
                    Some(bell) => match bell.readable().await {
                        Ok(mut ready) => ready.clear_ready(),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = task::completion_since(seen) => {}
                _ = rung => {}
                _ = tokio::time::sleep(Duration::from_millis(u64::from(wait_ms))) => {}
            }
        });
        task::take_busy()
    }

    /// Cancels `flow`'s tasks and runs the runtime once, so that they are
    /// dropped (their requests completed) before this returns.
    pub(crate) fn cancel_flow(&self, flow: u64) {
        if task::cancel_flow(flow) > 0 {
            self.run_ready();
        }
    }
}

/// Spawns the task of deferred request `token` on this thread's runtime.
pub(crate) fn spawn<P: super::AsyncPlugin>(
    d: &Driven,
    plugin: &'static P,
    host: Host,
    token: u64,
    req: super::Request,
) {
    task::spawn(Some(d.local()), plugin, host, token, req);
}
