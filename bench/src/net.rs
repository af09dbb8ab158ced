//! A small HTTP/1.1 client on one edge-triggered epoll loop.
//!
//! Each connection carries requests one after another (keep-alive); the
//! caller queues request bytes with [`Net::send`] and gets back completed
//! responses from [`Net::poll`]. No threads, no allocation per event beyond
//! the response body.

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

#[derive(Debug)]
pub enum Event {
    Connected(ConnId),
    Response(ConnId, Response),
    /// The connection is gone (error, reset or EOF); its id stays invalid.
    Closed(ConnId, String),
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    Connecting,
    Open,
    Closed,
}

struct Conn {
    fd: RawFd,
    state: State,
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

    /// Connections whose TCP handshake has not finished yet.
    pub fn connecting(&self) -> usize {
        self.connecting
    }

    pub fn is_open(&self, id: ConnId) -> bool {
        self.conns[id].state == State::Open
    }

    /// Starts a non-blocking connect; `Event::Connected` follows.
    pub fn connect(&mut self) -> io::Result<ConnId> {
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
            sa.sin_port = self.addr.port().to_be();
            sa.sin_addr.s_addr = u32::from(*self.addr.ip()).to_be();
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
        // Parse every complete response.
        loop {
            match parse_response(&c.inb) {
                Ok(Some((resp, used, close))) => {
                    c.inb.drain(..used);
                    c.pending = c.pending.saturating_sub(1);
                    out.push(Event::Response(id, resp));
                    if close {
                        c.close_after = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(msg) => {
                    Self::close_conn(ep, c, &mut self.connecting);
                    out.push(Event::Closed(id, format!("bad response: {msg}")));
                    return;
                }
            }
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

/// Parses one response from the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<Parsed>, String> {
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
    let status = parse_usize(&sl[9..12]).ok_or("status code")? as u16;
    let mut clen = None;
    let mut chunked = false;
    let mut close = sl.starts_with(b"HTTP/1.0");
    let mut lm = None;
    let mut et = None;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let val = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            clen = Some(parse_usize(val).ok_or("content-length")?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = val.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if val.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if val.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        } else if name.eq_ignore_ascii_case(b"last-modified") {
            lm = Some(val.to_vec());
        } else if name.eq_ignore_ascii_case(b"etag") {
            et = Some(val.to_vec());
        }
    }
    let bstart = hend + 4;
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let (body, used) = if no_body {
        (Vec::new(), bstart)
    } else if chunked {
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
    } else if let Some(n) = clen {
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
            last_modified: lm,
            etag: et,
            body,
            at: Instant::now(),
        },
        used,
        close,
    )))
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
}
