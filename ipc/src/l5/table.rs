//! The shared-memory route table.
//!
//! One memfd region per service ([`super::layout`]), created by the
//! controller and inherited by every worker. Two parts:
//! * the routing view, double-buffered: per sid its nodes (address, static
//!   weight, current weight, dead or alive, cumulative weights for the
//!   binary search, stats slot and the slot's counts at publish time),
//!   written by the controller into the inactive buffer, then made active
//!   with one release store. Readers use the buffer's sequence (seqlock)
//!   and retry a bounded number of times ([`READ_ATTEMPTS`], then
//!   [`L5Error::Busy`]), so a lookup takes no lock and no syscall;
//! * per-instance outcome counters (picks, success, failure, latency sum,
//!   consecutive errors), in stable slots, added to by workers with
//!   atomics and read by the controller every period. A slot's epoch is
//!   bumped whenever it changes hands, and a report carrying another epoch
//!   is dropped.
//!
//! Pick rules (applied in `table::pick`; the rules themselves are the policy of
//! [`super::pick_rules`], [`super::probe`] and [`super::rendezvous`], their
//! numbers come from [`RouteTable::set_rules`]):
//! * weighted random choice by binary search over cumulative weights;
//! * a node whose success ratio this period (counts since the last publish)
//!   is below `skip_ratio` with at least `min_requests` samples, or whose
//!   consecutive errors reached `trip_errors`, is skipped for another random
//!   node ([`PICK_ATTEMPTS`] tries, then a scan for any node not skipped);
//! * while the sid's probe budget lasts, the first pick after a publish
//!   and then every ⌈1 / `probe_share`⌉-th pick go to a dead node
//!   (deterministic, so a low-traffic period still probes); the budget is
//!   spent after the read was validated, by compare-exchange on a word
//!   tagged with the buffer's generation;
//! * when every live node is skipped, a weighted pick over the live nodes
//!   ignoring the skip rule; only when every node is dead, any node at
//!   random (fail open).

mod budget;
mod pick;

pub use super::view::{NodeCounts, NodeView, Route, SidView, MAX_NODES, MAX_SIDS};

use super::balancer::BalancerConfig;
use super::layout::{
    pack_probe, sid_key, sid_of, Buffer, NodeEntry, SidEntry, SlotEntry, TableLayout, TABLE_MAGIC,
    TABLE_SIZE, TABLE_VERSION,
};
use super::pick_rules::PickRules;
use super::{Instance, L5Error, Sid};
use crate::error::IpcError;
use crate::shm::SharedRegion;
use budget::budget_left;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;

/// Times a reader retries a buffer being rewritten before [`L5Error::Busy`].
pub const READ_ATTEMPTS: u32 = 16;
/// Random picks tried before scanning for a node that is not skipped.
pub const PICK_ATTEMPTS: u32 = 3;

/// The controller's private index of the stats slots.
struct SlotBook {
    /// Assigned slots by (sid, address).
    by_key: HashMap<(Sid, SocketAddr), u32>,
    /// Free slots; the lowest is popped first.
    free: Vec<u32>,
}

impl SlotBook {
    /// Rebuilds the index from the slots' key lines (odd epoch = assigned).
    fn scan(slots: &[SlotEntry]) -> Self {
        let mut book = SlotBook {
            by_key: HashMap::new(),
            free: Vec::new(),
        };
        for (i, slot) in slots.iter().enumerate().rev() {
            if slot.epoch.load(Ordering::Relaxed) & 1 == 1 {
                book.by_key.insert(slot.key(), i as u32);
            } else {
                book.free.push(i as u32);
            }
        }
        book
    }
}

/// The mapped table.
pub struct RouteTable {
    region: SharedRegion,
    /// Serialises this process's writers of the routing view.
    publish_lock: Mutex<()>,
    /// The slot index (controller); built at first use in an opened table.
    book: Option<SlotBook>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("fd", &self.raw_fd())
            .field("generation", &self.generation())
            .finish()
    }
}

