//! `spp reload`: re-read the config file and apply it without dropping a
//! request, run as a state machine inside the supervisor loop (which keeps
//! answering status and booking exits meanwhile); the control request is
//! answered when the reload is over.
//!
//! 1. Plan ([`Supervisor::begin_reload`]): load and validate the file the
//!    service was started from, check its plugins (each in a short-lived
//!    child, [`crate::plugin_check`]: never loaded in the controller), and
//!    compare it with the running config ([`spp_config::diff::compare`]): a key that needs a
//!    restart refuses the reload, and nothing changes.
//! 2. Canary: in every group, a worker of the new config generation starts
//!    in a free slot (there is always the spare, though a worker retired
//!    by a scale-down just before may still hold it while it drains: the
//!    wait for it is [`defaults::reload_slot_timeout`]) and must become
//!    Ready within [`defaults::RELOAD_READY_TIMEOUT`]. If one fails, every
//!    new worker is stopped and the reload fails: nothing changed.
//! 3. Commit: the new config becomes current (generation + 1); changed
//!    proxy limits are published to the running proxy
//!    (`ProxyHeader::limits`); new children get the new log level, grace
//!    and timeouts; scaling uses the new rule.
//! 4. Roll, per group: retire one old-generation worker (SIGTERM: it
//!    drains, the proxy stops sending to it), wait for its exit, start a new
//!    one in a free slot, wait until it is Ready, repeat. The group never
//!    has fewer workers serving than before. Then the group is sized: to
//!    the new `workers` when that key changed, else to what ran before,
//!    within the new `min_workers..=max_workers`.

use super::Supervisor;
use crate::children::Child;
use crate::control::error_response;
use crate::logging::{error_chain, tail_lines, LogTail};
use crate::plugin_check;
use crate::spawn;
use crate::status::ServiceState;
use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
use spp_config::defaults;
use spp_config::environment::Mode;
use spp_config::{self as config, diff, Config};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// A reload under way.
pub(super) struct Reload {
    /// Where the answer goes.
    reply: oneshot::Sender<serde_json::Value>,
    /// The new config.
    cfg: Arc<Config>,
    /// Its generation.
    generation: u64,
    /// What changes, one `key: old -> new` line each, then what was done.
    changes: Vec<String>,
    /// The new config is current (the canaries were all ready).
    committed: bool,
    /// Per group, in config order.
    groups: Vec<GroupRoll>,
    /// What went wrong.
    failures: Vec<String>,
}

impl Reload {
    /// Answers the control request.
    pub(super) fn answer(self, value: serde_json::Value) {
        let _ = self.reply.send(value);
    }
}

/// One group's progress.
struct GroupRoll {
    pos: usize,
    /// Workers the group has once the reload is over.
    target: u32,
    /// New workers that became ready.
    started: u32,
    /// How long to wait for a free slot ([`defaults::reload_slot_timeout`]).
    slot_wait: Duration,
    step: Step,
}

/// A wait for a free slot.
#[derive(Clone, Copy)]
struct SlotWait {
    /// When it gives up.
    deadline: Instant,
    /// How long it waits in all (for the message).
    wait: Duration,
}

impl SlotWait {
    fn from(now: Instant, wait: Duration) -> Self {
        SlotWait {
            deadline: now + wait,
            wait,
        }
    }
}

/// Where a group is.
#[derive(Clone, Copy)]
enum Step {
    /// Start a new worker as soon as a slot is free.
    NeedSlot(SlotWait),
    /// The new worker `child` must become ready.
    WaitReady {
        child: usize,
        deadline: Instant,
        log_from: u64,
    },
    /// The old worker `child` drains and exits.
    WaitExit { child: usize },
    /// Finished, or given up.
    Done,
}

impl Supervisor {
    /// Starts a reload; `reply` is answered when it is over (at once when
    /// it is refused).
    pub(super) fn begin_reload(&mut self, reply: oneshot::Sender<serde_json::Value>) {
        let refuse = |reply: oneshot::Sender<serde_json::Value>, why: String| {
            warn!("reload refused: {why}");
            let _ = reply.send(error_response(&format!("reload refused: {why}")));
        };
        if self.reload.is_some() {
            return refuse(reply, "a reload is already under way".to_string());
        }
        if self.state != ServiceState::Running {
            return refuse(
                reply,
                "the service is not running yet (it is starting); try again".to_string(),
            );
        }
        let (cfg, changes) = match self.plan_reload() {
            Ok(plan) => plan,
            Err(why) => return refuse(reply, why),
        };
        info!(
            "reload of {}: {} change(s){}{}",
            cfg.file.display(),
            changes.len(),
            if changes.is_empty() { "" } else { ": " },
            changes.join("; ")
        );
        // A worker retired before the commit got the running config's grace,
        // one retired after it the new config's.
        let grace = self.cfg.service.stop_grace.max(cfg.service.stop_grace);
        let slot_wait = defaults::reload_slot_timeout(grace);
        let first = SlotWait::from(Instant::now(), slot_wait);
        let groups = (0..cfg.groups.len())
            .map(|pos| {
                let desired = self.desired_in(pos);
                let (old, new) = (self.cfg.groups.get(pos), cfg.groups.get(pos));
                let target = match (old, new) {
                    (Some(o), Some(n)) if o.workers != n.workers => n.workers,
                    _ => desired,
                };
                let target = new.map_or(target, |n| target.clamp(n.min_workers, n.max_workers));
                GroupRoll {
                    pos,
                    target,
                    started: 0,
                    slot_wait,
                    step: Step::NeedSlot(first),
                }
            })
            .collect();
        self.reload = Some(Reload {
            reply,
            cfg: Arc::new(cfg),
            generation: self.generation + 1,
            changes,
            committed: false,
            groups,
            failures: Vec::new(),
        });
        self.reload_step();
    }

