//! End-to-end tests of the `spp-echo-direct` binary: it is started on
//! ephemeral ports, its `listening ...` lines are read from stdout, and
//! real clients check pipelined, split, large and malformed TCP frames, UDP
//! datagrams, and a clean exit on SIGTERM.

use spp_plugin_api::framing::encode_u32_be_prefixed;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a client waits for any reply before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary running; killed and reaped on drop.
struct Direct {
    child: Child,
    tcp: SocketAddr,
    udp: SocketAddr,
}

impl Direct {
    fn start(extra: &[&str]) -> Direct {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spp-echo-direct"))
            .args(["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn spp-echo-direct");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let mut addr = |proto: &str| -> SocketAddr {
            let line = lines
                .next()
                .expect("a listening line")
                .expect("readable stdout");
            let rest = line
                .strip_prefix(&format!("listening {proto} "))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            rest.parse().expect("an address")
        };
        let tcp = addr("tcp");
        let udp = addr("udp");
        assert_ne!(tcp.port(), 0);
        assert_ne!(udp.port(), 0);
        Direct { child, tcp, udp }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.tcp).expect("connect");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|k| (i * 31 + k) as u8).collect();
    encode_u32_be_prefixed(&payload)
}

#[test]
fn pipelined_frames_come_back_in_order() {
    let direct = Direct::start(&[]);
    let mut client = direct.connect();
    let stream: Vec<u8> = (0..500).flat_map(|i| frame(i, i % 200)).collect();
    client.write_all(&stream).unwrap();
    let mut got = vec![0u8; stream.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, stream);
}

#[test]
fn frames_split_across_writes_are_reassembled() {
    let direct = Direct::start(&[]);
    let mut client = direct.connect();
    client.set_nodelay(true).unwrap();
    let stream: Vec<u8> = (0..20).flat_map(|i| frame(i, 100)).collect();
    // Cut points that fall inside headers and payloads alike.
    for piece in stream.chunks(7) {
        client.write_all(piece).unwrap();
    }
    let mut got = vec![0u8; stream.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, stream);
    // An empty payload is a frame too.
    client.write_all(&frame(0, 0)).unwrap();
    let mut empty = [0xFFu8; 4];
    client.read_exact(&mut empty).unwrap();
    assert_eq!(empty, [0; 4]);
}

#[test]
fn a_client_slower_than_its_replies_gets_them_all() {
    // A small pending limit makes the server pause reading this client.
    let direct = Direct::start(&["--max-pending", "64KiB"]);
    let mut client = direct.connect();
    let mut writer = client.try_clone().unwrap();
    let stream: Vec<u8> = (0..256).flat_map(|i| frame(i, 64 * 1024)).collect();
    let expected = stream.clone();
    let sender = std::thread::spawn(move || writer.write_all(&stream));
    let mut got = vec![0u8; expected.len()];
    client.read_exact(&mut got).unwrap();
    sender.join().unwrap().unwrap();
    assert!(got == expected, "echoed bytes differ");
}

#[test]
fn a_frame_over_the_limit_closes_the_connection_after_earlier_replies() {
    let direct = Direct::start(&["--max-payload", "1024"]);
    let mut client = direct.connect();
    let good = frame(1, 1024);
    let mut bytes = good.clone();
    bytes.extend_from_slice(&frame(2, 1025));
    client.write_all(&bytes).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, good);
    // The server lives on for others.
    let mut other = direct.connect();
    other.write_all(&frame(3, 10)).unwrap();
    let mut reply = vec![0u8; 14];
    other.read_exact(&mut reply).unwrap();
    assert_eq!(reply, frame(3, 10));
}

#[test]
fn udp_datagrams_are_echoed_and_bad_ones_dropped() {
    let direct = Direct::start(&[]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    sock.connect(direct.udp).unwrap();
    // A truncated frame and an empty datagram get no answer ...
    sock.send(&frame(9, 100)[..50]).unwrap();
    sock.send(&[]).unwrap();
    // ... so the first reply is the first good frame's.
    let mut buf = [0u8; 2048];
    for i in 0..10 {
        let request = frame(i, 64 + i);
        sock.send(&request).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &request[..]);
    }
    // Bytes after the frame are not echoed.
    let mut padded = frame(11, 8);
    padded.extend_from_slice(b"trailer");
    sock.send(&padded).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &frame(11, 8)[..]);
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut direct = Direct::start(&[]);
    let _idle = direct.connect();
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(direct.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = direct.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn no_listener_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_spp-echo-direct"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tcp"), "{err}");
}
