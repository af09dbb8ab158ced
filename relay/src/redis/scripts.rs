//! The Lua scripts (in `lua/`), their arguments and their replies as Rust
//! types. Each is loaded once per connection (`SCRIPT LOAD`) and called
//! with `EVALSHA`; each touches the keys of one channel only (one hash
//! slot), given as `KEYS` = `{T}:c`, `{T}:m`, `{T}:l` (the marker script:
//! the namespace's marker key). Every script reads Redis's clock (`TIME`):
//! ids, expiries and heartbeats never depend on a server's clock.
//!
//! | script | ARGV | reply |
//! |---|---|---|
//! | publish | content_type body marker buffer_length message_timeout queue channel_timeout inline_max ref_ttl pubsub | `{time, tag, held, messages, requested}` |
//! | listen | worker since tag hold rule authorized_only max_subscribers heartbeat_ms pubsub all | `{0}` 304 · `{1, record}` · `{2}` 403 · `{3}` 409 · `{4, seq, inc, record…}` held |
//! | register | worker mode(`a`/`s`) n min_seq heartbeat_ms | `{1, inc}` · `{0, ''}` gone |
//! | resync | worker n min_seq heartbeat_ms since tag inc | `{2}` deleted · `{0}` none · `{1, inc, sender, newest, record…}` |
//! | delete | pubsub inline_max ref_ttl tombstone_ttl | `{0}` 404 · `{1, info…}` as it was |
//! | info | – | `{0}` 404 · `{1, info…}` |
//! | create | channel_timeout | `{1, info…}` |
//! | marker | floor | the marker second |
//!
//! `info…` is `messages, requested, subscribers, time, tag` (time and tag
//! `-1` before any message); `record` is a stored message (`payload`).

use crate::proto::cursor::MsgId;
use crate::proto::info::ChannelInfo;
use crate::zone::Seq;

use super::resp::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    Publish,
    Listen,
    Register,
    Resync,
    Delete,
    Info,
    Create,
    Marker,
}

macro_rules! with_prelude {
    ($file:literal) => {
        concat!(include_str!("lua/prelude.lua"), include_str!($file))
    };
}

impl Script {
    pub const ALL: [Script; 8] = [
        Script::Publish,
        Script::Listen,
        Script::Register,
        Script::Resync,
        Script::Delete,
        Script::Info,
        Script::Create,
        Script::Marker,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn source(self) -> &'static str {
        match self {
            Script::Publish => with_prelude!("lua/publish.lua"),
            Script::Listen => with_prelude!("lua/listen.lua"),
            Script::Register => with_prelude!("lua/register.lua"),
            Script::Resync => with_prelude!("lua/resync.lua"),
            Script::Delete => with_prelude!("lua/delete.lua"),
            Script::Info => with_prelude!("lua/info.lua"),
            Script::Create => with_prelude!("lua/create.lua"),
            Script::Marker => include_str!("lua/marker.lua"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Script::Publish => "publish",
            Script::Listen => "listen",
            Script::Register => "register",
            Script::Resync => "resync",
            Script::Delete => "delete",
            Script::Info => "info",
            Script::Create => "create",
            Script::Marker => "marker",
        }
    }
}

/// A script's reply did not have the shape its contract says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadReply;

fn items<'f, 'a>(f: &'f Frame<'a>) -> Result<&'f [Frame<'a>], BadReply> {
    f.items().ok_or(BadReply)
}

fn int(f: Option<&Frame<'_>>) -> Result<i64, BadReply> {
    f.and_then(Frame::int).ok_or(BadReply)
}

fn uint(f: Option<&Frame<'_>>) -> Result<u64, BadReply> {
    u64::try_from(int(f)?).map_err(|_| BadReply)
}

/// A message id sent as two integers, `-1 -1` for none.
fn last_id(t: Option<&Frame<'_>>, g: Option<&Frame<'_>>) -> Result<Option<MsgId>, BadReply> {
    msg_id(int(t)?, int(g)?)
}

fn bytes<'a>(f: Option<&Frame<'a>>) -> Result<&'a [u8], BadReply> {
    match f {
        Some(Frame::Null) => Ok(b""),
        Some(f) => f.bytes().ok_or(BadReply),
        None => Err(BadReply),
    }
}

fn msg_id(time: i64, tag: i64) -> Result<Option<MsgId>, BadReply> {
    if time < 0 {
        return Ok(None);
    }
    Ok(Some(MsgId {
        time: time as u64,
        tag: u32::try_from(tag).map_err(|_| BadReply)?,
    }))
}

