//! `spp-proxy`: the spp proxy process.
//!
//! Started by the controller (`spp start`) with `SPP_LAUNCH` holding a JSON
//! `Launch::Proxy` and every fd it names inherited. It listens on the
//! inherited TCP and UDP sockets, frames requests with the plugin's
//! `spp_input`, routes them through shared-memory rings to the workers and
//! writes their responses back.
//!
//! Modules: [`event_loop`] (the loop, waiting, periodic jobs),
//! [`lifecycle`] (signals: drain, stop, log reopening), [`tcp`] (accept
//! and read side), [`udp`], [`conn`] (a connection's buffers), [`clients`]
//! (flow tables and delivery), [`requests`] (route, queue or fail, the
//! exception hook), [`responses`] (draining rings, stale requests, failing
//! a dead worker's requests), [`dispatch`] (groups, worker slots,
//! liveness, the drain handshake), [`live_limits`] (limits changed while
//! running), [`host`] (the `spp_host` services, plugin metrics), [`flow`]
//! (flow ids), [`setup`] (the launch spec), [`token`], [`error`].
//!
//! Exit status: 0 after SIGINT or a finished SIGTERM drain; 2 for a bad
//! launch spec or a plugin that cannot be loaded; 3 when the plugin's
//! `spp_init` refuses; 1 when the event loop itself fails.

mod clients;
mod conn;
mod dispatch;
mod error;
mod event_loop;
mod flow;
mod host;
mod lifecycle;
mod live_limits;
mod requests;
mod responses;
mod setup;
mod tcp;
mod token;
mod udp;

use anyhow::Context;
use error::ProxyError;
use event_loop::Proxy;
use spp_ipc::launch::{exit_code, Launch, ProxyLaunch};
use std::process::ExitCode;

fn main() -> ExitCode {
    let launch = match Launch::from_env() {
        Ok(Launch::Proxy(launch)) => launch,
        Ok(Launch::Worker(_)) => return fail_early(&ProxyError::WrongRole("worker")),
        Err(e) => return fail_early(&ProxyError::Launch(e)),
    };
    init_logging(&launch.log.level);
    match run(&launch) {
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
    eprintln!("spp-proxy: {}", spp_ipc::error_chain(e));
    exit_status(e.exit_code())
}

/// The process status for one of the `exit_code` values.
fn exit_status(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}

fn init_logging(level: &str) {
    spp_ipc::logging::init("spp-proxy", level);
}

fn run(launch: &ProxyLaunch) -> anyhow::Result<()> {
    tracing::info!(service = %launch.service, epoch = launch.epoch, plugin = %launch.plugin.display(), "proxy starting");
    let mut proxy = Proxy::new(launch)?;
    proxy.init_plugin(&launch.plugin_conf)?;
    let outcome = proxy.run();
    proxy.finish();
    outcome.context("event loop failed")
}
