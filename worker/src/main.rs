//! `spp-worker`: one worker process of an spp group. Started by the
//! controller (`spp start`) with `SPP_LAUNCH` = a JSON `Launch::Worker` and
//! its pair region, doorbell, proxy region and proxy doorbell inherited.
//!
//! It only reads the launch spec, sets up logging and calls
//! [`spp_worker::run`] (see the library for what a worker does).
//!
//! Exit status ([`spp_ipc::launch::exit_code`]): 0 after a drain; 2 bad
//! launch spec or plugin that cannot be loaded (the message names the file);
//! the plugin's own code, clamped to 1..=255, when `spp_init` returned
//! non-zero (logged, and the slot's state says `InitFailed`); 1 a corrupt
//! request ring or another runtime failure.
//! Logs go to stderr (the controller points it at the launch spec's
//! `log.file`).

use spp_ipc::launch::{Launch, DEFAULT_LOG_LEVEL};
use spp_worker::{run, WorkerError};
use std::process::ExitCode;

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
