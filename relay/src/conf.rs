//! The rules of a location: directive values as nginx's slot handlers store
//! them (with nginx's "unset" sentinels, so `ngx_conf_set_*_slot` can write
//! straight into these fields), their merge down the configuration levels,
//! and the plain rules the relay reads back.

use crate::transport::{Transport, Transports};

/// `NGX_CONF_UNSET` for flags and numbers.
pub const UNSET: isize = -1;
/// `NGX_CONF_UNSET_MSEC` / `NGX_CONF_UNSET_SIZE` / `NGX_CONF_UNSET_UINT`.
pub const UNSET_UINT: usize = usize::MAX;
/// `NGX_CONF_UNSET` for `time_t` values (`ngx_conf_set_sec_slot`).
pub const UNSET_TIME: i64 = -1;

/// nginx's own minimum for a slab zone: eight 4 KiB pages.
pub const MIN_BUFFER_SIZE: usize = 32 * 1024;
pub const DEFAULT_BUFFER_SIZE: usize = 3 * 1024 * 1024;

/// What several listeners held on one channel do (PROTOCOL.md, Concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Last,
    First,
    Broadcast,
}

/// What a location is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    None,
    Sender,
    Listener,
}

/// Which generation of directive names made the location a listener: the
/// default concurrency follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// `push_listener` (2009).
    Seed,
    /// `push_subscriber` (0.6x/0.7x).
    Legacy,
}

/// One word of an enum directive and the value it stands for, in the manner
/// of nginx's `ngx_conf_enum_t` tables.
pub struct Choice<T> {
    pub name: &'static str,
    pub value: T,
}

pub const CONCURRENCY: &[Choice<Concurrency>] = &[
    Choice {
        name: "last",
        value: Concurrency::Last,
    },
    Choice {
        name: "first",
        value: Concurrency::First,
    },
    Choice {
        name: "broadcast",
        value: Concurrency::Broadcast,
    },
];

/// The value `word` names in `table`, compared exactly (as nginx does).
pub fn pick<T: Copy>(table: &[Choice<T>], word: &[u8]) -> Option<T> {
    table
        .iter()
        .find(|c| c.name.as_bytes() == word)
        .map(|c| c.value)
}

/// `must be "a", "b" or "c"`: the end of an `nginx -t` refusal that lists
/// a directive's choices.
pub fn must_be<T>(table: &[Choice<T>]) -> String {
    let mut s = String::from("must be ");
    for (i, c) in table.iter().enumerate() {
        if i > 0 {
            s.push_str(if i + 1 == table.len() { " or " } else { ", " });
        }
        s.push('"');
        s.push_str(c.name);
        s.push('"');
    }
    s
}

/// A location's settings as parsed; `UNSET` where the directive is absent.
/// `#[repr(C)]`: nginx's slot handlers write the numeric fields by offset.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LocSettings {
    pub role: Role,
    pub names: Names,
    /// Empty: not given (a listener is long-poll).
    pub transports: Transports,
    pub concurrency: Option<Concurrency>,
    pub queue: isize,
    pub message_timeout: i64,
    pub buffer_length: isize,
    pub listener_timeout: usize,
    pub authorized_only: isize,
    pub max_id_length: isize,
    pub max_subscribers: isize,
    pub channel_timeout: i64,
    /// `push_listener_ping`, msec.
    pub ping: usize,
    /// `push_listener_max_pending`, bytes.
    pub max_pending: usize,
}

/// `push_listener_max_pending`'s default.
pub const DEFAULT_MAX_PENDING: usize = 1024 * 1024;

impl Default for LocSettings {
    fn default() -> Self {
        LocSettings {
            role: Role::None,
            names: Names::Seed,
            transports: Transports::EMPTY,
            concurrency: None,
            queue: UNSET,
            message_timeout: UNSET_TIME,
            buffer_length: UNSET,
            listener_timeout: UNSET_UINT,
            authorized_only: UNSET,
            max_id_length: UNSET,
            max_subscribers: UNSET,
            channel_timeout: UNSET_TIME,
            ping: UNSET_UINT,
            max_pending: UNSET_UINT,
        }
    }
}

