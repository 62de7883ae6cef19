//! The etcd backend (`l5.backend = "etcd://host:port[,host:port]"`).
//!
//! Registration: a lease with the configured TTL, kept alive
//! [`KEEPALIVES_PER_TTL`] times per TTL; one key per registered instance
//! under it, `{prefix}{modid}/{cmdid}/{ip}:{port}` with a JSON value
//! (layout and rules in [`record`]). [`Command::Register`] replaces this
//! service's keys (the ones no longer listed are deleted, an empty list
//! withdraws all; a delete only removes a key still held by this task's
//! lease, so it never takes away another process's registration of the same
//! address); [`Command::Deregister`] deletes them and revokes the lease. A
//! killed controller stops keeping the lease alive, and etcd removes its keys
//! when the TTL runs out.
//!
//! Discovery: list the whole prefix, then watch it from the listing's
//! revision + 1; a watch that falls behind a compaction is replaced by a new
//! listing at once, one that etcd cancels for another reason after a
//! back-off (as any failure). After each change the
//! task publishes a [`Discovered`] with every instance it accepted (at most
//! [`MAX_INSTANCES`]; malformed values are skipped and logged, throttled).
//!
//! The task talks to one endpoint at a time: the first of the list that
//! answers, and after a failure the next one.
//!
//! When no endpoint can be reached, the task publishes the last known instances
//! with `error: Some(reason)` (the agent keeps routing on them and shows the
//! reason in status) and tries again after a back-off ([`BACKOFF_MIN`]
//! doubling up to [`BACKOFF_MAX`]), still taking commands. On reconnecting
//! it checks its lease: one that expired while etcd was away is granted
//! anew and every key is put again. Every call to etcd is bounded
//! ([`REQUEST_TIMEOUT`]), and so is a whole registration update
//! ([`SYNC_TIMEOUT`]), which takes the queued commands between two calls:
//! a [`Command::Deregister`] behind a large registration stops it at once; every buffer is bounded (the command channel is the
//! caller's, etcd-client's request channels hold 100 messages, gRPC's flow
//! control bounds the streams).

mod record;
#[cfg(test)]
mod tests;

use super::{Command, Discovered, EtcdSettings};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream,
};
use record::{Throttle, View};
use spp_ipc::l5::Instance;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

