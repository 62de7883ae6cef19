//! L5 as the tests see it: `spp l5 list` / `spp l5 get` (their JSON read
//! into [`Node`]s, their tables kept as text), the L5 part of `spp status
//! --json`, and the steps the failover tests share (two echo services
//! registering one sid, a relay service consuming it, a crash of one
//! service's whole tree, its return).
//!
//! Every wait is bounded by a deadline and polls a real condition.

use crate::relay::{RelayLoad, Tally};
use crate::service::SppOutput;
use crate::{wait_for, Binaries, L5Config, Service, ServiceConfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Reshape period of test configs (the default is 5 s).
pub const TEST_PERIOD: &str = "500ms";
/// Registration lifetime of test configs (the default is 15 s).
pub const TEST_TTL: &str = "2s";
/// `[l5.balancer]` of test configs: a node is judged from 5 requests in a
/// period (the default 10 would be enough too; fewer keeps short periods
/// meaningful on a slow machine).
pub const TEST_BALANCER: [&str; 1] = ["min_requests = 5"];
/// Deadline for a registration (or its removal) to show in a consumer's
/// table: many periods and TTLs, for a loaded 2-core machine.
pub const VIEW_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for traffic to reach a service.
pub const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for a service's published counters to catch up.
pub const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a killed tree to be gone.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// `timeout_ms` of the relay's calls (a refused connection fails at once;
/// this only bounds a stuck backend).
pub const RELAY_TIMEOUT_MS: u64 = 1000;
/// Relay workers (each relays one request at a time).
pub const RELAY_WORKERS: u32 = 4;
/// Concurrent clients of the relay (no more than its workers, so no
/// request waits in the queue for long).
pub const CLIENTS: usize = 4;
/// Pause between two calls of one client.
pub const CLIENT_PAUSE: Duration = Duration::from_millis(2);
/// Requests each backend must see to count as "receives traffic".
pub const TRAFFIC_SHARE: u64 = 50;

/// One node of a sid, as `spp l5 list --json` / `spp l5 get --json` show it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Module id of its sid.
    pub modid: u32,
    /// Command id of its sid.
    pub cmdid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `"registry"` or `"static"` (the routes file).
    pub source: String,
    /// Static weight (from the registry or the routes file).
    pub static_weight: u64,
    /// Current (dynamic) weight, 0 when dead.
    pub weight: u64,
    /// Only probes reach it.
    pub dead: bool,
    /// Picks in the last period.
    pub picks: u64,
    /// Successful calls reported in the last period.
    pub success: u64,
    /// Failed calls reported in the last period.
    pub failure: u64,
}

impl Node {
    /// Reads one node object of the sid `sid`.
    fn from_json(v: &Value, (modid, cmdid): (u32, u32)) -> Option<Node> {
        Some(Node {
            modid,
            cmdid,
            addr: v["addr"].as_str()?.parse().ok()?,
            source: v["source"].as_str()?.to_string(),
            static_weight: v["static_weight"].as_u64()?,
            weight: v["weight"].as_u64()?,
            dead: v["dead"].as_bool()?,
            picks: v["picks"].as_u64()?,
            success: v["success"].as_u64()?,
            failure: v["failure"].as_u64()?,
        })
    }

    /// Alive and routable with some weight.
    pub fn live(&self) -> bool {
        !self.dead && self.weight > 0
    }
}

/// The nodes of one sid object `{"sid": {"modid", "cmdid"}, "nodes": [...]}`
/// (what `spp l5 get --json` prints, and each entry of the list's
/// `table`).
fn sid_nodes(sid: &Value, out: &mut Vec<Node>) -> Result<(), String> {
    let id = sid["sid"]["modid"]
        .as_u64()
        .zip(sid["sid"]["cmdid"].as_u64())
        .and_then(|(m, c)| u32::try_from(m).ok().zip(u32::try_from(c).ok()))
        .ok_or_else(|| format!("no sid {{modid, cmdid}} in {sid}"))?;
    let nodes = sid["nodes"]
        .as_array()
        .ok_or_else(|| format!("no \"nodes\" array in {sid}"))?;
    for node in nodes {
        out.push(Node::from_json(node, id).ok_or_else(|| format!("unreadable node {node}"))?);
    }
    Ok(())
}

