//! The bookkeeping of one supervised child: what it is (a proxy shard, or
//! one worker slot), whether it is meant to run, its current run (with the
//! config generation it was started from, and the pidfd every signal goes
//! through), its restart back-off and crash-loop detection, how its last
//! run ended, and its line in the status report. A worker that served and
//! then died is restarted at once ([`Backoff::after_served_exit`]); back-off
//! is for children that cannot start.

use crate::pidfd::Pidfd;
use crate::status::{ProcState, ProcessStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spp_config::defaults;
use spp_config::Config;
use spp_ipc::launch::exit_code;
use spp_ipc::layout::ProcessState;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Which process a child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A proxy shard.
    Proxy {
        /// Its index.
        shard: u16,
        /// How many the service runs (`proxy.processes`).
        shards: u16,
    },
    /// A worker.
    Worker {
        /// Position of its group in the config.
        group_pos: usize,
        /// Group id.
        group: u32,
        /// Index inside the group.
        index: u32,
    },
}

impl Kind {
    /// Whether it is a proxy shard.
    pub fn is_proxy(&self) -> bool {
        matches!(self, Kind::Proxy { .. })
    }
}

/// The name of proxy shard `shard` of `shards` (status, log file stem):
/// `proxy` when there is one, else `proxy-0`, `proxy-1`, ...
pub fn proxy_name(shard: u16, shards: u16) -> String {
    if shards <= 1 {
        "proxy".to_string()
    } else {
        format!("proxy-{shard}")
    }
}

impl fmt::Display for Kind {
    /// How messages name it: `proxy` (`proxy-1` with several), `worker
    /// g1/0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Proxy { shard, shards } => f.write_str(&proxy_name(*shard, *shards)),
            Kind::Worker { group, index, .. } => write!(f, "worker g{group}/{index}"),
        }
    }
}

/// What the child last wrote about itself in shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// Not started, or loading its plugin.
    Starting,
    /// Serving.
    Ready,
    /// Draining.
    Draining,
    /// Gone (set by the controller).
    Down,
    /// Its plugin's `spp_init` refused; it exits with the plugin's code.
    InitFailed,
}

impl From<ProcessState> for Shared {
    fn from(s: ProcessState) -> Self {
        match s {
            ProcessState::Empty | ProcessState::Starting => Shared::Starting,
            ProcessState::Ready => Shared::Ready,
            ProcessState::Draining => Shared::Draining,
            ProcessState::Down => Shared::Down,
            ProcessState::InitFailed => Shared::InitFailed,
        }
    }
}

/// A live run of a child. Dropped (closing its pidfd) when the run is
/// booked as exited.
#[derive(Debug)]
pub struct Running {
    /// Its pid.
    pub pid: u32,
    /// Its pidfd, opened right after the spawn (before anything could reap
    /// it); `None` only when `pidfd_open` failed (a kernel without it).
    pub pidfd: Option<Pidfd>,
    /// When it was spawned.
    pub started: Instant,
    /// Whether it was seen ready.
    pub ever_ready: bool,
    /// Size of its log file when it started (where its own output begins).
    pub log_from: u64,
    /// The config generation it was started from.
    pub generation: u64,
    /// It was SIGKILLed on purpose (hung, or retired too slowly).
    pub killed: bool,
    /// It was asked to stop on purpose (scale-down, reload): killed if
    /// still running then.
    pub retire_by: Option<Instant>,
    /// The slot's `completed_seq` when it started (a worker): one that
    /// moved completed a request in this run.
    pub completed_at_start: u64,
}

impl Running {
    /// A run that just started; `pidfd` refers to it.
    pub fn new(pid: u32, pidfd: Option<Pidfd>, log_from: u64, generation: u64) -> Self {
        Running {
            pid,
            pidfd,
            started: Instant::now(),
            ever_ready: false,
            log_from,
            generation,
            killed: false,
            retire_by: None,
            completed_at_start: 0,
        }
    }

    /// Sends `sig` to this run: through its pidfd, so never to a process
    /// that reused the pid after this one was reaped (`ESRCH` then);
    /// through `kill(2)` only without a pidfd.
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        match &self.pidfd {
            Some(pidfd) => pidfd.signal(sig),
            None => {
                let pid = i32::try_from(self.pid)
                    .map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
                kill(Pid::from_raw(pid), sig).map_err(io::Error::from)
            }
        }
    }
}

