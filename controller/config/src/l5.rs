//! `[l5]`: this service's L5 identity (sid, weight, the group whose health
//! decides its registration, the address it advertises), the registry
//! backend, the static routes file and the balancer numbers.
//!
//! Absent table = L5 off: no route table, nothing registered, and the
//! plugins' `get_route` answers `SPP_L5_SYSTEM`. `modid` and `cmdid` come
//! both or neither (neither: the service only consumes routes).
//!
//! The static routes file (`routes_file`, relative to the config file) is
//! in L5's backup format, one instance per line: `modid cmdid ip port
//! [weight]` (weight 100..=10000, default 100), `#` starts a comment. It is
//! read and checked by [`super::load`] ([`read_routes`]); its errors name
//! the routes file and line.

use super::raw::{RawBalancer, RawL5};
use super::validate::Ctx;
use super::{ConfigError, GroupConfig, ListenAddr};
use crate::defaults;
use spp_ipc::l5::balancer::BalancerConfig;
use spp_ipc::l5::{Instance, Sid, MAX_WEIGHT, MIN_WEIGHT};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[l5]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct L5Config {
    /// This service's sid (`modid`, `cmdid`); `None`: it only consumes
    /// routes and registers nothing.
    pub sid: Option<Sid>,
    /// Static weight of this service's instances.
    pub weight: u32,
    /// Id of the group whose Ready workers decide the registration.
    pub group: u32,
    /// Where instances are registered and discovered.
    pub backend: L5Backend,
    /// The embedded registry's directory (absolute).
    pub registry_dir: PathBuf,
    /// The static routes file (absolute), if any.
    pub routes_file: Option<PathBuf>,
    /// Its instances (filled by [`read_routes`] at load).
    pub routes: Vec<Instance>,
    /// Registration lifetime.
    pub ttl: Duration,
    /// etcd key prefix.
    pub prefix: String,
    /// The IP registered for listeners bound to 0.0.0.0 or `::`.
    pub advertise: Option<IpAddr>,
    /// The balancer's numbers; `period` is `l5.period`, the rest
    /// `[l5.balancer]`.
    pub balancer: BalancerConfig,
}

/// `l5.backend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L5Backend {
    /// Files in `registry_dir`, shared by every spp on the machine.
    Embedded,
    /// An etcd cluster.
    Etcd {
        /// `host:port` of each member, in the order given.
        endpoints: Vec<String>,
    },
}

impl fmt::Display for L5Backend {
    /// As written in the config: `embedded`, `etcd://h:p,h:p`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L5Backend::Embedded => f.write_str(defaults::L5_BACKEND),
            L5Backend::Etcd { endpoints } => {
                write!(f, "{}{}", defaults::L5_ETCD_SCHEME, endpoints.join(","))
            }
        }
    }
}

impl L5Config {
    /// The instances this service registers for its bound listeners
    /// (`local`: the addresses actually bound): one per distinct address
    /// (TCP and UDP on one address are one instance), a wildcard IP
    /// replaced by `advertise`. Empty when the service has no sid.
    pub fn instances(&self, local: &[SocketAddr]) -> Vec<Instance> {
        let Some(sid) = self.sid else {
            return Vec::new();
        };
        let mut out: Vec<Instance> = Vec::new();
        for addr in local {
            let mut addr = *addr;
            if addr.ip().is_unspecified() {
                match self.advertise {
                    Some(ip) => addr.set_ip(ip),
                    // Refused by the config check; never registered.
                    None => continue,
                }
            }
            if !out.iter().any(|i| i.addr == addr) {
                out.push(Instance {
                    sid,
                    addr,
                    weight: self.weight,
                });
            }
        }
        out
    }

    /// The routes file and a digest of its routes (what a reload compares).
    fn routes_summary(&self) -> String {
        use std::hash::{Hash, Hasher};
        // Fixed keys: the same routes give the same digest in every run.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.routes.hash(&mut hasher);
        format!(
            "{:?} ({} route(s), digest {:016x})",
            self.routes_file,
            self.routes.len(),
            hasher.finish()
        )
    }

