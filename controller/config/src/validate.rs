//! The pure config rules: units, ranges, addresses, groups, ring sizes,
//! scaling, defaults and path resolution. Nothing here touches the machine
//! beyond the path arithmetic, the CPU count (for the default machine
//! cap, [`defaults::machine_cap`]) and the user database
//! (`service.user` / `service.group` must exist); see
//! [`super::environment`] for the rest.

use super::raw::{RawConfig, RawGroup, RawLog, RawProcesses, RawScaling};
use super::{
    format_size, AsyncTasks, Config, ConfigError, GroupConfig, ListenAddr, LogConfig, MicroThreads,
    ProxyConfig, RunAs, ScalingConfig, ServiceConfig,
};
use crate::defaults;
use spp_ipc::launch::Transport;
use spp_ipc::layout::PairLayout;
use spp_ipc::record::max_request_len;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where values come from: the file, for messages and relative paths.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) dir: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A path relative to the config file's directory.
    pub(super) fn path(&self, key: &str, value: &str) -> Result<PathBuf, ConfigError> {
        if value.is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        Ok(self.dir.join(value))
    }

    /// A byte size written with a unit ("4MiB", "64KiB").
    fn size(&self, key: &str, value: Option<&str>, default: u64) -> Result<u64, ConfigError> {
        let Some(text) = value else {
            return Ok(default);
        };
        if !text.chars().any(|c| c.is_ascii_alphabetic()) {
            return Err(self.err(
                key,
                format!("{text:?} needs a unit, like \"64KiB\" or \"4MiB\""),
            ));
        }
        text.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                self.err(
                    key,
                    format!("{text:?} is not a size like \"64KiB\" or \"4MiB\": {e}"),
                )
            })
    }

    /// A duration written with a unit ("800ms", "60s", "50us").
    pub(super) fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = value else {
            return Ok(default);
        };
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(
                key,
                format!("{text:?} is not a duration like \"800ms\" or \"60s\": {e}"),
            )
        })
    }

    /// An integer in `min..=max`.
    pub(super) fn count(
        &self,
        key: &str,
        value: Option<i64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(v) = value else { return Ok(default) };
        match u64::try_from(v) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.err(key, format!("{v} is out of range: must be {min}..={max}"))),
        }
    }

    /// A count of flows the proxy tracks: `1..=`[`defaults::MAX_FLOW_SLOTS`].
    fn flow_slots(
        &self,
        key: &str,
        value: Option<i64>,
        default: usize,
    ) -> Result<usize, ConfigError> {
        let max = defaults::MAX_FLOW_SLOTS;
        let v = self.count(key, value, default as u64, 1, u64::MAX)?;
        match usize::try_from(v) {
            Ok(v) if v <= max => Ok(v),
            _ => Err(self.err(
                key,
                format!("{v} is more than the proxy can track: at most {max}"),
            )),
        }
    }

    /// A string handed to a plugin's `spp_init` as a C string.
    fn plugin_conf(&self, key: &str, value: Option<String>) -> Result<String, ConfigError> {
        let conf = value.unwrap_or_default();
        if conf.contains('\0') {
            return Err(self.err(key, "must not contain a NUL character"));
        }
        Ok(conf)
    }

    /// A timeout that travels in milliseconds: zero (off) or at least
    /// [`defaults::MIN_TIMEOUT`].
    fn timeout(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration(key, value, default)?;
        if !d.is_zero() && d < defaults::MIN_TIMEOUT {
            return Err(self.err(
                key,
                format!(
                    "{d:?} is too short: \"0s\" (off) or at least {:?}",
                    defaults::MIN_TIMEOUT
                ),
            ));
        }
        Ok(d)
    }

    /// A fraction of busy time in `(0, 1]`.
    fn share(&self, key: &str, value: Option<f64>, default: f64) -> Result<f64, ConfigError> {
        let v = value.unwrap_or(default);
        if !(v > 0.0 && v <= 1.0) {
            return Err(self.err(
                key,
                format!("{v} is out of range: must be more than 0 and at most 1"),
            ));
        }
        Ok(v)
    }

    fn positive(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            return Err(self.err(key, "must be longer than zero"));
        }
        Ok(d)
    }

    fn spin(&self, key: &str, value: Option<&str>) -> Result<Duration, ConfigError> {
        let spin = self.duration(key, value, defaults::SPIN)?;
        if spin > defaults::MAX_SPIN {
            return Err(self.err(
                key,
                format!("{spin:?} is too long: at most {:?}", defaults::MAX_SPIN),
            ));
        }
        Ok(spin)
    }

    fn ring_size(&self, key: &str, value: Option<&str>) -> Result<usize, ConfigError> {
        let size = self.size(key, value, defaults::RING_SIZE)?;
        if !size.is_power_of_two()
            || !(defaults::MIN_RING_SIZE..=defaults::MAX_RING_SIZE).contains(&size)
        {
            return Err(self.err(
                key,
                format!(
                    "{} must be a power of two from {} to {}",
                    format_size(size),
                    format_size(defaults::MIN_RING_SIZE),
                    format_size(defaults::MAX_RING_SIZE)
                ),
            ));
        }
        usize::try_from(size)
            .map_err(|_| self.err(key, "does not fit this machine's address space"))
    }
}

