//! The safe Rust view of the ABI's values: a request's connection info
//! ([`Conn`]), what the hooks answer ([`Input`], [`Processed`],
//! [`AfterException`]), why the proxy raised an exception
//! ([`ExceptionReason`]) and the [`Host`] services handle. The hooks
//! themselves are the traits of [`crate::hooks`].

use crate::abi::*;
use std::ffi::c_int;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Connection info of a request, as a safe view over [`SppConnInfo`].
#[derive(Clone, Copy, Debug)]
pub struct Conn<'a>(pub &'a SppConnInfo);

impl Conn<'_> {
    /// The flow id to reply to.
    pub fn flow(&self) -> u64 {
        self.0.flow
    }
    /// Whether the request came over UDP.
    pub fn is_udp(&self) -> bool {
        self.0.proto == SPP_PROTO_UDP
    }
    /// Index of the listener in the config's `listen` list.
    pub fn listener(&self) -> u16 {
        self.0.listener
    }
    /// The local address the request arrived on.
    pub fn local(&self) -> Option<SocketAddr> {
        self.0.local.to_socket_addr()
    }
    /// The peer's address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.0.remote.to_socket_addr()
    }
    /// Receive time, µs since the Unix epoch.
    pub fn recv_time_us(&self) -> u64 {
        self.0.recv_time_us
    }
    /// In `process`: the request's note, the bytes the proxy's `input`
    /// attached with [`Host::set_note`] (at most [`SPP_NOTE_MAX`]); empty
    /// without one, in every proxy hook, and when the host has no notes
    /// (a host older than `set_note`, whose connection info lacks the
    /// fields: the layer then never reads them).
    pub fn note(&self) -> &[u8] {
        if !HOST_HAS_NOTES.load(Ordering::Relaxed) {
            return &[];
        }
        let len = (self.0.note_len as usize).min(SPP_NOTE_MAX);
        if self.0.note.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: a host with notes sets `note` to `note_len` bytes (at
        // most SPP_NOTE_MAX) that stay valid for the hook call this `Conn`
        // was made for, which `&self` (borrowing the info) does not outlive.
        unsafe { std::slice::from_raw_parts(self.0.note, len) }
    }
}

/// Whether the host this plugin was initialized by has request notes
/// (`spp_host.set_note`, and with it the note fields of `spp_conn_info`);
/// set by the layer's `init`.
pub(crate) static HOST_HAS_NOTES: AtomicBool = AtomicBool::new(false);

/// What `input` found at the front of a connection's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The first N bytes (N > 0) are one complete request. N larger than
    /// the buffer is a plugin error: the host closes the connection (drops
    /// the datagram) and counts it in `input_overrun`.
    Complete(usize),
    /// Not enough bytes yet.
    NeedMore,
    /// The stream is malformed: close the connection.
    Close,
}

/// What `process` did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processed {
    /// Handled: answered now, or to be answered later through the
    /// [`Host`] (return code 0).
    Done,
    /// Close the connection once its pending bytes are flushed (return
    /// code -1).
    Close,
}

impl Processed {
    /// [`Processed::Done`] when the reply was queued, else
    /// [`Processed::Close`]: the usual end of a `process` that answers at
    /// once.
    pub fn replied(sent: Result<(), HostError>) -> Self {
        match sent {
            Ok(()) => Processed::Done,
            Err(_) => Processed::Close,
        }
    }

    /// The `spp_process` return code.
    pub fn code(self) -> c_int {
        match self {
            Processed::Done => 0,
            Processed::Close => -1,
        }
    }
}

/// What to do with the connection after `exception`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterException {
    /// Keep the connection open (an answer was sent, say).
    Keep,
    /// Close the connection.
    Close,
}

/// Why a request could not be handed to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionReason {
    /// The worker's request ring was full.
    QueueFull,
    /// The group has no live worker, or `route` named no group.
    NoWorker,
    /// The worker died while holding the request.
    WorkerDied,
    /// The request waited longer than its group's `msg_timeout` and was
    /// not processed.
    Timeout,
    /// Refused unprocessed: workers died twice while processing these very
    /// bytes (a poison request).
    Poison,
    /// A reason this version does not know.
    Other(i32),
}

