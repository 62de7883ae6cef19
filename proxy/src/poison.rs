//! Poison requests: the proxy's memory of which request bytes were inside
//! `spp_process` when a worker died, so that the same bytes are refused
//! (`SPP_EXC_POISON`) once they killed [`POISON_DEATHS`] workers of a group,
//! instead of killing the next one.
//!
//! A dead worker's pair header names the request it died holding
//! (`in_process_seq`); the proxy hashes that request's bytes from the ring
//! (`ProxyEnd::died_holding`, [`spp_ipc::poison::request_hash`]) the moment
//! it retires the worker (before a successor adopted in the same scan can
//! overwrite `in_process_seq`), and books it when it fails the gone
//! worker's requests (`Proxy::fail_gone_workers`). The table is bounded
//! ([`POISON_TABLE_ENTRIES`], the entry with the oldest death evicted) and
//! an entry is forgotten [`POISON_TTL_MS`] after its last death. Incoming
//! requests are hashed only while some entry is armed (reached
//! [`POISON_DEATHS`]): the hot path pays one branch the rest of the time.

use spp_ipc::poison::{POISON_DEATHS, POISON_TABLE_ENTRIES, POISON_TTL_MS};

/// One remembered hash.
#[derive(Clone, Copy, Debug)]
struct Entry {
    group: u32,
    hash: u64,
    deaths: u32,
    /// CLOCK_MONOTONIC ms of the last death.
    last_death_ms: u64,
    /// Requests refused so far (logs are thinned by it).
    refused: u64,
}

impl Entry {
    fn armed(&self) -> bool {
        self.deaths >= POISON_DEATHS
    }
}

/// What [`PoisonTable::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The request's hash.
    pub hash: u64,
    /// Deaths it caused.
    pub deaths: u32,
    /// Times it was refused, this one included.
    pub refused: u64,
}

/// The bounded table of hashes that were in process at a worker's death.
#[derive(Debug, Default)]
pub struct PoisonTable {
    entries: Vec<Entry>,
    /// Entries with [`Entry::armed`].
    armed: usize,
}

impl PoisonTable {
    /// Whether incoming requests need hashing: some entry refuses.
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed != 0
    }

    /// A worker of `group` died holding the request `hash` at `now_ms`;
    /// returns its deaths so far.
    pub fn book_death(&mut self, group: u32, hash: u64, now_ms: u64) -> u32 {
        self.expire(now_ms);
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.group == group && e.hash == hash)
        {
            let was_armed = e.armed();
            e.deaths = e.deaths.saturating_add(1);
            e.last_death_ms = now_ms;
            if !was_armed && e.armed() {
                self.armed += 1;
            }
            return e.deaths;
        }
        if self.entries.len() >= POISON_TABLE_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_death_ms)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                self.remove(i);
            }
        }
        let entry = Entry {
            group,
            hash,
            deaths: 1,
            last_death_ms: now_ms,
            refused: 0,
        };
        if entry.armed() {
            self.armed += 1;
        }
        self.entries.push(entry);
        1
    }

    /// Whether a request of `group` hashing to `hash` is refused at
    /// `now_ms` (counted in its entry).
    pub fn check(&mut self, group: u32, hash: u64, now_ms: u64) -> Option<Refused> {
        let i = self
            .entries
            .iter()
            .position(|e| e.group == group && e.hash == hash && e.armed())?;
        let e = self.entries.get_mut(i)?;
        if now_ms.saturating_sub(e.last_death_ms) >= POISON_TTL_MS {
            self.remove(i);
            return None;
        }
        e.refused = e.refused.saturating_add(1);
        Some(Refused {
            hash,
            deaths: e.deaths,
            refused: e.refused,
        })
    }

    /// Forgets every entry whose last death is [`POISON_TTL_MS`] old.
    pub fn expire(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.entries.len() {
            if now_ms.saturating_sub(self.entries[i].last_death_ms) >= POISON_TTL_MS {
                self.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remove(&mut self, i: usize) {
        let e = self.entries.swap_remove(i);
        if e.armed() {
            self.armed -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_death_arms_an_entry_of_its_group_only() {
        let mut t = PoisonTable::default();
        assert_eq!(t.book_death(1, 42, 0), 1);
        assert!(!t.armed());
        assert_eq!(t.check(1, 42, 1), None);
        assert_eq!(t.book_death(1, 42, 10), 2);
        assert!(t.armed());
        let r = t.check(1, 42, 20).expect("refused");
        assert_eq!((r.hash, r.deaths, r.refused), (42, 2, 1));
        assert_eq!(t.check(1, 42, 21).map(|r| r.refused), Some(2));
        assert_eq!(t.check(2, 42, 20), None, "another group");
        assert_eq!(t.check(1, 43, 20), None, "other bytes");
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let mut t = PoisonTable::default();
        t.book_death(1, 7, 0);
        t.book_death(1, 7, 100);
        assert!(t.check(1, 7, 100 + POISON_TTL_MS - 1).is_some());
        assert!(t.check(1, 7, 100 + POISON_TTL_MS).is_none());
        assert!(!t.armed());
        assert!(t.is_empty());
        t.book_death(1, 8, 0);
        t.expire(POISON_TTL_MS);
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_death() {
        let mut t = PoisonTable::default();
        t.book_death(1, 1, 0);
        t.book_death(1, 1, 1);
        assert!(t.armed());
        for h in 2..=POISON_TABLE_ENTRIES as u64 {
            t.book_death(1, h, 10 + h);
        }
        assert_eq!(t.len(), POISON_TABLE_ENTRIES);
        t.book_death(1, 9999, 1000);
        assert_eq!(t.len(), POISON_TABLE_ENTRIES);
        assert!(!t.armed(), "hash 1 had the oldest death: evicted");
        assert_eq!(t.check(1, 1, 1000), None);
    }
}