/// Parses `tcp://IP:PORT` or `udp://IP:PORT` (IPv6 as `[::1]:PORT`).
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    let (scheme, rest) = text.split_once("://").ok_or_else(|| {
        format!("{text:?} is not an address like \"tcp://127.0.0.1:7963\" or \"udp://[::1]:7963\"")
    })?;
    let transport = match scheme {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        other => {
            return Err(format!(
                "{text:?}: unknown transport {other:?} (use tcp:// or udp://)"
            ))
        }
    };
    let addr: SocketAddr = rest
        .parse()
        .map_err(|_| format!("{text:?}: {rest:?} is not IP:PORT (IPv6 is written [::1]:PORT)"))?;
    Ok(ListenAddr { transport, addr })
}

/// Checks `raw` (read from `file`, an absolute path) and fills in
/// defaults, for this machine's CPU count.
pub fn validate(file: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    validate_on(file, raw, defaults::cpu_count())
}

/// [`validate`] for a machine with `cpus` cores (the default machine cap
/// depends on it).
pub fn validate_on(file: &Path, raw: RawConfig, cpus: usize) -> Result<Config, ConfigError> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    let ctx = Ctx { file, dir };
    let service = service(&ctx, raw.service)?;
    let rings = PairLayout {
        request_capacity: ctx.ring_size("rings.request_size", raw.rings.request_size.as_deref())?,
        response_capacity: ctx
            .ring_size("rings.response_size", raw.rings.response_size.as_deref())?,
    };
    // The IPC layer's own rule; the sizes above already obey it.
    rings.check().map_err(|e| ctx.err("rings", e.to_string()))?;
    let proxy = proxy(&ctx, raw.proxy, rings, cpus)?;
    if raw.group.is_empty() {
        return Err(ctx.err("group", "at least one [[group]] is needed"));
    }
    let mut groups: Vec<GroupConfig> = Vec::with_capacity(raw.group.len());
    for (pos, g) in raw.group.into_iter().enumerate() {
        let group = group(&ctx, pos, g)?;
        if let Some(first) = groups.iter().position(|o| o.id == group.id) {
            return Err(ctx.err(
                format!("group[{pos}].id"),
                format!("id {} is already used by group[{first}]", group.id),
            ));
        }
        groups.push(group);
    }
    let scaling = scaling(&ctx, raw.scaling, cpus)?;
    let l5 = raw
        .l5
        .map(|l5| super::l5::validate(&ctx, l5, &groups, &proxy.listen))
        .transpose()?;
    let log = log(&ctx, raw.log)?;
    let cfg = Config {
        log,
        file: file.to_path_buf(),
        service,
        proxy,
        rings,
        scaling,
        groups,
        l5,
    };
    cross_checks(&ctx, &cfg)?;
    Ok(cfg)
}