impl ExceptionReason {
    /// A short kebab-case name for an error answer or a log line:
    /// `queue-full`, `no-worker`, `worker-died`, `timeout`, `poison`, or
    /// `unavailable` for a reason this version does not know.
    pub fn name(self) -> &'static str {
        match self {
            Self::QueueFull => "queue-full",
            Self::NoWorker => "no-worker",
            Self::WorkerDied => "worker-died",
            Self::Timeout => "timeout",
            Self::Poison => "poison",
            Self::Other(_) => "unavailable",
        }
    }

    pub(crate) fn from_raw(raw: c_int) -> Self {
        match raw {
            SPP_EXC_QUEUE_FULL => Self::QueueFull,
            SPP_EXC_NO_WORKER => Self::NoWorker,
            SPP_EXC_WORKER_DIED => Self::WorkerDied,
            SPP_EXC_TIMEOUT => Self::Timeout,
            SPP_EXC_POISON => Self::Poison,
            other => Self::Other(other),
        }
    }
}

/// Log levels for [`Host::log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for debugging.
    Debug,
}

/// Why a host service refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The flow is closed or never existed.
    UnknownFlow,
    /// No room right now; the reply was not queued.
    Full,
    /// Larger than the host can ever carry.
    TooLarge,
    /// Not available in this role or thread (or in this host version).
    Unsupported,
    /// A metric name that is empty, longer than 48 bytes, or has other
    /// characters than `[A-Za-z0-9_.:-]`.
    BadName,
    /// A bad argument (`SPP_ERR_BAD_ARG`): a C caller's NULL `data` with
    /// `len > 0`; the safe [`Host`] never causes it.
    BadArg,
    /// A code this version does not know.
    Other(i32),
}

fn host_result(code: c_int) -> Result<(), HostError> {
    match code {
        SPP_OK => Ok(()),
        SPP_ERR_UNKNOWN_FLOW => Err(HostError::UnknownFlow),
        SPP_ERR_FULL => Err(HostError::Full),
        SPP_ERR_TOO_LARGE => Err(HostError::TooLarge),
        SPP_ERR_UNSUPPORTED => Err(HostError::Unsupported),
        SPP_ERR_BAD_NAME => Err(HostError::BadName),
        SPP_ERR_BAD_ARG => Err(HostError::BadArg),
        other => Err(HostError::Other(other)),
    }
}

/// Why the host gave no L5 route (`SPP_L5_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No usable server for the sid (L5 -10000).
    NoServer,
    /// The sid is not known (L5 -8999).
    UnknownSid,
    /// No route table here: the proxy role, or L5 is off (L5 -9998).
    System,
    /// A code this version does not know.
    Other(i32),
}

impl RouteError {
    fn from_raw(code: c_int) -> Self {
        match code {
            SPP_L5_NO_SERVER => RouteError::NoServer,
            SPP_L5_UNKNOWN_SID => RouteError::UnknownSid,
            SPP_L5_SYSTEM => RouteError::System,
            other => RouteError::Other(other),
        }
    }

    /// The L5 error code.
    pub fn code(&self) -> i32 {
        match self {
            RouteError::NoServer => SPP_L5_NO_SERVER,
            RouteError::UnknownSid => SPP_L5_UNKNOWN_SID,
            RouteError::System => SPP_L5_SYSTEM,
            RouteError::Other(code) => *code,
        }
    }
}

/// An L5 route: where to send one call, to [`Host::report`] afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route(pub SppL5Route);

impl Route {
    /// The instance to call.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.0.addr.to_socket_addr()
    }
    /// The sid: (modid, cmdid).
    pub fn sid(&self) -> (u32, u32) {
        (self.0.modid, self.0.cmdid)
    }
}

