//! The etcd backend against a real etcd server (`etcd`, Debian package
//! `etcd-server`), started per test on 127.0.0.1 ephemeral ports with its
//! own data directory, and killed (by PID) when the test ends. There is no
//! skipping: without etcd these tests fail and say how to get it.

use super::record;
use super::*;
use spp_ipc::l5::Sid;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

/// The longest any awaited condition may take before the test fails.
const WAIT: Duration = Duration::from_secs(40);
/// How long etcd may take to answer after it was started.
const STARTUP: Duration = Duration::from_secs(30);
/// Attempts at starting etcd on fresh free ports.
const START_ATTEMPTS: usize = 3;
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause between two readiness probes of a starting etcd.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// The lease TTL the tests register with (short: the expiry test waits
/// for it).
const TTL: Duration = Duration::from_secs(2);
/// Failed reconnections the outage test waits for before restarting etcd.
const RETRIES_WHILE_DOWN: usize = 3;
/// Where etcd is looked for after `$SPP_ETCD` and `$PATH`.
const ETCD_DEFAULT: &str = "/usr/bin/etcd";

fn etcd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SPP_ETCD") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SPP_ETCD={} is not a file", p.display());
        return p;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| Some(PathBuf::from(ETCD_DEFAULT)).filter(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "the etcd backend tests need an etcd server binary and found none \
             (not in $PATH, not at {ETCD_DEFAULT}): install the Debian package \
             etcd-server (.ci/run does), or set SPP_ETCD=/path/to/etcd"
        )
    })
}

/// Two free ports on 127.0.0.1 (bound together, then released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    (port(&a), port(&b))
}

/// A running etcd, killed on drop.
struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd on free ports (new ones if another process took them
    /// first).
    async fn start() -> Etcd {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let (client_port, peer_port) = free_ports();
            match Etcd::try_start_on(client_port, peer_port).await {
                Ok(etcd) => return etcd,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "etcd did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n----\n")
        );
    }

    /// Starts etcd on these ports with a new, empty data directory.
    async fn start_on(client_port: u16, peer_port: u16) -> Etcd {
        Etcd::try_start_on(client_port, peer_port)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_start_on(client_port: u16, peer_port: u16) -> Result<Etcd, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = std::process::Command::new(etcd_binary())
            .arg("--name")
            .arg(Self::name(client_port))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{}={peer}", Self::name(client_port)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", etcd_binary().display()));
        let mut etcd = Etcd {
            child: Some(child),
            client_port,
            peer_port,
            dir,
        };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    /// The member name: tells this etcd from another one that might have
    /// taken the port.
    fn name(client_port: u16) -> String {
        format!("spp-test-{}-{client_port}", std::process::id())
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Waits until this etcd answers (bounded by [`STARTUP`]).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        let name = Self::name(self.client_port);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "etcd exited ({status}) while starting:\n{}",
                        self.log()
                    ));
                }
            }
            let probe = async {
                let mut c = Client::connect([self.endpoint()], None).await?;
                let members = c.member_list().await?;
                Ok::<bool, etcd_client::Error>(members.members().iter().any(|m| m.name() == name))
            };
            if let Ok(Ok(true)) = timeout(PROBE_TIMEOUT, probe).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd did not answer within {STARTUP:?}:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Kills etcd (SIGKILL to its PID) and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A plain client, to look at etcd from the outside.
    async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None)
            .await
            .expect("connect to etcd")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A backend task and its two channels.
struct Agent {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<Discovered>>,
    task: JoinHandle<()>,
}

/// Shows the backend's log lines in a failing test's output
/// (`RUST_LOG` filters them; warnings and up by default).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl Agent {
    fn spawn(endpoints: Vec<String>, prefix: &str) -> Agent {
        let settings = EtcdSettings {
            endpoints,
            prefix: prefix.to_owned(),
            ttl: TTL,
            service: "test".to_owned(),
        };
        init_logs();
        let (commands, rx) = mpsc::channel(8);
        let (out, view) = watch::channel(Arc::new(Discovered::default()));
        let task = tokio::spawn(run(settings, rx, out));
        Agent {
            commands,
            view,
            task,
        }
    }

    async fn register(&self, list: Vec<Instance>) {
        self.commands
            .send(Command::Register(list))
            .await
            .expect("the backend task is running");
    }

    /// Waits until the published view satisfies `ok`.
    async fn wait_until(
        &mut self,
        what: &str,
        ok: impl Fn(&Discovered) -> bool,
    ) -> Arc<Discovered> {
        let deadline = Instant::now() + WAIT;
        loop {
            let current = self.view.borrow_and_update().clone();
            if ok(&current) {
                return current;
            }
            match timeout_at(deadline, self.view.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("{what}: the backend task ended; last view {current:?}"),
                Err(_) => panic!("{what}: not within {WAIT:?}; last view {current:?}"),
            }
        }
    }

    /// Waits until the view is exactly `expected` (in key order), reported
    /// without error.
    async fn wait_for(&mut self, what: &str, expected: &[Instance]) -> Arc<Discovered> {
        self.wait_until(what, |d| d.error.is_none() && d.instances == expected)
            .await
    }
}

