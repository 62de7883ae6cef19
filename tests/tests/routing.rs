//! Routing between groups, and plugins written in C.

use spp_tests::client::{TcpClient, UdpClient};
use spp_tests::{Binaries, GroupConfig, Service, ServiceConfig};

#[test]
fn route_sends_requests_to_the_group_their_first_byte_names() {
    let bins = Binaries::locate();
    let router = bins.plugin("spp_two_group");
    let mut cfg = ServiceConfig::single(&router, 1);
    cfg.groups = vec![
        GroupConfig::new(1, &bins.plugin("spp_echo"), 1),
        GroupConfig::new(2, &router, 1),
    ];
    let service = Service::start(&cfg);
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    for i in 0..20 {
        assert_eq!(
            client.call(format!("1-{i}").as_bytes()).expect("group 1"),
            format!("1-{i}").as_bytes()
        );
        assert_eq!(
            client.call(format!("2-{i}").as_bytes()).expect("group 2"),
            format!("g2:2-{i}").as_bytes()
        );
    }
    let stats = &service.status()["worker_stats"];
    assert_eq!(
        stats["worker-g1-0"]["requests"].as_u64(),
        Some(20),
        "{stats}"
    );
    assert_eq!(
        stats["worker-g2-0"]["requests"].as_u64(),
        Some(20),
        "{stats}"
    );
}

#[test]
fn the_c_plugin_serves_tcp_and_udp() {
    let service = Service::start(&ServiceConfig::single(
        &Binaries::locate().plugin("spp_echo_c"),
        2,
    ));
    let mut tcp = TcpClient::connect(service.tcp()).expect("connect");
    let udp = UdpClient::new(service.udp()).expect("udp");
    for i in 0..20 {
        let payload = format!("from C #{i}");
        assert_eq!(
            tcp.call(payload.as_bytes()).expect("tcp"),
            payload.as_bytes()
        );
        assert_eq!(
            udp.call(payload.as_bytes()).expect("udp"),
            payload.as_bytes()
        );
    }
}
