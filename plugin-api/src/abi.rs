//! The raw C ABI, version 1: a field-for-field mirror of
//! `include/spp_plugin.h`. Every type here is `#[repr(C)]`; the header is the
//! source of truth and `tests` below pin the sizes both sides rely on.

use std::ffi::{c_char, c_int, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The ABI version this crate describes (`SPP_PLUGIN_ABI_VERSION`).
pub const SPP_PLUGIN_ABI_VERSION: u32 = 1;

/// The group a request goes to when the plugin has no `spp_route`.
pub const SPP_DEFAULT_GROUP: u32 = 1;

/// `conn.proto` of a TCP request.
pub const SPP_PROTO_TCP: u8 = 0;
/// `conn.proto` of a UDP request.
pub const SPP_PROTO_UDP: u8 = 1;
/// `spp_addr.family` of an IPv4 address.
pub const SPP_AF_INET: u8 = 4;
/// `spp_addr.family` of an IPv6 address.
pub const SPP_AF_INET6: u8 = 6;

/// `spp_host.role` inside the proxy.
pub const SPP_ROLE_PROXY: u32 = 1;
/// `spp_host.role` inside a worker.
pub const SPP_ROLE_WORKER: u32 = 2;

/// Log levels for `spp_host.log`.
pub const SPP_LOG_ERROR: c_int = 1;
/// See [`SPP_LOG_ERROR`].
pub const SPP_LOG_WARN: c_int = 2;
/// See [`SPP_LOG_ERROR`].
pub const SPP_LOG_INFO: c_int = 3;
/// See [`SPP_LOG_ERROR`].
pub const SPP_LOG_DEBUG: c_int = 4;

/// Host service succeeded.
pub const SPP_OK: c_int = 0;
/// The flow is closed or never existed.
pub const SPP_ERR_UNKNOWN_FLOW: c_int = -1;
/// No room: the reply was not queued.
pub const SPP_ERR_FULL: c_int = -2;
/// Larger than the ring can ever hold.
pub const SPP_ERR_TOO_LARGE: c_int = -3;
/// Not available in this role or from this thread.
pub const SPP_ERR_UNSUPPORTED: c_int = -4;
/// A metric name that is empty, too long or has other characters than
/// `[A-Za-z0-9_.:-]`.
pub const SPP_ERR_BAD_NAME: c_int = -5;
/// A bad argument: `reply` with a NULL `data` and `len > 0`.
pub const SPP_ERR_BAD_ARG: c_int = -6;
/// `complete`: the token is not in flight (completed already, expired, or
/// never deferred).
pub const SPP_ERR_UNKNOWN_TOKEN: c_int = -7;
/// How long past `task_timeout_ms` the host waits before it expires a
/// deferred request itself (closes its connection).
pub const SPP_TASK_GRACE_MS: u64 = 1000;

/// The most bytes of a request note (`spp_host.set_note`).
pub const SPP_NOTE_MAX: usize = 64;

/// What a Rust-layer hook returns when it panicked.
pub const SPP_HOOK_PANICKED: c_int = -32768;

/// `spp_exception` reason: the worker's request ring was full.
pub const SPP_EXC_QUEUE_FULL: c_int = 1;
/// `spp_exception` reason: the group has no live worker.
pub const SPP_EXC_NO_WORKER: c_int = 2;
/// `spp_exception` reason: the worker died holding the request.
pub const SPP_EXC_WORKER_DIED: c_int = 3;
/// `spp_exception` reason: the request waited longer than its group's
/// `msg_timeout` and was not processed.
pub const SPP_EXC_TIMEOUT: c_int = 4;
/// `spp_exception` reason: refused unprocessed, because workers died
/// twice while processing these very bytes (a poison request).
pub const SPP_EXC_POISON: c_int = 5;

/// An IPv4 or IPv6 socket address (`spp_addr`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SppAddr {
    /// [`SPP_AF_INET`] or [`SPP_AF_INET6`].
    pub family: u8,
    /// Padding, zero.
    pub _pad: u8,
    /// Port, host byte order.
    pub port: u16,
    /// IPv6 scope id; 0 for IPv4.
    pub scope_id: u32,
    /// Address bytes in network order; IPv4 uses the first 4.
    pub ip: [u8; 16],
}