impl RouteTable {
    /// Creates an empty table (controller), with the default pick rules.
    pub fn create() -> Result<Self, IpcError> {
        let region = SharedRegion::create("spp-l5-routes", TABLE_SIZE)?;
        let hdr = region.as_ptr().cast::<TableLayout>();
        // SAFETY: the region is fresh, zero-filled, page aligned, ours and
        // `TABLE_SIZE` ≥ size_of::<TableLayout>(); zero is valid for every
        // field; the plain fields are written before anything is shared.
        unsafe {
            std::ptr::addr_of_mut!((*hdr).header.magic).write(TABLE_MAGIC);
            std::ptr::addr_of_mut!((*hdr).header.version).write(TABLE_VERSION);
            std::ptr::addr_of_mut!((*hdr).header.max_sids).write(MAX_SIDS as u32);
            std::ptr::addr_of_mut!((*hdr).header.max_nodes).write(MAX_NODES as u32);
        }
        let table = RouteTable {
            region,
            publish_lock: Mutex::new(()),
            book: Some(SlotBook {
                by_key: HashMap::new(),
                free: (0..MAX_NODES as u32).rev().collect(),
            }),
        };
        table.set_rules(&BalancerConfig::default());
        Ok(table)
    }

    /// Maps an inherited table and checks its header.
    ///
    /// # Safety
    /// `fd` must be an inherited route-table memfd this process owns.
    pub unsafe fn open(fd: RawFd) -> Result<Self, IpcError> {
        // SAFETY: forwarded from the caller.
        let region = unsafe { SharedRegion::from_raw_fd(fd, TABLE_SIZE)? };
        let table = RouteTable {
            region,
            publish_lock: Mutex::new(()),
            book: None,
        };
        let h = &table.shared().header;
        if h.magic != TABLE_MAGIC
            || h.version != TABLE_VERSION
            || h.max_sids != MAX_SIDS as u32
            || h.max_nodes != MAX_NODES as u32
        {
            return Err(IpcError::BadLayout {
                what: "l5 route table",
                reason: format!(
                    "magic {:#x} version {} sizes {}/{}: not layout v{TABLE_VERSION} with {MAX_SIDS} sids, {MAX_NODES} nodes",
                    h.magic, h.version, h.max_sids, h.max_nodes
                ),
            });
        }
        Ok(table)
    }

    /// The memfd, for passing to a child.
    pub fn raw_fd(&self) -> RawFd {
        self.region.raw_fd()
    }

    fn shared(&self) -> &TableLayout {
        layout_of(&self.region)
    }

    /// Publishes so far (0: nothing published yet).
    pub fn generation(&self) -> u64 {
        self.shared().header.generation.load(Ordering::Acquire)
    }

    /// Sets the pick-time rules (controller): `skip_ratio`, `min_requests`,
    /// `trip_errors`, `probe_share` of `cfg` ([`PickRules::from_config`]).
    /// Readers see them at their next pick.
    pub fn set_rules(&self, cfg: &BalancerConfig) {
        let h = &self.shared().header;
        let rules = PickRules::from_config(cfg);
        h.skip_ratio_ppm
            .store(rules.skip_ratio_ppm, Ordering::Relaxed);
        h.trip_errors.store(rules.trip_errors, Ordering::Relaxed);
        h.min_requests.store(rules.min_requests, Ordering::Relaxed);
        h.probe_share_ppm
            .store(rules.probe_share_ppm, Ordering::Relaxed);
    }

    /// The pick-time rules as the header holds them now.
    fn rules(&self) -> PickRules {
        let h = &self.shared().header;
        PickRules {
            skip_ratio_ppm: h.skip_ratio_ppm.load(Ordering::Relaxed),
            trip_errors: h.trip_errors.load(Ordering::Relaxed),
            min_requests: h.min_requests.load(Ordering::Relaxed),
            probe_share_ppm: h.probe_share_ppm.load(Ordering::Relaxed),
        }
    }

