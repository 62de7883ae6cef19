//! The agent against a real route table and the embedded backend on a
//! temporary directory: static routes published at start, discovered
//! instances merged and published at once (and gone at once), the reshape
//! after a period, and the registration life cycle (register, withdraw,
//! deregister).

use super::*;
use crate::l5::registry::embedded::{self, Record};
use spp_config::l5::L5Backend;
use spp_ipc::l5::balancer::BalancerConfig;
use std::path::Path;
use std::time::Duration;

fn sid(modid: u32) -> Sid {
    Sid { modid, cmdid: 1 }
}

fn instance(modid: u32, addr: &str, weight: u32) -> Instance {
    Instance {
        sid: sid(modid),
        addr: addr.parse().unwrap(),
        weight,
    }
}

fn config(dir: &Path, routes: Vec<Instance>) -> L5Config {
    L5Config {
        sid: Some(sid(50)),
        weight: 200,
        group: 1,
        backend: L5Backend::Embedded,
        registry_dir: dir.to_path_buf(),
        routes_file: None,
        routes,
        ttl: Duration::from_secs(10),
        prefix: defaults::L5_PREFIX.into(),
        advertise: None,
        balancer: BalancerConfig {
            period: Duration::from_millis(200),
            ..BalancerConfig::default()
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The published table as `sid addr weight dead` lines.
fn published(table: &RouteTable) -> Vec<String> {
    table
        .view()
        .iter()
        .flat_map(|s| {
            s.nodes
                .iter()
                .map(move |n| format!("{} {} {} {}", s.sid, n.instance.addr, n.weight, n.dead))
        })
        .collect()
}

/// Handles events until `ok` holds (bounded).
async fn until(
    agent: &mut Agent,
    table: &mut RouteTable,
    what: &str,
    ok: impl Fn(&Agent, &RouteTable) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !ok(agent, table) {
            match agent.next().await {
                Event::Discovered => agent.on_discovered(table),
                Event::Tick => {}
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}: {:?}",
        published(table)
    );
}

#[test]
fn a_registered_instance_wins_over_a_static_one_and_limits_are_counted() {
    let statics = [
        instance(1, "127.0.0.1:1", 100),
        instance(1, "127.0.0.1:2", 100),
    ];
    let found = [
        instance(1, "127.0.0.1:2", 300),
        instance(2, "127.0.0.1:3", 100),
    ];
    let (wanted, dropped) = merge(&statics, &found);
    assert_eq!(dropped, 0);
    let one = &wanted[&sid(1)];
    assert_eq!(one[0], (statics[0], Source::Static));
    assert_eq!(one[1], (found[0], Source::Registry));
    assert_eq!(wanted[&sid(2)].len(), 1);

    let many: Vec<Instance> = (0..=MAX_SIDS as u32)
        .map(|m| instance(m + 1, "127.0.0.1:9", 100))
        .collect();
    let (wanted, dropped) = merge(&[], &many);
    assert_eq!((wanted.len(), dropped), (MAX_SIDS, 1));
}

#[test]
fn static_routes_are_published_at_start_and_discovered_ones_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let statics = vec![instance(1, "127.0.0.1:1", 100)];
    let cfg = config(dir.path(), statics);
    let mut table = RouteTable::create().unwrap();
    runtime().block_on(async {
        let mut agent = Agent::start(&cfg, "t", &[], &mut table);
        assert_eq!(published(&table), ["1:1 127.0.0.1:1 100 false"]);
        assert!(table.generation() >= 1);

        // Another service registers two instances of sid 1 (one at the
        // static address, with another weight) and one of sid 2.
        let other = dir
            .path()
            .join(embedded::file_name("other", std::process::id()));
        let mut rec = Record {
            service: "other".into(),
            pid: std::process::id(),
            heartbeat_ms: embedded::unix_ms(std::time::SystemTime::now()),
            instances: vec![
                instance(1, "127.0.0.1:1", 400),
                instance(1, "127.0.0.1:2", 100),
                instance(2, "127.0.0.1:3", 100),
            ],
        };
        embedded::write_record(&other, &rec).unwrap();
        until(
            &mut agent,
            &mut table,
            "the registered instances",
            |_, t| {
                published(t)
                    == [
                        "1:1 127.0.0.1:1 400 false",
                        "1:1 127.0.0.1:2 100 false",
                        "2:1 127.0.0.1:3 100 false",
                    ]
            },
        )
        .await;
        let report = agent.report(&table);
        let sources: Vec<&str> = report.table[0]
            .nodes
            .iter()
            .map(|n| n.source.as_str())
            .collect();
        assert_eq!(sources, ["registry", "registry"]);
        assert_eq!(report.status.sids, 2);
        assert_eq!(report.status.nodes, 3);

        // It withdraws: the registered ones vanish at once, the static one
        // stays (at its own weight).
        rec.instances.clear();
        embedded::write_record(&other, &rec).unwrap();
        until(&mut agent, &mut table, "only the static route", |_, t| {
            published(t) == ["1:1 127.0.0.1:1 100 false"]
        })
        .await;
        assert_eq!(agent.report(&table).table[0].nodes[0].source, "static");
        agent.deregister().await;
    });
}

#[test]
fn a_period_of_failures_kills_a_node_and_successes_keep_another() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        vec![
            instance(1, "127.0.0.1:1", 100),
            instance(2, "127.0.0.1:2", 100),
        ],
    );
    let mut table = RouteTable::create().unwrap();
    runtime().block_on(async {
        let mut agent = Agent::start(&cfg, "t", &[], &mut table);
        for _ in 0..20 {
            let bad = table.pick(sid(1), 7).unwrap();
            table.report(&bad, -1, 100);
            let good = table.pick(sid(2), 7).unwrap();
            table.report(&good, 0, 100);
        }
        // Not yet a period: nothing changes.
        agent.on_tick(&mut table, false, Instant::now());
        assert_eq!(
            published(&table),
            ["1:1 127.0.0.1:1 100 false", "2:1 127.0.0.1:2 100 false"]
        );
        agent.on_tick(&mut table, false, Instant::now() + agent.period());
        assert_eq!(
            published(&table),
            ["1:1 127.0.0.1:1 0 true", "2:1 127.0.0.1:2 100 false"]
        );
        let report = agent.report(&table);
        let dead = &report.sid(sid(1)).unwrap().nodes[0];
        assert_eq!((dead.failure, dead.success, dead.picks), (20, 0, 20));
        assert_eq!(dead.success_ratio, Some(0.0));
        assert_eq!(dead.consecutive_errors, 20);
        assert!(report.sid(sid(1)).unwrap().probe_budget >= 1);
        let alive = &report.sid(sid(2)).unwrap().nodes[0];
        assert_eq!(alive.success_ratio, Some(1.0));
        agent.deregister().await;
    });
}

