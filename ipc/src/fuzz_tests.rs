//! Fuzz targets for the bytes this crate takes from another process: a
//! ring's data and indices as a (possibly dead, buggy or hostile) peer left
//! them, read by [`ring::Consumer`], and the record metas split by
//! [`record::split_request`] / [`record::split_response`]. They must never
//! panic nor read outside the ring: corruption is reported, not trusted.
//!
//! Bounded in the normal test suite ([`DEFAULT_CASES`] cases per target);
//! `SPP_FUZZ_CASES=100000 cargo test -p spp-ipc fuzz_tests` is the long
//! mode.

use crate::error::IpcError;
use crate::record;
use crate::ring::{self, Consumer, Producer, RingHeader, MIN_CAPACITY, RING_HEADER_SIZE};
use proptest::prelude::*;
use std::sync::atomic::Ordering;

/// Cases per target in the normal suite.
const DEFAULT_CASES: u32 = 256;
/// The environment variable that sets the cases per target (long mode).
const CASES_ENV: &str = "SPP_FUZZ_CASES";

/// [`DEFAULT_CASES`], or the number in [`CASES_ENV`]; no regression files
/// (what a run finds becomes a named regression test).
fn config() -> ProptestConfig {
    let cases = std::env::var(CASES_ENV)
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes of the test ring's region (header and data).
const REGION: usize = RING_HEADER_SIZE + MIN_CAPACITY;
/// Bytes of a page (the guard page's size; 4 KiB on every target we run).
const PAGE: usize = 4096;
/// Pages mapped: enough for the region, then one guard page.
const PAGES: usize = REGION.div_ceil(PAGE) + 1;

/// A ring of [`MIN_CAPACITY`] data bytes whose data area ends exactly at
/// an inaccessible guard page: a read past the end of the ring faults
/// (the test dies) instead of silently reading a neighbour.
struct Region {
    map: *mut u8,
    base: *mut u8,
}

impl Region {
    /// A fresh ring.
    fn new() -> Region {
        let len = PAGES * PAGE;
        // SAFETY: a fresh anonymous private mapping; no pointer is involved.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        let map = map.cast::<u8>();
        let guard_at = (PAGES - 1) * PAGE;
        // SAFETY: the last page of our own mapping.
        let rc = unsafe { libc::mprotect(map.add(guard_at).cast(), PAGE, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect");
        // SAFETY: inside the mapping; 64-aligned since REGION and the page
        // size are multiples of 64.
        let base = unsafe { map.add(guard_at - REGION) };
        // SAFETY: 64-aligned, `region_size(MIN_CAPACITY)` bytes, ours only.
        unsafe { ring::init(base, MIN_CAPACITY).expect("init") };
        Region { map, base }
    }

    fn base(&mut self) -> *mut u8 {
        self.base
    }

    fn data(&mut self) -> &mut [u8] {
        // SAFETY: the data area of our mapping, borrowed through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(RING_HEADER_SIZE), MIN_CAPACITY) }
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: initialised by `ring::init`, aligned, lives as long as self.
        unsafe { &*self.base.cast::<RingHeader>() }
    }

    /// Sets both indices as a peer could have left them.
    fn set_indices(&self, read: u64, write: u64) {
        self.header().read.store(read, Ordering::Release);
        self.header().write.store(write, Ordering::Release);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our mapping; nothing borrows it any more.
        unsafe { libc::munmap(self.map.cast(), PAGES * PAGE) };
    }
}

/// Reads every record a consumer of `region` will give out, each checked
/// to lie inside the data area, until it reports the end or corruption.
/// Bounded: a ring holds at most `capacity / 8` records, and a wrap.
fn drain(region: &mut Region) -> Result<usize, IpcError> {
    let data = region.data().as_ptr_range();
    let (start, end) = (data.start as usize, data.end as usize);
    // SAFETY: the region outlives the consumer (dropped at the end).
    let mut consumer = unsafe { Consumer::attach(region.base(), MIN_CAPACITY)? };
    let mut records = 0;
    for _ in 0..2 * MIN_CAPACITY / 8 {
        let Some(rec) = consumer.peek()? else {
            return Ok(records);
        };
        let at = rec.data.as_ptr() as usize;
        assert!(
            at >= start && at + rec.data.len() <= end,
            "record outside the data area"
        );
        assert!(rec.kind > ring::KIND_PAD, "kinds 0 and 1 never come out");
        let _ = record::split_request(rec.data);
        let _ = record::split_response(rec.data);
        let stride = rec.stride();
        consumer.advance(stride);
        consumer.release();
        records += 1;
    }
    Ok(records)
}

/// Indices a peer may leave: anything, near the consumer's, or around the
/// wrap of the counters.
fn index() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..4 * MIN_CAPACITY as u64,
        (u64::MAX - 4 * MIN_CAPACITY as u64)..=u64::MAX,
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary data bytes and indices: records inside the data area, or
    /// an error; never a panic.
    #[test]
    fn a_consumer_survives_any_ring_contents(
        bytes in proptest::collection::vec(any::<u8>(), 0..=MIN_CAPACITY),
        read in index(),
        ahead in prop_oneof![any::<u64>(), 0..2 * MIN_CAPACITY as u64],
    ) {
        let mut region = Region::new();
        region.data()[..bytes.len()].copy_from_slice(&bytes);
        region.set_indices(read, read.wrapping_add(ahead));
        let _ = drain(&mut region);
    }

    /// Well-formed records, then a few bytes of the ring overwritten: the
    /// consumer gives out records inside the ring or reports corruption.
    #[test]
    fn a_consumer_survives_corrupted_records(
        lens in proptest::collection::vec(0usize..600, 1..40),
        start in 0u64..2 * MIN_CAPACITY as u64,
        flips in proptest::collection::vec((0usize..MIN_CAPACITY, any::<u8>()), 1..8),
    ) {
        let mut region = Region::new();
        let start = start & !7;
        region.set_indices(start, start);
        {
            // SAFETY: the region outlives the producer (this block).
            let mut producer = unsafe { Producer::attach(region.base(), MIN_CAPACITY) }
                .expect("attach");
            for len in lens {
                if producer.push_one(record::KIND_REQUEST, 0, &vec![0x5A; len]).is_err() {
                    break;
                }
            }
            producer.publish();
        }
        for (at, byte) in flips {
            region.data()[at] = byte;
        }
        let _ = drain(&mut region);
    }

    /// Any payload splits into a meta and the rest, or `None`.
    #[test]
    fn record_metas_split_any_payload(
        bytes in proptest::collection::vec(any::<u64>(), 0..16),
        cut in 0usize..8,
        trim in 0usize..8,
    ) {
        let bytes: Vec<u8> = bytes.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let payload = &bytes[cut.min(bytes.len())..bytes.len().saturating_sub(trim).max(cut.min(bytes.len()))];
        if let Some(parts) = record::split_request(payload) {
            prop_assert_eq!(
                parts.note.len() + parts.bytes.len() + record::REQUEST_META_SIZE,
                payload.len()
            );
            prop_assert!(parts.note.len() <= spp_plugin_api::abi::SPP_NOTE_MAX);
        }
        if let Some((_, rest)) = record::split_response(payload) {
            prop_assert_eq!(rest.len() + record::RESPONSE_META_SIZE, payload.len());
        }
    }
}

/// Found by `a_consumer_survives_any_ring_contents`: a read index that is
/// not a multiple of 8 (left by a peer) made the consumer read a record
/// header across the end of the ring. It is corruption now.
#[test]
fn an_unaligned_read_index_is_corruption() {
    let mut region = Region::new();
    region.set_indices(MIN_CAPACITY as u64 - 3, MIN_CAPACITY as u64 + 64);
    assert!(matches!(drain(&mut region), Err(IpcError::Corrupt { .. })));
}

/// The producer's side of the same: an unaligned write index left by a
/// dead producer is refused when the next one attaches.
#[test]
fn an_unaligned_write_index_is_refused_at_attach() {
    let mut region = Region::new();
    region.set_indices(MIN_CAPACITY as u64 - 4, MIN_CAPACITY as u64 - 4);
    // SAFETY: the region outlives the attempt.
    let attached = unsafe { Producer::attach(region.base(), MIN_CAPACITY) };
    assert!(matches!(attached, Err(IpcError::Corrupt { .. })));
}
