//! EventSource listeners (PROTOCOL.md, "Streaming listeners"): headers and
//! the opening comment, framing, named events, resuming, every worker,
//! HTTP/1.0 and HTTP/2, pings, the ends (timeout, reload, delete, the
//! concurrency rules), counts, and the bound on a slow reader.

#[macro_use]
mod common;

use common::stream::{es_request, EventStream, Item};
use common::*;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STREAMS: &str = "set $push_id $arg_channel;\npush_listener long-poll eventsource websocket;";

fn streams(workers: usize) -> Conf {
    Conf::new(workers).listener_body(STREAMS)
}

fn open(ngx: &Nginx, ch: &str) -> EventStream {
    let mut es = EventStream::open(ngx.listener_port, &chan_path(ch), &[]);
    assert_eq!(es.status, 200, "{}", es.head);
    assert_eq!(es.expect(), Item::Comment("hi".into()), "opening comment");
    es
}

/// The id (`time:tag`) of the newest message of a channel.
fn last_id(ngx: &Nginx, ch: &str) -> String {
    info_str(&ngx.info(ch).text(), "last message id").expect("a last message id")
}

fn headers_and_hello(workers: usize) {
    let ngx = streams(workers).start();
    let mut es = EventStream::open(ngx.listener_port, &chan_path("h"), &[]);
    assert_eq!(es.status, 200);
    assert_eq!(
        es.header("Content-Type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(es.header("Cache-Control"), Some("no-cache"));
    assert_eq!(es.header("X-Accel-Buffering"), Some("no"));
    assert_eq!(es.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        es.header("Access-Control-Expose-Headers"),
        Some("Etag, Last-Modified")
    );
    assert!(es.header("Content-Length").is_none());
    // Flushed before any message exists.
    assert_eq!(es.expect(), Item::Comment("hi".into()));
    ngx.wait_subscribers("h", 1);
    assert_eq!(ngx.post("h", b"first").status, 201, "a held stream: 201");
    let e = es.event();
    assert_eq!(e.data, "first");
    assert_eq!(e.id.as_deref(), Some(last_id(&ngx, "h").as_str()));
    assert!(!e.fields.iter().any(|f| f == "retry"), "no retry: line");
    ngx.stop_and_check();
}

both_workers!(headers_and_hello);

#[test]
fn bodies_are_framed_line_by_line() {
    let ngx = streams(1).start();
    let mut es = open(&ngx, "f");
    ngx.wait_subscribers("f", 1);
    let cases: [(&[u8], &str, &str); 6] = [
        (b"one line", "data: one line", "one line"),
        (b"a\nb", "data: a\ndata: b", "a\nb"),
        (b"a\r\nb", "data: a\ndata: b", "a\nb"),
        (b"a\rb", "data: a\ndata: b", "a\nb"),
        (b"", "data: ", ""),
        (
            "four \u{1F600} bytes\n".as_bytes(),
            "data: four \u{1F600} bytes\ndata: ",
            "four \u{1F600} bytes\n",
        ),
    ];
    for (body, lines, data) in cases {
        ngx.post("f", body);
        let e = es.event();
        let raw = String::from_utf8(e.raw.clone()).unwrap();
        let id = e.id.clone().unwrap();
        assert_eq!(raw, format!("id: {id}\n{lines}"), "body {body:?}");
        assert_eq!(e.data, data, "what a browser reads for {body:?}");
    }
    ngx.stop_and_check();
}

#[test]
fn named_events_and_names_that_are_not_tokens() {
    let ngx = streams(1).start();
    let mut es = open(&ngx, "n");
    ngx.wait_subscribers("n", 1);
    let r = ngx
        .sender()
        .request(&Req::post(&chan_path("n"), b"x").header("X-EventSource-Event", "update"));
    assert_eq!(r.status, 201);
    let e = es.event();
    assert_eq!(e.event.as_deref(), Some("update"));
    assert_eq!(e.fields, vec!["id", "event", "data"]);
    let bad = ngx
        .sender()
        .request(&Req::post(&chan_path("n"), b"y").header("X-EventSource-Event", "two words"));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(
        info_field(&ngx.info("n").text(), "queued messages"),
        Some(1)
    );
    assert!(es.silent_for(HELD_CHECK), "nothing was published");
    ngx.stop_and_check();
}

#[test]
fn message_http_sends_its_embedded_body() {
    let ngx = streams(1).start();
    let mut es = open(&ngx, "mh");
    ngx.wait_subscribers("mh", 1);
    let body = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
    ngx.post_typed("mh", Some("message/http"), body);
    assert_eq!(es.event().data, "{\"a\":1}");
    ngx.stop_and_check();
}

/// A stream starts after `Last-Event-ID`, else `?last_event_id=`; a
/// garbage or overflowing id counts as absent (the oldest stored message);
/// after its backlog it takes what is published.
#[test]
fn resume_by_header_by_query_and_garbage() {
    let ngx = streams(1).start();
    let mut ids = Vec::new();
    for b in ["m1", "m2", "m3"] {
        ngx.post("r", b.as_bytes());
        ids.push(last_id(&ngx, "r"));
    }
    let datas = |es: &mut EventStream, n: usize| -> Vec<String> {
        (0..n).map(|_| es.event().data).collect()
    };
    let mut by_header = EventStream::open(
        ngx.listener_port,
        &chan_path("r"),
        &[("Last-Event-ID", &ids[0])],
    );
    assert_eq!(datas(&mut by_header, 2), ["m2", "m3"]);
    let encoded = ids[1].replace(':', "%3A");
    let mut by_query = EventStream::open(
        ngx.listener_port,
        &format!("/?channel=r&last_event_id={encoded}"),
        &[],
    );
    assert_eq!(datas(&mut by_query, 1), ["m3"]);
    for garbage in ["junk", "1:2:3", "99999999999999999999:0", "5:4294967296"] {
        let mut es = EventStream::open(
            ngx.listener_port,
            &chan_path("r"),
            &[("Last-Event-ID", garbage)],
        );
        assert_eq!(datas(&mut es, 3), ["m1", "m2", "m3"], "garbage {garbage:?}");
    }
    // Header wins over the query argument.
    let mut both = EventStream::open(
        ngx.listener_port,
        &format!("/?channel=r&last_event_id={}", ids[0]),
        &[("Last-Event-ID", &ids[1])],
    );
    assert_eq!(datas(&mut both, 1), ["m3"]);
    assert!(both.silent_for(HELD_CHECK), "nothing repeated");
    ngx.post("r", b"m4");
    for es in [&mut by_header, &mut by_query, &mut both] {
        assert_eq!(es.event().data, "m4");
    }
    ngx.stop_and_check();
}

/// Streams held in four different workers (proved by `X-Worker`) each get
/// every message, in order, exactly once, whichever worker publishes.
#[test]
fn every_stream_in_every_worker_gets_every_message() {
    let ngx = streams(4).start();
    let conns = ngx.connections_in_distinct_workers(ngx.listener_port, 4);
    let mut streams: Vec<(EventStream, i32)> = conns
        .into_iter()
        .map(|(c, pid)| {
            let mut es = EventStream::over(c, &chan_path("all"), &[]);
            assert_eq!(
                es.header("X-Worker").and_then(|w| w.parse().ok()),
                Some(pid)
            );
            assert_eq!(es.expect(), Item::Comment("hi".into()));
            (es, pid)
        })
        .collect();
    let pids: std::collections::BTreeSet<i32> = streams.iter().map(|s| s.1).collect();
    assert_eq!(pids.len(), 4, "four workers");
    ngx.wait_subscribers("all", 4);
    let senders = ngx.spread_connections(ngx.sender_port, 4);
    let mut senders: Vec<Conn> = senders.into_iter().map(|(c, _)| c).collect();
    for i in 0..20 {
        let s = &mut senders[i % 4];
        let r = s.request(&Req::post(&chan_path("all"), format!("n{i}").as_bytes()));
        assert_eq!(r.status, 201);
    }
    for (es, pid) in &mut streams {
        let got: Vec<String> = (0..20).map(|_| es.event().data).collect();
        let want: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
        assert_eq!(got, want, "stream in worker {pid}");
        assert!(es.silent_for(HELD_CHECK), "nothing more, nothing twice");
    }
    ngx.stop_and_check();
}

/// Over HTTP/1.0 the body is not chunked and ends with the connection.
#[test]
fn http10_stream_ends_with_the_connection() {
    let ngx = streams(1).start();
    let s = TcpStream::connect(("127.0.0.1", ngx.listener_port)).unwrap();
    let req = String::from_utf8(es_request(&chan_path("old"), &[]))
        .unwrap()
        .replace("HTTP/1.1", "HTTP/1.0");
    let mut es = EventStream::start(s, Vec::new(), req.as_bytes());
    assert_eq!(es.status, 200);
    assert!(es.header("Transfer-Encoding").is_none());
    assert_eq!(es.expect(), Item::Comment("hi".into()));
    ngx.wait_subscribers("old", 1);
    ngx.post("old", b"a\nb");
    assert_eq!(es.event().data, "a\nb");
    let d = ngx.sender().request(&Req::new("DELETE", &chan_path("old")));
    assert_eq!(d.status, 200);
    assert_eq!(es.expect(), Item::Comment("410 Gone".into()));
    assert_eq!(es.expect(), Item::End, "the connection closes");
    ngx.stop_and_check();
}

fn curl_es_h2(port: u16, ch: &str) -> std::process::Child {
    Command::new("curl")
        .args([
            "-sN",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "-H",
            "Accept: text/event-stream",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .arg(format!("http://127.0.0.1:{port}/?channel={ch}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs (scripts/deps.sh installs it)")
}

/// EventSource over HTTP/2 (h2c) delivers, and the stream ends cleanly on
/// a delete (nchan's has been broken there since nginx 1.16, its #576).
fn http2_stream(workers: usize) {
    let ngx = streams(workers).listener_server("http2 on;").start();
    let curl = curl_es_h2(ngx.listener_port, "h2");
    ngx.wait_subscribers("h2", 1);
    assert_eq!(ngx.post("h2", b"one").status, 201);
    assert_eq!(ngx.post("h2", b"two\nlines").status, 201);
    ngx.sender().request(&Req::new("DELETE", &chan_path("h2")));
    let out = curl.wait_with_output().expect("curl ends with the stream");
    let out = String::from_utf8_lossy(&out.stdout);
    let events: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(events[0], ": hi");
    assert!(events[1].ends_with("\ndata: one"), "{out:?}");
    assert!(events[2].ends_with("\ndata: two\ndata: lines"), "{out:?}");
    assert_eq!(events[3], ": 410 Gone");
    assert_eq!(events[4], "\n200 2", "ended cleanly: {out:?}");
    ngx.wait_subscribers("h2", 0);
    ngx.stop_and_check();
}

both_workers!(http2_stream);

/// `push_listener_ping`: an idle stream gets a `:` comment after that long
/// without output, and a message restarts the wait.
#[test]
fn pings_when_idle() {
    let ngx = streams(1)
        .listener_extra("push_listener_ping 400ms;")
        .start();
    let opened = Instant::now();
    let mut es = open(&ngx, "p");
    assert_eq!(es.expect(), Item::Comment(String::new()), "a ping");
    let first = opened.elapsed();
    assert!(
        first >= Duration::from_millis(380),
        "not before 400ms: {first:?}"
    );
    ngx.post("p", b"m");
    let sent = Instant::now();
    assert_eq!(es.event().data, "m");
    assert_eq!(es.expect(), Item::Comment(String::new()));
    let gap = sent.elapsed();
    assert!(
        gap >= Duration::from_millis(380),
        "the message restarted the wait: {gap:?}"
    );
    ngx.stop_and_check();
}

/// `push_listener_timeout` is an idle time for a stream: restarted by each
/// message; then the chunked body is terminated cleanly (the connection
/// stays usable) and the stream is forgotten.
#[test]
fn idle_timeout_ends_cleanly() {
    let ngx = streams(1)
        .listener_extra("push_listener_timeout 700ms;")
        .start();
    let mut es = open(&ngx, "t");
    ngx.wait_subscribers("t", 1);
    assert!(es.silent_for(Duration::from_millis(400)));
    ngx.post("t", b"keep");
    assert_eq!(es.event().data, "keep");
    let kept = Instant::now();
    assert!(
        es.silent_for(Duration::from_millis(450)),
        "the message restarted the timeout"
    );
    assert_eq!(es.expect(), Item::End);
    assert!(kept.elapsed() >= Duration::from_millis(650));
    ngx.wait_subscribers("t", 0);
    // Terminated, not cut: the keep-alive connection takes a request.
    let mut s = es.into_socket();
    use std::io::{Read, Write};
    s.write_all(b"GET /_pid HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"HTTP/1.1 200");
    ngx.stop_and_check();
}

fn delete_ends_with_410(workers: usize) {
    let ngx = streams(workers).start();
    let mut a = open(&ngx, "d");
    let mut b = open(&ngx, "d");
    ngx.wait_subscribers("d", 2);
    let r = ngx.sender().request(&Req::new("DELETE", &chan_path("d")));
    assert_eq!(info_field(&r.text(), "active subscribers"), Some(2));
    for es in [&mut a, &mut b] {
        assert_eq!(es.expect(), Item::Comment("410 Gone".into()));
        assert_eq!(es.expect(), Item::End);
    }
    ngx.stop_and_check();
}

both_workers!(delete_ends_with_410);

fn last_rule_ends_older_streams(workers: usize) {
    let ngx = streams(workers)
        .listener_extra("push_listener_concurrency last;")
        .start();
    let mut old = open(&ngx, "l");
    ngx.wait_subscribers("l", 1);
    let mut new = open(&ngx, "l");
    assert_eq!(old.expect(), Item::Comment("409 Conflict".into()));
    assert_eq!(old.expect(), Item::End);
    ngx.wait_subscribers("l", 1);
    assert_eq!(ngx.post("l", b"to the newest").status, 201);
    assert_eq!(new.event().data, "to the newest");
    ngx.stop_and_check();
}

both_workers!(last_rule_ends_older_streams);

#[test]
fn first_rule_refuses_a_second_stream_before_it_starts() {
    let ngx = streams(2)
        .listener_extra("push_listener_concurrency first;")
        .start();
    let mut first = open(&ngx, "fi");
    ngx.wait_subscribers("fi", 1);
    let second = EventStream::open(ngx.listener_port, &chan_path("fi"), &[]);
    assert_eq!(second.status, 409);
    assert!(second
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    ngx.post("fi", b"kept");
    assert_eq!(first.event().data, "kept");
    ngx.stop_and_check();
}

/// With no concurrency configured, a location offering streams broadcasts.
#[test]
fn streams_broadcast_by_default() {
    let ngx = streams(2).start();
    let mut a = open(&ngx, "b");
    let mut b = open(&ngx, "b");
    ngx.wait_subscribers("b", 2);
    ngx.post("b", b"both");
    assert_eq!(a.event().data, "both");
    assert_eq!(b.event().data, "both");
    ngx.stop_and_check();
}

/// Held streams count everywhere: channel info, the subscriber limit, 201.
fn streams_count_as_listeners(workers: usize) {
    let ngx = streams(workers)
        .listener_extra("push_max_channel_subscribers 2;")
        .start();
    let a = open(&ngx, "c");
    let _b = open(&ngx, "c");
    ngx.wait_subscribers("c", 2);
    let third = EventStream::open(ngx.listener_port, &chan_path("c"), &[]);
    assert_eq!(third.status, 403);
    assert_eq!(ngx.post("c", b"x").status, 201);
    drop(a);
    ngx.wait_subscribers("c", 1);
    ngx.stop_and_check();
}

both_workers!(streams_count_as_listeners);

/// A reload ends open streams cleanly; a client resuming with its last id
/// misses nothing published meanwhile.
fn reload_ends_streams_and_resume_misses_nothing(workers: usize) {
    let ngx = streams(workers).start();
    let mut es = open(&ngx, "rl");
    ngx.wait_subscribers("rl", 1);
    ngx.post("rl", b"before");
    let before = es.event();
    ngx.reload();
    assert_eq!(es.expect(), Item::End, "ended cleanly by the reload");
    ngx.post("rl", b"during");
    let mut again = EventStream::open(
        ngx.listener_port,
        &chan_path("rl"),
        &[("Last-Event-ID", before.id.as_deref().unwrap())],
    );
    assert_eq!(again.event().data, "during");
    assert!(again.silent_for(HELD_CHECK), "nothing repeated");
    ngx.stop_and_check();
}

both_workers!(reload_ends_streams_and_resume_misses_nothing);

/// A client that does not read is ended once more than
/// `push_listener_max_pending` is queued for it; the other streams go on.
#[test]
fn a_slow_reader_is_ended_and_the_others_continue() {
    let ngx = streams(2)
        .http("push_buffer_size 16m;")
        .listener_extra("push_listener_max_pending 64k;")
        .sender_extra("push_message_buffer_length 1;")
        .start();
    // The slow one: a small receive buffer, and it never reads.
    let slow = {
        let mut c = ngx.listener();
        c.set_recv_buffer(4096);
        c.write_bytes(&es_request(&chan_path("s"), &[])).unwrap();
        c
    };
    let mut fast = open(&ngx, "s");
    ngx.wait_subscribers("s", 2);
    let big = payload(200_000, 3)
        .into_iter()
        .map(|b| b'a' + b % 26)
        .collect::<Vec<u8>>();
    let mut n = 0;
    while ngx.subscribers("s") == Some(2) && n < 200 {
        assert!(matches!(ngx.post("s", &big).status, 201 | 202));
        let e = fast.event();
        assert_eq!(e.data.len(), big.len());
        n += 1;
    }
    assert_eq!(
        ngx.subscribers("s"),
        Some(1),
        "the slow stream was ended after {n}"
    );
    assert!(n < 200);
    ngx.post("s", b"still here");
    assert_eq!(fast.event().data, "still here");
    assert!(ngx.error_log().contains("reads too slowly"));
    drop(slow);
    ngx.stop_and_check();
}

/// A location offering only streams answers other requests 406; `HEAD`
/// and a subrequest are never held; the preflight allows `Last-Event-ID`.
#[test]
fn no_poll_and_preflight() {
    let ngx = Conf::new(1)
        .listener_body("set $push_id $arg_channel;\npush_listener eventsource;")
        .start();
    let r = ngx.listener().request(&Req::get(&chan_path("x")));
    assert_eq!(r.status, 406, "{}", r.text());
    assert!(r.text().contains("EventSource or WebSocket"));
    let pre = ngx
        .listener()
        .request(&Req::new("OPTIONS", &chan_path("x")).header("Origin", "http://a"));
    assert_eq!(pre.status, 200);
    assert!(pre
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .contains("Last-Event-ID"));
    let mut es = open(&ngx, "x");
    ngx.post("x", b"only streams");
    assert_eq!(es.event().data, "only streams");
    ngx.stop_and_check();
}

/// `push_listener;` alone is exactly long-poll: an event-stream `Accept`
/// changes nothing.
#[test]
fn one_word_is_the_old_behaviour() {
    let ngx = Conf::new(1).start();
    ngx.post("o", b"stored");
    let r = ngx
        .listener()
        .request(&Req::get(&chan_path("o")).header("Accept", "text/event-stream"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"stored");
    assert!(r.header("Etag").is_some());
    ngx.stop_and_check();
}
