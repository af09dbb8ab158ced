//! Key names: everything the module writes to Redis.
//!
//! Every channel key starts with the channel's hash tag `{<namespace><id>}`
//! (the id already carries `push_channel_group` as `group/id`), so all keys
//! of one channel are in one hash slot and a Redis Cluster can hold them;
//! each script touches the keys of one channel only. After the tag comes a
//! suffix:
//!
//! | key | type | what |
//! |---|---|---|
//! | `{T}:c` | hash | the channel: `created`, `inc` (incarnation), `sender`, `req` (last listener request), `seq` (listener order), `newest` (newest `last` listener), `t`/`g` (newest message id); after a DELETE only `dead`, `t`, `g` (a tombstone) |
//! | `{T}:m` | list | stored message ids, oldest first, as `time:tag:expires` |
//! | `{T}:k:<time>:<tag>` | string | one message (see `payload`), expiring by itself |
//! | `{T}:l` | hash | held listeners: worker → `count:deadline_ms` |
//! | `{T}:p` | pub/sub channel (not a key) | announcements |
//! | `<namespace>epoch` | string | the Redis second this namespace's data began (the data-loss marker) |
//!
//! Ids are arbitrary bytes and are not escaped. A `}` in an id ends the
//! hash tag early (Redis hashes up to the first `}`), but every key of that
//! channel still begins with the same bytes up to that `}`, so they still
//! share one slot; only the spread over slots is coarser. Names stay
//! unambiguous: no suffix contains `}`, so the last `}` of a channel key
//! ends the id. Namespaces are plain prefixes: two namespaces one of which
//! is a prefix of the other (`push:` and `push:a`) can name the same key,
//! so choose namespaces that are not (README).

/// What a channel key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Channel,
    Messages,
    Listeners,
    PubSub,
}

impl Part {
    fn suffix(self) -> &'static [u8] {
        match self {
            Part::Channel => b":c",
            Part::Messages => b":m",
            Part::Listeners => b":l",
            Part::PubSub => b":p",
        }
    }
}

/// The keys of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// `{<namespace><id>}`
    tag: Vec<u8>,
}

impl ChannelKeys {
    pub fn new(namespace: &[u8], id: &[u8]) -> ChannelKeys {
        let mut tag = Vec::with_capacity(namespace.len() + id.len() + 2);
        tag.push(b'{');
        tag.extend_from_slice(namespace);
        tag.extend_from_slice(id);
        tag.push(b'}');
        ChannelKeys { tag }
    }

    pub fn tag(&self) -> &[u8] {
        &self.tag
    }

    pub fn key(&self, part: Part) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.tag.len() + 2);
        k.extend_from_slice(&self.tag);
        k.extend_from_slice(part.suffix());
        k
    }

    /// The key of one stored message.
    pub fn message(&self, time: u64, tag: u32) -> Vec<u8> {
        let mut k = self.tag.clone();
        k.extend_from_slice(b":k:");
        crate::proto::text::push_u64(&mut k, time);
        k.push(b':');
        crate::proto::text::push_u64(&mut k, u64::from(tag));
        k
    }
}

/// The data-loss marker of a namespace.
pub fn marker(namespace: &[u8]) -> Vec<u8> {
    let mut k = namespace.to_vec();
    k.extend_from_slice(b"epoch");
    k
}

/// The hash slot Redis Cluster gives `key` (CRC16/XMODEM of its hash tag,
/// mod 16384), for the tests and for a later Cluster step.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 0x3fff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = ChannelKeys::new(b"push:", b"grp/room 1");
        assert_eq!(k.key(Part::Channel), b"{push:grp/room 1}:c");
        assert_eq!(k.key(Part::PubSub), b"{push:grp/room 1}:p");
        assert_eq!(
            k.message(1_764_170_000, 3),
            b"{push:grp/room 1}:k:1764170000:3"
        );
        assert_eq!(marker(b"push:"), b"push:epoch");
    }

    #[test]
    fn every_key_of_a_channel_is_in_one_slot_even_with_braces_in_the_id() {
        for id in [&b"plain"[..], b"a}b", b"}", b"{x}", b"\x00\xff", b""] {
            let k = ChannelKeys::new(b"push:", id);
            let s = slot(&k.key(Part::Channel));
            for key in [
                k.key(Part::Messages),
                k.key(Part::Listeners),
                k.message(1, 0),
                k.message(u64::MAX, u32::MAX),
            ] {
                assert_eq!(slot(&key), s, "{:?}", String::from_utf8_lossy(&key));
            }
        }
    }

    #[test]
    fn known_slots() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag: the whole key is hashed, not the later `{bar}`
        // (CRC16/XMODEM of the whole key, from Python's binascii.crc_hqx).
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"123456789"), 0x31c3 & 0x3fff);
    }
}
