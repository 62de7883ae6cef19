//! The proxy's single-threaded mio event loop.
//!
//! One turn: wait for events (see below), handle them — accept, read and
//! frame, receive datagrams, doorbell, signals, worker pidfds — then
//! publish every request ring pushed to (one release store and at most one
//! wake per ring), fail the requests of workers that are gone, drain the
//! response rings, run the periodic jobs (worker scan, idle sweep), write
//! every connection with new response bytes once, and add the turn's
//! counters to the shared stats.
//!
//! Waiting follows `spp_ipc::doorbell`: with requests in flight the loop
//! first spins up to `spin_us` watching the response rings (yielding the
//! CPU every [`SPIN_YIELD_EVERY`] spins); then it
//! announces sleep on `proxy_sleeping`, looks at the rings once more, and
//! only then blocks in epoll, where the doorbell wakes it.
//!
//! Signals: SIGTERM drains (stop accepting and reading — the listeners are
//! deregistered, not closed, since the controller owns them — finish what
//! is in flight, flush, exit as soon as that is done; once
//! `limits.drain_timeout_ms` passes, close what is left, calling the close
//! hook for each, and exit 0 all the same); SIGINT exits at once.
//!
//! The plugin library and its `spp_host` table are leaked: plugin threads
//! may still run after `spp_fini`, so their code and the table stay mapped
//! until the process is gone.

use crate::clients::Clients;
use crate::conn::IN_READ_LIST;
use crate::dispatch::Dispatcher;
use crate::error::ProxyError;
use crate::host::{HostServices, OpQueue};
use crate::setup;
use crate::tcp::TcpListenerEntry;
use crate::token::Source;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use spp_ipc::doorbell::{Doorbell, SleepFlag};
use spp_ipc::launch::{ProxyLaunch, ProxyLimits};
use spp_ipc::layout::{ProxyRegion, ProxyState};
use spp_ipc::record::{monotonic_ns, NS_PER_MS, NS_PER_US};
use spp_plugin_api::host::{PluginLibrary, Role};
use std::ffi::CString;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes of the shared read buffer (also the largest UDP datagram).
pub const SCRATCH_SIZE: usize = 64 << 10;
/// Events taken from epoll per wait.
pub const EVENTS_CAPACITY: usize = 1024;
/// How often worker slots are checked for newly ready or stopped workers.
pub const WORKER_SCAN_INTERVAL_MS: u64 = 50;
/// The idle sweep runs every `idle_timeout / SWEEP_DIVISOR`, clamped to
/// [`MIN_SWEEP_INTERVAL_MS`, `MAX_SWEEP_INTERVAL_MS`]; each sweep costs
/// O(flows in use).
pub const SWEEP_DIVISOR: u64 = 8;
/// The shortest idle sweep interval: the sweep runs at most four times a
/// second, however short the idle timeout (a connection may then outlive
/// it by up to this much).
pub const MIN_SWEEP_INTERVAL_MS: u64 = 250;
/// See [`SWEEP_DIVISOR`].
pub const MAX_SWEEP_INTERVAL_MS: u64 = 1000;
/// Spin iterations between two `sched_yield`s (and looks at the clock)
/// while the loop spins for responses. On this 2-vCPU machine the client,
/// the proxy and the worker share two CPUs: a pure spinner keeps the worker
/// it waits for off its CPU for the whole spin. Yielding gives the CPU to
/// whoever is runnable and costs one cheap syscall when nobody is (it also
/// replaces a clock read per spin). See `spp-worker`'s `SPIN_YIELD_EVERY`
/// for the measurements behind the value.
pub const SPIN_YIELD_EVERY: u32 = 64;
/// Longest wait while a drain waits for workers to settle.
pub const DRAIN_POLL_MS: u64 = 1;
/// A worker that neither sleeps nor publishes for this long after its last
/// request completed counts as settled during a drain.
pub const DRAIN_SETTLE_MS: u64 = 100;

