//! Service statistics: the controller samples every shared stats block
//! each second ([`Collector::sample`]), keeps the last [`HISTORY_SAMPLES`]
//! samples, and answers `spp stat` ([`Collector::report`], printed by
//! [`render_table`]) and the Prometheus endpoint ([`serve_metrics`]) from
//! them.
//!
//! * [`sample`]: one reading of every block, summed per group;
//! * [`report`]: [`StatReport`] from two samples (rates, percentiles);
//! * [`table`]: the `spp stat` table;
//! * [`names`]: every Prometheus metric name;
//! * [`exposition`]: the Prometheus text format;
//! * [`http`]: the `/metrics` endpoint.
//!
//! The endpoint runs on a task of the controller's (current-thread) tokio
//! runtime; each sample publishes the newest window to it through a
//! `tokio::sync::watch` channel of `Arc`s, so a scrape copies nothing the
//! sampler holds and the sampler never waits for a scrape. The exposition
//! text of a window is built at most once, by the first scrape that sees
//! it ([`Published::exposition`]); later scrapes of the same window get a
//! clone of the same bytes, and a window nobody scrapes costs nothing.

pub mod exposition;
pub mod http;
pub mod names;
pub mod report;
pub mod sample;
pub mod table;
#[cfg(test)]
mod tests;

use crate::resources::Resources;
use bytes::Bytes;
use sample::Sample;
use spp_config::Config;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub use report::StatReport;

pub use spp_config::defaults::{METRICS_WINDOW, STATS_HISTORY_SAMPLES as HISTORY_SAMPLES};

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
    /// Called outside a tokio runtime.
    #[error("metrics endpoint {addr}: no tokio runtime to serve on")]
    NoRuntime {
        /// The configured address.
        addr: SocketAddr,
        /// What tokio said.
        source: tokio::runtime::TryCurrentError,
    },
}

/// The figures the metrics endpoint serves: the newest sample and the one
/// [`METRICS_WINDOW`] before it, and their exposition once built.
#[derive(Debug)]
pub struct Published {
    /// Service name.
    pub service: String,
    /// The newest sample.
    pub newest: Arc<Sample>,
    /// The base of the window (none until two samples).
    pub base: Option<Arc<Sample>>,
    /// The Prometheus text of this window, or why it could not be encoded:
    /// built by the first scrape.
    text: OnceLock<Result<Bytes, String>>,
}

impl Published {
    /// The window from `base` to `newest`.
    pub fn new(service: String, newest: Arc<Sample>, base: Option<Arc<Sample>>) -> Self {
        Published {
            service,
            newest,
            base,
            text: OnceLock::new(),
        }
    }

    /// The Prometheus text of this window: the report is built and
    /// encoded on the first call only; every call returns the same bytes
    /// (a cheap clone).
    pub fn exposition(&self) -> Result<Bytes, String> {
        self.text
            .get_or_init(|| {
                let report = report::build(&self.service, &self.newest, self.base.as_deref());
                exposition::render(&report)
                    .map(Bytes::from)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// Samples the shared stats blocks and keeps their recent history.
pub struct Collector {
    service: String,
    /// Oldest first, at most [`HISTORY_SAMPLES`].
    history: VecDeque<Arc<Sample>>,
    published: watch::Sender<Option<Arc<Published>>>,
}

impl Collector {
    /// A collector for the service `cfg` describes.
    pub fn new(cfg: &Config) -> Self {
        Collector {
            service: cfg.service.name.clone(),
            history: VecDeque::with_capacity(HISTORY_SAMPLES),
            published: watch::Sender::new(None),
        }
    }

    /// Reads every shared block once; called every second.
    pub fn sample(&mut self, res: &Resources, now: Instant) {
        if self.history.len() == HISTORY_SAMPLES {
            self.history.pop_front();
        }
        self.history.push_back(Arc::new(Sample::read(res, now)));
        let published = self.history.back().map(|newest| {
            Arc::new(Published::new(
                self.service.clone(),
                Arc::clone(newest),
                self.base(METRICS_WINDOW).map(Arc::clone),
            ))
        });
        self.published.send_replace(published);
    }

    /// The base sample of a `window` ending at the newest: the most recent
    /// one at least `window` older than it, else the oldest; never the
    /// newest itself (so a zero window is the last interval).
    fn base(&self, window: Duration) -> Option<&Arc<Sample>> {
        let newest = self.history.back()?;
        let mut base = None;
        for older in self.history.iter().rev().skip(1) {
            base = Some(older);
            if newest.at.duration_since(older.at) >= window {
                break;
            }
        }
        base
    }

    /// The figures over the last `window` (clamped to the history kept).
    pub fn report(&self, window: Duration) -> StatReport {
        match self.history.back() {
            Some(newest) => {
                report::build(&self.service, newest, self.base(window).map(|b| b.as_ref()))
            }
            None => StatReport {
                service: self.service.clone(),
                ..StatReport::default()
            },
        }
    }

    /// A receiver of every published window (what the endpoint serves).
    fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.published.subscribe()
    }
}

/// The report as the table `spp stat` prints.
pub fn render_table(report: &StatReport) -> String {
    table::render(report)
}

/// Binds `addr` and serves the Prometheus text format at `/metrics` from
/// what `collector` samples, on a task of the current tokio runtime, until
/// the collector is dropped. A bind failure is returned and nothing is
/// started.
pub fn serve_metrics(addr: SocketAddr, collector: &Collector) -> Result<(), StatsError> {
    let bound = start_metrics(addr, collector)?;
    tracing::info!(%bound, "metrics endpoint listening");
    Ok(())
}

/// As [`serve_metrics`], returning the bound address (the real port when
/// `addr` has port 0).
pub fn start_metrics(addr: SocketAddr, collector: &Collector) -> Result<SocketAddr, StatsError> {
    http::start(addr, collector.subscribe())
}