impl SppAddr {
    /// Encodes a socket address.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        let mut ip = [0u8; 16];
        match addr {
            SocketAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.ip().octets());
                SppAddr {
                    family: SPP_AF_INET,
                    _pad: 0,
                    port: v4.port(),
                    scope_id: 0,
                    ip,
                }
            }
            SocketAddr::V6(v6) => {
                ip.copy_from_slice(&v6.ip().octets());
                SppAddr {
                    family: SPP_AF_INET6,
                    _pad: 0,
                    port: v6.port(),
                    scope_id: v6.scope_id(),
                    ip,
                }
            }
        }
    }

    /// Decodes the address; `None` for an unknown family.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        match self.family {
            SPP_AF_INET => {
                let ip = Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]);
                Some(SocketAddr::V4(SocketAddrV4::new(ip, self.port)))
            }
            SPP_AF_INET6 => Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(self.ip),
                self.port,
                0,
                self.scope_id,
            ))),
            _ => None,
        }
    }

    /// The IP part, if the family is known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.to_socket_addr().map(|a| a.ip())
    }
}

/// Everything the host knows about a request's connection (`spp_conn_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SppConnInfo {
    /// Connection (TCP) or sender (UDP) id; never reused while the host runs.
    pub flow: u64,
    /// Receive time of the request's last byte, µs since the Unix epoch.
    pub recv_time_us: u64,
    /// [`SPP_PROTO_TCP`] or [`SPP_PROTO_UDP`].
    pub proto: u8,
    /// Padding, zero.
    pub _pad: u8,
    /// Index of the listener in the config's `listen` list.
    pub listener: u16,
    /// Reserved, zero.
    pub _reserved: u32,
    /// The address the request arrived on.
    pub local: SppAddr,
    /// The peer's address.
    pub remote: SppAddr,
    /// `spp_process`: the request's note (`spp_host.set_note` in the
    /// proxy's input hook), valid during the call; null without one and in
    /// every proxy hook. Appended in ABI 1: read it only when the host has
    /// `set_note`.
    pub note: *const u8,
    /// Bytes at `note` (0 without one).
    pub note_len: u32,
    /// Reserved, zero.
    pub _reserved2: u32,
}

impl Default for SppConnInfo {
    fn default() -> Self {
        SppConnInfo {
            flow: 0,
            recv_time_us: 0,
            proto: 0,
            _pad: 0,
            listener: 0,
            _reserved: 0,
            local: SppAddr::default(),
            remote: SppAddr::default(),
            note: std::ptr::null(),
            note_len: 0,
            _reserved2: 0,
        }
    }
}

impl SppConnInfo {
    /// The same info with its note cleared (null, 0): what every proxy hook
    /// and the ring's meta carry.
    #[inline]
    pub fn without_note(&self) -> Self {
        SppConnInfo {
            note: std::ptr::null(),
            note_len: 0,
            ..*self
        }
    }

    /// The same info pointing at `note` (null when empty); the pointer is
    /// valid only as long as `note` is.
    #[inline]
    pub fn with_note(&self, note: &[u8]) -> Self {
        SppConnInfo {
            note: if note.is_empty() {
                std::ptr::null()
            } else {
                note.as_ptr()
            },
            note_len: note.len() as u32,
            ..*self
        }
    }
}

// SAFETY: the only non-`Send`/`Sync` field is `note`, a raw pointer this
// type never dereferences: reading through it is unsafe, and its validity is
// the reader's promise (the host sets it only for the duration of a call).
unsafe impl Send for SppConnInfo {}
// SAFETY: as for `Send`: shared access reads the pointer's value only.
unsafe impl Sync for SppConnInfo {}

/// `spp_host.reply`.
pub type ReplyFn =
    unsafe extern "C" fn(ctx: *mut c_void, flow: u64, data: *const u8, len: usize) -> c_int;
/// `spp_host.close`.
pub type CloseFn = unsafe extern "C" fn(ctx: *mut c_void, flow: u64) -> c_int;
/// `spp_host.log`.
pub type LogFn =
    unsafe extern "C" fn(ctx: *mut c_void, level: c_int, text: *const c_char, len: usize);

/// L5: no usable server for the sid.
pub const SPP_L5_NO_SERVER: c_int = -10000;
/// L5: no route table in this process (proxy role, or L5 off).
pub const SPP_L5_SYSTEM: c_int = -9998;
/// L5: bad parameter (a NULL pointer).
pub const SPP_L5_BAD_PARAM: c_int = -9991;
/// L5: the sid is not known.
pub const SPP_L5_UNKNOWN_SID: c_int = -8999;

