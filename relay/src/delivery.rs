//! A message as this worker delivers it: one heap copy per message, with
//! the cursor headers formatted and a `message/http` body parsed once, then
//! shared (behind an `Rc`) by every listener of the worker it goes to. The
//! frames of the stream transports are built on first use, once, and then
//! written to every stream from the same buffer.

use std::borrow::Cow;
use std::cell::OnceCell;

use crate::proto::cursor::{etag, http_date, Etag, MsgId};
use crate::proto::text::Decimal;
use crate::proto::{eventsource, msghttp, websocket};

/// A `message/http` message's embedded response, as offsets and owned
/// copies (the body stays in [`Delivery::data`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Embedded {
    pub status: u16,
    /// `<status> <reason>`, for nginx's `status_line`.
    pub status_line: Vec<u8>,
    pub content_type: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    body_at: usize,
}

#[derive(Debug)]
pub struct Delivery {
    pub id: MsgId,
    pub etag: Etag,
    pub last_modified: [u8; 29],
    /// As the sender sent it; empty = none (the listener location's
    /// `default_type` applies).
    pub content_type: Vec<u8>,
    /// The body as published.
    pub data: Vec<u8>,
    pub embedded: Option<Embedded>,
    /// `X-EventSource-Event` of the sender; empty = none.
    pub event: Vec<u8>,
    eventsource: OnceCell<Vec<u8>>,
    /// WebSocket frames, bare and with `ws+meta.nchan`, for the
    /// `default_type` they were first built with.
    websocket: [OnceCell<(Vec<u8>, Vec<u8>)>; 2],
}

/// Is this the `message/http` media type (parameters ignored)?
pub fn is_message_http(content_type: &[u8]) -> bool {
    let base = content_type.split(|&b| b == b';').next().unwrap_or(b"");
    base.trim_ascii().eq_ignore_ascii_case(b"message/http")
}

