//! `Content-Type: message/http` sender bodies, and the delivery built from
//! them (and from any other body): its EventSource event and WebSocket
//! frames. Input: the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_relay::delivery::Delivery;
use push_relay::proto::cursor::MsgId;
use push_relay::proto::msghttp::{is_dropped, parse, EmbeddedResponse, MAX_HEADERS};
use push_relay::proto::text::is_token;

/// The response written back as text.
fn encode(r: &EmbeddedResponse<'_>) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {}", r.status).into_bytes();
    if !r.reason.is_empty() {
        out.push(b' ');
        out.extend_from_slice(r.reason);
    }
    out.extend_from_slice(b"\r\n");
    if let Some(ct) = r.content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ct);
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in &r.headers {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(r.body);
    out
}

fn ows(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn safe_value(v: &[u8]) -> bool {
    v.iter().all(|&c| c == b'\t' || (c >= b' ' && c != 0x7f))
        && !v.first().is_some_and(|&c| ows(c))
        && !v.last().is_some_and(|&c| ows(c))
}

/// What an EventSource client reads from one event: its id and its data
/// (the WHATWG parser: lines end at CRLF, LF or CR; `data:` lines are
/// joined with LF; one leading space of a value is dropped).
fn read_event(ev: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
    let text = ev;
    let mut id = Vec::new();
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut events = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .expect("every line of an event is ended");
        let line = &rest[..end];
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            events += 1;
            continue;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"id" => id = value.to_vec(),
            b"data" => data.push(value.to_vec()),
            _ => {}
        }
    }
    (id, data.join(&b'\n'), events)
}

/// The payload of one unmasked server frame, whole.
fn frame_payload(f: &[u8]) -> (u8, &[u8]) {
    assert!(f.len() >= 2);
    assert_eq!(f[0] & 0xf0, 0x80, "final, no reserved bits");
    assert_eq!(f[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match f[1] & 0x7f {
        126 => (usize::from(u16::from_be_bytes([f[2], f[3]])), 4),
        127 => (
            usize::try_from(u64::from_be_bytes(f[2..10].try_into().unwrap())).unwrap(),
            10,
        ),
        n => (usize::from(n), 2),
    };
    assert_eq!(f.len(), at + len, "one whole frame");
    (f[0] & 0x0f, &f[at..])
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Ok(r) = &parsed {
        assert!((200..=599).contains(&r.status));
        assert!(r.headers.len() <= MAX_HEADERS);
        assert!(r
            .reason
            .iter()
            .all(|&c| c == b'\t' || (c >= b' ' && c != 0x7f)));
        for (n, v) in &r.headers {
            assert!(is_token(n));
            assert!(!is_dropped(n));
            assert!(!n.eq_ignore_ascii_case(b"content-type"));
            assert!(safe_value(v), "{:?}", String::from_utf8_lossy(v));
        }
        if let Some(ct) = r.content_type {
            assert!(safe_value(ct) || ct.is_empty());
        }
        assert!(data.ends_with(r.body));
        // Written back out, it parses to the same response.
        let again = encode(r);
        assert_eq!(parse(&again).as_ref(), Ok(r));
    }

    // The delivery of this body as message/http and as a plain message.
    let id = MsgId {
        time: 1_764_170_000,
        tag: data.len() as u32,
    };
    for ct in [&b"message/http"[..], b"text/plain"] {
        let d = Delivery::new(id, ct.to_vec(), b"ev".to_vec(), data.to_vec());
        assert_eq!(
            d.embedded.is_some(),
            ct == b"message/http" && parsed.is_ok()
        );
        let body = d.body();
        assert!(data.ends_with(body));

        // EventSource: one event, its id, the body with line ends as LF.
        let (eid, edata, events) = read_event(d.eventsource_frame());
        assert_eq!(events, 1);
        assert_eq!(eid, id.to_string().as_bytes());
        let mut want = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'\r' if body.get(i + 1) == Some(&b'\n') => {
                    want.push(b'\n');
                    i += 1;
                }
                b'\r' => want.push(b'\n'),
                c => want.push(c),
            }
            i += 1;
        }
        assert_eq!(edata, want);

        // WebSocket: one whole frame carrying the body (after the meta
        // lines with ws+meta.nchan).
        let f = d.websocket_frame(false, b"text/plain");
        let (_, payload) = frame_payload(&f);
        assert_eq!(payload, body);
        let f = d.websocket_frame(true, b"text/plain");
        let (_, payload) = frame_payload(&f);
        assert!(payload.ends_with(body));
        let meta = &payload[..payload.len() - body.len()];
        assert!(meta.starts_with(format!("id: {id}\ncontent-type: ").as_bytes()));
        assert!(meta.ends_with(b"\n\n"));
    }
});
