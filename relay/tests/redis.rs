//! RedisBackend and its scripts against a real redis-server (started by
//! the tests on a free loopback port, in a temporary directory). Each
//! "node" is one worker of one nginx server.

mod redis_node;
#[path = "../../tests/common/redis.rs"]
mod redis_server;

use std::time::Duration;

use push_relay::conf::Concurrency;
use push_relay::outcome::Refusal;
use push_relay::proto::cursor::{Cursor, MsgId};
use push_relay::redis::backend::KEYS_ABOVE;
use push_relay::redis::client::Phase;
use push_relay::redis::keys::slot;
use push_relay::transport::Transport;
use redis_node::*;
use redis_server::{RedisOpts, RedisServer, Reply};

fn two(r: &RedisServer) -> (Node, Node) {
    (
        Node::up(r.port, "server-a/1"),
        Node::up(r.port, "server-b/1"),
    )
}

#[test]
fn a_message_posted_on_one_server_reaches_a_listener_on_another_once() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let key = b.hold(b"room", Cursor::default());
    assert!(
        key > KEYS_ABOVE,
        "Redis listener keys are apart from the zone's"
    );
    let p = a.publish(b"room", b"hello");
    assert_eq!(p.held, 1, "201: a listener was held (on the other server)");
    let got = b.answer(key);
    assert_eq!(got.body(), b"hello");
    assert_eq!(got.id(), p.id);
    b.pump_for(Duration::from_millis(100));
    assert!(!b.has_answer(key), "exactly once");
    // The listener's count went back.
    b.pump_until("count back", |n| n.b.in_flight() == 0);
    assert_eq!(a.info(b"room").unwrap().subscribers, 0);
}

#[test]
fn ids_are_ordered_across_servers_in_the_same_second() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let mut ids = Vec::new();
    for i in 0..20 {
        let n = if i % 2 == 0 { &mut a } else { &mut b };
        ids.push(n.publish(b"ch", format!("m{i}").as_bytes()).id);
    }
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "{ids:?}");
        if w[0].time == w[1].time {
            assert_eq!(w[1].tag, w[0].tag + 1);
        } else {
            assert_eq!(w[1].tag, 0);
        }
    }
    // A listener following the cursor on either server sees them in order.
    let mut cursor = Cursor::default();
    for i in 0..10 {
        let n = if i % 2 == 0 { &mut b } else { &mut a };
        match n.listen(b"ch", cursor, Concurrency::Broadcast).unwrap() {
            Listening::Now(g) => {
                assert_eq!(g.id(), ids[10 + i], "buffer of 10 keeps the last 10");
                cursor = after(g.id());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_buffer_is_trimmed_and_what_falls_out_is_deleted() {
    let r = RedisServer::start();
    let mut a = Node::up(r.port, "a");
    let rules = push_relay::conf::SenderRules {
        buffer_length: 3,
        ..SENDER
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            a.publish_in(0, b"t", format!("{i}").as_bytes(), rules)
                .unwrap()
                .id,
        );
    }
    let info = a.info(b"t").unwrap();
    assert_eq!(info.messages, 3);
    assert_eq!(info.last_message_id, Some(ids[4]));
    match a
        .listen(b"t", Cursor::default(), Concurrency::Broadcast)
        .unwrap()
    {
        Listening::Now(g) => assert_eq!(g.body(), b"2", "the oldest kept"),
        other => panic!("{other:?}"),
    }
    let msg_keys: Vec<_> = r
        .keys()
        .into_iter()
        .filter(|k| k.windows(3).any(|w| w == b":k:"))
        .collect();
    assert_eq!(
        msg_keys.len(),
        3,
        "evicted message keys deleted: {msg_keys:?}"
    );
    // Buffer length 0: nothing stored, the id still moves on.
    let none = push_relay::conf::SenderRules {
        buffer_length: 0,
        ..SENDER
    };
    let p = a.publish_in(0, b"zero", b"x", none).unwrap();
    assert_eq!(a.info(b"zero").unwrap().messages, 0);
    let q = a.publish_in(0, b"zero", b"y", none).unwrap();
    assert!(q.id > p.id);
}

#[test]
fn stored_messages_expire_by_themselves() {
    let r = RedisServer::start();
    let mut a = Node::up(r.port, "a");
    let rules = push_relay::conf::SenderRules {
        message_timeout: 1,
        channel_timeout: 1,
        ..SENDER
    };
    a.publish_in(0, b"e", b"short", rules).unwrap();
    assert_eq!(a.info(b"e").unwrap().messages, 1);
    // Wait on the condition (Redis expires keys by itself), bounded.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !r.keys().iter().all(|k| k == b"push:epoch") {
        assert!(std::time::Instant::now() < end, "keys left: {:?}", r.keys());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        a.info(b"e"),
        Err(Refusal::NotFound),
        "the empty channel timed out too"
    );
}

#[test]
fn delete_answers_listeners_everywhere_with_gone_and_reports_the_info_as_it_was() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    a.publish(b"d", b"one");
    let last = a.info(b"d").unwrap().last_message_id.unwrap();
    let kb = b.hold(b"d", after(last));
    let ka = a.hold(b"d", after(last));
    let info = a.delete(b"d").unwrap();
    assert_eq!((info.messages, info.subscribers), (1, 2));
    assert_eq!(a.answer(ka), Got::Gone);
    assert_eq!(b.answer(kb), Got::Gone);
    assert_eq!(b.info(b"d"), Err(Refusal::NotFound));
    assert_eq!(b.delete(b"d"), Err(Refusal::NotFound));
    // Ids never go backwards through a delete.
    let last = info.last_message_id.unwrap();
    let p = b.publish(b"d", b"two");
    assert!(p.id > last);
}

