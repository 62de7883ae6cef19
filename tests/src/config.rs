//! Writes test configs: TOML in a temp dir, ephemeral ports, short grace.
//!
//! Every optional key is left out of the file unless a test sets it, so a
//! test exercises the controller's defaults unless it says otherwise.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `service.stop_grace` of test services.
pub const TEST_STOP_GRACE: &str = "5s";
/// Ring size of test services.
pub const TEST_RING_SIZE: &str = "4MiB";

/// One worker group of a test config.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Group id.
    pub id: u32,
    /// Plugin path.
    pub plugin: PathBuf,
    /// `plugin_conf`.
    pub plugin_conf: String,
    /// Workers.
    pub workers: u32,
    /// `min_workers` (left out when `None`).
    pub min_workers: Option<u32>,
    /// `max_workers` (left out when `None`).
    pub max_workers: Option<u32>,
    /// `msg_timeout`, e.g. `"200ms"` (left out when `None`).
    pub msg_timeout: Option<String>,
    /// `hang_timeout`, e.g. `"1s"` (left out when `None`).
    pub hang_timeout: Option<String>,
    /// Extra `key = value` lines for this `[[group]]`.
    pub extra: Vec<String>,
}

impl GroupConfig {
    /// Group `id` of `workers` running `plugin`, every optional key left
    /// out.
    pub fn new(id: u32, plugin: &Path, workers: u32) -> Self {
        GroupConfig {
            id,
            plugin: plugin.to_path_buf(),
            plugin_conf: String::new(),
            workers,
            min_workers: None,
            max_workers: None,
            msg_timeout: None,
            hang_timeout: None,
            extra: Vec::new(),
        }
    }
}

/// The `[scaling]` table; a `None` key is left out.
#[derive(Clone, Debug, Default)]
pub struct ScalingConfig {
    /// `interval`, e.g. `"1s"`.
    pub interval: Option<String>,
    /// `up_busy`.
    pub up_busy: Option<f64>,
    /// `down_busy`.
    pub down_busy: Option<f64>,
    /// `step`.
    pub step: Option<u32>,
    /// `cooldown`, e.g. `"1s"`.
    pub cooldown: Option<String>,
    /// `max_total_workers`.
    pub max_total_workers: Option<u32>,
}

/// A test service's config.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Service name.
    pub name: String,
    /// `service.metrics`, e.g. `"127.0.0.1:9100"` (left out when `None`).
    pub metrics: Option<String>,
    /// `service.stop_grace`.
    pub stop_grace: String,
    /// Listen URLs; use port 0.
    pub listen: Vec<String>,
    /// The proxy plugin.
    pub proxy_plugin: PathBuf,
    /// Proxy `plugin_conf`.
    pub proxy_plugin_conf: String,
    /// Extra `key = value` lines for `[proxy]`.
    pub proxy_extra: Vec<String>,
    /// `[scaling]` (left out when `None`).
    pub scaling: Option<ScalingConfig>,
    /// Groups.
    pub groups: Vec<GroupConfig>,
    /// `[rings]` sizes.
    pub ring_size: String,
    /// `[l5]` (left out when `None`: L5 off).
    pub l5: Option<L5Config>,
    /// Extra `key = value` lines for `[service]` (e.g. `user = "nobody"`).
    pub service_extra: Vec<String>,
}

/// The `[l5]` table (and `[l5.balancer]`); a `None` key is left out.
#[derive(Clone, Debug, Default)]
pub struct L5Config {
    /// `modid` (this service's sid; with `cmdid`).
    pub modid: Option<u32>,
    /// `cmdid`.
    pub cmdid: Option<u32>,
    /// `weight`.
    pub weight: Option<u32>,
    /// `group`.
    pub group: Option<u32>,
    /// `backend`: `"embedded"` or `"etcd://host:port[,...]"`.
    pub backend: Option<String>,
    /// `registry_dir` (embedded).
    pub registry_dir: Option<PathBuf>,
    /// `routes_file` (static routes).
    pub routes_file: Option<PathBuf>,
    /// `ttl`, e.g. `"2s"`.
    pub ttl: Option<String>,
    /// `prefix` (etcd).
    pub prefix: Option<String>,
    /// `period`, e.g. `"500ms"`.
    pub period: Option<String>,
    /// `key = value` lines of `[l5.balancer]` (left out when empty).
    pub balancer: Vec<String>,
}

impl L5Config {
    /// The sid `modid:cmdid` registered as a service, with every other key
    /// left out.
    pub fn provider(modid: u32, cmdid: u32) -> Self {
        L5Config {
            modid: Some(modid),
            cmdid: Some(cmdid),
            ..L5Config::default()
        }
    }