    /// Every setting as `(key, value)`, for `spp reload` to compare
    /// ([`super::diff`]); the routes file's instances under
    /// `l5.routes_file` too.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let b = &self.balancer;
        vec![
            ("l5.modid", format!("{:?}", self.sid.map(|s| s.modid))),
            ("l5.cmdid", format!("{:?}", self.sid.map(|s| s.cmdid))),
            ("l5.weight", self.weight.to_string()),
            ("l5.group", self.group.to_string()),
            ("l5.backend", self.backend.to_string()),
            ("l5.registry_dir", format!("{:?}", self.registry_dir)),
            ("l5.routes_file", self.routes_summary()),
            ("l5.ttl", format!("{:?}", self.ttl)),
            ("l5.prefix", format!("{:?}", self.prefix)),
            ("l5.advertise", format!("{:?}", self.advertise)),
            ("l5.period", format!("{:?}", b.period)),
            ("l5.balancer.min_requests", b.min_requests.to_string()),
            ("l5.balancer.good_ratio", b.good_ratio.to_string()),
            ("l5.balancer.grow_share", b.grow_share.to_string()),
            ("l5.balancer.guard_share", b.guard_share.to_string()),
            ("l5.balancer.probe_share", b.probe_share.to_string()),
            ("l5.balancer.revive_share", b.revive_share.to_string()),
            ("l5.balancer.skip_ratio", b.skip_ratio.to_string()),
            ("l5.balancer.trip_errors", b.trip_errors.to_string()),
        ]
    }
}

/// Checks `[l5]` against the groups and the listeners.
pub(super) fn validate(
    ctx: &Ctx<'_>,
    raw: RawL5,
    groups: &[GroupConfig],
    listen: &[ListenAddr],
) -> Result<L5Config, ConfigError> {
    let id = |key: &str, value: Option<i64>| {
        ctx.count(key, value, 0, 1, u64::from(u32::MAX))
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    let sid = match (raw.modid, raw.cmdid) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(ctx.err(
                "l5.cmdid",
                "missing: modid and cmdid come both (this service registers as that sid) or neither (it only consumes routes)",
            ))
        }
        (None, Some(_)) => {
            return Err(ctx.err(
                "l5.modid",
                "missing: modid and cmdid come both (this service registers as that sid) or neither (it only consumes routes)",
            ))
        }
        (modid, cmdid) => Some(Sid {
            modid: id("l5.modid", modid)?,
            cmdid: id("l5.cmdid", cmdid)?,
        }),
    };
    let weight = ctx.count(
        "l5.weight",
        raw.weight,
        u64::from(defaults::L5_WEIGHT),
        u64::from(MIN_WEIGHT),
        u64::from(MAX_WEIGHT),
    )?;
    let group = match raw.group {
        None => groups.first().map_or(0, |g| g.id),
        Some(v) => {
            let ids: Vec<String> = groups.iter().map(|g| g.id.to_string()).collect();
            match groups.iter().find(|g| i64::from(g.id) == v) {
                Some(g) => g.id,
                None => {
                    return Err(ctx.err(
                        "l5.group",
                        format!("no [[group]] has id {v} (the ids are {})", ids.join(", ")),
                    ))
                }
            }
        }
    };
    let backend = backend(ctx, raw.backend.as_deref())?;
    if backend == L5Backend::Embedded && weight > u64::from(defaults::L5_MAX_REGISTRY_WEIGHT) {
        return Err(ctx.err(
            "l5.weight",
            format!(
                "{weight} is more than the embedded registry accepts ({}; other services would ignore this registration)",
                defaults::L5_MAX_REGISTRY_WEIGHT
            ),
        ));
    }
    let registry_dir = ctx.path(
        "l5.registry_dir",
        raw.registry_dir
            .as_deref()
            .unwrap_or(defaults::L5_REGISTRY_DIR),
    )?;
    let routes_file = raw
        .routes_file
        .as_deref()
        .map(|f| ctx.path("l5.routes_file", f))
        .transpose()?;
    let ttl = ctx.duration("l5.ttl", raw.ttl.as_deref(), defaults::L5_TTL)?;
    if !(defaults::L5_MIN_TTL..=defaults::L5_MAX_TTL).contains(&ttl) {
        return Err(ctx.err(
            "l5.ttl",
            format!(
                "{ttl:?} is out of range: {:?} to {:?}",
                defaults::L5_MIN_TTL,
                defaults::L5_MAX_TTL
            ),
        ));
    }
    let prefix = raw
        .prefix
        .unwrap_or_else(|| defaults::L5_PREFIX.to_string());
    if prefix.is_empty()
        || !prefix.ends_with('/')
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ctx.err(
            "l5.prefix",
            format!(
                "{prefix:?} must be a key prefix without spaces ending in '/', like \"/spp/l5/\""
            ),
        ));
    }
    let period = ctx.duration(
        "l5.period",
        raw.period.as_deref(),
        BalancerConfig::default().period,
    )?;
    if !(defaults::L5_MIN_PERIOD..=defaults::L5_MAX_PERIOD).contains(&period) {
        return Err(ctx.err(
            "l5.period",
            format!(
                "{period:?} is out of range: {:?} to {:?}",
                defaults::L5_MIN_PERIOD,
                defaults::L5_MAX_PERIOD
            ),
        ));
    }
    let advertise = match raw.advertise.as_deref() {
        None => None,
        Some(text) => {
            let ip = text.trim().parse::<IpAddr>().map_err(|_| {
                ctx.err(
                    "l5.advertise",
                    format!("{text:?} is not an IP address like \"10.0.0.5\" or \"fd00::5\""),
                )
            })?;
            if ip.is_unspecified() {
                return Err(ctx.err(
                    "l5.advertise",
                    format!("{ip} cannot be reached: give the IP other machines reach this one on"),
                ));
            }
            Some(ip)
        }
    };
    if sid.is_some() && advertise.is_none() {
        if let Some(i) = listen.iter().position(|l| l.addr.ip().is_unspecified()) {
            return Err(ctx.err(
                "l5.advertise",
                format!(
                    "missing: proxy.listen[{i}] binds {}, which cannot be registered; \
                     set l5.advertise to the IP callers reach this machine on",
                    listen[i].addr
                ),
            ));
        }
    }
    let balancer = balancer(ctx, raw.balancer, period)?;
    Ok(L5Config {
        sid,
        weight: u32::try_from(weight).unwrap_or(MAX_WEIGHT),
        group,
        backend,
        registry_dir,
        routes_file,
        routes: Vec::new(),
        ttl,
        prefix,
        advertise,
        balancer,
    })
}

