//! L5-style service routing shared by a service's processes.
//!
//! L5 names a service by a [`Sid`] = (modid, cmdid); its instances are
//! `ip:port` endpoints with a static weight. The controller is the local
//! agent: it learns the instances from a registry (embedded on the machine,
//! or etcd), keeps the fault-tolerance state ([`balancer`]), and publishes
//! the routing view into a shared-memory [`table::RouteTable`]. Workers pick
//! a route and report its outcome through that table with no lock and no
//! syscall (plugin host services `get_route`, `get_route_hash`, `report`).
//!
//! The modules form three layers, and every `use` points down:
//!
//! ```text
//! mechanism   table (+ table::pick, table::budget), layout
//!                 shared memory: the seqlock double-buffered routing
//!                 view, pick over the published weights, outcome counters
//!     │ uses
//!     ▼
//! policy      balancer, pick_rules, probe, rendezvous
//!                 pure rules: nlb "standard" reshape and Polaris trip,
//!                 the pick-time skip rule, probe budget spending, the
//!                 rendezvous hashing choice (no atomics, no layout)
//!     │ uses
//!     ▼
//! plain data  this module (Sid, Instance, L5Error), view, hash
//! ```
//!
//! The mechanism asks the policy what to do and never decides a rule
//! itself; no policy module imports `table` or `layout` (they name them
//! in docs only), so the policy is unit-tested without shared memory.
//!
//! * [`table`]: the route table (pick, consistent-hash pick, report, and
//!   the controller's publish and slot bookkeeping);
//! * [`layout`]: its `#[repr(C)]` shared-memory layout;
//! * [`balancer`]: the per-period weighting rules;
//! * [`pick_rules`]: the pick-time skip rule, in the header's integer form;
//! * [`probe`]: when a pick probes a dead node, and which one;
//! * [`rendezvous`]: weighted rendezvous hashing for `pick_hash`;
//! * [`view`]: the routing view and counts as plain data (also re-exported
//!   from [`table`]);
//! * [`hash`]: `mix64` and `scale`.

pub mod balancer;
pub mod hash;
pub mod layout;
pub mod pick_rules;
pub mod probe;
pub mod rendezvous;
pub mod table;
pub mod view;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// A service id: (modid, cmdid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sid {
    /// Module id.
    pub modid: u32,
    /// Command id.
    pub cmdid: u32,
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.modid, self.cmdid)
    }
}

/// The smallest static weight.
pub const MIN_WEIGHT: u32 = 100;
/// The largest static weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// The static weight when none is given (L5's default).
pub const DEFAULT_WEIGHT: u32 = 100;

/// One instance of a sid, as a registry or the static routes file holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Instance {
    /// The service.
    pub sid: Sid,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Static weight, [`MIN_WEIGHT`]..=[`MAX_WEIGHT`].
    pub weight: u32,
}

/// L5's error codes, as the host services return them.
pub mod code {
    /// No usable server for the sid (overload).
    pub const NO_SERVER: i32 = -10000;
    /// Timeout.
    pub const TIMEOUT: i32 = -9999;
    /// System error (e.g. no route table in this process).
    pub const SYSTEM: i32 = -9998;
    /// Bad parameter.
    pub const BAD_PARAM: i32 = -9991;
    /// The sid is unknown.
    pub const UNKNOWN_SID: i32 = -8999;
}

/// Why a route could not be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L5Error {
    /// The sid is not in the table.
    #[error("unknown sid")]
    UnknownSid,
    /// The sid has no instance at all.
    #[error("no usable server")]
    NoServer,
    /// The table is being rewritten too often to read (retry later).
    #[error("route table busy")]
    Busy,
    /// The table has no room for what the controller wants to publish.
    #[error("route table full: {0}")]
    Full(&'static str),
    /// What the controller wants to publish is inconsistent (a bug of the
    /// caller: a duplicate sid, a node whose slot is not its own).
    #[error("route table: invalid view: {0}")]
    Invalid(&'static str),
}

impl L5Error {
    /// The L5 error code ([`code`]).
    pub fn code(&self) -> i32 {
        match self {
            L5Error::UnknownSid => code::UNKNOWN_SID,
            L5Error::NoServer => code::NO_SERVER,
            L5Error::Busy | L5Error::Full(_) | L5Error::Invalid(_) => code::SYSTEM,
        }
    }
}
