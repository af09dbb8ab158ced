//! Hold and deliver, 201/202, queueing on/off, body transport (temp file,
//! chunked), Content-Type travelling with the message.

#[macro_use]
mod common;

use common::*;

/// The headers every message answer must carry, checked against what was sent.
fn assert_message(r: &Response, body: &[u8], ctype: &str) {
    assert_eq!(r.status, 200, "message answer status (body {:?})", r.text());
    assert!(
        r.body == body,
        "body differs: got {} bytes, sent {}",
        r.body.len(),
        body.len()
    );
    assert_eq!(r.header("Content-Type"), Some(ctype), "Content-Type");
    assert_eq!(r.content_length(), Some(body.len()), "Content-Length");
    let lm = r.header("Last-Modified").expect("Last-Modified");
    assert!(
        http_date(lm).is_some(),
        "Last-Modified is an HTTP date: {lm:?}"
    );
    let etag = r.header("Etag").expect("Etag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag_number(etag).is_some(),
        "Etag is a quoted number: {etag:?}"
    );
    let vary = r.header("Vary").expect("Vary").to_ascii_lowercase();
    assert!(
        vary.contains("if-none-match") && vary.contains("if-modified-since"),
        "Vary: {vary:?}"
    );
}

/// A listener held in one worker gets a message POSTed through another
/// worker (with 4 workers), byte for byte, with the sender's Content-Type,
/// and the held answer equals an immediate answer for the same message.
fn hold_and_deliver(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut l = ngx.listener();
    let lpid = l.worker_pid();
    l.send(&Req::get(&chan_path("c")));
    assert!(!l.is_answered_within(HELD_CHECK), "listener must be held");
    ngx.wait_subscribers("c", 1);

    let (mut s, spid) = ngx.connection_not_in(ngx.sender_port, lpid);
    if workers > 1 {
        assert_ne!(spid, lpid);
    }
    let body = payload(3000, 7);
    let ctype = "application/x-test; charset=binary";
    let pr = s.request(&Req::post(&chan_path("c"), &body).header("Content-Type", ctype));
    assert_eq!(pr.status, 201, "POST to a held listener: {}", pr.text());
    assert_eq!(pr.content_length(), Some(pr.body.len()));
    assert_eq!(pr.worker(), Some(spid));

    let m = l.recv(PROMPT);
    assert_message(&m, &body, ctype);
    assert_eq!(m.worker(), Some(lpid), "answered by the listener's worker");
    // Last-Modified is the second the message was published.
    let posted = http_date(pr.header("Date").expect("Date")).unwrap();
    let lm = http_date(m.header("Last-Modified").unwrap()).unwrap();
    assert!(
        (posted - 1..=posted).contains(&lm),
        "Last-Modified {lm} vs POST Date {posted}"
    );
    assert_eq!(
        etag_number(m.header("Etag").unwrap()),
        Some(0),
        "first message of a channel has tag 0"
    );
    assert_eq!(m.header("Etag"), Some("\"0\""));

    // The message was stored too: a fresh listener gets it at once, same bytes.
    let again = ngx.listener().recv_now(&Req::get(&chan_path("c")));
    assert_message(&again, &body, ctype);
    for h in [
        "Last-Modified",
        "Etag",
        "Content-Type",
        "Content-Length",
        "Vary",
    ] {
        assert_eq!(
            again.header(h),
            m.header(h),
            "{h} of held vs immediate answer"
        );
    }
    // The delivered listener is no longer counted.
    ngx.wait_subscribers("c", 0);
    // The listener's keep-alive connection is still usable.
    assert_eq!(l.worker_pid(), lpid);
    ngx.stop_and_check();
}

/// POST with nobody listening answers 202 with a channel-info body; the next
/// listener gets the message at once; a listener past it is held.
fn accepted_then_immediate(workers: usize) {
    let ngx = Conf::new(workers).start();
    let body = b"hello".to_vec();
    let pr = ngx.post("a", &body);
    assert_eq!(pr.status, 202, "nobody listening: {}", pr.text());
    assert_eq!(
        pr.content_length(),
        Some(pr.body.len()),
        "sender answer has Content-Length"
    );
    assert!(!pr.body.is_empty(), "sender answer carries channel info");

    let (mut l, _) = ngx
        .spread_connections(ngx.listener_port, workers)
        .pop()
        .unwrap();
    let r = l.recv_now(&Req::get(&chan_path("a")));
    assert_message(&r, &body, "text/plain");

    // Asking past it: held until the next one.
    l.send(&listen_req("a", &r.cursor()));
    assert!(!l.is_answered_within(HELD_CHECK), "nothing newer: held");
    ngx.wait_subscribers("a", 1);
    let pr = ngx.post("a", b"second");
    assert_eq!(pr.status, 201);
    let r2 = l.recv(PROMPT);
    assert_message(&r2, b"second", "text/plain");
    assert_successor(position(&r), position(&r2));
    ngx.stop_and_check();
}

/// A message without Content-Type is delivered with the listener location's
/// default_type.
fn default_type_of_listener(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("default_type text/x-listener-default;")
        .start();
    let pr = ngx.post_typed("d", None, b"untyped");
    assert_eq!(pr.status, 202);
    let r = ngx.listener().recv_now(&Req::get(&chan_path("d")));
    assert_message(&r, b"untyped", "text/x-listener-default");
    ngx.stop_and_check();
}

