//! Clients of the relay example plugin (`libspp_relay.so`): they call a
//! relay service in a loop and count the calls that came back echoed (the
//! backend answered) and those that did not (`relay-error:<code>`, a wrong
//! answer, a broken connection), keeping the first failures' text.
//!
//! Unlike [`crate::load::Load`], a client goes on after a failure (a failed
//! relay call is an answer, not a broken connection; a broken connection is
//! reconnected, a bounded number of times), so a test can count failures
//! over a fault and see the traffic recover.

use crate::client::TcpClient;
use crate::wait_for;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The library name of the relay plugin.
pub const PLUGIN: &str = "spp_relay";
/// What the relay's error answers start with.
pub const ERROR_PREFIX: &[u8] = b"relay-error:";
/// Most calls one client makes (a bound besides the stop flag).
pub const MAX_CALLS_PER_CLIENT: u64 = 10_000_000;
/// A client gives up after this many broken connections in a row.
pub const MAX_RECONNECTS: u32 = 50;
/// Failure texts kept for the report.
const MAX_TEXTS: usize = 16;

/// The relay's worker `plugin_conf` for sid `modid:cmdid`.
pub fn conf(modid: u32, cmdid: u32, timeout_ms: u64) -> String {
    format!("modid={modid} cmdid={cmdid} timeout_ms={timeout_ms}")
}

/// Calls answered so far, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Echoed: a backend answered.
    pub ok: u64,
    /// Anything else: `relay-error:...`, a wrong answer, an I/O error.
    pub failed: u64,
}

impl Tally {
    /// What happened since `before`.
    pub fn since(self, before: Tally) -> Tally {
        Tally {
            ok: self.ok - before.ok,
            failed: self.failed - before.failed,
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    texts: Mutex<Vec<String>>,
}

impl Counts {
    fn fail(&self, text: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut texts) = self.texts.lock() {
            if texts.len() < MAX_TEXTS {
                texts.push(text);
            }
        }
    }
}

/// Clients calling a relay in a loop until [`RelayLoad::finish`] (or
/// drop).
pub struct RelayLoad {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl RelayLoad {
    /// `clients` connections to `addr`, each calling, then pausing `pause`
    /// (keeps a 2-core machine free for the services under test).
    pub fn start(addr: SocketAddr, clients: usize, pause: Duration) -> RelayLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let threads = (0..clients)
            .map(|c| {
                let (stop, counts) = (stop.clone(), counts.clone());
                std::thread::spawn(move || client_loop(addr, c, pause, &stop, &counts))
            })
            .collect();
        RelayLoad {
            stop,
            counts,
            threads,
        }
    }

    /// The calls so far.
    pub fn tally(&self) -> Tally {
        Tally {
            ok: self.counts.ok.load(Ordering::SeqCst),
            failed: self.counts.failed.load(Ordering::SeqCst),
        }
    }

    /// The first failures' text.
    pub fn failures(&self) -> Vec<String> {
        self.counts
            .texts
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Whether some client still runs.
    pub fn running(&self) -> bool {
        !self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits until `more` further calls succeeded; false at `timeout` or
    /// once every client has given up.
    pub fn progresses(&self, more: u64, timeout: Duration) -> bool {
        let target = self.tally().ok + more;
        wait_for(timeout, || {
            if self.tally().ok >= target {
                Some(true)
            } else if !self.running() {
                Some(false)
            } else {
                None
            }
        })
        .unwrap_or(false)
    }

    /// Stops the clients; the final tally.
    pub fn finish(mut self) -> Tally {
        self.stop()
    }

    /// Stops the clients (in place); the final tally.
    pub fn stop(&mut self) -> Tally {
        self.stop_and_join();
        self.tally()
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.counts.fail("a relay client panicked".into());
            }
        }
    }
}

impl Drop for RelayLoad {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn client_loop(addr: SocketAddr, c: usize, pause: Duration, stop: &AtomicBool, counts: &Counts) {
    let mut client: Option<TcpClient> = None;
    let mut broken = 0u32;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) && i < MAX_CALLS_PER_CLIENT && broken < MAX_RECONNECTS {
        let conn = match client.as_mut() {
            Some(conn) => conn,
            None => match TcpClient::connect(addr) {
                Ok(conn) => client.insert(conn),
                Err(e) => {
                    broken += 1;
                    counts.fail(format!("client {c}: connect: {e}"));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let request = format!("relay {c} {i}").into_bytes();
        match conn.call(&request) {
            Ok(reply) if reply == request => {
                broken = 0;
                counts.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(reply) => {
                broken = 0;
                counts.fail(format!(
                    "client {c} call {i}: sent {:?}, got {:?}",
                    String::from_utf8_lossy(&request),
                    String::from_utf8_lossy(&reply)
                ));
            }
            Err(e) => {
                broken += 1;
                client = None;
                counts.fail(format!("client {c} call {i}: {e}"));
            }
        }
        i += 1;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}
