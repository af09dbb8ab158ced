//! WebSocket listeners (PROTOCOL.md, "Streaming listeners"): the upgrade
//! and its refusals, bare and `ws+meta.nchan` frames, text or binary, what
//! clients send (pings, closes, data; unmasked, oversized and bad frames
//! from a raw socket), pings, the ends and their close codes, resuming.

#[macro_use]
mod common;

use common::stream::{
    client_frame, raw_close_code, raw_ws, ws_close_code, ws_expect, ws_next, ws_on, ws_open,
};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

const STREAMS: &str = "set $push_id $arg_channel;\npush_listener long-poll eventsource websocket;";

fn streams(workers: usize) -> Conf {
    Conf::new(workers).listener_body(STREAMS)
}

fn text(m: Message) -> String {
    match m {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn bare_frames_text_and_binary(workers: usize) {
    let ngx = streams(workers).start();
    let (mut ws, resp) = ws_open(ngx.listener_port, &chan_path("t"), None);
    assert_eq!(resp.status(), 101);
    assert!(
        resp.headers().get("Sec-WebSocket-Protocol").is_none(),
        "no protocol header unless one was agreed"
    );
    ngx.wait_subscribers("t", 1);
    assert_eq!(ngx.post("t", "héllo \u{1F600}".as_bytes()).status, 201);
    assert_eq!(text(ws_expect(&mut ws)), "héllo \u{1F600}");
    ngx.post_typed("t", Some("application/octet-stream"), b"bytes");
    assert_eq!(
        ws_expect(&mut ws),
        Message::Binary(b"bytes".to_vec().into())
    );
    ngx.post_typed("t", Some("text/plain"), b"\xff\xfe not utf-8");
    assert_eq!(
        ws_expect(&mut ws),
        Message::Binary(b"\xff\xfe not utf-8".to_vec().into()),
        "RFC 6455: text frames are UTF-8"
    );
    ngx.post("t", b"");
    assert_eq!(text(ws_expect(&mut ws)), "");
    drop(ws);
    ngx.stop_and_check();
}

both_workers!(bare_frames_text_and_binary);

/// `ws+meta.nchan`, offered anywhere in the list, is selected; each frame
/// then carries the id and the type (the listener's `default_type` when
/// the sender sent none), and `message/http` its embedded type and body.
#[test]
fn meta_framing() {
    let ngx = streams(1)
        .listener_extra("default_type application/x-default;")
        .start();
    let (mut ws, resp) = ws_open(
        ngx.listener_port,
        &chan_path("m"),
        Some("chat, ws+meta.nchan"),
    );
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("ws+meta.nchan")
    );
    ngx.wait_subscribers("m", 1);
    ngx.post_typed("m", Some("text/plain"), b"typed");
    let id = info_str(&ngx.info("m").text(), "last message id").unwrap();
    assert_eq!(
        text(ws_expect(&mut ws)),
        format!("id: {id}\ncontent-type: text/plain\n\ntyped")
    );
    ngx.post_typed("m", None, b"untyped");
    let id = info_str(&ngx.info("m").text(), "last message id").unwrap();
    assert_eq!(
        text(ws_expect(&mut ws)),
        format!("id: {id}\ncontent-type: application/x-default\n\nuntyped")
    );
    let embedded = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1]";
    ngx.post_typed("m", Some("message/http"), embedded);
    let id = info_str(&ngx.info("m").text(), "last message id").unwrap();
    assert_eq!(
        text(ws_expect(&mut ws)),
        format!("id: {id}\ncontent-type: application/json\n\n[1]")
    );
    drop(ws);
    ngx.stop_and_check();
}

/// Pings are answered with pongs, client data is ignored, and a close is
/// answered with a close (then the connection ends).
#[test]
fn pings_data_and_close_from_the_client() {
    let ngx = streams(1).start();
    let (mut ws, _) = ws_open(ngx.listener_port, &chan_path("c"), None);
    ngx.wait_subscribers("c", 1);
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    ws.get_mut().set_read_timeout(Some(PROMPT)).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
    ws.send(Message::Text("ignored".into())).unwrap();
    ws.send(Message::Binary(vec![0; 1000].into())).unwrap();
    assert!(
        ws_next(&mut ws, HELD_CHECK).is_none(),
        "data frames get no answer"
    );
    ngx.post("c", b"still subscribed");
    assert_eq!(text(ws_expect(&mut ws)), "still subscribed");
    ws.close(None).unwrap();
    assert_eq!(ws_close_code(&mut ws), None, "the server answers the close");
    ngx.wait_subscribers("c", 0);
    drop(ws);
    ngx.stop_and_check();
}

