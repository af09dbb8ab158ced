//! A small HTTP/1.1 client on one edge-triggered epoll loop.
//!
//! Each connection carries requests one after another (keep-alive); the
//! caller queues request bytes with [`Net::send`] and gets back completed
//! responses from [`Net::poll`]. A response that opens a stream — a `200`
//! of `text/event-stream` (EventSource, chunked or ended by the
//! connection) or a `101` (WebSocket) — turns the connection into a stream:
//! [`Event::StreamOpen`] once, then one [`Event::Message`] per event or
//! data frame. No threads, no allocation per event beyond the message.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::time::Instant;

pub type ConnId = usize;

/// One complete HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub last_modified: Option<Vec<u8>>,
    pub etag: Option<Vec<u8>>,
    pub body: Vec<u8>,
    /// When the last byte of the response was read.
    pub at: Instant,
}

/// One message of a stream: an EventSource event (its `data:` lines
/// joined by LF) or a WebSocket data frame (with `ws+meta.nchan`, its body
/// after the metadata).
#[derive(Debug)]
pub struct Msg {
    /// EventSource: the last `id:` seen on the stream; `ws+meta.nchan`: the
    /// frame's `id:` line; bare WebSocket: none.
    pub id: Option<Vec<u8>>,
    pub data: Vec<u8>,
    /// WebSocket opcode (1 text, 2 binary); 0 for EventSource.
    pub opcode: u8,
    /// When the bytes that completed it were read.
    pub at: Instant,
}

#[derive(Debug)]
pub enum Event {
    Connected(ConnId),
    Response(ConnId, Response),
    /// The head of a stream arrived (`200` event-stream or `101`); the
    /// status, and for WebSocket whether `ws+meta.nchan` was selected.
    StreamOpen(ConnId, u16, bool),
    Message(ConnId, Msg),
    /// The connection is gone (error, reset or EOF); its id stays invalid.
    Closed(ConnId, String),
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    Connecting,
    Open,
    Closed,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    Crlf,
    /// Not chunked: the body ends with the connection.
    Raw,
}

enum Mode {
    Http,
    Sse {
        chunk: Chunk,
        /// De-chunked bytes not yet split into lines.
        text: Vec<u8>,
        id: Option<Vec<u8>>,
        data: Vec<u8>,
        has_data: bool,
    },
    Ws {
        meta: bool,
        /// A fragmented message being assembled (opcode, bytes).
        partial: Option<(u8, Vec<u8>)>,
    },
}

struct Conn {
    fd: RawFd,
    state: State,
    mode: Mode,
    out: Vec<u8>,
    out_pos: usize,
    inb: Vec<u8>,
    /// Requests written or queued whose response has not arrived.
    pending: usize,
    close_after: bool,
}

