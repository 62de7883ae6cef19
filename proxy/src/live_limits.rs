//! Limits the controller changes while the proxy runs (`spp reload`).
//!
//! The controller writes `ProxyHeader::limits` and bumps its generation;
//! at every worker scan the proxy compares the generation with the one it
//! applied last (0 at start: the launch limits) and, when it moved, applies
//! [`LiveLimits::apply_to`](spp_ipc::layout::LiveLimits::apply_to):
//!
//! * `max_connections` — the connection table's limit. Connections over a
//!   lowered limit stay open; new ones are refused until the count is
//!   below it.
//! * `max_request_size` — framing checks it from the next byte read.
//! * `max_send_buffer` — the bound of every connection's send buffer from
//!   the next response queued.
//! * `idle_timeout_ms`, `request_timeout_ms` — the idle sweep's timeouts
//!   and interval (the next sweep is brought forward if the new interval
//!   is shorter).
//! * `spin_us` — from the next wait.
//!
//! Values that fail the launch checks (`setup::limits_problem`) are
//! refused as a whole and logged; the proxy keeps what it had. What
//! changed is logged.

use crate::event_loop::Proxy;
use crate::setup;
use spp_ipc::launch::ProxyLimits;

/// The idle sweep runs every `min(idle_timeout, request_timeout) /
/// SWEEP_DIVISOR`, clamped to
/// [`MIN_SWEEP_INTERVAL_MS`, `MAX_SWEEP_INTERVAL_MS`]; each sweep costs
/// O(flows in use).
pub const SWEEP_DIVISOR: u64 = 8;
/// The shortest idle sweep interval: the sweep runs at most four times a
/// second, however short the idle timeout (a connection may then outlive
/// it by up to this much).
pub const MIN_SWEEP_INTERVAL_MS: u64 = 250;
/// See [`SWEEP_DIVISOR`].
pub const MAX_SWEEP_INTERVAL_MS: u64 = 1000;

/// The idle sweep interval for `limits`' idle and request timeouts.
pub fn sweep_interval_ms(limits: &ProxyLimits) -> u64 {
    let shortest = limits.idle_timeout_ms.min(limits.request_timeout_ms);
    (shortest / SWEEP_DIVISOR).clamp(MIN_SWEEP_INTERVAL_MS, MAX_SWEEP_INTERVAL_MS)
}

/// The limits a reload may change that differ between `old` and `new`, as
/// `name old -> new`.
pub fn changes(old: &ProxyLimits, new: &ProxyLimits) -> Vec<String> {
    let fields: [(&str, u64, u64); 6] = [
        (
            "max_connections",
            old.max_connections as u64,
            new.max_connections as u64,
        ),
        (
            "max_request_size",
            old.max_request_size as u64,
            new.max_request_size as u64,
        ),
        (
            "max_send_buffer",
            old.max_send_buffer as u64,
            new.max_send_buffer as u64,
        ),
        ("idle_timeout_ms", old.idle_timeout_ms, new.idle_timeout_ms),
        (
            "request_timeout_ms",
            old.request_timeout_ms,
            new.request_timeout_ms,
        ),
        ("spin_us", old.spin_us, new.spin_us),
    ];
    fields
        .iter()
        .filter(|(_, was, is)| was != is)
        .map(|(name, was, is)| format!("{name} {was} -> {is}"))
        .collect()
}

impl Proxy {
    /// Applies the limits the controller published, if it published new
    /// ones since the last call. Called at every worker scan.
    pub(crate) fn apply_live_limits(&mut self) {
        let live = &self.region.header().limits;
        let generation = live.generation();
        if generation == self.limits_generation {
            return;
        }
        self.limits_generation = generation;
        let new = live.apply_to(&self.limits);
        if let Some((field, reason)) = setup::limits_problem(&new) {
            tracing::error!(
                generation,
                "published limits refused, keeping the current ones: {field}: {reason}"
            );
            return;
        }
        let changed = changes(&self.limits, &new);
        if changed.is_empty() {
            tracing::debug!(generation, "published limits: nothing changed");
            return;
        }
        self.clients.conns.set_limit(new.max_connections);
        self.clients.max_send_buffer = new.max_send_buffer;
        if sweep_interval_ms(&new) != self.timers.sweep_interval_ms {
            let t = &mut self.timers;
            t.sweep_interval_ms = sweep_interval_ms(&new);
            t.next_sweep_ms = t
                .next_sweep_ms
                .min(self.clients.now_ms + t.sweep_interval_ms);
        }
        let request_size_changed = new.max_request_size != self.limits.max_request_size;
        self.limits = new;
        tracing::info!(
            generation,
            changes = %changed.join(", "),
            "live limits applied"
        );
        if request_size_changed {
            self.warn_if_rings_too_small();
        }
    }

    /// Warns when `max_request_size` allows requests a request ring cannot
    /// carry.
    pub(crate) fn warn_if_rings_too_small(&self) {
        if let Some(fits) = self.dispatch.max_request_len() {
            if fits < self.limits.max_request_size {
                tracing::warn!(
                    max_request_size = self.limits.max_request_size,
                    ring_fits = fits,
                    "requests between these sizes cannot fit a request ring and will be closed as oversized"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ProxyLimits {
        ProxyLimits {
            max_connections: 100,
            max_request_size: 1 << 20,
            max_send_buffer: 4 << 20,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 10_000,
            max_udp_flows: 100,
            spin_us: 50,
            drain_timeout_ms: 5_000,
        }
    }

    #[test]
    fn changes_name_each_changed_limit_with_both_values() {
        let old = limits();
        assert!(changes(&old, &old).is_empty());
        let new = ProxyLimits {
            max_connections: 10,
            idle_timeout_ms: 500,
            ..old.clone()
        };
        assert_eq!(
            changes(&old, &new),
            vec!["max_connections 100 -> 10", "idle_timeout_ms 60000 -> 500"]
        );
    }

    #[test]
    fn the_sweep_interval_follows_the_shorter_timeout_within_bounds() {
        let with = |idle_timeout_ms, request_timeout_ms| {
            sweep_interval_ms(&ProxyLimits {
                idle_timeout_ms,
                request_timeout_ms,
                ..limits()
            })
        };
        assert_eq!(with(1, u64::MAX), MIN_SWEEP_INTERVAL_MS);
        assert_eq!(with(4_000, u64::MAX), 500);
        assert_eq!(with(u64::MAX, 4_000), 500);
        assert_eq!(with(u64::MAX, u64::MAX), MAX_SWEEP_INTERVAL_MS);
    }
}
