//! `spp-bench compare` and `spp-bench idle-memory`: spp against the
//! "no framework" baseline (and haproxy in TCP mode in front of it, where
//! installed), all started and stopped by this program, on 127.0.0.1.
//! `spp-bench compare --table` runs SPP's published table instead (suite
//! [`Suite::Table`]): echo, echo after a sleep on micro-threads, echo
//! through spp's relay plugin in front of spp's echo (and, to isolate the
//! relay hop, in front of the baseline), each with long and short
//! connections, and the tokio relay (`spp-tokio-relay`, one thread
//! and one per CPU) in front of the baseline; [`checks`] turns the medians
//! into the issue's figures and targets. `spp-bench compare --shards` runs
//! the proxy-shard figures ([`Suite::Shards`], [`shards`]): one proxy shard
//! against several, CPU per request of every process ([`cpu`]) and the
//! accept balance. `spp-bench compare --async-relay` runs the async relay
//! figures ([`Suite::AsyncRelay`]): `examples/relay-async` with its
//! runtime driven on the worker's thread and on a plugin thread
//! (`SPP_ASYNC_RUNTIME=thread`), the micro-thread relay and the tokio
//! relays, all in front of the baseline, with CPU per request.
//!
//! ```no_run
//! use spp_benches::compare::{self, CompareSpec, Shared};
//!
//! let shared = Shared::default();
//! compare::watch_signals(&shared)?; // Ctrl-C stops the servers, then exits
//! let report = compare::run(&CompareSpec::new(), &shared)?;
//! println!("{report}");
//! # Ok::<(), compare::CompareError>(())
//! ```
//!
//! Method: the binaries come from one directory (next to `spp-bench`, or
//! `--bin-dir`). spp runs from a generated config in a temp dir (the echo
//! plugin, TCP and UDP on 127.0.0.1:0, `--workers` workers) via `spp
//! start`, its ports read from `spp status --json`; the baseline is
//! `spp-echo-direct` on 127.0.0.1:0. Each scenario (TCP N=64, TCP N=1,
//! short connections N=16, UDP N=64; closed loop, one request in flight)
//! runs `rounds` rounds, each round against every system in turn, so slow
//! drifts of the machine hit all of them alike. Each figure is the median
//! of the rounds, with the min–max spread; ratios are spp over the others'
//! medians.
//!
//! Modules: [`bins`] (finding programs), `process` (spawning and killing
//! by pid), [`spp`] (the spp services), [`child`] (baseline, tokio relay
//! and haproxy), [`checks`] (the table's figures),
//! [`systems`] (what runs, the signal thread), [`scenario`], [`summary`]
//! (medians, spreads, ratios), [`report`] (JSON and table), `run` (the
//! comparison), [`idle`] (memory per idle connection), [`wrk`] (the
//! optional HTTP suite: spp's HTTP plugin against nginx under wrk),
//! [`redis`] (the RESP example against redis-server, `--redis`).

pub mod bins;
pub mod checks;
pub mod child;
pub mod cpu;
pub mod error;
pub mod idle;
pub mod process;
pub mod redis;
pub mod report;
mod run;
pub mod scenario;
pub mod shards;
pub mod spp;
pub mod summary;
pub mod systems;
pub mod wrk;

pub use error::CompareError;
pub use idle::{IdleReport, IdleSpec};
pub use report::CompareReport;
pub use run::{
    run, CompareSpec, DEFAULT_RELAY_WORKERS, DEFAULT_ROUNDS, DEFAULT_SLEEP_MS, DEFAULT_WORKERS,
    HAPROXY_MISSING,
};
pub use scenario::{
    RunShape, Suite, System, ASYNC_RELAY, DEFAULT_SLEEP_CONNECTIONS, SCENARIOS, SHARDS, TABLE,
};
pub use systems::{watch_signals, Shared};
