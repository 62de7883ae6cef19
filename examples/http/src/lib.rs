//! An HTTP/1.1 server plugin for spp: every request gets the same fixed
//! answer (`200 OK`, body `hello world` unless configured), like nginx's
//! `return 200 "hello world"` — the model for a text protocol plugin, and
//! what `spp-bench compare` drives with `wrk` against nginx.
//!
//! * The proxy's `input` frames one whole request (headers and body) with
//!   [`frame::parse`], built on `httparse`: keep-alive, pipelining
//!   (requests of a connection are answered in order; one group),
//!   `Content-Length` and `chunked` request bodies.
//! * A request that is not valid HTTP gets 400, a body over `max_body`
//!   413, headers over `max_header` 431 — each answered by the worker,
//!   which then closes the connection (the proxy frames the bad bytes
//!   rather than closing, so the client learns why).
//! * `Connection: close` (or HTTP/1.0 without `Connection: keep-alive`)
//!   is answered with `Connection: close`, then the connection closes.
//!
//! Settings (`plugin_conf`, both roles should get the same): see [`conf`].
//! TCP only: a UDP datagram is framed the same way but HTTP over UDP is
//! not a thing clients do. Answers carry no `Date` header.
//!
//! ```text
//! cargo build --release -p spp-example-http
//! ./target/release/spp start -c examples/http/spp.toml
//! curl -v http://127.0.0.1:8080/
//! ```

pub mod answer;
pub mod conf;
pub mod frame;

use answer::Answers;
use conf::{Conf, Limits};
use frame::Parsed;
use spp_plugin_api::{export_plugin, Conn, Host, Input, Level, Plugin, Processed};

/// The HTTP plugin: its limits and prebuilt answers.
pub struct Http {
    host: Host,
    limits: Limits,
    answers: Answers,
}

impl Plugin for Http {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match Conf::parse(conf) {
            Ok(conf) => Ok(Http {
                host,
                limits: conf.limits,
                answers: Answers::new(&conf.body),
            }),
            Err(why) => {
                host.log(Level::Error, &format!("http: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        match frame::parse(buf, self.limits) {
            Parsed::NeedMore => Input::NeedMore,
            Parsed::Request { len, .. } | Parsed::Reject { len, .. } => Input::Complete(len),
        }
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let (answer, head_only, keep) = match frame::parse(req, self.limits) {
            Parsed::Request {
                keep_alive: true,
                head,
                http10,
                ..
            } => {
                let ok = if http10 {
                    &self.answers.ok_keep_alive
                } else {
                    &self.answers.ok
                };
                (ok, head, true)
            }
            Parsed::Request { head, .. } => (&self.answers.ok_close, head, false),
            Parsed::Reject { status, .. } => (self.answers.reject(status), false, false),
            // The proxy framed these bytes as a whole request: not one.
            Parsed::NeedMore => (self.answers.reject(frame::Reject::BadRequest), false, false),
        };
        match self.host.reply(conn.flow(), answer.bytes(head_only)) {
            Ok(()) if keep => Processed::Done,
            _ => Processed::Close,
        }
    }
}

export_plugin!(Http);
