//! What `spp reload` may change: [`compare`] refuses the keys that need a
//! restart (listeners, rings, the proxy's plugin and `processes`, the set of groups, more
//! workers than the slots created, any `[l5]` key or the content of its
//! routes file, ...) and lists the ones it applies.
//!
//! Applied by the supervisor: proxy limits (published to the running proxy
//! through `ProxyHeader::limits`), group sizes and timeouts, scaling, the
//! log level and stop grace of children started from then on, `[log]`
//! (rotation from the next tick), and every group's workers (replaced one
//! by one, so a rebuilt plugin is picked up even when the file did not
//! change).

use super::{format_size, Config, ConfigError, GroupConfig};
use std::fmt::Debug;

/// Why a key cannot change without a restart.
const NEEDS_RESTART: &str = "cannot change on reload; restart the service (spp restart)";

/// Compares the running config `old` with `new`. `slots` holds the worker
/// slots created per group (in config order); `open_files` is the fd limit
/// the proxy runs with. Returns the changes, one `key: old -> new` line
/// each, or the first key that needs a restart.
pub fn compare(
    old: &Config,
    new: &Config,
    slots: &[u32],
    open_files: u64,
) -> Result<Vec<String>, ConfigError> {
    let refuse = |key: &str, reason: String| ConfigError::Invalid {
        file: new.file.clone(),
        key: key.to_string(),
        reason,
    };
    let fixed = |key: &str, was: String, now: String| -> Result<(), ConfigError> {
        if was == now {
            Ok(())
        } else {
            Err(refuse(key, format!("{was} -> {now}: {NEEDS_RESTART}")))
        }
    };
    let (os, ns) = (&old.service, &new.service);
    fixed("service.name", os.name.clone(), ns.name.clone())?;
    fixed("service.run_dir", dbg(&os.run_dir), dbg(&ns.run_dir))?;
    fixed("service.log_dir", dbg(&os.log_dir), dbg(&ns.log_dir))?;
    fixed("service.metrics", dbg(&os.metrics), dbg(&ns.metrics))?;
    fixed("service.user", dbg(&os.run_as), dbg(&ns.run_as))?;
    let (op, np) = (&old.proxy, &new.proxy);
    let listen = |c: &Config| {
        let all: Vec<String> = c.proxy.listen.iter().map(ToString::to_string).collect();
        format!("[{}]", all.join(", "))
    };
    fixed("proxy.listen", listen(old), listen(new))?;
    fixed("proxy.plugin", dbg(&op.plugin), dbg(&np.plugin))?;
    // The shards' listeners, regions and pairs are made at start.
    fixed(
        "proxy.processes",
        op.processes.to_string(),
        np.processes.to_string(),
    )?;
    fixed(
        "proxy.plugin_conf",
        dbg(&op.plugin_conf),
        dbg(&np.plugin_conf),
    )?;
    fixed(
        "proxy.max_udp_flows",
        op.max_udp_flows.to_string(),
        np.max_udp_flows.to_string(),
    )?;
    let ring = |bytes: usize| format_size(bytes as u64);
    fixed(
        "rings.request_size",
        ring(old.rings.request_capacity),
        ring(new.rings.request_capacity),
    )?;
    fixed(
        "rings.response_size",
        ring(old.rings.response_capacity),
        ring(new.rings.response_capacity),
    )?;
    let ids = |c: &Config| {
        let all: Vec<String> = c.groups.iter().map(|g| g.id.to_string()).collect();
        format!("[{}]", all.join(", "))
    };
    if ids(old) != ids(new) {
        return Err(refuse(
            "group",
            format!(
                "group ids {} -> {}: groups {NEEDS_RESTART}",
                ids(old),
                ids(new)
            ),
        ));
    }
    l5_fixed(old, new, &fixed)?;
    for (pos, g) in new.groups.iter().enumerate() {
        let created = slots.get(pos).copied().unwrap_or(0);
        if g.max_workers >= created {
            return Err(refuse(
                &format!("group[{pos}].max_workers"),
                format!(
                    "{} needs more than the {created} worker slots created at start \
                     (max_workers + 1 spare): at most {} without a restart",
                    g.max_workers,
                    created.saturating_sub(1)
                ),
            ));
        }
    }
    let needed = super::environment::files_needed(new);
    if needed > open_files {
        return Err(refuse(
            "proxy.max_connections",
            format!(
                "{} connections need {needed} open files, but the proxy runs with a limit of \
                 {open_files}: {NEEDS_RESTART}",
                np.max_connections
            ),
        ));
    }

    let mut changes = Vec::new();
    let mut note = |key: &str, was: String, now: String| {
        if was != now {
            changes.push(format!("{key}: {was} -> {now}"));
        }
    };
    note(
        "service.log_level",
        os.log_level.clone(),
        ns.log_level.clone(),
    );
    note(
        "service.stop_grace",
        dbg(&os.stop_grace),
        dbg(&ns.stop_grace),
    );
    // Rotation reads these every tick; diskclear reads the file.
    let (ol, nl) = (&old.log, &new.log);
    note(
        "log.max_size",
        format_size(ol.max_size),
        format_size(nl.max_size),
    );
    note(
        "log.rotate_daily",
        ol.rotate_daily.to_string(),
        nl.rotate_daily.to_string(),
    );
    note("log.keep_age", dbg(&ol.keep_age), dbg(&nl.keep_age));
    note(
        "log.keep_total",
        format_size(ol.keep_total),
        format_size(nl.keep_total),
    );
    let size = |bytes: usize| format_size(bytes as u64);
    note(
        "proxy.max_connections",
        op.max_connections.to_string(),
        np.max_connections.to_string(),
    );
    note(
        "proxy.max_request_size",
        size(op.max_request_size),
        size(np.max_request_size),
    );
    note(
        "proxy.max_send_buffer",
        size(op.max_send_buffer),
        size(np.max_send_buffer),
    );
    note(
        "proxy.idle_timeout",
        dbg(&op.idle_timeout),
        dbg(&np.idle_timeout),
    );
    note(
        "proxy.request_timeout",
        dbg(&op.request_timeout),
        dbg(&np.request_timeout),
    );
    note("proxy.spin", dbg(&op.spin), dbg(&np.spin));
    let (osc, nsc) = (&old.scaling, &new.scaling);
    note("scaling.interval", dbg(&osc.interval), dbg(&nsc.interval));
    note(
        "scaling.up_busy",
        osc.up_busy.to_string(),
        nsc.up_busy.to_string(),
    );
    note(
        "scaling.down_busy",
        osc.down_busy.to_string(),
        nsc.down_busy.to_string(),
    );
    note("scaling.step", osc.step.to_string(), nsc.step.to_string());
    note("scaling.cooldown", dbg(&osc.cooldown), dbg(&nsc.cooldown));
    note(
        "scaling.max_total_workers",
        osc.max_total_workers.to_string(),
        nsc.max_total_workers.to_string(),
    );
    for (pos, (o, n)) in old.groups.iter().zip(&new.groups).enumerate() {
        group_changes(pos, o, n, &mut note);
    }
    Ok(changes)
}

