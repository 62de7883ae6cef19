//! spp benchmarks.
//!
//! * `benches/ring.rs` (`cargo bench -p spp-benches --bench ring`):
//!   criterion micro-benchmarks of the real shared-memory ring
//!   (`spp_ipc::ring`): 64-byte records across two threads, and a
//!   single-thread push + pop baseline.
//!
//! The `spp-bench` load harness (closed-loop clients against a running
//! service) will live here later.