/// The frames a conforming client never sends close the connection with
/// the code RFC 6455 asks for, and the close frame arrives (the server
/// lingers instead of resetting).
#[test]
fn bad_client_frames() {
    let ngx = streams(1).start();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", client_frame(true, 0x1, b"hi", false), 1002),
        (
            "a frame over 64 KiB",
            client_frame(true, 0x2, &vec![0; 65 * 1024], true),
            1009,
        ),
        (
            "a fragmented message over 64 KiB",
            {
                let mut v = client_frame(false, 0x1, &vec![b'a'; 40 * 1024], true);
                v.extend(client_frame(true, 0x0, &vec![b'a'; 40 * 1024], true));
                v
            },
            1009,
        ),
        (
            "a close code that may not be sent",
            client_frame(true, 0x8, &[0x03, 0xed], true),
            1002,
        ),
        (
            "a close with one byte",
            client_frame(true, 0x8, &[0x03], true),
            1002,
        ),
        (
            "a fragmented ping",
            client_frame(false, 0x9, b"p", true),
            1002,
        ),
        (
            "an unknown opcode",
            client_frame(true, 0x3, b"", true),
            1002,
        ),
        (
            "reserved bits",
            {
                let mut f = client_frame(true, 0x1, b"x", true);
                f[0] |= 0x40;
                f
            },
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        let (mut s, head) = raw_ws(ngx.listener_port, &chan_path("bad"), &[]);
        assert!(head.starts_with("HTTP/1.1 101"), "{what}: {head}");
        ngx.wait_subscribers("bad", 1);
        s.write_all(&bytes).unwrap();
        assert_eq!(raw_close_code(&mut s), Some(code), "{what}");
        // We close our side: the server had kept it open for us.
        drop(s);
        ngx.wait_subscribers("bad", 0);
    }
    ngx.stop_and_check();
}

/// After sending a close frame the server lingers: it reads and drops what
/// the client still sends, and only ends the connection when the client
/// does (within nginx's lingering_timeout).
#[test]
fn the_close_frame_is_not_lost_to_a_reset() {
    let ngx = streams(1).start();
    let (mut s, _) = raw_ws(ngx.listener_port, &chan_path("lg"), &[]);
    ngx.wait_subscribers("lg", 1);
    ngx.sender().request(&Req::new("DELETE", &chan_path("lg")));
    // Still sending after the server's close frame is on its way.
    let _ = s.write_all(&client_frame(true, 0x1, b"late", true));
    assert_eq!(raw_close_code(&mut s), Some(4410));
    let _ = s.write_all(&client_frame(true, 0x8, &[0x03, 0xe8], true));
    let mut b = [0u8; 16];
    s.set_read_timeout(Some(PROMPT)).unwrap();
    // An orderly end (FIN, no reset) after our close.
    assert_eq!(s.read(&mut b).expect("no reset"), 0);
    drop(s);
    ngx.stop_and_check();
}

#[test]
fn upgrade_refusals() {
    let ngx = streams(1).start();
    let mut c = ngx.listener();
    let base = |r: Req| {
        r.header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
    };
    let r = c.request(&base(Req::get(&chan_path("u"))).header("Sec-WebSocket-Version", "13"));
    assert_eq!(r.status, 400, "no key: {}", r.text());
    let r = c.request(
        &base(Req::get(&chan_path("u"))).header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    );
    assert_eq!(r.status, 400, "no version");
    let r = c.request(
        &base(Req::get(&chan_path("u")))
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "8"),
    );
    assert_eq!(r.status, 426);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
    assert_eq!(ngx.subscribers("u"), None, "nothing was held");
    ngx.stop_and_check();
}

/// The accept key is RFC 6455's.
#[test]
fn accept_key() {
    let ngx = streams(1).start();
    let (_s, head) = raw_ws(ngx.listener_port, &chan_path("k"), &[]);
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(head.to_ascii_lowercase().contains("connection: upgrade"));
    drop(_s);
    ngx.stop_and_check();
}

/// `push_listener_ping`: an idle WebSocket gets a ping frame.
#[test]
fn server_pings() {
    let ngx = streams(1)
        .listener_extra("push_listener_ping 300ms;")
        .start();
    let (mut s, _) = raw_ws(ngx.listener_port, &chan_path("pg"), &[]);
    let start = Instant::now();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b, [0x89, 0], "a ping frame");
    assert!(
        start.elapsed() >= Duration::from_millis(280),
        "{:?}",
        start.elapsed()
    );
    drop(s);
    ngx.stop_and_check();
}