/// `embedded` or `etcd://host:port[,host:port]`.
fn backend(ctx: &Ctx<'_>, text: Option<&str>) -> Result<L5Backend, ConfigError> {
    let text = text.unwrap_or(defaults::L5_BACKEND).trim();
    if text == defaults::L5_BACKEND {
        return Ok(L5Backend::Embedded);
    }
    let Some(list) = text.strip_prefix(defaults::L5_ETCD_SCHEME) else {
        return Err(ctx.err(
            "l5.backend",
            format!("{text:?} is not \"embedded\" or \"etcd://host:port[,host:port]\""),
        ));
    };
    let mut endpoints = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        endpoints.push(endpoint(part).map_err(|why| {
            ctx.err(
                "l5.backend",
                format!("{text:?}: endpoint {part:?} {why} (etcd://host:port[,host:port])"),
            )
        })?);
    }
    Ok(L5Backend::Etcd { endpoints })
}

/// Checks one `host:port` (IPv6 as `[::1]:port`).
fn endpoint(part: &str) -> Result<String, &'static str> {
    let (host, port) = part.rsplit_once(':').ok_or("has no :port")?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("has no port 1..=65535"),
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok_host = if host.starts_with('[') {
        host.ends_with(']') && bare.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    if !ok_host {
        return Err("has no host name or IP (IPv6 is written [::1]:2379)");
    }
    Ok(part.to_string())
}

/// `[l5.balancer]` over the reference defaults, checked by
/// [`BalancerConfig::check`].
fn balancer(
    ctx: &Ctx<'_>,
    raw: RawBalancer,
    period: Duration,
) -> Result<BalancerConfig, ConfigError> {
    let d = BalancerConfig::default();
    let min_requests = ctx.count(
        "l5.balancer.min_requests",
        raw.min_requests,
        d.min_requests,
        1,
        u64::MAX,
    )?;
    let trip_errors = ctx.count(
        "l5.balancer.trip_errors",
        raw.trip_errors,
        u64::from(d.trip_errors),
        1,
        u64::from(u32::MAX),
    )?;
    let cfg = BalancerConfig {
        period,
        min_requests,
        good_ratio: raw.good_ratio.unwrap_or(d.good_ratio),
        grow_share: raw.grow_share.unwrap_or(d.grow_share),
        guard_share: raw.guard_share.unwrap_or(d.guard_share),
        probe_share: raw.probe_share.unwrap_or(d.probe_share),
        revive_share: raw.revive_share.unwrap_or(d.revive_share),
        skip_ratio: raw.skip_ratio.unwrap_or(d.skip_ratio),
        trip_errors: u32::try_from(trip_errors).unwrap_or(u32::MAX),
    };
    cfg.check().map_err(|(key, reason)| {
        let key = if key == "period" {
            "l5.period".to_string()
        } else {
            format!("l5.balancer.{key}")
        };
        ctx.err(key, reason)
    })?;
    Ok(cfg)
}

