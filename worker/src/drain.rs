//! When a draining worker may stop taking requests: the proxy has promised
//! to push nothing more to it. That is the case once the proxy has
//! acknowledged this worker's drain
//! ([`WorkerSlot::drain_acked`](spp_ipc::pair::WorkerSlot::drain_acked): it
//! saw `Draining` at its scan and stopped pushing), or once there is no
//! proxy to push:
//! its state says `Down` or `Empty`, or its pid is gone. The pid is looked
//! at with `kill(pid, 0)` at most every [`PROXY_CHECK_INTERVAL`], not on
//! every loop turn. The serve loop still empties its request ring after
//! that (see `serve`), bounded by the launch spec's `drain_timeout_ms`.
//!
//! With several proxy shards ([`DrainWatch::for_pairs`]) each pair is
//! watched on its own (its ack, its shard's proxy region and pid), and the
//! worker is released once every pair is.

use crate::attach::Shared;
use spp_ipc::layout::{ProcessState, ProxyRegion, ProxyState};
use spp_ipc::pair::WorkerSlot;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a draining worker with nothing to do looks at the drain ack
/// (the proxy stores it without ringing the worker's doorbell).
pub const DRAIN_POLL: Duration = Duration::from_millis(1);
/// `kill(proxy_pid, 0)` at most this often.
pub const PROXY_CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// Why the proxy will push nothing more to this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// The proxy acknowledged our generation's drain.
    Acked,
    /// The proxy region says no proxy runs.
    ProxyStopped(ProxyState),
    /// The proxy's pid no longer exists.
    ProxyGone(u32),
}

impl fmt::Display for Released {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Released::Acked => f.write_str("the proxy acknowledged the drain"),
            Released::ProxyStopped(state) => write!(f, "the proxy is {state:?}"),
            Released::ProxyGone(pid) => write!(f, "the proxy (pid {pid}) is gone"),
        }
    }
}

/// Watches the drain handshake for one worker generation on one pair.
pub struct DrainWatch {
    proxy: &'static ProxyRegion,
    slot: WorkerSlot<'static>,
    /// The pid last checked, when, and whether it was alive.
    pid_check: Option<(u32, Instant, bool)>,
}

/// Watches the drain handshake on every pair of a worker.
pub struct PairsDrainWatch {
    pairs: Vec<DrainWatch>,
}

impl PairsDrainWatch {
    /// `Some(why)` once no proxy shard will push anything more, as of
    /// `now`: every pair released (`why` is the first pair's reason that
    /// is not an ack, else `Acked`).
    pub fn released(&mut self, now: Instant) -> Option<Released> {
        let mut why = Released::Acked;
        for pair in &mut self.pairs {
            match pair.released(now)? {
                Released::Acked => {}
                other if why == Released::Acked => why = other,
                _ => {}
            }
        }
        Some(why)
    }
}

impl DrainWatch {
    /// A watch for the worker holding `slot` on shard 0's pair of `shared`.
    #[cfg(test)]
    pub fn new(shared: &'static Shared, slot: WorkerSlot<'static>) -> Self {
        DrainWatch {
            proxy: &shared.proxy,
            slot,
            pid_check: None,
        }
    }

    /// A watch over every pair: `slots[k]` holds pair `k` of `shared`.
    pub fn for_pairs(shared: &'static Shared, slots: &[WorkerSlot<'static>]) -> PairsDrainWatch {
        PairsDrainWatch {
            pairs: slots
                .iter()
                .enumerate()
                .map(|(k, &slot)| DrainWatch {
                    proxy: shared.pair_at(k).1,
                    slot,
                    pid_check: None,
                })
                .collect(),
        }
    }

    /// `Some(why)` once the proxy will push nothing more, as of `now`.
    /// A caller that sees `Acked` and then looks at the request ring sees
    /// every request the proxy pushed.
    pub fn released(&mut self, now: Instant) -> Option<Released> {
        if self.slot.drain_acked() {
            return Some(Released::Acked);
        }
        let proxy = self.proxy.header();
        let state = ProxyState::from_raw(proxy.proxy_state.load(Ordering::Acquire));
        if matches!(state, ProcessState::Down | ProcessState::Empty) {
            return Some(Released::ProxyStopped(state));
        }
        let pid = proxy.proxy_pid.load(Ordering::Acquire);
        let alive = match self.pid_check {
            Some((checked, at, alive))
                if checked == pid && now.saturating_duration_since(at) < PROXY_CHECK_INTERVAL =>
            {
                alive
            }
            _ => {
                let alive = pid_alive(pid);
                self.pid_check = Some((pid, now, alive));
                alive
            }
        };
        (!alive).then_some(Released::ProxyGone(pid))
    }
}

