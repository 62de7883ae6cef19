//! The supervisor: spawns the proxy and the workers, watches them become
//! ready, restarts any that exits (with back-off), answers control
//! requests, and stops everything in order.
//!
//! Start: every child is spawned at once; the service is `running` when the
//! proxy and every worker report Ready in shared memory. A child that exits
//! before it was ever ready during that start fails the whole start.
//!
//! Stop (control `stop`, SIGTERM or SIGINT), timings in [`defaults`]:
//! SIGTERM the proxy and wait for it up to `stop_grace` (it drains, closes
//! what is left and exits by itself); SIGKILL it only if it is still there
//! then. Once the proxy is gone, SIGTERM the workers and give them their own
//! drain ([`defaults::worker_drain_timeout`]); SIGKILL what is left. A
//! second stop signal hurries: the proxy gets SIGINT (it closes at once,
//! itself) and [`defaults::PROXY_QUIT_TIMEOUT`], the workers SIGKILL. No
//! fixed sleeps: every wait ends as soon as the children are gone.

use crate::children::{Child, ChildExit, Kind, Running, Shared};
use crate::config::{transport_name, Config};
use crate::control::{error_response, Pending, Request};
use crate::defaults;
use crate::listeners::BoundListener;
use crate::logging::{error_chain, tail_lines, LogTail};
use crate::resources::Resources;
use crate::spawn::{self, Binaries, SpawnError};
use crate::status::{self, ListenerStatus, ServiceState, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spp_ipc::launch::Launch;
use std::path::PathBuf;
use std::process::ExitStatus;
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

/// SIGTERM and SIGINT, the two ways to ask for a stop, and SIGHUP, which
/// must not kill the controller (there is nothing to reload yet).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, SuperviseError> {
        let install =
            |name, kind| signal(kind).map_err(|source| SuperviseError::Signal { name, source });
        Ok(StopSignals {
            term: install("SIGTERM", SignalKind::terminate())?,
            int: install("SIGINT", SignalKind::interrupt())?,
            hup: install("SIGHUP", SignalKind::hangup())?,
        })
    }

    /// The next stop signal's name.
    async fn recv(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => info!("SIGHUP: ignored (log files are opened in append mode)"),
            }
        }
    }
}

/// The channels the supervisor listens on.
struct Inputs {
    control: mpsc::Receiver<Pending>,
    exits: mpsc::UnboundedReceiver<ExitEvent>,
    signals: StopSignals,
}

