//! The message cursor: Last-Modified / Etag / Vary, If-Modified-Since /
//! If-None-Match selection, same-second tags, gzip, nginx's own 304 logic.

#[macro_use]
mod common;

use common::*;

/// Walks `n` messages of `ch` from `start`, echoing the cursor, alternating
/// over `conns` (so with 4 workers every step may be another worker). Each
/// must be answered at once.
fn walk(
    conns: &mut [(Conn, i32)],
    ch: &str,
    start: &Cursor,
    n: usize,
    gzip: bool,
) -> Vec<Response> {
    let mut cursor = start.clone();
    let mut out = Vec::new();
    for i in 0..n {
        let (c, _) = &mut conns[i % conns.len()];
        let mut req = listen_req(ch, &cursor);
        if gzip {
            req = req.header("Accept-Encoding", "gzip");
        }
        let r = c.recv_now(&req);
        assert_eq!(
            r.status,
            200,
            "step {i} of the walk: {} {:?}",
            r.status,
            r.text()
        );
        cursor = r.cursor();
        out.push(r);
    }
    out
}

/// Publishes `n` messages quickly; returns their bodies.
fn publish_burst(ngx: &Nginx, ch: &str, n: usize) -> Vec<Vec<u8>> {
    let mut s = ngx.sender();
    (0..n)
        .map(|i| {
            let body = format!("{ch} message {i}").into_bytes();
            let r =
                s.request(&Req::post(&chan_path(ch), &body).header("Content-Type", "text/plain"));
            assert!(r.status == 202 || r.status == 201, "POST {i}: {}", r.status);
            body
        })
        .collect()
}

/// Five messages published at once are walked in order, none lost or
/// repeated, tags 0,1,2,... within a second; then the walker is held and
/// gets the next one.
fn same_second_traversal(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut conns = ngx.spread_connections(ngx.listener_port, workers.max(2));
    let mut saw_one_second = false;
    for attempt in 0..6 {
        let ch = format!("burst{attempt}");
        let bodies = publish_burst(&ngx, &ch, 5);
        let got = walk(&mut conns, &ch, &Cursor::default(), 5, false);
        for (i, r) in got.iter().enumerate() {
            assert!(r.body == bodies[i], "step {i}: got {:?}", r.text());
            assert!(
                !r.header("Vary").unwrap_or("").is_empty(),
                "Vary on every message"
            );
        }
        for w in got.windows(2) {
            assert_successor(position(&w[0]), position(&w[1]));
        }
        // After the last: held, and then gets the next one.
        let last = got.last().unwrap().cursor();
        let (c, _) = &mut conns[0];
        c.send(&listen_req(&ch, &last));
        assert!(!c.is_answered_within(HELD_CHECK), "past the newest: held");
        ngx.wait_subscribers(&ch, 1);
        assert_eq!(ngx.post(&ch, b"sixth").status, 201);
        let r = c.recv(PROMPT);
        assert_eq!(r.body, b"sixth");
        assert_successor(position(got.last().unwrap()), position(&r));

        let first_t = position(&got[0]).0;
        if got.iter().all(|r| position(r).0 == first_t) {
            let tags: Vec<u64> = got.iter().map(|r| position(r).1).collect();
            assert_eq!(tags, vec![0, 1, 2, 3, 4], "same-second tags");
            let etags: Vec<&str> = got.iter().map(|r| r.header("Etag").unwrap()).collect();
            assert_eq!(etags, vec!["\"0\"", "\"1\"", "\"2\"", "\"3\"", "\"4\""]);
            saw_one_second = true;
            break;
        }
    }
    assert!(
        saw_one_second,
        "never managed to publish 5 messages within one second"
    );
    ngx.stop_and_check();
}

/// If-None-Match is accepted quoted, bare and weak.
fn if_none_match_forms(workers: usize) {
    let ngx = Conf::new(workers).start();
    for attempt in 0..6 {
        let ch = format!("inm{attempt}");
        publish_burst(&ngx, &ch, 3);
        let got = walk(
            &mut ngx.spread_connections(ngx.listener_port, 1),
            &ch,
            &Cursor::default(),
            3,
            false,
        );
        let (p0, p1) = (position(&got[0]), position(&got[1]));
        if p0.0 != p1.0 {
            continue; // the second ticked between them; try again
        }
        let lm = got[0].header("Last-Modified").unwrap().to_string();
        for inm in ["\"0\"", "0", "W/\"0\""] {
            let c = Cursor {
                last_modified: Some(lm.clone()),
                etag: Some(inm.to_string()),
            };
            let r = ngx.listener().recv_now(&listen_req(&ch, &c));
            assert_eq!(r.status, 200, "If-None-Match {inm}: {}", r.status);
            assert_eq!(r.body, got[1].body, "If-None-Match {inm} selects message 1");
            assert_eq!(r.header("Etag"), Some("\"1\""));
        }
        ngx.stop_and_check();
        return;
    }
    panic!("never managed to publish 2 messages within one second");
}

