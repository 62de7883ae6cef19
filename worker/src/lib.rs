//! # spp-worker — one worker process of an spp group, as a library
//!
//! The `spp-worker` binary (`main.rs`) reads its launch spec and calls
//! [`run`]. Startup: map the shared state (`attach`: the pair region,
//! the doorbells, the proxy region and, when the controller hands one, the
//! L5 route table), take the slot
//! ([`WorkerSlot::take`](spp_ipc::pair::WorkerSlot::take): our pid, a new
//! `worker_generation`, state `Starting`), attach the worker's end of the
//! rings (dropping whatever a dead predecessor left in the request ring),
//! free the plugin-metric slots it may have left half-claimed, load the
//! plugin (ABI checked), build the `spp_host` table (`host`), call
//! `spp_init`, state `Ready`, then serve the ring (`serve`) until SIGTERM
//! drains it (`drain`). SIGHUP reopens the log file (`signals`).
//!
//! With several proxy shards (`WorkerLaunch::other_shards`) every step on
//! the slot is done on each shard's pair: take, attach, hooks, `Ready`,
//! `InitFailed`, `Draining`; the loop serves every pair fairly and answers
//! each request on its own pair (see `serve` and the "several shards"
//! section of [`spp_ipc::pair`]).
//!
//! The pair protocol itself (sequence numbers, generations, the drain
//! handshake, sleep and wake, and their memory ordering) lives in
//! [`spp_ipc::pair`]; this crate is what a worker does with it.
//!
//! * `attach`: the inherited fds, mapped for the process's life.
//! * `serve`: the ring loop (batches, spin then sleep, stale requests).
//! * `respond`: the response ring's batching and full-ring policy.
//! * `drain`: when a draining worker may stop.
//! * `host`: the `spp_host` services table; `l5`: its L5 routing.
//! * `microthread`: micro-thread mode (stackful coroutines, suspended
//!   requests, timers); `downstream`: `call`/`call_many` on them (the
//!   epoll set, keep-alive pools, per-call state machines).
//! * `tasks`: async mode (`spp_host.defer` / `complete`, `spp_poll`);
//!   `admission`: the `max_in_flight` bound and per-flow order it shares
//!   with micro-thread mode.
//! * `signals`, `stats`, `throttle`: signals, counters, log
//!   throttling. [`error`]: [`WorkerError`] and its exit codes.

mod admission;
mod attach;
mod downstream;
mod drain;
pub mod error;
mod holding;
mod host;
mod l5;
mod microthread;
mod respond;
mod serve;
mod signals;
mod stats;
mod tasks;
mod throttle;

pub use crate::error::WorkerError;

use crate::host::HostServices;
use crate::respond::Responder;
use crate::serve::Server;
use spp_ipc::launch::WorkerLaunch;
use spp_ipc::pair::WorkerSlot;
use spp_plugin_api::host::{PluginLibrary, Role};
use std::ffi::CString;

/// Starts the worker `spec` describes and serves until drained.
pub fn run(spec: WorkerLaunch) -> Result<(), WorkerError> {
    let _span = tracing::info_span!("worker", group = spec.group, index = spec.index).entered();
    let shared = attach::attach(&spec)?;
    spp_ipc::logging::count_drops_in(&shared.pair_header().stats.log_dropped);
    // The proxy stamps each request with the tag of the generation it
    // adopted; requests stamped for another one are skipped (see `serve`).
    // One slot per pair (shard 0 first), each with its own generation.
    let pairs = shared.pair_count();
    let mut slots = Vec::with_capacity(pairs);
    let mut requests = Vec::with_capacity(pairs);
    let mut responses = Vec::with_capacity(pairs);
    for k in 0..pairs {
        let (pair, proxy, proxy_bell) = shared.pair_at(k);
        let slot = WorkerSlot::take(pair, proxy_bell, std::process::id());
        let ring_error = |what, cause| WorkerError::Attach {
            what,
            fd: pair.raw_fd(),
            cause,
        };
        // SAFETY: the controller runs one worker per slot, so this is the
        // only request consumer and response producer of this pair;
        // `shared` is leaked, so the rings outlive both ends.
        unsafe {
            requests.push(
                slot.attach_requests(&shared.bell)
                    .map_err(|e| ring_error("request ring", e))?,
            );
            responses.push(
                slot.attach_responses(proxy)
                    .map_err(|e| ring_error("response ring", e))?,
            );
        }
        slots.push(slot);
    }
    // Before any plugin code runs: a predecessor killed mid-claim must not
    // hold a metric slot forever.
    shared.pair_header().plugin.recover();
    let signals = signals::install(shared.bell.raw_fd())?;

    // Leaked: plugin threads may outlive `spp_fini`, so the code is never
    // unmapped under them.
    let plugin: &'static PluginLibrary =
        Box::leak(Box::new(PluginLibrary::load(&spec.plugin, Role::Worker)?));
    let conf = CString::new(spec.plugin_conf.as_str()).map_err(|_| WorkerError::Conf {
        path: spec.plugin.clone(),
    })?;
    let host = HostServices::install(
        shared,
        Responder::new(responses, shared),
        spec.group,
        spec.index,
        spec.async_tasks.map(|a| a.task_timeout_ms),
    )
    .ok_or(WorkerError::HostInstalledTwice)?;
    // SAFETY: the table is leaked, so it stays valid and in place for the
    // process's life (past `spp_fini`).
    let code = unsafe { plugin.init(host.table(), &conf) };
    if code != 0 {
        for slot in &slots {
            slot.set_init_failed();
        }
        return Err(WorkerError::Init {
            path: spec.plugin.clone(),
            code,
        });
    }
    let hooks = if plugin.has_flow_closed() {
        spp_ipc::layout::HOOK_FLOW_CLOSED
    } else {
        0
    };
    for slot in &slots {
        slot.set_hooks(hooks);
        slot.set_ready();
    }
    tracing::info!(plugin = %spec.plugin.display(), pid = std::process::id(), pairs, "ready");

    Server::new(&spec, slots, shared, host, plugin, requests, signals).run()?;
    tracing::info!("stopped");
    Ok(())
}
