//! `spp-worker`: one worker process of an spp group. Started by the
//! controller (`spp start`) with `SPP_LAUNCH` = a JSON `Launch::Worker` and
//! its pair region, doorbell, proxy region and proxy doorbell inherited.
//!
//! Startup: map the shared state (and the L5 route table, when the
//! controller hands one), publish our pid, bump
//! `worker_generation`, state `Starting`, drop whatever a dead predecessor
//! left in the request ring, free the plugin-metric slots it may have left
//! half-claimed, load the plugin (ABI checked), build the `spp_host` table,
//! call `spp_init`, state `Ready`, then serve the ring ([`serve`]) until
//! SIGTERM drains it ([`drain`]). SIGHUP reopens the log file
//! ([`signals`]).
//!
//! Exit status ([`spp_ipc::launch::exit_code`]): 0 after a drain; 2 bad
//! launch spec or plugin that cannot be loaded (the message names the file);
//! 3 `spp_init` returned non-zero (the code is logged); 1 a corrupt request
//! ring or another runtime failure.
//! Logs go to stderr (the controller points it at the launch spec's
//! `log.file`).

mod attach;
mod drain;
mod error;
mod host;
mod l5;
mod respond;
mod serve;
mod signals;
mod stats;
mod throttle;

use crate::error::WorkerError;
use crate::host::HostServices;
use crate::respond::Responder;
use crate::serve::Server;
use spp_ipc::launch::{Launch, WorkerLaunch, DEFAULT_LOG_LEVEL};
use spp_ipc::layout::WorkerState;
use spp_plugin_api::host::{PluginLibrary, Role};
use std::ffi::CString;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

fn main() -> ExitCode {
    let launch = Launch::from_env();
    let level = match &launch {
        Ok(Launch::Worker(spec)) => spec.log.level.as_str(),
        _ => DEFAULT_LOG_LEVEL,
    };
    init_logging(level);
    let result = launch
        .map_err(WorkerError::Launch)
        .and_then(|launch| match launch {
            Launch::Worker(spec) => run(spec),
            Launch::Proxy(_) => Err(WorkerError::WrongRole { role: "proxy" }),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{}", spp_ipc::error_chain(&err));
            u8::try_from(err.exit_code()).map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}

/// tracing to stderr with the launch spec's filter.
fn init_logging(level: &str) {
    spp_ipc::logging::init("spp-worker", level);
}

/// Starts the worker and serves until drained.
fn run(spec: WorkerLaunch) -> Result<(), WorkerError> {
    let _span = tracing::info_span!("worker", group = spec.group, index = spec.index).entered();
    let shared = attach::attach(&spec)?;
    let header = shared.pair_header();
    header
        .worker_pid
        .store(std::process::id(), Ordering::Release);
    // The proxy stamps each request with the tag of the generation it
    // adopted; requests stamped for another one are skipped (see `serve`).
    let generation = header
        .worker_generation
        .fetch_add(1, Ordering::AcqRel)
        .wrapping_add(1);
    header
        .worker_state
        .store(WorkerState::Starting as u32, Ordering::Release);

    let ring_error = |what, cause| WorkerError::Attach {
        what,
        fd: spec.pair.region_fd,
        cause,
    };
    // SAFETY: the controller runs one worker per slot, so this is the only
    // request consumer and response producer; `shared` is leaked, so the
    // rings outlive both ends.
    let (mut requests, responses) = unsafe {
        (
            shared
                .pair
                .request_consumer()
                .map_err(|e| ring_error("request ring", e))?,
            shared
                .pair
                .response_producer()
                .map_err(|e| ring_error("response ring", e))?,
        )
    };
    requests.discard_all();
    // Before any plugin code runs: a predecessor killed mid-claim must not
    // hold a metric slot forever.
    header.plugin.recover();
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
    )
    .ok_or(WorkerError::HostInstalledTwice)?;
    // SAFETY: the table is leaked, so it stays valid and in place for the
    // process's life (past `spp_fini`).
    let code = unsafe { plugin.init(host.table(), &conf) };
    if code != 0 {
        return Err(WorkerError::Init {
            path: spec.plugin.clone(),
            code,
        });
    }
    header
        .worker_state
        .store(WorkerState::Ready as u32, Ordering::Release);
    tracing::info!(plugin = %spec.plugin.display(), pid = std::process::id(), "ready");

    Server::new(&spec, generation, shared, host, plugin, requests, signals).run()?;
    tracing::info!("stopped");
    Ok(())
}
