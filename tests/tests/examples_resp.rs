//! `examples/resp`, the RESP (redis protocol) plugin, end to end over a
//! raw TCP client: the commands answer as redis does (inline and
//! multibulk), keys expire, pipelined commands are answered in order, a
//! large value arriving in pieces is framed once whole, a malformed stream
//! closes only its own connection (the key space in the one worker
//! survives), and — when `redis-benchmark` is installed — its ping, set
//! and get tests run without an error.

use spp_tests::{wait_for, Binaries, Service, ServiceConfig};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// How long a client waits for one answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waits for a key to expire.
const EXPIRY_WAIT: Duration = Duration::from_secs(5);

/// One RESP2 value as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

fn bulk(v: &str) -> Value {
    Value::Bulk(Some(v.as_bytes().to_vec()))
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

/// A multibulk command.
fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A multibulk command from whitespace-separated words.
fn cmd(line: &str) -> Vec<u8> {
    let parts: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
    encode(&parts)
}

struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client {
            writer: stream,
            reader,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        assert!(line.ends_with("\r\n"), "truncated line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn read(&mut self) -> Value {
        let line = self.line();
        let (tag, rest) = line.split_at(1);
        match tag {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Int(rest.parse().expect("integer")),
            "$" => {
                let len: i64 = rest.parse().expect("bulk length");
                if len < 0 {
                    return Value::Bulk(None);
                }
                let mut body = vec![0; len as usize + 2];
                self.reader.read_exact(&mut body).expect("bulk body");
                assert_eq!(&body[len as usize..], b"\r\n");
                body.truncate(len as usize);
                Value::Bulk(Some(body))
            }
            "*" => {
                let n: i64 = rest.parse().expect("array length");
                if n < 0 {
                    return Value::Array(None);
                }
                Value::Array(Some((0..n).map(|_| self.read()).collect()))
            }
            _ => panic!("not RESP: {line:?}"),
        }
    }

    /// Sends `line` as a multibulk command and reads the answer.
    fn call(&mut self, line: &str) -> Value {
        self.send(&cmd(line));
        self.read()
    }

    /// Whether the server closed the connection (EOF or reset).
    fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            Ok(_) => false,
        }
    }
}

fn resp_service() -> Service {
    let plugin = Binaries::locate().plugin("spp_resp");
    let mut cfg = ServiceConfig::single(&plugin, 1);
    cfg.listen = vec!["tcp://127.0.0.1:0".into()];
    let group = cfg.group_mut();
    group.min_workers = Some(1);
    group.max_workers = Some(1);
    Service::start(&cfg)
}

#[test]
fn commands_answer_as_redis_does() {
    let service = resp_service();
    let mut c = Client::connect(service.tcp());
    assert_eq!(c.call("PING"), Value::Simple("PONG".into()));
    assert_eq!(c.call("GET k"), Value::Bulk(None));
    assert_eq!(c.call("SET k v1"), ok());
    assert_eq!(c.call("GET k"), bulk("v1"));
    assert_eq!(c.call("SET k2 v2"), ok());
    assert_eq!(
        c.call("MGET k nope k2"),
        Value::Array(Some(vec![bulk("v1"), Value::Bulk(None), bulk("v2")]))
    );
    assert_eq!(c.call("DEL k nope"), Value::Int(1));
    assert_eq!(c.call("GET k"), Value::Bulk(None));
    // Binary-safe values.
    c.send(&encode(&[b"SET", b"bin", b"a\r\nb\0c"]));
    assert_eq!(c.read(), ok());
    assert_eq!(c.call("GET bin"), Value::Bulk(Some(b"a\r\nb\0c".to_vec())));
    // Inline commands, mixed with multibulk on one connection.
    c.send(b"SET inl hello\r\nGET inl\n\r\nPING\r\n");
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), bulk("hello"));
    assert_eq!(c.read(), Value::Simple("PONG".into()));
    // Errors are RESP errors and the connection stays.
    assert_eq!(
        c.call("GET"),
        Value::Error("ERR wrong number of arguments for 'get' command".into())
    );
    assert!(
        matches!(c.call("NOSUCH x"), Value::Error(e) if e.starts_with("ERR unknown command 'NOSUCH'"))
    );
    assert_eq!(
        c.call("SET k v EX nope"),
        Value::Error("ERR value is not an integer or out of range".into())
    );
    // What redis-benchmark asks at start.
    assert_eq!(
        c.call("CONFIG GET save"),
        Value::Array(Some(vec![bulk("save"), bulk("")]))
    );
    assert_eq!(c.call("PING"), Value::Simple("PONG".into()));
    // QUIT answers, then closes.
    assert_eq!(c.call("QUIT"), ok());
    assert!(c.closed_by_server());
}

