//! Listener transports: how a held listener receives what the relay hands
//! it, which ones a location offers, and which one a request picks. A poll
//! is answered once and leaves; a stream stays and takes every message. The
//! relay asks [`Transport::ends_on_message`] rather than assuming either.

use crate::outcome::Refusal;
use crate::proto::text::{list_has, trim};
use crate::request::Method;

/// One way of listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Held until a message (or another end), answered once.
    LongPoll,
    /// Answered at once, never held.
    IntervalPoll,
    /// `text/event-stream`: held, written to for every message.
    EventSource,
    /// RFC 6455 over HTTP/1.1: held, a frame for every message.
    WebSocket,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::LongPoll,
        Transport::IntervalPoll,
        Transport::EventSource,
        Transport::WebSocket,
    ];

    /// The word in `push_listener` (and in stats labels).
    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-poll",
            Transport::IntervalPoll => "interval-poll",
            Transport::EventSource => "eventsource",
            Transport::WebSocket => "websocket",
        }
    }

    /// Is a listener of this transport held when nothing is there yet?
    pub fn holds(self) -> bool {
        !matches!(self, Transport::IntervalPoll)
    }

    /// Does a delivered message end the listener (answer-once), or does it
    /// stay and take the next one?
    pub fn ends_on_message(self) -> bool {
        !self.is_stream()
    }

    pub fn is_stream(self) -> bool {
        matches!(self, Transport::EventSource | Transport::WebSocket)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of transports a listener location offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transports(u8);

impl Transports {
    pub const EMPTY: Transports = Transports(0);

    pub fn only(t: Transport) -> Transports {
        Transports(t.bit())
    }

    pub fn contains(self, t: Transport) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The poll this location offers, if any.
    pub fn poll(self) -> Option<Transport> {
        [Transport::LongPoll, Transport::IntervalPoll]
            .into_iter()
            .find(|&t| self.contains(t))
    }

    /// Does it offer EventSource or WebSocket?
    pub fn has_stream(self) -> bool {
        self.contains(Transport::EventSource) || self.contains(Transport::WebSocket)
    }

    /// The arguments of `push_listener` after its name: any list of the
    /// four words, each at most once, with at most one of the two polls.
    /// An empty list is long-poll.
    pub fn parse<'a>(
        words: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Transports, &'static str> {
        let mut set = Transports::EMPTY;
        for w in words {
            let t = Transport::ALL
                .into_iter()
                .find(|t| t.name().as_bytes() == w)
                .ok_or(
                    "takes \"long-poll\", \"interval-poll\", \"eventsource\" or \"websocket\"",
                )?;
            if set.contains(t) {
                return Err("lists a transport twice");
            }
            if set.poll().is_some() && t.poll_kind() {
                return Err("takes at most one of \"long-poll\" and \"interval-poll\"");
            }
            set.0 |= t.bit();
        }
        if set.is_empty() {
            set = Transports::only(Transport::LongPoll);
        }
        Ok(set)
    }
}

impl Transport {
    fn poll_kind(self) -> bool {
        matches!(self, Transport::LongPoll | Transport::IntervalPoll)
    }
}

/// What a request says about the transport it wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints<'a> {
    pub http11: bool,
    pub http2: bool,
    /// Not a subrequest: only a main request can be held.
    pub main: bool,
    pub accept: Option<&'a [u8]>,
    pub upgrade: Option<&'a [u8]>,
    pub connection: Option<&'a [u8]>,
    pub ws_version: Option<&'a [u8]>,
    pub ws_key: Option<&'a [u8]>,
}

/// Does `Accept` name `text/event-stream` (with a q other than 0)?
fn accepts_event_stream(accept: &[u8]) -> bool {
    accept.split(|&c| c == b',').any(|range| {
        let mut parts = range.split(|&c| c == b';');
        let media = trim(parts.next().unwrap_or(&[]));
        media.eq_ignore_ascii_case(b"text/event-stream")
            && !parts.any(|p| {
                let p = trim(p);
                p.len() >= 2
                    && p[..2].eq_ignore_ascii_case(b"q=")
                    && trim(&p[2..]).iter().all(|&c| c == b'0' || c == b'.')
            })
    })
}