/// The host's services, valid from `init` until `fini`. Cheap to copy and
/// safe to send to other threads (deferred replies).
#[derive(Clone, Copy, Debug)]
pub struct Host(&'static SppHost);

// SAFETY: the host promises (spp_plugin.h) that its services may be called
// from any thread of the process, and the table itself is never written
// after `spp_init`.
unsafe impl Send for Host {}
// SAFETY: see `Send` above; all access is through shared references.
unsafe impl Sync for Host {}

impl Host {
    /// Wraps the raw table.
    ///
    /// # Safety
    /// `raw` must point to a valid `SppHost` that outlives every use of the
    /// returned handle (the host keeps it alive until `spp_fini`).
    pub unsafe fn from_raw(raw: *const SppHost) -> Option<Host> {
        // SAFETY: the caller guarantees validity and lifetime.
        unsafe { raw.as_ref() }.map(Host)
    }

    /// `true` inside the proxy, `false` inside a worker.
    pub fn is_proxy(&self) -> bool {
        self.0.role == SPP_ROLE_PROXY
    }
    /// The worker's group id (0 in the proxy).
    pub fn group(&self) -> u32 {
        self.0.group
    }
    /// The worker's index inside its group (0 in the proxy).
    pub fn worker_index(&self) -> u32 {
        self.0.worker_index
    }

    /// Sends `data` to `flow`. An empty `data` closes the connection after
    /// pending bytes are flushed (as [`Host::close`]).
    /// [`HostError::Full`]: no room right now, nothing was queued: retry
    /// later from a deferred path (a plugin thread), or drop the answer
    /// (and perhaps [`Host::close`]); never spin on it inside a hook, the
    /// room is made by the loop that called you. [`HostError::TooLarge`]:
    /// longer than [`Host::max_reply`], never fits.
    pub fn reply(&self, flow: u64, data: &[u8]) -> Result<(), HostError> {
        // SAFETY: the host's reply reads exactly `len` bytes from `data`.
        host_result(unsafe { (self.0.reply)(self.0.ctx, flow, data.as_ptr(), data.len()) })
    }

    /// Closes `flow` after its pending bytes are flushed.
    pub fn close(&self, flow: u64) -> Result<(), HostError> {
        // SAFETY: plain call into the host's table.
        host_result(unsafe { (self.0.close)(self.0.ctx, flow) })
    }

    /// Writes one line to the host's log.
    pub fn log(&self, level: Level, text: &str) {
        let level = match level {
            Level::Error => SPP_LOG_ERROR,
            Level::Warn => SPP_LOG_WARN,
            Level::Info => SPP_LOG_INFO,
            Level::Debug => SPP_LOG_DEBUG,
        };
        // SAFETY: the host reads exactly `len` bytes from `text`.
        unsafe { (self.0.log)(self.0.ctx, level, text.as_ptr().cast(), text.len()) }
    }

    /// The table itself.
    pub(crate) fn raw(&self) -> &'static SppHost {
        self.0
    }

    /// The largest reply (bytes) one [`Host::reply`] can ever carry in
    /// this process; a longer one fails with [`HostError::TooLarge`] every
    /// time, so split it or answer an error instead. `None` when the host
    /// does not say (a host older than the field, or 0).
    pub fn max_reply(&self) -> Option<usize> {
        let end = std::mem::offset_of!(SppHost, max_reply) + std::mem::size_of::<u64>();
        if !self.has(end) || self.0.max_reply == 0 {
            return None;
        }
        Some(usize::try_from(self.0.max_reply).unwrap_or(usize::MAX))
    }

    /// Proxy, inside `input` only: attaches `note` (at most
    /// [`SPP_NOTE_MAX`] bytes, copied) to the request this `input` call
    /// frames (the one its [`Input::Complete`] cuts); the worker's
    /// `process` reads it with [`Conn::note`] instead of parsing the same
    /// bytes again. A later call in the same `input` replaces it; an empty
    /// `note` removes it. [`HostError::TooLarge`] past the max (the note
    /// stays as it was); [`HostError::Unsupported`] in a worker, in other
    /// hooks, or from a host without notes.
    pub fn set_note(&self, note: &[u8]) -> Result<(), HostError> {
        if !self.has_notes() {
            return Err(HostError::Unsupported);
        }
        // SAFETY: the host reads exactly `len` bytes from `note` (a dangling
        // but non-null pointer with len 0 is never read).
        host_result(unsafe { (self.0.set_note)(self.0.ctx, note.as_ptr(), note.len()) })
    }

    /// Whether the host's table has `set_note` (and its connection info the
    /// note fields).
    pub(crate) fn has_notes(&self) -> bool {
        self.has(std::mem::offset_of!(SppHost, set_note) + std::mem::size_of::<SetNoteFn>())
    }

    /// Whether the host's table has the field ending at `end` (a host built
    /// before the field was appended has a smaller `size`).
    pub(crate) fn has(&self, end: usize) -> bool {
        self.0.size as usize >= end
    }

    /// Adds `delta` to the counter `name` (shown by `spp stat` and on the
    /// Prometheus endpoint). Names are 1..=48 bytes of `[A-Za-z0-9_.:-]`;
    /// a process has at most 32 counter names. Any thread; lock-free.
    pub fn count(&self, name: &str, delta: u64) -> Result<(), HostError> {
        if !self.has(std::mem::offset_of!(SppHost, count) + std::mem::size_of::<CountFn>()) {
            return Err(HostError::Unsupported);
        }
        // SAFETY: the host reads exactly `name_len` bytes from `name`.
        host_result(unsafe { (self.0.count)(self.0.ctx, name.as_ptr().cast(), name.len(), delta) })
    }

    /// L5: an instance of sid (`modid`, `cmdid`) by weighted random choice,
    /// skipping failing ones (worker role). No lock, no syscall.
    pub fn get_route(&self, modid: u32, cmdid: u32) -> Result<Route, RouteError> {
        self.route_with(std::mem::offset_of!(SppHost, get_route), |out| {
            // SAFETY: `out` is a valid, writable `SppL5Route`.
            unsafe { (self.0.get_route)(self.0.ctx, modid, cmdid, out) }
        })
    }

    /// L5: an instance of the sid by consistent hash of `key` (the same key
    /// reaches the same instance while the instance set is stable).
    pub fn get_route_hash(&self, modid: u32, cmdid: u32, key: u64) -> Result<Route, RouteError> {
        self.route_with(std::mem::offset_of!(SppHost, get_route_hash), |out| {
            // SAFETY: `out` is a valid, writable `SppL5Route`.
            unsafe { (self.0.get_route_hash)(self.0.ctx, modid, cmdid, key, out) }
        })
    }

    /// L5: reports the outcome of a call made on `route` (`result` >= 0 is
    /// a success) and its latency; this is what moves traffic away from
    /// failing instances.
    pub fn report(
        &self,
        route: &Route,
        result: i32,
        latency: std::time::Duration,
    ) -> Result<(), HostError> {
        let end = std::mem::offset_of!(SppHost, report) + std::mem::size_of::<ReportFn>();
        if !self.has(end) {
            return Err(HostError::Unsupported);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // SAFETY: `route` points to a valid `SppL5Route` for the call.
        host_result(unsafe { (self.0.report)(self.0.ctx, &route.0, result, us) })
    }

    /// Suspends the calling request's micro-thread for `duration` (rounded
    /// up to whole ms) while the worker serves other requests. Outside a
    /// micro-thread (plain mode, a plugin thread, the proxy):
    /// `Err(HostError::Unsupported)` at once, never a blocking sleep.
    pub fn sleep(&self, duration: std::time::Duration) -> Result<(), HostError> {
        let end = std::mem::offset_of!(SppHost, sleep) + std::mem::size_of::<SleepFn>();
        if !self.has(end) {
            return Err(HostError::Unsupported);
        }
        let ms = u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        // SAFETY: the host's own `ctx`, passed back as the ABI says.
        host_result(unsafe { (self.0.sleep)(self.0.ctx, ms) })
    }

    fn route_with(
        &self,
        offset: usize,
        call: impl FnOnce(*mut SppL5Route) -> c_int,
    ) -> Result<Route, RouteError> {
        if !self.has(offset + std::mem::size_of::<GetRouteFn>()) {
            return Err(RouteError::System);
        }
        let mut out = SppL5Route::default();
        match call(&mut out) {
            SPP_OK => Ok(Route(out)),
            code => Err(RouteError::from_raw(code)),
        }
    }

    /// Records one latency sample in the histogram `name` (same name rules;
    /// at most 8 histogram names per process).
    pub fn record_latency(
        &self,
        name: &str,
        latency: std::time::Duration,
    ) -> Result<(), HostError> {
        let end =
            std::mem::offset_of!(SppHost, record_latency) + std::mem::size_of::<RecordLatencyFn>();
        if !self.has(end) {
            return Err(HostError::Unsupported);
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: the host reads exactly `name_len` bytes from `name`.
        host_result(unsafe {
            (self.0.record_latency)(self.0.ctx, name.as_ptr().cast(), name.len(), nanos)
        })
    }
}