    /// Loads, validates and compares the config file; the new config and
    /// its changes, or why it cannot be applied.
    fn plan_reload(&self) -> Result<(Config, Vec<String>), String> {
        let new = config::load(&self.cfg.file).map_err(|e| error_chain(&e))?;
        plugin_check::environment(&new, Mode::Inspect).map_err(|e| error_chain(&e))?;
        let slots: Vec<u32> = (0..self.cfg.groups.len())
            .map(|pos| self.res.slot_count(pos))
            .collect();
        let open_files = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) if soft != RLIM_INFINITY => soft,
            _ => u64::MAX,
        };
        let changes =
            diff::compare(&self.cfg, &new, &slots, open_files).map_err(|e| error_chain(&e))?;
        Ok((new, changes))
    }

    /// Moves the reload on as far as it can go now; answers it when over.
    pub(super) fn reload_step(&mut self) {
        let Some(mut r) = self.reload.take() else {
            return;
        };
        self.note_ready();
        let now = Instant::now();
        if !r.committed {
            for g in &mut r.groups {
                self.canary_step(&r.cfg, r.generation, g, now, &mut r.failures);
            }
            if !r.failures.is_empty() {
                return self.abort_reload(r);
            }
            let all_ready = r
                .groups
                .iter()
                .all(|g| matches!(g.step, Step::WaitReady { child, .. } if self.is_ready(child)));
            if !all_ready {
                self.reload = Some(r);
                return;
            }
            self.commit_reload(&mut r);
        }
        for g in &mut r.groups {
            self.roll_step(g, now, &mut r.failures, &mut r.changes);
        }
        if r.groups.iter().all(|g| matches!(g.step, Step::Done)) {
            self.finish_reload(r);
        } else {
            self.reload = Some(r);
        }
    }

    /// Before the commit: starts the group's new worker, and watches it.
    fn canary_step(
        &mut self,
        cfg: &Config,
        generation: u64,
        g: &mut GroupRoll,
        now: Instant,
        failures: &mut Vec<String>,
    ) {
        match g.step {
            Step::NeedSlot(slot) => {
                g.step = self.start_new(g.pos, cfg, generation, slot, now, failures);
            }
            Step::WaitReady {
                child,
                deadline,
                log_from,
            } => {
                if let Some(why) = self.not_ready(child, deadline, log_from, now) {
                    failures.push(why);
                }
            }
            Step::WaitExit { .. } | Step::Done => {}
        }
    }

    /// Starts a worker of `generation` from `cfg` in a free slot of the
    /// group at `pos`: the next step, waiting for it to be ready (or for a
    /// slot, until `slot`'s deadline).
    fn start_new(
        &mut self,
        pos: usize,
        cfg: &Config,
        generation: u64,
        slot: SlotWait,
        now: Instant,
        failures: &mut Vec<String>,
    ) -> Step {
        let id = self.cfg.groups.get(pos).map_or(0, |g| g.id);
        let Some(i) = self.free_slot(pos) else {
            if now >= slot.deadline {
                failures.push(format!(
                    "no free worker slot in group {id} within {:?}",
                    slot.wait
                ));
                return Step::Done;
            }
            return Step::NeedSlot(slot);
        };
        if let Some(child) = self.children.get_mut(i) {
            child.take_up();
        }
        if let Err(e) = self.spawn_from(i, cfg, generation) {
            let label = self.children.get(i).map(Child::label).unwrap_or_default();
            failures.push(format!("cannot start new {label}: {}", error_chain(&e)));
            self.retire(i, "reload failed");
            return Step::Done;
        }
        let log_from = self
            .children
            .get(i)
            .and_then(|c| c.run.as_ref())
            .map_or(0, |r| r.log_from);
        Step::WaitReady {
            child: i,
            deadline: now + defaults::RELOAD_READY_TIMEOUT,
            log_from,
        }
    }

    /// Why new worker `i` failed to become ready (exited, or not ready by
    /// `deadline`), or `None` while it may still.
    fn not_ready(
        &self,
        i: usize,
        deadline: Instant,
        log_from: u64,
        now: Instant,
    ) -> Option<String> {
        let child = self.children.get(i)?;
        if self.is_ready(i) {
            return None;
        }
        if child.run.is_none() {
            let tail = tail_lines(&child.log, log_from, defaults::LOG_TAIL_LINES);
            return Some(format!(
                "new {} exited before it was ready ({}) — see {}{}",
                child.label(),
                child.last_exit.as_deref().unwrap_or("unknown exit"),
                child.log.display(),
                LogTail(tail)
            ));
        }
        (now >= deadline).then(|| {
            format!(
                "new {} was not ready after {:?} — see {}",
                child.label(),
                defaults::RELOAD_READY_TIMEOUT,
                child.log.display()
            )
        })
    }

    /// A canary failed: stops every new worker and answers the failure.
    /// Nothing else changed.
    fn abort_reload(&mut self, r: Reload) {
        for g in &r.groups {
            if let Step::WaitReady { child, .. } = g.step {
                self.retire(child, "reload failed");
            }
        }
        let why = r.failures.join("; ");
        warn!("reload failed, nothing changed: {why}");
        r.answer(error_response(&format!(
            "reload failed, nothing changed (the old workers keep serving): {why}"
        )));
    }

    /// Makes the new config current.
    fn commit_reload(&mut self, r: &mut Reload) {
        let old = std::mem::replace(&mut self.cfg, Arc::clone(&r.cfg));
        self.generation = r.generation;
        r.committed = true;
        let (was, now) = (spawn::proxy_limits(&old), spawn::proxy_limits(&self.cfg));
        let live = |l: &spp_ipc::launch::ProxyLimits| {
            (
                l.max_connections,
                l.max_request_size,
                l.max_send_buffer,
                l.idle_timeout_ms,
                l.request_timeout_ms,
                l.spin_us,
            )
        };
        if live(&was) != live(&now) {
            for shard in &self.res.shards {
                shard.region.header().limits.publish(&now);
            }
            info!("reload: published the new proxy limits");
        }
        info!(
            "reload: config generation {} is current; replacing the workers",
            self.generation
        );
    }

    /// After the commit: retires the old workers one by one, each after a
    /// new one is ready.
    fn roll_step(
        &mut self,
        g: &mut GroupRoll,
        now: Instant,
        failures: &mut Vec<String>,
        notes: &mut Vec<String>,
    ) {
        let cfg = Arc::clone(&self.cfg);
        match g.step {
            Step::NeedSlot(slot) => {
                g.step = self.start_new(g.pos, &cfg, self.generation, slot, now, failures);
            }
            Step::WaitReady {
                child,
                deadline,
                log_from,
            } => {
                if self.is_ready(child) {
                    g.started += 1;
                    g.step = match self.oldest_old(g.pos) {
                        Some(old) => {
                            self.retire(old, "replaced by reload");
                            Step::WaitExit { child: old }
                        }
                        None => self.finish_group(g, notes),
                    };
                } else if let Some(why) = self.not_ready(child, deadline, log_from, now) {
                    failures.push(why);
                    self.retire(child, "reload failed");
                    g.step = Step::Done;
                }
            }
            Step::WaitExit { child } => {
                if self.children.get(child).is_some_and(|c| c.run.is_none()) {
                    g.step = match self.oldest_old(g.pos) {
                        Some(_) => Step::NeedSlot(SlotWait::from(now, g.slot_wait)),
                        None => self.finish_group(g, notes),
                    };
                }
            }
            Step::Done => {}
        }
    }

    /// A running worker of the group at `pos` started from an older config
    /// generation and meant to run.
    fn oldest_old(&self, pos: usize) -> Option<usize> {
        self.group_slots(pos).find(|&i| {
            self.children.get(i).is_some_and(|c| {
                c.desired
                    && c.run
                        .as_ref()
                        .is_some_and(|r| r.generation < self.generation)
            })
        })
    }

    /// Every old worker of the group is replaced: sizes it to its target.
    fn finish_group(&mut self, g: &GroupRoll, notes: &mut Vec<String>) -> Step {
        let id = self.cfg.groups.get(g.pos).map_or(0, |c| c.id);
        notes.push(format!("group {id}: {} worker(s) replaced", g.started));
        let desired = self.desired_in(g.pos);
        if desired != g.target {
            self.resize(g.pos, g.target, "stopped by reload (fewer workers)");
            notes.push(format!("group {id}: workers {desired} -> {}", g.target));
        }
        Step::Done
    }

    /// Every group is done: answers the reload.
    fn finish_reload(&mut self, r: Reload) {
        self.rebase_scaling();
        let generation = self.generation;
        if r.failures.is_empty() {
            info!(
                "reload done: config generation {generation}: {}",
                r.changes.join("; ")
            );
            let changes = r.changes.clone();
            r.answer(serde_json::json!({
                "reloaded": true,
                "file": self.cfg.file,
                "config_generation": generation,
                "changes": changes,
            }));
        } else {
            let why = r.failures.join("; ");
            warn!("reload failed part-way (config generation {generation} is current): {why}");
            r.answer(error_response(&format!(
                "reload failed part-way: config generation {generation} is current, but some old workers were kept: {why}"
            )));
        }
    }
}
