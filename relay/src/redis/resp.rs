//! RESP: the command encoder and an incremental RESP3 (and RESP2) decoder.
//!
//! Why our own codec and not the `redis-protocol` crate (6.0, without its
//! tokio `codec` feature): this is a hot path in an nginx worker, and the
//! crate's decoder
//! - re-parses a partial frame from its first byte on every read (it only
//!   says "incomplete"), which is quadratic for a large message arriving in
//!   many reads; ours remembers how many bytes the frame needs at least and
//!   does not look again before they are there;
//! - builds owned frames (or ranges to resolve afterwards); ours borrows
//!   bulk strings straight from the read buffer, so a message body is copied
//!   once, into the relay's copy room;
//! - sizes aggregates from the header it was sent (nom's `count`), where
//!   ours caps every allocation by the bytes actually received and by
//!   [`Limits`], so no header can make it allocate much;
//! - pulls in nom, cookie-factory, crc16 and log for the ~300 lines needed
//!   here.
//!
//! The decoder never panics, whatever the bytes (only checked slicing, no
//! unchecked arithmetic); anything it cannot accept is a [`ProtoError`],
//! after which the connection must be dropped. Streamed strings and
//! aggregates (`$?`, `*?`), which Redis never sends, are refused. Attributes
//! (`|`) are read and dropped.

use std::cell::Cell;

use crate::proto::text::{parse_u64, push_u64, Decimal};

/// One argument of a command.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    B(&'a [u8]),
    U(u64),
    I(i64),
}

/// Append one command (a RESP array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[Arg<'_>]) {
    out.push(b'*');
    push_u64(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        match *a {
            Arg::B(b) => bulk(out, &[b]),
            Arg::U(v) => bulk(out, &[Decimal::new(v).as_bytes()]),
            Arg::I(v) => {
                let sign: &[u8] = if v < 0 { b"-" } else { b"" };
                bulk(out, &[sign, Decimal::new(v.unsigned_abs()).as_bytes()]);
            }
        }
    }
}

