//! Stopping the service (control `stop`, SIGTERM or SIGINT), timings in
//! [`defaults`]: first the L5 registration is removed (bounded by
//! [`defaults::L5_DEREGISTER_WAIT`]), so callers stop picking this service
//! before it drains; then stop listening (`BoundListener::close`: a
//! connect during the drain is refused at once, and the port is free for
//! the next start) and SIGTERM the proxy and wait for it up to
//! `stop_grace` (it drains, closes what is left and exits by itself);
//! SIGKILL it only if it is still there then. Once the proxy is gone,
//! SIGTERM the workers and give them their own drain
//! ([`defaults::worker_drain_timeout`]; they exit as soon as their ring is
//! empty, the proxy being gone); SIGKILL what is left. A second stop signal hurries: the proxy gets SIGINT (it closes at
//! once, itself) and [`defaults::PROXY_QUIT_TIMEOUT`], the workers SIGKILL.
//! No fixed sleeps: every wait ends as soon as the children are gone. A
//! reload under way is abandoned and answered with an error.

use super::{Inputs, Sig, Supervisor, Waited};
use crate::children::Child;
use crate::control::error_response;
use crate::status::ServiceState;
use nix::sys::signal::Signal;
use spp_config::defaults;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

impl Supervisor {
    /// Sends `sig` to every running child `which` selects; returns how many.
    fn signal(
        &mut self,
        inputs: &mut Inputs,
        which: impl Fn(&Child) -> bool,
        sig: Signal,
    ) -> usize {
        // Book exits that are already in, so they do not count as signalled
        // (the pidfd would refuse them anyway: see `signal_child`).
        while let Ok(ev) = inputs.exits.try_recv() {
            self.on_exit(ev);
        }
        let selected: Vec<usize> = (0..self.children.len())
            .filter(|&i| self.children.get(i).is_some_and(&which))
            .collect();
        selected
            .into_iter()
            .filter(|&i| self.signal_child(i, sig))
            .count()
    }

    /// Waits until no child `which` selects runs, `deadline` passes, or a
    /// stop signal arrives; books exits, answers control requests and
    /// handles SIGHUP meanwhile.
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
                sig = inputs.signals.recv() => match sig {
                    Sig::Stop(name) => {
                        warn!("{name} during the stop: killing what is left");
                        return Waited::Interrupted;
                    }
                    Sig::Hup => self.on_hup(),
                },
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
    pub(super) async fn shutdown(&mut self, inputs: &mut Inputs) {
        self.state = ServiceState::Stopping;
        crate::notify::send(crate::notify::STOPPING);
        if let Some(reload) = self.reload.take() {
            warn!("the reload under way is abandoned: the service stops");
            reload.answer(error_response("reload abandoned: the service is stopping"));
        }
        for child in &mut self.children {
            child.restart_at = None;
        }
        // Callers stop picking this service before it drains.
        self.l5_deregister().await;
        let grace = self.cfg.service.stop_grace;
        // Every proxy shard drains at once.
        let is_proxy = |c: &Child| c.kind.is_proxy();
        let is_worker = |c: &Child| !c.kind.is_proxy();
        // Newcomers are refused from now on, not accepted into a backlog
        // that the proxy no longer reads.
        for listener in &mut self.listeners {
            listener.close();
        }
        info!("stopped listening; draining the proxy");
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
