//! The `spp_host` services table for the proxy role.
//!
//! In the proxy, `reply(flow, bytes)` and `close(flow)` act on the proxy's
//! own connections (a plugin answers from `spp_exception`, say). A hook is
//! called while the event loop is in the middle of its work, so the
//! services never touch a connection directly: they append to an
//! [`OpQueue`] that the loop applies right after the hook returns. Only the
//! event-loop thread may queue; any other thread gets
//! `SPP_ERR_UNSUPPORTED`. The queue is bounded ([`MAX_QUEUED_OPS`] calls,
//! [`MAX_QUEUED_REPLY_BYTES`] bytes); beyond that a call returns
//! `SPP_ERR_FULL`. Every refused `reply`/`close` (another thread, a flow
//! of another proxy epoch or shard, a full queue) is counted
//! ([`HostServices::take_refused`]; the loop adds it to `host_refused`).
//!
//! `set_note` keeps the request note of the input hook running now
//! ([`HostServices::begin_input`] clears it and opens the window,
//! [`HostServices::end_input`] closes it, [`HostServices::take_note`] hands
//! it to the request the hook framed); outside that window, or from another
//! thread, it answers `SPP_ERR_UNSUPPORTED`. No allocation: the note lives
//! in a fixed buffer of `SPP_NOTE_MAX` bytes.
//!
//! `log`, `count` and `record_latency` are the shared ones of
//! [`spp_ipc::host_kit`] (any thread; the metrics go to the proxy region's
//! [`PluginMetrics`] block, whose own `refused` counter takes their
//! refusals). The proxy has no route table: its L5 services answer
//! `SPP_L5_SYSTEM`.

use spp_ipc::host_kit::{self, catch_panic, HostCtx, RoleFns, TableRole, PANICKED};
use spp_ipc::plugin_metrics::PluginMetrics;
use spp_plugin_api::abi::{
    SppHost, SPP_ERR_BAD_ARG, SPP_ERR_FULL, SPP_ERR_TOO_LARGE, SPP_ERR_UNKNOWN_FLOW,
    SPP_ERR_UNSUPPORTED, SPP_NOTE_MAX, SPP_OK,
};
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::flow;

/// Bytes the plugin may queue through `reply` between two points where the
/// loop applies them; beyond it `reply` returns `SPP_ERR_FULL`.
pub const MAX_QUEUED_REPLY_BYTES: usize = 64 << 20;
/// `reply`/`close` calls the plugin may queue between two points where the
/// loop applies them; beyond it they return `SPP_ERR_FULL`.
pub const MAX_QUEUED_OPS: usize = 64 << 10;

thread_local! {
    /// Set on the event-loop thread only.
    static ON_LOOP_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// One queued service call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The target flow.
    pub flow: u64,
    /// Start of the reply bytes in [`OpQueue::data`].
    pub start: usize,
    /// Length of the reply bytes (0 = close after flush).
    pub len: usize,
    /// `close(flow)` rather than `reply`.
    pub close: bool,
}

/// Service calls waiting to be applied, with their bytes in one buffer.
#[derive(Debug, Default)]
pub struct OpQueue {
    /// Reply bytes of every op, back to back.
    pub data: Vec<u8>,
    /// The calls, in order.
    pub ops: Vec<Op>,
}

impl OpQueue {
    /// Empties the queue, keeping its allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ops.clear();
    }

    /// The reply bytes of `op`.
    pub fn bytes(&self, op: &Op) -> &[u8] {
        &self.data[op.start..op.start + op.len]
    }
}

/// Refused `reply`/`close` calls since the last [`HostServices::take_refused`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// Every refusal, any reason, any thread.
    pub total: u64,
    /// Of which: the queue was full (`SPP_ERR_FULL`).
    pub full: u64,
}

/// A request note (`set_note`), by value: at most [`SPP_NOTE_MAX`] bytes.
#[derive(Clone, Copy, Debug)]
pub struct Note {
    buf: [u8; SPP_NOTE_MAX],
    len: usize,
}

