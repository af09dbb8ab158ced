//! Stream clients for the tests: an EventSource reader over a raw socket
//! (status, headers, chunked or close-delimited body, events and comments)
//! and WebSocket helpers (a real client, tungstenite, for what conforming
//! clients do, and raw frames for what they never send). Each can take over
//! a connection already known to be served by one worker.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{Conn, PROMPT};

/// One EventSource event, or a comment line, or the end of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    Comment(String),
    /// The body ended (the terminating chunk, or the connection closed).
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data:` lines as a browser joins them (with `\n`).
    pub data: String,
    /// The event's bytes as sent (without its blank line).
    pub raw: Vec<u8>,
    /// Every line name that was sent (to check e.g. that no `retry:` is).
    pub fields: Vec<String>,
}

pub struct EventStream {
    stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    pub status: u16,
    pub head: String,
    chunked: bool,
    chunk: Chunk,
    ended: bool,
}

/// The request of an EventSource client.
pub fn es_request(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n");
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

impl EventStream {
    /// Open a new connection to `port` and listen on `path`.
    pub fn open(port: u16, path: &str, extra: &[(&str, &str)]) -> EventStream {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).ok();
        Self::start(stream, Vec::new(), &es_request(path, extra))
    }

    /// Listen on a connection already open (served by a known worker).
    pub fn over(conn: Conn, path: &str, extra: &[(&str, &str)]) -> EventStream {
        let (stream, buf) = conn.into_parts();
        Self::start(stream, buf, &es_request(path, extra))
    }

    /// Send raw request bytes (another HTTP version, say).
    pub fn start(stream: TcpStream, buf: Vec<u8>, request: &[u8]) -> EventStream {
        Self::try_start(stream, buf, request, PROMPT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `open` for clients that must survive a server going away (a killed
    /// worker, a reload): the error instead of a panic.
    pub fn try_open(
        port: u16,
        path: &str,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<EventStream, String> {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        Self::try_start(stream, Vec::new(), &es_request(path, extra), timeout)
    }

    /// `start`, returning what went wrong instead of panicking.
    pub fn try_start(
        mut stream: TcpStream,
        buf: Vec<u8>,
        request: &[u8],
        timeout: Duration,
    ) -> Result<EventStream, String> {
        stream
            .write_all(request)
            .map_err(|e| format!("send: {e}"))?;
        let mut es = EventStream {
            stream,
            raw: buf,
            body: Vec::new(),
            status: 0,
            head: String::new(),
            chunked: false,
            chunk: Chunk::Size,
            ended: false,
        };
        es.read_head(Instant::now() + timeout)?;
        Ok(es)
    }

    /// The socket (to reset it, say).
    pub fn socket(&self) -> &TcpStream {
        &self.stream
    }

    fn fill(&mut self, end: Instant) -> io::Result<bool> {
        let now = Instant::now();
        if now >= end {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(end - now))?;
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.raw.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::ErrorKind::TimedOut.into())
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn read_head(&mut self, end: Instant) -> Result<(), String> {
        loop {
            if let Some(i) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                self.head = String::from_utf8_lossy(&self.raw[..i]).into_owned();
                self.raw.drain(..i + 4);
                break;
            }
            match self.fill(end) {
                Ok(true) => {}
                other => {
                    return Err(format!(
                        "no response head: {other:?} {:?}",
                        String::from_utf8_lossy(&self.raw)
                    ))
                }
            }
        }
        self.status = self
            .head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.chunked = self
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if let Some(n) = self
            .header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            // A plain answer (a refusal, a poll): read it whole.
            while self.raw.len() < n {
                if !matches!(self.fill(end), Ok(true)) {
                    break;
                }
            }
            self.body = self.raw.drain(..n.min(self.raw.len())).collect();
            self.ended = true;
        }
        Ok(())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The whole body of a non-stream answer.
    pub fn plain_body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Move decoded body bytes from `raw` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(i) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..i]).into_owned();
                    self.raw.drain(..i + 2);
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    self.chunk = if size == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(n) => {
                    let take = n.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.chunk = if take == n {
                        Chunk::Crlf
                    } else {
                        Chunk::Data(n - take)
                    };
                    if take < n {
                        return;
                    }
                }
                Chunk::Crlf => {
                    if self.raw.len() < 2 {
                        return;
                    }
                    self.raw.drain(..2);
                    self.chunk = Chunk::Size;
                }
                Chunk::Done => {
                    self.ended = true;
                    return;
                }
            }
        }
    }

    /// The next event or comment, or `End`; `None` if nothing arrives
    /// within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<Item> {
        self.try_next(timeout).ok().flatten()
    }

    /// `next`, telling a timeout (`Ok(None)`) from a broken connection
    /// (`Err`).
    pub fn try_next(&mut self, timeout: Duration) -> io::Result<Option<Item>> {
        let end = Instant::now() + timeout;
        loop {
            self.decode();
            if let Some(i) = self.body.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.body.drain(..i + 2).take(i).collect();
                return Ok(Some(parse_item(raw)));
            }
            if self.ended && self.body.is_empty() {
                return Ok(Some(Item::End));
            }
            match self.fill(end) {
                Ok(true) => {}
                Ok(false) => {
                    // Closed. What is left is an event cut short (its
                    // server died in the middle of it): dropped, as a
                    // browser drops it. (Waiting for more would spin.)
                    self.ended = true;
                    self.body.clear();
                    return Ok(Some(Item::End));
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next item, which must come within the test's patience.
    pub fn expect(&mut self) -> Item {
        self.next(PROMPT)
            .expect("a stream item within the deadline")
    }

    /// The next event, skipping comments (`: hi`, pings).
    pub fn event(&mut self) -> Event {
        loop {
            match self.expect() {
                Item::Event(e) => return e,
                Item::Comment(_) => continue,
                Item::End => panic!("the stream ended while an event was expected"),
            }
        }
    }

    /// Nothing at all arrives within `dur`.
    pub fn silent_for(&mut self, dur: Duration) -> bool {
        self.next(dur).is_none()
    }

    /// Stop reading (the socket stays open until dropped).
    pub fn into_socket(self) -> TcpStream {
        self.stream
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    Crlf,
    Done,
}

fn parse_item(raw: Vec<u8>) -> Item {
    let text = String::from_utf8(raw.clone()).expect("event bytes are UTF-8 in these tests");
    if text.starts_with(':') && !text.contains('\n') {
        return Item::Comment(text[1..].trim_start().to_string());
    }
    let mut e = Event {
        raw,
        ..Event::default()
    };
    let mut data = Vec::new();
    for line in text.split('\n') {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        e.fields.push(name.to_string());
        match name {
            "id" => e.id = Some(value.to_string()),
            "event" => e.event = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
    e.data = data.join("\n");
    Item::Event(e)
}

// ---------------------------------------------------------------------------
// WebSocket

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket client (tungstenite) on `path`, over `stream`, offering the
/// subprotocols `protocols` (comma-separated, or none).
pub fn ws_over(
    stream: TcpStream,
    port: u16,
    path: &str,
    protocols: Option<&str>,
) -> (Ws, tungstenite::handshake::client::Response) {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("request");
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().expect("header value"));
    }
    stream.set_read_timeout(Some(PROMPT)).ok();
    stream.set_nodelay(true).ok();
    tungstenite::client(req, stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake on {path}: {e}"))
}

pub fn ws_open(
    port: u16,
    path: &str,
    protocols: Option<&str>,
) -> (Ws, tungstenite::handshake::client::Response) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    ws_over(stream, port, path, protocols)
}

/// A WebSocket client over a connection served by a known worker.
pub fn ws_on(conn: Conn, path: &str, protocols: Option<&str>) -> Ws {
    let port = conn.port;
    let (stream, rest) = conn.into_parts();
    assert!(rest.is_empty(), "nothing pending on the connection");
    ws_over(stream, port, path, protocols).0
}

/// The next data message (answering pings, as browsers do), within `timeout`.
pub fn ws_next(ws: &mut Ws, timeout: Duration) -> Option<tungstenite::Message> {
    ws.get_mut().set_read_timeout(Some(timeout)).ok();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Ping(_)) | Ok(tungstenite::Message::Pong(_)) => continue,
            Ok(m) => return Some(m),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("WebSocket read: {e}"),
        }
    }
}

/// The next data message, which must come.
pub fn ws_expect(ws: &mut Ws) -> tungstenite::Message {
    ws_next(ws, PROMPT).expect("a WebSocket message within the deadline")
}

/// What the server ended the WebSocket with: its close code.
pub fn ws_close_code(ws: &mut Ws) -> Option<u16> {
    ws.get_mut().set_read_timeout(Some(PROMPT)).ok();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(f))) => return Some(f.code.into()),
            Ok(tungstenite::Message::Close(None)) => return None,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return None
            }
            Err(e) => panic!("WebSocket read while waiting for a close: {e}"),
        }
    }
}

/// A raw WebSocket upgrade on a new connection: the socket after a `101`,
/// for sending what conforming clients never send.
pub fn raw_ws(port: u16, path: &str, extra: &[(&str, &str)]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Version"))
    {
        r.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    s.write_all(r.as_bytes()).expect("send");
    s.set_read_timeout(Some(PROMPT)).ok();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if masked { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(m | n as u8);
    } else if n <= 65535 {
        out.push(m | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Read server frames until a close frame: its code (None: EOF first).
pub fn raw_close_code(s: &mut TcpStream) -> Option<u16> {
    let end = Instant::now() + PROMPT;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        while buf.len() >= 2 {
            let n = (buf[1] & 0x7f) as usize;
            let (hl, len) = match n {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => break,
                n => (2, n),
            };
            if buf.len() < hl + len {
                break;
            }
            let opcode = buf[0] & 0x0f;
            if opcode == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[hl], buf[hl + 1]]));
            }
            buf.drain(..hl + len);
        }
        if Instant::now() >= end {
            return None;
        }
        s.set_read_timeout(Some(end - Instant::now())).ok();
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}
