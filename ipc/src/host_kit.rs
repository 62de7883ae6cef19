//! What the proxy's and the worker's `spp_host` tables share: the context
//! layout, the services that behave the same in both roles (`log`, `count`,
//! `record_latency`), the table builder and the guard that keeps panics on
//! the host side of the C ABI.
//!
//! A role keeps only what differs: its part of the context ([`HostCtx::role`])
//! and its `reply` / `close` / L5 services ([`RoleFns`]).
//!
//! # `log`
//! One line per call, to `tracing` with target `plugin`, from any thread:
//!
//! * `text == NULL` logs nothing, whatever `len` says (nothing is read).
//! * Otherwise the line is the first `len` bytes, cut at the first NUL byte
//!   if there is one (`text` need not be NUL-terminated, and a C plugin that
//!   passes a buffer's size or `strlen + 1` logs the string, not the bytes
//!   after it; no NUL ever reaches the log file).
//! * Trailing `\n` / `\r` are trimmed; bytes that are not UTF-8 become
//!   U+FFFD.
//! * `SPP_LOG_ERROR` / `WARN` / `INFO` / `DEBUG` map to the same `tracing`
//!   levels; any other level logs at TRACE with the plugin's value as field
//!   `level`.
//!
//! # `count` / `record_latency`
//! Straight into the role's [`PluginMetrics`] block (lock-free, any thread);
//! see [`plugin_metrics::host_count`].
//!
//! # Panics
//! Every `extern "C"` service runs its body under [`catch_panic`]: a panic
//! is caught (the panic hook has printed it) and the call answers its
//! fallback code instead of unwinding into the plugin.

use crate::plugin_metrics::{self, PluginMetrics};
use spp_plugin_api::abi::{
    CallFn, CallManyFn, CloseFn, GetRouteFn, GetRouteHashFn, HostFns, ReplyFn, ReportFn, SleepFn,
    SppCall, SppHost, SPP_ERR_UNSUPPORTED, SPP_LOG_DEBUG, SPP_LOG_ERROR, SPP_LOG_INFO,
    SPP_LOG_WARN, SPP_ROLE_PROXY, SPP_ROLE_WORKER,
};
use spp_plugin_api::no_l5;
use std::borrow::Cow;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a service that panicked answers the plugin (the host could not do
/// what was asked).
pub const PANICKED: c_int = SPP_ERR_UNSUPPORTED;

/// Runs `f`, answering `fallback` if it panics: the body of every
/// `extern "C"` service, so no panic unwinds into the plugin.
#[inline]
pub fn catch_panic<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// What a table's `ctx` points to: the kit's part (the plugin metrics the
/// shared services use) and the role's own part.
///
/// The kit's services reach their part by pointer alone, never through a
/// `&HostCtx<R>`, so `R` need not be `Sync` (the proxy's is not).
pub struct HostCtx<R> {
    metrics: &'static PluginMetrics,
    /// The role's own context, for its `reply` / `close` / L5 services.
    pub role: R,
}

impl<R> HostCtx<R> {
    /// A context whose `count` / `record_latency` go to `metrics`.
    pub fn new(metrics: &'static PluginMetrics, role: R) -> Self {
        HostCtx { metrics, role }
    }

    /// The plugin metrics block of this table.
    pub fn metrics(&self) -> &'static PluginMetrics {
        self.metrics
    }

    /// The metrics block behind a table's `ctx`, from any thread.
    ///
    /// # Safety
    /// `ctx` must be null or point to a live `HostCtx<R>`.
    unsafe fn metrics_of(ctx: *mut c_void) -> Option<&'static PluginMetrics> {
        let ctx = ctx.cast::<Self>().cast_const();
        if ctx.is_null() {
            return None;
        }
        // SAFETY: `ctx` points to a live `HostCtx<R>` (caller); reading the
        // one field through its address creates no reference to `role`,
        // and the field is never written after construction.
        Some(unsafe { std::ptr::addr_of!((*ctx).metrics).read() })
    }
}

impl<R: Sync> HostCtx<R> {
    /// The context behind a table's `ctx`, for a role whose part any thread
    /// may share.
    ///
    /// # Safety
    /// `ctx` must be null or the `ctx` of a table built by [`table`] over a
    /// `HostCtx<R>` that is still alive for `'a`.
    #[inline]
    pub unsafe fn from_ctx<'a>(ctx: *mut c_void) -> Option<&'a Self> {
        // SAFETY: forwarded from the caller; `R: Sync` makes the shared
        // reference sound on any thread.
        unsafe { ctx.cast::<Self>().cast_const().as_ref() }
    }
}

