//! The supervisor: spawns the proxy and the workers, watches them become
//! ready, restarts any that exits (with back-off), answers control
//! requests, and stops everything in order.
//!
//! Children: one per proxy shard (`proxy.processes`; each restarted on
//! its own while the others serve), and one [`Child`] per worker slot of
//! every group
//! (`max_workers` + 1 spare). A slot's worker is *desired* when it should
//! run; a worker stopped on purpose (scale-down, replaced by a reload) is
//! not desired and is not restarted when it exits. Every run records the
//! config generation it was started from (bumped by each reload).
//!
//! Start: every desired child is spawned at once; the service is `running`
//! when the proxy and every worker report Ready in shared memory. A child
//! that exits before it was ever ready during that start fails the whole
//! start.
//!
//! While running, the loop also drives:
//! * [`housekeeping`] every [`defaults::HOUSEKEEPING_TICK`]: the stats
//!   sample, the hang check (SIGKILL for a worker stuck in `spp_process`
//!   past its group's `hang_timeout`), retired workers that overrun their
//!   drain, and the scaling evaluation ([`crate::scaling`]); SIGHUP
//!   (reopen the controller log, forward to every child);
//! * [`reload`]: `spp reload` as a state machine (new workers first, then
//!   the old ones drained), answered when it is over;
//! * [`l5`] (with `[l5]`): the L5 agent's events — registration while the
//!   service runs and its group has a Ready worker, discovery, the
//!   periodic reshape of the route table ([`crate::l5::agent`]).
//!
//! Stop ([`stop`]): L5 deregistration first (bounded), then the proxy (its
//! own drain), then the workers (their own drain), SIGKILL only for what
//! overruns; see [`Supervisor::shutdown`].
//!
//! Every signal goes through the run's pidfd ([`crate::pidfd`]), opened
//! right after the spawn: a child that exited and was reaped before its
//! exit event was booked is not signalled, and neither is a process that
//! reused its pid.

mod housekeeping;
mod l5;
mod reload;
mod stop;

use crate::children::{Child, ChildExit, Kind, Running, Shared};
use crate::control::{error_response, Pending, Request, STOP_TIMEOUT_KEY};
use crate::listeners::BoundListener;
use crate::logging::{error_chain, tail_lines, LogTail};
use crate::pidfd::Pidfd;
use crate::resources::Resources;
use crate::spawn::{self, Binaries, SpawnError};
use crate::stats::Collector;
use crate::status::{self, ListenerStatus, ServiceState, Status};
use housekeeping::GroupScaling;
use nix::sys::signal::Signal;
use spp_config::defaults;
use spp_config::{transport_name, Config};
use spp_ipc::launch::Launch;
use spp_ipc::pair::PairObserver;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Supervision failures.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// A child died before the service was ready: "worker g1/0 exited with
    /// status 3 (plugin init failed) — see log/worker-g1-0.log", then the
    /// last lines of that log.
    #[error("start failed: {child} {exit} — see {}{tail}", log.display())]
    StartFailed {
        /// Which child.
        child: Kind,
        /// How it ended.
        exit: ChildExit,
        /// Its log file.
        log: PathBuf,
        /// What it last wrote there.
        tail: LogTail,
    },
    /// A child could not be spawned during the start.
    #[error("start failed: cannot start the {child}")]
    Spawn {
        /// Which child.
        child: Kind,
        /// Why.
        source: SpawnError,
    },
    /// A signal handler could not be installed.
    #[error("installing the {name} handler")]
    Signal {
        /// The signal.
        name: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A reaped child: which entry, which run, how it ended.
#[derive(Debug)]
pub struct ExitEvent {
    child: usize,
    pid: u32,
    status: std::io::Result<ExitStatus>,
}

/// How a bounded wait for children ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    /// The children are gone.
    Done,
    /// The deadline passed.
    TimedOut,
    /// A stop signal arrived: hurry.
    Interrupted,
}

/// A signal the supervisor acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sig {
    /// SIGTERM or SIGINT: stop (a second one: hurry).
    Stop(&'static str),
    /// SIGHUP: reopen the logs.
    Hup,
}

