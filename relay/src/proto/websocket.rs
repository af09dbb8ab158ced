//! RFC 6455 as this relay speaks it: the handshake's accept key and
//! subprotocol, the frames it sends (unmasked, whole messages), and an
//! incremental parser for what clients send, which must be masked and
//! small, and whose data is ignored.

use base64::Engine;
use sha1::{Digest, Sha1};

use super::cursor::MsgId;
use super::text::{list_has, trim, Decimal};

/// nchan's framing with the message id and type, which its browser client
/// (NchanSubscriber.js) offers and uses to resume.
pub const META_PROTOCOL: &str = "ws+meta.nchan";

/// The largest frame, or fragmented message, a client may send.
pub const MAX_CLIENT_MESSAGE: u64 = 64 * 1024;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(trim(key));
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Does the client's `Sec-WebSocket-Protocol` offer `ws+meta.nchan`?
pub fn offers_meta(protocols: Option<&[u8]>) -> bool {
    protocols.is_some_and(|p| list_has(p, META_PROTOCOL.as_bytes()))
}

pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

pub mod close {
    /// The server is going away: reload, quit, `push_listener_timeout`.
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const TOO_BIG: u16 = 1009;
    /// `last` rule: a newer listener took the channel.
    pub const CONFLICT: u16 = 4409;
    /// The channel was deleted.
    pub const GONE: u16 = 4410;
}

