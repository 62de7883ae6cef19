//! What the etcd backend stores, and the view it rebuilds from it.
//!
//! One key per instance, `{prefix}{modid}/{cmdid}/{ip}:{port}` (IPv6 as
//! `[addr]:port`, as [`std::net::SocketAddr`] prints it), whose value is a
//! JSON object:
//!
//! ```json
//! {"modid":64001,"cmdid":1,"ip":"10.0.0.7","port":7000,"weight":100,
//!  "service":"echo","pid":4242}
//! ```
//!
//! `modid`, `cmdid`, `ip` and `port` are required and must agree with the
//! key; the port is not 0, the address not unspecified (`0.0.0.0`, `::`);
//! a key never carries an IPv6 scope (`%eth0`), and scoped addresses are not
//! registered ([`registrable`]); `weight` defaults to [`DEFAULT_WEIGHT`]
//! and must lie in [`MIN_WEIGHT`]..=[`MAX_WEIGHT`]; `service` and `pid` are informational
//! (who registered it) and may be absent; unknown fields are ignored. A key
//! or value that breaks these rules is skipped (and logged, throttled).
//!
//! [`View`] holds what discovery saw: at most [`MAX_INSTANCES`] instances,
//! ordered by key.

use super::{EtcdError, LOG_EVERY, MAX_INSTANCES, MAX_VALUE_BYTES};
use serde::Deserialize;
use spp_ipc::l5::{Instance, Sid, DEFAULT_WEIGHT, MAX_WEIGHT, MIN_WEIGHT};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The key of `instance` under `prefix` (an IPv6 scope, which the value
/// cannot carry, is left out: [`registrable`] refuses scoped addresses).
pub(super) fn key(prefix: &str, instance: &Instance) -> String {
    let addr = SocketAddr::new(instance.addr.ip(), instance.addr.port());
    format!(
        "{prefix}{}/{}/{addr}",
        instance.sid.modid, instance.sid.cmdid
    )
}

/// Why `instance` cannot be registered (or called), if it cannot: port 0,
/// an unspecified address (`0.0.0.0`, `::`), a scoped IPv6 address (the
/// scope means nothing to another host), or a weight out of range.
pub(super) fn registrable(instance: &Instance) -> Result<(), String> {
    if instance.addr.port() == 0 {
        return Err("port 0".into());
    }
    if instance.addr.ip().is_unspecified() {
        return Err(format!("unspecified address {}", instance.addr.ip()));
    }
    if let SocketAddr::V6(v6) = instance.addr {
        if v6.scope_id() != 0 {
            return Err(format!("scoped address {}", instance.addr));
        }
    }
    if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&instance.weight) {
        return Err(format!(
            "weight {} is not in {MIN_WEIGHT}..={MAX_WEIGHT}",
            instance.weight
        ));
    }
    Ok(())
}

/// The JSON value of `instance`, registered by `service` (process `pid`).
pub(super) fn value(instance: &Instance, service: &str, pid: u32) -> String {
    serde_json::json!({
        "modid": instance.sid.modid,
        "cmdid": instance.sid.cmdid,
        "ip": instance.addr.ip().to_string(),
        "port": instance.addr.port(),
        "weight": instance.weight,
        "service": service,
        "pid": pid,
    })
    .to_string()
}