#[test]
fn info_counts_listeners_of_every_server_and_a_dead_one_drops_out_after_3_heartbeats() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    a.create(b"c").unwrap();
    a.hold(b"c", Cursor::default());
    a.hold(b"c", Cursor::default());
    b.hold(b"c", Cursor::default());
    assert_eq!(a.info(b"c").unwrap().subscribers, 3);
    // B hangs: no more heartbeats (its connection stays open).
    b.frozen = true;
    let start = std::time::Instant::now();
    a.pump_until("B's listener stops counting", |n| {
        n.info(b"c").unwrap().subscribers == 2
    });
    let took = start.elapsed();
    let hb = Duration::from_millis(300);
    assert!(
        took >= hb * 2,
        "not before its 3 heartbeats ran out ({took:?})"
    );
    assert!(
        took <= hb * 5,
        "within 3 heartbeats of its last renewal ({took:?})"
    );
    // A keeps renewing: its two still count long after.
    a.pump_for(hb * 4);
    assert_eq!(a.info(b"c").unwrap().subscribers, 2);
    // B comes back to life: its heartbeat registers its listener again.
    b.frozen = false;
    b.pump_for(hb * 2);
    assert_eq!(a.info(b"c").unwrap().subscribers, 3);
}

#[test]
fn concurrency_rules_hold_across_servers() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    // first: the second listener, on another server, is refused.
    assert!(matches!(
        a.listen(b"f", Cursor::default(), Concurrency::First),
        Ok(Listening::Held(..))
    ));
    assert_eq!(
        b.listen(b"f", Cursor::default(), Concurrency::First),
        Err(Refusal::Conflict)
    );
    // last: the newest takes over; the older one, elsewhere, answers 409.
    let Ok(Listening::Held(_, old)) = a.listen(b"l", Cursor::default(), Concurrency::Last) else {
        panic!()
    };
    let Ok(Listening::Held(_, new)) = b.listen(b"l", Cursor::default(), Concurrency::Last) else {
        panic!()
    };
    assert_eq!(a.answer(old), Got::Conflict);
    b.pump_for(Duration::from_millis(50));
    assert!(!b.has_answer(new));
    a.pump_until("counts settle", |n| n.b.in_flight() == 0);
    assert_eq!(a.info(b"l").unwrap().subscribers, 1);
    let p = a.publish(b"l", b"to the newest");
    assert_eq!(p.held, 1);
    assert_eq!(b.answer(new).body(), b"to the newest");
    // The subscriber limit counts all servers, after the rule.
    let mut rules = listener(Concurrency::Broadcast);
    rules.max_subscribers = 2;
    assert!(matches!(
        a.listen_in(0, b"m", Cursor::default(), rules, Transport::LongPoll),
        Ok(Listening::Held(..))
    ));
    assert!(matches!(
        b.listen_in(0, b"m", Cursor::default(), rules, Transport::LongPoll),
        Ok(Listening::Held(..))
    ));
    assert_eq!(
        a.listen_in(0, b"m", Cursor::default(), rules, Transport::LongPoll),
        Err(Refusal::Forbidden)
    );
    rules.concurrency = Concurrency::Last;
    rules.max_subscribers = 1;
    let last = a.info(b"l").unwrap().last_message_id.unwrap();
    let r1 = a.listen_in(0, b"l", after(last), rules, Transport::LongPoll);
    assert!(matches!(r1, Ok(Listening::Held(..))), "{r1:?}");
    let r2 = b.listen_in(0, b"l", after(last), rules, Transport::LongPoll);
    assert!(
        matches!(r2, Ok(Listening::Held(..))),
        "a `last` replacement does not add one: {r2:?}"
    );
}

