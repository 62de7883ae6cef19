//! The L5 agent: the controller's side of routing for its service.
//!
//! * **Backend**: [`Agent::start`] spawns the registry task (embedded or
//!   etcd, [`super::registry`]) and keeps its command channel and the
//!   `watch` on which it publishes what it [`Discovered`].
//! * **Registration** ([`Agent::on_tick`], every [`defaults::L5_TICK`]):
//!   while the service runs and the group named by `l5.group` has a Ready
//!   worker, this service's instances ([`L5Config::instances`]: one per
//!   distinct bound listener address) are registered; when the group has
//!   none, they are withdrawn (`Register(vec![])`), and registered again
//!   once it has. [`Agent::deregister`] (stop) asks the backend to remove
//!   them and waits for it, bounded by [`defaults::L5_DEREGISTER_WAIT`].
//! * **Nodes**: the discovered instances merged with the static routes file
//!   (a registered instance wins over a static one of the same address;
//!   static ones are always there), at most [`MAX_SIDS`] sids and
//!   [`MAX_NODES`] nodes (the rest is dropped and counted). Each node has a
//!   stats slot in the [`RouteTable`] and a [`NodeHealth`]. A change of the
//!   set is published at once (a new instance is routable, a vanished one
//!   gone, its slot freed by [`RouteTable::retain_slots`]). A sid whose
//!   nodes all left stays in the table with none for `l5.ttl` after its last
//!   node went, so `GetRoute` answers "no server" (`NO_SERVER`), not
//!   "unknown sid", while its instances are away.
//! * **Reshape**: every `l5.period`, each node's counters are read
//!   ([`RouteTable::counts`]), the differences since the previous period fed
//!   to [`reshape`] per sid, and the new weights published.
//! * **Report**: [`Agent::status`] (the `l5` section of `spp status`) and
//!   [`Agent::report`] (`spp l5 list/get`): the published table joined with
//!   each node's source and last period's outcomes.

use super::registry::{self, Command, Discovered, EmbeddedSettings, EtcdSettings};
use super::report::{L5Report, L5Status, NodeReport, SidReport};
use spp_config::defaults;
use spp_config::l5::{L5Backend, L5Config};
use spp_ipc::l5::balancer::{reshape, NodeHealth, PeriodCounts};
use spp_ipc::l5::table::{NodeCounts, NodeView, RouteTable, SidView, MAX_NODES, MAX_SIDS};
use spp_ipc::l5::{Instance, Sid};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

/// Where a node comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The registry (embedded or etcd).
    Registry,
    /// The static routes file.
    Static,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Registry => "registry",
            Source::Static => "static",
        }
    }
}

/// What woke the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The backend published a new view.
    Discovered,
    /// Time to check the registration and the period.
    Tick,
}

/// One node of a sid.
#[derive(Clone, Debug)]
struct Node {
    instance: Instance,
    source: Source,
    health: NodeHealth,
    slot: u32,
    /// The slot's counters at the last period's end.
    seen: NodeCounts,
    /// What it did in the last period.
    last: PeriodCounts,
    /// Its picks in the last period.
    last_picks: u64,
}

/// One sid's nodes (sorted by address) and its probe budget.
#[derive(Clone, Debug, Default)]
struct SidState {
    nodes: Vec<Node>,
    probe_budget: u32,
}

/// The wanted node set: per sid, its instances and where they come from.
type Wanted = BTreeMap<Sid, Vec<(Instance, Source)>>;

/// The agent (one per service, owned by the supervisor).
pub struct Agent {
    cfg: L5Config,
    /// What this service registers while healthy.
    instances: Vec<Instance>,
    commands: mpsc::Sender<Command>,
    discovered: watch::Receiver<Arc<Discovered>>,
    /// False once the backend's task ended (its `watch` closed).
    backend_open: bool,
    task: Option<JoinHandle<()>>,
    sids: BTreeMap<Sid, SidState>,
    /// The last registration sent (`None`: nothing sent yet).
    registered: Option<Vec<Instance>>,
    /// The backend's last error.
    error: Option<String>,
    /// Instances left out of the table (limits).
    dropped: usize,
    tick: tokio::time::Interval,
    next_period: Instant,
    /// Per sid, when it last had a node: a sid whose nodes all left stays
    /// in the table with none for [`L5Config::ttl`] after that (so
    /// `GetRoute` answers "no server", not "unknown sid").
    last_seen: BTreeMap<Sid, Instant>,
}

