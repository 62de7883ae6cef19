//! The supervisor's periodic work, every [`defaults::HOUSEKEEPING_TICK`]:
//! * the stats sample ([`crate::stats::Collector::sample`]);
//! * the hang check: a worker inside one `spp_process` call (its
//!   `in_process_since_ms` stamp) for longer than its group's
//!   `hang_timeout` is SIGKILLed, logged, and restarted with the normal
//!   back-off, its `last_exit` saying why;
//! * the frozen check: a `Ready` or `Draining` worker with requests
//!   waiting (`pushed_seq` beyond `completed_seq`), not inside
//!   `spp_process`, whose `heartbeat_ms` is older than its group's
//!   `hang_timeout` plus [`WORKER_HEARTBEAT_INTERVAL`] (the longest its
//!   loop sleeps between two stamps) is frozen outside a call (SIGSTOP, a
//!   plugin thread holding the loop, a stalled page fault): SIGKILLed and
//!   restarted like a hung one, its `last_exit` saying "frozen: no
//!   heartbeat for N ms";
//! * workers stopped on purpose that overrun their drain are SIGKILLed;
//! * scaling: every `scaling.interval`, each group whose `min_workers <
//!   max_workers` is measured ([`GroupScaling`]) and [`scaling::decide`]d;
//!   the decision is logged with its figures, applied (start workers, or
//!   retire one: SIGTERM, it drains, it is not restarted) and kept for
//!   `spp status`. Paused while a reload runs.
//!
//! * log rotation ([`Supervisor::rotate_logs`]): `controller.log` and every
//!   child's log that reached `log.max_size`, or every non-empty one when
//!   the UTC date changed and `log.rotate_daily`, is renamed to
//!   `<name>.<YYYYMMDD-HHMMSS>` ([`log_files`](crate::log_files)) and its writer reopens the
//!   path: the controller itself, a child on SIGHUP. A child not ready
//!   (its SIGHUP handler may not be installed yet) is rotated at a later
//!   tick; a daily rotation it misses that way waits for `max_size` or the
//!   next day. Lines written between the rename and the reopen go to the
//!   end of the rotated file, so none is lost.
//!
//! Also SIGHUP: reopen the controller's log and forward SIGHUP to every
//! child (each reopens its own log).

use super::Supervisor;
use crate::children::{Kind, Shared};
use crate::log_files;
use crate::logging::{self, error_chain};
use crate::resources::Resources;
use crate::scaling::{self, Action, Decision, Figures};
use crate::status::{DecisionStatus, GroupStatus, ServiceState};
use nix::sys::signal::Signal;
use spp_config::defaults;
use spp_ipc::layout::WorkerState;
use spp_ipc::pair::{PairObserver, WORKER_HEARTBEAT_INTERVAL};
use spp_ipc::record::{monotonic_ns, NS_PER_MS};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The UTC day of the previous rotation check (`u64::MAX`: none yet).
static LAST_DAY: AtomicU64 = AtomicU64::new(u64::MAX);
use tracing::{error, info, warn};

/// A decision and when it was taken.
#[derive(Clone, Debug)]
struct Stamped {
    at: Instant,
    wall: SystemTime,
    decision: Decision,
}

impl Stamped {
    fn status(&self, now: Instant) -> DecisionStatus {
        DecisionStatus {
            at_unix_s: self
                .wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            age_s: now.saturating_duration_since(self.at).as_secs(),
            decision: self.decision.clone(),
        }
    }
}

/// One group's scaling state: the readings at the previous evaluation and
/// the decisions taken.
#[derive(Debug)]
pub(super) struct GroupScaling {
    last_eval: Instant,
    /// Per slot: `process_time.sum_ns` at the previous evaluation.
    prev_ns: Vec<u64>,
    /// Per slot: time already counted of the `spp_process` call under way
    /// then.
    prev_inflight_ns: Vec<u64>,
    last_decision: Option<Stamped>,
    last_change: Option<Stamped>,
}

