//! Runtime glue of [`export_async_plugin!`](crate::export_async_plugin):
//! the C hooks of an async plugin. Not part of the stable API. Every hook
//! here catches panics ([`crate::rt::guard`]), so none crosses the FFI
//! boundary.
//!
//! The placement is chosen once, in `spp_init`: the proxy role never makes
//! a runtime; a worker runs its tasks on its own thread
//! (module `driven`) unless `SPP_ASYNC_RUNTIME=thread` asks for
//! a plugin thread (module `threaded`). A request the host
//! cannot defer (a plain or micro-thread group, an older host) runs to
//! completion inside `spp_process` (`block_on`).

use super::plugin::{AsyncPlugin, Request};
use super::{driven, task, threaded};
use crate::abi::*;
use crate::hooks::Plugin;
use crate::plugin::{Conn, Host, Input, Level, Processed};
use crate::rt::{guard, Slot};
use std::ffi::{c_char, c_int};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// Implemented by `export_async_plugin!` only: makes an [`AsyncPlugin`] a
/// [`Plugin`], so the optional proxy hooks' traits apply to it.
pub trait ExportsAsync {}

/// Where this process runs its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// The proxy: no runtime, no tasks.
    Proxy,
    /// On the worker's thread, driven by `spp_poll`.
    Driven,
    /// On a plugin thread.
    Threaded,
}

static PLACEMENT: OnceLock<Placement> = OnceLock::new();
/// The host table of `spp_init` (for [`Plugin::process`] of an async
/// plugin).
static HOST: OnceLock<Host> = OnceLock::new();

impl<P: AsyncPlugin + ExportsAsync> Plugin for P {
    type ConnState = <P as AsyncPlugin>::ConnState;
    const STATEFUL: bool = <P as AsyncPlugin>::STATEFUL;

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        <P as AsyncPlugin>::init(host, conf)
    }

    fn input(&self, conn: Conn<'_>, state: &mut Self::ConnState, buf: &[u8]) -> Input {
        <P as AsyncPlugin>::input(self, conn, state, buf)
    }

    /// The request run to completion on this thread's runtime (what
    /// `spp_process` does when the host cannot defer it).
    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let Some(host) = HOST.get().copied() else {
            return Processed::Close;
        };
        match blocking(self, host, Request::from_conn(conn, req)) {
            SPP_OK => Processed::Done,
            _ => Processed::Close,
        }
    }
}

/// Serves `req` to completion on the caller's thread and replies: the
/// `spp_process` return code.
fn blocking<P: AsyncPlugin>(plugin: &P, host: Host, req: Request) -> c_int {
    let flow = req.flow();
    let reply = match driven::get() {
        Ok(d) => d.block_on(task::serve(plugin, host, req, task::Limit::timer(host))),
        Err(_) => return -1,
    };
    task::reply_now(host, flow, &reply)
}

/// `spp_init`.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`.
pub unsafe fn init<P: AsyncPlugin + ExportsAsync>(
    slot: &'static Slot<P>,
    host: *const SppHost,
    conf: *const c_char,
) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host keeps the table alive until `spp_fini`.
        let Some(h) = (unsafe { Host::from_raw(host) }) else {
            return -1;
        };
        let _ = HOST.set(h);
        task::FINISHED.store(false, Ordering::Release);
        if h.is_proxy() {
            let _ = PLACEMENT.set(Placement::Proxy);
            // SAFETY: forwarded host guarantees.
            return unsafe { crate::rt::init(slot, host, conf) };
        }
        if threaded::requested() {
            let rt = match threaded::runtime() {
                Ok(rt) => rt,
                Err(e) => return refuse(h, &e),
            };
            let code = {
                let _inside = rt.enter();
                // SAFETY: forwarded host guarantees.
                unsafe { crate::rt::init(slot, host, conf) }
            };
            if code != 0 {
                return code;
            }
            let Some(plugin) = slot.plugin() else {
                return -1;
            };
            if !threaded::start(rt, plugin, h) {
                return -1;
            }
            let _ = PLACEMENT.set(Placement::Threaded);
            return 0;
        }
        let d = match driven::get() {
            Ok(d) => d,
            Err(e) => return refuse(h, &e),
        };
        let _ = PLACEMENT.set(Placement::Driven);
        // SAFETY: forwarded host guarantees.
        d.enter(|| unsafe { crate::rt::init(slot, host, conf) })
    })
}