/// Which transport this request gets at a location offering `offered`: a
/// valid WebSocket upgrade → WebSocket; `Accept: text/event-stream` →
/// EventSource; anything else → the location's poll (406 without one).
/// `HEAD` is never a stream (it gets the poll); a subrequest, which cannot
/// be held, is answered like interval-poll.
pub fn choose(offered: Transports, method: Method, h: &Hints<'_>) -> Result<Transport, Refusal> {
    let get = method == Method::Get;
    if offered.contains(Transport::WebSocket)
        && !h.http2
        && h.upgrade.is_some_and(|u| list_has(u, b"websocket"))
    {
        let version = h.ws_version.map(trim);
        match (h.ws_key.map(trim).filter(|k| !k.is_empty()), version) {
            (None, _) | (_, None) => return Err(Refusal::BadUpgrade),
            (Some(_), Some(v)) if v != b"13" => return Err(Refusal::UpgradeVersion),
            _ => {}
        }
        if !get || !h.http11 || !h.connection.is_some_and(|c| list_has(c, b"upgrade")) {
            return Err(Refusal::BadUpgrade);
        }
        return Ok(if h.main {
            Transport::WebSocket
        } else {
            Transport::IntervalPoll
        });
    }
    if offered.contains(Transport::EventSource) && get && h.accept.is_some_and(accepts_event_stream)
    {
        return Ok(if h.main {
            Transport::EventSource
        } else {
            Transport::IntervalPoll
        });
    }
    match offered.poll() {
        Some(Transport::LongPoll) if h.main => Ok(Transport::LongPoll),
        Some(_) => Ok(Transport::IntervalPoll),
        None => Err(Refusal::NotAcceptable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(words: &[&str]) -> Transports {
        Transports::parse(words.iter().map(|w| w.as_bytes())).unwrap()
    }

    #[test]
    fn parse_lists_and_defaults() {
        let none: [&[u8]; 0] = [];
        assert_eq!(
            Transports::parse(none),
            Ok(Transports::only(Transport::LongPoll))
        );
        let t = set(&["interval-poll"]);
        assert_eq!(t.poll(), Some(Transport::IntervalPoll));
        assert!(!t.has_stream());
        let t = set(&["long-poll", "eventsource", "websocket"]);
        assert!(t.has_stream() && t.contains(Transport::WebSocket));
        let only_streams = set(&["eventsource"]);
        assert_eq!(only_streams.poll(), None);
        assert!(Transports::parse([&b"forever-poll"[..]]).is_err());
        assert!(Transports::parse([&b"long-poll"[..], b"interval-poll"]).is_err());
        assert!(Transports::parse([&b"eventsource"[..], b"eventsource"]).is_err());
    }

    #[test]
    fn polls_hold_and_end_streams_stay() {
        assert!(Transport::LongPoll.holds());
        assert!(!Transport::IntervalPoll.holds());
        assert!(Transport::LongPoll.ends_on_message());
        assert!(!Transport::EventSource.ends_on_message());
        assert!(!Transport::WebSocket.ends_on_message());
        assert!(Transport::WebSocket.holds());
    }

    fn ws<'a>() -> Hints<'a> {
        Hints {
            http11: true,
            main: true,
            upgrade: Some(b"websocket"),
            connection: Some(b"keep-alive, Upgrade"),
            ws_version: Some(b"13"),
            ws_key: Some(b"dGhlIHNhbXBsZSBub25jZQ=="),
            ..Hints::default()
        }
    }

    #[test]
    fn each_request_picks_its_transport() {
        let all = set(&["long-poll", "eventsource", "websocket"]);
        assert_eq!(choose(all, Method::Get, &ws()), Ok(Transport::WebSocket));
        let es = Hints {
            main: true,
            accept: Some(b"text/html, text/event-stream;q=0.9"),
            ..Hints::default()
        };
        assert_eq!(choose(all, Method::Get, &es), Ok(Transport::EventSource));
        let plain = Hints {
            main: true,
            ..Hints::default()
        };
        assert_eq!(choose(all, Method::Get, &plain), Ok(Transport::LongPoll));
        assert_eq!(
            choose(set(&["eventsource"]), Method::Get, &plain),
            Err(Refusal::NotAcceptable)
        );
        // Not offered: an upgrade or an event-stream Accept is a poll.
        let lp = set(&["long-poll"]);
        assert_eq!(choose(lp, Method::Get, &ws()), Ok(Transport::LongPoll));
        assert_eq!(choose(lp, Method::Get, &es), Ok(Transport::LongPoll));
    }

    #[test]
    fn a_refused_event_stream_accept_is_not_an_event_stream() {
        let all = set(&["long-poll", "eventsource"]);
        let h = Hints {
            main: true,
            accept: Some(b"text/event-stream; q=0"),
            ..Hints::default()
        };
        assert_eq!(choose(all, Method::Get, &h), Ok(Transport::LongPoll));
    }

    #[test]
    fn bad_upgrades_are_refused() {
        let ws_only = set(&["websocket"]);
        let no_key = Hints {
            ws_key: None,
            ..ws()
        };
        assert_eq!(
            choose(ws_only, Method::Get, &no_key),
            Err(Refusal::BadUpgrade)
        );
        let no_version = Hints {
            ws_version: None,
            ..ws()
        };
        assert_eq!(
            choose(ws_only, Method::Get, &no_version),
            Err(Refusal::BadUpgrade)
        );
        let v8 = Hints {
            ws_version: Some(b"8"),
            ..ws()
        };
        assert_eq!(
            choose(ws_only, Method::Get, &v8),
            Err(Refusal::UpgradeVersion)
        );
        let no_conn = Hints {
            connection: Some(b"keep-alive"),
            ..ws()
        };
        assert_eq!(
            choose(ws_only, Method::Get, &no_conn),
            Err(Refusal::BadUpgrade)
        );
        let http10 = Hints {
            http11: false,
            ..ws()
        };
        assert_eq!(
            choose(ws_only, Method::Get, &http10),
            Err(Refusal::BadUpgrade)
        );
        assert_eq!(
            choose(ws_only, Method::Post, &ws()),
            Err(Refusal::BadUpgrade)
        );
        // HTTP/2 has no Upgrade: a plain request there.
        let h2 = Hints {
            http2: true,
            ..ws()
        };
        assert_eq!(
            choose(ws_only, Method::Get, &h2),
            Err(Refusal::NotAcceptable)
        );
    }

    #[test]
    fn subrequests_and_head_are_never_streams() {
        let all = set(&["long-poll", "eventsource"]);
        let sub = Hints {
            main: false,
            accept: Some(b"text/event-stream"),
            ..Hints::default()
        };
        assert_eq!(choose(all, Method::Get, &sub), Ok(Transport::IntervalPoll));
        let head = Hints {
            main: true,
            accept: Some(b"text/event-stream"),
            ..Hints::default()
        };
        assert_eq!(choose(all, Method::Head, &head), Ok(Transport::LongPoll));
    }
}
