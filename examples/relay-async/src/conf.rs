//! The async relay's `plugin_conf` (the keys of `examples/relay`, plus
//! `pool`): `key=value` settings separated by spaces or commas.
//!
//! | key          | meaning                                               | default |
//! |--------------|-------------------------------------------------------|---------|
//! | `modid`      | the sid to forward to (with `cmdid`)                  | —       |
//! | `cmdid`      | the sid to forward to (with `modid`)                  | —       |
//! | `addr`       | instead of a sid: one fixed backend `IP:PORT`         | —       |
//! | `timeout_ms` | bound on one relayed call, the host's retry included  | 500     |
//! | `max_payload`| largest request / answer payload, bytes               | 1 MiB   |
//! | `pool`       | most connections to one backend (and calls to it at once) | 64  |
//!
//! A worker needs a destination: `modid` and `cmdid` (L5 routing through
//! [`spp_plugin_api::SidCall`], one retry on another instance), or `addr` (a fixed backend, no L5: for
//! benchmarks and tests). The proxy needs neither.

use spp_plugin_api::conf::Settings;
use spp_plugin_api::Target;
use std::net::SocketAddr;
use std::time::Duration;

/// Bound on one call when `timeout_ms` is not given (L5 advises 0.2–1 s).
pub const DEFAULT_TIMEOUT_MS: u64 = 500;
/// The longest `timeout_ms` accepted.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Largest request or answer payload unless `max_payload` says otherwise
/// (the proxy's default `max_request_size`).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Most keep-alive connections to one backend unless `pool` says
/// otherwise (as `spp-tokio-relay`'s default).
pub const DEFAULT_POOL: usize = 64;
/// The largest `pool` accepted.
pub const MAX_POOL: usize = 65_536;

/// The parsed `plugin_conf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conf {
    /// Where requests go: [`Target::Sid`] or [`Target::Addr`]; `None`
    /// only where no request is processed (the proxy).
    pub target: Option<Target>,
    /// Bound on one relayed call (connect, send, answer; retry included).
    pub timeout: Duration,
    /// Largest payload of a request (proxy framing) and of an answer.
    pub max_payload: usize,
    /// Most connections to one backend; a call past it waits for one.
    pub pool: usize,
}

/// Every key, with the form of its value.
const KEYS: &[&str] = &[
    "modid=N",
    "cmdid=N",
    "addr=IP:PORT",
    "timeout_ms=N",
    "max_payload=N",
    "pool=N",
];

/// Parses `conf`. Every error names the setting and why it is refused.
pub fn parse(conf: &str) -> Result<Conf, String> {
    let s = Settings::parse(conf, KEYS)?;
    let (modid, cmdid) = (s.number("modid")?, s.number("cmdid")?);
    let timeout_ms = s.number("timeout_ms")?;
    let max_payload = s.number("max_payload")?;
    let pool = s.number("pool")?;
    let addr: Option<SocketAddr> = s.parsed("addr", "IP:PORT")?;
    let id = |key: &str, value: u64| {
        u32::try_from(value).map_err(|_| format!("{key}={value} does not fit 32 bits"))
    };
    let sid = match (modid, cmdid) {
        (Some(m), Some(c)) => Some(Target::Sid {
            modid: id("modid", m)?,
            cmdid: id("cmdid", c)?,
        }),
        (None, None) => None,
        (Some(_), None) => return Err("modid is given without cmdid".into()),
        (None, Some(_)) => return Err("cmdid is given without modid".into()),
    };
    let target = match (sid, addr) {
        (Some(_), Some(_)) => return Err("addr and modid/cmdid exclude each other".into()),
        (sid, addr) => sid.or(addr.map(Target::Addr)),
    };
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(format!(
            "timeout_ms={timeout_ms} is out of range 1..={MAX_TIMEOUT_MS}"
        ));
    }
    let max_payload = match max_payload {
        None => DEFAULT_MAX_PAYLOAD,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| format!("max_payload={n} is larger than a frame can announce"))?,
    };
    let pool = pool.unwrap_or(DEFAULT_POOL as u64);
    if !(1..=MAX_POOL as u64).contains(&pool) {
        return Err(format!("pool={pool} is out of range 1..={MAX_POOL}"));
    }
    Ok(Conf {
        target,
        timeout: Duration::from_millis(timeout_ms),
        max_payload,
        pool: pool as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_with_defaults() {
        assert_eq!(
            parse("modid=64001 cmdid=1 timeout_ms=500"),
            Ok(Conf {
                target: Some(Target::Sid {
                    modid: 64001,
                    cmdid: 1
                }),
                timeout: Duration::from_millis(500),
                max_payload: DEFAULT_MAX_PAYLOAD,
                pool: DEFAULT_POOL,
            })
        );
        assert_eq!(
            parse(" modid=7,cmdid=8\tmax_payload=10 timeout_ms=20 pool=3"),
            Ok(Conf {
                target: Some(Target::Sid { modid: 7, cmdid: 8 }),
                timeout: Duration::from_millis(20),
                max_payload: 10,
                pool: 3,
            })
        );
        assert_eq!(
            parse("addr=127.0.0.1:7000").map(|c| c.target),
            Ok(Some(Target::Addr("127.0.0.1:7000".parse().unwrap())))
        );
        let proxy = parse("").unwrap();
        assert_eq!(proxy.target, None);
        assert_eq!(proxy.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
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
            ("modid=-1 cmdid=1", "modid=\"-1\""),
            ("modid=1", "modid is given without cmdid"),
            ("cmdid=1", "cmdid is given without modid"),
            ("modid=1 cmdid=1 modid=2", "modid is given twice"),
            ("modid=4294967296 cmdid=1", "modid=4294967296 does not fit"),
            ("timeout_ms=0", "timeout_ms=0 is out of range"),
            ("timeout_ms=60001", "out of range 1..=60000"),
            ("max_payload=4294967296", "larger than a frame can announce"),
            ("pool=0", "pool=0 is out of range"),
            ("addr=localhost:1", "addr=\"localhost:1\" is not IP:PORT"),
            ("addr=127.0.0.1:1 addr=127.0.0.1:2", "addr is given twice"),
            (
                "addr=127.0.0.1:1 modid=1 cmdid=1",
                "addr and modid/cmdid exclude each other",
            ),
        ];
        for (conf, want) in cases {
            let err = parse(conf).unwrap_err();
            assert!(err.contains(want), "{conf:?}: {err}");
        }
    }
}
