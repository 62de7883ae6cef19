//! Adaptive spinning: how long an idle proxy or worker spins before it
//! sleeps, learned from how long its recent waits lasted.
//!
//! Spinning buys latency with CPU: under load the next request (or
//! response) comes within microseconds and a spin catches it without a
//! sleep and a wake-up on either side; under light load (one connection,
//! a request every few tens of µs) the whole gap is spun away and CPU per
//! request doubles. [`AdaptiveSpin`] keeps a spin budget between a floor
//! and the configured `spin` (the maximum): a wait no longer than a
//! quarter of the maximum ([`SHORT_WAIT_DIVISOR`]) sets the budget to the
//! maximum (spinning pays: work comes quickly), a longer one halves it,
//! down to the floor (a sixteenth of the maximum, [`FLOOR_DIVISOR`]). The
//! floor keeps a short spin on every wait so that short waits are seen
//! again when load returns (a sleeping process would measure its own
//! wake-up latency instead).
//!
//! A wait is measured from the start of the spin to the moment work was
//! seen, sleep included where the caller can tell; a spin that ran out
//! counts as long ([`AdaptiveSpin::ran_out`]). No syscall, no allocation:
//! the caller reads the clock it already reads.

/// A wait up to `max / SHORT_WAIT_DIVISOR` is short: spin the whole
/// budget next time.
pub const SHORT_WAIT_DIVISOR: u64 = 4;
/// The budget never falls below `max / FLOOR_DIVISOR`.
pub const FLOOR_DIVISOR: u64 = 16;

/// The spin budget of one spinning loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveSpin {
    max_ns: u64,
    budget_ns: u64,
}

impl AdaptiveSpin {
    /// A budget of at most `max_ns` (the configured spin), starting full.
    pub fn new(max_ns: u64) -> Self {
        AdaptiveSpin {
            max_ns,
            budget_ns: max_ns,
        }
    }

    /// How long to spin now, ns (0: spinning is off).
    pub fn budget_ns(&self) -> u64 {
        self.budget_ns
    }

    /// The configured maximum, ns.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// Changes the maximum (a live config change); the budget starts full.
    pub fn set_max(&mut self, max_ns: u64) {
        if max_ns != self.max_ns {
            *self = AdaptiveSpin::new(max_ns);
        }
    }

    /// A wait that lasted `waited_ns` ended with work found.
    pub fn record(&mut self, waited_ns: u64) {
        if waited_ns <= self.max_ns / SHORT_WAIT_DIVISOR {
            self.budget_ns = self.max_ns;
        } else {
            self.budget_ns = (self.budget_ns / 2).max(self.max_ns / FLOOR_DIVISOR);
        }
    }

    /// The spin ran out without work: a long wait.
    pub fn ran_out(&mut self) {
        self.record(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_waits_fill_the_budget_and_long_ones_halve_it_to_the_floor() {
        let mut spin = AdaptiveSpin::new(64_000);
        assert_eq!(spin.budget_ns(), 64_000);
        spin.ran_out();
        assert_eq!(spin.budget_ns(), 32_000);
        spin.record(20_000);
        assert_eq!(spin.budget_ns(), 16_000);
        for _ in 0..10 {
            spin.ran_out();
        }
        assert_eq!(spin.budget_ns(), 64_000 / FLOOR_DIVISOR);
        spin.record(16_000);
        assert_eq!(spin.budget_ns(), 64_000);
        spin.set_max(64_000);
        assert_eq!(spin.budget_ns(), 64_000);
        spin.ran_out();
        spin.set_max(0);
        assert_eq!(spin.budget_ns(), 0);
        spin.record(0);
        assert_eq!(spin.budget_ns(), 0);
    }
}