fn inherit<T: Copy + PartialEq>(v: &mut T, unset: T, parent: T, default: T) {
    if *v == unset {
        *v = if parent == unset { default } else { parent };
    }
}

impl LocSettings {
    /// Take from `parent` what this level leaves unset, then the defaults
    /// (nginx's `ngx_conf_merge_*_value`). The role and transports belong
    /// to the location itself and are not inherited.
    pub fn merge(&mut self, parent: &LocSettings) {
        if self.concurrency.is_none() {
            self.concurrency = parent.concurrency;
        }
        inherit(&mut self.queue, UNSET, parent.queue, 1);
        inherit(
            &mut self.message_timeout,
            UNSET_TIME,
            parent.message_timeout,
            3600,
        );
        inherit(&mut self.buffer_length, UNSET, parent.buffer_length, 10);
        inherit(
            &mut self.listener_timeout,
            UNSET_UINT,
            parent.listener_timeout,
            0,
        );
        inherit(&mut self.authorized_only, UNSET, parent.authorized_only, 0);
        inherit(&mut self.max_id_length, UNSET, parent.max_id_length, 512);
        inherit(&mut self.max_subscribers, UNSET, parent.max_subscribers, 0);
        inherit(
            &mut self.channel_timeout,
            UNSET_TIME,
            parent.channel_timeout,
            3600,
        );
        inherit(&mut self.ping, UNSET_UINT, parent.ping, 0);
        inherit(
            &mut self.max_pending,
            UNSET_UINT,
            parent.max_pending,
            DEFAULT_MAX_PENDING,
        );
    }

    /// The transports a listener location offers (long-poll when not given).
    pub fn transports(&self) -> Transports {
        if self.transports.is_empty() {
            Transports::only(Transport::LongPoll)
        } else {
            self.transports
        }
    }

    /// The concurrency rule: the configured one; else `broadcast` where the
    /// location offers a stream (two browser tabs would otherwise end each
    /// other's stream on every reconnect) or was made a listener with the
    /// 0.7x name `push_subscriber` (that module's default), else `last`
    /// (the 2009 module's, for `push_listener`).
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
            .unwrap_or(if self.transports.has_stream() || self.names == Names::Legacy {
                Concurrency::Broadcast
            } else {
                Concurrency::Last
            })
    }

    /// Rules of a merged listener location.
    pub fn listener(&self) -> ListenerRules {
        ListenerRules {
            transports: self.transports(),
            concurrency: self.concurrency(),
            timeout_ms: self.listener_timeout as u64,
            authorized_only: self.authorized_only == 1,
            max_subscribers: self.max_subscribers.clamp(0, u32::MAX as isize) as u32,
            ping_ms: self.ping as u64,
            max_pending: self.max_pending,
        }
    }

    /// Rules of a merged sender location.
    pub fn sender(&self) -> SenderRules {
        SenderRules {
            queue: self.queue == 1,
            message_timeout: self.message_timeout.max(0) as u64,
            buffer_length: self.buffer_length.max(0) as usize,
            channel_timeout: self.channel_timeout.max(0) as u64,
        }
    }

    /// `push_max_channel_id_length` of a merged location.
    pub fn max_id_length(&self) -> usize {
        self.max_id_length.max(0) as usize
    }
}

/// What a listener location allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerRules {
    pub transports: Transports,
    pub concurrency: Concurrency,
    /// `push_listener_timeout`; 0 = none.
    pub timeout_ms: u64,
    pub authorized_only: bool,
    /// 0 = no limit.
    pub max_subscribers: u32,
    /// `push_listener_ping`; 0 = none.
    pub ping_ms: u64,
    /// `push_listener_max_pending`: what one stream may have queued.
    pub max_pending: usize,
}