/// One bulk string made of `parts`.
fn bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'$');
    push_u64(out, parts.iter().map(|p| p.len()).sum::<usize>() as u64);
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// A decoded reply or push; strings borrow the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `+`
    Simple(&'a [u8]),
    /// `-` and `!`
    Error(&'a [u8]),
    /// `:`
    Int(i64),
    /// `$` and `=` (a verbatim string without its `xxx:` format)
    Bulk(&'a [u8]),
    /// `_`, and RESP2's `$-1` / `*-1`
    Null,
    /// `#`
    Bool(bool),
    /// `,` as sent
    Double(&'a [u8]),
    /// `(` as sent
    BigNumber(&'a [u8]),
    /// `*` and `~`
    Array(Vec<Frame<'a>>),
    /// `%`: keys and values alternate
    Map(Vec<Frame<'a>>),
    /// `>`: out-of-band (pub/sub messages, subscribe confirmations)
    Push(Vec<Frame<'a>>),
}

impl<'a> Frame<'a> {
    /// The bytes of a string-like frame.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Frame::Simple(b) | Frame::Bulk(b) | Frame::Double(b) | Frame::BigNumber(b) => Some(b),
            _ => None,
        }
    }

    /// An integer, also one sent as a string of digits.
    pub fn int(&self) -> Option<i64> {
        match *self {
            Frame::Int(i) => Some(i),
            Frame::Simple(b) | Frame::Bulk(b) => parse_i64(b),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Frame<'a>]> {
        match self {
            Frame::Array(v) | Frame::Map(v) | Frame::Push(v) => Some(v),
            _ => None,
        }
    }
}

/// What the decoder refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// An unknown type byte.
    BadType(u8),
    /// A length or integer that is not a number, or out of range.
    BadNumber,
    /// A line not ended by CRLF where one must end.
    BadFraming,
    /// Over one of the [`Limits`].
    TooLarge,
    TooDeep,
    /// Streamed strings or aggregates.
    Unsupported,
}

impl ProtoError {
    pub fn reason(self) -> &'static str {
        match self {
            ProtoError::BadType(_) => "unknown RESP type",
            ProtoError::BadNumber => "bad RESP number or length",
            ProtoError::BadFraming => "bad RESP framing",
            ProtoError::TooLarge => "RESP reply over the size limits",
            ProtoError::TooDeep => "RESP reply nested too deeply",
            ProtoError::Unsupported => "streamed RESP3 types are not supported",
        }
    }
}

/// Bounds on what one frame may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A bulk string's length.
    pub max_bulk: usize,
    /// A whole frame, nested parts included.
    pub max_frame: usize,
    /// Elements of one aggregate (a map counts keys and values).
    pub max_elements: usize,
    pub max_depth: usize,
    /// A simple string, error or number line.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Redis's own proto-max-bulk-len.
            max_bulk: 512 * 1024 * 1024,
            max_frame: 1024 * 1024 * 1024,
            max_elements: 1 << 20,
            max_depth: 16,
            max_line: 64 * 1024,
        }
    }
}

enum Stop {
    /// At least this many bytes (from the frame's start) are needed.
    Need(usize),
    Bad(ProtoError),
}

impl From<ProtoError> for Stop {
    fn from(e: ProtoError) -> Self {
        Stop::Bad(e)
    }
}

type R<T> = Result<T, Stop>;

struct Parser<'a, 'l> {
    buf: &'a [u8],
    lim: &'l Limits,
}

/// A decimal integer with an optional sign, if it fits an `i64`.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    let v = parse_u64(digits)?;
    if neg {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

impl<'a> Parser<'a, '_> {
    fn need(&self, n: usize) -> Stop {
        if n > self.lim.max_frame {
            Stop::Bad(ProtoError::TooLarge)
        } else {
            Stop::Need(n)
        }
    }

    /// The line starting at `at` (without CRLF) and where the next begins.
    fn line(&self, at: usize) -> R<(&'a [u8], usize)> {
        let rest = self.buf.get(at..).unwrap_or(&[]);
        let window = &rest[..rest.len().min(self.lim.max_line.saturating_add(2))];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if i == 0 || window[i - 1] != b'\r' {
                    return Err(Stop::Bad(ProtoError::BadFraming));
                }
                Ok((&window[..i - 1], at + i + 1))
            }
            None if window.len() < rest.len() || rest.len() > self.lim.max_line + 1 => {
                Err(Stop::Bad(ProtoError::TooLarge))
            }
            None => Err(self.need(self.buf.len().saturating_add(1))),
        }
    }

    fn number(&self, at: usize) -> R<(i64, usize)> {
        let (l, next) = self.line(at)?;
        let v = parse_i64(l).ok_or(ProtoError::BadNumber)?;
        Ok((v, next))
    }

    /// A length header; `None` for RESP2's `-1`.
    fn length(&self, at: usize, max: usize) -> R<(Option<usize>, usize)> {
        let (l, next) = self.line(at)?;
        if l == b"?" {
            return Err(Stop::Bad(ProtoError::Unsupported));
        }
        match parse_i64(l).ok_or(ProtoError::BadNumber)? {
            -1 => Ok((None, next)),
            n if n < 0 => Err(Stop::Bad(ProtoError::BadNumber)),
            n => {
                let n = usize::try_from(n).map_err(|_| ProtoError::TooLarge)?;
                if n > max {
                    return Err(Stop::Bad(ProtoError::TooLarge));
                }
                Ok((Some(n), next))
            }
        }
    }

    fn blob(&self, at: usize) -> R<(Option<&'a [u8]>, usize)> {
        let (len, start) = self.length(at, self.lim.max_bulk)?;
        let Some(len) = len else {
            return Ok((None, start));
        };
        let end = start.checked_add(len).ok_or(ProtoError::TooLarge)?;
        let after = end.checked_add(2).ok_or(ProtoError::TooLarge)?;
        if self.buf.len() < after {
            return Err(self.need(after));
        }
        if self.buf.get(end..after) != Some(b"\r\n") {
            return Err(Stop::Bad(ProtoError::BadFraming));
        }
        Ok((self.buf.get(start..end), after))
    }

    fn items(&self, at: usize, n: usize, depth: usize) -> R<(Vec<Frame<'a>>, usize)> {
        // Every element takes 3 bytes at least: never reserve more than
        // what was received could hold.
        let room = self.buf.len().saturating_sub(at) / 3 + 1;
        let mut v = Vec::with_capacity(n.min(room));
        let mut pos = at;
        for _ in 0..n {
            let (f, next) = self.frame(pos, depth + 1)?;
            v.push(f);
            pos = next;
        }
        Ok((v, pos))
    }

    fn aggregate(
        &self,
        at: usize,
        depth: usize,
        pairs: bool,
    ) -> R<(Option<Vec<Frame<'a>>>, usize)> {
        let (n, start) = self.length(at, self.lim.max_elements)?;
        let Some(n) = n else {
            return Ok((None, start));
        };
        let n = if pairs {
            n.checked_mul(2).ok_or(ProtoError::TooLarge)?
        } else {
            n
        };
        if n > self.lim.max_elements {
            return Err(Stop::Bad(ProtoError::TooLarge));
        }
        let (v, next) = self.items(start, n, depth)?;
        Ok((Some(v), next))
    }

    fn frame(&self, at: usize, depth: usize) -> R<(Frame<'a>, usize)> {
        if depth > self.lim.max_depth {
            return Err(Stop::Bad(ProtoError::TooDeep));
        }
        let Some(&t) = self.buf.get(at) else {
            return Err(self.need(at.saturating_add(1)));
        };
        let at = at + 1;
        Ok(match t {
            b'+' => {
                let (l, n) = self.line(at)?;
                (Frame::Simple(l), n)
            }
            b'-' => {
                let (l, n) = self.line(at)?;
                (Frame::Error(l), n)
            }
            b':' => {
                let (v, n) = self.number(at)?;
                (Frame::Int(v), n)
            }
            b'$' => {
                let (b, n) = self.blob(at)?;
                (b.map_or(Frame::Null, Frame::Bulk), n)
            }
            b'!' => {
                let (b, n) = self.blob(at)?;
                (Frame::Error(b.ok_or(ProtoError::BadNumber)?), n)
            }
            b'=' => {
                let (b, n) = self.blob(at)?;
                let b = b.ok_or(ProtoError::BadNumber)?;
                match b.get(3) {
                    Some(b':') => (Frame::Bulk(&b[4..]), n),
                    _ => return Err(Stop::Bad(ProtoError::BadFraming)),
                }
            }
            b'_' => {
                let (l, n) = self.line(at)?;
                if !l.is_empty() {
                    return Err(Stop::Bad(ProtoError::BadFraming));
                }
                (Frame::Null, n)
            }
            b'#' => {
                let (l, n) = self.line(at)?;
                match l {
                    b"t" => (Frame::Bool(true), n),
                    b"f" => (Frame::Bool(false), n),
                    _ => return Err(Stop::Bad(ProtoError::BadFraming)),
                }
            }
            b',' => {
                let (l, n) = self.line(at)?;
                (Frame::Double(l), n)
            }
            b'(' => {
                let (l, n) = self.line(at)?;
                (Frame::BigNumber(l), n)
            }
            b'*' | b'~' => {
                let (v, n) = self.aggregate(at, depth, false)?;
                (v.map_or(Frame::Null, Frame::Array), n)
            }
            b'%' => {
                let (v, n) = self.aggregate(at, depth, true)?;
                (Frame::Map(v.ok_or(ProtoError::BadNumber)?), n)
            }
            b'>' => {
                let (v, n) = self.aggregate(at, depth, false)?;
                (Frame::Push(v.ok_or(ProtoError::BadNumber)?), n)
            }
            b'|' => {
                // Attributes describe the next frame: read and drop them.
                let (_, n) = self.aggregate(at, depth, true)?;
                return self.frame(n, depth + 1);
            }
            other => return Err(Stop::Bad(ProtoError::BadType(other))),
        })
    }
}