/// Microseconds since the Unix epoch (a request's receive time).
pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Everything the running proxy owns.
pub struct Proxy {
    pub(crate) poll: Poll,
    events: Option<Events>,
    signals: Signals,
    pub(crate) region: ProxyRegion,
    bell: Doorbell,
    pub(crate) listeners: Vec<TcpListenerEntry>,
    pub(crate) dispatch: Dispatcher,
    pub(crate) clients: Clients,
    pub(crate) ops: OpQueue,
    pub(crate) scratch: Vec<u8>,
    pub(crate) limits: ProxyLimits,
    /// Loop clock, CLOCK_MONOTONIC ns at the start of the turn.
    pub(crate) now_ns: u64,
    /// Wall clock, µs since the Unix epoch at the start of the turn (the
    /// receive time of everything read in the turn).
    pub(crate) wall_us: u64,
    pub(crate) pending_reads: Vec<u32>,
    spare_reads: Vec<u32>,
    pub(crate) pending_accepts: Vec<usize>,
    pub(crate) pending_udp: Vec<usize>,
    /// Slots whose worker is gone and whose requests still need failing.
    pub(crate) gone: Vec<usize>,
    pub(crate) draining: bool,
    /// Held open so that, out of fds, one can be freed to refuse a client.
    pub(crate) reserve_fd: Option<std::fs::File>,
    /// Out of fds with no reserve: accepting resumes at the next scan tick.
    pub(crate) accept_starved: bool,
    quit: bool,
    sleeping: bool,
    more_responses: bool,
    next_scan_ms: u64,
    next_sweep_ms: u64,
    sweep_interval_ms: u64,
    drain_deadline_ms: u64,
    settled_since_ms: Option<u64>,
    closing_all: bool,
    /// Leaked: never unloaded under a plugin thread (see the module doc).
    pub(crate) plugin: &'static PluginLibrary,
    /// Leaked: the plugin may keep the table past `spp_fini`.
    pub(crate) host: &'static HostServices,
}

impl Proxy {
    /// Maps and checks everything the launch spec hands over, loads the
    /// plugin and registers every source. The proxy is `Starting` after it.
    pub fn new(launch: &ProxyLaunch) -> Result<Self, ProxyError> {
        setup::check_limits(&launch.limits)?;
        let opened = setup::open(launch)?;
        let header = opened.region.header();
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
        let poll = Poll::new().map_err(ProxyError::io("creating the poll"))?;
        let signals = Signals::new([SIGTERM, SIGINT])
            .map_err(ProxyError::io("installing signal handlers"))?;
        let limits = &launch.limits;
        let mut clients = Clients::new(
            launch.epoch,
            limits.max_connections,
            limits.max_udp_flows,
            limits.max_send_buffer,
        );
        clients.udp_socks = opened.udp;
        let sweep_interval_ms = (limits.idle_timeout_ms / SWEEP_DIVISOR)
            .clamp(MIN_SWEEP_INTERVAL_MS, MAX_SWEEP_INTERVAL_MS);
        let mut proxy = Proxy {
            poll,
            events: Some(Events::with_capacity(EVENTS_CAPACITY)),
            signals,
            region: opened.region,
            bell: opened.bell,
            listeners: opened.listeners,
            dispatch: opened.dispatch,
            clients,
            ops: OpQueue::default(),
            scratch: vec![0; SCRATCH_SIZE],
            limits: limits.clone(),
            now_ns: 0,
            wall_us: 0,
            pending_reads: Vec::new(),
            spare_reads: Vec::new(),
            pending_accepts: Vec::new(),
            pending_udp: Vec::new(),
            gone: Vec::new(),
            draining: false,
            reserve_fd: std::fs::File::open("/dev/null").ok(),
            accept_starved: false,
            quit: false,
            sleeping: false,
            more_responses: false,
            next_scan_ms: 0,
            next_sweep_ms: 0,
            sweep_interval_ms,
            drain_deadline_ms: u64::MAX,
            settled_since_ms: None,
            closing_all: false,
            plugin,
            host: Box::leak(Box::new(HostServices::new(launch.epoch))),
        };
        if let Some(fits) = proxy.dispatch.max_request_len() {
            if fits < proxy.limits.max_request_size {
                tracing::warn!(
                    max_request_size = proxy.limits.max_request_size,
                    ring_fits = fits,
                    "requests between these sizes cannot fit a request ring and will be closed as oversized"
                );
            }
        }
        proxy.register_all()?;
        proxy.tick_clock();
        Ok(proxy)
    }

    fn register_all(&mut self) -> Result<(), ProxyError> {
        let registry = self.poll.registry();
        for (i, l) in self.listeners.iter_mut().enumerate() {
            registry
                .register(&mut l.sock, Source::Listener(i).token(), Interest::READABLE)
                .map_err(ProxyError::io("polling a TCP listener"))?;
        }
        for (i, u) in self.clients.udp_socks.iter_mut().enumerate() {
            registry
                .register(&mut u.sock, Source::Udp(i).token(), Interest::READABLE)
                .map_err(ProxyError::io("polling a UDP socket"))?;
        }
        let bell = self.bell.raw_fd();
        registry
            .register(
                &mut SourceFd(&bell),
                Source::Bell.token(),
                Interest::READABLE,
            )
            .map_err(ProxyError::io("polling the proxy doorbell"))?;
        registry
            .register(
                &mut self.signals,
                Source::Signals.token(),
                Interest::READABLE,
            )
            .map_err(ProxyError::io("polling the signal pipe"))?;
        Ok(())
    }