#[test]
fn authorized_channels_only() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let mut rules = listener(Concurrency::Broadcast);
    rules.authorized_only = true;
    assert_eq!(
        b.listen_in(0, b"auth", Cursor::default(), rules, Transport::LongPoll),
        Err(Refusal::Forbidden)
    );
    // A listener that is not authorized-only does not make it a sender's.
    b.hold(b"auth", Cursor::default());
    assert_eq!(
        b.listen_in(0, b"auth", Cursor::default(), rules, Transport::LongPoll),
        Err(Refusal::Forbidden)
    );
    a.create(b"auth").unwrap();
    assert!(matches!(
        b.listen_in(0, b"auth", Cursor::default(), rules, Transport::LongPoll),
        Ok(Listening::Held(..))
    ));
    assert_eq!(a.info(b"auth").unwrap().subscribers, 2);
}

#[test]
fn interval_poll_answers_at_once() {
    let r = RedisServer::start();
    let mut a = Node::up(r.port, "a");
    let rules = listener(Concurrency::Broadcast);
    assert_eq!(
        a.listen_in(0, b"ip", Cursor::default(), rules, Transport::IntervalPoll),
        Ok(Listening::NotModified)
    );
    assert!(
        r.keys().iter().all(|k| k == b"push:epoch"),
        "an interval poll creates nothing"
    );
    let p = a.publish(b"ip", b"x");
    assert!(matches!(
        a.listen_in(0, b"ip", Cursor::default(), rules, Transport::IntervalPoll),
        Ok(Listening::Now(_))
    ));
    assert_eq!(
        a.listen_in(0, b"ip", after(p.id), rules, Transport::IntervalPoll),
        Ok(Listening::NotModified)
    );
}

#[test]
fn namespaces_are_isolated() {
    let r = RedisServer::start();
    let mut a = Node::new(config(r.port, "a", &["app1:", "app2:"], 300));
    a.wait_up();
    let rules = listener(Concurrency::Broadcast);
    let Ok(Listening::Held(_, k2)) =
        a.listen_in(1, b"same", Cursor::default(), rules, Transport::LongPoll)
    else {
        panic!()
    };
    a.publish_in(0, b"same", b"for app1", SENDER).unwrap();
    a.pump_for(Duration::from_millis(100));
    assert!(
        !a.has_answer(k2),
        "app2's listener does not get app1's message"
    );
    assert_eq!(a.info_in(1, b"same").unwrap().messages, 0);
    assert_eq!(a.info_in(0, b"same").unwrap().messages, 1);
    a.publish_in(1, b"same", b"for app2", SENDER).unwrap();
    assert_eq!(a.answer(k2).body(), b"for app2");
    let keys = r.keys();
    assert!(keys.contains(&b"app1:epoch".to_vec()) && keys.contains(&b"app2:epoch".to_vec()));
    for k in &keys {
        assert!(
            k.starts_with(b"{app1:same}") || k.starts_with(b"{app2:same}") || k.ends_with(b"epoch"),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
}

#[test]
fn every_key_carries_its_channels_hash_tag() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    for id in [&b"plain"[..], b"grp/x", b"a}b", b"{odd", b"\xff\x00"] {
        b.hold(id, Cursor::default());
        a.publish(id, b"m");
        a.create(id).unwrap();
        a.info(id).unwrap();
    }
    for k in r.keys() {
        if k == b"push:epoch" {
            continue;
        }
        assert!(k.starts_with(b"{push:"), "{}", String::from_utf8_lossy(&k));
        let id_end = k.iter().rposition(|&c| c == b'}').unwrap();
        let channel_key = [&k[..=id_end], &b":c"[..]].concat();
        assert_eq!(
            slot(&k),
            slot(&channel_key),
            "{}",
            String::from_utf8_lossy(&k)
        );
    }
}

#[test]
fn a_reply_split_at_every_byte_boundary() {
    let r = RedisServer::start();
    let mut a = Node::up(r.port, "a");
    let mut b = Node::new(config(r.port, "b", &["push:"], 300));
    b.trickle = true;
    b.wait_up();
    let big = vec![b'z'; 20_000];
    let k = b.hold(b"s", Cursor::default());
    a.publish(b"s", &big);
    assert_eq!(
        b.answer(k).body(),
        &big[..],
        "by reference, fetched byte by byte"
    );
    let last = a.info(b"s").unwrap().last_message_id.unwrap();
    let k = b.hold(b"s", after(last));
    a.publish(b"s", b"small\r\n");
    assert_eq!(b.answer(k).body(), b"small\r\n");
    assert_eq!(b.info(b"s").unwrap().messages, 2);
}

#[test]
fn big_messages_travel_by_reference_even_when_not_stored() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let k1 = b.hold(b"big", Cursor::default());
    let off = push_relay::conf::SenderRules {
        queue: false,
        ..SENDER
    };
    a.publish_in(0, b"big", &big, off).unwrap();
    assert_eq!(b.answer(k1).body(), &big[..]);
    assert_eq!(a.info(b"big").unwrap().messages, 0, "not stored");
    // Inline and by reference, in order, to one listener after another.
    let c = after(a.info(b"big").unwrap().last_message_id.unwrap());
    let k2 = b.hold(b"big", c);
    let k3 = b.hold(b"big", c);
    let p1 = a.publish(b"big", &big);
    let k4 = b.hold(b"big", after(p1.id));
    a.publish(b"big", b"small after big");
    assert_eq!(b.answer(k2).body(), &big[..]);
    assert_eq!(b.answer(k3).body(), &big[..]);
    assert_eq!(b.answer(k4).body(), b"small after big");
}

