//! The proxy's single-threaded mio event loop.
//!
//! One turn: wait for events (see below), handle them — read first the
//! connections listed to read again, then accept, read and frame, receive
//! datagrams, doorbell, signals, worker pidfds — then
//! publish every request ring pushed to (one release store and at most one
//! wake per ring), fail the requests of workers that are gone, drain the
//! response rings, run the periodic jobs, frame again the connections held
//! for a worker that took no more (`tcp`) and publish what they queued,
//! write every connection with new response bytes once, and add the turn's
//! counters to the shared stats.
//!
//! A turn is bounded: it reads at most [`TURN_READ_CONNS`] connections or
//! [`TURN_READ_BYTES`] bytes; readable connections beyond wait in the
//! read-again list (`Clients::defer_read`, read as their event said) and
//! are read first at the next turn, which polls without blocking. So the
//! first answers of a turn wait neither for thousands of other reads nor
//! for megabytes of large requests before they are drained and written;
//! and within the turn a ring is published as soon as a batch is pushed
//! to it (`dispatch::slot`), so its worker starts on the turn's first
//! requests while the proxy reads the rest.
//!
//! The loop owns the parts ([`crate::io::Io`], [`Clients`],
//! [`Dispatcher`], [`Hooks`]) and moves work between them; each part keeps
//! its own state.
//!
//! Clocks: the loop reads the clock once per turn (`clients.now_ms`, for
//! idle times and the periodic jobs); request stamps read it more often
//! ([`CLOCK_REFRESH_REQUESTS`], [`RequestClock`]).
//!
//! Periodic jobs: the scan (every [`WORKER_SCAN_INTERVAL_MS`]) adopts
//! ready workers, notices gone ones, acknowledges draining ones
//! (`dispatch`), marks workers whose ring stopped moving and fails the
//! requests a frozen one holds past `msg_timeout` (`dispatch::stall`,
//! `Proxy::expire_overdue`) and applies limits the controller published
//! ([`crate::live_limits`]); the idle sweep runs at an interval derived from
//! the idle and request timeouts, and first closes the connections whose
//! partial request passed `request_timeout` ([`crate::partial`]). A doorbell wake brings the scan forward to
//! [`BELL_SCAN_GAP_MS`] after the previous one: a worker that starts
//! draining rings the bell and gets its `drain_ack` promptly, while a
//! busy proxy, woken by response bells, still scans at most that often.
//!
//! Waiting follows `spp_ipc::doorbell`: with requests in flight the loop
//! first spins up to `spin_us` watching the response rings (yielding the
//! CPU every [`SPIN_YIELD_EVERY`] spins; how long adapts to how long
//! responses recently took, see `spp_ipc::spin`); then it
//! announces sleep on `proxy_sleeping`, looks at the rings once more, and
//! only then blocks in epoll, where the doorbell wakes it.
//!
//! Signals (SIGTERM drains, SIGINT exits at once, SIGHUP reopens the log
//! file) are handled in [`crate::lifecycle`].
//!
//! The plugin library, its `spp_host` table and the proxy region (whose
//! plugin metrics the table's `count`/`record_latency` write) are leaked:
//! plugin threads may still run after `spp_fini`, so their code, the table
//! and the region stay mapped until the process is gone.