fn instance(port: u16, weight: u32) -> Instance {
    Instance {
        sid: Sid {
            modid: 64001,
            cmdid: 1,
        },
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        weight,
    }
}

/// The lease a key is attached to (0: none; `None`: no such key).
async fn lease_of(client: &mut Client, key: &str) -> Option<i64> {
    let got = client.get(key, None).await.expect("get");
    got.kvs().first().map(|kv| kv.lease())
}

#[tokio::test]
async fn registration_is_discovered_replaced_and_withdrawn() {
    let etcd = Etcd::start().await;
    let prefix = "/spp-test/l5/";
    // Several endpoints, one of them dead: the live one serves.
    let dead = format!("127.0.0.1:{}", free_ports().0);
    let a = Agent::spawn(vec![dead, etcd.endpoint()], prefix);
    let mut b = Agent::spawn(vec![etcd.endpoint()], prefix);
    let (one, two) = (instance(7001, 100), instance(7002, 100));

    a.register(vec![one, two]).await;
    let seen = b.wait_for("B discovers A's instances", &[one, two]).await;
    assert!(seen.at.is_some());
    let a_view = a.view.borrow().clone();
    assert_eq!(a_view.error, None, "A skipped the dead endpoint quietly");

    // The key layout and the JSON value, as etcd holds them.
    let mut raw = etcd.client().await;
    let got = raw
        .get("/spp-test/l5/64001/1/127.0.0.1:7001", None)
        .await
        .expect("get");
    let kv = got.kvs().first().expect("the key of instance one");
    assert_ne!(kv.lease(), 0, "the key is attached to a lease");
    let json: serde_json::Value = serde_json::from_slice(kv.value()).expect("JSON value");
    assert_eq!(
        json,
        serde_json::json!({"modid": 64001, "cmdid": 1, "ip": "127.0.0.1", "port": 7001,
            "weight": 100, "service": "test", "pid": std::process::id()})
    );

    // Replacing the list deletes the unlisted key and updates a changed one.
    let two_heavier = instance(7002, 300);
    a.register(vec![two_heavier]).await;
    b.wait_for("B sees the replaced list", &[two_heavier]).await;

    // An empty list withdraws everything; the task keeps running.
    a.register(vec![]).await;
    b.wait_for("B sees the withdrawal", &[]).await;
    let got = raw.get(prefix, Some(GetOptions::new().with_prefix())).await;
    assert_eq!(got.expect("get").kvs().len(), 0);
    assert!(!a.task.is_finished());
}

#[tokio::test]
async fn deregister_deletes_the_keys_and_revokes_the_lease() {
    let etcd = Etcd::start().await;
    let prefix = "/spp-test/dereg/";
    let a = Agent::spawn(vec![etcd.endpoint()], prefix);
    let mut b = Agent::spawn(vec![etcd.endpoint()], prefix);
    let one = instance(7101, 100);
    a.register(vec![one]).await;
    b.wait_for("B discovers A", &[one]).await;

    let key = "/spp-test/dereg/64001/1/127.0.0.1:7101";
    let mut raw = etcd.client().await;
    let lease = lease_of(&mut raw, key).await.expect("A's key");
    assert_ne!(lease, 0);

    a.commands
        .send(Command::Deregister)
        .await
        .expect("the task is running");
    timeout(WAIT, a.task)
        .await
        .expect("the task ends after Deregister")
        .expect("the task did not panic");

    assert_eq!(lease_of(&mut raw, key).await, None, "the key is gone");
    let ttl = raw.lease_time_to_live(lease, None).await.expect("ttl");
    assert_eq!(ttl.ttl(), -1, "the lease is revoked");
    b.wait_for("B sees A leave", &[]).await;
}

