//! `Content-Type: message/http` on POST: listeners receive the embedded
//! status, headers and body; malformed or smuggling bodies are refused with
//! 400 and nothing stored; framing and hop-by-hop headers never pass.

#[macro_use]
mod common;

use common::*;

const MSG_HTTP: &str = "message/http";

/// (embedded response, expected status, an expected header, expected body)
type Case<'a> = (&'a [u8], u16, Option<(&'a str, &'a str)>, &'a [u8]);

fn post_http(ngx: &Nginx, ch: &str, body: &[u8]) -> Response {
    ngx.post_typed(ch, Some(MSG_HTTP), body)
}

/// A well-formed embedded response reaches a held listener in another
/// worker and a later listener alike: custom status, headers, body; the
/// module's own Content-Length and cursor; no framing or hop-by-hop headers.
fn delivers_status_headers_body(workers: usize) {
    let ngx = Conf::new(workers).start();
    let embedded = b"HTTP/1.1 418 I'm a teapot\r\n\
X-Custom: yes\r\n\
Content-Type: text/x-tea\r\n\
Content-Length: 999\r\n\
Transfer-Encoding: chunked\r\n\
Connection: close\r\n\
Keep-Alive: timeout=1\r\n\
Upgrade: h2c\r\n\
TE: trailers\r\n\
Trailer: X-After\r\n\
Proxy-Authenticate: Basic\r\n\
Proxy-Connection: close\r\n\
Etag: \"99\"\r\n\
Cache-Control: no-store\r\n\
\r\n\
short tea";
    let mut l = ngx.listener();
    let lpid = l.worker_pid();
    l.send(&Req::get(&chan_path("mh")));
    ngx.wait_subscribers("mh", 1);
    let (mut s, _) = ngx.connection_not_in(ngx.sender_port, lpid);
    let pr = s.request(&Req::post(&chan_path("mh"), embedded).header("Content-Type", MSG_HTTP));
    assert_eq!(pr.status, 201, "{}", pr.text());
    let held = l.recv(PROMPT);
    let later = ngx.listener().recv_now(&Req::get(&chan_path("mh")));
    for (what, r) in [("held", &held), ("stored", &later)] {
        assert_eq!(r.status, 418, "{what}: embedded status");
        assert_eq!(r.body, b"short tea", "{what}: embedded body");
        assert_eq!(r.header("X-Custom"), Some("yes"), "{what}");
        assert_eq!(r.header("Cache-Control"), Some("no-store"), "{what}");
        assert_eq!(r.headers_all("Content-Type"), vec!["text/x-tea"], "{what}");
        assert_eq!(
            r.headers_all("Content-Length"),
            vec!["9"],
            "{what}: computed length"
        );
        for h in [
            "Transfer-Encoding",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Proxy-Authenticate",
            "Proxy-Connection",
        ] {
            assert!(!r.has_header(h), "{what}: {h} must be dropped");
        }
        for v in r.headers_all("Connection") {
            assert!(
                !v.eq_ignore_ascii_case("close"),
                "{what}: embedded Connection passed"
            );
        }
        assert_eq!(
            r.headers_all("Etag"),
            vec!["\"0\""],
            "{what}: the module's cursor"
        );
        assert!(
            r.has_header("Last-Modified"),
            "{what}: the cursor's Last-Modified (nginx drops it for non-200 unless set as a plain header)"
        );
    }
    // The stream stayed in sync: the same keep-alive connection still works.
    assert_eq!(l.worker_pid(), lpid);
    ngx.stop_and_check();
}

/// LF line endings, HTTP/1.0, no reason phrase, empty body.
fn lenient_forms(workers: usize) {
    let ngx = Conf::new(workers).start();
    let cases: [Case; 4] = [
        (
            b"HTTP/1.0 201 Created\nX-A: 1\n\nbody",
            201,
            Some(("X-A", "1")),
            b"body",
        ),
        (
            b"HTTP/1.1 200\r\nX-B: 2\r\n\r\nx",
            200,
            Some(("X-B", "2")),
            b"x",
        ),
        (
            b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\n\r\n",
            503,
            Some(("Retry-After", "5")),
            b"",
        ),
        (b"HTTP/1.1 299 Odd\r\n\r\n", 299, None, b""),
    ];
    for (i, (embedded, status, header, body)) in cases.iter().enumerate() {
        let ch = format!("len{i}");
        let pr = post_http(&ngx, &ch, embedded);
        assert_eq!(pr.status, 202, "case {i}: {}", pr.text());
        let mut l = ngx.listener();
        let r = l.recv_now(&Req::get(&chan_path(&ch)));
        assert_eq!(r.status, *status, "case {i}");
        assert_eq!(&r.body[..], *body, "case {i}");
        assert_eq!(r.content_length(), Some(body.len()), "case {i}");
        if let Some((k, v)) = header {
            assert_eq!(r.header(k), Some(*v), "case {i}");
        }
        assert!(r.has_header("Etag"), "case {i}: cursor Etag");
        assert!(
            r.has_header("Last-Modified"),
            "case {i}: cursor Last-Modified"
        );
        let _ = l.worker_pid(); // in sync
    }
    ngx.stop_and_check();
}

/// Malformed and smuggling attempts: 400, nothing stored, held listener not
/// disturbed.
fn refuses_malformed(workers: usize) {
    let ngx = Conf::new(workers).start();
    let bad: Vec<&[u8]> = vec![
        b"",
        b"hello world",
        b"\r\n\r\nbody",
        b"HTTP/1.1 199 Low\r\n\r\n",
        b"HTTP/1.1 600 High\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad(: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n X-Folded: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX\0: a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n",
        b"HTTP/1.1 200 OK\r\nX: a",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK\r\nX: a\r\n\rHTTP/1.1 200 OK\r\n\r\n",
    ];
    let mut l = ngx.listener();
    l.send(&Req::get(&chan_path("bad")));
    ngx.wait_subscribers("bad", 1);
    for (i, b) in bad.iter().enumerate() {
        let r = post_http(&ngx, "bad", b);
        assert_eq!(
            r.status,
            400,
            "case {i} {:?} must be refused",
            String::from_utf8_lossy(b)
        );
        assert!(
            !l.is_answered_within(std::time::Duration::from_millis(1)),
            "case {i} reached the listener"
        );
    }
    assert!(!l.is_answered_within(HELD_CHECK), "nothing delivered");
    let info = ngx.info("bad").text();
    assert_eq!(
        info_field(&info, "queued messages"),
        Some(0),
        "nothing stored: {info}"
    );
    assert_eq!(info_field(&info, "active subscribers"), Some(1), "{info}");
    // A good one still goes through to the same listener.
    assert_eq!(
        post_http(&ngx, "bad", b"HTTP/1.1 200 OK\r\n\r\nfine").status,
        201
    );
    let r = l.recv(PROMPT);
    assert_eq!((r.status, r.body), (200, b"fine".to_vec()));
    ngx.stop_and_check();
}

/// Without message/http, a body that looks like a response is just a body.
fn plain_body_is_not_parsed(workers: usize) {
    let ngx = Conf::new(workers).start();
    let body = b"HTTP/1.1 500 Fake\r\nX-Evil: 1\r\n\r\nx";
    ngx.post_typed("pl", Some("text/plain"), body);
    let r = ngx.listener().recv_now(&Req::get(&chan_path("pl")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    assert!(!r.has_header("X-Evil"));
    ngx.stop_and_check();
}

both_workers!(
    delivers_status_headers_body,
    lenient_forms,
    refuses_malformed,
    plain_body_is_not_parsed,
);