use crate::clients::Clients;
use crate::dispatch::Dispatcher;
use crate::error::ProxyError;
use crate::hooks::Hooks;
use crate::host::HostServices;
use crate::io::Io;
use crate::lifecycle::{Life, DRAIN_POLL_MS};
use crate::live_limits::sweep_interval_ms;
use crate::poison::PoisonTable;
use crate::setup;
use crate::token::Source;
use spp_ipc::launch::{ProxyLaunch, ProxyLimits};
use spp_ipc::layout::{ProxyRegion, ProxyState};
use spp_ipc::pair::ProxySleep;
use spp_ipc::record::{monotonic_ns, NS_PER_MS, NS_PER_US};
use spp_ipc::spin::AdaptiveSpin;
use spp_plugin_api::host::{PluginLibrary, Role};
use std::ffi::CString;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often worker slots are checked for newly ready, draining or
/// stopped workers (and published limits applied).
pub const WORKER_SCAN_INTERVAL_MS: u64 = 50;
/// After a doorbell wake the scan runs once at least this long has passed
/// since the previous one (a draining worker rings the bell and waits for
/// its `drain_ack`; response bells make a busy proxy scan no more often).
pub const BELL_SCAN_GAP_MS: u64 = 5;
/// Spin iterations between two `sched_yield`s (and looks at the clock)
/// while the loop spins for responses. On this 2-vCPU machine the client,
/// the proxy and the worker share two CPUs: a pure spinner keeps the worker
/// it waits for off its CPU for the whole spin. Yielding gives the CPU to
/// whoever is runnable and costs one cheap syscall when nobody is (it also
/// replaces a clock read per spin). See `spp-worker`'s `SPIN_YIELD_EVERY`
/// for the measurements behind the value.
pub const SPIN_YIELD_EVERY: u32 = 64;
/// Requests stamped (`enqueued_ns`) with one reading of the clock at most.
/// The clock is read at the start of each connection's framing and of
/// each UDP socket's batch, and again after this many requests, so a
/// stamp lags the real enqueue by no more than the framing, routing and
/// pushing of fewer than this many requests of the same batch (hooks
/// included) — some µs, not a loop turn — and a worker's measured queue
/// wait (checked against `msg_timeout`, as low as 1 ms) is overstated by
/// no more than that. One vDSO `clock_gettime` (no syscall) per batch.
pub const CLOCK_REFRESH_REQUESTS: u32 = 64;

/// Connections read in one loop turn at most; readable ones beyond wait
/// in the read-again list for the next turn. A turn ends with its
/// publish, the response drain and the writes, so a bounded turn bounds
/// how long the first answers it makes wait for the last reads (with
/// thousands of ready connections, or large requests). As many as the
/// event buffer holds: smaller turns (256) cost 4000 connections ~7 %
/// (docs/PERFORMANCE.md), their publish, drain and flush shared by fewer
/// requests; the read-again list no longer comes on top of a full buffer.
pub const TURN_READ_CONNS: u32 = 1024;
/// Bytes read in one loop turn, after which readable connections wait for
/// the next turn (see [`TURN_READ_CONNS`]; a connection's read that
/// passes it is not cut short).
pub const TURN_READ_BYTES: u64 = 512 << 10;

/// Microseconds since the Unix epoch (a request's receive time).
pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The clocks requests are stamped with.
#[derive(Debug, Default)]
pub struct RequestClock {
    /// CLOCK_MONOTONIC ns, read at the start of the turn and again for
    /// request stamps (see [`CLOCK_REFRESH_REQUESTS`]).
    now_ns: u64,
    /// Requests that may still be stamped with `now_ns` before it is read
    /// again.
    budget: u32,
    /// Wall clock, µs since the Unix epoch at the start of the turn (the
    /// receive time of everything read in the turn).
    pub wall_us: u64,
}

impl RequestClock {
    /// Reads the clock requests are stamped with, good for the next
    /// [`CLOCK_REFRESH_REQUESTS`] requests.
    #[inline]
    pub fn refresh(&mut self) {
        self.now_ns = monotonic_ns();
        self.budget = CLOCK_REFRESH_REQUESTS;
    }

    /// The `enqueued_ns` of the next request.
    #[inline]
    pub fn stamp(&mut self) -> u64 {
        if self.budget == 0 {
            self.refresh();
        }
        self.budget -= 1;
        self.now_ns
    }
}

/// When the periodic jobs run next (loop clock, ms).
#[derive(Debug)]
pub struct Timers {
    /// The last worker scan.
    last_scan_ms: u64,
    next_scan_ms: u64,
    /// The next idle sweep.
    pub next_sweep_ms: u64,
    /// The idle sweep interval.
    pub sweep_interval_ms: u64,
}

/// Everything the running proxy owns.
pub struct Proxy {
    /// Poll, signals, doorbell, listeners, scratch.
    pub(crate) io: Io,
    /// Connections, UDP flows, delivery.
    pub(crate) clients: Clients,
    /// Worker slots, choice, in-flight counting, liveness.
    pub(crate) dispatch: Dispatcher,
    /// The plugin, run hook by hook.
    pub(crate) hooks: Hooks,
    /// Leaked (see the module doc).
    pub(crate) region: &'static ProxyRegion,
    /// The limits in force.
    pub(crate) limits: ProxyLimits,
    /// `LiveLimits::generation` last applied (0: the launch limits).
    pub(crate) limits_generation: u64,
    pub(crate) clock: RequestClock,
    pub(crate) timers: Timers,
    /// Drain and exit state.
    pub(crate) life: Life,
    /// Slots whose worker is gone and whose requests still need failing.
    pub(crate) gone: Vec<usize>,
    /// Requests that were in process when workers died.
    pub(crate) poison: PoisonTable,
    sleeping: bool,
    more_responses: bool,
    /// Connections read this turn (see [`TURN_READ_CONNS`]).
    pub(crate) turn_reads: u32,
    /// How long to spin for responses now (adapts within `spin`).
    spin: AdaptiveSpin,
}

