//! A RESP (redis protocol) key-value server as an spp plugin: the proxy
//! frames one command per request, one worker holds the key space and
//! executes every command. Point `redis-cli` or `redis-benchmark` at the
//! proxy's port:
//!
//! ```text
//! cargo build --release -p spp-example-resp -p spp-controller -p spp-proxy -p spp-worker
//! ./target/release/spp start -c examples/resp/spp.toml
//! redis-cli -p 7379 set greeting hello      # OK
//! redis-benchmark -p 7379 -q -t ping,set,get,mget -c 50 -n 100000
//! ```
//!
//! Commands: PING, ECHO, GET, SET (EX, PX, NX, XX), DEL, EXISTS, EXPIRE,
//! PEXPIRE, TTL, PTTL, MGET, MSET, INCR, DECR, DBSIZE, FLUSHDB, FLUSHALL;
//! and for clients' housekeeping CONFIG GET (`save`, `appendonly`, ...),
//! COMMAND, SELECT 0, CLIENT, QUIT ([`commands`]). Values are strings;
//! requests come inline or as multibulk ([`frame`]); answers are RESP2.
//! An unknown command or bad arguments get a RESP error and the connection
//! stays open; bytes that are not RESP close that connection only (the
//! proxy's `input` says [`Input::Close`]).
//!
//! # State lives in the one worker
//!
//! Each spp worker is a process with its own memory: the key space
//! ([`store`]) is a `HashMap` inside the worker that runs `process`, and
//! nothing else can see it. Hence the group runs exactly one worker,
//! `workers = min_workers = max_workers = 1`: with two, a `SET` served by
//! one worker would be invisible to a `GET` served by the other, and
//! scaling down would throw away the keys of the worker it stops. One
//! worker also keeps every connection's answers in request order (RESP
//! pipelining needs it) and needs no locking between commands. The key
//! space lives as long as the worker: a restart (crash, `spp restart`)
//! starts empty, as a redis without persistence does.
//!
//! `plugin_conf`: `max_keys=N` (default 0 = no limit): a write that would
//! add a key past N gets `-OOM ...` and counts `resp_refused_full`.
//! Counters (plugin counters in `spp stat`): `resp_commands`,
//! `resp_errors` (commands answered with an error).

pub mod commands;
pub mod frame;
pub mod store;

use commands::{After, Args, Limits};
use frame::Frame;
use spp_plugin_api::{export_plugin, Conn, Host, HostError, Input, Level, Plugin, Processed};
use std::ops::Range;
use std::sync::Mutex;
use store::Store;

/// The answer sent when an answer is larger than the host can carry.
const TOO_LARGE: &[u8] = b"-ERR reply too large for the response ring\r\n";

/// The worker's state: the key space and reusable buffers.
#[derive(Default)]
struct State {
    store: Store,
    args: Vec<Range<usize>>,
    out: Vec<u8>,
    /// Counts not yet handed to the host (batched).
    commands: u64,
    errors: u64,
}

/// Commands between two flushes of the counters to the host.
const COUNT_EVERY: u64 = 1024;

/// The RESP plugin.
pub struct Resp {
    host: Host,
    limits: Limits,
    /// Only the worker's single thread takes it (plain mode): never
    /// contended, it is here because [`Plugin`] hooks take `&self`.
    state: Mutex<State>,
}

fn parse_conf(conf: &str) -> Result<Limits, String> {
    let mut limits = Limits::default();
    for item in conf.split([',', ' ']).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some(("max_keys", v)) => {
                limits.max_keys = v
                    .parse()
                    .map_err(|_| format!("max_keys={v:?} is not a number"))?;
            }
            _ => return Err(format!("unknown setting {item:?} (known: max_keys=N)")),
        }
    }
    Ok(limits)
}

impl Resp {
    fn flush_counts(&self, state: &mut State) {
        let _ = self
            .host
            .count("resp_commands", std::mem::take(&mut state.commands));
        let errors = std::mem::take(&mut state.errors);
        if errors > 0 {
            let _ = self.host.count("resp_errors", errors);
        }
    }
}

impl Plugin for Resp {
    type ConnState = ();
    /// The key space lives in the one worker's memory: `spp check` warns
    /// if a config lets the group scale.
    const STATEFUL: bool = true;

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        match parse_conf(conf) {
            Ok(limits) => Ok(Resp {
                host,
                limits,
                state: Mutex::new(State::default()),
            }),
            Err(why) => {
                host.log(Level::Error, &format!("resp: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        match frame::frame(buf) {
            Frame::Complete(n) => Input::Complete(n),
            Frame::NeedMore => Input::NeedMore,
            Frame::Invalid(_) => Input::Close,
        }
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let state = &mut *guard;
        match frame::parse(req, &mut state.args) {
            Ok(true) if !state.args.is_empty() => {}
            // The proxy frames with the same scanner: never reached
            // unless the proxy and worker plugins differ.
            _ => {
                let _ = self.host.reply(conn.flow(), b"-ERR Protocol error\r\n");
                return Processed::Close;
            }
        }
        state.out.clear();
        let args = Args::new(req, &state.args);
        let (after, outcome) =
            commands::execute(&mut state.store, self.limits, args, &mut state.out);
        state.commands += 1;
        state.errors += u64::from(outcome.error);
        if outcome.refused_full {
            let _ = self.host.count("resp_refused_full", 1);
        }
        if state.commands >= COUNT_EVERY || outcome.error {
            self.flush_counts(state);
        }
        let sent = match self.host.reply(conn.flow(), &state.out) {
            Err(HostError::TooLarge) => self.host.reply(conn.flow(), TOO_LARGE),
            sent => sent,
        };
        match (sent, after) {
            (Ok(()), After::Keep) => Processed::Done,
            _ => Processed::Close,
        }
    }
}

export_plugin!(Resp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_is_checked() {
        assert_eq!(parse_conf("").map(|l| l.max_keys), Ok(0));
        assert_eq!(parse_conf("max_keys=10").map(|l| l.max_keys), Ok(10));
        assert!(parse_conf("max_keys=x").is_err());
        assert!(parse_conf("other=1").is_err());
    }
}
