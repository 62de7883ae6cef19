//! One test per config rule: each bad value is refused with an error that
//! names the file and the key.

use super::super::raw;
use super::*;

const FILE: &str = "/cfg/dir/spp.toml";

const BASE: &str = r#"
[service]
name = "echo"
run_dir = "run"
log_dir = "/var/log/spp"
stop_grace = "2s"

[proxy]
listen = ["tcp://127.0.0.1:7963", "udp://127.0.0.1:7963", "tcp://[::1]:7965"]
plugin = "../lib/libecho.so"
max_request_size = "64KiB"

[rings]
request_size = "1MiB"
response_size = "1MiB"

[[group]]
id = 1
plugin = "libecho.so"
workers = 2

[[group]]
id = 2
plugin = "/abs/libother.so"
plugin_conf = "x=1"
workers = 1
max_workers = 3
spin = "0us"
"#;

/// CPU cores of the machine the tests pretend to validate on.
const CPUS: usize = 4;

fn check(text: &str) -> Result<Config, ConfigError> {
    check_on(text, CPUS)
}

fn check_on(text: &str, cpus: usize) -> Result<Config, ConfigError> {
    let file = Path::new(FILE);
    validate_on(file, raw::parse(file, text)?, cpus)
}

/// Replaces `from` (which must occur) in [`BASE`] and returns the error.
fn error_for(from: &str, to: &str) -> ConfigError {
    assert!(BASE.contains(from), "{from:?} is not in the base config");
    match check(&BASE.replacen(from, to, 1)) {
        Ok(_) => panic!("{from:?} -> {to:?} was accepted"),
        Err(e) => e,
    }
}

/// Asserts that the change is refused naming `key` and the file, and that
/// the message contains `words`.
fn refused(from: &str, to: &str, key: &str, words: &str) {
    let err = error_for(from, to);
    let text = err.to_string();
    assert_eq!(err.key(), Some(key), "{text}");
    assert!(text.starts_with(FILE), "{text}");
    assert!(text.contains(words), "{text:?} lacks {words:?}");
}

#[test]
fn the_base_config_is_valid_and_gets_defaults() {
    let cfg = check(BASE).unwrap();
    assert_eq!(cfg.service.run_dir, Path::new("/cfg/dir/run"));
    assert_eq!(cfg.service.log_dir, Path::new("/var/log/spp"));
    assert_eq!(cfg.service.log_level, defaults::LOG_LEVEL);
    assert_eq!(cfg.service.stop_grace, Duration::from_secs(2));
    assert_eq!(cfg.proxy.plugin, Path::new("/cfg/dir/../lib/libecho.so"));
    assert_eq!(cfg.proxy.listen.len(), 3);
    assert_eq!(cfg.proxy.listen[2].to_string(), "tcp://[::1]:7965");
    assert_eq!(cfg.proxy.max_connections, defaults::MAX_CONNECTIONS);
    assert_eq!(cfg.proxy.max_request_size, 64 << 10);
    assert_eq!(cfg.proxy.max_send_buffer as u64, defaults::MAX_SEND_BUFFER);
    assert_eq!(cfg.proxy.idle_timeout, defaults::IDLE_TIMEOUT);
    assert_eq!(cfg.proxy.request_timeout, defaults::REQUEST_TIMEOUT);
    assert_eq!(cfg.proxy.max_udp_flows, defaults::MAX_UDP_FLOWS);
    assert_eq!(cfg.proxy.spin, defaults::SPIN);
    assert_eq!(
        cfg.rings,
        PairLayout {
            request_capacity: 1 << 20,
            response_capacity: 1 << 20
        }
    );
    assert_eq!(cfg.groups[0].plugin, Path::new("/cfg/dir/libecho.so"));
    assert_eq!((cfg.groups[0].workers, cfg.groups[0].max_workers), (2, 2));
    assert_eq!((cfg.groups[1].workers, cfg.groups[1].max_workers), (1, 3));
    assert_eq!(cfg.groups[1].plugin, Path::new("/abs/libother.so"));
    assert_eq!(cfg.groups[1].plugin_conf, "x=1");
    assert_eq!(cfg.groups[1].spin, Duration::ZERO);
    // max_workers + 1 spare per group.
    assert_eq!(cfg.total_slots(), 3 + 4);
    assert_eq!(cfg.start_workers(), 3);
    let g = &cfg.groups[0];
    assert_eq!((g.min_workers, g.workers, g.max_workers), (2, 2, 2));
    assert!(!g.scales() && cfg.groups[1].scales());
    assert_eq!(g.msg_timeout, defaults::MSG_TIMEOUT);
    assert_eq!(g.hang_timeout, defaults::HANG_TIMEOUT);
    assert_eq!(cfg.service.metrics, None);
    let s = &cfg.scaling;
    assert_eq!(s.interval, defaults::SCALING_INTERVAL);
    assert_eq!(
        (s.up_busy, s.down_busy),
        (defaults::UP_BUSY, defaults::DOWN_BUSY)
    );
    assert_eq!(s.step, defaults::SCALING_STEP);
    assert_eq!(s.cooldown, defaults::SCALING_COOLDOWN);
    assert_eq!(s.max_total_workers, defaults::machine_cap(CPUS));
    assert!(cfg.summary().contains("3 listener(s)"), "{}", cfg.summary());
}

