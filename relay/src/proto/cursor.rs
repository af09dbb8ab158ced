//! The message cursor: message ids, the listener's "next message after" request,
//! and the HTTP date / entity-tag encodings that carry it over the wire.
//!
//! Pure code, no allocation: these run on every listener request inside nginx
//! workers, so nothing here may panic whatever bytes a client sends.

use core::fmt;

use super::text::{parse_u64 as digits, trim, Decimal};

/// Id of a message within a channel: the second it was published and a tag
/// that disambiguates messages published in the same second. Ordered by (time, tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MsgId {
    pub time: u64,
    pub tag: u32,
}

impl MsgId {
    /// The id for a message published at `now`, after the channel's newest id `prev`.
    ///
    /// A later second starts a fresh tag 0. The same second, or an earlier one
    /// (the clock went backwards), keeps `prev.time` and bumps the tag, so ids
    /// never repeat and never go backwards. Should the tag run out (2^32
    /// messages in one second) the time moves on by one second instead.
    pub fn next_after(prev: Option<MsgId>, now: u64) -> MsgId {
        match prev {
            None => MsgId { time: now, tag: 0 },
            Some(p) if now > p.time => MsgId { time: now, tag: 0 },
            Some(p) => match p.tag.checked_add(1) {
                Some(tag) => MsgId { time: p.time, tag },
                None => MsgId {
                    time: p.time.saturating_add(1),
                    tag: 0,
                },
            },
        }
    }
}

impl MsgId {
    /// Parse `time:tag` (a `Last-Event-ID`): decimal numbers that fit, and
    /// nothing else.
    pub fn parse(s: &[u8]) -> Option<MsgId> {
        let s = trim(s);
        let colon = s.iter().position(|&c| c == b':')?;
        let time = digits(&s[..colon])?;
        let tag = u32::try_from(digits(&s[colon + 1..])?).ok()?;
        Some(MsgId { time, tag })
    }
}

/// `time:tag`, the form used in channel info bodies.
impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.time, self.tag)
    }
}

/// What a listener asked for: "the next message after this".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cursor {
    pub since: Option<u64>,
    pub tag: Option<u32>,
}

impl Cursor {
    /// Parse from the raw If-Modified-Since and If-None-Match header values.
    ///
    /// A value that does not parse counts as absent: a garbled date means
    /// "from the oldest stored message", which at worst repeats messages but
    /// never skips one.
    pub fn from_headers(if_modified_since: Option<&[u8]>, if_none_match: Option<&[u8]>) -> Cursor {
        Cursor {
            since: if_modified_since.and_then(parse_http_date),
            tag: if_none_match.and_then(parse_etag),
        }
    }

    /// Where a stream starts: `Last-Event-ID`, else the `last_event_id`
    /// query argument (percent-encoded as it came), else the poll headers.
    /// An id that does not parse counts as absent.
    pub fn for_stream(
        last_event_id: Option<&[u8]>,
        query_arg: Option<&[u8]>,
        if_modified_since: Option<&[u8]>,
        if_none_match: Option<&[u8]>,
    ) -> Cursor {
        let mut buf = [0u8; 48];
        last_event_id
            .and_then(MsgId::parse)
            .or_else(|| query_arg.and_then(|a| MsgId::parse(percent_decode(a, &mut buf)?)))
            .map(Cursor::after)
            .unwrap_or_else(|| Cursor::from_headers(if_modified_since, if_none_match))
    }

    /// The cursor just past message `id`.
    pub fn after(id: MsgId) -> Cursor {
        Cursor {
            since: Some(id.time),
            tag: Some(id.tag),
        }
    }

    /// True when message `id` comes after this cursor.
    ///
    /// - no `since`: every message matches (the oldest stored one is served);
    /// - `since` and `tag`: `id.time > since`, or `id.time == since` and `id.tag > tag`;
    /// - `since` without `tag`: the tag counts as "below 0", so every message of
    ///   second `since` matches. A client that lost its Etag (a proxy or cache
    ///   stripped it) then sees a message again rather than missing the ones
    ///   published in the same second.
    pub fn admits(&self, id: MsgId) -> bool {
        match self.since {
            None => true,
            Some(since) => {
                id.time > since || (id.time == since && self.tag.is_none_or(|tag| id.tag > tag))
            }
        }
    }
}