/// Restart delays: [`defaults::BACKOFF_INITIAL`] doubling to
/// [`defaults::BACKOFF_MAX`], starting over after a run of
/// [`defaults::STABLE_AFTER`]; [`defaults::CRASH_LOOP_RESTARTS`] quick exits
/// in a row make a crash loop.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    next_delay: Duration,
    quick_exits: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next_delay: defaults::BACKOFF_INITIAL,
            quick_exits: 0,
        }
    }
}

impl Backoff {
    /// Records an exit after `uptime`; returns the delay before the restart.
    pub fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= defaults::STABLE_AFTER {
            *self = Backoff::default();
        } else {
            self.quick_exits = self.quick_exits.saturating_add(1);
        }
        let delay = self.next_delay;
        self.next_delay = (delay * 2).min(defaults::BACKOFF_MAX);
        delay
    }

    /// Records the exit of a run that served (Ready, then up
    /// [`defaults::SERVED_AFTER`] or completed a request): restarted at
    /// once, with no back-off, unless [`defaults::IMMEDIATE_RESTARTS`] such
    /// quick exits came in a row; then the usual back-off. It still counts
    /// as a quick exit, so a crash loop shows.
    pub fn after_served_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= defaults::STABLE_AFTER {
            *self = Backoff::default();
            return Duration::ZERO;
        }
        if self.quick_exits < defaults::IMMEDIATE_RESTARTS {
            self.quick_exits += 1;
            return Duration::ZERO;
        }
        self.after_exit(uptime)
    }

    /// A crash loop: many quick exits, and the current run (if any) is not
    /// stable yet.
    pub fn crash_loop(&self, running_for: Option<Duration>) -> bool {
        let stable = matches!(running_for, Some(u) if u >= defaults::STABLE_AFTER);
        self.quick_exits >= defaults::CRASH_LOOP_RESTARTS && !stable
    }
}

/// One supervised child.
#[derive(Debug)]
pub struct Child {
    /// Which process it is.
    pub kind: Kind,
    /// `proxy` (`proxy-<S>` with several shards) or `worker-g<G>-<I>`
    /// (status name, log file stem).
    pub name: String,
    /// Its log file.
    pub log: PathBuf,
    /// Meant to run: restarted when it exits. False for a spare slot and
    /// for a worker stopped on purpose (scale-down, replaced by a reload).
    pub desired: bool,
    /// The current run.
    pub run: Option<Running>,
    /// Why the controller stopped or killed the current run, for its
    /// `last_exit` ("stopped by scale-down", "stuck in spp_process ...").
    pub stop_reason: Option<String>,
    /// When a restart is due (while in back-off).
    pub restart_at: Option<Instant>,
    /// Restart delays.
    pub backoff: Backoff,
    /// Restarts so far.
    pub restarts: u32,
    /// How the previous run ended.
    pub last_exit: Option<String>,
}

impl Child {
    /// Proxy shard `shard` of `cfg`.
    pub fn proxy(cfg: &Config, shard: u16) -> Self {
        let shards = cfg.proxy.processes.max(1);
        let name = proxy_name(shard, shards);
        Self::new(cfg, Kind::Proxy { shard, shards }, name, true)
    }

    /// The worker slot `index` of the group at `group_pos`; `desired` when
    /// a worker should run there from the start.
    pub fn worker(cfg: &Config, group_pos: usize, group: u32, index: u32, desired: bool) -> Self {
        Self::new(
            cfg,
            Kind::Worker {
                group_pos,
                group,
                index,
            },
            format!("worker-g{group}-{index}"),
            desired,
        )
    }

    fn new(cfg: &Config, kind: Kind, name: String, desired: bool) -> Self {
        Child {
            kind,
            log: cfg.service.log_dir.join(format!("{name}.log")),
            name,
            desired,
            run: None,
            stop_reason: None,
            restart_at: None,
            backoff: Backoff::default(),
            restarts: 0,
            last_exit: None,
        }
    }

    /// How messages name it: `proxy`, `worker g1/0`.
    pub fn label(&self) -> String {
        self.kind.to_string()
    }

    /// The position of its group, for a worker.
    pub fn group_pos(&self) -> Option<usize> {
        match self.kind {
            Kind::Worker { group_pos, .. } => Some(group_pos),
            Kind::Proxy { .. } => None,
        }
    }

