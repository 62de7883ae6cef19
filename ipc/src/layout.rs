//! The shared-memory layout, version [`LAYOUT_VERSION`].
//!
//! * One **pair region** per (proxy, worker slot): a [`PairHeader`] page,
//!   then the request ring (proxy → worker), then the response ring
//!   (worker → proxy). See [`PairLayout`].
//! * One **proxy region** per service: a [`ProxyHeader`] with the proxy's
//!   state, its sleep flag, its counters, the limits the controller may
//!   change while it runs ([`LiveLimits`]) and its plugin's metrics.
//!
//! Version 2 added, per worker: `in_process_since_ms` (hang detection),
//! `drain_ack` (the drain handshake), the queue-wait and process-time
//! histograms and the plugin metrics; for the proxy: live limits and the
//! plugin metrics.
//!
//! Version 3 added, per worker: `in_process_seq` (poison requests, in the
//! padding after `in_process_since_ms`) and the `log_dropped` counter; for
//! the proxy: the `log_dropped`, `poison_refused`, `stalled_skips`,
//! `proxy_expired`, `request_timeouts` and `evicted_partial` counters
//! (appended in that order) and `LiveLimits::request_timeout_ms`.
//!
//! Version 5 appended the proxy's `held_overflow` counter (answers held
//! for request order).
//!
//! Version 7 appended the worker's `tasks_expired` and `tasks_unknown`
//! counters (async mode).
//!
//! The controller creates both (memfd), initialises them, and keeps them
//! for the service's life, so a restarted proxy or worker continues on the
//! same memory. Every field says who writes it.

use crate::error::IpcError;
use crate::histogram::SharedHistogram;
use crate::plugin_metrics::PluginMetrics;
use crate::ring;
use crate::shm::SharedRegion;
pub use crate::stats::{ProxyStats, ProxyTally, WorkerStats, WorkerTally};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Version of everything in this module.
pub const LAYOUT_VERSION: u32 = 7;
/// `PairHeader::magic`: "SPPPAIR1".
pub const PAIR_MAGIC: u64 = u64::from_le_bytes(*b"SPPPAIR1");
/// `ProxyHeader::magic`: "SPPPRXY1".
pub const PROXY_MAGIC: u64 = u64::from_le_bytes(*b"SPPPRXY1");
/// Page size the region sizes are rounded to.
const PAGE: usize = 4096;
/// Bytes reserved for the pair header; the request ring starts here.
pub const PAIR_HEADER_SPACE: usize = std::mem::size_of::<PairHeader>().next_multiple_of(PAGE);
/// Bytes of the proxy region.
pub const PROXY_REGION_SIZE: usize = std::mem::size_of::<ProxyHeader>().next_multiple_of(PAGE);
/// The largest ring capacity a layout may ask for (1 GiB).
pub const MAX_RING_CAPACITY: usize = 1 << 30;

/// Life cycle of a process slot: `PairHeader::worker_state` for a worker,
/// `ProxyHeader::proxy_state` for the proxy.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProcessState {
    /// No process has used the slot yet.
    Empty = 0,
    /// The process runs and is loading its plugin.
    Starting = 1,
    /// The process serves (a worker its request ring, the proxy its
    /// listeners).
    Ready = 2,
    /// The process finishes what it holds and takes nothing new.
    Draining = 3,
    /// The process is gone (set by the controller when it reaps it).
    Down = 4,
    /// The plugin's `spp_init` refused: the process exits with the
    /// plugin's code ([`crate::launch::exit_code::plugin_init`]), and the
    /// controller names it so.
    InitFailed = 5,
}

impl ProcessState {
    /// Decodes a raw value; unknown values read as `Down`.
    pub fn from_raw(raw: u32) -> Self {
        [
            Self::Empty,
            Self::Starting,
            Self::Ready,
            Self::Draining,
            Self::InitFailed,
        ]
        .into_iter()
        .find(|state| *state as u32 == raw)
        .unwrap_or(Self::Down)
    }
}

/// `PairHeader::worker_hooks`: the plugin has `spp_flow_closed`; the proxy
/// sends `KIND_FLOW_CLOSED` records to this worker.
pub const HOOK_FLOW_CLOSED: u32 = 1;

/// The state of a worker slot.
pub type WorkerState = ProcessState;
/// The state of the proxy.
pub type ProxyState = ProcessState;