impl Note {
    /// No note.
    pub const NONE: Note = Note {
        buf: [0; SPP_NOTE_MAX],
        len: 0,
    };

    /// Its bytes (empty for none).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The part only the event-loop thread touches.
struct LoopCtx {
    epoch: u16,
    shard: u16,
    /// Inside `spp_input`/`spp_input_ctx`: `set_note` is allowed.
    in_input: Cell<bool>,
    /// The note the running input hook set (length 0: none).
    note: Cell<Note>,
    queue: RefCell<OpQueue>,
    queued: Cell<usize>,
    /// Calls refused with `SPP_ERR_FULL`.
    full: Cell<u64>,
}

/// The proxy's part of the table's context. Another thread reaches
/// `refused` by pointer arithmetic alone, never through a `&ProxyCtx`
/// (whose `loop_only` is not `Sync`).
struct ProxyCtx {
    /// Refused `reply`/`close` calls, any thread.
    refused: AtomicU64,
    loop_only: LoopCtx,
}

/// The context behind the table's `ctx`.
type Ctx = HostCtx<ProxyCtx>;

/// The services table and its context, at stable heap addresses for as
/// long as this value lives (the plugin may keep the pointer until
/// `spp_fini`, and its threads past that: the proxy leaks it).
pub struct HostServices {
    table: Box<SppHost>,
    ctx: Box<Ctx>,
}

impl HostServices {
    /// Builds the proxy's table for flows of `epoch` and proxy shard
    /// `shard`, counting plugin metrics in `metrics`. Call on the
    /// event-loop thread: that thread becomes the only one allowed to
    /// queue replies.
    pub fn new(epoch: u16, shard: u16, metrics: &'static PluginMetrics) -> Self {
        ON_LOOP_THREAD.with(|f| f.set(true));
        let ctx = Box::new(HostCtx::new(
            metrics,
            ProxyCtx {
                refused: AtomicU64::new(0),
                loop_only: LoopCtx {
                    epoch,
                    shard,
                    queue: RefCell::new(OpQueue::default()),
                    queued: Cell::new(0),
                    full: Cell::new(0),
                    in_input: Cell::new(false),
                    note: Cell::new(Note::NONE),
                },
            },
        ));
        let mut table = Box::new(host_kit::table(
            TableRole::Proxy,
            &ctx,
            RoleFns::without_l5(host_reply, host_close),
        ));
        table.max_reply = MAX_QUEUED_REPLY_BYTES as u64;
        table.set_note = host_set_note;
        HostServices { table, ctx }
    }

    /// An input hook is about to run: drops the last note and lets
    /// `set_note` in. Call on the event-loop thread.
    #[inline]
    pub fn begin_input(&self) {
        let ctx = &self.ctx.role.loop_only;
        if ctx.note.get().len != 0 {
            ctx.note.set(Note::NONE);
        }
        ctx.in_input.set(true);
    }

    /// The input hook returned: `set_note` is refused again.
    #[inline]
    pub fn end_input(&self) {
        self.ctx.role.loop_only.in_input.set(false);
    }

    /// Takes the note the last input hook set (none after the first take),
    /// for the request it framed.
    #[inline]
    pub fn take_note(&self) -> Note {
        let ctx = &self.ctx.role.loop_only;
        if ctx.note.get().len == 0 {
            return Note::NONE;
        }
        ctx.note.replace(Note::NONE)
    }

    /// The table to hand to `spp_init`.
    pub fn table(&self) -> *const SppHost {
        &*self.table
    }

    /// Whether any call is queued (cheap; no borrow).
    #[inline]
    pub fn has_ops(&self) -> bool {
        self.ctx.role.loop_only.queued.get() != 0
    }

