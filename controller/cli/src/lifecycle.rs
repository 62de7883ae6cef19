//! The CLI side of the service's life: `spp start` without `--foreground`
//! (spawn the controller detached and return once the service answers) and
//! `spp stop` (ask the controller to stop and wait until it is gone).

use spp_config::defaults;
use spp_config::environment::Mode;
use spp_config::locate::Location;
use spp_config::Config;
use spp_daemon::control::{self, ControlError, Request, STOP_TIMEOUT_KEY};
use spp_daemon::logging::{dir_full_message, tail_lines};
use spp_daemon::pidfd::Pidfd;
use spp_daemon::pidfile::{self, Holder};
use spp_daemon::service::{self, RunError};
use spp_daemon::status::{ProcState, Status};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Hidden flag telling a `--foreground` controller that its stderr already
/// is `controller.log`.
pub const DETACHED_FLAG: &str = "--detached";

/// `spp start` / `spp stop` failures.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Preflight checks failed; nothing started.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A controller already serves this config.
    #[error("already running (pid {pid})")]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },
    /// The controller could not be spawned.
    #[error("starting the controller {}", exe.display())]
    Spawn {
        /// The spp executable.
        exe: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The controller's log cannot be created: its file system is full.
    #[error("log dir full: {} (cannot create {})", dir.display(), log.display())]
    LogDirFull {
        /// The log dir.
        dir: PathBuf,
        /// The controller log.
        log: PathBuf,
    },
    /// The controller exited before the service was ready.
    #[error("the controller exited ({status}) before the service was ready; {} says:\n{tail}", log.display())]
    ControllerExited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: PathBuf,
        /// The last lines it logged.
        tail: String,
    },
    /// The service did not become ready in time (it was stopped).
    #[error("the service was not ready after {wait:?} (it was stopped; see {}):\n{waiting}", log.display())]
    NotReady {
        /// How long we waited.
        wait: Duration,
        /// The controller log.
        log: PathBuf,
        /// Which processes were not ready.
        waiting: String,
    },
    /// The control socket failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A controller holds the pid file but neither answers nor has written
    /// its pid yet: it is starting.
    #[error("a controller holds {} but has not written its pid yet (it is starting); try again", path.display())]
    NoPid {
        /// The pid file.
        path: PathBuf,
    },
    /// The controller did not exit in time.
    #[error("the controller (pid {pid}) is still running after {waited:?}")]
    StillRunning {
        /// Its pid.
        pid: u32,
        /// How long we waited.
        waited: Duration,
    },
}

