//! The `#[repr(C)]` layout of the route-table region, version
//! [`TABLE_VERSION`].
//!
//! ```text
//! TableLayout
//! ├─ TableHeader               magic, version, sizes, active buffer, pick rules
//! ├─ buffers[2]: Buffer        the routing view, double-buffered
//! │  ├─ seq, generation, counts   seqlock: odd while the controller writes
//! │  ├─ sids[MAX_SIDS]: SidEntry  sorted by sid: first node, count, total weight, tagged probe budget, probe clock
//! │  └─ nodes[MAX_NODES]: NodeEntry  address, weights, dead, cumulative weight, slot, baselines
//! └─ slots[MAX_NODES]: SlotEntry  stable per-instance stats slots
//!    ├─ key line (controller)     epoch, sid, address, static weight
//!    └─ counter line (workers)    picks, success, failure, latency, consecutive errors
//! ```
//!
//! Every field that changes after creation is an atomic accessed with
//! `Relaxed` ordering (the seqlock and the `active` flip carry the
//! ordering), so a reader racing a writer reads stale or mixed values,
//! never undefined behaviour; the seqlock tells it to retry. Every field
//! says who writes it. Zero is a valid value of every field. Ratios in
//! the header are parts per million ([`crate::l5::pick_rules::PPM`]).

pub use crate::l5::hash::mix64;
use crate::l5::view::{MAX_NODES, MAX_SIDS};
use crate::l5::Sid;
use spp_plugin_api::abi::{SPP_AF_INET, SPP_AF_INET6};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// `TableHeader::magic`: "SPPL5RT1".
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"SPPL5RT1");
/// Version of this layout.
pub const TABLE_VERSION: u32 = 2;
/// Bytes of the region.
pub const TABLE_SIZE: usize = std::mem::size_of::<TableLayout>().next_multiple_of(4096);

/// The whole region.
#[repr(C)]
pub struct TableLayout {
    /// Identity and the read-mostly control words.
    pub header: TableHeader,
    /// The routing view; `header.active` says which one readers use.
    pub buffers: [Buffer; 2],
    /// Per-instance outcome counters, in stable slots.
    pub slots: [SlotEntry; MAX_NODES],
}

/// The region's header: written by the controller only, read by every
/// pick (one read-mostly cache line).
#[repr(C, align(64))]
pub struct TableHeader {
    /// [`TABLE_MAGIC`] (controller, at creation).
    pub magic: u64,
    /// [`TABLE_VERSION`] (controller, at creation).
    pub version: u32,
    /// [`MAX_SIDS`] (controller, at creation).
    pub max_sids: u32,
    /// [`MAX_NODES`] (controller, at creation).
    pub max_nodes: u32,
    /// Index (0 or 1) of the buffer readers use (controller, release
    /// store after the buffer is complete).
    pub active: AtomicU32,
    /// Publishes so far (controller).
    pub generation: AtomicU64,
    /// Pick rule: skip a node whose success ratio this period is below
    /// this, ppm (controller).
    pub skip_ratio_ppm: AtomicU32,
    /// Pick rule: skip a node with this many consecutive errors; 0 = never
    /// (controller).
    pub trip_errors: AtomicU32,
    /// Pick rule: the skip ratio needs this many samples (controller).
    pub min_requests: AtomicU64,
    /// Pick rule: share of picks that try to probe a dead node, ppm
    /// (controller).
    pub probe_share_ppm: AtomicU32,
}

/// One copy of the routing view.
#[repr(C, align(64))]
pub struct Buffer {
    /// Seqlock word: odd while the controller writes this buffer, bumped
    /// to the next even value when done (controller).
    pub seq: AtomicU64,
    /// The `TableHeader::generation` this buffer holds (controller).
    pub generation: AtomicU64,
    /// Sids in use, `sids[..sid_count]` (controller).
    pub sid_count: AtomicU32,
    /// Nodes in use, `nodes[..node_count]` (controller).
    pub node_count: AtomicU32,
    /// The sids, sorted by [`sid_key`] for binary search.
    pub sids: [SidEntry; MAX_SIDS],
    /// The nodes, each sid's contiguous.
    pub nodes: [NodeEntry; MAX_NODES],
}

