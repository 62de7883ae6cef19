//! The embedded registry: files written atomically (never through a
//! planted link), found by a listing (links, FIFOs skipped without
//! blocking), a dead writer's files deleted, a live writer's old heartbeat
//! left out but kept, malformed ones skipped; two backends on one directory see each other,
//! a withdrawal and a deregistration.

use super::*;
use spp_ipc::l5::Sid;
use std::net::SocketAddr;

const TTL: Duration = Duration::from_secs(10);

fn instance(modid: u32, addr: &str) -> Instance {
    Instance {
        sid: Sid { modid, cmdid: 1 },
        addr: addr.parse().unwrap(),
        weight: 100,
    }
}

fn record(service: &str, pid: u32, age: Duration, instances: Vec<Instance>) -> Record {
    Record {
        service: service.into(),
        pid,
        heartbeat_ms: unix_ms(SystemTime::now() - age),
        instances,
    }
}

fn put(dir: &Path, rec: &Record) -> PathBuf {
    let file = dir.join(file_name(&rec.service, rec.pid));
    write_record(&file, rec).unwrap();
    file
}

fn addrs(instances: &[Instance]) -> Vec<String> {
    instances.iter().map(|i| i.addr.to_string()).collect()
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn live_registrations_are_found_sorted_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let a = put(
        dir.path(),
        &record(
            "a",
            me,
            Duration::ZERO,
            vec![instance(7, "127.0.0.1:2"), instance(7, "127.0.0.1:1")],
        ),
    );
    put(
        dir.path(),
        &record(
            "b",
            me,
            Duration::from_secs(1),
            vec![instance(7, "127.0.0.1:1")],
        ),
    );
    // Written through a temporary file that is gone afterwards.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let text = std::fs::read_to_string(&a).unwrap();
    let back: Record = serde_json::from_str(&text).unwrap();
    assert_eq!(back.pid, me);
    let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
    assert_eq!(addrs(&found.instances), ["127.0.0.1:1", "127.0.0.1:2"]);
    assert!(found.removed.is_empty() && found.malformed.is_empty());
    // A directory that does not exist yet holds nothing.
    let none = scan_dir(&dir.path().join("nope"), TTL, SystemTime::now()).unwrap();
    assert!(none.instances.is_empty());
}

#[test]
fn file_names_stay_one_visible_file() {
    assert_eq!(file_name("echo-1.a", 7), "echo-1.a-7.json");
    assert_eq!(file_name("../a/b", 7), "_._a_b-7.json");
    assert_eq!(file_name(".x", 7), "_x-7.json");
}

#[test]
fn a_registration_whose_process_is_gone_is_dropped_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dead = put(
        dir.path(),
        &record(
            "gone",
            dead_pid(),
            Duration::ZERO,
            vec![instance(1, "127.0.0.1:9")],
        ),
    );
    let live = put(
        dir.path(),
        &record(
            "here",
            std::process::id(),
            Duration::ZERO,
            vec![instance(1, "127.0.0.1:8")],
        ),
    );
    let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
    assert_eq!(addrs(&found.instances), ["127.0.0.1:8"]);
    assert_eq!(found.removed.len(), 1);
    assert!(!dead.exists());
    assert!(live.exists());
}

#[test]
fn a_live_registration_with_an_old_heartbeat_is_left_out_but_kept() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let stale = put(
        dir.path(),
        &record(
            "old",
            me,
            TTL + Duration::from_secs(1),
            vec![instance(1, "127.0.0.1:9")],
        ),
    );
    let fresh = put(
        dir.path(),
        &record(
            "new",
            me,
            TTL - Duration::from_secs(1),
            vec![instance(1, "127.0.0.1:8")],
        ),
    );
    let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
    assert_eq!(addrs(&found.instances), ["127.0.0.1:8"]);
    assert_eq!(found.stale, [file_name("old", me)]);
    assert!(found.removed.is_empty());
    assert!(stale.exists());

    // A wall clock that jumps a day ahead hides every live registration
    // but deletes none of them.
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let found = scan_dir(dir.path(), TTL, later).unwrap();
    assert!(found.instances.is_empty() && found.removed.is_empty());
    assert_eq!(found.stale.len(), 2);
    assert!(stale.exists() && fresh.exists());
}

