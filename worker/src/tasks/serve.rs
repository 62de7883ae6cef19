//! The worker loop in async mode. Per turn: expire what is overdue, drive
//! the plugin's `spp_poll` once without waiting (when it has one), take up
//! to `BATCH_MAX` requests per pair while the [`Runtime`] has room (each
//! admitted request's `spp_process` runs in place; expired and other
//! generations' requests are completed at once, as in plain mode), forward
//! deferred replies and completions, apply every completion, release the
//! request rings and publish the response ring once.
//!
//! With nothing to do: spin as plain mode does, then announce sleep on
//! every pair and block, for at most a heartbeat and at most until the
//! next expiry, either in `spp_poll(bell, wait_ms)` (the plugin waits on
//! its own I/O and timers and on the doorbell; the bell is drained after
//! it returns) or, without `spp_poll` or once it answered
//! `SPP_ERR_UNSUPPORTED` (it is then never called again), on the doorbell
//! itself. At `max_in_flight` the ring's requests are not work (they wait
//! there): only completions, signals and expiry are.
//!
//! A stop drains like micro-thread mode: serving, driving `spp_poll` and
//! forwarding completions until nothing is queued and nothing is in
//! flight, within `drain_timeout`; then `spp_fini`. Requests still
//! deferred then are left to the proxy, which fails them when the worker
//! exits.

use super::runtime::Runtime;
use crate::drain::{DrainWatch, DRAIN_POLL};
use crate::error::WorkerError;
use crate::holding;
use crate::serve::{
    elapsed_ns, record_wait, Server, BATCH_MAX, HEARTBEAT_INTERVAL, SPIN_YIELD_EVERY,
};
use spp_ipc::launch::AsyncSpec;
use spp_ipc::pair::sleep_all_where;
use spp_ipc::record::{monotonic_ns, NS_PER_MS};
use spp_plugin_api::abi::{SPP_ERR_UNSUPPORTED, SPP_TASK_GRACE_MS};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Whether the loop drives the plugin's `spp_poll`.
struct Poll {
    on: Cell<bool>,
}

impl Poll {
    /// Calls `spp_poll(bell, wait_ms)` if on; the busy time it reports.
    /// An `SPP_ERR_UNSUPPORTED` answer turns it off for good.
    fn call(&self, server: &Server, wait_ms: u32) -> Option<u64> {
        if !self.on.get() {
            return None;
        }
        let fd = server.shared.bell.raw_fd();
        let (rc, busy) = server.plugin().poll(fd, wait_ms)?;
        if rc == SPP_ERR_UNSUPPORTED {
            tracing::info!("spp_poll answered SPP_ERR_UNSUPPORTED: not calling it again");
            self.on.set(false);
        }
        Some(busy)
    }
}

/// Serves `server` in async mode until a stop signal, then drains.
pub fn run(mut server: Server, spec: AsyncSpec) -> Result<(), WorkerError> {
    let max = usize::try_from(spec.max_in_flight)
        .unwrap_or(usize::MAX)
        .max(1);
    let expire_after_ms = spec.task_timeout_ms.saturating_add(SPP_TASK_GRACE_MS);
    let poll = Poll {
        on: Cell::new(server.plugin().has_poll()),
    };
    tracing::info!(
        max_in_flight = max,
        task_timeout_ms = spec.task_timeout_ms,
        spp_poll = poll.on.get(),
        "serving async requests"
    );
    let mut rt = Runtime::new(
        max,
        server.requests.len(),
        expire_after_ms.saturating_mul(NS_PER_MS),
    );
    loop {
        let moved = turn(&mut server, &mut rt, &poll)?;
        server.reopen_log_if_asked();
        if server.signals.stop_requested() {
            return drain(server, rt, &poll);
        }
        if !moved {
            idle(&server, &mut rt, &poll, HEARTBEAT_INTERVAL);
        }
    }
}