/// push_queue_messages off: held listeners get the message, nothing is
/// stored, a later listener waits, and the cursor still advances.
fn queue_off(workers: usize) {
    let ngx = Conf::new(workers).http("push_queue_messages off;").start();
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("q")));
    ngx.wait_subscribers("q", 1);
    assert_eq!(ngx.post("q", b"one").status, 201);
    let m1 = l.recv(PROMPT);
    assert_message(&m1, b"one", "text/plain");

    // Nobody listening: accepted, stored for nobody.
    assert_eq!(ngx.post("q", b"two").status, 202);
    let mut late = ngx.listener();
    late.send(&Req::get(&chan_path("q")));
    assert!(
        !late.is_answered_within(HELD_CHECK),
        "queueing off: a later listener must wait, not get a stored message"
    );
    ngx.wait_subscribers("q", 1);
    let info = ngx.info("q").text();
    assert_eq!(
        info_field(&info, "queued messages"),
        Some(0),
        "info: {info}"
    );

    assert_eq!(ngx.post("q", b"three").status, 201);
    let m3 = late.recv(PROMPT);
    assert_message(&m3, b"three", "text/plain");
    // ids never repeat, even for messages that were not stored
    let (p1, p3) = (position(&m1), position(&m3));
    assert!(p3 > p1, "cursor must advance: {p1:?} then {p3:?}");
    if p3.0 == p1.0 {
        assert_eq!(p3.1, p1.1 + 2, "the unstored message 'two' used a tag too");
    }
    ngx.stop_and_check();
}

/// A 1 MiB body buffered by nginx to a temporary file, sent with
/// Content-Length and chunked, arrives byte for byte.
fn big_body_through_temp_file(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_buffer_size 8m;")
        .sender_extra("client_body_buffer_size 1k; client_max_body_size 2m;")
        .start();
    let big = payload(1 << 20, 42);
    let mut l = ngx.listener();
    let lpid = l.worker_pid();
    l.send(&Req::get(&chan_path("big")));
    ngx.wait_subscribers("big", 1);
    let (mut s, _) = ngx.connection_not_in(ngx.sender_port, lpid);
    let pr = s.request(
        &Req::post(&chan_path("big"), &big).header("Content-Type", "application/octet-stream"),
    );
    assert_eq!(pr.status, 201, "{}", pr.text());
    let m = l.recv(PROMPT);
    assert_message(&m, &big, "application/octet-stream");
    assert!(
        ngx.error_log().contains("buffered to a temporary file"),
        "the body must have gone through a temporary file"
    );

    // Chunked request body, nobody listening: stored, then read with the cursor.
    let big2 = payload(1 << 20, 43);
    let pr = s.request(
        &Req::post(&chan_path("big"), &big2)
            .header("Content-Type", "application/x-chunked")
            .chunked(8192),
    );
    assert_eq!(pr.status, 202, "{}", pr.text());
    let m2 = ngx.listener().recv_now(&listen_req("big", &m.cursor()));
    assert_message(&m2, &big2, "application/x-chunked");
    ngx.stop_and_check();
}

/// HEAD on a listener with a stored message: the same headers, no body.
fn head_listener(workers: usize) {
    let ngx = Conf::new(workers).start();
    ngx.publish("h", b"head body");
    let mut l = ngx.listener();
    let r = l.recv_now(&Req::new("HEAD", &chan_path("h")));
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(9));
    assert!(r.has_header("Etag") && r.has_header("Last-Modified"));
    // The connection is still in sync (no body was sent after the head).
    let g = l.recv_now(&Req::get(&chan_path("h")));
    assert_message(&g, b"head body", "text/plain");
    ngx.stop_and_check();
}

/// Empty and binary bodies; ids with odd bytes are distinct channels.
fn odd_bodies_and_ids(workers: usize) {
    let ngx = Conf::new(workers).start();
    assert_eq!(ngx.post("empty", b"").status, 202);
    let r = ngx.listener().recv_now(&Req::get(&chan_path("empty")));
    assert_message(&r, b"", "text/plain");

    let ids = ["a b", "a%20b", "A b", "a\u{e9}", "a/b", "a/b/"];
    for (i, id) in ids.iter().enumerate() {
        ngx.publish(id, format!("msg{i}").as_bytes());
    }
    for (i, id) in ids.iter().enumerate() {
        let r = ngx.listener().recv_now(&Req::get(&chan_path(id)));
        assert_message(&r, format!("msg{i}").as_bytes(), "text/plain");
        assert_eq!(
            etag_number(r.header("Etag").unwrap()),
            Some(0),
            "{id:?} is its own channel"
        );
    }
    ngx.stop_and_check();
}

/// Messages keep flowing to one held listener after another across workers:
/// 20 rounds, each delivered exactly once and in order.
fn many_rounds_cross_worker(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut conns = ngx.spread_connections(ngx.listener_port, workers.max(2));
    let mut cursor = Cursor::default();
    let mut prev = None;
    for i in 0..20 {
        let (l, _) = &mut conns[i % workers.max(2)];
        l.send(&listen_req("r", &cursor));
        ngx.wait_subscribers("r", 1);
        let body = format!("round {i}");
        assert_eq!(ngx.post("r", body.as_bytes()).status, 201, "round {i}");
        let m = l.recv(PROMPT);
        assert_message(&m, body.as_bytes(), "text/plain");
        if let Some(p) = prev {
            assert_successor(p, position(&m));
        }
        prev = Some(position(&m));
        cursor = m.cursor();
    }
    ngx.stop_and_check();
}

both_workers!(
    hold_and_deliver,
    accepted_then_immediate,
    default_type_of_listener,
    queue_off,
    big_body_through_temp_file,
    head_listener,
    odd_bodies_and_ids,
    many_rounds_cross_worker,
);

#[test]
fn module_loads() {
    let t = Conf::new(1).nginx_t();
    t.assert_ok();
}