/// Every node in the JSON of `spp l5 list --json` (`{..., "table": [sid
/// objects]}`) or `spp l5 get --json` (one sid object).
pub fn nodes(json: &Value) -> Result<Vec<Node>, String> {
    let mut out = Vec::new();
    match json["table"].as_array() {
        Some(table) => {
            for sid in table {
                sid_nodes(sid, &mut out)?;
            }
        }
        None => sid_nodes(json, &mut out)?,
    }
    Ok(out)
}

/// `spp l5 list -c FILE --json` of `service`, read into nodes.
pub fn list(service: &Service) -> Result<Vec<Node>, String> {
    let out = service.spp_sub("l5", "list", &["--json"]);
    parse_cli(&out, "spp l5 list --json")
}

/// `spp l5 get -c FILE MODID CMDID --json` of `service`, read into nodes.
pub fn get(service: &Service, (modid, cmdid): (u32, u32)) -> Result<Vec<Node>, String> {
    let (m, c) = (modid.to_string(), cmdid.to_string());
    let out = service.spp_sub("l5", "get", &[&m, &c, "--json"]);
    parse_cli(&out, "spp l5 get --json")
}

/// `spp l5 list` / `spp l5 get MODID CMDID` for humans (the table).
pub fn table(service: &Service, sid: Option<(u32, u32)>) -> SppOutput {
    match sid {
        None => service.spp_sub("l5", "list", &[]),
        Some((modid, cmdid)) => {
            let (m, c) = (modid.to_string(), cmdid.to_string());
            service.spp_sub("l5", "get", &[&m, &c])
        }
    }
}

fn parse_cli(out: &SppOutput, what: &str) -> Result<Vec<Node>, String> {
    if !out.ok() {
        return Err(format!("{what} failed ({:?}): {}", out.code, out.text()));
    }
    let json: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("{what} printed no JSON ({e}): {}", out.text()))?;
    nodes(&json)
}

/// The L5 object of `spp status --json` (`Value::Null` when L5 is off).
pub fn status_l5(status: &Value) -> &Value {
    &status["l5"]
}

/// The registry backend's error in `spp status --json` (`l5.backend_error`),
/// if it reports one.
pub fn backend_error(status: &Value) -> Option<String> {
    status_l5(status)["backend_error"]
        .as_str()
        .map(str::to_string)
}

/// The node at `addr` in `nodes`, if listed.
pub fn find(nodes: &[Node], addr: SocketAddr) -> Option<&Node> {
    nodes.iter().find(|n| n.addr == addr)
}

/// Waits until `consumer`'s `spp l5 get sid` satisfies `cond`; panics
/// with the last view (or error) and `why` at [`VIEW_TIMEOUT`].
pub fn wait_view(
    consumer: &Service,
    sid: (u32, u32),
    why: &str,
    mut cond: impl FnMut(&[Node]) -> bool,
) {
    let mut last = String::new();
    let seen = wait_for(VIEW_TIMEOUT, || match get(consumer, sid) {
        Ok(nodes) if cond(&nodes) => Some(()),
        Ok(nodes) => {
            last = format!("{nodes:#?}");
            None
        }
        Err(e) => {
            last = e;
            None
        }
    });
    assert!(
        seen.is_some(),
        "{why}: not seen within {VIEW_TIMEOUT:?}; last view of {}:{}: {last}\n--- consumer logs ---\n{}",
        sid.0,
        sid.1,
        consumer.logs()
    );
}

/// Waits until `service`'s `spp status --json` says it registered `sid`
/// with the instance `addr` (`l5.registered`, `l5.instances`).
pub fn wait_registered(service: &Service, sid: (u32, u32), addr: SocketAddr) {
    let mut last = Value::Null;
    let done = service.wait_status(VIEW_TIMEOUT, |status| {
        let l5 = status_l5(status);
        last = l5.clone();
        let registered = l5["registered"] == true
            && l5["sid"]["modid"] == sid.0
            && l5["sid"]["cmdid"] == sid.1
            && l5["instances"]
                .as_array()
                .is_some_and(|i| i.iter().any(|a| a.as_str() == Some(&addr.to_string())));
        registered.then_some(())
    });
    assert!(
        done.is_some(),
        "{addr} should say it registered {sid:?}; last L5 status: {last}\n{}",
        service.logs()
    );
}