    /// Whether it is a worker of the group at `pos`.
    pub fn in_group(&self, pos: usize) -> bool {
        self.group_pos() == Some(pos)
    }

    /// Whether the slot is free for a new worker: nothing runs there, none
    /// is meant to, and no restart is pending.
    pub fn is_free(&self) -> bool {
        !self.desired && self.run.is_none() && self.restart_at.is_none()
    }

    /// Makes a free slot meant to run a new worker: a fresh back-off and
    /// restart count (its `last_exit` still tells how the slot's previous
    /// worker ended).
    pub fn take_up(&mut self) {
        self.desired = true;
        self.backoff = Backoff::default();
        self.restarts = 0;
    }

    /// Whether it belongs in the status report: meant to run, or running.
    pub fn listed(&self) -> bool {
        self.desired || self.run.is_some() || self.restart_at.is_some()
    }

    /// Its line in the status report, given its shared state.
    pub fn status(&self, shared: Shared, now: Instant) -> ProcessStatus {
        let run = self.run.as_ref();
        let uptime = run.map(|r| now.saturating_duration_since(r.started));
        let state = match (run, shared) {
            (Some(_), Shared::Ready) => ProcState::Ready,
            (Some(_), Shared::Draining) => ProcState::Draining,
            (Some(_), _) => ProcState::Starting,
            (None, _) if self.restart_at.is_some() => ProcState::Backoff,
            (None, _) => ProcState::Down,
        };
        let (role, group, index, shard) = match self.kind {
            Kind::Proxy { shard, .. } => ("proxy", None, None, Some(shard)),
            Kind::Worker { group, index, .. } => ("worker", Some(group), Some(index), None),
        };
        ProcessStatus {
            name: self.name.clone(),
            role: role.to_string(),
            group,
            index,
            shard,
            pid: run.map(|r| r.pid),
            state,
            restarts: self.restarts,
            uptime_s: uptime.map_or(0, |u| u.as_secs()),
            config_generation: run.map(|r| r.generation),
            last_exit: self.last_exit.clone(),
            crash_loop: self.backoff.crash_loop(uptime),
        }
    }
}

/// How a child's run ended.
#[derive(Debug)]
pub enum ChildExit {
    /// It exited with this status.
    Code(i32),
    /// This signal killed it.
    Signal(i32),
    /// Waiting for it failed.
    Lost(std::io::Error),
    /// It exited with this status after its plugin's `spp_init` refused
    /// (it said so in shared memory): the status is the plugin's code,
    /// clamped to 1..=255.
    InitFailed(i32),
}

impl ChildExit {
    /// What waiting for the child returned.
    pub fn from_wait(status: std::io::Result<ExitStatus>) -> Self {
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => ChildExit::Code(code),
                (None, Some(sig)) => ChildExit::Signal(sig),
                // wait(2) reports only terminations: never reached.
                (None, None) => ChildExit::Code(s.into_raw()),
            },
            Err(e) => ChildExit::Lost(e),
        }
    }

    /// This exit, known to follow a refusing `spp_init` when `init_failed`
    /// (the child's last shared state).
    pub fn after_init(self, init_failed: bool) -> Self {
        match self {
            ChildExit::Code(code) if init_failed => ChildExit::InitFailed(code),
            other => other,
        }
    }

    /// For the status report: `"exit status 3"`, `"killed by signal 9"`,
    /// `"spp_init returned 7"`.
    pub fn short(&self) -> String {
        match self {
            ChildExit::Code(code) => format!("exit status {code}"),
            ChildExit::InitFailed(code) => format!("spp_init returned {}", init_code(*code)),
            ChildExit::Signal(sig) => format!("killed by signal {sig}"),
            ChildExit::Lost(e) => format!("lost ({e})"),
        }
    }

    /// What the exit status means by the process contract
    /// ([`spp_ipc::launch::exit_code`]).
    pub fn meaning(&self) -> Option<&'static str> {
        match self {
            ChildExit::Code(exit_code::OK) => Some("it stopped on its own"),
            ChildExit::Code(exit_code::FAILURE) => Some("runtime failure"),
            ChildExit::Code(exit_code::SETUP) => Some("bad launch spec or cannot load the plugin"),
            _ => None,
        }
    }
}

