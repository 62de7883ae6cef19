//! The dispatch policy: which worker slot of a group gets the next request.
//!
//! Pure decisions over counts — no rings, no processes, no shared memory —
//! so they are unit-tested on their own:
//!
//! * [`affinity`]: a TCP connection with requests in flight sticks to the
//!   slot holding them (so pipelined requests are answered in order), or,
//!   when that slot takes nothing more, holds its framing until they left.
//! * [`Rotation::least_outstanding`]: otherwise the accepting slot with the
//!   fewest requests outstanding wins; ties go round-robin (the scan starts
//!   one member further at every pick).
//! * When the chosen ring turns out full, the caller tries the other
//!   accepting members in [`Rotation::members`] order.

/// Where a connection's next request must go, given its requests in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// Nothing in flight: any worker of the routed group.
    Free,
    /// In flight on slot `s`, which takes requests: the next one goes there.
    Stick(usize),
    /// In flight on slot `s`, which takes nothing more: the connection's
    /// framing waits until they left, so nothing overtakes them.
    Hold(usize),
}

/// The affinity of a connection with `outstanding` requests in flight, the
/// latest of them on slot `last_slot`, which is `accepting` or not.
#[inline]
pub fn affinity(outstanding: u32, last_slot: usize, accepting: bool) -> Affinity {
    match (outstanding, accepting) {
        (0, _) => Affinity::Free,
        (_, true) => Affinity::Stick(last_slot),
        (_, false) => Affinity::Hold(last_slot),
    }
}

/// The members (slot indices) of one group and where the next pick starts.
#[derive(Clone, Debug, Default)]
pub struct Rotation {
    members: Vec<usize>,
    rotor: usize,
}

impl Rotation {
    /// A rotation over `members`, starting at the first.
    pub fn new(members: Vec<usize>) -> Self {
        Rotation { members, rotor: 0 }
    }

    /// The members, in group order.
    #[inline]
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// Picks the member with the least outstanding requests; `load(s)` is
    /// `Some(outstanding)` for a member that takes requests, `None` for one
    /// that does not. Ties go to the first one found from the rotor, which
    /// advances by one at every call. `None` when no member takes requests.
    #[inline]
    pub fn least_outstanding(
        &mut self,
        mut load: impl FnMut(usize) -> Option<usize>,
    ) -> Option<usize> {
        let n = self.members.len();
        let start = self.rotor;
        self.rotor = if start + 1 >= n { 0 } else { start + 1 };
        let mut best: Option<usize> = None;
        let mut best_load = usize::MAX;
        for k in 0..n {
            let s = self.members[(start + k) % n];
            if let Some(l) = load(s) {
                if l < best_load {
                    best = Some(s);
                    best_load = l;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_follows_what_is_in_flight() {
        assert_eq!(affinity(0, 3, false), Affinity::Free);
        assert_eq!(affinity(0, 3, true), Affinity::Free);
        assert_eq!(affinity(2, 3, true), Affinity::Stick(3));
        assert_eq!(affinity(1, 3, false), Affinity::Hold(3));
    }

    #[test]
    fn the_least_outstanding_member_wins() {
        let mut r = Rotation::new(vec![10, 11, 12]);
        let loads = [5, 1, 3];
        let pick = r.least_outstanding(|s| Some(loads[s - 10]));
        assert_eq!(pick, Some(11));
    }

    #[test]
    fn ties_rotate_over_the_members() {
        let mut r = Rotation::new(vec![0, 1, 2]);
        let picks: Vec<_> = (0..6)
            .map(|_| r.least_outstanding(|_| Some(0)).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn members_that_take_nothing_are_skipped() {
        let mut r = Rotation::new(vec![0, 1, 2]);
        for _ in 0..4 {
            assert_eq!(r.least_outstanding(|s| (s == 2).then_some(100)), Some(2));
        }
        assert_eq!(r.least_outstanding(|_| None), None);
    }

    #[test]
    fn an_empty_group_picks_nothing() {
        let mut r = Rotation::new(Vec::new());
        assert_eq!(r.least_outstanding(|_| Some(0)), None);
        assert!(r.members().is_empty());
    }

    #[test]
    fn a_less_loaded_member_beats_the_rotor() {
        let mut r = Rotation::new(vec![0, 1]);
        // The rotor starts at 0, but 1 has less outstanding.
        assert_eq!(
            r.least_outstanding(|s| Some(if s == 0 { 4 } else { 2 })),
            Some(1)
        );
        // Now the rotor starts at 1, but 0 has less.
        assert_eq!(
            r.least_outstanding(|s| Some(if s == 0 { 0 } else { 2 })),
            Some(0)
        );
    }
}
