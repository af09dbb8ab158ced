//! Sender methods (GET, PUT, POST, DELETE, OPTIONS, others) and channel
//! info in every format.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

const SENDER_ALLOW: &str = "GET, PUT, POST, DELETE, OPTIONS";

fn sreq(ngx: &Nginx, req: &Req) -> Response {
    let r = ngx.sender().request(req);
    assert_eq!(
        r.content_length(),
        Some(r.body.len()),
        "every sender answer has Content-Length ({} {} -> {})",
        req.method,
        req.path,
        r.status
    );
    r
}

fn info_as(ngx: &Nginx, ch: &str, accept: &str) -> Response {
    sreq(ngx, &Req::get(&chan_path(ch)).header("Accept", accept))
}

fn json_of(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("info is not JSON ({e}): {:?}", r.text()))
}

/// GET: 404 before the channel exists; PUT creates it (200 + info); GET 200.
fn get_put(workers: usize) {
    let ngx = Conf::new(workers).start();
    let r = sreq(&ngx, &Req::get(&chan_path("g")));
    assert_eq!(r.status, 404, "GET of a missing channel");
    let r = sreq(&ngx, &Req::new("PUT", &chan_path("g")));
    assert_eq!(r.status, 200, "PUT creates");
    assert_eq!(
        info_field(&r.text(), "queued messages"),
        Some(0),
        "{}",
        r.text()
    );
    assert_eq!(info_field(&r.text(), "active subscribers"), Some(0));
    let r = sreq(&ngx, &Req::get(&chan_path("g")));
    assert_eq!(r.status, 200);
    assert_eq!(info_field(&r.text(), "queued messages"), Some(0));
    // PUT again: still 200, nothing changes.
    assert_eq!(sreq(&ngx, &Req::new("PUT", &chan_path("g"))).status, 200);
    // A created channel holds listeners like any other.
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("g")));
    ngx.wait_subscribers("g", 1);
    assert_eq!(ngx.post("g", b"x").status, 201);
    assert_eq!(l.recv(PROMPT).body, b"x");
    ngx.stop_and_check();
}

/// DELETE: 200 with the info as it was; every held listener in every worker
/// gets 410; then GET/DELETE are 404 and stored messages are gone.
fn delete_reaches_all(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    ngx.publish("d", b"one");
    ngx.publish("d", b"two");
    let seen = walk_n(&ngx, "d", 2);
    let mut conns = ngx.spread_connections(ngx.listener_port, 4);
    for (c, _) in conns.iter_mut() {
        c.send(&listen_req("d", &seen));
    }
    ngx.wait_subscribers("d", 4);
    let r = sreq(&ngx, &Req::new("DELETE", &chan_path("d")));
    assert_eq!(r.status, 200, "DELETE: {}", r.text());
    assert_eq!(
        info_field(&r.text(), "queued messages"),
        Some(2),
        "info as it was: {}",
        r.text()
    );
    assert_eq!(
        info_field(&r.text(), "active subscribers"),
        Some(4),
        "info as it was: {}",
        r.text()
    );
    for (i, (c, pid)) in conns.iter_mut().enumerate() {
        let g = c.recv(PROMPT);
        assert_eq!(g.status, 410, "held listener {i} gets 410 Gone");
        assert_eq!(g.worker(), Some(*pid));
    }
    assert_eq!(sreq(&ngx, &Req::get(&chan_path("d"))).status, 404);
    assert_eq!(sreq(&ngx, &Req::new("DELETE", &chan_path("d"))).status, 404);
    // Stored messages went with it: a new listener is held.
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("d")));
    assert!(!l.is_answered_within(HELD_CHECK));
    ngx.wait_subscribers("d", 1);
    ngx.stop_and_check();
}

fn walk_n(ngx: &Nginx, ch: &str, n: usize) -> Cursor {
    let mut c = Cursor::default();
    for _ in 0..n {
        c = ngx.listener().recv_now(&listen_req(ch, &c)).cursor();
    }
    c
}

/// OPTIONS and 405.
fn options_and_405(workers: usize) {
    let ngx = Conf::new(workers).start();
    for origin in [None, Some("https://elsewhere.example")] {
        let mut req = Req::new("OPTIONS", &chan_path("o"));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let r = sreq(&ngx, &req);
        assert_eq!(r.status, 200, "OPTIONS (origin {origin:?})");
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
        assert_eq!(r.header("Access-Control-Allow-Methods"), Some(SENDER_ALLOW));
        assert_eq!(
            r.header("Access-Control-Allow-Headers"),
            Some("Content-Type, Origin")
        );
    }
    // (TRACE is refused by nginx itself before any module runs.)
    for m in ["PATCH", "PROPFIND", "LOCK", "FOO"] {
        let r = sreq(&ngx, &Req::new(m, &chan_path("o")));
        assert_eq!(r.status, 405, "{m} on the sender");
        assert_eq!(r.header("Allow"), Some(SENDER_ALLOW), "{m}: Allow");
    }
    // None of this created the channel.
    assert_eq!(sreq(&ngx, &Req::get(&chan_path("o"))).status, 404);
    ngx.stop_and_check();
}

