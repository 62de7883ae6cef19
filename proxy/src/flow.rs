//! Flow ids and the slot tables that hand them out.
//!
//! # Flow id scheme
//!
//! A flow id is 64 bits, most significant first:
//!
//! ```text
//!  63          48 47     42  41  40               20  19              0
//! +--------------+---------+---+-------------------+-----------------+
//! | epoch (16)   |shard (6)|UDP| generation (21)   | slot (20)       |
//! +--------------+---------+---+-------------------+-----------------+
//! ```
//!
//! * **epoch** — `ProxyLaunch::epoch`: how many times this proxy shard
//!   ran before. A response meant for a previous run's connection carries
//!   an old epoch and is dropped, never delivered to a newcomer.
//! * **shard** — `ProxyLaunch::shard`, stamped with
//!   `spp_ipc::flow_shard::with_shard` (bits 42..48): flow ids are unique
//!   across the shards of `proxy.processes`, and a worker tells from a
//!   flow id alone which shard's pair a deferred reply goes to. 0 with one
//!   proxy.
//! * **UDP** — 0 for a TCP connection, 1 for a UDP request; TCP
//!   connections and UDP requests live in separate tables.
//! * **generation** — per table slot, starting at 1 and bumped every time
//!   the slot is freed, so a reused slot never matches an older flow's id.
//!   It wraps (back to 1) only after 2^21 − 1 (about two million) reuses
//!   of that one slot; an answer would have to stay in a ring that long to
//!   reach the wrong flow.
//! * **slot** — index into the table; tables hold at most [`MAX_SLOTS`]
//!   (= `spp_ipc::launch::MAX_FLOW_SLOTS`) entries (the controller's
//!   `max_connections` and `max_udp_flows` are checked against it at
//!   start).
//!
//! A flow id is never 0 (generations start at 1).

use spp_ipc::flow_shard::{shard_of, with_shard, SHARD_BITS, SHARD_SHIFT};

/// Bits of the slot index.
pub const SLOT_BITS: u32 = 20;
/// Bits of the per-slot generation.
pub const GENERATION_BITS: u32 = 21;
/// Bit position of the UDP flag.
const UDP_SHIFT: u32 = SLOT_BITS + GENERATION_BITS;
/// Bit position of the epoch.
const EPOCH_SHIFT: u32 = SHARD_SHIFT + SHARD_BITS;
// The shard bits sit between the UDP flag and the epoch.
const _: () = assert!(UDP_SHIFT + 1 == SHARD_SHIFT);
const _: () = assert!(EPOCH_SHIFT == 48);
/// Most entries a table may hold.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
// The controller validates against the shared limit; the id layout must
// agree with it.
const _: () = assert!(MAX_SLOTS == spp_ipc::launch::MAX_FLOW_SLOTS);
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
/// The first generation of every slot.
const FIRST_GENERATION: u32 = 1;

/// Which table a flow belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// A TCP connection.
    Tcp,
    /// A UDP request awaiting its reply.
    Udp,
}

/// The decoded parts of a flow id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowParts {
    /// The proxy epoch that issued it.
    pub epoch: u16,
    /// The proxy shard that issued it (below `MAX_SHARDS`).
    pub shard: u16,
    /// TCP or UDP table.
    pub proto: Proto,
    /// The slot's generation when it was issued.
    pub generation: u32,
    /// The table slot.
    pub slot: u32,
}

/// Builds a flow id.
pub fn encode(parts: FlowParts) -> u64 {
    let udp = u64::from(parts.proto == Proto::Udp);
    let flow = (u64::from(parts.epoch) << EPOCH_SHIFT)
        | (udp << UDP_SHIFT)
        | ((u64::from(parts.generation) & GENERATION_MASK) << SLOT_BITS)
        | (u64::from(parts.slot) & SLOT_MASK);
    with_shard(flow, parts.shard)
}

/// Splits a flow id into its parts.
pub fn decode(flow: u64) -> FlowParts {
    FlowParts {
        epoch: (flow >> EPOCH_SHIFT) as u16,
        shard: shard_of(flow),
        proto: if (flow >> UDP_SHIFT) & 1 == 1 {
            Proto::Udp
        } else {
            Proto::Tcp
        },
        generation: ((flow >> SLOT_BITS) & GENERATION_MASK) as u32,
        slot: (flow & SLOT_MASK) as u32,
    }
}

