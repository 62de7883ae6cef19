//! The bundled echo plugin, the model for Rust plugin authors.
//!
//! Protocol: a 4-byte big-endian payload length, then the payload. The reply
//! is the same frame. Over UDP one datagram carries one frame.
//!
//! `plugin_conf` may set `max_payload=N` (bytes); a frame announcing more is
//! malformed and closes its connection.

use spp_plugin_api::{export_plugin, Conn, Host, Input, Level, Plugin};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;
/// The largest payload accepted unless `plugin_conf` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;

/// Finds the length of the first complete frame in `buf`.
pub fn frame_len(buf: &[u8], max_payload: usize) -> Input {
    let Some(header) = buf.get(..HEADER_LEN) else { return Input::NeedMore };
    let mut len = [0u8; HEADER_LEN];
    len.copy_from_slice(header);
    let payload = u32::from_be_bytes(len) as usize;
    if payload > max_payload {
        return Input::Close;
    }
    if buf.len() >= HEADER_LEN + payload {
        Input::Complete(HEADER_LEN + payload)
    } else {
        Input::NeedMore
    }
}

/// Encodes one frame (for clients and tests).
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The echo plugin.
pub struct Echo {
    host: Host,
    max_payload: usize,
}

fn parse_conf(conf: &str) -> Result<usize, String> {
    let mut max_payload = DEFAULT_MAX_PAYLOAD;
    for item in conf.split([',', ' ']).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some(("max_payload", v)) => {
                max_payload = v.parse().map_err(|_| format!("max_payload={v:?} is not a number"))?;
            }
            _ => return Err(format!("unknown setting {item:?} (known: max_payload=N)")),
        }
    }
    Ok(max_payload)
}

impl Plugin for Echo {
    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok(max_payload) => Ok(Echo { host, max_payload }),
            Err(why) => {
                host.log(Level::Error, &format!("echo: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, buf: &[u8]) -> Input {
        frame_len(buf, self.max_payload)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Result<(), ()> {
        self.host.reply(conn.flow(), req).map_err(|_| ())
    }
}

export_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_at_their_length() {
        let two = [encode_frame(b"abc"), encode_frame(b"")].concat();
        assert_eq!(frame_len(&two, 100), Input::Complete(7));
        assert_eq!(frame_len(&two[7..], 100), Input::Complete(4));
        assert_eq!(frame_len(&two[..6], 100), Input::NeedMore);
        assert_eq!(frame_len(&two[..2], 100), Input::NeedMore);
        assert_eq!(frame_len(&encode_frame(&[0; 10]), 9), Input::Close);
    }

    #[test]
    fn conf_is_checked() {
        assert_eq!(parse_conf(""), Ok(DEFAULT_MAX_PAYLOAD));
        assert_eq!(parse_conf("max_payload=10"), Ok(10));
        assert!(parse_conf("speed=fast").is_err());
    }
}