/// nginx's own If-Modified-Since logic must not answer 304 for a message
/// published in the same second as the cursor.
fn no_nginx_304_same_second(workers: usize) {
    let ngx = Conf::new(workers).start();
    for attempt in 0..6 {
        let ch = format!("ims{attempt}");
        publish_burst(&ngx, &ch, 2);
        let first = ngx.listener().recv_now(&Req::get(&chan_path(&ch)));
        let c0 = first.cursor();
        let r = ngx.listener().recv_now(&listen_req(&ch, &c0));
        assert_ne!(
            r.status, 304,
            "nginx's not-modified filter answered a same-second message"
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("{ch} message 1").into_bytes());
        if position(&first).0 == position(&r).0 {
            // Exactly the case: If-Modified-Since equals Last-Modified.
            assert_eq!(r.header("Last-Modified"), c0.last_modified.as_deref());
            ngx.stop_and_check();
            return;
        }
    }
    panic!("never managed to publish 2 messages within one second");
}

/// No cursor = oldest stored; an old If-Modified-Since = oldest; one in the
/// future = held.
fn cursor_edges(workers: usize) {
    let ngx = Conf::new(workers).start();
    let bodies = publish_burst(&ngx, "e", 3);
    let r = ngx.listener().recv_now(&Req::get(&chan_path("e")));
    assert_eq!(r.body, bodies[0], "no cursor: the oldest stored message");
    let old = Cursor {
        last_modified: Some("Thu, 01 Jan 1970 00:00:01 GMT".into()),
        etag: None,
    };
    let r = ngx.listener().recv_now(&listen_req("e", &old));
    assert_eq!(r.body, bodies[0], "old If-Modified-Since: the oldest");
    let old_tagged = Cursor {
        etag: Some("\"7\"".into()),
        ..old
    };
    let r = ngx.listener().recv_now(&listen_req("e", &old_tagged));
    assert_eq!(r.body, bodies[0], "older second, any tag: the oldest");

    let now = position(&r).0;
    let future = Cursor {
        last_modified: Some(fmt_http_date(now + 3600)),
        etag: Some("\"0\"".into()),
    };
    let mut l = ngx.listener();
    l.send(&listen_req("e", &future));
    assert!(!l.is_answered_within(HELD_CHECK), "future cursor: held");
    ngx.wait_subscribers("e", 1);
    ngx.stop_and_check();
}

/// gzip in the listener location turns Etag weak; the client echoes W/"n"
/// and still walks every message in order.
fn gzip_keeps_cursor(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("gzip on; gzip_min_length 1; gzip_types *;")
        .start();
    for attempt in 0..6 {
        let ch = format!("gz{attempt}");
        let mut s = ngx.sender();
        let bodies: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let b = format!("{} gzip message {i}\n", "x".repeat(300)).into_bytes();
                let r =
                    s.request(&Req::post(&chan_path(&ch), &b).header("Content-Type", "text/plain"));
                assert_eq!(r.status, 202);
                b
            })
            .collect();
        let mut conns = ngx.spread_connections(ngx.listener_port, workers.max(2));
        let got = walk(&mut conns, &ch, &Cursor::default(), 4, true);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(
                r.header("Content-Encoding"),
                Some("gzip"),
                "step {i}: gzip applied"
            );
            let e = r.header("Etag").expect("Etag survives gzip");
            assert!(e.starts_with("W/\""), "gzip makes the Etag weak: {e:?}");
            assert!(r.has_header("Last-Modified"));
        }
        // Every gzip step is the same message as the plain answer to the
        // same cursor.
        let mut cursor = Cursor::default();
        for (i, g) in got.iter().enumerate() {
            let plain = ngx.listener().recv_now(&listen_req(&ch, &cursor));
            assert_eq!(plain.body, bodies[i], "step {i}");
            assert_eq!(
                position(&plain),
                position(g),
                "step {i}: same message with and without gzip"
            );
            cursor = g.cursor(); // the weak form is what the gzip client has
        }
        // After the last (weak) cursor: held.
        let (c, _) = &mut conns[0];
        c.send(&listen_req(&ch, &cursor).header("Accept-Encoding", "gzip"));
        assert!(!c.is_answered_within(HELD_CHECK));
        ngx.wait_subscribers(&ch, 1);
        if got.iter().all(|r| position(r).0 == position(&got[0]).0) {
            ngx.stop_and_check();
            return;
        }
    }
    panic!("never managed to publish 4 messages within one second");
}

/// A cursor ahead of the walk in the same second (tag larger than any
/// stored) is held, not answered with an older message.
fn larger_tag_same_second_is_held(workers: usize) {
    let ngx = Conf::new(workers).start();
    ngx.publish("t", b"only");
    let r = ngx.listener().recv_now(&Req::get(&chan_path("t")));
    let c = Cursor {
        last_modified: r.cursor().last_modified,
        etag: Some("\"5\"".into()),
    };
    let mut l = ngx.listener();
    l.send(&listen_req("t", &c));
    assert!(!l.is_answered_within(HELD_CHECK));
    ngx.wait_subscribers("t", 1);
    ngx.stop_and_check();
}

both_workers!(
    same_second_traversal,
    if_none_match_forms,
    no_nginx_304_same_second,
    cursor_edges,
    gzip_keeps_cursor,
    larger_tag_same_second_is_held,
);
