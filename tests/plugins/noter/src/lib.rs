//! A test-only plugin for request notes: `input` (proxy) frames the echo
//! protocol (4-byte big-endian length + payload) and attaches a note with
//! `Host::set_note`; `process` (worker) answers with the note it sees
//! (`Conn::note`), so a test reads what crossed the ring.
//!
//! | payload               | what `input` does                                      |
//! |-----------------------|--------------------------------------------------------|
//! | `note:<text>;...`     | sets the note `<text>`                                 |
//! | `twice;...`           | sets `first`, then `second` (the later one wins)       |
//! | `big;...`             | sets a note of `SPP_NOTE_MAX + 1` bytes                |
//! | `keep;...`            | sets `kept`, then the oversized note                   |
//! | `sleep:<ms>;...`      | sets the note `slept`; `process` sleeps `<ms>` first   |
//! | anything else         | sets no note                                           |
//!
//! An `input` call that returns "need more" sets the note `stale` (which
//! must never reach a request). A `set_note` call the proxy refuses is
//! answered from `input` itself with `refused:<error>` (before the
//! worker's answer).
//!
//! `process` answers `note=<note>;<payload>`. `exception` answers
//! `exc=<note>;<request payload>` (the proxy's hooks see no note, and the
//! bytes of an expired request come back without it).

use spp_plugin_api::abi::SPP_NOTE_MAX;
use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{
    export_plugin, AfterException, Conn, ExceptionReason, Host, Input, OnException, Plugin,
    Processed,
};
use std::time::Duration;

/// The largest payload accepted.
const MAX_PAYLOAD: usize = 1 << 20;
/// What an input call that returns "need more" sets.
const STALE: &[u8] = b"stale";

/// The noter plugin.
pub struct Noter {
    host: Host,
}

fn payload(req: &[u8]) -> &[u8] {
    req.get(U32_PREFIX_LEN..).unwrap_or(&[])
}

fn number(text: &[u8]) -> u64 {
    text.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &b| {
            n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        })
}

impl Noter {
    /// `set_note(note)`; a refusal is answered to the client at once.
    fn set(&self, conn: Conn<'_>, note: &[u8]) {
        if let Err(e) = self.host.set_note(note) {
            let answer = encode_u32_be_prefixed(format!("refused:{e:?}").as_bytes());
            let _ = self.host.reply(conn.flow(), &answer);
        }
    }

    /// Attaches the note `body` asks for.
    fn note_for(&self, conn: Conn<'_>, body: &[u8]) {
        let big = [b'x'; SPP_NOTE_MAX + 1];
        if let Some(rest) = body.strip_prefix(b"note:") {
            let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            self.set(conn, &rest[..end]);
        } else if body.starts_with(b"twice;") {
            self.set(conn, b"first");
            self.set(conn, b"second");
        } else if body.starts_with(b"big;") {
            self.set(conn, &big);
        } else if body.starts_with(b"keep;") {
            self.set(conn, b"kept");
            self.set(conn, &big);
        } else if body.starts_with(b"sleep:") {
            self.set(conn, b"slept");
        }
    }
}

impl Plugin for Noter {
    type ConnState = ();

    fn init(host: Host, _conf: &str) -> Result<Self, i32> {
        Ok(Noter { host })
    }

    fn input(&self, conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        let verdict = u32_be_prefixed(buf, MAX_PAYLOAD);
        match verdict {
            Input::Complete(n) => self.note_for(conn, payload(&buf[..n])),
            Input::NeedMore => {
                let _ = self.host.set_note(STALE);
            }
            Input::Close => {}
        }
        verdict
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let body = payload(req);
        if let Some(rest) = body.strip_prefix(b"sleep:") {
            std::thread::sleep(Duration::from_millis(number(rest)));
        }
        let mut answer = b"note=".to_vec();
        answer.extend_from_slice(conn.note());
        answer.push(b';');
        answer.extend_from_slice(body);
        Processed::replied(
            self.host
                .reply(conn.flow(), &encode_u32_be_prefixed(&answer)),
        )
    }
}

impl OnException for Noter {
    fn exception(
        &self,
        conn: Conn<'_>,
        _state: &mut (),
        req: Option<&[u8]>,
        _why: ExceptionReason,
    ) -> AfterException {
        let mut answer = b"exc=".to_vec();
        answer.extend_from_slice(conn.note());
        answer.push(b';');
        answer.extend_from_slice(req.map(payload).unwrap_or(b"(gone)"));
        match self
            .host
            .reply(conn.flow(), &encode_u32_be_prefixed(&answer))
        {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

export_plugin!(Noter, hooks: [exception]);
