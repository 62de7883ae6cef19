//! # The L5 relay example plugin (`libspp_relay.so`)
//!
//! Forwards every request to an instance of one L5 service (sid =
//! `modid`, `cmdid`), or to one fixed backend (`addr`), and returns that
//! backend's answer: the model for a plugin that calls other services.
//! It runs on micro-threads (group `mode = "microthread"`): `process` reads
//! as blocking code ("send, wait for the answer, reply"), but
//! [`Host::call`] suspends only the calling request, so one worker carries
//! thousands of relayed requests at once.
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
//! | -1      | the call failed (refused, reset, closed, answer too large or malformed), or the group is not in micro-thread mode (calls are unsupported there) |
//!
//! and from the proxy, when a request could not reach a relay worker,
//! `relay-error:queue-full`, `relay-error:no-worker`,
//! `relay-error:worker-died`, `relay-error:timeout` or `relay-error:poison`
//! (bytes that killed two workers; sent at once, so on
//! a connection with requests pipelined it may overtake earlier answers).
//!
//! ## What a request does (worker)
//! One [`Host::call`]: TCP, the answer's end told by the same length-prefix
//! check as requests, bounded by `timeout_ms`. The host does the rest: it
//! picks an L5 instance, reuses a pooled keep-alive connection to it,
//! reports the outcome and latency to L5 (what moves traffic away from
//! failing instances and back when they recover) and, for a sid, retries
//! once on another instance when the first fails (each attempt gets half
//! of `timeout_ms`). The client always gets exactly one answer per
//! request. A request may be sent twice (the retry), so backends should
//! treat requests as idempotent.
//!
//! ## What a request costs
//! While it waits downstream, a request holds one micro-thread: its stack
//! (the group's `stack_size`, 64 KiB by default, plus a guard page), the
//! copy of the request bytes, and ~100 bytes of bookkeeping (see
//! `worker/src/microthread/mod.rs`), plus here one answer buffer of
//! `4 + max_payload` bytes (reused; its pages become resident only as far
//! as answers fill them; [`buffers`]). No thread blocks: the group's
//! `max_in_flight` bounds how many requests one worker carries at once.
//! In a plain group, calls are unsupported and every request answers
//! `relay-error:-1` at once.
//!
//! ## `plugin_conf`
//! `modid=64001 cmdid=1 timeout_ms=500`, or `addr=127.0.0.1:7001
//! timeout_ms=500` for a fixed backend without L5 (spaces or commas; see
//! [`conf`]). A worker needs `modid`/`cmdid` or `addr`; the proxy needs
//! neither (`max_payload` bounds request frames there, default 1 MiB, and
//! answer frames in a worker).
//!
//! ## Metrics (`spp stat`, Prometheus)
//! Counters `relay_ok` (answers relayed), `relay_call_failed` (calls that
//! failed, after the host's retry), `relay_error` (error frames sent), and
//! the histogram `relay_call` (latency of the calls that succeeded). The
//! host's own downstream statistics show each destination's calls and
//! failures by code, and the L5 table every attempt's outcome.
//!
//! ## Try it
//! ```text
//! cargo build --release
//! # two backends registering sid 64001:1 (see issue 5's tests for configs)
//! ./target/release/spp start -c examples/relay/spp.toml
//! ```
//! `examples/relay/spp.toml` listens on 127.0.0.1:7973 and only consumes
//! L5 routes (embedded registry in /tmp/spp-l5).

pub mod buffers;
pub mod conf;

use crate::conf::Conf;
use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{
    export_plugin, AfterException, Call, CallError, Conn, ExceptionReason, Host, HostError, Input,
    Level, OnException, OnFini, Plugin, Processed, RouteError, Target,
};

/// L5's code for a timeout, which a timed-out call answers.
pub const CODE_TIMEOUT: i32 = -9999;
/// The code every other call failure answers (refused, reset, closed,
/// answer too large or malformed, calls unsupported).
pub const CODE_CALL_FAILED: i32 = -1;

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
    /// Relays `req` to `target` and replies to `flow` with the answer or
    /// an error frame; the reply's outcome.
    fn relay(&self, target: Target, req: &[u8], flow: u64) -> Result<(), HostError> {
        let max_payload = self.conf.max_payload;
        let check = move |buf: &[u8]| u32_be_prefixed(buf, max_payload);
        let mut call = Call::tcp(target, req, &check).timeout(self.conf.timeout);
        if matches!(target, Target::Sid { .. }) {
            call = call.retry();
        }
        let mut answer = buffers::take(U32_PREFIX_LEN + max_payload);
        let replied = match self.host.call(&call, &mut answer) {
            Ok(done) => {
                let _ = self.host.record_latency("relay_call", done.latency);
                self.count("relay_ok");
                self.host.reply(flow, &answer[..done.len])
            }
            Err(err) => {
                self.count("relay_call_failed");
                self.log_failure(target, err);
                self.reply_error(flow, self.code_of(target, err))
            }
        };
        buffers::give(answer);
        replied
    }

    /// The `relay-error` code of a failed call to `target`.
    fn code_of(&self, target: Target, err: CallError) -> i32 {
        match (err, target) {
            // Ask L5 once why: no instance, unknown sid, or L5 off.
            (CallError::NoRoute, Target::Sid { modid, cmdid }) => {
                match self.host.get_route(modid, cmdid) {
                    Err(why) => why.code(),
                    // A route appeared since: the call still had none.
                    Ok(_) => RouteError::NoServer.code(),
                }
            }
            (CallError::Timeout, _) => CODE_TIMEOUT,
            _ => CODE_CALL_FAILED,
        }
    }

    fn reply_error(&self, flow: u64, code: i32) -> Result<(), HostError> {
        self.count("relay_error");
        self.host
            .reply(flow, &encode_u32_be_prefixed(&error_payload(code)))
    }

    fn count(&self, name: &str) {
        // A refused metric (no free slot) must not fail the request.
        let _ = self.host.count(name, 1);
    }

    fn log_failure(&self, target: Target, err: CallError) {
        // Debug: a dead backend under load must not flood the log; the
        // counters, the host's downstream statistics and the L5 table show
        // the failures.
        self.host.log(
            Level::Debug,
            &format!("relay: call to {target:?} failed: {err}"),
        );
    }
}

impl Plugin for Relay {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        let conf = match conf::parse(conf) {
            Ok(c) if c.target.is_none() && !host.is_proxy() => {
                Err("modid and cmdid are required in a worker (or addr=IP:PORT)".to_string())
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
        let replied = match self.conf.target {
            Some(target) => self.relay(target, req, conn.flow()),
            None => self.reply_error(conn.flow(), RouteError::System.code()),
        };
        Processed::replied(replied)
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
        let reason = why.name();
        let frame = encode_u32_be_prefixed(&error_payload(reason));
        match self.host.reply(conn.flow(), &frame) {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

impl OnFini for Relay {
    fn fini(&self) {
        buffers::forget_all();
    }
}

export_plugin!(Relay, hooks: [exception, fini]);