/// SIGTERM and SIGINT, the two ways to ask for a stop, and SIGHUP.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, SuperviseError> {
        let install =
            |name, kind| signal(kind).map_err(|source| SuperviseError::Signal { name, source });
        Ok(Signals {
            term: install("SIGTERM", SignalKind::terminate())?,
            int: install("SIGINT", SignalKind::interrupt())?,
            hup: install("SIGHUP", SignalKind::hangup())?,
        })
    }

    /// The next signal.
    async fn recv(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop("SIGTERM"),
            _ = self.int.recv() => Sig::Stop("SIGINT"),
            _ = self.hup.recv() => Sig::Hup,
        }
    }
}

/// The channels the supervisor listens on.
struct Inputs {
    control: mpsc::Receiver<Pending>,
    exits: mpsc::UnboundedReceiver<ExitEvent>,
    signals: Signals,
}

/// Everything one running service consists of.
pub struct Supervisor {
    cfg: Arc<Config>,
    /// The config generation: 0 at start, bumped by every reload.
    generation: u64,
    bins: Binaries,
    listeners: Vec<BoundListener>,
    res: Resources,
    /// The proxy shards, then every worker slot of every group.
    children: Vec<Child>,
    /// Per proxy shard: its starts so far (the next run's epoch).
    proxy_starts: Vec<u16>,
    state: ServiceState,
    exits_tx: mpsc::UnboundedSender<ExitEvent>,
    stats: Collector,
    /// Per group (config order): the scaling measurements and decisions.
    scaling: Vec<GroupScaling>,
    /// The reload under way.
    reload: Option<reload::Reload>,
    /// The L5 agent (`[l5]` on).
    l5: Option<crate::l5::agent::Agent>,
}

impl Supervisor {
    /// Runs the service until it is stopped; must run on the thread that
    /// outlives the children (see [`spawn::spawn`]). `Ok` after a requested
    /// stop; an error when the start failed (everything is stopped then
    /// too).
    pub async fn run(
        cfg: Config,
        bins: Binaries,
        listeners: Vec<BoundListener>,
        res: Resources,
        control: mpsc::Receiver<Pending>,
        stats: Collector,
    ) -> Result<(), SuperviseError> {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let shards = res.shard_count();
        let mut children: Vec<Child> = (0..shards).map(|s| Child::proxy(&cfg, s)).collect();
        for (pos, g) in cfg.groups.iter().enumerate() {
            let slots = res.slot_count(pos);
            children.extend((0..slots).map(|i| Child::worker(&cfg, pos, g.id, i, i < g.workers)));
        }
        let now = Instant::now();
        let scaling = (0..cfg.groups.len())
            .map(|pos| GroupScaling::new(&res, pos, now))
            .collect();
        let mut sup = Supervisor {
            cfg: Arc::new(cfg),
            generation: 0,
            bins,
            listeners,
            res,
            children,
            proxy_starts: vec![0; usize::from(shards)],
            state: ServiceState::Starting,
            exits_tx,
            stats,
            scaling,
            reload: None,
            l5: None,
        };
        let mut inputs = Inputs {
            control,
            exits,
            signals: Signals::install()?,
        };
        sup.start_l5();
        let outcome = match sup.start_all() {
            Ok(()) => sup.supervise(&mut inputs).await,
            Err(e) => Err(e),
        };
        sup.shutdown(&mut inputs).await;
        outcome
    }

    fn start_all(&mut self) -> Result<(), SuperviseError> {
        // Workers first: the proxy dispatches only to ready workers anyway.
        for i in (0..self.children.len()).rev() {
            if !self.children.get(i).is_some_and(|c| c.desired) {
                continue;
            }
            self.spawn_child(i)
                .map_err(|source| SuperviseError::Spawn {
                    child: self.children.get(i).map_or(
                        Kind::Proxy {
                            shard: 0,
                            shards: 1,
                        },
                        |c| c.kind,
                    ),
                    source,
                })?;
        }
        Ok(())
    }

    /// Spawns child `i` from the current config.
    fn spawn_child(&mut self, i: usize) -> Result<(), SpawnError> {
        let cfg = Arc::clone(&self.cfg);
        self.spawn_from(i, &cfg, self.generation)
    }

