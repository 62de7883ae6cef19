//! A host services table in Rust for the async layer's tests (unit tests
//! and `tests/async_*.rs` include this file): it records every reply,
//! completion, counter, latency sample and L5 report, answers `defer` with
//! fresh tokens (or `SPP_ERR_UNSUPPORTED`), hands out L5 routes from a
//! list, and can answer `SPP_ERR_FULL` to the first replies.
//!
//! The including module must have `abi` (the crate's `abi` module) and
//! `Host` in scope of its parent (`super::abi`, `super::Host`).
#![allow(dead_code)]

use super::abi::*;
use super::Host;
use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One host service call the plugin made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `reply(flow, bytes)`.
    Reply(u64, Vec<u8>),
    /// `complete(token, rc)`.
    Complete(u64, i32),
    /// `count(name, delta)`.
    Count(String, u64),
    /// `record_latency(name)`.
    Latency(String),
    /// `report(route's address, result)`.
    Report(SocketAddr, i32),
    /// `close(flow)`.
    Close(u64),
}

/// The fake host's state (its `ctx`).
pub struct Fake {
    /// Every call, in order.
    pub events: Mutex<Vec<Event>>,
    /// Whether `defer` hands out tokens.
    pub defers: bool,
    /// The next token.
    pub next_token: AtomicU64,
    /// Routes `get_route` hands out, front first (the last one repeats).
    pub routes: Mutex<VecDeque<SocketAddr>>,
    /// Replies still to refuse with `SPP_ERR_FULL`.
    pub full_replies: AtomicU32,
}

impl Fake {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The rc `token` was completed with, if it was.
    pub fn completed(&self, token: u64) -> Option<i32> {
        self.events().iter().find_map(|e| match e {
            Event::Complete(t, rc) if *t == token => Some(*rc),
            _ => None,
        })
    }

