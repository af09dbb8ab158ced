//! The `text/event-stream` wire format (the EventSource of browsers): one
//! event per message, and the comment lines of a stream's life.

use super::cursor::MsgId;
use super::text::Decimal;

/// Flushed with the headers, so the client sees the stream open at once.
pub const HELLO: &[u8] = b": hi\n\n";
/// An idle stream's keep-alive (`push_listener_ping`).
pub const PING: &[u8] = b":\n\n";
/// The channel was deleted; the stream ends after it.
pub const GONE: &[u8] = b": 410 Gone\n\n";
/// A newer listener took the channel (`last`); the stream ends after it.
pub const CONFLICT: &[u8] = b": 409 Conflict\n\n";

/// The event of message `id`: its `id:` line, an `event:` line when the
/// sender named one, one `data:` line per line of the body (split at CRLF,
/// LF or CR; an empty body is one empty `data:` line), and a blank line.
pub fn event(id: MsgId, name: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + name.len() + 48);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(Decimal::new(id.time).as_bytes());
    out.push(b':');
    out.extend_from_slice(Decimal::new(u64::from(id.tag)).as_bytes());
    out.push(b'\n');
    if !name.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name);
        out.push(b'\n');
    }
    let mut rest = body;
    loop {
        let end = rest.iter().position(|&c| c == b'\n' || c == b'\r');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.push(b'\n');
        let Some(end) = end else { break };
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: MsgId = MsgId {
        time: 1_764_170_000,
        tag: 2,
    };

    fn ev(body: &[u8]) -> String {
        String::from_utf8(event(ID, b"", body)).unwrap()
    }

    /// What a browser's EventSource makes of one event's data lines.
    fn browser_data(frame: &str) -> String {
        let lines: Vec<&str> = frame
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        lines.join("\n")
    }

    #[test]
    fn lines_split_at_every_line_ending() {
        assert_eq!(ev(b"one"), "id: 1764170000:2\ndata: one\n\n");
        assert_eq!(ev(b"a\nb"), "id: 1764170000:2\ndata: a\ndata: b\n\n");
        assert_eq!(ev(b"a\r\nb"), "id: 1764170000:2\ndata: a\ndata: b\n\n");
        assert_eq!(ev(b"a\rb"), "id: 1764170000:2\ndata: a\ndata: b\n\n");
        assert_eq!(
            ev(b"a\r\r\nb"),
            "id: 1764170000:2\ndata: a\ndata: \ndata: b\n\n"
        );
        assert_eq!(ev(b""), "id: 1764170000:2\ndata: \n\n");
        assert_eq!(ev(b"\n"), "id: 1764170000:2\ndata: \ndata: \n\n");
    }

    #[test]
    fn lf_bodies_arrive_byte_for_byte_and_utf8_is_untouched() {
        for body in [
            "x",
            "a\nb",
            "trailing\n",
            "\n\nlead",
            " space",
            "\u{1F600} four bytes",
        ] {
            assert_eq!(browser_data(&ev(body.as_bytes())), body);
        }
        // CR and CRLF arrive as LF, as browsers read them.
        assert_eq!(browser_data(&ev(b"a\r\nb\rc")), "a\nb\nc");
    }

    #[test]
    fn named_events() {
        let f = String::from_utf8(event(ID, b"update", b"x")).unwrap();
        assert_eq!(f, "id: 1764170000:2\nevent: update\ndata: x\n\n");
    }
}
