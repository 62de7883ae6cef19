//! `spp-bench compare --shards`: the proxy-shard figures of issue 14 in one
//! run. Echo at N=256 with one proxy shard against `--shard-count`; echo
//! through a proxy plugin whose `input` burns [`INPUT_COST_US`] µs of CPU
//! per request at N=128, one shard against several; CPU per request of
//! every spp process (controller, each shard, each worker), with one shard
//! and with several, against the direct baseline's at N=64
//! (`/proc/PID/stat` before and after each run, [`super::cpu`]); and the
//! accept balance: [`BALANCE_CONNECTIONS`] short
//! connections against the sharded service, each shard's share from the
//! `conns_accepted` deltas in `spp status --json`. [`checks`] turns the
//! medians into the issue's figures and targets.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checks::{self as table, Bound, Check};
use super::cpu::TOTAL;
use super::error::CompareError;
use super::report::ScenarioResult;
use super::scenario::{names, System};
use super::systems::Shared;

/// Shards of the sharded services unless `--shard-count` says otherwise.
pub const DEFAULT_SHARD_COUNT: u16 = 2;
/// µs of CPU the costly proxy plugin's `input` burns per request.
pub const INPUT_COST_US: u64 = 50;
/// Short connections of the accept-balance measurement.
pub const BALANCE_CONNECTIONS: usize = 10_000;
/// Echo N=256, N shards / 1 shard throughput.
pub const ECHO_SHARDS_MIN: f64 = 0.95;
/// Costly input N=128, N shards / 1 shard throughput.
pub const COST_SHARDS_MIN: f64 = 1.6;
/// CPU per request, all spp processes / direct, N=64.
pub const CPU_OVER_DIRECT_MAX: f64 = 1.1;
/// Accept balance: the largest shard's share over the smallest's.
pub const BALANCE_MAX: f64 = 1.3;
/// The check's scenario name for the accept balance.
pub const BALANCE_SCENARIO: &str = "accept_10000";
/// The counter each shard's accepts are read from.
const ACCEPTED: &str = "conns_accepted";
/// How long one balance connection may take to answer.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of the echo frame's length prefix.
const LENGTH_PREFIX: usize = 4;

/// The echo plugin's `plugin_conf` for a proxy whose `input` costs CPU.
pub fn costly_input_conf() -> String {
    format!("input_cost_us={INPUT_COST_US}")
}

/// How the kernel spread short connections over the shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AcceptBalance {
    /// Connections opened.
    pub connections: usize,
    /// Connections that failed (connect, write or a wrong answer).
    pub errors: u64,
    /// Accepted connections per shard, by process name.
    pub per_shard: BTreeMap<String, u64>,
}

impl AcceptBalance {
    /// The busiest shard's accepts over the idlest's (none with fewer than
    /// two shards or a shard that accepted nothing).
    pub fn max_over_min(&self) -> Option<f64> {
        let max = self.per_shard.values().max().copied()?;
        let min = self.per_shard.values().min().copied()?;
        (self.per_shard.len() >= 2 && min > 0).then(|| max as f64 / min as f64)
    }

    /// Whether one of several shards accepted nothing.
    pub fn starved(&self) -> bool {
        self.per_shard.len() >= 2 && self.per_shard.values().any(|&n| n == 0)
    }
}

/// What the shard suite adds to the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardFigures {
    /// Shards of the sharded services.
    pub shard_count: u16,
    /// µs of CPU of the costly proxy plugin's `input`.
    pub input_cost_us: u64,
    /// The accept balance.
    pub accept_balance: AcceptBalance,
}

/// Each proxy shard's `conns_accepted` in a status.
pub fn shard_accepts(status: &Value) -> BTreeMap<String, u64> {
    status["proxy_shard_stats"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, stats)| Some((name.clone(), stats[ACCEPTED].as_u64()?)))
        .collect()
}

/// The accepts between two statuses' counters, per shard.
pub fn accepted_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, a)| {
            let b = before.get(name).copied().unwrap_or(0);
            (name.clone(), a.saturating_sub(b))
        })
        .collect()
}

