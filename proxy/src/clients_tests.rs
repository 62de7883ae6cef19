//! Unit tests of [`Clients`]: the flow tables, delivery order, the
//! bounded send buffer, and the lists that hand connections back to the
//! loop. Real loopback sockets, no plugin (a [`HookCall::none`]).

use super::*;
use crate::dispatch::Ledger;
use crate::order::Origin;
use std::io::Read;
use std::time::Duration;

const EPOCH: u16 = 1;

fn clients(max_send_buffer: usize) -> Clients {
    Clients::new(EPOCH, 0, 16, 16, max_send_buffer)
}

/// A connection in `c`'s table and the client's end of it.
fn connect(c: &mut Clients) -> (u32, u64, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let stream = TcpStream::from_std(server);
    let (slot, flow) = c
        .conns
        .insert_with(|flow| {
            let info = SppConnInfo {
                flow,
                ..SppConnInfo::default()
            };
            Conn::new(stream, info, 0)
        })
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (slot, flow, client)
}

fn read_n(client: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    client.read_exact(&mut got).unwrap();
    got
}

#[test]
fn responses_reach_the_client_in_delivery_order() {
    let mut c = clients(1 << 20);
    let (_, flow, mut client) = connect(&mut c);
    let ledger = Ledger::default();
    c.deliver(HookCall::none(), flow, b"one ", false);
    c.deliver(HookCall::none(), flow, b"two ", false);
    c.deliver(HookCall::none(), flow, b"three", false);
    assert!(c.flush_pending());
    c.flush_marked(HookCall::none(), &ledger);
    assert!(!c.flush_pending());
    assert_eq!(read_n(&mut client, 13), b"one two three");
    assert_eq!(c.stats.bytes_out, 13);
    assert_eq!(c.conns.len(), 1, "still open");
}