/// Rules between sections: the machine cap covers the workers started, and
/// the metrics endpoint does not take a proxy listener's address.
fn cross_checks(ctx: &Ctx<'_>, cfg: &Config) -> Result<(), ConfigError> {
    let cap = cfg.scaling.max_total_workers;
    let start = cfg.start_workers();
    if start > u64::from(cap) {
        return Err(ctx.err(
            "scaling.max_total_workers",
            format!(
                "the groups start {start} workers, more than the machine cap of {cap} \
                 (0 means min({}, {} x CPU cores)): lower group workers or raise max_total_workers",
                defaults::MACHINE_CAP_LIMIT,
                defaults::MACHINE_CAP_PER_CPU
            ),
        ));
    }
    if let Some(metrics) = cfg.service.metrics {
        let clash = cfg.proxy.listen.iter().position(|l| {
            l.transport == Transport::Tcp && l.addr == metrics && metrics.port() != 0
        });
        if let Some(i) = clash {
            return Err(ctx.err(
                "service.metrics",
                format!("{metrics} is already used by proxy.listen[{i}]"),
            ));
        }
    }
    Ok(())
}

/// `[log]`: sizes with units, an age like "7d", a daily switch.
fn log(ctx: &Ctx<'_>, raw: RawLog) -> Result<LogConfig, ConfigError> {
    let max_size = ctx.size(
        "log.max_size",
        raw.max_size.as_deref(),
        defaults::LOG_MAX_SIZE,
    )?;
    if max_size < defaults::LOG_MIN_MAX_SIZE {
        return Err(ctx.err(
            "log.max_size",
            format!(
                "{} is too small: must be at least {}",
                format_size(max_size),
                format_size(defaults::LOG_MIN_MAX_SIZE)
            ),
        ));
    }
    let keep_age = ctx.duration(
        "log.keep_age",
        raw.keep_age.as_deref(),
        defaults::LOG_KEEP_AGE,
    )?;
    let keep_total = ctx.size(
        "log.keep_total",
        raw.keep_total.as_deref(),
        defaults::LOG_KEEP_TOTAL,
    )?;
    Ok(LogConfig {
        max_size,
        rotate_daily: raw.rotate_daily.unwrap_or(defaults::LOG_ROTATE_DAILY),
        keep_age: ctx.positive("log.keep_age", keep_age)?,
        keep_total,
    })
}

fn scaling(ctx: &Ctx<'_>, raw: RawScaling, cpus: usize) -> Result<ScalingConfig, ConfigError> {
    let interval = ctx.duration(
        "scaling.interval",
        raw.interval.as_deref(),
        defaults::SCALING_INTERVAL,
    )?;
    if interval < defaults::MIN_SCALING_INTERVAL {
        return Err(ctx.err(
            "scaling.interval",
            format!(
                "{interval:?} is too short: at least {:?} (the controller's housekeeping tick)",
                defaults::MIN_SCALING_INTERVAL
            ),
        ));
    }
    let up_busy = ctx.share("scaling.up_busy", raw.up_busy, defaults::UP_BUSY)?;
    let down_busy = ctx.share("scaling.down_busy", raw.down_busy, defaults::DOWN_BUSY)?;
    if down_busy >= up_busy {
        // Name the key the file set (the other one is a default).
        let key = if raw.down_busy.is_some() {
            "scaling.down_busy"
        } else {
            "scaling.up_busy"
        };
        return Err(ctx.err(
            key,
            format!("down_busy = {down_busy} must be below up_busy = {up_busy}"),
        ));
    }
    let per_group = u64::from(defaults::MAX_WORKERS_PER_GROUP);
    let step = ctx.count(
        "scaling.step",
        raw.step,
        u64::from(defaults::SCALING_STEP),
        1,
        per_group,
    )?;
    let cooldown = ctx.duration(
        "scaling.cooldown",
        raw.cooldown.as_deref(),
        defaults::SCALING_COOLDOWN,
    )?;
    let max_total = ctx.count(
        "scaling.max_total_workers",
        raw.max_total_workers,
        u64::from(defaults::MAX_TOTAL_WORKERS),
        0,
        u64::from(defaults::MAX_TOTAL_WORKERS_LIMIT),
    )?;
    // Range-checked against u32 limits above.
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(ScalingConfig {
        interval,
        up_busy,
        down_busy,
        step: to_u32(step),
        cooldown,
        max_total_workers: match to_u32(max_total) {
            0 => defaults::machine_cap(cpus),
            n => n,
        },
    })
}