    /// `reply`/`close` calls refused since the last call (and resets the
    /// counts). Call on the event-loop thread.
    pub fn take_refused(&self) -> Refused {
        let refused = &self.ctx.role.refused;
        // Called every loop turn: a plain load, and the locked swap only
        // when there is something to take.
        let total = match refused.load(Ordering::Relaxed) {
            0 => 0,
            _ => refused.swap(0, Ordering::Relaxed),
        };
        Refused {
            total,
            full: self.ctx.role.loop_only.full.replace(0),
        }
    }

    /// Swaps the queued calls into `into` (which must be empty), leaving an
    /// empty queue with `into`'s old allocations. Returns false if the queue
    /// is in use (never, on the loop thread outside a service call).
    pub fn take_ops(&self, into: &mut OpQueue) -> bool {
        match self.ctx.role.loop_only.queue.try_borrow_mut() {
            Ok(mut queue) => {
                into.clear();
                std::mem::swap(&mut *queue, into);
                self.ctx.role.loop_only.queued.set(0);
                true
            }
            Err(_) => false,
        }
    }
}

/// The refusal counter behind `ctx`, from any thread.
///
/// # Safety
/// `ctx` must be null or the `ctx` of a live [`HostServices`] table.
unsafe fn refused_counter<'a>(ctx: *mut c_void) -> Option<&'a AtomicU64> {
    let ctx = ctx.cast::<Ctx>().cast_const();
    if ctx.is_null() {
        return None;
    }
    // SAFETY: `ctx` points to a live `Ctx` (caller); taking the address of
    // one field creates no reference to the (non-`Sync`) whole, and the
    // counter is atomic.
    Some(unsafe { &*std::ptr::addr_of!((*ctx).role.refused) })
}

/// The proxy's context behind `ctx`, if the call comes from the event-loop
/// thread; from any other thread the refusal is counted and `None` comes
/// back.
///
/// # Safety
/// `ctx` must be null or the `ctx` of a live [`HostServices`] table.
unsafe fn loop_ctx<'a>(ctx: *mut c_void) -> Option<&'a ProxyCtx> {
    if !ON_LOOP_THREAD.with(Cell::get) {
        // SAFETY: forwarded from the caller.
        if let Some(refused) = unsafe { refused_counter(ctx) } {
            refused.fetch_add(1, Ordering::Relaxed);
        }
        return None;
    }
    // SAFETY: the caller guarantees `ctx` is null or points to a live
    // `Ctx`; we are on the only thread that touches its `RefCell`/`Cell`
    // fields.
    unsafe { ctx.cast::<Ctx>().cast_const().as_ref() }.map(|ctx| &ctx.role)
}

fn queue_op(ctx: &ProxyCtx, flow: u64, bytes: &[u8], close: bool) -> c_int {
    let code = try_queue_op(&ctx.loop_only, flow, bytes, close);
    if code != SPP_OK {
        ctx.refused.fetch_add(1, Ordering::Relaxed);
    }
    code
}

fn try_queue_op(ctx: &LoopCtx, flow: u64, bytes: &[u8], close: bool) -> c_int {
    let parts = flow::decode(flow);
    if parts.epoch != ctx.epoch || parts.shard != ctx.shard {
        return SPP_ERR_UNKNOWN_FLOW;
    }
    if bytes.len() > MAX_QUEUED_REPLY_BYTES {
        return SPP_ERR_TOO_LARGE;
    }
    let Ok(mut queue) = ctx.queue.try_borrow_mut() else {
        return SPP_ERR_UNSUPPORTED;
    };
    if queue.ops.len() >= MAX_QUEUED_OPS || queue.data.len() + bytes.len() > MAX_QUEUED_REPLY_BYTES
    {
        ctx.full.set(ctx.full.get() + 1);
        return SPP_ERR_FULL;
    }
    let start = queue.data.len();
    queue.data.extend_from_slice(bytes);
    queue.ops.push(Op {
        flow,
        start,
        len: bytes.len(),
        close,
    });
    ctx.queued.set(ctx.queued.get() + 1);
    SPP_OK
}

/// `spp_host.reply` for the proxy role.
///
/// # Safety
/// `ctx` must be the table's `ctx`; `data` must point to `len` readable
/// bytes (or `len` must be 0).
unsafe extern "C" fn host_reply(ctx: *mut c_void, flow: u64, data: *const u8, len: usize) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: the plugin passes back the `ctx` of our live table.
        let Some(ctx) = (unsafe { loop_ctx(ctx) }) else {
            return SPP_ERR_UNSUPPORTED;
        };
        let bytes = if len == 0 {
            &[][..]
        } else if data.is_null() {
            ctx.refused.fetch_add(1, Ordering::Relaxed);
            return SPP_ERR_BAD_ARG;
        } else {
            // SAFETY: the plugin promises `data` holds `len` bytes for the call.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        queue_op(ctx, flow, bytes, false)
    })
}

