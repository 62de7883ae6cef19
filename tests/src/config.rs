//! Writes test configs: TOML in a temp dir, ephemeral ports, short grace.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
}

/// A test service's config.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Service name.
    pub name: String,
    /// Listen URLs; use port 0.
    pub listen: Vec<String>,
    /// The proxy plugin.
    pub proxy_plugin: PathBuf,
    /// Proxy `plugin_conf`.
    pub proxy_plugin_conf: String,
    /// Extra `key = value` lines for `[proxy]`.
    pub proxy_extra: Vec<String>,
    /// Groups.
    pub groups: Vec<GroupConfig>,
    /// `[rings]` sizes.
    pub ring_size: String,
}

impl ServiceConfig {
    /// One group of `workers` serving `plugin`, which is also the proxy's
    /// plugin, on one TCP and one UDP ephemeral port.
    pub fn single(plugin: &Path, workers: u32) -> Self {
        ServiceConfig {
            name: "test".into(),
            listen: vec!["tcp://127.0.0.1:0".into(), "udp://127.0.0.1:0".into()],
            proxy_plugin: plugin.to_path_buf(),
            proxy_plugin_conf: String::new(),
            proxy_extra: Vec::new(),
            groups: vec![GroupConfig {
                id: 1,
                plugin: plugin.to_path_buf(),
                plugin_conf: String::new(),
                workers,
            }],
            ring_size: "4MiB".into(),
        }
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
        let _ = writeln!(out, "log_level = \"info\"\nstop_grace = \"5s\"\n");
        let _ = writeln!(out, "[proxy]\nlisten = {:?}", self.listen);
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
        for g in &self.groups {
            let _ = writeln!(out, "\n[[group]]\nid = {}\nplugin = {}", g.id, q(&g.plugin));
            let _ = writeln!(
                out,
                "plugin_conf = {:?}\nworkers = {}",
                g.plugin_conf, g.workers
            );
        }
        out
    }
}
