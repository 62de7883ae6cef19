//! Adaptive spinning: how long an idle proxy or worker spins before it
//! sleeps, learned from how long its recent waits lasted.
//!
//! Spinning buys latency with CPU: under load (a closed loop, even on one
//! connection) the next request or response comes within microseconds and
//! a spin catches it without a sleep and a wake-up on either side; under
//! light load (requests far apart) the whole spin is wasted and CPU per
//! request doubles. [`AdaptiveSpin`] keeps a spin budget between a floor
//! (a sixteenth of the configured `spin`, [`FLOOR_DIVISOR`]) and the
//! configured `spin` (the maximum). A wait is measured from the start of
//! the spin to the moment work was seen, sleep included: one no longer
//! than [`BUSY_WAIT_MULTIPLE`] × the maximum means work comes often
//! (spinning pays, or would have: a sleeping pair of processes sees gaps
//! of their own wake-up latencies, tens of µs), and sets the budget to the
//! maximum; a longer one halves it, down to the floor. So a closed loop
//! keeps spinning, and requests far apart cost little CPU.

/// A wait up to `max × BUSY_WAIT_MULTIPLE` (sleep included) means work
/// comes often: spin the whole budget next time.
pub const BUSY_WAIT_MULTIPLE: u64 = 4;
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

    /// A wait that lasted `waited_ns` (sleep included) ended with work.
    pub fn record(&mut self, waited_ns: u64) {
        if waited_ns <= self.max_ns.saturating_mul(BUSY_WAIT_MULTIPLE) {
            self.budget_ns = self.max_ns;
        } else {
            self.budget_ns = (self.budget_ns / 2).max(self.max_ns / FLOOR_DIVISOR);
        }
    }

    /// The spin ran out and the wait's end is not known here: a long wait.
    pub fn ran_out(&mut self) {
        self.record(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_work_fills_the_budget_and_long_waits_halve_it_to_the_floor() {
        let mut spin = AdaptiveSpin::new(64_000);
        assert_eq!(spin.budget_ns(), 64_000);
        spin.ran_out();
        assert_eq!(spin.budget_ns(), 32_000);
        spin.record(64_000 * BUSY_WAIT_MULTIPLE + 1);
        assert_eq!(spin.budget_ns(), 16_000);
        for _ in 0..10 {
            spin.ran_out();
        }
        assert_eq!(spin.budget_ns(), 64_000 / FLOOR_DIVISOR);
        // A sleeping closed loop sees gaps of its wake-ups: still "often".
        spin.record(150_000);
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
