//! Requests on the wire and the rules that find and check responses.
//!
//! Echo requests carry their sequence number in the first
//! [`SEQ_BYTES`] payload bytes (little-endian, truncated for shorter
//! payloads), the rest is a fixed filler, so a server that answers with
//! another request's bytes is caught, and UDP responses are matched to
//! their request by number. Checking compares in place: no allocation per
//! response.

use super::spec::{Request, ResponseRule, ECHO_HEADER_BYTES, MAX_FRAME_BYTES};

/// Payload bytes that carry the sequence number.
pub const SEQ_BYTES: usize = 8;
/// Filler bytes cycle through the lowercase alphabet.
const FILLER_CYCLE: u8 = 26;

/// What the front of a receive buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole response yet.
    Incomplete,
    /// A whole response of this many bytes.
    Complete(usize),
    /// The bytes cannot be a response (too long, bad header): the stream
    /// is out of step and the connection must be dropped.
    Invalid,
}

/// Builds requests and recognises and checks responses for one
/// [`Request`] kind.
#[derive(Clone, Debug)]
pub struct Codec {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Echo {
        /// Payload with a zero sequence number.
        template: Vec<u8>,
    },
    Raw {
        request: Vec<u8>,
        rule: ResponseRule,
    },
}

impl Codec {
    /// The codec for `request`.
    pub fn new(request: &Request) -> Self {
        let kind = match request {
            Request::Echo { payload } => Kind::Echo {
                template: (0..*payload)
                    .map(|i| b'a' + (i % usize::from(FILLER_CYCLE)) as u8)
                    .collect(),
            },
            Request::Raw { bytes, rule } => Kind::Raw {
                request: bytes.clone(),
                rule: rule.clone(),
            },
        };
        Codec { kind }
    }

    /// Bytes on the wire per request.
    pub fn request_len(&self) -> usize {
        match &self.kind {
            Kind::Echo { template } => ECHO_HEADER_BYTES + template.len(),
            Kind::Raw { request, .. } => request.len(),
        }
    }

    /// Whether UDP responses name their request (echo with a payload of at
    /// least [`SEQ_BYTES`]); otherwise they are matched first in, first out.
    pub fn matches_by_seq(&self) -> bool {
        matches!(&self.kind, Kind::Echo { template } if template.len() >= SEQ_BYTES)
    }

    /// Appends request number `seq` to `out`.
    pub fn write_request(&self, seq: u64, out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Echo { template } => {
                // validate() caps the payload far below u32::MAX.
                let len = u32::try_from(template.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                let stamp = seq.to_le_bytes();
                let k = template.len().min(SEQ_BYTES);
                out.extend_from_slice(&stamp[..k]);
                out.extend_from_slice(&template[k..]);
            }
            Kind::Raw { request, .. } => out.extend_from_slice(request),
        }
    }

    /// Finds the first response at the front of `buf`. `scanned` carries
    /// how far a delimiter search got across calls for the same response;
    /// reset it to 0 after each complete frame.
    pub fn frame(&self, buf: &[u8], scanned: &mut usize) -> Frame {
        match &self.kind {
            Kind::Echo { .. } => echo_frame(buf),
            Kind::Raw { rule, .. } => match rule {
                ResponseRule::Length(n) => fixed_frame(buf, *n),
                ResponseRule::Exact(bytes) => fixed_frame(buf, bytes.len()),
                ResponseRule::Delimiter(d) => delimited_frame(buf, d, scanned),
            },
        }
    }

    /// Whether `frame` (as cut by [`Codec::frame`]) is the right response
    /// to request `seq`.
    pub fn check(&self, seq: u64, frame: &[u8]) -> bool {
        match &self.kind {
            Kind::Echo { template } => {
                let Some((header, payload)) = frame.split_first_chunk::<ECHO_HEADER_BYTES>() else {
                    return false;
                };
                let len = u32::from_be_bytes(*header) as usize;
                if len != template.len() || payload.len() != len {
                    return false;
                }
                let k = len.min(SEQ_BYTES);
                payload[..k] == seq.to_le_bytes()[..k] && payload[k..] == template[k..]
            }
            Kind::Raw { rule, .. } => match rule {
                ResponseRule::Length(n) => frame.len() == *n,
                ResponseRule::Delimiter(d) => frame.ends_with(d),
                ResponseRule::Exact(bytes) => frame == bytes.as_slice(),
            },
        }
    }

    /// Whether one whole datagram is the right response to request `seq`.
    pub fn check_datagram(&self, seq: u64, datagram: &[u8]) -> bool {
        let whole = match &self.kind {
            Kind::Echo { .. } => echo_frame(datagram) == Frame::Complete(datagram.len()),
            Kind::Raw { .. } => true,
        };
        whole && self.check(seq, datagram)
    }

    /// The sequence number an echo datagram carries, if
    /// [`Codec::matches_by_seq`].
    pub fn datagram_seq(&self, datagram: &[u8]) -> Option<u64> {
        if !self.matches_by_seq() {
            return None;
        }
        let stamp = datagram.get(ECHO_HEADER_BYTES..ECHO_HEADER_BYTES + SEQ_BYTES)?;
        let stamp: [u8; SEQ_BYTES] = stamp.try_into().ok()?;
        Some(u64::from_le_bytes(stamp))
    }
}

fn echo_frame(buf: &[u8]) -> Frame {
    let Some(header) = buf.first_chunk::<ECHO_HEADER_BYTES>() else {
        return Frame::Incomplete;
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_FRAME_BYTES {
        return Frame::Invalid;
    }
    let total = ECHO_HEADER_BYTES + len;
    if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Complete(total)
    }
}

