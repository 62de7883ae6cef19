//! The bundled echo plugin, the model for Rust plugin authors.
//!
//! Protocol: a 4-byte big-endian payload length, then the payload
//! ([`spp_plugin_api::framing::u32_be_prefixed`]). The reply is the same
//! frame. Over UDP one datagram carries one frame.
//!
//! `plugin_conf` may set `max_payload=N` (bytes); a frame announcing more is
//! malformed and closes its connection.

use spp_plugin_api::framing::{max_payload_from_conf, u32_be_prefixed};
use spp_plugin_api::{export_plugin, Conn, Host, Input, Level, Plugin, Processed};

/// The largest payload accepted unless `plugin_conf` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;

/// The echo plugin.
pub struct Echo {
    host: Host,
    max_payload: usize,
}

fn parse_conf(conf: &str) -> Result<usize, String> {
    max_payload_from_conf(conf, DEFAULT_MAX_PAYLOAD)
}

impl Plugin for Echo {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok(max_payload) => Ok(Echo { host, max_payload }),
            Err(why) => {
                host.log(Level::Error, &format!("echo: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.max_payload)
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
        assert_eq!(parse_conf(""), Ok(DEFAULT_MAX_PAYLOAD));
        assert_eq!(parse_conf("max_payload=10"), Ok(10));
        assert!(parse_conf("speed=fast").is_err());
    }
}
