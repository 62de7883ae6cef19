//! Unit tests of [`Order`]: runs, held answers, release in request order.

use super::*;

/// Releases what `o` lets go, as one string, and whether a close came up.
fn advance(o: &mut Order, pool: &mut BufPool) -> (String, bool) {
    let mut got = Vec::new();
    let r = o.advance(|b| got.extend_from_slice(b));
    o.recycle(pool);
    (String::from_utf8(got).unwrap(), r.close)
}

/// Delivers `bytes` from `origin` the way the proxy does: now, or held.
fn answer(o: &mut Order, pool: &mut BufPool, origin: Origin, bytes: &str, sent: &mut String) {
    match o.dest(origin) {
        Dest::Now => sent.push_str(bytes),
        Dest::Held(id) => o.hold(id, bytes.as_bytes(), false, pool),
    }
}

#[test]
fn one_slot_never_holds_and_never_allocates() {
    let mut o = Order::default();
    let mut pool = BufPool::default();
    let mut sent = String::new();
    for i in 0..100 {
        o.pushed(3);
        o.pushed(3);
        answer(
            &mut o,
            &mut pool,
            Origin::Worker(3),
            &format!("{i}a "),
            &mut sent,
        );
        o.left(3);
        assert_eq!(advance(&mut o, &mut pool), (String::new(), false));
        answer(
            &mut o,
            &mut pool,
            Origin::Worker(3),
            &format!("{i}b "),
            &mut sent,
        );
        o.left(3);
        assert_eq!(advance(&mut o, &mut pool), (String::new(), false));
        assert!(o.is_empty());
    }
    assert!(sent.starts_with("0a 0b 1a 1b "));
    assert!(o.more.is_none(), "nothing beyond the inline head was used");
}

#[test]
fn a_later_slots_answer_waits_for_the_earlier_one() {
    let mut o = Order::default();
    let mut pool = BufPool::default();
    let mut sent = String::new();
    // r1 -> slot 0 (slow), r2 -> slot 1 (fast), r3 -> slot 2 (fast).
    o.pushed(0);
    assert!(o.may_push(1));
    o.pushed(1);
    o.pushed(2);
    answer(&mut o, &mut pool, Origin::Worker(2), "3", &mut sent);
    o.left(2);
    assert_eq!(advance(&mut o, &mut pool).0, "");
    answer(&mut o, &mut pool, Origin::Worker(1), "2", &mut sent);
    o.left(1);
    assert_eq!(advance(&mut o, &mut pool).0, "");
    assert_eq!(sent, "", "nothing overtakes r1");
    assert!(o.held_bytes() > 0);
    answer(&mut o, &mut pool, Origin::Worker(0), "1", &mut sent);
    assert_eq!(sent, "1", "the head's answer goes at once");
    o.left(0);
    assert_eq!(advance(&mut o, &mut pool), ("23".to_string(), false));
    assert!(o.is_empty());
    assert_eq!(o.held_bytes(), 0);
    assert_ne!(pool.get().capacity(), 0, "held buffer pooled again");
}

#[test]
fn several_replies_of_one_request_stay_together_and_in_order() {
    let mut o = Order::default();
    let mut pool = BufPool::default();
    let mut sent = String::new();
    o.pushed(0);
    o.pushed(1);
    o.pushed(1);
    answer(&mut o, &mut pool, Origin::Worker(1), "b1 ", &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(1), "b2 ", &mut sent);
    o.left(1);
    answer(&mut o, &mut pool, Origin::Worker(1), "c ", &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(0), "a1 ", &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(0), "a2 ", &mut sent);
    assert_eq!(sent, "a1 a2 ");
    o.left(0);
    // The run on slot 1 becomes the head: its held answers go, and it is
    // still unfinished, so its next answer goes at once.
    assert_eq!(advance(&mut o, &mut pool).0, "b1 b2 c ");
    answer(&mut o, &mut pool, Origin::Worker(1), "d", &mut sent);
    assert_eq!(sent, "a1 a2 d");
    o.left(1);
    assert_eq!(advance(&mut o, &mut pool).0, "");
    assert!(o.is_empty());
}

#[test]
fn a_local_answer_waits_its_turn_and_a_held_close_ends_the_rest() {
    let mut o = Order::default();
    let mut pool = BufPool::default();
    let mut sent = String::new();
    o.pushed(0);
    // r2 refused: its exception answer and close are local.
    answer(&mut o, &mut pool, Origin::Local, "E2", &mut sent);
    let Dest::Held(id) = o.dest(Origin::Local) else {
        panic!("a local answer behind a pending request is held");
    };
    o.hold(id, b"", true, &mut pool);
    assert!(o.close_held());
    // A deferred reply of slot 5, whose request finished: behind too.
    answer(&mut o, &mut pool, Origin::Worker(5), "late", &mut sent);
    assert_eq!(sent, "");
    answer(&mut o, &mut pool, Origin::Worker(0), "1", &mut sent);
    o.left(0);
    assert_eq!(advance(&mut o, &mut pool), ("E2".to_string(), true));
    assert!(o.is_empty(), "everything after the close is dropped");
    assert!(!o.close_held());
}

#[test]
fn a_slot_with_an_unfinished_earlier_run_is_refused_unless_it_holds_the_tail() {
    let mut o = Order::default();
    assert!(o.may_push(0));
    o.pushed(0);
    assert!(o.may_push(0), "the tail's slot");
    assert!(o.may_push(1));
    o.pushed(1);
    assert!(
        !o.may_push(0),
        "slot 0 has an unfinished run before the tail"
    );
    assert!(o.may_push(1));
    assert!(o.may_push(2));
    o.left(0);
    let mut pool = BufPool::default();
    advance(&mut o, &mut pool);
    assert!(o.may_push(0), "its run finished");
}

#[test]
fn runs_are_capped() {
    let mut o = Order::default();
    let mut pool = BufPool::default();
    o.pushed(0);
    let mut s = 1;
    while o.may_push(s) {
        o.pushed(s);
        o.left(s);
        s += 1;
    }
    assert_eq!(s, MAX_RUNS, "one head and MAX_RUNS - 1 more");
    assert!(o.may_push(s - 1), "the tail can still grow");
    o.left(0);
    advance(&mut o, &mut pool);
    assert!(o.is_empty());
}

#[test]
fn segments_keep_their_bytes_whatever_their_length() {
    let mut o = Order::default();
    let mut pool = BufPool::default();
    o.pushed(0);
    o.pushed(1);
    o.pushed(2);
    let mut sent = String::new();
    let long: String = "x".repeat(13);
    answer(&mut o, &mut pool, Origin::Worker(2), "ccc", &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(1), &long, &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(2), "C", &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(1), "", &mut sent);
    answer(&mut o, &mut pool, Origin::Worker(1), "b", &mut sent);
    o.left(1);
    o.left(2);
    o.left(0);
    assert_eq!(advance(&mut o, &mut pool).0, format!("{long}bcccC"));
    assert!(o.is_empty());
}