/// Requests the proxy of `service` has taken so far (`proxy_stats.requests`
/// of `spp status --json`).
pub fn requests(service: &Service) -> u64 {
    crate::view::proxy_counter(&service.status(), "requests")
}

/// An echo service (the bundled echo plugin, one worker, one TCP listener)
/// named `name` whose `[l5]` is `l5`.
pub fn echo_config(name: &str, l5: L5Config) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin("spp_echo"), 1);
    cfg.name = name.into();
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    cfg.l5 = Some(l5);
    cfg
}

/// A relay service (the relay example plugin in the proxy and in
/// [`RELAY_WORKERS`] workers in micro-thread mode, where its calls run,
/// one TCP listener) forwarding to `sid`, whose `[l5]` is `l5` (a
/// consumer: no sid of its own).
pub fn relay_config(name: &str, sid: (u32, u32), l5: L5Config) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(
        &Binaries::locate().plugin(crate::relay::PLUGIN),
        RELAY_WORKERS,
    );
    cfg.name = name.into();
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    cfg.group_mut().plugin_conf = crate::relay::conf(sid.0, sid.1, RELAY_TIMEOUT_MS);
    cfg.group_mut().msg_timeout = Some("5s".into());
    cfg.group_mut().extra.push("mode = \"microthread\"".into());
    cfg.l5 = Some(l5);
    cfg
}

/// Waits until `a` and `b` each took [`TRAFFIC_SHARE`] more requests
/// while `load` runs; panics with the counts and the load's failures.
pub fn wait_both_served(a: &Service, b: &Service, load: &RelayLoad) {
    let (a0, b0) = (requests(a), requests(b));
    let mut last = (0, 0);
    let both = wait_for(TRAFFIC_TIMEOUT, || {
        last = (requests(a) - a0, requests(b) - b0);
        (last.0 >= TRAFFIC_SHARE && last.1 >= TRAFFIC_SHARE).then_some(())
    });
    assert!(
        both.is_some(),
        "both instances should get traffic: A took {}, B took {} (want {TRAFFIC_SHARE} each); \
         relay calls {:?}, failures {:?}",
        last.0,
        last.1,
        load.tally(),
        load.failures()
    );
}

/// Waits until `service` took `want` more requests while `load` runs.
pub fn wait_served(service: &Service, want: u64, load: &RelayLoad, who: &str) {
    let before = requests(service);
    let mut got = 0;
    let served = wait_for(TRAFFIC_TIMEOUT, || {
        got = requests(service) - before;
        (got >= want).then_some(())
    });
    assert!(
        served.is_some(),
        "{who} should get traffic: took {got} of {want}; relay calls {:?}, failures {:?}",
        load.tally(),
        load.failures()
    );
}

