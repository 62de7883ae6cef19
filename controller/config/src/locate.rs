//! Finding a running service from its config file, even while that file
//! does not validate (an operator mid-edit before a reload): `spp status`,
//! `spp stat` and `spp stop` only need the run directory (for the control
//! socket and the pid file), the service name (for messages) and the stop
//! grace (how long `spp stop` waits).
//!
//! [`locate`] takes them from the validated config when it loads; when it
//! does not, it reads just `service.run_dir`, `service.name` and
//! `service.stop_grace` leniently ([`lenient`]): from the parsed TOML when
//! the file is TOML at all, else line by line from the `[service]` table.
//! A key that is absent gets its default; a `run_dir` that is there but
//! unreadable gives up (a default would name the wrong service), as does a
//! file that cannot be read. `start`, `check`, `reload` and `restart` stay
//! strict ([`super::load`]).

use super::{load, Config, ConfigError};
use crate::defaults;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// Where a service lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// `service.name` (the config file's name when it cannot be read).
    pub name: String,
    /// `service.run_dir`, absolute.
    pub run_dir: PathBuf,
    /// `service.stop_grace`.
    pub stop_grace: Duration,
}

impl Location {
    /// The pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join(defaults::PID_FILE)
    }

    /// The control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir.join(defaults::CONTROL_SOCKET)
    }
}

impl From<&Config> for Location {
    fn from(cfg: &Config) -> Self {
        Location {
            name: cfg.service.name.clone(),
            run_dir: cfg.service.run_dir.clone(),
            stop_grace: cfg.service.stop_grace,
        }
    }
}

/// The service `file` describes. When the file does not validate but its
/// `[service]` keys can still be read, the location comes with the
/// validation error (to warn about); when they cannot, that error is
/// returned.
pub fn locate(file: &Path) -> Result<(Location, Option<ConfigError>), ConfigError> {
    let invalid = match load(file) {
        Ok(cfg) => return Ok((Location::from(&cfg), None)),
        Err(e @ ConfigError::Read { .. }) => return Err(e),
        Err(e) => e,
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        return Err(invalid);
    };
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = file.parent().unwrap_or(Path::new("/"));
    match lenient(&text) {
        Some(keys) => {
            let name = keys.name.unwrap_or_else(|| {
                file.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            });
            let run_dir = dir.join(keys.run_dir.as_deref().unwrap_or(defaults::RUN_DIR));
            let stop_grace = keys
                .stop_grace
                .and_then(|g| humantime::parse_duration(g.trim()).ok())
                .unwrap_or(defaults::STOP_GRACE);
            let location = Location {
                name,
                run_dir,
                stop_grace,
            };
            Ok((location, Some(invalid)))
        }
        None => Err(invalid),
    }
}

/// The `[service]` keys [`locate`] needs, as strings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceKeys {
    /// `service.name`.
    pub name: Option<String>,
    /// `service.run_dir`, as written.
    pub run_dir: Option<String>,
    /// `service.stop_grace`, as written.
    pub stop_grace: Option<String>,
}

/// The keys [`locate`] reads.
const KEYS: [&str; 3] = ["name", "run_dir", "stop_grace"];

/// Reads the `[service]` keys of `text` whatever else is wrong with it;
/// `None` when `run_dir` is there but cannot be read as a non-empty
/// string.
pub fn lenient(text: &str) -> Option<ServiceKeys> {
    let found = match text.parse::<Table>() {
        Ok(table) => from_table(&table),
        Err(_) => line_by_line(text),
    };
    let mut keys = ServiceKeys::default();
    for (key, value) in found {
        let slot = match key {
            "name" => &mut keys.name,
            "run_dir" => &mut keys.run_dir,
            _ => &mut keys.stop_grace,
        };
        match value {
            Some(v) if !v.is_empty() => *slot = Some(v),
            _ if key == "run_dir" => return None,
            // A name or grace that cannot be read gets its default.
            _ => {}
        }
    }
    Some(keys)
}

/// Each of [`KEYS`] present in `table`'s `[service]`: its string value,
/// `None` when it is not a string.
fn from_table(table: &Table) -> Vec<(&'static str, Option<String>)> {
    let Some(service) = table.get("service").and_then(Value::as_table) else {
        return Vec::new();
    };
    KEYS.iter()
        .filter_map(|&key| {
            let value = service.get(key)?;
            Some((key, value.as_str().map(str::to_string)))
        })
        .collect()
}

