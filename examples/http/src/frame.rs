//! One HTTP/1.1 request at the front of a byte buffer, parsed with
//! `httparse`: where it ends and what it asks for. The proxy's `input`
//! cuts requests with [`parse`] and the worker's `process` runs the same
//! [`parse`] on exactly the bytes it was handed, so both reach the same
//! verdict: a request the proxy rejects is framed (not closed) and the
//! worker answers it with the status [`parse`] gives, then closes.
//!
//! Rules (RFC 9112): a body is `Transfer-Encoding: chunked` (chunk sizes
//! walked with `httparse::parse_chunk_size`, trailers skipped) or
//! `Content-Length`, else empty; both, a coding other than chunked last,
//! or an unreadable or conflicting length is a 400. Request line plus
//! headers over `max_header` bytes (or more than [`MAX_HEADERS`] fields)
//! is a 431; a declared body over `max_body` is a 413, decided from the
//! header (or the chunk size line) alone, before the body arrives.
//! HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0
//! closes it unless `Connection: keep-alive`.

use crate::conf::Limits;
use httparse::{Header, Request, Status, EMPTY_HEADER};

/// Header fields of one request at most (more is a 431).
pub const MAX_HEADERS: usize = 64;
/// Bytes of one chunk size line at most (with extensions); more is a 400.
pub const MAX_CHUNK_LINE: usize = 1024;
/// The line end after chunk data.
const CRLF: &[u8] = b"\r\n";

/// What the front of the buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet.
    NeedMore,
    /// A request of `len` bytes, to answer with 200.
    Request {
        /// Bytes of the request, headers and body.
        len: usize,
        /// Whether the connection stays open after the answer.
        keep_alive: bool,
        /// A HEAD request: the answer has no body.
        head: bool,
        /// HTTP/1.0 (a kept connection says so in its answer).
        http10: bool,
    },
    /// A request answered with `status` and the connection closed; `len`
    /// bytes are framed for the worker to see the same thing.
    Reject {
        /// Bytes framed.
        len: usize,
        /// 400, 413 or 431.
        status: Reject,
    },
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// 400 Bad Request: not HTTP, or a body framing we refuse.
    BadRequest,
    /// 413 Content Too Large.
    TooLarge,
    /// 431 Request Header Fields Too Large.
    HeadersTooLarge,
}

/// How the body is framed.
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// Parses the request at the front of `buf`.
pub fn parse(buf: &[u8], limits: Limits) -> Parsed {
    let reject = |len, status| Parsed::Reject { len, status };
    let mut fields = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = Request::new(&mut fields);
    let head_len = match req.parse(buf) {
        Ok(Status::Partial) if buf.len() > limits.max_header => {
            return reject(buf.len(), Reject::HeadersTooLarge)
        }
        Ok(Status::Partial) => return Parsed::NeedMore,
        Err(httparse::Error::TooManyHeaders) => return reject(buf.len(), Reject::HeadersTooLarge),
        Err(_) => return reject(buf.len(), Reject::BadRequest),
        Ok(Status::Complete(n)) if n > limits.max_header => {
            return reject(n, Reject::HeadersTooLarge)
        }
        Ok(Status::Complete(n)) => n,
    };
    let http10 = req.version == Some(0);
    let head = req.method == Some("HEAD");
    let keep_alive = keep_alive(req.headers, http10);
    let request = |len| Parsed::Request {
        len,
        keep_alive,
        head,
        http10,
    };
    match body(req.headers) {
        Err(()) => reject(head_len, Reject::BadRequest),
        Ok(Body::None) => request(head_len),
        Ok(Body::Length(n)) if n > limits.max_body as u64 => reject(head_len, Reject::TooLarge),
        Ok(Body::Length(n)) => {
            // n <= max_body, a usize.
            let end = head_len.saturating_add(n as usize);
            if buf.len() >= end {
                request(end)
            } else {
                Parsed::NeedMore
            }
        }
        Ok(Body::Chunked) => match chunked(buf, head_len, limits) {
            Chunks::NeedMore => Parsed::NeedMore,
            Chunks::End(len) => request(len),
            Chunks::Reject(len, status) => reject(len, status),
        },
    }
}

/// Whether the connection stays open: the `Connection` tokens, else the
/// version's default.
fn keep_alive(headers: &[Header<'_>], http10: bool) -> bool {
    let mut keep = !http10;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                return false;
            }
            if token.eq_ignore_ascii_case(b"keep-alive") {
                keep = true;
            }
        }
    }
    keep
}

/// The body's framing; `Err` for one we refuse (400).
fn body(headers: &[Header<'_>]) -> Result<Body, ()> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(())?;
            if length.is_some_and(|old| old != n) {
                return Err(());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last field decides.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    match (chunked, length) {
        (Some(_), Some(_)) | (Some(false), None) => Err(()),
        (Some(true), None) => Ok(Body::Chunked),
        (None, Some(n)) => Ok(Body::Length(n)),
        (None, None) => Ok(Body::None),
    }
}

/// Where a chunked body ends.
enum Chunks {
    NeedMore,
    End(usize),
    Reject(usize, Reject),
}

/// Walks the chunks from `pos` (just after the headers).
fn chunked(buf: &[u8], mut pos: usize, limits: Limits) -> Chunks {
    let mut total: u64 = 0;
    loop {
        let rest = &buf[pos..];
        let (used, size) = match httparse::parse_chunk_size(rest) {
            Ok(Status::Complete(c)) => c,
            Ok(Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                return Chunks::Reject(buf.len(), Reject::BadRequest)
            }
            Ok(Status::Partial) => return Chunks::NeedMore,
            Err(_) => return Chunks::Reject(buf.len(), Reject::BadRequest),
        };
        if used > MAX_CHUNK_LINE {
            return Chunks::Reject(pos + used, Reject::BadRequest);
        }
        pos += used;
        total = total.saturating_add(size);
        if total > limits.max_body as u64 {
            return Chunks::Reject(pos, Reject::TooLarge);
        }
        if size == 0 {
            return trailers(buf, pos, limits);
        }
        // size <= total <= max_body, a usize.
        let data_end = pos + size as usize;
        let Some(after) = buf.get(data_end..data_end + CRLF.len()) else {
            return Chunks::NeedMore;
        };
        if after != CRLF {
            return Chunks::Reject(data_end + CRLF.len(), Reject::BadRequest);
        }
        pos = data_end + CRLF.len();
    }
}

/// The trailer section after the last chunk, ended by an empty line.
fn trailers(buf: &[u8], pos: usize, limits: Limits) -> Chunks {
    let rest = &buf[pos..];
    let mut fields = [EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(rest, &mut fields) {
        Ok(Status::Complete((used, _))) => Chunks::End(pos + used),
        Ok(Status::Partial) if rest.len() > limits.max_header => {
            Chunks::Reject(buf.len(), Reject::HeadersTooLarge)
        }
        Ok(Status::Partial) => Chunks::NeedMore,
        Err(httparse::Error::TooManyHeaders) => Chunks::Reject(buf.len(), Reject::HeadersTooLarge),
        Err(_) => Chunks::Reject(buf.len(), Reject::BadRequest),
    }
}

#[cfg(test)]
mod tests;
