//! The fan-out's `plugin_conf`: `key=value` settings separated by spaces
//! or commas.
//!
//! | key          | meaning                                                | default |
//! |--------------|--------------------------------------------------------|---------|
//! | `a`, `b`     | the two legs: `MODID:CMDID` (an L5 sid) or `IP:PORT`   | —       |
//! | `timeout_ms` | bound on each leg (they run in parallel), retry included | 500   |
//! | `wait_for`   | answer once this many legs succeeded (0: wait for both) | 0      |
//! | `max_payload`| largest request / answer payload, bytes                | 16 KiB  |
//!
//! A worker needs both legs; the proxy needs neither.

use spp_plugin_api::Target;
use std::net::SocketAddr;
use std::time::Duration;

/// The legs' names, in the order of the merged answer.
pub const LEGS: [&str; 2] = ["a", "b"];
/// Bound on each leg when `timeout_ms` is not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 500;
/// The longest `timeout_ms` accepted.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Largest request or answer payload unless `max_payload` says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 10;
/// Largest `max_payload`: each in-flight request holds two answer
/// buffers of this size.
pub const MAX_MAX_PAYLOAD: usize = 16 << 20;

/// The parsed `plugin_conf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conf {
    /// The legs' destinations, [`LEGS`] order; `None` only where no
    /// request is processed (the proxy).
    pub legs: Option<[Target; 2]>,
    /// Bound on each leg.
    pub timeout: Duration,
    /// Answer once this many legs succeeded (0: when every leg finished).
    pub wait_for: usize,
    /// Largest payload of a request (proxy framing) and of a leg's answer.
    pub max_payload: usize,
}

/// Every key, for error messages.
const KEYS: &str = "a=MODID:CMDID|IP:PORT b=... timeout_ms=N wait_for=N max_payload=N";

/// A leg's destination: `IP:PORT`, else `MODID:CMDID`.
fn target(key: &str, value: &str) -> Result<Target, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(Target::Addr(addr));
    }
    let sid = value
        .split_once(':')
        .and_then(|(m, c)| Some((m.parse().ok()?, c.parse().ok()?)));
    match sid {
        Some((modid, cmdid)) => Ok(Target::Sid { modid, cmdid }),
        None => Err(format!(
            "{key}={value:?} is neither IP:PORT nor MODID:CMDID"
        )),
    }
}

/// A non-negative integer setting.
fn number(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("{key}={value:?} is not a non-negative integer"))
}

/// Parses `conf`. Every error names the setting and why it is refused.
pub fn parse(conf: &str) -> Result<Conf, String> {
    let mut legs: [Option<Target>; 2] = [None, None];
    let (mut timeout_ms, mut wait_for, mut max_payload) = (None, None, None);
    for item in conf
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("setting {item:?} is not key=value (known: {KEYS})"));
        };
        let fresh = match key {
            "a" | "b" => {
                let leg = &mut legs[usize::from(key == "b")];
                leg.replace(target(key, value)?).is_none()
            }
            "timeout_ms" => timeout_ms.replace(number(key, value)?).is_none(),
            "wait_for" => wait_for.replace(number(key, value)?).is_none(),
            "max_payload" => max_payload.replace(number(key, value)?).is_none(),
            _ => return Err(format!("unknown setting {key:?} (known: {KEYS})")),
        };
        if !fresh {
            return Err(format!("{key} is given twice"));
        }
    }
    let legs = match legs {
        [Some(a), Some(b)] => Some([a, b]),
        [None, None] => None,
        _ => return Err("a and b go together: give both legs".into()),
    };
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(format!(
            "timeout_ms={timeout_ms} is out of range 1..={MAX_TIMEOUT_MS}"
        ));
    }
    let wait_for = match wait_for.unwrap_or(0) {
        n @ 0..=2 => n as usize,
        n => return Err(format!("wait_for={n} is out of range 0..=2")),
    };
    let max_payload = match max_payload {
        None => DEFAULT_MAX_PAYLOAD,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_MAX_PAYLOAD)
            .ok_or_else(|| format!("max_payload={n} is larger than {MAX_MAX_PAYLOAD}"))?,
    };
    Ok(Conf {
        legs,
        timeout: Duration::from_millis(timeout_ms),
        wait_for,
        max_payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_with_defaults() {
        let conf = parse("a=64001:1 b=127.0.0.1:7001,wait_for=1").unwrap();
        assert_eq!(
            conf.legs,
            Some([
                Target::Sid {
                    modid: 64001,
                    cmdid: 1
                },
                Target::Addr("127.0.0.1:7001".parse().unwrap()),
            ])
        );
        assert_eq!(conf.wait_for, 1);
        assert_eq!(conf.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(conf.max_payload, DEFAULT_MAX_PAYLOAD);
        let proxy = parse("max_payload=100").unwrap();
        assert_eq!((proxy.legs, proxy.max_payload), (None, 100));
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("c=1:1", "unknown setting \"c\""),
            ("a", "not key=value"),
            ("a=1:1", "a and b go together"),
            ("a=x b=1:1", "a=\"x\" is neither IP:PORT nor MODID:CMDID"),
            ("a=1:1 b=2:2 a=3:3", "a is given twice"),
            ("wait_for=3", "wait_for=3 is out of range"),
            ("timeout_ms=0", "timeout_ms=0 is out of range"),
            ("max_payload=x", "max_payload=\"x\" is not"),
            ("max_payload=999999999", "is larger than"),
        ];
        for (conf, want) in cases {
            let err = parse(conf).unwrap_err();
            assert!(err.contains(want), "{conf:?}: {err}");
        }
    }
}
