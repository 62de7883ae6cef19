//! One test per `[l5]` rule: each bad value is refused with an error that
//! names the file and the key; the routes file's errors name its line.

use super::super::raw;
use super::super::validate::validate_on;
use super::super::Config;
use super::*;

const FILE: &str = "/cfg/dir/spp.toml";

const BASE: &str = r#"
[service]
name = "echo"

[proxy]
listen = ["tcp://127.0.0.1:7963", "udp://127.0.0.1:7963", "tcp://[::1]:7965"]
plugin = "libecho.so"

[[group]]
id = 3
plugin = "libecho.so"
workers = 1

[[group]]
id = 4
plugin = "libecho.so"
workers = 1
"#;

fn check(text: &str) -> Result<Config, ConfigError> {
    let file = Path::new(FILE);
    validate_on(file, raw::parse(file, text)?, 4)
}

/// BASE with `l5` as its `[l5]` table.
fn with_l5(l5: &str) -> String {
    format!("{BASE}\n[l5]\n{l5}\n")
}

fn l5_of(l5: &str) -> L5Config {
    check(&with_l5(l5)).unwrap().l5.expect("[l5] is on")
}

/// Asserts `[l5]` = `l5` is refused naming `key`, the file and `words`.
fn refused(l5: &str, key: &str, words: &str) {
    let err = match check(&with_l5(l5)) {
        Ok(_) => panic!("{l5:?} was accepted"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert_eq!(err.key(), Some(key), "{text}");
    assert!(text.starts_with(FILE), "{text}");
    assert!(text.contains(words), "{text:?} lacks {words:?}");
}

#[test]
fn no_table_means_l5_off_and_an_empty_table_gets_the_defaults() {
    assert!(check(BASE).unwrap().l5.is_none());
    let l5 = l5_of("");
    assert_eq!(l5.sid, None);
    assert_eq!(l5.weight, 100);
    assert_eq!(l5.group, 3, "the first group");
    assert_eq!(l5.backend, L5Backend::Embedded);
    assert_eq!(l5.registry_dir, Path::new(defaults::L5_REGISTRY_DIR));
    assert_eq!(l5.routes_file, None);
    assert_eq!(l5.ttl, Duration::from_secs(15));
    assert_eq!(l5.prefix, "/spp/l5/");
    assert_eq!(l5.advertise, None);
    assert_eq!(l5.balancer, BalancerConfig::default());
    assert_eq!(l5.balancer.period, Duration::from_secs(5));
}

#[test]
fn every_key_is_read() {
    let l5 = l5_of(
        r#"modid = 64001
cmdid = 2
weight = 300
group = 4
backend = "etcd://127.0.0.1:2379, [::1]:22379,etcd-2.example:2379"
registry_dir = "reg"
routes_file = "l5.routes"
ttl = "3s"
prefix = "/x/"
period = "500ms"
advertise = "10.0.0.5"
[l5.balancer]
min_requests = 4
good_ratio = 0.9
grow_share = 0.1
guard_share = 0.4
probe_share = 0.05
revive_share = 0.2
skip_ratio = 0.5
trip_errors = 3
"#,
    );
    assert_eq!(
        l5.sid,
        Some(Sid {
            modid: 64001,
            cmdid: 2
        })
    );
    assert_eq!((l5.weight, l5.group), (300, 4));
    assert_eq!(
        l5.backend,
        L5Backend::Etcd {
            endpoints: vec![
                "127.0.0.1:2379".into(),
                "[::1]:22379".into(),
                "etcd-2.example:2379".into()
            ]
        }
    );
    assert_eq!(
        l5.backend.to_string(),
        "etcd://127.0.0.1:2379,[::1]:22379,etcd-2.example:2379"
    );
    assert_eq!(l5.registry_dir, Path::new("/cfg/dir/reg"));
    assert_eq!(
        l5.routes_file.as_deref(),
        Some(Path::new("/cfg/dir/l5.routes"))
    );
    assert_eq!(l5.ttl, Duration::from_secs(3));
    assert_eq!(l5.prefix, "/x/");
    assert_eq!(l5.advertise, Some("10.0.0.5".parse().unwrap()));
    let b = &l5.balancer;
    assert_eq!(b.period, Duration::from_millis(500));
    assert_eq!((b.min_requests, b.trip_errors), (4, 3));
    assert_eq!(
        (
            b.good_ratio,
            b.grow_share,
            b.guard_share,
            b.probe_share,
            b.revive_share,
            b.skip_ratio
        ),
        (0.9, 0.1, 0.4, 0.05, 0.2, 0.5)
    );
}

#[test]
fn modid_and_cmdid_come_both_or_neither() {
    refused("modid = 1", "l5.cmdid", "both");
    refused("cmdid = 1", "l5.modid", "both");
    refused("modid = 0\ncmdid = 1", "l5.modid", "out of range");
    refused("modid = 1\ncmdid = 4294967296", "l5.cmdid", "out of range");
}

#[test]
fn weight_group_and_durations_are_bounded() {
    refused("weight = 99", "l5.weight", "100..=10000");
    refused("weight = 10001", "l5.weight", "100..=10000");
    // The embedded registry holds weights to a tenth of that range.
    refused(
        "weight = 1001",
        "l5.weight",
        "more than the embedded registry accepts (1000",
    );
    assert_eq!(l5_of("weight = 1000").weight, 1000);
    refused(
        "group = 9",
        "l5.group",
        "no [[group]] has id 9 (the ids are 3, 4)",
    );
    refused("ttl = \"500ms\"", "l5.ttl", "out of range");
    refused("ttl = \"soon\"", "l5.ttl", "not a duration");
    refused("period = \"10ms\"", "l5.period", "out of range");
    refused("prefix = \"/spp/l5\"", "l5.prefix", "ending in '/'");
    refused("prefix = \"/a b/\"", "l5.prefix", "without spaces");
}

#[test]
fn the_backend_is_embedded_or_etcd_endpoints() {
    refused("backend = \"zk://h:1\"", "l5.backend", "not \"embedded\"");
    refused("backend = \"etcd://\"", "l5.backend", "has no :port");
    refused("backend = \"etcd://h:0\"", "l5.backend", "no port");
    refused("backend = \"etcd://a:1,,b:2\"", "l5.backend", "\"\"");
    refused("backend = \"etcd://::1:2379\"", "l5.backend", "IPv6");
    refused("backend = \"etcd://[zz]:2379\"", "l5.backend", "IPv6");
}

#[test]
fn a_wildcard_listener_needs_an_advertised_ip_to_register() {
    let wild = BASE.replace("tcp://[::1]:7965", "tcp://0.0.0.0:7965");
    let err = check(&format!("{wild}\n[l5]\nmodid = 1\ncmdid = 1\n")).unwrap_err();
    assert_eq!(err.key(), Some("l5.advertise"), "{err}");
    assert!(err.to_string().contains("proxy.listen[2]"), "{err}");
    // A consumer registers nothing: no IP needed.
    assert!(check(&format!("{wild}\n[l5]\n")).is_ok());
    let cfg = check(&format!(
        "{wild}\n[l5]\nmodid = 1\ncmdid = 1\nadvertise = \"192.0.2.7\"\n"
    ))
    .unwrap();
    let l5 = cfg.l5.unwrap();
    let bound: Vec<SocketAddr> = ["127.0.0.1:7963", "127.0.0.1:7963", "0.0.0.0:7965"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let addrs: Vec<String> = l5
        .instances(&bound)
        .iter()
        .map(|i| i.addr.to_string())
        .collect();
    // TCP and UDP on one address are one instance; the wildcard is
    // advertised.
    assert_eq!(addrs, ["127.0.0.1:7963", "192.0.2.7:7965"]);
    refused(
        "advertise = \"0.0.0.0\"",
        "l5.advertise",
        "cannot be reached",
    );
    refused("advertise = \"host\"", "l5.advertise", "not an IP");
}

#[test]
fn a_consumer_registers_nothing() {
    let l5 = l5_of("");
    assert!(l5.instances(&["127.0.0.1:1".parse().unwrap()]).is_empty());
}

#[test]
fn balancer_numbers_are_checked_by_key() {
    refused(
        "[l5.balancer]\ngood_ratio = 1.5",
        "l5.balancer.good_ratio",
        "1.5",
    );
    refused(
        "[l5.balancer]\nmin_requests = 0",
        "l5.balancer.min_requests",
        "out of range",
    );
    refused(
        "[l5.balancer]\ntrip_errors = -1",
        "l5.balancer.trip_errors",
        "out of range",
    );
    let err = check(&with_l5("[l5.balancer]\nperiod = \"1s\"")).unwrap_err();
    assert_eq!(err.key(), Some("l5.balancer.period"), "{err}");
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = check(&with_l5("modid = 1\ncmdid = 1\nsid = 3")).unwrap_err();
    assert_eq!(err.key(), Some("l5.sid"), "{err}");
}

#[test]
fn routes_lines_are_read_with_comments_and_default_weights() {
    let text = "# static routes\n64001 1 127.0.0.1 7000\n\n64001 1 ::1 7001 300 # v6\n  7 9 10.1.2.3 80\t10000\n";
    let routes = parse_routes(Path::new("/r"), text).unwrap();
    let got: Vec<String> = routes
        .iter()
        .map(|i| format!("{} {} {}", i.sid, i.addr, i.weight))
        .collect();
    assert_eq!(
        got,
        [
            "64001:1 127.0.0.1:7000 100",
            "64001:1 [::1]:7001 300",
            "7:9 10.1.2.3:80 10000"
        ]
    );
}

#[test]
fn routes_errors_name_the_file_and_line() {
    let bad = |text: &str, words: &str| {
        let err = parse_routes(Path::new("/cfg/l5.routes"), text).unwrap_err();
        assert!(err.contains(words), "{err:?} lacks {words:?}");
    };
    bad(
        "1 1 127.0.0.1 80\n1 1 127.0.0.1\n",
        "/cfg/l5.routes:2: 3 field(s)",
    );
    bad("1 1 127.0.0.1 80 100 7\n", ":1: 6 field(s)");
    bad("x 1 127.0.0.1 80\n", ":1: modid \"x\"");
    bad("1 0 127.0.0.1 80\n", ":1: cmdid \"0\"");
    bad("1 1 localhost 80\n", ":1: \"localhost\" is not an IP");
    bad("1 1 0.0.0.0 80\n", "cannot be called");
    bad("1 1 127.0.0.1 0\n", ":1: port \"0\"");
    bad("1 1 127.0.0.1 70000\n", "port \"70000\"");
    bad(
        "1 1 127.0.0.1 80 99\n",
        "weight \"99\" is not a number 100..=10000",
    );
    bad(
        "1 1 127.0.0.1 80\n#\n1 1 127.0.0.1 80 200\n",
        ":3: 1:1 127.0.0.1:80 is already listed on line 1",
    );
}

#[test]
fn the_routes_file_is_read_at_load_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spp.toml");
    std::fs::write(
        &config,
        with_l5("routes_file = \"l5.routes\"").replace("libecho.so", "/x/libecho.so"),
    )
    .unwrap();
    // Missing: refused, naming the key and the routes file.
    let err = super::super::load(&config).unwrap_err();
    assert_eq!(err.key(), Some("l5.routes_file"), "{err}");
    assert!(err.to_string().contains("l5.routes: cannot read"), "{err}");
    // Bad line: the routes file and the line.
    let routes = dir.path().join("l5.routes");
    std::fs::write(&routes, "5 6 127.0.0.1 99\n5 6 127.0.0.1\n").unwrap();
    let err = super::super::load(&config).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{}:2: 3 field(s)", routes.display())),
        "{err}"
    );
    std::fs::write(&routes, "5 6 127.0.0.1 99\n").unwrap();
    let cfg = super::super::load(&config).unwrap();
    let l5 = cfg.l5.unwrap();
    assert_eq!(l5.routes.len(), 1);
    assert_eq!(l5.routes[0].addr.port(), 99);
}

#[test]
fn a_registry_dir_writable_by_others_without_the_sticky_bit_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    assert!(registry_dir_refusal(0o40755).is_none());
    assert!(registry_dir_refusal(0o41777).is_none());
    assert!(registry_dir_refusal(0o40777).unwrap().contains("sticky"));
    assert!(registry_dir_refusal(0o40770).unwrap().contains("mode 770"));
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let mut l5 = l5_of(&format!("registry_dir = {:?}", reg.display().to_string()));
    // Missing: created at the first registration.
    assert!(check_registry_dir(&l5).is_ok());
    std::fs::create_dir(&reg).unwrap();
    std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = check_registry_dir(&l5).unwrap_err();
    assert!(err.starts_with(&reg.display().to_string()), "{err}");
    std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(check_registry_dir(&l5).is_ok());
    // The etcd backend has no directory.
    std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o777)).unwrap();
    l5.backend = L5Backend::Etcd {
        endpoints: vec!["127.0.0.1:2379".into()],
    };
    assert!(check_registry_dir(&l5).is_ok());
}
