//! Runtime glue used by [`export_plugin!`](crate::export_plugin). Not part
//! of the stable API. Every hook function here catches panics, so none
//! crosses the FFI boundary: a panicking hook returns
//! [`SPP_HOOK_PANICKED`] (or nothing, for the hooks without a result).

use crate::abi::*;
use crate::hooks::{OnClose, OnException, OnFini, OnRoute, Plugin};
use crate::plugin::{AfterException, Conn, ExceptionReason, Host, Input};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::LocalKey;

#[cfg(feature = "async")]
pub use crate::asynchronous::glue::ExportsAsync;

/// Panics caught at the boundary in this plugin, for diagnostics.
pub static PANICS: AtomicU64 = AtomicU64::new(0);

/// Implemented by `export_plugin!` for a plugin that lists `route`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements `OnRoute` but `export_plugin!` does not list `route`",
    label = "the hook would never be called",
    note = "export it: `export_plugin!({Self}, hooks: [route, ...])`"
)]
pub trait ExportsRoute {}

/// Implemented by `export_plugin!` for a plugin that lists `exception`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements `OnException` but `export_plugin!` does not list `exception`",
    label = "the hook would never be called",
    note = "export it: `export_plugin!({Self}, hooks: [exception, ...])`"
)]
pub trait ExportsException {}

/// Implemented by `export_plugin!` for a plugin that lists `close`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements `OnClose` but `export_plugin!` does not list `close`",
    label = "the hook would never be called",
    note = "export it: `export_plugin!({Self}, hooks: [close, ...])`"
)]
pub trait ExportsClose {}

/// Implemented by `export_plugin!` for a plugin that lists `fini`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements `OnFini` but `export_plugin!` does not list `fini`",
    label = "the hook would never be called",
    note = "export it: `export_plugin!({Self}, hooks: [fini, ...])`"
)]
pub trait ExportsFini {}

/// Implemented by `export_plugin!` for a plugin that lists `flow_closed`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` implements `OnFlowClosed` but `export_plugin!` does not list `flow_closed`",
    label = "the hook would never be called",
    note = "export it: `export_plugin!({Self}, hooks: [flow_closed, ...])`"
)]
pub trait ExportsFlowClosed {}

/// The per-connection states of a plugin, by flow (proxy main thread).
pub struct ConnStates<S>(FxHashMap<u64, S>);

impl<S> Default for ConnStates<S> {
    fn default() -> Self {
        ConnStates(FxHashMap::default())
    }
}

/// Where the macro's thread-local of per-connection states lives.
pub type ConnStatesKey<S> = LocalKey<RefCell<ConnStates<S>>>;

/// Per-plugin storage: the macro declares one `static` of this type and
/// one thread-local of [`ConnStates`].
pub struct Slot<P: Plugin> {
    plugin: OnceLock<P>,
    host: OnceLock<Host>,
    conns: &'static ConnStatesKey<P::ConnState>,
}

impl<P: Plugin> Slot<P> {
    /// An empty slot, filled by `init`; `conns` holds the per-connection
    /// states.
    pub const fn new(conns: &'static ConnStatesKey<P::ConnState>) -> Self {
        Slot {
            plugin: OnceLock::new(),
            host: OnceLock::new(),
            conns,
        }
    }

    /// The plugin, once `init` built it.
    pub fn plugin(&self) -> Option<&P> {
        self.plugin.get()
    }

    /// The host table `init` was given.
    pub fn host(&self) -> Option<Host> {
        self.host.get().copied()
    }

    /// Whether per-connection states are kept at all (not for a
    /// zero-sized state).
    const KEEPS_STATE: bool = std::mem::size_of::<P::ConnState>() != 0;

    /// Runs `f` with the state of `conn`'s connection: the kept one
    /// (created first when `create`) for a TCP connection, else a fresh
    /// one for this call only (UDP, a zero-sized state, a flow already
    /// closed).
    fn with_state<R>(
        &self,
        conn: Conn<'_>,
        create: bool,
        f: impl FnOnce(&mut P::ConnState) -> R,
    ) -> R {
        if !Self::KEEPS_STATE || conn.is_udp() {
            return f(&mut P::ConnState::default());
        }
        self.conns.with(|cell| {
            let mut states = cell.borrow_mut();
            if create {
                return f(states.0.entry(conn.flow()).or_default());
            }
            match states.0.get_mut(&conn.flow()) {
                Some(state) => f(state),
                None => {
                    drop(states);
                    f(&mut P::ConnState::default())
                }
            }
        })
    }

    /// Takes the state of `conn`'s connection out (it closed).
    fn take_state(&self, conn: Conn<'_>) -> P::ConnState {
        if !Self::KEEPS_STATE || conn.is_udp() {
            return P::ConnState::default();
        }
        self.conns
            .with(|cell| cell.borrow_mut().0.remove(&conn.flow()))
            .unwrap_or_default()
    }
}