/// Nanoseconds the current `spp_process` call of a slot has run, at
/// CLOCK_MONOTONIC `now_ms`.
fn inflight_ns(res: &Resources, pos: usize, index: u32, now_ms: u64) -> u64 {
    res.slot(pos, index)
        .and_then(|s| s.in_process_since_ms())
        .map_or(0, |since| {
            now_ms.saturating_sub(since).saturating_mul(NS_PER_MS)
        })
}

/// What the frozen check reads of one serving worker (CLOCK_MONOTONIC ms).
#[derive(Clone, Copy, Debug)]
struct Beat {
    now_ms: u64,
    /// When its run started.
    started_ms: u64,
    heartbeat_ms: u64,
    /// Inside `spp_process` (the hang check's business).
    in_process: bool,
    /// Requests published that it has not finished.
    waiting: bool,
}

impl Beat {
    /// How long it has been silent, if that makes it frozen under
    /// `hang_timeout` `hang` (0: off): requests waiting, not inside
    /// `spp_process`, heartbeat older than `hang` plus
    /// [`WORKER_HEARTBEAT_INTERVAL`]. A stamp older than the run (its
    /// predecessor's) counts as the run's start.
    fn frozen_for(&self, hang: Duration) -> Option<u64> {
        if hang.is_zero() || self.in_process || !self.waiting {
            return None;
        }
        let silent = self
            .now_ms
            .saturating_sub(self.heartbeat_ms.max(self.started_ms));
        (silent > millis(hang + WORKER_HEARTBEAT_INTERVAL)).then_some(silent)
    }
}

/// Whether the pair's worker is the run with `pid` and serves (`Ready`, or
/// `Draining` with requests still to finish).
fn serving(pair: &PairObserver<'_>, pid: u32) -> bool {
    matches!(
        pair.worker_state(),
        WorkerState::Ready | WorkerState::Draining
    ) && pair.worker_pid() == pid
}

/// `d` in whole ms (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn monotonic_ms() -> u64 {
    monotonic_ns() / NS_PER_MS
}

impl GroupScaling {
    /// Starts measuring the group at `pos` now.
    pub(super) fn new(res: &Resources, pos: usize, now: Instant) -> Self {
        let mut scaling = GroupScaling {
            last_eval: now,
            prev_ns: Vec::new(),
            prev_inflight_ns: Vec::new(),
            last_decision: None,
            last_change: None,
        };
        scaling.rebase(res, pos, now);
        scaling
    }

    /// Forgets what happened so far: the next evaluation covers from now.
    pub(super) fn rebase(&mut self, res: &Resources, pos: usize, now: Instant) {
        let now_ms = monotonic_ms();
        let slots = res.slot_count(pos);
        self.last_eval = now;
        self.prev_ns = (0..slots)
            .map(|i| res.slot(pos, i).map_or(0, |s| s.process_ns()))
            .collect();
        self.prev_inflight_ns = (0..slots)
            .map(|i| inflight_ns(res, pos, i, now_ms))
            .collect();
    }

    /// Time the group's workers spent inside `spp_process` since the
    /// previous evaluation: per slot, the growth of its `process_time` sum
    /// plus the part of a call still under way, less what was counted of
    /// such a call last time; at most the time covered. Starts the next
    /// interval.
    fn busy_since_last(&mut self, res: &Resources, pos: usize, now: Instant) -> Duration {
        let now_ms = monotonic_ms();
        let elapsed = now.saturating_duration_since(self.last_eval);
        let cap = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let mut busy: u64 = 0;
        for i in 0..res.slot_count(pos) {
            let at = i as usize;
            let total = res.slot(pos, i).map_or(0, |s| s.process_ns());
            let inflight = inflight_ns(res, pos, i, now_ms);
            let prev = self.prev_ns.get(at).copied().unwrap_or(total);
            let prev_inflight = self.prev_inflight_ns.get(at).copied().unwrap_or(0);
            let slot_busy = total
                .wrapping_sub(prev)
                .saturating_add(inflight)
                .saturating_sub(prev_inflight)
                .min(cap);
            busy = busy.saturating_add(slot_busy);
            if let Some(p) = self.prev_ns.get_mut(at) {
                *p = total;
            }
            if let Some(p) = self.prev_inflight_ns.get_mut(at) {
                *p = inflight;
            }
        }
        self.last_eval = now;
        Duration::from_nanos(busy)
    }
}