    /// How often `token` was completed.
    pub fn completions(&self, token: u64) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Event::Complete(t, _) if *t == token))
            .count()
    }

    /// The replies to `flow`, in order.
    pub fn replies(&self, flow: u64) -> Vec<Vec<u8>> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::Reply(f, b) if *f == flow => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    /// The sum of counter `name`.
    pub fn counter(&self, name: &str) -> u64 {
        self.events()
            .iter()
            .map(|e| match e {
                Event::Count(n, d) if n == name => *d,
                _ => 0,
            })
            .sum()
    }

    /// The latency samples of histogram `name`.
    pub fn samples(&self, name: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Event::Latency(n) if n == name))
            .count()
    }

    /// The L5 reports, in order.
    pub fn reports(&self) -> Vec<(SocketAddr, i32)> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::Report(a, r) => Some((*a, *r)),
                _ => None,
            })
            .collect()
    }

    /// The token the next `defer` hands out.
    pub fn peek_token(&self) -> u64 {
        self.next_token.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `token` is completed; its rc.
    pub fn wait_completed(&self, token: u64, within: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(rc) = self.completed(token) {
                return Some(rc);
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
}

fn fake<'a>(ctx: *mut c_void) -> &'a Fake {
    // SAFETY: every table of this module has a leaked `Fake` as its ctx.
    unsafe { &*ctx.cast::<Fake>() }
}

fn text(ptr: *const c_char, len: usize) -> String {
    // SAFETY: the layer passes `len` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe extern "C" fn reply(ctx: *mut c_void, flow: u64, data: *const u8, len: usize) -> c_int {
    let f = fake(ctx);
    if f.full_replies
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return SPP_ERR_FULL;
    }
    let bytes = if len == 0 {
        Vec::new()
    } else {
        // SAFETY: the layer passes `len` readable bytes.
        unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
    };
    f.push(Event::Reply(flow, bytes));
    SPP_OK
}
unsafe extern "C" fn close(ctx: *mut c_void, flow: u64) -> c_int {
    fake(ctx).push(Event::Close(flow));
    SPP_OK
}
unsafe extern "C" fn log(_: *mut c_void, _: c_int, _: *const c_char, _: usize) {}
unsafe extern "C" fn count(ctx: *mut c_void, name: *const c_char, len: usize, d: u64) -> c_int {
    fake(ctx).push(Event::Count(text(name, len), d));
    SPP_OK
}
unsafe extern "C" fn latency(ctx: *mut c_void, name: *const c_char, len: usize, _: u64) -> c_int {
    fake(ctx).push(Event::Latency(text(name, len)));
    SPP_OK
}
unsafe extern "C" fn get_route(ctx: *mut c_void, m: u32, c: u32, out: *mut SppL5Route) -> c_int {
    let f = fake(ctx);
    let mut routes = f.routes.lock().unwrap();
    let addr = match routes.len() {
        0 => return SPP_L5_NO_SERVER,
        1 => routes[0],
        _ => routes.pop_front().unwrap(),
    };
    let route = SppL5Route {
        modid: m,
        cmdid: c,
        addr: SppAddr::from_socket_addr(addr),
        ..SppL5Route::default()
    };
    // SAFETY: the layer passes a writable route.
    unsafe { out.write(route) };
    SPP_OK
}
unsafe extern "C" fn get_route_hash(
    ctx: *mut c_void,
    m: u32,
    c: u32,
    _: u64,
    out: *mut SppL5Route,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { get_route(ctx, m, c, out) }
}
unsafe extern "C" fn report(ctx: *mut c_void, route: *const SppL5Route, r: c_int, _: u64) -> c_int {
    // SAFETY: the layer passes a valid route.
    let addr = unsafe { &*route }.addr.to_socket_addr().unwrap();
    fake(ctx).push(Event::Report(addr, r));
    SPP_OK
}
unsafe extern "C" fn sleep(_: *mut c_void, _: u64) -> c_int {
    SPP_ERR_UNSUPPORTED
}
unsafe extern "C" fn call(_: *mut c_void, _: *mut SppCall) -> c_int {
    SPP_ERR_UNSUPPORTED
}
unsafe extern "C" fn call_many(_: *mut c_void, _: *mut SppCall, _: usize, _: usize) -> c_int {
    SPP_ERR_UNSUPPORTED
}
unsafe extern "C" fn defer(ctx: *mut c_void, token: *mut u64) -> c_int {
    let f = fake(ctx);
    if !f.defers {
        return SPP_ERR_UNSUPPORTED;
    }
    // SAFETY: the layer passes a writable u64.
    unsafe { token.write(f.next_token.fetch_add(1, Ordering::SeqCst)) };
    SPP_OK
}
unsafe extern "C" fn complete(ctx: *mut c_void, token: u64, rc: c_int) -> c_int {
    let f = fake(ctx);
    if f.completed(token).is_some() {
        return SPP_ERR_UNKNOWN_TOKEN;
    }
    f.push(Event::Complete(token, rc));
    SPP_OK
}

/// How a fake host table is built.
pub struct Setup {
    /// `spp_host.role`.
    pub role: u32,
    /// Whether `defer` hands out tokens.
    pub defers: bool,
    /// `spp_host.task_timeout_ms`.
    pub task_timeout_ms: u64,
    /// `spp_host.size`: the full table, or an older host's.
    pub size: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            role: SPP_ROLE_WORKER,
            defers: true,
            task_timeout_ms: 0,
            size: std::mem::size_of::<SppHost>() as u32,
        }
    }
}

/// A leaked fake host: its state and its table.
pub fn leak(setup: Setup) -> (&'static Fake, &'static SppHost) {
    let fake: &'static Fake = Box::leak(Box::new(Fake {
        events: Mutex::new(Vec::new()),
        defers: setup.defers,
        next_token: AtomicU64::new(1),
        routes: Mutex::new(VecDeque::new()),
        full_replies: AtomicU32::new(0),
    }));
    let fns = HostFns {
        reply,
        close,
        log,
        count,
        record_latency: latency,
        get_route,
        get_route_hash,
        report,
        sleep,
        call,
        call_many,
    };
    let ctx = (fake as *const Fake).cast_mut().cast::<c_void>();
    let mut table = SppHost::new(setup.role, 1, 0, ctx, fns);
    table.defer = defer;
    table.complete = complete;
    table.task_timeout_ms = setup.task_timeout_ms;
    table.size = setup.size;
    (fake, Box::leak(Box::new(table)))
}

/// A leaked fake host and its [`Host`] handle.
pub fn host(setup: Setup) -> (&'static Fake, Host) {
    let (fake, table) = leak(setup);
    // SAFETY: the table is leaked: valid for the rest of the process.
    (fake, unsafe { Host::from_raw(table) }.unwrap())
}