/// A value as read back (see the module docs for the rules).
#[derive(Deserialize)]
struct Record {
    modid: u32,
    cmdid: u32,
    ip: IpAddr,
    port: u16,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// The instance a key and its value describe.
pub(super) fn parse(prefix: &str, key: &[u8], value: &[u8]) -> Result<Instance, EtcdError> {
    let malformed = |reason: String| EtcdError::Malformed {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    if value.len() > MAX_VALUE_BYTES {
        return Err(malformed(format!(
            "value of {} bytes (at most {MAX_VALUE_BYTES})",
            value.len()
        )));
    }
    let record: Record =
        serde_json::from_slice(value).map_err(|e| malformed(format!("value: {e}")))?;
    let instance = Instance {
        sid: Sid {
            modid: record.modid,
            cmdid: record.cmdid,
        },
        addr: SocketAddr::new(record.ip, record.port),
        weight: record.weight,
    };
    registrable(&instance).map_err(|why| malformed(format!("{why}: cannot be called")))?;
    let expected = self::key(prefix, &instance);
    if key != expected.as_bytes() {
        return Err(malformed(format!(
            "the value describes {expected}, not this key"
        )));
    }
    Ok(instance)
}

/// Lets a repeated log line through at most once per period, counting the
/// ones it held back.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be
    /// logged now; `None` (and one more held back) otherwise.
    pub(super) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.held = self.held.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// Every instance discovery accepted, by key.
#[derive(Debug)]
pub(super) struct View {
    prefix: String,
    by_key: BTreeMap<Vec<u8>, Instance>,
    malformed_log: Throttle,
    full_log: Throttle,
}

impl View {
    pub(super) fn new(prefix: &str) -> Self {
        View {
            prefix: prefix.to_owned(),
            by_key: BTreeMap::new(),
            malformed_log: Throttle::new(LOG_EVERY),
            full_log: Throttle::new(LOG_EVERY),
        }
    }

    /// Replaces the view with a listing (`truncated`: etcd held more keys
    /// than were asked for).
    pub(super) fn replace<'a>(
        &mut self,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        truncated: bool,
    ) {
        self.by_key.clear();
        for (key, value) in kvs {
            self.put(key, value);
        }
        if truncated {
            self.log_full("the listing was cut");
        }
    }

    /// Adds or replaces one key; `true` when the view changed. A malformed
    /// value removes what the key held before.
    pub(super) fn put(&mut self, key: &[u8], value: &[u8]) -> bool {
        match parse(&self.prefix, key, value) {
            Ok(instance) => {
                if let Some(old) = self.by_key.get_mut(key) {
                    let changed = *old != instance;
                    *old = instance;
                    return changed;
                }
                if self.by_key.len() >= MAX_INSTANCES {
                    self.log_full("a new instance was ignored");
                    return false;
                }
                self.by_key.insert(key.to_vec(), instance);
                true
            }
            Err(e) => {
                if let Some(held) = self.malformed_log.allow() {
                    tracing::warn!(
                        error = %e,
                        held_back = held,
                        "l5 etcd: skipping a malformed registration"
                    );
                }
                self.by_key.remove(key).is_some()
            }
        }
    }

    /// Removes one key; `true` when the view changed.
    pub(super) fn delete(&mut self, key: &[u8]) -> bool {
        self.by_key.remove(key).is_some()
    }

    /// The instances, ordered by key.
    pub(super) fn instances(&self) -> Vec<Instance> {
        self.by_key.values().copied().collect()
    }

    fn log_full(&mut self, what: &str) {
        if let Some(held) = self.full_log.allow() {
            tracing::warn!(
                prefix = %self.prefix,
                limit = MAX_INSTANCES,
                held_back = held,
                "l5 etcd: more instances than the limit: {what}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(ip: &str, port: u16, weight: u32) -> Instance {
        Instance {
            sid: Sid {
                modid: 64001,
                cmdid: 1,
            },
            addr: SocketAddr::new(ip.parse().expect("test ip"), port),
            weight,
        }
    }

    #[test]
    fn key_and_value_round_trip() {
        for inst in [instance("10.0.0.7", 7000, 100), instance("::1", 80, 10_000)] {
            let k = key("/spp/l5/", &inst);
            let v = value(&inst, "echo", 42);
            let back = parse("/spp/l5/", k.as_bytes(), v.as_bytes()).expect("parses");
            assert_eq!(back, inst);
            let json: serde_json::Value = serde_json::from_str(&v).expect("json");
            assert_eq!(json["service"], "echo");
            assert_eq!(json["pid"], 42);
            assert_eq!(json["ip"], inst.addr.ip().to_string());
        }
        assert_eq!(
            key("/spp/l5/", &instance("::1", 80, 100)),
            "/spp/l5/64001/1/[::1]:80"
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        let k = b"/p/64001/1/10.0.0.7:7000";
        let bad: [&[u8]; 5] = [
            b"not json",
            br#"{"modid":64001,"cmdid":1,"ip":"10.0.0.7"}"#,
            br#"{"modid":64001,"cmdid":1,"ip":"10.0.0.7","port":7000,"weight":5}"#,
            br#"{"modid":64001,"cmdid":2,"ip":"10.0.0.7","port":7000}"#,
            br#"{"modid":64001,"cmdid":1,"ip":"nowhere","port":7000}"#,
        ];
        for v in bad {
            assert!(
                matches!(parse("/p/", k, v), Err(EtcdError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(v)
            );
        }
        let uncallable: [(&[u8], &[u8]); 3] = [
            (
                b"/p/64001/1/10.0.0.7:0",
                br#"{"modid":64001,"cmdid":1,"ip":"10.0.0.7","port":0}"#,
            ),
            (
                b"/p/64001/1/0.0.0.0:7000",
                br#"{"modid":64001,"cmdid":1,"ip":"0.0.0.0","port":7000}"#,
            ),
            (
                b"/p/64001/1/[::]:7000",
                br#"{"modid":64001,"cmdid":1,"ip":"::","port":7000}"#,
            ),
        ];
        for (k, v) in uncallable {
            let e = parse("/p/", k, v).expect_err(&String::from_utf8_lossy(k));
            assert!(e.to_string().contains("cannot be called"), "{e}");
        }
        let long = vec![b' '; MAX_VALUE_BYTES + 1];
        assert!(parse("/p/", k, &long).is_err());
        let ok = br#"{"modid":64001,"cmdid":1,"ip":"10.0.0.7","port":7000,"extra":true}"#;
        assert_eq!(
            parse("/p/", k, ok).expect("defaults apply"),
            instance("10.0.0.7", 7000, DEFAULT_WEIGHT)
        );
    }

    #[test]
    fn scoped_ipv6_is_kept_out_of_keys_and_refused() {
        let mut scoped = instance("fe80::1", 80, 100);
        scoped.addr = "[fe80::1%2]:80".parse().expect("scoped");
        assert_eq!(key("/p/", &scoped), "/p/64001/1/[fe80::1]:80");
        assert!(registrable(&scoped).expect_err("scoped").contains("scoped"));
        // What a scoped registration would have written reads back as the
        // unscoped address (key and value agree).
        let back = parse(
            "/p/",
            key("/p/", &scoped).as_bytes(),
            value(&scoped, "s", 1).as_bytes(),
        )
        .expect("parses");
        assert_eq!(back, instance("fe80::1", 80, 100));
        assert!(registrable(&instance("10.0.0.7", 0, 100)).is_err());
        assert!(registrable(&instance("0.0.0.0", 80, 100)).is_err());
        assert!(registrable(&instance("10.0.0.7", 80, 1)).is_err());
        assert!(registrable(&instance("10.0.0.7", 80, 100)).is_ok());
    }

    #[test]
    fn view_is_bounded_and_a_malformed_update_removes_the_key() {
        let mut view = View::new("/p/");
        let mut accepted = 0;
        for n in 0..(MAX_INSTANCES + 3) {
            let port = u16::try_from(n % 60_000 + 1).expect("port");
            let ip = format!("10.{}.0.1", n / 60_000);
            let inst = instance(&ip, port, 100);
            let (k, v) = (key("/p/", &inst), value(&inst, "s", 1));
            if view.put(k.as_bytes(), v.as_bytes()) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, MAX_INSTANCES);
        assert_eq!(view.instances().len(), MAX_INSTANCES);

        let first = view.instances()[0];
        let k = key("/p/", &first);
        assert!(view.put(k.as_bytes(), b"garbage"));
        assert_eq!(view.instances().len(), MAX_INSTANCES - 1);
        assert!(!view.delete(k.as_bytes()));
    }

    #[test]
    fn throttle_holds_back_repeats() {
        let mut t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        t.last = None;
        assert_eq!(t.allow(), Some(2));
    }
}
