//! Downstream calls from tasks: [`SidCall`] calls an L5 sid with retry and
//! automatic report, [`timed_call`] a fixed address with a timeout. Both
//! count each attempt per destination in the plugin metrics, with the
//! names the micro-thread calls use: counter `call:<ip:port>:ok` and
//! histogram `call:<ip:port>` for an answer, counter
//! `call:<ip:port>:timeout` or `call:<ip:port>:failed` otherwise. (The
//! host keeps 32 counter and 8 histogram names per worker; past that a
//! sample is dropped, never an error for the call. An IPv6 address is not
//! a valid metric name: not counted.)
//!
//! The transport is the plugin's own (a tokio client): the helper only
//! picks, bounds, reports and counts.
//!
//! ```no_run
//! use spp_plugin_api::{Host, SidCall, SidCallError};
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! async fn ask(host: &Host, question: &[u8]) -> Result<Vec<u8>, SidCallError<std::io::Error>> {
//!     SidCall::new(64001, 1)
//!         .timeout(Duration::from_millis(200))
//!         .run(host, |addr| async move {
//!             let mut s = tokio::net::TcpStream::connect(addr).await?;
//!             s.write_all(question).await?;
//!             let mut answer = Vec::new();
//!             s.read_to_end(&mut answer).await?;
//!             Ok(answer)
//!         })
//!         .await
//! }
//! ```

use crate::plugin::{Host, Route, RouteError};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Attempts of a [`SidCall`] by default.
pub const DEFAULT_TRIES: u32 = 2;
/// A [`SidCall`]'s whole timeout by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// How many more picks an attempt makes when L5 hands back the instance
/// that just failed.
const REPICKS: u32 = 2;
/// The L5 result reported for a failed attempt (>= 0 is a success).
const L5_FAILED: i32 = -1;
/// The L5 result reported for an answer.
const L5_OK: i32 = 0;
/// Metric names cached per thread; past that they are formatted per use.
const NAME_CACHE_MAX: usize = 256;
/// Every call metric's name starts with this (as the worker's calls).
const CALL_METRIC_PREFIX: &str = "call:";

/// Why a [`SidCall`] or [`timed_call`] gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SidCallError<E> {
    /// L5 had no instance to call.
    #[error("no route to the sid: {0:?}")]
    NoRoute(RouteError),
    /// The (last) attempt passed its share of the timeout.
    #[error("the call timed out")]
    TimedOut,
    /// The (last) attempt failed.
    #[error("the call failed: {0}")]
    Failed(E),
}

/// A call to an L5 sid: each attempt on a fresh pick, bounded by its share
/// of the whole timeout, reported to L5 and counted per destination.
#[derive(Clone, Copy, Debug)]
pub struct SidCall {
    modid: u32,
    cmdid: u32,
    key: Option<u64>,
    tries: u32,
    timeout: Duration,
}

