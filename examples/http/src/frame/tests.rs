//! Framing verdicts, and that the worker's verdict on the framed bytes is
//! the proxy's.

use super::*;

const LIMITS: Limits = Limits {
    max_header: 256,
    max_body: 16,
};

fn request(len: usize, keep_alive: bool) -> Parsed {
    Parsed::Request {
        len,
        keep_alive,
        head: false,
        http10: false,
    }
}

/// Parses `buf`, then re-parses the framed prefix as the worker does and
/// checks it says the same.
fn both(buf: &[u8]) -> Parsed {
    let verdict = parse(buf, LIMITS);
    if let Parsed::Request { len, .. } | Parsed::Reject { len, .. } = verdict {
        assert_eq!(parse(&buf[..len], LIMITS), verdict, "worker disagrees");
    }
    verdict
}

fn status(buf: &[u8]) -> Option<Reject> {
    match both(buf) {
        Parsed::Reject { status, .. } => Some(status),
        _ => None,
    }
}

#[test]
fn a_get_is_framed_and_pipelined_requests_one_at_a_time() {
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(both(get), request(get.len(), true));
    assert_eq!(both(&get[..10]), Parsed::NeedMore);
    let two = [&get[..], &get[..]].concat();
    assert_eq!(both(&two), request(get.len(), true));
}

#[test]
fn bodies_by_length_and_by_chunks() {
    let post = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(both(post), request(post.len(), true));
    assert_eq!(both(&post[..post.len() - 1]), Parsed::NeedMore);
    let chunked =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET";
    let end = chunked.len() - 3;
    assert_eq!(both(chunked), request(end, true));
    for cut in 40..end {
        assert_eq!(both(&chunked[..cut]), Parsed::NeedMore, "cut at {cut}");
    }
}

#[test]
fn refusals_have_their_status() {
    assert_eq!(status(b"\x00garbage\r\n\r\n"), Some(Reject::BadRequest));
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        Some(Reject::BadRequest)
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        Some(Reject::BadRequest)
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"),
        Some(Reject::BadRequest)
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Some(Reject::BadRequest)
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        Some(Reject::BadRequest)
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY"),
        Some(Reject::BadRequest)
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"),
        Some(Reject::TooLarge)
    );
    assert_eq!(
        status(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\n"
        ),
        Some(Reject::TooLarge)
    );
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(300));
    assert_eq!(status(huge.as_bytes()), Some(Reject::HeadersTooLarge));
    let complete = format!("{huge}\r\n");
    assert_eq!(status(complete.as_bytes()), Some(Reject::HeadersTooLarge));
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    let many_limits = Limits {
        max_header: 1 << 20,
        max_body: 0,
    };
    assert!(matches!(
        parse(many.as_bytes(), many_limits),
        Parsed::Reject {
            status: Reject::HeadersTooLarge,
            ..
        }
    ));
}

#[test]
fn connection_and_version_decide_keep_alive() {
    let close = b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n";
    assert_eq!(both(close), request(close.len(), false));
    let old = b"GET / HTTP/1.0\r\n\r\n";
    assert!(matches!(
        both(old),
        Parsed::Request {
            keep_alive: false,
            http10: true,
            ..
        }
    ));
    let old_kept = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    assert!(matches!(
        both(old_kept),
        Parsed::Request {
            keep_alive: true,
            http10: true,
            ..
        }
    ));
    let head = b"HEAD / HTTP/1.1\r\n\r\n";
    assert!(matches!(both(head), Parsed::Request { head: true, .. }));
}