/// Who a table is for: its `role`, `group` and `worker_index` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRole {
    /// The proxy (group and index 0).
    Proxy,
    /// A worker of `group`, at `index` in it.
    Worker {
        /// The worker's group id.
        group: u32,
        /// The worker's index inside its group.
        index: u32,
    },
}

/// A role's own services: everything but `log`, `count` and
/// `record_latency`.
#[derive(Clone, Copy, Debug)]
pub struct RoleFns {
    /// `reply`.
    pub reply: ReplyFn,
    /// `close`.
    pub close: CloseFn,
    /// `get_route`.
    pub get_route: GetRouteFn,
    /// `get_route_hash`.
    pub get_route_hash: GetRouteHashFn,
    /// `report`.
    pub report: ReportFn,
    /// `sleep` ([`unsupported_sleep`] where there are no micro-threads).
    pub sleep: SleepFn,
    /// `call` ([`unsupported_call`] where there are no micro-threads).
    pub call: CallFn,
    /// `call_many` ([`unsupported_call_many`] likewise).
    pub call_many: CallManyFn,
}

impl RoleFns {
    /// `reply` and `close`, with the L5 services of a host without a route
    /// table (each answers `SPP_L5_SYSTEM`).
    pub fn without_l5(reply: ReplyFn, close: CloseFn) -> Self {
        RoleFns {
            reply,
            close,
            get_route: no_l5::get_route,
            get_route_hash: no_l5::get_route_hash,
            report: no_l5::report,
            sleep: unsupported_sleep,
            call: unsupported_call,
            call_many: unsupported_call_many,
        }
    }
}

/// The `spp_host` table over `ctx`: the role's services and the kit's.
///
/// The table points at `ctx`: keep `ctx` alive, at the same address, for as
/// long as the plugin may use the table (in practice, the process's life).
pub fn table<R>(who: TableRole, ctx: &HostCtx<R>, fns: RoleFns) -> SppHost {
    let (role, group, index) = match who {
        TableRole::Proxy => (SPP_ROLE_PROXY, 0, 0),
        TableRole::Worker { group, index } => (SPP_ROLE_WORKER, group, index),
    };
    SppHost::new(
        role,
        group,
        index,
        (ctx as *const HostCtx<R>).cast_mut().cast::<c_void>(),
        HostFns {
            reply: fns.reply,
            close: fns.close,
            log,
            count: count::<R>,
            record_latency: record_latency::<R>,
            get_route: fns.get_route,
            get_route_hash: fns.get_route_hash,
            report: fns.report,
            sleep: fns.sleep,
            call: fns.call,
            call_many: fns.call_many,
        },
    )
}

/// `spp_host.sleep` of a host without micro-threads (the proxy; a worker
/// outside one answers the same): `SPP_ERR_UNSUPPORTED` at once, never a
/// blocking sleep.
///
/// # Safety
/// Any arguments: nothing is dereferenced (`unsafe` only to fit the ABI's
/// function type).
pub unsafe extern "C" fn unsupported_sleep(_ctx: *mut c_void, _ms: u64) -> c_int {
    SPP_ERR_UNSUPPORTED
}

/// `spp_host.call` of a host without micro-threads: `SPP_ERR_UNSUPPORTED`
/// at once (also written to `call.result` when `call` is usable).
///
/// # Safety
/// `call` must be null or point to a writable `SppCall` whose `size` is
/// right.
pub unsafe extern "C" fn unsupported_call(_ctx: *mut c_void, call: *mut SppCall) -> c_int {
    // SAFETY: null or writable, as the caller guarantees.
    if let Some(call) = unsafe { call.as_mut() } {
        if call.size as usize >= std::mem::size_of::<SppCall>() {
            call.result = SPP_ERR_UNSUPPORTED;
        }
    }
    SPP_ERR_UNSUPPORTED
}

/// `spp_host.call_many` of a host without micro-threads:
/// `SPP_ERR_UNSUPPORTED` at once; no call is touched.
///
/// # Safety
/// Any arguments: nothing is dereferenced.
pub unsafe extern "C" fn unsupported_call_many(
    _ctx: *mut c_void,
    _calls: *mut SppCall,
    _n: usize,
    _wait_for: usize,
) -> c_int {
    SPP_ERR_UNSUPPORTED
}

/// `spp_host.count` over a `HostCtx<R>`: adds to a named counter, from any
/// thread. `SPP_OK`, `SPP_ERR_BAD_NAME` (also for a null name),
/// `SPP_ERR_FULL`, or `SPP_ERR_UNSUPPORTED` for a null `ctx`.
///
/// # Safety
/// `ctx` must be null or point to a live `HostCtx<R>`; `name` must be null
/// or point to `len` readable bytes.
pub unsafe extern "C" fn count<R>(
    ctx: *mut c_void,
    name: *const c_char,
    len: usize,
    delta: u64,
) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: forwarded from the caller.
        match unsafe { HostCtx::<R>::metrics_of(ctx) } {
            // SAFETY: forwarded from the caller.
            Some(metrics) => unsafe { plugin_metrics::host_count(metrics, name, len, delta) },
            None => SPP_ERR_UNSUPPORTED,
        }
    })
}

