//! Channel info bodies (answers of a sender location) and the choice of
//! their format from the request's `Accept` header.

extern crate alloc;

use super::cursor::MsgId;
use super::text::{push_i64, push_u64, trim};
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoFormat {
    Text,
    Json,
    Xml,
    Yaml,
}

impl InfoFormat {
    /// Choose from the Accept header; absent => Text.
    ///
    /// The media ranges are scanned in header order, and the first whose
    /// subtype mentions `json`, `xml` or `yaml` (case-insensitively) decides:
    /// `application/json`, `text/json`, `application/xml`, `text/xml`,
    /// `application/xhtml+xml`, `text/yaml`, `application/x-yaml`, ...
    /// q-values do not reorder the list; a range with `q=0` ("not acceptable")
    /// is skipped. A range without a `/` is taken as all subtype, so a bare
    /// `json` also picks JSON. Nothing matching => Text.
    ///
    /// So a browser (`text/html,application/xhtml+xml,...`) gets XML, and
    /// `*/*` gets plain text.
    pub fn from_accept(accept: Option<&[u8]>) -> InfoFormat {
        let Some(accept) = accept else {
            return InfoFormat::Text;
        };
        for range in accept.split(|&c| c == b',') {
            let mut parts = range.split(|&c| c == b';');
            let media = parts.next().unwrap_or(&[]);
            if parts.any(is_q_zero) {
                continue;
            }
            let subtype = match media.iter().position(|&c| c == b'/') {
                Some(slash) => media.get(slash + 1..).unwrap_or(&[]),
                None => media,
            };
            if contains_ignore_case(subtype, b"json") {
                return InfoFormat::Json;
            }
            if contains_ignore_case(subtype, b"xml") {
                return InfoFormat::Xml;
            }
            if contains_ignore_case(subtype, b"yaml") {
                return InfoFormat::Yaml;
            }
        }
        InfoFormat::Text
    }

    /// The answer's Content-Type, with no parameters.
    pub fn content_type(self) -> &'static str {
        match self {
            InfoFormat::Text => "text/plain",
            InfoFormat::Json => "application/json",
            InfoFormat::Xml => "application/xml",
            InfoFormat::Yaml => "application/yaml",
        }
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// True for a media-range parameter `q=0`, `q=0.`, `q=0.000` (any case,
/// whitespace around `=` tolerated). A malformed q-value is not a refusal.
fn is_q_zero(param: &[u8]) -> bool {
    let Some(eq) = param.iter().position(|&c| c == b'=') else {
        return false;
    };
    let (name, value) = param.split_at(eq);
    if !trim(name).eq_ignore_ascii_case(b"q") {
        return false;
    }
    let value = trim(value.get(1..).unwrap_or(&[]));
    match value {
        [b'0'] => true,
        [b'0', b'.', zeros @ ..] => zeros.iter().all(|&c| c == b'0'),
        _ => false,
    }
}

/// What a sender answer reports about a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Stored messages.
    pub messages: u32,
    /// Seconds since the last listener request (or creation); -1 = never.
    pub requested: i64,
    /// Held listeners, all workers.
    pub subscribers: u32,
    /// Newest message id; None before any message.
    pub last_message_id: Option<MsgId>,
}

fn push_id(out: &mut Vec<u8>, id: MsgId) {
    push_u64(out, id.time);
    out.push(b':');
    push_u64(out, u64::from(id.tag));
}

