//! Background load: several TCP clients calling in a closed loop until told
//! to stop, counting echoes, exception answers ("busy...") and errors (a
//! wrong answer, a closed connection, a timeout), with the first errors'
//! text kept for the failure message.

use crate::client::TcpClient;
use crate::faulty::is_busy;
use crate::wait_for;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most calls one load client makes (a bound besides the stop flag).
pub const MAX_CALLS_PER_CLIENT: u64 = 1_000_000;
/// Error texts kept for the report.
const MAX_ERRORS_KEPT: usize = 8;

/// Makes the payload of call `i` of client `c`.
pub type PayloadFn = dyn Fn(usize, u64) -> Vec<u8> + Send + Sync;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
    texts: Mutex<Vec<String>>,
}

impl Counts {
    /// A failed client: counted, and its text kept.
    fn error(&self, text: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.note(text);
    }

    /// Keeps `text` for the report (the first few only).
    fn note(&self, text: String) {
        if let Ok(mut texts) = self.texts.lock() {
            if texts.len() < MAX_ERRORS_KEPT {
                texts.push(text);
            }
        }
    }
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    /// Calls answered with their echo.
    pub ok: u64,
    /// Calls answered by the exception hook.
    pub busy: u64,
    /// Clients that failed (each stops at its first error).
    pub errors: u64,
    /// The first errors and exception answers, as text.
    pub error_texts: Vec<String>,
}

impl LoadReport {
    /// Every call was echoed: no exception answer, no error.
    pub fn clean(&self) -> bool {
        self.busy == 0 && self.errors == 0
    }
}

/// Clients calling in a loop until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` connections to `addr`, each sending `payload(c, i)` and
    /// waiting for its answer, over and over.
    pub fn start(addr: SocketAddr, clients: usize, payload: Arc<PayloadFn>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let threads = (0..clients)
            .map(|c| {
                let (stop, counts, payload) = (stop.clone(), counts.clone(), payload.clone());
                std::thread::spawn(move || client_loop(addr, c, &stop, &counts, &*payload))
            })
            .collect();
        Load {
            stop,
            counts,
            threads,
        }
    }

    /// Plain echo calls (`load <c> <i>`).
    pub fn echo(addr: SocketAddr, clients: usize) -> Load {
        Load::start(
            addr,
            clients,
            Arc::new(|c, i| format!("load {c} {i}").into_bytes()),
        )
    }

    /// Calls echoed so far.
    pub fn ok(&self) -> u64 {
        self.counts.ok.load(Ordering::Relaxed)
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.counts.errors.load(Ordering::Relaxed)
    }

    /// Waits until `more` further calls were echoed; false at `timeout`
    /// or once every client has failed.
    pub fn progresses(&self, more: u64, timeout: Duration) -> bool {
        let target = self.ok() + more;
        wait_for(timeout, || {
            if self.ok() >= target {
                Some(true)
            } else if self.threads.iter().all(JoinHandle::is_finished) {
                Some(false)
            } else {
                None
            }
        })
        .unwrap_or(false)
    }

    /// Stops the clients and reports.
    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            if t.join().is_err() {
                self.counts.error("a load client panicked".into());
            }
        }
        let texts = self
            .counts
            .texts
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        LoadReport {
            ok: self.counts.ok.load(Ordering::Relaxed),
            busy: self.counts.busy.load(Ordering::Relaxed),
            errors: self.counts.errors.load(Ordering::Relaxed),
            error_texts: texts,
        }
    }
}

fn client_loop(
    addr: SocketAddr,
    c: usize,
    stop: &AtomicBool,
    counts: &Counts,
    payload: &PayloadFn,
) {
    let mut client = match TcpClient::connect(addr) {
        Ok(client) => client,
        Err(e) => return counts.error(format!("client {c}: connect: {e}")),
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < MAX_CALLS_PER_CLIENT {
        let request = payload(c, i);
        match client.call(&request) {
            Ok(reply) if reply == request => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(reply) if is_busy(&reply) => {
                counts.busy.fetch_add(1, Ordering::Relaxed);
                counts.note(format!(
                    "client {c} call {i}: answered {:?}",
                    String::from_utf8_lossy(&reply)
                ));
            }
            Ok(reply) => {
                return counts.error(format!(
                    "client {c} call {i}: sent {:?}, got {:?}",
                    String::from_utf8_lossy(&request),
                    String::from_utf8_lossy(&reply)
                ))
            }
            Err(e) => return counts.error(format!("client {c} call {i}: {e}")),
        }
        i += 1;
    }
}
