//! The one owner of in-flight counting: which requests each worker slot
//! still holds (a FIFO of (seq, flow) per slot), how many there are in
//! all, and per TCP connection how many it has in flight and on which slot
//! the latest went (its affinity, see [`super::policy::affinity`]).
//!
//! A request is entered when it is pushed ([`Ledger::pushed`]) and leaves
//! either when the worker's `completed_seq` passes it
//! ([`Ledger::pop_completed`]) or when it is failed
//! ([`Ledger::take_oldest`]). A connection's entry is found by its table
//! slot and checked against its flow id, so a closed connection's requests
//! leaving later never touch a newcomer in the same table slot; nothing
//! needs to be told when a connection closes.

use crate::flow::{self, Proto};
use std::collections::VecDeque;

/// A request queued to a worker whose `process` has not returned yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its per-pair sequence number.
    pub seq: u64,
    /// The flow it came from.
    pub flow: u64,
}

/// One TCP connection's requests in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnFlight {
    /// The connection (0: never used).
    flow: u64,
    /// Its requests in flight.
    count: u32,
    /// The worker slot its latest request went to.
    slot: u32,
}

/// Every request in flight, per worker slot and per connection.
#[derive(Debug, Default)]
pub struct Ledger {
    per_slot: Vec<VecDeque<InFlight>>,
    /// Indexed by connection table slot; grown on first use of a slot.
    per_conn: Vec<ConnFlight>,
    total: usize,
}

impl Ledger {
    /// An empty ledger for `slots` worker slots.
    pub fn new(slots: usize) -> Self {
        Ledger {
            per_slot: (0..slots).map(|_| VecDeque::new()).collect(),
            per_conn: Vec::new(),
            total: 0,
        }
    }

    /// Requests in flight over all worker slots.
    #[inline]
    pub fn total(&self) -> usize {
        self.total
    }

    /// Requests in flight in worker slot `s`.
    #[inline]
    pub fn on_slot(&self, s: usize) -> usize {
        self.per_slot.get(s).map_or(0, VecDeque::len)
    }

    /// The requests in flight of TCP connection `flow` and the worker slot
    /// the latest went to; `(0, 0)` for one with none (or a UDP flow).
    #[inline]
    pub fn of_conn(&self, flow: u64) -> (u32, usize) {
        match self.conn_entry(flow) {
            Some(e) if e.flow == flow => (e.count, e.slot as usize),
            _ => (0, 0),
        }
    }

    #[inline]
    fn conn_entry(&self, flow: u64) -> Option<&ConnFlight> {
        let parts = flow::decode(flow);
        if parts.proto != Proto::Tcp {
            return None;
        }
        self.per_conn.get(parts.slot as usize)
    }

    /// A request of `flow` was pushed to worker slot `s` with `seq`.
    #[inline]
    pub fn pushed(&mut self, s: usize, seq: u64, flow: u64) {
        self.per_slot[s].push_back(InFlight { seq, flow });
        self.total += 1;
        let parts = flow::decode(flow);
        if parts.proto != Proto::Tcp {
            return;
        }
        let i = parts.slot as usize;
        if i >= self.per_conn.len() {
            // Once per new highest connection slot, not per request.
            self.per_conn.resize(i + 1, ConnFlight::default());
        }
        let entry = &mut self.per_conn[i];
        if entry.flow != flow {
            *entry = ConnFlight {
                flow,
                count: 0,
                slot: 0,
            };
        }
        entry.count += 1;
        entry.slot = s as u32;
    }

    /// One request of `flow` left; true when it was the connection's last.
    #[inline]
    fn left(&mut self, flow: u64) -> bool {
        let parts = flow::decode(flow);
        if parts.proto != Proto::Tcp {
            return false;
        }
        match self.per_conn.get_mut(parts.slot as usize) {
            Some(e) if e.flow == flow && e.count != 0 => {
                e.count -= 1;
                e.count == 0
            }
            _ => false,
        }
    }

