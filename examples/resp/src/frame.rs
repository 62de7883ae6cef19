//! RESP request framing and parsing, shared by both roles: the proxy's
//! `input` asks [`frame`] where the first command ends, the worker's
//! `process` asks [`parse`] for that command's arguments. Both run the one
//! scanner, so they never disagree about where a command ends.
//!
//! Two request forms, as redis accepts them:
//! * multibulk: `*<n>\r\n` then `n` times `$<len>\r\n<len bytes>\r\n`;
//! * inline: one line ending in `\n` (a `\r` before it is dropped), its
//!   arguments separated by ASCII whitespace (no quoting).
//!
//! Empty commands (a blank inline line, `*0\r\n`, `*-1\r\n`) are skipped
//! as redis skips them: they are framed together with the command that
//! follows, so every framed request holds exactly one command and gets
//! exactly one answer. The scanner never reads a bulk's body, only its
//! length, so a large value arriving slowly costs a header scan per read.
//! Limits follow redis's defaults ([`MAX_INLINE`], [`MAX_ARGS`],
//! [`MAX_BULK`]); anything past them, or not RESP at all, is a
//! [`ProtoError`] and the connection is closed.

use std::ops::Range;

/// Longest inline line, and longest `*`/`$` header line (redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments of one multibulk command (redis: 1024 × 1024).
pub const MAX_ARGS: i64 = 1024 * 1024;
/// Longest bulk argument (redis's `proto-max-bulk-len`, 512 MiB).
pub const MAX_BULK: i64 = 512 * 1024 * 1024;

/// Why a byte stream is not RESP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// An inline line, or a `*`/`$` header, longer than [`MAX_INLINE`].
    #[error("too big inline request or header (over {MAX_INLINE} bytes)")]
    TooLong,
    /// The multibulk count is not a number or above [`MAX_ARGS`].
    #[error("invalid multibulk length")]
    BadCount,
    /// A multibulk argument does not start with `$`.
    #[error("expected '$', got {0:?}")]
    ExpectedBulk(char),
    /// A bulk length is not a number, negative or above [`MAX_BULK`].
    #[error("invalid bulk length")]
    BadBulkLength,
    /// A bulk's body is not followed by `\r\n`.
    #[error("bulk not followed by CRLF")]
    MissingCrlf,
    /// A header line ends in `\n` without `\r`.
    #[error("header line without CR")]
    BareLf,
}

/// What [`frame`] found at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The first N bytes hold (empty commands and) one command.
    Complete(usize),
    /// The command is not complete yet.
    NeedMore,
    /// Not RESP: close the connection.
    Invalid(ProtoError),
}

/// Where the first command of `buf` ends (proxy side).
pub fn frame(buf: &[u8]) -> Frame {
    match scan(buf, &mut |_| {}) {
        Ok(Some(end)) => Frame::Complete(end),
        Ok(None) => Frame::NeedMore,
        Err(e) => Frame::Invalid(e),
    }
}

/// The arguments of the one command `req` holds (worker side), as byte
/// ranges of `req` pushed onto `args` (cleared first). `Ok(false)` when
/// `req` is not one complete command (the proxy framed it otherwise).
pub fn parse(req: &[u8], args: &mut Vec<Range<usize>>) -> Result<bool, ProtoError> {
    args.clear();
    Ok(scan(req, &mut |r| args.push(r))? == Some(req.len()))
}

/// Scans the first non-empty command of `buf`, handing each argument's
/// range to `arg`: `Ok(Some(end))` when complete, `Ok(None)` for "need
/// more".
fn scan(buf: &[u8], arg: &mut dyn FnMut(Range<usize>)) -> Result<Option<usize>, ProtoError> {
    let mut pos = 0;
    loop {
        let Some(&first) = buf.get(pos) else {
            return Ok(None);
        };
        let step = if first == b'*' {
            multibulk(buf, pos, arg)?
        } else {
            inline(buf, pos, arg)?
        };
        match step {
            None => return Ok(None),
            Some((end, true)) => return Ok(Some(end)),
            Some((end, false)) => pos = end,
        }
    }
}

