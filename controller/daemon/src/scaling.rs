//! The expansion rule (the seeds' 蜂巢 rule), as a pure function.
//!
//! Every `scaling.interval`, for each group whose `min_workers <
//! max_workers`: busy = the time its workers spent inside `spp_process`
//! during the interval; capacity = running workers x interval.
//! * busy > capacity x `up_busy` → add `step` workers, up to the group's
//!   `max_workers` and the machine cap (counting every group);
//! * busy < capacity x `down_busy` → stop one worker, not below
//!   `min_workers`;
//! * no change within `cooldown` of the previous change.
//!
//! [`decide`] turns the [`Figures`] of one evaluation into a [`Decision`];
//! the supervisor measures the figures, applies the decision, logs it
//! ([`Decision::describe`]) and shows it in `spp status`.

use serde::{Deserialize, Serialize};
use spp_config::ScalingConfig;
use std::time::Duration;

/// What one evaluation measured for a group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    /// Time the group's workers spent inside `spp_process`.
    pub busy: Duration,
    /// The time the evaluation covers (about `scaling.interval`).
    pub elapsed: Duration,
    /// Workers running.
    pub running: u32,
    /// Workers the group is meant to have now.
    pub workers: u32,
    /// `min_workers`.
    pub min: u32,
    /// `max_workers`.
    pub max: u32,
    /// Workers the machine cap still allows, over all groups.
    pub room: u32,
    /// Time since the group's previous change, if any.
    pub since_change: Option<Duration>,
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start workers.
    Up,
    /// Stop one worker.
    Down,
    /// Change nothing.
    Hold,
}

impl Action {
    /// The name used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::Hold => "hold",
        }
    }
}

/// One evaluation's outcome, with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Workers before.
    pub from: u32,
    /// Workers after (`from` on hold).
    pub to: u32,
    /// Seconds spent inside `spp_process`.
    pub busy_s: f64,
    /// Seconds the evaluation covers.
    pub interval_s: f64,
    /// Workers running during it.
    pub running: u32,
    /// busy / (running x interval).
    pub busy_ratio: f64,
    /// `scaling.up_busy`.
    pub up_busy: f64,
    /// `scaling.down_busy`.
    pub down_busy: f64,
    /// Why: `"busy"`, `"idle"`, or why nothing changed.
    pub reason: String,
}

impl Decision {
    /// One log line: `up 2 -> 3: busy 1.43 s of 2 worker(s) x 1.00 s =
    /// 71.5% (up > 60%, down < 20%): busy`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} -> {}: busy {:.2} s of {} worker(s) x {:.2} s = {:.1}% (up > {:.0}%, down < {:.0}%): {}",
            self.action.as_str(),
            self.from,
            self.to,
            self.busy_s,
            self.running,
            self.interval_s,
            self.busy_ratio * 100.0,
            self.up_busy * 100.0,
            self.down_busy * 100.0,
            self.reason
        )
    }
}