/// The generation after `g`, skipping 0.
fn next_generation(g: u32) -> u32 {
    if u64::from(g) >= GENERATION_MASK {
        FIRST_GENERATION
    } else {
        g + 1
    }
}

struct Entry<T> {
    generation: u32,
    /// Index of this slot in [`SlotTable::live`] while it holds a value.
    live_pos: u32,
    value: Option<T>,
}

/// A bounded table of values addressed by flow id. Freed slots are reused
/// (most recently freed first, for cache warmth) with a new generation.
/// The slots in use are also kept in a dense list ([`Self::live_slots`]),
/// so a sweep costs O(entries in use), not O(peak).
pub struct SlotTable<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    live: Vec<u32>,
    len: usize,
    limit: usize,
    epoch: u16,
    shard: u16,
    proto: Proto,
}

impl<T> SlotTable<T> {
    /// An empty table for `proto` flows of `epoch` and `shard`, holding at
    /// most `limit` (≤ [`MAX_SLOTS`]) values. Memory grows with use, up to
    /// the peak number of simultaneous entries.
    pub fn new(epoch: u16, shard: u16, proto: Proto, limit: usize) -> Self {
        SlotTable {
            entries: Vec::new(),
            free: Vec::new(),
            live: Vec::new(),
            len: 0,
            limit: limit.min(MAX_SLOTS),
            epoch,
            shard,
            proto,
        }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Changes the limit (capped at [`MAX_SLOTS`]). Entries beyond a
    /// lowered limit stay; inserts fail until the table is below it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_SLOTS);
    }

    /// Whether the table is at its limit.
    pub fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// Every slot in use, in no particular order. [`Self::remove`] moves
    /// the last one into the removed one's place, so a sweep that may
    /// remove walks it from the end.
    pub fn live_slots(&self) -> &[u32] {
        &self.live
    }