/// A route to one instance of a sid (`spp_l5_route`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SppL5Route {
    /// The sid's module id.
    pub modid: u32,
    /// The sid's command id.
    pub cmdid: u32,
    /// The instance to call.
    pub addr: SppAddr,
    /// Host bookkeeping: the node's stats slot.
    pub slot: u32,
    /// Host bookkeeping: the slot's assignment epoch.
    pub slot_epoch: u32,
}

/// `spp_host.get_route`.
pub type GetRouteFn =
    unsafe extern "C" fn(ctx: *mut c_void, modid: u32, cmdid: u32, out: *mut SppL5Route) -> c_int;
/// `spp_host.get_route_hash`.
pub type GetRouteHashFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    modid: u32,
    cmdid: u32,
    key: u64,
    out: *mut SppL5Route,
) -> c_int;
/// `spp_host.report`.
pub type ReportFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    route: *const SppL5Route,
    result: c_int,
    latency_us: u64,
) -> c_int;

/// `spp_host.count`.
pub type CountFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    name: *const c_char,
    name_len: usize,
    delta: u64,
) -> c_int;
/// `spp_host.record_latency`.
pub type RecordLatencyFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    name: *const c_char,
    name_len: usize,
    nanos: u64,
) -> c_int;

/// `spp_host.set_note`.
pub type SetNoteFn = unsafe extern "C" fn(ctx: *mut c_void, note: *const u8, len: usize) -> c_int;

/// `spp_host.set_note` of a host (or role) that has no request notes: a
/// worker, a check. Answers `SPP_ERR_UNSUPPORTED`.
///
/// # Safety
/// None needed: it reads nothing.
pub unsafe extern "C" fn set_note_unsupported(
    _ctx: *mut c_void,
    _note: *const u8,
    _len: usize,
) -> c_int {
    SPP_ERR_UNSUPPORTED
}

/// `spp_host.defer`.
pub type DeferFn = unsafe extern "C" fn(ctx: *mut c_void, token: *mut u64) -> c_int;
/// `spp_host.complete`.
pub type CompleteFn = unsafe extern "C" fn(ctx: *mut c_void, token: u64, rc: c_int) -> c_int;

/// `spp_host.defer` of a host (or role, or mode) without async requests:
/// `SPP_ERR_UNSUPPORTED`.
///
/// # Safety
/// None needed: it reads nothing.
pub unsafe extern "C" fn defer_unsupported(_ctx: *mut c_void, _token: *mut u64) -> c_int {
    SPP_ERR_UNSUPPORTED
}

/// `spp_host.complete` of a host without async requests: no token is
/// ever in flight.
///
/// # Safety
/// None needed: it reads nothing.
pub unsafe extern "C" fn complete_unsupported(_ctx: *mut c_void, _token: u64, _rc: c_int) -> c_int {
    SPP_ERR_UNKNOWN_TOKEN
}

/// `spp_host.sleep`.
pub type SleepFn = unsafe extern "C" fn(ctx: *mut c_void, ms: u64) -> c_int;

/// `spp_call.transport`: TCP over a pooled keep-alive connection.
pub const SPP_CALL_TCP: u32 = 0;
/// `spp_call.transport`: UDP, one fresh socket per call.
pub const SPP_CALL_UDP: u32 = 1;
/// `spp_call.flags`: route by the L5 sid (`modid`, `cmdid`), not `addr`.
pub const SPP_CALL_L5: u32 = 1;
/// `spp_call.flags`: with [`SPP_CALL_L5`], pick by consistent hash of
/// `hash_key`.
pub const SPP_CALL_L5_HASH: u32 = 2;
/// `spp_call.flags`: with [`SPP_CALL_L5`], try once more on another
/// instance when the first fails; each attempt gets half the timeout.
pub const SPP_CALL_RETRY: u32 = 4;
/// Call result: no complete answer within the timeout.
pub const SPP_CALL_TIMEOUT: c_int = -20;
/// Call result: the connection was refused (or ICMP unreachable).
pub const SPP_CALL_REFUSED: c_int = -21;
/// Call result: the peer closed or reset before a complete answer.
pub const SPP_CALL_CLOSED: c_int = -22;
/// Call result: the answer does not fit the answer buffer.
pub const SPP_CALL_TOO_LARGE: c_int = -23;
/// Call result: L5 has no usable instance for the sid (or L5 is off).
pub const SPP_CALL_NO_ROUTE: c_int = -24;
/// Call result: the check returned < 0, or more than it was given.
pub const SPP_CALL_MALFORMED: c_int = -25;
/// Call result: bad arguments (NULL pointer, small `size`, unknown
/// transport, TCP without a check, too many calls).
pub const SPP_CALL_BAD_ARGS: c_int = -26;
/// Call result: another socket error.
pub const SPP_CALL_IO: c_int = -27;
/// Call result: `call_many` returned before this call finished.
pub const SPP_CALL_CANCELLED: c_int = -28;
/// The most calls one `call_many` takes.
pub const SPP_CALL_MANY_MAX: usize = 64;
/// A `timeout_ms` of 0 means this.
pub const SPP_CALL_DEFAULT_TIMEOUT_MS: u32 = 1000;

