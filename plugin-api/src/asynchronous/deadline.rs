//! Task deadlines without a timer per task.
//!
//! A tokio timer per request costs a timer-wheel insert and remove under
//! the time driver's lock, and, whenever the new deadline is the wheel's
//! earliest, a wake-up of the runtime's driver (an eventfd write): measured
//! on the async relay as about one syscall in five requests. The group's
//! `task_timeout` is the same for every task and only needs to fire
//! roughly on time (the host expires a request `SPP_TASK_GRACE_MS` after
//! it anyway), so deadlines are kept in a per-thread book instead: a
//! [`Bounded`] future takes a slot at its first poll and gives it back
//! when it ends, and [`scan`], called by whoever drives the runtime (each
//! `spp_poll`, the plugin thread's ticker), marks the tasks past their
//! deadline and wakes them; a marked task ends with `None` at its next
//! poll (its future is dropped). A scan runs at most every
//! [`scan_every`] (a twentieth of the timeout, within [`MIN_SCAN`] and
//! [`MAX_SCAN`]), so a task fails at most that late; a scan looks at every
//! slot, and there are at most as many as tasks ran at once (bounded by
//! the group's `max_in_flight`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A scan's period is the timeout divided by this.
const SCAN_FRACTION: u32 = 20;
/// The shortest period between two scans.
pub(crate) const MIN_SCAN: Duration = Duration::from_millis(1);
/// The longest period between two scans.
pub(crate) const MAX_SCAN: Duration = Duration::from_millis(100);

/// How often the deadlines of tasks bounded by `timeout` are looked at.
pub(crate) fn scan_every(timeout: Duration) -> Duration {
    (timeout / SCAN_FRACTION).clamp(MIN_SCAN, MAX_SCAN)
}

/// One task's deadline.
struct Entry {
    deadline: Instant,
    in_use: bool,
    expired: bool,
    waker: Option<Waker>,
}

/// This thread's deadlines.
#[derive(Default)]
struct Book {
    entries: Vec<Entry>,
    free: Vec<usize>,
    live: usize,
    /// The shortest scan period of the tasks registered so far.
    every: Option<Duration>,
    next_scan: Option<Instant>,
    /// The time of the last [`scan`] call: a task's deadline counts from
    /// it (a scan period off at most), saving a clock read per task.
    now: Option<Instant>,
}

thread_local! {
    static BOOK: RefCell<Book> = RefCell::new(Book::default());
    /// Whether a driver scans this thread's book ([`drive`]).
    static SCANNED: Cell<bool> = const { Cell::new(false) };
}

/// Says that this thread's book is scanned by its driver (each
/// `spp_poll` of the driven placement), so [`bound`] may use it.
pub(crate) fn drive() {
    SCANNED.with(|s| s.set(true));
}

/// `fut` bounded by `timeout` (`None` when it passed it): in the book when
/// a driver scans this thread's book (no tokio timer: on time to within
/// [`scan_every`]), else by a tokio timer (the plugin thread, the
/// synchronous fallback, code outside a request).
pub(crate) async fn bound<F: Future>(timeout: Duration, fut: F) -> Option<F::Output> {
    if SCANNED.with(Cell::get) {
        Bounded::new(fut, timeout).await
    } else {
        tokio::time::timeout(timeout, fut).await.ok()
    }
}

/// Takes a slot for a task that must end `timeout` from now (as of the
/// last scan call, if any).
fn register(timeout: Duration) -> usize {
    BOOK.with(|book| {
        let mut book = book.borrow_mut();
        let now = *book.now.get_or_insert_with(Instant::now);
        let every = scan_every(timeout);
        book.every = Some(book.every.map_or(every, |known| known.min(every)));
        if book.next_scan.is_none() {
            book.next_scan = Some(now + every);
        }
        book.live += 1;
        let entry = Entry {
            deadline: now + timeout,
            in_use: true,
            expired: false,
            waker: None,
        };
        match book.free.pop() {
            Some(slot) => {
                book.entries[slot] = entry;
                slot
            }
            None => {
                book.entries.push(entry);
                book.entries.len() - 1
            }
        }
    })
}

/// Gives slot `slot` back.
fn release(slot: usize) {
    let _ = BOOK.try_with(|book| {
        let mut book = book.borrow_mut();
        if let Some(entry) = book.entries.get_mut(slot).filter(|e| e.in_use) {
            entry.in_use = false;
            entry.waker = None;
            book.live -= 1;
            book.free.push(slot);
        }
    });
}

