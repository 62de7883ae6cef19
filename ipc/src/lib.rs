//! # spp-ipc — what the spp controller, proxy and workers share
//!
//! * [`shm`]: memfd-backed shared regions (no file in /dev/shm).
//! * [`ring`]: the SPSC ring of variable-length records.
//! * [`record`]: what request and response records carry.
//! * [`doorbell`]: eventfd doorbells and the sleep-flag protocol.
//! * [`layout`]: the versioned `#[repr(C)]` shared-memory layout (pair and
//!   proxy regions).
//! * [`pair`]: the proxy–worker pair protocol (a proxy end and a worker
//!   end: sequence numbers, generations, the drain handshake, sleep and
//!   wake), the one place that reads and writes its shared fields.
//! * [`stats`], [`histogram`], [`plugin_metrics`]: the counters, latency
//!   histograms and plugin metrics those regions hold.
//! * [`logging`], [`logfile`]: a child's log set-up, and reopening its log
//!   on SIGHUP.
//! * [`host_kit`]: what the proxy's and the worker's `spp_host` tables
//!   share (`log`, `count`, `record_latency`, the table builder).
//! * [`launch`]: the controller → child launch contract.
//! * [`l5`]: the L5 route table in shared memory (mechanism) and the
//!   balancing rules (policy).
//! * [`spin`]: the adaptive spin budget of the proxy's and the workers'
//!   idle loops.
//! * [`error`]: [`IpcError`], this crate's one error type.

pub mod doorbell;
pub mod error;
pub mod flow_shard;
pub mod histogram;
pub mod host_kit;
pub mod l5;
pub mod launch;
pub mod layout;
pub mod logfile;
pub mod logging;
pub mod pair;
pub mod plugin_metrics;
pub mod poison;
pub mod record;
pub mod ring;
pub mod shm;
pub mod spin;
pub mod stats;

#[cfg(test)]
mod fuzz_tests;

pub use error::{error_chain, IpcError};
