//! Listener side of the protocol: interval-poll, push_listener_timeout,
//! authorized channels, id limits, subscriber limit, CORS, 405, channel
//! groups.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn assert_304_echo(r: &Response, cursor: &Cursor, what: &str) {
    assert_eq!(r.status, 304, "{what}: got {}", r.status);
    assert_eq!(
        r.header("Last-Modified"),
        cursor.last_modified.as_deref(),
        "{what}: Last-Modified echoed"
    );
    match (&cursor.etag, r.header("Etag")) {
        (Some(sent), Some(got)) => assert_eq!(etag_number(got), etag_number(sent), "{what}: Etag"),
        (None, None) => {}
        (s, g) => panic!("{what}: Etag sent {s:?}, echoed {g:?}"),
    }
}

fn assert_cors(r: &Response, origin: &str, what: &str) {
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some(origin),
        "{what}: Allow-Origin"
    );
    let expose = r
        .header("Access-Control-Expose-Headers")
        .unwrap_or_else(|| panic!("{what}: no Access-Control-Expose-Headers"));
    assert_eq!(expose, "Etag, Last-Modified", "{what}");
}

/// interval-poll: never held; 304 at once with the cursor echoed; the next
/// poll after a publish gets the message.
fn interval_poll(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_body("set $push_id $arg_channel; push_listener interval-poll;")
        .start();
    let mut l = ngx.listener();
    let r = l.recv_now(&Req::get(&chan_path("ip")));
    assert_304_echo(
        &r,
        &Cursor::default(),
        "interval-poll, empty channel, no cursor",
    );
    ngx.publish("ip", b"first");
    let m = l.recv_now(&Req::get(&chan_path("ip")));
    assert_eq!(m.status, 200);
    assert_eq!(m.body, b"first");
    let c = m.cursor();
    let r = l.recv_now(&listen_req("ip", &c));
    assert_304_echo(&r, &c, "interval-poll past the newest");
    ngx.publish("ip", b"second");
    let m2 = l.recv_now(&listen_req("ip", &c));
    assert_eq!(m2.body, b"second");
    assert_successor(position(&m), position(&m2));
    // A weak etag is echoed as a tag of the same number.
    let weak = Cursor {
        etag: Some(format!("W/{}", m2.header("Etag").unwrap())),
        ..m2.cursor()
    };
    let r = l.recv_now(&listen_req("ip", &weak));
    assert_304_echo(&r, &weak, "interval-poll, weak etag");
    // Nobody is ever counted as held.
    assert_eq!(ngx.subscribers("ip"), Some(0));
    ngx.stop_and_check();
}

/// push_listener_timeout: held, then 304 with the cursor echoed after about
/// that long; the next request gets the next message.
fn listener_timeout(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_timeout 1s;")
        .start();
    ngx.publish("lt", b"m1");
    let m1 = ngx.listener().recv_now(&Req::get(&chan_path("lt")));
    let c = m1.cursor();
    let mut l = ngx.listener();
    let t0 = Instant::now();
    l.send(&listen_req("lt", &c));
    ngx.wait_subscribers("lt", 1);
    let r1 = l.recv(Duration::from_secs(6));
    let took = t0.elapsed();
    assert_304_echo(&r1, &c, "listener timeout");
    assert!(
        took >= Duration::from_millis(700),
        "answered after {took:?}, before the 1 s timeout"
    );
    ngx.wait_subscribers("lt", 0);
    // Without a cursor on an empty channel: 304 with no cursor headers.
    let mut l2 = ngx.listener();
    l2.send(&Req::get(&chan_path("lt-empty")));
    let r = l2.recv(Duration::from_secs(6));
    assert_304_echo(&r, &Cursor::default(), "listener timeout, no cursor");
    // Next poll with the echoed cursor gets the next message.
    ngx.publish("lt", b"m2");
    let m2 = l.recv_now(&listen_req("lt", &r1.cursor()));
    assert_eq!(m2.body, b"m2");
    assert_successor(position(&m1), position(&m2));
    ngx.stop_and_check();
}

