//! The routing example: one service, two worker groups, each with its own
//! plugin. This library plays two parts:
//!
//! * **Proxy plugin.** `input` cuts frames with the echo framing (a 4-byte
//!   big-endian payload length, then the payload); `route` sends a request
//!   whose payload starts with `b'2'` to group 2, everything else to group 1.
//! * **Group 2's worker plugin.** `process` answers with the frame whose
//!   payload is `"g2:"` followed by the request's payload.
//!
//! Group 1 runs the plain echo plugin (`libspp_echo.so`). See `spp.toml`
//! next to this crate.
//!
//! `plugin_conf` may set `max_payload=N` (bytes), as for the echo plugin.

use spp_plugin_api::framing::{max_payload_from_conf, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{export_plugin, Conn, Host, Input, Level, OnRoute, Plugin, Processed};

/// The group that echoes.
pub const ECHO_GROUP: u32 = 1;
/// The group this plugin serves as a worker.
pub const G2_GROUP: u32 = 2;
/// A payload starting with this byte goes to [`G2_GROUP`].
pub const G2_MARKER: u8 = b'2';
/// What group 2 puts in front of the request's payload.
pub const G2_REPLY_PREFIX: &[u8] = b"g2:";
/// The largest payload accepted unless `plugin_conf` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;
/// Replies up to this size are built on the stack, so the common small
/// request costs no allocation.
const STACK_REPLY_MAX: usize = 512;

/// The group that serves the frame `req` (length prefix included).
pub fn route_for(req: &[u8]) -> u32 {
    match req.get(U32_PREFIX_LEN) {
        Some(&G2_MARKER) => G2_GROUP,
        _ => ECHO_GROUP,
    }
}

/// Bytes of group 2's reply to a request with `payload_len` payload bytes;
/// `None` if it cannot be framed (the length prefix would overflow).
pub fn g2_reply_len(payload_len: usize) -> Option<usize> {
    let payload = payload_len.checked_add(G2_REPLY_PREFIX.len())?;
    u32::try_from(payload).ok()?;
    Some(U32_PREFIX_LEN + payload)
}

/// Writes group 2's reply to `payload` into `out`, which must be exactly
/// [`g2_reply_len`] bytes long.
pub fn write_g2_reply(payload: &[u8], out: &mut [u8]) {
    let (prefix, rest) = out.split_at_mut(U32_PREFIX_LEN);
    let body_len = (G2_REPLY_PREFIX.len() + payload.len()) as u32;
    prefix.copy_from_slice(&body_len.to_be_bytes());
    let (marker, body) = rest.split_at_mut(G2_REPLY_PREFIX.len());
    marker.copy_from_slice(G2_REPLY_PREFIX);
    body.copy_from_slice(payload);
}

fn parse_conf(conf: &str) -> Result<usize, String> {
    max_payload_from_conf(conf, DEFAULT_MAX_PAYLOAD)
}

/// The plugin (proxy role and group 2's worker role).
pub struct TwoGroup {
    host: Host,
    max_payload: usize,
}

impl Plugin for TwoGroup {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok(max_payload) => Ok(TwoGroup { host, max_payload }),
            Err(why) => {
                host.log(Level::Error, &format!("two-group: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.max_payload)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        // The proxy only forwards complete frames; anything else is closed.
        let Some(payload) = req.get(U32_PREFIX_LEN..) else {
            return Processed::Close;
        };
        let Some(len) = g2_reply_len(payload.len()) else {
            return Processed::Close;
        };
        let sent = if len <= STACK_REPLY_MAX {
            let mut buf = [0u8; STACK_REPLY_MAX];
            write_g2_reply(payload, &mut buf[..len]);
            self.host.reply(conn.flow(), &buf[..len])
        } else {
            let mut buf = vec![0u8; len];
            write_g2_reply(payload, &mut buf);
            self.host.reply(conn.flow(), &buf)
        };
        Processed::replied(sent)
    }
}

impl OnRoute for TwoGroup {
    fn route(&self, _conn: Conn<'_>, _state: &mut (), req: &[u8]) -> u32 {
        route_for(req)
    }
}

export_plugin!(TwoGroup, hooks: [route]);

#[cfg(test)]
mod tests {
    use super::*;
    use spp_plugin_api::framing::encode_u32_be_prefixed as frame;

    #[test]
    fn the_first_payload_byte_picks_the_group() {
        assert_eq!(route_for(&frame(b"2-hello")), G2_GROUP);
        assert_eq!(route_for(&frame(b"1-hello")), ECHO_GROUP);
        assert_eq!(route_for(&frame(b"x")), ECHO_GROUP);
        assert_eq!(route_for(&frame(b"")), ECHO_GROUP, "no payload: group 1");
        assert_eq!(route_for(b"2"), ECHO_GROUP, "no length prefix: group 1");
    }

    #[test]
    fn group_2_replies_with_a_prefixed_frame() {
        for payload in [&b""[..], b"2-x", &[b'2'; 1000]] {
            let len = g2_reply_len(payload.len()).expect("fits");
            let mut out = vec![0u8; len];
            write_g2_reply(payload, &mut out);
            assert_eq!(out, frame(&[G2_REPLY_PREFIX, payload].concat()));
        }
        assert_eq!(g2_reply_len(u32::MAX as usize), None);
    }

    #[test]
    fn conf_is_checked() {
        assert_eq!(parse_conf(""), Ok(DEFAULT_MAX_PAYLOAD));
        assert_eq!(parse_conf("max_payload=10"), Ok(10));
        assert!(parse_conf("speed=fast").is_err());
    }
}
