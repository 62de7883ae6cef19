//! # Echo after an await: the async Rust example (`libspp_sleep_echo_async.so`)
//!
//! The async twin of `examples/sleep-echo`: [`AsyncPlugin::process`] is an
//! `async fn` that awaits `tokio::time::sleep` and then echoes. In a group
//! with `mode = "async"` each request is a task of the plugin's own tokio
//! runtime, so one worker carries thousands of sleeping requests at once
//! (the group's `max_in_flight` bounds them); in a plain or micro-thread
//! group the layer runs each future to completion inside `spp_process`
//! (correct, one request at a time).
//!
//! ## Protocol
//! As `examples/echo`: a 4-byte big-endian payload length, then the
//! payload ([`spp_plugin_api::framing::u32_be_prefixed`]); the answer is
//! the request frame as it came, after the sleep.
//!
//! ## `plugin_conf`
//! `sleep_ms=N` (default [`DEFAULT_SLEEP_MS`]) and `max_payload=N` as
//! echo, separated by spaces or commas.
//!
//! ## Test knobs (payloads)
//! | payload                | what the task does                              |
//! |------------------------|-------------------------------------------------|
//! | `sleep:<ms>:<rest>`    | sleeps `<ms>` instead of `sleep_ms`, then echoes |
//! | starts with `panic`    | awaits once, then panics inside the task         |
//! | anything else          | sleeps `sleep_ms`, then echoes                   |
//!
//! A task that fails is answered by [`AsyncPlugin::failed`] with the frame
//! `async-error:timeout` (it ran past the group's `task_timeout` and was
//! dropped) or `async-error:panic`; the connection stays open, so clients
//! and tests see which failure it was.
//!
//! ## Metrics (`spp stat`, Prometheus)
//! Plugin counters [`COUNT_ANSWERED`] (echoes sent) and [`COUNT_FAILED`]
//! (error frames sent), besides the layer's own `async_task_timed_out`,
//! `async_task_panicked` and `async_task_cancelled`.

use spp_plugin_api::framing::{
    encode_u32_be_prefixed, max_payload_from_conf, u32_be_prefixed, U32_PREFIX_LEN,
};
use spp_plugin_api::{
    export_async_plugin, AsyncPlugin, Conn, Host, Input, Level, Reply, Request, TaskFailure,
};
use std::time::Duration;

/// The largest payload accepted unless `plugin_conf` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;
/// The sleep before each answer unless `plugin_conf` says otherwise.
pub const DEFAULT_SLEEP_MS: u64 = 100;
/// A payload starting with this sleeps the milliseconds that follow it
/// (up to the next `:`).
pub const SLEEP_PREFIX: &[u8] = b"sleep:";
/// A payload starting with this panics inside its task.
pub const PANIC_PREFIX: &[u8] = b"panic";
/// The answer of a task that ran past `task_timeout`.
pub const TIMED_OUT: &[u8] = b"async-error:timeout";
/// The answer of a task that panicked.
pub const PANICKED: &[u8] = b"async-error:panic";
/// The answer of a task that failed in a way this version does not know.
pub const FAILED: &[u8] = b"async-error:failed";
/// Counter: echoes sent.
pub const COUNT_ANSWERED: &str = "echo_answered";
/// Counter: error frames sent by [`AsyncPlugin::failed`].
pub const COUNT_FAILED: &str = "echo_failed";

/// What one request's task does, read from its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Sleep this long, then echo.
    Sleep(Duration),
    /// Await once, then panic.
    Panic,
}

/// The plan of a request whose payload is `payload`; `default` is the
/// configured sleep. A malformed `sleep:` payload sleeps `default`.
pub fn plan(payload: &[u8], default: Duration) -> Plan {
    if payload.starts_with(PANIC_PREFIX) {
        return Plan::Panic;
    }
    let own = payload
        .strip_prefix(SLEEP_PREFIX)
        .and_then(|rest| rest.split(|&b| b == b':').next())
        .and_then(|ms| std::str::from_utf8(ms).ok())
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    Plan::Sleep(own.unwrap_or(default))
}

