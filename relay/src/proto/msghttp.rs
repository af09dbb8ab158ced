//! Strict parser for `Content-Type: message/http` sender bodies: a whole HTTP
//! response (status line, headers, blank line, body) that listeners receive
//! as their answer.
//!
//! Strict on purpose: whatever is accepted here is replayed to listeners as
//! real response headers, so anything that could split or desync the stream
//! (CR/LF/NUL in a value, folded lines, framing headers) is refused or dropped.

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use super::text::{is_token, trim};

/// At most this many header lines (dropped ones included), so hostile input
/// cannot make us allocate without bound.
pub const MAX_HEADERS: usize = 100;

/// A parsed embedded response, borrowing from the input.
#[derive(Debug, PartialEq, Eq)]
pub struct EmbeddedResponse<'a> {
    /// 200..=599.
    pub status: u16,
    /// May be empty.
    pub reason: &'a [u8],
    /// The Content-Type value (trimmed, possibly empty), kept out of
    /// `headers` because nginx sets it through its own field, not as a
    /// generic header. None when the response has none.
    pub content_type: Option<&'a [u8]>,
    /// (name, value) in input order, values trimmed of surrounding SP/HTAB.
    /// Framing and hop-by-hop headers and the cursor headers the module sets
    /// itself (Etag, Last-Modified) are removed; see [`is_dropped`].
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// Everything after the blank line; may be empty.
    pub body: &'a [u8],
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ParseError {
    /// Empty input, or the first line is not `HTTP/x.y ...`.
    NoStatusLine,
    /// `HTTP/` followed by a version other than 1.0 or 1.1.
    BadVersion,
    /// Status code not three digits in 200..=599, or not followed by SP/EOL.
    BadStatus,
    /// Control characters in the reason phrase.
    BadReason,
    /// A CR not followed by LF.
    BadLineEnding,
    /// A header line without a colon.
    BadHeader,
    /// A header name that is empty or not an RFC 9110 token.
    BadHeaderName,
    /// Control characters (other than HTAB) in a header value.
    BadHeaderValue,
    /// A header line starting with SP or HTAB (obsolete line folding).
    ObsFold,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// Two Content-Type headers: which one the listener should get is ambiguous.
    DuplicateContentType,
    /// The input ended before the blank line that ends the headers.
    NoEndOfHeaders,
}

impl ParseError {
    /// Short plain English for a 400 body.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::NoStatusLine => "message/http body has no valid status line",
            ParseError::BadVersion => {
                "message/http body has an unsupported HTTP version (use HTTP/1.0 or HTTP/1.1)"
            }
            ParseError::BadStatus => {
                "message/http body has an invalid status code (need three digits, 200-599)"
            }
            ParseError::BadReason => {
                "message/http body has control characters in its reason phrase"
            }
            ParseError::BadLineEnding => "message/http body has a CR not followed by LF",
            ParseError::BadHeader => "message/http body has a header line without a colon",
            ParseError::BadHeaderName => "message/http body has an invalid header name",
            ParseError::BadHeaderValue => {
                "message/http body has control characters in a header value"
            }
            ParseError::ObsFold => "message/http body has a folded header line",
            ParseError::TooManyHeaders => "message/http body has too many header lines",
            ParseError::DuplicateContentType => {
                "message/http body has more than one Content-Type header"
            }
            ParseError::NoEndOfHeaders => "message/http body has no empty line ending its headers",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// True for header names the module never passes on from an embedded
/// response (case-insensitive): framing and hop-by-hop headers, any `Proxy-*`,
/// and Etag / Last-Modified, which carry the cursor and are set by the module.
pub fn is_dropped(name: &[u8]) -> bool {
    const DROPPED: [&[u8]; 9] = [
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"te",
        b"trailer",
        b"etag",
        b"last-modified",
    ];
    DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name))
        || name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
}

/// Field-value / reason-phrase bytes: HTAB, SP, visible ASCII, obs-text.
fn is_text(c: u8) -> bool {
    c == b'\t' || (c >= b' ' && c != 0x7f)
}

/// A line and the input after it.
type Line<'a> = (&'a [u8], &'a [u8]);

/// Split off the next line: (line without its CRLF/LF, rest after it).
/// None for the line when the input has no LF left; Err on a lone CR.
fn next_line(input: &[u8]) -> Result<Option<Line<'_>>, ParseError> {
    let Some(lf) = input.iter().position(|&c| c == b'\n') else {
        return Ok(None);
    };
    let (line, rest) = input.split_at(lf);
    let rest = rest.get(1..).unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(ParseError::BadLineEnding);
    }
    Ok(Some((line, rest)))
}

