//! The proxy's life-cycle signals.
//!
//! * SIGTERM drains: stop accepting and reading (the listeners are
//!   deregistered, not closed, since the controller owns them; when the
//!   whole service stops, the controller shuts them down itself, and an
//!   accept then fails with EINVAL, taken as "nothing to accept"), finish what
//!   is in flight, flush, and exit as soon as that is done; once
//!   `limits.drain_timeout_ms` passes, close what is left, calling the close
//!   hook for each, and exit 0 all the same.
//! * SIGINT exits at once.
//! * SIGHUP reopens `launch.log.file` (when there is one) onto stdout and
//!   stderr, for log rotation.

use crate::event_loop::Proxy;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use spp_ipc::layout::ProxyState;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// Longest wait while a drain waits for workers to settle.
pub const DRAIN_POLL_MS: u64 = 1;
/// A worker that neither sleeps nor publishes for this long after its last
/// request completed counts as settled during a drain.
pub const DRAIN_SETTLE_MS: u64 = 100;

/// Where the proxy is in its life: running, draining, or told to quit.
#[derive(Debug)]
pub struct Life {
    /// SIGTERM arrived: nothing new is accepted or read.
    pub draining: bool,
    /// SIGINT arrived: exit at the end of the turn.
    pub quit: bool,
    /// Loop clock (ms) when a drain gives up waiting.
    drain_deadline_ms: u64,
    /// Since when nothing was in flight during a drain.
    settled_since_ms: Option<u64>,
    /// The drain asked every connection to close.
    closing_all: bool,
    /// The log file to reopen on SIGHUP.
    log_file: Option<PathBuf>,
}

impl Life {
    /// Running, logging to `log_file` (if any).
    pub fn new(log_file: Option<PathBuf>) -> Self {
        Life {
            draining: false,
            quit: false,
            drain_deadline_ms: u64::MAX,
            settled_since_ms: None,
            closing_all: false,
            log_file,
        }
    }
}

impl Proxy {
    /// Handles the signals that arrived since the last look.
    pub(crate) fn on_signals(&mut self) {
        let (mut term, mut int, mut hup) = (false, false, false);
        for signal in self.io.signals.pending() {
            term |= signal == SIGTERM;
            int |= signal == SIGINT;
            hup |= signal == SIGHUP;
        }
        if hup {
            self.reopen_log();
        }
        if int {
            self.life.quit = true;
        } else if term {
            self.begin_drain();
        }
    }

    /// SIGHUP: reopens the log file onto stdout and stderr, so a rotated
    /// file is let go.
    fn reopen_log(&self) {
        spp_ipc::logfile::reopen_after_sighup(self.life.log_file.as_deref());
    }

    /// SIGTERM: stop taking new work; keep serving what is in flight.
    fn begin_drain(&mut self) {
        if self.life.draining {
            return;
        }
        tracing::info!(
            connections = self.clients.conns.len(),
            in_flight = self.dispatch.in_flight(),
            "SIGTERM: draining"
        );
        self.life.draining = true;
        self.life.drain_deadline_ms = self
            .clients
            .now_ms
            .saturating_add(self.limits.drain_timeout_ms);
        self.region
            .header()
            .proxy_state
            .store(ProxyState::Draining as u32, Ordering::Release);
        self.io.stop_listening(&mut self.clients.udp_socks);
    }

    /// One drain step; true when the proxy may exit.
    pub(crate) fn drain_step(&mut self) -> bool {
        let now = self.clients.now_ms;
        if self.dispatch.in_flight() == 0 {
            self.life.settled_since_ms.get_or_insert(now);
        } else {
            self.life.settled_since_ms = None;
        }
        let waited = self
            .life
            .settled_since_ms
            .is_some_and(|t| now.saturating_sub(t) >= DRAIN_SETTLE_MS);
        let settled = self.life.settled_since_ms.is_some()
            && (0..self.dispatch.slot_count()).all(|s| self.dispatch.settled(s, waited));
        let overdue = now >= self.life.drain_deadline_ms;
        if !settled && !overdue {
            return false;
        }
        if overdue {
            tracing::warn!(
                connections = self.clients.conns.len(),
                in_flight = self.dispatch.in_flight(),
                drain_timeout_ms = self.limits.drain_timeout_ms,
                "drain timed out; closing what is left"
            );
            // Replies the close hooks queue have no connection left.
            self.hooks
                .with(&mut self.clients, |c, hook| c.close_now(hook));
            self.publish_stats();
            return true;
        }
        if !self.life.closing_all {
            self.life.closing_all = true;
            let Proxy {
                clients,
                dispatch,
                hooks,
                ..
            } = self;
            hooks.with(clients, |c, hook| {
                c.close_all(hook);
                c.flush_marked(hook, dispatch.ledger());
            });
        }
        self.clients.conns.is_empty()
    }
}
