//! The scenarios and the systems they run against, in two suites: the
//! classic comparison (spp against the direct baseline and haproxy) and
//! SPP's published table (echo, echo after a sleep, echo through a relay;
//! long and short connections; spp's relay against a tokio relay), the
//! proxy-shard figures (one shard against several, CPU per request), and
//! the async relay's (`examples/relay-async` with either runtime
//! placement against the micro-thread relay and the tokio relay).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::load::{Load, LoadSpec, Target, Transport};

/// A system under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// The single-threaded epoll baseline.
    Direct,
    /// spp: proxy, rings, workers.
    Spp,
    /// haproxy (TCP mode) in front of the baseline.
    Haproxy,
    /// spp with the sleep-echo plugin on micro-threads.
    SppSleep,
    /// spp with the relay plugin on micro-threads, in front of [`System::Spp`].
    SppRelay,
    /// The same relay in front of the baseline (the tokio relay's backend).
    SppRelayDirect,
    /// The tokio relay (all CPUs) in front of the baseline.
    TokioRelay,
    /// The tokio relay on one worker thread in front of the baseline.
    #[serde(rename = "tokio_relay_1t")]
    TokioRelay1,
    /// spp echo with one proxy shard (the shard suite's [`System::Spp`]
    /// has `--shard-count`).
    #[serde(rename = "spp_1shard")]
    SppOneShard,
    /// spp echo whose proxy plugin's `input` burns CPU, one shard.
    #[serde(rename = "spp_cost_1shard")]
    SppCostOneShard,
    /// The same with `--shard-count` shards.
    SppCost,
    /// spp with the async relay plugin (`mode = "async"`, its runtime
    /// driven on the worker's thread) in front of the baseline.
    SppRelayAsync,
    /// The same with `SPP_ASYNC_RUNTIME=thread` (its runtime on a plugin
    /// thread, answers through deferred replies).
    SppRelayAsyncThread,
}

/// Every system, in the order tables list them.
pub const ALL_SYSTEMS: [System; 13] = [
    System::Direct,
    System::Spp,
    System::Haproxy,
    System::SppSleep,
    System::SppRelay,
    System::SppRelayDirect,
    System::SppRelayAsync,
    System::SppRelayAsyncThread,
    System::TokioRelay1,
    System::TokioRelay,
    System::SppOneShard,
    System::SppCostOneShard,
    System::SppCost,
];

impl System {
    /// Its name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::Spp => "spp",
            System::Haproxy => "haproxy",
            System::SppSleep => "spp_sleep",
            System::SppRelay => "spp_relay",
            System::SppRelayDirect => "spp_relay_direct",
            System::TokioRelay => "tokio_relay",
            System::TokioRelay1 => "tokio_relay_1t",
            System::SppOneShard => "spp_1shard",
            System::SppCostOneShard => "spp_cost_1shard",
            System::SppCost => "spp_cost",
            System::SppRelayAsync => "spp_relay_async",
            System::SppRelayAsyncThread => "spp_relay_async_thread",
        }
    }

    /// What it is, for the table.
    pub fn describe(self) -> &'static str {
        match self {
            System::Direct => "direct echo",
            System::Spp => "spp echo",
            System::Haproxy => "haproxy → direct",
            System::SppSleep => "spp sleep-echo",
            System::SppRelay => "spp relay → spp echo",
            System::SppRelayDirect => "spp relay → direct",
            System::TokioRelay => "tokio relay → direct",
            System::TokioRelay1 => "tokio relay 1 thread → direct",
            System::SppOneShard => "spp echo, 1 proxy shard",
            System::SppCostOneShard => "spp costly input, 1 shard",
            System::SppCost => "spp costly input, N shards",
            System::SppRelayAsync => "spp async relay (driven) → direct",
            System::SppRelayAsyncThread => "spp async relay (thread) → direct",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One load shape.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Machine name (JSON, plot file name).
    pub name: &'static str,
    /// Human title.
    pub title: &'static str,
    /// TCP or UDP.
    pub transport: Transport,
    /// Connections, sockets or concurrent short-connection loops.
    pub connections: usize,
    /// Connect, one request, close.
    pub short: bool,
    /// The systems it runs against, in order.
    pub systems: &'static [System],
}

