//! Buffer-length eviction, message timeout, zone full -> 507, memory given
//! back by eviction, expiry and listener-only channels.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

/// Walks every message of `ch` from no cursor; returns the bodies, and
/// checks the walker is then held.
fn walk_all(ngx: &Nginx, ch: &str, max: usize) -> Vec<Vec<u8>> {
    let mut l = ngx.listener();
    let mut cursor = Cursor::default();
    let mut out = Vec::new();
    let mut prev = None;
    loop {
        l.send(&listen_req(ch, &cursor));
        if ngx.held_or_answered(&mut l, ch) {
            return out;
        }
        let r = l.recv(PROMPT);
        assert_eq!(r.status, 200, "walking {ch}: {} {:?}", r.status, r.text());
        let pos = position(&r);
        if let Some(p) = prev {
            assert!(pos > p, "walk goes forward: {p:?} -> {pos:?}");
        }
        prev = Some(pos);
        cursor = r.cursor();
        out.push(r.body);
        assert!(out.len() <= max, "more messages than published");
    }
}

/// push_message_buffer_length 3: publishing 5 evicts the two oldest.
fn buffer_length_eviction(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_message_buffer_length 3;")
        .start();
    for i in 1..=5 {
        ngx.publish("ev", format!("m{i}").as_bytes());
    }
    let r = ngx.listener().recv_now(&Req::get(&chan_path("ev")));
    assert_eq!(r.text(), "m3", "oldest stored after eviction");
    let got = walk_all(&ngx, "ev", 5);
    assert_eq!(got, vec![b"m3".to_vec(), b"m4".to_vec(), b"m5".to_vec()]);
    let info = ngx.info("ev").text();
    assert_eq!(info_field(&info, "queued messages"), Some(3), "{info}");
    ngx.stop_and_check();
}

/// push_message_buffer_length 0: nothing stored, held listeners still get it.
fn buffer_length_zero(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_message_buffer_length 0;")
        .start();
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("z")));
    ngx.wait_subscribers("z", 1);
    assert_eq!(ngx.post("z", b"live").status, 201);
    assert_eq!(l.recv(PROMPT).body, b"live");
    assert_eq!(ngx.post("z", b"stored for nobody").status, 202);
    let mut late = ngx.listener();
    late.send(&Req::get(&chan_path("z")));
    assert!(!late.is_answered_within(HELD_CHECK));
    ngx.wait_subscribers("z", 1);
    ngx.stop_and_check();
}

/// push_message_timeout 1s: a stored message is delivered at first, and
/// after it expires a fresh listener is held (polled with a deadline).
fn message_timeout(workers: usize) {
    let ngx = Conf::new(workers).http("push_message_timeout 1s;").start();
    ngx.publish("t", b"short-lived");
    let r = ngx.listener().recv_now(&Req::get(&chan_path("t")));
    assert_eq!(r.body, b"short-lived", "stored before it expires");
    let mut held = None;
    let expired = poll_until(Duration::from_secs(10), || {
        let mut l = ngx.listener();
        l.send(&Req::get(&chan_path("t")));
        if ngx.held_or_answered(&mut l, "t") {
            held = Some(l);
            true
        } else {
            let r = l.recv(PROMPT);
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"short-lived");
            std::thread::sleep(Duration::from_millis(50)); // poll interval
            false
        }
    });
    assert!(expired, "message still delivered 10 s after a 1 s timeout");
    let mut l = held.unwrap();
    assert_eq!(ngx.post("t", b"fresh").status, 201);
    let m = l.recv(PROMPT);
    assert_eq!(m.body, b"fresh");
    ngx.stop_and_check();
}