/// One inline command at `start`: `(end, non_empty)`.
fn inline(
    buf: &[u8],
    start: usize,
    arg: &mut dyn FnMut(Range<usize>),
) -> Result<Option<(usize, bool)>, ProtoError> {
    let rest = &buf[start..];
    let Some(nl) = line_end(rest)? else {
        return Ok(None);
    };
    let mut any = false;
    let mut i = 0;
    while i < nl {
        if is_space(rest[i]) {
            i += 1;
            continue;
        }
        let from = i;
        while i < nl && !is_space(rest[i]) {
            i += 1;
        }
        arg(start + from..start + i);
        any = true;
    }
    Ok(Some((start + nl + 1, any)))
}

/// Where the line at the front of `rest` ends (its `\n`), `None` for
/// "need more"; a line longer than [`MAX_INLINE`] (ended or not) is
/// [`ProtoError::TooLong`].
fn line_end(rest: &[u8]) -> Result<Option<usize>, ProtoError> {
    match rest.iter().position(|&b| b == b'\n') {
        Some(nl) if nl > MAX_INLINE => Err(ProtoError::TooLong),
        Some(nl) => Ok(Some(nl)),
        None if rest.len() > MAX_INLINE => Err(ProtoError::TooLong),
        None => Ok(None),
    }
}

/// One multibulk command at `start` (which holds `*`).
fn multibulk(
    buf: &[u8],
    start: usize,
    arg: &mut dyn FnMut(Range<usize>),
) -> Result<Option<(usize, bool)>, ProtoError> {
    let Some((count, mut pos)) = header(buf, start + 1)? else {
        return Ok(None);
    };
    let count = count.ok_or(ProtoError::BadCount)?;
    if count > MAX_ARGS {
        return Err(ProtoError::BadCount);
    }
    if count <= 0 {
        return Ok(Some((pos, false)));
    }
    for _ in 0..count {
        let Some(&tag) = buf.get(pos) else {
            return Ok(None);
        };
        if tag != b'$' {
            return Err(ProtoError::ExpectedBulk(char::from(tag)));
        }
        let Some((len, body)) = header(buf, pos + 1)? else {
            return Ok(None);
        };
        let len = match len {
            Some(len) if (0..=MAX_BULK).contains(&len) => len as usize,
            _ => return Err(ProtoError::BadBulkLength),
        };
        let end = body + len;
        match buf.get(end..end + 2) {
            None if buf.len() <= end + 1 => {
                // The CRLF has not all arrived; check what has.
                if buf.len() == end + 1 && buf[end] != b'\r' {
                    return Err(ProtoError::MissingCrlf);
                }
                return Ok(None);
            }
            Some(b"\r\n") => {}
            _ => return Err(ProtoError::MissingCrlf),
        }
        arg(body..end);
        pos = end + 2;
    }
    Ok(Some((pos, true)))
}

/// A `\r\n`-terminated number line starting at `from`: `Some((value,
/// next))` with `value` `None` when it is not a number; `None` for "need
/// more".
#[allow(clippy::type_complexity)]
fn header(buf: &[u8], from: usize) -> Result<Option<(Option<i64>, usize)>, ProtoError> {
    let rest = buf.get(from..).unwrap_or_default();
    let Some(nl) = line_end(rest)? else {
        return Ok(None);
    };
    if nl == 0 || rest[nl - 1] != b'\r' {
        return Err(ProtoError::BareLf);
    }
    Ok(Some((number(&rest[..nl - 1]), from + nl + 1)))
}