    /// Stores the value `make(flow)` builds and returns its slot and flow
    /// id; `None` when the table is full.
    pub fn insert_with(&mut self, make: impl FnOnce(u64) -> T) -> Option<(u32, u64)> {
        if self.is_full() {
            return None;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(Entry {
                    generation: FIRST_GENERATION,
                    live_pos: 0,
                    value: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[slot as usize];
        let flow = encode(FlowParts {
            epoch: self.epoch,
            shard: self.shard,
            proto: self.proto,
            generation: entry.generation,
            slot,
        });
        entry.value = Some(make(flow));
        entry.live_pos = self.live.len() as u32;
        self.live.push(slot);
        self.len += 1;
        Some((slot, flow))
    }

    /// The value in `slot`, if any.
    pub fn get(&self, slot: u32) -> Option<&T> {
        self.entries
            .get(slot as usize)
            .and_then(|e| e.value.as_ref())
    }

    /// The value in `slot`, if any.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.entries
            .get_mut(slot as usize)
            .and_then(|e| e.value.as_mut())
    }

    /// The slot `flow` names, if the flow is still alive in this table.
    pub fn slot_of(&self, flow: u64) -> Option<u32> {
        let parts = decode(flow);
        if parts.epoch != self.epoch || parts.shard != self.shard || parts.proto != self.proto {
            return None;
        }
        let entry = self.entries.get(parts.slot as usize)?;
        (entry.generation == parts.generation && entry.value.is_some()).then_some(parts.slot)
    }

    /// The value `flow` names, if it is still alive.
    pub fn lookup_mut(&mut self, flow: u64) -> Option<&mut T> {
        let slot = self.slot_of(flow)?;
        self.get_mut(slot)
    }

    /// Frees `slot`, returning its value. The slot's next user gets a new
    /// generation, so the old flow id stops matching.
    pub fn remove(&mut self, slot: u32) -> Option<T> {
        let entry = self.entries.get_mut(slot as usize)?;
        let value = entry.value.take()?;
        entry.generation = next_generation(entry.generation);
        let pos = entry.live_pos as usize;
        self.live.swap_remove(pos);
        if let Some(&moved) = self.live.get(pos) {
            self.entries[moved as usize].live_pos = pos as u32;
        }
        self.free.push(slot);
        self.len -= 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let parts = FlowParts {
            epoch: 0xBEEF,
            shard: 63,
            proto: Proto::Udp,
            generation: (1 << 21) - 1,
            slot: (1 << 20) - 1,
        };
        assert_eq!(decode(encode(parts)), parts);
        assert_eq!(shard_of(encode(parts)), 63);
        let parts = FlowParts {
            epoch: 0,
            shard: 0,
            proto: Proto::Tcp,
            generation: 1,
            slot: 0,
        };
        assert_eq!(decode(encode(parts)), parts);
        assert_ne!(encode(parts), 0);
    }

    #[test]
    fn reused_slot_gets_a_new_flow() {
        let mut t = SlotTable::new(3, 0, Proto::Tcp, 2);
        let (s1, f1) = t.insert_with(|_| "a").unwrap();
        assert_eq!(t.slot_of(f1), Some(s1));
        assert_eq!(t.remove(s1), Some("a"));
        assert_eq!(t.slot_of(f1), None);
        let (s2, f2) = t.insert_with(|_| "b").unwrap();
        assert_eq!(s1, s2);
        assert_ne!(f1, f2);
        assert_eq!(t.lookup_mut(f1), None);
        assert_eq!(t.lookup_mut(f2).copied(), Some("b"));
    }

    #[test]
    fn limit_epoch_and_proto_are_enforced() {
        let mut t = SlotTable::new(1, 5, Proto::Udp, 1);
        let (_, f) = t.insert_with(|_| ()).unwrap();
        assert!(t.insert_with(|_| ()).is_none());
        let mut other_epoch = decode(f);
        other_epoch.epoch = 2;
        assert_eq!(t.slot_of(encode(other_epoch)), None);
        let mut tcp = decode(f);
        tcp.proto = Proto::Tcp;
        assert_eq!(t.slot_of(encode(tcp)), None);
        assert_eq!(decode(f).shard, 5);
        let mut other_shard = decode(f);
        other_shard.shard = 6;
        assert_eq!(t.slot_of(encode(other_shard)), None);
        assert_eq!(t.slot_of(f), Some(decode(f).slot));
    }

    #[test]
    fn live_slots_track_inserts_and_removes() {
        let mut t = SlotTable::new(0, 0, Proto::Tcp, 8);
        let slots: Vec<u32> = (0..5).map(|i| t.insert_with(|_| i).unwrap().0).collect();
        assert_eq!(t.live_slots(), &slots[..]);
        t.remove(slots[1]);
        t.remove(slots[4]);
        let mut live = t.live_slots().to_vec();
        live.sort_unstable();
        assert_eq!(live, vec![slots[0], slots[2], slots[3]]);
        // A sweep from the end may remove as it goes.
        let mut i = t.live_slots().len();
        while i > 0 {
            i -= 1;
            let slot = t.live_slots()[i];
            if t.get(slot).is_some_and(|v| v % 2 == 0) {
                t.remove(slot);
            }
        }
        assert_eq!(t.live_slots(), &[slots[3]]);
        let (again, _) = t.insert_with(|_| 9).unwrap();
        assert_eq!(t.live_slots(), &[slots[3], again]);
        assert_eq!(t.len(), 2);
        for slot in t.live_slots().to_vec() {
            assert!(t.get(slot).is_some());
        }
    }

    #[test]
    fn a_lowered_limit_keeps_entries_and_refuses_new_ones() {
        let mut t = SlotTable::new(0, 0, Proto::Tcp, 3);
        let slots: Vec<u32> = (0..3).map(|i| t.insert_with(|_| i).unwrap().0).collect();
        t.set_limit(1);
        assert_eq!(t.len(), 3);
        assert!(t.get(slots[2]).is_some());
        assert!(t.insert_with(|_| 9).is_none());
        t.remove(slots[0]);
        t.remove(slots[1]);
        assert!(t.insert_with(|_| 9).is_none(), "still at the limit");
        t.remove(slots[2]);
        assert!(t.insert_with(|_| 9).is_some());
        t.set_limit(usize::MAX);
        assert!(t.insert_with(|_| 10).is_some());
    }

    #[test]
    fn generation_wraps_past_zero() {
        assert_eq!(next_generation(GENERATION_MASK as u32), FIRST_GENERATION);
        assert_eq!(next_generation(5), 6);
    }
}
