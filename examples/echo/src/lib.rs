//! The bundled echo plugin, the model for Rust plugin authors.
//!
//! Protocol: a 4-byte big-endian payload length, then the payload
//! ([`spp_plugin_api::framing::u32_be_prefixed`]). The reply is the same
//! frame. Over UDP one datagram carries one frame.
//!
//! `plugin_conf` (comma- or space-separated):
//! * `max_payload=N` (bytes): a frame announcing more is malformed and
//!   closes its connection.
//! * `input_cost_us=N` (default 0): `input` burns N µs of CPU for each
//!   complete frame it cuts, standing in for an expensive protocol parse
//!   in the proxy (the proxy-shard benchmark uses it).

use spp_plugin_api::framing::u32_be_prefixed;
use spp_plugin_api::{export_plugin, Conn, Host, Input, Level, Plugin, Processed};
use std::time::{Duration, Instant};

/// The largest payload accepted unless `plugin_conf` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;

/// The echo plugin.
pub struct Echo {
    host: Host,
    conf: EchoConf,
}

/// What `plugin_conf` sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EchoConf {
    max_payload: usize,
    input_cost: Duration,
}

fn parse_conf(conf: &str) -> Result<EchoConf, String> {
    let mut parsed = EchoConf {
        max_payload: DEFAULT_MAX_PAYLOAD,
        input_cost: Duration::ZERO,
    };
    for item in conf.split([',', ' ']).filter(|s| !s.is_empty()) {
        let number = |v: &str, key: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{key}={v:?} is not a number"))
        };
        match item.split_once('=') {
            Some(("max_payload", v)) => {
                parsed.max_payload = usize::try_from(number(v, "max_payload")?)
                    .map_err(|_| format!("max_payload={v:?} is too large"))?;
            }
            Some(("input_cost_us", v)) => {
                parsed.input_cost = Duration::from_micros(number(v, "input_cost_us")?);
            }
            _ => {
                return Err(format!(
                    "unknown setting {item:?} (known: max_payload=N, input_cost_us=N)"
                ))
            }
        }
    }
    Ok(parsed)
}

/// Keeps the CPU busy for `cost` (a stand-in for real parsing work).
fn burn(cost: Duration) {
    let started = Instant::now();
    while started.elapsed() < cost {
        std::hint::spin_loop();
    }
}

impl Plugin for Echo {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok(conf) => Ok(Echo { host, conf }),
            Err(why) => {
                host.log(Level::Error, &format!("echo: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        let cut = u32_be_prefixed(buf, self.conf.max_payload);
        if matches!(cut, Input::Complete(_)) && !self.conf.input_cost.is_zero() {
            burn(self.conf.input_cost);
        }
        cut
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        Processed::replied(self.host.reply(conn.flow(), req))
    }
}

export_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_is_checked() {
        let max = |conf: &str| parse_conf(conf).map(|c| c.max_payload);
        assert_eq!(max(""), Ok(DEFAULT_MAX_PAYLOAD));
        assert_eq!(max("max_payload=10"), Ok(10));
        assert_eq!(
            parse_conf("max_payload=10, input_cost_us=50").map(|c| c.input_cost),
            Ok(Duration::from_micros(50))
        );
        assert!(parse_conf("input_cost_us=x").is_err());
        assert!(parse_conf("speed=fast").is_err());
    }
}