    /// Calls the plugin's `spp_init`; on success the proxy is `Ready`.
    pub fn init_plugin(&mut self, conf: &str) -> Result<(), ProxyError> {
        let conf = CString::new(conf).map_err(|_| ProxyError::BadSpec {
            field: "plugin_conf",
            reason: "contains a NUL byte".into(),
        })?;
        // SAFETY: `self.host` is leaked, so the table stays valid and in
        // place for the process's life (past `spp_fini`).
        let code = unsafe { self.plugin.init(self.host.table(), &conf) };
        if code != 0 {
            return Err(ProxyError::PluginInit {
                path: self.plugin.path().to_path_buf(),
                code,
            });
        }
        self.apply_host_ops();
        self.dispatch.scan(self.poll.registry(), &mut self.gone);
        self.region
            .header()
            .proxy_state
            .store(ProxyState::Ready as u32, Ordering::Release);
        tracing::info!(
            listeners = self.listeners.len() + self.clients.udp_socks.len(),
            slots = self.dispatch.slot_count(),
            "proxy ready"
        );
        Ok(())
    }

    /// Calls the plugin's `spp_fini`. The last thing before exit; the
    /// library stays loaded (leaked).
    pub fn finish(&mut self) {
        self.plugin.fini();
        self.apply_host_ops();
        self.publish_stats();
    }