#[test]
fn noscript_after_script_flush_is_transparent() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let k = b.hold(b"n", Cursor::default());
    assert_eq!(r.cmd(&[b"SCRIPT", b"FLUSH"]), Reply::Status("OK".into()));
    let p = a.publish(b"n", b"after flush");
    assert_eq!(p.held, 1);
    assert_eq!(b.answer(k).body(), b"after flush");
    assert_eq!(b.info(b"n").unwrap().messages, 1);
    assert!(a.b.is_up() && b.b.is_up(), "no reconnection needed");
}

#[test]
fn redis_down_refuses_senders_and_holds_listeners_then_catches_them_up() {
    let mut r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let p0 = a.publish(b"x", b"before");
    let held = b.hold(b"x", after(p0.id));
    r.stop();
    a.pump_until("A notices", |n| n.phase() != Phase::Ready);
    b.pump_until("B notices", |n| n.phase() != Phase::Ready);
    a.pump_until("A is down", |n| n.phase() == Phase::Down);
    assert_eq!(
        a.publish_in(0, b"x", b"lost", SENDER),
        Err(Refusal::Unavailable)
    );
    assert_eq!(a.info(b"x"), Err(Refusal::Unavailable));
    assert_eq!(a.create(b"x"), Err(Refusal::Unavailable));
    assert_eq!(a.delete(b"x"), Err(Refusal::Unavailable));
    let rules = listener(Concurrency::Broadcast);
    assert_eq!(
        a.listen_in(0, b"x", Cursor::default(), rules, Transport::IntervalPoll),
        Err(Refusal::Unavailable)
    );
    let offline = a.hold(b"x", after(p0.id));
    assert!(!b.has_answer(held), "still held");
    assert!(a.b.take_logs().iter().any(|l| l.1.contains("Redis")));
    r.restart();
    a.pump_until("A reconnects", |n| n.b.is_up());
    b.pump_until("B reconnects", |n| n.b.is_up());
    // Without persistence the message is gone, but ids never go back.
    let p1 = a.publish(b"x", b"after");
    assert!(p1.id > p0.id, "{:?} after {:?}", p1.id, p0.id);
    assert_eq!(p1.held, 2, "both listeners registered again");
    assert_eq!(b.answer(held).body(), b"after");
    assert_eq!(a.answer(offline).body(), b"after");
}

#[test]
fn a_server_cut_off_catches_up_from_the_stored_messages_once_and_in_order() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let p0 = a.publish(b"q", b"0");
    let k = b.hold(b"q", after(p0.id));
    let stay = b.hold(b"other", Cursor::default());
    b.cut();
    let p1 = a.publish(b"q", b"1");
    a.publish(b"q", b"2");
    assert_eq!(p1.held, 1, "still counted while B's registration lives");
    b.reconnect = true;
    b.connect();
    b.wait_up();
    assert_eq!(b.answer(k).body(), b"1", "the first one it missed");
    b.pump_for(Duration::from_millis(100));
    assert!(!b.has_answer(k));
    assert!(!b.has_answer(stay));
    let p = a.publish(b"other", b"o");
    assert_eq!(p.held, 1);
    assert_eq!(b.answer(stay).body(), b"o");
}