/// Runs `f`, turning a panic into `fallback` (counted in [`PANICS`]).
pub fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => {
            PANICS.fetch_add(1, Ordering::Relaxed);
            fallback
        }
    }
}

/// # Safety
/// `conn` must be valid for the call (the host guarantees it).
unsafe fn conn<'a>(conn: *const SppConnInfo) -> Option<Conn<'a>> {
    // SAFETY: guaranteed by the caller.
    unsafe { conn.as_ref() }.map(Conn)
}

/// # Safety
/// `ptr` must point to `len` readable bytes, or be null with any `len`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

fn clamp(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// `spp_init`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn init<P: Plugin>(slot: &Slot<P>, host: *const SppHost, conf: *const c_char) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host keeps the table alive until `spp_fini`.
        let Some(host) = (unsafe { Host::from_raw(host) }) else {
            return -1;
        };
        let conf = if conf.is_null() {
            String::new()
        } else {
            // SAFETY: the host passes a NUL-terminated string.
            unsafe { CStr::from_ptr(conf) }
                .to_string_lossy()
                .into_owned()
        };
        crate::plugin::HOST_HAS_NOTES.store(host.has_notes(), Ordering::Relaxed);
        let _ = slot.host.set(host);
        match P::init(host, &conf) {
            Ok(plugin) => {
                let _ = slot.plugin.set(plugin);
                0
            }
            Err(0) => -1,
            Err(code) => code,
        }
    })
}

/// `spp_input`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn input<P: Plugin>(
    slot: &Slot<P>,
    c: *const SppConnInfo,
    buf: *const u8,
    len: usize,
) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host passes a `conn` valid for this call.
        let (Some(p), Some(c)) = (slot.plugin.get(), unsafe { conn(c) }) else {
            return -1;
        };
        // SAFETY: `buf` holds `len` bytes for this call.
        let buf = unsafe { bytes(buf, len) };
        match slot.with_state(c, true, |state| p.input(c, state, buf)) {
            Input::Complete(0) | Input::NeedMore => 0,
            // More than `buf` is passed on: the host treats it as the
            // plugin error it is (closes, counts `input_overrun`).
            Input::Complete(n) => clamp(n),
            Input::Close => -1,
        }
    })
}

/// `spp_route`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn route<P: OnRoute>(
    slot: &Slot<P>,
    c: *const SppConnInfo,
    req: *const u8,
    len: usize,
) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host passes a `conn` valid for this call.
        let (Some(p), Some(c)) = (slot.plugin.get(), unsafe { conn(c) }) else {
            return -1;
        };
        // SAFETY: `req` holds `len` bytes for this call.
        let req = unsafe { bytes(req, len) };
        clamp(slot.with_state(c, false, |state| p.route(c, state, req)) as usize)
    })
}

/// `spp_process`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn process<P: Plugin>(
    slot: &Slot<P>,
    c: *const SppConnInfo,
    req: *const u8,
    len: usize,
) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host passes a `conn` valid for this call.
        let (Some(p), Some(c)) = (slot.plugin.get(), unsafe { conn(c) }) else {
            return -1;
        };
        // SAFETY: `req` holds `len` bytes for this call.
        p.process(c, unsafe { bytes(req, len) }).code()
    })
}

/// `spp_exception`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn exception<P: OnException>(
    slot: &Slot<P>,
    c: *const SppConnInfo,
    req: *const u8,
    len: usize,
    reason: c_int,
) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host passes a `conn` valid for this call.
        let (Some(p), Some(c)) = (slot.plugin.get(), unsafe { conn(c) }) else {
            return -1;
        };
        // SAFETY: `req` holds `len` bytes for this call, or is null.
        let req = (!req.is_null()).then(|| unsafe { bytes(req, len) });
        let why = ExceptionReason::from_raw(reason);
        match slot.with_state(c, false, |state| p.exception(c, state, req, why)) {
            AfterException::Keep => 0,
            AfterException::Close => -1,
        }
    })
}

/// `spp_close`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn close<P: OnClose>(
    slot: &Slot<P>,
    c: *const SppConnInfo,
    leftover: *const u8,
    len: usize,
) {
    guard((), || {
        // SAFETY: the host passes a `conn` valid for this call.
        let Some(c) = (unsafe { conn(c) }) else {
            return;
        };
        // Dropped here even when the plugin is not initialised.
        let state = slot.take_state(c);
        if let Some(p) = slot.plugin.get() {
            // SAFETY: `leftover` holds `len` bytes for this call.
            p.close(c, state, unsafe { bytes(leftover, len) });
        }
    })
}

/// `spp_flow_closed`.
pub fn flow_closed<P: crate::hooks::OnFlowClosed>(slot: &Slot<P>, flow: u64) {
    guard((), || {
        if let Some(p) = slot.plugin.get() {
            p.flow_closed(flow);
        }
    })
}

/// `spp_fini`.
pub fn fini<P: OnFini>(slot: &Slot<P>) {
    guard((), || {
        if let Some(p) = slot.plugin.get() {
            p.fini();
        }
    })
}