/// The first retry delay after etcd failed; it doubles on every failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long opening a connection to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long any one call to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long deregistering may take on stop, connecting included (then the
/// lease expires alone). `defaults::L5_DEREGISTER_WAIT` waits a little longer.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one [`Backend::sync`] may take in all (deletes, lease, puts);
/// past it the session fails and the task reconnects after a back-off.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on the connection, to notice a dead peer while the watch is
/// quiet (etcd refuses pings more often than every 5 s).
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is dropped.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lease keep-alives sent per TTL.
const KEEPALIVES_PER_TTL: u32 = 3;
/// The most instances discovery accepts (what the route table holds).
const MAX_INSTANCES: usize = spp_ipc::l5::table::MAX_NODES;
/// The most keys one listing asks for (room for malformed ones).
const MAX_LISTED_KEYS: i64 = 2 * MAX_INSTANCES as i64;
/// The largest value accepted.
const MAX_VALUE_BYTES: usize = 1024;
/// Listings in a row after compactions, with no event between, before the
/// task gives up on the connection (and retries after a back-off).
const MAX_RELISTS_IN_A_ROW: u32 = 3;
/// A repeated warning is logged at most once per this period.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the etcd backend failed (or skipped a key).
#[derive(Debug, thiserror::Error)]
enum EtcdError {
    /// The client or the server reported an error.
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    /// A call got no answer in time.
    #[error("etcd did not answer {0} within {1:?}")]
    Timeout(&'static str, Duration),
    /// The server closed a stream.
    #[error("etcd closed the {0} stream")]
    StreamEnded(&'static str),
    /// No keep-alive was answered for a whole TTL.
    #[error("etcd answered no lease keep-alive for {0:?}")]
    KeepAliveStale(Duration),
    /// An answer lacked what it must carry.
    #[error("etcd's answer to {0} was incomplete")]
    Incomplete(&'static str),
    /// No endpoint answered (each one's failure).
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    /// The server canceled the watch (for another reason than compaction,
    /// or after too many compactions in a row).
    #[error("etcd canceled the watch: {0}")]
    WatchCanceled(String),
    /// The server refused a lease.
    #[error("etcd refused a lease: {0}")]
    LeaseRefused(String),
    /// A registration under the prefix that is not ours to read.
    #[error("malformed registration {key}: {reason}")]
    Malformed { key: String, reason: String },
}

/// Runs the backend until [`Command::Deregister`] (or the command channel
/// closes, which deregisters too): keeps a lease alive, puts this service's
/// instances under it, lists and watches the prefix, and publishes what it
/// sees on `out`.
pub async fn run(
    settings: EtcdSettings,
    mut commands: mpsc::Receiver<Command>,
    out: watch::Sender<Arc<Discovered>>,
) {
    let mut backend = Backend::new(settings, out);
    let mut backoff = BACKOFF_MIN;
    loop {
        match backend.session(&mut commands, &mut backoff).await {
            Ok(()) => return,
            Err(e) => backend.failed(&e, backoff),
        }
        if backend.stop {
            backend.deregister_anew().await;
            return;
        }
        if backend.wait(&mut commands, backoff).await == Next::Stop {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether the task goes on after waiting out a back-off.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Retry,
    Stop,
}

/// What a watch response asks for.
#[derive(Debug, PartialEq, Eq)]
enum Watched {
    Applied,
    Relist,
}

/// A granted lease.
#[derive(Clone, Copy, Debug)]
struct Lease {
    id: i64,
    /// The TTL etcd granted (it may raise the one asked for).
    ttl: Duration,
}

/// The keep-alive stream of the current lease.
struct Keeper {
    lease: Lease,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    /// When the next keep-alive is due.
    next: Instant,
    /// When etcd last confirmed the lease.
    last_ok: Instant,
}

impl Keeper {
    /// Opens the stream (etcd-client sends the first keep-alive).
    async fn open(client: &mut Client, lease: Lease) -> Result<Self, EtcdError> {
        let (keeper, stream) = call("lease keep-alive", client.lease_keep_alive(lease.id)).await?;
        let now = Instant::now();
        Ok(Keeper {
            lease,
            keeper,
            stream,
            next: now + Self::period(lease),
            last_ok: now,
        })
    }

    fn period(lease: Lease) -> Duration {
        lease.ttl / KEEPALIVES_PER_TTL
    }

    /// Sends one keep-alive; fails once etcd has confirmed none for a TTL.
    async fn send(&mut self) -> Result<(), EtcdError> {
        if self.last_ok.elapsed() > self.lease.ttl {
            return Err(EtcdError::KeepAliveStale(self.lease.ttl));
        }
        call("lease keep-alive", self.keeper.keep_alive()).await?;
        self.next = Instant::now() + Self::period(self.lease);
        Ok(())
    }
}

/// The next answer on the keep-alive stream, if there is one.
async fn keepalive_answer(
    keeper: &mut Option<Keeper>,
) -> Result<Option<etcd_client::LeaseKeepAliveResponse>, etcd_client::Error> {
    match keeper {
        Some(k) => k.stream.message().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One call to etcd, bounded by [`REQUEST_TIMEOUT`].
async fn call<T>(
    what: &'static str,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(EtcdError::from),
        Err(_) => Err(EtcdError::Timeout(what, REQUEST_TIMEOUT)),
    }
}

/// The task's state, kept across connections.
struct Backend {
    settings: EtcdSettings,
    out: watch::Sender<Arc<Discovered>>,
    pid: u32,
    /// The endpoint in use (index into the settings' list).
    endpoint: usize,
    /// The last session failed (and no new one is established yet).
    failing: bool,
    /// key → value of every instance this service registers.
    desired: BTreeMap<String, String>,
    /// key → value of what this task put under its lease.
    registered: BTreeMap<String, String>,
    lease: Option<Lease>,
    view: View,
    /// When etcd last confirmed the view.
    at: Option<SystemTime>,
    failure_log: Throttle,
    register_log: Throttle,
    /// A [`Command::Deregister`] (or the channel closing) was taken during
    /// a [`Self::sync`]: the task deregisters and ends.
    stop: bool,
}

impl Backend {
    fn new(settings: EtcdSettings, out: watch::Sender<Arc<Discovered>>) -> Self {
        Backend {
            view: View::new(&settings.prefix),
            settings,
            out,
            pid: std::process::id(),
            endpoint: 0,
            failing: false,
            desired: BTreeMap::new(),
            registered: BTreeMap::new(),
            lease: None,
            at: None,
            failure_log: Throttle::new(LOG_EVERY),
            register_log: Throttle::new(LOG_EVERY),
            stop: false,
        }
    }

    /// One connection: from connecting to a failure (`Err`) or to the end
    /// of the task (`Ok`).
    async fn session(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        backoff: &mut Duration,
    ) -> Result<(), EtcdError> {
        let mut client = self.connect().await?;
        let mut keeper = self.restore_lease(&mut client).await?;
        self.sync(&mut client, &mut keeper, true, commands).await?;
        if self.stop {
            self.deregister(&mut client).await;
            return Ok(());
        }
        let mut watch = self.list_and_watch(&mut client).await?;
        if std::mem::take(&mut self.failing) {
            let endpoint = self.settings.endpoints.get(self.endpoint);
            tracing::info!(?endpoint, "l5 etcd: connected again");
        }
        *backoff = BACKOFF_MIN;
        let mut relists = 0;
        loop {
            let keepalive_due = keeper.as_ref().map(|k| k.next);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Register(list)) => {
                        self.set_desired(list);
                        self.sync(&mut client, &mut keeper, false, commands).await?;
                        if self.stop {
                            self.deregister(&mut client).await;
                            return Ok(());
                        }
                    }
                    Some(Command::Deregister) | None => {
                        self.deregister(&mut client).await;
                        return Ok(());
                    }
                },
                message = watch.message() => {
                    let response = message?.ok_or(EtcdError::StreamEnded("watch"))?;
                    match self.on_watch(&response)? {
                        Watched::Applied if response.events().is_empty() => {}
                        Watched::Applied => relists = 0,
                        Watched::Relist => {
                            relists += 1;
                            if relists > MAX_RELISTS_IN_A_ROW {
                                return Err(EtcdError::WatchCanceled(format!(
                                    "compacted {relists} times in a row"
                                )));
                            }
                            watch = self.list_and_watch(&mut client).await?;
                        }
                    }
                }
                () = sleep_until_some(keepalive_due) => {
                    if let Some(k) = keeper.as_mut() {
                        k.send().await?;
                    }
                }
                answer = keepalive_answer(&mut keeper) => {
                    let answer = answer?.ok_or(EtcdError::StreamEnded("lease keep-alive"))?;
                    match keeper.as_mut() {
                        Some(k) if answer.ttl() > 0 => k.last_ok = Instant::now(),
                        _ => {
                            tracing::warn!("l5 etcd: the lease expired; registering again");
                            self.lease_lost();
                            keeper = None;
                            self.sync(&mut client, &mut keeper, true, commands).await?;
                            if self.stop {
                                self.deregister(&mut client).await;
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Connects to the first endpoint that answers, starting with the one
    /// in use (a client balanced over several endpoints would send some
    /// calls to a dead one).
    async fn connect(&mut self) -> Result<Client, EtcdError> {
        let count = self.settings.endpoints.len();
        let mut failures = Vec::new();
        for i in 0..count {
            let at = (self.endpoint + i) % count;
            let endpoint = &self.settings.endpoints[at];
            match Self::connect_to(endpoint).await {
                Ok(client) => {
                    self.endpoint = at;
                    return Ok(client);
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        if failures.is_empty() {
            failures.push("no endpoint configured".to_owned());
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// A client of one endpoint, once it answered a status request.
    async fn connect_to(endpoint: &str) -> Result<Client, EtcdError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(HTTP2_KEEPALIVE_INTERVAL, HTTP2_KEEPALIVE_TIMEOUT);
        let mut client = call("connect", Client::connect([endpoint], Some(options))).await?;
        call("status", client.status()).await?;
        Ok(client)
    }

    /// After a failure: publishes the last known view with the reason.
    fn failed(&mut self, error: &EtcdError, backoff: Duration) {
        self.failing = true;
        // The next attempt starts with the next endpoint.
        self.endpoint = (self.endpoint + 1) % self.settings.endpoints.len().max(1);
        if let Some(held) = self.failure_log.allow() {
            tracing::warn!(
                endpoints = ?self.settings.endpoints,
                %error,
                held_back = held,
                "l5 etcd: unreachable; routing on the last known instances, retrying in {backoff:?}"
            );
        }
        self.publish(Some(error.to_string()));
    }

    /// Waits out a back-off, still taking commands.
    async fn wait(&mut self, commands: &mut mpsc::Receiver<Command>, backoff: Duration) -> Next {
        let deadline = Instant::now() + backoff;
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return Next::Retry,
                command = commands.recv() => match command {
                    Some(Command::Register(list)) => self.set_desired(list),
                    Some(Command::Deregister) | None if self.lease.is_none() => {
                        return Next::Stop;
                    }
                    Some(Command::Deregister) | None => {
                        self.deregister_anew().await;
                        return Next::Stop;
                    }
                },
            }
        }
    }

    /// Deregisters on a new connection (after a failure), connecting
    /// included within [`DEREGISTER_TIMEOUT`]; nothing to do without a
    /// lease.
    async fn deregister_anew(&mut self) {
        if self.lease.is_none() {
            return;
        }
        let work = async {
            let mut client = self.connect().await?;
            self.deregister(&mut client).await;
            Ok::<(), EtcdError>(())
        };
        match timeout(DEREGISTER_TIMEOUT, work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "l5 etcd: cannot deregister; the lease will expire"
            ),
            Err(_) => {
                tracing::warn!("l5 etcd: cannot deregister in time; the lease will expire")
            }
        }
    }

    /// Records what this service registers (applied by [`Self::sync`]).
    /// Instances that cannot be called elsewhere (port 0, unspecified or
    /// scoped address, weight out of range) are left out, and logged.
    fn set_desired(&mut self, mut list: Vec<Instance>) {
        list.retain(|i| match record::registrable(i) {
            Ok(()) => true,
            Err(why) => {
                if let Some(held) = self.register_log.allow() {
                    tracing::warn!(
                        instance = %i.addr,
                        sid = %i.sid,
                        held_back = held,
                        "l5 etcd: not registering {why}"
                    );
                }
                false
            }
        });
        if list.len() > MAX_INSTANCES {
            if let Some(held) = self.register_log.allow() {
                tracing::warn!(
                    asked = list.len(),
                    limit = MAX_INSTANCES,
                    held_back = held,
                    "l5 etcd: registering only the first instances"
                );
            }
            list.truncate(MAX_INSTANCES);
        }
        let (prefix, service, pid) = (&self.settings.prefix, &self.settings.service, self.pid);
        self.desired = list
            .iter()
            .map(|i| (record::key(prefix, i), record::value(i, service, pid)))
            .collect();
    }

    /// Forgets a lease etcd no longer has (its keys went with it).
    fn lease_lost(&mut self) {
        self.lease = None;
        self.registered.clear();
    }

    /// On (re)connecting: keeps the lease if etcd still has it.
    async fn restore_lease(&mut self, client: &mut Client) -> Result<Option<Keeper>, EtcdError> {
        let Some(lease) = self.lease else {
            return Ok(None);
        };
        let answer = call(
            "lease time-to-live",
            client.lease_time_to_live(lease.id, None),
        )
        .await?;
        if answer.ttl() <= 0 {
            tracing::warn!("l5 etcd: the lease expired while etcd was away; registering again");
            self.lease_lost();
            return Ok(None);
        }
        Ok(Some(Keeper::open(client, lease).await?))
    }

    /// Makes etcd hold exactly [`Self::desired`]: deletes what is no longer
    /// listed, grants a lease when one is needed, puts what is new or changed
    /// (everything when `full`). The whole of it is bounded by
    /// [`SYNC_TIMEOUT`]; between two calls it takes the commands already
    /// queued: a newer [`Command::Register`] replaces the goal, a
    /// [`Command::Deregister`] (or the channel closing) sets [`Self::stop`]
    /// and ends it at once.
    async fn sync(
        &mut self,
        client: &mut Client,
        keeper: &mut Option<Keeper>,
        full: bool,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<(), EtcdError> {
        let work = self.sync_steps(client, keeper, full, commands);
        match timeout(SYNC_TIMEOUT, work).await {
            Ok(done) => done,
            Err(_) => Err(EtcdError::Timeout("the registration", SYNC_TIMEOUT)),
        }
    }

    async fn sync_steps(
        &mut self,
        client: &mut Client,
        keeper: &mut Option<Keeper>,
        full: bool,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<(), EtcdError> {
        // Keys put during this sync (a full one puts every key once).
        let mut done: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        loop {
            if self.take_queued(commands) {
                return Ok(());
            }
            let stale = self
                .registered
                .keys()
                .find(|k| !self.desired.contains_key(*k))
                .cloned();
            if let Some(key) = stale {
                self.delete_ours(client, &key).await?;
                self.registered.remove(&key);
                continue;
            }
            if self.desired.is_empty() {
                return Ok(());
            }
            let lease = match self.lease {
                Some(lease) => lease,
                None => {
                    let lease = self.grant(client).await?;
                    self.lease = Some(lease);
                    *keeper = None;
                    lease
                }
            };
            if keeper.is_none() {
                *keeper = Some(Keeper::open(client, lease).await?);
                continue;
            }
            let next = self
                .desired
                .iter()
                .find(|(key, value)| {
                    if full {
                        !done.contains(*key) || self.registered.get(*key) != Some(*value)
                    } else {
                        self.registered.get(*key) != Some(*value)
                    }
                })
                .map(|(k, v)| (k.clone(), v.clone()));
            let Some((key, value)) = next else {
                return Ok(());
            };
            let options = PutOptions::new().with_lease(lease.id);
            call(
                "put",
                client.put(key.as_str(), value.as_str(), Some(options)),
            )
            .await?;
            self.registered.insert(key.clone(), value);
            done.insert(key);
        }
    }

    /// Takes the commands already queued (without waiting): `true` when one
    /// asks to stop ([`Self::stop`] is set).
    fn take_queued(&mut self, commands: &mut mpsc::Receiver<Command>) -> bool {
        loop {
            match commands.try_recv() {
                Ok(Command::Register(list)) => self.set_desired(list),
                Ok(Command::Deregister) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.stop = true;
                    return true;
                }
                Err(mpsc::error::TryRecvError::Empty) => return false,
            }
        }
    }

    async fn grant(&self, client: &mut Client) -> Result<Lease, EtcdError> {
        let ttl = &self.settings.ttl;
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let answer = call("lease grant", client.lease_grant(secs, None)).await?;
        if !answer.error().is_empty() {
            return Err(EtcdError::LeaseRefused(answer.error().to_owned()));
        }
        let granted = u64::try_from(answer.ttl())
            .map_err(|_| EtcdError::LeaseRefused(format!("granted TTL {}", answer.ttl())))?;
        Ok(Lease {
            id: answer.id(),
            ttl: Duration::from_secs(granted.max(1)),
        })
    }

    /// Deletes `key` if it is still held by this task's lease.
    async fn delete_ours(&self, client: &mut Client, key: &str) -> Result<(), EtcdError> {
        let Some(lease) = self.lease else {
            return Ok(());
        };
        let txn = Txn::new()
            .when([Compare::lease(key, CompareOp::Equal, lease.id)])
            .and_then([TxnOp::delete(key, None)]);
        call("delete", client.txn(txn)).await?;
        Ok(())
    }

    /// Deletes this service's keys and revokes the lease, within
    /// [`DEREGISTER_TIMEOUT`]; logs what it could not do.
    async fn deregister(&mut self, client: &mut Client) {
        let work = async {
            let keys: Vec<String> = self.registered.keys().cloned().collect();
            for key in keys {
                self.delete_ours(client, &key).await?;
                self.registered.remove(&key);
            }
            if let Some(lease) = self.lease.take() {
                call("lease revoke", client.lease_revoke(lease.id)).await?;
            }
            Ok::<(), EtcdError>(())
        };
        match timeout(DEREGISTER_TIMEOUT, work).await {
            Ok(Ok(())) => tracing::info!("l5 etcd: deregistered"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "l5 etcd: deregistering failed; the lease will expire")
            }
            Err(_) => tracing::warn!("l5 etcd: deregistering timed out; the lease will expire"),
        }
    }

    /// Lists the prefix, publishes it, and watches from the next revision.
    async fn list_and_watch(&mut self, client: &mut Client) -> Result<WatchStream, EtcdError> {
        let options = GetOptions::new().with_prefix().with_limit(MAX_LISTED_KEYS);
        let listing = call(
            "get",
            client.get(self.settings.prefix.as_str(), Some(options)),
        )
        .await?;
        let revision = listing
            .header()
            .ok_or(EtcdError::Incomplete("get"))?
            .revision();
        self.view.replace(
            listing.kvs().iter().map(|kv| (kv.key(), kv.value())),
            listing.more(),
        );
        self.at = Some(SystemTime::now());
        self.publish(None);
        self.watch_from(client, revision + 1).await
    }

    async fn watch_from(
        &self,
        client: &mut Client,
        revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        call(
            "watch",
            client.watch(self.settings.prefix.as_str(), Some(options)),
        )
        .await
    }

    /// Applies a watch response; publishes when the view changed. A watch
    /// behind a compaction asks for a new listing; any other cancel is an
    /// error (the task lists again after a back-off).
    fn on_watch(&mut self, response: &WatchResponse) -> Result<Watched, EtcdError> {
        if response.compact_revision() > 0 {
            tracing::info!(
                compact_revision = response.compact_revision(),
                "l5 etcd: the watch fell behind a compaction; listing again"
            );
            return Ok(Watched::Relist);
        }
        if response.canceled() {
            return Err(EtcdError::WatchCanceled(
                response.cancel_reason().to_owned(),
            ));
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            changed |= match event.event_type() {
                EventType::Put => self.view.put(kv.key(), kv.value()),
                EventType::Delete => self.view.delete(kv.key()),
            };
        }
        if !response.events().is_empty() {
            self.at = Some(SystemTime::now());
        }
        if changed {
            self.publish(None);
        }
        Ok(Watched::Applied)
    }

    fn publish(&self, error: Option<String>) {
        self.out.send_replace(Arc::new(Discovered {
            instances: self.view.instances(),
            at: self.at,
            error,
        }));
    }
}
