//! If-Modified-Since and If-None-Match: the poll cursor of every listener
//! request. Input: `<If-Modified-Since>\n<If-None-Match>` (a header value
//! never holds LF).
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_relay::proto::cursor::{
    etag, http_date, parse_etag, parse_http_date, Cursor, MsgId, MAX_HTTP_TIME,
};

fuzz_target!(|data: &[u8]| {
    let p = push_relay_fuzz::parts(data, b'\n', 2);
    let (ims, inm) = (p[0], p[1]);

    let since = ims.and_then(parse_http_date);
    if let Some(t) = since {
        assert!(t <= MAX_HTTP_TIME, "{t}");
        // What we parse, we format back to a date that parses the same.
        assert_eq!(parse_http_date(&http_date(t)), Some(t));
    }
    let tag = inm.and_then(parse_etag);
    if let Some(v) = tag {
        assert_eq!(parse_etag(etag(v).as_bytes()), Some(v));
    }
    let c = Cursor::from_headers(ims, inm);
    assert_eq!(c, Cursor { since, tag });

    // Any time formats as a 29-byte IMF-fixdate that parses back (clamped).
    let mut eight = [0u8; 8];
    let n = data.len().min(8);
    eight[..n].copy_from_slice(&data[..n]);
    let t = u64::from_le_bytes(eight);
    let d = http_date(t);
    assert!(d.is_ascii());
    assert_eq!(parse_http_date(&d), Some(t.min(MAX_HTTP_TIME)));
    let v = t as u32;
    assert_eq!(parse_etag(etag(v).as_bytes()), Some(v));

    // The cursor admits exactly the ids after it.
    let id = MsgId {
        time: t >> 1,
        tag: v,
    };
    let want = match c.since {
        None => true,
        Some(s) => id.time > s || (id.time == s && c.tag.is_none_or(|g| id.tag > g)),
    };
    assert_eq!(c.admits(id), want);
    assert!(!Cursor::after(id).admits(id));
    let next = MsgId::next_after(Some(id), t);
    assert!(next > id);
    assert!(Cursor::after(id).admits(next));
});
