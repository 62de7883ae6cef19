//! The config file as written: serde structs that reject unknown keys, and
//! the TOML parse whose errors name the key at fault.
//!
//! Sizes and durations stay strings here and integers stay `i64`, so that
//! [`super::validate`] can check units and ranges with messages that name
//! the key.

use super::ConfigError;
use serde::Deserialize;
use std::path::Path;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub service: RawService,
    pub proxy: RawProxy,
    #[serde(default)]
    pub rings: RawRings,
    #[serde(default)]
    pub scaling: RawScaling,
    #[serde(default)]
    pub group: Vec<RawGroup>,
    /// Absent: L5 off.
    pub l5: Option<RawL5>,
    #[serde(default)]
    pub log: RawLog,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub max_size: Option<String>,
    pub rotate_daily: Option<bool>,
    pub keep_age: Option<String>,
    pub keep_total: Option<String>,
}

/// `[service]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    pub run_dir: Option<String>,
    pub log_dir: Option<String>,
    pub log_level: Option<String>,
    pub stop_grace: Option<String>,
    pub metrics: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

/// `[proxy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    #[serde(default)]
    pub listen: Vec<String>,
    pub plugin: String,
    pub plugin_conf: Option<String>,
    pub max_connections: Option<i64>,
    pub max_request_size: Option<String>,
    pub max_send_buffer: Option<String>,
    pub idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_udp_flows: Option<i64>,
    pub spin: Option<String>,
    pub processes: Option<RawProcesses>,
}

/// `proxy.processes`: a count, or a word (`"auto"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawProcesses {
    /// `processes = 2`.
    Count(i64),
    /// `processes = "auto"` (any other word is refused by validation).
    Word(String),
}

/// `[rings]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRings {
    pub request_size: Option<String>,
    pub response_size: Option<String>,
}

/// `[scaling]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScaling {
    pub interval: Option<String>,
    pub up_busy: Option<f64>,
    pub down_busy: Option<f64>,
    pub step: Option<i64>,
    pub cooldown: Option<String>,
    pub max_total_workers: Option<i64>,
}

/// One `[[group]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub id: i64,
    pub plugin: String,
    pub plugin_conf: Option<String>,
    pub workers: i64,
    pub min_workers: Option<i64>,
    pub max_workers: Option<i64>,
    pub msg_timeout: Option<String>,
    pub hang_timeout: Option<String>,
    pub spin: Option<String>,
    pub mode: Option<String>,
    pub max_in_flight: Option<i64>,
    pub stack_size: Option<String>,
    pub task_timeout: Option<String>,
}

/// `[l5]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawL5 {
    pub modid: Option<i64>,
    pub cmdid: Option<i64>,
    pub weight: Option<i64>,
    pub group: Option<i64>,
    pub backend: Option<String>,
    pub registry_dir: Option<String>,
    pub routes_file: Option<String>,
    pub ttl: Option<String>,
    pub prefix: Option<String>,
    pub period: Option<String>,
    pub advertise: Option<String>,
    #[serde(default)]
    pub balancer: RawBalancer,
}

/// `[l5.balancer]`: overrides of `spp_ipc::l5::balancer::BalancerConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    pub min_requests: Option<i64>,
    pub good_ratio: Option<f64>,
    pub grow_share: Option<f64>,
    pub guard_share: Option<f64>,
    pub probe_share: Option<f64>,
    pub revive_share: Option<f64>,
    pub skip_ratio: Option<f64>,
    pub trip_errors: Option<i64>,
}

/// Parses `text` (the content of `file`).
pub fn parse(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start).min(text.len());
        let (line, table, key) = key_at(text, offset);
        let reason = e.message().trim().to_string();
        // A missing field is reported at its table, not at a key in it.
        let key = backticked(&reason, "missing field `").unwrap_or(&key);
        let key = match (table.is_empty(), key.is_empty()) {
            (true, true) => "(top level)".to_string(),
            (_, true) => table,
            (true, false) => key.to_string(),
            (false, false) => format!("{table}.{key}"),
        };
        ConfigError::Syntax {
            file: file.to_path_buf(),
            line,
            key,
            reason,
        }
    })
}

/// The text between `prefix` and the next backtick in `message`.
fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    rest.split('`').next()
}

/// The 1-based line of `offset`, the table it is in (e.g. `group[1]`) and
/// the last key assigned in that table up to there (e.g. `workers`).
fn key_at(text: &str, offset: usize) -> (usize, String, String) {
    let mut table = String::new();
    let mut array_counts: Vec<(String, usize)> = Vec::new();
    let mut last_key = String::new();
    let mut line_no = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
        {
            let name = name.trim().to_string();
            let count = match array_counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    array_counts.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{count}]");
            last_key.clear();
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
            last_key.clear();
        } else if let Some((k, _)) = trimmed.split_once('=') {
            if !trimmed.starts_with('#') {
                last_key = k.trim().trim_matches('"').to_string();
            }
        }
        at += line.len();
        if offset < at {
            break;
        }
    }
    (line_no.max(1), table, last_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_names_tables_array_entries_and_keys() {
        let text =
            "[service]\nname = \"x\"\n\n[[group]]\nid = 1\n[[group]]\nid = 2\nworkers = \"many\"\n";
        let offset = text.find("\"many\"").unwrap();
        assert_eq!(
            key_at(text, offset),
            (8, "group[1]".to_string(), "workers".to_string())
        );
        let offset = text.find("[service]").unwrap();
        assert_eq!(
            key_at(text, offset),
            (1, "service".to_string(), String::new())
        );
    }

    #[test]
    fn parse_errors_name_the_key() {
        let file = Path::new("/x/spp.toml");
        let text = "[service]\nname = \"x\"\n[proxy]\nplugin = \"p.so\"\nmax_conns = 5\n";
        let err = parse(file, text).unwrap_err().to_string();
        assert!(err.contains("/x/spp.toml"), "{err}");
        assert!(err.contains("proxy.max_conns"), "{err}");
        assert!(err.contains("unknown field"), "{err}");

        let text = "[service]\nname = \"x\"\n[proxy]\nlisten = []\n";
        let err = parse(file, text).unwrap_err().to_string();
        assert!(err.contains("proxy.plugin"), "{err}");
        assert!(err.contains("missing field"), "{err}");
    }
}