#[test]
fn restart_with_appendonly_keeps_messages_and_counts() {
    let mut r = RedisServer::start_with(RedisOpts {
        appendonly: true,
        ..RedisOpts::default()
    });
    let (mut a, mut b) = two(&r);
    let p0 = a.publish(b"p", b"kept");
    let k = b.hold(b"p", after(p0.id));
    r.stop();
    a.pump_until("A notices", |n| n.phase() != Phase::Ready);
    b.pump_until("B notices", |n| n.phase() != Phase::Ready);
    r.restart();
    a.pump_until("A reconnects", |n| n.b.is_up());
    b.pump_until("B reconnects", |n| n.b.is_up());
    b.pump_until("resync done", |n| n.b.in_flight() == 0);
    let info = a.info(b"p").unwrap();
    assert_eq!((info.messages, info.subscribers), (1, 1));
    assert_eq!(info.last_message_id, Some(p0.id));
    match a
        .listen(b"p", Cursor::default(), Concurrency::Broadcast)
        .unwrap()
    {
        Listening::Now(g) => assert_eq!(g.body(), b"kept"),
        other => panic!("{other:?}"),
    }
    let p1 = a.publish(b"p", b"new");
    assert!(p1.id > p0.id);
    assert_eq!(b.answer(k).body(), b"new");
}