/// `spp_host.set_note` for the proxy role: only on the event-loop thread,
/// inside an input hook. Not a `reply`/`close`: its refusals are not
/// counted in `host_refused`.
///
/// # Safety
/// `ctx` must be the table's `ctx`; `note` must point to `len` readable
/// bytes (or `len` must be 0).
unsafe extern "C" fn host_set_note(ctx: *mut c_void, note: *const u8, len: usize) -> c_int {
    catch_panic(PANICKED, || {
        if !ON_LOOP_THREAD.with(Cell::get) {
            return SPP_ERR_UNSUPPORTED;
        }
        // SAFETY: the plugin passes back the `ctx` of our live table, and
        // we are on the only thread that touches its `Cell` fields.
        let Some(ctx) = (unsafe { ctx.cast::<Ctx>().cast_const().as_ref() }) else {
            return SPP_ERR_UNSUPPORTED;
        };
        let ctx = &ctx.role.loop_only;
        if !ctx.in_input.get() {
            return SPP_ERR_UNSUPPORTED;
        }
        if len > SPP_NOTE_MAX {
            return SPP_ERR_TOO_LARGE;
        }
        let mut next = Note::NONE;
        if len > 0 {
            if note.is_null() {
                return SPP_ERR_BAD_ARG;
            }
            // SAFETY: the plugin promises `note` holds `len` bytes for the
            // call; `len <= SPP_NOTE_MAX` (checked).
            next.buf[..len].copy_from_slice(unsafe { std::slice::from_raw_parts(note, len) });
            next.len = len;
        }
        ctx.note.set(next);
        SPP_OK
    })
}

