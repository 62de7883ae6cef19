//! The scenarios and the systems they run against.

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
}

impl System {
    /// Its name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::Spp => "spp",
            System::Haproxy => "haproxy",
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
}

/// Every scenario, in the order they run.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "tcp_n64",
        title: "TCP N=64 closed loop",
        transport: Transport::Tcp,
        connections: 64,
        short: false,
    },
    Scenario {
        name: "tcp_n1",
        title: "TCP N=1 closed loop",
        transport: Transport::Tcp,
        connections: 1,
        short: false,
    },
    Scenario {
        name: "short_n16",
        title: "short connections N=16",
        transport: Transport::Tcp,
        connections: 16,
        short: true,
    },
    Scenario {
        name: "udp_n64",
        title: "UDP N=64 closed loop",
        transport: Transport::Udp,
        connections: 64,
        short: false,
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
    /// Whether `system` takes part (haproxy only does TCP).
    pub fn applies_to(&self, system: System) -> bool {
        system != System::Haproxy || self.transport == Transport::Tcp
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
