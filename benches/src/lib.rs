//! spp benchmarks.
//!
//! * [`load`]: the `spp-bench` load harness (TCP/UDP, closed and open
//!   loop, short connections) as a library; `src/bin/spp-bench.rs` is its
//!   command line.
//! * [`compare`]: `spp-bench compare` and `idle-memory`, spp against
//!   the baseline (and haproxy) in one run.
//! * [`direct`]: the "no framework" baseline echo server
//!   (`spp-echo-direct` is its command line).
//! * [`relay`]: the tokio relay, the peer of spp's relay plugin
//!   (`spp-tokio-relay` is its command line); [`fdlimit`] raises the
//!   open-files limit for the baseline servers.
//! * `benches/pingpong.rs`, `benches/framing.rs`: cross-process ping-pong
//!   over the real rings and doorbells; the cost of framing and of the
//!   plugin ABI call.
//! * `benches/ring.rs` (`cargo bench -p spp-benches --bench ring`):
//!   criterion micro-benchmarks of the real shared-memory ring
//!   (`spp_ipc::ring`): 64-byte records across two threads, and a
//!   single-thread push + pop baseline.

pub mod compare;
pub mod direct;
pub mod fdlimit;
pub mod load;
pub mod relay;
