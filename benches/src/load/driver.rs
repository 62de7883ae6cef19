//! What every connection driver ([`tcp`](super::tcp),
//! [`short`](super::short), [`udp`](super::udp)) of one load thread
//! shares: the [`ThreadCtx`], and the [`Feed`] that decides when the next
//! request is due (closed loop: when a slot frees up; open loop: at the
//! next intended send time).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::Codec;
use super::record::Recorder;
use super::schedule::{Clock, Pacer};
use super::spec::Load;
use super::timer::Timer;

/// Receive buffers start at (and read in chunks of) this many bytes.
pub const READ_CHUNK: usize = 64 * 1024;
/// Wait between failed connection attempts.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Open loop: most requests generated in one pass of a driver's loop
/// (the rest follow on the next pass, without waiting).
const MAX_BURST: usize = 1024;
/// Open loop: most requests outstanding on one connection; requests due
/// beyond this are counted as timeouts instead of queued without bound.
const MAX_OPEN_OUTSTANDING: usize = 1 << 20;

/// One load thread's shared state (single-threaded: `Rc`, `RefCell`).
pub struct ThreadCtx {
    /// The target address.
    pub addr: SocketAddr,
    /// Requests and response rules.
    pub codec: Arc<Codec>,
    /// The run's phases.
    pub clock: Clock,
    /// The thread's outcomes. Borrowed briefly, never across an await.
    pub recorder: RefCell<Recorder>,
}

/// When a connection's next request is due.
#[derive(Debug)]
pub enum Feed {
    /// Keep this many requests outstanding.
    Closed {
        /// Requests outstanding per connection.
        in_flight: usize,
    },
    /// Send on this schedule.
    Open(Pacer),
}

impl Feed {
    /// The feed for connection `index` of `connections` under `load`.
    pub fn new(load: Load, clock: &Clock, index: usize, connections: usize) -> Self {
        match load {
            Load::Closed { in_flight } => Feed::Closed { in_flight },
            Load::Open { rate } => {
                let per_connection = rate / connections as f64;
                let phase = index as f64 / connections as f64;
                Feed::Open(Pacer::new(clock.start, per_connection, phase))
            }
        }
    }

    /// Calls `send(sent)` for every request due at `now` (with the time
    /// its latency counts from), given `outstanding` requests on the
    /// connection. Open-loop requests whose timeout passed before they
    /// could be sent are counted as timeouts instead.
    pub fn due(
        &mut self,
        ctx: &ThreadCtx,
        outstanding: usize,
        now: Instant,
        mut send: impl FnMut(Instant),
    ) {
        let clock = &ctx.clock;
        match self {
            Feed::Closed { in_flight } => {
                if clock.sending(now) {
                    for _ in outstanding..*in_flight {
                        send(now);
                    }
                }
            }
            Feed::Open(pacer) => {
                let mut queued = outstanding;
                for _ in 0..MAX_BURST {
                    let intended = pacer.next();
                    if intended > now || !clock.sending(intended) {
                        break;
                    }
                    pacer.advance();
                    if intended + clock.timeout <= now || queued >= MAX_OPEN_OUTSTANDING {
                        ctx.recorder.borrow_mut().timeout(intended);
                    } else {
                        ctx.recorder.borrow_mut().send_lag(intended, now);
                        send(intended);
                        queued += 1;
                    }
                }
            }
        }
    }

    /// The wake-up timer this feed needs: precise for open loop (sends on
    /// time), coarse for closed loop (timeouts only).
    pub fn timer(&self, at: Instant) -> Timer {
        match self {
            Feed::Closed { .. } => Timer::coarse(at),
            Feed::Open(_) => Timer::precise(at),
        }
    }

    /// When the feed next needs the driver awake, if ever.
    pub fn next_wake(&self, clock: &Clock) -> Option<Instant> {
        match self {
            Feed::Closed { .. } => None,
            Feed::Open(pacer) => Some(pacer.next()).filter(|&t| clock.sending(t)),
        }
    }

    /// The driver stops: open-loop requests of the measured window that
    /// were never sent (the connection was lost) count as timeouts.
    pub fn abandon(&mut self, ctx: &ThreadCtx) {
        if let Feed::Open(pacer) = self {
            let clock = &ctx.clock;
            let unsent = pacer.skip_until(clock.measure_from, clock.measure_until);
            if unsent > 0 {
                ctx.recorder.borrow_mut().timeouts_unsent(unsent);
            }
        }
    }
}

/// The earliest of the given wake-up times, and never after the hard stop.
pub fn earliest(clock: &Clock, times: impl IntoIterator<Item = Option<Instant>>) -> Instant {
    times
        .into_iter()
        .flatten()
        .fold(clock.hard_stop(), Instant::min)
}