/// The header of a pair region. One cache line per writer.
///
/// With several proxy shards a worker slot has one pair region per shard
/// (`WorkerLaunch::other_shards`; see the "several shards" section of
/// [`crate::pair`]). The protocol fields are per pair: `worker_state`,
/// `worker_pid`, `worker_generation`, `completed_seq`, `worker_hooks`,
/// `worker_sleeping`, `pushed_seq`, `drain_ack`, and `in_process_seq` (a
/// `seq` of the pair whose request is in process; 0 in the others). The
/// worker's identity and statistics live in **shard 0's** pair only, where
/// the controller reads them: `stats`, `queue_wait`, `process_time`,
/// `plugin` (the other pairs' stay 0). `heartbeat_ms` and
/// `in_process_since_ms` are written in shard 0's pair (the controller's
/// hang check) and mirrored into every other pair (each proxy shard's
/// stall and overdue rules read its own).
#[repr(C, align(64))]
pub struct PairHeader {
    /// [`PAIR_MAGIC`] (controller, at creation).
    pub magic: u64,
    /// [`LAYOUT_VERSION`] (controller).
    pub version: u32,
    /// Group id of the slot (controller).
    pub group: u32,
    /// Worker index inside the group (controller).
    pub index: u32,
    /// Zero.
    pub _pad0: u32,
    /// Data bytes of the request ring (controller).
    pub request_capacity: u64,
    /// Data bytes of the response ring (controller).
    pub response_capacity: u64,
    _pad1: [u8; 24],

    /// [`WorkerState`] as u32 (worker; the controller writes `Down`).
    pub worker_state: AtomicU32,
    /// Pid of the worker using the slot (worker).
    pub worker_pid: AtomicU32,
    /// Bumped by every worker that takes the slot (worker).
    pub worker_generation: AtomicU64,
    /// `seq` of the last request the worker finished: served, expired or
    /// skipped (worker; see `pair`, rule 2).
    /// Stored only after the replies that request produced are published,
    /// so a proxy that reads it and then drains the response ring has every
    /// reply of every completed request.
    pub completed_seq: AtomicU64,
    /// CLOCK_MONOTONIC ms of the worker's last loop turn (worker).
    pub heartbeat_ms: AtomicU64,
    /// Optional hooks the worker's plugin has that the proxy serves
    /// ([`HOOK_FLOW_CLOSED`]), stored before `Ready` (worker). Appended in
    /// layout 5, in former padding.
    pub worker_hooks: AtomicU32,
    _pad2: [u8; 28],

    /// The worker's sleep flag (set by the worker, cleared by the waker).
    pub worker_sleeping: AtomicU32,
    _pad3: [u8; 60],

    /// `seq` of the last request pushed (proxy).
    pub pushed_seq: AtomicU64,
    /// The `worker_generation` whose `Draining` state the proxy has seen:
    /// from then on it pushes nothing to the slot (proxy). A draining
    /// worker exits once this equals its generation and its ring is empty.
    pub drain_ack: AtomicU64,
    _pad4: [u8; 48],

    /// CLOCK_MONOTONIC ms at which the current `spp_process` call began,
    /// 0 while the worker is not inside `spp_process` (worker). The
    /// controller kills a worker stuck there past its `hang_timeout`.
    pub in_process_since_ms: AtomicU64,
    /// `seq` of the request inside `spp_process`, 0 while the worker is not
    /// inside it (worker). When the worker is gone the proxy finds that
    /// request in the request ring (never released while in process) and
    /// books its bytes as poison, if it was in flight to that worker (a
    /// value a predecessor left is never booked again, so a successor need
    /// not clear it).
    pub in_process_seq: AtomicU64,
    _pad5: [u8; 48],

    /// The worker's counters (worker).
    pub stats: WorkerStats,
    /// Time from the proxy's push to the worker taking the request, ns
    /// (worker).
    pub queue_wait: SharedHistogram,
    /// Time inside `spp_process`, ns (worker).
    pub process_time: SharedHistogram,
    /// What the worker's plugin counts (any thread of the worker).
    pub plugin: PluginMetrics,
}

/// Sizes and offsets inside a pair region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairLayout {
    /// Request ring data bytes (power of two).
    pub request_capacity: usize,
    /// Response ring data bytes (power of two).
    pub response_capacity: usize,
}

