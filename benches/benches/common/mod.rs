//! What every criterion bench of this crate shares.

use criterion::Criterion;
use std::time::Duration;

/// Quick settings: the figures are stable within a few seconds, and the
/// whole `cargo bench -p spp-benches` stays within a few minutes on 2 cores.
pub fn quick() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}
