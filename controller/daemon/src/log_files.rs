//! Log rotation's file half: a log `<name>.log` is renamed to
//! `<name>.log.<YYYYMMDD-HHMMSS>` (UTC; `-N` appended if that name is
//! taken), and whoever writes it reopens the path (SIGHUP; the controller
//! reopens its own). The writer's fd follows the renamed inode, so lines
//! written between the rename and the reopen end up at the end of the
//! rotated file: no line is lost. Should the reopen fail, the writer keeps
//! writing the rotated file (still no loss, but it grows past `max_size`).
//!
//! [`is_rotated`] and [`is_core`] say which files `spp diskclear` may
//! remove: never a live `*.log`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const DAY_S: u64 = 86_400;

/// The UTC day number of `at` (days since the Unix epoch).
pub fn utc_day(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / DAY_S
}

/// `YYYYMMDD-HHMMSS` of `at`, UTC.
pub fn stamp(at: SystemTime) -> String {
    // "2026-11-21T16:54:28Z"
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}")
}

/// Whether `stamp` is `YYYYMMDD-HHMMSS`, optionally followed by `-N`.
fn is_stamp(stamp: &str) -> bool {
    let b = stamp.as_bytes();
    let base = b.len() >= 15
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit);
    base && match stamp.get(15..) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())),
        None => false,
    }
}

/// Whether `name` is a rotated log: `<anything>.log.<stamp>`.
pub fn is_rotated(name: &str) -> bool {
    name.rsplit_once(".log.")
        .is_some_and(|(stem, stamp)| !stem.is_empty() && is_stamp(stamp))
}

/// Whether `name` is a core dump: `core` or `core.<anything>`.
pub fn is_core(name: &str) -> bool {
    name == "core" || name.strip_prefix("core.").is_some_and(|r| !r.is_empty())
}

/// Renames `log` to its rotated name for `at`; returns that name.
pub fn rename_rotated(log: &Path, at: SystemTime) -> std::io::Result<PathBuf> {
    let base = format!("{}.{}", log.display(), stamp(at));
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    std::fs::rename(log, &target)?;
    Ok(target)
}

/// Whether `log` is due for rotation: non-empty, and at least `max_size`
/// bytes or `day_changed`.
pub fn due(log: &Path, max_size: u64, day_changed: bool) -> bool {
    let len = std::fs::metadata(log).map_or(0, |m| m.len());
    len > 0 && (len >= max_size || day_changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_and_names() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(stamp(at), "20231114-221320");
        assert_eq!(utc_day(at), 19_675);
        assert!(is_rotated("proxy.log.20231114-221320"));
        assert!(is_rotated("worker-g1-0.log.20231114-221320-2"));
        assert!(!is_rotated("proxy.log"));
        assert!(!is_rotated(".log.20231114-221320"));
        assert!(!is_rotated("proxy.log.2023"));
        assert!(!is_rotated("proxy.log.20231114-221320-"));
        assert!(is_core("core") && is_core("core.1234"));
        assert!(!is_core("core.") && !is_core("corefile") && !is_core("x.core"));
    }

    #[test]
    fn a_rename_never_overwrites_an_earlier_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        std::fs::write(&log, "one\n").unwrap();
        assert!(due(&log, 4, false) && !due(&log, 5, false) && due(&log, 5, true));
        let first = rename_rotated(&log, at).unwrap();
        std::fs::write(&log, "two\n").unwrap();
        let second = rename_rotated(&log, at).unwrap();
        assert_ne!(first, second);
        assert!(is_rotated(&second.file_name().unwrap().to_string_lossy()));
        assert_eq!(std::fs::read_to_string(first).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(second).unwrap(), "two\n");
        assert!(!due(&log, 1, true), "a missing log is not due");
    }
}
