//! A single-producer / single-consumer ring of variable-length records in
//! shared memory.
//!
//! Layout (`#[repr(C)]`, version [`RING_VERSION`]): a [`RingHeader`] of
//! three cache lines, then `capacity` data bytes (a power of two). Each
//! record is an 8-byte [`RecordHeader`] followed by its payload, padded to
//! 8 bytes, so a payload is always 8-aligned. A record never wraps: when it
//! does not fit before the end, the producer fills the rest with a
//! [`KIND_PAD`] record and starts again at offset 0.
//!
//! `write` and `read` are monotonic byte counters, each written by one side
//! only, so a dead peer's index can be reset without touching the other.
//! Both sides batch: [`Producer::push`] writes locally and
//! [`Producer::publish`] makes a batch visible with one release store;
//! [`Consumer::advance`] consumes locally and [`Consumer::release`] frees the
//! space with one store.
//! Off the hot path, [`Producer::find_unreleased`] lets the producer look
//! at records its consumer has not released (a dead worker's request in
//! process).

use crate::error::IpcError;
use std::sync::atomic::{AtomicU64, Ordering};

/// `RingHeader::magic`: "SPPRING1".
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"SPPRING1");
/// Version of this layout.
pub const RING_VERSION: u32 = 1;
/// Bytes taken by the header; data starts right after.
pub const RING_HEADER_SIZE: usize = std::mem::size_of::<RingHeader>();
/// Bytes of a record header.
pub const RECORD_HEADER_SIZE: usize = std::mem::size_of::<RecordHeader>();
/// Record kind that fills the tail of the ring before a wrap.
pub const KIND_PAD: u16 = 1;
/// Smallest data capacity a ring may have.
pub const MIN_CAPACITY: usize = 4096;

const ALIGN: u64 = 8;

/// How far ahead of its read position the consumer prefetches published
/// data. The producer's freshly written lines sit modified in the other
/// core's cache; fetching them one demand miss at a time is what bounds a
/// two-thread ring, and 512 bytes (8 lines, ~7 records of 64 bytes) ahead
/// measured best (256 to 2048 all help).
const PREFETCH_AHEAD: u64 = 512;

/// The ring's shared header. One cache line of constants, then one line
/// per index so producer and consumer never share a written line.
#[repr(C, align(64))]
pub struct RingHeader {
    /// [`RING_MAGIC`].
    pub magic: u64,
    /// [`RING_VERSION`].
    pub version: u32,
    /// Zero.
    pub _pad0: u32,
    /// Data bytes, a power of two.
    pub capacity: u64,
    _pad1: [u8; 40],
    /// Bytes ever published by the producer (written by the producer only).
    pub write: AtomicU64,
    _pad2: [u8; 56],
    /// Bytes ever consumed by the consumer (written by the consumer only).
    pub read: AtomicU64,
    _pad3: [u8; 56],
}

/// The 8 bytes in front of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    /// Payload length in bytes (without header and padding).
    pub len: u32,
    /// Record kind; 0 is invalid, [`KIND_PAD`] is padding, others belong to
    /// the user of the ring.
    pub kind: u16,
    /// Free for the user of the ring.
    pub flags: u16,
}

/// Why a push did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free space right now.
    Full,
    /// The record can never fit this ring.
    TooLarge,
}

/// The largest payload a ring of `capacity` data bytes can ever take: a
/// record (header + payload) must fit in half the ring, so it always fits
/// after at most one wrap.
pub const fn max_payload_for(capacity: usize) -> usize {
    (capacity / 2).saturating_sub(RECORD_HEADER_SIZE)
}

/// Total bytes (header + data) a ring of `capacity` data bytes needs.
pub const fn region_size(capacity: usize) -> usize {
    RING_HEADER_SIZE + capacity
}

#[inline]
fn stride_of(len: usize) -> u64 {
    (RECORD_HEADER_SIZE as u64 + len as u64 + ALIGN - 1) & !(ALIGN - 1)
}

