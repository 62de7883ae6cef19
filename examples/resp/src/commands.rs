//! Executing one command against the [`Store`] and writing its RESP2
//! answer: PING, ECHO, GET, SET (EX, PX, NX, XX), DEL, EXISTS, EXPIRE,
//! PEXPIRE, TTL, PTTL, MGET, MSET, INCR, DECR, DBSIZE, FLUSHDB, FLUSHALL,
//! and what clients send on their own: CONFIG GET (`save`, `appendonly`
//! and a few more, as redis-benchmark asks at start), COMMAND (an empty
//! list), SELECT 0, CLIENT (accepted), QUIT. Anything else is a RESP error
//! with redis's wording; the connection stays open.

use crate::store::Store;
use std::fmt::Write as _;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Longest command name quoted back in an "unknown command" error.
const MAX_QUOTED: usize = 128;

/// What CONFIG GET answers (name, value), as a persistence-less redis.
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
];

/// The arguments of one command: ranges of the request bytes.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    req: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// The arguments `ranges` of `req` (as [`crate::frame::parse`] gives).
    pub fn new(req: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Args { req, ranges }
    }
    fn len(&self) -> usize {
        self.ranges.len()
    }
    fn get(&self, i: usize) -> &'a [u8] {
        self.ranges
            .get(i)
            .and_then(|r| self.req.get(r.clone()))
            .unwrap_or_default()
    }
    fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let req = self.req;
        self.ranges
            .iter()
            .map(move |r| req.get(r.clone()).unwrap_or_default())
    }
}

/// What the connection does after the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Keep it open.
    Keep,
    /// Close it once the answer is out (QUIT).
    Close,
}

/// Configuration the commands need.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Most keys held (0: no limit); a write of a new key past it is
    /// refused with an `-OOM` error.
    pub max_keys: usize,
}

/// What executing counted, for the plugin's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The answer is an error.
    pub error: bool,
    /// A write was refused at `max_keys`.
    pub refused_full: bool,
}

/// Executes `args` (at least one) against `store`, appending the answer
/// to `out`.
pub fn execute(
    store: &mut Store,
    limits: Limits,
    args: Args<'_>,
    out: &mut Vec<u8>,
) -> (After, Outcome) {
    let now = store.clock();
    let mut cx = Cx {
        store,
        limits,
        now,
        out,
        outcome: Outcome::default(),
    };
    let after = cx.run(args);
    if let Some(now) = now {
        cx.store.sweep(now);
    }
    (after, cx.outcome)
}

struct Cx<'s> {
    store: &'s mut Store,
    limits: Limits,
    now: Option<Instant>,
    out: &'s mut Vec<u8>,
    outcome: Outcome,
}

fn is(name: &[u8], want: &str) -> bool {
    name.eq_ignore_ascii_case(want.as_bytes())
}

