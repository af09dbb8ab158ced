//! The ways the peers failed their users (shared/LESSONS.md) that other
//! files do not already cover: starting from "now", the cursor through a
//! proxy, and many channels at once.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A listener that sends `If-Modified-Since: <now>` and no Etag (the
/// README's recipe) skips what was stored before and waits for the next
/// message.
fn start_from_now(workers: usize) {
    let ngx = Conf::new(workers).start();
    let old = ngx.post("now", b"old news");
    assert_eq!(old.status, 202);
    let stored = ngx.listener().recv_now(&Req::get(&chan_path("now")));
    let published = position(&stored).0;
    // "Now" must be a later second than the stored message's.
    wait_until(
        Duration::from_secs(3),
        "the clock passes the stored message's second",
        || unix_now() > published,
    );
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("now")).header("If-Modified-Since", &fmt_http_date(unix_now())));
    ngx.wait_subscribers("now", 1);
    assert!(
        !l.is_answered_within(HELD_CHECK),
        "the stored message is not replayed"
    );
    assert_eq!(ngx.post("now", b"fresh").status, 201);
    assert_eq!(l.recv(PROMPT).body, b"fresh");
    ngx.stop_and_check();
}

/// The cursor survives a proxy in front of the listener location: messages
/// published in one second are walked in order through `proxy_pass`.
fn cursor_through_proxy(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_server(
            "location /proxied { proxy_pass http://127.0.0.1:$server_port/?$args; proxy_read_timeout 30s; }",
        )
        .start();
    let mut sent = Vec::new();
    for i in 0..6 {
        let body = format!("p{i}");
        ngx.post("px", body.as_bytes());
        sent.push(body.into_bytes());
    }
    let mut cursor = Cursor::default();
    let mut got = Vec::new();
    let mut prev: Option<(i64, u64)> = None;
    let mut c = ngx.listener();
    for _ in 0..6 {
        let mut req = Req::get("/proxied?channel=px");
        if let Some(lm) = &cursor.last_modified {
            req = req.header("If-Modified-Since", lm);
        }
        if let Some(e) = &cursor.etag {
            req = req.header("If-None-Match", e);
        }
        let r = c.recv_now(&req);
        assert_eq!(r.status, 200);
        let pos = position(&r);
        if let Some(p) = prev {
            assert_successor(p, pos);
        }
        prev = Some(pos);
        cursor = r.cursor();
        got.push(r.body);
    }
    assert_eq!(
        got, sent,
        "every message, in order, once, through the proxy"
    );
    // And the next request through the proxy is held until a new message.
    let mut req = Req::get("/proxied?channel=px");
    if let Some(lm) = &cursor.last_modified {
        req = req.header("If-Modified-Since", lm);
    }
    if let Some(e) = &cursor.etag {
        req = req.header("If-None-Match", e);
    }
    c.send(&req);
    ngx.wait_subscribers("px", 1);
    assert_eq!(ngx.post("px", b"p6").status, 201);
    assert_eq!(c.recv(PROMPT).body, b"p6");
    ngx.stop_and_check();
}

/// 5,000 channels with messages, 600 of them with a held listener spread
/// over the workers: every held listener gets its own channel's message and
/// no other (nchan #367 lost long-poll messages at 5,000+ channels).
fn many_channels(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_buffer_size 16m; keepalive_requests 100000;")
        .start();
    let held = 600;
    let mut conns = Vec::new();
    for i in 0..held {
        let mut c = ngx.listener();
        c.send(&Req::get(&chan_path(&format!("many{i}"))));
        conns.push(c);
    }
    for i in 0..held {
        ngx.wait_subscribers(&format!("many{i}"), 1);
    }
    let mut sender = ngx.sender();
    for i in (0..5000).rev() {
        let ch = format!("many{i}");
        let r = sender.request(&Req::post(&chan_path(&ch), ch.as_bytes()));
        let want = if i < held { 201 } else { 202 };
        assert_eq!(r.status, want, "POST to {ch}");
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c.recv(PROMPT);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("many{i}"));
    }
    // The stored ones are all there too.
    for i in [held, 2500, 4999] {
        let r = ngx
            .listener()
            .recv_now(&Req::get(&chan_path(&format!("many{i}"))));
        assert_eq!(r.text(), format!("many{i}"));
    }
    ngx.stop_and_check();
}

both_workers!(start_from_now, cursor_through_proxy, many_channels);
