//! `Accept` on a sender location: which format the channel info takes.
//! Input: the header value, then (after the first LF, if any) bytes that
//! make up the channel info to render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_relay::proto::cursor::MsgId;
use push_relay::proto::info::{render, ChannelInfo, InfoFormat};

/// A simple reference for the documented rule: the first media range,
/// without q=0, whose subtype names json, xml or yaml (any case) decides.
fn reference(accept: &[u8]) -> InfoFormat {
    let lower = accept.to_ascii_lowercase();
    for range in lower.split(|&c| c == b',') {
        let mut parts = range.split(|&c| c == b';');
        let media = parts.next().unwrap_or(&[]);
        let q0 = parts.any(|p| {
            let Some(eq) = p.iter().position(|&c| c == b'=') else {
                return false;
            };
            let ws = |c: &u8| *c == b' ' || *c == b'\t';
            let trim = |s: &[u8]| -> Vec<u8> {
                let a = s.iter().position(|c| !ws(c)).unwrap_or(s.len());
                let b = s.iter().rposition(|c| !ws(c)).map_or(a, |i| i + 1);
                s[a..b.max(a)].to_vec()
            };
            if trim(&p[..eq]) != b"q" {
                return false;
            }
            let v = trim(&p[eq + 1..]);
            v == b"0" || (v.starts_with(b"0.") && v[2..].iter().all(|&c| c == b'0'))
        });
        if q0 {
            continue;
        }
        let sub = match media.iter().position(|&c| c == b'/') {
            Some(i) => &media[i + 1..],
            None => media,
        };
        let has = |n: &[u8]| sub.windows(n.len()).any(|w| w == n);
        if has(b"json") {
            return InfoFormat::Json;
        }
        if has(b"xml") {
            return InfoFormat::Xml;
        }
        if has(b"yaml") {
            return InfoFormat::Yaml;
        }
    }
    InfoFormat::Text
}

fuzz_target!(|data: &[u8]| {
    let p = push_relay_fuzz::parts(data, b'\n', 2);
    let accept = p[0].unwrap_or(&[]);
    let fmt = InfoFormat::from_accept(Some(accept));
    assert_eq!(
        fmt,
        reference(accept),
        "{:?}",
        String::from_utf8_lossy(accept)
    );
    assert_eq!(InfoFormat::from_accept(None), InfoFormat::Text);
    assert!(!fmt.content_type().is_empty());

    let mut n = [0u8; 24];
    let tail = p[1].unwrap_or(&[]);
    let k = tail.len().min(24);
    n[..k].copy_from_slice(&tail[..k]);
    let info = ChannelInfo {
        messages: u32::from_le_bytes(n[0..4].try_into().unwrap()),
        requested: i64::from_le_bytes(n[4..12].try_into().unwrap()),
        subscribers: u32::from_le_bytes(n[12..16].try_into().unwrap()),
        last_message_id: (n[16] & 1 == 1).then(|| MsgId {
            time: u64::from(u32::from_le_bytes(n[17..21].try_into().unwrap())),
            tag: u32::from(n[21]),
        }),
    };
    let body = render(&info, fmt);
    assert!(body.ends_with(b"\n"));
    assert!(body.is_ascii());
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(&info.messages.to_string()));
    assert!(text.contains(&info.requested.to_string()));
    if let Some(id) = info.last_message_id {
        assert!(text.contains(&id.to_string()));
    }
});
