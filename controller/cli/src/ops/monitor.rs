//! `spp monitor -c FILE`: a one-shot health check for cron or a timer. It
//! asks the controller for its status (control socket) and prints one
//! status line; the exit status says which case it was:
//!
//! | exit | case |
//! |------|------|
//! | 0  | healthy: running, the proxy ready, every group at strength |
//! | 10 | degraded: the controller answers but the service is starting or stopping, the proxy is not ready, a group has fewer ready workers than its `min_workers`, or a process is in a crash loop (the line says which) |
//! | 11 | the service was down and was started again (as `spp start`: detached, ready) |
//! | 12 | the service was down and could not be started (the line says why) |
//! | 13 | a controller holds the pid file but does not answer (hung, or starting or stopping): nothing is started |
//! | 1  | the config does not load (the error is printed) |

use super::OpsError;
use crate::cli::ConfigArg;
use crate::lifecycle;
use spp_config::defaults;
use spp_config::{self as config, Config};
use spp_daemon::control::{self, ControlError, Request};
use spp_daemon::pidfile::{self, Holder};
use spp_daemon::status::{ProcState, ServiceState, Status};

/// Healthy.
pub const EXIT_HEALTHY: u8 = 0;
/// Alive but below strength (or starting, stopping, crash-looping).
pub const EXIT_DEGRADED: u8 = 10;
/// Was down; started again.
pub const EXIT_RESTARTED: u8 = 11;
/// Was down; could not be started.
pub const EXIT_START_FAILED: u8 = 12;
/// A controller runs but does not answer; nothing started.
pub const EXIT_HUNG: u8 = 13;

/// What the status says: `Ok(summary)` when healthy, `Err(problems)`.
pub fn assess(status: &Status) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    if status.state != ServiceState::Running {
        problems.push(format!("service is {}", state_name(status.state)));
    }
    match status.processes.iter().find(|p| p.role == "proxy") {
        Some(p) if p.state == ProcState::Ready => {}
        Some(p) => problems.push(format!("proxy is {}", p.state.as_str())),
        None => problems.push("no proxy".to_string()),
    }
    let mut groups = Vec::new();
    for g in &status.groups {
        let ready = status
            .processes
            .iter()
            .filter(|p| p.group == Some(g.id) && p.state == ProcState::Ready)
            .count();
        let ready = u32::try_from(ready).unwrap_or(u32::MAX);
        let need = g.min.min(g.workers).max(1);
        if ready < need {
            problems.push(format!(
                "group {} has {ready} ready worker(s) of {need} needed",
                g.id
            ));
        }
        groups.push(format!("g{} {ready}/{}", g.id, g.workers));
    }
    for p in status.processes.iter().filter(|p| p.crash_loop) {
        problems.push(format!("{} is in a crash loop", p.name));
    }
    if problems.is_empty() {
        Ok(format!(
            "proxy ready, {}",
            if groups.is_empty() {
                "no groups".to_string()
            } else {
                groups.join(", ")
            }
        ))
    } else {
        Err(problems)
    }
}

fn state_name(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Starting => "starting",
        ServiceState::Running => "running",
        ServiceState::Stopping => "stopping",
    }
}

/// `spp monitor`: see the module docs. Returns the exit status.
pub fn run(arg: &ConfigArg) -> Result<u8, OpsError> {
    let path = arg.file();
    let cfg = config::load(&path)?;
    let (code, line) = check(&cfg, &path);
    println!("spp monitor {}: {line}", cfg.service.name);
    Ok(code)
}

/// The exit status and the status line.
fn check(cfg: &Config, path: &std::path::Path) -> (u8, String) {
    let socket = cfg.socket_path();
    match control::request(&socket, Request::Status) {
        Ok(value) => match serde_json::from_value::<Status>(value) {
            Ok(status) => match assess(&status) {
                Ok(summary) => (
                    EXIT_HEALTHY,
                    format!(
                        "healthy (controller pid {}): {summary}",
                        status.controller_pid
                    ),
                ),
                Err(problems) => (
                    EXIT_DEGRADED,
                    format!(
                        "degraded (controller pid {}): {}",
                        status.controller_pid,
                        problems.join("; ")
                    ),
                ),
            },
            Err(e) => (
                EXIT_HUNG,
                format!("the controller's status is not understood: {e}"),
            ),
        },
        Err(ControlError::NotRunning { .. }) => match pidfile::probe(&cfg.pid_file()) {
            Holder::Held(pid) => (EXIT_HUNG, hung(cfg, pid)),
            Holder::Free => restart(path),
        },
        Err(e) => match pidfile::probe(&cfg.pid_file()) {
            Holder::Held(pid) => (
                EXIT_HUNG,
                format!("{} ({})", hung(cfg, pid), spp_ipc::error_chain(&e)),
            ),
            Holder::Free => (
                EXIT_HUNG,
                format!(
                    "the control socket fails but no controller holds the pid file: {}",
                    spp_ipc::error_chain(&e)
                ),
            ),
        },
    }
}

fn hung(cfg: &Config, pid: Option<u32>) -> String {
    let pid = pid.map_or_else(|| "?".to_string(), |p| p.to_string());
    format!(
        "hung: the controller (pid {pid}) does not answer on {}; not starting another",
        cfg.socket_path().display()
    )
}

/// Starts the service as `spp start` does.
fn restart(path: &std::path::Path) -> (u8, String) {
    let wait = humantime::parse_duration(defaults::START_WAIT)
        .unwrap_or(std::time::Duration::from_secs(30));
    match lifecycle::start(path, wait) {
        Ok(status) => (
            EXIT_RESTARTED,
            format!(
                "was down; started again (controller pid {})",
                status.controller_pid
            ),
        ),
        Err(e) => {
            let why = spp_ipc::error_chain(&e);
            let why: Vec<&str> = why
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            (
                EXIT_START_FAILED,
                format!("was down; could not be started: {}", why.join("; ")),
            )
        }
    }
}
