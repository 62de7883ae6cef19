//! # The relay as async Rust (`libspp_relay_async.so`)
//!
//! `examples/relay` written as an [`AsyncPlugin`]: every request is
//! forwarded to an instance of one L5 service (`modid`, `cmdid`) or to one
//! fixed backend (`addr`), and that backend's answer returned. Where the
//! micro-thread relay asks the host to make the call (`host.call`), this
//! one makes it itself with tokio: `process` is an `async fn` that writes
//! the request to a `tokio::net::TcpStream` taken from the worker's own
//! keep-alive pool ([`pool`]) and awaits the answer frame. In a group with
//! `mode = "async"` each request is a task of the plugin's tokio runtime,
//! so one worker carries thousands of relayed requests at once; the
//! group's `max_in_flight` bounds them, and `task_timeout` bounds each.
//!
//! ## Protocol
//! As `examples/relay`: clients and backends speak the echo framing (a
//! 4-byte big-endian payload length, then the payload); the request frame
//! goes out as it came, the backend's answer frame comes back as it came.
//! When no answer can be had, the client gets the frame
//! `relay-error:<code>`:
//!
//! | code    | meaning                                                   |
//! |---------|-----------------------------------------------------------|
//! | -10000  | L5: no usable instance of the sid                         |
//! | -9999   | the call timed out (`timeout_ms`), or the task ran past the group's `task_timeout` |
//! | -9998   | L5 is off in this spp (no `[l5]` section), or table busy  |
//! | -8999   | L5: the sid is unknown                                    |
//! | -1      | the call failed (refused, reset, closed, answer too large), or the task panicked |
//!
//! and from the proxy, when a request could not reach a relay worker,
//! `relay-error:queue-full`, `relay-error:no-worker`,
//! `relay-error:worker-died`, `relay-error:timeout` or `relay-error:poison`.
//!
//! ## What a request does (worker)
//! `addr=`: one round trip under `timeout_ms` through
//! [`timed_call`] (per-destination `call:<ip:port>` metrics). `modid`/
//! `cmdid`: [`SidCall`] picks an L5 instance, makes the round trip,
//! reports the outcome and latency to L5 and, when it fails, tries once
//! more on another pick (`timeout_ms` split between the two attempts). A
//! round trip takes a connection of the destination's pool (at most
//! `pool` connections, one request each at a time; a call past it waits
//! for one), or opens one. The client always gets exactly one answer per
//! request; a request may be sent twice (the retry, or a reused
//! connection the backend had closed), so backends should treat requests
//! as idempotent.
//!
//! ## What a request costs
//! One task (the future's state: the request's `Bytes`, the answer buffer
//! of the answer's size, a few hundred bytes of bookkeeping), no stack of
//! its own, no thread. Per destination, up to `pool` idle connections
//! with a 16 KiB read buffer each.
//!
//! ## `plugin_conf`
//! `modid=64001 cmdid=1 timeout_ms=500`, or `addr=127.0.0.1:7001
//! timeout_ms=500` for a fixed backend without L5, and `pool=N` (see
//! [`conf`]). A worker needs `modid`/`cmdid` or `addr`; the proxy needs
//! neither (`max_payload` bounds request frames there, default 1 MiB, and
//! answer frames in a worker).
//!
//! ## Metrics (`spp stat`, Prometheus)
//! As `examples/relay`: counters `relay_ok`, `relay_call_failed`,
//! `relay_error`, the histogram `relay_call`; plus `relay_pool_forgotten`
//! (unused destination pools dropped past
//! [`pool::MAX_DESTINATIONS`]), the layer's `call:<ip:port>...` figures
//! per destination and its `async_task_*` counters.
//!
//! ## Try it
//! ```text
//! cargo build --release
//! ./target/release/spp start -c examples/relay-async/spp.toml
//! ```
//! The runtime runs on the worker's own thread, driven by the host; with
//! `SPP_ASYNC_RUNTIME=thread` in the environment of `spp start` it runs on
//! a plugin thread instead (the measurement switch of
//! `docs/PERFORMANCE.md`).

pub mod conf;
pub mod pool;

use std::sync::Arc;
use std::time::Instant;

use crate::conf::Conf;
use crate::pool::{Pool, Pools, RelayError};
use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed};
use spp_plugin_api::{
    export_async_plugin, timed_call, AfterException, AsyncPlugin, Conn, ExceptionReason, Host,
    Input, Level, OnException, OnFini, Reply, Request, RouteError, SidCall, SidCallError, Target,
    TaskFailure,
};

/// L5's code for a timeout, which a timed-out call answers.
pub const CODE_TIMEOUT: i32 = -9999;
/// The code every other call failure answers.
pub const CODE_CALL_FAILED: i32 = -1;
/// Counter: answers relayed.
pub const COUNT_OK: &str = "relay_ok";
/// Counter: calls that failed (after the retry).
pub const COUNT_CALL_FAILED: &str = "relay_call_failed";
/// Counter: error frames sent.
pub const COUNT_ERROR: &str = "relay_error";
/// Counter: unused destination pools forgotten at the bound.
pub const COUNT_POOL_FORGOTTEN: &str = "relay_pool_forgotten";
/// Histogram: latency of the calls that succeeded.
pub const HIST_CALL: &str = "relay_call";