impl Cx<'_> {
    fn run(&mut self, args: Args<'_>) -> After {
        let name = args.get(0);
        let n = args.len();
        // (name, arity): positive = exactly, negative = at least.
        let arity = |want: i64| -> bool {
            let n = n as i64;
            if want >= 0 {
                n == want
            } else {
                n >= -want
            }
        };
        macro_rules! need {
            ($arity:expr, $cmd:literal) => {
                if !arity($arity) {
                    self.error(concat!(
                        "ERR wrong number of arguments for '",
                        $cmd,
                        "' command"
                    ));
                    return After::Keep;
                }
            };
        }
        if is(name, "get") {
            need!(2, "get");
            let v = self.store.get(args.get(1), self.now);
            bulk(self.out, v);
        } else if is(name, "set") {
            need!(-3, "set");
            self.set(args);
        } else if is(name, "ping") {
            match n {
                1 => self.out.extend_from_slice(b"+PONG\r\n"),
                2 => bulk(self.out, Some(args.get(1))),
                _ => self.error("ERR wrong number of arguments for 'ping' command"),
            }
        } else if is(name, "mget") {
            need!(-2, "mget");
            array(self.out, n - 1);
            for key in args.iter().skip(1) {
                let v = self.store.get(key, self.now);
                bulk(self.out, v);
            }
        } else if is(name, "del") {
            need!(-2, "del");
            let mut gone = 0;
            for key in args.iter().skip(1) {
                gone += i64::from(self.store.del(key, self.now));
            }
            int(self.out, gone);
        } else if is(name, "exists") {
            need!(-2, "exists");
            let mut found = 0;
            for key in args.iter().skip(1) {
                found += i64::from(self.store.exists(key, self.now));
            }
            int(self.out, found);
        } else if is(name, "expire") {
            need!(3, "expire");
            self.expire(args, Duration::from_secs, "expire");
        } else if is(name, "pexpire") {
            need!(3, "pexpire");
            self.expire(args, Duration::from_millis, "pexpire");
        } else if is(name, "ttl") {
            need!(2, "ttl");
            self.ttl(args.get(1), |d| d.as_millis().div_ceil(1000));
        } else if is(name, "pttl") {
            need!(2, "pttl");
            self.ttl(args.get(1), |d| d.as_millis());
        } else if is(name, "mset") {
            if n < 3 || n.is_multiple_of(2) {
                self.error("ERR wrong number of arguments for 'mset' command");
                return After::Keep;
            }
            let pairs = || {
                args.iter()
                    .skip(1)
                    .step_by(2)
                    .zip(args.iter().skip(2).step_by(2))
            };
            let new = pairs()
                .filter(|(k, _)| !self.store.exists(k, self.now))
                .count();
            if self.full(new) {
                return After::Keep;
            }
            for (k, v) in pairs() {
                self.store.set(k, v, None);
            }
            self.out.extend_from_slice(b"+OK\r\n");
        } else if is(name, "incr") {
            need!(2, "incr");
            self.incr(args.get(1), 1);
        } else if is(name, "decr") {
            need!(2, "decr");
            self.incr(args.get(1), -1);
        } else if is(name, "echo") {
            need!(2, "echo");
            bulk(self.out, Some(args.get(1)));
        } else if is(name, "dbsize") {
            need!(1, "dbsize");
            int(self.out, self.store.len() as i64);
        } else if is(name, "flushdb") || is(name, "flushall") {
            self.store.clear();
            self.out.extend_from_slice(b"+OK\r\n");
        } else if is(name, "config") {
            need!(-2, "config");
            self.config(args);
        } else if is(name, "command") {
            array(self.out, 0);
        } else if is(name, "select") {
            need!(2, "select");
            match crate::frame::number(args.get(1)) {
                Some(0) => self.out.extend_from_slice(b"+OK\r\n"),
                Some(_) => self.error("ERR DB index is out of range"),
                None => self.error("ERR value is not an integer or out of range"),
            }
        } else if is(name, "client") {
            self.out.extend_from_slice(b"+OK\r\n");
        } else if is(name, "quit") {
            self.out.extend_from_slice(b"+OK\r\n");
            return After::Close;
        } else {
            self.unknown(args);
        }
        After::Keep
    }

    fn error(&mut self, text: &str) {
        self.outcome.error = true;
        self.out.push(b'-');
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Refuses a write that would add `new` keys past `max_keys`.
    fn full(&mut self, new: usize) -> bool {
        let max = self.limits.max_keys;
        if max == 0 || self.store.len() + new <= max {
            return false;
        }
        self.outcome.refused_full = true;
        self.error("OOM command not allowed: the key space is full (max_keys)");
        true
    }

    fn set(&mut self, args: Args<'_>) {
        let (key, value) = (args.get(1), args.get(2));
        let mut ttl: Option<Duration> = None;
        let (mut nx, mut xx) = (false, false);
        let mut i = 3;
        while i < args.len() {
            let opt = args.get(i);
            if is(opt, "nx") && !xx {
                nx = true;
            } else if is(opt, "xx") && !nx {
                xx = true;
            } else if (is(opt, "ex") || is(opt, "px")) && ttl.is_none() && i + 1 < args.len() {
                i += 1;
                let amount = match crate::frame::number(args.get(i)) {
                    Some(v) if v > 0 => v as u64,
                    Some(_) => return self.error("ERR invalid expire time in 'set' command"),
                    None => return self.error("ERR value is not an integer or out of range"),
                };
                ttl = Some(if is(opt, "ex") {
                    Duration::from_secs(amount)
                } else {
                    Duration::from_millis(amount)
                });
            } else {
                return self.error("ERR syntax error");
            }
            i += 1;
        }
        let exists = if nx || xx || self.limits.max_keys > 0 {
            self.store.exists(key, self.now)
        } else {
            false
        };
        if (nx && exists) || (xx && !exists) {
            return bulk(self.out, None);
        }
        if !exists && self.full(1) {
            return;
        }
        let expires = match ttl {
            Some(ttl) => match Instant::now().checked_add(ttl) {
                Some(at) => Some(at),
                None => return self.error("ERR invalid expire time in 'set' command"),
            },
            None => None,
        };
        self.store.set(key, value, expires);
        self.out.extend_from_slice(b"+OK\r\n");
    }

    fn expire(&mut self, args: Args<'_>, unit: fn(u64) -> Duration, cmd: &str) {
        let Some(amount) = crate::frame::number(args.get(2)) else {
            return self.error("ERR value is not an integer or out of range");
        };
        let key = args.get(1);
        if amount <= 0 {
            // A deadline already past: the key goes now.
            return int(self.out, i64::from(self.store.del(key, self.now)));
        }
        let Some(at) = Instant::now().checked_add(unit(amount as u64)) else {
            let mut text = String::new();
            let _ = write!(text, "ERR invalid expire time in '{cmd}' command");
            return self.error(&text);
        };
        int(self.out, i64::from(self.store.expire(key, at, self.now)));
    }

    fn ttl(&mut self, key: &[u8], scale: fn(Duration) -> u128) {
        let left = match self.store.deadline(key, self.now) {
            None => -2,
            Some(None) => -1,
            Some(Some(at)) => {
                let left = at.saturating_duration_since(Instant::now());
                i64::try_from(scale(left)).unwrap_or(i64::MAX)
            }
        };
        int(self.out, left);
    }

    fn incr(&mut self, key: &[u8], by: i64) {
        let current = match self.store.get(key, self.now) {
            None => None,
            Some(v) => match crate::frame::number(v) {
                Some(v) => Some(v),
                None => return self.error("ERR value is not an integer or out of range"),
            },
        };
        let Some(next) = current.unwrap_or(0).checked_add(by) else {
            return self.error("ERR increment or decrement would overflow");
        };
        let mut text = [0u8; 24];
        let digits = format_i64(next, &mut text);
        if current.is_some() {
            self.store.overwrite(key, digits, self.now);
        } else {
            if self.full(1) {
                return;
            }
            self.store.set(key, digits, None);
        }
        int(self.out, next);
    }

    fn config(&mut self, args: Args<'_>) {
        let sub = args.get(1);
        if is(sub, "get") && args.len() >= 3 {
            let found: Vec<(&str, &str)> = args
                .iter()
                .skip(2)
                .flat_map(|want| CONFIG.iter().filter(move |(name, _)| glob(want, name)))
                .copied()
                .collect();
            array(self.out, found.len() * 2);
            for (name, value) in found {
                bulk(self.out, Some(name.as_bytes()));
                bulk(self.out, Some(value.as_bytes()));
            }
        } else if is(sub, "resetstat") {
            self.out.extend_from_slice(b"+OK\r\n");
        } else {
            self.error("ERR CONFIG subcommand not supported here (only GET and RESETSTAT)");
        }
    }

    fn unknown(&mut self, args: Args<'_>) {
        let mut text = String::from("ERR unknown command '");
        quote(&mut text, args.get(0));
        text.push_str("', with args beginning with: ");
        for arg in args.iter().skip(1).take(3) {
            text.push('\'');
            quote(&mut text, arg);
            text.push_str("' ");
        }
        self.error(&text);
    }
}

