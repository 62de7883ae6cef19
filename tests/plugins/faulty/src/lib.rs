//! A test-only plugin: the echo protocol, but a payload can ask for trouble.
//!
//! | payload            | what `process` does                              |
//! |--------------------|--------------------------------------------------|
//! | `sleep:<ms>[:...]` | sleeps `<ms>` milliseconds, then echoes          |
//! | `panic`            | panics (caught at the boundary; connection closed)|
//! | `abort`            | aborts the worker process                        |
//! | `fail`             | returns an error (connection closed)             |
//! | `later:<ms>`       | echoes from another thread after `<ms>` (deferred)|
//! | anything else      | echoes                                           |
//!
//! `plugin_conf = "init_fail"` makes `init` fail with code 7.
//! The exception hook answers a request that could not be queued with the
//! frame `busy` and keeps the connection.

use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{export_plugin, AfterException, Conn, ExceptionReason, Host, Input, Plugin};
use std::time::Duration;

/// The largest payload accepted.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Exit code `init` returns for `plugin_conf = "init_fail"`.
pub const INIT_FAIL_CODE: i32 = 7;

/// The faulty plugin.
pub struct Faulty {
    host: Host,
}

fn payload(req: &[u8]) -> &[u8] {
    req.get(U32_PREFIX_LEN..).unwrap_or(&[])
}

fn millis(text: &[u8]) -> u64 {
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

impl Plugin for Faulty {
    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        if conf.trim() == "init_fail" {
            return Err(INIT_FAIL_CODE);
        }
        Ok(Faulty { host })
    }

    fn input(&self, _conn: Conn<'_>, buf: &[u8]) -> Input {
        u32_be_prefixed(buf, MAX_PAYLOAD)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Result<(), ()> {
        let body = payload(req);
        if let Some(rest) = body.strip_prefix(b"sleep:") {
            std::thread::sleep(Duration::from_millis(millis(rest)));
        } else if body == b"panic" {
            panic!("asked to panic");
        } else if body == b"abort" {
            std::process::abort();
        } else if body == b"fail" {
            return Err(());
        } else if let Some(rest) = body.strip_prefix(b"later:") {
            let (host, flow, ms, reply) = (self.host, conn.flow(), millis(rest), req.to_vec());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = host.reply(flow, &reply);
            });
            return Ok(());
        }
        self.host.reply(conn.flow(), req).map_err(|_| ())
    }

    fn exception(
        &self,
        conn: Conn<'_>,
        _req: Option<&[u8]>,
        _why: ExceptionReason,
    ) -> AfterException {
        match self
            .host
            .reply(conn.flow(), &encode_u32_be_prefixed(b"busy"))
        {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

export_plugin!(Faulty);