    /// Spawns child `i` from `cfg`, recording `generation` on its run.
    fn spawn_from(&mut self, i: usize, cfg: &Config, generation: u64) -> Result<(), SpawnError> {
        let Some(child) = self.children.get(i) else {
            return Ok(());
        };
        let (bin, launch, fds) = match child.kind {
            Kind::Proxy { shard, .. } => {
                let starts = self
                    .proxy_starts
                    .get_mut(usize::from(shard))
                    .ok_or(SpawnError::NoShard { shard })?;
                let launch = spawn::proxy_launch(
                    cfg,
                    &self.listeners,
                    &self.res,
                    shard,
                    *starts,
                    &child.log,
                )?;
                *starts = starts.wrapping_add(1);
                let fds = launch.inherited_fds();
                (&self.bins.proxy, Launch::Proxy(launch), fds)
            }
            Kind::Worker {
                group_pos, index, ..
            } => {
                let launch = spawn::worker_launch(cfg, &self.res, group_pos, index, &child.log)?;
                let fds = launch.inherited_fds();
                (&self.bins.worker, Launch::Worker(launch), fds)
            }
        };
        let log_from = std::fs::metadata(&child.log).map_or(0, |m| m.len());
        let run_as = cfg.service.run_as.as_ref();
        let mut process = spawn::spawn(bin, &launch, fds, &child.log, run_as)?;
        let pid = process.id().unwrap_or_default();
        // Before any await: nothing can have reaped the child yet, so the
        // pidfd is this child's, and every later signal reaches it or no
        // one.
        let pidfd = match Pidfd::open(pid) {
            Ok(pidfd) => Some(pidfd),
            Err(e) => {
                warn!(
                    "no pidfd for {} (pid {pid}): {e}; signals go by pid",
                    child.label()
                );
                None
            }
        };
        info!(
            "started {} (pid {pid}, config generation {generation}, log {})",
            child.label(),
            child.log.display()
        );
        let tx = self.exits_tx.clone();
        tokio::spawn(async move {
            let status = process.wait().await;
            let _ = tx.send(ExitEvent {
                child: i,
                pid,
                status,
            });
        });
        let completed_at_start = self.completed_seq(child.kind);
        if let Some(child) = self.children.get_mut(i) {
            let mut run = Running::new(pid, pidfd, log_from, generation);
            run.completed_at_start = completed_at_start;
            child.run = Some(run);
            child.stop_reason = None;
        }
        Ok(())
    }