/// [`from_table`] for a file that is not TOML as a whole: each line of the
/// `[service]` table (or a top-level `service.KEY = ...` line) assigning
/// one of [`KEYS`] is parsed on its own; the last one wins.
fn line_by_line(text: &str) -> Vec<(&'static str, Option<String>)> {
    let mut table = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            continue;
        }
        let Some((key, _)) = trimmed.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let key = match (table.as_str(), key.strip_prefix("service.")) {
            ("service", _) => key,
            ("", Some(inner)) => inner.trim(),
            _ => continue,
        };
        let Some(&key) = KEYS.iter().find(|&&k| k == key) else {
            continue;
        };
        // Parsed alone, as a key of [service].
        let value = format!("[service]\n{}", trimmed.trim_start_matches("service."))
            .parse::<Table>()
            .ok()
            .as_ref()
            .and_then(|t| from_table(t).into_iter().find(|(k, _)| *k == key))
            .and_then(|(_, v)| v);
        found.push((key, value));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(name: &str, run_dir: &str, grace: Option<&str>) -> ServiceKeys {
        ServiceKeys {
            name: Some(name.to_string()),
            run_dir: Some(run_dir.to_string()),
            stop_grace: grace.map(str::to_string),
        }
    }

    #[test]
    fn a_file_that_is_toml_gives_its_service_keys_whatever_else_is_wrong() {
        let text = "[service]\nname = \"svc\"\nrun_dir = \"state\"\nstop_grace = \"9s\"\n\
                    [proxy]\nmax_conns = \"many\"\n";
        assert_eq!(lenient(text), Some(keys("svc", "state", Some("9s"))));
        // Absent keys are left to their defaults.
        assert_eq!(lenient("[proxy]\n"), Some(ServiceKeys::default()));
        // A run_dir that is there but not a usable string: no guess.
        assert_eq!(lenient("[service]\nname = \"x\"\nrun_dir = 5\n"), None);
        assert_eq!(lenient("[service]\nrun_dir = \"\"\n"), None);
        // A bad name or grace only loses that key.
        assert_eq!(
            lenient("[service]\nname = 1\nrun_dir = \"r\"\nstop_grace = 3\n"),
            Some(ServiceKeys {
                run_dir: Some("r".to_string()),
                ..ServiceKeys::default()
            })
        );
    }

    #[test]
    fn a_file_that_is_not_toml_is_read_line_by_line() {
        let text = "this is not toml\n[service]\nname = \"svc\" # comment\n\
                    run_dir = \"state\"\n[[group]]\nid = \n";
        assert_eq!(lenient(text), Some(keys("svc", "state", None)));
        // Top-level dotted keys.
        let text = "service.name = \"svc\"\nservice.run_dir = \"r\"\n[proxy\n";
        assert_eq!(lenient(text), Some(keys("svc", "r", None)));
        // Keys of other tables do not count.
        let text = "[proxy]\nname = \"p\"\nrun_dir = \"no\"\n[oops\n";
        assert_eq!(lenient(text), Some(ServiceKeys::default()));
        // The run_dir line itself is broken: no guess.
        let text = "[service]\nname = \"svc\"\nrun_dir = \"sta\n";
        assert_eq!(lenient(text), None);
    }

    #[test]
    fn locate_falls_back_on_the_service_keys_and_keeps_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spp.toml");
        std::fs::write(
            &file,
            "[service]\nname = \"svc\"\nrun_dir = \"state\"\nstop_grace = \"7s\"\n\
             [proxy]\nplugin = \"p.so\"\nmax_connections = \"lots\"\n",
        )
        .unwrap();
        let (location, invalid) = locate(&file).unwrap();
        assert_eq!(
            location,
            Location {
                name: "svc".to_string(),
                run_dir: dir.path().join("state"),
                stop_grace: Duration::from_secs(7),
            }
        );
        assert_eq!(location.socket_path(), dir.path().join("state/spp.sock"));
        let invalid = invalid.expect("the validation error").to_string();
        assert!(invalid.contains("proxy.max_connections"), "{invalid}");

        // Not TOML, keys absent: the defaults, relative to the file.
        std::fs::write(&file, "[service\n").unwrap();
        let (location, invalid) = locate(&file).unwrap();
        assert_eq!(location.run_dir, dir.path().join(defaults::RUN_DIR));
        assert_eq!(location.name, "spp.toml");
        assert_eq!(location.stop_grace, defaults::STOP_GRACE);
        assert!(invalid.is_some());

        // run_dir unreadable, or no file: the error.
        std::fs::write(&file, "[service]\nrun_dir = [\n").unwrap();
        assert!(matches!(locate(&file), Err(ConfigError::Syntax { .. })));
        let missing = dir.path().join("none.toml");
        assert!(matches!(locate(&missing), Err(ConfigError::Read { .. })));
    }
}
