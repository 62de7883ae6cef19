//! The worker loop in micro-thread mode. Per turn: resume the
//! micro-threads whose timers are due and those a downstream socket event
//! is for, take up to `BATCH_MAX` requests
//! while the [`Runtime`] has room (expired and other generations' requests
//! are completed at once, as in plain mode), forward deferred replies,
//! release the request ring and publish the response ring once. With
//! nothing to do: spin as plain mode does (looking at the sockets too
//! while calls are out), then sleep in the epoll set of the doorbell and
//! the downstream sockets for at most a heartbeat and at most until the
//! nearest timer. At
//! `max_in_flight` the ring's requests are not work (they wait there):
//! the loop then sleeps on the doorbell without announcing itself, so only
//! a signal, or its timer, wakes it.
//!
//! A stop drains like plain mode, and also waits for the in-flight
//! requests to finish, within `drain_timeout`; micro-threads still
//! suspended then are abandoned (never unwound: their frames may be C),
//! and the proxy fails their requests when the worker exits.
//!
//! Several proxy shards: as in plain mode, a turn takes a bounded batch
//! from each pair in a rotating order (a pair whose completions are full
//! is passed over), and the idle sleep announces itself on every pair
//! ([`sleep_all_where`]).

use super::runtime::Runtime;
use crate::downstream::{engine, stats};
use crate::drain::{DrainWatch, DRAIN_POLL};
use crate::error::WorkerError;
use crate::holding;
use crate::serve::{
    elapsed_ns, record_wait, Server, BATCH_MAX, HEARTBEAT_INTERVAL, SPIN_YIELD_EVERY,
};
use spp_ipc::launch::MicroThreadSpec;
use spp_ipc::pair::sleep_all_where;
use spp_ipc::record::{monotonic_ns, NS_PER_MS};
use std::time::{Duration, Instant};

/// Serves `server` in micro-thread mode until a stop signal, then drains.
pub fn run(mut server: Server, spec: MicroThreadSpec) -> Result<(), WorkerError> {
    let max = usize::try_from(spec.max_in_flight)
        .unwrap_or(usize::MAX)
        .max(1);
    let stack = usize::try_from(spec.stack_size).unwrap_or(usize::MAX);
    tracing::info!(
        max_in_flight = max,
        stack_size = stack,
        "serving on micro-threads"
    );
    if let Err(err) = engine::install(&server.shared.bell) {
        // Without the epoll set, calls answer `SPP_ERR_UNSUPPORTED`;
        // sleeps and plain requests still work.
        tracing::error!(%err, "cannot create the downstream epoll set");
    }
    stats::install(&server.shared.pair_header().plugin);
    let mut rt = Runtime::new(max, stack, server.requests.len());
    loop {
        let moved = turn(&mut server, &mut rt)?;
        server.reopen_log_if_asked();
        if server.signals.stop_requested() {
            return drain(server, rt);
        }
        if !moved {
            idle(&server, &rt, HEARTBEAT_INTERVAL);
        }
    }
}

/// One turn; whether anything happened.
fn turn(server: &mut Server, rt: &mut Runtime) -> Result<bool, WorkerError> {
    let started = monotonic_ns();
    let woken = rt.wake_due(&mut server.handler, started) + rt.wake_io(&mut server.handler);
    let now = monotonic_ns();
    let several = server.requests.len() > 1;
    let mut records = 0;
    for pair in server.rotation.turn() {
        let taken = holding::take_batch(server, rt, pair, now)?;
        records += taken;
        if several && taken > 0 {
            server.requests[pair].release();
            server.host.publish();
        }
    }
    rt.drop_stale_timers();
    let deferred = server.host.forward_deferred(BATCH_MAX);
    holding::end_turn(server, started, rt.take_busy(), rt.in_flight());
    Ok(woken + records + deferred > 0)
}

/// Nothing to do: spin (for ring work the runtime can take, and, while
/// downstream sockets are in use, their events: one non-blocking poll per
/// [`SPIN_YIELD_EVERY`] spins), then sleep in the epoll set (doorbell and
/// sockets) until rung, a socket event, the nearest timer, or `longest`.
fn idle(server: &Server, rt: &Runtime, longest: Duration) {
    let can_take = rt.can_take_any();
    let bell = &server.shared.bell;
    let takes = |pair: usize| rt.can_take(pair);
    let ring_work = || {
        server
            .requests
            .iter()
            .enumerate()
            .any(|(pair, requests)| takes(pair) && requests.has_requests())
    };
    let work = || (can_take && ring_work()) || server.other_work_waiting();
    let io_ready = || {
        engine::with(|engine| {
            if engine.busy() && !engine.has_ready() {
                engine.poll(bell, Duration::ZERO);
            }
            engine.has_ready()
        })
        .unwrap_or(false)
    };
    // Blocks in the epoll set when there is one, else on the bell alone.
    let block = |timeout: Duration| {
        engine::with(|engine| engine.poll(bell, timeout)).unwrap_or_else(|| bell.wait(timeout))
    };
    if io_ready() {
        return;
    }
    let due_in = |now: u64| rt.next_wake().map(|at| at.saturating_sub(now));
    // Adaptive (spp_ipc::spin): each wait's length, sleep included.
    let started = Instant::now();
    let budget = Duration::from_nanos(server.spin.get().budget_ns());
    if !budget.is_zero() {
        let mut spins = 0u32;
        loop {
            if work() {
                record_wait(&server.spin, elapsed_ns(started));
                return;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPIN_YIELD_EVERY) {
                std::thread::yield_now();
                if io_ready() {
                    record_wait(&server.spin, elapsed_ns(started));
                    return;
                }
                if due_in(monotonic_ns()) == Some(0) {
                    break;
                }
                if started.elapsed() >= budget {
                    break;
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let timeout = match due_in(monotonic_ns()) {
        Some(0) => return,
        // Whole ms (the doorbell waits in ms): never a busy wait.
        Some(ns) => longest.min(Duration::from_millis(ns.div_ceil(NS_PER_MS))),
        None => longest,
    };
    if can_take {
        sleep_all_where(
            &server.requests,
            takes,
            timeout,
            || server.other_work_waiting(),
            block,
        );
    } else if !server.other_work_waiting() {
        // Full: ring requests wait; a signal still rings this bell, and
        // socket events resume suspended requests.
        block(timeout);
    }
    record_wait(&server.spin, elapsed_ns(started));
}

/// Serves until the proxy pushes nothing more, the ring is empty and no
/// request is in flight, for at most `drain_timeout`; then `spp_fini`.
fn drain(mut server: Server, mut rt: Runtime) -> Result<(), WorkerError> {
    for slot in server.slots() {
        slot.start_draining();
    }
    tracing::info!(
        in_flight = rt.in_flight(),
        "stop requested: draining the request ring and the micro-threads"
    );
    let started = Instant::now();
    let mut watch = DrainWatch::for_pairs(server.shared, server.slots());
    loop {
        let moved = turn(&mut server, &mut rt)?;
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
            // Suspended micro-threads are never unwound (their frames may
            // be C): their stacks are let go with the process.
            std::mem::forget(rt);
            break;
        }
        if !moved {
            idle(&server, &rt, DRAIN_POLL.min(server.drain_timeout - elapsed));
        }
    }
    server.plugin().fini();
    server.final_flush();
    tracing::info!("stopped after draining");
    Ok(())
}