/// Logs why the runtime could not be built; `spp_init`'s refusal.
fn refuse(host: Host, e: &std::io::Error) -> c_int {
    host.log(
        Level::Error,
        &format!("cannot build the async runtime: {e}"),
    );
    -1
}

/// `spp_process`: defers the request and spawns its task, or (no defer
/// here) serves it to completion.
///
/// # Safety
/// Host-guaranteed pointers per `spp_plugin.h`; `slot` is a `static`.
pub unsafe fn process<P: AsyncPlugin + ExportsAsync>(
    slot: &'static Slot<P>,
    c: *const SppConnInfo,
    req: *const u8,
    len: usize,
) -> c_int {
    guard(SPP_HOOK_PANICKED, || {
        // SAFETY: the host passes a `conn` valid for this call.
        let (Some(plugin), Some(host), Some(c)) =
            (slot.plugin(), slot.host(), unsafe { c.as_ref() })
        else {
            return -1;
        };
        let body = if req.is_null() || len == 0 {
            &[][..]
        } else {
            // SAFETY: the host passes `len` readable bytes at `req`.
            unsafe { std::slice::from_raw_parts(req, len) }
        };
        let request = Request::from_conn(Conn(c), body);
        match PLACEMENT.get() {
            Some(Placement::Driven) => {
                let Ok(d) = driven::get() else { return -1 };
                match task::defer(host) {
                    Some(token) => {
                        driven::spawn(&d, plugin, host, token, request);
                        SPP_OK
                    }
                    None => blocking(plugin, host, request),
                }
            }
            Some(Placement::Threaded) => match task::defer(host) {
                Some(token) => {
                    if !threaded::submit(token, request) {
                        // The guard completes it (rc -1) as it drops.
                        drop(task::Pending::new(host, token, u64::MAX, None));
                    }
                    SPP_OK
                }
                None => match threaded::run_blocking(request) {
                    Some(reply) => task::reply_now(host, c.flow, &reply),
                    None => -1,
                },
            },
            Some(Placement::Proxy) | None => -1,
        }
    })
}

/// `spp_poll`.
///
/// # Safety
/// `busy_ns` is null or points to a writable u64 (the host's).
pub unsafe fn poll(wake_fd: c_int, wait_ms: u32, busy_ns: *mut u64) -> c_int {
    guard(SPP_OK, || {
        if PLACEMENT.get() != Some(&Placement::Driven) {
            return SPP_ERR_UNSUPPORTED;
        }
        let Ok(d) = driven::get() else {
            return SPP_ERR_UNSUPPORTED;
        };
        let ns = d.poll(wake_fd, wait_ms);
        // SAFETY: the host passes a valid pointer or null.
        if let Some(busy) = unsafe { busy_ns.as_mut() } {
            *busy = busy.saturating_add(ns);
        }
        SPP_OK
    })
}

/// `spp_flow_closed`: cancels the flow's tasks, then calls
/// [`AsyncPlugin::flow_closed`].
pub fn flow_closed<P: AsyncPlugin + ExportsAsync>(slot: &Slot<P>, flow: u64) {
    guard((), || {
        let Some(plugin) = slot.plugin() else { return };
        match PLACEMENT.get() {
            Some(Placement::Driven) => {
                if let Some(d) = driven::existing() {
                    d.cancel_flow(flow);
                }
            }
            Some(Placement::Threaded) if threaded::flow_closed(flow) => return,
            _ => {}
        }
        plugin.flow_closed(flow);
    })
}

/// `spp_fini`: runs the plugin's `OnFini` (`user`; a no-op when not
/// listed) inside the runtime's context, then tears the runtime down (the
/// tasks still running are dropped, their requests completed with rc -1).
pub fn fini<P: AsyncPlugin + ExportsAsync>(slot: &Slot<P>, user: fn(&P)) {
    guard((), || {
        let plugin = slot.plugin();
        match PLACEMENT.get() {
            Some(Placement::Driven) => {
                if let (Some(p), Some(d)) = (plugin, driven::existing()) {
                    d.enter(|| guard((), || user(p)));
                }
                driven::shutdown();
            }
            Some(Placement::Threaded) => {
                threaded::stop();
                if let Some(p) = plugin {
                    guard((), || user(p));
                }
            }
            Some(Placement::Proxy) | None => {
                if let Some(p) = plugin {
                    guard((), || user(p));
                }
            }
        }
        task::FINISHED.store(true, Ordering::Release);
    })
}

/// Whether the tasks of this process run on a plugin thread (tests).
pub fn is_threaded() -> bool {
    threaded::active()
}