/// Render the channel info body in `fmt`; every format ends with a newline.
///
/// - Text: four `label: value` lines; the id is empty before any message.
/// - Json: one object, `"last_message_id"` a string or `null`.
/// - Xml: one `<channel>` element, an empty `<last_message_id></last_message_id>`
///   before any message.
/// - Yaml: `---` then `key: value` lines. The id is double-quoted: YAML 1.1
///   parsers (PyYAML, libyaml users) read a plain `1764170000:0` as a base-60
///   integer, so quoting keeps it a string in every YAML version. Before any
///   message it is `~` (null), matching JSON's `null`.
pub fn render(info: &ChannelInfo, fmt: InfoFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let m = u64::from(info.messages);
    let s = u64::from(info.subscribers);
    let r = info.requested;
    match fmt {
        InfoFormat::Text => {
            out.extend_from_slice(b"queued messages: ");
            push_u64(&mut out, m);
            out.extend_from_slice(b"\nlast requested: ");
            push_i64(&mut out, r);
            out.extend_from_slice(b" sec. ago (-1=never)\nactive subscribers: ");
            push_u64(&mut out, s);
            out.extend_from_slice(b"\nlast message id: ");
            if let Some(id) = info.last_message_id {
                push_id(&mut out, id);
            }
            out.push(b'\n');
        }
        InfoFormat::Json => {
            out.extend_from_slice(b"{\"messages\": ");
            push_u64(&mut out, m);
            out.extend_from_slice(b", \"requested\": ");
            push_i64(&mut out, r);
            out.extend_from_slice(b", \"subscribers\": ");
            push_u64(&mut out, s);
            out.extend_from_slice(b", \"last_message_id\": ");
            match info.last_message_id {
                Some(id) => {
                    out.push(b'"');
                    push_id(&mut out, id);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b"}\n");
        }
        InfoFormat::Xml => {
            out.extend_from_slice(b"<channel><messages>");
            push_u64(&mut out, m);
            out.extend_from_slice(b"</messages><requested>");
            push_i64(&mut out, r);
            out.extend_from_slice(b"</requested><subscribers>");
            push_u64(&mut out, s);
            out.extend_from_slice(b"</subscribers><last_message_id>");
            if let Some(id) = info.last_message_id {
                push_id(&mut out, id);
            }
            out.extend_from_slice(b"</last_message_id></channel>\n");
        }
        InfoFormat::Yaml => {
            out.extend_from_slice(b"---\nmessages: ");
            push_u64(&mut out, m);
            out.extend_from_slice(b"\nrequested: ");
            push_i64(&mut out, r);
            out.extend_from_slice(b"\nsubscribers: ");
            push_u64(&mut out, s);
            out.extend_from_slice(b"\nlast_message_id: ");
            match info.last_message_id {
                Some(id) => {
                    out.push(b'"');
                    push_id(&mut out, id);
                    out.push(b'"');
                }
                None => out.push(b'~'),
            }
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChannelInfo {
        ChannelInfo {
            messages: 2,
            requested: 5,
            subscribers: 3,
            last_message_id: Some(MsgId {
                time: 1764170000,
                tag: 0,
            }),
        }
    }

    fn empty() -> ChannelInfo {
        ChannelInfo {
            messages: 0,
            requested: -1,
            subscribers: 0,
            last_message_id: None,
        }
    }

    fn extreme() -> ChannelInfo {
        ChannelInfo {
            messages: u32::MAX,
            requested: i64::MIN,
            subscribers: u32::MAX,
            last_message_id: Some(MsgId {
                time: u64::MAX,
                tag: u32::MAX,
            }),
        }
    }

    fn fmt(a: Option<&[u8]>) -> InfoFormat {
        InfoFormat::from_accept(a)
    }

    #[test]
    fn text_exact() {
        assert_eq!(
            render(&sample(), InfoFormat::Text),
            b"queued messages: 2\nlast requested: 5 sec. ago (-1=never)\nactive subscribers: 3\nlast message id: 1764170000:0\n"
        );
        assert_eq!(
            render(&empty(), InfoFormat::Text),
            b"queued messages: 0\nlast requested: -1 sec. ago (-1=never)\nactive subscribers: 0\nlast message id: \n"
        );
    }

    #[test]
    fn json_exact() {
        assert_eq!(
            render(&sample(), InfoFormat::Json),
            b"{\"messages\": 2, \"requested\": 5, \"subscribers\": 3, \"last_message_id\": \"1764170000:0\"}\n"
        );
        assert_eq!(
            render(&empty(), InfoFormat::Json),
            b"{\"messages\": 0, \"requested\": -1, \"subscribers\": 0, \"last_message_id\": null}\n"
        );
    }

    #[test]
    fn xml_exact() {
        assert_eq!(
            render(&sample(), InfoFormat::Xml),
            b"<channel><messages>2</messages><requested>5</requested><subscribers>3</subscribers><last_message_id>1764170000:0</last_message_id></channel>\n"
        );
        assert_eq!(
            render(&empty(), InfoFormat::Xml),
            b"<channel><messages>0</messages><requested>-1</requested><subscribers>0</subscribers><last_message_id></last_message_id></channel>\n"
        );
    }

    #[test]
    fn yaml_exact() {
        assert_eq!(
            render(&sample(), InfoFormat::Yaml),
            b"---\nmessages: 2\nrequested: 5\nsubscribers: 3\nlast_message_id: \"1764170000:0\"\n"
        );
        assert_eq!(
            render(&empty(), InfoFormat::Yaml),
            b"---\nmessages: 0\nrequested: -1\nsubscribers: 0\nlast_message_id: ~\n"
        );
    }

    #[test]
    fn extreme_numbers() {
        assert_eq!(
            render(&extreme(), InfoFormat::Text),
            b"queued messages: 4294967295\nlast requested: -9223372036854775808 sec. ago (-1=never)\nactive subscribers: 4294967295\nlast message id: 18446744073709551615:4294967295\n"
        );
        let j = render(&extreme(), InfoFormat::Json);
        assert!(json_shape_ok(&j));
        let mut info = extreme();
        info.requested = i64::MAX;
        assert_eq!(
            render(&info, InfoFormat::Xml),
            b"<channel><messages>4294967295</messages><requested>9223372036854775807</requested><subscribers>4294967295</subscribers><last_message_id>18446744073709551615:4294967295</last_message_id></channel>\n"
        );
        info.requested = 0;
        assert_eq!(
            render(&info, InfoFormat::Yaml),
            b"---\nmessages: 4294967295\nrequested: 0\nsubscribers: 4294967295\nlast_message_id: \"18446744073709551615:4294967295\"\n"
        );
    }

    /// A tiny checker for the one JSON shape we emit: an object of
    /// "key": (integer | "string" | null) pairs, then a newline.
    fn json_shape_ok(s: &[u8]) -> bool {
        let Some(body) = s.strip_suffix(b"\n") else {
            return false;
        };
        let Some(inner) = body.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}")) else {
            return false;
        };
        let mut keys = 0;
        for pair in inner.split(|&c| c == b',') {
            let pair = trim(pair);
            let Some(colon) = pair.iter().position(|&c| c == b':') else {
                return false;
            };
            let (k, v) = pair.split_at(colon);
            let v = trim(&v[1..]);
            let key_ok = k.len() >= 2
                && k.starts_with(b"\"")
                && k.ends_with(b"\"")
                && k[1..k.len() - 1]
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || *c == b'_');
            let int_ok = |x: &[u8]| {
                let d = x.strip_prefix(b"-").unwrap_or(x);
                !d.is_empty() && d.iter().all(u8::is_ascii_digit) && (d == b"0" || d[0] != b'0')
            };
            let str_ok = v.len() >= 2
                && v.starts_with(b"\"")
                && v.ends_with(b"\"")
                && v[1..v.len() - 1]
                    .iter()
                    .all(|&c| c != b'"' && c != b'\\' && c >= 0x20);
            if !key_ok || !(int_ok(v) || str_ok || v == b"null") {
                return false;
            }
            keys += 1;
        }
        keys == 4
    }

    #[test]
    fn json_is_well_formed() {
        for info in [sample(), empty(), extreme()] {
            assert!(json_shape_ok(&render(&info, InfoFormat::Json)));
        }
        assert!(!json_shape_ok(b"{\"a\": 1\n"));
    }

    #[test]
    fn xml_and_yaml_shapes() {
        for info in [sample(), empty(), extreme()] {
            let x = render(&info, InfoFormat::Xml);
            assert!(x.starts_with(b"<channel>") && x.ends_with(b"</channel>\n"));
            assert!(!x.contains(&b'&'));
            let y = render(&info, InfoFormat::Yaml);
            let lines: Vec<&[u8]> = y.split(|&c| c == b'\n').collect();
            // "---", four fields, and the empty tail after the last newline.
            assert_eq!(lines.len(), 6);
            assert_eq!(lines[0], b"---");
            for (line, key) in lines[1..5].iter().zip([
                &b"messages: "[..],
                b"requested: ",
                b"subscribers: ",
                b"last_message_id: ",
            ]) {
                assert!(line.starts_with(key));
            }
            assert!(lines[5].is_empty());
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(InfoFormat::Text.content_type(), "text/plain");
        assert_eq!(InfoFormat::Json.content_type(), "application/json");
        assert_eq!(InfoFormat::Xml.content_type(), "application/xml");
        assert_eq!(InfoFormat::Yaml.content_type(), "application/yaml");
    }

    #[test]
    fn accept_absent_empty_wildcard() {
        assert_eq!(fmt(None), InfoFormat::Text);
        assert_eq!(fmt(Some(b"")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"  ,  ,")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"*/*")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"text/plain")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"text/html")), InfoFormat::Text);
    }

    #[test]
    fn accept_each_format() {
        assert_eq!(fmt(Some(b"application/json")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"text/json")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"application/xml")), InfoFormat::Xml);
        assert_eq!(fmt(Some(b"text/xml")), InfoFormat::Xml);
        assert_eq!(fmt(Some(b"text/yaml")), InfoFormat::Yaml);
        assert_eq!(fmt(Some(b"application/yaml")), InfoFormat::Yaml);
        assert_eq!(fmt(Some(b"application/x-yaml")), InfoFormat::Yaml);
        assert_eq!(fmt(Some(b"application/vnd.api+json")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"json")), InfoFormat::Json);
    }

    #[test]
    fn yaml_same_bytes_for_every_yaml_type() {
        let a = render(&sample(), fmt(Some(b"text/yaml")));
        let b = render(&sample(), fmt(Some(b"application/yaml")));
        let c = render(&sample(), fmt(Some(b"application/x-yaml")));
        assert_eq!(a, b);
        assert_eq!(b, c);
    }

    #[test]
    fn accept_case_insensitive() {
        assert_eq!(fmt(Some(b"APPLICATION/JSON")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"Text/XML")), InfoFormat::Xml);
        assert_eq!(fmt(Some(b"application/X-YAML")), InfoFormat::Yaml);
    }

    #[test]
    fn accept_order_and_q() {
        assert_eq!(
            fmt(Some(b"application/json;q=0.9, text/plain")),
            InfoFormat::Json
        );
        assert_eq!(
            fmt(Some(
                b"text/html,application/xhtml+xml,application/xml;q=0.9"
            )),
            InfoFormat::Xml
        );
        assert_eq!(
            fmt(Some(
                b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
            )),
            InfoFormat::Xml
        );
        // Header order decides, not the q-value.
        assert_eq!(
            fmt(Some(b"text/yaml;q=0.1, application/json")),
            InfoFormat::Yaml
        );
        assert_eq!(fmt(Some(b"text/plain, application/json")), InfoFormat::Json);
    }

    #[test]
    fn accept_q_zero_skipped() {
        assert_eq!(fmt(Some(b"application/json;q=0")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"application/json; q=0.0")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"application/json;Q = 0.000 ")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"application/json;q=0.")), InfoFormat::Text);
        assert_eq!(
            fmt(Some(b"application/json;q=0, text/xml")),
            InfoFormat::Xml
        );
        assert_eq!(
            fmt(Some(b"application/json;charset=utf-8;q=0")),
            InfoFormat::Text
        );
        // Not zero.
        assert_eq!(fmt(Some(b"application/json;q=0.001")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"application/json;q=1")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"application/json;q=")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"application/json;q=junk")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"application/json;qq=0")), InfoFormat::Json);
        assert_eq!(fmt(Some(b"application/json;q")), InfoFormat::Json);
    }

    #[test]
    fn accept_params_do_not_match() {
        // Only the subtype counts, not parameters or the type.
        assert_eq!(fmt(Some(b"text/plain;format=json")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"json/plain")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"text/plain; x=xml, text/yaml")), InfoFormat::Yaml);
    }

    #[test]
    fn accept_garbage() {
        assert_eq!(fmt(Some(b"\xff\xfe\x00\x01;;;,,,===")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"/")), InfoFormat::Text);
        assert_eq!(fmt(Some(b";q=0")), InfoFormat::Text);
        assert_eq!(fmt(Some(b"\xffjson\xff")), InfoFormat::Json);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = [0u8; 64];
        for len in 0..buf.len() {
            for _ in 0..200 {
                for b in buf.iter_mut().take(len) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let alphabet = b" ,;=q0./jsonxmlyaml\xff";
                    *b = alphabet[(seed % alphabet.len() as u64) as usize];
                }
                let _ = fmt(Some(&buf[..len]));
            }
        }
    }
}
