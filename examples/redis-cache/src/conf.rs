//! The cache's `plugin_conf`: `key=value` settings separated by spaces or
//! commas.
//!
//! | key                  | meaning                                                        | default          |
//! |----------------------|----------------------------------------------------------------|------------------|
//! | `redis`              | the redis-server, `IP:PORT`                                    | `127.0.0.1:6379` |
//! | `modid`              | the slow service that fills misses (sid, with `cmdid`)         | — (worker: required) |
//! | `cmdid`              | the slow service that fills misses (sid, with `modid`)         | — (worker: required) |
//! | `ttl_s`              | lifetime of a value set on a miss (`SET key value EX ttl_s`), s | 60             |
//! | `timeout_ms`         | bound on one redis command (connecting included)               | 200              |
//! | `backend_timeout_ms` | bound on fetching a miss from the sid, both attempts included  | 1000             |
//! | `tries`              | attempts on different instances of the sid for one miss        | 2                |
//! | `max_payload`        | largest key (request payload) and value (answer payload), bytes | 1 MiB           |
//!
//! A worker needs `modid` and `cmdid`; the proxy needs none (it only frames
//! requests with `max_payload`). A request takes at most `timeout_ms`
//! (GET) + `backend_timeout_ms` (the miss) + `timeout_ms` (SET): keep that
//! below the group's `task_timeout`, which is only the last resort.

use spp_plugin_api::conf::Settings;
use std::net::SocketAddr;
use std::time::Duration;

/// The redis-server when `redis` is not given.
pub const DEFAULT_REDIS: &str = "127.0.0.1:6379";
/// Lifetime of a value set on a miss unless `ttl_s` says otherwise.
pub const DEFAULT_TTL_S: u64 = 60;
/// Bound on one redis command unless `timeout_ms` says otherwise (a local
/// redis answers in well under a millisecond).
pub const DEFAULT_TIMEOUT_MS: u64 = 200;
/// Bound on one miss's backend call unless `backend_timeout_ms` says
/// otherwise (L5 advises 0.2–1 s).
pub const DEFAULT_BACKEND_TIMEOUT_MS: u64 = 1000;
/// Attempts per miss unless `tries` says otherwise (one retry on another
/// instance).
pub const DEFAULT_TRIES: u32 = 2;
/// The most attempts `tries` accepts.
pub const MAX_TRIES: u64 = 8;
/// The longest `timeout_ms` / `backend_timeout_ms` accepted.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The longest `ttl_s` accepted (a year).
pub const MAX_TTL_S: u64 = 365 * 24 * 3600;
/// Largest key or value unless `max_payload` says otherwise (the proxy's
/// default `max_request_size`).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// The slow service that fills misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sid {
    /// Module id.
    pub modid: u32,
    /// Command id.
    pub cmdid: u32,
}

/// The parsed `plugin_conf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conf {
    /// The redis-server.
    pub redis: SocketAddr,
    /// The sid that fills misses; `None` only where no request is
    /// processed (the proxy).
    pub sid: Option<Sid>,
    /// Lifetime of a value set on a miss, seconds.
    pub ttl_s: u64,
    /// Bound on one redis command.
    pub timeout: Duration,
    /// Bound on one miss's backend call, every attempt included.
    pub backend_timeout: Duration,
    /// Attempts per miss, each on another pick of the sid.
    pub tries: u32,
    /// Largest key (request payload) and value (answer payload).
    pub max_payload: usize,
}

/// Every key, with the form of its value.
const KEYS: &[&str] = &[
    "redis=IP:PORT",
    "modid=N",
    "cmdid=N",
    "ttl_s=N",
    "timeout_ms=N",
    "backend_timeout_ms=N",
    "tries=N",
    "max_payload=N",
];

/// The numeric settings as given.
struct Numbers {
    modid: Option<u64>,
    cmdid: Option<u64>,
    ttl_s: Option<u64>,
    timeout_ms: Option<u64>,
    backend_timeout_ms: Option<u64>,
    tries: Option<u64>,
    max_payload: Option<u64>,
}