    /// Pops the requests of worker slot `s` up to sequence `completed`,
    /// handing every connection whose last request left to `emptied`.
    #[inline]
    pub fn pop_completed(&mut self, s: usize, completed: u64, mut emptied: impl FnMut(u64)) {
        while let Some(&front) = self.per_slot[s].front() {
            if front.seq > completed {
                break;
            }
            self.per_slot[s].pop_front();
            self.total -= 1;
            if self.left(front.flow) {
                emptied(front.flow);
            }
        }
    }

    /// Takes the oldest request still in flight in worker slot `s` (to fail
    /// it), and whether it was its connection's last.
    pub fn take_oldest(&mut self, s: usize) -> Option<(InFlight, bool)> {
        let entry = self.per_slot[s].pop_front()?;
        self.total -= 1;
        Some((entry, self.left(entry.flow)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{encode, FlowParts};

    fn flow(proto: Proto, slot: u32, generation: u32) -> u64 {
        encode(FlowParts {
            epoch: 1,
            proto,
            generation,
            slot,
        })
    }

    #[test]
    fn counts_follow_pushes_and_completions() {
        let mut l = Ledger::new(2);
        let a = flow(Proto::Tcp, 0, 1);
        let b = flow(Proto::Tcp, 5, 1);
        l.pushed(0, 1, a);
        l.pushed(0, 2, b);
        l.pushed(1, 1, a);
        assert_eq!(l.total(), 3);
        assert_eq!((l.on_slot(0), l.on_slot(1)), (2, 1));
        assert_eq!(l.of_conn(a), (2, 1), "latest on slot 1");
        let mut emptied = Vec::new();
        l.pop_completed(0, 2, |f| emptied.push(f));
        assert_eq!(emptied, vec![b], "a still has one on slot 1");
        assert_eq!(l.of_conn(a), (1, 1));
        l.pop_completed(1, 0, |f| emptied.push(f));
        assert_eq!(l.of_conn(a).0, 1, "seq 1 is not completed by 0");
        l.pop_completed(1, 1, |f| emptied.push(f));
        assert_eq!(emptied, vec![b, a]);
        assert_eq!(l.total(), 0);
    }

    #[test]
    fn a_newcomer_in_a_reused_table_slot_starts_from_zero() {
        let mut l = Ledger::new(1);
        let old = flow(Proto::Tcp, 3, 1);
        let new = flow(Proto::Tcp, 3, 2);
        l.pushed(0, 1, old);
        l.pushed(0, 2, new);
        assert_eq!(l.of_conn(new), (1, 0));
        assert_eq!(l.of_conn(old), (0, 0), "replaced");
        let mut emptied = Vec::new();
        l.pop_completed(0, 1, |f| emptied.push(f));
        assert!(emptied.is_empty(), "the old flow's request touches nothing");
        assert_eq!(l.of_conn(new), (1, 0));
    }

    #[test]
    fn udp_requests_count_per_slot_only() {
        let mut l = Ledger::new(1);
        let u = flow(Proto::Udp, 0, 1);
        l.pushed(0, 7, u);
        assert_eq!(l.of_conn(u), (0, 0));
        assert_eq!(
            l.take_oldest(0),
            Some((InFlight { seq: 7, flow: u }, false))
        );
        assert_eq!(l.take_oldest(0), None);
        assert_eq!(l.total(), 0);
    }

    #[test]
    fn failing_takes_the_oldest_first() {
        let mut l = Ledger::new(1);
        let a = flow(Proto::Tcp, 1, 1);
        l.pushed(0, 1, a);
        l.pushed(0, 2, a);
        assert_eq!(
            l.take_oldest(0),
            Some((InFlight { seq: 1, flow: a }, false))
        );
        assert_eq!(l.take_oldest(0), Some((InFlight { seq: 2, flow: a }, true)));
    }
}