/// `%XX`-decode a short query value into `buf`; `None` if it is malformed
/// or longer than `buf`.
fn percent_decode<'b>(s: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let (mut i, mut n) = (0, 0);
    while i < s.len() {
        let b = match s[i] {
            b'%' => {
                let v = hex(*s.get(i + 1)?)? << 4 | hex(*s.get(i + 2)?)?;
                i += 3;
                v
            }
            b'+' => {
                i += 1;
                b' '
            }
            c => {
                i += 1;
                c
            }
        };
        *buf.get_mut(n)? = b;
        n += 1;
    }
    Some(&buf[..n])
}

// ---------------------------------------------------------------------------
// HTTP dates

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const LONG_DAY_NAMES: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];
const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// 9999-12-31 23:59:59 GMT: the last second a four-digit year can show.
pub const MAX_HTTP_TIME: u64 = 253_402_300_799;

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Leap years in 1..=y.
fn leaps_through(y: u64) -> u64 {
    y / 4 - y / 100 + y / 400
}

/// Days from 1970-01-01 to January 1st of `y` (y >= 1970).
fn days_before_year(y: u64) -> u64 {
    365 * (y - 1970) + leaps_through(y - 1) - leaps_through(1969)
}

/// Days since 1970-01-01 of a calendar date; None when the fields are out of
/// range (month 13, Feb 30, year before 1970 or after 9999).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let months: u64 = (1..m).map(|mm| days_in_month(y, mm)).sum();
    Some(days_before_year(y) + months + d - 1)
}

/// Calendar date (year, month 1-12, day 1-31) of `days` since 1970-01-01.
/// Callers keep `days` within year 9999.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 146097 days per 400 years: this guess is at most one year off either way.
    let mut y = 1970 + days * 400 / 146_097;
    while y > 1970 && days_before_year(y) > days {
        y -= 1;
    }
    while days_before_year(y + 1) <= days {
        y += 1;
    }
    let mut rest = days - days_before_year(y);
    let mut m = 1;
    while m < 12 && rest >= days_in_month(y, m) {
        rest -= days_in_month(y, m);
        m += 1;
    }
    (y, m, rest + 1)
}

fn put2(out: &mut [u8], v: u64) {
    if let [a, b, ..] = out {
        *a = b'0' + (v / 10 % 10) as u8;
        *b = b'0' + (v % 10) as u8;
    }
}

/// Format as an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (always 29 bytes).
///
/// Times after year 9999 are clamped to [`MAX_HTTP_TIME`] so the result stays
/// a valid date.
pub fn http_date(t: u64) -> [u8; 29] {
    let t = t.min(MAX_HTTP_TIME);
    let days = t / 86_400;
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday (index 4).
    let wd = DAY_NAMES[((days + 4) % 7) as usize];
    out[0..3].copy_from_slice(wd);
    put2(&mut out[5..7], d);
    let mon = MONTH_NAMES[(m as usize).saturating_sub(1).min(11)];
    out[8..11].copy_from_slice(mon);
    put2(&mut out[12..14], y / 100);
    put2(&mut out[14..16], y % 100);
    put2(&mut out[17..19], secs / 3600);
    put2(&mut out[20..22], secs / 60 % 60);
    put2(&mut out[23..25], secs % 60);
    out
}

fn month_index(s: &[u8]) -> Option<u64> {
    let i = MONTH_NAMES.iter().position(|m| m.eq_ignore_ascii_case(s))?;
    Some(i as u64 + 1)
}

fn is_day_name(s: &[u8]) -> bool {
    DAY_NAMES.iter().any(|d| d.eq_ignore_ascii_case(s))
}

fn is_long_day_name(s: &[u8]) -> bool {
    LONG_DAY_NAMES.iter().any(|d| d.eq_ignore_ascii_case(s))
}

