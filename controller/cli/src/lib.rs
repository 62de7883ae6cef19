//! `spp-controller`: the `spp` operator CLI of the spp socket server.
//! `main.rs` only parses the arguments ([`cli::Cli`]) and calls [`main`].
//!
//! * `spp check -c FILE`: validate the config.
//! * `spp start -c FILE [--foreground] [--wait 30s]`: start the service
//!   (proxy + worker groups) and return once it answers.
//! * `spp status -c FILE [--json]`: ask the running controller.
//! * `spp stat -c FILE [--json] [--watch SECS]`: rates and latencies.
//! * `spp reload -c FILE`: apply a changed config without dropping
//!   requests (workers replaced one by one).
//! * `spp restart -c FILE [--wait 30s]`: stop (if running), then start.
//! * `spp stop -c FILE`: drain and stop everything.
//! * `spp monitor -c FILE`, `spp diskclear -c FILE`: one-shot health check
//!   (restarts a service that is down), old rotated logs and cores removed
//!   ([`ops`]).
//! * `spp package -c FILE -o OUT.tar.gz [--version V]`, `spp install PKG
//!   --prefix DIR [--keep-config|--replace-config]`, `spp checksum --prefix
//!   DIR`, `spp uninstall --prefix DIR [--purge]`: the standard package
//!   ([`package`]); every `-c FILE` command also takes `--prefix DIR`.
//! * `spp l5 list -c FILE [--json]`, `spp l5 get -c FILE MODID CMDID
//!   [--json]`: the L5 route table (weights, health, outcomes).
//! * `spp new plugin NAME --lang rust|c [--dir DIR]`: a ready plugin
//!   project ([`scaffold`]).
//! * `spp __check-plugin --role ROLE PATH` (hidden): one plugin loaded in
//!   a short-lived process (`spp_daemon::plugin_check`), so that neither
//!   the CLI nor the controller ever maps a business plugin.
//!
//! `status`, `stat`, `stop` and `l5` still work while FILE does not validate
//! (e.g. mid-edit before a reload): they warn and find the service through
//! its `[service]` keys (`spp_config::locate`). `check`, `start`, `reload`
//! and `restart` refuse an invalid file.
//!
//! Modules: [`cli`] (arguments, exit statuses), [`commands`] (what each
//! command does), [`lifecycle`] (detached start, stop: the daemon's
//! client), [`package`], [`ops`], [`scaffold`], [`output`] (printing that survives a
//! closed pipe). The config is `spp-config`; the
//! controller itself (`spp start --foreground`), the control socket, the
//! status and stats reports and their tables are `spp-daemon`.

// Shadow `std`'s printing macros for every module below: a closed pipe
// must not panic the CLI (see `output`). Defined before the modules, so
// they see these.
macro_rules! println {
    () => {
        $crate::output::out(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::out(format_args!($($arg)*), true)
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::out(format_args!($($arg)*), false)
    };
}
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::output::err(format_args!($($arg)*))
    };
}

pub mod cli;
pub mod commands;
pub mod lifecycle;
pub mod ops;
pub mod output;
pub mod package;
pub mod scaffold;

use cli::{Cli, EXIT_FAILURE};
use std::process::ExitCode;

/// Runs the parsed command line: execs the installed `spp` for a
/// `--prefix DIR` command run by another one, else runs the command and
/// prints its error (with every cause, each once).
pub fn main(cli: Cli) -> ExitCode {
    if let Some(err) = commands::exec_installed(&cli) {
        eprintln!("spp: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("spp: {}", spp_ipc::error_chain(e.as_ref()));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
