//! The driven placement's executor: the requests' tasks in reused slots,
//! polled by `spp_poll` itself.
//!
//! A tokio task per request costs an aligned allocation of its cell (not
//! served by glibc's per-thread cache), moves of the whole future into and
//! out of it, and the task list's and reference counts' atomics: measured
//! on the async relay, about a quarter of the worker's user time. Here a
//! request's task is one small box (its plugin future sits on a pooled
//! block, see `pooled`) in a slot of a per-thread table; each slot has a
//! waker of its own, made once and kept for every task the slot carries,
//! that queues the slot and wakes whoever runs the executor (the
//! `spp_poll` that runs it, inside the runtime's `block_on`). A stale wake
//! (a resource that kept the waker of a task since ended) only polls the
//! slot's next task once for nothing, which futures allow.
//!
//! [`Executor::run`] polls the slots queued when it starts, each once; a
//! task woken meanwhile waits for the next run. All of them are polled
//! inside one `block_on` poll, so the driven placement wraps each in
//! `tokio::task::unconstrained`: tokio's coop budget (128 operations per
//! task poll) would otherwise be shared by every task of the run. A TCP flow's task is known
//! by flow (the host runs a flow's requests one at a time), so
//! `spp_flow_closed` drops it in place ([`Executor::cancel_flow`]).
//! Everything but the wakers runs on the worker's thread; the wakers may
//! be woken from any thread (a `spawn_blocking` pool, a client's own
//! thread).

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};

/// One request's task.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The queue of woken slots and who to wake for it, shared with the slot
/// wakers.
#[derive(Default)]
struct Ready {
    queue: Mutex<Vec<u32>>,
    runner: Mutex<Option<Waker>>,
}

/// Locks `m`; a poisoned lock (a panic elsewhere while holding it, which
/// only a bug in this module could cause) is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A slot's waker.
struct SlotWaker {
    index: u32,
    /// Queued and not yet polled: a second wake adds nothing.
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl SlotWaker {
    /// Queues the slot unless it is queued already; `true` if it was not.
    fn queue(&self) -> bool {
        if self.queued.swap(true, Ordering::AcqRel) {
            return false;
        }
        lock(&self.ready.queue).push(self.index);
        true
    }
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queue() {
            let runner = lock(&self.ready.runner).clone();
            if let Some(runner) = runner {
                runner.wake();
            }
        }
    }
}

/// One slot: its task (none while free or being polled) and its waker
/// (behind an `Rc`: each poll takes a reference without touching the
/// waker's atomic count).
struct Slot {
    task: Option<Task>,
    flow: Option<u64>,
    own: Arc<SlotWaker>,
    waker: Rc<Waker>,
}

/// The requests' tasks of this thread.
#[derive(Default)]
pub(crate) struct Executor {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// TCP flow → the slot of its task.
    flows: RefCell<FxHashMap<u64, u32>>,
    ready: Arc<Ready>,
    /// The batch being run (a reused buffer).
    batch: RefCell<Vec<u32>>,
}

impl Executor {
    /// Adds `task` (of TCP flow `flow`, if any), queued for its first poll.
    pub(crate) fn spawn(&self, flow: Option<u64>, task: Task) {
        let reused = self.free.borrow_mut().pop();
        let mut slots = self.slots.borrow_mut();
        let index = match reused {
            Some(index) => index,
            None => {
                let index = u32::try_from(slots.len()).unwrap_or(u32::MAX);
                let own = Arc::new(SlotWaker {
                    index,
                    queued: AtomicBool::new(false),
                    ready: self.ready.clone(),
                });
                slots.push(Slot {
                    task: None,
                    flow: None,
                    waker: Rc::new(Waker::from(own.clone())),
                    own,
                });
                index
            }
        };
        let Some(slot) = slots.get_mut(index as usize) else {
            return;
        };
        slot.task = Some(task);
        slot.flow = flow;
        slot.own.queue();
        if let Some(flow) = flow {
            self.flows.borrow_mut().insert(flow, index);
        }
    }