impl Proxy {
    /// Maps and checks everything the launch spec hands over, loads the
    /// plugin and registers every source. The proxy is `Starting` after it.
    pub fn new(launch: &ProxyLaunch) -> Result<Self, ProxyError> {
        setup::check_limits(&launch.limits)?;
        let opened = setup::open(launch)?;
        // Leaked: the host table below points plugin threads at the plugin
        // metrics inside it, and they may outlive everything else here.
        let region: &'static ProxyRegion = Box::leak(Box::new(opened.region));
        let header = region.header();
        spp_ipc::logging::count_drops_in(&header.stats.log_dropped);
        header
            .proxy_pid
            .store(std::process::id(), Ordering::Relaxed);
        header
            .proxy_state
            .store(ProxyState::Starting as u32, Ordering::Release);
        header.in_flight.store(0, Ordering::Relaxed);
        header.stats.conns_active.store(0, Ordering::Relaxed);
        header
            .heartbeat_ms
            .store(monotonic_ns() / NS_PER_MS, Ordering::Relaxed);

        let plugin: &'static PluginLibrary =
            Box::leak(Box::new(PluginLibrary::load(&launch.plugin, Role::Proxy)?));
        let limits = &launch.limits;
        let mut clients = Clients::new(
            launch.epoch,
            launch.shard,
            limits.max_connections,
            limits.max_udp_flows,
            limits.max_send_buffer,
        );
        clients.udp_socks = opened.udp;
        let io = Io::new(opened.bell, opened.listeners, &mut clients.udp_socks)?;
        // Leaked: the plugin may keep the table past `spp_fini`.
        let host: &'static HostServices = Box::leak(Box::new(HostServices::new(
            launch.epoch,
            launch.shard,
            &header.plugin,
        )));
        let mut proxy = Proxy {
            io,
            clients,
            dispatch: opened.dispatch,
            hooks: Hooks::new(plugin, host),
            region,
            limits: limits.clone(),
            limits_generation: 0,
            clock: RequestClock::default(),
            timers: Timers {
                last_scan_ms: 0,
                next_scan_ms: 0,
                next_sweep_ms: 0,
                sweep_interval_ms: sweep_interval_ms(limits),
            },
            life: Life::new(launch.log.file.clone()),
            gone: Vec::new(),
            poison: PoisonTable::default(),
            sleeping: false,
            more_responses: false,
            turn_reads: 0,
            spin: AdaptiveSpin::new(limits.spin_us.saturating_mul(NS_PER_US)),
        };
        proxy.warn_if_rings_too_small();
        proxy.tick_clock();
        Ok(proxy)
    }

    /// Calls the plugin's `spp_init`; on success the proxy is `Ready`.
    pub fn init_plugin(&mut self, conf: &str) -> Result<(), ProxyError> {
        let conf = CString::new(conf).map_err(|_| ProxyError::BadSpec {
            field: "plugin_conf",
            reason: "contains a NUL byte".into(),
        })?;
        // A predecessor may have died claiming a metric name.
        self.region.header().plugin.recover();
        let code = self.hooks.init(&mut self.clients, &conf);
        if code != 0 {
            self.region
                .header()
                .proxy_state
                .store(ProxyState::InitFailed as u32, Ordering::Release);
            return Err(ProxyError::PluginInit {
                path: self.hooks.path().to_path_buf(),
                code,
            });
        }
        self.dispatch.scan(self.io.registry(), &mut self.gone);
        self.region
            .header()
            .proxy_state
            .store(ProxyState::Ready as u32, Ordering::Release);
        tracing::info!(
            listeners = self.io.listeners.len() + self.clients.udp_socks.len(),
            slots = self.dispatch.slot_count(),
            "proxy ready"
        );
        Ok(())
    }

    /// Calls the plugin's `spp_fini`. The last thing before exit; the
    /// library stays loaded (leaked).
    pub fn finish(&mut self) {
        self.hooks.fini(&mut self.clients);
        self.hooks.count_refused(&mut self.clients.stats);
        self.publish_stats();
    }

    /// Runs until SIGINT, or until a SIGTERM drain is complete.
    pub fn run(&mut self) -> Result<(), ProxyError> {
        loop {
            let timeout = self.wait_timeout();
            let polled = self.io.wait(timeout);
            if self.sleeping {
                ProxySleep::new(self.region).clear();
                self.sleeping = false;
            }
            let events = polled?;
            self.tick_clock();
            self.turn_reads = 0;
            let reads = self.clients.take_read_list();
            let accepts = std::mem::take(&mut self.io.pending_accepts);
            let udp = std::mem::take(&mut self.io.pending_udp);
            // The connections left over from earlier turns first, so that
            // the turn's read budget cannot starve them.
            for (k, &slot) in reads.iter().enumerate() {
                if self.read_budget_spent() {
                    self.clients.defer_reads(&reads[k..]);
                    break;
                }
                if let Some(until_empty) = self.clients.take_listed_read(slot) {
                    self.conn_readable(slot, until_empty);
                }
            }
            self.clients.return_read_list(reads);
            for event in events.iter() {
                self.handle(event);
            }
            self.io.put_events(events);
            if !self.life.draining {
                accepts.into_iter().for_each(|li| self.accept_ready(li));
                udp.into_iter().for_each(|k| self.udp_readable(k));
            }
            self.end_of_turn();
            if self.life.quit {
                tracing::info!("SIGINT: exiting now");
                return Ok(());
            }
            if self.life.draining && self.drain_step() {
                tracing::info!("drain complete");
                return Ok(());
            }
        }
    }

    /// Whether this turn has read its share ([`TURN_READ_CONNS`]
    /// connections or [`TURN_READ_BYTES`] bytes): further readable
    /// connections wait for the next turn, in the read-again list.
    #[inline]
    fn read_budget_spent(&self) -> bool {
        self.turn_reads >= TURN_READ_CONNS || self.clients.stats.bytes_in >= TURN_READ_BYTES
    }

    fn tick_clock(&mut self) {
        self.clock.refresh();
        self.clock.wall_us = wall_clock_us();
        self.clients.now_ms = self.clock.now_ns / NS_PER_MS;
        self.region
            .header()
            .heartbeat_ms
            .store(self.clients.now_ms, Ordering::Relaxed);
    }

    fn handle(&mut self, event: &mio::event::Event) {
        match Source::from_token(event.token()) {
            Some(Source::Conn(slot)) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if self.read_budget_spent() {
                        // Read at the next turn, as this event says.
                        self.clients.defer_read(slot, event.is_read_closed());
                    } else {
                        self.conn_readable(slot, event.is_read_closed());
                    }
                }
                if event.is_writable()
                    && self
                        .clients
                        .conns
                        .get(slot)
                        .is_some_and(|c| c.pending() != 0)
                {
                    self.clients.mark_flush(slot);
                }
            }
            Some(Source::Listener(li)) if !self.life.draining => self.accept_ready(li),
            Some(Source::Udp(k)) => {
                if event.is_writable() {
                    self.clients.udp_writable(k);
                }
                if event.is_readable() && !self.life.draining {
                    self.udp_readable(k);
                }
            }
            Some(Source::Bell) => {
                self.io.drain_bell();
                let t = &mut self.timers;
                t.next_scan_ms = t.next_scan_ms.min(t.last_scan_ms + BELL_SCAN_GAP_MS);
            }
            Some(Source::Signals) => self.on_signals(),
            Some(Source::Pidfd(s)) => {
                if self.dispatch.worker_exited(s, self.io.registry()) {
                    self.gone.push(s);
                }
            }
            Some(Source::Listener(_)) | None => {}
        }
    }

    /// Everything done once per turn after the events.
    fn end_of_turn(&mut self) {
        // Connections closed since the last turn: tell their workers.
        for flow in self.clients.closed_flows.drain(..) {
            self.dispatch.flow_closed(flow);
        }
        self.dispatch.publish();
        self.fail_gone_workers();
        self.more_responses = self.drain_responses();
        let now_ms = self.clients.now_ms;
        if now_ms >= self.timers.next_scan_ms {
            self.scan(now_ms);
        }
        // After every response and failure of the turn (the only ways a
        // held connection's requests leave), before the idle sweep.
        if !self.clients.resume.is_empty() {
            self.resume_held();
            self.dispatch.publish();
        }
        let Proxy {
            clients,
            dispatch,
            hooks,
            ..
        } = self;
        if now_ms >= self.timers.next_sweep_ms {
            self.timers.next_sweep_ms = now_ms + self.timers.sweep_interval_ms;
            let (idle_ms, strict) = (self.limits.idle_timeout_ms, self.life.draining);
            let request_ms = self.limits.request_timeout_ms;
            hooks.with(clients, |c, hook| {
                c.expire_partial(hook, request_ms);
                c.sweep_idle(hook, dispatch.ledger(), idle_ms, strict);
            });
        }
        hooks.with(clients, |c, hook| c.flush_marked(hook, dispatch.ledger()));
        clients.flush_udp(self.io.registry());
        hooks.count_refused(&mut clients.stats);
        self.publish_stats();
    }

    /// The periodic scan: worker slots (adopt, retire, acknowledge a
    /// drain), published limits, and accepting again after running out of
    /// fds.
    fn scan(&mut self, now_ms: u64) {
        self.timers.last_scan_ms = now_ms;
        self.timers.next_scan_ms = now_ms + WORKER_SCAN_INTERVAL_MS;
        self.dispatch.scan(self.io.registry(), &mut self.gone);
        self.fail_gone_workers();
        if !self.poison.is_empty() {
            self.poison.expire(now_ms);
        }
        self.dispatch.observe_progress(now_ms);
        self.expire_overdue(now_ms);
        self.apply_live_limits();
        if std::mem::take(&mut self.io.accept_starved) && !self.life.draining {
            (0..self.io.listeners.len()).for_each(|li| self.accept_ready(li));
        }
    }

    /// Adds the turn's counters to the shared stats and updates the gauges.
    pub(crate) fn publish_stats(&mut self) {
        let header = self.region.header();
        self.clients.stats.stalled_skips += self.dispatch.take_stalled_skips();
        self.clients.stats.flow_closed_dropped += self.dispatch.take_flow_closed_dropped();
        self.clients.stats.flush(&header.stats);
        header
            .stats
            .conns_active
            .store(self.clients.conns.len() as u64, Ordering::Relaxed);
        header
            .in_flight
            .store(self.dispatch.in_flight() as u64, Ordering::Relaxed);
    }

    /// How long the next poll may block; announces sleep when it blocks.
    fn wait_timeout(&mut self) -> Duration {
        let busy = self.life.quit
            || self.more_responses
            || self.clients.reads_pending()
            || !self.io.pending_accepts.is_empty()
            || !self.io.pending_udp.is_empty()
            || self.clients.udp_out.ready()
            || !self.gone.is_empty()
            || !self.clients.resume.is_empty()
            || self.hooks.has_queued()
            // Hooks run by the turn's last flush listed more to flush.
            || self.clients.flush_pending();
        if busy {
            return Duration::ZERO;
        }
        // Adaptive (spp_ipc::spin): the budget shrinks while responses
        // take long to come, so light load spins little.
        self.spin
            .set_max(self.limits.spin_us.saturating_mul(NS_PER_US));
        let spin_ns = self.spin.budget_ns();
        if self.dispatch.in_flight() != 0 && spin_ns != 0 {
            let started = monotonic_ns();
            let deadline = started.saturating_add(spin_ns);
            let mut spins = 0u32;
            loop {
                if self.dispatch.responses_waiting() {
                    self.spin.record(monotonic_ns().saturating_sub(started));
                    return Duration::ZERO;
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPIN_YIELD_EVERY) {
                    // Hand the CPU to the worker (or the client) if it
                    // waits for it; see `SPIN_YIELD_EVERY`.
                    std::thread::yield_now();
                    if monotonic_ns() >= deadline {
                        self.spin.ran_out();
                        break;
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        ProxySleep::new(self.region).announce();
        self.sleeping = true;
        if self.dispatch.responses_waiting() || self.dispatch.completions_waiting() {
            return Duration::ZERO;
        }
        let now_ms = monotonic_ns() / NS_PER_MS;
        let mut wake_ms = self.timers.next_scan_ms.min(self.timers.next_sweep_ms);
        if self.life.draining {
            wake_ms = wake_ms.min(now_ms + DRAIN_POLL_MS);
        }
        Duration::from_millis(wake_ms.saturating_sub(now_ms))
    }
}