/// Applies the rule to one group's figures.
pub fn decide(f: &Figures, rule: &ScalingConfig) -> Decision {
    let capacity = f.elapsed.as_secs_f64() * f64::from(f.running);
    let ratio = if capacity > 0.0 {
        f.busy.as_secs_f64() / capacity
    } else {
        0.0
    };
    let decision = |action, to, reason: &str| Decision {
        action,
        from: f.workers,
        to,
        busy_s: f.busy.as_secs_f64(),
        interval_s: f.elapsed.as_secs_f64(),
        running: f.running,
        busy_ratio: ratio,
        up_busy: rule.up_busy,
        down_busy: rule.down_busy,
        reason: reason.to_string(),
    };
    let hold = |reason: &str| decision(Action::Hold, f.workers, reason);
    if capacity <= 0.0 {
        return hold("no worker running");
    }
    let up = ratio > rule.up_busy;
    let down = ratio < rule.down_busy;
    if !up && !down {
        return hold("within thresholds");
    }
    if matches!(f.since_change, Some(since) if since < rule.cooldown) {
        return hold("cooldown");
    }
    if up {
        let to = f
            .workers
            .saturating_add(rule.step)
            .min(f.max)
            .min(f.workers.saturating_add(f.room));
        if to > f.workers {
            return decision(Action::Up, to, "busy");
        }
        if f.workers >= f.max {
            return hold("busy, at max_workers");
        }
        return hold("busy, at the machine cap (scaling.max_total_workers)");
    }
    if f.workers > f.min {
        return decision(Action::Down, f.workers - 1, "idle");
    }
    hold("idle, at min_workers")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ScalingConfig {
        ScalingConfig {
            interval: Duration::from_secs(60),
            up_busy: 0.6,
            down_busy: 0.2,
            step: 2,
            cooldown: Duration::from_secs(60),
            max_total_workers: 100,
        }
    }

    /// Two workers over 60 s, busy `busy_s` seconds in all.
    fn figures(busy_s: u64) -> Figures {
        Figures {
            busy: Duration::from_secs(busy_s),
            elapsed: Duration::from_secs(60),
            running: 2,
            workers: 2,
            min: 1,
            max: 8,
            room: 100,
            since_change: None,
        }
    }

    #[test]
    fn busy_over_the_up_threshold_adds_a_step() {
        // 2 x 60 s x 0.6 = 72 s.
        let d = decide(&figures(73), &rule());
        assert_eq!((d.action, d.from, d.to), (Action::Up, 2, 4));
        assert!((d.busy_ratio - 73.0 / 120.0).abs() < 1e-9);
        assert_eq!(decide(&figures(72), &rule()).action, Action::Hold);
        assert!(d
            .describe()
            .starts_with("up 2 -> 4: busy 73.00 s of 2 worker(s)"));
        assert!(
            d.describe().contains("(up > 60%, down < 20%)"),
            "{}",
            d.describe()
        );
    }

    #[test]
    fn busy_under_the_down_threshold_stops_one() {
        // 2 x 60 s x 0.2 = 24 s.
        let d = decide(&figures(23), &rule());
        assert_eq!((d.action, d.from, d.to), (Action::Down, 2, 1));
        assert_eq!(decide(&figures(24), &rule()).action, Action::Hold);
        let at_min = Figures {
            workers: 1,
            running: 1,
            ..figures(0)
        };
        let d = decide(&at_min, &rule());
        assert_eq!(
            (d.action, d.reason.as_str()),
            (Action::Hold, "idle, at min_workers")
        );
    }

    #[test]
    fn growth_stops_at_the_group_max_and_the_machine_cap() {
        let near_max = Figures {
            max: 3,
            ..figures(100)
        };
        assert_eq!(decide(&near_max, &rule()).to, 3);
        let at_max = Figures {
            max: 2,
            ..figures(100)
        };
        let d = decide(&at_max, &rule());
        assert_eq!(
            (d.action, d.reason.as_str()),
            (Action::Hold, "busy, at max_workers")
        );
        let one_left = Figures {
            room: 1,
            ..figures(100)
        };
        assert_eq!(decide(&one_left, &rule()).to, 3);
        let none_left = Figures {
            room: 0,
            ..figures(100)
        };
        let d = decide(&none_left, &rule());
        assert_eq!(d.action, Action::Hold);
        assert!(d.reason.contains("machine cap"), "{}", d.reason);
    }

    #[test]
    fn nothing_changes_within_the_cooldown() {
        let recent = Figures {
            since_change: Some(Duration::from_secs(59)),
            ..figures(100)
        };
        let d = decide(&recent, &rule());
        assert_eq!((d.action, d.reason.as_str()), (Action::Hold, "cooldown"));
        let old = Figures {
            since_change: Some(Duration::from_secs(60)),
            ..figures(0)
        };
        assert_eq!(decide(&old, &rule()).action, Action::Down);
    }

    #[test]
    fn no_running_worker_is_no_evidence() {
        let none = Figures {
            running: 0,
            ..figures(0)
        };
        let d = decide(&none, &rule());
        assert_eq!((d.action, d.busy_ratio), (Action::Hold, 0.0));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["action"], "hold");
        assert_eq!(json["reason"], "no worker running");
    }

    #[test]
    fn busy_is_measured_against_the_time_really_covered() {
        // A late tick: 90 s covered, 2 workers, 100 s busy = 55.6 %: hold.
        let late = Figures {
            elapsed: Duration::from_secs(90),
            ..figures(100)
        };
        assert_eq!(decide(&late, &rule()).action, Action::Hold);
    }
}