/// `service.user` / `service.group`: both must exist on this machine; the
/// group defaults to the user's primary group.
fn run_as(
    ctx: &Ctx<'_>,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<RunAs>, ConfigError> {
    use nix::unistd::{Group, User};
    let Some(name) = user else {
        return match group {
            None => Ok(None),
            Some(_) => Err(ctx.err(
                "service.group",
                "needs service.user (the group alone drops nothing)",
            )),
        };
    };
    let found = User::from_name(name)
        .map_err(|e| ctx.err("service.user", format!("cannot look up {name:?}: {e}")))?
        .ok_or_else(|| ctx.err("service.user", format!("no user {name:?} on this machine")))?;
    let group = match group {
        Some(g) => Group::from_name(g)
            .map_err(|e| ctx.err("service.group", format!("cannot look up {g:?}: {e}")))?
            .ok_or_else(|| ctx.err("service.group", format!("no group {g:?} on this machine")))?,
        None => Group::from_gid(found.gid)
            .ok()
            .flatten()
            .unwrap_or_else(|| Group {
                name: found.gid.to_string(),
                passwd: Default::default(),
                gid: found.gid,
                mem: Vec::new(),
            }),
    };
    Ok(Some(RunAs {
        user: found.name,
        uid: found.uid.as_raw(),
        group: group.name,
        gid: group.gid.as_raw(),
    }))
}

fn service(ctx: &Ctx<'_>, raw: super::raw::RawService) -> Result<ServiceConfig, ConfigError> {
    if raw.name.is_empty()
        || raw
            .name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ctx.err(
            "service.name",
            format!("{:?} must be a non-empty word", raw.name),
        ));
    }
    let log_level = raw
        .log_level
        .unwrap_or_else(|| defaults::LOG_LEVEL.to_string());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        return Err(ctx.err(
            "service.log_level",
            format!("{log_level:?} is not a log filter like \"info\": {e}"),
        ));
    }
    let stop_grace = ctx.duration(
        "service.stop_grace",
        raw.stop_grace.as_deref(),
        defaults::STOP_GRACE,
    )?;
    let metrics = match raw.metrics.as_deref() {
        None => None,
        Some(text) => Some(text.trim().parse::<SocketAddr>().map_err(|_| {
            ctx.err(
                "service.metrics",
                format!(
                    "{text:?} is not IP:PORT like \"127.0.0.1:9100\" (IPv6 is written [::1]:PORT)"
                ),
            )
        })?),
    };
    Ok(ServiceConfig {
        name: raw.name,
        run_dir: ctx.path(
            "service.run_dir",
            raw.run_dir.as_deref().unwrap_or(defaults::RUN_DIR),
        )?,
        log_dir: ctx.path(
            "service.log_dir",
            raw.log_dir.as_deref().unwrap_or(defaults::LOG_DIR),
        )?,
        log_level,
        stop_grace: ctx.positive("service.stop_grace", stop_grace)?,
        metrics,
        run_as: run_as(ctx, raw.user.as_deref(), raw.group.as_deref())?,
    })
}

/// `proxy.processes`: a count in 1..=[`defaults::MAX_PROXY_PROCESSES`] or
/// `"auto"` ([`defaults::auto_proxy_processes`] of `cpus`).
fn processes(ctx: &Ctx<'_>, raw: Option<RawProcesses>, cpus: usize) -> Result<u16, ConfigError> {
    const KEY: &str = "proxy.processes";
    let max = defaults::MAX_PROXY_PROCESSES;
    match raw {
        None => Ok(defaults::PROXY_PROCESSES),
        Some(RawProcesses::Word(word)) if word == "auto" => {
            Ok(defaults::auto_proxy_processes(cpus))
        }
        Some(RawProcesses::Word(word)) => Err(ctx.err(
            KEY,
            format!("{word:?} is not a count 1..={max} or \"auto\""),
        )),
        Some(RawProcesses::Count(n)) => {
            let n = ctx.count(KEY, Some(n), 1, 1, u64::from(max))?;
            Ok(u16::try_from(n).unwrap_or(max))
        }
    }
}