/// `[l5]` needs a restart, every key of it (the registry task, the route
/// table's rules and the static routes are set up at start).
fn l5_fixed(
    old: &Config,
    new: &Config,
    fixed: &impl Fn(&str, String, String) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let on = |c: &Config| if c.l5.is_some() { "on" } else { "off" }.to_string();
    match (&old.l5, &new.l5) {
        (Some(o), Some(n)) => {
            for ((key, was), (_, now)) in o.settings().into_iter().zip(n.settings()) {
                fixed(key, was, now)?;
            }
            Ok(())
        }
        _ => fixed("l5", on(old), on(new)),
    }
}

fn group_changes(
    pos: usize,
    o: &GroupConfig,
    n: &GroupConfig,
    note: &mut impl FnMut(&str, String, String),
) {
    let mut key = |field: &str, was: String, now: String| {
        note(&format!("group[{pos}].{field}"), was, now);
    };
    key("workers", o.workers.to_string(), n.workers.to_string());
    key(
        "min_workers",
        o.min_workers.to_string(),
        n.min_workers.to_string(),
    );
    key(
        "max_workers",
        o.max_workers.to_string(),
        n.max_workers.to_string(),
    );
    key("msg_timeout", dbg(&o.msg_timeout), dbg(&n.msg_timeout));
    key("hang_timeout", dbg(&o.hang_timeout), dbg(&n.hang_timeout));
    key("plugin", dbg(&o.plugin), dbg(&n.plugin));
    key("plugin_conf", dbg(&o.plugin_conf), dbg(&n.plugin_conf));
    key("spin", dbg(&o.spin), dbg(&n.spin));
    key(
        "mode",
        dbg(&(o.microthreads, o.async_tasks)),
        dbg(&(n.microthreads, n.async_tasks)),
    );
}

