//! Slot liveness: which worker, if any, a slot serves right now.
//!
//! A slot takes requests only while a worker we *adopted* runs in it: one
//! whose state is `Ready`, whose `worker_generation` we have not seen die,
//! and whose pid we hold a pidfd for (registered in the poll, so death is
//! noticed at once; where pidfd_open is unavailable, death shows through
//! the slot's state and generation, checked every scan).
//!
//! Drain handshake: a worker leaving service sets its state to `Draining`
//! and rings the proxy's doorbell. At the next scan its slot stops taking
//! requests; the proxy publishes what it pushed there and stores
//! `drain_ack` = that worker's generation (`Slot::ack_drain`, through
//! the pair end), after which it pushes nothing more to it. The
//! worker exits once it has seen the ack and emptied its ring.

use super::slot::Slot;
use crate::token::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry};
use spp_ipc::layout::WorkerState;
use spp_ipc::pair::RequestTag;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The worker we currently serve through a slot.
#[derive(Debug)]
struct Live {
    pid: u32,
    generation: u64,
    /// The stamp of every request pushed.
    tag: RequestTag,
    /// Readable once the worker exits (`None` if pidfd_open failed).
    pidfd: Option<OwnedFd>,
    /// State is `Ready` (a `Draining` worker keeps what it has, takes nothing).
    accepting: bool,
}

/// A slot's adopted worker and the last generation seen die.
#[derive(Debug, Default)]
pub struct Liveness {
    live: Option<Live>,
    /// A generation whose worker we saw die; never adopted again.
    dead_generation: Option<u64>,
    /// The hash of the request the retired worker died processing, read
    /// at retirement (`ProxyEnd::died_holding`), before a successor can be
    /// adopted in the same scan and overwrite `in_process_seq` with one of
    /// its own requests; taken by the poison booking.
    died_holding: Option<u64>,
}

impl Liveness {
    /// Whether an adopted worker runs here and is `Ready`.
    #[inline]
    pub fn accepting(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.accepting)
    }

    /// The generation tag to stamp requests with; `None` without an
    /// adopted worker.
    #[inline]
    pub fn tag(&self) -> Option<RequestTag> {
        self.live.as_ref().map(|l| l.tag)
    }

    /// Whether a worker is adopted here.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }
}

impl Slot {
    /// Looks at the slot's shared state: adopts a worker that became
    /// `Ready`, notices a replaced or stopped one, acknowledges a drain.
    /// `s` is the slot's index (its pidfd's token). Returns whether the
    /// worker we served is gone.
    pub(super) fn scan(&mut self, s: usize, registry: &Registry) -> bool {
        let state = self.end().worker_state();
        let generation = self.end().worker_generation();
        let mut gone = false;
        if let Some(live) = &mut self.liveness.live {
            let replaced = live.generation != generation;
            if replaced
                || matches!(
                    state,
                    WorkerState::Down | WorkerState::Empty | WorkerState::Starting
                )
            {
                tracing::warn!(
                    group = self.group,
                    worker = self.index,
                    pid = live.pid,
                    "worker {}; failing its requests",
                    if replaced { "was replaced" } else { "is down" }
                );
                gone = self.retire(registry);
            } else {
                live.accepting = state == WorkerState::Ready;
            }
        }
        // The state is read again after the generation: a Draining worker
        // may be reaped and succeeded between the two loads above, and the
        // ack must never name the successor's generation (it would end that
        // worker's own drain early). The controller writes Down before a
        // successor starts, so Draining twice means the same worker.
        let still_draining = self.end().worker_state() == WorkerState::Draining;
        if state == WorkerState::Draining && still_draining {
            // Either the worker we serve (no longer accepting, above) or
            // one we never pushed to (never adopted, or retired above).
            self.ack_drain(generation);
        }
        if self.liveness.live.is_none()
            && state == WorkerState::Ready
            && self.liveness.dead_generation != Some(generation)
        {
            self.adopt(s, generation, registry);
        }
        gone
    }

    fn adopt(&mut self, s: usize, generation: u64, registry: &Registry) {
        let (group, index) = (self.group, self.index);
        let pid = self.end().worker_pid();
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                tracing::warn!(group, worker = index, pid, "worker says Ready but is gone");
                self.liveness.dead_generation = Some(generation);
                return;
            }
            Err(e) => {
                // Old kernel or a sandbox: serve it anyway and notice its
                // death through its state (the controller writes Down).
                tracing::warn!(
                    group,
                    worker = index,
                    pid,
                    "cannot watch worker ({e}); relying on its state"
                );
                None
            }
        };
        if self.end().worker_generation() != generation
            || self.end().worker_state() != WorkerState::Ready
        {
            return; // It changed under us; the next scan decides.
        }
        if let Some(fd) = &pidfd {
            let raw = fd.as_raw_fd();
            let token = Source::Pidfd(s).token();
            if let Err(e) = registry.register(&mut SourceFd(&raw), token, Interest::READABLE) {
                tracing::warn!(
                    group,
                    worker = index,
                    pid,
                    "cannot poll the worker's pidfd: {e}"
                );
                return;
            }
        }
        tracing::info!(group, worker = index, pid, generation, "worker ready");
        self.liveness.live = Some(Live {
            pid,
            generation,
            tag: RequestTag::of(generation),
            pidfd,
            accepting: true,
        });
    }

    /// The slot's pidfd fired: its worker exited. Returns whether a worker
    /// was live there (the caller then drains and fails the slot).
    pub(super) fn exited(&mut self, registry: &Registry) -> bool {
        let Some(live) = &self.liveness.live else {
            return false;
        };
        // The event may be a stale one of a predecessor retired earlier in
        // this turn; only the current worker's own pidfd counts.
        if !live.pidfd.as_ref().is_some_and(fd_readable) {
            return false;
        }
        tracing::warn!(
            group = self.group,
            worker = self.index,
            pid = live.pid,
            "worker exited"
        );
        self.retire(registry)
    }

    fn retire(&mut self, registry: &Registry) -> bool {
        let Some(live) = self.liveness.live.take() else {
            return false;
        };
        if let Some(fd) = &live.pidfd {
            // Best effort: closing the pidfd below removes it from epoll anyway.
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        self.liveness.dead_generation = Some(live.generation);
        self.liveness.died_holding = self.end().died_holding();
        true
    }

    /// The hash [`Self::retire`] read for the worker it retired last, once.
    pub(super) fn take_died_holding(&mut self) -> Option<u64> {
        self.liveness.died_holding.take()
    }

    /// Whether nothing more can come out of this slot without new requests:
    /// its response ring is empty and its worker is asleep, gone, or has
    /// been quiet for a while (`waited`). Used to finish a drain.
    pub(super) fn settled(&self, waited: bool) -> bool {
        if self.has_responses() {
            return false;
        }
        !self.liveness.is_live() || waited || self.end().worker_sleeping()
    }
}

/// Whether `fd` is readable right now (a pidfd: its process exited).
fn fd_readable(fd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & libc::POLLIN != 0 }
}

/// `pidfd_open(pid, 0)`: an fd that becomes readable when `pid` exits.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad worker pid {pid}"),
            )
        })?;
    // SAFETY: plain syscall with a pid and no flags; returns a new fd
    // (close-on-exec) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own; it fits in a c_int.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}