/// `spp_call_check`: the answer's completeness check (`spp_input`'s
/// contract).
pub type CallCheckFn = unsafe extern "C" fn(user: *mut c_void, buf: *const u8, len: usize) -> c_int;

/// One downstream call (`spp_call`): inputs set by the plugin, outputs by
/// the host.
#[repr(C)]
#[derive(Debug)]
pub struct SppCall {
    /// `size_of::<SppCall>()` as the plugin built it.
    pub size: u32,
    /// [`SPP_CALL_TCP`] or [`SPP_CALL_UDP`].
    pub transport: u32,
    /// [`SPP_CALL_L5`], [`SPP_CALL_L5_HASH`], [`SPP_CALL_RETRY`].
    pub flags: u32,
    /// Whole call, retry included; 0: [`SPP_CALL_DEFAULT_TIMEOUT_MS`].
    pub timeout_ms: u32,
    /// The destination, unless [`SPP_CALL_L5`].
    pub addr: SppAddr,
    /// The sid's module id, with [`SPP_CALL_L5`].
    pub modid: u32,
    /// The sid's command id.
    pub cmdid: u32,
    /// The key, with [`SPP_CALL_L5_HASH`].
    pub hash_key: u64,
    /// The bytes to send.
    pub req: *const u8,
    /// Their length.
    pub req_len: usize,
    /// The completeness check (required for TCP; UDP: none = a datagram is
    /// the answer).
    pub check: Option<CallCheckFn>,
    /// Passed to `check`.
    pub check_user: *mut c_void,
    /// The plugin's answer buffer.
    pub answer: *mut u8,
    /// Its capacity.
    pub answer_cap: usize,
    /// Output: bytes of the answer in `answer`.
    pub answer_len: usize,
    /// Output: `SPP_OK` or an `SPP_CALL_*` code.
    pub result: i32,
    /// Output: µs from start to answer or failure.
    pub latency_us: u32,
    /// Output: the instance that answered last ([`SPP_CALL_L5`]).
    pub route: SppL5Route,
}

impl Default for SppCall {
    fn default() -> Self {
        SppCall {
            size: std::mem::size_of::<SppCall>() as u32,
            transport: SPP_CALL_TCP,
            flags: 0,
            timeout_ms: 0,
            addr: SppAddr::default(),
            modid: 0,
            cmdid: 0,
            hash_key: 0,
            req: std::ptr::null(),
            req_len: 0,
            check: None,
            check_user: std::ptr::null_mut(),
            answer: std::ptr::null_mut(),
            answer_cap: 0,
            answer_len: 0,
            result: 0,
            latency_us: 0,
            route: SppL5Route::default(),
        }
    }
}

/// `spp_host.call`.
pub type CallFn = unsafe extern "C" fn(ctx: *mut c_void, call: *mut SppCall) -> c_int;
/// `spp_host.call_many`.
pub type CallManyFn =
    unsafe extern "C" fn(ctx: *mut c_void, calls: *mut SppCall, n: usize, wait_for: usize) -> c_int;

/// The functions of a host's services table, for [`SppHost::new`].
#[derive(Clone, Copy, Debug)]
pub struct HostFns {
    /// `reply`.
    pub reply: ReplyFn,
    /// `close`.
    pub close: CloseFn,
    /// `log`.
    pub log: LogFn,
    /// `count`.
    pub count: CountFn,
    /// `record_latency`.
    pub record_latency: RecordLatencyFn,
    /// `get_route`.
    pub get_route: GetRouteFn,
    /// `get_route_hash`.
    pub get_route_hash: GetRouteHashFn,
    /// `report`.
    pub report: ReportFn,
    /// `sleep`.
    pub sleep: SleepFn,
    /// `call`.
    pub call: CallFn,
    /// `call_many`.
    pub call_many: CallManyFn,
}