/// A value as `{:?}` writes it (paths and strings quoted, durations with
/// units).
fn dbg(value: &impl Debug) -> String {
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw;
    use crate::validate::validate_on;
    use std::path::Path;

    const BASE: &str = r#"
[service]
name = "echo"
[proxy]
listen = ["tcp://127.0.0.1:7963"]
plugin = "libecho.so"
max_connections = 100
max_request_size = "64KiB"
[rings]
request_size = "1MiB"
response_size = "1MiB"
[[group]]
id = 1
plugin = "libecho.so"
workers = 2
max_workers = 3
"#;

    fn cfg(text: &str) -> Config {
        let file = Path::new("/cfg/spp.toml");
        validate_on(file, raw::parse(file, text).unwrap(), 4).unwrap()
    }

    /// Compares BASE with BASE after replacing `from` by `to`.
    fn changed(from: &str, to: &str) -> Result<Vec<String>, ConfigError> {
        assert!(BASE.contains(from), "{from:?}");
        compare(
            &cfg(BASE),
            &cfg(&BASE.replacen(from, to, 1)),
            &[4],
            u64::MAX,
        )
    }

    fn refused(from: &str, to: &str, key: &str) {
        let err = changed(from, to).unwrap_err();
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().contains("/cfg/spp.toml"), "{err}");
    }

    #[test]
    fn the_same_file_changes_nothing() {
        assert_eq!(changed("id = 1", "id = 1").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn log_keys_change_without_a_restart() {
        let changes = changed(
            "max_workers = 3\n",
            "max_workers = 3\n[log]\nmax_size = \"1MiB\"\nkeep_total = \"2GiB\"\n",
        )
        .unwrap();
        assert_eq!(
            changes,
            vec![
                "log.max_size: 100MiB -> 1MiB",
                "log.keep_total: 1GiB -> 2GiB"
            ]
        );
    }

    #[test]
    fn what_needs_a_restart_is_refused_naming_the_key() {
        refused(
            "tcp://127.0.0.1:7963",
            "tcp://127.0.0.1:7964",
            "proxy.listen",
        );
        refused("name = \"echo\"", "name = \"other\"", "service.name");
        refused(
            "max_connections = 100",
            "max_connections = 100\nprocesses = 2",
            "proxy.processes",
        );
        refused(
            "name = \"echo\"",
            "name = \"echo\"\nmetrics = \"127.0.0.1:9\"",
            "service.metrics",
        );
        refused(
            "name = \"echo\"",
            "name = \"echo\"\nrun_dir = \"elsewhere\"",
            "service.run_dir",
        );
        refused(
            "name = \"echo\"",
            "name = \"echo\"\nuser = \"root\"",
            "service.user",
        );
        refused(
            "plugin = \"libecho.so\"\nmax",
            "plugin = \"other.so\"\nmax",
            "proxy.plugin",
        );
        refused(
            "max_connections = 100",
            "max_connections = 100\nmax_udp_flows = 7",
            "proxy.max_udp_flows",
        );
        refused(
            "request_size = \"1MiB\"",
            "request_size = \"2MiB\"",
            "rings.request_size",
        );
        refused("id = 1", "id = 2", "group");
        refused("[[group]]", "[l5]\nbackend = \"embedded\"\n[[group]]", "l5");
        let with_l5 = BASE.replace("[[group]]", "[l5]\nmodid = 7\ncmdid = 1\n[[group]]");
        let err = compare(
            &cfg(&with_l5),
            &cfg(&with_l5.replace("cmdid = 1", "cmdid = 2")),
            &[4],
            u64::MAX,
        )
        .unwrap_err();
        assert_eq!(err.key(), Some("l5.cmdid"), "{err}");
        let err = compare(
            &cfg(&with_l5),
            &cfg(&with_l5.replace("cmdid = 1", "cmdid = 1\n[l5.balancer]\nskip_ratio = 0.5")),
            &[4],
            u64::MAX,
        )
        .unwrap_err();
        assert_eq!(err.key(), Some("l5.balancer.skip_ratio"), "{err}");
        assert!(compare(&cfg(&with_l5), &cfg(&with_l5), &[4], u64::MAX).is_ok());
        // A changed routes file too (same path, other content).
        let mut edited = cfg(&with_l5);
        if let Some(l5) = edited.l5.as_mut() {
            l5.routes.push(spp_ipc::l5::Instance {
                sid: spp_ipc::l5::Sid { modid: 1, cmdid: 1 },
                addr: "127.0.0.1:1".parse().unwrap(),
                weight: 100,
            });
        }
        let err = compare(&cfg(&with_l5), &edited, &[4], u64::MAX).unwrap_err();
        assert_eq!(err.key(), Some("l5.routes_file"), "{err}");
        assert!(err.to_string().contains("0 route(s)"), "{err}");
        let two = format!("{BASE}\n[[group]]\nid = 2\nplugin = \"x.so\"\nworkers = 1\n");
        let err = compare(&cfg(BASE), &cfg(&two), &[4], u64::MAX).unwrap_err();
        assert_eq!(err.key(), Some("group"), "{err}");
    }

    #[test]
    fn max_workers_may_grow_only_into_the_slots_created() {
        // 4 slots: max_workers 3 + the spare.
        refused("max_workers = 3", "max_workers = 4", "group[0].max_workers");
        let err = changed("max_workers = 3", "max_workers = 4").unwrap_err();
        assert!(err.to_string().contains("at most 3"), "{err}");
        let ok = changed("max_workers = 3", "max_workers = 2").unwrap();
        assert_eq!(ok, ["group[0].max_workers: 3 -> 2"]);
    }

    #[test]
    fn more_connections_than_the_proxys_fd_limit_are_refused() {
        let new = cfg(&BASE.replace("max_connections = 100", "max_connections = 5000"));
        let limit = crate::environment::files_needed(&cfg(BASE));
        let err = compare(&cfg(BASE), &new, &[4], limit).unwrap_err();
        assert_eq!(err.key(), Some("proxy.max_connections"), "{err}");
        assert!(compare(&cfg(BASE), &cfg(BASE), &[4], limit).is_ok());
    }

    #[test]
    fn applied_changes_are_listed_with_both_values() {
        let text = BASE
            .replace("max_connections = 100", "max_connections = 200")
            .replace(
                "workers = 2",
                "workers = 3\nmin_workers = 1\nplugin_conf = \"x\"\nhang_timeout = \"5s\"",
            )
            .replace(
                "[[group]]",
                "[scaling]\nup_busy = 0.7\nmax_total_workers = 9\n[[group]]",
            );
        let changes = compare(&cfg(BASE), &cfg(&text), &[4], u64::MAX).unwrap();
        for line in [
            "proxy.max_connections: 100 -> 200",
            "scaling.up_busy: 0.6 -> 0.7",
            "scaling.max_total_workers: 8 -> 9",
            "group[0].workers: 2 -> 3",
            "group[0].min_workers: 2 -> 1",
            "group[0].hang_timeout: 30s -> 5s",
            "group[0].plugin_conf: \"\" -> \"x\"",
        ] {
            assert!(changes.iter().any(|c| c == line), "{line}: {changes:?}");
        }
    }
}
