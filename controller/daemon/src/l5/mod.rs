//! L5 in the controller: registration of this service's listeners,
//! discovery of every sid, the fault-tolerance agent that publishes the
//! shared route table, and what `spp status` and `spp l5` show.
//!
//! * [`registry`]: the backends (embedded files, etcd) as tokio tasks;
//! * [`agent`]: the agent the supervisor drives (registration, nodes,
//!   reshape, publish);
//! * [`report`]: the status section and the `spp l5` report and tables.

pub mod agent;
pub mod registry;
pub mod report;