    /// Polls each task queued now once, registering `cx`'s waker to be
    /// woken when another is queued. Returns how many it polled.
    pub(crate) fn run(&self, cx: &Context<'_>) -> usize {
        {
            let mut runner = lock(&self.ready.runner);
            if !runner.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *runner = Some(cx.waker().clone());
            }
        }
        let mut batch = std::mem::take(&mut *self.batch.borrow_mut());
        std::mem::swap(&mut *lock(&self.ready.queue), &mut batch);
        let polled = batch.len();
        for &index in &batch {
            let taken = self.slots.borrow_mut().get_mut(index as usize).map(|s| {
                s.own.queued.store(false, Ordering::Release);
                (s.task.take(), s.waker.clone())
            });
            let Some((Some(mut task), waker)) = taken else {
                continue;
            };
            // Polled outside the table's borrow: the task may reach the
            // host, which may call back into the plugin.
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                drop(task);
                self.release(index);
            } else if let Some(slot) = self.slots.borrow_mut().get_mut(index as usize) {
                slot.task = Some(task);
            }
        }
        batch.clear();
        *self.batch.borrow_mut() = batch;
        polled
    }

    /// Frees slot `index` (its task ended or was dropped).
    fn release(&self, index: u32) {
        let flow = self
            .slots
            .borrow_mut()
            .get_mut(index as usize)
            .and_then(|s| s.flow.take());
        if let Some(flow) = flow {
            let mut flows = self.flows.borrow_mut();
            if flows.get(&flow) == Some(&index) {
                flows.remove(&flow);
            }
        }
        self.free.borrow_mut().push(index);
    }

    /// Drops `flow`'s task where it is (its request completes with a
    /// close as it drops); how many (0 or 1).
    pub(crate) fn cancel_flow(&self, flow: u64) -> usize {
        let Some(index) = self.flows.borrow_mut().remove(&flow) else {
            return 0;
        };
        let task = self
            .slots
            .borrow_mut()
            .get_mut(index as usize)
            .and_then(|s| s.task.take());
        match task {
            Some(task) => {
                drop(task);
                self.release(index);
                1
            }
            None => 0,
        }
    }

    /// Drops every task (shutdown); their requests complete as they drop.
    pub(crate) fn clear(&self) {
        let tasks: Vec<Task> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(|s| s.task.take())
            .collect();
        drop(tasks);
        self.flows.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::task::Poll;

    /// A task that is pending until `open`, counting its polls.
    fn gate(open: Rc<Cell<bool>>, polls: Rc<Cell<u32>>, wakers: Rc<RefCell<Vec<Waker>>>) -> Task {
        Box::pin(std::future::poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            if open.get() {
                Poll::Ready(())
            } else {
                wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        }))
    }

    #[test]
    fn a_task_runs_when_spawned_and_again_only_when_woken() {
        let exec = Executor::default();
        let (open, polls, wakers) = (Rc::new(Cell::new(false)), Rc::default(), Rc::default());
        exec.spawn(
            Some(9),
            gate(open.clone(), Rc::clone(&polls), Rc::clone(&wakers)),
        );
        let cx = Context::from_waker(Waker::noop());
        assert_eq!(exec.run(&cx), 1);
        assert_eq!(exec.run(&cx), 0, "not woken: not polled");
        open.set(true);
        let woken = wakers.borrow_mut().pop().unwrap();
        woken.wake_by_ref();
        woken.wake();
        assert_eq!(exec.run(&cx), 1, "two wakes, one poll");
        assert_eq!(polls.get(), 2);
        assert_eq!(exec.free.borrow().len(), 1, "slot freed");
        assert!(exec.flows.borrow().is_empty());
    }

    #[test]
    fn a_closed_flow_drops_its_task_in_place_and_the_slot_is_reused() {
        let exec = Executor::default();
        let (open, polls, wakers) = (Rc::new(Cell::new(false)), Rc::default(), Rc::default());
        exec.spawn(
            Some(4),
            gate(open.clone(), Rc::clone(&polls), Rc::clone(&wakers)),
        );
        let cx = Context::from_waker(Waker::noop());
        exec.run(&cx);
        assert_eq!(exec.cancel_flow(4), 1);
        assert_eq!(exec.cancel_flow(4), 0);
        exec.spawn(None, gate(open, Rc::clone(&polls), Rc::clone(&wakers)));
        assert_eq!(exec.slots.borrow().len(), 1, "the slot is reused");
        // The old task's waker wakes the new task: one spurious poll.
        wakers.borrow_mut().remove(0).wake();
        assert_eq!(exec.run(&cx), 1);
    }
}