/// The services table the host hands to `spp_init` (`spp_host`).
#[repr(C)]
#[derive(Debug)]
pub struct SppHost {
    /// `size_of::<SppHost>()` as the host built it; later versions append.
    pub size: u32,
    /// The host's ABI version.
    pub abi_version: u32,
    /// [`SPP_ROLE_PROXY`] or [`SPP_ROLE_WORKER`].
    pub role: u32,
    /// Worker: the group id; proxy: 0.
    pub group: u32,
    /// Worker: index inside the group; proxy: 0.
    pub worker_index: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// Opaque host context, passed back to every service.
    pub ctx: *mut c_void,
    /// Send bytes to a flow; `len == 0` closes it after flushing.
    pub reply: ReplyFn,
    /// Close a flow after flushing.
    pub close: CloseFn,
    /// Write one log line.
    pub log: LogFn,
    /// Add to a named plugin counter (appended; check `size`).
    pub count: CountFn,
    /// Record a sample in a named plugin latency histogram (appended;
    /// check `size`).
    pub record_latency: RecordLatencyFn,
    /// L5: weighted-random route (appended; check `size`).
    pub get_route: GetRouteFn,
    /// L5: consistent-hash route (appended; check `size`).
    pub get_route_hash: GetRouteHashFn,
    /// L5: report a call's outcome (appended; check `size`).
    pub report: ReportFn,
    /// Suspend the calling micro-thread for `ms` (appended; check `size`;
    /// `SPP_ERR_UNSUPPORTED` outside a micro-thread).
    pub sleep: SleepFn,
    /// Call another service from a micro-thread (appended; check `size`).
    pub call: CallFn,
    /// Several calls in parallel from a micro-thread (appended; check
    /// `size`).
    pub call_many: CallManyFn,
    /// The largest `len` one `reply` can ever carry in this process (a
    /// worker: its response ring's largest record; the proxy: its queue of
    /// replies made in one hook); 0 = not known (appended; check `size`).
    pub max_reply: u64,
    /// Proxy, during `spp_input`/`spp_input_ctx`: attach up to
    /// [`SPP_NOTE_MAX`] bytes to the request this input call frames; the
    /// worker's `spp_process` sees them in `conn.note` (appended; check
    /// `size`; `SPP_ERR_UNSUPPORTED` elsewhere).
    pub set_note: SetNoteFn,
    /// Worker, `mode = "async"`, during `spp_process`: keep the request in
    /// flight until `complete` (appended; check `size`;
    /// `SPP_ERR_UNSUPPORTED` elsewhere).
    pub defer: DeferFn,
    /// Complete a deferred request, from any thread (appended; check
    /// `size`).
    pub complete: CompleteFn,
    /// `mode = "async"`: the group's `task_timeout` in ms; 0 elsewhere
    /// (appended; check `size`).
    pub task_timeout_ms: u64,
}

impl SppHost {
    /// A table of this crate's ABI version, with `size` filled in: the one
    /// way hosts build it. `group` and `worker_index` are 0 in the proxy.
    pub fn new(role: u32, group: u32, worker_index: u32, ctx: *mut c_void, fns: HostFns) -> Self {
        SppHost {
            size: std::mem::size_of::<SppHost>() as u32,
            abi_version: SPP_PLUGIN_ABI_VERSION,
            role,
            group,
            worker_index,
            _reserved: 0,
            ctx,
            reply: fns.reply,
            close: fns.close,
            log: fns.log,
            count: fns.count,
            record_latency: fns.record_latency,
            get_route: fns.get_route,
            get_route_hash: fns.get_route_hash,
            report: fns.report,
            sleep: fns.sleep,
            call: fns.call,
            call_many: fns.call_many,
            max_reply: 0,
            set_note: set_note_unsupported,
            defer: defer_unsupported,
            complete: complete_unsupported,
            task_timeout_ms: 0,
        }
    }
}

/// `spp_plugin_abi_version`.
pub type AbiVersionHook = unsafe extern "C" fn() -> u32;
/// `spp_init`.
pub type InitHook = unsafe extern "C" fn(host: *const SppHost, conf: *const c_char) -> c_int;
/// `spp_input`.
pub type InputHook =
    unsafe extern "C" fn(conn: *const SppConnInfo, buf: *const u8, len: usize) -> c_int;
