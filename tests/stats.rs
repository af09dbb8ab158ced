//! `push_stats` (PROTOCOL.md, "Stats"): every counter and gauge moves with
//! what the server did, for all workers together; the text passes
//! `promtool check metrics`; JSON when `Accept` names it; counters survive
//! a reload; Redis figures follow the connection.

#[macro_use]
mod common;

use common::metrics::Metrics;
use common::redis::{RedisOpts, RedisServer};
use common::stream::{ws_expect, ws_open, EventStream};
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

const STATS: &str = "location = /stats { push_stats; }";
const STREAMS: &str = "location /es { set $push_id $arg_channel; push_listener eventsource; }
location /ws { set $push_id $arg_channel; push_listener websocket; }
location /ip { set $push_id $arg_channel; push_listener interval-poll; }";

/// `promtool check metrics` (Debian's prometheus package) accepts `text`.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scrape(ngx: &Nginx) -> Metrics {
    let r = ngx.sender().recv_now(&Req::get("/stats"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4"));
    let text = r.text();
    promtool_accepts(&text);
    Metrics::parse(&text)
}

/// Scrape until `cond` holds (gauges of other workers are at most a sweep
/// old), bounded.
fn scrape_until(ngx: &Nginx, what: &str, mut cond: impl FnMut(&Metrics) -> bool) -> Metrics {
    let mut last = None;
    let ok = poll_until(PROMPT, || {
        let m = scrape(ngx);
        let done = cond(&m);
        last = Some(m);
        done
    });
    let m = last.unwrap();
    assert!(ok, "{what}; last scrape:\n{}", m.text);
    m
}

fn conf(workers: usize) -> Conf {
    Conf::new(workers)
        .http("push_buffer_size 2m;")
        .listener_extra("push_listener_concurrency broadcast;")
        .listener_server(STREAMS)
        .sender_server(STATS)
        .sender_extra("client_max_body_size 1k;")
}

/// Publishes, deliveries by transport, held listeners, listener requests,
/// rejections, channels, stored messages, zone bytes, wake-ups: each moves
/// by exactly what was done, and the held gauges come back down.
fn counters_and_gauges_follow_the_traffic(workers: usize) {
    let ngx = conf(workers).start();
    let m = scrape(&ngx);
    assert_eq!(m.one("messages_published_total"), 0.0);
    assert_eq!(m.one("channels"), 0.0);
    assert_eq!(m.one("zone_bytes_size"), 2.0 * 1024.0 * 1024.0);
    let used = m.one("zone_bytes_used");
    assert!(used > 0.0 && used < m.one("zone_bytes_size"), "{used}");
    for t in ["long-poll", "interval-poll", "eventsource", "websocket"] {
        assert_eq!(m.of("listeners", "transport", t), 0.0);
        assert_eq!(m.of("messages_delivered_total", "transport", t), 0.0);
    }
    assert!(!m.text.contains("redis_up"), "no Redis, no Redis metrics");

    // Three long-poll listeners spread over the workers, one stream.
    let mut polls = ngx.spread_connections(ngx.listener_port, 3);
    for (c, _) in &mut polls {
        c.send(&Req::get(&chan_path("a")));
    }
    let mut es = EventStream::open(ngx.listener_port, "/es?channel=a", &[]);
    assert_eq!(es.status, 200);
    let (mut ws, _) = ws_open(ngx.listener_port, "/ws?channel=a", None);
    ngx.wait_subscribers("a", 5);
    scrape_until(&ngx, "3 long-poll, 1 eventsource, 1 websocket held", |m| {
        m.of("listeners", "transport", "long-poll") == 3.0
            && m.of("listeners", "transport", "eventsource") == 1.0
            && m.of("listeners", "transport", "websocket") == 1.0
    });

    assert_eq!(ngx.post("a", b"one").status, 201);
    for (c, _) in &mut polls {
        assert_eq!(c.recv(PROMPT).body, b"one");
    }
    assert_eq!(es.event().data, "one");
    assert_eq!(ws_expect(&mut ws).into_data().as_ref(), b"one");
    let m = scrape_until(&ngx, "the long-poll listeners are gone", |m| {
        m.of("listeners", "transport", "long-poll") == 0.0
    });
    assert_eq!(m.of("listeners", "transport", "eventsource"), 1.0);
    assert_eq!(m.one("messages_published_total"), 1.0);
    assert_eq!(
        m.of("messages_delivered_total", "transport", "long-poll"),
        3.0
    );
    assert_eq!(
        m.of("messages_delivered_total", "transport", "eventsource"),
        1.0
    );
    assert_eq!(
        m.of("listener_requests_total", "transport", "long-poll"),
        3.0
    );
    assert_eq!(
        m.of("listener_requests_total", "transport", "eventsource"),
        1.0
    );
    assert_eq!(m.one("messages_stored"), 1.0);
    assert_eq!(m.one("channels"), 1.0);
    assert!(m.one("zone_bytes_used") >= used);
    if workers == 1 {
        assert_eq!(m.one("worker_wakeups_total"), 0.0);
    } else {
        // The polls sit in three distinct workers: at least two of them
        // are not the publisher's, and were woken.
        assert!(m.one("worker_wakeups_total") >= 1.0, "{}", m.text);
    }

    // A listener that finds the message waiting is a delivery too.
    let r = ngx.listener().recv_now(&Req::get(&chan_path("a")));
    assert_eq!(r.body, b"one");
    let m = scrape(&ngx);
    assert_eq!(
        m.of("messages_delivered_total", "transport", "long-poll"),
        4.0
    );
    assert_eq!(
        m.of("listener_requests_total", "transport", "long-poll"),
        4.0
    );

    // Refusals, by reason.
    let bad = Req::post(&chan_path("b"), b"x").header("X-EventSource-Event", "two words");
    assert_eq!(ngx.sender().request(&bad).status, 400);
    // client_max_body_size: nginx answers before the module runs, from
    // Content-Length; a chunked body is refused as it is read.
    let big = vec![b'x'; 4096];
    assert_eq!(ngx.post("b", &big).status, 413);
    let chunked = Req::post(&chan_path("b"), &big).chunked(512);
    assert_eq!(ngx.sender().request(&chunked).status, 413);
    // 413s are counted at the log phase, once the answer is out.
    let m = scrape_until(&ngx, "both 413s counted", |m| {
        m.of("publish_rejected_total", "reason", "too_large") == 2.0
    });
    assert_eq!(m.of("publish_rejected_total", "reason", "bad_message"), 1.0);
    assert_eq!(m.of("publish_rejected_total", "reason", "zone_full"), 0.0);
    assert_eq!(
        m.one("messages_published_total"),
        1.0,
        "refusals do not count"
    );

    drop(es);
    drop(ws);
    scrape_until(&ngx, "the streams' gauges come back down", |m| {
        m.of("listeners", "transport", "eventsource") == 0.0
            && m.of("listeners", "transport", "websocket") == 0.0
    });
    ngx.stop_and_check();
}
both_workers!(counters_and_gauges_follow_the_traffic);

/// Evicted by newer messages, expired by their timeout, refused by a full
/// zone: each counted; `messages_stored` follows.
fn expiry_eviction_and_a_full_zone(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_buffer_size 256k;")
        .sender_server(STATS)
        .sender_extra(
            "push_message_buffer_length 2; push_message_timeout 2s;\nclient_max_body_size 1m; client_body_buffer_size 1m;",
        )
        .start();
    for i in 0..5 {
        assert_eq!(ngx.post("e", format!("m{i}").as_bytes()).status, 202);
    }
    let m = scrape(&ngx);
    assert_eq!(m.one("messages_evicted_total"), 3.0);
    assert_eq!(m.one("messages_stored"), 2.0);
    let m = scrape_until(&ngx, "the two stored messages expire", |m| {
        m.one("messages_expired_total") == 2.0
    });
    assert_eq!(m.one("messages_stored"), 0.0);

    // Fill the zone: 20 KiB messages on distinct channels until 507.
    let body = vec![b'z'; 20 * 1024];
    let mut refused = 0;
    for i in 0..64 {
        match ngx.post(&format!("full{i}"), &body).status {
            202 => {}
            507 => refused += 1,
            s => panic!("status {s}"),
        }
    }
    assert!(
        refused > 0,
        "a 256k zone takes fewer than 64 messages of 20 KiB"
    );
    // Larger than the whole zone: never storable; 507 too, said and
    // counted apart.
    let huge = vec![b'h'; 300 * 1024];
    let r = ngx.post("huge", &huge);
    assert_eq!(r.status, 507);
    assert!(
        r.text().contains("larger than push_buffer_size"),
        "{}",
        r.text()
    );
    assert!(ngx
        .error_log()
        .contains("message larger than the whole push_buffer_size zone"));
    let m = scrape(&ngx);
    assert_eq!(m.of("publish_rejected_total", "reason", "too_large"), 1.0);
    assert_eq!(
        m.of("publish_rejected_total", "reason", "zone_full"),
        refused as f64
    );
    assert_eq!(m.one("messages_published_total"), (5 + 64 - refused) as f64);
    assert!(m.one("zone_bytes_used") > 0.8 * m.one("zone_bytes_size"));
    ngx.stop_and_check_allowing(&["zone is full", "larger than the push_buffer_size"]);
}
both_workers!(expiry_eviction_and_a_full_zone);

/// JSON when `Accept` names it, the same figures; HEAD has no body; other
/// methods 405 with `Allow`; `push_stats` cannot share a location.
fn json_head_and_methods(workers: usize) {
    let ngx = conf(workers).start();
    ngx.publish("j", b"x");
    let r = ngx
        .sender()
        .recv_now(&Req::get("/stats").header("Accept", "application/json"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("one JSON object");
    assert_eq!(v["messages_published_total"], 1);
    assert_eq!(v["channels"], 1);
    assert_eq!(v["listeners"]["websocket"], 0);
    assert_eq!(v["publish_rejected_total"]["zone_full"], 0);
    let head = ngx.sender().recv_now(&Req::new("HEAD", "/stats"));
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = ngx.sender().recv_now(&Req::post("/stats", b"x"));
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    ngx.stop_and_check();

    Conf::new(1)
        .sender_server("location = /s { push_stats; push_sender; }")
        .nginx_t()
        .assert_refused("cannot be used together", "push_stats; push_sender;");
}
both_workers!(json_head_and_methods);

/// The counters live in the zone: a reload keeps them (the zone is reused).
fn counters_survive_a_reload(workers: usize) {
    let ngx = conf(workers).start();
    ngx.publish("r", b"1");
    ngx.publish("r", b"2");
    let old = ngx.reload();
    assert!(ngx.wait_workers_gone(&old, PROMPT));
    let m = scrape(&ngx);
    assert_eq!(m.one("messages_published_total"), 2.0);
    assert_eq!(m.one("messages_stored"), 2.0);
    ngx.stop_and_check();
}
both_workers!(counters_survive_a_reload);

/// With `push_redis`: the server is up with every worker connected,
/// commands are counted; Redis gone: down, publishes counted as
/// `redis_unavailable`; back: up again, the reconnections counted.
#[test]
fn redis_figures_follow_the_connection() {
    let mut redis = RedisServer::start_with(RedisOpts::default());
    let ngx = Conf::new(2)
        .http(&format!(
            "push_redis {}; push_redis_heartbeat 300ms; push_redis_connect_timeout 300ms;",
            redis.url()
        ))
        .sender_server(STATS)
        .start();
    let label = redis.url().trim_start_matches("redis://").to_string();
    let up = |m: &Metrics| m.of("redis_up", "redis", &label);
    let m = scrape_until(&ngx, "every worker connected", |m| up(m) == 1.0);
    assert_eq!(m.of("redis_reconnects_total", "redis", &label), 0.0);
    assert_eq!(ngx.post("r", b"x").status, 202);
    let m = scrape_until(&ngx, "commands counted", |m| {
        m.of("redis_commands_total", "redis", &label) > 0.0
    });
    assert_eq!(m.one("messages_published_total"), 1.0);
    let before = m.of("redis_commands_total", "redis", &label);

    redis.stop();
    scrape_until(&ngx, "Redis down", |m| up(m) == 0.0);
    assert_eq!(ngx.post("r", b"y").status, 503);
    let m = scrape(&ngx);
    assert_eq!(
        m.of("publish_rejected_total", "reason", "redis_unavailable"),
        1.0
    );

    redis.restart();
    // Both workers reconnect (each reports within a sweep).
    let m = scrape_until(&ngx, "Redis up again, both workers reconnected", |m| {
        up(m) == 1.0 && m.of("redis_reconnects_total", "redis", &label) >= 2.0
    });
    assert!(m.of("redis_commands_total", "redis", &label) >= before);
    assert_eq!(m.of("redis_pending_commands", "redis", &label), 0.0);
    ngx.stop_and_check_allowing(&["redis"]);
}

/// The example configuration of the quick start serves its stats.
#[test]
fn the_example_serves_stats() {
    let ngx = Conf::example("nginx-conf/nginx.conf").start();
    ngx.publish("ex", b"x");
    let m = scrape(&ngx);
    assert_eq!(m.one("messages_published_total"), 1.0);
    assert_eq!(m.one("zone_bytes_size"), 3.0 * 1024.0 * 1024.0);
    ngx.stop_and_check();
}