    /// Runs until a stop is asked for (`Ok`) or the start fails.
    async fn supervise(&mut self, inputs: &mut Inputs) -> Result<(), SuperviseError> {
        let mut fast = tokio::time::interval(defaults::READY_POLL);
        fast.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut house = tokio::time::interval(defaults::HOUSEKEEPING_TICK);
        house.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next_restart = self.children.iter().filter_map(|c| c.restart_at).min();
            let wake = tokio::time::Instant::from_std(next_restart.unwrap_or_else(Instant::now));
            let watching = self.state == ServiceState::Starting || self.reload.is_some();
            tokio::select! {
                Some(ev) = inputs.exits.recv() => {
                    if let Some(failed) = self.on_exit(ev) {
                        return Err(failed);
                    }
                    self.reload_step();
                }
                Some(pending) = inputs.control.recv() => {
                    if self.answer(pending) == Request::Stop {
                        info!("stop requested on the control socket");
                        return Ok(());
                    }
                }
                sig = inputs.signals.recv() => match sig {
                    Sig::Stop(name) => {
                        info!("{name}: stopping");
                        return Ok(());
                    }
                    Sig::Hup => self.on_hup(),
                },
                _ = tokio::time::sleep_until(wake), if next_restart.is_some() => self.restart_due(),
                _ = fast.tick(), if watching => {
                    if self.state == ServiceState::Starting {
                        self.poll_ready();
                    }
                    self.reload_step();
                }
                _ = house.tick() => self.housekeeping(),
                event = l5::next(&mut self.l5) => self.on_l5(event),
            }
        }
    }

    /// What the child last wrote about itself.
    fn shared(&self, kind: Kind) -> Shared {
        match kind {
            Kind::Proxy { shard, .. } => self
                .res
                .shard(shard)
                .map_or(Shared::Down, |s| s.region.proxy_state().into()),
            Kind::Worker {
                group_pos, index, ..
            } => self.res.slot(group_pos, index).map_or(Shared::Down, |s| {
                PairObserver::new(&s.pair).worker_state().into()
            }),
        }
    }

    /// The `completed_seq` of a worker's slot, summed over its pairs with
    /// every proxy shard (0 for a proxy).
    fn completed_seq(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Proxy { .. } => 0,
            Kind::Worker {
                group_pos, index, ..
            } => self
                .res
                .slot(group_pos, index)
                .map_or(0, |s| s.completed_seqs()),
        }
    }

    /// Whether child `i` runs and reports Ready.
    fn is_ready(&self, i: usize) -> bool {
        self.children
            .get(i)
            .is_some_and(|c| c.run.is_some() && self.shared(c.kind) == Shared::Ready)
    }

    fn mark_down(&self, kind: Kind) {
        match kind {
            Kind::Proxy { shard, .. } => self.res.mark_proxy_down(shard),
            Kind::Worker {
                group_pos, index, ..
            } => {
                if let Some(slot) = self.res.slot(group_pos, index) {
                    slot.mark_down();
                }
            }
        }
    }

    /// Books a reaped child; schedules its restart when it is meant to run
    /// and the service is not stopping. Returns the start failure when it
    /// died before ever being ready during the start.
    fn on_exit(&mut self, ev: ExitEvent) -> Option<SuperviseError> {
        let now = Instant::now();
        let child = self.children.get(ev.child)?;
        let run = child.run.as_ref().filter(|r| r.pid == ev.pid)?;
        let kind = child.kind;
        let was_ready =
            run.ever_ready || matches!(self.shared(kind), Shared::Ready | Shared::Draining);
        let uptime = now.saturating_duration_since(run.started);
        // A worker that served (and then died: a poison request, a bug)
        // is restarted at once, and so is a proxy shard that was ready;
        // back-off is for one that cannot start.
        let init_failed = self.shared(kind) == Shared::InitFailed;
        let served = was_ready
            && (kind.is_proxy()
                || uptime >= defaults::SERVED_AFTER
                || self.completed_seq(kind) != run.completed_at_start);
        self.mark_down(kind);
        let exit = ChildExit::from_wait(ev.status).after_init(init_failed);
        let state = self.state;
        let child = self.children.get_mut(ev.child)?;
        let desc = match child.stop_reason.take() {
            Some(reason) => format!("{reason}: {}", exit.short()),
            None => exit.short(),
        };
        // Closes its pidfd.
        let run = child.run.take()?;
        child.last_exit = Some(desc.clone());
        match state {
            ServiceState::Stopping => info!("{} (pid {}) exited: {desc}", child.label(), ev.pid),
            ServiceState::Starting if !was_ready && child.desired => {
                let tail = tail_lines(&child.log, run.log_from, defaults::LOG_TAIL_LINES);
                return Some(SuperviseError::StartFailed {
                    child: kind,
                    exit,
                    log: child.log.clone(),
                    tail: LogTail(tail),
                });
            }
            _ if !child.desired => info!("{} (pid {}) exited: {desc}", child.label(), ev.pid),
            _ => {
                let delay = if served {
                    child.backoff.after_served_exit(uptime)
                } else {
                    child.backoff.after_exit(uptime)
                };
                child.restart_at = Some(now + delay);
                warn!(
                    "{} (pid {}) exited: {desc}; restarting in {delay:?}",
                    child.label(),
                    ev.pid
                );
                if child.backoff.crash_loop(None) {
                    warn!(
                        "{} is in a crash loop; see {}",
                        child.label(),
                        child.log.display()
                    );
                }
            }
        }
        None
    }

    /// Restarts every child whose back-off is over.
    fn restart_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.children.len() {
            let Some(child) = self.children.get_mut(i) else {
                continue;
            };
            let due = matches!(child.restart_at, Some(at) if at <= now);
            if !due {
                continue;
            }
            child.restart_at = None;
            if !child.desired {
                continue;
            }
            child.restarts = child.restarts.saturating_add(1);
            self.try_spawn(i, now);
        }
    }

    /// Spawns child `i` from the current config; when that fails, logs it
    /// and schedules another try with the child's back-off.
    fn try_spawn(&mut self, i: usize, now: Instant) {
        if let Err(e) = self.spawn_child(i) {
            let Some(child) = self.children.get_mut(i) else {
                return;
            };
            let delay = child.backoff.after_exit(Duration::ZERO);
            let e = error_chain(&e);
            error!("starting {}: {e}; next try in {delay:?}", child.label());
            child.last_exit = Some(format!("spawn failed: {e}"));
            child.restart_at = Some(now + delay);
        }
    }

    /// Notes which running children are ready now.
    fn note_ready(&mut self) {
        let ready: Vec<bool> = (0..self.children.len()).map(|i| self.is_ready(i)).collect();
        for (child, ready) in self.children.iter_mut().zip(ready) {
            if let Some(run) = child.run.as_mut() {
                run.ever_ready |= ready;
            }
        }
    }

    /// While starting: notes who is ready, and declares the service running
    /// once every desired child is.
    fn poll_ready(&mut self) {
        self.note_ready();
        let all = (0..self.children.len())
            .all(|i| !self.children.get(i).is_some_and(|c| c.desired) || self.is_ready(i));
        if all && self.state == ServiceState::Starting {
            self.state = ServiceState::Running;
            crate::notify::send(crate::notify::READY);
            self.rebase_scaling();
            // A sample of the ready service, so `spp stat` right after the
            // start does not report the processes as they were starting.
            self.stats.sample(&self.res, Instant::now());
            let listen: Vec<String> = crate::listeners::addresses(&self.listeners)
                .map(|l| format!("{}://{}", transport_name(l.config.transport), l.local))
                .collect();
            let running = self.children.iter().filter(|c| c.run.is_some()).count();
            info!(
                "service {} is running: {running} process(es), listening on {}",
                self.cfg.service.name,
                listen.join(", ")
            );
        }
    }

    /// Answers a control request (a reload is answered when it is over);
    /// returns what it was.
    fn answer(&mut self, pending: Pending) -> Request {
        let request = pending.request;
        let value = match request {
            Request::Status => serde_json::to_value(self.status())
                .unwrap_or_else(|e| error_response(&format!("encoding the status: {e}"))),
            Request::Stop => {
                let mut bound = defaults::stop_timeout(self.cfg.service.stop_grace);
                if self.l5.is_some() {
                    bound += defaults::L5_DEREGISTER_WAIT;
                }
                serde_json::json!({
                    "stopping": true,
                    "controller_pid": std::process::id(),
                    STOP_TIMEOUT_KEY: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Request::Stat { window_s } => {
                serde_json::to_value(self.stats.report(Duration::from_secs(window_s)))
                    .unwrap_or_else(|e| error_response(&format!("encoding the stats: {e}")))
            }
            Request::Reload => {
                self.begin_reload(pending.reply);
                return request;
            }
            Request::L5 => self.l5_answer(),
        };
        let _ = pending.reply.send(value);
        request
    }

    /// The status report.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let listed = || self.children.iter().filter(|c| c.listed());
        let worker_stats = listed()
            .filter_map(|c| match c.kind {
                Kind::Worker {
                    group_pos, index, ..
                } => {
                    let slot = self.res.slot(group_pos, index)?;
                    Some((
                        c.name.clone(),
                        status::worker_stats(&slot.pair.header().stats),
                    ))
                }
                Kind::Proxy { .. } => None,
            })
            .collect();
        let proxy_shard_stats: BTreeMap<String, BTreeMap<String, u64>> = listed()
            .filter_map(|c| match c.kind {
                Kind::Proxy { shard, .. } => {
                    let region = &self.res.shard(shard)?.region;
                    Some((c.name.clone(), status::proxy_stats(&region.header().stats)))
                }
                Kind::Worker { .. } => None,
            })
            .collect();
        let proxy_stats = status::sum_stats(proxy_shard_stats.values());
        Status {
            service: self.cfg.service.name.clone(),
            controller_pid: std::process::id(),
            state: self.state,
            config_generation: self.generation,
            reloading: self.reload.is_some(),
            listeners: crate::listeners::addresses(&self.listeners)
                .map(|l| ListenerStatus {
                    index: l.index,
                    transport: transport_name(l.config.transport).to_string(),
                    addr: l.local.to_string(),
                })
                .collect(),
            processes: listed()
                .map(|c| c.status(self.shared(c.kind), now))
                .collect(),
            log: status::LogStatus::new(
                crate::logging::dropped(),
                &proxy_stats,
                &worker_stats,
                crate::logging::dir_full_message(&self.cfg.service.log_dir),
            ),
            proxy_stats,
            proxy_shard_stats,
            worker_stats,
            groups: self.group_status(now),
            l5: self.l5_status(),
        }
    }

    /// Sends `sig` to child `i` if it runs; true when sent. The signal
    /// goes through the run's pidfd ([`Running::signal`]): a run that has
    /// exited and been reaped, its exit not booked yet, is not signalled,
    /// and neither is a process that reused its pid.
    fn signal_child(&self, i: usize, sig: Signal) -> bool {
        let Some(child) = self.children.get(i) else {
            return false;
        };
        let Some(run) = child.run.as_ref() else {
            return false;
        };
        let pid = run.pid;
        match run.signal(sig) {
            Ok(()) => {
                info!("sent {sig} to {} (pid {pid})", child.label());
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                info!(
                    "not sending {sig} to {} (pid {pid}): it has exited",
                    child.label()
                );
                false
            }
            Err(e) => {
                warn!("sending {sig} to {} (pid {pid}): {e}", child.label());
                false
            }
        }
    }

    /// Stops child `i` on purpose: not restarted, SIGTERM (it drains), and
    /// SIGKILL by [`housekeeping`] if it overruns
    /// [`defaults::retire_timeout`]. `reason` goes into its `last_exit`.
    fn retire(&mut self, i: usize, reason: &str) {
        let grace = self.cfg.service.stop_grace;
        let Some(child) = self.children.get_mut(i) else {
            return;
        };
        child.desired = false;
        child.restart_at = None;
        let Some(run) = child.run.as_mut() else {
            return;
        };
        run.retire_by = Some(Instant::now() + defaults::retire_timeout(grace));
        child.stop_reason = Some(reason.to_string());
        self.signal_child(i, Signal::SIGTERM);
    }

    /// Indexes of the worker slots of the group at `pos`.
    fn group_slots(&self, pos: usize) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.children
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.in_group(pos))
            .map(|(i, _)| i)
    }

    /// The first free slot of the group at `pos`.
    fn free_slot(&self, pos: usize) -> Option<usize> {
        self.group_slots(pos)
            .find(|&i| self.children.get(i).is_some_and(Child::is_free))
    }

    /// Workers of the group at `pos` that are meant to run.
    fn desired_in(&self, pos: usize) -> u32 {
        let n = self
            .children
            .iter()
            .filter(|c| c.in_group(pos) && c.desired)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Makes the group at `pos` have `target` desired workers: starts
    /// workers in free slots, or retires the highest ones (`why` says why,
    /// in their `last_exit`). Returns how many it could start or retire.
    fn resize(&mut self, pos: usize, target: u32, why: &str) -> u32 {
        let now = Instant::now();
        let mut done = 0;
        let desired = self.desired_in(pos);
        if target > desired {
            for _ in desired..target {
                let Some(i) = self.free_slot(pos) else { break };
                if let Some(child) = self.children.get_mut(i) {
                    child.take_up();
                }
                self.try_spawn(i, now);
                done += 1;
            }
        } else {
            for _ in target..desired {
                let victim = self
                    .group_slots(pos)
                    .rev()
                    .find(|&i| self.children.get(i).is_some_and(|c| c.desired));
                let Some(i) = victim else { break };
                self.retire(i, why);
                done += 1;
            }
        }
        done
    }
}