/// `want` matches `name` case-insensitively, `*` matching any run.
fn glob(want: &[u8], name: &str) -> bool {
    match want.iter().position(|&b| b == b'*') {
        None => want.eq_ignore_ascii_case(name.as_bytes()),
        Some(star) => {
            let (head, tail) = (&want[..star], &want[star + 1..]);
            let name = name.as_bytes();
            name.len() >= head.len()
                && name[..head.len()].eq_ignore_ascii_case(head)
                && (tail.is_empty() || glob_suffix(tail, &name[head.len()..]))
        }
    }
}

fn glob_suffix(tail: &[u8], rest: &[u8]) -> bool {
    if tail.contains(&b'*') {
        // Several stars: any position of the next part.
        return true;
    }
    rest.len() >= tail.len() && rest[rest.len() - tail.len()..].eq_ignore_ascii_case(tail)
}

/// Appends `raw` to an error text: printable ASCII as is, the rest
/// (CR and LF included, which would end the error line) as `?`.
fn quote(text: &mut String, raw: &[u8]) {
    for &b in raw.iter().take(MAX_QUOTED) {
        text.push(if (0x20..0x7f).contains(&b) {
            char::from(b)
        } else {
            '?'
        });
    }
}

/// `v` in decimal, in `buf`.
fn format_i64(v: i64, buf: &mut [u8; 24]) -> &[u8] {
    let mut pos = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

fn int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 24];
    out.push(b':');
    out.extend_from_slice(format_i64(v, &mut buf));
    out.extend_from_slice(b"\r\n");
}

fn array(out: &mut Vec<u8>, n: usize) {
    let mut buf = [0u8; 24];
    out.push(b'*');
    out.extend_from_slice(format_i64(n as i64, &mut buf));
    out.extend_from_slice(b"\r\n");
}

