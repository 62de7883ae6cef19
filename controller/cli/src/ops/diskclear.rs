//! `spp diskclear -c FILE`: removes rotated logs (`*.log.<stamp>` in
//! `service.log_dir`) and core files (`core`, `core.*` in `log_dir` and
//! `run_dir`) older than `log.keep_age`, then the oldest of the rest until
//! they total at most `log.keep_total` bytes. A live log (`*.log`) is never
//! a candidate. Works whether or not the service runs (it only looks at
//! files). Prints every file removed and a summary line; exit 0, or 1 if a
//! removal failed (the others are still done).

use super::OpsError;
use crate::cli::{ConfigArg, EXIT_FAILURE, EXIT_OK};
use spp_config::{self as config, Config};
use spp_daemon::log_files::{is_core, is_rotated};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A file diskclear may remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
    /// Its last modification.
    pub modified: SystemTime,
}

/// What [`plan`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// To remove, with why ("older than 7days", "over keep_total").
    pub remove: Vec<(Candidate, &'static str)>,
    /// To keep.
    pub keep: Vec<Candidate>,
}

/// The rotated logs and cores under the config's directories.
pub fn candidates(cfg: &Config) -> Result<Vec<Candidate>, OpsError> {
    let mut out = Vec::new();
    let mut dirs = vec![cfg.service.log_dir.clone()];
    if cfg.service.run_dir != cfg.service.log_dir {
        dirs.push(cfg.service.run_dir.clone());
    }
    for (pos, dir) in dirs.iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(OpsError::Io {
                    path: dir.clone(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Rotated logs live in log_dir; cores in either.
            let wanted = is_core(&name) || (pos == 0 && is_rotated(&name));
            if !wanted {
                continue;
            }
            // Not followed: a symlink or directory named like one is left.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            out.push(Candidate {
                path: entry.path(),
                len: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(out)
}

/// Which candidates go at `now`: those older than `keep_age`, then the
/// oldest until the rest total at most `keep_total`.
pub fn plan(
    mut files: Vec<Candidate>,
    now: SystemTime,
    keep_age: Duration,
    keep_total: u64,
) -> Plan {
    files.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
    let mut plan = Plan::default();
    let mut kept = Vec::new();
    for f in files {
        let age = now.duration_since(f.modified).unwrap_or(Duration::ZERO);
        if age > keep_age {
            plan.remove.push((f, "older than keep_age"));
        } else {
            kept.push(f);
        }
    }
    let mut total: u64 = kept.iter().map(|f| f.len).sum();
    for f in kept {
        if total > keep_total {
            total -= f.len;
            plan.remove.push((f, "over keep_total"));
        } else {
            plan.keep.push(f);
        }
    }
    plan
}

/// `spp diskclear`: see the module docs. Returns the exit status.
pub fn run(arg: &ConfigArg) -> Result<u8, OpsError> {
    let cfg = config::load(&arg.file())?;
    let plan = plan(
        candidates(&cfg)?,
        SystemTime::now(),
        cfg.log.keep_age,
        cfg.log.keep_total,
    );
    Ok(apply(&cfg.service.name, &plan))
}

/// Removes what `plan` says, printing each file and a summary.
fn apply(service: &str, plan: &Plan) -> u8 {
    let (mut files, mut bytes, mut failed) = (0u64, 0u64, 0u64);
    for (f, why) in &plan.remove {
        match std::fs::remove_file(&f.path) {
            Ok(()) => {
                files += 1;
                bytes += f.len;
                println!("removed {} ({} bytes, {why})", f.path.display(), f.len);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                failed += 1;
                eprintln!("spp: diskclear: removing {}: {e}", f.path.display());
            }
        }
    }
    let kept: u64 = plan.keep.iter().map(|f| f.len).sum();
    println!(
        "spp: diskclear {service}: freed {files} file(s), {bytes} bytes; kept {} file(s), {kept} bytes{}",
        plan.keep.len(),
        if failed > 0 {
            format!("; {failed} could not be removed")
        } else {
            String::new()
        }
    );
    if failed > 0 {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

/// Whether `path` names a file diskclear could remove (for tests and docs).
#[cfg(test)]
fn removable(path: &std::path::Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| is_rotated(&n) || is_core(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, len: u64, age_s: u64, now: SystemTime) -> Candidate {
        Candidate {
            path: PathBuf::from(name),
            len,
            modified: now - Duration::from_secs(age_s),
        }
    }

    #[test]
    fn old_files_go_then_the_oldest_until_the_total_fits() {
        let now = SystemTime::now();
        let files = vec![
            file("a.log.20240101-000000", 100, 10, now),
            file("b.log.20240101-000000", 100, 1000, now),
            file("core", 500, 20, now),
            file("c.log.20240101-000000", 100, 5, now),
        ];
        let p = plan(files, now, Duration::from_secs(500), 250);
        let removed: Vec<&str> = p
            .remove
            .iter()
            .map(|(f, _)| f.path.to_str().unwrap())
            .collect();
        // b by age; then the core (oldest left) brings 700 to 200.
        assert_eq!(removed, vec!["b.log.20240101-000000", "core"]);
        assert_eq!(p.keep.len(), 2);
        assert!(removable(std::path::Path::new(
            "/x/proxy.log.20240101-000000"
        )));
        assert!(!removable(std::path::Path::new("/x/proxy.log")));
    }
}