    /// The stats slot of `instance` (keyed by sid and address; its static
    /// weight is updated), assigning a free one with zeroed counters
    /// (controller).
    pub fn slot_for(&mut self, instance: &Instance) -> Result<u32, L5Error> {
        let slots = slots_of(&self.region);
        let book = self.book.get_or_insert_with(|| SlotBook::scan(slots));
        let key = (instance.sid, instance.addr);
        if let Some(&slot) = book.by_key.get(&key) {
            slots[slot as usize]
                .static_weight
                .store(instance.weight, Ordering::Relaxed);
            return Ok(slot);
        }
        let slot = book.free.pop().ok_or(L5Error::Full("stats slots"))?;
        let entry = &slots[slot as usize];
        entry.set_key(instance.sid, &instance.addr, instance.weight);
        entry.zero_counters();
        // Even (free) → odd (assigned); release: the key and the zeroed
        // counters come first.
        entry.epoch.fetch_add(1, Ordering::Release);
        book.by_key.insert(key, slot);
        Ok(slot)
    }

    /// Frees the slots of instances no longer known (controller): the
    /// epoch is bumped first (later reports are dropped), then the counters
    /// are zeroed. A report that checked the epoch just before may still
    /// land; the next assignment zeroes the counters again.
    pub fn retain_slots(&mut self, keep: &dyn Fn(&Instance) -> bool) {
        let slots = slots_of(&self.region);
        let book = self.book.get_or_insert_with(|| SlotBook::scan(slots));
        let SlotBook { by_key, free } = book;
        by_key.retain(|&(sid, addr), &mut slot| {
            let entry = &slots[slot as usize];
            let weight = entry.static_weight.load(Ordering::Relaxed);
            if keep(&Instance { sid, addr, weight }) {
                return true;
            }
            entry.epoch.fetch_add(1, Ordering::Release);
            entry.zero_counters();
            free.push(slot);
            false
        });
        free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Publishes a new routing view (controller): writes the inactive
    /// buffer under its seqlock, then makes it active. Every node must
    /// name a slot assigned to its instance by [`Self::slot_for`]; a sid
    /// may appear once. A dead node is published with weight 0 whatever
    /// its `weight`. Each node's baseline (its slot's success and failure
    /// counts now) starts the period the pick-time skip rule judges.
    pub fn publish(&self, sids: &[SidView]) -> Result<(), L5Error> {
        let t = self.shared();
        if sids.len() > MAX_SIDS {
            return Err(L5Error::Full("sids"));
        }
        let total: usize = sids.iter().map(|s| s.nodes.len()).sum();
        if total > MAX_NODES {
            return Err(L5Error::Full("nodes"));
        }
        let mut order: Vec<&SidView> = sids.iter().collect();
        order.sort_by_key(|view| view.sid);
        if order.windows(2).any(|w| w[0].sid == w[1].sid) {
            return Err(L5Error::Invalid("a sid appears twice"));
        }
        for node in order
            .iter()
            .flat_map(|view| view.nodes.iter().map(move |node| (view.sid, node)))
        {
            check_node(&t.slots, node.0, node.1)?;
        }

        let _writer = self
            .publish_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let h = &t.header;
        let next = 1 - (h.active.load(Ordering::Relaxed) & 1);
        let buf = &t.buffers[next as usize];
        let seq = buf.seq.load(Ordering::Relaxed) & !1;
        buf.seq.store(seq + 1, Ordering::Relaxed);
        // Orders the odd sequence before every data store below (a reader
        // that sees any of them sees the odd sequence at its re-check).
        fence(Ordering::Release);
        let generation = h.generation.load(Ordering::Relaxed) + 1;
        let mut index = 0usize;
        for (entry, view) in buf.sids.iter().zip(&order) {
            let first = index;
            let (mut cumulative, mut dead) = (0u64, 0u32);
            for node in &view.nodes {
                let weight = if node.dead { 0 } else { node.weight };
                cumulative += u64::from(weight);
                dead += u32::from(node.dead);
                write_node(&buf.nodes[index], &t.slots, node, weight, cumulative);
                index += 1;
            }
            entry.key.store(sid_key(view.sid), Ordering::Relaxed);
            entry.total_weight.store(cumulative, Ordering::Relaxed);
            entry.first.store(first as u32, Ordering::Relaxed);
            entry
                .count
                .store(view.nodes.len() as u32, Ordering::Relaxed);
            entry
                .probe_initial
                .store(view.probe_budget, Ordering::Relaxed);
            entry
                .probe
                .store(pack_probe(generation, view.probe_budget), Ordering::Relaxed);
            entry.probe_clock.store(0, Ordering::Relaxed);
            entry.dead_count.store(dead, Ordering::Relaxed);
        }
        buf.sid_count.store(order.len() as u32, Ordering::Relaxed);
        buf.node_count.store(index as u32, Ordering::Relaxed);
        buf.generation.store(generation, Ordering::Relaxed);
        buf.seq.store(seq + 2, Ordering::Release);
        h.active.store(next, Ordering::Release);
        h.generation.store(generation, Ordering::Release);
        Ok(())
    }

    /// Runs `read` over the active buffer until it read a buffer no writer
    /// touched meanwhile ([`READ_ATTEMPTS`] at most, then
    /// [`L5Error::Busy`]). `read` may see torn values and must stay in
    /// bounds whatever it reads.
    fn read<'a, T>(
        &'a self,
        mut read: impl FnMut(&'a Buffer) -> Result<T, L5Error>,
    ) -> Result<T, L5Error> {
        let t = self.shared();
        for _ in 0..READ_ATTEMPTS {
            let buf = &t.buffers[(t.header.active.load(Ordering::Acquire) & 1) as usize];
            let seq = buf.seq.load(Ordering::Acquire);
            if seq & 1 == 0 {
                let out = read(buf);
                // Orders the data loads above before the re-check.
                fence(Ordering::Acquire);
                if buf.seq.load(Ordering::Relaxed) == seq {
                    return out;
                }
            }
            std::hint::spin_loop();
        }
        Err(L5Error::Busy)
    }

    /// The routing view now published (for `spp l5 list`); empty when the
    /// table cannot be read (see [`Self::try_view`]).
    pub fn view(&self) -> Vec<SidView> {
        self.try_view().unwrap_or_default()
    }

    /// The routing view now published, or [`L5Error::Busy`].
    pub fn try_view(&self) -> Result<Vec<SidView>, L5Error> {
        let _writer = self
            .publish_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.read(|buf| {
            let count = (buf.sid_count.load(Ordering::Relaxed) as usize).min(MAX_SIDS);
            let mut out = Vec::with_capacity(count);
            for entry in &buf.sids[..count] {
                let sid = sid_of(entry.key.load(Ordering::Relaxed));
                let nodes = nodes_of(buf, entry).ok_or(L5Error::Busy)?;
                out.push(SidView {
                    sid,
                    nodes: nodes.iter().map(|n| node_view(sid, n)).collect(),
                    probe_budget: budget_left(buf, entry),
                });
            }
            Ok(out)
        })
    }

    /// The probe budget left for `sid` in the published view (`None`:
    /// the sid is not published, or the table is busy).
    pub fn probe_budget_left(&self, sid: Sid) -> Option<u32> {
        self.read(|buf| {
            let entry = find_sid(buf, sid).ok_or(L5Error::UnknownSid)?;
            Ok(budget_left(buf, entry))
        })
        .ok()
    }

    /// The counters of slot `slot` (controller; reads, never resets); zero
    /// for a slot out of range.
    pub fn counts(&self, slot: u32) -> NodeCounts {
        let Some(s) = self.shared().slots.get(slot as usize) else {
            return NodeCounts::default();
        };
        NodeCounts {
            picks: s.picks.load(Ordering::Relaxed),
            success: s.success.load(Ordering::Relaxed),
            failure: s.failure.load(Ordering::Relaxed),
            latency_us: s.latency_us.load(Ordering::Relaxed),
            consecutive_errors: s.consecutive_errors.load(Ordering::Relaxed),
        }
    }

    /// Records the outcome of a call on `route` (workers): `result` >= 0 is
    /// a success. Dropped when the route's slot changed hands since.
    pub fn report(&self, route: &Route, result: i32, latency_us: u64) {
        let Some(slot) = self.shared().slots.get(route.slot as usize) else {
            return;
        };
        let epoch = slot.epoch.load(Ordering::Relaxed);
        if epoch != route.slot_epoch || epoch & 1 == 0 {
            return;
        }
        if result >= 0 {
            slot.success.fetch_add(1, Ordering::Relaxed);
            if slot.consecutive_errors.load(Ordering::Relaxed) != 0 {
                slot.consecutive_errors.store(0, Ordering::Relaxed);
            }
        } else {
            slot.failure.fetch_add(1, Ordering::Relaxed);
            slot.consecutive_errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency_us.fetch_add(latency_us, Ordering::Relaxed);
    }
}

/// The table in `region`.
fn layout_of(region: &SharedRegion) -> &TableLayout {
    // SAFETY: every region a `RouteTable` holds is at least TABLE_SIZE
    // bytes, page aligned, initialised by `create` (checked by `open`) and
    // lives as long as the borrow; every field changed after creation is
    // an atomic.
    unsafe { &*region.as_ptr().cast::<TableLayout>() }
}

/// The stats slots in `region` (borrowing the region alone, so the slot
/// book beside it can be borrowed mutably).
fn slots_of(region: &SharedRegion) -> &[SlotEntry] {
    &layout_of(region).slots
}

/// Publish-time check of one node: its instance is of `sid` and its slot
/// is assigned to it.
fn check_node(slots: &[SlotEntry], sid: Sid, node: &NodeView) -> Result<(), L5Error> {
    if node.instance.sid != sid {
        return Err(L5Error::Invalid("a node's instance is of another sid"));
    }
    let slot = slots
        .get(node.slot as usize)
        .ok_or(L5Error::Invalid("a node's slot is out of range"))?;
    if slot.epoch.load(Ordering::Relaxed) & 1 == 0 {
        return Err(L5Error::Invalid("a node's slot is not assigned"));
    }
    if slot.key() != (sid, node.instance.addr) {
        return Err(L5Error::Invalid(
            "a node's slot belongs to another instance",
        ));
    }
    Ok(())
}

/// Writes one node entry (controller, inside the seqlock).
fn write_node(
    entry: &NodeEntry,
    slots: &[SlotEntry],
    node: &NodeView,
    weight: u32,
    cumulative: u64,
) {
    let slot = &slots[node.slot as usize];
    entry.cumulative.store(cumulative, Ordering::Relaxed);
    entry.set_addr(&node.instance.addr);
    entry
        .static_weight
        .store(node.instance.weight, Ordering::Relaxed);
    entry.weight.store(weight, Ordering::Relaxed);
    entry.dead.store(u32::from(node.dead), Ordering::Relaxed);
    entry.slot.store(node.slot, Ordering::Relaxed);
    entry
        .slot_epoch
        .store(slot.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
    entry
        .base_success
        .store(slot.success.load(Ordering::Relaxed), Ordering::Relaxed);
    entry
        .base_failure
        .store(slot.failure.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The published node as a [`NodeView`].
fn node_view(sid: Sid, node: &NodeEntry) -> NodeView {
    NodeView {
        instance: Instance {
            sid,
            addr: node.addr(),
            weight: node.static_weight.load(Ordering::Relaxed),
        },
        weight: node.weight.load(Ordering::Relaxed),
        dead: node.dead.load(Ordering::Relaxed) != 0,
        slot: node.slot.load(Ordering::Relaxed),
    }
}

/// The sid's entry, by binary search over the sorted sids.
fn find_sid(buf: &Buffer, sid: Sid) -> Option<&SidEntry> {
    let count = (buf.sid_count.load(Ordering::Relaxed) as usize).min(MAX_SIDS);
    let sids = &buf.sids[..count];
    let key = sid_key(sid);
    let i = sids.partition_point(|e| e.key.load(Ordering::Relaxed) < key);
    sids.get(i).filter(|e| e.key.load(Ordering::Relaxed) == key)
}

/// The sid's nodes; `None` when the (torn) entry points out of range.
fn nodes_of<'b>(buf: &'b Buffer, entry: &SidEntry) -> Option<&'b [NodeEntry]> {
    let first = entry.first.load(Ordering::Relaxed) as usize;
    let count = entry.count.load(Ordering::Relaxed) as usize;
    buf.nodes.get(first..first.checked_add(count)?)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