/// `spp_host.record_latency` over a `HostCtx<R>`: one sample in a named
/// latency histogram, from any thread; codes as for [`count`].
///
/// # Safety
/// As for [`count`].
pub unsafe extern "C" fn record_latency<R>(
    ctx: *mut c_void,
    name: *const c_char,
    len: usize,
    nanos: u64,
) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: forwarded from the caller.
        match unsafe { HostCtx::<R>::metrics_of(ctx) } {
            // SAFETY: forwarded from the caller.
            Some(metrics) => unsafe {
                plugin_metrics::host_record_latency(metrics, name, len, nanos)
            },
            None => SPP_ERR_UNSUPPORTED,
        }
    })
}

/// `spp_host.log`: one line to `tracing` (target `plugin`), from any
/// thread; see the module docs for NULs, lengths and levels.
///
/// # Safety
/// `text` must be null or point to `len` readable bytes.
pub unsafe extern "C" fn log(_ctx: *mut c_void, level: c_int, text: *const c_char, len: usize) {
    catch_panic((), || {
        // SAFETY: forwarded from the caller.
        let Some(line) = (unsafe { log_line(text, len) }) else {
            return;
        };
        match level {
            SPP_LOG_ERROR => tracing::error!(target: "plugin", "{line}"),
            SPP_LOG_WARN => tracing::warn!(target: "plugin", "{line}"),
            SPP_LOG_INFO => tracing::info!(target: "plugin", "{line}"),
            SPP_LOG_DEBUG => tracing::debug!(target: "plugin", "{line}"),
            _ => tracing::trace!(target: "plugin", level, "{line}"),
        }
    })
}