/// Why the embedded registry refuses a directory of `mode`, if it does:
/// writable by group or others without the sticky bit, anyone who can
/// write it could replace or remove every service's registration.
pub fn registry_dir_refusal(mode: u32) -> Option<String> {
    const STICKY: u32 = 0o1000;
    (mode & 0o022 != 0 && mode & STICKY == 0).then(|| {
        format!(
            "is writable by group or others (mode {:o}) without the sticky bit, so another user could replace or remove registrations (chmod +t or chmod go-w it)",
            mode & 0o7777
        )
    })
}

/// The start and `spp check` half of [`registry_dir_refusal`]: an error
/// naming `l5.registry_dir` and the directory when it exists and is
/// refused (a missing one is created by the first registration, mode
/// [`defaults::L5_REGISTRY_DIR_MODE`]).
pub fn check_registry_dir(l5: &L5Config) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if l5.backend != L5Backend::Embedded {
        return Ok(());
    }
    match std::fs::metadata(&l5.registry_dir) {
        Ok(meta) => match registry_dir_refusal(meta.mode()) {
            Some(why) => Err(format!("{} {why}", l5.registry_dir.display())),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", l5.registry_dir.display())),
    }
}

/// Reads and checks the static routes file of `l5` (a no-op without one);
/// `file` is the config file, for the errors.
pub fn read_routes(file: &Path, l5: &mut L5Config) -> Result<(), ConfigError> {
    let Some(path) = l5.routes_file.as_deref() else {
        return Ok(());
    };
    let err = |reason: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        key: "l5.routes_file".to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| err(format!("{}: cannot read: {e}", path.display())))?
        .len();
    if size > defaults::L5_MAX_ROUTES_FILE_BYTES {
        return Err(err(format!(
            "{}: {size} bytes is more than the {} a routes file may have",
            path.display(),
            defaults::L5_MAX_ROUTES_FILE_BYTES
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("{}: cannot read: {e}", path.display())))?;
    l5.routes = parse_routes(path, &text).map_err(err)?;
    Ok(())
}

/// Parses a routes file's `text` (`path` names it in errors:
/// `path:line: reason`).
pub fn parse_routes(path: &Path, text: &str) -> Result<Vec<Instance>, String> {
    let max = spp_ipc::l5::table::MAX_NODES;
    let mut out: Vec<Instance> = Vec::new();
    let mut seen: HashMap<(Sid, SocketAddr), usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let instance = route_line(line).map_err(|why| format!("{}: {why}", at()))?;
        let key = (instance.sid, instance.addr);
        if let Some(first) = seen.insert(key, n + 1) {
            return Err(format!(
                "{}: {} {} is already listed on line {first}",
                at(),
                instance.sid,
                instance.addr
            ));
        }
        if out.len() == max {
            return Err(format!("{}: more than {max} routes", at()));
        }
        out.push(instance);
    }
    Ok(out)
}

/// One `modid cmdid ip port [weight]` line (comment stripped).
fn route_line(line: &str) -> Result<Instance, String> {
    const SHAPE: &str = "expected `modid cmdid ip port [weight]`";
    let fields: Vec<&str> = line.split_whitespace().collect();
    if !(4..=5).contains(&fields.len()) {
        return Err(format!("{} field(s): {SHAPE}", fields.len()));
    }
    let number = |what: &str, text: &str, min: u32, max: u32| match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{what} {text:?} is not a number {min}..={max}")),
    };
    let sid = Sid {
        modid: number("modid", fields[0], 1, u32::MAX)?,
        cmdid: number("cmdid", fields[1], 1, u32::MAX)?,
    };
    let ip: IpAddr = fields[2]
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", fields[2]))?;
    if ip.is_unspecified() {
        return Err(format!("{ip} cannot be called: give the instance's IP"));
    }
    let port = number("port", fields[3], 1, u32::from(u16::MAX))?;
    let weight = match fields.get(4) {
        Some(w) => number("weight", w, MIN_WEIGHT, MAX_WEIGHT)?,
        None => spp_ipc::l5::DEFAULT_WEIGHT,
    };
    Ok(Instance {
        sid,
        addr: SocketAddr::new(ip, u16::try_from(port).unwrap_or(u16::MAX)),
        weight,
    })
}

#[cfg(test)]
#[path = "l5_tests.rs"]
mod tests;
