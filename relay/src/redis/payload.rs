//! Payloads: a stored message as the value of its key, and the pub/sub
//! announcements of a channel. The Lua scripts write them with string
//! concatenation; Rust reads them here.
//!
//! The encoding is a short ASCII header of decimal numbers ended by `:`,
//! then raw bytes whose length the header gives (or which run to the end):
//! binary-safe, cheap to build in Lua, a few dozen bytes of overhead.
//!
//! - stored message (`{T}:k:<time>:<tag>`):
//!   `<time>:<tag>:<ctlen>:<evlen>:<content-type><event name><body>`
//! - message, inline: `M<upto>:` + the stored form
//! - message, by reference (the body is in its key): `R<upto>:<time>:<tag>`
//! - conflict (`last` rule): `C<before>`: listeners held before order
//!   number `before` answer 409
//! - deleted: `D`
//!
//! `upto` is the channel's next listener order number when the message was
//! published: listeners held from it on do not get the message.

use crate::proto::cursor::MsgId;
use crate::proto::text::{parse_u64, push_u64};
use crate::zone::Seq;

/// A stored message, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub id: MsgId,
    pub content_type: &'a [u8],
    /// `X-EventSource-Event`; empty = none.
    pub event: &'a [u8],
    pub body: &'a [u8],
}

/// A pub/sub announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce<'a> {
    Message { upto: Seq, msg: Record<'a> },
    Reference { upto: Seq, id: MsgId },
    Conflict { before: Seq },
    Deleted,
}

/// The decimal number before the next `:`, and what follows.
fn field(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s.iter().position(|&b| b == b':')?;
    // 20 digits at most: parse_u64 refuses overflow anyway.
    Some((parse_u64(s.get(..end)?)?, s.get(end + 1..)?))
}

fn id_of(time: u64, tag: u64) -> Option<MsgId> {
    Some(MsgId {
        time,
        tag: u32::try_from(tag).ok()?,
    })
}

impl<'a> Record<'a> {
    pub fn decode(s: &'a [u8]) -> Option<Record<'a>> {
        let (time, s) = field(s)?;
        let (tag, s) = field(s)?;
        let (ctlen, s) = field(s)?;
        let (evlen, s) = field(s)?;
        let ctlen = usize::try_from(ctlen).ok()?;
        let evend = ctlen.checked_add(usize::try_from(evlen).ok()?)?;
        Some(Record {
            id: id_of(time, tag)?,
            content_type: s.get(..ctlen)?,
            event: s.get(ctlen..evend)?,
            body: s.get(evend..)?,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        push_u64(out, self.id.time);
        out.push(b':');
        push_u64(out, u64::from(self.id.tag));
        out.push(b':');
        push_u64(out, self.content_type.len() as u64);
        out.push(b':');
        push_u64(out, self.event.len() as u64);
        out.push(b':');
        out.extend_from_slice(self.content_type);
        out.extend_from_slice(self.event);
        out.extend_from_slice(self.body);
    }
}

impl<'a> Announce<'a> {
    pub fn decode(s: &'a [u8]) -> Option<Announce<'a>> {
        let (&kind, rest) = s.split_first()?;
        match kind {
            b'M' => {
                let (upto, rest) = field(rest)?;
                Some(Announce::Message {
                    upto,
                    msg: Record::decode(rest)?,
                })
            }
            b'R' => {
                let (upto, rest) = field(rest)?;
                let (time, rest) = field(rest)?;
                let tag = parse_u64(rest)?;
                Some(Announce::Reference {
                    upto,
                    id: id_of(time, tag)?,
                })
            }
            b'C' => Some(Announce::Conflict {
                before: parse_u64(rest)?,
            }),
            b'D' if rest.is_empty() => Some(Announce::Deleted),
            _ => None,
        }
    }

    /// As the scripts write it (used by the tests and fuzzing).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Announce::Message { upto, msg } => {
                out.push(b'M');
                push_u64(out, *upto);
                out.push(b':');
                msg.encode(out);
            }
            Announce::Reference { upto, id } => {
                out.push(b'R');
                push_u64(out, *upto);
                out.push(b':');
                push_u64(out, id.time);
                out.push(b':');
                push_u64(out, u64::from(id.tag));
            }
            Announce::Conflict { before } => {
                out.push(b'C');
                push_u64(out, *before);
            }
            Announce::Deleted => out.push(b'D'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let msg = Record {
            id: MsgId {
                time: 1_764_170_000,
                tag: u32::MAX,
            },
            content_type: b"text/plain:x",
            event: b"tick:x",
            body: b"a:b\0\r\n:",
        };
        for a in [
            Announce::Message { upto: 7, msg },
            Announce::Message {
                upto: 0,
                msg: Record {
                    content_type: b"",
                    event: b"",
                    body: b"",
                    ..msg
                },
            },
            Announce::Reference {
                upto: u64::MAX,
                id: msg.id,
            },
            Announce::Conflict { before: 12 },
            Announce::Deleted,
        ] {
            let mut out = Vec::new();
            a.encode(&mut out);
            assert_eq!(
                Announce::decode(&out),
                Some(a),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
        }
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(
            out,
            b"1764170000:4294967295:12:6:text/plain:xtick:xa:b\0\r\n:"
        );
        assert_eq!(Record::decode(&out), Some(msg));
    }

    #[test]
    fn refusals() {
        for bad in [
            &b""[..],
            b"X",
            b"D1",
            b"C",
            b"C-1",
            b"M1:",
            b"M1:2:3:",
            b"M1:2:3:9:ab",
            b"M:1:2:0:",
            b"R1:2:4294967296",
            b"R1:2",
            b"M99999999999999999999:1:0:0:",
            b"M1:1:4294967296:0:",
        ] {
            assert_eq!(
                Announce::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 88172645463325252;
        let alphabet = b"MRCD:0123456789x";
        for _ in 0..50_000 {
            let len = (x % 24) as usize;
            let mut buf = Vec::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = Announce::decode(&buf);
            let _ = Record::decode(&buf);
        }
    }
}
