//! Ready-made `input` helpers for common framings, so plugins need not
//! re-implement them.

use crate::Input;

/// Bytes of the length prefix of [`u32_be_prefixed`].
pub const U32_PREFIX_LEN: usize = 4;

/// A 4-byte big-endian payload length, then the payload. A frame
/// announcing more than `max_payload` bytes is malformed ([`Input::Close`]).
pub fn u32_be_prefixed(buf: &[u8], max_payload: usize) -> Input {
    let Some(header) = buf.first_chunk::<U32_PREFIX_LEN>() else {
        return Input::NeedMore;
    };
    let payload = u32::from_be_bytes(*header) as usize;
    if payload > max_payload {
        return Input::Close;
    }
    if buf.len() >= U32_PREFIX_LEN + payload {
        Input::Complete(U32_PREFIX_LEN + payload)
    } else {
        Input::NeedMore
    }
}

/// Encodes one [`u32_be_prefixed`] frame.
pub fn encode_u32_be_prefixed(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(U32_PREFIX_LEN + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Reads the `max_payload=N` setting (bytes) that plugins using
/// [`u32_be_prefixed`] take from their `plugin_conf`: settings are
/// `key=value`, separated by commas or spaces; any other key is an error
/// that names it.
pub fn max_payload_from_conf(conf: &str, default: usize) -> Result<usize, String> {
    let mut max_payload = default;
    for item in conf.split([',', ' ']).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some(("max_payload", v)) => {
                max_payload = v
                    .parse()
                    .map_err(|_| format!("max_payload={v:?} is not a number"))?;
            }
            _ => return Err(format!("unknown setting {item:?} (known: max_payload=N)")),
        }
    }
    Ok(max_payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_at_their_length() {
        let two = [encode_u32_be_prefixed(b"abc"), encode_u32_be_prefixed(b"")].concat();
        assert_eq!(u32_be_prefixed(&two, 100), Input::Complete(7));
        assert_eq!(u32_be_prefixed(&two[7..], 100), Input::Complete(4));
        assert_eq!(u32_be_prefixed(&two[..6], 100), Input::NeedMore);
        assert_eq!(u32_be_prefixed(&two[..2], 100), Input::NeedMore);
        assert_eq!(
            u32_be_prefixed(&encode_u32_be_prefixed(&[0; 10]), 9),
            Input::Close
        );
    }
}