#[test]
fn keys_expire() {
    let service = resp_service();
    let mut c = Client::connect(service.tcp());
    assert_eq!(c.call("SET short v PX 100"), ok());
    assert_eq!(c.call("SET long v EX 100"), ok());
    assert_eq!(c.call("SET e v"), ok());
    assert_eq!(c.call("TTL e"), Value::Int(-1));
    assert_eq!(c.call("EXPIRE e 1"), Value::Int(1));
    assert_eq!(c.call("EXPIRE nope 1"), Value::Int(0));
    assert!(matches!(c.call("PTTL e"), Value::Int(ms) if ms > 0 && ms <= 1000));
    let gone = wait_for(EXPIRY_WAIT, || {
        (c.call("MGET short e") == Value::Array(Some(vec![Value::Bulk(None), Value::Bulk(None)])))
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "short and e did not expire within {EXPIRY_WAIT:?}"
    );
    assert_eq!(c.call("GET long"), bulk("v"));
    assert_eq!(c.call("EXISTS short e long"), Value::Int(1));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let service = resp_service();
    let mut c = Client::connect(service.tcp());
    const N: usize = 500;
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend(cmd(&format!("SET key{i} value{i}")));
        batch.extend(cmd(&format!("GET key{i}")));
        batch.extend(cmd("INCR counter"));
    }
    c.send(&batch);
    for i in 0..N {
        assert_eq!(c.read(), ok(), "SET #{i}");
        assert_eq!(c.read(), bulk(&format!("value{i}")), "GET #{i}");
        assert_eq!(c.read(), Value::Int(i as i64 + 1), "INCR #{i}");
    }
}

#[test]
fn a_large_value_arriving_in_pieces_is_framed_once_whole() {
    let service = resp_service();
    let mut c = Client::connect(service.tcp());
    let value = vec![b'x'; 200 * 1024];
    let req = encode(&[b"SET", b"big", &value]);
    for piece in req.chunks(16 * 1024) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.read(), ok());
    assert_eq!(c.call("GET big"), Value::Bulk(Some(value)));
    assert_eq!(c.call("DBSIZE"), Value::Int(1));
}

#[test]
fn a_malformed_stream_closes_only_its_connection() {
    let service = resp_service();
    let mut good = Client::connect(service.tcp());
    assert_eq!(good.call("SET kept 1"), ok());
    let worker = service.pid_of("worker-g1-0").expect("worker pid");
    for garbage in [
        &b"*x\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*1\r\n$3\r\nGETxx",
        b"*1\r\n$-5\r\n",
    ] {
        let mut bad = Client::connect(service.tcp());
        assert_eq!(bad.call("PING"), Value::Simple("PONG".into()));
        bad.send(garbage);
        assert!(
            bad.closed_by_server(),
            "{garbage:?} did not close its connection"
        );
        assert_eq!(good.call("INCR kept"), Value::Int(2));
        assert_eq!(good.call("SET kept 1"), ok());
    }
    assert_eq!(good.call("GET kept"), bulk("1"));
    assert_eq!(
        service.pid_of("worker-g1-0"),
        Some(worker),
        "the worker was replaced"
    );
}

#[test]
fn redis_benchmark_runs_without_errors() {
    let Ok(out) = Command::new("redis-benchmark").arg("--version").output() else {
        eprintln!("skipped: redis-benchmark is not installed (apt-get install redis-tools)");
        return;
    };
    assert!(out.status.success());
    let service = resp_service();
    let addr = service.tcp();
    let out = Command::new("timeout")
        .args(["60", "redis-benchmark", "-h"])
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["-q", "-n", "2000", "-c", "10", "-t", "ping,set,get"])
        .output()
        .expect("run redis-benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark failed: {stdout}\n{stderr}"
    );
    let text = format!("{stdout}\n{stderr}");
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("{test}: ")) && l.contains("requests per second")),
            "no result for {test}: {text}"
        );
    }
    let lower = text.to_lowercase();
    assert!(
        !lower.contains("error") && !lower.contains("warning"),
        "redis-benchmark reported a problem: {text}"
    );
    let mut c = Client::connect(addr);
    assert!(matches!(c.call("DBSIZE"), Value::Int(n) if n >= 1));
}
