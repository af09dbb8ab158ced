//! Where a stream starts: `Last-Event-ID`, the `last_event_id` query
//! argument (percent-encoded as it came), then the poll headers. Input:
//! `<Last-Event-ID>\n<last_event_id>\n<If-Modified-Since>\n<If-None-Match>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_relay::proto::cursor::{Cursor, MsgId};
use push_relay_fuzz::percent_decode_ref;

fuzz_target!(|data: &[u8]| {
    let p = push_relay_fuzz::parts(data, b'\n', 4);
    let (lei, arg, ims, inm) = (p[0], p[1], p[2], p[3]);

    for s in [lei, arg].into_iter().flatten() {
        if let Some(id) = MsgId::parse(s) {
            // `time:tag` round trip through its Display form.
            assert_eq!(MsgId::parse(id.to_string().as_bytes()), Some(id));
        }
    }

    // The same choice, made with a reference percent-decoder (the real one
    // refuses values over 48 bytes, decoded).
    let from_arg = arg
        .and_then(percent_decode_ref)
        .filter(|d| d.len() <= 48)
        .and_then(|d| MsgId::parse(&d));
    let want = lei
        .and_then(MsgId::parse)
        .or(from_arg)
        .map(Cursor::after)
        .unwrap_or_else(|| Cursor::from_headers(ims, inm));
    assert_eq!(Cursor::for_stream(lei, arg, ims, inm), want);
});