impl Agent {
    /// Starts the backend task for `service` (must run inside the tokio
    /// runtime), and publishes the static routes into `table` at once.
    /// `local`: the listeners' bound addresses.
    pub fn start(
        cfg: &L5Config,
        service: &str,
        local: &[SocketAddr],
        table: &mut RouteTable,
    ) -> Self {
        let (commands, rx) = mpsc::channel(defaults::L5_COMMAND_QUEUE);
        let (out, discovered) = watch::channel(Arc::new(Discovered::default()));
        let pid = std::process::id();
        let task = match &cfg.backend {
            L5Backend::Embedded => tokio::spawn(registry::embedded::run(
                EmbeddedSettings {
                    dir: cfg.registry_dir.clone(),
                    ttl: cfg.ttl,
                    scan: defaults::l5_scan_interval(cfg.balancer.period),
                    service: service.to_string(),
                    pid,
                },
                rx,
                out,
            )),
            L5Backend::Etcd { endpoints } => tokio::spawn(registry::etcd::run(
                EtcdSettings {
                    endpoints: endpoints.clone(),
                    prefix: cfg.prefix.clone(),
                    ttl: cfg.ttl,
                    service: service.to_string(),
                },
                rx,
                out,
            )),
        };
        table.set_rules(&cfg.balancer);
        let mut tick = tokio::time::interval(defaults::L5_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut agent = Agent {
            cfg: cfg.clone(),
            instances: cfg.instances(local),
            commands,
            discovered,
            backend_open: true,
            task: Some(task),
            sids: BTreeMap::new(),
            registered: None,
            error: None,
            dropped: 0,
            tick,
            next_period: Instant::now() + cfg.balancer.period,
            last_seen: BTreeMap::new(),
        };
        info!(
            "l5: backend {}, sid {}, {} static route(s), reshape every {:?}",
            cfg.backend,
            cfg.sid
                .map_or_else(|| "none (consumer only)".to_string(), |s| s.to_string()),
            cfg.routes.len(),
            cfg.balancer.period
        );
        agent.apply(&[], table);
        agent
    }

    /// The next thing to do.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            changed = self.discovered.changed(), if self.backend_open => match changed {
                Ok(()) => Event::Discovered,
                Err(_) => {
                    self.backend_open = false;
                    self.error = Some("the registry task ended".to_string());
                    warn!("l5: the registry task ended; routing keeps the last known table");
                    Event::Tick
                }
            },
            _ = self.tick.tick() => Event::Tick,
        }
    }

    /// Takes the backend's newest view: publishes at once when the node set
    /// changed.
    pub fn on_discovered(&mut self, table: &mut RouteTable) {
        let view = Arc::clone(&self.discovered.borrow_and_update());
        if view.error != self.error {
            match &view.error {
                Some(e) => warn!(
                    "l5: backend {}: {e}; routing keeps the last known table",
                    self.cfg.backend
                ),
                None if self.error.is_some() => {
                    info!("l5: backend {} answers again", self.cfg.backend)
                }
                None => {}
            }
            self.error = view.error.clone();
        }
        self.apply_found(&view.instances, table, Instant::now());
    }

    /// [`Self::apply`] with `found` plus the sids that lost their last node
    /// less than a ttl before `now` (kept with no node), then notes which
    /// sids have nodes.
    fn apply_found(&mut self, found: &[Instance], table: &mut RouteTable, now: Instant) {
        let ttl = self.cfg.ttl;
        self.last_seen
            .retain(|_, at| now.saturating_duration_since(*at) < ttl);
        let present: HashSet<Sid> = found
            .iter()
            .chain(&self.cfg.routes)
            .map(|i| i.sid)
            .collect();
        let mut all = found.to_vec();
        all.extend(
            self.last_seen
                .keys()
                .filter(|sid| !present.contains(sid))
                .map(|sid| sid_marker(*sid)),
        );
        self.apply(&all, table);
        for (sid, state) in &self.sids {
            if !state.nodes.is_empty() {
                self.last_seen.insert(*sid, now);
            }
        }
    }

    /// Drops the node-less sids whose ttl ran out (from the table too).
    fn expire_sids(&mut self, table: &mut RouteTable, now: Instant) {
        let ttl = self.cfg.ttl;
        let expired = self.sids.iter().any(|(sid, state)| {
            state.nodes.is_empty()
                && self
                    .last_seen
                    .get(sid)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= ttl)
        });
        if expired {
            let found = self.discovered.borrow().instances.clone();
            self.apply_found(&found, table, now);
        }
    }

    /// Registration (`healthy`: the service runs and its group has a Ready
    /// worker) and, when a period is over, the reshape.
    pub fn on_tick(&mut self, table: &mut RouteTable, healthy: bool, now: Instant) {
        self.register(healthy);
        self.expire_sids(table, now);
        if now >= self.next_period {
            self.next_period = now + self.cfg.balancer.period;
            self.reshape_all(table);
            self.publish(table);
        }
    }

    /// Sends the registration `healthy` calls for, if it changed.
    fn register(&mut self, healthy: bool) {
        let Some(sid) = self.cfg.sid else {
            return;
        };
        let want = if healthy {
            self.instances.clone()
        } else {
            Vec::new()
        };
        if self.registered.as_ref() == Some(&want) || (self.registered.is_none() && want.is_empty())
        {
            return;
        }
        match self.commands.try_send(Command::Register(want.clone())) {
            Ok(()) => {
                if want.is_empty() {
                    warn!(
                        "l5: withdrew sid {sid}: group {} has no ready worker",
                        self.cfg.group
                    );
                } else {
                    let addrs: Vec<String> = want.iter().map(|i| i.addr.to_string()).collect();
                    info!("l5: registering sid {sid}: {}", addrs.join(", "));
                }
                self.registered = Some(want);
            }
            // Tried again at the next tick.
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Asks the backend to remove this service's instances and end, and
    /// waits for it ([`defaults::L5_DEREGISTER_WAIT`] at most).
    pub async fn deregister(&mut self) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + defaults::L5_DEREGISTER_WAIT;
        let sent = tokio::time::timeout_at(deadline, self.commands.send(Command::Deregister)).await;
        let ended = match sent {
            Ok(Ok(())) => tokio::time::timeout_at(deadline, &mut task).await.is_ok(),
            Ok(Err(_)) => {
                warn!("l5: the registry task had ended; nothing to deregister");
                self.registered = None;
                return;
            }
            Err(_) => false,
        };
        if ended {
            self.registered = None;
            info!("l5: deregistered from {}", self.cfg.backend);
        } else {
            warn!(
                "l5: the backend did not deregister within {:?}; its registration expires with its ttl",
                defaults::L5_DEREGISTER_WAIT
            );
            task.abort();
        }
    }

    /// Makes the node set `found` + the static routes, publishing when it
    /// changed.
    fn apply(&mut self, found: &[Instance], table: &mut RouteTable) {
        let (wanted, dropped) = merge(&self.cfg.routes, found);
        let same = wanted.len() == self.sids.len()
            && wanted
                .iter()
                .zip(&self.sids)
                .all(|((sid, want), (have_sid, have))| {
                    sid == have_sid
                        && want.len() == have.nodes.len()
                        && want
                            .iter()
                            .zip(&have.nodes)
                            .all(|((i, s), n)| *i == n.instance && *s == n.source)
                });
        if same && dropped == self.dropped {
            return;
        }
        let keys: HashSet<(Sid, SocketAddr)> = wanted
            .iter()
            .flat_map(|(sid, list)| list.iter().map(move |(i, _)| (*sid, i.addr)))
            .collect();
        table.retain_slots(&|i: &Instance| keys.contains(&(i.sid, i.addr)));
        let mut old = std::mem::take(&mut self.sids);
        let mut dropped = dropped;
        for (sid, list) in wanted {
            let before = old.remove(&sid).unwrap_or_default();
            // Mid-period: carry over what is left of the budget published
            // this period, not the full budget again (the table knows;
            // never more than the period's budget).
            let left = table
                .probe_budget_left(sid)
                .map_or(before.probe_budget, |left| left.min(before.probe_budget));
            let mut state = SidState {
                nodes: Vec::with_capacity(list.len()),
                probe_budget: left,
            };
            for (instance, source) in list {
                let kept = before
                    .nodes
                    .iter()
                    .find(|n| n.instance.addr == instance.addr);
                match node(table, kept, instance, source) {
                    Some(node) => state.nodes.push(node),
                    None => dropped += 1,
                }
            }
            self.sids.insert(sid, state);
        }
        if dropped != self.dropped && dropped > 0 {
            warn!("l5: {dropped} instance(s) left out: the route table holds {MAX_SIDS} sids and {MAX_NODES} nodes");
        }
        self.dropped = dropped;
        self.publish(table);
    }

    /// One period: every node's outcomes since the last, then [`reshape`]
    /// per sid.
    fn reshape_all(&mut self, table: &RouteTable) {
        for state in self.sids.values_mut() {
            let mut counts = Vec::with_capacity(state.nodes.len());
            let mut health = Vec::with_capacity(state.nodes.len());
            for n in &mut state.nodes {
                let now = table.counts(n.slot);
                n.last = PeriodCounts::between(&n.seen, &now);
                n.last_picks = if now.picks >= n.seen.picks {
                    now.picks - n.seen.picks
                } else {
                    now.picks
                };
                n.seen = now;
                counts.push(n.last);
                health.push(n.health.clone());
            }
            state.probe_budget = reshape(&mut health, &counts, &self.cfg.balancer);
            for (n, h) in state.nodes.iter_mut().zip(health) {
                n.health = h;
            }
        }
    }

    /// Writes the current nodes into the table.
    fn publish(&self, table: &RouteTable) {
        let views: Vec<SidView> = self
            .sids
            .iter()
            .map(|(sid, state)| SidView {
                sid: *sid,
                nodes: state
                    .nodes
                    .iter()
                    .map(|n| NodeView {
                        instance: n.instance,
                        weight: n.health.published_weight(),
                        dead: n.health.dead,
                        slot: n.slot,
                    })
                    .collect(),
                probe_budget: state.probe_budget,
            })
            .collect();
        if let Err(e) = table.publish(&views) {
            warn!("l5: publishing the route table: {e}");
        }
    }

    /// The `l5` section of `spp status`.
    pub fn status(&self, table: &RouteTable) -> L5Status {
        let registered = self.registered.as_ref().filter(|r| !r.is_empty());
        L5Status {
            sid: self.cfg.sid,
            group: self.cfg.group,
            registered: registered.is_some(),
            instances: registered
                .into_iter()
                .flatten()
                .map(|i| i.addr.to_string())
                .collect(),
            backend: self.cfg.backend.to_string(),
            backend_error: self.error.clone(),
            sids: self.sids.len(),
            nodes: self.sids.values().map(|s| s.nodes.len()).sum(),
            dropped: self.dropped,
            generation: table.generation(),
        }
    }

    /// The answer to `{"cmd":"l5"}`: the table workers route on, with each
    /// node's source and last period.
    pub fn report(&self, table: &RouteTable) -> L5Report {
        let views = table.view();
        let period = self.cfg.balancer.period;
        L5Report {
            status: self.status(table),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            table: views
                .iter()
                .map(|view| SidReport {
                    sid: view.sid,
                    probe_budget: view.probe_budget,
                    nodes: view
                        .nodes
                        .iter()
                        .map(|v| self.node_report(table, view.sid, v))
                        .collect(),
                })
                .collect(),
        }
    }

    fn node_report(&self, table: &RouteTable, sid: Sid, view: &NodeView) -> NodeReport {
        let node = self.sids.get(&sid).and_then(|s| {
            s.nodes
                .iter()
                .find(|n| n.instance.addr == view.instance.addr)
        });
        let last = node.map(|n| n.last).unwrap_or_default();
        let calls = last.requests();
        NodeReport {
            addr: view.instance.addr.to_string(),
            source: node.map_or("?", |n| n.source.as_str()).to_string(),
            static_weight: view.instance.weight,
            weight: view.weight,
            dead: view.dead,
            success: last.success,
            failure: last.failure,
            picks: node.map_or(0, |n| n.last_picks),
            success_ratio: (calls > 0).then(|| last.success as f64 / calls as f64),
            consecutive_errors: table.counts(view.slot).consecutive_errors,
        }
    }

    /// The reshape period.
    #[cfg(test)]
    pub fn period(&self) -> std::time::Duration {
        self.cfg.balancer.period
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A node for `instance`: `kept` (the same address before) keeps its
/// health and counters (its health rescaled when the static weight
/// changed); a new one gets a fresh slot. `None` when the table has no
/// slot left.
fn node(
    table: &mut RouteTable,
    kept: Option<&Node>,
    instance: Instance,
    source: Source,
) -> Option<Node> {
    let slot = match table.slot_for(&instance) {
        Ok(slot) => slot,
        Err(e) => {
            warn!("l5: {} {}: {e}", instance.sid, instance.addr);
            return None;
        }
    };
    if let Some(kept) = kept.filter(|k| k.slot == slot) {
        let mut node = kept.clone();
        node.source = source;
        if kept.instance.weight != instance.weight {
            let scale = f64::from(instance.weight) / f64::from(kept.instance.weight.max(1));
            node.health.static_weight = instance.weight;
            node.health.weight = (node.health.weight * scale).min(f64::from(instance.weight));
        }
        node.instance = instance;
        return Some(node);
    }
    Some(Node {
        instance,
        source,
        health: NodeHealth::new(instance.weight),
        slot,
        seen: table.counts(slot),
        last: PeriodCounts::default(),
        last_picks: 0,
    })
}

/// Stands for `sid` with no node in the `found` list given to [`merge`]
/// (weight 0: no backend or routes file yields one).
fn sid_marker(sid: Sid) -> Instance {
    Instance {
        sid,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        weight: 0,
    }
}

/// The node set: `found` (registered) and `statics`, a registered instance
/// winning over a static one at the same address, per sid sorted by
/// address; at most [`MAX_SIDS`] sids and [`MAX_NODES`] nodes. A
/// [`sid_marker`] in `found` keeps its sid with no node (when there is
/// room for one more sid). Returns it and how many instances were left out.
fn merge(statics: &[Instance], found: &[Instance]) -> (Wanted, usize) {
    let mut all: BTreeMap<(Sid, SocketAddr), (Instance, Source)> = BTreeMap::new();
    let mut empty: Vec<Sid> = Vec::new();
    for i in statics {
        all.insert((i.sid, i.addr), (*i, Source::Static));
    }
    for i in found {
        if i.weight == 0 {
            empty.push(i.sid);
            continue;
        }
        all.insert((i.sid, i.addr), (*i, Source::Registry));
    }
    let mut wanted = Wanted::new();
    let (mut nodes, mut dropped) = (0usize, 0usize);
    for ((sid, _), entry) in all {
        let room = nodes < MAX_NODES && (wanted.len() < MAX_SIDS || wanted.contains_key(&sid));
        if !room {
            dropped += 1;
            continue;
        }
        wanted.entry(sid).or_default().push(entry);
        nodes += 1;
    }
    for sid in empty {
        if wanted.len() < MAX_SIDS {
            wanted.entry(sid).or_default();
        }
    }
    (wanted, dropped)
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