#[test]
fn rings_default_to_4mib() {
    let text = BASE
        .replace("request_size = \"1MiB\"\n", "")
        .replace("response_size = \"1MiB\"\n", "");
    let cfg = check(&text).unwrap();
    assert_eq!(cfg.rings.request_capacity as u64, defaults::RING_SIZE);
    assert_eq!(cfg.rings.response_capacity as u64, defaults::RING_SIZE);
}

#[test]
fn listen_addresses_must_parse() {
    refused(
        "tcp://127.0.0.1:7963\",",
        "sctp://127.0.0.1:1\",",
        "proxy.listen[0]",
        "unknown transport",
    );
    refused(
        "tcp://127.0.0.1:7963\",",
        "127.0.0.1:7963\",",
        "proxy.listen[0]",
        "not an address",
    );
    refused(
        "udp://127.0.0.1:7963",
        "udp://localhost:7963",
        "proxy.listen[1]",
        "not IP:PORT",
    );
    refused(
        "tcp://[::1]:7965",
        "tcp://::1:7965",
        "proxy.listen[2]",
        "[::1]:PORT",
    );
    refused(
        "tcp://[::1]:7965",
        "tcp://127.0.0.1:99999",
        "proxy.listen[2]",
        "not IP:PORT",
    );
}

#[test]
fn two_listeners_on_one_address_are_refused() {
    refused(
        "tcp://[::1]:7965",
        "tcp://127.0.0.1:7963",
        "proxy.listen[2]",
        "already listed as proxy.listen[0]",
    );
    // The same port over the other transport is fine, and so is port 0 twice.
    let text = BASE.replace("tcp://[::1]:7965", "udp://[::1]:0\", \"udp://[::1]:0");
    assert_eq!(check(&text).unwrap().proxy.listen.len(), 4);
}

#[test]
fn at_least_one_listener_and_group() {
    let listen = "[\"tcp://127.0.0.1:7963\", \"udp://127.0.0.1:7963\", \"tcp://[::1]:7965\"]";
    refused(listen, "[]", "proxy.listen", "at least one");
    let no_groups = BASE
        .split("[[group]]")
        .next()
        .unwrap_or_default()
        .to_string();
    let err = check(&no_groups).unwrap_err();
    assert_eq!(err.key(), Some("group"), "{err}");
}

#[test]
fn group_ids_are_unique_and_in_range() {
    refused(
        "id = 2",
        "id = 1",
        "group[1].id",
        "already used by group[0]",
    );
    refused("id = 1", "id = 0", "group[0].id", "1..=255");
    refused("id = 2", "id = 256", "group[1].id", "1..=255");
    refused("id = 2", "id = -1", "group[1].id", "out of range");
}

#[test]
fn worker_counts_are_checked() {
    refused(
        "workers = 2",
        "workers = 0",
        "group[0].workers",
        "out of range",
    );
    refused(
        "max_workers = 3",
        "max_workers = 0",
        "group[1].max_workers",
        "out of range",
    );
    refused(
        "workers = 2",
        "workers = 2\nmax_workers = 1",
        "group[0].max_workers",
        "less than workers = 2",
    );
    refused(
        "workers = 2",
        "workers = 100000",
        "group[0].workers",
        "out of range",
    );
}