/// `messages, requested, subscribers, time, tag` from `v[at..]`.
fn info_at(v: &[Frame<'_>], at: usize) -> Result<ChannelInfo, BadReply> {
    Ok(ChannelInfo {
        messages: u32::try_from(uint(v.get(at))?).unwrap_or(u32::MAX),
        requested: int(v.get(at + 1))?,
        subscribers: u32::try_from(uint(v.get(at + 2))?).unwrap_or(u32::MAX),
        last_message_id: msg_id(int(v.get(at + 3))?, int(v.get(at + 4))?)?,
    })
}

/// `{0}` (none) or `{1, info…}`.
pub fn info_reply(f: &Frame<'_>) -> Result<Option<ChannelInfo>, BadReply> {
    let v = items(f)?;
    match int(v.first())? {
        0 => Ok(None),
        1 => Ok(Some(info_at(v, 1)?)),
        _ => Err(BadReply),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReply {
    pub id: MsgId,
    pub held: u32,
    pub messages: u32,
    pub requested: i64,
}

pub fn publish_reply(f: &Frame<'_>) -> Result<PublishReply, BadReply> {
    let v = items(f)?;
    Ok(PublishReply {
        id: msg_id(int(v.first())?, int(v.get(1))?)?.ok_or(BadReply)?,
        held: u32::try_from(uint(v.get(2))?).unwrap_or(u32::MAX),
        messages: u32::try_from(uint(v.get(3))?).unwrap_or(u32::MAX),
        requested: int(v.get(4))?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenReply<'f, 'a> {
    NotModified,
    Message(&'a [u8]),
    Forbidden,
    Conflict,
    Held {
        seq: Seq,
        inc: &'a [u8],
        /// The channel's last message id when the script ran (`None`:
        /// none yet).
        newest: Option<MsgId>,
        records: &'f [Frame<'a>],
    },
}

pub fn listen_reply<'f, 'a>(f: &'f Frame<'a>) -> Result<ListenReply<'f, 'a>, BadReply> {
    let v = items(f)?;
    Ok(match int(v.first())? {
        0 => ListenReply::NotModified,
        1 => ListenReply::Message(bytes(v.get(1))?),
        2 => ListenReply::Forbidden,
        3 => ListenReply::Conflict,
        4 => ListenReply::Held {
            seq: uint(v.get(1))?,
            inc: bytes(v.get(2))?,
            newest: last_id(v.get(3), v.get(4))?,
            records: v.get(5..).unwrap_or(&[]),
        },
        _ => return Err(BadReply),
    })
}

/// `{1, inc}` or `{0, ''}`: the incarnation, when the channel is there.
pub fn register_reply<'a>(f: &Frame<'a>) -> Result<Option<&'a [u8]>, BadReply> {
    let v = items(f)?;
    match int(v.first())? {
        0 => Ok(None),
        1 => Ok(Some(bytes(v.get(1))?)),
        _ => Err(BadReply),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResyncReply<'f, 'a> {
    Deleted,
    Missing,
    There {
        inc: &'a [u8],
        sender: bool,
        newest: Seq,
        records: &'f [Frame<'a>],
    },
}

pub fn resync_reply<'f, 'a>(f: &'f Frame<'a>) -> Result<ResyncReply<'f, 'a>, BadReply> {
    let v = items(f)?;
    Ok(match int(v.first())? {
        2 => ResyncReply::Deleted,
        0 => ResyncReply::Missing,
        1 => ResyncReply::There {
            inc: bytes(v.get(1))?,
            sender: int(v.get(2))? == 1,
            newest: uint(v.get(3))?,
            records: v.get(4..).unwrap_or(&[]),
        },
        _ => return Err(BadReply),
    })
}

/// The marker second.
pub fn marker_reply(f: &Frame<'_>) -> Result<u64, BadReply> {
    uint(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_has_its_source_and_the_prelude() {
        for s in Script::ALL {
            assert_eq!(Script::ALL[s.index()], s);
            let src = s.source();
            assert!(src.contains("redis.call"), "{}", s.name());
            if s != Script::Marker {
                assert!(src.starts_with("-- push_relay"), "{}", s.name());
            }
        }
    }

    #[test]
    fn replies_decode_or_are_refused() {
        let f = Frame::Array(vec![
            Frame::Int(1),
            Frame::Int(2),
            Frame::Int(5),
            Frame::Int(3),
            Frame::Int(-1),
            Frame::Int(-1),
        ]);
        assert_eq!(
            info_reply(&f),
            Ok(Some(ChannelInfo {
                messages: 2,
                requested: 5,
                subscribers: 3,
                last_message_id: None
            }))
        );
        assert_eq!(info_reply(&Frame::Array(vec![Frame::Int(0)])), Ok(None));
        assert_eq!(info_reply(&Frame::Int(1)), Err(BadReply));
        assert_eq!(
            info_reply(&Frame::Array(vec![Frame::Int(1)])),
            Err(BadReply)
        );
        let held = Frame::Array(vec![
            Frame::Int(4),
            Frame::Int(9),
            Frame::Bulk(b"1.2"),
            Frame::Int(-1),
            Frame::Int(-1),
        ]);
        assert_eq!(
            listen_reply(&held),
            Ok(ListenReply::Held {
                seq: 9,
                inc: b"1.2",
                newest: None,
                records: &[]
            })
        );
        let after = Frame::Array(vec![
            Frame::Int(4),
            Frame::Int(9),
            Frame::Bulk(b"1.2"),
            Frame::Int(1700000000),
            Frame::Int(3),
        ]);
        assert!(matches!(
            listen_reply(&after),
            Ok(ListenReply::Held {
                newest: Some(MsgId {
                    time: 1700000000,
                    tag: 3
                }),
                ..
            })
        ));
        let bad = Frame::Array(vec![Frame::Int(4), Frame::Int(-9), Frame::Bulk(b"")]);
        assert_eq!(listen_reply(&bad), Err(BadReply));
        let p = Frame::Array(vec![
            Frame::Int(100),
            Frame::Int(4294967296),
            Frame::Int(0),
            Frame::Int(0),
            Frame::Int(0),
        ]);
        assert_eq!(publish_reply(&p), Err(BadReply));
        assert_eq!(marker_reply(&Frame::Bulk(b"1764170000")), Ok(1_764_170_000));
    }
}