/// "HH:MM:SS" as seconds into the day; None when out of range.
fn time_of_day(s: &[u8; 8]) -> Option<u64> {
    if s[2] != b':' || s[5] != b':' {
        return None;
    }
    let h = digits(&s[0..2])?;
    let m = digits(&s[3..5])?;
    let sec = digits(&s[6..8])?;
    // Leap second 60 is refused: our own dates never carry it.
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

fn assemble(y: u64, m: u64, d: u64, tod: u64) -> Option<u64> {
    Some(days_from_civil(y, m, d)? * 86_400 + tod)
}

/// Parse an HTTP date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
/// RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime
/// ("Sun Nov  6 08:49:37 1994"). Surrounding SP/HTAB is tolerated; None if
/// malformed or out of range (before 1970, hour 24, Feb 30, ...).
///
/// Leniencies: day and month names and "GMT" are matched case-insensitively,
/// and the day name is not checked against the date (nginx does not either;
/// a wrong weekday from a client is not worth losing its cursor over).
/// RFC 850 two-digit years 70-99 are 1970-1999, 00-69 are 2000-2069.
pub fn parse_http_date(s: &[u8]) -> Option<u64> {
    let s = trim(s);
    if let Ok(s) = <&[u8; 29]>::try_from(s) {
        if s[3] == b',' {
            return parse_imf_fixdate(s);
        }
    }
    if let Ok(s) = <&[u8; 24]>::try_from(s) {
        if s[3] == b' ' {
            return parse_asctime(s);
        }
    }
    parse_rfc850(s)
}

fn parse_imf_fixdate(s: &[u8; 29]) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    if !is_day_name(&s[0..3])
        || &s[3..5] != b", "
        || s[7] != b' '
        || s[11] != b' '
        || s[16] != b' '
        || !s[25..29].eq_ignore_ascii_case(b" GMT")
    {
        return None;
    }
    let d = digits(&s[5..7])?;
    let m = month_index(&s[8..11])?;
    let y = digits(&s[12..16])?;
    let tod = time_of_day(s[17..25].try_into().ok()?)?;
    assemble(y, m, d, tod)
}

fn parse_rfc850(s: &[u8]) -> Option<u64> {
    // "Sunday, 06-Nov-94 08:49:37 GMT"
    let comma = s.iter().position(|&c| c == b',')?;
    let (name, rest) = s.split_at(comma);
    let rest: &[u8; 24] = rest.try_into().ok()?;
    // rest = ", 06-Nov-94 08:49:37 GMT"
    if !is_long_day_name(name)
        || &rest[0..2] != b", "
        || rest[4] != b'-'
        || rest[8] != b'-'
        || rest[11] != b' '
        || !rest[20..24].eq_ignore_ascii_case(b" GMT")
    {
        return None;
    }
    let d = digits(&rest[2..4])?;
    let m = month_index(&rest[5..8])?;
    let yy = digits(&rest[9..11])?;
    let y = if yy < 70 { 2000 + yy } else { 1900 + yy };
    let tod = time_of_day(rest[12..20].try_into().ok()?)?;
    assemble(y, m, d, tod)
}

fn parse_asctime(s: &[u8; 24]) -> Option<u64> {
    // "Sun Nov  6 08:49:37 1994"
    if !is_day_name(&s[0..3]) || s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let m = month_index(&s[4..7])?;
    // Day is two digits or a space and one digit.
    let d = match &s[8..10] {
        [b' ', c] => digits(core::slice::from_ref(c))?,
        dd => digits(dd)?,
    };
    let tod = time_of_day(s[11..19].try_into().ok()?)?;
    let y = digits(&s[20..24])?;
    assemble(y, m, d, tod)
}

// ---------------------------------------------------------------------------
// Entity tags

/// A formatted entity-tag `"<tag>"` in a stack buffer, so answering a
/// listener needs no allocation. Read it with [`Etag::as_bytes`] or [`Etag::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Etag {
    // Two quotes and at most 10 digits for a u32.
    buf: [u8; 12],
    len: u8,
}

