//! `spp-proxy`: the spp proxy process.
//!
//! Started by the controller (`spp start`) with `SPP_LAUNCH` holding a JSON
//! `Launch::Proxy` and every fd it names inherited. It listens on the
//! inherited TCP and UDP sockets, frames requests with the plugin's
//! `spp_input`, routes them through shared-memory rings to the workers and
//! writes their responses back.
//!
//! This binary only reads the launch spec, sets up logging and calls
//! [`spp_proxy::serve`]; the proxy itself is the `spp_proxy` library
//! (its docs follow a request from `read` to `write`).
//!
//! Exit status: 0 after SIGINT or a finished SIGTERM drain; 2 for a bad
//! launch spec or a plugin that cannot be loaded; the plugin's own code,
//! clamped to 1..=255, when its `spp_init` refuses (the region's proxy state
//! says `InitFailed`); 1 when the event loop itself fails.

use spp_ipc::launch::{exit_code, Launch};
use spp_proxy::ProxyError;
use std::process::ExitCode;

fn main() -> ExitCode {
    let launch = match Launch::from_env() {
        Ok(Launch::Proxy(launch)) => launch,
        Ok(Launch::Worker(_)) => return fail_early(&ProxyError::WrongRole("worker")),
        Err(e) => return fail_early(&ProxyError::Launch(e)),
    };
    init_logging(&launch.log.level);
    match spp_proxy::serve(&launch) {
        Ok(()) => exit_status(exit_code::OK),
        Err(e) => {
            let code = e
                .downcast_ref::<ProxyError>()
                .map_or(exit_code::FAILURE, ProxyError::exit_code);
            tracing::error!("spp-proxy ({}): {e:#}", launch.service);
            exit_status(code)
        }
    }
}

/// Reports an error that happened before logging was set up.
fn fail_early(e: &ProxyError) -> ExitCode {
    spp_ipc::logging::stderr_line(&format!("spp-proxy: {}", spp_ipc::error_chain(e)));
    exit_status(e.exit_code())
}

/// The process status for one of the `exit_code` values.
fn exit_status(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}

fn init_logging(level: &str) {
    spp_ipc::logging::init("spp-proxy", level);
}