/// Initialises a ring at `base`, erasing whatever was there.
///
/// # Safety
/// `base` must be 64-byte aligned and point to `region_size(capacity)`
/// writable bytes that no producer or consumer uses yet.
pub unsafe fn init(base: *mut u8, capacity: usize) -> Result<(), IpcError> {
    if !capacity.is_power_of_two() || capacity < MIN_CAPACITY {
        return Err(IpcError::BadLayout {
            what: "ring",
            reason: format!("capacity {capacity} is not a power of two >= {MIN_CAPACITY}"),
        });
    }
    let hdr = base.cast::<RingHeader>();
    // SAFETY: the caller guarantees `base` is writable, aligned and unused;
    // fields are written through raw pointers, never through a reference
    // to uninitialised memory.
    unsafe {
        std::ptr::write_bytes(base, 0, RING_HEADER_SIZE);
        std::ptr::addr_of_mut!((*hdr).magic).write(RING_MAGIC);
        std::ptr::addr_of_mut!((*hdr).version).write(RING_VERSION);
        std::ptr::addr_of_mut!((*hdr).capacity).write(capacity as u64);
    }
    Ok(())
}

/// The fields both sides need, validated once at attach time.
struct RingView {
    hdr: *const RingHeader,
    data: *mut u8,
    cap: u64,
}

impl RingView {
    /// # Safety
    /// `base` must point to `region_size(capacity)` mapped bytes holding a
    /// ring initialised by [`init`], mapped for the lifetime of the view.
    unsafe fn attach(base: *mut u8, capacity: usize) -> Result<Self, IpcError> {
        let hdr = base.cast::<RingHeader>();
        // SAFETY: the caller guarantees a mapped, initialised header.
        let (magic, version, cap) = unsafe { ((*hdr).magic, (*hdr).version, (*hdr).capacity) };
        // The capacity in shared memory must be the one the mapping was
        // sized for: a corrupt header must never send us past the mapping.
        if magic != RING_MAGIC
            || version != RING_VERSION
            || cap != capacity as u64
            || capacity < MIN_CAPACITY
        {
            return Err(IpcError::BadLayout {
                what: "ring",
                reason: format!(
                    "magic {magic:#x} version {version} capacity {cap}: not a v{RING_VERSION} ring"
                ),
            });
        }
        // SAFETY: data follows the header inside the same mapping.
        let data = unsafe { base.add(RING_HEADER_SIZE) };
        Ok(RingView { hdr, data, cap })
    }

    #[inline]
    fn header(&self) -> &RingHeader {
        // SAFETY: attached to a live mapping for our lifetime.
        unsafe { &*self.hdr }
    }
}

/// The producing end. Exactly one may exist per ring at a time.
///
/// Aligned to a cache line, as is [`Consumer`]: both ends write their
/// local indices on every record, and two ends held by different threads
/// of one process (next to each other on a stack or in a struct) would
/// otherwise share a line and bounce it between cores on every record.
#[repr(align(64))]
pub struct Producer {
    view: RingView,
    write: u64,
    cached_read: u64,
    published: u64,
}

// SAFETY: the producer owns its index; the shared memory it points into is
// accessed only per the SPSC protocol, from whichever thread holds it.
unsafe impl Send for Producer {}

impl Producer {
    /// Attaches to an initialised ring, continuing from its published
    /// `write` index.
    ///
    /// # Safety
    /// `base` must point to `region_size(capacity)` mapped bytes holding a
    /// ring made by [`init`]; the ring must stay mapped while the producer
    /// lives, and no other producer may be attached.
    pub unsafe fn attach(base: *mut u8, capacity: usize) -> Result<Self, IpcError> {
        // SAFETY: forwarded from the caller.
        let view = unsafe { RingView::attach(base, capacity)? };
        let write = view.header().write.load(Ordering::Acquire);
        // Left by the previous producer, maybe a dead or buggy one: an
        // unaligned index would put a record header across the ring's end.
        if write & (ALIGN - 1) != 0 {
            return Err(IpcError::Corrupt {
                offset: write,
                reason: "write index not 8-aligned",
            });
        }
        let cached_read = view.header().read.load(Ordering::Acquire);
        Ok(Producer {
            view,
            write,
            cached_read,
            published: write,
        })
    }

    /// The largest payload this ring can ever take.
    #[inline]
    pub fn max_payload(&self) -> usize {
        max_payload_for(self.view.cap as usize)
    }