    fn render(&self, out: &mut String) {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let _ = writeln!(out, "\n[l5]");
        let mut key = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                let _ = writeln!(out, "{name} = {value}");
            }
        };
        key("modid", self.modid.map(|v| v.to_string()));
        key("cmdid", self.cmdid.map(|v| v.to_string()));
        key("weight", self.weight.map(|v| v.to_string()));
        key("group", self.group.map(|v| v.to_string()));
        key("backend", self.backend.as_ref().map(|v| format!("{v:?}")));
        key("registry_dir", self.registry_dir.as_deref().map(q));
        key("routes_file", self.routes_file.as_deref().map(q));
        key("ttl", self.ttl.as_ref().map(|v| format!("{v:?}")));
        key("prefix", self.prefix.as_ref().map(|v| format!("{v:?}")));
        key("period", self.period.as_ref().map(|v| format!("{v:?}")));
        if !self.balancer.is_empty() {
            let _ = writeln!(out, "\n[l5.balancer]");
            for line in &self.balancer {
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

impl ServiceConfig {
    /// One group of `workers` serving `plugin`, which is also the proxy's
    /// plugin, on one TCP and one UDP ephemeral port.
    pub fn single(plugin: &Path, workers: u32) -> Self {
        ServiceConfig {
            name: "test".into(),
            metrics: None,
            stop_grace: TEST_STOP_GRACE.into(),
            listen: vec!["tcp://127.0.0.1:0".into(), "udp://127.0.0.1:0".into()],
            proxy_plugin: plugin.to_path_buf(),
            proxy_plugin_conf: String::new(),
            proxy_extra: Vec::new(),
            scaling: None,
            groups: vec![GroupConfig::new(1, plugin, workers)],
            ring_size: TEST_RING_SIZE.into(),
            l5: None,
            service_extra: Vec::new(),
        }
    }

    /// The first group, for the many tests that have one.
    pub fn group_mut(&mut self) -> &mut GroupConfig {
        self.groups.first_mut().expect("a config has a group")
    }

    /// The TOML text, with run and log dirs under `dir`.
    pub fn render(&self, dir: &Path) -> String {
        let mut out = String::new();
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let _ = writeln!(out, "[service]\nname = {:?}", self.name);
        let _ = writeln!(
            out,
            "run_dir = {}\nlog_dir = {}",
            q(&dir.join("run")),
            q(&dir.join("log"))
        );
        let _ = writeln!(
            out,
            "log_level = \"info\"\nstop_grace = {:?}",
            self.stop_grace
        );
        if let Some(metrics) = &self.metrics {
            let _ = writeln!(out, "metrics = {metrics:?}");
        }
        for line in &self.service_extra {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "\n[proxy]\nlisten = {:?}", self.listen);
        let _ = writeln!(
            out,
            "plugin = {}\nplugin_conf = {:?}",
            q(&self.proxy_plugin),
            self.proxy_plugin_conf
        );
        for line in &self.proxy_extra {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "\n[rings]\nrequest_size = {:?}\nresponse_size = {:?}",
            self.ring_size, self.ring_size
        );
        if let Some(s) = &self.scaling {
            let _ = writeln!(out, "\n[scaling]");
            let mut key = |name: &str, value: Option<String>| {
                if let Some(value) = value {
                    let _ = writeln!(out, "{name} = {value}");
                }
            };
            key("interval", s.interval.as_ref().map(|v| format!("{v:?}")));
            key("up_busy", s.up_busy.map(|v| format!("{v:?}")));
            key("down_busy", s.down_busy.map(|v| format!("{v:?}")));
            key("step", s.step.map(|v| v.to_string()));
            key("cooldown", s.cooldown.as_ref().map(|v| format!("{v:?}")));
            key(
                "max_total_workers",
                s.max_total_workers.map(|v| v.to_string()),
            );
        }
        for g in &self.groups {
            let _ = writeln!(out, "\n[[group]]\nid = {}\nplugin = {}", g.id, q(&g.plugin));
            let _ = writeln!(
                out,
                "plugin_conf = {:?}\nworkers = {}",
                g.plugin_conf, g.workers
            );
            if let Some(n) = g.min_workers {
                let _ = writeln!(out, "min_workers = {n}");
            }
            if let Some(n) = g.max_workers {
                let _ = writeln!(out, "max_workers = {n}");
            }
            if let Some(t) = &g.msg_timeout {
                let _ = writeln!(out, "msg_timeout = {t:?}");
            }
            if let Some(t) = &g.hang_timeout {
                let _ = writeln!(out, "hang_timeout = {t:?}");
            }
            for line in &g.extra {
                let _ = writeln!(out, "{line}");
            }
        }
        if let Some(l5) = &self.l5 {
            l5.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_keys_are_written_only_when_set() {
        let plugin = Path::new("/p/libx.so");
        let mut cfg = ServiceConfig::single(plugin, 1);
        let plain = cfg.render(Path::new("/d"));
        for key in ["metrics", "[scaling]", "min_workers", "msg_timeout", "[l5]"] {
            assert!(!plain.contains(key), "{key}: {plain}");
        }
        cfg.metrics = Some("127.0.0.1:1".into());
        cfg.scaling = Some(ScalingConfig {
            interval: Some("1s".into()),
            up_busy: Some(0.5),
            max_total_workers: Some(8),
            ..ScalingConfig::default()
        });
        let g = cfg.group_mut();
        g.min_workers = Some(1);
        g.max_workers = Some(3);
        g.msg_timeout = Some("200ms".into());
        g.hang_timeout = Some("1s".into());
        let text = cfg.render(Path::new("/d"));
        for line in [
            "metrics = \"127.0.0.1:1\"",
            "[scaling]\ninterval = \"1s\"\nup_busy = 0.5\nmax_total_workers = 8",
            "min_workers = 1\nmax_workers = 3\nmsg_timeout = \"200ms\"\nhang_timeout = \"1s\"",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    #[test]
    fn the_l5_table_is_written_with_the_keys_set() {
        let mut cfg = ServiceConfig::single(Path::new("/p/libx.so"), 1);
        cfg.l5 = Some(L5Config {
            backend: Some("embedded".into()),
            registry_dir: Some("/r".into()),
            period: Some("500ms".into()),
            balancer: vec!["min_requests = 2".into()],
            ..L5Config::provider(64001, 1)
        });
        let text = cfg.render(Path::new("/d"));
        let l5 = text.split_once("\n[l5]\n").map(|(_, t)| t).unwrap_or("");
        assert_eq!(
            l5,
            "modid = 64001\ncmdid = 1\nbackend = \"embedded\"\nregistry_dir = \"/r\"\n\
             period = \"500ms\"\n\n[l5.balancer]\nmin_requests = 2\n",
            "{text}"
        );
    }
}
