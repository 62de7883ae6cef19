//! What an async plugin implements and handles: the [`AsyncPlugin`] trait,
//! the owned [`Request`] a task gets, the [`Reply`] it ends with, and why a
//! task may fail ([`TaskFailure`]).

use crate::abi::SPP_NOTE_MAX;
use crate::plugin::{Conn, Host, Input};
use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;

/// A business plugin whose worker side is an `async fn`: each request is a
/// task on the plugin's current-thread tokio runtime (see the [module
/// docs](crate::asynchronous) for where that runtime runs). Export it with
/// [`export_async_plugin!`](crate::export_async_plugin).
///
/// The proxy side (`input`, and the optional hooks `OnRoute`,
/// `OnException`, `OnClose`, `OnFini`) stays synchronous and borrowed, as
/// in [`Plugin`](crate::Plugin).
pub trait AsyncPlugin: Send + Sync + Sized + 'static {
    /// The plugin's state of one proxy TCP connection, as
    /// [`Plugin::ConnState`](crate::Plugin::ConnState).
    type ConnState: Default + 'static;

    /// Whether the plugin keeps state in a worker's memory, as
    /// [`Plugin::STATEFUL`](crate::Plugin::STATEFUL).
    const STATEFUL: bool = false;

    /// `spp_init`, both roles. In a worker it runs inside the plugin's tokio
    /// runtime context (`Handle::current()` works: `tokio::spawn`, making
    /// clients), but must not `block_on`. In the proxy there is no runtime.
    fn init(host: Host, conf: &str) -> Result<Self, i32>;

    /// `spp_input` (proxy): synchronous, borrowed bytes.
    fn input(&self, conn: Conn<'_>, state: &mut Self::ConnState, buf: &[u8]) -> Input;

    /// `spp_process` as a task. The future runs on the plugin's
    /// current-thread tokio runtime; it need not be `Send`. Its [`Reply`]
    /// is the request's answer (sent after whatever the task sent itself
    /// with [`Host::reply`]).
    fn process(&self, req: Request) -> impl Future<Output = Reply>;

    /// The answer of a request whose task failed: it passed the group's
    /// `task_timeout` (the future is dropped), or it panicked. Default:
    /// close the connection.
    fn failed(&self, flow: u64, why: TaskFailure) -> Reply {
        let _ = (flow, why);
        Reply::close()
    }

    /// A TCP connection this worker served closed (`spp_flow_closed`); its
    /// tasks still running were cancelled (dropped) just before.
    fn flow_closed(&self, flow: u64) {
        let _ = flow;
    }
}

/// Why a task gave no answer of its own.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskFailure {
    /// It ran longer than the group's `task_timeout`; its future was
    /// dropped.
    TimedOut,
    /// It panicked; its future was dropped.
    Panicked,
}

/// One request, owned by its task: the connection info of `spp_process`
/// and the request bytes, copied once out of the ring into [`Bytes`].
#[derive(Clone, Debug)]
pub struct Request {
    flow: u64,
    recv_time_us: u64,
    udp: bool,
    listener: u16,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    note_len: u8,
    note: [u8; SPP_NOTE_MAX],
    body: Bytes,
}

impl Request {
    /// The request of a `spp_process` call: `conn`'s info and a copy of
    /// `body`.
    pub(crate) fn from_conn(conn: Conn<'_>, body: &[u8]) -> Self {
        let mut note = [0u8; SPP_NOTE_MAX];
        let src = conn.note();
        let len = src.len().min(SPP_NOTE_MAX);
        note[..len].copy_from_slice(&src[..len]);
        Request {
            flow: conn.flow(),
            recv_time_us: conn.recv_time_us(),
            udp: conn.is_udp(),
            listener: conn.listener(),
            local: conn.local(),
            remote: conn.remote(),
            note_len: u8::try_from(len).unwrap_or(u8::MAX),
            note,
            body: Bytes::copy_from_slice(body),
        }
    }

    /// The flow id to reply to.
    pub fn flow(&self) -> u64 {
        self.flow
    }
    /// Whether the request came over UDP.
    pub fn is_udp(&self) -> bool {
        self.udp
    }
    /// Index of the listener in the config's `listen` list.
    pub fn listener(&self) -> u16 {
        self.listener
    }
    /// The local address the request arrived on.
    pub fn local(&self) -> Option<SocketAddr> {
        self.local
    }
    /// The peer's address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }
    /// Receive time, µs since the Unix epoch.
    pub fn recv_time_us(&self) -> u64 {
        self.recv_time_us
    }
    /// The request's note (see [`Conn::note`]); empty without one.
    pub fn note(&self) -> &[u8] {
        &self.note[..usize::from(self.note_len)]
    }
    /// The request bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The request bytes, owned (no copy).
    pub fn into_body(self) -> Bytes {
        self.body
    }
}

/// How a task ends its request: an answer to send (maybe none), and
/// whether to close the connection after what was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    body: Option<Bytes>,
    close: bool,
}

impl Reply {
    /// One answer. An empty one sends nothing (as [`Reply::none`]; an
    /// empty `host.reply` would close the connection).
    pub fn bytes(b: impl Into<Bytes>) -> Self {
        let body: Bytes = b.into();
        Reply {
            body: (!body.is_empty()).then_some(body),
            close: false,
        }
    }

    /// Nothing more to send (the task replied already through
    /// [`Host::reply`], or a UDP request without answer).
    pub fn none() -> Self {
        Reply::default()
    }

    /// Close the connection (after what was sent).
    pub fn close() -> Self {
        Reply {
            body: None,
            close: true,
        }
    }

    /// This answer, then close the connection.
    pub fn and_close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The answer's bytes, if any.
    pub(crate) fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }

    /// Whether the connection closes after the answer.
    pub(crate) fn closes(&self) -> bool {
        self.close
    }
}

impl From<Bytes> for Reply {
    fn from(b: Bytes) -> Self {
        Reply::bytes(b)
    }
}

impl From<Vec<u8>> for Reply {
    fn from(b: Vec<u8>) -> Self {
        Reply::bytes(b)
    }
}

impl From<&'static [u8]> for Reply {
    fn from(b: &'static [u8]) -> Self {
        Reply::bytes(b)
    }
}