#[test]
fn the_registration_follows_the_groups_health_and_ends_with_deregister() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Vec::new());
    let mut table = RouteTable::create().unwrap();
    let local: Vec<SocketAddr> = vec![
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.1:7001".parse().unwrap(),
    ];
    let file = dir
        .path()
        .join(embedded::file_name("svc", std::process::id()));
    let read =
        |file: &Path| -> Option<Record> { serde_json::from_slice(&std::fs::read(file).ok()?).ok() };
    runtime().block_on(async {
        let mut agent = Agent::start(&cfg, "svc", &local, &mut table);
        // Not healthy yet: nothing is registered, not even an empty list.
        agent.on_tick(&mut table, false, Instant::now());
        assert!(!agent.status(&table).registered);
        agent.on_tick(&mut table, true, Instant::now());
        let status = agent.status(&table);
        assert!(status.registered);
        assert_eq!(status.instances, ["127.0.0.1:7001"]);
        until(&mut agent, &mut table, "its own instance", |_, t| {
            published(t) == ["50:1 127.0.0.1:7001 200 false"]
        })
        .await;
        assert_eq!(read(&file).unwrap().instances.len(), 1);

        // The group lost its workers: withdrawn, the file stays empty.
        agent.on_tick(&mut table, false, Instant::now());
        assert!(!agent.status(&table).registered);
        until(&mut agent, &mut table, "the withdrawal", |_, t| {
            published(t).is_empty()
        })
        .await;
        assert!(read(&file).unwrap().instances.is_empty());

        // Healthy again: registered again.
        agent.on_tick(&mut table, true, Instant::now());
        until(&mut agent, &mut table, "the registration", |_, t| {
            published(t).len() == 1
        })
        .await;

        agent.deregister().await;
        assert!(!file.exists());
        assert!(!agent.status(&table).registered);
    });
}

#[test]
fn a_sid_whose_instances_all_withdrew_answers_no_server_until_its_ttl() {
    use spp_ipc::l5::L5Error;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), vec![]);
    let mut table = RouteTable::create().unwrap();
    runtime().block_on(async {
        let mut agent = Agent::start(&cfg, "t", &[], &mut table);
        assert_eq!(table.pick(sid(7), 1).unwrap_err(), L5Error::UnknownSid);
        let t0 = Instant::now();

        // Registered, then withdrawn.
        agent.apply_found(&[instance(7, "127.0.0.1:7", 100)], &mut table, t0);
        assert!(table.pick(sid(7), 1).is_ok());
        agent.apply_found(&[], &mut table, t0 + Duration::from_secs(1));
        let view = table.view();
        let kept = view.iter().find(|s| s.sid == sid(7)).expect("sid kept");
        assert!(kept.nodes.is_empty());
        assert_eq!(table.pick(sid(7), 1).unwrap_err(), L5Error::NoServer);
        assert_eq!(table.pick_hash(sid(7), 1).unwrap_err(), L5Error::NoServer);

        // Still there just before the ttl ends, gone after it.
        agent.on_tick(&mut table, false, t0 + cfg.ttl - Duration::from_millis(1));
        assert_eq!(table.pick(sid(7), 1).unwrap_err(), L5Error::NoServer);
        agent.on_tick(&mut table, false, t0 + cfg.ttl);
        assert_eq!(table.pick(sid(7), 1).unwrap_err(), L5Error::UnknownSid);

        // It comes back with nodes.
        agent.apply_found(
            &[instance(7, "127.0.0.1:7", 100)],
            &mut table,
            t0 + cfg.ttl * 2,
        );
        assert!(table.pick(sid(7), 1).is_ok());
        agent.deregister().await;
    });
}
