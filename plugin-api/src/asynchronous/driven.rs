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
//! Busy time: the time inside `spp_poll` minus the time the runtime spent
//! parked in its driver (the runtime's park hooks stamp it), so the wait
//! is not counted and everything the runtime runs is: the requests' tasks,
//! the runtime's own work and `tokio::spawn`ed tasks (a client's connection
//! driver), with two clock reads per park rather than per task poll.
//!
//! Deadlines: each call first scans the tasks' deadlines when a scan is
//! due ([`deadline`]), and a waiting call waits no longer than until the
//! next scan.

use super::executor::Executor;
use super::{deadline, task};
use crate::plugin::Host;
use std::cell::{Cell, RefCell};
use std::ffi::c_int;
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};
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
/// registration, then the requests' tasks, then the plugin's own local
/// tasks, then the runtime.
pub(crate) struct Driven {
    wake: RefCell<Option<(RawFd, Rc<AsyncFd<Doorbell>>)>>,
    exec: Executor,
    local: LocalSet,
    rt: Runtime,
}

thread_local! {
    static DRIVEN: RefCell<Option<Rc<Driven>>> = const { RefCell::new(None) };
    /// When the runtime parked its driver, while it is parked.
    static PARKED_AT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Nanoseconds the runtime spent parked so far.
    static PARKED_NS: Cell<u64> = const { Cell::new(0) };
}

/// The runtime's park hook: it is about to wait in its driver.
fn parking() {
    PARKED_AT.with(|at| at.set(Some(Instant::now())));
}

/// The runtime's unpark hook: its wait is over.
fn unparked() {
    if let Some(at) = PARKED_AT.with(Cell::take) {
        let ns = nanos(at.elapsed());
        PARKED_NS.with(|total| total.set(total.get().saturating_add(ns)));
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// This thread's runtime, made on first use.
pub(crate) fn get() -> std::io::Result<Rc<Driven>> {
    DRIVEN.with(|cell| {
        if let Some(d) = cell.borrow().as_ref() {
            return Ok(d.clone());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(parking)
            .on_thread_unpark(unparked)
            .build()?;
        let d = Rc::new(Driven {
            wake: RefCell::new(None),
            exec: Executor::default(),
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
    if let Ok(Driven {
        wake,
        exec,
        local,
        rt,
    }) = Rc::try_unwrap(d)
    {
        drop(wake);
        let _inside = rt.enter();
        let _local = local.enter();
        exec.clear();
        drop(_local);
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

    /// Runs `fut` to completion on this runtime (the synchronous fallback):
    /// the tasks run meanwhile.
    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(self.local.run_until(fut))
    }

    /// Runs the requests' tasks queued now, each once.
    fn run_tasks(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.exec.run(cx);
            Poll::Ready(())
        })
    }

    /// Scans the deadlines if due, runs the queued tasks, looks at the
    /// runtime's I/O and timers once without waiting (tasks they woke run
    /// too); never blocks.
    pub(crate) fn run_ready(&self) {
        self.block_on(async {
            deadline::scan(Instant::now());
            self.run_tasks().await;
            tokio::task::yield_now().await;
            self.run_tasks().await;
        });
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
        deadline::drive();
        let start = Instant::now();
        let parked_before = PARKED_NS.with(Cell::get);
        let wait = deadline::next_scan_in(start)
            .map_or(Duration::from_millis(u64::from(wait_ms)), |scan| {
                scan.min(Duration::from_millis(u64::from(wait_ms)))
            });
        if wait.is_zero() {
            self.run_ready();
        } else {
            self.wait(wake_fd, wait);
        }
        let parked = PARKED_NS.with(Cell::get).saturating_sub(parked_before);
        nanos(start.elapsed()).saturating_sub(parked)
    }

    /// Runs what is ready and, unless a request was completed, waits for
    /// the doorbell, a completion, or `wait`.
    fn wait(&self, wake_fd: c_int, wait: Duration) {
        let bell = self.doorbell(wake_fd);
        let seen = task::completed();
        self.block_on(async move {
            deadline::scan(Instant::now());
            self.run_tasks().await;
            tokio::task::yield_now().await;
            self.run_tasks().await;
            if task::completed() != seen {
                return;
            }
            // Runs the tasks as they are woken, until one completes a
            // request.
            let tasks = std::future::poll_fn(|cx| {
                self.exec.run(cx);
                if task::completed() != seen {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
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
                _ = tasks => {}
                _ = task::completion_since(seen) => {}
                _ = rung => {}
                _ = tokio::time::sleep(wait) => {}
            }
        });
    }

    /// Drops `flow`'s task, inside the runtime's context: its request is
    /// completed before this returns.
    pub(crate) fn cancel_flow(&self, flow: u64) {
        self.enter(|| self.exec.cancel_flow(flow));
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
    let (flow, task) = task::deferred_task(plugin, host, token, req);
    // Every task is polled inside one `block_on`, which would share one
    // coop budget (128 tokio operations) among all of them: past it every
    // tokio resource answers "pending" and the rest would crawl. Each task
    // is one request and is polled once per run, so it goes without.
    d.exec
        .spawn(flow, Box::pin(tokio::task::unconstrained(task)));
}