/// push_message_timeout 0 = never expires (checked across a couple of
/// seconds by the clock, not by a sleep standing in for an event).
fn message_timeout_zero_never(workers: usize) {
    let ngx = Conf::new(workers).http("push_message_timeout 0;").start();
    ngx.publish("n", b"forever");
    let t0 = position(&ngx.listener().recv_now(&Req::get(&chan_path("n")))).0;
    // Wait until the server clock has moved 2 s past publication.
    wait_until(Duration::from_secs(10), "clock moved 2 s", || {
        let r = ngx.listener().recv_now(&Req::get(&chan_path("n")));
        assert_eq!(r.body, b"forever");
        let now = http_date(r.header("Date").unwrap_or("")).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(100));
        now >= t0 + 2
    });
    ngx.stop_and_check();
}

fn fill_until_507(ngx: &Nginx, ch: &str, size: usize, max: usize) -> (Vec<Vec<u8>>, Response) {
    let mut accepted = Vec::new();
    for i in 0..max {
        let body = payload(size, i as u8);
        let r = ngx.post_typed(ch, Some("application/octet-stream"), &body);
        match r.status {
            201 | 202 => accepted.push(body),
            507 => return (accepted, r),
            s => panic!("POST #{i} to a filling zone answered {s}: {:?}", r.text()),
        }
    }
    panic!("zone never full after {max} messages of {size} bytes");
}

const SMALL_ZONE: &str = "push_buffer_size 32k; push_message_buffer_length 1000;";

/// A full zone answers 507 with a plain-text reason and a log line; every
/// message accepted before is still readable, in order; the worker keeps
/// serving.
fn zone_full_507(workers: usize) {
    let ngx = Conf::new(workers).http(SMALL_ZONE).start();
    let pids = ngx.worker_pids();
    let log_before = ngx.error_log().lines().count();
    let (accepted, full) = fill_until_507(&ngx, "big", 3000, 200);
    assert!(!accepted.is_empty(), "at least one message fits in 32k");
    assert!(
        full.header("Content-Type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "507 reason is plain text: {:?}",
        full.header("Content-Type")
    );
    assert!(!full.body.is_empty(), "507 has a reason");
    assert_eq!(full.content_length(), Some(full.body.len()));
    let log = ngx.error_log();
    assert!(
        log.lines()
            .skip(log_before)
            .any(|l| l.contains("[error]") || l.contains("[crit]") || l.contains("[warn]")),
        "507 leaves an error-log line"
    );
    // Try a few more: still refused, nothing damaged.
    for _ in 0..3 {
        let r = ngx.post_typed("big", Some("application/octet-stream"), &payload(3000, 99));
        assert_eq!(r.status, 507);
    }
    let got = walk_all(&ngx, "big", accepted.len());
    assert_eq!(
        got.len(),
        accepted.len(),
        "every accepted message is deliverable"
    );
    for (i, (g, a)) in got.iter().zip(&accepted).enumerate() {
        assert!(g == a, "message {i} damaged");
    }
    // Other channels: held listeners are still served (delivery or 507,
    // never a crash or a silent drop).
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("other")));
    ngx.wait_subscribers("other", 1);
    let r = ngx.post("other", b"tiny");
    match r.status {
        201 => assert_eq!(l.recv(PROMPT).body, b"tiny"),
        507 => {}
        s => panic!("POST to another channel in a full zone: {s}"),
    }
    assert_eq!(ngx.worker_pids(), pids, "no worker died");
    ngx.stop_and_check();
}