/// The error frame's payload for `code`.
pub fn error_payload(code: impl std::fmt::Display) -> Vec<u8> {
    format!("relay-error:{code}").into_bytes()
}

/// The `relay-error` code of a failed call.
pub fn code_of(err: &SidCallError<RelayError>) -> i32 {
    match err {
        SidCallError::NoRoute(why) => why.code(),
        SidCallError::TimedOut => CODE_TIMEOUT,
        SidCallError::Failed(_) => CODE_CALL_FAILED,
    }
}

/// The async relay plugin.
pub struct RelayAsync {
    host: Host,
    conf: Conf,
    /// The pool of a fixed `addr=` (no map lookup per request).
    fixed: Option<Arc<Pool>>,
    /// The pools of L5 instances.
    pools: Pools,
}

impl RelayAsync {
    fn count(&self, name: &str) {
        // A refused metric (no free slot) must not fail the request.
        let _ = self.host.count(name, 1);
    }

    fn error_reply(&self, code: i32) -> Reply {
        self.count(COUNT_ERROR);
        Reply::bytes(encode_u32_be_prefixed(&error_payload(code)))
    }

    /// One call to `dest` through its pool.
    async fn call_pooled(
        &self,
        dest: std::net::SocketAddr,
        req: &[u8],
    ) -> Result<Vec<u8>, RelayError> {
        let (pool, forgotten) = self.pools.of(dest);
        if forgotten > 0 {
            let _ = self.host.count(COUNT_POOL_FORGOTTEN, forgotten as u64);
        }
        pool.call(req).await
    }

    /// Relays `req` to `target`: the answer frame.
    async fn relay(&self, target: Target, req: &[u8]) -> Result<Vec<u8>, SidCallError<RelayError>> {
        let timeout = self.conf.timeout;
        match target {
            Target::Addr(dest) => {
                let call = async {
                    match &self.fixed {
                        Some(pool) => pool.call(req).await,
                        None => self.call_pooled(dest, req).await,
                    }
                };
                timed_call(&self.host, dest, timeout, call).await
            }
            Target::Sid { modid, cmdid } => {
                SidCall::new(modid, cmdid)
                    .timeout(timeout)
                    .run(&self.host, |dest| self.call_pooled(dest, req))
                    .await
            }
            Target::SidHash { modid, cmdid, key } => {
                SidCall::new(modid, cmdid)
                    .hash_key(key)
                    .timeout(timeout)
                    .run(&self.host, |dest| self.call_pooled(dest, req))
                    .await
            }
        }
    }

    fn log_failure(&self, target: Target, err: &SidCallError<RelayError>) {
        // Debug: a dead backend under load must not flood the log; the
        // counters and the per-destination figures show the failures.
        self.host.log(
            Level::Debug,
            &format!("relay-async: call to {target:?} failed: {err}"),
        );
    }
}

impl AsyncPlugin for RelayAsync {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        let conf = match conf::parse(conf) {
            Ok(c) if c.target.is_none() && !host.is_proxy() => {
                Err("modid and cmdid are required in a worker (or addr=IP:PORT)".to_string())
            }
            other => other,
        };
        match conf {
            Ok(conf) => {
                let fixed = match conf.target {
                    Some(Target::Addr(dest)) => {
                        Some(Arc::new(Pool::new(dest, conf.pool, conf.max_payload)))
                    }
                    _ => None,
                };
                Ok(RelayAsync {
                    host,
                    fixed,
                    pools: Pools::new(conf.pool, conf.max_payload),
                    conf,
                })
            }
            Err(why) => {
                host.log(
                    Level::Error,
                    &format!("relay-async: bad plugin_conf: {why}"),
                );
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.conf.max_payload)
    }

    async fn process(&self, req: Request) -> Reply {
        let Some(target) = self.conf.target else {
            return self.error_reply(RouteError::System.code());
        };
        let started = Instant::now();
        match self.relay(target, req.body()).await {
            Ok(answer) => {
                let _ = self.host.record_latency(HIST_CALL, started.elapsed());
                self.count(COUNT_OK);
                Reply::bytes(answer)
            }
            Err(err) => {
                self.count(COUNT_CALL_FAILED);
                self.log_failure(target, &err);
                self.error_reply(code_of(&err))
            }
        }
    }

    fn failed(&self, _flow: u64, why: TaskFailure) -> Reply {
        let code = match why {
            TaskFailure::TimedOut => CODE_TIMEOUT,
            _ => CODE_CALL_FAILED,
        };
        self.error_reply(code)
    }
}

impl OnException for RelayAsync {
    fn exception(
        &self,
        conn: Conn<'_>,
        _state: &mut (),
        _req: Option<&[u8]>,
        why: ExceptionReason,
    ) -> AfterException {
        let reason = why.name();
        let frame = encode_u32_be_prefixed(&error_payload(reason));
        match self.host.reply(conn.flow(), &frame) {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

impl OnFini for RelayAsync {
    fn fini(&self) {
        self.pools.clear();
    }
}

export_async_plugin!(RelayAsync, hooks: [exception, fini]);
