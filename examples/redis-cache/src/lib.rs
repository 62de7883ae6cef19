//! # The redis cache example plugin (`libspp_redis_cache.so`)
//!
//! Answers each key from a real redis-server through a tokio redis client
//! (the `redis` crate's multiplexed `ConnectionManager`), and fills a miss
//! from a slow service found through L5: the model for an async Rust
//! plugin (group `mode = "async"`) that uses crates of the tokio
//! ecosystem. [`RedisCache::process`] is an `async fn`: while one request
//! awaits redis or the backend, the worker serves others.
//!
//! ## Protocol
//! Clients speak the echo framing: a 4-byte big-endian payload length,
//! then the payload ([`spp_plugin_api::framing::u32_be_prefixed`]). The
//! payload is a key (bytes, used as the redis key as is); the answer's
//! payload is its value. The slow service speaks the same framing: it is
//! sent the request frame as it came, and its answer's payload is the
//! value (any spp service does, e.g. `examples/sleep-echo` registered
//! under the sid: the value of a key is then the key). When no value can
//! be had, the client gets the frame `cache-error:<reason>`:
//!
//! | reason            | meaning                                                      |
//! |-------------------|--------------------------------------------------------------|
//! | `redis-timeout`   | a redis command did not answer within `timeout_ms`           |
//! | `redis-down`      | redis-server cannot be reached (refused, reset, closed)      |
//! | `redis-failed`    | redis answered an error                                      |
//! | `value-too-large` | the value in redis is larger than `max_payload`              |
//! | `backend-no-route`| L5 has no instance of the sid, the sid is unknown, or L5 is off |
//! | `backend-timeout` | the miss's backend call passed `backend_timeout_ms`          |
//! | `backend-failed`  | every attempt of the backend call failed (refused, closed, answer too large) |
//! | `task-timeout`    | the request passed the group's `task_timeout` (last resort)  |
//! | `panicked`        | the request's task panicked (`task-failed`: another failure) |
//!
//! and from the proxy, when a request could not reach a worker,
//! `cache-error:queue-full`, `no-worker`, `worker-died`, `timeout` or
//! `poison`, as `examples/relay` does.
//!
//! ## What a request does (worker)
//! 1. `GET key` ([`store`]). A value: a hit, answered.
//! 2. No value: a miss. The key's request frame goes to an instance of
//!    the sid ([`spp_plugin_api::SidCall`]: L5 picks the instance, each
//!    attempt's outcome and latency is reported to L5, a failed attempt is
//!    retried on another pick, `tries` attempts within
//!    `backend_timeout_ms`; [`backend`] is one attempt).
//! 3. `SET key value EX ttl_s`, then the value is answered. A failed SET
//!    (counted, `set_failed`) still answers the value: the next request
//!    for the key is a miss again.
//!
//! Redis down or slow answers `cache-error:redis-*` within `timeout_ms`
//! (the backend is not asked: the cache protects it, it does not expose
//! it); nothing waits unbounded: every redis command and the backend call
//! have their own timeout, and the group's `task_timeout` stands behind
//! them ([`AsyncPlugin::failed`] answers `cache-error:task-timeout`).
//! Concurrent misses of one key each ask the backend (no coalescing).
//!
//! ## `plugin_conf`
//! `redis=127.0.0.1:6379 modid=64001 cmdid=1 ttl_s=60 timeout_ms=200`
//! (spaces or commas; every key and its default in [`conf`]). A worker
//! needs `modid`/`cmdid`; the proxy needs none (`max_payload` bounds
//! request frames there, default 1 MiB).
//!
//! ## Metrics (`spp stat`, Prometheus)
//! Counters `hits`, `misses`, `errors` (error frames sent) and
//! `set_failed` ([`names`]); the async layer's per-destination `call:*`
//! metrics for every backend attempt and its `async_task_*` counters; the
//! L5 table every attempt's outcome.
//!
//! ## Try it
//! ```text
//! cargo build --release
//! redis-server --port 6379 --save '' --appendonly no &
//! # a slow service registering sid 64001:1, e.g. examples/sleep-echo
//! # with `[l5] modid = 64001, cmdid = 1, registry_dir = "/tmp/spp-l5"`
//! ./target/release/spp start -c examples/redis-cache/spp.toml
//! ```
//! `examples/redis-cache/spp.toml` listens on 127.0.0.1:7977 and only
//! consumes L5 routes (embedded registry in /tmp/spp-l5).

pub mod backend;
pub mod conf;
pub mod error;
pub mod store;

use crate::conf::{Conf, Sid};
use crate::error::CacheError;
use crate::store::Store;
use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{
    export_async_plugin, AfterException, AsyncPlugin, Conn, ExceptionReason, Host, Input, Level,
    OnException, Reply, Request, RouteError, SidCall, SidCallError, TaskFailure,
};

