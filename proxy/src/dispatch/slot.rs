//! One worker slot: a (proxy, worker) pair region whose request ring the
//! proxy produces and whose response ring it consumes, with the next
//! sequence number and whether pushes wait to be published.
//!
//! Pushes are published once per loop turn per dirty ring
//! (`Slot::publish`): the proxy stores `pushed_seq`, publishes the ring's
//! write index, and wakes the worker only if it announced sleep.

use super::liveness::Liveness;
use crate::error::ProxyError;
use spp_ipc::doorbell::{wake_if_sleeping, Doorbell};
use spp_ipc::launch::PairFds;
use spp_ipc::layout::{PairHeader, PairLayout, PairRegion};
use spp_ipc::record::{meta_bytes, RequestMeta, KIND_REQUEST, REQUEST_META_SIZE};
use spp_ipc::ring::{Consumer, Producer, PushError};
use spp_plugin_api::abi::SppConnInfo;
use std::sync::atomic::Ordering;

/// One worker slot (pair region) of a group.
pub struct Slot {
    producer: Producer,
    consumer: Consumer,
    next_seq: u64,
    dirty: bool,
    /// The worker served through it, and the generations seen die.
    pub(super) liveness: Liveness,
    /// Group id.
    pub(super) group: u32,
    /// Index in the group.
    pub(super) index: u32,
    bell: Doorbell,
    // Last: the rings above point into this mapping.
    pair: PairRegion,
}

impl Slot {
    /// Maps an inherited pair region and attaches the proxy's ends.
    pub(super) fn open(group: u32, fds: &PairFds, layout: PairLayout) -> Result<Self, ProxyError> {
        let what = || {
            format!(
                "group {group} worker slot {} (fd {})",
                fds.index, fds.region_fd
            )
        };
        // SAFETY: the launch contract hands this fd to the proxy alone; the
        // caller checked it appears once in the spec.
        let pair = unsafe { PairRegion::open(fds.region_fd, layout) }.map_err(|source| {
            ProxyError::Region {
                what: what(),
                source,
            }
        })?;
        let h = pair.header();
        if h.group != group || h.index != fds.index {
            return Err(ProxyError::BadSpec {
                field: "groups",
                reason: format!(
                    "{}: region belongs to group {} slot {}",
                    what(),
                    h.group,
                    h.index
                ),
            });
        }
        // SAFETY: the proxy is the only request producer and response
        // consumer of a pair; both ends live inside `Slot`, which owns the
        // mapping and drops it last.
        let (producer, consumer) = unsafe { (pair.request_producer(), pair.response_consumer()) };
        let producer = producer.map_err(|source| ProxyError::Region {
            what: what(),
            source,
        })?;
        let consumer = consumer.map_err(|source| ProxyError::Region {
            what: what(),
            source,
        })?;
        // SAFETY: the launch contract hands this eventfd to the proxy.
        let bell = unsafe { Doorbell::from_raw_fd(fds.bell_fd) };
        let next_seq = h.pushed_seq.load(Ordering::Acquire).wrapping_add(1);
        Ok(Slot {
            producer,
            consumer,
            next_seq,
            dirty: false,
            liveness: Liveness::default(),
            group,
            index: fds.index,
            bell,
            pair,
        })
    }

    /// The pair's shared header.
    #[inline]
    pub(super) fn header(&self) -> &PairHeader {
        self.pair.header()
    }

    /// Whether an adopted, `Ready` worker runs here.
    #[inline]
    pub(super) fn accepting(&self) -> bool {
        self.liveness.accepting()
    }

    /// Pushes one request stamped `tag` (unpublished). Returns its seq;
    /// the caller lists the slot as dirty when this returns true in `.1`.
    #[inline]
    pub(super) fn push(
        &mut self,
        tag: u16,
        conn: &SppConnInfo,
        req: &[u8],
        now_ns: u64,
    ) -> Result<(u64, bool), PushError> {
        let seq = self.next_seq;
        let meta = RequestMeta {
            conn: *conn,
            seq,
            enqueued_ns: now_ns,
        };
        self.producer
            .push_with(KIND_REQUEST, tag, REQUEST_META_SIZE + req.len(), |dst| {
                dst[..REQUEST_META_SIZE].copy_from_slice(meta_bytes(&meta));
                dst[REQUEST_META_SIZE..].copy_from_slice(req);
            })?;
        self.next_seq = seq.wrapping_add(1);
        let newly_dirty = !self.dirty;
        self.dirty = true;
        Ok((seq, newly_dirty))
    }

    /// Publishes what was pushed since the last publish (if anything) and
    /// wakes the worker if it sleeps.
    pub(super) fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        // Stored before the ring's write index, so it is never behind a
        // request a worker can see (a restarted proxy continues after it).
        self.pair
            .header()
            .pushed_seq
            .store(self.next_seq.wrapping_sub(1), Ordering::Release);
        self.producer.publish();
        wake_if_sleeping(&self.pair.header().worker_sleeping, &self.bell);
    }

    /// The drain handshake: worker `generation` of this slot is `Draining`
    /// and gets nothing more (the caller made sure). Publishes what was
    /// pushed to it, then stores `drain_ack` so the worker knows its ring
    /// holds everything it will ever get. `in_flight` is for the log.
    pub(super) fn ack_drain(&mut self, generation: u64, in_flight: usize) {
        if self.header().drain_ack.load(Ordering::Acquire) == generation {
            return;
        }
        self.publish();
        self.header().drain_ack.store(generation, Ordering::Release);
        tracing::info!(
            group = self.group,
            worker = self.index,
            generation,
            in_flight,
            "worker draining: sends it nothing more"
        );
    }

    /// The worker's `completed_seq`, as of now.
    #[inline]
    pub(super) fn completed_seq(&self) -> u64 {
        self.header().completed_seq.load(Ordering::Acquire)
    }

    /// Whether the worker announced sleep.
    pub(super) fn worker_sleeps(&self) -> bool {
        self.header().worker_sleeping.load(Ordering::Acquire) != 0
    }

    /// The response ring's consuming end.
    #[inline]
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Whether the response ring holds published records.
    #[inline]
    pub(super) fn has_responses(&self) -> bool {
        self.consumer.has_data()
    }

    /// Group id and index, for logs.
    pub fn name(&self) -> (u32, u32) {
        (self.group, self.index)
    }
}
