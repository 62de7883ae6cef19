//! L5 in the controller (SKELETON, issue 5): registration of this
//! service's listeners, discovery of every sid, the fault-tolerance agent
//! that publishes the shared route table, and `spp l5`.

pub mod registry;
