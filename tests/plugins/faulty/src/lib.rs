//! A test-only plugin: the echo protocol, but a payload can ask for trouble
//! or feed the plugin metrics.
//!
//! | payload               | what `process` does                                   |
//! |-----------------------|-------------------------------------------------------|
//! | `sleep:<ms>[:...]`    | sleeps `<ms>` milliseconds, then echoes               |
//! | `panic`               | panics (caught at the boundary; connection closed)    |
//! | `abort`               | aborts the worker process                             |
//! | `fail`                | returns [`Processed::Close`] (connection closed)      |
//! | `later:<ms>`          | echoes from another thread after `<ms>` (deferred)    |
//! | `count:<name>:<n>`    | `host.count(name, n)`, then echoes                    |
//! | `lat:<name>:<us>`     | `host.record_latency(name, <us> µs)`, then echoes     |
//! | anything else         | echoes                                                |
//!
//! Routing (`spp_route`): a payload `to:<n>:...` goes to group `<n>`,
//! everything else to group 1.
//!
//! A `count:`/`lat:` call the host refuses is answered
//! `refused:<reason>` instead of the echo, so a test sees why.
//!
//! `plugin_conf = "init_fail"` makes `init` fail with code 7.
//! The exception hook answers a request that could not be served with a
//! frame naming the reason ([`BUSY_FULL`], [`BUSY_NO_WORKER`],
//! [`BUSY_DIED`], [`BUSY_TIMEOUT`], [`BUSY_POISON`], [`BUSY_OTHER`]; all start with
//! [`BUSY_PREFIX`]) and keeps the connection.

use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{
    export_plugin, AfterException, Conn, ExceptionReason, Host, HostError, Input, OnException,
    OnRoute, Plugin, Processed,
};
use std::time::Duration;

/// The largest payload accepted.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Exit code `init` returns for `plugin_conf = "init_fail"`.
pub const INIT_FAIL_CODE: i32 = 7;

/// What every exception answer starts with.
pub const BUSY_PREFIX: &[u8] = b"busy";
/// Exception answer: the request ring was full.
pub const BUSY_FULL: &[u8] = b"busy:full";
/// Exception answer: no live worker in the group.
pub const BUSY_NO_WORKER: &[u8] = b"busy:noworker";
/// Exception answer: the worker died holding the request.
pub const BUSY_DIED: &[u8] = b"busy:died";
/// Exception answer: the request waited past `msg_timeout`.
pub const BUSY_TIMEOUT: &[u8] = b"busy:timeout";
/// Exception answer: refused as a poison request.
pub const BUSY_POISON: &[u8] = b"busy:poison";
/// Exception answer: a reason this plugin does not know.
pub const BUSY_OTHER: &[u8] = b"busy:other";

/// The faulty plugin.
pub struct Faulty {
    host: Host,
}

fn payload(req: &[u8]) -> &[u8] {
    req.get(U32_PREFIX_LEN..).unwrap_or(&[])
}

fn number(text: &[u8]) -> u64 {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Splits `<name>:<number>` at its last colon (names may hold colons).
fn name_and_number(rest: &[u8]) -> (&str, u64) {
    let split = rest.iter().rposition(|&b| b == b':');
    let (name, value) = match split {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    (std::str::from_utf8(name).unwrap_or(""), number(value))
}

impl Faulty {
    /// Echoes `req`, or answers why a metric call was refused.
    fn echo_unless_refused(
        &self,
        conn: Conn<'_>,
        req: &[u8],
        outcome: Result<(), HostError>,
    ) -> Processed {
        let answer = match outcome {
            Ok(()) => return Processed::replied(self.host.reply(conn.flow(), req)),
            Err(e) => encode_u32_be_prefixed(format!("refused:{e:?}").as_bytes()),
        };
        Processed::replied(self.host.reply(conn.flow(), &answer))
    }
}

impl Plugin for Faulty {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        if conf.trim() == "init_fail" {
            return Err(INIT_FAIL_CODE);
        }
        Ok(Faulty { host })
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, MAX_PAYLOAD)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let body = payload(req);
        if let Some(rest) = body.strip_prefix(b"sleep:") {
            std::thread::sleep(Duration::from_millis(number(rest)));
        } else if body == b"panic" {
            panic!("asked to panic");
        } else if body == b"abort" {
            std::process::abort();
        } else if body == b"fail" {
            return Processed::Close;
        } else if let Some(rest) = body.strip_prefix(b"later:") {
            let (host, flow, ms, reply) = (self.host, conn.flow(), number(rest), req.to_vec());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = host.reply(flow, &reply);
            });
            return Processed::Done;
        } else if let Some(rest) = body.strip_prefix(b"count:") {
            let (name, delta) = name_and_number(rest);
            let outcome = self.host.count(name, delta);
            return self.echo_unless_refused(conn, req, outcome);
        } else if let Some(rest) = body.strip_prefix(b"lat:") {
            let (name, micros) = name_and_number(rest);
            let outcome = self
                .host
                .record_latency(name, Duration::from_micros(micros));
            return self.echo_unless_refused(conn, req, outcome);
        }
        Processed::replied(self.host.reply(conn.flow(), req))
    }
}

impl OnException for Faulty {
    fn exception(
        &self,
        conn: Conn<'_>,
        _state: &mut (),
        _req: Option<&[u8]>,
        why: ExceptionReason,
    ) -> AfterException {
        let answer = match why {
            ExceptionReason::QueueFull => BUSY_FULL,
            ExceptionReason::NoWorker => BUSY_NO_WORKER,
            ExceptionReason::WorkerDied => BUSY_DIED,
            ExceptionReason::Timeout => BUSY_TIMEOUT,
            ExceptionReason::Poison => BUSY_POISON,
            ExceptionReason::Other(_) => BUSY_OTHER,
        };
        match self
            .host
            .reply(conn.flow(), &encode_u32_be_prefixed(answer))
        {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

impl OnRoute for Faulty {
    fn route(&self, _conn: Conn<'_>, _state: &mut (), req: &[u8]) -> u32 {
        match payload(req).strip_prefix(b"to:") {
            Some(rest) => u32::try_from(number(rest)).unwrap_or(u32::MAX),
            None => 1,
        }
    }
}

export_plugin!(Faulty, hooks: [exception, route]);