/// How a sender location stores what it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderRules {
    pub queue: bool,
    /// Seconds; 0 = never expires.
    pub message_timeout: u64,
    pub buffer_length: usize,
    /// Seconds a sender-created, empty channel is kept.
    pub channel_timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_takes_parent_then_default() {
        let parent = LocSettings {
            buffer_length: 3,
            concurrency: Some(Concurrency::First),
            ..LocSettings::default()
        };
        let mut child = LocSettings {
            queue: 0,
            ..LocSettings::default()
        };
        child.merge(&parent);
        assert_eq!(child.buffer_length, 3);
        assert_eq!(child.queue, 0);
        assert_eq!(child.message_timeout, 3600);
        assert_eq!(child.max_id_length, 512);
        assert_eq!(child.concurrency(), Concurrency::First);
        let s = child.sender();
        assert!(!s.queue);
        assert_eq!((s.buffer_length, s.message_timeout), (3, 3600));
    }

    #[test]
    fn defaults_when_nothing_is_set_anywhere() {
        let mut c = LocSettings::default();
        c.merge(&LocSettings::default());
        assert_eq!(c.concurrency(), Concurrency::Last);
        let l = c.listener();
        assert_eq!(l.transports, Transports::only(Transport::LongPoll));
        assert_eq!((l.timeout_ms, l.max_subscribers), (0, 0));
        assert!(!l.authorized_only);
        assert_eq!(c.max_id_length(), 512);
        let s = c.sender();
        assert!(s.queue);
        assert_eq!(
            (s.buffer_length, s.message_timeout, s.channel_timeout),
            (10, 3600, 3600)
        );
    }

    #[test]
    fn streams_default_to_broadcast_unless_configured() {
        let streams = Transports::parse([&b"long-poll"[..], b"eventsource"]).unwrap();
        let mut c = LocSettings {
            transports: streams,
            ..LocSettings::default()
        };
        c.merge(&LocSettings::default());
        assert_eq!(c.concurrency(), Concurrency::Broadcast);
        let mut explicit = LocSettings {
            transports: streams,
            ..LocSettings::default()
        };
        explicit.merge(&LocSettings {
            concurrency: Some(Concurrency::Last),
            ..LocSettings::default()
        });
        assert_eq!(
            explicit.concurrency(),
            Concurrency::Last,
            "an explicit rule wins"
        );
        let l = c.listener();
        assert_eq!((l.ping_ms, l.max_pending), (0, DEFAULT_MAX_PENDING));
    }

    #[test]
    fn the_default_follows_the_names_a_location_uses() {
        let mut seed = LocSettings {
            role: Role::Listener,
            names: Names::Seed,
            ..LocSettings::default()
        };
        seed.merge(&LocSettings::default());
        assert_eq!(seed.concurrency(), Concurrency::Last);
        let mut legacy = LocSettings {
            role: Role::Listener,
            names: Names::Legacy,
            ..LocSettings::default()
        };
        legacy.merge(&LocSettings::default());
        assert_eq!(legacy.concurrency(), Concurrency::Broadcast);
        let mut told = LocSettings {
            names: Names::Legacy,
            ..LocSettings::default()
        };
        told.merge(&LocSettings {
            concurrency: Some(Concurrency::Last),
            ..LocSettings::default()
        });
        assert_eq!(told.concurrency(), Concurrency::Last, "explicit wins");
    }

    #[test]
    fn a_child_value_wins_and_zero_is_a_value() {
        let parent = LocSettings {
            listener_timeout: 5000,
            message_timeout: 60,
            ..LocSettings::default()
        };
        let mut child = LocSettings {
            listener_timeout: 0,
            message_timeout: 0,
            ..LocSettings::default()
        };
        child.merge(&parent);
        assert_eq!(child.listener().timeout_ms, 0);
        assert_eq!(child.sender().message_timeout, 0);
    }

    #[test]
    fn enum_table_picks_exact_words_and_lists_its_choices() {
        assert_eq!(pick(CONCURRENCY, b"first"), Some(Concurrency::First));
        assert_eq!(pick(CONCURRENCY, b"First"), None);
        assert_eq!(pick(CONCURRENCY, b"1"), None);
        assert_eq!(
            must_be(CONCURRENCY),
            "must be \"last\", \"first\" or \"broadcast\""
        );
    }
}
