//! Chaos: answer order on one TCP connection when a later request is
//! answered before an earlier one.
//!
//! The faulty plugin routes a payload `to:<n>:...` to group `n` and
//! everything else to group 1, where `sleep:<ms>` answers late. The proxy
//! holds the answers that come early until the earlier ones are out:
//!
//! * pipelined pairs, group 1 after a sleep and group 2 at once: every
//!   answer comes back in request order;
//! * an exception answer (no worker in the group) for a request behind a
//!   slow one waits for the slow one's answer;
//! * a client whose held answers pass `max_send_buffer` is closed and
//!   counted (`held_overflow`), never holding unbounded memory.

use spp_tests::client::{frame, TcpClient};
use spp_tests::faulty;
use spp_tests::view::proxy_counter;
use spp_tests::{wait_for, Binaries, GroupConfig, Service, ServiceConfig};
use std::io::Write;
use std::time::Duration;

/// Pipelined pairs in the ordering test.
const PAIRS: usize = 20;
/// Group 1's sleep in that test, ms.
const SLOW_MS: u64 = 20;
/// A group no worker serves.
const NO_GROUP: u32 = 9;
/// `proxy.max_send_buffer` of the overflow test, and the size of each
/// early answer there (ten of them pass it).
const SMALL_SEND_BUFFER: usize = 64 << 10;
const EARLY_ANSWER: usize = 16 << 10;
/// Bound of counter polls.
const WAIT: Duration = Duration::from_secs(10);

/// The faulty plugin as proxy plugin and in groups 1 and 2 (one worker
/// each).
fn two_groups() -> ServiceConfig {
    let bins = Binaries::locate();
    let plugin = bins.plugin(faulty::PLUGIN);
    let mut cfg = ServiceConfig::single(&plugin, 1);
    cfg.groups = vec![
        GroupConfig::new(1, &plugin, 1),
        GroupConfig::new(2, &plugin, 1),
    ];
    cfg
}

/// Writes every payload's frame in one write (pipelined).
fn pipeline(client: &mut TcpClient, payloads: &[Vec<u8>]) {
    let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    client.stream.write_all(&bytes).expect("pipelined write");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn pipelined_answers_from_two_groups_leave_in_request_order() {
    let service = Service::start(&two_groups());
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let mut payloads = Vec::new();
    for i in 0..PAIRS {
        payloads.push(faulty::sleep(SLOW_MS, &format!("1-{i}")));
        payloads.push(format!("to:2:2-{i}").into_bytes());
    }
    pipeline(&mut client, &payloads);
    let got: Vec<String> = (0..payloads.len())
        .map(|_| text(&client.recv().expect("an answer")))
        .collect();
    let want: Vec<String> = payloads.iter().map(|p| text(p)).collect();
    assert_eq!(got, want, "answers out of request order");
    // The connection is still usable, in both groups.
    assert_eq!(client.call(b"to:2:again").expect("group 2"), b"to:2:again");
    assert_eq!(client.call(b"again").expect("group 1"), b"again");
}

#[test]
fn an_exception_answer_waits_for_the_earlier_answer() {
    let service = Service::start(&two_groups());
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let slow = faulty::sleep(200, "first");
    let refused = format!("to:{NO_GROUP}:second").into_bytes();
    let fast = b"to:2:third".to_vec();
    pipeline(&mut client, &[slow.clone(), refused, fast.clone()]);
    let got: Vec<String> = (0..3)
        .map(|_| text(&client.recv().expect("an answer")))
        .collect();
    assert_eq!(
        got,
        [text(&slow), text(faulty::BUSY_NO_WORKER), text(&fast)],
        "the exception answer overtook the earlier answer"
    );
    let status = service.status();
    assert!(proxy_counter(&status, "no_worker") >= 1, "{status}");
}

#[test]
fn held_answers_past_max_send_buffer_close_the_connection_and_are_counted() {
    let mut cfg = two_groups();
    cfg.proxy_extra = vec![format!(
        "max_send_buffer = \"{}KiB\"",
        SMALL_SEND_BUFFER >> 10
    )];
    let service = Service::start(&cfg);
    // A client of the same service, unaffected.
    let mut other = TcpClient::connect(service.tcp()).expect("connect");
    let mut client = TcpClient::connect(service.tcp()).expect("connect");
    let mut payloads = vec![faulty::sleep(2000, "slow")];
    let filler = "x".repeat(EARLY_ANSWER);
    for i in 0..(SMALL_SEND_BUFFER / EARLY_ANSWER + 2) {
        payloads.push(format!("to:2:{i}:{filler}").into_bytes());
    }
    pipeline(&mut client, &payloads);
    assert!(
        client.closed_by_server(),
        "the connection holding too much was not closed"
    );
    let counted = wait_for(WAIT, || {
        let n = proxy_counter(&service.status(), "held_overflow");
        (n >= 1).then_some(n)
    });
    assert_eq!(counted, Some(1), "held_overflow not counted once");
    assert_eq!(
        other.call(b"to:2:fine").expect("other client"),
        b"to:2:fine"
    );
}
