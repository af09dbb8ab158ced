//! The later module's names (0.6x/0.7x) load and behave like the 2009 names.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn aliased(workers: usize) -> Conf {
    Conf::new(workers)
        .listener_body("set $push_channel_id $arg_channel; push_subscriber;")
        .sender_body("set $push_channel_id $arg_channel; push_publisher;")
}

/// push_publisher / push_subscriber / $push_channel_id: hold and deliver.
fn publisher_subscriber(workers: usize) {
    let ngx = aliased(workers).start();
    let mut l = ngx.listener();
    let lpid = l.worker_pid();
    l.send(&Req::get(&chan_path("al")));
    ngx.wait_subscribers("al", 1);
    let (mut s, _) = ngx.connection_not_in(ngx.sender_port, lpid);
    let pr =
        s.request(&Req::post(&chan_path("al"), b"aliased").header("Content-Type", "text/plain"));
    assert_eq!(pr.status, 201);
    let r = l.recv(PROMPT);
    assert_eq!(r.body, b"aliased");
    assert_eq!(r.header("Etag"), Some("\"0\""));
    ngx.stop_and_check();
}

/// `$push_channel_id` and `$push_id` name the same channel.
fn variable_alias_same_channel(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_body("set $push_channel_id $arg_channel; push_listener;")
        .start();
    ngx.publish("v", b"via push_id");
    let r = ngx.listener().recv_now(&Req::get(&chan_path("v")));
    assert_eq!(r.body, b"via push_id");
    ngx.stop_and_check();
}

/// push_subscriber interval-poll.
fn subscriber_interval_poll(workers: usize) {
    let ngx = aliased(workers)
        .listener_body("set $push_channel_id $arg_channel; push_subscriber interval-poll;")
        .start();
    let r = ngx.listener().recv_now(&Req::get(&chan_path("ip")));
    assert_eq!(r.status, 304);
    ngx.stop_and_check();
}

/// push_subscriber_concurrency first / broadcast.
fn subscriber_concurrency(workers: usize) {
    let ngx = aliased(workers)
        .listener_extra("push_subscriber_concurrency first;")
        .start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 2);
    conns[0].0.send(&Req::get(&chan_path("sc")));
    ngx.wait_subscribers("sc", 1);
    assert_eq!(conns[1].0.recv_now(&Req::get(&chan_path("sc"))).status, 409);
    ngx.stop_and_check();

    let ngx = aliased(workers)
        .http("push_subscriber_concurrency broadcast;")
        .start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 2);
    for (c, _) in conns.iter_mut() {
        c.send(&Req::get(&chan_path("sb")));
    }
    ngx.wait_subscribers("sb", 2);
    assert_eq!(ngx.post("sb", b"both").status, 201);
    for (c, _) in conns.iter_mut() {
        assert_eq!(c.recv(PROMPT).body, b"both");
    }
    ngx.stop_and_check();
}

/// push_store_messages off.
fn store_messages_off(workers: usize) {
    let ngx = aliased(workers).http("push_store_messages off;").start();
    assert_eq!(ngx.post("so", b"gone").status, 202);
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("so")));
    assert!(!l.is_answered_within(HELD_CHECK));
    ngx.wait_subscribers("so", 1);
    ngx.stop_and_check();
}

/// push_max_message_buffer_length.
fn max_message_buffer_length(workers: usize) {
    let ngx = aliased(workers)
        .http("push_max_message_buffer_length 2;")
        .start();
    for i in 1..=4 {
        ngx.publish("mb", format!("m{i}").as_bytes());
    }
    assert_eq!(
        ngx.listener().recv_now(&Req::get(&chan_path("mb"))).body,
        b"m3"
    );
    ngx.stop_and_check();
}

/// push_subscriber_timeout.
fn subscriber_timeout(workers: usize) {
    let ngx = aliased(workers)
        .listener_extra("push_subscriber_timeout 1s;")
        .start();
    let mut l = ngx.listener();
    let t0 = Instant::now();
    l.send(&Req::get(&chan_path("st")));
    ngx.wait_subscribers("st", 1);
    let r = l.recv(Duration::from_secs(6));
    assert_eq!(r.status, 304);
    assert!(t0.elapsed() >= Duration::from_millis(700));
    ngx.stop_and_check();
}

/// push_max_reserved_memory sizes the zone: 32k fills up and answers 507.
fn max_reserved_memory(workers: usize) {
    let ngx = aliased(workers)
        .http("push_max_reserved_memory 32k; push_message_buffer_length 1000;")
        .start();
    let mut statuses = Vec::new();
    for i in 0..200 {
        let r = ngx.post_typed(
            "mr",
            Some("application/octet-stream"),
            &payload(3000, i as u8),
        );
        statuses.push(r.status);
        if r.status == 507 {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&507),
        "a 32k zone fills: {statuses:?}"
    );
    ngx.stop_and_check();
}

both_workers!(
    publisher_subscriber,
    variable_alias_same_channel,
    subscriber_interval_poll,
    subscriber_concurrency,
    store_messages_off,
    max_message_buffer_length,
    subscriber_timeout,
    max_reserved_memory,
);

#[test]
fn alias_refusals_name_the_alias() {
    let t = aliased(1)
        .http("push_subscriber_concurrency sideways;")
        .nginx_t();
    t.assert_refused(
        "push_subscriber_concurrency",
        "push_subscriber_concurrency sideways;",
    );
    let t = aliased(1).http("push_max_reserved_memory 1k;").nginx_t();
    t.assert_refused("push_max_reserved_memory", "push_max_reserved_memory 1k;");
    let t = aliased(1).http("push_store_messages perhaps;").nginx_t();
    t.assert_refused("push_store_messages", "push_store_messages perhaps;");
}

/// The default concurrency follows the names (PROTOCOL.md, Concurrency):
/// a `push_subscriber` location broadcasts, as the 0.7x module did; a
/// `push_listener` one keeps `last`; an explicit rule wins either way.
fn default_follows_the_names(workers: usize) {
    let ngx = aliased(workers).start();
    let mut held = ngx.spread_connections(ngx.listener_port, 3);
    for (c, _) in &mut held {
        c.send(&Req::get(&chan_path("bc")));
    }
    ngx.wait_subscribers("bc", 3);
    assert_eq!(ngx.post("bc", b"to all").status, 201);
    for (c, _) in &mut held {
        assert_eq!(c.recv(PROMPT).body, b"to all", "push_subscriber broadcasts");
    }
    ngx.stop_and_check();

    let seed = Conf::new(workers).start();
    let mut old = seed.listener();
    old.send(&Req::get(&chan_path("l")));
    seed.wait_subscribers("l", 1);
    let mut new = seed.listener();
    new.send(&Req::get(&chan_path("l")));
    assert_eq!(old.recv(PROMPT).status, 409, "push_listener keeps last");
    seed.stop_and_check();

    let told = aliased(workers)
        .listener_extra("push_subscriber_concurrency last;")
        .start();
    let mut old = told.listener();
    old.send(&Req::get(&chan_path("t")));
    told.wait_subscribers("t", 1);
    let mut new = told.listener();
    new.send(&Req::get(&chan_path("t")));
    assert_eq!(old.recv(PROMPT).status, 409, "explicit last wins");
    drop(new);
    told.stop_and_check();
}

both_workers!(default_follows_the_names);