/// The line a `log` call carries (`None`: nothing to log): the bytes up to
/// `len` or the first NUL, trailing line breaks trimmed, decoded lossily.
/// Borrows the plugin's bytes when they are UTF-8.
///
/// # Safety
/// `text` must be null or point to `len` readable bytes that stay unchanged
/// while the result lives.
unsafe fn log_line<'a>(text: *const c_char, len: usize) -> Option<Cow<'a, str>> {
    if text.is_null() {
        return None;
    }
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: non-null, and the caller promises `len` readable bytes.
        unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) }
    };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut line = &bytes[..end];
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    Some(String::from_utf8_lossy(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spp_plugin_api::abi::{SPP_ERR_BAD_NAME, SPP_L5_SYSTEM, SPP_OK};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A role `reply` that does nothing.
    unsafe extern "C" fn reply_ok(_: *mut c_void, _: u64, _: *const u8, _: usize) -> c_int {
        SPP_OK
    }

    /// A role `close` that does nothing.
    unsafe extern "C" fn close_ok(_: *mut c_void, _: u64) -> c_int {
        SPP_OK
    }

    /// A zeroed metrics block for the life of the test binary.
    fn metrics() -> &'static PluginMetrics {
        Box::leak(PluginMetrics::boxed())
    }

    /// `log_line` over a Rust slice.
    fn line_of(bytes: &[u8]) -> Option<String> {
        // SAFETY: `bytes` is live for the call.
        unsafe { log_line(bytes.as_ptr().cast(), bytes.len()) }.map(Cow::into_owned)
    }

    #[test]
    fn a_line_ends_at_len_or_the_first_nul() {
        assert_eq!(line_of(b"hello").as_deref(), Some("hello"));
        assert_eq!(line_of(b"hello\0").as_deref(), Some("hello"), "strlen + 1");
        assert_eq!(line_of(b"hi\0garbage").as_deref(), Some("hi"), "a buffer");
        assert_eq!(line_of(b"\0after").as_deref(), Some(""));
        assert_eq!(line_of(b"two\r\n").as_deref(), Some("two"));
        assert_eq!(line_of(b"cr\n\0x\n").as_deref(), Some("cr"));
        assert_eq!(line_of(b"").as_deref(), Some(""), "an empty line");
        assert_eq!(
            line_of(b"bad \xff\xfe utf8").as_deref(),
            Some("bad \u{fffd}\u{fffd} utf8")
        );
        assert_eq!(line_of(b"cut \xe2\x82").as_deref(), Some("cut \u{fffd}"));
    }

    #[test]
    fn a_null_text_logs_nothing_whatever_its_len() {
        // SAFETY: a null text is refused before anything is read.
        unsafe {
            assert_eq!(log_line(std::ptr::null(), 0), None);
            assert_eq!(log_line(std::ptr::null(), 64), None);
        }
    }

    /// A writer that keeps what `tracing` writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What calling `f` logs at TRACE and above, without ANSI colours.
    fn logged(f: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_log_service_writes_one_clean_line_per_call() {
        let text = logged(|| {
            let call = |level: c_int, bytes: &[u8]| {
                // SAFETY: `bytes` is `len` live bytes; `ctx` is unused.
                unsafe {
                    log(
                        std::ptr::null_mut(),
                        level,
                        bytes.as_ptr().cast(),
                        bytes.len(),
                    )
                }
            };
            call(SPP_LOG_ERROR, b"one\0two");
            call(SPP_LOG_WARN, b"w \xff\n");
            call(SPP_LOG_INFO, b"info line");
            call(SPP_LOG_DEBUG, b"dbg");
            call(99, b"odd level");
            // SAFETY: null texts are never read.
            unsafe {
                log(std::ptr::null_mut(), SPP_LOG_ERROR, std::ptr::null(), 0);
                log(std::ptr::null_mut(), SPP_LOG_ERROR, std::ptr::null(), 16);
            }
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(!text.contains('\0'), "{text:?}");
        assert!(!text.contains("two"), "{text}");
        let expect = [
            ("ERROR", "plugin: one"),
            ("WARN", "plugin: w \u{fffd}"),
            ("INFO", "plugin: info line"),
            ("DEBUG", "plugin: dbg"),
            ("TRACE", "plugin: odd level level=99"),
        ];
        for (line, (level, rest)) in lines.iter().zip(expect) {
            assert!(line.contains(level), "{line}");
            assert!(line.ends_with(rest), "{line:?} ends with {rest:?}");
        }
    }

    #[test]
    fn the_table_carries_the_role_and_the_kit_services() {
        let m = metrics();
        let ctx = HostCtx::new(m, ());
        let fns = RoleFns::without_l5(reply_ok, close_ok);
        let proxy = table(TableRole::Proxy, &ctx, fns);
        assert_eq!((proxy.role, proxy.group, proxy.worker_index), (1, 0, 0));
        let worker = table(TableRole::Worker { group: 3, index: 2 }, &ctx, fns);
        assert_eq!(
            (worker.role, worker.group, worker.worker_index),
            (SPP_ROLE_WORKER, 3, 2)
        );
        assert_eq!(worker.ctx, (&ctx as *const HostCtx<()>).cast_mut().cast());
        // SAFETY: our own table, valid arguments; the route out-pointer is
        // never touched without a route table.
        unsafe {
            assert_eq!(
                (worker.get_route)(worker.ctx, 1, 1, std::ptr::null_mut()),
                SPP_L5_SYSTEM
            );
            assert_eq!(
                (worker.count)(worker.ctx, b"hits".as_ptr().cast(), 4, 2),
                SPP_OK
            );
            assert_eq!(
                (worker.record_latency)(worker.ctx, b"db".as_ptr().cast(), 2, 1_500),
                SPP_OK
            );
            assert_eq!(
                (worker.count)(worker.ctx, std::ptr::null(), 4, 1),
                SPP_ERR_BAD_NAME
            );
            assert_eq!(
                (worker.count)(std::ptr::null_mut(), b"hits".as_ptr().cast(), 4, 1),
                SPP_ERR_UNSUPPORTED
            );
        }
        let snap = m.snapshot();
        assert_eq!(snap.counters, vec![("hits".to_string(), 2)]);
        assert_eq!(snap.latencies[0].0, "db");
        assert_eq!(snap.latencies[0].1.sum_ns, 1_500);
    }

    #[test]
    fn the_metrics_services_work_from_other_threads_over_a_non_sync_role() {
        let m = metrics();
        let ctx = HostCtx::new(m, std::cell::Cell::new(0u8));
        let host = table(
            TableRole::Proxy,
            &ctx,
            RoleFns::without_l5(reply_ok, close_ok),
        );
        let (raw, count) = (host.ctx as usize, host.count);
        std::thread::spawn(move || {
            // SAFETY: `ctx` outlives the thread (joined below); only the
            // metrics field is read.
            unsafe { count(raw as *mut c_void, b"x".as_ptr().cast(), 1, 7) }
        })
        .join()
        .map(|code| assert_eq!(code, SPP_OK))
        .unwrap();
        assert_eq!(m.snapshot().counters, vec![("x".to_string(), 7)]);
    }

    #[test]
    fn a_panic_answers_the_fallback() {
        // The panic hook prints the message; the call answers the fallback.
        let code = catch_panic(PANICKED, || -> c_int { panic!("inside a service") });
        assert_eq!(code, PANICKED);
        assert_eq!(catch_panic(PANICKED, || SPP_OK), SPP_OK);
    }
}