/// The classic comparison's systems.
const CLASSIC_SYSTEMS: &[System] = &[System::Direct, System::Spp, System::Haproxy];
/// The table's echo and relay systems.
const ECHO_SYSTEMS: &[System] = &[
    System::Direct,
    System::Spp,
    System::SppRelay,
    System::SppRelayDirect,
    System::TokioRelay1,
    System::TokioRelay,
];
/// The table's sleep system.
const SLEEP_SYSTEMS: &[System] = &[System::SppSleep];

/// Which scenarios a comparison runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// [`SCENARIOS`]: spp against the direct baseline and haproxy.
    #[default]
    Classic,
    /// [`TABLE`]: SPP's published table re-run here.
    Table,
    /// [`SHARDS`]: one proxy shard against several.
    Shards,
    /// [`ASYNC_RELAY`]: the async relay, both runtime placements, against
    /// the micro-thread relay and the tokio relay.
    AsyncRelay,
}

/// Scenario names of the table (the checks look them up).
pub mod names {
    /// Echo and relay, long connections.
    pub const ECHO_LONG: &str = "echo_long_n64";
    /// Echo and relay, short connections.
    pub const ECHO_SHORT: &str = "echo_short_n16";
    /// Sleep-echo, long connections.
    pub const SLEEP_LONG: &str = "sleep_long";
    /// Sleep-echo, short connections.
    pub const SLEEP_SHORT: &str = "sleep_short";
    /// Shards: echo, 1 shard against N.
    pub const SHARD_ECHO: &str = "shards_echo_n256";
    /// Shards: costly proxy input, 1 shard against N.
    pub const SHARD_COST: &str = "shards_cost_n128";
    /// Shards: CPU per request, N shards (and 1) against the baseline.
    pub const SHARD_CPU: &str = "shards_cpu_n64";
    /// Shards: CPU per request with the costly input.
    pub const SHARD_COST_CPU: &str = "shards_cost_cpu_n64";
    /// The async relay against the micro-thread and tokio relays.
    pub const ASYNC_RELAY_LONG: &str = "async_relay_n64";
}

/// The async relay suite's systems, each in front of the baseline; the
/// micro-thread relay first (the ratios' reference).
const ASYNC_RELAY_SYSTEMS: &[System] = &[
    System::SppRelayDirect,
    System::SppRelayAsync,
    System::SppRelayAsyncThread,
    System::TokioRelay1,
    System::TokioRelay,
];

/// The async relay figures' scenario.
pub const ASYNC_RELAY: [Scenario; 1] = [Scenario {
    name: names::ASYNC_RELAY_LONG,
    title: "relays → direct, long",
    transport: Transport::Tcp,
    connections: 64,
    short: false,
    systems: ASYNC_RELAY_SYSTEMS,
}];

/// The shard suite's echo systems.
const SHARD_ECHO_SYSTEMS: &[System] = &[System::SppOneShard, System::Spp];
/// The shard suite's costly-input systems.
const SHARD_COST_SYSTEMS: &[System] = &[System::SppCostOneShard, System::SppCost];
/// The shard suite's CPU systems (one shard too, to tell the cost of
/// sharding from spp's own).
const SHARD_CPU_SYSTEMS: &[System] = &[System::Direct, System::SppOneShard, System::Spp];

/// The proxy-shard figures' scenarios, in the order they run.
pub const SHARDS: [Scenario; 4] = [
    Scenario {
        name: names::SHARD_ECHO,
        title: "echo, shards",
        transport: Transport::Tcp,
        connections: 256,
        short: false,
        systems: SHARD_ECHO_SYSTEMS,
    },
    Scenario {
        name: names::SHARD_COST,
        title: "costly input, shards",
        transport: Transport::Tcp,
        connections: 128,
        short: false,
        systems: SHARD_COST_SYSTEMS,
    },
    Scenario {
        name: names::SHARD_CPU,
        title: "echo CPU, shards/direct",
        transport: Transport::Tcp,
        connections: 64,
        short: false,
        systems: SHARD_CPU_SYSTEMS,
    },
    Scenario {
        name: names::SHARD_COST_CPU,
        title: "costly input CPU",
        transport: Transport::Tcp,
        connections: 64,
        short: false,
        systems: SHARD_COST_SYSTEMS,
    },
];

/// Default concurrent connections of the sleep scenarios.
pub const DEFAULT_SLEEP_CONNECTIONS: usize = 2_000;

