//! The echo service end to end: TCP and UDP on several ports, pipelining,
//! split requests, large and oversized requests, many connections.

use spp_tests::client::{frame, TcpClient, UdpClient};
use spp_tests::{Binaries, Service, ServiceConfig};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn echo_config(workers: u32) -> ServiceConfig {
    ServiceConfig::single(&Binaries::locate().plugin("spp_echo"), workers)
}

fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn tcp_and_udp_echo_on_several_ports() {
    let mut cfg = echo_config(2);
    cfg.listen.push("tcp://127.0.0.1:0".into());
    cfg.listen.push("udp://127.0.0.1:0".into());
    let v6 = ipv6_loopback_available();
    if v6 {
        cfg.listen.push("tcp://[::1]:0".into());
        cfg.listen.push("udp://[::1]:0".into());
    }
    let service = Service::start(&cfg);
    let tcp_count = if v6 { 3 } else { 2 };
    for n in 0..tcp_count {
        let addr = service.addr("tcp", n);
        let mut client = TcpClient::connect(addr).expect("connect");
        for i in 0..20u32 {
            let payload = format!("tcp {addr} #{i}");
            assert_eq!(
                client.call(payload.as_bytes()).expect("tcp call"),
                payload.as_bytes()
            );
        }
    }
    for n in 0..tcp_count {
        let addr = service.addr("udp", n);
        let client = UdpClient::new(addr).expect("udp bind");
        for i in 0..20u32 {
            let payload = format!("udp {addr} #{i}");
            assert_eq!(
                client.call(payload.as_bytes()).expect("udp call"),
                payload.as_bytes()
            );
        }
    }
}

#[test]
fn pipelined_requests_in_one_write_come_back_in_order() {
    let service = Service::start(&echo_config(2));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    const N: usize = 1000;
    let batch: Vec<u8> = (0..N)
        .flat_map(|i| frame(format!("req-{i}").as_bytes()))
        .collect();
    client.stream.write_all(&batch).expect("write batch");
    for i in 0..N {
        assert_eq!(
            client.recv().expect("pipelined response"),
            format!("req-{i}").as_bytes()
        );
    }
}

#[test]
fn a_request_split_byte_by_byte_is_reassembled() {
    let service = Service::start(&echo_config(1));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let request = frame(b"split into single bytes");
    for byte in &request {
        client
            .stream
            .write_all(std::slice::from_ref(byte))
            .expect("write byte");
        client.stream.flush().expect("flush");
        // Pacing, not synchronisation: gives each byte its own segment.
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(client.recv().expect("response"), b"split into single bytes");
}

#[test]
fn a_one_mebibyte_request_is_echoed() {
    let mut cfg = echo_config(1);
    cfg.proxy_extra
        .push("max_request_size = \"1536KiB\"".into());
    cfg.ring_size = "4MiB".into();
    let service = Service::start(&cfg);
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let payload: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let writer_stream = client.stream.try_clone().expect("clone");
    let to_send = frame(&payload);
    let writer = std::thread::spawn(move || (&writer_stream).write_all(&to_send));
    assert_eq!(client.recv().expect("1 MiB response"), payload);
    writer.join().expect("writer thread").expect("write 1 MiB");
}

#[test]
fn an_oversized_request_closes_only_its_connection() {
    let mut cfg = echo_config(1);
    cfg.proxy_extra.push("max_request_size = \"64KiB\"".into());
    let service = Service::start(&cfg);
    let mut good = TcpClient::connect(service.tcp()).expect("connect good");
    assert_eq!(good.call(b"before").expect("before"), b"before");

    let mut bad = TcpClient::connect(service.tcp()).expect("connect bad");
    let big = frame(&vec![7u8; 100 * 1024]);
    let _ = bad.stream.write_all(&big); // may fail midway once the proxy closes
    assert!(
        bad.closed_by_server(),
        "the oversized request's connection must be closed"
    );

    assert_eq!(good.call(b"after").expect("after"), b"after");
    let stats = &service.status()["proxy_stats"];
    assert!(
        stats["oversized"].as_u64().unwrap_or(0) >= 1,
        "oversized not counted: {stats}"
    );
}

#[test]
fn two_hundred_concurrent_connections_are_served() {
    let service = Service::start(&echo_config(2));
    let addr = service.tcp();
    let mut clients: Vec<TcpClient> = (0..200)
        .map(|_| TcpClient::connect(addr).expect("connect"))
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(format!("{round}:{i}").as_bytes()).expect("send");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.recv().expect("recv"), format!("{round}:{i}").as_bytes());
        }
    }
    let active = service.status()["proxy_stats"]["conns_active"].as_u64();
    assert_eq!(active, Some(200));
    drop(clients);
    let _ = TcpStream::connect(addr);
}