/// `spp_route`.
pub type RouteHook =
    unsafe extern "C" fn(conn: *const SppConnInfo, req: *const u8, len: usize) -> c_int;
/// `spp_process`.
pub type ProcessHook =
    unsafe extern "C" fn(conn: *const SppConnInfo, req: *const u8, len: usize) -> c_int;
/// `spp_exception`.
pub type ExceptionHook = unsafe extern "C" fn(
    conn: *const SppConnInfo,
    req: *const u8,
    len: usize,
    reason: c_int,
) -> c_int;
/// `spp_close`.
pub type CloseHook =
    unsafe extern "C" fn(conn: *const SppConnInfo, leftover: *const u8, len: usize);
/// `spp_fini`.
pub type FiniHook = unsafe extern "C" fn();
/// `spp_flow_closed`.
pub type FlowClosedHook = unsafe extern "C" fn(flow: u64);
/// `spp_poll`.
pub type PollHook = unsafe extern "C" fn(wake_fd: c_int, wait_ms: u32, busy_ns: *mut u64) -> c_int;
/// `spp_conn_open`.
pub type ConnOpenHook = unsafe extern "C" fn(conn: *const SppConnInfo) -> *mut c_void;
/// `spp_input_ctx`.
pub type InputCtxHook = unsafe extern "C" fn(
    conn: *const SppConnInfo,
    conn_ctx: *mut c_void,
    buf: *const u8,
    len: usize,
) -> c_int;
/// `spp_conn_free`.
pub type ConnFreeHook = unsafe extern "C" fn(conn: *const SppConnInfo, conn_ctx: *mut c_void);

/// Exported symbol names, NUL-terminated for `dlsym`.
pub mod symbols {
    /// `spp_plugin_abi_version`, required.
    pub const ABI_VERSION: &[u8] = b"spp_plugin_abi_version\0";
    /// `spp_init`, optional.
    pub const INIT: &[u8] = b"spp_init\0";
    /// `spp_input`, required for the proxy.
    pub const INPUT: &[u8] = b"spp_input\0";
    /// `spp_route`, optional.
    pub const ROUTE: &[u8] = b"spp_route\0";
    /// `spp_process`, required for a worker.
    pub const PROCESS: &[u8] = b"spp_process\0";
    /// `spp_exception`, optional.
    pub const EXCEPTION: &[u8] = b"spp_exception\0";
    /// `spp_close`, optional.
    pub const CLOSE: &[u8] = b"spp_close\0";
    /// `spp_fini`, optional.
    pub const FINI: &[u8] = b"spp_fini\0";
    /// `spp_conn_open`, optional (proxy).
    pub const CONN_OPEN: &[u8] = b"spp_conn_open\0";
    /// `spp_input_ctx`, optional (proxy).
    pub const INPUT_CTX: &[u8] = b"spp_input_ctx\0";
    /// `spp_conn_free`, optional (proxy).
    pub const CONN_FREE: &[u8] = b"spp_conn_free\0";
    /// `spp_flow_closed`, optional (worker).
    pub const FLOW_CLOSED: &[u8] = b"spp_flow_closed\0";
    /// `spp_poll`, optional (worker, `mode = "async"`).
    pub const POLL: &[u8] = b"spp_poll\0";
    /// `spp_plugin_stateful`, optional: a plugin that keeps state in a
    /// worker's memory says so (a `uint32_t` variable, non-zero).
    pub const STATEFUL: &[u8] = b"spp_plugin_stateful\0";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, size_of};

    #[test]
    fn layout_matches_the_c_header() {
        assert_eq!(size_of::<SppAddr>(), 24);
        assert_eq!(size_of::<SppConnInfo>(), 24 + 2 * 24 + 8 + 4 + 4);
        assert_eq!(align_of::<SppConnInfo>(), 8);
        assert_eq!(
            size_of::<SppHost>(),
            24 + 12 * size_of::<usize>() + 8 + 8 + 2 * size_of::<usize>() + 8
        );
        assert_eq!(size_of::<SppL5Route>(), 8 + 24 + 8);
        assert_eq!(size_of::<SppCall>(), 160);
    }

    #[test]
    fn addresses_round_trip() {
        for text in ["127.0.0.1:7963", "[::1]:80", "[fe80::1%3]:9"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(SppAddr::from_socket_addr(addr).to_socket_addr(), Some(addr));
        }
        assert_eq!(SppAddr::default().to_socket_addr(), None);
    }
}