/// Parses `conf`. Every error names the setting and why it is refused.
pub fn parse(conf: &str) -> Result<Conf, String> {
    let s = Settings::parse(conf, KEYS)?;
    let n = Numbers {
        modid: s.number("modid")?,
        cmdid: s.number("cmdid")?,
        ttl_s: s.number("ttl_s")?,
        timeout_ms: s.number("timeout_ms")?,
        backend_timeout_ms: s.number("backend_timeout_ms")?,
        tries: s.number("tries")?,
        max_payload: s.number("max_payload")?,
    };
    let redis: Option<SocketAddr> = s.parsed("redis", "IP:PORT")?;
    let redis = match redis {
        Some(addr) => addr,
        None => DEFAULT_REDIS
            .parse()
            .map_err(|_| format!("default redis {DEFAULT_REDIS:?} is not IP:PORT"))?,
    };
    Ok(Conf {
        redis,
        sid: sid(n.modid, n.cmdid)?,
        ttl_s: in_range("ttl_s", n.ttl_s.unwrap_or(DEFAULT_TTL_S), 1, MAX_TTL_S)?,
        timeout: millis("timeout_ms", n.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))?,
        backend_timeout: millis(
            "backend_timeout_ms",
            n.backend_timeout_ms.unwrap_or(DEFAULT_BACKEND_TIMEOUT_MS),
        )?,
        tries: in_range(
            "tries",
            n.tries.unwrap_or(DEFAULT_TRIES.into()),
            1,
            MAX_TRIES,
        )?
        .try_into()
        .map_err(|_| "tries does not fit 32 bits".to_string())?,
        max_payload: match n.max_payload {
            None => DEFAULT_MAX_PAYLOAD,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|&n| n <= u32::MAX as usize)
                .ok_or_else(|| format!("max_payload={n} is larger than a frame can announce"))?,
        },
    })
}

/// The sid from `modid` and `cmdid`, both or neither.
fn sid(modid: Option<u64>, cmdid: Option<u64>) -> Result<Option<Sid>, String> {
    let id = |key: &str, value: u64| {
        u32::try_from(value).map_err(|_| format!("{key}={value} does not fit 32 bits"))
    };
    match (modid, cmdid) {
        (Some(m), Some(c)) => Ok(Some(Sid {
            modid: id("modid", m)?,
            cmdid: id("cmdid", c)?,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err("modid is given without cmdid".into()),
        (None, Some(_)) => Err("cmdid is given without modid".into()),
    }
}

/// `value` if within `lo..=hi`, else an error naming `key`.
fn in_range(key: &str, value: u64, lo: u64, hi: u64) -> Result<u64, String> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{key}={value} is out of range {lo}..={hi}"))
    }
}

/// A timeout setting in milliseconds, checked.
fn millis(key: &str, ms: u64) -> Result<Duration, String> {
    in_range(key, ms, 1, MAX_TIMEOUT_MS).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_with_defaults() {
        let conf = parse(
            "redis=127.0.0.1:7000 modid=64001 cmdid=1 ttl_s=30 timeout_ms=50 \
             backend_timeout_ms=700 tries=3 max_payload=10",
        );
        assert_eq!(
            conf,
            Ok(Conf {
                redis: "127.0.0.1:7000".parse().unwrap(),
                sid: Some(Sid {
                    modid: 64001,
                    cmdid: 1
                }),
                ttl_s: 30,
                timeout: Duration::from_millis(50),
                backend_timeout: Duration::from_millis(700),
                tries: 3,
                max_payload: 10,
            })
        );
        let proxy = parse(" , ").unwrap();
        assert_eq!(proxy.redis, DEFAULT_REDIS.parse().unwrap());
        assert_eq!(proxy.sid, None);
        assert_eq!(proxy.ttl_s, DEFAULT_TTL_S);
        assert_eq!(proxy.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(
            proxy.backend_timeout,
            Duration::from_millis(DEFAULT_BACKEND_TIMEOUT_MS)
        );
        assert_eq!(proxy.tries, DEFAULT_TRIES);
        assert_eq!(proxy.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(
            parse("modid=7,cmdid=8").map(|c| c.sid),
            Ok(Some(Sid { modid: 7, cmdid: 8 }))
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("speed=fast", "unknown setting \"speed\""),
            ("modid", "not key=value"),
            (
                "modid=x cmdid=1",
                "modid=\"x\" is not a non-negative integer",
            ),
            ("modid=1", "modid is given without cmdid"),
            ("cmdid=1", "cmdid is given without modid"),
            ("ttl_s=1 ttl_s=2", "ttl_s is given twice"),
            ("modid=4294967296 cmdid=1", "modid=4294967296 does not fit"),
            ("ttl_s=0", "ttl_s=0 is out of range"),
            ("timeout_ms=0", "timeout_ms=0 is out of range"),
            ("backend_timeout_ms=60001", "out of range 1..=60000"),
            ("tries=0", "tries=0 is out of range 1..=8"),
            ("max_payload=4294967296", "larger than a frame can announce"),
            (
                "redis=localhost:6379",
                "redis=\"localhost:6379\" is not IP:PORT",
            ),
            (
                "redis=127.0.0.1:1 redis=127.0.0.1:2",
                "redis is given twice",
            ),
        ];
        for (conf, want) in cases {
            let err = parse(conf).unwrap_err();
            assert!(err.contains(want), "{conf:?}: {err}");
        }
    }
}
