//! The connections holding a partial request, oldest first: what
//! `request_timeout` closes and what a full connection table evicts
//! (slowloris).
//!
//! A connection is linked when it starts holding a partial request — its
//! framing ended with bytes left over that are not a whole request, and
//! either it held none before or a request was just cut off its front —
//! and stamped with the loop clock of that moment. More bytes of the same
//! partial request keep the stamp (a byte every few seconds does not reset
//! it, unlike the idle timeout). It is unlinked when its buffer empties,
//! when framing is held for a worker (then the bytes wait on the proxy,
//! not on the client), when it closes, or when it is closed.
//!
//! The list is intrusive (the links live in each [`Conn`], by slot), and
//! stamps only grow, so appending keeps it sorted: linking, unlinking, the
//! oldest and the timeout walk cost O(1) each, with no allocation and no
//! clock read.

use crate::conn::Conn;
use crate::flow::SlotTable;

/// "No slot" in a link.
const NIL: u32 = u32::MAX;

/// A connection's place in the [`PartialList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialLink {
    /// Loop clock (ms) when it started holding its partial request.
    pub since_ms: u64,
    prev: u32,
    next: u32,
    linked: bool,
}

impl Default for PartialLink {
    fn default() -> Self {
        PartialLink {
            since_ms: 0,
            prev: NIL,
            next: NIL,
            linked: false,
        }
    }
}

impl PartialLink {
    /// Whether the connection holds a partial request.
    #[inline]
    pub fn is_linked(&self) -> bool {
        self.linked
    }
}

/// The list's ends.
#[derive(Debug)]
pub struct PartialList {
    head: u32,
    tail: u32,
}

impl Default for PartialList {
    fn default() -> Self {
        PartialList {
            head: NIL,
            tail: NIL,
        }
    }
}

impl PartialList {
    /// Connection `slot` starts holding a partial request at `now_ms`: it
    /// moves to the end, stamped `now_ms`.
    pub fn start(&mut self, conns: &mut SlotTable<Conn>, slot: u32, now_ms: u64) {
        self.unlink(conns, slot);
        let tail = self.tail;
        let Some(conn) = conns.get_mut(slot) else {
            return;
        };
        conn.partial = PartialLink {
            since_ms: now_ms,
            prev: tail,
            next: NIL,
            linked: true,
        };
        match conns.get_mut(tail) {
            Some(last) => last.partial.next = slot,
            None => self.head = slot,
        }
        self.tail = slot;
    }

    /// Connection `slot` holds no partial request (any more); a no-op when
    /// it was not linked.
    pub fn unlink(&mut self, conns: &mut SlotTable<Conn>, slot: u32) {
        let Some(conn) = conns.get_mut(slot) else {
            return;
        };
        if !conn.partial.linked {
            return;
        }
        let PartialLink { prev, next, .. } = conn.partial;
        conn.partial = PartialLink::default();
        match conns.get_mut(prev) {
            Some(p) => p.partial.next = next,
            None => self.head = next,
        }
        match conns.get_mut(next) {
            Some(n) => n.partial.prev = prev,
            None => self.tail = prev,
        }
    }

    /// The connection that has waited longest on a partial request, with
    /// its stamp.
    pub fn oldest(&self, conns: &SlotTable<Conn>) -> Option<(u32, u64)> {
        conns
            .get(self.head)
            .map(|c| (self.head, c.partial.since_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Proto;
    use mio::net::TcpStream;
    use spp_plugin_api::abi::SppConnInfo;

    fn table(n: usize) -> (SlotTable<Conn>, Vec<u32>, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conns = SlotTable::new(1, 0, Proto::Tcp, n);
        let mut slots = Vec::new();
        for _ in 0..n {
            let s = std::net::TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            let stream = TcpStream::from_std(s);
            let (slot, _) = conns
                .insert_with(|_| Conn::new(stream, SppConnInfo::default(), 0))
                .unwrap();
            slots.push(slot);
        }
        (conns, slots, listener)
    }

    fn order(list: &PartialList, conns: &SlotTable<Conn>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = list.head;
        while let Some(c) = conns.get(at) {
            out.push(at);
            at = c.partial.next;
        }
        out
    }

    #[test]
    fn oldest_first_and_a_restart_moves_to_the_end() {
        let (mut conns, s, _l) = table(4);
        let mut list = PartialList::default();
        assert_eq!(list.oldest(&conns), None);
        for (i, &slot) in s.iter().enumerate() {
            list.start(&mut conns, slot, 10 + i as u64);
        }
        assert_eq!(order(&list, &conns), s);
        assert_eq!(list.oldest(&conns), Some((s[0], 10)));
        list.start(&mut conns, s[0], 20);
        assert_eq!(order(&list, &conns), vec![s[1], s[2], s[3], s[0]]);
        list.unlink(&mut conns, s[2]);
        list.unlink(&mut conns, s[2]);
        assert_eq!(order(&list, &conns), vec![s[1], s[3], s[0]]);
        list.unlink(&mut conns, s[0]);
        assert_eq!(order(&list, &conns), vec![s[1], s[3]]);
        list.unlink(&mut conns, s[1]);
        list.unlink(&mut conns, s[3]);
        assert_eq!(list.oldest(&conns), None);
        assert_eq!((list.head, list.tail), (NIL, NIL));
        list.start(&mut conns, s[3], 30);
        assert_eq!(list.oldest(&conns), Some((s[3], 30)));
        assert!(conns.get(s[3]).unwrap().partial.is_linked());
        assert!(!conns.get(s[1]).unwrap().partial.is_linked());
    }
}
