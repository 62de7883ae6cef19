//! # The L5 relay example plugin (`libspp_relay.so`)
//!
//! Forwards every request to an instance of one L5 service (sid =
//! `modid`, `cmdid`) and returns that instance's answer: the model for a
//! plugin that calls other services through spp's L5 routing.
//!
//! ## Protocol
//! Clients and backends speak the echo framing: a 4-byte big-endian
//! payload length, then the payload
//! ([`spp_plugin_api::framing::u32_be_prefixed`]). The relay sends the
//! request frame as it came and answers with the backend's answer frame as
//! it came. When no answer can be had, the client gets the frame
//! `relay-error:<code>`:
//!
//! | code    | meaning                                                   |
//! |---------|-----------------------------------------------------------|
//! | -10000  | L5: no usable instance of the sid                         |
//! | -9999   | the call timed out (`timeout_ms`)                         |
//! | -9998   | L5 is off in this spp (no `[l5]` section), or table busy  |
//! | -8999   | L5: the sid is unknown                                    |
//! | -1      | the call failed (refused, reset, closed, answer too large)|
//!
//! and from the proxy, when a request could not reach a relay worker,
//! `relay-error:queue-full`, `relay-error:no-worker`,
//! `relay-error:worker-died`, `relay-error:timeout` or `relay-error:poison`
//! (bytes that killed two workers; sent at once, so on
//! a connection with requests pipelined it may overtake earlier answers).
//!
//! ## What a request does (worker)
//! 1. `host.get_route(modid, cmdid)`: a weighted-random instance from the
//!    machine's shared route table (no lock, no syscall).
//! 2. Connect (or reuse this thread's connection to it), send, read one
//!    answer frame, everything bounded by `timeout_ms`.
//! 3. `host.report(route, 0 | -1, latency)`: this is what moves traffic
//!    away from failing instances and back when they recover.
//! 4. On a failure, one retry on another instance (`get_route` again,
//!    re-drawn a few times to avoid the one that failed), then the error
//!    frame. The client always gets exactly one answer per request.
//!
//! A worker relays one request at a time and blocks for up to two calls
//! (`2 × timeout_ms`): give the group enough workers for the concurrency
//! you need. A request is sent again on the retry (and, once, when a reused
//! connection turns out to have been closed by the backend while idle), so
//! backends should treat requests as idempotent.
//!
//! ## `plugin_conf`
//! `modid=64001 cmdid=1 timeout_ms=500` (spaces or commas; see [`conf`]).
//! `modid`/`cmdid` are required in a worker; the proxy needs neither
//! (`max_payload` bounds request frames there, default 1 MiB, and answer
//! frames in a worker).
//!
//! ## Metrics (`spp stat`, Prometheus)
//! Counters `relay_ok`, `relay_call_failed`, `relay_retry`, `relay_error`
//! (error frames sent), and the histogram `relay_call` (latency of the
//! calls that succeeded).
//!
//! ## Try it
//! ```text
//! cargo build --release
//! # two backends registering sid 64001:1 (see issue 5's tests for configs)
//! ./target/release/spp start -c examples/relay/spp.toml
//! ```
//! `examples/relay/spp.toml` listens on 127.0.0.1:7973 and only consumes
//! L5 routes (embedded registry in /tmp/spp-l5).

pub mod call;
pub mod conf;

use crate::call::CallError;
use crate::conf::Conf;
use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed};
use spp_plugin_api::{
    export_plugin, AfterException, Conn, ExceptionReason, Host, Input, Level, OnException, OnFini,
    Plugin, Processed, Route, RouteError,
};
use std::net::SocketAddr;
use std::time::Instant;

/// Calls per request at most: the first and one retry.
pub const ATTEMPTS: usize = 2;
/// `get_route` draws at most, when retrying, to find an instance other
/// than the one that failed (with one instance left, it is used again).
pub const REDRAWS: usize = 8;

/// The relay plugin.
pub struct Relay {
    host: Host,
    conf: Conf,
}