/// One short connection: a framed echo of `payload` bytes, the same back.
fn one_echo(addr: SocketAddr, frame: &[u8], reply: &mut [u8]) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, BALANCE_TIMEOUT)?;
    stream.set_read_timeout(Some(BALANCE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(frame)?;
    stream.read_exact(reply)?;
    Ok(reply == frame)
}

fn spp_status(shared: &Shared) -> Result<Value, CompareError> {
    match shared.lock().spp.as_mut() {
        Some(spp) => spp.status(),
        None => Err(CompareError::Interrupted),
    }
}

/// Opens `connections` short connections to the sharded spp service at
/// `addr`, one after the other, and reads each shard's accepts from its
/// status before and after.
pub fn accept_balance(
    shared: &Shared,
    addr: SocketAddr,
    connections: usize,
    payload: usize,
) -> Result<AcceptBalance, CompareError> {
    let before = shard_accepts(&spp_status(shared)?);
    let len = u32::try_from(payload).map_err(|_| CompareError::Invalid {
        field: "size",
        why: "too large for a frame".into(),
    })?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.resize(LENGTH_PREFIX + payload, b'x');
    let mut reply = vec![0; frame.len()];
    let mut errors = 0;
    for _ in 0..connections {
        if !matches!(one_echo(addr, &frame, &mut reply), Ok(true)) {
            errors += 1;
        }
    }
    shared.lock().check()?;
    let after = shard_accepts(&spp_status(shared)?);
    Ok(AcceptBalance {
        connections,
        errors,
        per_shard: accepted_between(&before, &after),
    })
}

fn find(sc: &ScenarioResult, system: System) -> Option<&super::summary::SystemResult> {
    sc.systems.iter().find(|r| r.system == system)
}

/// `a`'s median total CPU per request over `b`'s, and whether both were
/// error-free.
pub(super) fn cpu_ratio(sc: &ScenarioResult, a: System, b: System) -> (Option<f64>, bool) {
    let total = |r: &super::summary::SystemResult| r.cpu_us.get(TOTAL).map(|s| s.median);
    match (find(sc, a), find(sc, b)) {
        (Some(a), Some(b)) => match (total(a), total(b)) {
            (Some(x), Some(y)) if y > 0.0 => (Some(x / y), a.errors == 0 && b.errors == 0),
            _ => (None, false),
        },
        _ => (None, false),
    }
}

fn throughput(
    sc: &ScenarioResult,
    name: &str,
    title: &str,
    a: System,
    b: System,
    min: Option<f64>,
) -> Check {
    let (value, clean) = table::throughput_ratio(sc, a, b);
    table::check(
        sc,
        name,
        title.to_owned(),
        value,
        clean,
        min.map(Bound::AtLeast),
    )
}

/// The shard suite's figures from the scenarios' medians and the accept
/// balance.
pub fn checks(scenarios: &[ScenarioResult], balance: Option<&AcceptBalance>) -> Vec<Check> {
    let mut out = Vec::new();
    for sc in scenarios {
        match sc.name.as_str() {
            names::SHARD_ECHO => out.push(throughput(
                sc,
                "echo_shards_over_one",
                "req/s echo, N shards / 1 shard",
                System::Spp,
                System::SppOneShard,
                Some(ECHO_SHARDS_MIN),
            )),
            names::SHARD_COST => out.push(throughput(
                sc,
                "cost_shards_over_one",
                "req/s costly input, N shards / 1 shard",
                System::SppCost,
                System::SppCostOneShard,
                Some(COST_SHARDS_MIN),
            )),
            names::SHARD_CPU => {
                let (value, clean) = cpu_ratio(sc, System::Spp, System::Direct);
                out.push(table::check(
                    sc,
                    "cpu_over_direct",
                    "CPU/request, all spp processes / direct".into(),
                    value,
                    clean,
                    Some(Bound::AtMost(CPU_OVER_DIRECT_MAX)),
                ));
                let (value, clean) = cpu_ratio(sc, System::SppOneShard, System::Direct);
                out.push(table::check(
                    sc,
                    "one_shard_cpu_over_direct",
                    "CPU/request, spp with 1 shard / direct".into(),
                    value,
                    clean,
                    None,
                ));
                out.push(throughput(
                    sc,
                    "spp_over_direct",
                    "req/s spp echo, N shards / direct",
                    System::Spp,
                    System::Direct,
                    None,
                ));
            }
            names::SHARD_COST_CPU => {
                let (value, clean) = cpu_ratio(sc, System::SppCost, System::SppCostOneShard);
                out.push(table::check(
                    sc,
                    "cost_cpu_shards_over_one",
                    "CPU/request costly input, N shards / 1".into(),
                    value,
                    clean,
                    None,
                ));
            }
            _ => {}
        }
    }
    if let Some(b) = balance {
        let value = b.max_over_min();
        let target = Bound::AtMost(BALANCE_MAX);
        out.push(Check {
            scenario: BALANCE_SCENARIO.to_owned(),
            name: "accept_max_over_min".to_owned(),
            title: format!("accepts, busiest / idlest shard ({} conns)", b.connections),
            value,
            target: Some(target),
            met: match value {
                Some(v) => Some(b.errors == 0 && target.holds(v)),
                // A shard that accepted nothing fails the balance.
                None => b.starved().then_some(false),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::summary::{Ratios, Spread, SystemResult};

    fn one(v: f64) -> Spread {
        Spread {
            median: v,
            min: v,
            max: v,
        }
    }

    fn system(system: System, rps: f64, cpu_total: Option<f64>, errors: u64) -> SystemResult {
        SystemResult {
            system,
            throughput_rps: one(rps),
            p50_us: one(10.0),
            p99_us: one(20.0),
            errors,
            rounds: Vec::new(),
            cpu_us: cpu_total
                .map(|c| [(TOTAL.to_owned(), one(c))].into_iter().collect())
                .unwrap_or_default(),
        }
    }

    fn scenario(name: &str, systems: Vec<SystemResult>) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            title: name.into(),
            connections: 64,
            short: false,
            ratios: Ratios::default(),
            systems,
        }
    }

    fn get<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name}: {checks:?}"))
    }

    #[test]
    fn shard_figures_are_ratios_of_the_medians_with_the_issue_targets() {
        let scenarios = [
            scenario(
                names::SHARD_ECHO,
                vec![
                    system(System::SppOneShard, 100_000.0, None, 0),
                    system(System::Spp, 96_000.0, None, 0),
                ],
            ),
            scenario(
                names::SHARD_COST,
                vec![
                    system(System::SppCostOneShard, 10_000.0, None, 0),
                    system(System::SppCost, 15_000.0, None, 0),
                ],
            ),
            scenario(
                names::SHARD_CPU,
                vec![
                    system(System::Direct, 100_000.0, Some(10.0), 0),
                    system(System::SppOneShard, 90_000.0, Some(12.0), 0),
                    system(System::Spp, 80_000.0, Some(10.5), 0),
                ],
            ),
        ];
        let checks = checks(&scenarios, None);
        let c = get(&checks, "echo_shards_over_one");
        assert_eq!((c.value, c.met), (Some(0.96), Some(true)));
        let c = get(&checks, "cost_shards_over_one");
        assert_eq!((c.value, c.met), (Some(1.5), Some(false)));
        assert_eq!(c.target, Some(Bound::AtLeast(COST_SHARDS_MIN)));
        let c = get(&checks, "cpu_over_direct");
        assert_eq!((c.value, c.met), (Some(1.05), Some(true)));
        assert_eq!(c.target, Some(Bound::AtMost(CPU_OVER_DIRECT_MAX)));
        assert_eq!(get(&checks, "spp_over_direct").value, Some(0.8));
        let c = get(&checks, "one_shard_cpu_over_direct");
        assert_eq!((c.value, c.target), (Some(1.2), None));
        assert!(checks.iter().all(|c| c.name != "accept_max_over_min"));
    }

    #[test]
    fn errors_or_missing_cpu_fail_a_figure() {
        let mut cpu = scenario(
            names::SHARD_CPU,
            vec![
                system(System::Direct, 100_000.0, Some(10.0), 0),
                system(System::Spp, 80_000.0, Some(10.0), 2),
            ],
        );
        let c = checks(std::slice::from_ref(&cpu), None)[0].clone();
        assert_eq!((c.value, c.met), (Some(1.0), Some(false)));
        cpu.systems[0].cpu_us.clear();
        let c = checks(&[cpu], None)[0].clone();
        assert_eq!((c.value, c.met), (None, None));
    }

    #[test]
    fn accept_balance_is_the_busiest_over_the_idlest_shard() {
        let before = shard_accepts(&serde_json::json!({
            "proxy_shard_stats": {
                "proxy-0": {"conns_accepted": 100, "conns_active": 3},
                "proxy-1": {"conns_accepted": 50},
            }
        }));
        let after: BTreeMap<String, u64> =
            [("proxy-0".into(), 5_300), ("proxy-1".into(), 4_850)].into();
        let balance = AcceptBalance {
            connections: 10_000,
            errors: 0,
            per_shard: accepted_between(&before, &after),
        };
        assert_eq!(balance.per_shard["proxy-0"], 5_200);
        assert_eq!(balance.per_shard["proxy-1"], 4_800);
        let c = checks(&[], Some(&balance))[0].clone();
        assert_eq!(c.scenario, BALANCE_SCENARIO);
        assert!(c
            .value
            .is_some_and(|v| (v - 5_200.0 / 4_800.0).abs() < 1e-9));
        assert_eq!(c.met, Some(true));
        let lopsided = AcceptBalance {
            per_shard: [("proxy-0".into(), 6_000), ("proxy-1".into(), 4_000)].into(),
            ..balance.clone()
        };
        assert_eq!(checks(&[], Some(&lopsided))[0].met, Some(false));
        let failed = AcceptBalance {
            errors: 1,
            ..balance.clone()
        };
        assert_eq!(checks(&[], Some(&failed))[0].met, Some(false));
        let starved = AcceptBalance {
            per_shard: [("proxy-0".into(), 10_000), ("proxy-1".into(), 0)].into(),
            ..balance
        };
        assert_eq!(starved.max_over_min(), None);
        assert_eq!(checks(&[], Some(&starved))[0].met, Some(false));
    }
}