fn proxy(
    ctx: &Ctx<'_>,
    raw: super::raw::RawProxy,
    rings: PairLayout,
    cpus: usize,
) -> Result<ProxyConfig, ConfigError> {
    if raw.listen.is_empty() {
        return Err(ctx.err(
            "proxy.listen",
            "at least one address is needed, like [\"tcp://127.0.0.1:7963\"]",
        ));
    }
    let mut listen: Vec<ListenAddr> = Vec::with_capacity(raw.listen.len());
    for (i, text) in raw.listen.iter().enumerate() {
        let key = format!("proxy.listen[{i}]");
        let addr = parse_listen(text).map_err(|reason| ctx.err(&key, reason))?;
        // Port 0 asks for any free port: two of those never collide.
        let clash = listen
            .iter()
            .position(|o| *o == addr && addr.addr.port() != 0);
        if let Some(first) = clash {
            return Err(ctx.err(
                key,
                format!("{addr} is already listed as proxy.listen[{first}]"),
            ));
        }
        listen.push(addr);
    }
    let max_request_size = ctx.size(
        "proxy.max_request_size",
        raw.max_request_size.as_deref(),
        defaults::MAX_REQUEST_SIZE,
    )?;
    let fits = max_request_len(rings.request_capacity) as u64;
    if max_request_size == 0 || max_request_size > fits {
        return Err(ctx.err(
            "proxy.max_request_size",
            format!(
                "{} must be from 1B to {fits}B, the largest request a {} request ring holds (raise rings.request_size)",
                format_size(max_request_size),
                format_size(rings.request_capacity as u64)
            ),
        ));
    }
    let max_send_buffer = ctx.size(
        "proxy.max_send_buffer",
        raw.max_send_buffer.as_deref(),
        defaults::MAX_SEND_BUFFER,
    )?;
    if max_send_buffer == 0 {
        return Err(ctx.err("proxy.max_send_buffer", "must be at least 1B"));
    }
    let idle_timeout = ctx.duration(
        "proxy.idle_timeout",
        raw.idle_timeout.as_deref(),
        defaults::IDLE_TIMEOUT,
    )?;
    let request_timeout = ctx.duration(
        "proxy.request_timeout",
        raw.request_timeout.as_deref(),
        defaults::REQUEST_TIMEOUT,
    )?;
    let max_connections = ctx.flow_slots(
        "proxy.max_connections",
        raw.max_connections,
        defaults::MAX_CONNECTIONS,
    )?;
    let max_udp_flows = ctx.flow_slots(
        "proxy.max_udp_flows",
        raw.max_udp_flows,
        defaults::MAX_UDP_FLOWS,
    )?;
    Ok(ProxyConfig {
        listen,
        plugin: ctx.path("proxy.plugin", &raw.plugin)?,
        plugin_conf: ctx.plugin_conf("proxy.plugin_conf", raw.plugin_conf)?,
        max_connections,
        max_request_size: usize::try_from(max_request_size).unwrap_or(usize::MAX),
        max_send_buffer: usize::try_from(max_send_buffer).unwrap_or(usize::MAX),
        idle_timeout: ctx.positive("proxy.idle_timeout", idle_timeout)?,
        request_timeout: ctx.positive("proxy.request_timeout", request_timeout)?,
        max_udp_flows,
        spin: ctx.spin("proxy.spin", raw.spin.as_deref())?,
        processes: processes(ctx, raw.processes, cpus)?,
    })
}

fn group(ctx: &Ctx<'_>, pos: usize, raw: RawGroup) -> Result<GroupConfig, ConfigError> {
    let key = |field: &str| format!("group[{pos}].{field}");
    let max = defaults::MAX_WORKERS_PER_GROUP as u64;
    let id = ctx.count(
        &key("id"),
        Some(raw.id),
        0,
        1,
        defaults::MAX_GROUP_ID as u64,
    )?;
    let workers = ctx.count(&key("workers"), Some(raw.workers), 0, 1, max)?;
    let max_workers = ctx.count(&key("max_workers"), raw.max_workers, workers, 1, max)?;
    if max_workers < workers {
        return Err(ctx.err(
            key("max_workers"),
            format!("{max_workers} is less than workers = {workers}"),
        ));
    }
    let min_workers = ctx.count(&key("min_workers"), raw.min_workers, workers, 1, max)?;
    if min_workers > workers {
        return Err(ctx.err(
            key("min_workers"),
            format!("{min_workers} is more than workers = {workers}"),
        ));
    }
    // The counts were range-checked against u32 limits above.
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let Mode {
        microthreads,
        async_tasks,
    } = mode(ctx, &key, &raw)?;
    Ok(GroupConfig {
        id: to_u32(id),
        plugin: ctx.path(&key("plugin"), &raw.plugin)?,
        plugin_conf: ctx.plugin_conf(&key("plugin_conf"), raw.plugin_conf)?,
        workers: to_u32(workers),
        min_workers: to_u32(min_workers),
        max_workers: to_u32(max_workers),
        msg_timeout: ctx.timeout(
            &key("msg_timeout"),
            raw.msg_timeout.as_deref(),
            defaults::MSG_TIMEOUT,
        )?,
        hang_timeout: ctx.timeout(
            &key("hang_timeout"),
            raw.hang_timeout.as_deref(),
            defaults::HANG_TIMEOUT,
        )?,
        spin: ctx.spin(&key("spin"), raw.spin.as_deref())?,
        microthreads,
        async_tasks,
    })
}