    /// Data capacity in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.view.cap as usize
    }

    /// Appends one record whose payload is the concatenation of `parts`.
    /// Not visible to the consumer until [`publish`](Self::publish).
    #[inline]
    pub fn push(&mut self, kind: u16, flags: u16, parts: &[&[u8]]) -> Result<(), PushError> {
        if let [one] = parts {
            return self.push_one(kind, flags, one);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.push_with(kind, flags, len, |dst| {
            let mut at = 0;
            for part in parts {
                dst[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        })
    }

    /// Appends one record whose payload is `data`: [`push`](Self::push)
    /// with a single part, without the sum and the loop over parts.
    #[inline]
    pub fn push_one(&mut self, kind: u16, flags: u16, data: &[u8]) -> Result<(), PushError> {
        self.push_with(kind, flags, data.len(), |dst| dst.copy_from_slice(data))
    }

    /// Appends one record of `len` payload bytes, filled in place by `fill`.
    #[inline]
    pub fn push_with(
        &mut self,
        kind: u16,
        flags: u16,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), PushError> {
        debug_assert!(kind > KIND_PAD, "kinds 0 and 1 are reserved");
        if len > self.max_payload() {
            return Err(PushError::TooLarge);
        }
        let cap = self.view.cap;
        let stride = stride_of(len);
        let pos = self.write & (cap - 1);
        let to_end = cap - pos;
        let need = if stride > to_end {
            to_end + stride
        } else {
            stride
        };
        if cap.saturating_sub(self.write.wrapping_sub(self.cached_read)) < need {
            self.cached_read = self.view.header().read.load(Ordering::Acquire);
            if cap.saturating_sub(self.write.wrapping_sub(self.cached_read)) < need {
                return Err(PushError::Full);
            }
        }
        if stride > to_end {
            self.write_header(
                pos,
                RecordHeader {
                    len: (to_end as usize - RECORD_HEADER_SIZE) as u32,
                    kind: KIND_PAD,
                    flags: 0,
                },
            );
            self.write = self.write.wrapping_add(to_end);
        }
        let pos = self.write & (cap - 1);
        self.write_header(
            pos,
            RecordHeader {
                len: len as u32,
                kind,
                flags,
            },
        );
        // SAFETY: [pos + 8, pos + 8 + len) lies inside the data area (the
        // record does not wrap) and in the free space the consumer has
        // released, so nobody else reads or writes it now.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(
                self.view.data.add(pos as usize + RECORD_HEADER_SIZE),
                len,
            )
        };
        fill(dst);
        self.write = self.write.wrapping_add(stride);
        Ok(())
    }

    #[inline]
    fn write_header(&mut self, pos: u64, header: RecordHeader) {
        // SAFETY: `pos` is 8-aligned and at least 8 bytes before the end,
        // inside free space owned by the producer.
        unsafe {
            self.view
                .data
                .add(pos as usize)
                .cast::<RecordHeader>()
                .write(header)
        }
    }

    /// Makes every record pushed so far visible. Returns whether there was
    /// anything new.
    #[inline]
    pub fn publish(&mut self) -> bool {
        if self.write == self.published {
            return false;
        }
        self.view
            .header()
            .write
            .store(self.write, Ordering::Release);
        self.published = self.write;
        true
    }

    /// Bytes pushed but not yet consumed, as last seen.
    #[inline]
    pub fn backlog_bytes(&self) -> u64 {
        self.write
            .wrapping_sub(self.view.header().read.load(Ordering::Relaxed))
    }

    /// The payload of the first record the consumer has not released yet
    /// (from its `read` index to this producer's `write`, padding skipped,
    /// oldest first) for which `wanted(kind, payload)` holds. Not for the
    /// hot path: it walks the records. Meant for a consumer that is gone
    /// (a dead worker's request in process: its space is never released
    /// while it is processed, so the producer never overwrote it). `None`
    /// as well when the consumer's index makes no sense.
    pub fn find_unreleased(&self, mut wanted: impl FnMut(u16, &[u8]) -> bool) -> Option<&[u8]> {
        let cap = self.view.cap;
        let mut at = self.view.header().read.load(Ordering::Acquire);
        // The consumer writes `read`: never trust it.
        if self.write.wrapping_sub(at) > cap || !at.is_multiple_of(ALIGN) {
            return None;
        }
        while at != self.write {
            let left = self.write.wrapping_sub(at);
            let pos = at & (cap - 1);
            if left < RECORD_HEADER_SIZE as u64 {
                return None;
            }
            // SAFETY: `pos` is 8-aligned inside the data area (checked
            // above; strides keep the alignment) and this producer wrote a
            // record there (between `read` and `write`).
            let header = unsafe {
                self.view
                    .data
                    .add(pos as usize)
                    .cast::<RecordHeader>()
                    .read_unaligned()
            };
            let stride = stride_of(header.len as usize);
            if stride > left || pos + stride > cap || header.kind == 0 {
                return None;
            }
            if header.kind != KIND_PAD {
                // SAFETY: the payload lies inside the data area (checked
                // above), in a record the consumer has not released, which
                // this producer does not write again until it is released.
                let data = unsafe {
                    std::slice::from_raw_parts(
                        self.view.data.add(pos as usize + RECORD_HEADER_SIZE),
                        header.len as usize,
                    )
                };
                if wanted(header.kind, data) {
                    return Some(data);
                }
            }
            at += stride;
        }
        None
    }
}

