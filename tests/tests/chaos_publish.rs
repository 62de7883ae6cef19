//! The proxy's bounded turns (issue 14, one-proxy data path): a turn reads
//! at most `TURN_READ_CONNS` connections or `TURN_READ_BYTES` bytes and
//! leaves the other ready connections for the next turn; a ring is
//! published within a turn once enough is pushed to it; the worker frees
//! request-ring space after `BATCH_BYTES`; a large response is written
//! straight from the response ring. None of it may lose or reorder a
//! request: every client here checks every answer.

use spp_tests::client::TcpClient;
use spp_tests::{Binaries, Service, ServiceConfig};
use std::net::Shutdown;

/// `spp_proxy::event_loop::TURN_READ_CONNS` (this crate runs the binaries
/// and does not link the proxy).
const TURN_READ_CONNS: usize = 1024;
/// `spp_proxy::event_loop::TURN_READ_BYTES`.
const TURN_READ_BYTES: usize = 512 << 10;

fn echo_config(workers: u32) -> ServiceConfig {
    ServiceConfig::single(&Binaries::locate().plugin("spp_echo"), workers)
}

/// Several turns' worth of ready connections, each with one request
/// waiting: all are answered, in every round; in the last round each
/// client also shuts its sending side with the request (the FIN comes with
/// the bytes, also for a connection whose read waits for the next turn),
/// and still gets its answer.
#[test]
fn more_ready_connections_than_a_turn_reads_are_all_answered() {
    let service = Service::start(&echo_config(1));
    let addr = service.tcp();
    let n = TURN_READ_CONNS + 17;
    let mut clients: Vec<TcpClient> = (0..n)
        .map(|_| TcpClient::connect(addr).expect("connect"))
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(format!("{round}:{i}").as_bytes()).expect("send");
            if round == 2 {
                c.stream.shutdown(Shutdown::Write).expect("shutdown");
            }
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(
                c.recv().expect("answer"),
                format!("{round}:{i}").as_bytes(),
                "round {round}, client {i}"
            );
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            c.closed_by_server(),
            "client {i} was not closed after its FIN"
        );
    }
    let stats = &service.status()["proxy_stats"];
    assert_eq!(stats["ring_full"].as_u64(), Some(0), "{stats}");
}

/// Large requests from many connections at once, more bytes per round
/// than a turn reads, and one larger than the proxy's read buffer used to
/// be: every answer comes back whole and in order, nothing meets a full
/// ring.
#[test]
fn large_requests_from_many_connections_are_answered_whole() {
    let service = Service::start(&echo_config(1));
    let addr = service.tcp();
    const CLIENTS: usize = 16;
    const SIZE: usize = 64 << 10;
    const { assert!(CLIENTS * SIZE > TURN_READ_BYTES) };
    let payload = |round: usize, i: usize, len: usize| -> Vec<u8> {
        (0..len)
            .map(|k| ((k + 7 * i + round) % 251) as u8)
            .collect()
    };
    let mut clients: Vec<TcpClient> = (0..CLIENTS)
        .map(|_| TcpClient::connect(addr).expect("connect"))
        .collect();
    for round in 0..4 {
        for (i, c) in clients.iter_mut().enumerate() {
            // Two pipelined requests each: the second behind a large one.
            c.send(&payload(round, i, SIZE)).expect("send large");
            c.send(format!("small {round}:{i}").as_bytes())
                .expect("send small");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert!(
                c.recv().expect("large answer") == payload(round, i, SIZE),
                "round {round}, client {i}: large answer differs"
            );
            assert_eq!(
                c.recv().expect("small answer"),
                format!("small {round}:{i}").as_bytes()
            );
        }
    }
    let big = payload(9, 9, 300 << 10);
    let mut one = TcpClient::connect(addr).expect("connect");
    let writer_stream = one.stream.try_clone().expect("clone");
    let to_send = spp_tests::client::frame(&big);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        (&writer_stream).write_all(&to_send)
    });
    assert!(
        one.recv().expect("300 KiB answer") == big,
        "300 KiB answer differs"
    );
    writer
        .join()
        .expect("writer thread")
        .expect("write 300 KiB");
    let stats = &service.status()["proxy_stats"];
    assert_eq!(stats["ring_full"].as_u64(), Some(0), "{stats}");
}