/// A group's mode: at most one of the two is set (`"plain"`: neither).
struct Mode {
    microthreads: Option<MicroThreads>,
    async_tasks: Option<AsyncTasks>,
}

/// `group.mode` and its keys: `max_in_flight` for `"microthread"` and
/// `"async"`, `stack_size` for `"microthread"`, `task_timeout` for
/// `"async"` (each refused in the other modes, where it would do nothing).
fn mode(ctx: &Ctx<'_>, key: &dyn Fn(&str) -> String, raw: &RawGroup) -> Result<Mode, ConfigError> {
    let mode = raw.mode.as_deref().unwrap_or("plain");
    let only = |name: &str, set: bool, modes: &str| -> Result<(), ConfigError> {
        if set {
            return Err(ctx.err(key(name), format!("only for mode = {modes}")));
        }
        Ok(())
    };
    let max_in_flight = || -> Result<u32, ConfigError> {
        let v = ctx.count(
            &key("max_in_flight"),
            raw.max_in_flight,
            u64::from(defaults::MAX_IN_FLIGHT),
            1,
            u64::from(defaults::MAX_IN_FLIGHT_LIMIT),
        )?;
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    };
    match mode {
        "plain" => {
            only(
                "max_in_flight",
                raw.max_in_flight.is_some(),
                "\"microthread\" or \"async\"",
            )?;
            only("stack_size", raw.stack_size.is_some(), "\"microthread\"")?;
            only("task_timeout", raw.task_timeout.is_some(), "\"async\"")?;
            Ok(Mode {
                microthreads: None,
                async_tasks: None,
            })
        }
        "microthread" => {
            only("task_timeout", raw.task_timeout.is_some(), "\"async\"")?;
            let max_in_flight = max_in_flight()?;
            let stack_key = key("stack_size");
            let stack_size =
                ctx.size(&stack_key, raw.stack_size.as_deref(), defaults::STACK_SIZE)?;
            if !stack_size.is_multiple_of(defaults::PAGE)
                || !(defaults::MIN_STACK_SIZE..=defaults::MAX_STACK_SIZE).contains(&stack_size)
            {
                return Err(ctx.err(
                    stack_key,
                    format!(
                        "{} must be a multiple of {} from {} to {}",
                        format_size(stack_size),
                        format_size(defaults::PAGE),
                        format_size(defaults::MIN_STACK_SIZE),
                        format_size(defaults::MAX_STACK_SIZE)
                    ),
                ));
            }
            Ok(Mode {
                microthreads: Some(MicroThreads {
                    max_in_flight,
                    stack_size,
                }),
                async_tasks: None,
            })
        }
        "async" => {
            only("stack_size", raw.stack_size.is_some(), "\"microthread\"")?;
            let max_in_flight = max_in_flight()?;
            let timeout_key = key("task_timeout");
            let task_timeout = ctx.duration(
                &timeout_key,
                raw.task_timeout.as_deref(),
                defaults::TASK_TIMEOUT,
            )?;
            let range = defaults::MIN_TASK_TIMEOUT..=defaults::MAX_TASK_TIMEOUT;
            if !range.contains(&task_timeout) {
                return Err(ctx.err(
                    timeout_key,
                    format!(
                        "{task_timeout:?} is out of range: must be {:?} to {:?}",
                        defaults::MIN_TASK_TIMEOUT,
                        defaults::MAX_TASK_TIMEOUT
                    ),
                ));
            }
            Ok(Mode {
                microthreads: None,
                async_tasks: Some(AsyncTasks {
                    max_in_flight,
                    task_timeout,
                }),
            })
        }
        other => Err(ctx.err(
            key("mode"),
            format!("{other:?} is not \"plain\", \"microthread\" or \"async\""),
        )),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