/// One record seen by the consumer, borrowed from the ring.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The record's kind.
    pub kind: u16,
    /// The record's flags.
    pub flags: u16,
    /// The payload, 8-aligned.
    pub data: &'a [u8],
    stride: u64,
}

impl Record<'_> {
    /// Bytes the record occupies; pass to [`Consumer::advance`].
    #[inline]
    pub fn stride(&self) -> u64 {
        self.stride
    }
}

/// The consuming end. Exactly one may exist per ring at a time. Aligned to
/// a cache line (see [`Producer`]).
#[repr(align(64))]
pub struct Consumer {
    view: RingView,
    read: u64,
    cached_write: u64,
    released: u64,
}

// SAFETY: as for `Producer`.
unsafe impl Send for Consumer {}

impl Consumer {
    /// Attaches to an initialised ring, continuing from its `read` index.
    ///
    /// # Safety
    /// As for [`Producer::attach`], for the consuming side.
    pub unsafe fn attach(base: *mut u8, capacity: usize) -> Result<Self, IpcError> {
        // SAFETY: forwarded from the caller.
        let view = unsafe { RingView::attach(base, capacity)? };
        let read = view.header().read.load(Ordering::Acquire);
        let cached_write = view.header().write.load(Ordering::Acquire);
        Ok(Consumer {
            view,
            read,
            cached_write,
            released: read,
        })
    }