/// One turn; whether anything happened.
fn turn(server: &mut Server, rt: &mut Runtime, poll: &Poll) -> Result<bool, WorkerError> {
    let started = monotonic_ns();
    let mut moved = rt.drain_completions(&mut server.handler);
    moved += rt.expire_due(&mut server.handler, started);
    if let Some(busy) = poll.call(server, 0) {
        rt.add_busy(busy);
        moved += rt.drain_completions(&mut server.handler);
    }
    let now = monotonic_ns();
    let several = server.requests.len() > 1;
    for pair in server.rotation.turn() {
        let taken = holding::take_batch(server, rt, pair, now)?;
        moved += taken;
        if several && taken > 0 {
            server.requests[pair].release();
            server.host.publish();
        }
    }
    moved += server.host.forward_deferred(BATCH_MAX);
    moved += rt.drain_completions(&mut server.handler);
    holding::end_turn(server, started, rt.take_busy(), rt.in_flight());
    Ok(moved > 0)
}

/// Nothing to do: spin (for ring work the runtime can take, deferred
/// items, signals), then sleep in `spp_poll` or on the doorbell until
/// rung, the next expiry, or `longest`.
fn idle(server: &Server, rt: &mut Runtime, poll: &Poll, longest: Duration) {
    let takes = |pair: usize| rt.can_take(pair);
    let work = || {
        server
            .requests
            .iter()
            .enumerate()
            .any(|(pair, requests)| takes(pair) && requests.has_requests())
            || server.other_work_waiting()
            || super::slots::has_completions()
    };
    let started = Instant::now();
    let budget = Duration::from_nanos(server.spin.get().budget_ns());
    let busy = Cell::new(0u64);
    if !budget.is_zero() {
        let mut spins = 0u32;
        loop {
            if work() {
                rt.add_busy(busy.get());
                record_wait(&server.spin, elapsed_ns(started));
                return;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPIN_YIELD_EVERY) {
                std::thread::yield_now();
                // The plugin's own I/O (a backend's answer) is work too:
                // run what is ready, as micro-thread mode looks at its
                // sockets while it spins.
                if let Some(ns) = poll.call(server, 0) {
                    busy.set(busy.get().saturating_add(ns));
                }
                if started.elapsed() >= budget {
                    break;
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let timeout = match rt.next_expiry() {
        Some(at) => {
            let ns = at.saturating_sub(monotonic_ns());
            if ns == 0 {
                rt.add_busy(busy.get());
                return;
            }
            // Whole ms (the doorbell waits in ms): never a busy wait.
            longest.min(Duration::from_millis(ns.div_ceil(NS_PER_MS)))
        }
        None => longest,
    };
    let bell = &server.shared.bell;
    let block = |timeout: Duration| {
        let ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        if let Some(ns) = poll.call(server, ms) {
            busy.set(busy.get().saturating_add(ns));
            if poll.on.get() {
                // The plugin polls the bell, never reads it.
                bell.drain();
                return true;
            }
        }
        bell.wait(timeout)
    };
    let takes = |pair: usize| rt.can_take(pair);
    sleep_all_where(
        &server.requests,
        takes,
        timeout,
        || server.other_work_waiting() || super::slots::has_completions(),
        block,
    );
    rt.add_busy(busy.get());
    record_wait(&server.spin, elapsed_ns(started));
}

/// Serves until the proxy pushes nothing more, the rings are empty and no
/// request is in flight, for at most `drain_timeout`; then `spp_fini`.
fn drain(mut server: Server, mut rt: Runtime, poll: &Poll) -> Result<(), WorkerError> {
    for slot in server.slots() {
        slot.start_draining();
    }
    tracing::info!(
        in_flight = rt.in_flight(),
        "stop requested: draining the request ring and the deferred requests"
    );
    let started = Instant::now();
    let mut watch = DrainWatch::for_pairs(server.shared, server.slots());
    loop {
        let moved = turn(&mut server, &mut rt, poll)?;
        server.reopen_log_if_asked();
        let now = Instant::now();
        if watch.released(now).is_some() && !server.requests_waiting() && rt.in_flight() == 0 {
            tracing::info!("drained: nothing queued, nothing in flight");
            break;
        }
        let elapsed = now.saturating_duration_since(started);
        if elapsed >= server.drain_timeout {
            tracing::warn!(
                left = server.backlog(),
                in_flight = rt.in_flight(),
                "the drain did not finish within {:?}; leaving the rest to the proxy",
                server.drain_timeout
            );
            break;
        }
        if !moved {
            idle(
                &server,
                &mut rt,
                poll,
                DRAIN_POLL.min(server.drain_timeout - elapsed),
            );
        }
    }
    server.plugin().fini();
    server.final_flush();
    tracing::info!("stopped after draining");
    Ok(())
}
