//! The "no framework" baseline: a single-threaded mio/epoll echo server
//! speaking the spp echo plugin's protocol (a 4-byte big-endian length, then
//! the payload; the reply is the same frame), on TCP and on UDP (one frame
//! per datagram). It is the limit the spp data path is compared against, so
//! it is built to be cheap: one shared read buffer, frames cut in place and
//! written back straight from it (one `write` for every frame of a read),
//! per-connection buffers only for a partial frame or unsent bytes, and
//! reading paused while a client leaves more than
//! [`Limits::max_pending`] bytes unread.
//!
//! In-process use (tests, comparison code):
//!
//! ```no_run
//! use spp_benches::direct::{Limits, Listen, Server};
//!
//! let running = Server::spawn(&[Listen::tcp("127.0.0.1:0".parse().unwrap())], Limits::default())
//!     .expect("bind");
//! let addr = running.listening()[0].addr;
//! // ... connect to `addr` ...
//! running.stop().expect("clean stop");
//! ```
//!
//! The `spp-echo-direct` binary wraps the same server with a CLI and
//! SIGTERM/SIGINT handling.

mod config;
mod error;
mod server;
mod tcp;
mod udp;

pub use config::{Limits, Listen, Proto, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PENDING};
pub use error::DirectError;
pub use server::{Running, Server, StopHandle, MAX_LISTENERS};