impl Delivery {
    /// Compose the delivery of message `id`. A `message/http` body was
    /// checked when it was published; should it not parse here, it is sent
    /// as it is, which is still a correct answer.
    pub fn new(id: MsgId, content_type: Vec<u8>, event: Vec<u8>, data: Vec<u8>) -> Delivery {
        let embedded = if is_message_http(&content_type) {
            msghttp::parse(&data).ok().map(|e| {
                let mut status_line = Decimal::new(u64::from(e.status)).as_bytes().to_vec();
                status_line.push(b' ');
                status_line.extend_from_slice(e.reason);
                Embedded {
                    status: e.status,
                    status_line,
                    content_type: e.content_type.map(<[u8]>::to_vec),
                    headers: e
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_vec(), v.to_vec()))
                        .collect(),
                    body_at: data.len() - e.body.len(),
                }
            })
        } else {
            None
        };
        Delivery {
            id,
            etag: etag(id.tag),
            last_modified: http_date(id.time),
            content_type,
            data,
            embedded,
            event,
            eventsource: OnceCell::new(),
            websocket: [OnceCell::new(), OnceCell::new()],
        }
    }

    /// The type listeners receive: the embedded one of a `message/http`
    /// message, else the sender's; `default_type` when there is none.
    pub fn media_type<'a>(&'a self, default_type: &'a [u8]) -> &'a [u8] {
        let own = match &self.embedded {
            Some(e) => e.content_type.as_deref().unwrap_or(b""),
            None => &self.content_type,
        };
        if own.is_empty() {
            default_type
        } else {
            own
        }
    }

    /// The EventSource event of this message.
    pub fn eventsource_frame(&self) -> &[u8] {
        self.eventsource
            .get_or_init(|| eventsource::event(self.id, &self.event, self.body()))
    }

    /// The WebSocket frame of this message, bare or in nchan's `ws+meta`
    /// framing, for a listener location whose `default_type` is
    /// `default_type`. Shared by every stream that receives the same media
    /// type as the first (all of them, unless the message has no type of
    /// its own and locations differ in `default_type`); built afresh for
    /// another.
    pub fn websocket_frame(&self, meta: bool, default_type: &[u8]) -> Cow<'_, [u8]> {
        let ty = self.media_type(default_type);
        let build = || websocket::message_frame(self.id, ty, self.body(), meta);
        let (for_type, frame) =
            self.websocket[usize::from(meta)].get_or_init(|| (ty.to_vec(), build()));
        if for_type == ty {
            Cow::Borrowed(frame)
        } else {
            Cow::Owned(build())
        }
    }

    /// What the listener receives as the body: the embedded body of a
    /// `message/http` message, else the message.
    pub fn body(&self) -> &[u8] {
        match &self.embedded {
            Some(e) => self.data.get(e.body_at..).unwrap_or(&[]),
            None => &self.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_keeps_body_and_formats_cursor() {
        let d = Delivery::new(
            MsgId {
                time: 1_764_170_000,
                tag: 3,
            },
            b"text/plain".to_vec(),
            Vec::new(),
            b"hi".to_vec(),
        );
        assert_eq!(d.body(), b"hi");
        assert_eq!(d.etag.as_bytes(), b"\"3\"");
        assert_eq!(&d.last_modified[..], b"Wed, 26 Nov 2025 15:13:20 GMT");
        assert!(d.embedded.is_none());
    }

    #[test]
    fn message_http_is_embedded_once() {
        let raw = b"HTTP/1.1 203 Fine\r\nContent-Type: text/x\r\nX-A: 1\r\nContent-Length: 99\r\n\r\nbody".to_vec();
        let d = Delivery::new(
            MsgId::default(),
            b"Message/HTTP; x=1".to_vec(),
            Vec::new(),
            raw,
        );
        let e = d.embedded.as_ref().unwrap();
        assert_eq!(e.status, 203);
        assert_eq!(e.status_line, b"203 Fine");
        assert_eq!(e.content_type.as_deref(), Some(&b"text/x"[..]));
        assert_eq!(e.headers, vec![(b"X-A".to_vec(), b"1".to_vec())]);
        assert_eq!(d.body(), b"body");
    }

    #[test]
    fn stream_frames_are_built_once_and_shared() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}".to_vec();
        let d = Delivery::new(
            MsgId { time: 9, tag: 0 },
            b"message/http".to_vec(),
            b"tick".to_vec(),
            raw,
        );
        assert_eq!(d.eventsource_frame(), b"id: 9:0\nevent: tick\ndata: {}\n\n");
        assert!(core::ptr::eq(d.eventsource_frame(), d.eventsource_frame()));
        let a = d.websocket_frame(true, b"text/plain");
        assert!(matches!(a, Cow::Borrowed(_)));
        assert_eq!(&a[2..], b"id: 9:0\ncontent-type: application/json\n\n{}");
        assert_eq!(&d.websocket_frame(false, b"text/plain")[2..], b"{}");
        // A message with its own type: one frame for every location.
        assert!(matches!(
            d.websocket_frame(true, b"text/html"),
            Cow::Borrowed(_)
        ));
        let plain = Delivery::new(MsgId::default(), Vec::new(), Vec::new(), b"x".to_vec());
        assert_eq!(plain.media_type(b"text/html"), b"text/html");
        let first = plain.websocket_frame(true, b"text/html");
        assert!(matches!(first, Cow::Borrowed(_)));
        let other = plain.websocket_frame(true, b"text/x");
        assert!(matches!(other, Cow::Owned(_)));
        assert!(other.ends_with(b"content-type: text/x\n\nx"));
    }

    #[test]
    fn unparsable_message_http_is_sent_as_is() {
        let d = Delivery::new(
            MsgId::default(),
            b"message/http".to_vec(),
            Vec::new(),
            b"junk".to_vec(),
        );
        assert!(d.embedded.is_none());
        assert_eq!(d.body(), b"junk");
    }
}