/// The plugin's counters.
pub mod names {
    /// Requests answered from redis.
    pub const HITS: &str = "hits";
    /// Requests redis had no value for (answered from the backend, or an
    /// error when the backend failed).
    pub const MISSES: &str = "misses";
    /// `cache-error:` frames sent (from workers; the proxy's own are
    /// counted there too).
    pub const ERRORS: &str = "errors";
    /// Misses whose value was answered but could not be stored.
    pub const SET_FAILED: &str = "set_failed";
}

/// What every error answer's payload starts with.
pub const ERROR_PREFIX: &str = "cache-error:";

/// The error frame's payload for `reason`.
pub fn error_payload(reason: &str) -> Vec<u8> {
    format!("{ERROR_PREFIX}{reason}").into_bytes()
}

/// The redis cache plugin.
pub struct RedisCache {
    host: Host,
    conf: Conf,
    store: Store,
}

impl RedisCache {
    /// The answer frame for the request frame `frame`.
    async fn answer(&self, frame: bytes::Bytes) -> Result<Vec<u8>, CacheError> {
        // The proxy framed it: at least the length prefix.
        let key = frame.slice(U32_PREFIX_LEN.min(frame.len())..);
        if let Some(value) = self.store.get(&key).await? {
            if value.len() > self.conf.max_payload {
                return Err(CacheError::ValueTooLarge(value.len()));
            }
            self.count(names::HITS);
            return Ok(encode_u32_be_prefixed(&value));
        }
        self.count(names::MISSES);
        let answer = self.fetch(frame).await?;
        let value = answer.get(U32_PREFIX_LEN..).unwrap_or_default();
        if let Err(e) = self.store.set(&key, value).await {
            self.count(names::SET_FAILED);
            self.log_failure("SET after a miss", &e);
        }
        Ok(answer)
    }

    /// The backend's answer frame for the request frame `frame`.
    async fn fetch(&self, frame: bytes::Bytes) -> Result<Vec<u8>, CacheError> {
        let Some(Sid { modid, cmdid }) = self.conf.sid else {
            return Err(CacheError::NoRoute(RouteError::System.code()));
        };
        let max_payload = self.conf.max_payload;
        SidCall::new(modid, cmdid)
            .tries(self.conf.tries)
            .timeout(self.conf.backend_timeout)
            .run(&self.host, move |addr| {
                backend::fetch(addr, frame.clone(), max_payload)
            })
            .await
            .map_err(|e| match e {
                SidCallError::NoRoute(why) => CacheError::NoRoute(why.code()),
                SidCallError::TimedOut => CacheError::BackendTimeout,
                SidCallError::Failed(e) => CacheError::Backend(e),
            })
    }

    /// The error frame for `err`, counted and logged.
    fn error_reply(&self, err: &CacheError) -> Reply {
        self.count(names::ERRORS);
        self.log_failure("request", err);
        Reply::bytes(encode_u32_be_prefixed(&error_payload(err.reason())))
    }

    fn count(&self, name: &str) {
        // A refused metric (no free slot) must not fail the request.
        let _ = self.host.count(name, 1);
    }

    fn log_failure(&self, what: &str, err: &CacheError) {
        // Debug: a dead redis under load must not flood the log; the
        // counters show the failures.
        self.host
            .log(Level::Debug, &format!("redis-cache: {what} failed: {err}"));
    }
}

impl AsyncPlugin for RedisCache {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        let conf = match conf::parse(conf) {
            Ok(c) if c.sid.is_none() && !host.is_proxy() => {
                Err("modid and cmdid (the sid that fills misses) are required in a worker".into())
            }
            other => other,
        };
        let made = conf.and_then(|conf| {
            let store = Store::new(conf.redis, conf.timeout, conf.ttl_s)?;
            Ok(RedisCache { host, conf, store })
        });
        made.map_err(|why| {
            host.log(
                Level::Error,
                &format!("redis-cache: bad plugin_conf: {why}"),
            );
            1
        })
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.conf.max_payload)
    }

    async fn process(&self, req: Request) -> Reply {
        match self.answer(req.into_body()).await {
            Ok(frame) => Reply::bytes(frame),
            Err(err) => self.error_reply(&err),
        }
    }

    fn failed(&self, _flow: u64, why: TaskFailure) -> Reply {
        let err = match why {
            TaskFailure::TimedOut => CacheError::TaskTimeout,
            TaskFailure::Panicked => CacheError::Panicked,
            _ => CacheError::TaskFailed,
        };
        self.error_reply(&err)
    }
}

impl OnException for RedisCache {
    fn exception(
        &self,
        conn: Conn<'_>,
        _state: &mut (),
        _req: Option<&[u8]>,
        why: ExceptionReason,
    ) -> AfterException {
        let reason = why.name();
        self.count(names::ERRORS);
        let frame = encode_u32_be_prefixed(&error_payload(reason));
        match self.host.reply(conn.flow(), &frame) {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

export_async_plugin!(RedisCache, hooks: [exception]);
