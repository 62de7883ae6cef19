//! Where L5 instances are registered and discovered.
//!
//! A backend runs as one tokio task: it takes [`Command`]s (what this
//! service registers) and publishes what it [`Discovered`] (every instance
//! of every sid it can see) on a `watch` channel. Two backends:
//! [`embedded`] (files under a directory shared by every spp on the
//! machine) and [`etcd`] (a lease kept alive, one key per instance).

pub mod embedded;
pub mod etcd;
pub mod listening;

use spp_ipc::l5::Instance;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What the controller asks of its backend.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Register exactly these instances of this service (an empty list
    /// withdraws them; the service stays known to the backend).
    Register(Vec<Instance>),
    /// Remove this service's instances now and end the task (stop).
    Deregister,
}

/// What a backend can see.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Discovered {
    /// Every live instance of every sid, registered ones only (the static
    /// routes file is merged by the agent).
    pub instances: Vec<Instance>,
    /// When this view was last confirmed by the backend.
    pub at: Option<SystemTime>,
    /// `None` while the backend answers; the last error while it does not
    /// (the agent then keeps routing on the last known table and says so).
    pub error: Option<String>,
}

/// The etcd backend's settings (`l5.backend = "etcd://host:port[,...]"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `host:port` endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix; one key per instance below it.
    pub prefix: String,
    /// Lease TTL.
    pub ttl: Duration,
    /// This service's name (part of its keys).
    pub service: String,
}

/// The embedded backend's settings (`l5.backend = "embedded"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedSettings {
    /// The directory shared by every spp on the machine.
    pub dir: PathBuf,
    /// A file whose heartbeat is older than this is stale.
    pub ttl: Duration,
    /// How often the directory is listed.
    pub scan: Duration,
    /// This service's name (part of its file's name).
    pub service: String,
    /// The pid written in this service's file and its name (the
    /// controller's).
    pub pid: u32,
}