#[test]
fn links_and_fifos_are_skipped_without_following_or_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    // A valid registration elsewhere, linked into the directory.
    let outside = tempfile::tempdir().unwrap();
    let target = put(
        outside.path(),
        &record("far", me, Duration::ZERO, vec![instance(1, "127.0.0.1:5")]),
    );
    std::os::unix::fs::symlink(&target, dir.path().join("link.json")).unwrap();
    // A FIFO nobody writes to: opening it blocking would hang the scan.
    nix::unistd::mkfifo(
        &dir.path().join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    put(
        dir.path(),
        &record("ok", me, Duration::ZERO, vec![instance(1, "127.0.0.1:8")]),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(scan_dir(&path, TTL, SystemTime::now()));
    });
    let found = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the scan does not block on a FIFO")
        .unwrap();
    assert_eq!(addrs(&found.instances), ["127.0.0.1:8"]);
    let mut skipped: Vec<&str> = found.malformed.iter().map(|(n, _)| n.as_str()).collect();
    skipped.sort_unstable();
    assert_eq!(skipped, ["fifo.json", "link.json"]);
}

#[test]
fn writing_never_follows_a_link_planted_at_the_old_temporary_name() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let rec = record("w", std::process::id(), Duration::ZERO, vec![]);
    let name = file_name("w", rec.pid);
    // The name earlier versions used for their temporary file.
    std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{name}.tmp"))).unwrap();
    for _ in 0..3 {
        put(dir.path(), &rec);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let back: Record =
        serde_json::from_slice(&std::fs::read(dir.path().join(&name)).unwrap()).unwrap();
    assert_eq!(back, rec);
    // No temporary file is left behind (only the planted link).
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn an_unsafe_directory_is_told_apart() {
    assert!(dir_hazard(0o40755, 1000, 1000).is_none());
    assert!(dir_hazard(0o41777, 0, 1000).is_none());
    assert!(dir_hazard(0o40777, 1000, 1000).unwrap().contains("sticky"));
    assert!(dir_hazard(0o40775, 1000, 1000).is_some());
    assert!(dir_hazard(0o40755, 1001, 1000)
        .unwrap()
        .contains("uid 1001"));
}

#[test]
fn malformed_files_are_skipped_and_the_rest_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    put(
        dir.path(),
        &record("ok", me, Duration::ZERO, vec![instance(1, "127.0.0.1:8")]),
    );
    std::fs::write(dir.path().join("garbage.json"), "{not json").unwrap();
    std::fs::write(
        dir.path().join("big.json"),
        vec![b' '; defaults::L5_MAX_REGISTRY_FILE_BYTES as usize + 1],
    )
    .unwrap();
    let mut heavy = record(
        "heavy",
        me,
        Duration::ZERO,
        vec![instance(1, "127.0.0.1:7")],
    );
    heavy.instances[0].weight = 1;
    put(dir.path(), &heavy);
    let mut nopid = record("nopid", 0, Duration::ZERO, vec![instance(1, "127.0.0.1:6")]);
    nopid.pid = 0;
    std::fs::write(
        dir.path().join("nopid.json"),
        serde_json::to_vec(&nopid).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
    assert_eq!(addrs(&found.instances), ["127.0.0.1:8"]);
    let mut skipped: Vec<&str> = found.malformed.iter().map(|(n, _)| n.as_str()).collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        [
            "big.json",
            "garbage.json",
            &file_name("heavy", me),
            "nopid.json"
        ]
    );
    // Skipped, not deleted: it may be a writer of another version.
    assert!(dir.path().join("garbage.json").exists());
}

#[test]
fn an_abandoned_temporary_file_is_deleted_once_older_than_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join(".x-1.json.tmp");
    std::fs::write(&tmp, "{").unwrap();
    let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
    assert!(found.removed.is_empty() && tmp.exists());
    let later = SystemTime::now() + TTL * 2;
    let found = scan_dir(dir.path(), TTL, later).unwrap();
    assert_eq!(found.removed, [".x-1.json.tmp"]);
    assert!(!tmp.exists());

    // One named after its writer is deleted only once that writer is gone.
    let mine = format!(".x-1.json.{}-0-0.tmp", std::process::id());
    let gone = format!(".x-1.json.{}-0-0.tmp", dead_pid());
    std::fs::write(dir.path().join(&mine), "{").unwrap();
    std::fs::write(dir.path().join(&gone), "{").unwrap();
    let found = scan_dir(dir.path(), TTL, later).unwrap();
    assert_eq!(found.removed, std::slice::from_ref(&gone));
    assert!(dir.path().join(&mine).exists());
    assert_eq!(tmp_writer(&mine), Some(std::process::id()));
}

fn settings(dir: &Path, service: &str) -> EmbeddedSettings {
    EmbeddedSettings {
        dir: dir.to_path_buf(),
        ttl: TTL,
        scan: Duration::from_millis(20),
        service: service.into(),
        pid: std::process::id(),
    }
}

