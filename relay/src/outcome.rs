//! Every answer the relay refuses with: its status, its short plain-text
//! body, and the error-log line (with nginx's level for it) that goes with
//! it. Client faults log at `info`, as nginx logs them; a full zone at
//! `error`; a broken invariant at `alert`.

use crate::conf::Role;
use crate::proto::msghttp::ParseError;

/// nginx's log levels that the module writes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Alert,
    Error,
    Warn,
    Notice,
    Info,
}

/// What the zone was asked for when it ran out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Listener,
    Channel,
    Message,
}

/// Why a request is not served as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoId,
    IdTooLong,
    NotAllowed(Role),
    /// Authorized channels only, or the subscriber limit.
    Forbidden,
    /// `first` rule: another listener is held.
    Conflict,
    NotFound,
    ZoneFull(Wanted),
    /// A message larger than the whole zone: it can never be stored
    /// (507, as a full zone, but said and counted apart).
    TooLarge,
    BadMessage(ParseError),
    /// `X-EventSource-Event` is not a token.
    BadEventName,
    /// The location offers no transport the request can use (no poll).
    NotAcceptable,
    /// `Upgrade: websocket` without a key, a version, `GET`, HTTP/1.1 or
    /// `Connection: upgrade`.
    BadUpgrade,
    /// A WebSocket version other than 13.
    UpgradeVersion,
    /// A store invariant did not hold: a bug, never the client's fault.
    Internal,
    /// `push_redis`: Redis cannot be reached (or refused the command);
    /// nothing was done.
    Unavailable,
    /// `push_redis`: the connection dropped after the message was sent:
    /// it may have been stored (a sender that retries may publish twice).
    MaybeStored,
}

/// A refusal as sent: status, body, and the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: &'static str,
    /// One header that goes with it (`Allow` for 405,
    /// `Sec-WebSocket-Version` for 426).
    pub header: Option<(&'static str, &'static str)>,
    pub log: Option<(Level, &'static str)>,
}

pub const LISTENER_METHODS: &str = "GET, OPTIONS";
pub const SENDER_METHODS: &str = "GET, PUT, POST, DELETE, OPTIONS";

pub const CONFLICT_BODY: &str = "409 Conflict: another listener took this channel.\n";
pub const GONE_BODY: &str = "410 Gone: the channel was deleted.\n";
pub const UNAVAILABLE_BODY: &str =
    "503 Service Unavailable: the Redis server of push_redis cannot be reached.\n";
pub const MAYBE_STORED_BODY: &str = "503 Service Unavailable: the connection to Redis was lost after the message was sent; it may have been stored.\n";
const ZONE_FULL_BODY: &str = "507 Insufficient Storage: the push_buffer_size zone is full.\n";

impl Refusal {
    pub fn reply(self) -> Reply {
        let plain = |status, body| Reply {
            status,
            body,
            header: None,
            log: None,
        };
        match self {
            Refusal::NoId => Reply {
                log: Some((Level::Info, "no channel id ($push_id is empty)")),
                ..plain(400, "No channel id provided.\n")
            },
            Refusal::IdTooLong => Reply {
                log: Some((
                    Level::Info,
                    "channel id longer than push_max_channel_id_length",
                )),
                ..plain(400, "Channel id is too long.\n")
            },
            Refusal::NotAllowed(role) => {
                let (allow, log) = match role {
                    Role::Sender => (
                        SENDER_METHODS,
                        "method not allowed on a push_sender location",
                    ),
                    Role::Stats => ("GET, HEAD", "method not allowed on a push_stats location"),
                    _ => (
                        LISTENER_METHODS,
                        "method not allowed on a push_listener location",
                    ),
                };
                Reply {
                    header: Some(("Allow", allow)),
                    log: Some((Level::Info, log)),
                    ..plain(405, "405 Method Not Allowed\n")
                }
            }
            Refusal::Forbidden => {
                plain(403, "403 Forbidden: no listener allowed on this channel.\n")
            }
            Refusal::Conflict => ended_reply(Ending::Conflict),
            Refusal::NotFound => plain(404, "404 Not Found: no such channel.\n"),
            Refusal::ZoneFull(what) => Reply {
                log: Some((
                    Level::Error,
                    match what {
                        Wanted::Listener => "push_buffer_size zone is full, listener refused",
                        Wanted::Channel => "push_buffer_size zone is full, channel not created",
                        Wanted::Message => "push_buffer_size zone is full, message refused (507)",
                    },
                )),
                ..plain(507, ZONE_FULL_BODY)
            },
            Refusal::TooLarge => Reply {
                log: Some((
                    Level::Error,
                    "message larger than the whole push_buffer_size zone, refused (507)",
                )),
                ..plain(
                    507,
                    "507 Insufficient Storage: the message is larger than push_buffer_size.\n",
                )
            },
            Refusal::BadMessage(e) => Reply {
                log: Some((Level::Info, e.reason().trim_end())),
                ..plain(400, e.reason())
            },
            Refusal::BadEventName => Reply {
                log: Some((Level::Info, "X-EventSource-Event is not a token")),
                ..plain(400, "400 Bad Request: X-EventSource-Event must be a token.\n")
            },
            Refusal::NotAcceptable => Reply {
                log: Some((
                    Level::Info,
                    "the request asks for no transport this location offers",
                )),
                ..plain(
                    406,
                    "406 Not Acceptable: this location offers EventSource or WebSocket only.\n",
                )
            },
            Refusal::BadUpgrade => Reply {
                log: Some((Level::Info, "malformed WebSocket upgrade request")),
                ..plain(
                    400,
                    "400 Bad Request: a WebSocket upgrade needs GET over HTTP/1.1, Connection: upgrade, Sec-WebSocket-Key and Sec-WebSocket-Version.\n",
                )
            },
            Refusal::UpgradeVersion => Reply {
                header: Some(("Sec-WebSocket-Version", "13")),
                log: Some((Level::Info, "unsupported WebSocket version")),
                ..plain(426, "426 Upgrade Required: WebSocket version 13 only.\n")
            },
            Refusal::Internal => Reply {
                log: Some((
                    Level::Alert,
                    "the channel store is inconsistent (a bug): request refused",
                )),
                ..plain(
                    500,
                    "500 Internal Server Error: the channel store is inconsistent.\n",
                )
            },
            Refusal::Unavailable => Reply {
                log: Some((
                    Level::Error,
                    "push_redis: Redis is unavailable, request refused (503)",
                )),
                ..plain(503, UNAVAILABLE_BODY)
            },
            Refusal::MaybeStored => Reply {
                log: Some((
                    Level::Error,
                    "push_redis: the connection to Redis was lost after a publish was sent; it may have been stored (503)",
                )),
                ..plain(503, MAYBE_STORED_BODY)
            },
        }
    }
}