#[tokio::test]
async fn a_deregister_queued_behind_a_large_registration_stops_it_at_once() {
    let etcd = Etcd::start().await;
    let prefix = "/spp-test/stop/";
    let a = Agent::spawn(vec![etcd.endpoint()], prefix);
    let mut b = Agent::spawn(vec![etcd.endpoint()], prefix);
    let one = instance(7201, 100);
    a.register(vec![one]).await;
    b.wait_for("B discovers A", &[one]).await;
    let mut raw = etcd.client().await;
    let revision = |r: &etcd_client::GetResponse| r.header().expect("header").revision();
    let before = revision(&raw.get(prefix, None).await.expect("get"));

    // A registration of every instance the table holds, and Deregister
    // right behind it: the task takes the Deregister before the first put.
    let many: Vec<Instance> = (0..MAX_INSTANCES)
        .map(|n| instance(10_000 + u16::try_from(n).expect("port"), 100))
        .collect();
    a.register(many).await;
    a.commands
        .send(Command::Deregister)
        .await
        .expect("the task is running");
    timeout(DEREGISTER_TIMEOUT + Duration::from_secs(2), a.task)
        .await
        .expect("the task ends promptly after Deregister")
        .expect("the task did not panic");

    let got = raw
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    assert_eq!(got.kvs().len(), 0, "nothing stays registered");
    // Each put or delete is one revision: only the old key's removal
    // happened, none of the thousands of puts.
    let puts = revision(&got) - before;
    assert!(puts < 5, "{puts} revisions between the two listings");
    b.wait_for("B sees A leave", &[]).await;
}

#[tokio::test]
async fn a_killed_registrar_s_keys_expire_with_its_lease() {
    let etcd = Etcd::start().await;
    let prefix = "/spp-test/expiry/";
    let a = Agent::spawn(vec![etcd.endpoint()], prefix);
    let mut b = Agent::spawn(vec![etcd.endpoint()], prefix);
    let one = instance(7201, 100);
    a.register(vec![one]).await;
    b.wait_for("B discovers A", &[one]).await;

    let mut raw = etcd.client().await;
    let key = "/spp-test/expiry/64001/1/127.0.0.1:7201";
    let lease = lease_of(&mut raw, key).await.expect("A's key");
    let granted = raw.lease_time_to_live(lease, None).await.expect("ttl");
    assert_eq!(granted.granted_ttl(), 2, "the lease has the configured TTL");

    // A controller killed: its task stops without deregistering.
    a.task.abort();
    assert!(a.task.await.expect_err("aborted").is_cancelled());

    // Nothing deletes the key but the lease running out.
    b.wait_for("A's instance expires", &[]).await;
    assert_eq!(lease_of(&mut raw, key).await, None);
    let after = raw.lease_time_to_live(lease, None).await.expect("ttl");
    assert_eq!(after.ttl(), -1, "the lease expired");
    drop(a.commands);
}

#[tokio::test]
async fn an_etcd_outage_keeps_the_last_view_and_restores_the_registration() {
    let mut etcd = Etcd::start().await;
    let (client_port, peer_port) = (etcd.client_port, etcd.peer_port);
    let prefix = "/spp-test/outage/";
    let mut a = Agent::spawn(vec![etcd.endpoint()], prefix);
    let mut b = Agent::spawn(vec![etcd.endpoint()], prefix);
    let one = instance(7301, 100);
    a.register(vec![one]).await;
    b.wait_for("B discovers A", &[one]).await;

    etcd.kill();
    let down = b
        .wait_until("B reports etcd down", |d| d.error.is_some())
        .await;
    assert_eq!(down.instances, [one], "B keeps the last known instances");
    assert!(down.at.is_some());
    a.wait_until("A reports etcd down", |d| d.error.is_some())
        .await;
    // Each failed retry publishes again: wait for a few, so that
    // reconnecting to a dead etcd is exercised too.
    let failures = std::cell::Cell::new(0);
    let still_down = b
        .wait_until("B retries and fails while etcd is down", |d| {
            failures.set(failures.get() + usize::from(d.error.is_some()));
            failures.get() > RETRIES_WHILE_DOWN
        })
        .await;
    assert_eq!(still_down.instances, [one]);

    // A registration change while etcd is away is applied on reconnecting.
    let two = instance(7302, 100);
    a.register(vec![one, two]).await;

    // The same ports, an empty store: the lease is gone with the old data.
    let etcd = Etcd::start_on(client_port, peer_port).await;
    b.wait_for("B sees A registered again", &[one, two]).await;
    a.wait_for("A sees itself again", &[one, two]).await;
    let mut raw = etcd.client().await;
    let key = "/spp-test/outage/64001/1/127.0.0.1:7302";
    let lease = lease_of(&mut raw, key).await.expect("A's key again");
    let ttl = raw.lease_time_to_live(lease, None).await.expect("ttl");
    assert!(ttl.ttl() > 0, "under a live lease");

    // Stopping while etcd is down still ends the task (in bounded time).
    drop(raw);
    drop(etcd);
    a.wait_until("A reports etcd down again", |d| d.error.is_some())
        .await;
    a.commands
        .send(Command::Deregister)
        .await
        .expect("the task is running");
    timeout(WAIT, a.task)
        .await
        .expect("the task ends after Deregister with etcd down")
        .expect("the task did not panic");
}

