//! In-flight counting per TCP connection: how many requests it has in
//! flight and on which worker slot the latest went (its affinity, see
//! [`super::policy::affinity`]).
//!
//! Per worker slot, the requests in flight are the FIFO of (seq, flow) the
//! pair's proxy end keeps ([`spp_ipc::pair::ProxyEnd`]); the dispatcher
//! updates this ledger in the same calls that push to and pop from those
//! FIFOs ([`Ledger::pushed`], [`Ledger::left`]), and nowhere else. A
//! connection's entry is found by its table slot and checked against its
//! flow id, so a closed connection's requests leaving later never touch a
//! newcomer in the same table slot. It also remembers the first
//! [`SERVED_MAX`] worker slots a connection's requests went to, so that
//! when it closes those workers can be told ([`Ledger::take_served`],
//! `spp_flow_closed`).

use crate::flow::{self, Proto};

/// Worker slots remembered per connection as having served it.
pub const SERVED_MAX: usize = 4;

/// One TCP connection's requests in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnFlight {
    /// The connection (0: never used).
    flow: u64,
    /// Its requests in flight.
    count: u32,
    /// The worker slot its latest request went to.
    slot: u32,
    /// The first worker slots its requests went to (`served_len` of them).
    served: [u32; SERVED_MAX],
    /// How many of `served` are set.
    served_len: u32,
}

/// The worker slots that served a closed connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    slots: [u32; SERVED_MAX],
    len: u32,
}

impl Served {
    /// The slots, first served first.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots[..self.len as usize].iter().map(|&s| s as usize)
    }
}

/// Every TCP connection's requests in flight.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Indexed by connection table slot; grown on first use of a slot.
    per_conn: Vec<ConnFlight>,
}

impl Ledger {
    /// The requests in flight of TCP connection `flow` and the worker slot
    /// the latest went to; `(0, 0)` for one with none (or a UDP flow).
    #[inline]
    pub fn of_conn(&self, flow: u64) -> (u32, usize) {
        let parts = flow::decode(flow);
        if parts.proto != Proto::Tcp {
            return (0, 0);
        }
        match self.per_conn.get(parts.slot as usize) {
            Some(e) if e.flow == flow => (e.count, e.slot as usize),
            _ => (0, 0),
        }
    }

    /// A request of `flow` was pushed to worker slot `s`.
    #[inline]
    pub fn pushed(&mut self, s: usize, flow: u64) {
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
                ..ConnFlight::default()
            };
        }
        entry.count += 1;
        entry.slot = s as u32;
        let len = entry.served_len as usize;
        // At most SERVED_MAX compares, no allocation.
        if len < SERVED_MAX && !entry.served[..len].contains(&entry.slot) {
            entry.served[len] = entry.slot;
            entry.served_len += 1;
        }
    }

    /// The connection `flow` closed: the worker slots that served it (and
    /// forgets them, so it is told once).
    pub fn take_served(&mut self, flow: u64) -> Served {
        let parts = flow::decode(flow);
        if parts.proto != Proto::Tcp {
            return Served::default();
        }
        match self.per_conn.get_mut(parts.slot as usize) {
            Some(e) if e.flow == flow => {
                let served = Served {
                    slots: e.served,
                    len: e.served_len,
                };
                e.served_len = 0;
                served
            }
            _ => Served::default(),
        }
    }

    /// One request of `flow` left its worker (completed or failed); true
    /// when it was the connection's last.
    #[inline]
    pub fn left(&mut self, flow: u64) -> bool {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{encode, FlowParts};

    fn flow(proto: Proto, slot: u32, generation: u32) -> u64 {
        encode(FlowParts {
            epoch: 1,
            shard: 0,
            proto,
            generation,
            slot,
        })
    }

    #[test]
    fn counts_follow_pushes_and_departures() {
        let mut l = Ledger::default();
        let a = flow(Proto::Tcp, 0, 1);
        let b = flow(Proto::Tcp, 5, 1);
        l.pushed(0, a);
        l.pushed(0, b);
        l.pushed(1, a);
        assert_eq!(l.of_conn(a), (2, 1), "latest on slot 1");
        assert_eq!(l.of_conn(b), (1, 0));
        assert!(l.left(b), "b's last");
        assert!(!l.left(a));
        assert_eq!(l.of_conn(a), (1, 1));
        assert!(l.left(a));
        assert_eq!(l.of_conn(a), (0, 1));
        assert!(!l.left(a), "nothing left to leave");
    }

    #[test]
    fn the_first_workers_that_served_a_connection_are_told_once() {
        let mut l = Ledger::default();
        let a = flow(Proto::Tcp, 2, 1);
        for s in [3, 3, 1, 3, 7, 8, 9, 1] {
            l.pushed(s, a);
        }
        let served: Vec<usize> = l.take_served(a).slots().collect();
        assert_eq!(served, vec![3, 1, 7, 8], "first SERVED_MAX, no repeats");
        assert_eq!(l.take_served(a).slots().count(), 0, "told once");
        let newcomer = flow(Proto::Tcp, 2, 2);
        assert_eq!(l.take_served(newcomer).slots().count(), 0, "another flow");
        l.pushed(5, newcomer);
        assert_eq!(l.take_served(newcomer).slots().collect::<Vec<_>>(), vec![5]);
        let udp = flow(Proto::Udp, 2, 1);
        l.pushed(4, udp);
        assert_eq!(l.take_served(udp).slots().count(), 0, "UDP has none");
    }

    #[test]
    fn a_newcomer_in_a_reused_table_slot_starts_from_zero() {
        let mut l = Ledger::default();
        let old = flow(Proto::Tcp, 3, 1);
        let new = flow(Proto::Tcp, 3, 2);
        l.pushed(0, old);
        l.pushed(0, new);
        assert_eq!(l.of_conn(new), (1, 0));
        assert_eq!(l.of_conn(old), (0, 0), "replaced");
        assert!(!l.left(old), "the old flow's request touches nothing");
        assert_eq!(l.of_conn(new), (1, 0));
    }

    #[test]
    fn udp_flows_are_not_counted_per_connection() {
        let mut l = Ledger::default();
        let u = flow(Proto::Udp, 0, 1);
        l.pushed(0, u);
        assert_eq!(l.of_conn(u), (0, 0));
        assert!(!l.left(u));
    }
}