/// The error frame's payload for `code`.
pub fn error_payload(code: impl std::fmt::Display) -> Vec<u8> {
    format!("relay-error:{code}").into_bytes()
}

impl Relay {
    /// Relays `req` to the sid; the answer frame, or the code of the last
    /// failure.
    fn relay(&self, (modid, cmdid): (u32, u32), req: &[u8]) -> Result<Vec<u8>, i32> {
        let mut failed: Option<SocketAddr> = None;
        let mut last = call::CODE_CALL_FAILED;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                self.count("relay_retry");
            }
            let route = self.pick(modid, cmdid, failed).map_err(|e| e.code())?;
            let Some(addr) = route.addr() else {
                // The host handed an address of an unknown family: nothing
                // to call, nothing to report.
                last = RouteError::System.code();
                continue;
            };
            let started = Instant::now();
            let outcome = call::call(addr, req, self.conf.timeout, self.conf.max_payload);
            let latency = started.elapsed();
            match outcome {
                Ok(answer) => {
                    let _ = self.host.report(&route, 0, latency);
                    let _ = self.host.record_latency("relay_call", latency);
                    self.count("relay_ok");
                    return Ok(answer);
                }
                Err(err) => {
                    let _ = self.host.report(&route, -1, latency);
                    self.count("relay_call_failed");
                    self.log_failure(addr, &err);
                    last = err.code();
                    failed = Some(addr);
                }
            }
        }
        Err(last)
    }

    /// A route for the sid, avoiding `avoid` if another instance comes up
    /// within [`REDRAWS`] draws.
    fn pick(&self, modid: u32, cmdid: u32, avoid: Option<SocketAddr>) -> Result<Route, RouteError> {
        let mut route = self.host.get_route(modid, cmdid)?;
        for _ in 1..REDRAWS {
            if avoid.is_none() || route.addr() != avoid {
                break;
            }
            route = self.host.get_route(modid, cmdid)?;
        }
        Ok(route)
    }

    fn count(&self, name: &str) {
        // A refused metric (no free slot) must not fail the request.
        let _ = self.host.count(name, 1);
    }

    fn log_failure(&self, addr: SocketAddr, err: &CallError) {
        // Debug: a dead backend under load must not flood the log; the
        // counters and the L5 table show the failures.
        self.host.log(
            Level::Debug,
            &format!("relay: call to {addr} failed: {err}"),
        );
    }
}

impl Plugin for Relay {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        let conf = match conf::parse(conf) {
            Ok(c) if c.sid.is_none() && !host.is_proxy() => {
                Err("modid and cmdid are required in a worker".to_string())
            }
            other => other,
        };
        match conf {
            Ok(conf) => Ok(Relay { host, conf }),
            Err(why) => {
                host.log(Level::Error, &format!("relay: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.conf.max_payload)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let answer = match self.conf.sid {
            Some(sid) => self.relay(sid, req),
            None => Err(RouteError::System.code()),
        };
        let frame = answer.unwrap_or_else(|code| {
            self.count("relay_error");
            encode_u32_be_prefixed(&error_payload(code))
        });
        Processed::replied(self.host.reply(conn.flow(), &frame))
    }
}

impl OnException for Relay {
    fn exception(
        &self,
        conn: Conn<'_>,
        _state: &mut (),
        _req: Option<&[u8]>,
        why: ExceptionReason,
    ) -> AfterException {
        let reason = match why {
            ExceptionReason::QueueFull => "queue-full",
            ExceptionReason::NoWorker => "no-worker",
            ExceptionReason::WorkerDied => "worker-died",
            ExceptionReason::Timeout => "timeout",
            ExceptionReason::Poison => "poison",
            ExceptionReason::Other(_) => "unavailable",
        };
        let frame = encode_u32_be_prefixed(&error_payload(reason));
        match self.host.reply(conn.flow(), &frame) {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

impl OnFini for Relay {
    fn fini(&self) {
        call::forget_all();
    }
}

export_plugin!(Relay, hooks: [exception, fini]);
