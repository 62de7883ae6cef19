//! The metric names the tests look for (the controller's stable names,
//! `controller/daemon/src/stats/names.rs`, in one place here) and a
//! parser of the Prometheus text exposition.

use std::collections::BTreeMap;

/// Proxy: requests framed or datagrams accepted.
pub const PROXY_REQUESTS: &str = "spp_proxy_requests_total";
/// Proxy: calls of the exception hook.
pub const PROXY_EXCEPTIONS: &str = "spp_proxy_exceptions_total";
/// Worker group: requests handed to `spp_process` (label `group`).
pub const WORKER_REQUESTS: &str = "spp_worker_requests_total";
/// Worker group: live workers (label `group`).
pub const GROUP_WORKERS: &str = "spp_group_workers";
/// Worker group: queue-wait summary (label `group`).
pub const GROUP_QUEUE_WAIT: &str = "spp_group_queue_wait_seconds";
/// Worker group: process-time summary (label `group`).
pub const GROUP_PROCESS: &str = "spp_group_process_seconds";
/// A plugin's named counter (labels `process`, `group`, `name`).
pub const PLUGIN_COUNTER: &str = "spp_plugin_counter_total";
/// A plugin's named latency summary (labels `process`, `group`, `name`).
pub const PLUGIN_LATENCY: &str = "spp_plugin_latency_seconds";

/// Label: group id.
pub const LABEL_GROUP: &str = "group";
/// Label: `proxy` or `worker`.
pub const LABEL_PROCESS: &str = "process";
/// Label: a plugin metric's name.
pub const LABEL_NAME: &str = "name";
/// `process` label of worker groups.
pub const PROCESS_WORKER: &str = "worker";

/// The suffix of a summary's sample count.
pub const COUNT_SUFFIX: &str = "_count";
/// The suffix of a summary's sample sum.
pub const SUM_SUFFIX: &str = "_sum";

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The value (NaN for `NaN`).
    pub value: f64,
}

impl Sample {
    /// Whether every `(label, value)` of `wanted` is on this sample.
    pub fn has(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// Every sample of an exposition; `Err` names the first line that does
/// not parse.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_line(line).ok_or_else(|| format!("bad exposition line {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y"` (values may hold escaped quotes and commas).
fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').trim().to_string(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The value of the one sample called `name` with `labels`, if any.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.has(labels))
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values() {
        let text = "# HELP x y\n# TYPE x counter\nx 3\n\
                    y{group=\"1\",name=\"a\\\"b,c\"} 2.5\nz{q=\"0.5\"} NaN\n";
        let samples = parse(text).expect("parses");
        assert_eq!(value(&samples, "x", &[]), Some(3.0));
        assert_eq!(
            value(&samples, "y", &[("group", "1"), ("name", "a\"b,c")]),
            Some(2.5)
        );
        assert!(value(&samples, "z", &[("q", "0.5")]).is_some_and(f64::is_nan));
        assert!(parse("broken{").is_err());
    }
}
