//! Chaos: a poison request (bytes that kill the plugin) sent over and
//! over under load. The worker it killed is restarted at once (it had
//! served: no back-off), and once two workers died processing the same
//! bytes the proxy refuses them (`SPP_EXC_POISON`, counted in
//! `poison_refused`) instead of killing a third: the other clients barely
//! notice.

use spp_tests::client::TcpClient;
use spp_tests::faulty::{ABORT, BUSY_DIED, BUSY_POISON, PLUGIN};
use spp_tests::load::Load;
use spp_tests::{Binaries, Service, ServiceConfig};
use std::time::{Duration, Instant};

/// Load connections besides the attacker.
const LOAD_CLIENTS: usize = 32;
/// Poison requests sent, one every [`POISON_EVERY`] (12 in 6 s).
const POISON_SENDS: usize = 12;
const POISON_EVERY: Duration = Duration::from_millis(500);
/// Deaths after which the proxy refuses the bytes (`POISON_DEATHS`).
const DEATHS: u64 = 2;
/// Most of the other clients' calls that may fail (1 %).
const MAX_FAILED_RATIO: f64 = 0.01;
/// A worker that served and died is back (ready) within this.
const BACK_WITHIN: Duration = Duration::from_secs(2);
/// How often the recovery watch polls the status.
const WATCH_EVERY: Duration = Duration::from_millis(5);
/// Bound on every wait for the load to make progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Total restarts of the service's workers, and whether all are ready.
fn restarts(service: &Service) -> Option<(u64, bool)> {
    let status = service.status();
    let procs = status["processes"].as_array()?.clone();
    let workers = procs.iter().filter(|p| p["role"] == "worker");
    let (mut total, mut ready) = (0, true);
    for p in workers {
        total += p["restarts"].as_u64()?;
        ready &= p["state"] == "ready";
    }
    Some((total, ready))
}

/// Until `until`, notes for each death in `deaths` (in order: the k-th
/// death is over once the workers restarted k times and all are ready)
/// how long after its send the group was whole again. Returns at once
/// when none is pending; polls every few milliseconds otherwise.
fn watch_recovery(service: &Service, deaths: &mut [(Instant, Option<Duration>)], until: Instant) {
    let pending = |deaths: &[(Instant, Option<Duration>)]| deaths.iter().any(|d| d.1.is_none());
    while pending(deaths) && Instant::now() < until {
        if let Some((total, true)) = restarts(service) {
            let now = Instant::now();
            for (k, death) in deaths.iter_mut().enumerate() {
                if death.1.is_none() && total > k as u64 {
                    death.1 = Some(now.saturating_duration_since(death.0));
                }
            }
        }
        std::thread::sleep(WATCH_EVERY.min(until.saturating_duration_since(Instant::now())));
    }
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
}

/// What one poison send got back.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Died,
    Poison,
    Closed,
    Other(String),
}

fn send_poison(service: &Service) -> Answer {
    let mut client = match TcpClient::connect(service.tcp()) {
        Ok(c) => c,
        Err(e) => return Answer::Other(format!("connect: {e}")),
    };
    match client.call(ABORT) {
        Ok(reply) if reply == BUSY_DIED => Answer::Died,
        Ok(reply) if reply == BUSY_POISON => Answer::Poison,
        Ok(reply) => Answer::Other(String::from_utf8_lossy(&reply).into_owned()),
        Err(_) => Answer::Closed,
    }
}

#[test]
fn a_poison_request_kills_two_workers_then_is_refused_and_others_barely_notice() {
    let cfg = ServiceConfig::single(&Binaries::locate().plugin(PLUGIN), 2);
    let service = Service::start(&cfg);
    let load = Load::echo(service.tcp(), LOAD_CLIENTS);
    assert!(
        load.progresses(1000, PROGRESS_TIMEOUT),
        "no load before the attack\n{}",
        service.logs()
    );

    let mut answers = Vec::new();
    let mut restarts_after = Vec::new();
    // Per death: when its poison was sent, and how long until the group was
    // whole again (a restart more, every worker ready).
    let mut deaths: Vec<(Instant, Option<Duration>)> = Vec::new();
    let attack = Instant::now();
    for n in 0..POISON_SENDS {
        let sent = Instant::now();
        let answer = send_poison(&service);
        if answer != Answer::Poison {
            deaths.push((sent, None));
        }
        answers.push(answer);
        // The attack keeps its pace (one every 500 ms) whatever the
        // workers do; until the next send, watch them come back.
        let next = attack + POISON_EVERY * (n as u32 + 1);
        watch_recovery(&service, &mut deaths, next);
        restarts_after.push(restarts(&service).map_or(0, |r| r.0));
    }
    let attack_took = attack.elapsed();
    if deaths.iter().any(|d| d.1.is_none()) {
        watch_recovery(&service, &mut deaths, Instant::now() + BACK_WITHIN);
    }
    let back_after: Vec<Option<Duration>> = deaths.iter().map(|d| d.1).collect();
    assert!(
        load.progresses(1000, PROGRESS_TIMEOUT),
        "load stalled after the attack\n{}",
        service.logs()
    );
    let report = load.finish();

    let status = service.status();
    let poison_refused = status["proxy_stats"]["poison_refused"]
        .as_u64()
        .unwrap_or(0);
    let total = report.ok + report.busy + report.errors;
    let failed = report.busy + report.errors;
    let ratio = failed as f64 / total.max(1) as f64;
    eprintln!(
        "poison: {POISON_SENDS} sends in {attack_took:?}; answers {answers:?}; \
         worker back after {back_after:?}; restarts after each send {restarts_after:?}; \
         other clients: {failed} of {total} calls failed (ratio {ratio:.5}); \
         poison_refused {poison_refused}"
    );
    let context = format!("{report:?}\n{status:#}\n{}", service.logs());

    // The first two sends killed a worker each (answered "died" or
    // closed); every later one was refused by the proxy.
    for answer in &answers[..DEATHS as usize] {
        assert!(
            matches!(answer, Answer::Died | Answer::Closed),
            "{answers:?}\n{context}"
        );
    }
    for answer in &answers[DEATHS as usize..] {
        assert_eq!(answer, &Answer::Poison, "{answers:?}\n{context}");
    }
    // The restart count stopped growing after the second death.
    assert_eq!(restarts_after.last().copied(), Some(DEATHS), "{context}");
    assert!(
        restarts_after[DEATHS as usize..]
            .iter()
            .all(|&r| r == DEATHS),
        "{restarts_after:?}\n{context}"
    );
    assert!(
        poison_refused >= (POISON_SENDS as u64 - DEATHS),
        "{context}"
    );
    // A worker that died after serving came back at once: no back-off.
    for back in &back_after {
        assert!(
            back.is_some_and(|b| b <= BACK_WITHIN),
            "{back_after:?}\n{context}"
        );
    }
    let controller_log =
        std::fs::read_to_string(service.log_path("controller.log")).unwrap_or_default();
    assert!(
        controller_log.contains("restarting in 0ns"),
        "served worker restarted with a delay\n{controller_log}"
    );
    let proxy_log = std::fs::read_to_string(service.log_path("proxy.log")).unwrap_or_default();
    assert!(
        proxy_log.contains("refusing a poison request"),
        "refusal not logged\n{proxy_log}"
    );
    // The other clients barely noticed.
    assert_eq!(report.errors, 0, "{context}");
    assert!(ratio <= MAX_FAILED_RATIO, "ratio {ratio}\n{context}");
}