impl Supervisor {
    /// The periodic work; see the module docs.
    pub(super) fn housekeeping(&mut self) {
        let now = Instant::now();
        self.note_ready();
        self.stats.sample(&self.res, now);
        self.check_hangs();
        self.check_frozen();
        self.check_retired(now);
        self.rotate_logs();
        if self.state == ServiceState::Running && self.reload.is_none() {
            self.evaluate_scaling(now);
        }
    }

    /// SIGKILLs every worker stuck in `spp_process` past its group's
    /// `hang_timeout`.
    fn check_hangs(&mut self) {
        let now_ms = monotonic_ms();
        let mut stuck = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            let Kind::Worker {
                group_pos, index, ..
            } = child.kind
            else {
                continue;
            };
            if child.run.as_ref().is_none_or(|r| r.killed) {
                continue;
            }
            let Some(hang) = self.cfg.groups.get(group_pos).map(|g| g.hang_timeout) else {
                continue;
            };
            let Some(since) = self
                .res
                .slot(group_pos, index)
                .and_then(|s| s.in_process_since_ms())
            else {
                continue;
            };
            let inside = Duration::from_millis(now_ms.saturating_sub(since));
            if !hang.is_zero() && inside > hang {
                stuck.push((i, inside, hang));
            }
        }
        for (i, inside, hang) in stuck {
            let reason = format!(
                "stuck in spp_process for {:.1} s (hang_timeout {} s)",
                inside.as_secs_f64(),
                hang.as_secs_f64()
            );
            self.kill_on_purpose(i, reason);
        }
    }

    /// SIGKILLs every worker frozen outside `spp_process` (see the module
    /// docs).
    fn check_frozen(&mut self) {
        let now_ms = monotonic_ms();
        let mut frozen = Vec::new();
        for (i, child) in self.children.iter().enumerate() {
            let Kind::Worker {
                group_pos, index, ..
            } = child.kind
            else {
                continue;
            };
            let Some(run) = child.run.as_ref().filter(|r| !r.killed) else {
                continue;
            };
            let Some(hang) = self.cfg.groups.get(group_pos).map(|g| g.hang_timeout) else {
                continue;
            };
            let Some(slot) = self.res.slot(group_pos, index) else {
                continue;
            };
            let pair = PairObserver::new(&slot.pair);
            if !serving(&pair, run.pid) {
                continue;
            }
            let beat = Beat {
                now_ms,
                started_ms: now_ms.saturating_sub(millis(run.started.elapsed())),
                heartbeat_ms: pair.heartbeat_ms(),
                in_process: pair.in_process_since_ms() != 0,
                // Requests from any proxy shard.
                waiting: slot.requests_waiting(),
            };
            if let Some(silent) = beat.frozen_for(hang) {
                frozen.push((i, silent, hang));
            }
        }
        for (i, silent, hang) in frozen {
            let reason = format!(
                "frozen: no heartbeat for {silent} ms with requests waiting (hang_timeout {} s)",
                hang.as_secs_f64()
            );
            self.kill_on_purpose(i, reason);
        }
    }

    /// SIGKILLs child `i`, logging `reason` (which also goes into its
    /// `last_exit`). Whether it restarts depends on whether it is desired.
    /// A run that exited meanwhile (its exit not booked yet) is left alone,
    /// its exit its own.
    fn kill_on_purpose(&mut self, i: usize, reason: String) {
        if !self.signal_child(i, Signal::SIGKILL) {
            return;
        }
        let Some(child) = self.children.get_mut(i) else {
            return;
        };
        let Some(run) = child.run.as_mut() else {
            return;
        };
        run.killed = true;
        warn!("{} {reason}: killed", child.label());
        child.stop_reason = Some(reason);
    }

    /// SIGKILLs every worker stopped on purpose that overran its drain.
    fn check_retired(&mut self, now: Instant) {
        let overdue: Vec<(usize, String)> = self
            .children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let run = c.run.as_ref()?;
                let late = !run.killed && run.retire_by.is_some_and(|by| by <= now);
                late.then(|| {
                    let why = c.stop_reason.clone().unwrap_or_default();
                    (i, format!("{why}; did not drain in time"))
                })
            })
            .collect();
        for (i, reason) in overdue {
            self.kill_on_purpose(i, reason);
        }
    }

    /// Rotates the logs that are due; see the module docs.
    fn rotate_logs(&mut self) {
        let at = SystemTime::now();
        let today = log_files::utc_day(at);
        let last = LAST_DAY.swap(today, Ordering::Relaxed);
        let day_changed = self.cfg.log.rotate_daily && last != u64::MAX && last != today;
        let max = self.cfg.log.max_size;
        let own = self.cfg.controller_log();
        if logging::log_path() == Some(own.as_path()) && log_files::due(&own, max, day_changed) {
            match log_files::rename_rotated(&own, at) {
                Ok(to) => match logging::reopen() {
                    Ok(_) => info!("log rotated: {} -> {}", own.display(), to.display()),
                    Err(e) => error!("log rotation: {}", error_chain(&e)),
                },
                Err(e) => error!("log rotation: renaming {}: {e}", own.display()),
            }
        }
        let mut paths: Vec<PathBuf> = self.children.iter().map(|c| c.log.clone()).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            if !log_files::due(&path, max, day_changed) {
                continue;
            }
            let writers: Vec<usize> = (0..self.children.len())
                .filter(|&i| {
                    self.children
                        .get(i)
                        .is_some_and(|c| c.log == path && c.run.is_some())
                })
                .collect();
            let all_hup = writers.iter().all(|&i| {
                self.children.get(i).is_some_and(|c| {
                    matches!(self.shared(c.kind), Shared::Ready | Shared::Draining)
                })
            });
            if !all_hup {
                continue;
            }
            let to = match log_files::rename_rotated(&path, at) {
                Ok(to) => to,
                Err(e) => {
                    error!("log rotation: renaming {}: {e}", path.display());
                    continue;
                }
            };
            for &i in &writers {
                self.signal_child(i, Signal::SIGHUP);
                if let Some(run) = self.children.get_mut(i).and_then(|c| c.run.as_mut()) {
                    // Its output now starts at the top of the new file.
                    run.log_from = 0;
                }
            }
            info!("log rotated: {} -> {}", path.display(), to.display());
        }
    }

    /// SIGHUP: reopens the controller's log, then forwards SIGHUP to every
    /// child that has reported Ready (or Draining) — one still starting may
    /// not have its handler yet, and SIGHUP's default action would kill it;
    /// it opens the new log file anyway.
    pub(super) fn on_hup(&mut self) {
        match logging::reopen() {
            Ok(Some(path)) => info!("SIGHUP: reopened {}", path.display()),
            Ok(None) => info!("SIGHUP: no log file to reopen"),
            Err(e) => error!("SIGHUP: {}", error_chain(&e)),
        }
        let running: Vec<usize> = (0..self.children.len())
            .filter(|&i| {
                self.children.get(i).is_some_and(|c| {
                    c.run.is_some()
                        && matches!(self.shared(c.kind), Shared::Ready | Shared::Draining)
                })
            })
            .collect();
        for i in running {
            self.signal_child(i, Signal::SIGHUP);
        }
    }

    /// Processes running in the group at `pos` (draining ones included).
    fn running_in(&self, pos: usize) -> u32 {
        let n = self
            .children
            .iter()
            .filter(|c| c.in_group(pos) && c.run.is_some())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Evaluates every group whose interval elapsed, and applies the
    /// decisions.
    fn evaluate_scaling(&mut self, now: Instant) {
        let rule = self.cfg.scaling.clone();
        for pos in 0..self.cfg.groups.len() {
            let Some(g) = self.cfg.groups.get(pos).cloned() else {
                continue;
            };
            let Some(last_eval) = self.scaling.get(pos).map(|s| s.last_eval) else {
                continue;
            };
            let elapsed = now.saturating_duration_since(last_eval);
            // Ticks jitter: an interval is due within half a tick of its end
            // (the figures use the time really covered).
            if elapsed + defaults::HOUSEKEEPING_TICK / 2 < rule.interval {
                continue;
            }
            let Some(state) = self.scaling.get_mut(pos) else {
                continue;
            };
            let busy = state.busy_since_last(&self.res, pos, now);
            if !g.scales() {
                continue;
            }
            let since_change = state
                .last_change
                .as_ref()
                .map(|c| now.saturating_duration_since(c.at));
            let total: u32 = (0..self.cfg.groups.len()).map(|p| self.desired_in(p)).sum();
            let figures = Figures {
                busy,
                elapsed,
                running: self.running_in(pos),
                workers: self.desired_in(pos),
                min: g.min_workers,
                max: g.max_workers,
                room: rule.max_total_workers.saturating_sub(total),
                since_change,
            };
            let decision = scaling::decide(&figures, &rule);
            info!("scaling g{}: {}", g.id, decision.describe());
            let wanted = decision.to.abs_diff(decision.from);
            let done = match decision.action {
                Action::Hold => 0,
                Action::Up => self.resize(pos, decision.to, "scale-up"),
                Action::Down => self.resize(pos, decision.to, "stopped by scale-down"),
            };
            if done < wanted {
                warn!(
                    "scaling g{}: changed {done} of {wanted} worker(s) (no free slot)",
                    g.id
                );
            }
            let stamped = Stamped {
                at: now,
                wall: SystemTime::now(),
                decision,
            };
            if let Some(state) = self.scaling.get_mut(pos) {
                if stamped.decision.action != Action::Hold {
                    state.last_change = Some(stamped.clone());
                }
                state.last_decision = Some(stamped);
            }
        }
    }

    /// Per group: size, range, busy ratio and decisions, for the status.
    pub(super) fn group_status(&self, now: Instant) -> Vec<GroupStatus> {
        self.cfg
            .groups
            .iter()
            .enumerate()
            .map(|(pos, g)| {
                let scaling = self.scaling.get(pos);
                let last_decision = scaling.and_then(|s| s.last_decision.as_ref());
                GroupStatus {
                    id: g.id,
                    running: self.running_in(pos),
                    workers: self.desired_in(pos),
                    min: g.min_workers,
                    max: g.max_workers,
                    scaling: g.scales(),
                    busy_ratio: last_decision.map(|d| d.decision.busy_ratio),
                    last_decision: last_decision.map(|d| d.status(now)),
                    last_change: scaling
                        .and_then(|s| s.last_change.as_ref())
                        .map(|d| d.status(now)),
                    max_in_flight: g
                        .microthreads
                        .map(|m| m.max_in_flight)
                        .or(g.async_tasks.map(|a| a.max_in_flight)),
                }
            })
            .collect()
    }

    /// Restarts the scaling measurements of every group (after a reload).
    pub(super) fn rebase_scaling(&mut self) {
        let now = Instant::now();
        for (pos, scaling) in self.scaling.iter_mut().enumerate() {
            scaling.rebase(&self.res, pos, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANG: Duration = Duration::from_secs(1);

    fn beat(now_ms: u64, heartbeat_ms: u64) -> Beat {
        Beat {
            now_ms,
            started_ms: 0,
            heartbeat_ms,
            in_process: false,
            waiting: true,
        }
    }

    #[test]
    fn a_silent_worker_with_requests_waiting_is_frozen() {
        // hang_timeout 1 s + the 1 s heartbeat interval.
        assert_eq!(beat(12_000, 10_000).frozen_for(HANG), None, "2 s: not yet");
        assert_eq!(beat(12_001, 10_000).frozen_for(HANG), Some(2001));
        assert_eq!(beat(12_001, 10_000).frozen_for(Duration::ZERO), None, "off");
    }

    #[test]
    fn idle_busy_or_new_workers_are_not_frozen() {
        let idle = Beat {
            waiting: false,
            ..beat(20_000, 10_000)
        };
        assert_eq!(idle.frozen_for(HANG), None, "nothing waiting: it sleeps");
        let inside = Beat {
            in_process: true,
            ..beat(20_000, 10_000)
        };
        assert_eq!(inside.frozen_for(HANG), None, "the hang check's case");
        let new_run = Beat {
            started_ms: 19_000,
            ..beat(20_000, 10_000)
        };
        assert_eq!(new_run.frozen_for(HANG), None, "a predecessor's old stamp");
    }
}