/// The `spp_init` code behind exit status `code`: the code itself, or "a
/// code clamped to" it at the ends of 1..=255.
fn init_code(code: i32) -> String {
    match code {
        1 => "1 (or less)".to_string(),
        255 => "255 (or more)".to_string(),
        code => code.to_string(),
    }
}

impl fmt::Display for ChildExit {
    /// `exited with status 3 (plugin init failed)`, `was killed by signal 9`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildExit::Code(code) => write!(f, "exited with status {code}")?,
            ChildExit::InitFailed(code) => write!(
                f,
                "exited with status {code} (plugin init failed: spp_init returned {})",
                init_code(*code)
            )?,
            ChildExit::Signal(sig) => write!(f, "was killed by signal {sig}")?,
            ChildExit::Lost(e) => write!(f, "was lost ({e})")?,
        }
        match self.meaning() {
            Some(meaning) => write!(f, " ({meaning})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<Duration> = (0..9).map(|_| b.after_exit(quick)).collect();
        assert_eq!(delays[0], defaults::BACKOFF_INITIAL);
        assert_eq!(delays[1], defaults::BACKOFF_INITIAL * 2);
        assert_eq!(delays[3], defaults::BACKOFF_INITIAL * 8);
        assert_eq!(delays[8], defaults::BACKOFF_MAX);
        assert!(b.crash_loop(None));
        assert!(b.crash_loop(Some(quick)));
        assert!(!b.crash_loop(Some(defaults::STABLE_AFTER)));
        assert_eq!(
            b.after_exit(defaults::STABLE_AFTER),
            defaults::BACKOFF_INITIAL
        );
        assert!(!b.crash_loop(None));
    }

    #[test]
    fn a_served_exit_restarts_at_once_until_too_many_in_a_row() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        for _ in 0..defaults::IMMEDIATE_RESTARTS {
            assert_eq!(b.after_served_exit(quick), Duration::ZERO);
        }
        assert!(b.crash_loop(None), "served deaths still make a crash loop");
        assert_eq!(b.after_served_exit(quick), defaults::BACKOFF_INITIAL);
        assert_eq!(b.after_served_exit(quick), defaults::BACKOFF_INITIAL * 2);
        assert_eq!(
            b.after_served_exit(defaults::STABLE_AFTER),
            Duration::ZERO,
            "a stable run starts over"
        );
        assert!(!b.crash_loop(None));
        // A start failure after served exits still backs off from the start.
        b.after_served_exit(quick);
        assert_eq!(b.after_exit(Duration::ZERO), defaults::BACKOFF_INITIAL);
    }

    #[test]
    fn crash_loop_needs_enough_quick_exits() {
        let mut b = Backoff::default();
        for _ in 1..defaults::CRASH_LOOP_RESTARTS {
            b.after_exit(Duration::ZERO);
        }
        assert!(!b.crash_loop(None));
        b.after_exit(Duration::ZERO);
        assert!(b.crash_loop(None));
    }

    #[test]
    fn exits_are_described_by_the_shared_exit_codes() {
        let exit = |raw| ChildExit::from_wait(Ok(ExitStatus::from_raw(raw)));
        let init = exit(7 << 8).after_init(true);
        assert_eq!(init.short(), "spp_init returned 7");
        assert_eq!(
            init.to_string(),
            "exited with status 7 (plugin init failed: spp_init returned 7)"
        );
        let clamped = exit(1 << 8).after_init(true);
        assert_eq!(clamped.short(), "spp_init returned 1 (or less)");
        let plain = exit(3 << 8).after_init(false);
        assert_eq!(plain.to_string(), "exited with status 3");
        assert_eq!(
            exit(exit_code::SETUP << 8).meaning(),
            Some("bad launch spec or cannot load the plugin")
        );
        let killed = exit(9);
        assert_eq!(killed.short(), "killed by signal 9");
        assert_eq!(killed.to_string(), "was killed by signal 9");
        assert_eq!(exit(42 << 8).meaning(), None);
        let worker = Kind::Worker {
            group_pos: 0,
            group: 1,
            index: 0,
        };
        assert_eq!(worker.to_string(), "worker g1/0");
        let alone = Kind::Proxy {
            shard: 0,
            shards: 1,
        };
        assert_eq!(alone.to_string(), "proxy");
        let second = Kind::Proxy {
            shard: 1,
            shards: 2,
        };
        assert_eq!(second.to_string(), "proxy-1");
    }
}
