//! The plain data the L5 layers exchange: the table's capacity, a
//! [`Route`] handed to a plugin, the routing view the controller publishes
//! ([`SidView`], [`NodeView`]) and the outcome counts it reads back
//! ([`NodeCounts`]). No shared memory, no rules: the route table
//! ([`super::table`]) turns these into its layout, the balancer
//! ([`super::balancer`]) computes the next view from the counts.

use super::{Instance, Sid};
use std::net::SocketAddr;

/// Sids one table holds at most.
pub const MAX_SIDS: usize = 256;
/// Nodes (over every sid) one table holds at most.
pub const MAX_NODES: usize = 4096;

/// A route handed to a plugin; `report` takes it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The sid asked for.
    pub sid: Sid,
    /// The chosen instance.
    pub addr: SocketAddr,
    /// The node's stats slot.
    pub slot: u32,
    /// The slot's assignment epoch (a report for a reassigned slot is
    /// dropped).
    pub slot_epoch: u32,
}

/// One node as the controller publishes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    /// The instance (sid, address, static weight).
    pub instance: Instance,
    /// Current (dynamic) weight; 0 when dead.
    pub weight: u32,
    /// Dead: only probes reach it.
    pub dead: bool,
    /// Its stats slot (from [`super::table::RouteTable::slot_for`]).
    pub slot: u32,
}

/// One sid as the controller publishes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SidView {
    /// The sid.
    pub sid: Sid,
    /// Its nodes.
    pub nodes: Vec<NodeView>,
    /// Picks that may go to dead nodes until the next publish (the probe
    /// share, at least 1 when a node is dead).
    /// [`super::table::RouteTable::view`] shows what is left of it.
    pub probe_budget: u32,
}

/// Outcome counters of one slot since it was assigned to its instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeCounts {
    /// Picks.
    pub picks: u64,
    /// Reports with result >= 0.
    pub success: u64,
    /// Reports with result < 0.
    pub failure: u64,
    /// Sum of reported latencies, µs.
    pub latency_us: u64,
    /// Failures in a row (reset by a success).
    pub consecutive_errors: u32,
}
