//! Request notes end to end, with the test plugin `libspp_noter.so`
//! (tests/plugins/noter): the proxy's input hook attaches a note with
//! `set_note` and the worker's `process` answers with the note it sees, in
//! plain and micro-thread mode, over TCP and UDP. A request framed without
//! a note sees none (pipelined behind a noted one, or after an input call
//! that needed more bytes); an oversized note is refused with TOO_LARGE and
//! its request still goes through; an expired request's exception gets its
//! bytes without the note.

use spp_tests::client::{frame, TcpClient, UdpClient};
use spp_tests::{wait_for, Binaries, Service, ServiceConfig};
use std::io::Write;
use std::time::Duration;

/// The plugin's library name.
const PLUGIN: &str = "spp_noter";
/// The longest note (`SPP_NOTE_MAX`).
const NOTE_MAX: usize = 64;
/// How long to wait for a worker to take a request.
const WAIT: Duration = Duration::from_secs(20);
/// Between the two halves of a split request: long enough that the proxy
/// usually reads the first half alone (if not, the case still holds).
const SPLIT_PAUSE: Duration = Duration::from_millis(50);

fn config(mode: &str) -> ServiceConfig {
    let mut cfg = ServiceConfig::single(&Binaries::locate().plugin(PLUGIN), 1);
    cfg.group_mut().extra.push(format!("mode = {mode:?}"));
    cfg
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One request, one answer, as text.
fn call(client: &mut TcpClient, payload: &str) -> String {
    text(&client.call(payload.as_bytes()).expect("answer"))
}

fn notes_reach_process(mode: &str) {
    let service = Service::start(&config(mode));
    let mut client = TcpClient::connect(service.tcp()).expect("connect");

    assert_eq!(
        call(&mut client, "note:abc;hello"),
        "note=abc;note:abc;hello"
    );
    assert_eq!(call(&mut client, "plain"), "note=;plain", "no note set");
    assert_eq!(call(&mut client, "twice;x"), "note=second;twice;x");
    let longest = "n".repeat(NOTE_MAX);
    assert_eq!(
        call(&mut client, &format!("note:{longest};max")),
        format!("note={longest};note:{longest};max")
    );

    // Oversized: refused in the proxy, the request goes through without it
    // (or with the note set before the refusal).
    client.send(b"big;x").expect("send");
    assert_eq!(text(&client.recv().expect("refusal")), "refused:TooLarge");
    assert_eq!(text(&client.recv().expect("answer")), "note=;big;x");
    client.send(b"keep;x").expect("send");
    assert_eq!(text(&client.recv().expect("refusal")), "refused:TooLarge");
    assert_eq!(text(&client.recv().expect("answer")), "note=kept;keep;x");

    // Pipelined in one write: the second request was framed without a note.
    let both = [frame(b"note:p1;a"), frame(b"b")].concat();
    client.stream.write_all(&both).expect("send both");
    assert_eq!(text(&client.recv().expect("first")), "note=p1;note:p1;a");
    assert_eq!(text(&client.recv().expect("second")), "note=;b");

    // Split: the input call that needed more set `stale`; it never sticks.
    let split = frame(b"split");
    client.stream.write_all(&split[..3]).expect("first half");
    std::thread::sleep(SPLIT_PAUSE);
    client.stream.write_all(&split[3..]).expect("second half");
    assert_eq!(text(&client.recv().expect("answer")), "note=;split");

    // UDP carries notes too.
    let udp = UdpClient::new(service.udp()).expect("udp client");
    assert_eq!(
        text(&udp.call(b"note:dgram;u").expect("udp answer")),
        "note=dgram;note:dgram;u"
    );
    assert_eq!(text(&udp.call(b"u2").expect("udp answer")), "note=;u2");
}

#[test]
fn notes_reach_process_in_plain_mode() {
    notes_reach_process("plain");
}

#[test]
fn notes_reach_process_in_microthread_mode() {
    notes_reach_process("microthread");
}

#[test]
fn an_expired_request_is_answered_with_its_bytes_not_its_note() {
    let mut cfg = config("plain");
    cfg.group_mut().msg_timeout = Some("200ms".into());
    let service = Service::start(&cfg);

    let mut holder = TcpClient::connect(service.tcp()).expect("holder connect");
    holder.send(b"sleep:1500;hold").expect("holder send");
    let taken = wait_for(WAIT, || {
        let requests = service.status()["worker_stats"]["worker-g1-0"]["requests"].as_u64();
        (requests == Some(1)).then_some(())
    });
    assert!(taken.is_some(), "the worker never took the holding request");

    let mut late = TcpClient::connect(service.tcp()).expect("late connect");
    assert_eq!(
        call(&mut late, "note:secret;late"),
        "exc=;note:secret;late",
        "the exception hook sees the request bytes, not the note"
    );
    assert_eq!(
        text(&holder.recv().expect("the holder's answer")),
        "note=slept;sleep:1500;hold"
    );
}