/// Whether process `pid` exists. 0 (not published yet) and pids that do
/// not fit `pid_t` cannot be checked and count as alive (the proxy state
/// decides then).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists but belongs to someone else.
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::tests::setup_slot;

    #[test]
    fn the_ack_of_our_generation_releases() {
        let (shared, _r, mut proxy_end, slot) = setup_slot(None);
        let proxy = shared.proxy_header();
        proxy
            .proxy_state
            .store(ProcessState::Ready as u32, Ordering::Release);
        proxy.proxy_pid.store(std::process::id(), Ordering::Release);
        let mut watch = DrainWatch::new(shared, slot);
        let now = Instant::now();
        assert_eq!(watch.released(now), None, "a live proxy, no ack");
        proxy_end.ack_drain(slot.generation() + 1);
        assert_eq!(watch.released(now), None, "another generation's ack");
        proxy_end.ack_drain(slot.generation());
        assert_eq!(watch.released(now), Some(Released::Acked));
    }

    #[test]
    fn a_stopped_or_vanished_proxy_releases() {
        let (shared, _r, _c, slot) = setup_slot(None);
        let proxy = shared.proxy_header();
        let mut watch = DrainWatch::new(shared, slot);
        let now = Instant::now();
        assert_eq!(
            watch.released(now),
            Some(Released::ProxyStopped(ProcessState::Empty)),
            "no proxy ever ran"
        );
        proxy
            .proxy_state
            .store(ProcessState::Draining as u32, Ordering::Release);
        proxy.proxy_pid.store(std::process::id(), Ordering::Release);
        assert_eq!(watch.released(now), None, "a draining proxy still acks");
        proxy
            .proxy_state
            .store(ProcessState::Down as u32, Ordering::Release);
        assert_eq!(
            watch.released(now),
            Some(Released::ProxyStopped(ProcessState::Down))
        );

        proxy
            .proxy_state
            .store(ProcessState::Ready as u32, Ordering::Release);
        let dead = reaped_pid();
        proxy.proxy_pid.store(dead, Ordering::Release);
        assert_eq!(
            watch.released(now),
            Some(Released::ProxyGone(dead)),
            "a changed pid is checked at once"
        );
    }

    #[test]
    fn the_pid_is_checked_at_most_every_interval() {
        let (shared, _r, _c, slot) = setup_slot(None);
        let proxy = shared.proxy_header();
        proxy
            .proxy_state
            .store(ProcessState::Ready as u32, Ordering::Release);
        proxy.proxy_pid.store(std::process::id(), Ordering::Release);
        let mut watch = DrainWatch::new(shared, slot);
        let start = Instant::now();
        assert_eq!(watch.released(start), None);
        let checked = watch.pid_check.map(|(_, at, _)| at);
        assert_eq!(watch.released(start + PROXY_CHECK_INTERVAL / 2), None);
        assert_eq!(watch.pid_check.map(|(_, at, _)| at), checked, "cached");
        assert_eq!(watch.released(start + PROXY_CHECK_INTERVAL), None);
        assert_eq!(
            watch.pid_check.map(|(_, at, _)| at),
            Some(start + PROXY_CHECK_INTERVAL),
            "checked again"
        );
    }

    #[test]
    fn pids_that_cannot_be_checked_count_as_alive() {
        assert!(pid_alive(0));
        assert!(pid_alive(u32::MAX));
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(reaped_pid()));
    }

    /// The pid of a child that has exited and been reaped.
    fn reaped_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }
}
