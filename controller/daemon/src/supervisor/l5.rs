//! The supervisor's L5 glue (the agent itself is [`crate::l5::agent`]):
//! starts the agent with the service (when `[l5]` is on), hands it its
//! events with whether the registration group is healthy (the service runs
//! and the group has a Ready worker), answers `{"cmd":"l5"}` and fills the
//! `l5` section of the status, and deregisters first at stop, before the
//! proxy drains.

use super::Supervisor;
use crate::control::error_response;
use crate::l5::agent::{Agent, Event};
use crate::l5::report::L5Status;
use crate::status::ServiceState;
use std::net::SocketAddr;
use std::time::Instant;

/// What the answer to `{"cmd":"l5"}` says when `[l5]` is off.
const L5_OFF: &str = "L5 is off for this service (its config has no [l5] table)";

/// The agent's next event; never while L5 is off.
pub(super) async fn next(agent: &mut Option<Agent>) -> Event {
    match agent {
        Some(agent) => agent.next().await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// Starts the agent (and its backend task) when `[l5]` is on; the
    /// static routes are published at once.
    pub(super) fn start_l5(&mut self) {
        let (Some(cfg), Some(table)) = (self.cfg.l5.as_ref(), self.res.l5.as_mut()) else {
            return;
        };
        // One instance per address, not per proxy shard's socket.
        let local: Vec<SocketAddr> = crate::listeners::addresses(&self.listeners)
            .map(|l| l.local)
            .collect();
        self.l5 = Some(Agent::start(cfg, &self.cfg.service.name, &local, table));
    }

    /// Hands the agent one event.
    pub(super) fn on_l5(&mut self, event: Event) {
        let healthy = self.l5_healthy();
        let (Some(agent), Some(table)) = (self.l5.as_mut(), self.res.l5.as_mut()) else {
            return;
        };
        match event {
            Event::Discovered => agent.on_discovered(table),
            Event::Tick => agent.on_tick(table, healthy, Instant::now()),
        }
    }

    /// The service runs and the group named by `l5.group` has a Ready
    /// worker.
    fn l5_healthy(&self) -> bool {
        let Some(l5) = &self.cfg.l5 else {
            return false;
        };
        let Some(pos) = self.cfg.groups.iter().position(|g| g.id == l5.group) else {
            return false;
        };
        self.state == ServiceState::Running && self.group_slots(pos).any(|i| self.is_ready(i))
    }

    /// The answer to `{"cmd":"l5"}`.
    pub(super) fn l5_answer(&self) -> serde_json::Value {
        match (&self.l5, &self.res.l5) {
            (Some(agent), Some(table)) => serde_json::to_value(agent.report(table))
                .unwrap_or_else(|e| error_response(&format!("encoding the L5 report: {e}"))),
            _ => error_response(L5_OFF),
        }
    }

    /// The `l5` section of the status (`None` while L5 is off).
    pub(super) fn l5_status(&self) -> Option<L5Status> {
        match (&self.l5, &self.res.l5) {
            (Some(agent), Some(table)) => Some(agent.status(table)),
            _ => None,
        }
    }

    /// Removes this service's registration and waits for the backend
    /// (bounded); first thing at stop.
    pub(super) async fn l5_deregister(&mut self) {
        if let Some(agent) = self.l5.as_mut() {
            agent.deregister().await;
        }
    }
}