/// Waits (bounded) until the published view satisfies `ok`.
async fn until(
    rx: &mut watch::Receiver<Arc<Discovered>>,
    what: &str,
    ok: impl Fn(&Discovered) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ok(&rx.borrow_and_update()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}: {:?}",
        *rx.borrow()
    );
}

#[test]
fn two_backends_on_one_directory_see_each_other_and_deregister() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = |service: &str| {
            let (tx, rx) = mpsc::channel(4);
            let (out, seen) = watch::channel(Arc::new(Discovered::default()));
            let task = tokio::spawn(run(settings(dir.path(), service), rx, out));
            (tx, seen, task)
        };
        let (a_tx, mut a_seen, a_task) = start("a");
        let (b_tx, mut b_seen, b_task) = start("b");
        let a1 = instance(5, "127.0.0.1:1001");
        let b1 = instance(5, "127.0.0.1:1002");
        a_tx.send(Command::Register(vec![a1])).await.unwrap();
        b_tx.send(Command::Register(vec![b1])).await.unwrap();
        let both = |d: &Discovered| d.instances == [a1, b1] && d.error.is_none() && d.at.is_some();
        until(&mut a_seen, "a sees both", both).await;
        until(&mut b_seen, "b sees both", both).await;

        // A withdrawal keeps the file, empty.
        b_tx.send(Command::Register(Vec::new())).await.unwrap();
        until(&mut a_seen, "b withdrawn", |d| d.instances == [a1]).await;
        let b_file = dir.path().join(file_name("b", std::process::id()));
        assert!(b_file.exists());

        // Deregistration removes the file and ends the task.
        b_tx.send(Command::Deregister).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), b_task)
            .await
            .expect("b ends")
            .unwrap();
        assert!(!b_file.exists());

        // A closed command channel deregisters too.
        let a_file = dir.path().join(file_name("a", std::process::id()));
        assert!(a_file.exists());
        drop(a_tx);
        tokio::time::timeout(Duration::from_secs(10), a_task)
            .await
            .expect("a ends")
            .unwrap();
        assert!(!a_file.exists());
    });
}

#[test]
fn an_unusable_directory_is_reported_as_the_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: nothing can be listed or
    // written there.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = mpsc::channel(4);
        let (out, mut seen) = watch::channel(Arc::new(Discovered::default()));
        let task = tokio::spawn(run(settings(&blocked, "c"), rx, out));
        let addr: SocketAddr = "127.0.0.1:1003".parse().unwrap();
        tx.send(Command::Register(vec![Instance {
            sid: Sid { modid: 5, cmdid: 1 },
            addr,
            weight: 100,
        }]))
        .await
        .unwrap();
        until(&mut seen, "the error", |d| d.error.is_some()).await;
        tx.send(Command::Deregister).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ends")
            .unwrap();
    });
}

#[test]
fn a_registration_in_another_users_name_is_ignored() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    put(
        dir.path(),
        &record("ok", me, Duration::ZERO, vec![instance(1, "127.0.0.1:8")]),
    );
    let forged = put(
        dir.path(),
        &record(
            "forged",
            me,
            Duration::ZERO,
            vec![instance(1, "127.0.0.1:9")],
        ),
    );
    let mine = std::fs::metadata(&forged).unwrap().uid();
    let other = if mine == 0 { 65_534 } else { 0 };
    if std::os::unix::fs::chown(&forged, Some(other), None).is_err() {
        eprintln!("skipped the chown half: cannot chown as uid {mine}");
    } else {
        let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
        assert_eq!(addrs(&found.instances), ["127.0.0.1:8"]);
        let why = &found.malformed[0].1;
        assert!(why.contains(&format!("owned by uid {other}")), "{why}");
    }
    // The rule itself, whoever runs the test.
    let rec = record("x", me, Duration::ZERO, vec![instance(1, "127.0.0.1:9")]);
    let now = unix_ms(SystemTime::now());
    assert!(trusted(&rec, mine, now).is_ok());
    assert!(trusted(&rec, mine + 1, now).is_err());
}