fn parse_status_line(line: &[u8]) -> Result<(u16, &[u8]), ParseError> {
    if line.contains(&b'\r') {
        return Err(ParseError::BadLineEnding);
    }
    let Some(after) = line.strip_prefix(b"HTTP/") else {
        return Err(ParseError::NoStatusLine);
    };
    let after = match after {
        [b'1', b'.', b'0' | b'1', rest @ ..] => rest,
        _ => return Err(ParseError::BadVersion),
    };
    let (code, rest) = match after {
        [b' ', a, b, c, rest @ ..]
            if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
        {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            (code, rest)
        }
        // "HTTP/1.10", "HTTP/1.1200": the version runs on.
        [b'0'..=b'9', ..] => return Err(ParseError::BadVersion),
        _ => return Err(ParseError::BadStatus),
    };
    if !(200..=599).contains(&code) {
        return Err(ParseError::BadStatus);
    }
    let reason = match rest {
        [] => rest,
        [b' ', reason @ ..] => reason,
        _ => return Err(ParseError::BadStatus),
    };
    if !reason.iter().all(|&c| is_text(c)) {
        return Err(ParseError::BadReason);
    }
    Ok((code, reason))
}

/// Parse a `message/http` body. See the module docs and [`ParseError`] for
/// what is refused.
pub fn parse(input: &[u8]) -> Result<EmbeddedResponse<'_>, ParseError> {
    if input.is_empty() {
        return Err(ParseError::NoStatusLine);
    }
    let (status, reason, mut rest) = match next_line(input)? {
        Some((line, rest)) => {
            let (status, reason) = parse_status_line(line)?;
            (status, reason, rest)
        }
        None => {
            // A lone status line with no line end: say what is wrong with it first.
            parse_status_line(input)?;
            return Err(ParseError::NoEndOfHeaders);
        }
    };

    let mut headers = Vec::new();
    let mut content_type = None;
    let mut count = 0usize;
    loop {
        let Some((line, after)) = next_line(rest)? else {
            // A lone CR in the unterminated tail is still a lone CR.
            if rest.contains(&b'\r') {
                return Err(ParseError::BadLineEnding);
            }
            return Err(ParseError::NoEndOfHeaders);
        };
        rest = after;
        if line.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        if let [b' ' | b'\t', ..] = line {
            return Err(ParseError::ObsFold);
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(ParseError::BadHeader);
        };
        let (name, value) = line.split_at(colon);
        if !is_token(name) {
            return Err(ParseError::BadHeaderName);
        }
        let value = trim(value.get(1..).unwrap_or(&[]));
        if !value.iter().all(|&c| is_text(c)) {
            return Err(ParseError::BadHeaderValue);
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            if content_type.is_some() {
                return Err(ParseError::DuplicateContentType);
            }
            content_type = Some(value);
        } else if !is_dropped(name) {
            headers.push((name, value));
        }
    }

    Ok(EmbeddedResponse {
        status,
        reason,
        content_type,
        headers,
        body: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn ok(input: &[u8]) -> EmbeddedResponse<'_> {
        match parse(input) {
            Ok(r) => r,
            Err(e) => panic!("refused: {e:?}"),
        }
    }

    fn err(input: &[u8]) -> ParseError {
        match parse(input) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn minimal() {
        let r = ok(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            r,
            EmbeddedResponse {
                status: 200,
                reason: b"OK",
                content_type: None,
                headers: vec![],
                body: b"",
            }
        );
    }

    #[test]
    fn lf_only_and_mixed_endings() {
        let r = ok(b"HTTP/1.0 201 Created\nX-A: 1\r\nX-B: 2\n\nbody");
        assert_eq!(r.status, 201);
        assert_eq!(r.reason, b"Created");
        assert_eq!(
            r.headers,
            vec![(&b"X-A"[..], &b"1"[..]), (&b"X-B"[..], &b"2"[..])]
        );
        assert_eq!(r.body, b"body");
    }

    #[test]
    fn no_reason() {
        let r = ok(b"HTTP/1.1 204\r\n\r\n");
        assert_eq!((r.status, r.reason), (204, &b""[..]));
        let r = ok(b"HTTP/1.1 204 \r\n\r\n");
        assert_eq!((r.status, r.reason), (204, &b""[..]));
    }

    #[test]
    fn custom_status_and_reason_text() {
        let r = ok(b"HTTP/1.1 418 I'm a teapot\r\n\r\n");
        assert_eq!((r.status, r.reason), (418, &b"I'm a teapot"[..]));
        assert_eq!(ok(b"HTTP/1.1 599 Whatever\r\n\r\n").status, 599);
        assert_eq!(ok(b"HTTP/1.1 500\n\n").status, 500);
        let r = ok(b"HTTP/1.1 200 Tout va\tbien \xe9\xff\r\n\r\n");
        assert_eq!(r.reason, b"Tout va\tbien \xe9\xff");
    }

    #[test]
    fn body_kept_verbatim() {
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\n\r\n\r\nX: y\r\n\x00\xff\xfe\r");
        assert_eq!(r.content_type, Some(&b"text/plain"[..]));
        assert!(r.headers.is_empty());
        assert_eq!(r.body, b"line1\r\nline2\n\r\n\r\nX: y\r\n\x00\xff\xfe\r");
    }

    #[test]
    fn headers_in_order_and_trimmed() {
        let r = ok(b"HTTP/1.1 200 OK\r\nX-One:a\r\nx-two: \t b c \t\r\nX-Empty:\r\nX-Sp:   \r\nX-One: again\r\n\r\n");
        assert_eq!(
            r.headers,
            vec![
                (&b"X-One"[..], &b"a"[..]),
                (&b"x-two"[..], &b"b c"[..]),
                (&b"X-Empty"[..], &b""[..]),
                (&b"X-Sp"[..], &b""[..]),
                (&b"X-One"[..], &b"again"[..]),
            ]
        );
    }

    #[test]
    fn token_names() {
        let r = ok(b"HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n");
        assert_eq!(r.headers, vec![(&b"!#$%&'*+-.^_`|~09azAZ"[..], &b"v"[..])]);
        // A colon inside the value is fine; only the first one splits.
        let r = ok(b"HTTP/1.1 200 OK\r\nLink: <http://x:80/>\r\n\r\n");
        assert_eq!(r.headers, vec![(&b"Link"[..], &b"<http://x:80/>"[..])]);
    }

    #[test]
    fn content_type_is_separate() {
        let r = ok(
            b"HTTP/1.1 200 OK\r\ncontent-TYPE:  application/json; charset=utf-8 \r\nX: 1\r\n\r\n{}",
        );
        assert_eq!(
            r.content_type,
            Some(&b"application/json; charset=utf-8"[..])
        );
        assert_eq!(r.headers, vec![(&b"X"[..], &b"1"[..])]);
        assert_eq!(r.body, b"{}");
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Type:\r\n\r\n");
        assert_eq!(r.content_type, Some(&b""[..]));
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n"),
            ParseError::DuplicateContentType
        );
    }

    #[test]
    fn obs_text_in_value_ok() {
        let r = ok(b"HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9 \xff\x80\r\n\r\n");
        assert_eq!(
            r.headers,
            vec![(&b"X-Name"[..], &b"caf\xc3\xa9 \xff\x80"[..])]
        );
    }

    #[test]
    fn framing_and_hop_by_hop_dropped() {
        let input = b"HTTP/1.1 200 OK\r\n\
            Content-Length: 5\r\n\
            Transfer-Encoding: chunked\r\n\
            Connection: close\r\n\
            Keep-Alive: timeout=5\r\n\
            Upgrade: websocket\r\n\
            TE: trailers\r\n\
            Trailer: X-T\r\n\
            Proxy-Authenticate: Basic\r\n\
            proxy-connection: keep-alive\r\n\
            PROXY-X: 1\r\n\
            ETag: \"99\"\r\n\
            Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
            X-Kept: yes\r\n\
            Trailers: not-the-same\r\n\
            Proxy: not-a-prefix-match\r\n\
            Content-Location: /x\r\n\
            \r\n\
            0\r\n\r\n";
        let r = ok(input);
        assert_eq!(
            r.headers,
            vec![
                (&b"X-Kept"[..], &b"yes"[..]),
                (&b"Trailers"[..], &b"not-the-same"[..]),
                (&b"Proxy"[..], &b"not-a-prefix-match"[..]),
                (&b"Content-Location"[..], &b"/x"[..]),
            ]
        );
        assert_eq!(r.body, b"0\r\n\r\n");
    }

    #[test]
    fn is_dropped_names() {
        for n in [
            &b"content-length"[..],
            b"CONTENT-LENGTH",
            b"Transfer-Encoding",
            b"connection",
            b"Keep-Alive",
            b"upgrade",
            b"te",
            b"TE",
            b"Trailer",
            b"Proxy-",
            b"proxy-anything",
            b"Etag",
            b"last-modified",
        ] {
            assert!(is_dropped(n), "{n:?}");
        }
        for n in [
            &b""[..],
            b"t",
            b"tee",
            b"proxy",
            b"xproxy-a",
            b"content-type",
            b"content-lengthx",
            b"vary",
            b"x-connection",
        ] {
            assert!(!is_dropped(n), "{n:?}");
        }
    }

    #[test]
    fn smuggling_value_with_crlf_refused() {
        // Once "\r\nX-Evil: 1" is in the input it is a separate line, so the
        // only way to embed it in a value is with a lone CR or a bare CR.
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: a\rX-Evil: 1\r\n\r\n"),
            ParseError::BadLineEnding
        );
        // As a separate line it is just a header, and framing is still dropped.
        let r = ok(b"HTTP/1.1 200 OK\r\nX-A: a\r\nX-Evil: 1\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.body, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn refuse_no_status_line() {
        assert_eq!(err(b""), ParseError::NoStatusLine);
        assert_eq!(err(b"\r\n\r\n"), ParseError::NoStatusLine);
        assert_eq!(err(b"\n"), ParseError::NoStatusLine);
        assert_eq!(err(b"hello world"), ParseError::NoStatusLine);
        assert_eq!(err(b"X-A: 1\r\n\r\n"), ParseError::NoStatusLine);
        assert_eq!(err(b"http/1.1 200 OK\r\n\r\n"), ParseError::NoStatusLine);
        assert_eq!(err(b" HTTP/1.1 200 OK\r\n\r\n"), ParseError::NoStatusLine);
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), ParseError::NoStatusLine);
    }

    #[test]
    fn refuse_versions() {
        assert_eq!(err(b"HTTP/2 200 OK\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/2.0 200 OK\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/1.2 200 OK\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/1 200 OK\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/ 200 OK\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/1.10 200 OK\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/\r\n\r\n"), ParseError::BadVersion);
        assert_eq!(err(b"HTTP/1.1200 OK\r\n\r\n"), ParseError::BadVersion);
    }

    #[test]
    fn refuse_status_codes() {
        for bad in [
            &b"HTTP/1.1 199 X\r\n\r\n"[..],
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 101 Switching\r\n\r\n",
            b"HTTP/1.1 600 X\r\n\r\n",
            b"HTTP/1.1 000\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 2000\r\n\r\n",
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 200\tOK\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 \r\n\r\n",
            b"HTTP/1.1 -200 OK\r\n\r\n",
        ] {
            assert_eq!(err(bad), ParseError::BadStatus, "{bad:?}");
        }
    }

    #[test]
    fn refuse_reason_controls() {
        assert_eq!(err(b"HTTP/1.1 200 O\x00K\r\n\r\n"), ParseError::BadReason);
        assert_eq!(err(b"HTTP/1.1 200 O\x7fK\r\n\r\n"), ParseError::BadReason);
        assert_eq!(err(b"HTTP/1.1 200 O\x1bK\r\n\r\n"), ParseError::BadReason);
        assert_eq!(err(b"HTTP/1.1 200 O\rK\r\n\r\n"), ParseError::BadLineEnding);
    }

    #[test]
    fn refuse_header_without_colon() {
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"),
            ParseError::BadHeader
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX: 1\r\nbody\r\n\r\n"),
            ParseError::BadHeader
        );
    }

    #[test]
    fn refuse_bad_names() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\tA: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX(A): 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\"A: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX/A: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\x00A: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\xe9: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX@A: 1\r\n\r\n",
        ] {
            assert_eq!(err(bad), ParseError::BadHeaderName, "{bad:?}");
        }
    }

    #[test]
    fn refuse_bad_values() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x0bb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x0cb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x1fb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\n\r\n",
        ] {
            assert_eq!(err(bad), ParseError::BadHeaderValue, "{bad:?}");
        }
        // A CR inside a value is a lone CR.
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n"),
            ParseError::BadLineEnding
        );
    }

    #[test]
    fn refuse_obs_fold() {
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n"),
            ParseError::ObsFold
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\n\r\n"),
            ParseError::ObsFold
        );
        // A whitespace-only line is not the blank line either.
        assert_eq!(err(b"HTTP/1.1 200 OK\r\n \r\n\r\n"), ParseError::ObsFold);
    }

    #[test]
    fn refuse_no_blank_line() {
        assert_eq!(err(b"HTTP/1.1 200 OK"), ParseError::NoEndOfHeaders);
        assert_eq!(err(b"HTTP/1.1 200 OK\r\n"), ParseError::NoEndOfHeaders);
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"),
            ParseError::NoEndOfHeaders
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: 1"),
            ParseError::NoEndOfHeaders
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\nX-A: 1\n"),
            ParseError::NoEndOfHeaders
        );
        // An unterminated bad status line reports the status problem.
        assert_eq!(err(b"HTTP/1.1 700 OK"), ParseError::BadStatus);
        assert_eq!(err(b"nothing"), ParseError::NoStatusLine);
    }

    #[test]
    fn refuse_lone_cr() {
        assert_eq!(err(b"HTTP/1.1 200 OK\r\r\n\r\n"), ParseError::BadLineEnding);
        assert_eq!(err(b"HTTP/1.1 200 OK\r"), ParseError::BadLineEnding);
        assert_eq!(err(b"HTTP/1.1 200 OK\r\n\r"), ParseError::BadLineEnding);
        assert_eq!(err(b"HTTP/1.1 200 OK\r\n\r\r\n"), ParseError::BadLineEnding);
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX-A: 1\r\r\n\r\n"),
            ParseError::BadLineEnding
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\rX-A: 1\r\n\r\n"),
            ParseError::BadLineEnding
        );
        assert_eq!(err(b"HTTP/1.1 200 OK\r\n\r\r"), ParseError::BadLineEnding);
    }

    fn with_headers(n: usize) -> Vec<u8> {
        let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..n {
            v.extend_from_slice(b"X-H: ");
            v.push(b'0' + (i % 10) as u8);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"\r\nbody");
        v
    }

    #[test]
    fn header_cap() {
        let input = with_headers(MAX_HEADERS);
        assert_eq!(ok(&input).headers.len(), MAX_HEADERS);
        assert_eq!(
            err(&with_headers(MAX_HEADERS + 1)),
            ParseError::TooManyHeaders
        );
        // Dropped headers count too.
        let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            v.extend_from_slice(b"Connection: close\r\n");
        }
        v.extend_from_slice(b"\r\n");
        assert_eq!(err(&v), ParseError::TooManyHeaders);
    }

    #[test]
    fn reasons_are_plain_and_distinct() {
        let all = [
            ParseError::NoStatusLine,
            ParseError::BadVersion,
            ParseError::BadStatus,
            ParseError::BadReason,
            ParseError::BadLineEnding,
            ParseError::BadHeader,
            ParseError::BadHeaderName,
            ParseError::BadHeaderValue,
            ParseError::ObsFold,
            ParseError::TooManyHeaders,
            ParseError::DuplicateContentType,
            ParseError::NoEndOfHeaders,
        ];
        for (i, a) in all.iter().enumerate() {
            let r = a.reason();
            assert!(r.starts_with("message/http body "));
            assert!(r.bytes().all(|c| (b' '..0x7f).contains(&c)));
            for b in &all[i + 1..] {
                assert_ne!(r, b.reason());
            }
        }
        assert_eq!(
            ParseError::NoStatusLine.reason(),
            "message/http body has no valid status line"
        );
    }

    #[test]
    fn accepted_output_is_safe_to_replay() {
        // Whatever is accepted never carries bytes that could break a header
        // block, whatever the input.
        let pieces: [&[u8]; 14] = [
            b"HTTP/1.1 200 OK",
            b"\r\n",
            b"\n",
            b"\r",
            b"X-A: 1",
            b": ",
            b" ",
            b"\t",
            b"\x00",
            b"Content-Length: 3",
            b"Proxy-A: 1",
            b"Content-Type: t/p",
            b"\xff",
            b"abc",
        ];
        let mut seed = 0xdead_beef_cafe_f00du64;
        for _ in 0..50_000 {
            let mut input = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 12) as usize;
            if seed & 1 == 0 {
                input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            }
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            if let Ok(r) = parse(&input) {
                assert!((200..=599).contains(&r.status));
                let bad = |c: &u8| *c == b'\r' || *c == b'\n' || *c == 0;
                assert!(!r.reason.iter().any(bad));
                assert!(r.content_type.is_none_or(|v| !v.iter().any(bad)));
                for (name, value) in &r.headers {
                    assert!(is_token(name));
                    assert!(!value.iter().any(bad));
                    assert!(!is_dropped(name));
                    assert!(!name.eq_ignore_ascii_case(b"content-type"));
                }
            }
        }
    }
}