#[test]
fn idle_timeout_closes_with_1001() {
    let ngx = streams(1)
        .listener_extra("push_listener_timeout 500ms;")
        .start();
    let (mut ws, _) = ws_open(ngx.listener_port, &chan_path("it"), None);
    ngx.wait_subscribers("it", 1);
    assert_eq!(ws_close_code(&mut ws), Some(1001));
    ngx.wait_subscribers("it", 0);
    drop(ws);
    ngx.stop_and_check();
}

fn ends_with_their_codes(workers: usize) {
    let ngx = streams(workers)
        .listener_extra("push_listener_concurrency last;")
        .start();
    let (mut old, _) = ws_open(ngx.listener_port, &chan_path("e"), None);
    ngx.wait_subscribers("e", 1);
    let (mut new, _) = ws_open(ngx.listener_port, &chan_path("e"), None);
    assert_eq!(
        ws_close_code(&mut old),
        Some(4409),
        "last: a newer listener"
    );
    ngx.wait_subscribers("e", 1);
    ngx.sender().request(&Req::new("DELETE", &chan_path("e")));
    assert_eq!(ws_close_code(&mut new), Some(4410), "deleted");
    drop(old);
    drop(new);
    ngx.stop_and_check();
}

both_workers!(ends_with_their_codes);

/// A reload closes open WebSockets with 1001; a client resuming with the id
/// from its last meta frame misses nothing.
fn reload_and_resume(workers: usize) {
    let ngx = streams(workers).start();
    let (mut ws, _) = ws_open(ngx.listener_port, &chan_path("rr"), Some("ws+meta.nchan"));
    ngx.wait_subscribers("rr", 1);
    ngx.post("rr", b"before");
    let frame = text(ws_expect(&mut ws));
    let id = frame
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_string();
    ngx.reload();
    assert_eq!(ws_close_code(&mut ws), Some(1001));
    ngx.post("rr", b"during");
    let (mut again, _) = ws_open(
        ngx.listener_port,
        &format!("/?channel=rr&last_event_id={}", id.replace(':', "%3A")),
        Some("ws+meta.nchan"),
    );
    assert!(text(ws_expect(&mut again)).ends_with("\n\nduring"));
    assert!(
        ws_next(&mut again, HELD_CHECK).is_none(),
        "nothing repeated"
    );
    drop(ws);
    drop(again);
    ngx.stop_and_check();
}

both_workers!(reload_and_resume);

/// Long-poll, EventSource and WebSocket listeners on one channel, each in
/// another worker, all get every message in order.
#[test]
fn mixed_transports_on_one_channel() {
    let ngx = streams(4).start();
    let mut conns = ngx.connections_in_distinct_workers(ngx.listener_port, 3);
    let (ws_conn, ws_pid) = conns.pop().unwrap();
    let (es_conn, es_pid) = conns.pop().unwrap();
    let (mut lp, lp_pid) = conns.pop().unwrap();
    let mut ws = ws_on(ws_conn, &chan_path("mx"), None);
    let mut es = common::stream::EventStream::over(es_conn, &chan_path("mx"), &[]);
    assert_eq!(
        es.header("X-Worker").and_then(|p| p.parse().ok()),
        Some(es_pid)
    );
    let mut cursor = Cursor::default();
    lp.send(&listen_req("mx", &cursor));
    ngx.wait_subscribers("mx", 3);
    assert_eq!(
        std::collections::BTreeSet::from([ws_pid, es_pid, lp_pid]).len(),
        3,
        "three workers"
    );
    for i in 0..5 {
        let body = format!("m{i}");
        assert_eq!(ngx.post("mx", body.as_bytes()).status, 201);
        let r = lp.recv(PROMPT);
        assert_eq!(r.text(), body);
        cursor = Cursor::of(&r);
        assert_eq!(text(ws_expect(&mut ws)), body);
        assert_eq!(es.event().data, body);
        lp.send(&listen_req("mx", &cursor));
        ngx.wait_subscribers("mx", 3);
    }
    drop(ws);
    drop(es);
    drop(lp);
    ngx.stop_and_check();
}

/// WebSocket is HTTP/1.1 only: an upgrade over HTTP/1.0 is refused.
#[test]
fn http10_upgrade_is_refused() {
    let ngx = streams(1).start();
    let mut s = TcpStream::connect(("127.0.0.1", ngx.listener_port)).unwrap();
    s.write_all(b"GET /?channel=v HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(PROMPT)).unwrap();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    ngx.stop_and_check();
}
