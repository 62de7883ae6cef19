//! Echo after a sleep: the micro-thread example (SPP's "echo after a
//! 100 ms sleep, async" row).
//!
//! Protocol as `examples/echo` (a 4-byte big-endian payload length, then
//! the payload; the reply is the same frame). Before answering, the
//! request sleeps `sleep_ms` milliseconds with [`Host::sleep`]: in a group
//! with `mode = "microthread"` that suspends this request alone and the
//! worker serves others meanwhile. Where the host cannot suspend (a plain
//! group), the reply is the frame [`UNSUPPORTED`] instead, at once.
//!
//! `plugin_conf`: `sleep_ms=N` (default 100), and `max_payload=N` as echo.

use spp_plugin_api::framing::{encode_u32_be_prefixed, max_payload_from_conf, u32_be_prefixed};
use spp_plugin_api::{export_plugin, Conn, Host, Input, Level, Plugin, Processed};
use std::time::Duration;

/// The largest payload accepted unless `plugin_conf` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;
/// The sleep before each answer unless `plugin_conf` says otherwise.
pub const DEFAULT_SLEEP_MS: u64 = 100;
/// The payload answered when the host cannot sleep here.
pub const UNSUPPORTED: &[u8] = b"unsupported";

/// The sleep-echo plugin.
pub struct SleepEcho {
    host: Host,
    max_payload: usize,
    sleep: Duration,
}

/// `sleep_ms=N` from `conf` (other keys are left to the framing helper).
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

impl Plugin for SleepEcho {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok((sleep, max_payload)) => Ok(SleepEcho {
                host,
                max_payload,
                sleep,
            }),
            Err(why) => {
                host.log(Level::Error, &format!("sleep-echo: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.max_payload)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        if self.host.sleep(self.sleep).is_err() {
            let answer = encode_u32_be_prefixed(UNSUPPORTED);
            return Processed::replied(self.host.reply(conn.flow(), &answer));
        }
        Processed::replied(self.host.reply(conn.flow(), req))
    }
}

export_plugin!(SleepEcho);

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
    }
}
