//! The shared-memory layout, version [`LAYOUT_VERSION`].
//!
//! * One **pair region** per (proxy, worker slot): a [`PairHeader`] page,
//!   then the request ring (proxy → worker), then the response ring
//!   (worker → proxy). See [`PairLayout`].
//! * One **proxy region** per service: a [`ProxyHeader`] with the proxy's
//!   state, its sleep flag and its counters.
//!
//! The controller creates both (memfd), initialises them, and keeps them
//! for the service's life, so a restarted proxy or worker continues on the
//! same memory. Every field says who writes it.

use crate::error::IpcError;
use crate::ring;
use crate::shm::SharedRegion;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Version of everything in this module.
pub const LAYOUT_VERSION: u32 = 1;
/// `PairHeader::magic`: "SPPPAIR1".
pub const PAIR_MAGIC: u64 = u64::from_le_bytes(*b"SPPPAIR1");
/// `ProxyHeader::magic`: "SPPPRXY1".
pub const PROXY_MAGIC: u64 = u64::from_le_bytes(*b"SPPPRXY1");
/// Bytes reserved for the pair header; the request ring starts here.
pub const PAIR_HEADER_SPACE: usize = 4096;
/// Bytes of the proxy region.
pub const PROXY_REGION_SIZE: usize = 4096;
/// The largest ring capacity a layout may ask for (1 GiB).
pub const MAX_RING_CAPACITY: usize = 1 << 30;

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
}

impl ProcessState {
    /// Decodes a raw value; unknown values read as `Down`.
    pub fn from_raw(raw: u32) -> Self {
        [Self::Empty, Self::Starting, Self::Ready, Self::Draining]
            .into_iter()
            .find(|state| *state as u32 == raw)
            .unwrap_or(Self::Down)
    }
}

/// The state of a worker slot.
pub type WorkerState = ProcessState;
/// The state of the proxy.
pub type ProxyState = ProcessState;

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
    /// Nanoseconds spent inside `spp_process`.
    pub busy_ns: AtomicU64,
}
}

/// The header of a pair region. One cache line per writer.
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
    /// `seq` of the last request whose `spp_process` returned (worker).
    /// Stored only after the replies that request produced are published,
    /// so a proxy that reads it and then drains the response ring has every
    /// reply of every completed request.
    pub completed_seq: AtomicU64,
    /// CLOCK_MONOTONIC ms of the worker's last loop turn (worker).
    pub heartbeat_ms: AtomicU64,
    _pad2: [u8; 32],

    /// The worker's sleep flag (set by the worker, cleared by the waker).
    pub worker_sleeping: AtomicU32,
    _pad3: [u8; 60],

    /// `seq` of the last request pushed (proxy).
    pub pushed_seq: AtomicU64,
    _pad4: [u8; 56],

    /// The worker's counters (worker).
    pub stats: WorkerStats,
}

const _: () = assert!(std::mem::size_of::<PairHeader>() <= PAIR_HEADER_SPACE);

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

    /// The worker's state.
    pub fn worker_state(&self) -> WorkerState {
        WorkerState::from_raw(self.header().worker_state.load(Ordering::Acquire))
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
}

const _: () = assert!(std::mem::size_of::<ProxyHeader>() <= PROXY_REGION_SIZE);

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
        assert_eq!(pair.worker_state(), WorkerState::Ready);
        let wrong = PairLayout {
            request_capacity: 1 << 17,
            response_capacity: 1 << 16,
        };
        // SAFETY: as above.
        let dup = unsafe { libc::dup(pair.raw_fd()) };
        assert!(unsafe { PairRegion::open(dup, wrong) }.is_err());
    }
}