pub struct Net {
    ep: RawFd,
    addr: SocketAddrV4,
    conns: Vec<Conn>,
    evbuf: Vec<libc::epoll_event>,
    scratch: Vec<u8>,
    connecting: usize,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errstr(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

impl Net {
    pub fn new(addr: SocketAddrV4) -> io::Result<Net> {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Net {
            ep,
            addr,
            conns: Vec::new(),
            evbuf: vec![libc::epoll_event { events: 0, u64: 0 }; 4096],
            scratch: vec![0u8; 256 * 1024],
            connecting: 0,
        })
    }

    /// The address `connect` uses.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Connections whose TCP handshake has not finished yet.
    pub fn connecting(&self) -> usize {
        self.connecting
    }

    pub fn is_open(&self, id: ConnId) -> bool {
        self.conns[id].state == State::Open
    }

    /// Starts a non-blocking connect to `addr`; `Event::Connected` follows.
    pub fn connect_to(&mut self, addr: SocketAddrV4) -> io::Result<ConnId> {
        // SAFETY: plain syscalls on a socket we own; the sockaddr is built
        // locally and outlives the call.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = addr.port().to_be();
            sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
            let r = libc::connect(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if r < 0 && errno() != libc::EINPROGRESS {
                let e = io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            let id = self.conns.len();
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: id as u64,
            };
            if libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, &mut ev) < 0 {
                let e = io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            self.conns.push(Conn {
                fd,
                state: State::Connecting,
                mode: Mode::Http,
                out: Vec::new(),
                out_pos: 0,
                inb: Vec::new(),
                pending: 0,
                close_after: false,
            });
            self.connecting += 1;
            Ok(id)
        }
    }

    /// Queues one request (complete bytes) and writes what the socket takes.
    /// Returns false if the connection is closed.
    pub fn send(&mut self, id: ConnId, req: &[u8]) -> bool {
        let c = &mut self.conns[id];
        if c.state == State::Closed {
            return false;
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        }
        c.out.extend_from_slice(req);
        c.pending += 1;
        if c.state == State::Open {
            if let Err(e) = Self::flush(c) {
                Self::close_conn(self.ep, c, &mut self.connecting);
                let _ = e;
                return false;
            }
        }
        true
    }

    fn flush(c: &mut Conn) -> Result<(), i32> {
        while c.out_pos < c.out.len() {
            let rest = &c.out[c.out_pos..];
            // SAFETY: writing from a live buffer to our socket.
            let n = unsafe {
                libc::send(
                    c.fd,
                    rest.as_ptr() as *const libc::c_void,
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = errno();
                if e == libc::EAGAIN || e == libc::EWOULDBLOCK {
                    return Ok(());
                }
                if e == libc::EINTR {
                    continue;
                }
                return Err(e);
            }
            c.out_pos += n as usize;
        }
        Ok(())
    }

    fn close_conn(ep: RawFd, c: &mut Conn, connecting: &mut usize) {
        if c.state == State::Closed {
            return;
        }
        if c.state == State::Connecting {
            *connecting -= 1;
        }
        c.state = State::Closed;
        // SAFETY: fd is ours and still open; linger 0 makes close() send a
        // reset, so thousands of closed client sockets leave no TIME_WAIT.
        unsafe {
            libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, c.fd, std::ptr::null_mut());
            let lg = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                c.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &lg as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            libc::close(c.fd);
        }
        c.out = Vec::new();
        c.inb = Vec::new();
    }

    /// Waits up to `timeout_ms` and appends what happened to `out`.
    pub fn poll(&mut self, timeout_ms: i32, out: &mut Vec<Event>) {
        // SAFETY: evbuf is a valid array of evbuf.len() events.
        let n = unsafe {
            libc::epoll_wait(
                self.ep,
                self.evbuf.as_mut_ptr(),
                self.evbuf.len() as i32,
                timeout_ms,
            )
        };
        if n <= 0 {
            return;
        }
        for i in 0..n as usize {
            let ev = self.evbuf[i];
            let id = ev.u64 as usize;
            self.handle(id, ev.events, out);
        }
    }

    fn handle(&mut self, id: ConnId, events: u32, out: &mut Vec<Event>) {
        let ep = self.ep;
        let c = &mut self.conns[id];
        if c.state == State::Closed {
            return;
        }
        if c.state == State::Connecting {
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: reading an int socket option into a local.
            unsafe {
                libc::getsockopt(
                    c.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    &mut err as *mut _ as *mut libc::c_void,
                    &mut len,
                );
            }
            if err != 0 {
                Self::close_conn(ep, c, &mut self.connecting);
                out.push(Event::Closed(id, format!("connect: {}", errstr(err))));
                return;
            }
            if events & libc::EPOLLOUT as u32 == 0 {
                return;
            }
            c.state = State::Open;
            self.connecting -= 1;
            out.push(Event::Connected(id));
        }
        if events & libc::EPOLLOUT as u32 != 0 {
            if let Err(e) = Self::flush(c) {
                Self::close_conn(ep, c, &mut self.connecting);
                out.push(Event::Closed(id, format!("write: {}", errstr(e))));
                return;
            }
        }
        // Read until EAGAIN (edge-triggered).
        let mut eof = false;
        let mut rerr = 0;
        loop {
            // SAFETY: reading into our scratch buffer.
            let n = unsafe {
                libc::recv(
                    c.fd,
                    self.scratch.as_mut_ptr() as *mut libc::c_void,
                    self.scratch.len(),
                    0,
                )
            };
            if n > 0 {
                c.inb.extend_from_slice(&self.scratch[..n as usize]);
                if (n as usize) < self.scratch.len() {
                    // A short read drained the socket: data arriving later
                    // raises a new edge, so the EAGAIN read can be skipped
                    // (one syscall less per response).
                    break;
                }
                continue;
            }
            if n == 0 {
                eof = true;
                break;
            }
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            if e != libc::EAGAIN && e != libc::EWOULDBLOCK {
                rerr = e;
            }
            break;
        }
        // Parse every complete response, stream head, event or frame.
        if let Err(why) = Self::consume(id, c, out) {
            Self::close_conn(ep, c, &mut self.connecting);
            out.push(Event::Closed(id, why));
            return;
        }
        if c.close_after {
            Self::close_conn(ep, c, &mut self.connecting);
            out.push(Event::Closed(
                id,
                "server closed (Connection: close)".into(),
            ));
        } else if rerr != 0 {
            Self::close_conn(ep, c, &mut self.connecting);
            out.push(Event::Closed(id, format!("read: {}", errstr(rerr))));
        } else if eof {
            let partial = !c.inb.is_empty();
            Self::close_conn(ep, c, &mut self.connecting);
            let why = if partial {
                "eof inside a response"
            } else {
                "eof"
            };
            out.push(Event::Closed(id, why.into()));
        }
    }
    /// Turns the bytes in `c.inb` into events, as the connection's mode
    /// says; a response head that opens a stream switches the mode.
    fn consume(id: ConnId, c: &mut Conn, out: &mut Vec<Event>) -> Result<(), String> {
        loop {
            match c.mode {
                Mode::Http => {
                    if c.inb.is_empty() || c.close_after {
                        return Ok(());
                    }
                    let Some(head) =
                        parse_head(&c.inb).map_err(|m| format!("bad response: {m}"))?
                    else {
                        return Ok(());
                    };
                    if let Some(mode) = head.stream_mode() {
                        c.inb.drain(..head.len);
                        c.pending = c.pending.saturating_sub(1);
                        let meta = matches!(mode, Mode::Ws { meta: true, .. });
                        c.mode = mode;
                        out.push(Event::StreamOpen(id, head.status, meta));
                        continue;
                    }
                    match parse_body(&c.inb, head).map_err(|m| format!("bad response: {m}"))? {
                        Some((resp, used, close)) => {
                            c.inb.drain(..used);
                            c.pending = c.pending.saturating_sub(1);
                            out.push(Event::Response(id, resp));
                            if close {
                                c.close_after = true;
                                return Ok(());
                            }
                        }
                        None => return Ok(()),
                    }
                }
                Mode::Sse { .. } => return Self::consume_sse(id, c, out),
                Mode::Ws { .. } => return Self::consume_ws(id, c, out),
            }
        }
    }

    /// De-chunks what arrived and splits it into events (lines ending in
    /// LF, a CR before it dropped; a blank line ends an event; comments and
    /// events without data are skipped, as a browser does).
    fn consume_sse(id: ConnId, c: &mut Conn, out: &mut Vec<Event>) -> Result<(), String> {
        let Mode::Sse {
            chunk,
            text,
            id: last_id,
            data,
            has_data,
        } = &mut c.mode
        else {
            return Ok(());
        };
        let buf = &c.inb;
        let mut p = 0;
        let mut ended = false;
        while p < buf.len() && !ended {
            match *chunk {
                Chunk::Raw => {
                    text.extend_from_slice(&buf[p..]);
                    p = buf.len();
                }
                Chunk::Size => {
                    let Some(le) = find(&buf[p..], b"\r\n") else {
                        if buf.len() - p > 64 {
                            return Err("bad chunk size line".into());
                        }
                        break;
                    };
                    let szs = buf[p..p + le]
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default();
                    let sz =
                        usize::from_str_radix(std::str::from_utf8(trim(szs)).unwrap_or("x"), 16)
                            .map_err(|_| "bad chunk size")?;
                    p += le + 2;
                    if sz == 0 {
                        ended = true;
                    } else {
                        *chunk = Chunk::Data(sz);
                    }
                }
                Chunk::Data(left) => {
                    let n = left.min(buf.len() - p);
                    text.extend_from_slice(&buf[p..p + n]);
                    p += n;
                    *chunk = if n == left {
                        Chunk::Crlf
                    } else {
                        Chunk::Data(left - n)
                    };
                }
                Chunk::Crlf => {
                    if buf.len() - p < 2 {
                        break;
                    }
                    if &buf[p..p + 2] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    p += 2;
                    *chunk = Chunk::Size;
                }
            }
        }
        c.inb.drain(..p);
        let at = Instant::now();
        let mut q = 0;
        while let Some(nl) = text[q..].iter().position(|&b| b == b'\n') {
            let mut line = &text[q..q + nl];
            q += nl + 1;
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.is_empty() {
                if std::mem::take(has_data) {
                    out.push(Event::Message(
                        id,
                        Msg {
                            id: last_id.clone(),
                            data: std::mem::take(data),
                            opcode: 0,
                            at,
                        },
                    ));
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(k) => {
                    let v = &line[k + 1..];
                    (&line[..k], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"data" => {
                    if *has_data {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(value);
                    *has_data = true;
                }
                b"id" => *last_id = Some(value.to_vec()),
                _ => {}
            }
        }
        text.drain(..q);
        if ended {
            return Err("stream ended by the server".into());
        }
        Ok(())
    }

    /// Splits what arrived into WebSocket frames: data frames (reassembled
    /// when fragmented) become messages; a ping is answered, a close is
    /// answered and ends the connection.
    fn consume_ws(id: ConnId, c: &mut Conn, out: &mut Vec<Event>) -> Result<(), String> {
        let Mode::Ws { meta, partial } = &mut c.mode else {
            return Ok(());
        };
        let meta = *meta;
        let buf = &c.inb;
        let mut p = 0;
        let at = Instant::now();
        let mut reply: Vec<u8> = Vec::new();
        let mut closed: Option<String> = None;
        while let Some(WsFrame {
            fin,
            op,
            payload,
            used,
        }) = ws_frame(&buf[p..])?
        {
            p += used;
            match op {
                0..=2 => {
                    let whole = match (op, partial.take()) {
                        (0, Some((o, mut acc))) => {
                            acc.extend_from_slice(payload);
                            (o, acc)
                        }
                        (0, None) => return Err("continuation without a start".into()),
                        (o, None) => (o, payload.to_vec()),
                        (_, Some(_)) => return Err("new message inside a fragmented one".into()),
                    };
                    if !fin {
                        *partial = Some(whole);
                        continue;
                    }
                    let (opcode, bytes) = whole;
                    let (mid, data) = if meta {
                        split_meta(bytes)
                    } else {
                        (None, bytes)
                    };
                    out.push(Event::Message(
                        id,
                        Msg {
                            id: mid,
                            data,
                            opcode,
                            at,
                        },
                    ));
                }
                8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    reply.extend_from_slice(&masked_frame(8, &payload[..payload.len().min(2)]));
                    closed = Some(format!(
                        "websocket close {code} {}",
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                    ));
                    break;
                }
                9 => reply.extend_from_slice(&masked_frame(10, payload)),
                10 => {}
                o => return Err(format!("websocket opcode {o}")),
            }
        }
        c.inb.drain(..p);
        if !reply.is_empty() {
            if c.out_pos == c.out.len() {
                c.out.clear();
                c.out_pos = 0;
            }
            c.out.extend_from_slice(&reply);
            let _ = Self::flush(c);
        }
        match closed {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self.conns.iter_mut() {
            Self::close_conn(self.ep, c, &mut self.connecting);
        }
        // SAFETY: the epoll fd is ours.
        unsafe {
            libc::close(self.ep);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &v[s..e.max(s)]
}

fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    let mut n = 0usize;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Some(n)
}

type Parsed = (Response, usize, bool);

/// A response's head: what the body parser and the stream switch need.
pub struct Head {
    pub status: u16,
    /// Bytes of the head, blank line included.
    len: usize,
    clen: Option<usize>,
    chunked: bool,
    close: bool,
    last_modified: Option<Vec<u8>>,
    etag: Option<Vec<u8>>,
    event_stream: bool,
    /// `Upgrade: websocket` was answered.
    upgrade: bool,
    /// `Sec-WebSocket-Protocol: ws+meta.nchan` was selected.
    meta: bool,
}

impl Head {
    /// The stream mode this head opens, if it opens one.
    fn stream_mode(&self) -> Option<Mode> {
        if self.status == 101 && self.upgrade {
            return Some(Mode::Ws {
                meta: self.meta,
                partial: None,
            });
        }
        if self.status == 200 && self.event_stream {
            return Some(Mode::Sse {
                chunk: if self.chunked {
                    Chunk::Size
                } else {
                    Chunk::Raw
                },
                text: Vec::new(),
                id: None,
                data: Vec::new(),
                has_data: false,
            });
        }
        None
    }
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(hend) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("header too long".into());
        }
        return Ok(None);
    };
    let head = &buf[..hend];
    let mut lines = head.split(|&b| b == b'\n');
    let sl = lines.next().unwrap_or_default();
    if sl.len() < 12 || !sl.starts_with(b"HTTP/1.") {
        return Err(format!("status line {:?}", String::from_utf8_lossy(sl)));
    }
    let mut h = Head {
        status: parse_usize(&sl[9..12]).ok_or("status code")? as u16,
        len: hend + 4,
        clen: None,
        chunked: false,
        close: sl.starts_with(b"HTTP/1.0"),
        last_modified: None,
        etag: None,
        event_stream: false,
        upgrade: false,
        meta: false,
    };
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let val = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            h.clen = Some(parse_usize(val).ok_or("content-length")?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            h.chunked = val.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if val.eq_ignore_ascii_case(b"close") {
                h.close = true;
            } else if val.eq_ignore_ascii_case(b"keep-alive") {
                h.close = false;
            }
        } else if name.eq_ignore_ascii_case(b"last-modified") {
            h.last_modified = Some(val.to_vec());
        } else if name.eq_ignore_ascii_case(b"etag") {
            h.etag = Some(val.to_vec());
        } else if name.eq_ignore_ascii_case(b"content-type") {
            h.event_stream =
                val.len() >= 17 && val[..17].eq_ignore_ascii_case(b"text/event-stream");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            h.upgrade = val.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            h.meta = val == b"ws+meta.nchan";
        }
    }
    Ok(Some(h))
}

/// The body after `head` in `buf`. `Ok(None)`: incomplete.
fn parse_body(buf: &[u8], head: Head) -> Result<Option<Parsed>, String> {
    let status = head.status;
    let bstart = head.len;
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let (body, used) = if no_body {
        (Vec::new(), bstart)
    } else if head.chunked {
        let mut body = Vec::new();
        let mut p = bstart;
        loop {
            let Some(le) = find(&buf[p..], b"\r\n") else {
                return Ok(None);
            };
            let szs = &buf[p..p + le];
            let szs = szs.split(|&b| b == b';').next().unwrap_or_default();
            let sz = usize::from_str_radix(std::str::from_utf8(trim(szs)).unwrap_or("x"), 16)
                .map_err(|_| "chunk size")?;
            p += le + 2;
            if sz == 0 {
                // Trailers end with an empty line.
                let Some(te) = find(&buf[p..], b"\r\n") else {
                    return Ok(None);
                };
                if te == 0 {
                    break (body, p + 2);
                }
                let Some(te2) = find(&buf[p..], b"\r\n\r\n") else {
                    return Ok(None);
                };
                break (body, p + te2 + 4);
            }
            if buf.len() < p + sz + 2 {
                return Ok(None);
            }
            body.extend_from_slice(&buf[p..p + sz]);
            p += sz + 2;
        }
    } else if let Some(n) = head.clen {
        if buf.len() < bstart + n {
            return Ok(None);
        }
        (buf[bstart..bstart + n].to_vec(), bstart + n)
    } else {
        return Err(format!("status {status} without Content-Length"));
    };
    Ok(Some((
        Response {
            status,
            last_modified: head.last_modified,
            etag: head.etag,
            body,
            at: Instant::now(),
        },
        used,
        head.close,
    )))
}

/// Parses one response from the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<Parsed>, String> {
    match parse_head(buf)? {
        Some(h) => parse_body(buf, h),
        None => Ok(None),
    }
}

/// A server's WebSocket frame.
struct WsFrame<'a> {
    fin: bool,
    op: u8,
    payload: &'a [u8],
    /// Bytes of the frame, header included.
    used: usize,
}

/// One WebSocket frame at the start of `buf`. `Ok(None)`: incomplete.
fn ws_frame(buf: &[u8]) -> Result<Option<WsFrame<'_>>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err("websocket frame with RSV bits".into());
    }
    let op = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut p) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        return Err("masked frame from the server".into());
    }
    if len > 16 << 20 {
        return Err(format!("websocket frame of {len} bytes"));
    }
    if buf.len() < p + len {
        return Ok(None);
    }
    let payload = &buf[p..p + len];
    p += len;
    Ok(Some(WsFrame {
        fin,
        op,
        payload,
        used: p,
    }))
}