/// Runs `calls` more successful relay calls under `load` and checks that
/// none failed meanwhile and that `only` served every one of them (it took
/// at least as many requests, less the calls in flight when counting
/// started). Returns the tally of the window.
pub fn all_succeed_via(only: &Service, calls: u64, load: &RelayLoad, who: &str) -> Tally {
    // The service's count first: a call counted in the window completed
    // after `t0`, so it was forwarded after `r0` was read unless it was one
    // of the (at most CLIENTS) calls in flight then. (The other order
    // would miss every call made while `spp status` ran.)
    let r0 = requests(only);
    let t0 = load.tally();
    assert!(
        load.progresses(calls, TRAFFIC_TIMEOUT),
        "relay calls should go on via {who}: {:?}, failures {:?}",
        load.tally(),
        load.failures()
    );
    let window = load.tally().since(t0);
    assert_eq!(
        window.failed,
        0,
        "every call should succeed via {who}: {window:?}; failures {:?}",
        load.failures()
    );
    // The proxy publishes its counters once per event-loop turn: let them
    // catch up.
    let mut served = 0;
    let caught_up = wait_for(COUNTER_TIMEOUT, || {
        served = requests(only) - r0;
        (served + CLIENTS as u64 >= window.ok).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "{who} should serve every call: it took {served} requests for {} relayed calls",
        window.ok
    );
    window
}

/// The `[l5]` of a test service: `backend`, sid `sid` registered (or a
/// consumer only when `None`), the shortened [`TEST_PERIOD`], [`TEST_TTL`]
/// and [`TEST_BALANCER`].
pub fn test_l5(backend: &str, sid: Option<(u32, u32)>) -> L5Config {
    L5Config {
        modid: sid.map(|s| s.0),
        cmdid: sid.map(|s| s.1),
        backend: Some(backend.into()),
        ttl: Some(TEST_TTL.into()),
        period: Some(TEST_PERIOD.into()),
        balancer: TEST_BALANCER.iter().map(|s| s.to_string()).collect(),
        ..L5Config::default()
    }
}

/// Relay calls that may fail while a crashed instance is taken out of
/// rotation. A call fails only when both of its attempts fail: the first
/// went to the dead instance A and the retry, which re-draws up to 8 times
/// to avoid A, drew A every time — 1 in 2^8 while A still has its full
/// weight (two instances of weight 100). A keeps that weight only until it
/// is judged: the fast trip (10 errors in a row), the pick-time skip (success
/// below 0.6 over ≥ min_requests) or the reshape at the end of the period
/// (ratio 0 → dead); afterwards only the probe share (1 % of the calls)
/// reaches it. At the test's few hundred calls per period that is on
/// average about one failed call in total; 10 leaves room for a slow
/// machine whose periods run long, and is still far below the hundreds of
/// calls the failover spans.
pub const MAX_FAILOVER_FAILURES: u64 = 10;

/// What [`Failover::crash_a`] saw (it asserts the failed calls' bound;
/// the caller may assert more).
#[derive(Debug)]
pub struct Crash {
    /// Relay calls from the kill until R's table lost A.
    pub calls: Tally,
    /// How long that took.
    pub vanished_after: Duration,
    /// R's table showed A dead (weight 0) before it vanished.
    pub seen_dead: bool,
    /// The first failed calls' text.
    pub failures: Vec<String>,
}

/// The failover scenario shared by the embedded and etcd tests: echo
/// services A and B register `sid`, relay service R consumes it, and
/// clients call R throughout.
pub struct Failover {
    /// Clients of R (declared first: stopped before the services).
    pub load: RelayLoad,
    /// The relay.
    pub r: Service,
    /// Echo instance A (crashed and restarted).
    pub a: Service,
    /// Echo instance B.
    pub b: Service,
    /// The sid A and B register.
    pub sid: (u32, u32),
    /// A's current listener.
    pub a_addr: SocketAddr,
    /// B's listener.
    pub b_addr: SocketAddr,
}

impl Failover {
    /// Starts A, B and R, waits until R routes to both, starts the clients
    /// and waits until both A and B served [`TRAFFIC_SHARE`] calls with no
    /// call failing.
    pub fn start(
        a: &ServiceConfig,
        b: &ServiceConfig,
        r: &ServiceConfig,
        sid: (u32, u32),
    ) -> Failover {
        let (a, b) = (Service::start(a), Service::start(b));
        let (a_addr, b_addr) = (a.tcp(), b.tcp());
        wait_registered(&a, sid, a_addr);
        wait_registered(&b, sid, b_addr);
        let r = Service::start(r);
        let consumer = r.status();
        assert_eq!(
            status_l5(&consumer)["sid"],
            Value::Null,
            "R registers nothing: {}",
            status_l5(&consumer)
        );
        wait_view(&r, sid, "R should route to both A and B", |nodes| {
            [a_addr, b_addr]
                .iter()
                .all(|&addr| find(nodes, addr).is_some_and(Node::live))
        });
        let load = RelayLoad::start(r.tcp(), CLIENTS, CLIENT_PAUSE);
        wait_both_served(&a, &b, &load);
        let tally = load.tally();
        assert_eq!(
            tally.failed,
            0,
            "no call should fail while both instances run: {tally:?}, {:?}\n--- R logs ---\n{}",
            load.failures(),
            r.logs()
        );
        Failover {
            load,
            r,
            a,
            b,
            sid,
            a_addr,
            b_addr,
        }
    }

    /// `spp l5 list` and `spp l5 get` on R, table and JSON, show A and B
    /// with their weights and health.
    pub fn check_cli_shows_both(&self) {
        for nodes in [list(&self.r), get(&self.r, self.sid)] {
            let nodes = nodes.unwrap_or_else(|e| panic!("{e}"));
            for addr in [self.a_addr, self.b_addr] {
                let node = find(&nodes, addr)
                    .unwrap_or_else(|| panic!("{addr} should be listed: {nodes:#?}"));
                assert_eq!((node.modid, node.cmdid), self.sid, "{node:?}");
                assert_eq!(node.source, "registry", "{node:?}");
                assert_eq!(node.static_weight, 100, "the default weight: {node:?}");
                assert!(
                    node.live() && node.weight <= node.static_weight,
                    "healthy, weight within 1..=static: {node:?}"
                );
            }
        }
        for sid in [None, Some(self.sid)] {
            let out = table(&self.r, sid);
            assert!(out.ok(), "spp l5 table ({sid:?}): {}", out.text());
            let text = out.stdout.to_lowercase();
            for want in [
                self.sid.0.to_string(),
                self.a_addr.to_string(),
                self.b_addr.to_string(),
                "weight".into(),
                "alive".into(),
            ] {
                assert!(
                    text.contains(&want),
                    "spp l5 table ({sid:?}) should show {want:?}:\n{}",
                    out.stdout
                );
            }
        }
    }

    /// `kill -9` of A's whole tree: A vanishes from R's table (waited on
    /// with a deadline), at most [`MAX_FAILOVER_FAILURES`] calls fail
    /// meanwhile, and afterwards every call succeeds via B. Returns what
    /// happened from the kill until A vanished.
    pub fn crash_a(&mut self) -> Crash {
        let before = self.load.tally();
        let killed_at = Instant::now();
        self.a.kill_tree(KILL_TIMEOUT);
        let a_addr = self.a_addr;
        let mut seen_dead = false;
        wait_view(
            &self.r,
            self.sid,
            "A's instance should vanish from R",
            |nodes| match find(nodes, a_addr) {
                Some(a) => {
                    seen_dead |= a.dead && a.weight == 0;
                    false
                }
                None => true,
            },
        );
        let vanished_after = killed_at.elapsed();
        let during = self.load.tally().since(before);
        assert!(
            during.failed <= MAX_FAILOVER_FAILURES,
            "at most {MAX_FAILOVER_FAILURES} calls may fail while A is taken out: {during:?}; \
             failures {:?}",
            self.load.failures()
        );
        let failures = self.load.failures();
        all_succeed_via(&self.b, 300, &self.load, "B alone");
        Crash {
            calls: during,
            vanished_after,
            seen_dead,
            failures,
        }
    }

    /// `spp start` of A again: it registers (R lists its new listener,
    /// healthy), gets traffic again, and no call fails meanwhile.
    pub fn restart_a(&mut self) {
        let before = self.load.tally();
        let out = self.a.start_again();
        assert!(
            out.ok(),
            "A should start again: {}\n{}",
            out.text(),
            self.a.logs()
        );
        self.a_addr = self.a.tcp();
        let (a_addr, b_addr) = (self.a_addr, self.b_addr);
        wait_view(&self.r, self.sid, "A should be registered again", |nodes| {
            find(nodes, a_addr).is_some_and(Node::live) && find(nodes, b_addr).is_some()
        });
        wait_both_served(&self.a, &self.b, &self.load);
        let since = self.load.tally().since(before);
        assert_eq!(
            since.failed,
            0,
            "no call should fail while A comes back: {since:?}, {:?}",
            self.load.failures()
        );
    }
}