impl SidCall {
    /// A call to sid (`modid`, `cmdid`), on a weighted random instance.
    pub fn new(modid: u32, cmdid: u32) -> Self {
        SidCall {
            modid,
            cmdid,
            key: None,
            tries: DEFAULT_TRIES,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Picks the instance by consistent hash of `key` instead.
    pub fn hash_key(mut self, key: u64) -> Self {
        self.key = Some(key);
        self
    }

    /// Attempts on different picks (at least 1); default 2.
    pub fn tries(mut self, n: u32) -> Self {
        self.tries = n.max(1);
        self
    }

    /// The whole call's timeout, split evenly between the attempts;
    /// default 1 s.
    pub fn timeout(mut self, whole: Duration) -> Self {
        self.timeout = whole;
        self
    }

    /// Runs `attempt` on picked instances until one answers `Ok`, the
    /// tries are used up, or L5 has no instance. The error is the last
    /// attempt's.
    pub async fn run<T, E, F, Fut>(&self, host: &Host, mut attempt: F) -> Result<T, SidCallError<E>>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let share = self.timeout / self.tries;
        let mut last = None;
        let mut failed = None;
        for _ in 0..self.tries {
            let picked = self.pick(host, failed);
            let (route, addr) = match picked {
                Ok(found) => found,
                Err(e) => return Err(last.unwrap_or(SidCallError::NoRoute(e))),
            };
            let start = Instant::now();
            let outcome = super::deadline::bound(share, attempt(addr)).await.ok_or(());
            let latency = start.elapsed();
            let error = match outcome {
                Ok(Ok(v)) => {
                    let _ = host.report(&route, L5_OK, latency);
                    record(host, addr, Outcome::Ok, latency);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    record(host, addr, Outcome::Failed, latency);
                    SidCallError::Failed(e)
                }
                Err(_) => {
                    record(host, addr, Outcome::TimedOut, latency);
                    SidCallError::TimedOut
                }
            };
            let _ = host.report(&route, L5_FAILED, latency);
            last = Some(error);
            failed = Some(addr);
        }
        Err(last.unwrap_or(SidCallError::TimedOut))
    }

    /// An instance with an address, preferring one other than `avoid`.
    fn pick(
        &self,
        host: &Host,
        avoid: Option<SocketAddr>,
    ) -> Result<(Route, SocketAddr), RouteError> {
        let get = || {
            let route = match self.key {
                Some(key) => host.get_route_hash(self.modid, self.cmdid, key),
                None => host.get_route(self.modid, self.cmdid),
            }?;
            let addr = route.addr().ok_or(RouteError::NoServer)?;
            Ok((route, addr))
        };
        let mut found = get()?;
        for _ in 0..REPICKS {
            if Some(found.1) != avoid {
                break;
            }
            found = get()?;
        }
        Ok(found)
    }
}

/// Runs `fut` (a call to `dest`) bounded by `timeout`, counted per
/// destination like a [`SidCall`] attempt (no L5).
pub async fn timed_call<T, E>(
    host: &Host,
    dest: SocketAddr,
    timeout: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, SidCallError<E>> {
    let start = Instant::now();
    let outcome = super::deadline::bound(timeout, fut).await.ok_or(());
    let latency = start.elapsed();
    match outcome {
        Ok(Ok(v)) => {
            record(host, dest, Outcome::Ok, latency);
            Ok(v)
        }
        Ok(Err(e)) => {
            record(host, dest, Outcome::Failed, latency);
            Err(SidCallError::Failed(e))
        }
        Err(_) => {
            record(host, dest, Outcome::TimedOut, latency);
            Err(SidCallError::TimedOut)
        }
    }
}

/// What an attempt's metric records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Outcome {
    /// Counter `:ok` (with the histogram).
    Ok,
    /// The latency histogram (no suffix).
    Latency,
    /// Counter `:timeout`.
    TimedOut,
    /// Counter `:failed`.
    Failed,
}

impl Outcome {
    fn suffix(self) -> &'static str {
        match self {
            Outcome::Ok => ":ok",
            Outcome::Latency => "",
            Outcome::TimedOut => ":timeout",
            Outcome::Failed => ":failed",
        }
    }
}

thread_local! {
    static NAMES: RefCell<FxHashMap<(SocketAddr, Outcome), Rc<str>>> =
        RefCell::new(FxHashMap::default());
}

/// The metric name of `suffix` for `dest`.
pub(crate) fn metric_name(dest: SocketAddr, suffix: &str) -> String {
    format!("{CALL_METRIC_PREFIX}{dest}{suffix}")
}

/// The metric name of (`dest`, `outcome`), cached per thread (up to
/// [`NAME_CACHE_MAX`] names).
fn name(dest: SocketAddr, outcome: Outcome) -> Rc<str> {
    let make = || Rc::<str>::from(metric_name(dest, outcome.suffix()));
    NAMES
        .try_with(|names| {
            let mut names = names.borrow_mut();
            if let Some(known) = names.get(&(dest, outcome)) {
                return known.clone();
            }
            let made = make();
            if names.len() < NAME_CACHE_MAX {
                names.insert((dest, outcome), made.clone());
            }
            made
        })
        .unwrap_or_else(|_| make())
}

/// Counts one attempt to `dest`.
fn record(host: &Host, dest: SocketAddr, outcome: Outcome, latency: Duration) {
    let _ = host.count(&name(dest, outcome), 1);
    if outcome == Outcome::Ok {
        let _ = host.record_latency(&name(dest, Outcome::Latency), latency);
    }
}
