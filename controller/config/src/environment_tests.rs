//! The plugin part of [`check`]: what the loader is asked (role, group,
//! conf) and when a stateful plugin, or one with `spp_poll` outside an
//! async group, is warned about.

use super::*;
use std::cell::RefCell;

/// A config whose plugins are empty files in `dir`: group 1 fixed at two
/// workers, group 2 scaling from 1 to 3.
fn config(dir: &Path) -> Config {
    for name in ["proxy.so", "g1.so", "g2.so"] {
        std::fs::write(dir.join(name), b"").unwrap();
    }
    let text = format!(
        r#"
[service]
name = "t"
run_dir = "{d}/run"

[proxy]
listen = ["tcp://127.0.0.1:7963"]
plugin = "{d}/proxy.so"
plugin_conf = "proxy-conf"
max_connections = 16

[[group]]
id = 1
plugin = "{d}/g1.so"
plugin_conf = "one"
workers = 2

[[group]]
id = 2
plugin = "{d}/g2.so"
plugin_conf = "two"
workers = 1
max_workers = 3
"#,
        d = dir.display()
    );
    let file = dir.join("spp.toml");
    std::fs::write(&file, text).unwrap();
    crate::load(&file).unwrap()
}

/// What the loader was asked: (file name, role, group, conf).
type Asked = RefCell<Vec<(String, &'static str, u32, String)>>;

fn run(cfg: &Config, stateful: bool, asked: &Asked) -> Result<Vec<Warning>, ConfigError> {
    check(cfg, Mode::Inspect, &|t: &PluginTarget<'_>| {
        let name = t.path.file_name().unwrap().to_string_lossy().into_owned();
        asked
            .borrow_mut()
            .push((name, t.role.as_str(), t.group, t.conf.to_string()));
        Ok(PluginFacts {
            stateful,
            ..PluginFacts::default()
        })
    })
}

#[test]
fn every_plugin_is_checked_with_its_role_group_and_conf() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let asked = Asked::default();
    assert_eq!(run(&cfg, false, &asked).unwrap(), vec![]);
    assert_eq!(
        asked.into_inner(),
        vec![
            ("proxy.so".into(), "proxy", 0, "proxy-conf".into()),
            ("g1.so".into(), "worker", 1, "one".into()),
            ("g2.so".into(), "worker", 2, "two".into()),
        ]
    );
}

#[test]
fn a_stateful_plugin_is_warned_about_only_in_a_group_that_scales() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let warnings = run(&cfg, true, &Asked::default()).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert_eq!(w.key, "group[1].plugin");
    let text = w.to_string();
    assert!(text.contains("spp.toml"), "{text}");
    assert!(text.contains("g2.so declares itself stateful"), "{text}");
    assert!(
        text.contains("min_workers = 1 and max_workers = 3"),
        "{text}"
    );
}

#[test]
fn a_plugin_that_fails_its_check_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let err = check(&cfg, Mode::Inspect, &|t: &PluginTarget<'_>| match t.group {
        2 => Err("spp_init returned 7".to_string()),
        _ => Ok(PluginFacts::default()),
    })
    .unwrap_err();
    assert_eq!(err.key(), Some("group[1].plugin"));
    assert!(err.to_string().contains("spp_init returned 7"), "{err}");
}

#[test]
fn a_plugin_with_spp_poll_is_warned_about_outside_an_async_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.groups[1].async_tasks = Some(crate::AsyncTasks {
        max_in_flight: 8,
        task_timeout: std::time::Duration::from_secs(1),
    });
    let polls = |t: &PluginTarget<'_>| {
        Ok(PluginFacts {
            polls: t.role == PluginRole::Worker,
            ..PluginFacts::default()
        })
    };
    let warnings = check(&cfg, Mode::Inspect, &polls).unwrap();
    assert_eq!(warnings.len(), 1, "only the plain group: {warnings:?}");
    let w = &warnings[0];
    assert_eq!(w.key, "group[0].mode");
    let text = w.to_string();
    assert!(text.contains("g1.so exports spp_poll"), "{text}");
    assert!(text.contains("group 1"), "{text}");
    assert!(text.contains("one at a time"), "{text}");
}