/// One frame from the start of `buf`: `Ok(Some((frame, used)))`, or
/// `Ok(None)` with `need` set to how many bytes the frame needs at least.
pub fn decode<'a>(
    buf: &'a [u8],
    lim: &Limits,
    need: &mut usize,
) -> Result<Option<(Frame<'a>, usize)>, ProtoError> {
    match (Parser { buf, lim }).frame(0, 0) {
        // `need` refuses a frame over `max_frame` while it arrives; one
        // that arrived whole is refused here, so the limit does not depend
        // on how the bytes were split.
        Ok((_, used)) if used > lim.max_frame => Err(ProtoError::TooLarge),
        Ok(f) => Ok(Some(f)),
        Err(Stop::Need(n)) => {
            *need = n;
            Ok(None)
        }
        Err(Stop::Bad(e)) => Err(e),
    }
}

/// The read side of a connection: bytes as they arrive, frames as they
/// complete. A frame borrows the buffer until it is consumed.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes (from `pos`) the next frame needs at least.
    need: Cell<usize>,
    lim: Limits,
    /// How many times `peek` ran the decoder.
    #[cfg(test)]
    decodes: Cell<u32>,
}

impl Reader {
    pub fn new(lim: Limits) -> Reader {
        Reader {
            lim,
            ..Reader::default()
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= self.buf.len() / 2) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame and its length; consume it afterwards.
    pub fn peek(&self) -> Result<Option<(Frame<'_>, usize)>, ProtoError> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() || rest.len() < self.need.get() {
            return Ok(None);
        }
        let mut need = 0;
        #[cfg(test)]
        self.decodes.set(self.decodes.get() + 1);
        let got = decode(rest, &self.lim, &mut need)?;
        self.need.set(if got.is_some() { 0 } else { need });
        Ok(got)
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        self.need.set(0);
    }