/// The error frame answering a task that failed for `why`.
pub fn failure_frame(why: TaskFailure) -> Vec<u8> {
    let payload = match why {
        TaskFailure::TimedOut => TIMED_OUT,
        TaskFailure::Panicked => PANICKED,
        _ => FAILED,
    };
    encode_u32_be_prefixed(payload)
}

/// `sleep_ms=N` from `conf`, and the other settings for the framing
/// helper.
fn sleep_from_conf(conf: &str) -> Result<(Duration, String), String> {
    let mut ms = DEFAULT_SLEEP_MS;
    let mut rest = Vec::new();
    for item in conf.split(|c: char| c == ',' || c.is_whitespace()) {
        match item.strip_prefix("sleep_ms=") {
            Some(v) => {
                ms = v
                    .parse()
                    .map_err(|_| format!("sleep_ms={v:?} is not a number"))?
            }
            None if item.is_empty() => {}
            None => rest.push(item),
        }
    }
    Ok((Duration::from_millis(ms), rest.join(" ")))
}

fn parse_conf(conf: &str) -> Result<(Duration, usize), String> {
    let (sleep, rest) = sleep_from_conf(conf)?;
    Ok((sleep, max_payload_from_conf(&rest, DEFAULT_MAX_PAYLOAD)?))
}

/// The async sleep-echo plugin.
pub struct SleepEchoAsync {
    host: Host,
    max_payload: usize,
    sleep: Duration,
}

impl SleepEchoAsync {
    fn count(&self, name: &str) {
        // A refused metric (no free slot) must not fail the request.
        let _ = self.host.count(name, 1);
    }
}

impl AsyncPlugin for SleepEchoAsync {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok((sleep, max_payload)) => Ok(SleepEchoAsync {
                host,
                max_payload,
                sleep,
            }),
            Err(why) => {
                host.log(
                    Level::Error,
                    &format!("sleep-echo-async: bad plugin_conf: {why}"),
                );
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.max_payload)
    }

    async fn process(&self, req: Request) -> Reply {
        let payload = req.body().get(U32_PREFIX_LEN..).unwrap_or_default();
        match plan(payload, self.sleep) {
            Plan::Sleep(pause) => tokio::time::sleep(pause).await,
            Plan::Panic => {
                // After an await, so the panic happens inside a task the
                // runtime has already suspended and resumed.
                tokio::task::yield_now().await;
                panic!("sleep-echo-async: the payload asked for a panic");
            }
        }
        self.count(COUNT_ANSWERED);
        Reply::bytes(req.into_body())
    }

    fn failed(&self, _flow: u64, why: TaskFailure) -> Reply {
        self.count(COUNT_FAILED);
        Reply::bytes(failure_frame(why))
    }
}

export_async_plugin!(SleepEchoAsync);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_is_checked() {
        assert_eq!(
            parse_conf(""),
            Ok((Duration::from_millis(DEFAULT_SLEEP_MS), DEFAULT_MAX_PAYLOAD))
        );
        assert_eq!(
            parse_conf("sleep_ms=5 max_payload=10"),
            Ok((Duration::from_millis(5), 10))
        );
        assert!(parse_conf("sleep_ms=soon").is_err());
        assert!(parse_conf("nap=1").is_err());
    }

    #[test]
    fn payloads_choose_the_plan() {
        let default = Duration::from_millis(100);
        assert_eq!(plan(b"hello", default), Plan::Sleep(default));
        assert_eq!(
            plan(b"sleep:250:x", default),
            Plan::Sleep(Duration::from_millis(250))
        );
        assert_eq!(
            plan(b"sleep:7", default),
            Plan::Sleep(Duration::from_millis(7))
        );
        assert_eq!(plan(b"sleep:soon:x", default), Plan::Sleep(default));
        assert_eq!(plan(b"panic now", default), Plan::Panic);
        assert_eq!(plan(b"", default), Plan::Sleep(default));
    }

    #[test]
    fn failures_have_their_own_frames() {
        assert_eq!(
            failure_frame(TaskFailure::TimedOut),
            encode_u32_be_prefixed(TIMED_OUT)
        );
        assert_eq!(
            failure_frame(TaskFailure::Panicked),
            encode_u32_be_prefixed(PANICKED)
        );
    }
}
