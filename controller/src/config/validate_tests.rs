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

fn check(text: &str) -> Result<Config, ConfigError> {
    let file = Path::new(FILE);
    validate(file, raw::parse(file, text)?)
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
    assert_eq!(cfg.total_slots(), 5);
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