    /// Runs until SIGINT, or until a SIGTERM drain is complete.
    pub fn run(&mut self) -> Result<(), ProxyError> {
        loop {
            let timeout = self.wait_timeout();
            let mut events = self
                .events
                .take()
                .unwrap_or_else(|| Events::with_capacity(EVENTS_CAPACITY));
            let polled = self.poll.poll(&mut events, Some(timeout));
            if self.sleeping {
                SleepFlag(&self.region.header().proxy_sleeping).clear();
                self.sleeping = false;
            }
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ProxyError::Io {
                        what: "waiting for events",
                        source,
                    })
                }
            }
            self.tick_clock();
            let mut reads = std::mem::replace(
                &mut self.pending_reads,
                std::mem::take(&mut self.spare_reads),
            );
            let accepts = std::mem::take(&mut self.pending_accepts);
            let udp = std::mem::take(&mut self.pending_udp);
            for event in events.iter() {
                self.handle(event);
            }
            self.events = Some(events);
            for &slot in &reads {
                if let Some(conn) = self.clients.conns.get_mut(slot) {
                    conn.flags &= !IN_READ_LIST;
                    self.conn_readable(slot);
                }
            }
            reads.clear();
            self.spare_reads = reads;
            if !self.draining {
                accepts.into_iter().for_each(|li| self.accept_ready(li));
                udp.into_iter().for_each(|k| self.udp_readable(k));
            }
            self.end_of_turn();
            if self.quit {
                tracing::info!("SIGINT: exiting now");
                return Ok(());
            }
            if self.draining && self.drain_step() {
                tracing::info!("drain complete");
                return Ok(());
            }
        }
    }

    fn tick_clock(&mut self) {
        self.now_ns = monotonic_ns();
        self.wall_us = wall_clock_us();
        self.clients.now_ms = self.now_ns / NS_PER_MS;
        self.region
            .header()
            .heartbeat_ms
            .store(self.clients.now_ms, Ordering::Relaxed);
    }

    fn handle(&mut self, event: &mio::event::Event) {
        match Source::from_token(event.token()) {
            Some(Source::Conn(slot)) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.conn_readable(slot);
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
            Some(Source::Listener(li)) if !self.draining => self.accept_ready(li),
            Some(Source::Udp(k)) if !self.draining => self.udp_readable(k),
            Some(Source::Bell) => self.bell.drain(),
            Some(Source::Signals) => self.on_signals(),
            Some(Source::Pidfd(s)) => {
                if self.dispatch.worker_exited(s, self.poll.registry()) {
                    self.gone.push(s);
                }
            }
            Some(Source::Listener(_) | Source::Udp(_)) | None => {}
        }
    }

    /// Everything done once per turn after the events.
    fn end_of_turn(&mut self) {
        self.dispatch.publish();
        self.fail_gone_workers();
        self.more_responses = self.drain_responses();
        let now_ms = self.clients.now_ms;
        if now_ms >= self.next_scan_ms {
            self.next_scan_ms = now_ms + WORKER_SCAN_INTERVAL_MS;
            self.dispatch.scan(self.poll.registry(), &mut self.gone);
            self.fail_gone_workers();
            if std::mem::take(&mut self.accept_starved) && !self.draining {
                (0..self.listeners.len()).for_each(|li| self.accept_ready(li));
            }
        }
        if now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now_ms + self.sweep_interval_ms;
            self.clients
                .sweep_idle(self.plugin, self.limits.idle_timeout_ms, self.draining);
        }
        self.apply_host_ops();
        self.clients.flush_marked(self.plugin);
        self.apply_host_ops();
        self.report_refused_ops();
        self.publish_stats();
    }

    /// Adds the turn's counters to the shared stats and updates the gauges.
    fn publish_stats(&mut self) {
        let header = self.region.header();
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
        let busy = self.quit
            || self.more_responses
            || !self.pending_reads.is_empty()
            || !self.pending_accepts.is_empty()
            || !self.pending_udp.is_empty()
            || !self.gone.is_empty()
            || self.host.has_ops()
            // Hooks run by the turn's last flush listed more to flush.
            || self.clients.flush_pending();
        if busy {
            return Duration::ZERO;
        }
        let spin_ns = self.limits.spin_us.saturating_mul(NS_PER_US);
        if self.dispatch.in_flight() != 0 && spin_ns != 0 {
            let deadline = monotonic_ns().saturating_add(spin_ns);
            let mut spins = 0u32;
            loop {
                if self.dispatch.responses_waiting() {
                    return Duration::ZERO;
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPIN_YIELD_EVERY) {
                    // Hand the CPU to the worker (or the client) if it
                    // waits for it; see `SPIN_YIELD_EVERY`.
                    std::thread::yield_now();
                    if monotonic_ns() >= deadline {
                        break;
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        SleepFlag(&self.region.header().proxy_sleeping).announce();
        self.sleeping = true;
        if self.dispatch.responses_waiting() {
            return Duration::ZERO;
        }
        let now_ms = monotonic_ns() / NS_PER_MS;
        let mut wake_ms = self.next_scan_ms.min(self.next_sweep_ms);
        if self.draining {
            wake_ms = wake_ms.min(now_ms + DRAIN_POLL_MS);
        }
        Duration::from_millis(wake_ms.saturating_sub(now_ms))
    }

    fn on_signals(&mut self) {
        let (mut term, mut int) = (false, false);
        for signal in self.signals.pending() {
            term |= signal == SIGTERM;
            int |= signal == SIGINT;
        }
        if int {
            self.quit = true;
        } else if term {
            self.begin_drain();
        }
    }

    /// SIGTERM: stop taking new work; keep serving what is in flight.
    fn begin_drain(&mut self) {
        if self.draining {
            return;
        }
        tracing::info!(
            connections = self.clients.conns.len(),
            in_flight = self.dispatch.in_flight(),
            "SIGTERM: draining"
        );
        self.draining = true;
        self.drain_deadline_ms = self
            .clients
            .now_ms
            .saturating_add(self.limits.drain_timeout_ms);
        self.region
            .header()
            .proxy_state
            .store(ProxyState::Draining as u32, Ordering::Release);
        let registry = self.poll.registry();
        // Deregistered, not closed: the controller owns the listeners and
        // hands them to the next proxy.
        for l in &mut self.listeners {
            let _ = registry.deregister(&mut l.sock);
        }
        for u in &mut self.clients.udp_socks {
            let _ = registry.deregister(&mut u.sock);
        }
        self.pending_accepts.clear();
        self.pending_udp.clear();
    }

    /// One drain step; true when the proxy may exit.
    fn drain_step(&mut self) -> bool {
        let now = self.clients.now_ms;
        if self.dispatch.in_flight() == 0 {
            self.settled_since_ms.get_or_insert(now);
        } else {
            self.settled_since_ms = None;
        }
        let waited = self
            .settled_since_ms
            .is_some_and(|t| now.saturating_sub(t) >= DRAIN_SETTLE_MS);
        let settled = self.settled_since_ms.is_some()
            && (0..self.dispatch.slot_count()).all(|s| self.dispatch.settled(s, waited));
        let overdue = now >= self.drain_deadline_ms;
        if !settled && !overdue {
            return false;
        }
        if overdue {
            tracing::warn!(
                connections = self.clients.conns.len(),
                in_flight = self.dispatch.in_flight(),
                drain_timeout_ms = self.limits.drain_timeout_ms,
                "drain timed out; closing what is left"
            );
            self.clients.close_now(self.plugin);
            // Replies the close hooks queued have no connection left.
            self.apply_host_ops();
            self.publish_stats();
            return true;
        }
        if !self.closing_all {
            self.closing_all = true;
            self.clients.close_all(self.plugin);
            self.clients.flush_marked(self.plugin);
        }
        self.apply_host_ops();
        self.clients.conns.is_empty()
    }
}