/// Starts the service in the background; returns its status once every
/// process is ready. A full log dir does not stop a start (log lines are
/// dropped and counted, serving goes on): the status then carries the
/// warning `"log dir full: DIR"` (`Status::log`), which `spp start`
/// prints. Only a controller log that cannot even be created refuses the
/// start, with [`DaemonError::LogDirFull`].
pub fn start(config_path: &Path, wait: Duration) -> Result<Status, DaemonError> {
    let (cfg, _) = service::preflight(config_path, Mode::Inspect)?;
    if let Ok(value) = control::request(&cfg.socket_path(), Request::Status) {
        let pid = value
            .get("controller_pid")
            .and_then(|p| p.as_u64())
            .unwrap_or_default();
        return Err(DaemonError::AlreadyRunning {
            pid: u32::try_from(pid).unwrap_or_default(),
        });
    }
    service::make_dir(&cfg.service.log_dir)?;
    let log = cfg.controller_log();
    let log_from = std::fs::metadata(&log).map_or(0, |m| m.len());
    let mut child = spawn_controller(&cfg, &log).map_err(|e| match e {
        DaemonError::Spawn { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            DaemonError::LogDirFull {
                dir: cfg.service.log_dir.clone(),
                log: log.clone(),
            }
        }
        e => e,
    })?;
    let deadline = Instant::now() + wait;
    let mut last: Option<Status> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut tail =
                last_error(tail_lines(&log, log_from, defaults::START_LOG_TAIL_LINES)).join("\n");
            // What it logged may be lost: say why.
            if let Some(full) = dir_full_message(&cfg.service.log_dir) {
                tail = format!("{full} (log lines were dropped)\n{tail}");
            }
            return Err(DaemonError::ControllerExited { status, log, tail });
        }
        if let Ok(value) = control::request(&cfg.socket_path(), Request::Status) {
            if let Ok(status) = serde_json::from_value::<Status>(value) {
                if status.controller_pid == child.id() {
                    if status.all_ready() {
                        return Ok(status);
                    }
                    last = Some(status);
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(defaults::START_POLL);
    }
    let waiting = last
        .map(|s| {
            let lines: Vec<String> = s
                .processes
                .iter()
                .filter(|p| p.state != ProcState::Ready)
                .map(|p| format!("  {} is {}", p.name, p.state.as_str()))
                .collect();
            lines.join("\n")
        })
        .unwrap_or_else(|| "  the controller never answered".to_string());
    let _ = control::request(&cfg.socket_path(), Request::Stop);
    let _ = wait_gone(
        child.id(),
        defaults::stop_timeout(cfg.service.stop_grace) + defaults::STOP_WAIT_MARGIN,
    );
    let _ = child.try_wait();
    Err(DaemonError::NotReady { wait, log, waiting })
}

/// From the controller's last ERROR record on (its fatal error and the
/// indented lines that continue it), or everything when there is none.
fn last_error(mut lines: Vec<String>) -> Vec<String> {
    let is_error_record = |l: &String| !l.starts_with(char::is_whitespace) && l.contains(" ERROR ");
    if let Some(at) = lines.iter().rposition(is_error_record) {
        lines.drain(..at);
    }
    lines
}

/// Spawns `spp start -c FILE --foreground --detached` in a new session,
/// with stdin from /dev/null and stdout + stderr appended to `log`.
fn spawn_controller(cfg: &Config, log: &Path) -> Result<Child, DaemonError> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("spp"));
    let fail = |source| DaemonError::Spawn {
        exe: exe.clone(),
        source,
    };
    let out = spp_daemon::privileges::open_log(log, None).map_err(fail)?;
    let err = out.try_clone().map_err(fail)?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("start")
        .arg("-c")
        .arg(&cfg.file)
        .arg("--foreground")
        .arg(DETACHED_FLAG)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // SAFETY: setsid and close_range are async-signal-safe and allocate
    // nothing.
    unsafe {
        cmd.pre_exec(|| {
            spp_daemon::spawn::cloexec_all_but_stdio();
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(fail)
}

/// What `spp stop` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The controller with this pid stopped.
    Stopped(u32),
    /// Nothing was running.
    NotRunning,
}

/// Asks the controller of the service at `at` to stop and waits until it
/// is gone: as long as the controller says its stop may take (its own
/// `stop_grace`, which the file may no longer give), else as long as
/// `at.stop_grace` allows, plus [`defaults::STOP_WAIT_MARGIN`].
pub fn stop(at: &Location) -> Result<Stopped, DaemonError> {
    let socket = at.socket_path();
    let mut bound = defaults::stop_timeout(at.stop_grace);
    let pid = match control::request(&socket, Request::Stop) {
        Ok(value) => {
            if let Some(ms) = value.get(STOP_TIMEOUT_KEY).and_then(|v| v.as_u64()) {
                bound = Duration::from_millis(ms);
            }
            value
                .get("controller_pid")
                .and_then(|p| p.as_u64())
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| ControlError::BadResponse {
                    path: socket,
                    reason: format!("no controller_pid in {value}"),
                })?
        }
        Err(ControlError::NotRunning { .. }) => match pidfile::probe(&at.pid_file()) {
            Holder::Free => return Ok(Stopped::NotRunning),
            // A controller holds the pid file but its socket is gone (or not
            // there yet): signal it.
            Holder::Held(Some(pid)) => {
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(raw),
                        nix::sys::signal::SIGTERM,
                    );
                }
                pid
            }
            Holder::Held(None) => {
                return Err(DaemonError::NoPid {
                    path: at.pid_file(),
                })
            }
        },
        Err(e) => return Err(e.into()),
    };
    let waited = bound + defaults::STOP_WAIT_MARGIN;
    if wait_gone(pid, waited) {
        Ok(Stopped::Stopped(pid))
    } else {
        Err(DaemonError::StillRunning { pid, waited })
    }
}

/// Waits until process `pid` has exited, at most `timeout`. True when gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let pidfd = match Pidfd::open(pid) {
        Ok(pidfd) => pidfd,
        // ESRCH: already gone.
        Err(e) => return e.raw_os_error() == Some(libc::ESRCH),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => return false,
            n if n > 0 => return true,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_record_and_its_continuation_lines_are_kept() {
        let lines: Vec<String> = [
            "a INFO x",
            "b ERROR start failed: w",
            "    | c ERROR child said",
            "d INFO stopped",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(last_error(lines.clone())[0], "b ERROR start failed: w");
        assert_eq!(last_error(lines[..1].to_vec()), vec!["a INFO x"]);
    }
}