fn fixed_frame(buf: &[u8], len: usize) -> Frame {
    if buf.len() < len {
        Frame::Incomplete
    } else {
        Frame::Complete(len)
    }
}

fn delimited_frame(buf: &[u8], delimiter: &[u8], scanned: &mut usize) -> Frame {
    // Resume where the last search stopped, minus a partial delimiter.
    let from = scanned.saturating_sub(delimiter.len().saturating_sub(1));
    let found = buf
        .get(from..)
        .and_then(|rest| rest.windows(delimiter.len()).position(|w| w == delimiter));
    match found {
        Some(at) => Frame::Complete(from + at + delimiter.len()),
        None if buf.len() > MAX_FRAME_BYTES => Frame::Invalid,
        None => {
            *scanned = buf.len();
            Frame::Incomplete
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(payload: usize) -> Codec {
        Codec::new(&Request::Echo { payload })
    }

    fn raw(rule: ResponseRule) -> Codec {
        Codec::new(&Request::Raw {
            bytes: b"GET\r\n".to_vec(),
            rule,
        })
    }

    #[test]
    fn echo_requests_carry_their_number() {
        let c = echo(12);
        let mut out = Vec::new();
        c.write_request(0x0102, &mut out);
        assert_eq!(out.len(), c.request_len());
        assert_eq!(&out[..4], &12u32.to_be_bytes());
        assert_eq!(&out[4..12], &0x0102u64.to_le_bytes());
        assert_eq!(&out[12..], b"ijkl");
        assert!(c.check(0x0102, &out));
        assert!(!c.check(0x0103, &out));
        assert!(c.matches_by_seq());
        assert_eq!(c.datagram_seq(&out), Some(0x0102));
    }

    #[test]
    fn echo_responses_are_framed_and_checked() {
        let c = echo(3);
        let mut out = Vec::new();
        c.write_request(7, &mut out);
        c.write_request(8, &mut out);
        let mut scanned = 0;
        assert_eq!(c.frame(&out[..3], &mut scanned), Frame::Incomplete);
        assert_eq!(c.frame(&out[..6], &mut scanned), Frame::Incomplete);
        assert_eq!(c.frame(&out, &mut scanned), Frame::Complete(7));
        assert!(c.check(7, &out[..7]));
        assert!(c.check(8, &out[7..]));
        // A wrong byte, a wrong length, a short payload.
        let mut bad = out[..7].to_vec();
        bad[6] ^= 1;
        assert!(!c.check(7, &bad));
        assert!(!c.check(7, &[0, 0, 0, 2, 7, 0]));
        assert!(!c.check(7, &[0, 0, 0, 3, 7]));
        // Short payloads carry a truncated number and match first in, first out.
        assert!(!c.matches_by_seq());
        assert_eq!(c.datagram_seq(&out[..7]), None);
        // A header beyond the frame limit breaks the stream.
        let huge = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        assert_eq!(c.frame(&huge, &mut scanned), Frame::Invalid);
        // Zero-length payloads are valid.
        let z = echo(0);
        let mut out = Vec::new();
        z.write_request(1, &mut out);
        assert_eq!(z.frame(&out, &mut scanned), Frame::Complete(4));
        assert!(z.check(1, &out));
    }

    #[test]
    fn echo_datagrams_must_be_one_whole_frame() {
        let c = echo(8);
        let mut out = Vec::new();
        c.write_request(5, &mut out);
        assert!(c.check_datagram(5, &out));
        let mut long = out.clone();
        long.push(0);
        assert!(!c.check_datagram(5, &long));
        assert!(!c.check_datagram(5, &out[..10]));
        assert_eq!(c.datagram_seq(&out[..10]), None);
    }

    #[test]
    fn length_rule() {
        let c = raw(ResponseRule::Length(4));
        let mut out = Vec::new();
        c.write_request(1, &mut out);
        assert_eq!(out, b"GET\r\n");
        let mut s = 0;
        assert_eq!(c.frame(b"abc", &mut s), Frame::Incomplete);
        assert_eq!(c.frame(b"abcdef", &mut s), Frame::Complete(4));
        assert!(c.check(1, b"abcd"));
        assert!(c.check_datagram(1, b"wxyz"));
        assert!(!c.check_datagram(1, b"wxyz!"));
        assert!(!c.matches_by_seq());
    }

    #[test]
    fn delimiter_rule_resumes_across_reads() {
        let c = raw(ResponseRule::Delimiter(b"\r\n".to_vec()));
        let mut s = 0;
        assert_eq!(c.frame(b"+OK", &mut s), Frame::Incomplete);
        assert_eq!(s, 3);
        assert_eq!(c.frame(b"+OK\r", &mut s), Frame::Incomplete);
        // The delimiter straddles two reads.
        assert_eq!(c.frame(b"+OK\r\n+PO", &mut s), Frame::Complete(5));
        s = 0;
        assert_eq!(c.frame(b"\r\n", &mut s), Frame::Complete(2));
        assert!(c.check(0, b"+OK\r\n"));
        assert!(c.check_datagram(0, b"+OK\r\n"));
        assert!(!c.check_datagram(0, b"+OK"));
    }

    #[test]
    fn exact_rule_compares_bytes() {
        let c = raw(ResponseRule::Exact(b"+PONG\r\n".to_vec()));
        let mut s = 0;
        assert_eq!(c.frame(b"+PONG\r", &mut s), Frame::Incomplete);
        assert_eq!(c.frame(b"+PONG\r\n+", &mut s), Frame::Complete(7));
        assert!(c.check(0, b"+PONG\r\n"));
        assert!(!c.check(0, b"-PONG\r\n"));
    }
}