/// Whether slot `slot` passed its deadline (a scan said so); else keeps
/// `waker` to wake when it does.
fn expired_or_wait(slot: usize, waker: &Waker) -> bool {
    BOOK.with(|book| {
        let mut book = book.borrow_mut();
        let Some(entry) = book.entries.get_mut(slot) else {
            return false;
        };
        if entry.expired {
            return true;
        }
        match &entry.waker {
            Some(known) if known.will_wake(waker) => {}
            _ => entry.waker = Some(waker.clone()),
        }
        false
    })
}

/// Marks the tasks past their deadline at `now` and wakes them, if a scan
/// is due. Cheap when none is. Call it often with the current time (each
/// `spp_poll` does): tasks registered until the next call count their
/// deadline from `now`.
pub(crate) fn scan(now: Instant) {
    let wakers: Vec<Waker> = BOOK.with(|book| {
        let mut book = book.borrow_mut();
        book.now = Some(now);
        match book.next_scan {
            Some(at) if now >= at => {}
            _ => return Vec::new(),
        }
        if book.live == 0 {
            book.next_scan = None;
            return Vec::new();
        }
        book.next_scan = book.every.map(|every| now + every);
        book.entries
            .iter_mut()
            .filter(|e| e.in_use && !e.expired && e.deadline <= now)
            .filter_map(|e| {
                e.expired = true;
                e.waker.take()
            })
            .collect()
    });
    // Woken outside the borrow: a waker may poll at once (not tokio's).
    for waker in wakers {
        waker.wake();
    }
}

/// How long until the next scan is due, while tasks have deadlines.
pub(crate) fn next_scan_in(now: Instant) -> Option<Duration> {
    BOOK.with(|book| {
        let book = book.borrow();
        (book.live > 0)
            .then_some(book.next_scan)
            .flatten()
            .map(|at| at.saturating_duration_since(now))
    })
}

/// `inner` bounded by a deadline `timeout` after its first poll: `None`
/// once a [`scan`] found it past that.
pub(crate) struct Bounded<F> {
    inner: F,
    timeout: Duration,
    slot: Option<usize>,
}

impl<F> Bounded<F> {
    /// `inner`, due within `timeout`.
    pub(crate) fn new(inner: F, timeout: Duration) -> Self {
        Bounded {
            inner,
            timeout,
            slot: None,
        }
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of
        // `self` nor handed out unpinned; `timeout` and `slot` are plain
        // values, touched in place.
        let this = unsafe { self.get_unchecked_mut() };
        let timeout = this.timeout;
        let slot = *this.slot.get_or_insert_with(|| register(timeout));
        if expired_or_wait(slot, cx.waker()) {
            this.slot = None;
            release(slot);
            return Poll::Ready(None);
        }
        // SAFETY: see above: `inner` stays where it is.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        match inner.poll(cx) {
            Poll::Ready(out) => {
                this.slot = None;
                release(slot);
                Poll::Ready(Some(out))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for Bounded<F> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            release(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn a_task_past_its_deadline_ends_at_the_first_scan_after_it() {
        let waker = noop();
        let mut cx = Context::from_waker(&waker);
        let mut task = Box::pin(Bounded::new(std::future::pending::<()>(), MIN_SCAN));
        assert!(task.as_mut().poll(&mut cx).is_pending());
        let start = Instant::now();
        let bound = start + Duration::from_secs(5);
        while task.as_mut().poll(&mut cx).is_pending() && Instant::now() < bound {
            scan(Instant::now());
            std::thread::yield_now();
        }
        assert!(Instant::now() < bound, "expired by a scan");
        drop(task);
        assert_eq!(BOOK.with(|b| b.borrow().live), 0, "slot given back");
    }

    #[test]
    fn a_finished_or_dropped_task_gives_its_slot_back() {
        let waker = noop();
        let mut cx = Context::from_waker(&waker);
        let mut done = Box::pin(Bounded::new(std::future::ready(7), Duration::from_secs(1)));
        assert_eq!(done.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
        let mut waiting = Box::pin(Bounded::new(
            std::future::pending::<()>(),
            Duration::from_secs(1),
        ));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(BOOK.with(|b| b.borrow().live), 1);
        assert!(next_scan_in(Instant::now()).is_some());
        drop(waiting);
        assert_eq!(BOOK.with(|b| b.borrow().live), 0);
        assert_eq!(next_scan_in(Instant::now()), None);
    }

    #[test]
    fn the_scan_period_is_a_twentieth_of_the_timeout_within_bounds() {
        assert_eq!(
            scan_every(Duration::from_secs(1)),
            Duration::from_millis(50)
        );
        assert_eq!(scan_every(Duration::from_secs(60)), MAX_SCAN);
        assert_eq!(scan_every(Duration::from_millis(5)), MIN_SCAN);
    }
}