/// Why a held listener was ended other than by a message or a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A newer listener took the channel (`last`).
    Conflict,
    /// The channel was deleted.
    Gone,
}

/// The answer of a held poll that is ended: 409 or 410 (no log line: both
/// are the protocol working).
pub fn ended_reply(why: Ending) -> Reply {
    let (status, body) = match why {
        Ending::Conflict => (409, CONFLICT_BODY),
        Ending::Gone => (410, GONE_BODY),
    };
    Reply {
        status,
        body,
        header: None,
        log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_log_at_info_and_server_faults_higher() {
        for r in [
            Refusal::NoId,
            Refusal::IdTooLong,
            Refusal::NotAllowed(Role::Listener),
            Refusal::NotAllowed(Role::Sender),
            Refusal::BadMessage(ParseError::NoStatusLine),
            Refusal::BadEventName,
            Refusal::NotAcceptable,
            Refusal::BadUpgrade,
            Refusal::UpgradeVersion,
        ] {
            let reply = r.reply();
            assert!(matches!(reply.status, 400 | 405 | 406 | 426), "{r:?}");
            assert_eq!(reply.log.map(|l| l.0), Some(Level::Info), "{r:?}");
        }
        assert_eq!(
            Refusal::ZoneFull(Wanted::Message).reply().log.map(|l| l.0),
            Some(Level::Error)
        );
    }

    #[test]
    fn an_inconsistent_store_is_500_with_an_alert_not_507() {
        let r = Refusal::Internal.reply();
        assert_eq!(r.status, 500);
        assert_eq!(r.log.map(|l| l.0), Some(Level::Alert));
        assert!(!r.body.contains("full"));
    }

    #[test]
    fn ended_polls_answer_409_or_410_without_a_log_line() {
        assert_eq!(ended_reply(Ending::Conflict).status, 409);
        assert_eq!(ended_reply(Ending::Gone).status, 410);
        assert_eq!(ended_reply(Ending::Gone).body, GONE_BODY);
        assert!(ended_reply(Ending::Conflict).log.is_none());
    }

    #[test]
    fn redis_outages_are_503_with_an_error_line_and_say_whether_it_may_be_stored() {
        for r in [Refusal::Unavailable, Refusal::MaybeStored] {
            let reply = r.reply();
            assert_eq!(reply.status, 503);
            assert_eq!(reply.log.map(|l| l.0), Some(Level::Error));
            assert!(reply.body.ends_with('\n'));
        }
        assert!(Refusal::MaybeStored
            .reply()
            .body
            .contains("may have been stored"));
        assert!(!Refusal::Unavailable.reply().body.contains("stored"));
    }

    #[test]
    fn statuses_and_allow_headers() {
        assert_eq!(Refusal::Forbidden.reply().status, 403);
        assert_eq!(Refusal::Conflict.reply().body, CONFLICT_BODY);
        assert_eq!(Refusal::NotFound.reply().status, 404);
        assert_eq!(Refusal::ZoneFull(Wanted::Listener).reply().status, 507);
        assert_eq!(
            Refusal::NotAllowed(Role::Sender).reply().header,
            Some(("Allow", SENDER_METHODS))
        );
        assert_eq!(
            Refusal::NotAllowed(Role::Listener).reply().header,
            Some(("Allow", LISTENER_METHODS))
        );
        assert_eq!(Refusal::NotAcceptable.reply().status, 406);
        assert_eq!(Refusal::BadUpgrade.reply().status, 400);
        let r = Refusal::UpgradeVersion.reply();
        assert_eq!(
            (r.status, r.header),
            (426, Some(("Sec-WebSocket-Version", "13")))
        );
        for r in [Refusal::NoId, Refusal::Forbidden, Refusal::Internal] {
            assert!(r.reply().body.ends_with('\n'));
        }
    }
}