/// A decimal `i64` with an optional `-`, nothing else.
pub fn number(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args(req: &[u8]) -> Vec<Vec<u8>> {
        let mut ranges = Vec::new();
        assert_eq!(parse(req, &mut ranges), Ok(true), "{req:?}");
        ranges.into_iter().map(|r| req[r].to_vec()).collect()
    }

    /// Encodes a multibulk command.
    fn encode(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for p in parts {
            out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn multibulk_commands_are_framed_and_parsed() {
        let req = encode(&[b"SET", b"k", b"a\r\nb"]);
        let two = [req.clone(), encode(&[b"GET", b"k"])].concat();
        assert_eq!(frame(&two), Frame::Complete(req.len()));
        assert_eq!(
            args(&req),
            vec![b"SET".to_vec(), b"k".to_vec(), b"a\r\nb".to_vec()]
        );
        for cut in 0..req.len() {
            assert_eq!(frame(&req[..cut]), Frame::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn inline_commands_split_on_whitespace() {
        assert_eq!(frame(b"PING\r\nGET"), Frame::Complete(6));
        assert_eq!(
            args(b"set  k\tv\r\n"),
            vec![b"set".to_vec(), b"k".to_vec(), b"v".to_vec()]
        );
        assert_eq!(args(b"PING\n"), vec![b"PING".to_vec()]);
        assert_eq!(frame(b"PING"), Frame::NeedMore);
    }

    #[test]
    fn empty_commands_go_with_the_next_one() {
        let req = b"\r\n  \r\n*0\r\n*-1\r\nPING\r\n";
        assert_eq!(frame(req), Frame::Complete(req.len()));
        assert_eq!(args(req), vec![b"PING".to_vec()]);
        assert_eq!(frame(b"\r\n\r\n"), Frame::NeedMore);
    }

    #[test]
    fn malformed_streams_are_refused() {
        assert_eq!(frame(b"*x\r\n"), Frame::Invalid(ProtoError::BadCount));
        assert_eq!(
            frame(b"*2\r\n$1\r\na\r\n:1\r\n"),
            Frame::Invalid(ProtoError::ExpectedBulk(':'))
        );
        assert_eq!(
            frame(b"*1\r\n$-1\r\n"),
            Frame::Invalid(ProtoError::BadBulkLength)
        );
        assert_eq!(
            frame(b"*1\r\n$1\r\nab\r\n"),
            Frame::Invalid(ProtoError::MissingCrlf)
        );
        assert_eq!(
            frame(b"*1\r\n$1\r\nax"),
            Frame::Invalid(ProtoError::MissingCrlf)
        );
        assert_eq!(frame(b"*1\n"), Frame::Invalid(ProtoError::BareLf));
        assert_eq!(frame(b"*2000000\r\n"), Frame::Invalid(ProtoError::BadCount));
        assert_eq!(
            frame(b"*1\r\n$99999999999\r\n"),
            Frame::Invalid(ProtoError::BadBulkLength)
        );
        let long = vec![b'a'; MAX_INLINE + 1];
        assert_eq!(frame(&long), Frame::Invalid(ProtoError::TooLong));
        let long_header = [b"*1\r\n$".as_slice(), &[b'1'; MAX_INLINE + 1]].concat();
        assert_eq!(frame(&long_header), Frame::Invalid(ProtoError::TooLong));
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(number(b"12"), Some(12));
        assert_eq!(number(b"-3"), Some(-3));
        assert_eq!(number(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"+1", b" 1", b"1x", b"9223372036854775808"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut ranges = Vec::new();
            if let Frame::Complete(n) = frame(&buf) {
                prop_assert!(n > 0 && n <= buf.len());
                prop_assert_eq!(parse(&buf[..n], &mut ranges), Ok(true));
            }
            let _ = parse(&buf, &mut ranges);
        }

        #[test]
        fn resp_like_bytes_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                    Just(b"\n".to_vec()), Just(b"-1".to_vec()), Just(b"2".to_vec()),
                    Just(b"0".to_vec()), Just(b"ab".to_vec()), Just(b" ".to_vec()),
                ],
                0..40,
            )
        ) {
            let buf = parts.concat();
            if let Frame::Complete(n) = frame(&buf) {
                let mut ranges = Vec::new();
                prop_assert_eq!(parse(&buf[..n], &mut ranges), Ok(true));
            }
        }

        #[test]
        fn every_prefix_of_a_command_needs_more(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6)
        ) {
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let req = encode(&refs);
            for cut in 0..req.len() {
                prop_assert_eq!(frame(&req[..cut]), Frame::NeedMore);
            }
            prop_assert_eq!(frame(&req), Frame::Complete(req.len()));
            let got: Vec<Vec<u8>> = args(&req);
            prop_assert_eq!(got, parts);
        }
    }
}
