//! The worker's answers, built once at `init` so serving a request
//! allocates nothing: the 200 in its three connection flavours (HTTP/1.1
//! kept, HTTP/1.0 kept with `Connection: keep-alive`, closing with
//! `Connection: close`) and the 400/413/431 refusals, which always close.

use crate::frame::Reject;

/// The `Server` header's value.
pub const SERVER: &str = "spp";

/// One prebuilt answer: the bytes and where its head ends (a HEAD request
/// gets the head only).
pub struct Answer {
    bytes: Vec<u8>,
    head_len: usize,
}

impl Answer {
    fn new(status: &str, connection: Option<&str>, body: &str) -> Answer {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nServer: {SERVER}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(c) = connection {
            head.push_str(&format!("Connection: {c}\r\n"));
        }
        head.push_str("\r\n");
        let head_len = head.len();
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        Answer { bytes, head_len }
    }

    /// The whole answer, or its head alone for a HEAD request.
    pub fn bytes(&self, head_only: bool) -> &[u8] {
        if head_only {
            &self.bytes[..self.head_len]
        } else {
            &self.bytes
        }
    }
}

/// Every answer the worker sends.
pub struct Answers {
    /// 200, HTTP/1.1, connection kept.
    pub ok: Answer,
    /// 200 to HTTP/1.0 with `Connection: keep-alive`.
    pub ok_keep_alive: Answer,
    /// 200 with `Connection: close`.
    pub ok_close: Answer,
    bad_request: Answer,
    too_large: Answer,
    headers_too_large: Answer,
}

impl Answers {
    /// The answers for a 200 body of `body`.
    pub fn new(body: &str) -> Answers {
        let close = Some("close");
        Answers {
            ok: Answer::new("200 OK", None, body),
            ok_keep_alive: Answer::new("200 OK", Some("keep-alive"), body),
            ok_close: Answer::new("200 OK", close, body),
            bad_request: Answer::new("400 Bad Request", close, "bad request\n"),
            too_large: Answer::new("413 Content Too Large", close, "content too large\n"),
            headers_too_large: Answer::new(
                "431 Request Header Fields Too Large",
                close,
                "request header fields too large\n",
            ),
        }
    }

    /// The refusal for `why`.
    pub fn reject(&self, why: Reject) -> &Answer {
        match why {
            Reject::BadRequest => &self.bad_request,
            Reject::TooLarge => &self.too_large,
            Reject::HeadersTooLarge => &self.headers_too_large,
        }
    }
}
