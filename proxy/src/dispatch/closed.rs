//! Telling workers that a connection they served closed (`spp_flow_closed`,
//! the `KIND_FLOW_CLOSED` record of [`spp_ipc::pair`]).
//!
//! When a TCP connection closes, the dispatcher asks its ledger which
//! worker slots served it ([`super::Ledger::take_served`], the first few)
//! and queues the flow here for each of them whose worker has the hook.
//! At the end of the loop turn, before the rings are published,
//! [`ClosedFlows::flush`] pushes each slot's queue as records of up to
//! `FLOW_CLOSED_BATCH` flows. A ring without room keeps the rest for the
//! next turn; each slot's queue holds at most [`PENDING_MAX`] flows, and a
//! flow that finds it full is dropped and counted (`flow_closed_dropped`).
//! A queue's buffer is kept between turns: no allocation per close once it
//! has grown.

use super::slot::Slot;
use spp_ipc::record::FLOW_CLOSED_BATCH;

/// Flows queued per worker slot at most.
pub const PENDING_MAX: usize = 4096;

/// The closed flows waiting for each worker slot.
#[derive(Debug, Default)]
pub struct ClosedFlows {
    /// Indexed by slot; grown on first use of a slot.
    pending: Vec<Vec<u64>>,
    /// Slots with a non-empty queue.
    dirty: Vec<usize>,
    /// Flows dropped since the last [`Self::take_dropped`].
    dropped: u64,
}

impl ClosedFlows {
    /// Queues `flow` for slot `s`.
    pub fn queue(&mut self, s: usize, flow: u64) {
        if s >= self.pending.len() {
            self.pending.resize_with(s + 1, Vec::new);
        }
        let queue = &mut self.pending[s];
        if queue.len() >= PENDING_MAX {
            self.dropped += 1;
            return;
        }
        if queue.is_empty() {
            self.dirty.push(s);
        }
        queue.push(flow);
    }

    /// Whether anything waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }

    /// Pushes every slot's queue into its request ring, as far as there is
    /// room; `on_pushed(s)` for each slot pushed to (to publish it). A slot
    /// whose worker is gone loses its queue (nobody holds those flows'
    /// state any more).
    pub fn flush(&mut self, slots: &mut [Slot], mut on_pushed: impl FnMut(usize)) {
        let mut k = 0;
        while k < self.dirty.len() {
            let s = self.dirty[k];
            let queue = &mut self.pending[s];
            let mut sent = 0;
            let mut gone = false;
            if let Some(slot) = slots.get_mut(s) {
                while sent < queue.len() {
                    let end = (sent + FLOW_CLOSED_BATCH).min(queue.len());
                    match slot.push_flows_closed(&queue[sent..end]) {
                        Some(Ok(())) => sent = end,
                        Some(Err(_)) => break,
                        None => {
                            gone = true;
                            break;
                        }
                    }
                }
            } else {
                gone = true;
            }
            if sent != 0 {
                on_pushed(s);
            }
            if gone {
                queue.clear();
            } else {
                queue.drain(..sent);
            }
            if queue.is_empty() {
                self.dirty.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Flows dropped (a full queue) since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut c = ClosedFlows::default();
        for flow in 0..PENDING_MAX as u64 + 3 {
            c.queue(2, flow);
        }
        assert_eq!(c.take_dropped(), 3);
        assert_eq!(c.take_dropped(), 0);
        assert!(!c.is_empty());
        // No slot 2 any more: the queue goes with it, uncounted.
        c.flush(&mut [], |_| panic!("nothing to push to"));
        assert!(c.is_empty());
        assert_eq!(c.take_dropped(), 0);
    }
}