/// Append the header of an unmasked, final frame of `len` bytes.
pub fn frame_header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A whole frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    frame_header(opcode, payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` and no reason.
pub const fn close_frame(code: u16) -> [u8; 4] {
    let c = code.to_be_bytes();
    [0x80 | op::CLOSE, 2, c[0], c[1]]
}

/// Text when the body is UTF-8 and not declared octet-stream; else binary
/// (RFC 6455 requires text frames to be UTF-8; nchan's clients read
/// `application/octet-stream` as binary).
pub fn data_opcode(content_type: &[u8], body: &[u8]) -> u8 {
    let base = trim(content_type.split(|&c| c == b';').next().unwrap_or(&[]));
    if base.eq_ignore_ascii_case(b"application/octet-stream") || core::str::from_utf8(body).is_err()
    {
        op::BINARY
    } else {
        op::TEXT
    }
}

/// The frame of a message: its body, or with `ws+meta.nchan` the lines
/// `id: <time>:<tag>`, `content-type: <type>`, an empty line, then the body.
pub fn message_frame(id: MsgId, content_type: &[u8], body: &[u8], meta: bool) -> Vec<u8> {
    let opcode = data_opcode(content_type, body);
    if !meta {
        return frame(opcode, body);
    }
    let mut payload = Vec::with_capacity(body.len() + content_type.len() + 48);
    payload.extend_from_slice(b"id: ");
    payload.extend_from_slice(Decimal::new(id.time).as_bytes());
    payload.push(b':');
    payload.extend_from_slice(Decimal::new(u64::from(id.tag)).as_bytes());
    payload.extend_from_slice(b"\ncontent-type: ");
    payload.extend_from_slice(content_type);
    payload.extend_from_slice(b"\n\n");
    payload.extend_from_slice(body);
    frame(opcode, &payload)
}

/// What a client sent, as far as the server acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// The client closes (with its code, if it sent a valid one): answer
    /// with a close frame and linger.
    Close(Option<u16>),
    /// Close the connection with this code (1002 protocol error, 1009 too
    /// big).
    Fail(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload,
    Done,
}

/// The incremental parser of client frames; it never buffers more than a
/// frame header and a control frame's 125 bytes.
#[derive(Debug)]
pub struct Parser {
    state: State,
    head: [u8; 14],
    head_len: usize,
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    left: u64,
    at: usize,
    control: Vec<u8>,
    /// Inside a fragmented data message, and its size so far.
    message: Option<u64>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Header,
            head: [0; 14],
            head_len: 0,
            opcode: 0,
            fin: false,
            mask: [0; 4],
            left: 0,
            at: 0,
            control: Vec::new(),
            message: None,
        }
    }
}

/// How long the header is once its first two bytes are known.
fn header_len(b1: u8) -> usize {
    2 + match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    } + 4
}

fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

impl Parser {
    /// Bytes it holds between calls: a partial frame header and a control
    /// frame's payload; never more than 14 + 125 (the fuzz target checks).
    pub fn buffered(&self) -> usize {
        self.head_len + self.control.len()
    }

    /// Has the parser seen a close or an error (it reads nothing more)?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed bytes the client sent; what needs an answer goes to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Incoming>) {
        while !data.is_empty() && self.state != State::Done {
            match self.state {
                State::Header => {
                    let want = if self.head_len < 2 {
                        2
                    } else {
                        header_len(self.head[1])
                    };
                    let take = (want - self.head_len).min(data.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                    self.head_len += take;
                    data = &data[take..];
                    if self.head_len == 2 && self.head[1] & 0x80 == 0 {
                        // Unmasked: known from the second byte, whatever follows.
                        self.fail(close::PROTOCOL_ERROR, out);
                        continue;
                    }
                    if self.head_len == header_len(self.head[1]) {
                        match self.start_frame() {
                            Err(code) => self.fail(code, out),
                            // An empty frame is whole with its header.
                            Ok(()) if self.left == 0 => self.end_frame(out),
                            Ok(()) => {}
                        }
                    }
                }
                State::Payload => {
                    let take = (self.left.min(data.len() as u64)) as usize;
                    if self.opcode >= op::CLOSE {
                        for &b in &data[..take] {
                            self.control.push(b ^ self.mask[self.at % 4]);
                            self.at += 1;
                        }
                    }
                    self.left -= take as u64;
                    data = &data[take..];
                    if self.left == 0 {
                        self.end_frame(out);
                    }
                }
                State::Done => {}
            }
        }
    }

    fn fail(&mut self, code: u16, out: &mut Vec<Incoming>) {
        self.state = State::Done;
        out.push(Incoming::Fail(code));
    }

    fn start_frame(&mut self) -> Result<(), u16> {
        let (b0, b1) = (self.head[0], self.head[1]);
        self.fin = b0 & 0x80 != 0;
        self.opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved bits (no extension was agreed), or an unmasked frame.
            return Err(close::PROTOCOL_ERROR);
        }
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let m = self.head_len - 4;
        self.mask.copy_from_slice(&self.head[m..m + 4]);
        match self.opcode {
            op::CLOSE | op::PING | op::PONG => {
                if !self.fin || len > 125 {
                    return Err(close::PROTOCOL_ERROR);
                }
            }
            op::TEXT | op::BINARY | op::CONTINUATION => {
                let so_far = match (self.opcode, self.message) {
                    (op::CONTINUATION, Some(n)) => n,
                    (op::CONTINUATION, None) => return Err(close::PROTOCOL_ERROR),
                    (_, Some(_)) => return Err(close::PROTOCOL_ERROR),
                    (_, None) => 0,
                };
                let total = so_far.saturating_add(len);
                if total > MAX_CLIENT_MESSAGE {
                    return Err(close::TOO_BIG);
                }
                self.message = (!self.fin).then_some(total);
            }
            _ => return Err(close::PROTOCOL_ERROR),
        }
        self.left = len;
        self.at = 0;
        self.control.clear();
        self.head_len = 0;
        self.state = State::Payload;
        Ok(())
    }

    fn end_frame(&mut self, out: &mut Vec<Incoming>) {
        self.state = State::Header;
        match self.opcode {
            op::PING => out.push(Incoming::Ping(core::mem::take(&mut self.control))),
            op::CLOSE => {
                self.state = State::Done;
                let c = &self.control;
                let answer = match c.len() {
                    0 => Incoming::Close(None),
                    1 => Incoming::Fail(close::PROTOCOL_ERROR),
                    _ => {
                        let code = u16::from_be_bytes([c[0], c[1]]);
                        if valid_close_code(code) && core::str::from_utf8(&c[2..]).is_ok() {
                            Incoming::Close(Some(code))
                        } else {
                            Incoming::Fail(close::PROTOCOL_ERROR)
                        }
                    }
                };
                out.push(answer);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_6455() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn meta_protocol_is_found_anywhere_in_the_list() {
        assert!(offers_meta(Some(b"chat, ws+meta.nchan")));
        assert!(offers_meta(Some(b"ws+meta.nchan")));
        assert!(!offers_meta(Some(b"ws+meta.nchanx")));
        assert!(!offers_meta(None));
    }

    #[test]
    fn server_frames() {
        assert_eq!(frame(op::TEXT, b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = frame(op::BINARY, &[0u8; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = frame(op::TEXT, &vec![b'a'; 70_000]);
        assert_eq!(&f[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
        assert_eq!(close_frame(4410), [0x88, 2, 0x11, 0x3a]);
    }

    #[test]
    fn text_or_binary() {
        assert_eq!(data_opcode(b"text/plain", b"ok"), op::TEXT);
        assert_eq!(data_opcode(b"", "\u{1F600}".as_bytes()), op::TEXT);
        assert_eq!(
            data_opcode(b"Application/Octet-Stream; x=1", b"ok"),
            op::BINARY
        );
        assert_eq!(data_opcode(b"text/plain", b"\xff\xfe"), op::BINARY);
    }

    #[test]
    fn meta_frames_carry_id_and_type() {
        let f = message_frame(MsgId { time: 5, tag: 1 }, b"text/plain", b"body", true);
        assert_eq!(f[0], 0x81);
        assert_eq!(&f[2..], b"id: 5:1\ncontent-type: text/plain\n\nbody");
        let bare = message_frame(MsgId { time: 5, tag: 1 }, b"text/plain", b"body", false);
        assert_eq!(&bare[2..], b"body");
    }

    /// A masked client frame.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let n = payload.len();
        if n < 126 {
            out.push(0x80 | n as u8);
        } else if n <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse_all(bytes: &[u8]) -> Vec<Incoming> {
        let mut p = Parser::default();
        let mut out = vec![];
        p.feed(bytes, &mut out);
        out
    }

    #[test]
    fn ping_close_and_ignored_data() {
        let mut bytes = client(true, op::TEXT, b"ignored");
        bytes.extend(client(true, op::PING, b"p1"));
        bytes.extend(client(true, op::PONG, b""));
        bytes.extend(client(true, op::PING, b""));
        bytes.extend(client(true, op::CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']));
        bytes.extend(client(true, op::PING, b"after close"));
        assert_eq!(
            parse_all(&bytes),
            vec![
                Incoming::Ping(b"p1".to_vec()),
                Incoming::Ping(vec![]),
                Incoming::Close(Some(1000))
            ]
        );
    }

    #[test]
    fn every_split_of_the_input_gives_the_same_result() {
        let mut bytes = client(false, op::BINARY, &[9; 300]);
        bytes.extend(client(true, op::PING, b"mid"));
        bytes.extend(client(true, op::CONTINUATION, &[8; 70]));
        bytes.extend(client(true, op::CLOSE, &[]));
        let whole = parse_all(&bytes);
        assert_eq!(
            whole,
            vec![Incoming::Ping(b"mid".to_vec()), Incoming::Close(None)]
        );
        for cut in 0..bytes.len() {
            let mut p = Parser::default();
            let mut out = vec![];
            p.feed(&bytes[..cut], &mut out);
            p.feed(&bytes[cut..], &mut out);
            assert_eq!(out, whole, "split at {cut}");
        }
        let mut p = Parser::default();
        let mut out = vec![];
        for b in &bytes {
            p.feed(core::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, whole, "byte by byte");
    }

    #[test]
    fn protocol_errors_close_with_1002() {
        let unmasked = [0x81u8, 2, b'h', b'i'];
        assert_eq!(parse_all(&unmasked), vec![Incoming::Fail(1002)]);
        let mut rsv = client(true, op::TEXT, b"x");
        rsv[0] |= 0x40;
        assert_eq!(parse_all(&rsv), vec![Incoming::Fail(1002)]);
        assert_eq!(
            parse_all(&client(true, 0x3, b"")),
            vec![Incoming::Fail(1002)]
        );
        assert_eq!(
            parse_all(&client(false, op::PING, b"")),
            vec![Incoming::Fail(1002)],
            "fragmented control frame"
        );
        assert_eq!(
            parse_all(&client(true, op::PING, &[0; 126])),
            vec![Incoming::Fail(1002)],
            "control frame over 125"
        );
        assert_eq!(
            parse_all(&client(true, op::CONTINUATION, b"x")),
            vec![Incoming::Fail(1002)],
            "continuation of nothing"
        );
        let mut two = client(false, op::TEXT, b"a");
        two.extend(client(true, op::TEXT, b"b"));
        assert_eq!(
            parse_all(&two),
            vec![Incoming::Fail(1002)],
            "new message mid-message"
        );
        assert_eq!(
            parse_all(&client(true, op::CLOSE, &[0x03])),
            vec![Incoming::Fail(1002)],
            "close with one byte"
        );
        assert_eq!(
            parse_all(&client(true, op::CLOSE, &[0x03, 0xed])),
            vec![Incoming::Fail(1002)],
            "1005 may not be sent"
        );
        assert_eq!(
            parse_all(&client(true, op::CLOSE, &[0x03, 0xe8, 0xff])),
            vec![Incoming::Fail(1002)],
            "reason not UTF-8"
        );
    }

    #[test]
    fn big_frames_and_big_messages_close_with_1009() {
        let mut head = vec![0x82u8, 0x80 | 127];
        head.extend_from_slice(&(MAX_CLIENT_MESSAGE + 1).to_be_bytes());
        head.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse_all(&head),
            vec![Incoming::Fail(1009)],
            "one big frame, header only"
        );
        let mut parts = client(false, op::TEXT, &vec![b'a'; 40_000]);
        parts.extend(client(true, op::CONTINUATION, &vec![b'a'; 40_000]));
        assert_eq!(
            parse_all(&parts),
            vec![Incoming::Fail(1009)],
            "fragments add up"
        );
        let exact = client(true, op::BINARY, &vec![0; MAX_CLIENT_MESSAGE as usize]);
        assert_eq!(parse_all(&exact), vec![], "64 KiB is allowed");
    }
}