    /// Forget everything (the connection is gone).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.need.set(0);
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, ProtoError> {
        let mut need = 0;
        decode(buf, &Limits::default(), &mut need)
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(
            &mut out,
            &[Arg::B(b"SET"), Arg::B(b"k\r\n"), Arg::U(42), Arg::I(-7)],
        );
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n$2\r\n-7\r\n"
        );
        out.clear();
        command(&mut out, &[Arg::I(i64::MIN), Arg::U(u64::MAX), Arg::U(0)]);
        assert_eq!(
            out,
            b"*3\r\n$20\r\n-9223372036854775808\r\n$20\r\n18446744073709551615\r\n$1\r\n0\r\n"
        );
    }

    #[test]
    fn every_type() {
        let cases: Vec<(&[u8], Frame<'_>)> = vec![
            (b"+OK\r\n", Frame::Simple(b"OK")),
            (b"-ERR no\r\n", Frame::Error(b"ERR no")),
            (b":-12\r\n", Frame::Int(-12)),
            (b"$3\r\na\r\n\r\n", Frame::Bulk(b"a\r\n")),
            (b"$0\r\n\r\n", Frame::Bulk(b"")),
            (b"$-1\r\n", Frame::Null),
            (b"*-1\r\n", Frame::Null),
            (b"_\r\n", Frame::Null),
            (b"#t\r\n", Frame::Bool(true)),
            (b",1.5\r\n", Frame::Double(b"1.5")),
            (
                b"(123456789012345678901234\r\n",
                Frame::BigNumber(b"123456789012345678901234"),
            ),
            (b"!3\r\nbad\r\n", Frame::Error(b"bad")),
            (b"=7\r\ntxt:abc\r\n", Frame::Bulk(b"abc")),
            (
                b"*2\r\n:1\r\n$1\r\nx\r\n",
                Frame::Array(vec![Frame::Int(1), Frame::Bulk(b"x")]),
            ),
            (b"~1\r\n+a\r\n", Frame::Array(vec![Frame::Simple(b"a")])),
            (
                b"%1\r\n+k\r\n:2\r\n",
                Frame::Map(vec![Frame::Simple(b"k"), Frame::Int(2)]),
            ),
            (
                b">2\r\n+message\r\n$0\r\n\r\n",
                Frame::Push(vec![Frame::Simple(b"message"), Frame::Bulk(b"")]),
            ),
            (b"|1\r\n+ttl\r\n:3\r\n:9\r\n", Frame::Int(9)),
        ];
        for (bytes, want) in cases {
            let (f, used) = one(bytes).unwrap().unwrap();
            assert_eq!(
                (f, used),
                (want, bytes.len()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn refusals() {
        for (bytes, e) in [
            (&b"?x\r\n"[..], ProtoError::BadType(b'?')),
            (b":12a\r\n", ProtoError::BadNumber),
            (b":99999999999999999999\r\n", ProtoError::BadNumber),
            (b"$-2\r\n", ProtoError::BadNumber),
            (b"$1\r\nab\r\n", ProtoError::BadFraming),
            (b"+a\n", ProtoError::BadFraming),
            (b"$?\r\n", ProtoError::Unsupported),
            (b"*?\r\n", ProtoError::Unsupported),
            (b"#x\r\n", ProtoError::BadFraming),
            (b"$999999999999\r\n", ProtoError::TooLarge),
            (b"*99999999\r\n", ProtoError::TooLarge),
            (b"%9223372036854775807\r\n", ProtoError::TooLarge),
            (b"=2\r\nab\r\n", ProtoError::BadFraming),
        ] {
            assert_eq!(one(bytes), Err(e), "{:?}", String::from_utf8_lossy(bytes));
        }
        let deep = b"*1\r\n".repeat(40);
        assert_eq!(one(&deep), Err(ProtoError::TooDeep));
        let long = vec![b'a'; 70 * 1024];
        let mut line = b"+".to_vec();
        line.extend_from_slice(&long);
        assert_eq!(one(&line), Err(ProtoError::TooLarge));
    }

    #[test]
    fn incomplete_frames_say_what_they_need() {
        let mut need = 0;
        let lim = Limits::default();
        assert_eq!(decode(b"$10\r\nabc", &lim, &mut need), Ok(None));
        assert_eq!(need, 17);
        assert_eq!(decode(b"*2\r\n:1\r\n", &lim, &mut need), Ok(None));
        assert_eq!(need, 9);
        let tight = Limits {
            max_frame: 100,
            ..lim
        };
        assert_eq!(
            decode(b"$200\r\n", &tight, &mut need),
            Err(ProtoError::TooLarge)
        );
    }

    #[test]
    fn max_frame_holds_however_the_frame_arrives() {
        // Found by fuzz/fuzz_targets/resp.rs: a frame over `max_frame` was
        // refused when it arrived in pieces but accepted when whole.
        let mut need = 0;
        let tight = Limits {
            max_frame: 8,
            ..Limits::default()
        };
        let over = b"+0123456789\r\n";
        assert_eq!(
            decode(&over[..9], &tight, &mut need),
            Err(ProtoError::TooLarge)
        );
        assert_eq!(decode(over, &tight, &mut need), Err(ProtoError::TooLarge));
        let mut r = Reader::new(tight);
        r.feed(over);
        assert_eq!(r.peek(), Err(ProtoError::TooLarge));
        // Exactly at the limit: accepted, whole and in pieces.
        let at = b"+01234\r\n";
        assert_eq!(decode(&at[..7], &tight, &mut need), Ok(None));
        assert_eq!(need, 8);
        assert_eq!(
            decode(at, &tight, &mut need),
            Ok(Some((Frame::Simple(b"01234"), 8)))
        );
    }

    #[test]
    fn a_reply_split_at_every_byte_decodes_the_same() {
        let whole: &[u8] = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n*2\r\n%1\r\n+a\r\n*1\r\n:5\r\n_\r\n";
        for cut in 0..whole.len() {
            let mut r = Reader::default();
            r.feed(&whole[..cut]);
            let mut frames = Vec::new();
            while let Some((f, n)) = r.peek().unwrap() {
                frames.push(f.items().map(<[_]>::len));
                r.consume(n);
            }
            r.feed(&whole[cut..]);
            while let Some((f, n)) = r.peek().unwrap() {
                if let Frame::Push(v) = &f {
                    assert_eq!(v[2], Frame::Bulk(b"he\r\nl"));
                }
                frames.push(f.items().map(<[_]>::len));
                r.consume(n);
            }
            assert_eq!(frames, vec![Some(3), Some(2)], "cut at {cut}");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn a_big_bulk_in_small_reads_is_not_reparsed_each_time() {
        let body = vec![b'x'; 100_000];
        let mut all = b"$100000\r\n".to_vec();
        all.extend_from_slice(&body);
        all.extend_from_slice(b"\r\n");
        let mut r = Reader::default();
        let mut got = 0;
        for chunk in all.chunks(1000) {
            r.feed(chunk);
            if let Some((f, n)) = r.peek().unwrap() {
                assert_eq!(f, Frame::Bulk(&body));
                r.consume(n);
                got += 1;
            }
        }
        assert_eq!(got, 1);
        // Once at the first read (it learns what the frame needs), once
        // when it is all there: `peek` does not decode in between.
        let parses = r.decodes.get();
        assert!(parses <= 2, "{parses}");
        assert_eq!(r.buffered(), 0);
    }

    /// Arbitrary bytes never panic (a cheap stand-in for the fuzzer).
    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"+-:$*%~>|_#,(!=?\r\n0123456789-abc";
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let mut need = 0;
            let _ = decode(&buf, &Limits::default(), &mut need);
            let mut r = Reader::default();
            for part in buf.chunks(3) {
                r.feed(part);
                while let Ok(Some((_, n))) = r.peek() {
                    r.consume(n);
                }
            }
        }
    }
}