/// A long push_listener_timeout never holds up quit or reload.
fn listener_timeout_does_not_hold_shutdown(workers: usize) {
    let mut ngx = Conf::new(workers)
        .listener_extra("push_listener_timeout 1h;")
        .start();
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("long")));
    ngx.wait_subscribers("long", 1);
    let old = ngx.reload();
    assert_eq!(l.recv(Duration::from_secs(3)).status, 304);
    assert!(
        ngx.wait_workers_gone(&old, Duration::from_secs(3)),
        "old workers exit at once"
    );
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("long")));
    ngx.wait_subscribers("long", 1);
    let t0 = Instant::now();
    ngx.quit();
    assert_eq!(l.recv(Duration::from_secs(3)).status, 304);
    assert!(ngx.wait_exit(Duration::from_secs(3)), "exit after quit");
    eprintln!("quit took {:?}", t0.elapsed());
    ngx.stop_and_check();
}

/// push_authorized_channels_only on: 403 for channels no sender created;
/// after PUT or POST listeners are accepted.
fn authorized_only(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_authorized_channels_only on;")
        .start();
    let r = ngx.listener().recv_now(&Req::get(&chan_path("nobody")));
    assert_eq!(r.status, 403, "channel never created by a sender");
    assert_eq!(ngx.info("nobody").status, 404, "the 403 did not create it");
    ngx.sender().request(&Req::new("PUT", &chan_path("made")));
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("made")));
    assert!(!l.is_answered_within(HELD_CHECK));
    ngx.wait_subscribers("made", 1);
    ngx.publish("posted", b"p");
    let r = ngx.listener().recv_now(&Req::get(&chan_path("posted")));
    assert_eq!(r.body, b"p");
    ngx.stop_and_check();
}

/// Off (default): listeners may create channels.
fn authorized_only_off(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("stranger")));
    ngx.wait_subscribers("stranger", 1);
    ngx.stop_and_check();
}

/// Empty id: 400 `No channel id provided.` on both locations.
fn empty_id(workers: usize) {
    let ngx = Conf::new(workers).start();
    for (what, port) in [("listener", ngx.listener_port), ("sender", ngx.sender_port)] {
        let mut reqs = vec![Req::get("/"), Req::get("/?channel=")];
        if what == "sender" {
            reqs.push(Req::post("/?channel=", b"x"));
            reqs.push(Req::new("PUT", "/?channel="));
        }
        for req in reqs {
            let r = Conn::open(port).recv_now(&req);
            assert_eq!(r.status, 400, "{what} {} {}", req.method, req.path);
            assert_eq!(r.text().trim_end(), "No channel id provided.", "{what}");
            assert!(r
                .header("Content-Type")
                .unwrap_or("")
                .starts_with("text/plain"));
        }
    }
    ngx.stop_and_check();
}

/// push_max_channel_id_length: longer ids 400, never truncated.
fn id_length(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_max_channel_id_length 10;")
        .start();
    let ok = "0123456789";
    let long = "0123456789X";
    assert_eq!(ngx.post(long, b"x").status, 400, "sender, 11 bytes");
    assert_eq!(
        ngx.listener().recv_now(&Req::get(&chan_path(long))).status,
        400,
        "listener, 11 bytes"
    );
    assert_eq!(ngx.post(ok, b"fits").status, 202);
    let r = ngx.listener().recv_now(&Req::get(&chan_path(ok)));
    assert_eq!(r.body, b"fits");
    ngx.stop_and_check();
}

/// Default limit 512; ids that share a long prefix never collide.
fn id_length_default_and_no_truncation(workers: usize) {
    let ngx = Conf::new(workers).start();
    let base = "i".repeat(511);
    assert_eq!(ngx.post(&format!("{base}a"), b"A").status, 202);
    assert_eq!(ngx.post(&format!("{base}b"), b"B").status, 202);
    assert_eq!(
        ngx.post(&format!("{base}ab"), b"C").status,
        400,
        "513 bytes"
    );
    let ra = ngx
        .listener()
        .recv_now(&Req::get(&chan_path(&format!("{base}a"))));
    let rb = ngx
        .listener()
        .recv_now(&Req::get(&chan_path(&format!("{base}b"))));
    assert_eq!((ra.body, rb.body), (b"A".to_vec(), b"B".to_vec()));
    ngx.stop_and_check();
}