impl PairLayout {
    /// Offset of the request ring.
    pub fn request_offset(&self) -> usize {
        PAIR_HEADER_SPACE
    }
    /// Offset of the response ring.
    pub fn response_offset(&self) -> usize {
        PAIR_HEADER_SPACE + ring::region_size(self.request_capacity)
    }
    /// Total bytes of the region.
    pub fn size(&self) -> usize {
        self.response_offset() + ring::region_size(self.response_capacity)
    }

    /// Checks both capacities are powers of two of at least
    /// [`ring::MIN_CAPACITY`] and at most [`MAX_RING_CAPACITY`], so every
    /// offset computation stays in range.
    pub fn check(&self) -> Result<(), IpcError> {
        for (what, cap) in [
            ("request", self.request_capacity),
            ("response", self.response_capacity),
        ] {
            if !cap.is_power_of_two() || !(ring::MIN_CAPACITY..=MAX_RING_CAPACITY).contains(&cap) {
                return Err(IpcError::BadLayout {
                    what: "pair",
                    reason: format!(
                        "{what} ring capacity {cap} is not a power of two from {} to {MAX_RING_CAPACITY}",
                        ring::MIN_CAPACITY
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A mapped pair region.
pub struct PairRegion {
    region: SharedRegion,
    layout: PairLayout,
}

impl PairRegion {
    /// Creates and initialises a pair region (controller).
    pub fn create(group: u32, index: u32, layout: PairLayout) -> Result<Self, IpcError> {
        layout.check()?;
        let region = SharedRegion::create(&format!("spp-pair-g{group}-w{index}"), layout.size())?;
        let base = region.as_ptr();
        let hdr = base.cast::<PairHeader>();
        // SAFETY: the region is fresh, zero-filled, page aligned and ours;
        // zero is a valid value of every header field, and the rings lie
        // inside it at 64-aligned offsets.
        unsafe {
            std::ptr::addr_of_mut!((*hdr).magic).write(PAIR_MAGIC);
            std::ptr::addr_of_mut!((*hdr).version).write(LAYOUT_VERSION);
            std::ptr::addr_of_mut!((*hdr).group).write(group);
            std::ptr::addr_of_mut!((*hdr).index).write(index);
            std::ptr::addr_of_mut!((*hdr).request_capacity).write(layout.request_capacity as u64);
            std::ptr::addr_of_mut!((*hdr).response_capacity).write(layout.response_capacity as u64);
            ring::init(base.add(layout.request_offset()), layout.request_capacity)?;
            ring::init(base.add(layout.response_offset()), layout.response_capacity)?;
        }
        Ok(PairRegion { region, layout })
    }

    /// Maps an inherited pair region and checks its header.
    ///
    /// # Safety
    /// `fd` must be an inherited pair memfd this process owns.
    pub unsafe fn open(fd: RawFd, layout: PairLayout) -> Result<Self, IpcError> {
        layout.check()?;
        // SAFETY: forwarded from the caller.
        let region = unsafe { SharedRegion::from_raw_fd(fd, layout.size())? };
        let pair = PairRegion { region, layout };
        let h = pair.header();
        if h.magic != PAIR_MAGIC
            || h.version != LAYOUT_VERSION
            || h.request_capacity != layout.request_capacity as u64
            || h.response_capacity != layout.response_capacity as u64
        {
            return Err(IpcError::BadLayout {
                what: "pair",
                reason: format!("header (magic {:#x}, version {}) does not match layout v{LAYOUT_VERSION} {layout:?}", h.magic, h.version),
            });
        }
        Ok(pair)
    }

    /// The shared header.
    pub fn header(&self) -> &PairHeader {
        // SAFETY: the region starts with an initialised `PairHeader` and
        // lives as long as `self`; all mutable fields are atomics.
        unsafe { &*self.region.as_ptr().cast::<PairHeader>() }
    }

    /// Attaches the producing end of the request ring (the proxy).
    ///
    /// # Safety
    /// Only one request producer may exist, and it must not outlive `self`.
    pub unsafe fn request_producer(&self) -> Result<ring::Producer, IpcError> {
        // SAFETY: the ring was initialised at this offset; caller upholds
        // exclusivity and lifetime.
        unsafe {
            ring::Producer::attach(
                self.region.as_ptr().add(self.layout.request_offset()),
                self.layout.request_capacity,
            )
        }
    }

    /// Attaches the consuming end of the request ring (the worker).
    ///
    /// # Safety
    /// As for [`Self::request_producer`], for the consumer.
    pub unsafe fn request_consumer(&self) -> Result<ring::Consumer, IpcError> {
        // SAFETY: as above.
        unsafe {
            ring::Consumer::attach(
                self.region.as_ptr().add(self.layout.request_offset()),
                self.layout.request_capacity,
            )
        }
    }

    /// Attaches the producing end of the response ring (the worker).
    ///
    /// # Safety
    /// As for [`Self::request_producer`].
    pub unsafe fn response_producer(&self) -> Result<ring::Producer, IpcError> {
        // SAFETY: as above.
        unsafe {
            ring::Producer::attach(
                self.region.as_ptr().add(self.layout.response_offset()),
                self.layout.response_capacity,
            )
        }
    }

    /// Attaches the consuming end of the response ring (the proxy).
    ///
    /// # Safety
    /// As for [`Self::request_producer`], for the consumer.
    pub unsafe fn response_consumer(&self) -> Result<ring::Consumer, IpcError> {
        // SAFETY: as above.
        unsafe {
            ring::Consumer::attach(
                self.region.as_ptr().add(self.layout.response_offset()),
                self.layout.response_capacity,
            )
        }
    }

    /// The memfd, for passing to a child.
    pub fn raw_fd(&self) -> RawFd {
        self.region.raw_fd()
    }

    /// The layout this region was made with.
    pub fn layout(&self) -> PairLayout {
        self.layout
    }
}

/// The proxy region's header.
#[repr(C, align(64))]
pub struct ProxyHeader {
    /// [`PROXY_MAGIC`] (controller).
    pub magic: u64,
    /// [`LAYOUT_VERSION`] (controller).
    pub version: u32,
    /// Zero.
    pub _pad0: u32,
    _pad1: [u8; 48],

    /// [`ProxyState`] as u32 (proxy; the controller writes `Down`).
    pub proxy_state: AtomicU32,
    /// The proxy's pid (proxy).
    pub proxy_pid: AtomicU32,
    /// CLOCK_MONOTONIC ms of the proxy's last loop turn (proxy).
    pub heartbeat_ms: AtomicU64,
    /// Requests queued to workers and not yet answered (proxy).
    pub in_flight: AtomicU64,
    _pad2: [u8; 40],

    /// The proxy's sleep flag (set by the proxy, cleared by a waker).
    pub proxy_sleeping: AtomicU32,
    _pad3: [u8; 60],

    /// The proxy's counters (proxy).
    pub stats: ProxyStats,
    /// Limits the controller changes on reload (controller; proxy reads).
    pub limits: LiveLimits,
    /// What the proxy's plugin counts.
    pub plugin: PluginMetrics,
}

/// Proxy limits a reload may change while the proxy runs. The controller
/// writes the values, then bumps `generation` (release); the proxy, at its
/// periodic scan, applies them when `generation` changed. Generation 0
/// means "none yet": the proxy keeps its launch limits.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct LiveLimits {
    /// Bumped after every change (controller).
    pub generation: AtomicU64,
    /// `proxy.max_connections`.
    pub max_connections: AtomicU64,
    /// `proxy.max_request_size`, bytes.
    pub max_request_size: AtomicU64,
    /// `proxy.max_send_buffer`, bytes.
    pub max_send_buffer: AtomicU64,
    /// `proxy.idle_timeout`, ms.
    pub idle_timeout_ms: AtomicU64,
    /// `proxy.spin`, µs.
    pub spin_us: AtomicU64,
    /// `proxy.request_timeout`, ms.
    pub request_timeout_ms: AtomicU64,
}

impl LiveLimits {
    /// Publishes new limits (controller).
    pub fn publish(&self, limits: &crate::launch::ProxyLimits) {
        self.max_connections
            .store(limits.max_connections as u64, Ordering::Relaxed);
        self.max_request_size
            .store(limits.max_request_size as u64, Ordering::Relaxed);
        self.max_send_buffer
            .store(limits.max_send_buffer as u64, Ordering::Relaxed);
        self.idle_timeout_ms
            .store(limits.idle_timeout_ms, Ordering::Relaxed);
        self.spin_us.store(limits.spin_us, Ordering::Relaxed);
        self.request_timeout_ms
            .store(limits.request_timeout_ms, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The generation last published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `base` with the published values applied (proxy). Values that do
    /// not fit `usize` leave `base`'s.
    pub fn apply_to(&self, base: &crate::launch::ProxyLimits) -> crate::launch::ProxyLimits {
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let size = |cell: &AtomicU64, old: usize| usize::try_from(get(cell)).unwrap_or(old);
        crate::launch::ProxyLimits {
            max_connections: size(&self.max_connections, base.max_connections),
            max_request_size: size(&self.max_request_size, base.max_request_size),
            max_send_buffer: size(&self.max_send_buffer, base.max_send_buffer),
            idle_timeout_ms: get(&self.idle_timeout_ms),
            spin_us: get(&self.spin_us),
            request_timeout_ms: get(&self.request_timeout_ms),
            ..base.clone()
        }
    }
}

/// The mapped proxy region.
pub struct ProxyRegion {
    region: SharedRegion,
}

impl ProxyRegion {
    /// Creates and initialises the proxy region (controller).
    pub fn create() -> Result<Self, IpcError> {
        let region = SharedRegion::create("spp-proxy", PROXY_REGION_SIZE)?;
        let hdr = region.as_ptr().cast::<ProxyHeader>();
        // SAFETY: fresh zero-filled region, ours; zero is valid everywhere.
        unsafe {
            std::ptr::addr_of_mut!((*hdr).magic).write(PROXY_MAGIC);
            std::ptr::addr_of_mut!((*hdr).version).write(LAYOUT_VERSION);
        }
        Ok(ProxyRegion { region })
    }

    /// Maps the inherited proxy region and checks its header.
    ///
    /// # Safety
    /// `fd` must be the inherited proxy memfd, owned by this process.
    pub unsafe fn open(fd: RawFd) -> Result<Self, IpcError> {
        // SAFETY: forwarded from the caller.
        let region = unsafe { SharedRegion::from_raw_fd(fd, PROXY_REGION_SIZE)? };
        let proxy = ProxyRegion { region };
        let h = proxy.header();
        if h.magic != PROXY_MAGIC || h.version != LAYOUT_VERSION {
            return Err(IpcError::BadLayout {
                what: "proxy",
                reason: format!(
                    "magic {:#x} version {}: not layout v{LAYOUT_VERSION}",
                    h.magic, h.version
                ),
            });
        }
        Ok(proxy)
    }

    /// The shared header.
    pub fn header(&self) -> &ProxyHeader {
        // SAFETY: the region starts with an initialised `ProxyHeader` and
        // lives as long as `self`; all mutable fields are atomics.
        unsafe { &*self.region.as_ptr().cast::<ProxyHeader>() }
    }

    /// The proxy's state.
    pub fn proxy_state(&self) -> ProxyState {
        ProxyState::from_raw(self.header().proxy_state.load(Ordering::Acquire))
    }

    /// The memfd, for passing to a child.
    pub fn raw_fd(&self) -> RawFd {
        self.region.raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_region_round_trips_through_its_fd() {
        let layout = PairLayout {
            request_capacity: 1 << 16,
            response_capacity: 1 << 16,
        };
        let pair = PairRegion::create(1, 0, layout).unwrap();
        // SAFETY: dup gives us our own fd to hand to `open`.
        let dup = unsafe { libc::dup(pair.raw_fd()) };
        // SAFETY: `dup` is a fresh fd we own.
        let again = unsafe { PairRegion::open(dup, layout).unwrap() };
        again
            .header()
            .worker_state
            .store(WorkerState::Ready as u32, Ordering::Release);
        let seen = pair.header().worker_state.load(Ordering::Acquire);
        assert_eq!(WorkerState::from_raw(seen), WorkerState::Ready);
        let wrong = PairLayout {
            request_capacity: 1 << 17,
            response_capacity: 1 << 16,
        };
        // SAFETY: as above.
        let dup = unsafe { libc::dup(pair.raw_fd()) };
        // SAFETY: `dup` is a fresh fd of a live region, handed over.
        assert!(unsafe { PairRegion::open(dup, wrong) }.is_err());
    }
}