/// A client frame (masked, as RFC 6455 requires of clients).
pub fn masked_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | op);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    // The key only has to be unpredictable to intermediaries; none here.
    let key = (std::process::id() ^ 0x5a3c_96e1).to_be_bytes();
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A `ws+meta.nchan` frame: `id: <id>` and other metadata lines, a blank
/// line, then the body. A frame without the blank line is all body.
fn split_meta(bytes: Vec<u8>) -> (Option<Vec<u8>>, Vec<u8>) {
    let Some(end) = find(&bytes, b"\n\n") else {
        return (None, bytes);
    };
    let id = bytes[..end]
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"id: ").or_else(|| l.strip_prefix(b"id:")))
        .map(|v| trim(v).to_vec());
    (id, bytes[end + 2..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_cursor() {
        let b = b"HTTP/1.1 200 OK\r\nLast-Modified: Thu, 01 Jan 1970 00:00:01 GMT\r\nEtag: \"3\"\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1";
        let (r, used, close) = parse_response(b).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hi");
        assert_eq!(r.etag.as_deref(), Some(&b"\"3\""[..]));
        assert_eq!(&b[used..], b"HTTP/1.1");
        assert!(!close);
    }

    #[test]
    fn parses_chunked_and_304() {
        let b =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
        let (r, used, _) = parse_response(b).unwrap().unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(used, b.len());
        assert!(parse_response(&b[..b.len() - 1]).unwrap().is_none());
        let b = b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n";
        let (r, _, close) = parse_response(b).unwrap().unwrap();
        assert_eq!(r.status, 304);
        assert!(close);
    }

    fn conn() -> Conn {
        Conn {
            fd: -1,
            state: State::Open,
            mode: Mode::Http,
            out: Vec::new(),
            out_pos: 0,
            inb: Vec::new(),
            pending: 1,
            close_after: false,
        }
    }

    /// Feeds `bytes` to a connection `step` bytes at a time.
    fn feed(bytes: &[u8], step: usize) -> (Vec<Event>, Result<(), String>) {
        let mut c = conn();
        let mut out = Vec::new();
        for part in bytes.chunks(step) {
            c.inb.extend_from_slice(part);
            if let Err(e) = Net::consume(7, &mut c, &mut out) {
                return (out, Err(e));
            }
        }
        (out, Ok(()))
    }

    fn messages(evs: &[Event]) -> Vec<(Option<String>, String, u8)> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Message(7, m) => Some((
                    m.id.as_ref()
                        .map(|i| String::from_utf8_lossy(i).into_owned()),
                    String::from_utf8_lossy(&m.data).into_owned(),
                    m.opcode,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn eventsource_over_chunks_in_any_split() {
        let mut b = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for ev in [
            &b": hi\n\n"[..],
            b"id: 1:0\ndata: one\n\n",
            b"id: 1:1\r\ndata: a\r\ndata: b\r\n\r\n:\n\n",
        ] {
            b.extend_from_slice(format!("{:x}\r\n", ev.len()).as_bytes());
            b.extend_from_slice(ev);
            b.extend_from_slice(b"\r\n");
        }
        for step in [1, 3, 7, b.len()] {
            let (evs, r) = feed(&b, step);
            assert!(r.is_ok(), "step {step}: {r:?}");
            assert!(matches!(evs[0], Event::StreamOpen(7, 200, false)));
            assert_eq!(
                messages(&evs),
                vec![
                    (Some("1:0".into()), "one".into(), 0),
                    (Some("1:1".into()), "a\nb".into(), 0)
                ],
                "step {step}"
            );
        }
        let mut end = b.clone();
        end.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(feed(&end, 5).1, Err("stream ended by the server".into()));
    }

    #[test]
    fn websocket_frames_meta_fragments_and_close() {
        let mut b = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Protocol: ws+meta.nchan\r\n\r\n".to_vec();
        let meta = b"id: 5:2\ncontent-type: text/plain\n\nhello";
        b.extend_from_slice(&[0x81, meta.len() as u8]);
        b.extend_from_slice(meta);
        let big = vec![b'x'; 300];
        let mut bigmeta = b"id: 5:3\n\n".to_vec();
        bigmeta.extend_from_slice(&big);
        b.extend_from_slice(&[0x82, 126]);
        b.extend_from_slice(&(bigmeta.len() as u16).to_be_bytes());
        b.extend_from_slice(&bigmeta);
        // A fragmented text message with a ping between its fragments.
        b.extend_from_slice(&[0x01, 11]);
        b.extend_from_slice(b"id: 6:0\n\nab");
        b.extend_from_slice(&[0x89, 0]);
        b.extend_from_slice(&[0x80, 2]);
        b.extend_from_slice(b"cd");
        b.extend_from_slice(&[0x88, 2, 0x03, 0xe9]);
        for step in [1, 4, b.len()] {
            let (evs, r) = feed(&b, step);
            assert_eq!(r, Err("websocket close 1001 ".into()), "step {step}");
            assert!(matches!(evs[0], Event::StreamOpen(7, 101, true)));
            let m = messages(&evs);
            assert_eq!(m.len(), 3, "step {step}");
            assert_eq!(m[0], (Some("5:2".into()), "hello".into(), 1));
            assert_eq!(m[1].0.as_deref(), Some("5:3"));
            assert_eq!(m[1].1, String::from_utf8(big.clone()).unwrap());
            assert_eq!(m[1].2, 2);
            assert_eq!(m[2], (Some("6:0".into()), "abcd".into(), 1));
        }
    }

    #[test]
    fn client_frames_are_masked() {
        let f = masked_frame(8, &1000u16.to_be_bytes());
        assert_eq!(f[0], 0x88);
        assert_eq!(f[1], 0x82);
        let key = &f[2..6];
        assert_eq!([f[6] ^ key[0], f[7] ^ key[1]], [0x03, 0xe8]);
    }
}
