//! `examples/http` end to end: a real spp service running the HTTP/1.1
//! plugin on 127.0.0.1, driven over raw TCP so every byte on the wire is
//! the test's. One service (answer body `hello spp`, `max_header` 1 KiB,
//! `max_body` 16 B) serves every case: GET keep-alive, pipelined requests
//! answered in order, Content-Length and chunked bodies arriving in
//! pieces, 400 for garbage, 413 for a body over the limit, 431 for huge
//! headers, `Connection: close` and HTTP/1.0 closing after the answer.

use spp_tests::{Service, ServiceConfig};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The configured answer body.
const BODY: &str = "hello spp";
/// The plugin's settings for this test (both roles).
const CONF: &str = "body=hello spp, max_header=1024, max_body=16";
/// Read timeout of every client step.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The most answer bytes a client reads.
const MAX_ANSWER: usize = 64 << 10;
/// A pause between the pieces of a request, so the proxy sees it partial.
const PIECE_GAP: Duration = Duration::from_millis(20);

/// One parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A client connection with its unread bytes.
struct Client {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let conn = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        conn.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        conn.set_nodelay(true).expect("nodelay");
        Client {
            conn,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).expect("send");
    }

    /// Reads more bytes; false at end of stream.
    fn fill(&mut self) -> bool {
        assert!(self.buf.len() < MAX_ANSWER, "answer too long");
        let mut chunk = [0u8; 4096];
        match self.conn.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next answer; `head_only` for the answer to a HEAD.
    fn answer_of(&mut self, head_only: bool) -> Answer {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill(), "closed before an answer: {:?}", self.buf);
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ascii head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        let len: usize = if head_only {
            0
        } else {
            answer
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("content-length")
        };
        while self.buf.len() < head_end + len {
            assert!(self.fill(), "closed inside a body");
        }
        answer.body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        answer
    }

    fn answer(&mut self) -> Answer {
        self.answer_of(false)
    }

    /// Whether the server closes the connection with nothing more sent.
    fn closed(&mut self) -> bool {
        !self.fill() && self.buf.is_empty()
    }
}

fn service() -> Service {
    let bins = spp_tests::Binaries::locate();
    let plugin = bins.plugin("spp_http");
    let mut cfg = ServiceConfig::single(&plugin, 1);
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    cfg.proxy_plugin_conf = CONF.into();
    cfg.group_mut().plugin_conf = CONF.into();
    Service::start(&cfg)
}

fn assert_ok(a: &Answer) {
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, BODY.as_bytes(), "{a:?}");
}

fn keep_alive(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    for path in ["/", "/a", "/b?x=1"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let a = c.answer();
        assert_ok(&a);
        assert_eq!(a.header("connection"), None, "{a:?}");
    }
}

fn pipelined_in_order(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    let batch = [
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    c.send(batch.as_bytes());
    assert_ok(&c.answer());
    let head = c.answer_of(true);
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("9"))
    );
    let old = c.answer();
    assert_ok(&old);
    assert_eq!(old.header("connection"), Some("keep-alive"));
    assert_ok(&c.answer());
    assert_ok(&c.answer());
    let last = c.answer();
    assert_ok(&last);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(c.closed(), "open after Connection: close");
}

fn bodies_in_pieces(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    let length = [
        "POST /l HTTP/1.1\r\nContent-",
        "Length: 11\r\n\r\nhello",
        " world",
    ];
    let chunked = [
        "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
        "\nhello\r\n6\r\n wor",
        "ld\r\n0\r\nX-Trailer: 1\r\n",
        "\r\n",
    ];
    for pieces in [&length[..], &chunked[..]] {
        for piece in pieces {
            c.send(piece.as_bytes());
            std::thread::sleep(PIECE_GAP);
        }
        assert_ok(&c.answer());
    }
}

fn refused(addr: SocketAddr, request: &[u8], status: u16) {
    let mut c = Client::connect(addr);
    c.send(request);
    let a = c.answer();
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(c.closed(), "open after {status}");
}

fn http10_closes(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let a = c.answer();
    assert_ok(&a);
    assert_eq!(a.header("connection"), Some("close"));
    assert!(c.closed(), "open after an HTTP/1.0 answer");
}

#[test]
fn http_example_serves_http11() {
    let service = service();
    let addr = service.tcp();
    keep_alive(addr);
    pipelined_in_order(addr);
    bodies_in_pieces(addr);
    refused(addr, b"\x01\x02 garbage\r\n\r\n", 400);
    refused(addr, b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
    refused(addr, b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", 413);
    refused(
        addr,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n",
        413,
    );
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2048));
    refused(addr, huge.as_bytes(), 431);
    // Headers still arriving past the limit: refused before their end.
    let partial = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(2048));
    refused(addr, partial.as_bytes(), 431);
    http10_closes(addr);
    // The service still answers after every refusal.
    keep_alive(addr);
}
