//! Byte-string helpers shared by the protocol parsers and formatters:
//! trimming HTTP whitespace and writing decimal numbers without `fmt`.

/// `s` without leading and trailing SP / HTAB (HTTP's optional whitespace).
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The decimal digits of a `u64`, formatted into a stack buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    buf: [u8; 20],
    start: u8,
}

impl Decimal {
    pub fn new(mut v: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        // A u64 has at most 20 digits, so `i` never underflows.
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Decimal {
            buf,
            start: i as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

/// Append the decimal digits of `v`.
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(Decimal::new(v).as_bytes());
}

/// Append `v` in decimal, with a `-` when negative.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// A value made only of ASCII decimal digits, if it fits a u64.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// RFC 9110 `token` characters (header names, event names).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter().all(|&c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Does a comma-separated header value list `name` (case-insensitively)?
pub fn list_has(value: &[u8], name: &[u8]) -> bool {
    value
        .split(|&c| c == b',')
        .any(|item| trim(item).eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_http_whitespace() {
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b"\r\nx"), b"\r\nx");
        assert_eq!(trim(b"   "), b"");
    }

    #[test]
    fn decimal_edges() {
        assert_eq!(Decimal::new(0).as_bytes(), b"0");
        assert_eq!(Decimal::new(7).as_bytes(), b"7");
        assert_eq!(Decimal::new(1_764_170_000).as_bytes(), b"1764170000");
        assert_eq!(
            Decimal::new(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
        let mut v = Vec::new();
        push_i64(&mut v, -12);
        push_i64(&mut v, 5);
        assert_eq!(v, b"-125");
    }

    #[test]
    fn parses_digits_only_without_overflow() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    #[test]
    fn tokens_and_lists() {
        assert!(is_token(b"message"));
        assert!(is_token(b"x-y.z_1"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"\xc3\xa9"));
        assert!(list_has(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!list_has(b"keep-alive", b"upgrade"));
    }
}
