//! The progress bar: elapsed time over warm-up plus measured window, and
//! the current rate and error count, summed over the load threads'
//! [`ThreadProgress`] cells. Drawn on stderr only when stderr is a
//! terminal and the spec asks for it; otherwise hidden.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::record::ThreadProgress;

/// How often the bar is refreshed (and the runner checks its threads).
pub const PROGRESS_TICK: Duration = Duration::from_millis(100);
/// The bar's layout.
const TEMPLATE: &str = "{spinner} {prefix:>8} [{bar:32}] {msg}";

/// The progress display of one run.
pub struct Progress {
    bar: ProgressBar,
    cells: Vec<Arc<ThreadProgress>>,
    start: Instant,
    warmup: Duration,
    last_ok: u64,
    last_at: Instant,
}

impl Progress {
    /// A display for a run that started at `start`; hidden unless
    /// `enabled` and stderr is a terminal.
    pub fn new(
        enabled: bool,
        start: Instant,
        warmup: Duration,
        duration: Duration,
        cells: Vec<Arc<ThreadProgress>>,
    ) -> Self {
        let total_ms = u64::try_from((warmup + duration).as_millis()).unwrap_or(u64::MAX);
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total_ms), target).with_style(style);
        Progress {
            bar,
            cells,
            start,
            warmup,
            last_ok: 0,
            last_at: start,
        }
    }

    /// Redraws with the current totals.
    pub fn tick(&mut self) {
        if self.bar.is_hidden() {
            return;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.start);
        let ok: u64 = self
            .cells
            .iter()
            .map(|c| c.ok.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = self
            .cells
            .iter()
            .map(|c| c.errors.load(Ordering::Relaxed))
            .sum();
        let dt = now.saturating_duration_since(self.last_at).as_secs_f64();
        let rate = if dt > 0.0 {
            ok.saturating_sub(self.last_ok) as f64 / dt
        } else {
            0.0
        };
        self.last_ok = ok;
        self.last_at = now;
        let phase = if elapsed < self.warmup {
            "warm-up"
        } else {
            "measure"
        };
        self.bar.set_prefix(phase);
        self.bar
            .set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        self.bar
            .set_message(format!("{rate:>10.0} req/s  {errors} errors"));
    }

    /// Removes the bar.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