impl Etag {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII digits and quotes.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl AsRef<[u8]> for Etag {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Etag value for a tag: `"<tag>"` (quoted), as a stack buffer.
pub fn etag(tag: u32) -> Etag {
    let digits = Decimal::new(u64::from(tag));
    let digits = digits.as_bytes();
    let mut buf = [0u8; 12];
    buf[0] = b'"';
    buf[1..=digits.len()].copy_from_slice(digits);
    buf[digits.len() + 1] = b'"';
    Etag {
        buf,
        len: (digits.len() + 2) as u8,
    }
}

/// Parse If-None-Match: quoted `"5"`, bare `5` (old clients) or weak `W/"5"`
/// (nginx's gzip filter weakens Etags); surrounding SP/HTAB is fine; of a
/// list only the first entry counts. None unless the tag is a decimal u32.
pub fn parse_etag(s: &[u8]) -> Option<u32> {
    let first = s.split(|&c| c == b',').next().unwrap_or(&[]);
    let mut t = trim(first);
    if let [b'W' | b'w', b'/', rest @ ..] = t {
        t = rest;
    }
    let inner = match t {
        [b'"', inner @ .., b'"'] => inner,
        [b'"', ..] => return None,
        bare => bare,
    };
    if inner.is_empty() || inner.len() > 10 {
        return None;
    }
    let v = digits(inner)?;
    u32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date_str(t: u64) -> [u8; 29] {
        http_date(t)
    }

    #[test]
    fn next_after_fresh_channel() {
        assert_eq!(MsgId::next_after(None, 100), MsgId { time: 100, tag: 0 });
    }

    #[test]
    fn next_after_later_second_resets_tag() {
        let p = MsgId { time: 100, tag: 7 };
        assert_eq!(MsgId::next_after(Some(p), 101), MsgId { time: 101, tag: 0 });
    }

    #[test]
    fn next_after_same_second_bumps_tag() {
        let p = MsgId { time: 100, tag: 7 };
        assert_eq!(MsgId::next_after(Some(p), 100), MsgId { time: 100, tag: 8 });
    }

    #[test]
    fn next_after_clock_backwards_keeps_time() {
        let p = MsgId { time: 100, tag: 2 };
        let n = MsgId::next_after(Some(p), 50);
        assert_eq!(n, MsgId { time: 100, tag: 3 });
        assert!(n > p);
    }

    #[test]
    fn next_after_tag_exhausted_moves_time() {
        let p = MsgId {
            time: 100,
            tag: u32::MAX,
        };
        let n = MsgId::next_after(Some(p), 100);
        assert_eq!(n, MsgId { time: 101, tag: 0 });
        assert!(n > p);
        // Even at the end of time nothing overflows.
        let p = MsgId {
            time: u64::MAX,
            tag: u32::MAX,
        };
        assert_eq!(
            MsgId::next_after(Some(p), 0),
            MsgId {
                time: u64::MAX,
                tag: 0
            }
        );
    }

    #[test]
    fn next_after_is_strictly_increasing() {
        let clock = [5u64, 5, 5, 6, 4, 4, 9, 9, 1, 10];
        let mut prev = None;
        for &now in &clock {
            let n = MsgId::next_after(prev, now);
            if let Some(p) = prev {
                assert!(n > p, "{n:?} after {p:?}");
            }
            prev = Some(n);
        }
    }

    #[test]
    fn msgid_ordering_and_display() {
        let a = MsgId { time: 1, tag: 9 };
        let b = MsgId { time: 2, tag: 0 };
        assert!(a < b);
        assert!(MsgId { time: 2, tag: 1 } > b);
        let mut buf = [0u8; 32];
        let n = {
            use core::fmt::Write;
            struct W<'a>(&'a mut [u8], usize);
            impl Write for W<'_> {
                fn write_str(&mut self, s: &str) -> fmt::Result {
                    let end = self.1 + s.len();
                    self.0
                        .get_mut(self.1..end)
                        .ok_or(fmt::Error)?
                        .copy_from_slice(s.as_bytes());
                    self.1 = end;
                    Ok(())
                }
            }
            let mut w = W(&mut buf, 0);
            write!(
                w,
                "{}",
                MsgId {
                    time: 1764170000,
                    tag: 0
                }
            )
            .unwrap();
            w.1
        };
        assert_eq!(&buf[..n], b"1764170000:0");
    }

