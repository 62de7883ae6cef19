//! The counters every process keeps in shared memory: [`WorkerStats`] in
//! each pair header, [`ProxyStats`] in the proxy header. Every field is a
//! 64-bit counter with one writer (one process; `log_dropped` is added to
//! by any of its threads); its name is the metric name.

use std::sync::atomic::{AtomicU64, Ordering};

/// Defines a `#[repr(C)]` block of `AtomicU64` counters whose field names
/// are the metric names, with [`NAMES`](ProxyStats::NAMES) and a
/// [`snapshot`](ProxyStats::snapshot) so readers never list the fields
/// again, and a plain-`u64` tally of the same fields that the single writer
/// adds to locally and [`flush`](ProxyTally::flush)es once per batch.
macro_rules! counters {
    ($(#[$meta:meta])* $name:ident, $tally:ident { $($(#[$fmeta:meta])* pub $field:ident: AtomicU64,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: AtomicU64,)*
        }

        #[doc = concat!("Local increments of [`", stringify!($name), "`], written by [`", stringify!($tally), "::flush`].")]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $tally {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $tally {
            /// Adds every non-zero increment to `stats` and resets it. Only
            /// the counters' single writer may call it: it adds with a
            /// plain load and store, no locked instruction.
            pub fn flush(&mut self, stats: &$name) {
                $(
                    if self.$field != 0 {
                        let now = stats.$field.load(Ordering::Relaxed);
                        stats.$field.store(now.wrapping_add(self.$field), Ordering::Relaxed);
                        self.$field = 0;
                    }
                )*
            }
        }

        impl $name {
            /// Every counter's name, in layout order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Every counter's name and current value, in layout order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.load(Ordering::Relaxed))),*]
            }
        }
    };
}

counters! {
    /// Counters a worker keeps (written by the worker only).
    WorkerStats, WorkerTally {
    /// Requests handed to `spp_process`.
    pub requests: AtomicU64,
    /// `spp_process` returned non-zero.
    pub process_errors: AtomicU64,
    /// A hook panicked (caught by the Rust layer).
    pub plugin_panics: AtomicU64,
    /// Response records queued.
    pub replies: AtomicU64,
    /// Response bytes queued.
    pub reply_bytes: AtomicU64,
    /// Replies dropped: response ring full for too long, or too large.
    pub replies_dropped: AtomicU64,
    /// Nanoseconds spent inside `spp_process` (the same as
    /// `PairHeader::process_time.sum_ns`, kept here with the counters).
    pub busy_ns: AtomicU64,
    /// Requests not processed because they waited in the ring longer than
    /// the group's `msg_timeout`.
    pub stale_dropped: AtomicU64,
    /// Log lines dropped because writing them failed (a full log disk);
    /// added to with `fetch_add` by the logging layer
    /// (`spp_ipc::logging::count_drops_in`), from any thread.
    pub log_dropped: AtomicU64,
    /// Micro-thread and async mode: requests held now (running, suspended or waiting
    /// behind their flow), stored every loop turn (a gauge, never added;
    /// 0 in plain mode). Appended in layout 4.
    pub in_flight: AtomicU64,
    /// Async mode: deferred requests the worker expired itself (still in
    /// flight `task_timeout` + `SPP_TASK_GRACE_MS` after they started;
    /// their connection was closed). Appended in layout 7.
    pub tasks_expired: AtomicU64,
    /// Async mode: `complete` calls from a plugin thread whose token was
    /// not in flight when the worker forwarded them (completed already,
    /// expired, never deferred). Appended in layout 7.
    pub tasks_unknown: AtomicU64,
}
}

counters! {
    /// Counters the proxy keeps (written by the proxy only). Gauges such as
    /// `conns_active` are stored, not added.
    ProxyStats, ProxyTally {
    /// TCP connections accepted.
    pub conns_accepted: AtomicU64,
    /// TCP connections open now.
    pub conns_active: AtomicU64,
    /// TCP connections refused at the connection cap.
    pub conns_refused: AtomicU64,
    /// Requests framed (TCP) or datagrams accepted (UDP).
    pub requests: AtomicU64,
    /// Request bytes received.
    pub bytes_in: AtomicU64,
    /// Response bytes written to clients.
    pub bytes_out: AtomicU64,
    /// Response records taken from the rings.
    pub responses: AtomicU64,
    /// `spp_input` said the stream is malformed.
    pub frame_errors: AtomicU64,
    /// A request passed `max_request_size`.
    pub oversized: AtomicU64,
    /// A request ring was full.
    pub ring_full: AtomicU64,
    /// No live worker in the routed group, or an unknown group.
    pub no_worker: AtomicU64,
    /// In-flight requests failed because their worker died.
    pub worker_died_failed: AtomicU64,
    /// Connections closed for idleness.
    pub idle_closed: AtomicU64,
    /// Connections closed because the client did not read its responses.
    pub slow_closed: AtomicU64,
    /// Responses for a flow that no longer exists.
    pub stale_responses: AtomicU64,
    /// UDP datagrams dropped (no flow slot, bad frame, send failure).
    pub udp_dropped: AtomicU64,
    /// A proxy-side hook panicked.
    pub plugin_panics: AtomicU64,
    /// Requests a worker reported stale (waited past `msg_timeout`); each
    /// went to the exception hook (`SPP_EXC_TIMEOUT`) or closed its
    /// connection.
    pub stale_failed: AtomicU64,
    /// Calls of the exception hook, any reason.
    pub exceptions: AtomicU64,
    /// Host-service calls refused (reply to an unknown flow, no room).
    pub host_refused: AtomicU64,
    /// Log lines dropped because writing them failed (a full log disk);
    /// added to with `fetch_add` by the logging layer
    /// (`spp_ipc::logging::count_drops_in`), from any thread.
    pub log_dropped: AtomicU64,
    /// Requests refused as poison: their bytes were in process when
    /// `spp_ipc::poison::POISON_DEATHS` workers died.
    pub poison_refused: AtomicU64,
    /// Worker picks that passed over a stalled worker (requests in flight,
    /// `completed_seq` unmoved past the stall bound).
    pub stalled_skips: AtomicU64,
    /// Requests the proxy failed itself: they waited past `msg_timeout`
    /// plus a grace on a worker that neither ran `spp_process` nor
    /// stamped its heartbeat (frozen); each went to the exception hook
    /// (`SPP_EXC_TIMEOUT`) and its connection was closed.
    pub proxy_expired: AtomicU64,
    /// Connections closed because a partial request was not completed
    /// within `request_timeout` of its first byte.
    pub request_timeouts: AtomicU64,
    /// Connections closed, the table being full, to make room for a new
    /// one: those that had waited longest on a partial request.
    pub evicted_partial: AtomicU64,
    /// `spp_input` returned more bytes than it was given (a plugin error):
    /// the TCP connection closed, the UDP datagram dropped. Appended in
    /// layout 5.
    pub input_overrun: AtomicU64,
    /// Closed-connection notices for workers (`spp_flow_closed`) dropped
    /// because a worker's queue of them was full. Appended in layout 5.
    pub flow_closed_dropped: AtomicU64,
    /// Connections closed because the answers the proxy held back for
    /// request order (a later request answered before an earlier one)
    /// would have passed `max_send_buffer` with the send buffer. Appended
    /// in layout 5.
    pub held_overflow: AtomicU64,
}
}