/// push_max_channel_subscribers 2 (broadcast): a third listener in another
/// worker gets 403; after one leaves there is room again.
fn max_subscribers(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_max_channel_subscribers 2;")
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 3);
    conns[0].0.send(&Req::get(&chan_path("ms")));
    conns[1].0.send(&Req::get(&chan_path("ms")));
    ngx.wait_subscribers("ms", 2);
    let (c, pid) = &mut conns[2];
    let r = c.recv_now(&Req::get(&chan_path("ms")));
    assert_eq!(r.status, 403, "third listener over the limit");
    assert_eq!(r.worker(), Some(*pid));
    let (gone, _) = conns.remove(0);
    gone.abort();
    ngx.wait_subscribers("ms", 1);
    let (c, _) = &mut conns[1];
    c.send(&Req::get(&chan_path("ms")));
    ngx.wait_subscribers("ms", 2);
    assert_eq!(ngx.post("ms", b"both").status, 201);
    for (c, _) in conns.iter_mut() {
        assert_eq!(c.recv(PROMPT).body, b"both");
    }
    ngx.stop_and_check();
}

/// Under `last` a replacement does not count as one more.
fn max_subscribers_last_replacement(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_max_channel_subscribers 1;")
        .start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 2);
    conns[0].0.send(&Req::get(&chan_path("mr")));
    ngx.wait_subscribers("mr", 1);
    conns[1].0.send(&Req::get(&chan_path("mr")));
    assert_eq!(conns[0].0.recv(PROMPT).status, 409, "older replaced");
    assert!(
        !conns[1].0.is_answered_within(HELD_CHECK),
        "newer held, not 403"
    );
    ngx.wait_subscribers("mr", 1);
    ngx.stop_and_check();
}