    #[test]
    fn http_date_known_values() {
        assert_eq!(&date_str(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&date_str(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&date_str(1764170000), b"Wed, 26 Nov 2025 15:13:20 GMT");
        assert_eq!(&date_str(86399), b"Thu, 01 Jan 1970 23:59:59 GMT");
        assert_eq!(&date_str(946684799), b"Fri, 31 Dec 1999 23:59:59 GMT");
        assert_eq!(&date_str(946684800), b"Sat, 01 Jan 2000 00:00:00 GMT");
        assert_eq!(&date_str(2147483647), b"Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(&date_str(4294967295), b"Sun, 07 Feb 2106 06:28:15 GMT");
    }

    #[test]
    fn http_date_leap_years() {
        // 2000 is a leap year (divisible by 400).
        assert_eq!(&date_str(951782400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&date_str(951868800), b"Wed, 01 Mar 2000 00:00:00 GMT");
        // 2024 is leap, 2023 is not.
        assert_eq!(&date_str(1709164800), b"Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(&date_str(1677628800), b"Wed, 01 Mar 2023 00:00:00 GMT");
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        assert_eq!(&date_str(4107456000), b"Sun, 28 Feb 2100 00:00:00 GMT");
        assert_eq!(&date_str(4107542400), b"Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(&date_str(4133894400), b"Fri, 31 Dec 2100 00:00:00 GMT");
    }

    #[test]
    fn http_date_clamps_far_future() {
        assert_eq!(&date_str(MAX_HTTP_TIME), b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(&date_str(u64::MAX), b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(
            parse_http_date(b"Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_HTTP_TIME)
        );
    }

    #[test]
    fn civil_round_trip_every_day() {
        // Every day from 1970 to past 2100, plus days near year 9999.
        let tail = (MAX_HTTP_TIME / 86_400 - 800)..=(MAX_HTTP_TIME / 86_400);
        for days in (0..50_000u64).chain(tail) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn parse_three_formats() {
        let want = Some(784111777);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(parse_http_date(b"Sun Nov 06 08:49:37 1994"), want);
        assert_eq!(
            parse_http_date(b"Wednesday, 26-Nov-25 15:13:20 GMT"),
            Some(1764170000)
        );
        assert_eq!(
            parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT"),
            Some(0)
        );
        // Two-digit years below 70 are this century.
        assert_eq!(
            parse_http_date(b"Monday, 06-Nov-60 08:49:37 GMT"),
            Some(2866956577)
        );
    }

    #[test]
    fn parse_tolerates_whitespace_and_case() {
        assert_eq!(
            parse_http_date(b"  Sun, 06 Nov 1994 08:49:37 GMT \t"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date(b"sun, 06 nov 1994 08:49:37 gmt"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date(b"\tSun Nov  6 08:49:37 1994 "),
            Some(784111777)
        );
        // A wrong weekday is tolerated.
        assert_eq!(
            parse_http_date(b"Mon, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
    }

    #[test]
    fn parse_leap_days() {
        assert_eq!(
            parse_http_date(b"Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951782400)
        );
        assert_eq!(
            parse_http_date(b"Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1709208000)
        );
        assert_eq!(parse_http_date(b"Mon, 29 Feb 2100 00:00:00 GMT"), None);
        assert_eq!(parse_http_date(b"Wed, 29 Feb 2023 00:00:00 GMT"), None);
        assert_eq!(parse_http_date(b"Wed, 29 Feb 1900 00:00:00 GMT"), None);
    }

    #[test]
    fn parse_rejects_out_of_range() {
        for bad in [
            &b"Sun, 06 Nov 1994 24:00:00 GMT"[..],
            b"Sun, 06 Nov 1994 23:60:00 GMT",
            b"Sun, 06 Nov 1994 23:59:60 GMT",
            b"Sun, 30 Feb 1994 08:49:37 GMT",
            b"Sun, 31 Apr 1994 08:49:37 GMT",
            b"Sun, 32 Jan 1994 08:49:37 GMT",
            b"Sun, 00 Jan 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sunday, 31-Jun-94 08:49:37 GMT",
            b"Sunday, 06-Nov-94 24:49:37 GMT",
            b"Sun Nov 31 08:49:37 1994",
            b"Sun Nov  0 08:49:37 1994",
            b"Sun Nov  6 25:49:37 1994",
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            &b""[..],
            b"   ",
            b"0",
            b"784111777",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Nov 1994 08:49:37 GMT x",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun,  6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 94 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08-49-37 GMT",
            b"Sun, 06 Nov 1994 8:49:37 GMT ",
            b"Sun, 06 Nov +994 08:49:37 GMT",
            b"Sun, 0a Nov 1994 08:49:37 GMT",
            b"Xyz, 06 Nov 1994 08:49:37 GMT",
            b"Sun; 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06-Nov-94 08:49:37 GMT",
            b"Sunday, 06 Nov 1994 08:49:37 GMT",
            b"Sunday, 06-Nov-1994 08:49:37 GMT",
            b"Sun Nov 6 08:49:37 1994",
            b"Sun Nov  6 08:49:37 94",
            b"Sun Nov  6 08:49:37 1994 GMT",
            b"Sunx Nov  6 08:49:37 199",
            b",",
            b"Sun, 06 Nov 1994 08:49:37 GMT; length=12",
            b"\xff\xfe\xfd, 06 Nov 1994 08:49:37 GMT",
            b"Sun,\x0006 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn format_parse_round_trip() {
        // A spread of times across the whole range, including each day's edges.
        let mut t = 0u64;
        while t <= MAX_HTTP_TIME {
            for dt in [0, 1, 86_399] {
                let x = (t + dt).min(MAX_HTTP_TIME);
                assert_eq!(parse_http_date(&http_date(x)), Some(x), "{x}");
            }
            t += 86_400 * 37 + 12_345;
        }
        for x in [
            0, 1, 59, 60, 3599, 3600, 784111777, 951782400, 1764170000, 4107542399,
        ] {
            assert_eq!(parse_http_date(&http_date(x)), Some(x));
        }
    }

    #[test]
    fn parse_never_panics_on_junk() {
        // Deterministic pseudo-random bytes of every length around the formats'.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 40];
        for len in 0..buf.len() {
            for _ in 0..500 {
                for b in buf.iter_mut().take(len) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *b = (seed >> 24) as u8;
                }
                let _ = parse_http_date(&buf[..len]);
                let _ = parse_etag(&buf[..len]);
            }
        }
        // Mutations of a valid date: every byte replaced by every value.
        let base = *b"Sun, 06 Nov 1994 08:49:37 GMT";
        for i in 0..base.len() {
            for v in 0..=255u8 {
                let mut s = base;
                s[i] = v;
                if let Some(t) = parse_http_date(&s) {
                    assert!(t <= MAX_HTTP_TIME);
                }
            }
        }
    }

    #[test]
    fn etag_format() {
        assert_eq!(etag(0).as_bytes(), b"\"0\"");
        assert_eq!(etag(5).as_str(), "\"5\"");
        assert_eq!(etag(10).as_bytes(), b"\"10\"");
        assert_eq!(etag(1234567).as_bytes(), b"\"1234567\"");
        assert_eq!(etag(u32::MAX).as_bytes(), b"\"4294967295\"");
        assert_eq!(etag(42).as_ref(), b"\"42\"");
    }

    #[test]
    fn etag_round_trip() {
        let mut v = 0u32;
        loop {
            assert_eq!(parse_etag(etag(v).as_bytes()), Some(v));
            match v.checked_mul(3).and_then(|x| x.checked_add(1)) {
                Some(n) => v = n,
                None => break,
            }
        }
        assert_eq!(parse_etag(etag(u32::MAX).as_bytes()), Some(u32::MAX));
    }

    #[test]
    fn parse_etag_forms() {
        assert_eq!(parse_etag(b"\"5\""), Some(5));
        assert_eq!(parse_etag(b"5"), Some(5));
        assert_eq!(parse_etag(b"W/\"5\""), Some(5));
        assert_eq!(parse_etag(b"  \"5\"\t"), Some(5));
        assert_eq!(parse_etag(b" W/\"12\" "), Some(12));
        assert_eq!(parse_etag(b"\"7\", \"8\""), Some(7));
        assert_eq!(parse_etag(b"W/\"7\",W/\"8\""), Some(7));
        assert_eq!(parse_etag(b"007"), Some(7));
        assert_eq!(parse_etag(b"4294967295"), Some(u32::MAX));
    }

    #[test]
    fn parse_etag_refusals() {
        for bad in [
            &b""[..],
            b" ",
            b"\"\"",
            b"\"",
            b"\"5",
            b"5\"",
            b"W/",
            b"W/5x",
            b"*",
            b"-1",
            b"+1",
            b"\" 5\"",
            b"\"5 \"",
            b"5 6",
            b"4294967296",
            b"99999999999999999999999",
            b"0x10",
            b"\"abc\"",
            b", \"5\"",
            b"\xff",
        ] {
            assert_eq!(parse_etag(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }

    #[test]
    fn last_event_id_parses_exactly() {
        assert_eq!(
            MsgId::parse(b"1764170000:3"),
            Some(MsgId {
                time: 1_764_170_000,
                tag: 3
            })
        );
        assert_eq!(MsgId::parse(b" 5:0 "), Some(MsgId { time: 5, tag: 0 }));
        for bad in [
            &b""[..],
            b":",
            b"5",
            b"5:",
            b":5",
            b"a:1",
            b"5:1:2",
            b"5:-1",
            b"5:4294967296",
            b"18446744073709551616:0",
            b"\xff",
        ] {
            assert_eq!(MsgId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stream_cursor_sources_in_order() {
        let after = |t, g| Cursor::after(MsgId { time: t, tag: g });
        let date = b"Wed, 26 Nov 2025 15:13:20 GMT";
        assert_eq!(
            Cursor::for_stream(Some(b"7:1"), Some(b"9:9"), None, None),
            after(7, 1)
        );
        assert_eq!(
            Cursor::for_stream(None, Some(b"9%3A2"), None, None),
            after(9, 2)
        );
        assert_eq!(
            Cursor::for_stream(None, Some(b"9:2"), None, None),
            after(9, 2)
        );
        // Garbage counts as absent: the next source decides.
        assert_eq!(
            Cursor::for_stream(Some(b"junk"), Some(b"9%3a2"), None, None),
            after(9, 2)
        );
        assert_eq!(
            Cursor::for_stream(Some(b"junk"), Some(b"%zz"), Some(date), Some(b"\"4\"")),
            after(1_764_170_000, 4)
        );
        assert_eq!(
            Cursor::for_stream(Some(b"1:99999999999"), None, None, None),
            Cursor::default()
        );
        assert_eq!(
            Cursor::for_stream(None, Some(&[b'1'; 60]), None, None),
            Cursor::default()
        );
    }

    #[test]
    fn cursor_from_headers() {
        let c = Cursor::from_headers(Some(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(b"W/\"3\""));
        assert_eq!(
            c,
            Cursor {
                since: Some(784111777),
                tag: Some(3)
            }
        );
        assert_eq!(Cursor::from_headers(None, None), Cursor::default());
        let c = Cursor::from_headers(Some(b"garbage"), Some(b"\"x\""));
        assert_eq!(c, Cursor::default());
    }

    #[test]
    fn cursor_admits() {
        let all = Cursor::default();
        assert!(all.admits(MsgId { time: 0, tag: 0 }));
        assert!(all.admits(MsgId { time: 9, tag: 9 }));

        let c = Cursor {
            since: Some(100),
            tag: Some(2),
        };
        assert!(!c.admits(MsgId { time: 99, tag: 50 }));
        assert!(!c.admits(MsgId { time: 100, tag: 1 }));
        assert!(!c.admits(MsgId { time: 100, tag: 2 }));
        assert!(c.admits(MsgId { time: 100, tag: 3 }));
        assert!(c.admits(MsgId { time: 101, tag: 0 }));

        // since without tag: every tag of that second matches.
        let c = Cursor {
            since: Some(100),
            tag: None,
        };
        assert!(!c.admits(MsgId { time: 99, tag: 0 }));
        assert!(c.admits(MsgId { time: 100, tag: 0 }));
        assert!(c.admits(MsgId { time: 100, tag: 7 }));
        assert!(c.admits(MsgId { time: 101, tag: 0 }));

        // tag without since: ignored, everything matches.
        let c = Cursor {
            since: None,
            tag: Some(5),
        };
        assert!(c.admits(MsgId { time: 0, tag: 0 }));
    }

    #[test]
    fn echoing_headers_walks_every_message_once() {
        // Messages as a channel would id them, several per second.
        let clock = [10u64, 10, 10, 11, 13, 13, 12, 20];
        let mut ids = [MsgId::default(); 8];
        let mut prev = None;
        for (slot, &now) in ids.iter_mut().zip(clock.iter()) {
            let id = MsgId::next_after(prev, now);
            *slot = id;
            prev = Some(id);
        }
        // A client that echoes Last-Modified and Etag back each time.
        let mut cursor = Cursor::default();
        let mut seen = 0;
        while let Some(&next) = ids.iter().find(|&&id| cursor.admits(id)) {
            assert_eq!(next, ids[seen]);
            seen += 1;
            let lm = http_date(next.time);
            let et = etag(next.tag);
            cursor = Cursor::from_headers(Some(&lm), Some(et.as_bytes()));
        }
        assert_eq!(seen, ids.len());
    }
}