/// A message larger than the whole zone: 507 at once, nothing damaged.
fn message_larger_than_zone(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_buffer_size 32k;")
        .sender_extra("client_max_body_size 2m;")
        .start();
    ngx.publish("lg", b"small first");
    let r = ngx.post_typed("lg", Some("application/octet-stream"), &payload(1 << 20, 5));
    assert_eq!(r.status, 507, "1 MiB into a 32k zone");
    assert!(r
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/plain"));
    let got = walk_all(&ngx, "lg", 1);
    assert_eq!(got, vec![b"small first".to_vec()]);
    ngx.stop_and_check();
}

/// When messages expire, a full zone accepts messages again.
fn zone_full_recovers_after_expiry(workers: usize) {
    let ngx = Conf::new(workers)
        .http(SMALL_ZONE)
        .http("push_message_timeout 2s;")
        .start();
    let (accepted, _) = fill_until_507(&ngx, "exp", 3000, 200);
    wait_until(
        Duration::from_secs(15),
        "a POST accepted after expiry",
        || {
            let r = ngx.post_typed("exp2", Some("application/octet-stream"), &payload(3000, 1));
            assert!(r.status == 202 || r.status == 507, "{}", r.status);
            if r.status == 507 {
                std::thread::sleep(Duration::from_millis(200)); // poll interval
            }
            r.status == 202
        },
    );
    // After expiry there is room for as many as before.
    let (again, _) = fill_until_507(&ngx, "exp3", 3000, 200);
    assert!(
        again.len() + 1 >= accepted.len(),
        "expired messages gave their memory back ({} then {})",
        accepted.len(),
        again.len() + 1
    );
    ngx.stop_and_check();
}

/// Eviction gives memory back: 300 messages of 3000 bytes through a 32k
/// zone with a buffer of 2 never fill it.
fn eviction_frees_memory(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_buffer_size 32k; push_message_buffer_length 2;")
        .start();
    let mut s = ngx.sender();
    for i in 0..300 {
        let body = payload(3000, i as u8);
        let r = s.request(&Req::post(&chan_path("rot"), &body));
        assert_eq!(r.status, 202, "message {i}: {} {:?}", r.status, r.text());
    }
    let got = walk_all(&ngx, "rot", 2);
    assert_eq!(
        got,
        vec![
            payload(3000, (298 % 256) as u8),
            payload(3000, (299 % 256) as u8)
        ]
    );
    ngx.stop_and_check();
}

/// Listener-only channels are freed when their listener leaves: 1,000
/// distinct 400-byte ids (far more than a 32k zone holds at once) cycle
/// through held listeners that abort, and the zone still has room.
fn listener_channels_freed(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_buffer_size 32k;")
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    // Capacity of the empty zone, then given back with DELETE.
    let (baseline, _) = fill_until_507(&ngx, "before", 3000, 200);
    let d = ngx
        .sender()
        .request(&Req::new("DELETE", &chan_path("before")));
    assert_eq!(d.status, 200);
    let pad = "p".repeat(400);
    for batch in 0..100 {
        let ids: Vec<String> = (0..10).map(|i| format!("{pad}-{batch}-{i}")).collect();
        let mut conns: Vec<Conn> = ids
            .iter()
            .map(|id| {
                let mut c = ngx.listener();
                c.send(&Req::get(&chan_path(id)));
                c
            })
            .collect();
        for (id, c) in ids.iter().zip(conns.iter_mut()) {
            ngx.wait_subscribers(id, 1);
            if c.is_answered_within(Duration::from_millis(1)) {
                let r = c.recv(PROMPT);
                panic!(
                    "listener in batch {batch} answered {} {:?}",
                    r.status,
                    r.text()
                );
            }
        }
        for c in conns {
            c.abort();
        }
        for id in &ids {
            // Only a listener touched it: freed as soon as it left.
            wait_until(PROMPT, "listener-only channel freed", || {
                ngx.info(id).status == 404
            });
        }
    }
    let (accepted, _) = fill_until_507(&ngx, "after", 3000, 200);
    assert!(
        accepted.len() >= baseline.len(),
        "listener-only channels leaked: {} messages fit before, {} after",
        baseline.len(),
        accepted.len()
    );
    ngx.stop_and_check();
}

both_workers!(
    buffer_length_eviction,
    buffer_length_zero,
    message_timeout,
    message_timeout_zero_never,
    zone_full_507,
    zone_full_recovers_after_expiry,
    eviction_frees_memory,
    listener_channels_freed,
    message_larger_than_zone,
);
