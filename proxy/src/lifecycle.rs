//! The proxy's life-cycle signals.
//!
//! * SIGTERM drains: stop accepting and reading (the listeners are
//!   deregistered, not closed, since the controller owns them), finish what
//!   is in flight, flush, and exit as soon as that is done; once
//!   `limits.drain_timeout_ms` passes, close what is left, calling the close
//!   hook for each, and exit 0 all the same.
//! * SIGINT exits at once.
//! * SIGHUP reopens `launch.log.file` (when there is one) onto stdout and
//!   stderr, for log rotation.

use crate::event_loop::Proxy;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use spp_ipc::layout::ProxyState;
use std::sync::atomic::Ordering;

/// Longest wait while a drain waits for workers to settle.
pub const DRAIN_POLL_MS: u64 = 1;
/// A worker that neither sleeps nor publishes for this long after its last
/// request completed counts as settled during a drain.
pub const DRAIN_SETTLE_MS: u64 = 100;

impl Proxy {
    /// Handles the signals that arrived since the last look.
    pub(crate) fn on_signals(&mut self) {
        let (mut term, mut int, mut hup) = (false, false, false);
        for signal in self.signals.pending() {
            term |= signal == SIGTERM;
            int |= signal == SIGINT;
            hup |= signal == SIGHUP;
        }
        if hup {
            self.reopen_log();
        }
        if int {
            self.quit = true;
        } else if term {
            self.begin_drain();
        }
    }

    /// SIGHUP: reopens the log file onto stdout and stderr, so a rotated
    /// file is let go.
    fn reopen_log(&self) {
        spp_ipc::logfile::reopen_after_sighup(self.log_file.as_deref());
    }

    /// SIGTERM: stop taking new work; keep serving what is in flight.
    fn begin_drain(&mut self) {
        if self.draining {
            return;
        }
        tracing::info!(
            connections = self.clients.conns.len(),
            in_flight = self.dispatch.in_flight(),
            "SIGTERM: draining"
        );
        self.draining = true;
        self.drain_deadline_ms = self
            .clients
            .now_ms
            .saturating_add(self.limits.drain_timeout_ms);
        self.region
            .header()
            .proxy_state
            .store(ProxyState::Draining as u32, Ordering::Release);
        let registry = self.poll.registry();
        // Deregistered, not closed: the controller owns the listeners and
        // hands them to the next proxy.
        for l in &mut self.listeners {
            let _ = registry.deregister(&mut l.sock);
        }
        for u in &mut self.clients.udp_socks {
            let _ = registry.deregister(&mut u.sock);
        }
        self.pending_accepts.clear();
        self.pending_udp.clear();
    }

    /// One drain step; true when the proxy may exit.
    pub(crate) fn drain_step(&mut self) -> bool {
        let now = self.clients.now_ms;
        if self.dispatch.in_flight() == 0 {
            self.settled_since_ms.get_or_insert(now);
        } else {
            self.settled_since_ms = None;
        }
        let waited = self
            .settled_since_ms
            .is_some_and(|t| now.saturating_sub(t) >= DRAIN_SETTLE_MS);
        let settled = self.settled_since_ms.is_some()
            && (0..self.dispatch.slot_count()).all(|s| self.dispatch.settled(s, waited));
        let overdue = now >= self.drain_deadline_ms;
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
            self.clients.close_now(self.plugin);
            // Replies the close hooks queued have no connection left.
            self.apply_host_ops();
            self.publish_stats();
            return true;
        }
        if !self.closing_all {
            self.closing_all = true;
            self.clients.close_all(self.plugin);
            self.clients.flush_marked(self.plugin);
        }
        self.apply_host_ops();
        self.clients.conns.is_empty()
    }
}
