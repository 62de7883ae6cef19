//! The key space: string values in a `HashMap`, each with an optional
//! deadline. An expired key is gone for every reader at once (checked on
//! access) and its memory is reclaimed by [`Store::sweep`], which pops
//! due deadlines from a min-heap a few at a time after each command (as
//! redis's active expiry does), so keys nobody reads again do not pile
//! up. Heap entries made stale by a later `SET`/`EXPIRE` are skipped when
//! popped, and the heap is rebuilt when stale ones outnumber live keys.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Most due deadlines [`Store::sweep`] handles per call.
pub const SWEEP_BUDGET: usize = 16;
/// The heap is rebuilt when it holds more than this many entries beyond
/// twice the number of keys with a deadline.
const HEAP_SLACK: usize = 1024;

/// One value and its deadline.
#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

/// The key space.
#[derive(Debug, Default)]
pub struct Store {
    map: HashMap<Vec<u8>, Entry>,
    deadlines: BinaryHeap<Reverse<(Instant, Vec<u8>)>>,
    /// Keys whose entry has a deadline.
    expiring: usize,
}

impl Store {
    /// The current time when some key has a deadline (the only case that
    /// needs it), else `None`.
    pub fn clock(&self) -> Option<Instant> {
        (!self.deadlines.is_empty()).then(Instant::now)
    }

    /// Drops `key` when it is past its deadline; true when it is live.
    fn live(&mut self, key: &[u8], now: Option<Instant>) -> bool {
        let Some(entry) = self.map.get(key) else {
            return false;
        };
        match (entry.expires, now) {
            (Some(at), Some(now)) if at <= now => {
                self.remove(key);
                false
            }
            _ => true,
        }
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove(key) {
            Some(entry) => {
                if entry.expires.is_some() {
                    self.expiring -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &[u8], now: Option<Instant>) -> Option<&[u8]> {
        if !self.live(key, now) {
            return None;
        }
        self.map.get(key).map(|e| e.value.as_slice())
    }

    /// Whether `key` exists.
    pub fn exists(&mut self, key: &[u8], now: Option<Instant>) -> bool {
        self.live(key, now)
    }

    /// The deadline of a live `key`: `None` when absent, `Some(None)`
    /// when it has none.
    pub fn deadline(&mut self, key: &[u8], now: Option<Instant>) -> Option<Option<Instant>> {
        if !self.live(key, now) {
            return None;
        }
        self.map.get(key).map(|e| e.expires)
    }

    /// Sets `key` to `value` with deadline `expires` (none: persistent).
    pub fn set(&mut self, key: &[u8], value: &[u8], expires: Option<Instant>) {
        let old = match self.map.get_mut(key) {
            Some(entry) => {
                entry.value.clear();
                entry.value.extend_from_slice(value);
                std::mem::replace(&mut entry.expires, expires)
            }
            None => {
                let entry = Entry {
                    value: value.to_vec(),
                    expires,
                };
                self.map.insert(key.to_vec(), entry);
                None
            }
        };
        self.note_deadline(key, old, expires);
    }

    /// Replaces the value of a live `key` in place (`INCR`); false when
    /// absent.
    pub fn overwrite(&mut self, key: &[u8], value: &[u8], now: Option<Instant>) -> bool {
        if !self.live(key, now) {
            return false;
        }
        match self.map.get_mut(key) {
            Some(entry) => {
                entry.value.clear();
                entry.value.extend_from_slice(value);
                true
            }
            None => false,
        }
    }

    /// Gives a live `key` the deadline `at`; false when absent.
    pub fn expire(&mut self, key: &[u8], at: Instant, now: Option<Instant>) -> bool {
        if !self.live(key, now) {
            return false;
        }
        let Some(entry) = self.map.get_mut(key) else {
            return false;
        };
        let old = entry.expires.replace(at);
        self.note_deadline(key, old, Some(at));
        true
    }

    fn note_deadline(&mut self, key: &[u8], old: Option<Instant>, new: Option<Instant>) {
        match (old.is_some(), new) {
            (false, Some(_)) => self.expiring += 1,
            (true, None) => self.expiring -= 1,
            _ => {}
        }
        if let Some(at) = new {
            self.deadlines.push(Reverse((at, key.to_vec())));
        }
        if self.deadlines.len() > 2 * self.expiring + HEAP_SLACK {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        self.deadlines = self
            .map
            .iter()
            .filter_map(|(k, e)| e.expires.map(|at| Reverse((at, k.clone()))))
            .collect();
    }

    /// Removes `key`; true when it was live.
    pub fn del(&mut self, key: &[u8], now: Option<Instant>) -> bool {
        self.live(key, now) && self.remove(key)
    }

    /// Live and not-yet-swept keys (redis's DBSIZE counts the same way).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
        self.deadlines.clear();
        self.expiring = 0;
    }

    /// Removes up to [`SWEEP_BUDGET`] keys whose deadline is past `now`.
    pub fn sweep(&mut self, now: Instant) {
        for _ in 0..SWEEP_BUDGET {
            match self.deadlines.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => return,
            }
            let Some(Reverse((at, key))) = self.deadlines.pop() else {
                return;
            };
            // Only when the key still has this very deadline (not a stale
            // entry of an earlier SET or EXPIRE).
            if self.map.get(&key).is_some_and(|e| e.expires == Some(at)) {
                self.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_expire_on_read_and_by_sweep() {
        let mut s = Store::default();
        let t0 = Instant::now();
        s.set(b"a", b"1", Some(t0 + Duration::from_secs(1)));
        s.set(b"b", b"2", Some(t0 + Duration::from_secs(1)));
        s.set(b"c", b"3", None);
        let later = Some(t0 + Duration::from_secs(2));
        assert_eq!(s.get(b"a", Some(t0)), Some(&b"1"[..]));
        assert_eq!(s.get(b"a", later), None);
        s.sweep(t0 + Duration::from_secs(2));
        assert_eq!(s.len(), 1);
        assert_eq!(s.expiring, 0);
    }

    #[test]
    fn a_later_set_clears_the_deadline() {
        let mut s = Store::default();
        let t0 = Instant::now();
        s.set(b"a", b"1", Some(t0 + Duration::from_secs(1)));
        s.set(b"a", b"2", None);
        s.sweep(t0 + Duration::from_secs(5));
        assert_eq!(
            s.get(b"a", Some(t0 + Duration::from_secs(5))),
            Some(&b"2"[..])
        );
        assert_eq!(s.expiring, 0);
    }

    #[test]
    fn the_heap_stays_bounded_under_repeated_expires() {
        let mut s = Store::default();
        let t0 = Instant::now();
        s.set(b"a", b"1", None);
        for i in 0..10_000u64 {
            assert!(s.expire(b"a", t0 + Duration::from_secs(100 + i), Some(t0)));
        }
        assert!(s.deadlines.len() <= 2 + HEAP_SLACK + 1);
        assert_eq!(s.expiring, 1);
    }
}