/// SPP's table, in the order it runs; the sleep scenarios' connections are
/// [`DEFAULT_SLEEP_CONNECTIONS`] unless the comparison says otherwise.
pub const TABLE: [Scenario; 4] = [
    Scenario {
        name: names::ECHO_LONG,
        title: "echo/relay, long",
        transport: Transport::Tcp,
        connections: 64,
        short: false,
        systems: ECHO_SYSTEMS,
    },
    Scenario {
        name: names::ECHO_SHORT,
        title: "echo/relay, short",
        transport: Transport::Tcp,
        connections: 16,
        short: true,
        systems: ECHO_SYSTEMS,
    },
    Scenario {
        name: names::SLEEP_LONG,
        title: "sleep-echo, long",
        transport: Transport::Tcp,
        connections: DEFAULT_SLEEP_CONNECTIONS,
        short: false,
        systems: SLEEP_SYSTEMS,
    },
    Scenario {
        name: names::SLEEP_SHORT,
        title: "sleep-echo, short",
        transport: Transport::Tcp,
        connections: DEFAULT_SLEEP_CONNECTIONS,
        short: true,
        systems: SLEEP_SYSTEMS,
    },
];

impl Suite {
    /// Its scenarios, the sleep ones with `sleep_connections`.
    pub fn scenarios(self, sleep_connections: usize) -> Vec<Scenario> {
        match self {
            Suite::Classic => SCENARIOS.to_vec(),
            Suite::Table => TABLE
                .iter()
                .map(|s| Scenario {
                    connections: if s.systems == SLEEP_SYSTEMS {
                        sleep_connections
                    } else {
                        s.connections
                    },
                    ..*s
                })
                .collect(),
            Suite::Shards => SHARDS.to_vec(),
            Suite::AsyncRelay => ASYNC_RELAY.to_vec(),
        }
    }

    /// The systems any of its scenarios runs against.
    pub fn systems(self) -> Vec<System> {
        let scenarios = self.scenarios(DEFAULT_SLEEP_CONNECTIONS);
        ALL_SYSTEMS
            .into_iter()
            .filter(|s| scenarios.iter().any(|sc| sc.systems.contains(s)))
            .collect()
    }
}

/// The classic comparison's scenarios, in the order they run.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "tcp_n64",
        title: "TCP N=64 closed loop",
        transport: Transport::Tcp,
        connections: 64,
        short: false,
        systems: CLASSIC_SYSTEMS,
    },
    Scenario {
        name: "tcp_n1",
        title: "TCP N=1 closed loop",
        transport: Transport::Tcp,
        connections: 1,
        short: false,
        systems: CLASSIC_SYSTEMS,
    },
    Scenario {
        name: "short_n16",
        title: "short connections N=16",
        transport: Transport::Tcp,
        connections: 16,
        short: true,
        systems: CLASSIC_SYSTEMS,
    },
    Scenario {
        name: "udp_n64",
        title: "UDP N=64 closed loop",
        transport: Transport::Udp,
        connections: 64,
        short: false,
        systems: CLASSIC_SYSTEMS,
    },
];

/// The timing and payload every run shares.
#[derive(Clone, Copy, Debug)]
pub struct RunShape {
    /// Measured window.
    pub duration: std::time::Duration,
    /// Warm-up.
    pub warmup: std::time::Duration,
    /// Echo payload bytes.
    pub payload: usize,
    /// Load threads.
    pub threads: usize,
}

impl Scenario {
    /// Whether `system` takes part (only UDP-capable systems in UDP ones).
    pub fn applies_to(&self, system: System) -> bool {
        let udp_capable = matches!(system, System::Direct | System::Spp);
        self.systems.contains(&system) && (udp_capable || self.transport == Transport::Tcp)
    }

    /// The load run against `addr`.
    pub fn spec(&self, addr: SocketAddr, shape: &RunShape) -> LoadSpec {
        let mut spec = LoadSpec::new(Target::new(self.transport, addr));
        spec.connections = self.connections;
        spec.load = Load::Closed { in_flight: 1 };
        spec.short = self.short;
        spec.request = crate::load::Request::Echo {
            payload: shape.payload,
        };
        spec.duration = shape.duration;
        spec.warmup = shape.warmup;
        spec.threads = shape.threads;
        spec.progress = false;
        spec
    }
}