/// `spp_host.close` for the proxy role.
///
/// # Safety
/// `ctx` must be the table's `ctx`.
unsafe extern "C" fn host_close(ctx: *mut c_void, flow: u64) -> c_int {
    catch_panic(PANICKED, || {
        // SAFETY: the plugin passes back the `ctx` of our live table.
        let Some(ctx) = (unsafe { loop_ctx(ctx) }) else {
            return SPP_ERR_UNSUPPORTED;
        };
        queue_op(ctx, flow, &[], true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{encode, FlowParts, Proto};
    use spp_plugin_api::abi::SPP_ERR_BAD_NAME;

    fn flow(epoch: u16) -> u64 {
        encode(FlowParts {
            epoch,
            shard: 0,
            proto: Proto::Tcp,
            generation: 1,
            slot: 7,
        })
    }

    /// A zeroed metrics block for the life of the test binary, as the
    /// proxy region's is for the proxy's.
    fn metrics() -> &'static PluginMetrics {
        Box::leak(PluginMetrics::boxed())
    }

    /// `reply` through our own table.
    fn call_reply(t: &SppHost, flow: u64, bytes: &[u8]) -> c_int {
        // SAFETY: the table's own `ctx`; `bytes` is `len` live bytes.
        unsafe { (t.reply)(t.ctx, flow, bytes.as_ptr(), bytes.len()) }
    }

    /// `close` through our own table.
    fn call_close(t: &SppHost, flow: u64) -> c_int {
        // SAFETY: the table's own `ctx`.
        unsafe { (t.close)(t.ctx, flow) }
    }

    /// `count` through our own table.
    fn call_count(t: &SppHost, name: &[u8], delta: u64) -> c_int {
        // SAFETY: the table's own `ctx`; `name` is `len` live bytes.
        unsafe { (t.count)(t.ctx, name.as_ptr().cast(), name.len(), delta) }
    }

    #[test]
    fn replies_queue_on_the_loop_thread_only() {
        let host = HostServices::new(4, 0, metrics());
        // SAFETY: calling our own table's services with valid arguments.
        let t = unsafe { &*host.table() };
        assert_eq!(call_reply(t, flow(4), b"hi"), SPP_OK);
        assert_eq!(call_close(t, flow(4)), SPP_OK);
        assert_eq!(call_reply(t, flow(5), b"x"), SPP_ERR_UNKNOWN_FLOW);
        let other_shard = spp_ipc::flow_shard::with_shard(flow(4), 1);
        assert_eq!(call_reply(t, other_shard, b"x"), SPP_ERR_UNKNOWN_FLOW);
        assert!(host.has_ops());

        let ctx = t.ctx as usize;
        let reply = t.reply;
        let other = std::thread::spawn(move || {
            // SAFETY: same table, from another thread: must be refused.
            unsafe { reply(ctx as *mut c_void, flow(4), b"x".as_ptr(), 1) }
        });
        assert_eq!(other.join().unwrap(), SPP_ERR_UNSUPPORTED);
        // The wrong epoch, the wrong shard and the other thread.
        assert_eq!(host.take_refused(), Refused { total: 3, full: 0 });

        let mut q = OpQueue::default();
        assert!(host.take_ops(&mut q));
        assert!(!host.has_ops());
        assert_eq!(q.ops.len(), 2);
        assert_eq!(q.bytes(&q.ops[0]), b"hi");
        assert!(q.ops[1].close);
    }

    #[test]
    fn the_queue_is_bounded_and_refusals_are_counted() {
        let host = HostServices::new(4, 0, metrics());
        // SAFETY: calling our own table's services with valid arguments.
        let t = unsafe { &*host.table() };
        for _ in 0..MAX_QUEUED_OPS {
            assert_eq!(call_close(t, flow(4)), SPP_OK);
        }
        assert_eq!(call_close(t, flow(4)), SPP_ERR_FULL);
        assert_eq!(call_reply(t, flow(4), b"x"), SPP_ERR_FULL);
        assert_eq!(host.take_refused(), Refused { total: 2, full: 2 });
        assert_eq!(host.take_refused(), Refused::default());
        let mut q = OpQueue::default();
        assert!(host.take_ops(&mut q));
        assert_eq!(q.ops.len(), MAX_QUEUED_OPS);
        // Applied: there is room again.
        assert_eq!(call_close(t, flow(4)), SPP_OK);
    }

    #[test]
    fn a_null_reply_is_a_bad_argument_and_max_reply_is_published() {
        let host = HostServices::new(4, 0, metrics());
        // SAFETY: calling our own table's services; the null pointer with
        // `len > 0` is refused before it is read.
        let t = unsafe { &*host.table() };
        // SAFETY: as above.
        let null = unsafe { (t.reply)(t.ctx, flow(4), std::ptr::null(), 3) };
        assert_eq!(null, SPP_ERR_BAD_ARG);
        // SAFETY: a null pointer with len 0 is a close, never read.
        let close = unsafe { (t.reply)(t.ctx, flow(4), std::ptr::null(), 0) };
        assert_eq!(close, SPP_OK);
        assert_eq!(t.max_reply, MAX_QUEUED_REPLY_BYTES as u64);
        let too_big = vec![0u8; MAX_QUEUED_REPLY_BYTES + 1];
        assert_eq!(call_reply(t, flow(4), &too_big), SPP_ERR_TOO_LARGE);
        assert_eq!(host.take_refused(), Refused { total: 2, full: 0 });
    }

    /// `set_note` through our own table.
    fn call_set_note(t: &SppHost, note: &[u8]) -> c_int {
        // SAFETY: the table's own `ctx`; `note` is `len` live bytes.
        unsafe { (t.set_note)(t.ctx, note.as_ptr(), note.len()) }
    }

    #[test]
    fn a_note_is_set_only_inside_input_and_taken_once() {
        let host = HostServices::new(4, 0, metrics());
        // SAFETY: calling our own table's services with valid arguments.
        let t = unsafe { &*host.table() };
        assert_eq!(call_set_note(t, b"early"), SPP_ERR_UNSUPPORTED);
        assert!(host.take_note().bytes().is_empty());

        host.begin_input();
        assert_eq!(call_set_note(t, b"first"), SPP_OK);
        assert_eq!(
            call_set_note(t, b"second"),
            SPP_OK,
            "a later call replaces it"
        );
        let too_long = [7u8; SPP_NOTE_MAX + 1];
        assert_eq!(call_set_note(t, &too_long), SPP_ERR_TOO_LARGE);
        // SAFETY: a null note with len > 0 is refused before it is read.
        let null = unsafe { (t.set_note)(t.ctx, std::ptr::null(), 3) };
        assert_eq!(null, SPP_ERR_BAD_ARG);
        let ctx = t.ctx as usize;
        let set_note = t.set_note;
        let other = std::thread::spawn(move || {
            // SAFETY: same table, from another thread: must be refused.
            unsafe { set_note(ctx as *mut c_void, b"x".as_ptr(), 1) }
        });
        assert_eq!(other.join().unwrap(), SPP_ERR_UNSUPPORTED);
        host.end_input();
        assert_eq!(call_set_note(t, b"late"), SPP_ERR_UNSUPPORTED);
        assert_eq!(host.take_note().bytes(), b"second", "refusals kept it");
        assert!(host.take_note().bytes().is_empty(), "taken once");

        // The next input call starts without a note.
        host.begin_input();
        assert_eq!(call_set_note(t, &[1u8; SPP_NOTE_MAX]), SPP_OK);
        host.end_input();
        host.begin_input();
        host.end_input();
        assert!(host.take_note().bytes().is_empty());
        assert_eq!(host.take_refused(), Refused::default());
    }

    #[test]
    fn plugin_metrics_are_counted_from_any_thread() {
        let m = metrics();
        let host = HostServices::new(4, 0, m);
        // SAFETY: calling our own table's services with valid arguments.
        let t = unsafe { &*host.table() };
        assert_eq!(call_count(t, b"cache_hits", 2), SPP_OK);
        let (ctx, count, latency) = (t.ctx as usize, t.count, t.record_latency);
        let other = std::thread::spawn(move || {
            let ctx = ctx as *mut c_void;
            // SAFETY: same table from a plugin thread; names are valid.
            unsafe {
                (
                    count(ctx, b"cache_hits".as_ptr().cast(), 10, 3),
                    latency(ctx, b"lookup".as_ptr().cast(), 6, 1_500),
                )
            }
        });
        assert_eq!(other.join().unwrap(), (SPP_OK, SPP_OK));
        assert_eq!(call_count(t, b"no spaces", 1), SPP_ERR_BAD_NAME);
        // SAFETY: a null name is refused before it is read.
        let null = unsafe { (t.record_latency)(t.ctx, std::ptr::null(), 4, 1) };
        assert_eq!(null, SPP_ERR_BAD_NAME);
        let snap = m.snapshot();
        assert_eq!(snap.counters, vec![("cache_hits".to_string(), 5)]);
        assert_eq!(snap.latencies.len(), 1);
        assert_eq!(snap.latencies[0].0, "lookup");
        assert_eq!(snap.latencies[0].1.count, 1);
        // The bad name at least (whether `host_count` counts a null name
        // is the metrics block's business).
        assert!(snap.refused >= 1, "{}", snap.refused);
        // Metric refusals are the metrics block's, not `host_refused`.
        assert_eq!(host.take_refused(), Refused::default());
    }
}
