//! Service statistics: the controller samples every shared stats block
//! each second ([`Collector::sample`]), keeps a short history, and answers
//! `spp stat` ([`Collector::report`]) and the Prometheus endpoint
//! ([`serve_metrics`]) from it.
//!
//! SKELETON: the API the supervisor and `service` use; the bodies are
//! being written (issue 4).

use crate::config::Config;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Stats failures.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The metrics address cannot be bound.
    #[error("metrics endpoint {addr}: cannot listen")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What `spp stat` shows (and `--json` prints).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatReport {
    /// Service name.
    pub service: String,
    /// Seconds the figures cover.
    pub window_s: f64,
}

/// Samples the shared stats blocks and keeps their recent history.
pub struct Collector {}

impl Collector {
    /// A collector for the service `cfg` describes.
    pub fn new(_cfg: &Config) -> Self {
        Collector {}
    }

    /// Reads every shared block once; called every second.
    pub fn sample(&mut self, _res: &Resources, _now: Instant) {}

    /// The figures over the last `window` (clamped to the history kept).
    pub fn report(&self, _window: Duration) -> StatReport {
        StatReport::default()
    }
}

/// The report as the table `spp stat` prints.
pub fn render_table(report: &StatReport) -> String {
    format!("service {} (last {:.0} s)\n", report.service, report.window_s)
}

/// Binds `addr` and serves the Prometheus text format at `/metrics` from
/// what `collector` samples, on a task of the current tokio runtime.
pub fn serve_metrics(_addr: SocketAddr, _collector: &Collector) -> Result<(), StatsError> {
    Ok(())
}