/// One sid of a buffer.
#[repr(C)]
pub struct SidEntry {
    /// [`sid_key`] of the sid (controller).
    pub key: AtomicU64,
    /// Sum of the nodes' weights (controller).
    pub total_weight: AtomicU64,
    /// Index of its first node in `nodes` (controller).
    pub first: AtomicU32,
    /// Its nodes (controller).
    pub count: AtomicU32,
    /// Its dead nodes (controller).
    pub dead_count: AtomicU32,
    /// The probe budget published with this buffer (controller).
    pub probe_initial: AtomicU32,
    /// [`pack_probe`]`(generation, budget left)`: picks that may still go
    /// to dead nodes, tagged with the low 32 bits of the buffer's
    /// generation (controller sets it at publish; workers take a unit with
    /// compare-exchange only while the tag is the generation they read, so
    /// a late reader of an older publish cannot spend the new budget).
    pub probe: AtomicU64,
    /// Picks that found budget left since the publish, the deterministic
    /// probe clock (controller zeroes it at publish; workers add to it).
    pub probe_clock: AtomicU64,
}

/// One node of a buffer.
#[repr(C)]
pub struct NodeEntry {
    /// Sum of the weights of the sid's nodes up to and including this one
    /// (controller). A dead node adds 0, so the binary search never lands
    /// on it.
    pub cumulative: AtomicU64,
    /// [`pack_family_port`] of the address (controller).
    pub family_port: AtomicU32,
    /// IPv6 scope id, 0 for IPv4 (controller).
    pub scope_id: AtomicU32,
    /// The 16 IP bytes (IPv4 in the first 4), in two native-endian words
    /// (controller).
    pub ip: [AtomicU64; 2],
    /// [`addr_hash`] of the address, for rendezvous hashing (controller).
    pub addr_hash: AtomicU64,
    /// Its static weight (controller).
    pub static_weight: AtomicU32,
    /// Its current weight, 0 when dead (controller).
    pub weight: AtomicU32,
    /// 1 when dead: only probes (and fail-open picks) reach it (controller).
    pub dead: AtomicU32,
    /// Its stats slot (controller).
    pub slot: AtomicU32,
    /// The slot's epoch at publish (controller); a slot whose epoch
    /// differs was reassigned.
    pub slot_epoch: AtomicU32,
    /// Zero.
    pub _pad: u32,
    /// The slot's `success` at publish (controller): the base of this
    /// period's ratio at pick time.
    pub base_success: AtomicU64,
    /// The slot's `failure` at publish (controller).
    pub base_failure: AtomicU64,
}

/// One stats slot: a key line the controller writes when it assigns or
/// frees the slot, and a counter line every worker adds to.
#[repr(C, align(64))]
pub struct SlotEntry {
    /// Bumped when the slot is assigned and when it is freed, so it is odd
    /// while the slot is assigned and even while it is free (controller).
    /// A route carries the epoch it was picked under; a report whose epoch
    /// differs is dropped.
    pub epoch: AtomicU32,
    /// Zero.
    pub _pad: u32,
    /// [`sid_key`] of the instance's sid (controller).
    pub sid: AtomicU64,
    /// [`pack_family_port`] of the instance's address (controller).
    pub family_port: AtomicU32,
    /// IPv6 scope id (controller).
    pub scope_id: AtomicU32,
    /// IP bytes, as in [`NodeEntry::ip`] (controller).
    pub ip: [AtomicU64; 2],
    /// The instance's static weight, as last given (controller).
    pub static_weight: AtomicU32,
    /// Zero.
    pub _pad0: [u8; 20],

    /// Picks (workers).
    pub picks: AtomicU64,
    /// Reports with result >= 0 (workers).
    pub success: AtomicU64,
    /// Reports with result < 0 (workers).
    pub failure: AtomicU64,
    /// Sum of reported latencies, µs (workers).
    pub latency_us: AtomicU64,
    /// Failures in a row, reset by a success (workers).
    pub consecutive_errors: AtomicU32,
    /// Zero.
    pub _pad1: [u8; 28],
}

const _: () = {
    assert!(std::mem::size_of::<SidEntry>() == 48);
    assert!(std::mem::size_of::<NodeEntry>() == 80);
    assert!(std::mem::size_of::<SlotEntry>() == 128);
    assert!(std::mem::offset_of!(SlotEntry, picks) == 64);
    assert!(std::mem::size_of::<TableHeader>() == 64);
};

/// The `SidEntry::probe` word: the generation's low 32 bits, then the
/// budget left.
pub fn pack_probe(generation: u64, budget: u32) -> u64 {
    (generation << 32) | u64::from(budget)
}