    /// The next record, if one is published. Padding is skipped. The record
    /// stays valid until [`advance`](Self::advance) moves past it.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<Record<'_>>, IpcError> {
        let cap = self.view.cap;
        loop {
            if self.read == self.cached_write {
                self.cached_write = self.view.header().write.load(Ordering::Acquire);
                if self.read == self.cached_write {
                    return Ok(None);
                }
            }
            // The peer writes `write`: never trust it to be ahead of us.
            let available = self.cached_write.wrapping_sub(self.read);
            let pos = self.read & (cap - 1);
            if available > cap || available < RECORD_HEADER_SIZE as u64 {
                return Err(IpcError::Corrupt {
                    offset: self.read,
                    reason: "indices out of range",
                });
            }
            // Our index comes from shared memory (attach, discard_all): an
            // unaligned one would read a header across the end of the ring.
            if pos & (ALIGN - 1) != 0 {
                return Err(IpcError::Corrupt {
                    offset: self.read,
                    reason: "read index not 8-aligned",
                });
            }
            // SAFETY: `pos` is 8-aligned (checked) inside the data area, so
            // 8 bytes fit before its end, and the producer published at
            // least 8 bytes here (Acquire above).
            let header = unsafe {
                self.view
                    .data
                    .add(pos as usize)
                    .cast::<RecordHeader>()
                    .read()
            };
            let stride = stride_of(header.len as usize);
            if stride > available || pos + stride > cap || header.kind == 0 {
                return Err(IpcError::Corrupt {
                    offset: self.read,
                    reason: "record overruns the published data",
                });
            }
            if header.kind == KIND_PAD {
                self.read = self.read.wrapping_add(stride);
                continue;
            }
            // Only published lines, and not the last one, which the
            // producer may still be writing: prefetching it would steal it.
            if available > PREFETCH_AHEAD + 64 {
                self.prefetch((pos + PREFETCH_AHEAD) & (cap - 1));
            }
            // SAFETY: the payload lies inside published data (checked
            // above), which the producer will not touch until we release it.
            let data = unsafe {
                std::slice::from_raw_parts(
                    self.view.data.add(pos as usize + RECORD_HEADER_SIZE),
                    header.len as usize,
                )
            };
            return Ok(Some(Record {
                kind: header.kind,
                flags: header.flags,
                data,
                stride,
            }));
        }
    }

    /// Hints the CPU to fetch the cache line at data offset `pos`.
    #[inline(always)]
    fn prefetch(&self, pos: u64) {
        debug_assert!(pos < self.view.cap);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `pos < cap` (callers mask it), so the address lies inside
        // the data area of the mapping; a prefetch reads nothing
        // architecturally and cannot fault, and SSE is baseline on x86_64.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.view.data.add(pos as usize).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = pos;
    }

    /// Consumes the record most recently returned by [`peek`](Self::peek).
    #[inline]
    pub fn advance(&mut self, stride: u64) {
        // Wrapping: the index came from shared memory and may be anywhere.
        self.read = self.read.wrapping_add(stride);
    }

    /// Frees the space of everything consumed so far for the producer.
    #[inline]
    pub fn release(&mut self) {
        if self.read != self.released {
            self.view.header().read.store(self.read, Ordering::Release);
            self.released = self.read;
        }
    }

    /// Whether a published record may be waiting (one shared load).
    #[inline]
    pub fn has_data(&self) -> bool {
        self.read != self.view.header().write.load(Ordering::Acquire)
    }

    /// Drops everything published so far. Only for the owner of the read
    /// side (a fresh worker discarding a dead one's requests).
    pub fn discard_all(&mut self) {
        self.cached_write = self.view.header().write.load(Ordering::Acquire);
        self.read = self.cached_write;
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::SharedRegion;

    fn ring(capacity: usize) -> (SharedRegion, Producer, Consumer) {
        let region = SharedRegion::create("test-ring", region_size(capacity)).unwrap();
        // SAFETY: fresh, aligned, exclusively ours.
        unsafe { init(region.as_ptr(), capacity).unwrap() };
        // SAFETY: the region outlives both ends in every test.
        let p = unsafe { Producer::attach(region.as_ptr(), capacity).unwrap() };
        // SAFETY: as above; the one consumer.
        let c = unsafe { Consumer::attach(region.as_ptr(), capacity).unwrap() };
        (region, p, c)
    }

    #[test]
    fn records_come_out_in_order_across_wraps() {
        let (_r, mut p, mut c) = ring(MIN_CAPACITY);
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        for round in 0..2000 {
            let len = (round * 37) % 300;
            while p
                .push(7, 3, &[&next_in.to_le_bytes(), &vec![0xAB; len]])
                .is_ok()
            {
                next_in += 1;
                if next_in.is_multiple_of(5) {
                    break;
                }
            }
            p.publish();
            while let Some(rec) = c.peek().unwrap() {
                assert_eq!((rec.kind, rec.flags), (7, 3));
                assert_eq!(
                    u32::from_le_bytes(rec.data[..4].try_into().unwrap()),
                    next_out
                );
                assert_eq!(rec.data.as_ptr() as usize % 8, 0);
                let s = rec.stride();
                c.advance(s);
                next_out += 1;
            }
            c.release();
        }
        assert_eq!(next_in, next_out);
        assert!(next_in > 1000);
    }

    #[test]
    fn the_producer_finds_records_not_released_yet_across_a_wrap() {
        let (_r, mut p, mut c) = ring(MIN_CAPACITY);
        let mut n = 0u32;
        // Fill, consume and release most, so the next records wrap.
        while p.push(7, 0, &[&n.to_le_bytes(), &[0; 200]]).is_ok() {
            n += 1;
        }
        p.publish();
        for _ in 0..n - 2 {
            let s = c.peek().unwrap().unwrap().stride();
            c.advance(s);
        }
        c.release();
        for k in n..n + 10 {
            p.push(7, 0, &[&k.to_le_bytes(), &[0; 200]]).unwrap();
        }
        let find = |p: &Producer, k: u32| {
            p.find_unreleased(|kind, d| kind == 7 && d[..4] == k.to_le_bytes())
                .map(|d| d.len())
        };
        assert_eq!(find(&p, n - 3), None, "released");
        assert_eq!(find(&p, n - 2), Some(204), "not released yet");
        assert_eq!(find(&p, n + 9), Some(204), "after the wrap, unpublished");
        assert_eq!(find(&p, n + 10), None, "never pushed");
    }

    #[test]
    fn unpublished_records_are_invisible_and_full_is_reported() {
        let (_r, mut p, mut c) = ring(MIN_CAPACITY);
        p.push(5, 0, &[b"hello"]).unwrap();
        assert!(c.peek().unwrap().is_none());
        p.publish();
        assert_eq!(c.peek().unwrap().unwrap().data, b"hello");
        assert_eq!(
            p.push(5, 0, &[&vec![0; MIN_CAPACITY]]),
            Err(PushError::TooLarge)
        );
        let mut pushed = 0;
        while p.push(5, 0, &[&[1u8; 100]]).is_ok() {
            pushed += 1;
        }
        assert!(pushed > 30, "{pushed}");
        assert_eq!(p.push(5, 0, &[&[1u8; 100]]), Err(PushError::Full));
    }

    #[test]
    fn discard_all_resets_only_the_read_side() {
        let (_r, mut p, mut c) = ring(MIN_CAPACITY);
        for _ in 0..10 {
            p.push(9, 0, &[b"x"]).unwrap();
        }
        p.publish();
        c.discard_all();
        assert!(c.peek().unwrap().is_none());
        p.push(9, 0, &[b"y"]).unwrap();
        p.publish();
        assert_eq!(c.peek().unwrap().unwrap().data, b"y");
    }

    #[test]
    fn two_threads_move_a_million_records() {
        let (region, mut p, mut c) = ring(1 << 16);
        const N: u64 = 1_000_000;
        let producer = std::thread::spawn(move || {
            let mut i = 0u64;
            while i < N {
                match p.push(2, 0, &[&i.to_le_bytes()]) {
                    Ok(()) => i += 1,
                    Err(_) => {
                        p.publish();
                        std::hint::spin_loop();
                    }
                }
                if i.is_multiple_of(64) {
                    p.publish();
                }
            }
            p.publish();
        });
        let mut expect = 0u64;
        while expect < N {
            if let Some(rec) = c.peek().unwrap() {
                assert_eq!(u64::from_le_bytes(rec.data.try_into().unwrap()), expect);
                let s = rec.stride();
                c.advance(s);
                expect += 1;
            } else {
                c.release();
                std::hint::spin_loop();
            }
        }
        producer.join().unwrap();
        drop(region);
    }

    #[test]
    fn a_capacity_other_than_the_mapping_is_refused() {
        let region = SharedRegion::create("test-ring", region_size(MIN_CAPACITY)).unwrap();
        // SAFETY: fresh, aligned, exclusively ours.
        unsafe { init(region.as_ptr(), MIN_CAPACITY).unwrap() };
        // SAFETY: test-only poke at the header of our own region.
        unsafe { (*region.as_ptr().cast::<RingHeader>()).capacity = 1 << 30 };
        // SAFETY: the region outlives the attempt.
        assert!(unsafe { Consumer::attach(region.as_ptr(), MIN_CAPACITY) }.is_err());
    }

    #[test]
    fn corrupt_index_is_an_error_not_ub() {
        let (region, _p, mut c) = ring(MIN_CAPACITY);
        // SAFETY: test-only poke at the header of our own region.
        unsafe {
            (*region.as_ptr().cast::<RingHeader>())
                .write
                .store(3 * MIN_CAPACITY as u64, Ordering::Release)
        };
        assert!(matches!(c.peek(), Err(IpcError::Corrupt { .. })));
        // An index behind ours (a peer gone wrong) is an error too, not an
        // arithmetic panic.
        // SAFETY: as above.
        unsafe {
            (*region.as_ptr().cast::<RingHeader>())
                .write
                .store(0, Ordering::Release)
        };
        c.advance(64);
        assert!(matches!(c.peek(), Err(IpcError::Corrupt { .. })));
    }
}
