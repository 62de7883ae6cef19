//! The measurement placement (`SPP_ASYNC_RUNTIME=thread` at `spp_init`):
//! the plugin's runtime on a plugin thread of its own.
//!
//! The worker's `spp_process` defers the request and sends it (token and
//! [`Request`]) through an unbounded channel (bounded by the group's
//! `max_in_flight` at the host) to the thread, whose current-thread
//! runtime spawns its task on a `LocalSet`; the task replies and completes
//! from that thread, through the host's deferred path. `spp_poll` answers
//! `SPP_ERR_UNSUPPORTED`, so the worker sleeps on its own. The worker's
//! busy time then holds only its own hook calls, not the tasks' polls: one
//! reason this is not the default.
//!
//! `spp_flow_closed` travels to the thread too: there the flow's tasks are
//! aborted and dropped, then [`AsyncPlugin::flow_closed`] runs (on the
//! plugin thread). `spp_fini` stops the thread (tasks still running are
//! dropped, their requests completed with rc -1) and joins it.

use super::plugin::{AsyncPlugin, Reply, Request};
use super::{deadline, task};
use crate::plugin::{Host, Level};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// The environment variable that selects this placement at `spp_init`.
pub const RUNTIME_ENV: &str = "SPP_ASYNC_RUNTIME";
/// Its value for this placement.
pub const RUNTIME_THREAD: &str = "thread";

/// What the worker's thread sends the plugin thread.
enum Job {
    /// Serve deferred request `token`.
    Task { token: u64, req: Request },
    /// Serve a request that could not be deferred; answer the reply back.
    Blocking {
        req: Request,
        answer: std::sync::mpsc::SyncSender<Reply>,
    },
    /// The flow closed: cancel its tasks, tell the plugin.
    FlowClosed(u64),
    /// Stop (`spp_fini`).
    Stop,
}

/// The plugin thread of this process.
struct Threaded {
    jobs: mpsc::UnboundedSender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static THREADED: OnceLock<Threaded> = OnceLock::new();

/// Whether `SPP_ASYNC_RUNTIME=thread` asks for this placement.
pub(crate) fn requested() -> bool {
    std::env::var(RUNTIME_ENV).is_ok_and(|v| v == RUNTIME_THREAD)
}

/// A runtime for the plugin thread, built on the caller's thread (so that
/// `init` can run inside its context before [`start`] moves it).
pub(crate) fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Starts the plugin thread on `rt`, serving `plugin`'s requests.
pub(crate) fn start<P: AsyncPlugin>(rt: Runtime, plugin: &'static P, host: Host) -> bool {
    let (jobs, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("spp-async".into())
        .spawn(move || serve(rt, plugin, host, rx));
    match spawned {
        Ok(thread) => {
            let _ = THREADED.set(Threaded {
                jobs,
                thread: Mutex::new(Some(thread)),
            });
            true
        }
        Err(e) => {
            host.log(Level::Error, &format!("cannot start the async thread: {e}"));
            false
        }
    }
}

/// The plugin thread's loop: spawn each job's task until [`Job::Stop`].
fn serve<P: AsyncPlugin>(
    rt: Runtime,
    plugin: &'static P,
    host: Host,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let local = tokio::task::LocalSet::new();
    // The tasks' deadlines are scanned on a ticker ([`deadline`]).
    let every = task::task_timeout(host).map(deadline::scan_every);
    local.block_on(&rt, async {
        let mut ticker = tokio::time::interval(every.unwrap_or(deadline::MAX_SCAN));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let job = tokio::select! {
                biased;
                job = rx.recv() => job,
                _ = ticker.tick(), if every.is_some() => {
                    deadline::scan(std::time::Instant::now());
                    continue;
                }
            };
            let Some(job) = job else { break };
            match job {
                Job::Task { token, req } => task::spawn(None, plugin, host, token, req),
                Job::Blocking { req, answer } => {
                    tokio::task::spawn_local(async move {
                        let reply = task::serve(plugin, host, req, task::Limit::timer(host)).await;
                        let _ = answer.send(reply);
                    });
                }
                Job::FlowClosed(flow) => {
                    if task::cancel_flow(flow) > 0 {
                        tokio::task::yield_now().await;
                    }
                    crate::rt::guard((), || plugin.flow_closed(flow));
                }
                Job::Stop => break,
            }
        }
    });
    // Tasks still running are dropped with the set, inside the runtime.
    let _inside = rt.enter();
    drop(local);
}

/// Whether this process runs its tasks on the plugin thread.
pub(crate) fn active() -> bool {
    THREADED.get().is_some()
}

/// Hands deferred request `token` to the plugin thread; `false` when the
/// thread is gone.
pub(crate) fn submit(token: u64, req: Request) -> bool {
    THREADED
        .get()
        .is_some_and(|t| t.jobs.send(Job::Task { token, req }).is_ok())
}

/// Runs `req` on the plugin thread and waits for its reply (a request that
/// could not be deferred); `None` when the thread is gone.
pub(crate) fn run_blocking(req: Request) -> Option<Reply> {
    let t = THREADED.get()?;
    let (answer, reply) = std::sync::mpsc::sync_channel(1);
    t.jobs.send(Job::Blocking { req, answer }).ok()?;
    reply.recv().ok()
}

/// Tells the plugin thread `flow` closed.
pub(crate) fn flow_closed(flow: u64) -> bool {
    THREADED
        .get()
        .is_some_and(|t| t.jobs.send(Job::FlowClosed(flow)).is_ok())
}

/// Stops the plugin thread and waits for it.
pub(crate) fn stop() {
    let Some(t) = THREADED.get() else { return };
    let _ = t.jobs.send(Job::Stop);
    let thread = t.thread.lock().ok().and_then(|mut g| g.take());
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}