/// A bulk string, or the null bulk for `None`.
fn bulk(out: &mut Vec<u8>, v: Option<&[u8]>) {
    let Some(v) = v else {
        out.extend_from_slice(b"$-1\r\n");
        return;
    };
    let mut buf = [0u8; 24];
    out.push(b'$');
    out.extend_from_slice(format_i64(v.len() as i64, &mut buf));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an inline command line, returning the answer.
    fn run(store: &mut Store, line: &str) -> String {
        run_with(store, Limits::default(), line)
    }

    fn run_with(store: &mut Store, limits: Limits, line: &str) -> String {
        let req = format!("{line}\r\n");
        let mut ranges = Vec::new();
        assert_eq!(crate::frame::parse(req.as_bytes(), &mut ranges), Ok(true));
        let mut out = Vec::new();
        execute(store, limits, Args::new(req.as_bytes(), &ranges), &mut out);
        String::from_utf8(out).expect("utf-8 answer")
    }

    #[test]
    fn strings_round_trip() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "PING"), "+PONG\r\n");
        assert_eq!(run(&mut s, "ping hi"), "$2\r\nhi\r\n");
        assert_eq!(run(&mut s, "GET k"), "$-1\r\n");
        assert_eq!(run(&mut s, "SET k v"), "+OK\r\n");
        assert_eq!(run(&mut s, "GET k"), "$1\r\nv\r\n");
        assert_eq!(run(&mut s, "SET k w NX"), "$-1\r\n");
        assert_eq!(run(&mut s, "SET j w XX"), "$-1\r\n");
        assert_eq!(run(&mut s, "MSET a 1 b 2"), "+OK\r\n");
        assert_eq!(
            run(&mut s, "MGET k a x"),
            "*3\r\n$1\r\nv\r\n$1\r\n1\r\n$-1\r\n"
        );
        assert_eq!(run(&mut s, "DEL k a x"), ":2\r\n");
        assert_eq!(run(&mut s, "EXISTS k b"), ":1\r\n");
        assert_eq!(run(&mut s, "INCR n"), ":1\r\n");
        assert_eq!(run(&mut s, "DECR n"), ":0\r\n");
        assert_eq!(run(&mut s, "INCR b"), ":3\r\n");
        assert_eq!(run(&mut s, "DBSIZE"), ":2\r\n");
    }

    #[test]
    fn expiry_commands() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "SET k v EX 100"), "+OK\r\n");
        assert_eq!(run(&mut s, "TTL k"), ":100\r\n");
        assert_eq!(run(&mut s, "EXPIRE k 10"), ":1\r\n");
        assert_eq!(run(&mut s, "TTL k"), ":10\r\n");
        assert_eq!(run(&mut s, "EXPIRE nope 10"), ":0\r\n");
        assert_eq!(run(&mut s, "TTL nope"), ":-2\r\n");
        assert_eq!(run(&mut s, "SET p v"), "+OK\r\n");
        assert_eq!(run(&mut s, "TTL p"), ":-1\r\n");
        assert_eq!(run(&mut s, "EXPIRE p 0"), ":1\r\n");
        assert_eq!(run(&mut s, "GET p"), "$-1\r\n");
        assert_eq!(run(&mut s, "SET q v PX 1"), "+OK\r\n");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(run(&mut s, "GET q"), "$-1\r\n");
        assert_eq!(
            run(&mut s, "SET k v EX 0"),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(
            run(&mut s, "SET k v EX x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run(&mut s, "SET k v EX 1 PX 1"), "-ERR syntax error\r\n");
    }

    #[test]
    fn errors_are_resp_errors() {
        let mut s = Store::default();
        assert_eq!(
            run(&mut s, "GET"),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            run(&mut s, "FOO a b"),
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
        );
        assert_eq!(run(&mut s, "SET s x"), "+OK\r\n");
        assert_eq!(
            run(&mut s, "INCR s"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run(&mut s, "SELECT 1"), "-ERR DB index is out of range\r\n");
    }

    #[test]
    fn client_housekeeping() {
        let mut s = Store::default();
        assert_eq!(
            run(&mut s, "CONFIG GET save"),
            "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(
            run(&mut s, "CONFIG GET appendonly"),
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
        );
        assert_eq!(run(&mut s, "CONFIG GET nothing"), "*0\r\n");
        assert_eq!(run(&mut s, "COMMAND DOCS"), "*0\r\n");
        assert_eq!(run(&mut s, "SELECT 0"), "+OK\r\n");
    }

    #[test]
    fn max_keys_refuses_new_keys_only() {
        let mut s = Store::default();
        let limits = Limits { max_keys: 1 };
        assert_eq!(run_with(&mut s, limits, "SET a 1"), "+OK\r\n");
        assert_eq!(run_with(&mut s, limits, "SET a 2"), "+OK\r\n");
        assert!(run_with(&mut s, limits, "SET b 1").starts_with("-OOM"));
        assert!(run_with(&mut s, limits, "MSET a 1 c 2").starts_with("-OOM"));
        assert!(run_with(&mut s, limits, "INCR c").starts_with("-OOM"));
    }

    #[test]
    fn numbers_format_like_redis() {
        let mut buf = [0u8; 24];
        for v in [0, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            assert_eq!(format_i64(v, &mut buf), v.to_string().as_bytes());
        }
    }
}
