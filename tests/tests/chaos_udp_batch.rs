//! Chaos: UDP read and answered in batches (`recvmmsg`/`sendmmsg`).
//!
//! * Many clients (64 sockets, several datagrams each in flight) each get
//!   exactly their own replies, from the address they sent to: batches mix
//!   clients, and every reply keeps its own address.
//! * One burst of more datagrams than a batch holds is answered whole.
//! * Replies for clients whose sockets closed before they came do not
//!   disturb the others' replies in the same batches.

use spp_tests::client::frame;
use spp_tests::view::proxy_counter;
use spp_tests::{Binaries, Service, ServiceConfig};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// `spp_proxy::udp_batch::UDP_BATCH`: datagrams per `recvmmsg`, replies
/// per `sendmmsg`.
const BATCH: usize = 32;
/// How long a client waits for all its replies.
const REPLY_WAIT: Duration = Duration::from_secs(10);

fn start() -> Service {
    Service::start(&ServiceConfig::single(
        &Binaries::locate().plugin("spp_echo"),
        2,
    ))
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// Sends `payloads` from `sock` to `server`, all before any reply.
fn send_all(sock: &UdpSocket, server: SocketAddr, payloads: &[String]) {
    for p in payloads {
        sock.send_to(&frame(p.as_bytes()), server).expect("send");
    }
}

/// Receives `n` replies on `sock` (within [`REPLY_WAIT`]); each must come
/// from `server`. Returns their payloads.
fn recv_n(sock: &UdpSocket, server: SocketAddr, n: usize) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + REPLY_WAIT;
    while got.len() < n && Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((len, from)) => {
                assert_eq!(from, server, "a reply comes from the address asked");
                assert!(len >= 4, "a framed reply");
                let text = String::from_utf8_lossy(&buf[4..len]).into_owned();
                assert!(got.insert(text.clone()), "a duplicate reply: {text}");
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    got
}

fn payloads(client: usize, round: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|j| format!("client {client} round {round} #{j}"))
        .collect()
}

#[test]
fn many_clients_each_get_exactly_their_own_replies() {
    const CLIENTS: usize = 64;
    const THREADS: usize = 8;
    const IN_FLIGHT: usize = 2;
    const ROUNDS: usize = 10;
    let service = start();
    let server = service.udp();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                let ids: Vec<usize> = (t..CLIENTS).step_by(THREADS).collect();
                let socks: Vec<UdpSocket> = ids.iter().map(|_| client()).collect();
                for round in 0..ROUNDS {
                    for (&id, s) in ids.iter().zip(&socks) {
                        send_all(s, server, &payloads(id, round, IN_FLIGHT));
                    }
                    for (&id, s) in ids.iter().zip(&socks) {
                        let want: BTreeSet<String> =
                            payloads(id, round, IN_FLIGHT).into_iter().collect();
                        assert_eq!(
                            recv_n(s, server, IN_FLIGHT),
                            want,
                            "client {id} round {round}: exactly its own replies"
                        );
                    }
                }
            });
        }
    });
    let status = service.status();
    assert_eq!(proxy_counter(&status, "udp_dropped"), 0, "{status}");
}

#[test]
fn a_burst_larger_than_a_batch_is_answered_whole() {
    const BURST: usize = 3 * BATCH + 5;
    let service = start();
    let server = service.udp();
    let sock = client();
    let other = client();
    for round in 0..3 {
        let mine = payloads(0, round, BURST);
        let theirs = payloads(1, round, BATCH / 2);
        send_all(&sock, server, &mine);
        send_all(&other, server, &theirs);
        assert_eq!(
            recv_n(&sock, server, BURST),
            mine.into_iter().collect::<BTreeSet<_>>(),
            "round {round}: every datagram of the burst answered once"
        );
        assert_eq!(
            recv_n(&other, server, BATCH / 2),
            theirs.into_iter().collect::<BTreeSet<_>>(),
            "round {round}: the other client's replies are its own"
        );
    }
}

#[test]
fn replies_for_closed_clients_do_not_disturb_the_others() {
    const CLIENTS: usize = 16;
    const EACH: usize = 4;
    let service = start();
    let server = service.udp();
    let proxy = service.pid_of("proxy").expect("proxy pid");
    for round in 0..5 {
        let socks: Vec<UdpSocket> = (0..CLIENTS).map(|_| client()).collect();
        // Interleaved, so closed and live clients share batches.
        for j in 0..EACH {
            for (i, s) in socks.iter().enumerate() {
                let p = format!("client {i} round {round} #{j}");
                s.send_to(&frame(p.as_bytes()), server).expect("send");
            }
        }
        // Every odd client goes away before its replies come.
        let (live, gone): (Vec<_>, Vec<_>) =
            socks.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        drop(gone);
        for (i, s) in &live {
            let want: BTreeSet<String> = payloads(*i, round, EACH).into_iter().collect();
            assert_eq!(
                recv_n(s, server, EACH),
                want,
                "live client {i} round {round}: all its replies"
            );
        }
    }
    assert_eq!(
        service.pid_of("proxy"),
        Some(proxy),
        "the same proxy serves on"
    );
    let s = client();
    let last = payloads(99, 0, 1);
    send_all(&s, server, &last);
    assert_eq!(recv_n(&s, server, 1), last.into_iter().collect());
}