/// The (generation tag, budget left) of a `SidEntry::probe` word.
pub fn unpack_probe(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// A sid as one word, ordered as `Sid` is (modid, then cmdid).
pub fn sid_key(sid: Sid) -> u64 {
    (u64::from(sid.modid) << 32) | u64::from(sid.cmdid)
}

/// The sid of a [`sid_key`].
pub fn sid_of(key: u64) -> Sid {
    Sid {
        modid: (key >> 32) as u32,
        cmdid: key as u32,
    }
}

/// `family << 16 | port`, family [`SPP_AF_INET`] or [`SPP_AF_INET6`].
pub fn pack_family_port(addr: &SocketAddr) -> u32 {
    let family = if addr.is_ipv4() {
        SPP_AF_INET
    } else {
        SPP_AF_INET6
    };
    (u32::from(family) << 16) | u32::from(addr.port())
}

/// An address as (family_port, scope_id, ip words).
pub fn encode_addr(addr: &SocketAddr) -> (u32, u32, [u64; 2]) {
    let mut bytes = [0u8; 16];
    let scope = match addr {
        SocketAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.ip().octets());
            0
        }
        SocketAddr::V6(a) => {
            bytes = a.ip().octets();
            a.scope_id()
        }
    };
    let lo = u64::from_ne_bytes(bytes[..8].try_into().unwrap_or_default());
    let hi = u64::from_ne_bytes(bytes[8..].try_into().unwrap_or_default());
    (pack_family_port(addr), scope, [lo, hi])
}

/// The address [`encode_addr`] encoded; an unknown family reads as IPv6.
pub fn decode_addr(family_port: u32, scope_id: u32, ip: [u64; 2]) -> SocketAddr {
    let port = family_port as u16;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&ip[0].to_ne_bytes());
    bytes[8..].copy_from_slice(&ip[1].to_ne_bytes());
    if (family_port >> 16) as u8 == SPP_AF_INET {
        let v4 = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        SocketAddr::V4(SocketAddrV4::new(v4, port))
    } else {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(bytes), port, 0, scope_id))
    }
}

/// A well-mixed 64-bit hash of an address (stable across publishes and
/// processes: it depends on the address alone).
pub fn addr_hash(addr: &SocketAddr) -> u64 {
    let (family_port, scope, [lo, hi]) = encode_addr(addr);
    let mut h = mix64(u64::from(family_port) << 32 | u64::from(scope));
    h = mix64(h ^ lo);
    mix64(h ^ hi)
}

impl NodeEntry {
    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        decode_addr(
            self.family_port.load(Relaxed),
            self.scope_id.load(Relaxed),
            [self.ip[0].load(Relaxed), self.ip[1].load(Relaxed)],
        )
    }

    /// Writes the node's address (controller).
    pub fn set_addr(&self, addr: &SocketAddr) {
        let (family_port, scope, ip) = encode_addr(addr);
        self.family_port.store(family_port, Relaxed);
        self.scope_id.store(scope, Relaxed);
        self.ip[0].store(ip[0], Relaxed);
        self.ip[1].store(ip[1], Relaxed);
        self.addr_hash.store(addr_hash(addr), Relaxed);
    }
}

impl SlotEntry {
    /// The instance's sid and address (the key line).
    pub fn key(&self) -> (Sid, SocketAddr) {
        let addr = decode_addr(
            self.family_port.load(Relaxed),
            self.scope_id.load(Relaxed),
            [self.ip[0].load(Relaxed), self.ip[1].load(Relaxed)],
        );
        (sid_of(self.sid.load(Relaxed)), addr)
    }

    /// Writes the key line (controller).
    pub fn set_key(&self, sid: Sid, addr: &SocketAddr, static_weight: u32) {
        let (family_port, scope, ip) = encode_addr(addr);
        self.sid.store(sid_key(sid), Relaxed);
        self.family_port.store(family_port, Relaxed);
        self.scope_id.store(scope, Relaxed);
        self.ip[0].store(ip[0], Relaxed);
        self.ip[1].store(ip[1], Relaxed);
        self.static_weight.store(static_weight, Relaxed);
    }

    /// Zeroes the counter line (controller, when the slot changes hands).
    pub fn zero_counters(&self) {
        for cell in [&self.picks, &self.success, &self.failure, &self.latency_us] {
            cell.store(0, Relaxed);
        }
        self.consecutive_errors.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_encoding() {
        for text in [
            "10.1.2.3:80",
            "[fe80::1%7]:65535",
            "[::ffff:1.2.3.4]:1",
            "0.0.0.0:0",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let (fp, scope, ip) = encode_addr(&addr);
            assert_eq!(decode_addr(fp, scope, ip), addr, "{text}");
        }
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:81".parse().unwrap();
        assert_ne!(addr_hash(&a), addr_hash(&b));
    }

    #[test]
    fn sid_keys_order_like_sids() {
        let a = Sid { modid: 1, cmdid: 9 };
        let b = Sid { modid: 2, cmdid: 0 };
        assert!(sid_key(a) < sid_key(b));
        assert_eq!(sid_of(sid_key(b)), b);
    }
}