/// CORS on every listener answer; OPTIONS preflight with and without
/// Origin; 405 with Allow for other methods.
fn cors_and_405(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency last;")
        .start();
    ngx.publish("cors", b"m");
    let mut l = ngx.listener();
    let m = l.recv_now(&Req::get(&chan_path("cors")).header("Origin", "https://x.example"));
    assert_eq!(m.status, 200);
    assert_cors(&m, "*", "200 message");
    // held then 409
    let mut a = ngx.listener();
    a.send(&listen_req("cors", &m.cursor()));
    ngx.wait_subscribers("cors", 1);
    let mut b = ngx.listener();
    b.send(&listen_req("cors", &m.cursor()));
    let r409 = a.recv(PROMPT);
    assert_eq!(r409.status, 409);
    assert_cors(&r409, "*", "409");
    ngx.wait_subscribers("cors", 1);
    ngx.publish("cors", b"m2");
    let held = b.recv(PROMPT);
    assert_eq!(held.status, 200);
    assert_cors(&held, "*", "held 200");
    let e = l.recv_now(&Req::get("/?channel="));
    assert_eq!(e.status, 400);
    assert_cors(&e, "*", "400");

    for origin in [None, Some("https://x.example")] {
        let mut req = Req::new("OPTIONS", &chan_path("cors"));
        if let Some(o) = origin {
            req = req
                .header("Origin", o)
                .header("Access-Control-Request-Method", "GET");
        }
        let r = l.recv_now(&req);
        assert_eq!(r.status, 200, "OPTIONS origin {origin:?}");
        assert_cors(&r, "*", "OPTIONS");
        assert_eq!(
            r.header("Access-Control-Allow-Methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            r.header("Access-Control-Allow-Headers"),
            Some("If-None-Match, If-Modified-Since, Origin")
        );
    }
    for mth in ["POST", "PUT", "DELETE", "PATCH"] {
        let mut req = Req::new(mth, &chan_path("cors"));
        if mth != "DELETE" {
            req = req.body(b"nope");
        }
        let r = l.recv_now(&req);
        assert_eq!(r.status, 405, "{mth} on the listener");
        assert_eq!(r.header("Allow"), Some("GET, OPTIONS"), "{mth}");
        assert_cors(&r, "*", "405");
    }
    // None of those published anything.
    let j = ngx.info("cors").text();
    assert_eq!(info_field(&j, "queued messages"), Some(2), "{j}");
    ngx.stop_and_check();
}

/// push_allow_origin: a fixed value, a variable, and empty = no CORS.
fn allow_origin_values(workers: usize) {
    let ngx = Conf::new(workers)
        .raw_http(
            "server { listen 127.0.0.1:{listener_port}; {pid_location}
               location /fixed { set $push_id $arg_channel; push_listener interval-poll; push_allow_origin https://app.example; }
               location /var { set $push_id $arg_channel; push_listener interval-poll; push_allow_origin $http_origin; }
               location /none { set $push_id $arg_channel; push_listener interval-poll; push_allow_origin \"\"; }
             }
             server { listen 127.0.0.1:{sender_port}; {pid_location}
               location / { set $push_id $arg_channel; push_sender; } }",
        )
        .start();
    let mut l = ngx.listener();
    let r = l.recv_now(&Req::get("/fixed?channel=a"));
    assert_eq!(r.status, 304);
    assert_cors(&r, "https://app.example", "fixed");
    let r = l.recv_now(&Req::get("/var?channel=a").header("Origin", "https://o.example"));
    assert_cors(&r, "https://o.example", "variable");
    let r =
        l.recv_now(&Req::new("OPTIONS", "/var?channel=a").header("Origin", "https://p.example"));
    assert_eq!(r.status, 200);
    assert_cors(&r, "https://p.example", "variable OPTIONS");
    let r = l.recv_now(&Req::get("/none?channel=a").header("Origin", "https://o.example"));
    assert_eq!(r.status, 304);
    assert!(
        !r.has_header("Access-Control-Allow-Origin"),
        "empty push_allow_origin: no CORS"
    );
    assert!(!r.has_header("Access-Control-Expose-Headers"));
    ngx.stop_and_check();
}

/// push_channel_group: locations with different groups never share a
/// channel; the same group does; variables allowed.
fn channel_groups(workers: usize) {
    let ngx = Conf::new(workers)
        .raw_http(
            "server { listen 127.0.0.1:{listener_port}; {pid_location}
               location /g1 { set $push_id $arg_channel; push_channel_group g1; push_listener interval-poll; }
               location /g2 { set $push_id $arg_channel; push_channel_group g2; push_listener interval-poll; }
               location /gv { set $push_id $arg_channel; push_channel_group $arg_group; push_listener interval-poll; }
               location /none { set $push_id $arg_channel; push_listener interval-poll; }
             }
             server { listen 127.0.0.1:{sender_port}; {pid_location}
               location /g1 { set $push_id $arg_channel; push_channel_group g1; push_sender; }
               location / { set $push_id $arg_channel; push_sender; } }",
        )
        .start();
    let mut s = ngx.sender();
    assert_eq!(s.request(&Req::post("/g1?channel=c", b"in g1")).status, 202);
    assert_eq!(
        s.request(&Req::post("/?channel=c", b"no group")).status,
        202
    );
    let mut l = ngx.listener();
    assert_eq!(l.recv_now(&Req::get("/g1?channel=c")).body, b"in g1");
    assert_eq!(
        l.recv_now(&Req::get("/g2?channel=c")).status,
        304,
        "g2 does not see g1"
    );
    assert_eq!(
        l.recv_now(&Req::get("/gv?channel=c&group=g1")).body,
        b"in g1"
    );
    assert_eq!(l.recv_now(&Req::get("/gv?channel=c&group=g2")).status, 304);
    assert_eq!(l.recv_now(&Req::get("/none?channel=c")).body, b"no group");
    ngx.stop_and_check();
}

/// push_min_message_buffer_length is accepted and changes nothing.
fn min_buffer_length_noop(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_min_message_buffer_length 5; push_message_buffer_length 2;")
        .start();
    for i in 0..4 {
        ngx.publish("mb", format!("m{i}").as_bytes());
    }
    let r = ngx.listener().recv_now(&Req::get(&chan_path("mb")));
    assert_eq!(r.body, b"m2", "buffer length 2 still evicts");
    ngx.stop_and_check();
}

both_workers!(
    interval_poll,
    listener_timeout,
    listener_timeout_does_not_hold_shutdown,
    authorized_only,
    authorized_only_off,
    empty_id,
    id_length,
    id_length_default_and_no_truncation,
    max_subscribers,
    max_subscribers_last_replacement,
    cors_and_405,
    allow_origin_values,
    channel_groups,
    min_buffer_length_noop,
);