#[test]
fn restart_without_persistence_restores_counts_and_never_reuses_ids() {
    let mut r = RedisServer::start();
    let quick = |w: &str| {
        let mut c = config(r.port, w, &["push:"], 300);
        c.connect_timeout_ms = 50;
        let mut n = Node::new(c);
        n.wait_up();
        n
    };
    let (mut a, mut b) = (quick("a"), quick("b"));
    // Start at a fresh Redis second, so that the restart below falls in the
    // same second as the ids before it (the case the marker is for).
    let second = |r: &RedisServer| match r.cmd(&[b"TIME"]) {
        Reply::Array(v) => match &v[0] {
            Reply::Bulk(Some(s)) => String::from_utf8_lossy(s).parse::<u64>().unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let s0 = second(&r);
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while second(&r) == s0 {
        assert!(std::time::Instant::now() < end);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut last = MsgId::default();
    for i in 0..5 {
        last = a.publish(b"r", format!("{i}").as_bytes()).id;
    }
    b.hold(b"r", after(last));
    r.kill();
    a.pump_until("A notices", |n| n.phase() != Phase::Ready);
    b.pump_until("B notices", |n| n.phase() != Phase::Ready);
    r.restart();
    a.pump_until("A reconnects", |n| n.b.is_up());
    b.pump_until("B reconnects", |n| n.b.is_up());
    b.pump_until("resync done", |n| n.b.in_flight() == 0);
    let info = a.info(b"r").unwrap();
    assert_eq!(
        (info.messages, info.subscribers),
        (0, 1),
        "messages lost, count back"
    );
    let p = a.publish(b"r", b"new");
    assert!(
        p.id.time > last.time,
        "a new second after the data loss: {:?} vs {last:?}",
        p.id
    );
}

#[test]
fn a_publish_whose_connection_drops_after_sending_may_have_been_stored() {
    let r = RedisServer::start();
    let mut a = Node::up(r.port, "a");
    r.pause();
    let op = match a.publish_step(0, b"u", b"unknown", SENDER) {
        push_relay::backend::Step::Later(op) => op,
        other => panic!("{other:?}"),
    };
    // Sent, never answered: the command timeout drops the connection.
    let d = a.wait(op);
    assert_eq!(d, Done::Publish(Err(Refusal::MaybeStored)));
    r.resume();
    a.pump_until("reconnected", |n| n.b.is_up());
}

#[test]
fn unreachable_at_start_then_up() {
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut a = Node::new(config(port, "a", &["push:"], 300));
    assert_eq!(a.phase(), Phase::Down);
    assert_eq!(
        a.publish_in(0, b"s", b"x", SENDER),
        Err(Refusal::Unavailable)
    );
    let k = a.hold(b"s", Cursor::default());
    let r = RedisServer::start_on(port, RedisOpts::default());
    a.pump_until("connects", |n| n.b.is_up());
    let mut b = Node::up(r.port, "b");
    a.pump_until("resync done", |n| n.b.in_flight() == 0);
    let p = b.publish(b"s", b"hi");
    assert_eq!(p.held, 1);
    assert_eq!(a.answer(k).body(), b"hi");
}

#[test]
fn unsubscribes_some_time_after_the_last_listener_left() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let k = b.hold(b"linger", Cursor::default());
    let numsub = |r: &RedisServer| match r.cmd(&[b"PUBSUB", b"NUMSUB", b"{push:linger}:p"]) {
        Reply::Array(v) => v[1].int(),
        other => panic!("{other:?}"),
    };
    assert_eq!(numsub(&r), 1);
    a.publish(b"linger", b"m");
    b.answer(k);
    b.pump_for(Duration::from_millis(500));
    assert_eq!(
        numsub(&r),
        1,
        "lingers (a long-poll client comes straight back)"
    );
    b.pump_until("unsubscribed", |_| numsub(&r) == 0);
    // And a listener after that subscribes again.
    let last = a.info(b"linger").unwrap().last_message_id.unwrap();
    let k = b.hold(b"linger", after(last));
    a.publish(b"linger", b"again");
    assert_eq!(b.answer(k).body(), b"again");
}

#[test]
fn a_forgotten_listener_stops_counting() {
    let r = RedisServer::start();
    let (mut a, mut b) = two(&r);
    let Ok(Listening::Held(chan, k)) = b.listen(b"gone", Cursor::default(), Concurrency::First)
    else {
        panic!()
    };
    assert!(b.forget(chan, k));
    assert!(!b.forget(chan, k), "once");
    b.pump_until("count sent", |n| {
        !n.b.counts_pending() && n.b.in_flight() == 0
    });
    assert!(matches!(
        a.listen(b"gone", Cursor::default(), Concurrency::First),
        Ok(Listening::Held(..))
    ));
    let keys = r.keys();
    assert!(keys.iter().any(|k| k.starts_with(b"{push:gone}")));
}

#[test]
fn a_listener_only_channel_is_freed_when_its_last_listener_leaves() {
    let r = RedisServer::start();
    let mut b = Node::up(r.port, "b");
    for i in 0..20 {
        let id = format!("rnd{i}");
        let Ok(Listening::Held(chan, k)) =
            b.listen(id.as_bytes(), Cursor::default(), Concurrency::Broadcast)
        else {
            panic!()
        };
        b.forget(chan, k);
    }
    b.pump_until("counts sent", |n| {
        !n.b.counts_pending() && n.b.in_flight() == 0
    });
    assert_eq!(
        r.keys(),
        vec![b"push:epoch".to_vec()],
        "random ids leave nothing behind"
    );
}

#[test]
fn a_wrong_password_is_a_clear_log_line() {
    let r = RedisServer::start_with(RedisOpts {
        password: Some("right".into()),
        ..RedisOpts::default()
    });
    let mut cfg = config(r.port, "a", &["push:"], 300);
    cfg.url.password = Some(b"wrong".to_vec());
    let mut a = Node::new(cfg);
    a.reconnect = false;
    a.pump_until("refused", |n| n.phase() == Phase::Down);
    let logs = a.b.take_logs();
    assert!(logs.iter().any(|l| l.1.contains("password")), "{logs:?}");
    let mut cfg = config(r.port, "b", &["push:"], 300);
    cfg.url.password = Some(b"right".to_vec());
    let mut b = Node::new(cfg);
    b.wait_up();
    b.publish(b"ok", b"yes");
}

#[test]
fn the_url_selects_a_database_and_authenticates() {
    let r = RedisServer::start_with(RedisOpts {
        password: Some("s3cret".into()),
        ..RedisOpts::default()
    });
    let mut cfg = config(r.port, "a", &["push:"], 300);
    cfg.url = push_relay::redis::url::RedisUrl::parse(&format!(
        "redis://default:s3cret@127.0.0.1:{}/3",
        r.port
    ))
    .unwrap();
    let mut a = Node::new(cfg);
    a.wait_up();
    a.publish(b"db", b"in db 3");
    assert!(r.keys().is_empty(), "nothing in db 0");
    let Reply::Bulk(Some(info)) = r.cmd(&[b"INFO", b"keyspace"]) else {
        panic!()
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("db3:keys="), "{info}");
}