/// push_allow_origin on the sender's OPTIONS.
fn sender_allow_origin(workers: usize) {
    let ngx = Conf::new(workers)
        .sender_extra("push_allow_origin https://app.example;")
        .start();
    let r = sreq(&ngx, &Req::new("OPTIONS", &chan_path("o")));
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    ngx.stop_and_check();
}

/// Plain-text info: the four fields, text/plain.
fn info_plain(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    ngx.publish("i", b"a");
    let last = ngx
        .listener()
        .recv_now(&listen_req("i", &Cursor::default()));
    ngx.publish("i", b"b");
    let cur = walk_n(&ngx, "i", 2);
    let newest = ngx.listener().recv_now(&listen_req("i", &last.cursor()));
    let mut conns = ngx.spread_connections(ngx.listener_port, 3);
    for (c, _) in conns.iter_mut() {
        c.send(&listen_req("i", &cur));
    }
    ngx.wait_subscribers("i", 3);
    let r = info_as(&ngx, "i", "text/plain");
    let t = r.text();
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        r.header("Content-Type")
    );
    assert_eq!(info_field(&t, "queued messages"), Some(2), "{t}");
    assert_eq!(info_field(&t, "active subscribers"), Some(3), "{t}");
    let requested = info_str(&t, "last requested").expect("last requested line");
    assert!(requested.contains("sec. ago"), "{t}");
    let secs: i64 = requested
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("seconds");
    assert!((0..=2).contains(&secs), "listener asked just now: {t}");
    let (time, tag) = position(&newest);
    assert_eq!(
        info_str(&t, "last message id"),
        Some(format!("{time}:{tag}")),
        "{t}"
    );
    // No Accept at all: plain text too.
    let r = sreq(&ngx, &Req::get(&chan_path("i")));
    assert!(r
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/plain"));
    assert_eq!(r.body, t.as_bytes());
    ngx.stop_and_check();
}

/// JSON, XML and YAML; the content type names the format; JSON parses with
/// a real parser; last_message_id is null before any message.
fn info_formats(workers: usize) {
    let ngx = Conf::new(workers).start();
    sreq(&ngx, &Req::new("PUT", &chan_path("f")));
    let r = info_as(&ngx, "f", "application/json");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let j = json_of(&r);
    assert_eq!(j["messages"], 0);
    assert_eq!(j["subscribers"], 0);
    assert!(j["last_message_id"].is_null(), "no message yet: {j}");
    assert!(j["requested"].is_i64(), "{j}");

    ngx.publish("f", b"m");
    let m = ngx.listener().recv_now(&Req::get(&chan_path("f")));
    let (time, tag) = position(&m);
    let id = format!("{time}:{tag}");
    let mut l = ngx.listener();
    l.send(&listen_req("f", &m.cursor()));
    ngx.wait_subscribers("f", 1);

    let j = json_of(&info_as(&ngx, "f", "application/json"));
    assert_eq!(j["messages"], 1, "{j}");
    assert_eq!(j["subscribers"], 1, "{j}");
    assert_eq!(j["last_message_id"], id.as_str(), "{j}");
    let req = j["requested"].as_i64().expect("requested is a number");
    assert!((0..=2).contains(&req), "{j}");
    // Accept naming json anywhere in a list
    let r = info_as(&ngx, "f", "text/html, application/json;q=0.9");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    json_of(&r);

    let r = info_as(&ngx, "f", "application/xml");
    assert_eq!(r.header("Content-Type"), Some("application/xml"));
    let x = r.text();
    let x = x.trim();
    let head = "<channel><messages>1</messages><requested>";
    let tail = format!(
        "</requested><subscribers>1</subscribers><last_message_id>{id}</last_message_id></channel>"
    );
    assert!(x.starts_with(head) && x.ends_with(&tail), "XML info: {x}");
    let xr: i64 = x[head.len()..x.len() - tail.len()]
        .parse()
        .unwrap_or_else(|_| panic!("XML requested: {x}"));
    assert!((req..=req + 2).contains(&xr), "{x}");
    let r = info_as(&ngx, "f", "text/xml");
    assert_eq!(r.header("Content-Type"), Some("application/xml"));

    let mut yamls = Vec::new();
    for accept in ["text/yaml", "application/yaml", "application/x-yaml"] {
        let r = info_as(&ngx, "f", accept);
        assert_eq!(
            r.header("Content-Type"),
            Some("application/yaml"),
            "Accept {accept}"
        );
        yamls.push(r.body);
    }
    assert!(
        yamls.windows(2).all(|w| w[0] == w[1]),
        "same YAML bytes for every yaml Accept"
    );
    let y = String::from_utf8(yamls[0].clone()).unwrap();
    let mut lines = y.lines();
    assert_eq!(lines.next(), Some("---"), "{y}");
    let kv: Vec<(String, String)> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("yaml line {l:?}"));
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect();
    let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    assert_eq!(get("messages").as_deref(), Some("1"), "{y}");
    assert_eq!(get("subscribers").as_deref(), Some("1"), "{y}");
    assert_eq!(get("last_message_id").as_deref(), Some(id.as_str()), "{y}");
    assert!(get("requested").is_some(), "{y}");
    ngx.stop_and_check();
}