#[test]
fn ring_sizes_are_powers_of_two_of_at_least_64kib() {
    refused(
        "request_size = \"1MiB\"",
        "request_size = \"1000KiB\"",
        "rings.request_size",
        "power of two",
    );
    refused(
        "response_size = \"1MiB\"",
        "response_size = \"32KiB\"",
        "rings.response_size",
        "from 64KiB",
    );
    refused(
        "response_size = \"1MiB\"",
        "response_size = \"2GiB\"",
        "rings.response_size",
        "to 1GiB",
    );
}

#[test]
fn sizes_need_units() {
    refused(
        "max_request_size = \"64KiB\"",
        "max_request_size = \"65536\"",
        "proxy.max_request_size",
        "needs a unit",
    );
    refused(
        "max_request_size = \"64KiB\"",
        "max_request_size = \"64 lots\"",
        "proxy.max_request_size",
        "not a size",
    );
    refused(
        "max_request_size = \"64KiB\"",
        "max_request_size = 65536",
        "proxy.max_request_size",
        "invalid type",
    );
    refused(
        "plugin = \"../lib/libecho.so\"",
        "plugin = \"x.so\"\nmax_send_buffer = \"4\"",
        "proxy.max_send_buffer",
        "unit",
    );
}

#[test]
fn a_request_must_fit_in_the_request_ring() {
    refused(
        "max_request_size = \"64KiB\"",
        "max_request_size = \"1MiB\"",
        "proxy.max_request_size",
        "rings.request_size",
    );
    refused(
        "max_request_size = \"64KiB\"",
        "max_request_size = \"0B\"",
        "proxy.max_request_size",
        "from 1B",
    );
}

#[test]
fn the_largest_request_is_the_ipc_layers_own_limit() {
    let largest = spp_ipc::record::max_request_len(1 << 20);
    let fits = BASE.replace(
        "max_request_size = \"64KiB\"",
        &format!("max_request_size = \"{largest}B\""),
    );
    assert_eq!(check(&fits).unwrap().proxy.max_request_size, largest);
    refused(
        "max_request_size = \"64KiB\"",
        &format!("max_request_size = \"{}B\"", largest + 1),
        "proxy.max_request_size",
        &format!("to {largest}B"),
    );
}

#[test]
fn flow_counts_stay_within_what_the_proxy_tracks() {
    let max = defaults::MAX_FLOW_SLOTS;
    let plugin = "plugin = \"../lib/libecho.so\"";
    let at_max = BASE.replace(
        plugin,
        &format!("{plugin}\nmax_connections = {max}\nmax_udp_flows = {max}"),
    );
    let cfg = check(&at_max).unwrap();
    assert_eq!(
        (cfg.proxy.max_connections, cfg.proxy.max_udp_flows),
        (max, max)
    );
    for key in ["max_connections", "max_udp_flows"] {
        refused(
            plugin,
            &format!("{plugin}\n{key} = {}", max + 1),
            &format!("proxy.{key}"),
            &format!("at most {max}"),
        );
    }
}

#[test]
fn durations_need_units_and_sane_values() {
    refused(
        "stop_grace = \"2s\"",
        "stop_grace = \"2\"",
        "service.stop_grace",
        "not a duration",
    );
    refused(
        "stop_grace = \"2s\"",
        "stop_grace = \"0s\"",
        "service.stop_grace",
        "longer than zero",
    );
    refused(
        "spin = \"0us\"",
        "spin = \"5s\"",
        "group[1].spin",
        "too long",
    );
    let idle = "plugin = \"../lib/libecho.so\"";
    refused(
        idle,
        "plugin = \"x.so\"\nidle_timeout = \"soon\"",
        "proxy.idle_timeout",
        "not a duration",
    );
    refused(
        idle,
        "plugin = \"x.so\"\nrequest_timeout = \"0s\"",
        "proxy.request_timeout",
        "longer than zero",
    );
    refused(
        idle,
        "plugin = \"x.so\"\nrequest_timeout = \"slow\"",
        "proxy.request_timeout",
        "not a duration",
    );
    let text = BASE
        .replace("spin = \"0us\"", "spin = \"800ms\"")
        .replace("stop_grace = \"2s\"", "stop_grace = \"1m\"");
    let cfg = check(&text).unwrap();
    assert_eq!(cfg.groups[1].spin, Duration::from_millis(800));
    assert_eq!(cfg.service.stop_grace, Duration::from_secs(60));
}

