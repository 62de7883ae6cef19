//! `spp-bench`, the load harness, as a library: [`run`] takes a
//! [`LoadSpec`] and returns a serde-serialisable [`Report`], so a
//! comparison command can run it in-process; the binary
//! (`src/bin/spp-bench.rs`) only parses arguments and prints.
//!
//! ```no_run
//! use spp_benches::load::{self, Load, LoadSpec};
//!
//! let mut spec = LoadSpec::new("tcp://127.0.0.1:7963".parse()?);
//! spec.connections = 64;
//! spec.load = Load::Closed { in_flight: 1 };
//! let report = load::run(&spec)?;
//! println!("{:.0} req/s, p99 {} µs", report.throughput_rps, report.latency_us.p99);
//! # Ok::<(), load::LoadError>(())
//! ```
//!
//! Method (as in `docs/PERFORMANCE.md`): TCP_NODELAY connections (or connected UDP
//! sockets), each driven by one task; the connections are spread over
//! `threads` load threads, each a one-thread tokio runtime (default: one
//! thread). Closed loop keeps a fixed number of requests in flight per
//! connection, latency from the write to the last byte of the response.
//! Open loop sends at a fixed total rate on a nanosecond timer, latency
//! from the *intended* send time, so a stall cannot hide (no coordinated
//! omission); the report also shows how late the harness itself sent
//! (`send_lag_us`). A warm-up is run and not recorded; latencies go into
//! an HDR histogram with 3 significant digits. Responses are checked, and
//! every failure is counted (mismatch, timeout, closed connection, request
//! lost with its connection, failed connect); closed connections are
//! re-opened and the reconnects counted.
//!
//! [`run`] blocks the calling thread for the run's duration (call it from
//! a plain thread, or `spawn_blocking` in async code).
//!
//! Modules: [`spec`] (what to run), [`protocol`] (requests and response
//! rules), [`schedule`] (phases, open-loop pacing), `timer` (wake-ups),
//! [`record`] (per-thread outcomes), the drivers `tcp`, `short` and `udp`
//! (sharing `driver`), [`report`] (results and the human table), [`plot`]
//! (SVG), `progress` (the bar), `connect` (sockets and the reachability
//! probe), and `runner`, which ties the threads together.

mod buffer;
mod connect;
mod driver;
pub mod error;
pub mod plot;
mod progress;
pub mod protocol;
pub mod record;
pub mod report;
mod runner;
pub mod schedule;
mod short;
pub mod spec;
mod tcp;
mod timer;
mod udp;

pub use error::LoadError;
pub use record::Counts;
pub use report::{Errors, Latency, PercentilePoint, Report};
pub use runner::run;
pub use spec::{Load, LoadSpec, Request, ResponseRule, Target, Transport};
