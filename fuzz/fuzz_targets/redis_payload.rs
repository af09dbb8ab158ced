//! Pub/sub announcements and stored message records read from Redis.
//! Input: a flags byte (bit 0: structured mode), then the payload bytes, or
//! in structured mode an announcement to encode.
//!
//! Checked: whatever decodes, encodes to bytes that decode to the same
//! value; whatever is encoded decodes back to itself.
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use push_relay::proto::cursor::MsgId;
use push_relay::redis::payload::{Announce, Record};

fn record<'a>(u: &mut Unstructured<'a>) -> arbitrary::Result<Record<'a>> {
    Ok(Record {
        id: MsgId {
            time: u.arbitrary()?,
            tag: u.arbitrary()?,
        },
        content_type: u.arbitrary()?,
        event: u.arbitrary()?,
        body: u.arbitrary()?,
    })
}

fn announce<'a>(u: &mut Unstructured<'a>) -> arbitrary::Result<Announce<'a>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Announce::Message {
            upto: u.arbitrary()?,
            msg: record(u)?,
        },
        1 => Announce::Reference {
            upto: u.arbitrary()?,
            id: MsgId {
                time: u.arbitrary()?,
                tag: u.arbitrary()?,
            },
        },
        2 => Announce::Conflict {
            before: u.arbitrary()?,
        },
        _ => Announce::Deleted,
    })
}

use libfuzzer_sys::arbitrary;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    if flags & 1 == 1 {
        let mut u = Unstructured::new(data);
        if let Ok(a) = announce(&mut u) {
            let mut out = Vec::new();
            a.encode(&mut out);
            assert_eq!(Announce::decode(&out), Some(a));
        }
        let mut u = Unstructured::new(data);
        if let Ok(r) = record(&mut u) {
            let mut out = Vec::new();
            r.encode(&mut out);
            assert_eq!(Record::decode(&out), Some(r));
        }
        return;
    }
    if let Some(a) = Announce::decode(data) {
        let mut out = Vec::new();
        a.encode(&mut out);
        assert_eq!(Announce::decode(&out), Some(a));
        if let Announce::Message { msg, .. } = a {
            assert!(data.ends_with(msg.body));
        }
    }
    if let Some(r) = Record::decode(data) {
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(Record::decode(&out), Some(r));
        assert!(data.ends_with(r.body));
        assert!(out.len() <= data.len(), "the canonical form is no longer");
    }
});