#[test]
fn far_future_heartbeats_and_heavy_weights_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let now = SystemTime::now();
    let mut skewed = record(
        "skewed",
        me,
        Duration::ZERO,
        vec![instance(1, "127.0.0.1:5")],
    );
    skewed.heartbeat_ms = unix_ms(now + defaults::L5_MAX_CLOCK_SKEW / 2);
    put(dir.path(), &skewed);
    let mut future = record(
        "future",
        me,
        Duration::ZERO,
        vec![instance(1, "127.0.0.1:6")],
    );
    future.heartbeat_ms = unix_ms(now + Duration::from_secs(86_400 * 365));
    put(dir.path(), &future);
    let mut heavy = record(
        "heavy",
        me,
        Duration::ZERO,
        vec![instance(1, "127.0.0.1:7")],
    );
    heavy.instances[0].weight = defaults::L5_MAX_REGISTRY_WEIGHT + 1;
    put(dir.path(), &heavy);
    let mut max = record("max", me, Duration::ZERO, vec![instance(1, "127.0.0.1:8")]);
    max.instances[0].weight = defaults::L5_MAX_REGISTRY_WEIGHT;
    put(dir.path(), &max);
    let found = scan_dir(dir.path(), TTL, now).unwrap();
    assert_eq!(addrs(&found.instances), ["127.0.0.1:5", "127.0.0.1:8"]);
    let why: Vec<&str> = found.malformed.iter().map(|(_, w)| w.as_str()).collect();
    assert!(
        why.iter().any(|w| w.contains("ahead of this clock")),
        "{why:?}"
    );
    assert!(
        why.iter().any(|w| w.contains("is more than 1000")),
        "{why:?}"
    );
}

#[test]
fn a_directory_writable_by_others_without_the_sticky_bit_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let file = dir.path().join(file_name("a", me));
    let rec = record("a", me, Duration::ZERO, vec![instance(1, "127.0.0.1:8")]);
    for mode in [0o777, 0o775] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let err = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap_err();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("without the sticky bit"), "{err}");
        assert!(write_record(&file, &rec).unwrap_err().contains("sticky"));
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    write_record(&file, &rec).unwrap();
    assert_eq!(
        scan_dir(dir.path(), TTL, SystemTime::now())
            .unwrap()
            .instances
            .len(),
        1
    );
    // A record is readable by every user, whatever the umask.
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o644);
    // A missing directory is created sticky and open to every user.
    let fresh = dir.path().join("new/reg");
    write_record(&fresh.join(file_name("a", me)), &rec).unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o1777);
}

/// A process of uid `uid` that, with `listen`, listens on a fresh
/// 127.0.0.1 TCP port (printed on its stdout); killed and reaped on drop.
struct ForeignProcess {
    child: std::process::Child,
    port: Option<u16>,
}

impl ForeignProcess {
    fn start(uid: u32, listen: bool) -> Option<Self> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        const LISTENER: &str = "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)";
        let mut cmd = if listen {
            let mut cmd = std::process::Command::new("python3");
            cmd.args(["-c", LISTENER]);
            cmd
        } else {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("60");
            cmd
        };
        cmd.uid(uid)
            .gid(uid)
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null());
        let mut child = cmd.spawn().ok()?;
        let mut port = None;
        if listen {
            let out = child.stdout.take()?;
            let mut line = String::new();
            // One line, or EOF if it could not listen (bounded by the
            // child itself: it prints at once or dies).
            std::io::BufReader::new(out).read_line(&mut line).ok()?;
            port = line.trim().parse().ok();
            if port.is_none() {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
        Some(ForeignProcess { child, port })
    }
}

impl Drop for ForeignProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn another_users_registration_is_taken_only_for_addresses_it_listens_on() {
    const NOBODY: u32 = 65_534;
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED: needs root to run processes as uid {NOBODY}");
        return;
    }
    let (Some(listener), Some(idle)) = (
        ForeignProcess::start(NOBODY, true),
        ForeignProcess::start(NOBODY, false),
    ) else {
        eprintln!("SKIPPED: cannot run python3 / sleep as uid {NOBODY}");
        return;
    };
    let port = listener.port.unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let held = format!("127.0.0.1:{port}");
    // Its own listener: taken.
    let honest = put(
        dir.path(),
        &record(
            "honest",
            listener.child.id(),
            Duration::ZERO,
            vec![instance(1, &held)],
        ),
    );
    // Someone else's address (this test's own listener, uid 0): refused.
    let mine = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let squatted = put(
        dir.path(),
        &record(
            "squatter",
            idle.child.id(),
            Duration::ZERO,
            vec![instance(1, &mine.local_addr().unwrap().to_string())],
        ),
    );
    for file in [&honest, &squatted] {
        std::os::unix::fs::chown(file, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let found = scan_dir(dir.path(), TTL, SystemTime::now()).unwrap();
    assert_eq!(addrs(&found.instances), [held]);
    assert_eq!(found.malformed.len(), 1, "{:?}", found.malformed);
    let why = &found.malformed[0].1;
    assert!(why.contains("does not listen on that address"), "{why}");
}