#[tokio::test]
async fn malformed_values_are_skipped() {
    let etcd = Etcd::start().await;
    let prefix = "/spp-test/malformed/";
    let mut raw = etcd.client().await;
    let good = instance(7401, 200);
    let good_key = record::key(prefix, &good);
    raw.put(good_key.as_str(), record::value(&good, "x", 1), None)
        .await
        .expect("put");
    let bad = [
        (
            "/spp-test/malformed/64001/1/127.0.0.1:7402",
            "garbage".to_owned(),
        ),
        (
            "/spp-test/malformed/64001/1/127.0.0.1:7403",
            record::value(&instance(9999, 100), "x", 1),
        ),
    ];
    for (k, v) in &bad {
        raw.put(*k, v.as_str(), None).await.expect("put");
    }
    let mut b = Agent::spawn(vec![etcd.endpoint()], prefix);
    b.wait_for("B lists only the good one", &[good]).await;

    // Through the watch as well: a good value turned bad disappears.
    let other = instance(7404, 100);
    let other_key = record::key(prefix, &other);
    raw.put(other_key.as_str(), record::value(&other, "x", 1), None)
        .await
        .expect("put");
    b.wait_for("B watches the new one", &[good, other]).await;
    raw.put(other_key.as_str(), "{\"modid\":1}", None)
        .await
        .expect("put");
    b.wait_for("B drops it when it turns bad", &[good]).await;
}

#[tokio::test]
async fn a_watch_behind_a_compaction_asks_for_a_new_listing() {
    let etcd = Etcd::start().await;
    let prefix = "/spp-test/compact/";
    let mut raw = etcd.client().await;
    let one = instance(7501, 100);
    let key = record::key(prefix, &one);
    let first = raw
        .put(key.as_str(), record::value(&one, "x", 1), None)
        .await
        .expect("put");
    let old = first.header().expect("header").revision();
    for _ in 0..3 {
        raw.put(key.as_str(), record::value(&one, "x", 2), None)
            .await
            .expect("put");
    }
    let last = raw.get(key.as_str(), None).await.expect("get");
    let now = last.header().expect("header").revision();
    raw.compact(now, None).await.expect("compact");

    let (out, mut view) = watch::channel(Arc::new(Discovered::default()));
    let settings = EtcdSettings {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.to_owned(),
        ttl: TTL,
        service: "test".to_owned(),
    };
    let mut backend = Backend::new(settings, out);
    let mut client = backend.connect().await.expect("connect");
    let mut stale = backend.watch_from(&mut client, old).await.expect("watch");
    let answer = loop {
        let message = timeout(WAIT, stale.message())
            .await
            .expect("etcd answers the watch")
            .expect("watch message")
            .expect("the stream is open");
        if !message.created() || message.canceled() {
            break message;
        }
    };
    assert!(answer.compact_revision() > 0, "{answer:?}");
    assert_eq!(
        backend.on_watch(&answer).expect("a relist"),
        Watched::Relist
    );

    let _fresh = backend.list_and_watch(&mut client).await.expect("relist");
    let listed = view.borrow_and_update().clone();
    assert_eq!(listed.instances, [one]);
    assert!(listed.error.is_none());
}