/// The POST answer is channel info too, and follows Accept.
fn post_answer_is_info(workers: usize) {
    let ngx = Conf::new(workers).start();
    let r = sreq(
        &ngx,
        &Req::post(&chan_path("pi"), b"x").header("Accept", "application/json"),
    );
    assert_eq!(r.status, 202);
    let j = json_of(&r);
    assert_eq!(j["messages"], 1, "{j}");
    assert!(j["last_message_id"].is_string(), "{j}");
    ngx.stop_and_check();
}

/// Subscriber counts in the info cover every worker; `requested` grows when
/// nobody asks and resets when a listener asks (even one answered at once).
fn info_counts_and_requested(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    ngx.publish("rq", b"m");
    let m = ngx.listener().recv_now(&Req::get(&chan_path("rq")));
    let t0 = http_date(m.header("Date").unwrap()).unwrap();
    // Wait until the server clock is 2 s later; requested must have grown.
    wait_until(Duration::from_secs(10), "requested grows to >= 2", || {
        let j = json_of(&info_as(&ngx, "rq", "application/json"));
        let r = j["requested"].as_i64().unwrap_or(-99);
        assert!(r >= 0, "{j}");
        std::thread::sleep(Duration::from_millis(100)); // poll interval
        r >= 2
    });
    let r2 = ngx.listener().recv_now(&Req::get(&chan_path("rq")));
    assert!(http_date(r2.header("Date").unwrap()).unwrap() >= t0 + 2);
    let j = json_of(&info_as(&ngx, "rq", "application/json"));
    assert!(
        j["requested"].as_i64().unwrap() <= 1,
        "a listener just asked: {j}"
    );

    let mut conns = ngx.spread_connections(ngx.listener_port, 4);
    for (c, _) in conns.iter_mut() {
        c.send(&listen_req("rq", &m.cursor()));
    }
    ngx.wait_subscribers("rq", 4);
    let j = json_of(&info_as(&ngx, "rq", "application/json"));
    assert_eq!(j["subscribers"], 4, "{j}");
    ngx.stop_and_check();
}

/// A channel a sender created and nobody used is freed after
/// push_channel_timeout.
fn channel_timeout(workers: usize) {
    let ngx = Conf::new(workers).http("push_channel_timeout 1s;").start();
    assert_eq!(sreq(&ngx, &Req::new("PUT", &chan_path("ct"))).status, 200);
    assert_eq!(sreq(&ngx, &Req::get(&chan_path("ct"))).status, 200);
    wait_until(
        Duration::from_secs(10),
        "channel freed after its timeout",
        || {
            let s = ngx.sender().request(&Req::get(&chan_path("ct"))).status;
            assert!(s == 200 || s == 404);
            if s == 200 {
                std::thread::sleep(Duration::from_millis(100)); // poll interval
            }
            s == 404
        },
    );
    ngx.stop_and_check();
}

/// The info is only on the sender: plain text body of a missing channel
/// has Content-Length too; ids are exact (no folding).
fn ids_are_exact(workers: usize) {
    let ngx = Conf::new(workers).start();
    sreq(&ngx, &Req::new("PUT", &chan_path("Case")));
    assert_eq!(sreq(&ngx, &Req::get(&chan_path("case"))).status, 404);
    assert_eq!(sreq(&ngx, &Req::get(&chan_path("Case "))).status, 404);
    assert_eq!(sreq(&ngx, &Req::get(&chan_path("Case"))).status, 200);
    ngx.stop_and_check();
}

both_workers!(
    get_put,
    delete_reaches_all,
    options_and_405,
    sender_allow_origin,
    info_plain,
    info_formats,
    post_answer_is_info,
    info_counts_and_requested,
    channel_timeout,
    ids_are_exact,
);