#[test]
fn a_close_closes_once_the_bytes_before_it_are_written() {
    let mut c = clients(1 << 20);
    let (slot, flow, mut client) = connect(&mut c);
    c.deliver(HookCall::none(), flow, b"bye", true);
    assert!(c.conns.get(slot).unwrap().is_closing());
    // Bytes after the close have nowhere to go.
    c.deliver(HookCall::none(), flow, b"late", false);
    assert_eq!(c.stats.stale_responses, 1);
    c.flush_marked(HookCall::none(), &Ledger::default());
    assert!(c.conns.is_empty());
    assert_eq!(read_n(&mut client, 3), b"bye");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn bytes_for_a_flow_that_is_gone_are_counted_stale() {
    let mut c = clients(1 << 20);
    let (slot, flow, _client) = connect(&mut c);
    c.close_conn(HookCall::none(), slot, CloseReason::Done);
    c.deliver(HookCall::none(), flow, b"x", false);
    // A newcomer in the same table slot does not get them either.
    let (_, newcomer, mut client2) = connect(&mut c);
    assert_ne!(newcomer, flow);
    c.deliver(HookCall::none(), flow, b"y", false);
    assert_eq!(c.stats.stale_responses, 2);
    c.deliver(HookCall::none(), newcomer, b"z", false);
    c.flush_marked(HookCall::none(), &Ledger::default());
    assert_eq!(read_n(&mut client2, 1), b"z");
}

#[test]
fn the_send_buffer_is_bounded_and_a_client_that_never_reads_is_closed() {
    let max = 1 << 16;
    let mut c = clients(max);
    let (slot, flow, _client) = connect(&mut c);
    let chunk = vec![1u8; 1 << 14];
    for _ in 0..10_000 {
        if c.conns.get(slot).is_none() {
            break;
        }
        assert!(c.conns.get(slot).unwrap().pending() <= max);
        c.deliver(HookCall::none(), flow, &chunk, false);
    }
    assert!(c.conns.is_empty(), "a slow client is closed");
    assert_eq!(c.stats.slow_closed, 1);
}

#[test]
fn a_udp_reply_goes_to_the_sender_and_frees_the_flow() {
    let mut c = clients(1 << 20);
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let local = SppAddr::from_socket_addr(server.local_addr().unwrap());
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.udp_socks.push(UdpSock {
        sock: mio::net::UdpSocket::from_std(server),
        listener: 0,
        local,
    });
    let peer = client.local_addr().unwrap();
    let (_, flow) = c
        .udp_flows
        .insert_with(|flow| UdpFlow {
            info: SppConnInfo {
                flow,
                ..SppConnInfo::default()
            },
            peer,
            sock: 0,
            created_ms: 0,
        })
        .unwrap();
    c.deliver(HookCall::none(), flow, b"pong", false);
    // Queued, then sent at the end of the turn.
    let poll = mio::Poll::new().unwrap();
    c.flush_udp(poll.registry());
    let mut buf = [0u8; 16];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert!(c.udp_flows.is_empty(), "the first reply frees the flow");
    c.deliver(HookCall::none(), flow, b"again", false);
    assert_eq!(c.stats.stale_responses, 1);
    assert_eq!(c.stats.bytes_out, 4);
}

#[test]
fn a_held_connection_is_listed_to_resume_when_its_last_request_left() {
    let mut c = clients(1 << 20);
    let (slot, flow, _client) = connect(&mut c);
    c.conns.get_mut(slot).unwrap().state = ConnState::Held;
    c.requests_emptied(flow);
    assert_eq!(c.resume, vec![flow]);
    // An open connection has nothing to resume.
    let (_, other, _client2) = connect(&mut c);
    c.requests_emptied(other);
    assert_eq!(c.resume, vec![flow]);
}

#[test]
fn a_peer_closed_connection_closes_once_its_requests_are_answered() {
    let mut c = clients(1 << 20);
    let (slot, flow, _client) = connect(&mut c);
    c.conns.get_mut(slot).unwrap().state = ConnState::PeerClosed;
    let mut ledger = Ledger::default();
    ledger.pushed(0, flow);
    c.mark_flush(slot);
    c.flush_marked(HookCall::none(), &ledger);
    assert_eq!(c.conns.len(), 1, "a request is still in flight");
    assert!(ledger.left(flow));
    c.requests_emptied(flow);
    assert!(c.flush_pending());
    c.flush_marked(HookCall::none(), &ledger);
    assert!(c.conns.is_empty());
}

#[test]
fn the_idle_sweep_spares_connections_waiting_for_a_worker_unless_strict() {
    let mut c = clients(1 << 20);
    let (_, busy, _client) = connect(&mut c);
    let (held_slot, _, _client2) = connect(&mut c);
    let (_, _idle, _client3) = connect(&mut c);
    c.conns.get_mut(held_slot).unwrap().state = ConnState::Held;
    let mut ledger = Ledger::default();
    ledger.pushed(0, busy);
    c.now_ms = 1_000;
    c.sweep_idle(HookCall::none(), &ledger, 500, false);
    assert_eq!(c.conns.len(), 2, "only the idle one is closed");
    assert_eq!(c.stats.idle_closed, 1);
    c.sweep_idle(HookCall::none(), &ledger, 500, true);
    assert!(c.conns.is_empty());
}

#[test]
fn a_connection_is_listed_to_read_again_once_and_only_while_it_reads() {
    let mut c = clients(1 << 20);
    let (slot, _, _client) = connect(&mut c);
    let (closing, _, _client2) = connect(&mut c);
    c.conns.get_mut(closing).unwrap().close_after_flush();
    c.list_read(slot);
    c.list_read(slot);
    c.list_read(closing);
    let list = c.take_read_list();
    assert_eq!(list, vec![slot]);
    assert!(!c.reads_pending());
    assert!(c.unlist_read(slot));
    c.list_read(slot);
    assert!(c.reads_pending());
    c.return_read_list(list);
}

#[test]
fn a_deferred_read_keeps_how_it_must_be_read() {
    let mut c = clients(1 << 20);
    let (once, _, _client) = connect(&mut c);
    let (to_end, _, _client2) = connect(&mut c);
    let (both, _, _client3) = connect(&mut c);
    c.defer_read(once, false);
    c.defer_read(to_end, true);
    c.defer_read(both, false);
    c.list_read(both); // Listed once, now read until it would block.
    let list = c.take_read_list();
    assert_eq!(list, vec![once, to_end, both]);
    assert_eq!(c.take_listed_read(once), Some(false));
    // A turn out of budget lists the rest again, as they were.
    c.defer_reads(&list[1..]);
    assert_eq!(c.take_read_list(), vec![to_end, both]);
    assert_eq!(c.take_listed_read(to_end), Some(true));
    assert_eq!(c.take_listed_read(both), Some(true));
    c.defer_reads(&list); // None is listed any more.
    assert!(!c.reads_pending());
    c.return_read_list(list);
}

/// Gives connection `flow` a partial request at `now_ms`, as framing does.
fn partial(c: &mut Clients, flow: u64, now_ms: u64, used: usize) {
    c.now_ms = now_ms;
    c.conns
        .lookup_mut(flow)
        .unwrap()
        .rbuf
        .extend_from_slice(b"GET /");
    c.track_partial(flow, used);
}

#[test]
fn a_partial_request_keeps_its_first_stamp_until_a_request_completes() {
    let mut c = clients(1 << 20);
    let (slot, flow, _client) = connect(&mut c);
    partial(&mut c, flow, 100, 0);
    // More bytes of the same partial request (a byte every few seconds).
    partial(&mut c, flow, 900, 0);
    assert_eq!(c.partial.oldest(&c.conns), Some((slot, 100)));
    // A request was framed off the front: the rest is a new one.
    partial(&mut c, flow, 950, 10);
    assert_eq!(c.partial.oldest(&c.conns), Some((slot, 950)));
    // Buffer empty: no longer listed.
    c.conns.get_mut(slot).unwrap().rbuf.clear();
    c.track_partial(flow, 5);
    assert_eq!(c.partial.oldest(&c.conns), None);
    // Held for a worker: not the client's wait.
    partial(&mut c, flow, 960, 0);
    c.conns.get_mut(slot).unwrap().state = ConnState::Held;
    c.track_partial(flow, 0);
    assert_eq!(c.partial.oldest(&c.conns), None);
}

#[test]
fn request_timeout_closes_only_partial_requests_that_are_too_old() {
    let mut c = clients(1 << 20);
    let (_, old, _a) = connect(&mut c);
    let (young_slot, young, _b) = connect(&mut c);
    let (_, _idle, _c) = connect(&mut c);
    let (closing_slot, closing, _d) = connect(&mut c);
    partial(&mut c, old, 100, 0);
    partial(&mut c, closing, 150, 0);
    c.conns.get_mut(closing_slot).unwrap().close_after_flush();
    partial(&mut c, young, 900, 0);
    c.now_ms = 1_200;
    c.expire_partial(HookCall::none(), 1_000);
    assert_eq!(c.stats.request_timeouts, 1);
    assert_eq!(c.conns.len(), 3, "the idle, closing and young ones stay");
    assert!(c.conns.slot_of(old).is_none());
    assert_eq!(c.partial.oldest(&c.conns), Some((young_slot, 900)));
    c.now_ms = 1_900;
    c.expire_partial(HookCall::none(), 1_000);
    assert_eq!(c.stats.request_timeouts, 2);
    assert_eq!(c.partial.oldest(&c.conns), None);
}

#[test]
fn a_full_table_evicts_the_oldest_partial_request_and_nothing_else() {
    let mut c = clients(1 << 20);
    let (_, idle, _a) = connect(&mut c);
    assert!(!c.evict_partial(HookCall::none()), "nothing partial");
    let (_, first, _b) = connect(&mut c);
    let (_, second, _c) = connect(&mut c);
    partial(&mut c, first, 100, 0);
    partial(&mut c, second, 200, 0);
    assert!(c.evict_partial(HookCall::none()));
    assert!(c.conns.slot_of(first).is_none());
    assert!(c.conns.slot_of(second).is_some());
    assert!(c.conns.slot_of(idle).is_some());
    assert_eq!(c.stats.evicted_partial, 1);
}

#[test]
fn an_early_answer_is_held_until_the_earlier_request_left() {
    let mut c = clients(1 << 20);
    let (slot, flow, mut client) = connect(&mut c);
    let ledger = Ledger::default();
    let conn = c.conns.get_mut(slot).unwrap();
    conn.order.pushed(0);
    conn.order.pushed(1);
    c.deliver_from(HookCall::none(), Origin::Worker(1), flow, b"second", false);
    // A refused request's exception answer, and its close, come after.
    c.deliver(HookCall::none(), flow, b" third", false);
    c.close_in_order(flow, Origin::Local);
    assert_eq!(c.conns.get(slot).unwrap().pending(), 0, "held, not queued");
    assert!(
        !c.conns.get(slot).unwrap().reads(),
        "a held close stops reading"
    );
    c.request_left(flow, 1);
    assert_eq!(
        c.conns.get(slot).unwrap().pending(),
        0,
        "still behind slot 0"
    );
    c.deliver_from(HookCall::none(), Origin::Worker(0), flow, b"first ", false);
    c.request_left(flow, 0);
    c.flush_marked(HookCall::none(), &ledger);
    assert_eq!(read_n(&mut client, 18), b"first second third");
    assert!(c.conns.is_empty(), "the held close applied after them");
}

#[test]
fn held_answers_past_the_send_buffer_bound_close_the_connection() {
    let max = 1 << 16;
    let mut c = clients(max);
    let (slot, flow, _client) = connect(&mut c);
    let conn = c.conns.get_mut(slot).unwrap();
    conn.order.pushed(0);
    conn.order.pushed(1);
    let chunk = vec![1u8; 1 << 14];
    for _ in 0..(max / chunk.len()) {
        assert!(c.conns.get(slot).is_some(), "closed too early");
        c.deliver_from(HookCall::none(), Origin::Worker(1), flow, &chunk, false);
    }
    assert!(c.conns.is_empty(), "held past max_send_buffer");
    assert_eq!((c.stats.held_overflow, c.stats.slow_closed), (1, 0));
}