#[test]
fn limits_are_positive() {
    let plugin = "plugin = \"../lib/libecho.so\"";
    refused(
        plugin,
        "plugin = \"x.so\"\nmax_connections = 0",
        "proxy.max_connections",
        "out of range",
    );
    refused(
        plugin,
        "plugin = \"x.so\"\nmax_udp_flows = -5",
        "proxy.max_udp_flows",
        "out of range",
    );
}

#[test]
fn service_values_are_checked() {
    refused(
        "name = \"echo\"",
        "name = \"\"",
        "service.name",
        "non-empty",
    );
    refused(
        "name = \"echo\"",
        "name = \"two words\"",
        "service.name",
        "non-empty word",
    );
    refused(
        "stop_grace = \"2s\"",
        "log_level = \"info,[\"",
        "service.log_level",
        "not a log filter",
    );
    refused(
        "run_dir = \"run\"",
        "run_dir = \"\"",
        "service.run_dir",
        "empty",
    );
}

#[test]
fn plugin_conf_must_be_a_c_string() {
    refused(
        "plugin_conf = \"x=1\"",
        "plugin_conf = \"x\\u0000y\"",
        "group[1].plugin_conf",
        "NUL",
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_key() {
    refused(
        "workers = 1",
        "workers = 1\nthreads = 4",
        "group[1].threads",
        "unknown field",
    );
    refused(
        "[rings]",
        "[rings]\nsize = \"1MiB\"",
        "rings.size",
        "unknown field",
    );
    refused("[rings]", "[ring]\n[rings]", "ring", "unknown field");
    refused(
        "workers = 2",
        "workers = \"two\"",
        "group[0].workers",
        "invalid type",
    );
    refused("id = 2\n", "", "group[1].id", "missing field");
    let err = error_for("workers = 2", "workers = \"two\"");
    assert!(matches!(err, ConfigError::Syntax { line: 20, .. }), "{err}");
}

#[test]
fn min_workers_is_at_most_workers_and_defaults_to_it() {
    refused(
        "workers = 2",
        "workers = 2\nmin_workers = 3\nmax_workers = 4",
        "group[0].min_workers",
        "more than workers = 2",
    );
    refused(
        "workers = 2",
        "workers = 2\nmin_workers = 0",
        "group[0].min_workers",
        "out of range",
    );
    let text = BASE.replace(
        "workers = 2",
        "workers = 2\nmin_workers = 1\nmax_workers = 5",
    );
    let g = &check(&text).unwrap().groups[0];
    assert_eq!(
        (g.min_workers, g.workers, g.max_workers, g.slots()),
        (1, 2, 5, 6)
    );
}

#[test]
fn timeouts_are_off_at_zero_and_else_at_least_a_millisecond() {
    let text = BASE.replace(
        "workers = 2",
        "workers = 2\nmsg_timeout = \"0s\"\nhang_timeout = \"10s\"",
    );
    let g = &check(&text).unwrap().groups[0];
    assert_eq!(
        (g.msg_timeout, g.hang_timeout),
        (Duration::ZERO, Duration::from_secs(10))
    );
    for key in ["msg_timeout", "hang_timeout"] {
        refused(
            "workers = 2",
            &format!("workers = 2\n{key} = \"500us\""),
            &format!("group[0].{key}"),
            "at least 1ms",
        );
        refused(
            "workers = 2",
            &format!("workers = 2\n{key} = \"5\""),
            &format!("group[0].{key}"),
            "not a duration",
        );
    }
}

/// BASE with a `[scaling]` section holding `lines`.
fn with_scaling(lines: &str) -> String {
    BASE.replacen("[[group]]", &format!("[scaling]\n{lines}\n\n[[group]]"), 1)
}

/// Asserts that `[scaling]` with `lines` is refused naming `key`.
fn scaling_refused(lines: &str, key: &str, words: &str) {
    let err = check(&with_scaling(lines)).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.key(), Some(key), "{text}");
    assert!(text.starts_with(FILE), "{text}");
    assert!(text.contains(words), "{text:?} lacks {words:?}");
}

#[test]
fn scaling_values_are_read() {
    let text = with_scaling(
        "interval = \"2s\"\nup_busy = 0.5\ndown_busy = 0.1\nstep = 3\ncooldown = \"0s\"\nmax_total_workers = 10",
    );
    let s = check(&text).unwrap().scaling;
    assert_eq!(s.interval, Duration::from_secs(2));
    assert_eq!((s.up_busy, s.down_busy, s.step), (0.5, 0.1, 3));
    assert_eq!((s.cooldown, s.max_total_workers), (Duration::ZERO, 10));
}

#[test]
fn busy_thresholds_are_fractions_and_up_is_above_down() {
    scaling_refused(
        "up_busy = 0.0",
        "scaling.up_busy",
        "more than 0 and at most 1",
    );
    scaling_refused("up_busy = 1.5", "scaling.up_busy", "at most 1");
    scaling_refused("down_busy = -0.1", "scaling.down_busy", "more than 0");
    scaling_refused("up_busy = nan", "scaling.up_busy", "out of range");
    // The key the file set is named, the other being a default.
    scaling_refused(
        "down_busy = 0.7",
        "scaling.down_busy",
        "must be below up_busy = 0.6",
    );
    scaling_refused(
        "up_busy = 0.1",
        "scaling.up_busy",
        "down_busy = 0.2 must be below",
    );
    scaling_refused(
        "up_busy = 0.5\ndown_busy = 0.5",
        "scaling.down_busy",
        "must be below",
    );
    assert!(check(&with_scaling("up_busy = 1.0\ndown_busy = 0.9")).is_ok());
}

#[test]
fn scaling_interval_step_and_cooldown_are_checked() {
    scaling_refused("interval = \"500ms\"", "scaling.interval", "at least 1s");
    scaling_refused("interval = \"soon\"", "scaling.interval", "not a duration");
    scaling_refused("step = 0", "scaling.step", "out of range");
    scaling_refused("step = 5000", "scaling.step", "out of range");
    scaling_refused("cooldown = \"1\"", "scaling.cooldown", "not a duration");
    scaling_refused(
        "max_total_workers = -1",
        "scaling.max_total_workers",
        "out of range",
    );
    scaling_refused("workers = 2", "scaling.workers", "unknown field");
}

#[test]
fn the_workers_started_fit_the_machine_cap() {
    // BASE starts 3 workers.
    scaling_refused(
        "max_total_workers = 2",
        "scaling.max_total_workers",
        "start 3 workers, more than the machine cap of 2",
    );
    assert!(check(&with_scaling("max_total_workers = 3")).is_ok());
    // 0 = min(100, 2 x cores): 2 on one core, too few for 3 workers.
    let err = check_on(BASE, 1).unwrap_err();
    assert_eq!(err.key(), Some("scaling.max_total_workers"), "{err}");
    assert!(err.to_string().contains("machine cap of 2"), "{err}");
    assert_eq!(check_on(BASE, 2).unwrap().scaling.max_total_workers, 4);
    assert_eq!(check_on(BASE, 96).unwrap().scaling.max_total_workers, 100);
}

#[test]
fn the_metrics_address_is_ip_port_and_not_a_listener() {
    let cfg = check(&BASE.replace("stop_grace = \"2s\"", "metrics = \"127.0.0.1:9100\"")).unwrap();
    assert_eq!(cfg.service.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    refused(
        "stop_grace = \"2s\"",
        "metrics = \"localhost:9100\"",
        "service.metrics",
        "not IP:PORT",
    );
    refused(
        "stop_grace = \"2s\"",
        "metrics = \"127.0.0.1:7963\"",
        "service.metrics",
        "already used by proxy.listen[0]",
    );
    // The UDP listener on that port does not clash.
    let udp_only = BASE
        .replace("\"tcp://127.0.0.1:7963\", ", "")
        .replace("stop_grace = \"2s\"", "metrics = \"127.0.0.1:7963\"");
    assert!(check(&udp_only).is_ok());
}

#[test]
fn log_keys_have_defaults_units_and_named_errors() {
    let cfg = check(BASE).unwrap();
    assert_eq!(cfg.log.max_size, defaults::LOG_MAX_SIZE);
    assert!(cfg.log.rotate_daily);
    assert_eq!(cfg.log.keep_age, defaults::LOG_KEEP_AGE);
    assert_eq!(cfg.log.keep_total, defaults::LOG_KEEP_TOTAL);
    let text = format!(
        "{BASE}\n[log]\nmax_size = \"10MiB\"\nrotate_daily = false\nkeep_age = \"7d\"\nkeep_total = \"2GiB\"\n"
    );
    let cfg = check(&text).unwrap();
    assert_eq!(cfg.log.max_size, 10 << 20);
    assert!(!cfg.log.rotate_daily);
    assert_eq!(cfg.log.keep_age, Duration::from_secs(7 * 86_400));
    assert_eq!(cfg.log.keep_total, 2 << 30);
    for (line, key, reason) in [
        ("max_size = \"100\"", "log.max_size", "needs a unit"),
        ("max_size = \"10B\"", "log.max_size", "too small"),
        ("keep_age = \"soon\"", "log.keep_age", "not a duration"),
        ("keep_age = \"0s\"", "log.keep_age", "longer than zero"),
        ("keep_total = \"lots\"", "log.keep_total", "not a size"),
        ("keep_days = 3", "log.keep_days", "unknown field"),
    ] {
        let err = check(&format!("{BASE}\n[log]\n{line}\n")).unwrap_err();
        let said = err.to_string();
        assert!(said.contains(FILE), "{said}");
        assert!(said.contains(key), "{said}");
        assert!(said.contains(reason), "{said}");
    }
}

#[test]
fn the_service_user_and_group_must_exist() {
    assert_eq!(check(BASE).unwrap().service.run_as, None);
    let cfg = check(&BASE.replace("stop_grace = \"2s\"", "user = \"root\"")).unwrap();
    let run_as = cfg.service.run_as.expect("service.user is set");
    assert_eq!((run_as.uid, run_as.gid), (0, 0));
    let cfg =
        check(&BASE.replace("stop_grace = \"2s\"", "user = \"root\"\ngroup = \"root\"")).unwrap();
    assert_eq!(
        cfg.service.run_as.map(|r| r.group),
        Some("root".to_string())
    );
    refused(
        "stop_grace = \"2s\"",
        "user = \"no-such-spp-user\"",
        "service.user",
        "no user \"no-such-spp-user\"",
    );
    refused(
        "stop_grace = \"2s\"",
        "user = \"root\"\ngroup = \"no-such-spp-group\"",
        "service.group",
        "no group \"no-such-spp-group\"",
    );
    refused(
        "stop_grace = \"2s\"",
        "group = \"root\"",
        "service.group",
        "needs service.user",
    );
}

#[test]
fn proxy_processes_default_to_one_and_auto_follows_the_cores() {
    assert_eq!(check(BASE).unwrap().proxy.processes, 1);
    let with = |value: &str| {
        BASE.replacen(
            "max_request_size = \"64KiB\"",
            &format!("max_request_size = \"64KiB\"\nprocesses = {value}"),
            1,
        )
    };
    assert_eq!(check(&with("3")).unwrap().proxy.processes, 3);
    assert!(check(&with("3"))
        .unwrap()
        .summary()
        .contains("3 proxy processes"));
    assert_eq!(check(&with("64")).unwrap().proxy.processes, 64);
    for (cpus, shards) in [(2, 1), (4, 1), (7, 1), (8, 2), (32, 8), (1024, 64)] {
        let cfg = check_on(&with("\"auto\""), cpus).unwrap();
        assert_eq!(cfg.proxy.processes, shards, "{cpus} cores");
    }
}

#[test]
fn proxy_processes_out_of_range_or_not_auto_are_refused() {
    let at = "max_request_size = \"64KiB\"";
    for (value, words) in [
        ("0", "out of range: must be 1..=64"),
        ("65", "out of range: must be 1..=64"),
        ("-1", "out of range"),
        ("\"many\"", "\"many\" is not a count 1..=64 or \"auto\""),
    ] {
        refused(
            at,
            &format!("{at}\nprocesses = {value}"),
            "proxy.processes",
            words,
        );
    }
    let err = error_for(at, &format!("{at}\nprocesses = 1.5"));
    assert_eq!(err.key(), Some("proxy.processes"), "{err}");
    assert!(err.to_string().contains(FILE), "{err}");
}

#[path = "validate_mode_tests.rs"]
mod modes;