/// Everything one running service consists of.
pub struct Supervisor {
    cfg: Config,
    bins: Binaries,
    listeners: Vec<BoundListener>,
    res: Resources,
    children: Vec<Child>,
    proxy_starts: u16,
    state: ServiceState,
    exits_tx: mpsc::UnboundedSender<ExitEvent>,
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
    ) -> Result<(), SuperviseError> {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let mut children = vec![Child::proxy(&cfg)];
        for (pos, g) in cfg.groups.iter().enumerate() {
            children.extend((0..g.workers).map(|i| Child::worker(&cfg, pos, g.id, i)));
        }
        let mut sup = Supervisor {
            cfg,
            bins,
            listeners,
            res,
            children,
            proxy_starts: 0,
            state: ServiceState::Starting,
            exits_tx,
        };
        let mut inputs = Inputs {
            control,
            exits,
            signals: StopSignals::install()?,
        };
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
            self.spawn_child(i)
                .map_err(|source| SuperviseError::Spawn {
                    child: self.children.get(i).map_or(Kind::Proxy, |c| c.kind),
                    source,
                })?;
        }
        Ok(())
    }

    fn spawn_child(&mut self, i: usize) -> Result<(), SpawnError> {
        let Some(child) = self.children.get(i) else {
            return Ok(());
        };
        let (bin, launch, fds) = match child.kind {
            Kind::Proxy => {
                let launch =
                    spawn::proxy_launch(&self.cfg, &self.listeners, &self.res, self.proxy_starts);
                self.proxy_starts = self.proxy_starts.wrapping_add(1);
                let fds = launch.inherited_fds();
                (&self.bins.proxy, Launch::Proxy(launch), fds)
            }
            Kind::Worker {
                group_pos, index, ..
            } => {
                let launch = spawn::worker_launch(&self.cfg, &self.res, group_pos, index)?;
                let fds = launch.inherited_fds();
                (&self.bins.worker, Launch::Worker(launch), fds)
            }
        };
        let log_from = std::fs::metadata(&child.log).map_or(0, |m| m.len());
        let mut process = spawn::spawn(bin, &launch, fds, &child.log)?;
        let pid = process.id().unwrap_or_default();
        info!(
            "started {} (pid {pid}, log {})",
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
        if let Some(child) = self.children.get_mut(i) {
            child.run = Some(Running {
                pid,
                started: Instant::now(),
                ever_ready: false,
                log_from,
            });
        }
        Ok(())
    }

    /// Runs until a stop is asked for (`Ok`) or the start fails.
    async fn supervise(&mut self, inputs: &mut Inputs) -> Result<(), SuperviseError> {
        let mut tick = tokio::time::interval(defaults::READY_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next_restart = self.children.iter().filter_map(|c| c.restart_at).min();
            let wake = tokio::time::Instant::from_std(next_restart.unwrap_or_else(Instant::now));
            let starting = self.state == ServiceState::Starting;
            tokio::select! {
                Some(ev) = inputs.exits.recv() => {
                    if let Some(failed) = self.on_exit(ev) {
                        return Err(failed);
                    }
                }
                Some(pending) = inputs.control.recv() => {
                    if self.answer(pending) == Request::Stop {
                        info!("stop requested on the control socket");
                        return Ok(());
                    }
                }
                name = inputs.signals.recv() => {
                    info!("{name}: stopping");
                    return Ok(());
                }
                _ = tokio::time::sleep_until(wake), if next_restart.is_some() => self.restart_due(),
                _ = tick.tick(), if starting => self.poll_ready(),
            }
        }
    }

    /// What the child last wrote about itself.
    fn shared(&self, kind: Kind) -> Shared {
        match kind {
            Kind::Proxy => self.res.proxy.proxy_state().into(),
            Kind::Worker {
                group_pos, index, ..
            } => self
                .res
                .slot(group_pos, index)
                .map_or(Shared::Down, |s| s.pair.worker_state().into()),
        }
    }

    fn mark_down(&self, kind: Kind) {
        match kind {
            Kind::Proxy => self.res.mark_proxy_down(),
            Kind::Worker {
                group_pos, index, ..
            } => {
                if let Some(slot) = self.res.slot(group_pos, index) {
                    slot.mark_down();
                }
            }
        }
    }

    /// Books a reaped child; schedules its restart unless stopping. Returns
    /// the start failure when it died before ever being ready during the
    /// start.
    fn on_exit(&mut self, ev: ExitEvent) -> Option<SuperviseError> {
        let now = Instant::now();
        let child = self.children.get(ev.child)?;
        let run = child.run.filter(|r| r.pid == ev.pid)?;
        let kind = child.kind;
        let was_ready =
            run.ever_ready || matches!(self.shared(kind), Shared::Ready | Shared::Draining);
        self.mark_down(kind);
        let exit = ChildExit::from_wait(ev.status);
        let desc = exit.short();
        let state = self.state;
        let child = self.children.get_mut(ev.child)?;
        child.run = None;
        child.last_exit = Some(desc.clone());
        match state {
            ServiceState::Stopping => info!("{} (pid {}) exited: {desc}", child.label(), ev.pid),
            ServiceState::Starting if !was_ready => {
                let tail = tail_lines(&child.log, run.log_from, defaults::LOG_TAIL_LINES);
                return Some(SuperviseError::StartFailed {
                    child: kind,
                    exit,
                    log: child.log.clone(),
                    tail: LogTail(tail),
                });
            }
            _ => {
                let delay = child
                    .backoff
                    .after_exit(now.saturating_duration_since(run.started));
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
            child.restarts = child.restarts.saturating_add(1);
            if let Err(e) = self.spawn_child(i) {
                let Some(child) = self.children.get_mut(i) else {
                    continue;
                };
                let delay = child.backoff.after_exit(Duration::ZERO);
                let e = error_chain(&e);
                error!("restarting {}: {e}; next try in {delay:?}", child.label());
                child.last_exit = Some(format!("spawn failed: {e}"));
                child.restart_at = Some(now + delay);
            }
        }
    }

    /// While starting: notes who is ready, and declares the service running
    /// once every child is.
    fn poll_ready(&mut self) {
        let ready: Vec<bool> = self
            .children
            .iter()
            .map(|c| self.shared(c.kind) == Shared::Ready)
            .collect();
        for (child, ready) in self.children.iter_mut().zip(&ready) {
            if let Some(run) = child.run.as_mut() {
                run.ever_ready |= *ready;
            }
        }
        let all = self
            .children
            .iter()
            .zip(&ready)
            .all(|(c, r)| c.run.is_some() && *r);
        if all && self.state == ServiceState::Starting {
            self.state = ServiceState::Running;
            let listen: Vec<String> = self
                .listeners
                .iter()
                .map(|l| format!("{}://{}", transport_name(l.config.transport), l.local))
                .collect();
            info!(
                "service {} is running: {} process(es), listening on {}",
                self.cfg.service.name,
                self.children.len(),
                listen.join(", ")
            );
        }
    }

    /// Answers a control request; returns what it was.
    fn answer(&self, pending: Pending) -> Request {
        let value = match pending.request {
            Request::Status => serde_json::to_value(self.status())
                .unwrap_or_else(|e| error_response(&format!("encoding the status: {e}"))),
            Request::Stop => {
                serde_json::json!({ "stopping": true, "controller_pid": std::process::id() })
            }
        };
        let _ = pending.reply.send(value);
        pending.request
    }

    /// The status report.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let worker_stats = self
            .children
            .iter()
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
                Kind::Proxy => None,
            })
            .collect();
        Status {
            service: self.cfg.service.name.clone(),
            controller_pid: std::process::id(),
            state: self.state,
            listeners: self
                .listeners
                .iter()
                .map(|l| ListenerStatus {
                    index: l.index,
                    transport: transport_name(l.config.transport).to_string(),
                    addr: l.local.to_string(),
                })
                .collect(),
            processes: self
                .children
                .iter()
                .map(|c| c.status(self.shared(c.kind), now))
                .collect(),
            proxy_stats: status::proxy_stats(&self.res.proxy.header().stats),
            worker_stats,
        }
    }

    /// Sends `sig` to every running child `which` selects; returns how many.
    fn signal(
        &mut self,
        inputs: &mut Inputs,
        which: impl Fn(&Child) -> bool,
        sig: Signal,
    ) -> usize {
        // Book exits that are already in, so no signal goes to a reaped pid.
        while let Ok(ev) = inputs.exits.try_recv() {
            self.on_exit(ev);
        }
        let mut sent = 0;
        for child in self.children.iter().filter(|c| which(c)) {
            let Some(run) = child.run else { continue };
            let Ok(pid) = i32::try_from(run.pid) else {
                continue;
            };
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) => {
                    sent += 1;
                    info!("sent {sig} to {} (pid {pid})", child.label());
                }
                Err(e) => warn!("sending {sig} to {} (pid {pid}): {e}", child.label()),
            }
        }
        sent
    }

    /// Waits until no child `which` selects runs, `deadline` passes, or a
    /// stop signal arrives; books exits and answers control requests
    /// meanwhile.
    async fn wait_for(
        &mut self,
        inputs: &mut Inputs,
        which: impl Fn(&Child) -> bool,
        deadline: Instant,
    ) -> Waited {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            if !self.children.iter().any(|c| which(c) && c.run.is_some()) {
                return Waited::Done;
            }
            tokio::select! {
                Some(ev) = inputs.exits.recv() => { self.on_exit(ev); }
                Some(pending) = inputs.control.recv() => { self.answer(pending); }
                name = inputs.signals.recv() => {
                    warn!("{name} during the stop: killing what is left");
                    return Waited::Interrupted;
                }
                _ = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
            }
        }
    }

    /// Sends `sig` to the children `which` selects and waits until they are
    /// gone, `timeout` passes, or a stop signal arrives. `Done` at once when
    /// none was running.
    async fn signal_and_wait(
        &mut self,
        inputs: &mut Inputs,
        which: impl Fn(&Child) -> bool,
        sig: Signal,
        timeout: Duration,
    ) -> Waited {
        if self.signal(inputs, &which, sig) == 0 {
            return Waited::Done;
        }
        self.wait_for(inputs, which, Instant::now() + timeout).await
    }

    /// SIGKILLs the children `which` selects and reaps them (bounded; more
    /// stop signals do not cut it short). True when one had to be killed.
    async fn kill_and_reap(&mut self, inputs: &mut Inputs, which: impl Fn(&Child) -> bool) -> bool {
        if self.signal(inputs, &which, Signal::SIGKILL) == 0 {
            return false;
        }
        let end = Instant::now() + defaults::KILL_REAP_TIMEOUT;
        loop {
            match self.wait_for(inputs, &which, end).await {
                Waited::Done => break,
                Waited::Interrupted => {}
                Waited::TimedOut => {
                    error!("some children could not be reaped");
                    break;
                }
            }
        }
        true
    }

    /// Stops every child: the proxy first (its own drain and clean close),
    /// then the workers (their own drain), SIGKILL only for what overruns.
    async fn shutdown(&mut self, inputs: &mut Inputs) {
        self.state = ServiceState::Stopping;
        for child in &mut self.children {
            child.restart_at = None;
        }
        let grace = self.cfg.service.stop_grace;
        let is_proxy = |c: &Child| c.kind == Kind::Proxy;
        let is_worker = |c: &Child| c.kind != Kind::Proxy;
        // The proxy drains for `proxy_drain_timeout`, closes what is left and
        // exits by itself well within the grace.
        let mut hurry = self
            .signal_and_wait(inputs, is_proxy, Signal::SIGTERM, grace)
            .await
            == Waited::Interrupted;
        if hurry {
            // SIGINT: the proxy closes its connections and exits at once.
            let waited = self
                .signal_and_wait(
                    inputs,
                    is_proxy,
                    Signal::SIGINT,
                    defaults::PROXY_QUIT_TIMEOUT,
                )
                .await;
            if waited == Waited::TimedOut {
                warn!("the proxy did not quit on SIGINT");
            }
        }
        if self.kill_and_reap(inputs, is_proxy).await && !hurry {
            warn!("killed the proxy: it did not stop within the grace of {grace:?}");
        }
        // Only now the workers: the proxy has nothing in flight with them.
        if !hurry {
            let drain = defaults::worker_drain_timeout(grace);
            hurry = self
                .signal_and_wait(inputs, is_worker, Signal::SIGTERM, drain)
                .await
                == Waited::Interrupted;
            if !hurry
                && self
                    .children
                    .iter()
                    .any(|c| is_worker(c) && c.run.is_some())
            {
                warn!("workers did not drain within {drain:?}");
            }
        }
        if self.kill_and_reap(inputs, |_| true).await && !hurry {
            warn!("killed what did not stop");
        }
        for child in &self.children {
            self.mark_down(child.kind);
        }
        info!("service {} stopped", self.cfg.service.name);
    }
}
