//! The workloads. Each returns named figures or the reason it failed, and
//! each is bounded by a deadline: a relay that does not answer fails, it
//! never hangs the run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::net::{parse_response, ConnId, Event, Net, Response};
use crate::server::{self_cpu_ns, Kind, Nginx, Redis};

pub type Metrics = BTreeMap<&'static str, f64>;

/// The `Last-Modified` and `Etag` of the last message a listener got.
type Cursor = (Option<Vec<u8>>, Option<Vec<u8>>);

static EPOCH: OnceLock<Instant> = OnceLock::new();
static RUN: AtomicUsize = AtomicUsize::new(0);

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// A channel id nobody used before in this run.
fn fresh_id(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// A message body of exactly `size` bytes (at least the text itself).
fn body_of(text: &str, size: usize) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    if b.len() < size {
        b.push(b' ');
        b.resize(size, b'.');
    }
    b
}

fn get_request(path: &str, cursor: Option<&Cursor>) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n").into_bytes();
    if let Some((lm, et)) = cursor {
        if let Some(lm) = lm {
            r.extend_from_slice(b"If-Modified-Since: ");
            r.extend_from_slice(lm);
            r.extend_from_slice(b"\r\n");
        }
        if let Some(et) = et {
            r.extend_from_slice(b"If-None-Match: ");
            r.extend_from_slice(et);
            r.extend_from_slice(b"\r\n");
        }
    }
    r.extend_from_slice(b"\r\n");
    r
}

fn post_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn status_line(r: &Response) -> String {
    let b = String::from_utf8_lossy(&r.body[..r.body.len().min(80)]).replace(['\r', '\n'], " ");
    format!("{} {}", r.status, b.trim())
}

/// A blocking keep-alive connection for control requests (channel info,
/// stub_status). Used only while nothing time-critical is measured.
pub struct Ctl {
    addr: SocketAddrV4,
    s: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Ctl {
    pub fn new(addr: SocketAddrV4) -> Ctl {
        Ctl {
            addr,
            s: None,
            buf: Vec::new(),
        }
    }

    pub fn get(&mut self, path: &str) -> Result<Response, String> {
        self.request(&get_request(path, None))
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> Result<Response, String> {
        self.request(&post_request(path, body))
    }

    fn request(&mut self, req: &[u8]) -> Result<Response, String> {
        for attempt in 0..2 {
            match self.try_request(req) {
                Ok(r) => return Ok(r),
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => self.s = None,
            }
        }
        unreachable!()
    }

    fn try_request(&mut self, req: &[u8]) -> Result<Response, String> {
        if self.s.is_none() {
            let s = TcpStream::connect_timeout(&self.addr.into(), Duration::from_secs(2))
                .map_err(|e| format!("control connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(3))).ok();
            s.set_nodelay(true).ok();
            self.s = Some(s);
            self.buf.clear();
        }
        let s = self.s.as_mut().expect("connected above");
        s.write_all(req)
            .map_err(|e| format!("control write: {e}"))?;
        let mut chunk = [0u8; 16384];
        loop {
            if let Some((r, used, close)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                if close {
                    self.s = None;
                }
                return Ok(r);
            }
            let n = s
                .read(&mut chunk)
                .map_err(|e| format!("control read: {e}"))?;
            if n == 0 {
                self.s = None;
                return Err("control connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Held listeners of a channel from the relay's channel info (the
    /// number after "subscribers", in text or JSON); 0 for 404.
    pub fn subscribers(&mut self, chan: &str) -> Result<usize, String> {
        let r = self.get(&format!("/pub?id={chan}"))?;
        if r.status == 404 {
            return Ok(0);
        }
        if r.status != 200 {
            return Err(format!("channel info: {}", status_line(&r)));
        }
        number_after(&r.body, b"subscribers")
            .ok_or_else(|| format!("channel info without subscribers: {}", status_line(&r)))
    }

    /// "Writing" of stub_status: requests being processed (held ones too).
    pub fn writing(&mut self) -> Result<usize, String> {
        let r = self.get("/status")?;
        number_after(&r.body, b"Writing:")
            .ok_or_else(|| format!("stub_status: {}", status_line(&r)))
    }
}

fn number_after(hay: &[u8], key: &[u8]) -> Option<usize> {
    let p = hay.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &hay[p..];
    let s = rest.iter().position(|b| b.is_ascii_digit())?;
    if rest[..s].iter().any(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let e = rest[s..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(rest.len(), |e| s + e);
    std::str::from_utf8(&rest[s..e]).ok()?.parse().ok()
}

/// How the listeners of a workload listen.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Transport {
    /// `GET /sub`, answered once, asked again with the cursor.
    LongPoll,
    /// `GET /stream` with `Accept: text/event-stream`.
    EventSource,
    /// `GET /stream` upgraded to WebSocket, bare frames.
    WebSocket,
    /// WebSocket with the `ws+meta.nchan` subprotocol.
    WebSocketMeta,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::LongPoll,
        Transport::EventSource,
        Transport::WebSocket,
        Transport::WebSocketMeta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-poll",
            Transport::EventSource => "eventsource",
            Transport::WebSocket => "websocket",
            Transport::WebSocketMeta => "ws-meta",
        }
    }

    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "long-poll" | "longpoll" | "lp" => Some(Transport::LongPoll),
            "eventsource" | "es" | "sse" => Some(Transport::EventSource),
            "websocket" | "ws" => Some(Transport::WebSocket),
            "ws-meta" | "websocket-meta" | "ws+meta" => Some(Transport::WebSocketMeta),
            _ => None,
        }
    }

    pub fn is_stream(self) -> bool {
        self != Transport::LongPoll
    }

    /// The listener path of channel `chan`.
    pub fn path(self, chan: &str) -> String {
        match self {
            Transport::LongPoll => format!("/sub?id={chan}"),
            _ => format!("/stream?id={chan}"),
        }
    }

    /// A listener's first request on `path`.
    pub fn request(self, path: &str) -> Vec<u8> {
        let mut r = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n");
        match self {
            Transport::LongPoll => {}
            Transport::EventSource => r.push_str("Accept: text/event-stream\r\n"),
            Transport::WebSocket | Transport::WebSocketMeta => {
                r.push_str(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                );
                if self == Transport::WebSocketMeta {
                    r.push_str("Sec-WebSocket-Protocol: ws+meta.nchan\r\n");
                }
            }
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

pub(crate) struct Loop {
    pub(crate) net: Net,
    pub(crate) evs: Vec<Event>,
    deadline: Instant,
    /// Streams whose head arrived.
    pub(crate) streams: usize,
    /// For WebSocket: whether `ws+meta.nchan` must (or must not) be agreed.
    meta: Option<bool>,
    /// Connections opened so far (the next one's id).
    pub(crate) opened: usize,
}

impl Loop {
    pub(crate) fn new(addr: SocketAddrV4, deadline: Instant) -> Result<Loop, String> {
        Ok(Loop {
            net: Net::new(addr).map_err(|e| format!("epoll: {e}"))?,
            evs: Vec::with_capacity(4096),
            deadline,
            streams: 0,
            meta: None,
            opened: 0,
        })
    }

    /// A loop whose streams use `t` (checked as their heads arrive).
    pub(crate) fn for_transport(
        addr: SocketAddrV4,
        deadline: Instant,
        t: Transport,
    ) -> Result<Loop, String> {
        let mut lp = Loop::new(addr, deadline)?;
        lp.meta = match t {
            Transport::WebSocket => Some(false),
            Transport::WebSocketMeta => Some(true),
            _ => None,
        };
        Ok(lp)
    }

    pub(crate) fn check_deadline(&self, what: impl FnOnce() -> String) -> Result<(), String> {
        if Instant::now() > self.deadline {
            return Err(format!("deadline passed: {}", what()));
        }
        Ok(())
    }

    /// Counts a stream's head, checking the subprotocol.
    fn stream_open(&mut self, id: ConnId, status: u16, meta: bool) -> Result<(), String> {
        if let Some(want) = self.meta {
            if status != 101 {
                return Err(format!(
                    "connection {id}: WebSocket upgrade answered {status}"
                ));
            }
            if want != meta {
                return Err(format!(
                    "connection {id}: ws+meta.nchan {} by the server",
                    if meta { "selected" } else { "not selected" }
                ));
            }
        }
        self.streams += 1;
        Ok(())
    }

    /// The events no phase without messages expects.
    fn unexpected(&mut self, what: &str, ev: Event) -> Result<(), String> {
        match ev {
            Event::Connected(_) => Ok(()),
            Event::StreamOpen(id, status, meta) => self.stream_open(id, status, meta),
            Event::Response(_, r) => Err(format!("{what}: unexpected answer {}", status_line(&r))),
            Event::Message(_, m) => Err(format!(
                "{what}: unexpected message {:?}",
                String::from_utf8_lossy(&m.data[..m.data.len().min(60)])
            )),
            Event::Closed(_, why) => Err(format!("{what}: {why}")),
        }
    }

    /// Opens `n` connections, the i-th to `addr_of(i)`, at most 256
    /// handshakes at a time, and calls `on_open` for each as it completes.
    /// Returns their ids (which are consecutive).
    pub(crate) fn open_with(
        &mut self,
        n: usize,
        addr_of: impl Fn(usize) -> SocketAddrV4,
        mut on_open: impl FnMut(&mut Net, ConnId),
    ) -> Result<Vec<ConnId>, String> {
        let mut ids = Vec::with_capacity(n);
        let mut open = 0;
        while open < n {
            while ids.len() < n && self.net.connecting() < 256 {
                let c = self.net.connect_to(addr_of(ids.len()));
                ids.push(c.map_err(|e| format!("connect: {e}"))?);
                self.opened += 1;
            }
            self.net.poll(5, &mut self.evs);
            let evs = std::mem::take(&mut self.evs);
            for ev in evs {
                match ev {
                    Event::Connected(id) => {
                        open += 1;
                        on_open(&mut self.net, id);
                    }
                    Event::Closed(_, why) => return Err(format!("while connecting: {why}")),
                    ev => self.unexpected("before any message", ev)?,
                }
            }
            self.check_deadline(|| format!("{open}/{n} connections open"))?;
        }
        Ok(ids)
    }

    pub(crate) fn open(
        &mut self,
        n: usize,
        on_open: impl FnMut(&mut Net, ConnId),
    ) -> Result<Vec<ConnId>, String> {
        let addr = self.net.addr();
        self.open_with(n, |_| addr, on_open)
    }

    /// Keeps the loop turning (no answer or message may arrive) until
    /// `ready()` says yes; `ready` is asked every `every`.
    pub(crate) fn wait_quiet(
        &mut self,
        every: Duration,
        what: &str,
        mut ready: impl FnMut(&Loop) -> Result<bool, String>,
    ) -> Result<(), String> {
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                if ready(self)? {
                    return Ok(());
                }
                next = Instant::now() + every;
            }
            self.net.poll(2, &mut self.evs);
            let evs = std::mem::take(&mut self.evs);
            for ev in evs {
                self.unexpected(what, ev)?;
            }
            self.check_deadline(|| what.to_string())?;
        }
    }

    /// Waits until `n` stream heads have arrived in all.
    pub(crate) fn wait_streams(&mut self, n: usize) -> Result<(), String> {
        let mut seen = 0;
        self.wait_quiet(Duration::ZERO, "waiting for streams to open", |lp| {
            seen = lp.streams;
            Ok(lp.streams >= n)
        })
        .map_err(|e| format!("{e} ({seen}/{n} open)"))
    }

    /// Waits until `n` more requests than `base` are in progress (held)
    /// by stub_status, then lets the servers settle for `settle`. The
    /// relays' own channel info is not used: nchan's subscriber count can
    /// lag behind (or stay short of) the truth when workers share a channel.
    pub(crate) fn wait_held(
        &mut self,
        ctl: &mut Ctl,
        base: usize,
        n: usize,
        settle: Duration,
    ) -> Result<(), String> {
        let mut seen = 0;
        self.wait_quiet(
            Duration::from_millis(5),
            "waiting for held listeners",
            |_| {
                seen = ctl.writing()?;
                Ok(seen >= base + n)
            },
        )
        .map_err(|e| format!("{e} (stub_status Writing {seen}, want {})", base + n))?;
        let until = Instant::now() + settle;
        self.wait_quiet(Duration::from_millis(5), "settling", |_| {
            Ok(Instant::now() >= until)
        })
    }

    /// Waits until every worker of `srvs` sleeps (state `S` in
    /// /proc/<pid>/stat, i.e. in epoll_wait with nothing to do) on two
    /// looks in a row: the work a delivery caused is done, so the CPU
    /// read next covers all of it.
    pub(crate) fn wait_idle(&mut self, srvs: &[&Nginx]) -> Result<(), String> {
        let mut idle_looks = 0;
        self.wait_quiet(Duration::from_millis(1), "waiting for idle workers", |_| {
            if srvs.iter().all(|s| s.workers_sleeping()) {
                idle_looks += 1;
            } else {
                idle_looks = 0;
            }
            Ok(idle_looks >= 2)
        })
    }
}

/// What a listener got: the body and when its last byte was read, plus
/// the long-poll cursor (none for streams).
struct Got {
    id: ConnId,
    body: Vec<u8>,
    at: Instant,
    cursor: Cursor,
    /// A stream message's id (EventSource, `ws+meta.nchan`).
    mid: Option<Vec<u8>>,
    /// A WebSocket message's opcode (0 otherwise).
    opcode: u8,
}

/// A listener's delivery from an event, if it is one: a `200` for a
/// long-poll listener (anything else is an error), a stream's message.
fn delivery(ev: &mut Event, listeners: usize) -> Result<Option<Got>, String> {
    match ev {
        Event::Response(id, r) if *id < listeners => {
            if r.status != 200 {
                return Err(format!("listener got {}", status_line(r)));
            }
            Ok(Some(Got {
                id: *id,
                body: std::mem::take(&mut r.body),
                at: r.at,
                cursor: (r.last_modified.take(), r.etag.take()),
                mid: None,
                opcode: 0,
            }))
        }
        Event::Message(id, m) if *id < listeners => Ok(Some(Got {
            id: *id,
            body: std::mem::take(&mut m.data),
            at: m.at,
            cursor: (None, None),
            mid: m.id.take(),
            opcode: m.opcode,
        })),
        _ => Ok(None),
    }
}

/// A stream message's framing: a text frame for WebSocket; for
/// EventSource and `ws+meta.nchan` an id, the same for every stream in a
/// round and another than the round before's.
fn check_stream_msg(
    t: Transport,
    g: &Got,
    with_id: bool,
    round_mid: &mut Option<Vec<u8>>,
    prev_mid: &Option<Vec<u8>>,
) -> Result<(), String> {
    if matches!(t, Transport::WebSocket | Transport::WebSocketMeta) && g.opcode != 1 {
        return Err(format!("WebSocket opcode {} for a text message", g.opcode));
    }
    if !with_id {
        return Ok(());
    }
    let Some(mid) = &g.mid else {
        return Err("a stream message without an id".into());
    };
    match round_mid {
        Some(r) if r != mid => Err(format!(
            "message ids differ between streams: {} and {}",
            String::from_utf8_lossy(r),
            String::from_utf8_lossy(mid)
        )),
        Some(_) => Ok(()),
        None if prev_mid.as_ref() == Some(mid) => Err("the previous message's id again".into()),
        None => {
            *round_mid = Some(mid.clone());
            Ok(())
        }
    }
}

/// What Redis did so far: its CPU and its command calls.
#[derive(Default)]
pub(crate) struct RedisCounts {
    cpu_ns: u64,
    calls: BTreeMap<String, u64>,
}

impl RedisCounts {
    /// Per-publish figures of what happened since `before`, over
    /// `publishes`; the busiest commands are logged.
    fn insert_since(&self, before: &RedisCounts, publishes: usize, m: &mut Metrics) {
        let p = publishes.max(1) as f64;
        let delta = |k: &str| {
            self.calls.get(k).copied().unwrap_or(0) - before.calls.get(k).copied().unwrap_or(0)
        };
        let mut per: Vec<(u64, &String)> = self.calls.keys().map(|k| (delta(k), k)).collect();
        let total: u64 = per.iter().map(|x| x.0).sum();
        let scripts: u64 = ["evalsha", "eval", "fcall", "evalsha_ro", "eval_ro"]
            .iter()
            .map(|k| delta(k))
            .sum();
        m.insert(
            "redis_us_per_publish",
            (self.cpu_ns - before.cpu_ns) as f64 / p / 1e3,
        );
        m.insert("redis_cmds_per_publish", total as f64 / p);
        m.insert("redis_scripts_per_publish", scripts as f64 / p);
        per.sort_by_key(|x| std::cmp::Reverse(x.0));
        let top: Vec<String> = per
            .iter()
            .take(8)
            .filter(|x| x.0 > 0)
            .map(|(n, k)| format!("{k} {:.1}", *n as f64 / p))
            .collect();
        eprintln!("    Redis calls per publish: {}", top.join(", "));
    }
}

/// Where the servers of a workload are, and which of them its listeners
/// and publishers use (round robin over the given indices).
pub struct Placement<'a> {
    pub servers: Vec<&'a Nginx>,
    pub listen_on: Vec<usize>,
    pub publish_on: Vec<usize>,
    /// The Redis they share, whose CPU and commands are counted.
    pub redis: Option<&'a Redis>,
}

impl<'a> Placement<'a> {
    pub fn one(srv: &'a Nginx) -> Placement<'a> {
        Placement {
            servers: vec![srv],
            listen_on: vec![0],
            publish_on: vec![0],
            redis: None,
        }
    }

    /// The server of listener `i`.
    fn listener_srv(&self, i: usize) -> usize {
        self.listen_on[i % self.listen_on.len()]
    }

    fn publisher_srv(&self, p: usize) -> usize {
        self.publish_on[p % self.publish_on.len()]
    }

    /// Listeners of `n` on server `s`.
    fn listeners_on(&self, n: usize, s: usize) -> usize {
        (0..n).filter(|&i| self.listener_srv(i) == s).count()
    }

    fn cpu_ns(&self) -> u64 {
        self.servers.iter().map(|s| s.cpu_ns()).sum()
    }

    /// Redis CPU (ns) and command calls so far.
    fn redis_counts(&self) -> Result<RedisCounts, String> {
        match self.redis {
            Some(r) => Ok(RedisCounts {
                cpu_ns: r.cpu_ns(),
                calls: r.command_stats()?,
            }),
            None => Ok(RedisCounts::default()),
        }
    }

    fn ctls(&self) -> Vec<Ctl> {
        self.servers.iter().map(|s| Ctl::new(s.addr)).collect()
    }

    /// stub_status Writing of every server.
    fn writing(&self, ctls: &mut [Ctl]) -> Result<Vec<usize>, String> {
        ctls.iter_mut().map(|c| c.writing()).collect()
    }

    /// Opens `n` listeners (connection i on `listener_srv(i)`), each
    /// sending `first(i)`; their ids are consecutive.
    fn open_listeners(
        &self,
        lp: &mut Loop,
        n: usize,
        first: impl Fn(usize) -> Vec<u8>,
    ) -> Result<Vec<ConnId>, String> {
        let base = lp.opened;
        let addrs: Vec<SocketAddrV4> = self.servers.iter().map(|s| s.addr).collect();
        lp.open_with(
            n,
            |i| addrs[self.listener_srv(i)],
            |net, id| {
                net.send(id, &first(id - base));
            },
        )
    }

    fn open_publishers(&self, lp: &mut Loop, n: usize) -> Result<Vec<ConnId>, String> {
        let addrs: Vec<SocketAddrV4> = self.servers.iter().map(|s| s.addr).collect();
        lp.open_with(n, |i| addrs[self.publisher_srv(i)], |_, _| {})
    }

    /// Waits until every server holds its share of `n` listeners above
    /// `base`, then lets them settle.
    fn wait_held(
        &self,
        lp: &mut Loop,
        ctls: &mut [Ctl],
        base: &[usize],
        n: usize,
        settle: Duration,
    ) -> Result<(), String> {
        for (s, ctl) in ctls.iter_mut().enumerate() {
            let k = self.listeners_on(n, s);
            // On these fresh servers only the status request itself is in
            // progress besides the listeners. A reading taken before them
            // now and then counted one request more, which then never
            // showed again (seen on two servers sharing Redis, with both
            // relays), and the wait ran into its deadline; so at most 1.
            lp.wait_held(ctl, base[s].min(1), k, Duration::ZERO)
                .map_err(|e| format!("server {s}: {e}"))?;
        }
        let until = Instant::now() + settle;
        lp.wait_quiet(Duration::from_millis(5), "settling", |_| {
            Ok(Instant::now() >= until)
        })
    }
}

/// Waits until every server accepts a publish (`201`/`202`): a relay
/// whose channels live in Redis answers `503` until it is connected; then
/// until that publish no longer counts in `stub_status`.
pub fn wait_publishable(srvs: &[&Nginx], deadline: Instant) -> Result<(), String> {
    let chan = fresh_id("ready");
    for (i, srv) in srvs.iter().enumerate() {
        let mut ctl = Ctl::new(srv.addr);
        loop {
            let r = ctl.post(&format!("/pub?id={chan}"), b"ready")?;
            if r.status == 201 || r.status == 202 {
                // The publish may still count as in progress for a moment
                // after its answer (a request answered from a Redis reply
                // is freed later); the workloads count held listeners
                // from here, so wait until only this status request is.
                loop {
                    if ctl.writing()? <= 1 {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("server {i}: the ready publish never finished"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "server {i} never accepted a publish: {}",
                    status_line(&r)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Fan-out: `n` listeners of transport `t` on one channel, `rounds`
/// messages.
pub fn fanout(
    srv: &Nginx,
    t: Transport,
    n: usize,
    rounds: usize,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    fanout_on(&Placement::one(srv), t, n, rounds, body_size, deadline)
}

/// Fan-out over the servers of `pl`: listeners spread as it says, every
/// message published on its first publishing server.
pub fn fanout_on(
    pl: &Placement,
    t: Transport,
    n: usize,
    rounds: usize,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    let chan = fresh_id(&format!("fan{n}"));
    let sub_path = t.path(&chan);
    let mut lp = Loop::for_transport(pl.servers[0].addr, deadline, t)?;
    let mut ctls = pl.ctls();
    let busy0 = pl.writing(&mut ctls)?;
    let first = t.request(&sub_path);
    let ids = pl.open_listeners(&mut lp, n, |_| first.clone())?;
    debug_assert_eq!(ids.last().copied(), Some(n - 1));
    if t.is_stream() {
        lp.wait_streams(n)?;
    }
    let publisher = pl.open_publishers(&mut lp, 1)?[0];
    pl.wait_held(&mut lp, &mut ctls, &busy0, n, Duration::from_millis(300))?;
    let redis0 = pl.redis_counts()?;

    let mut got = vec![false; n];
    let (mut firsts, mut alls) = (Vec::new(), Vec::new());
    let mut lat_all: Vec<f64> = Vec::with_capacity(n * rounds);
    let (mut server_ns, mut client_ns) = (0u64, 0u64);
    let mut created = 0usize;
    // Every stream gets the same message id in a round, a new one each round.
    let mut prev_mid: Option<Vec<u8>> = None;
    let with_id = matches!(t, Transport::EventSource | Transport::WebSocketMeta);
    for round in 0..rounds {
        let mut round_mid: Option<Vec<u8>> = None;
        let body = body_of(&format!("fan-out round {round} on {chan}"), body_size);
        let post = post_request(&format!("/pub?id={chan}"), &body);
        got.iter_mut().for_each(|g| *g = false);
        let mut lat: Vec<f64> = Vec::with_capacity(n);
        let cpu0 = pl.cpu_ns();
        let cl0 = self_cpu_ns();
        let t0 = Instant::now();
        lp.net.send(publisher, &post);
        let mut post_done = false;
        while lat.len() < n || !post_done {
            lp.net.poll(5, &mut lp.evs);
            for mut ev in lp.evs.drain(..) {
                if let Some(g) = delivery(&mut ev, n)? {
                    if g.body != body {
                        return Err(format!(
                            "round {round}: listener got {:?} instead of the message",
                            String::from_utf8_lossy(&g.body[..g.body.len().min(60)])
                        ));
                    }
                    if std::mem::replace(&mut got[g.id], true) {
                        return Err(format!("round {round}: a listener got the message twice"));
                    }
                    if t.is_stream() {
                        check_stream_msg(t, &g, with_id, &mut round_mid, &prev_mid)
                            .map_err(|e| format!("round {round}: {e}"))?;
                    }
                    lat.push(ms(g.at - t0));
                    if !t.is_stream() {
                        lp.net.send(g.id, &get_request(&sub_path, Some(&g.cursor)));
                    }
                    continue;
                }
                match ev {
                    Event::Response(id, r) if id == publisher => {
                        if r.status != 201 && r.status != 202 {
                            return Err(format!("publish answered {}", status_line(&r)));
                        }
                        created += (r.status == 201) as usize;
                        post_done = true;
                    }
                    Event::Connected(_) => {}
                    Event::Closed(_, why) => return Err(format!("round {round}: {why}")),
                    ev => return Err(format!("round {round}: unexpected {ev:?}")),
                }
            }
            let k = lat.len();
            lp.check_deadline(|| format!("round {round}: {k}/{n} delivered"))?;
        }
        if with_id {
            prev_mid = round_mid;
        }
        if t.is_stream() {
            // The round ends when the servers have nothing left to do.
            lp.wait_idle(&pl.servers)?;
        } else {
            // The round ends when every listener is held again.
            pl.wait_held(&mut lp, &mut ctls, &busy0, n, Duration::from_millis(20))?;
        }
        server_ns += pl.cpu_ns() - cpu0;
        client_ns += self_cpu_ns() - cl0;
        lat.sort_by(|a, b| a.total_cmp(b));
        firsts.push(lat[0]);
        alls.push(lat[n - 1]);
        lat_all.extend_from_slice(&lat);
    }
    lat_all.sort_by(|a, b| a.total_cmp(b));
    let deliveries = (n * rounds) as f64;
    let mut m = Metrics::new();
    m.insert("delivered_per_round", n as f64);
    m.insert("first_ms", median(&firsts));
    m.insert("p50_ms", quantile(&lat_all, 0.5));
    m.insert("p99_ms", quantile(&lat_all, 0.99));
    m.insert("all_ms", median(&alls));
    m.insert(
        "server_us_per_delivery",
        server_ns as f64 / deliveries / 1e3,
    );
    m.insert(
        "client_us_per_delivery",
        client_ns as f64 / deliveries / 1e3,
    );
    m.insert("publish_201_share", created as f64 / rounds as f64);
    if pl.redis.is_some() {
        pl.redis_counts()?.insert_since(&redis0, rounds, &mut m);
    }
    Ok(m)
}

pub struct ThroughputSpec {
    pub channels: usize,
    pub per_channel: usize,
    pub publishers: usize,
    pub messages: usize,
    /// Messages a channel may be ahead of its slowest listener (below the
    /// relays' buffer length of 10, so a loss is the relay's, not an
    /// overrun by the client).
    pub window: usize,
}

/// Sequence checking of many listeners over many channels: what every
/// listener expects next, and what went wrong.
pub(crate) struct Order {
    pub(crate) expect: Vec<usize>,
    pub(crate) missing: usize,
    pub(crate) repeated: usize,
    pub(crate) foreign: usize,
    pub(crate) first_error: String,
}

impl Order {
    pub(crate) fn new(listeners: usize) -> Order {
        Order {
            expect: vec![0; listeners],
            missing: 0,
            repeated: 0,
            foreign: 0,
            first_error: String::new(),
        }
    }

    /// Checks message `body` that listener `l` of channel `c` got; returns
    /// its sequence number and send time (ns since the epoch) if it is of
    /// that channel.
    pub(crate) fn check(&mut self, l: usize, c: usize, body: &[u8]) -> Option<(usize, u64)> {
        let (mc, ms_, mt) = parse_msg(body);
        if mc != Some(c) {
            self.foreign += 1;
            if self.first_error.is_empty() {
                self.first_error = format!("listener of {c} got {:?}", mc);
            }
            return None;
        }
        let (s, t) = (ms_?, mt?);
        let want = self.expect[l];
        if s == want {
            self.expect[l] = s + 1;
        } else if s > want {
            self.missing += s - want;
            self.expect[l] = s + 1;
            if self.first_error.is_empty() {
                self.first_error = format!("channel {c}: got {s}, expected {want}");
            }
        } else {
            self.repeated += 1;
            if self.first_error.is_empty() {
                self.first_error = format!("channel {c}: got {s} again");
            }
        }
        Some((s, t))
    }

    pub(crate) fn errors(&self) -> usize {
        self.missing + self.repeated + self.foreign
    }

    pub(crate) fn insert(&self, m: &mut Metrics) {
        m.insert("missing", self.missing as f64);
        m.insert("repeated", self.repeated as f64);
        m.insert("foreign", self.foreign as f64);
    }
}

/// Throughput: many channels, several listeners of transport `t` each,
/// concurrent publishers; every listener checks order and completeness.
pub fn throughput(
    srv: &Nginx,
    t: Transport,
    spec: &ThroughputSpec,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    throughput_on(&Placement::one(srv), t, spec, body_size, deadline)
}

/// Throughput over the servers of `pl` (listeners and publishers spread
/// as it says).
pub fn throughput_on(
    pl: &Placement,
    t: Transport,
    spec: &ThroughputSpec,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    let nchan = spec.channels;
    let per_chan_msgs = spec.messages / nchan;
    let nl = nchan * spec.per_channel;
    let base = fresh_id("tp");
    let chans: Vec<String> = (0..nchan).map(|c| format!("{base}-{c}")).collect();
    let sub_paths: Vec<String> = chans.iter().map(|c| t.path(c)).collect();
    let pub_paths: Vec<String> = chans.iter().map(|c| format!("/pub?id={c}")).collect();
    let chan_of = |l: usize| l / spec.per_channel;

    let mut lp = Loop::for_transport(pl.servers[0].addr, deadline, t)?;
    let mut ctls = pl.ctls();
    let busy0 = pl.writing(&mut ctls)?;
    pl.open_listeners(&mut lp, nl, |i| t.request(&sub_paths[chan_of(i)]))?;
    if t.is_stream() {
        lp.wait_streams(nl)?;
    }
    let pubs = pl.open_publishers(&mut lp, spec.publishers)?;
    pl.wait_held(&mut lp, &mut ctls, &busy0, nl, Duration::from_millis(300))?;
    let redis0 = pl.redis_counts()?;

    // Per listener: next sequence number expected; per channel: next to send.
    let mut order = Order::new(nl);
    let mut next_seq = vec![0usize; nchan];
    let mut pub_busy = vec![false; spec.publishers];
    let mut pub_rr = vec![0usize; spec.publishers];
    let owned: Vec<Vec<usize>> = (0..spec.publishers)
        .map(|p| (0..nchan).filter(|c| c % spec.publishers == p).collect())
        .collect();
    let mut lat: Vec<f64> = Vec::with_capacity(nl * per_chan_msgs);
    let mut published = 0usize;
    let mut done_listeners = 0usize;
    let (mut last_pub, mut last_del) = (Instant::now(), Instant::now());

    let cpu0 = pl.cpu_ns();
    let cl0 = self_cpu_ns();
    let t0 = Instant::now();
    let t0_ns = now_ns();
    let slowest = |expect: &[usize], c: usize| -> usize {
        (c * spec.per_channel..(c + 1) * spec.per_channel)
            .map(|l| expect[l])
            .min()
            .unwrap_or(0)
    };
    loop {
        // Give every idle publisher its next message.
        for p in 0..spec.publishers {
            if pub_busy[p] || !lp.net.is_open(pubs[p]) {
                continue;
            }
            let own = &owned[p];
            for k in 0..own.len() {
                let c = own[(pub_rr[p] + k) % own.len()];
                if next_seq[c] < per_chan_msgs
                    && next_seq[c] < slowest(&order.expect, c) + spec.window
                {
                    let body = body_of(
                        &format!("c={c} s={} t={}", next_seq[c], now_ns() - t0_ns),
                        body_size,
                    );
                    lp.net.send(pubs[p], &post_request(&pub_paths[c], &body));
                    next_seq[c] += 1;
                    pub_busy[p] = true;
                    pub_rr[p] = (pub_rr[p] + k + 1) % own.len();
                    break;
                }
            }
        }
        if done_listeners == nl && published == spec.messages {
            break;
        }
        lp.net.poll(5, &mut lp.evs);
        for mut ev in lp.evs.drain(..) {
            if let Some(g) = delivery(&mut ev, nl)? {
                let c = chan_of(g.id);
                if let Some((s, sent)) = order.check(g.id, c, &g.body) {
                    let sent = t0 + Duration::from_nanos(sent);
                    lat.push(ms(g.at.saturating_duration_since(sent)));
                    last_del = g.at;
                    if s + 1 == per_chan_msgs {
                        done_listeners += 1;
                        continue;
                    }
                }
                if !t.is_stream() {
                    lp.net
                        .send(g.id, &get_request(&sub_paths[c], Some(&g.cursor)));
                }
                continue;
            }
            match ev {
                Event::Response(id, r) => {
                    if r.status != 201 && r.status != 202 {
                        return Err(format!("publish answered {}", status_line(&r)));
                    }
                    published += 1;
                    last_pub = r.at;
                    pub_busy[pubs.iter().position(|&p| p == id).unwrap_or(0)] = false;
                }
                Event::Connected(_) => {}
                Event::Closed(id, why) => {
                    return Err(format!(
                        "{} connection closed: {why}",
                        if id >= nl { "publisher" } else { "listener" }
                    ))
                }
                ev => return Err(format!("unexpected {ev:?}")),
            }
        }
        lp.check_deadline(|| {
            format!(
                "{published}/{} published, {done_listeners}/{nl} listeners complete",
                spec.messages
            )
        })?;
    }
    let server_ns = pl.cpu_ns() - cpu0;
    let client_ns = self_cpu_ns() - cl0;
    let deliveries = lat.len() as f64;
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut m = Metrics::new();
    m.insert(
        "publishes_per_s",
        published as f64 / (last_pub - t0).as_secs_f64(),
    );
    m.insert(
        "deliveries_per_s",
        deliveries / (last_del - t0).as_secs_f64(),
    );
    m.insert("lat_p50_ms", quantile(&lat, 0.5));
    m.insert("lat_p99_ms", quantile(&lat, 0.99));
    m.insert("deliveries", deliveries);
    order.insert(&mut m);
    m.insert(
        "server_us_per_delivery",
        server_ns as f64 / deliveries / 1e3,
    );
    m.insert(
        "client_us_per_delivery",
        client_ns as f64 / deliveries / 1e3,
    );
    if pl.redis.is_some() {
        pl.redis_counts()?.insert_since(&redis0, published, &mut m);
    }
    if order.errors() > 0 {
        eprintln!("    throughput ordering errors: {}", order.first_error);
    }
    Ok(m)
}

/// What the Redis restart workload does to Redis.
pub struct Restart<'a> {
    pub redis: &'a mut Redis,
    /// How long Redis stays down.
    pub down: Duration,
}

/// Deliveries through a Redis restart: the throughput load over the
/// servers of `pl`; once a third of the messages are answered Redis is
/// shut down, and started again after `r.down`. Publishers go on all the
/// time, each channel until `per_channel` of its messages were accepted
/// (after a refusal a publisher waits 50 ms before its next message);
/// a listener answered with an error asks again 50 ms later with its
/// cursor, and one whose connection closes reconnects. At the end every
/// message answered `201`/`202` must have reached every listener of its
/// channel: the ones that did not are counted lost.
pub fn redis_restart(
    pl: &Placement,
    r: Restart,
    t: Transport,
    spec: &ThroughputSpec,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    let nchan = spec.channels;
    let k = spec.per_channel;
    let per_chan = spec.messages / nchan;
    let total = per_chan * nchan;
    let nl = nchan * k;
    let base = fresh_id("rr");
    let chans: Vec<String> = (0..nchan).map(|c| format!("{base}-{c}")).collect();
    let sub_paths: Vec<String> = chans.iter().map(|c| t.path(c)).collect();
    let pub_paths: Vec<String> = chans.iter().map(|c| format!("/pub?id={c}")).collect();
    let addrs: Vec<SocketAddrV4> = pl.servers.iter().map(|s| s.addr).collect();

    let mut lp = Loop::for_transport(pl.servers[0].addr, deadline, t)?;
    let mut ctls = pl.ctls();
    let busy0 = pl.writing(&mut ctls)?;
    pl.open_listeners(&mut lp, nl, |i| t.request(&sub_paths[i / k]))?;
    if t.is_stream() {
        lp.wait_streams(nl)?;
    }
    let first_pub = lp.opened;
    let pubs = pl.open_publishers(&mut lp, spec.publishers)?;
    pl.wait_held(&mut lp, &mut ctls, &busy0, nl, Duration::from_millis(300))?;

    // Who a connection is: a listener or a publisher (by index).
    #[derive(Clone, Copy, PartialEq)]
    enum Who {
        Listener(usize),
        Publisher(usize),
        Gone,
    }
    let mut who: Vec<Who> = (0..lp.opened)
        .map(|id| {
            if id < nl {
                Who::Listener(id)
            } else {
                Who::Publisher(id - first_pub)
            }
        })
        .collect();
    let mut conn_of_pub = pubs.clone();
    let mut conn_of_listener: Vec<ConnId> = (0..nl).collect();
    // Per (channel, seq): 0 not answered, 1 accepted, 2 refused; and how
    // many of the channel's listeners have it.
    let mut status: Vec<Vec<u8>> = vec![Vec::new(); nchan];
    let mut have: Vec<Vec<u16>> = vec![Vec::new(); nchan];
    let mut acc_c = vec![0usize; nchan];
    let mut pending = vec![0usize; nchan];
    let mut in_flight: Vec<Option<(usize, usize)>> = vec![None; spec.publishers];
    let mut pub_ready_at = vec![Instant::now(); spec.publishers];
    let mut pub_rr = vec![0usize; spec.publishers];
    let mut next_seq = vec![0usize; nchan];
    let mut chan_busy = vec![0usize; nchan];
    let mut got: Vec<Vec<bool>> = vec![Vec::new(); nl];
    let mut last = vec![None::<usize>; nl];
    let mut cursors: Vec<Cursor> = vec![(None, None); nl];
    let mut repoll: Vec<(Instant, usize)> = Vec::new();
    let owned: Vec<Vec<usize>> = (0..spec.publishers)
        .map(|p| (0..nchan).filter(|c| c % spec.publishers == p).collect())
        .collect();
    let (mut accepted, mut refused, mut answered) = (0usize, 0usize, 0usize);
    let (mut repeated, mut listener_errors, mut reconnects) = (0usize, 0usize, 0usize);
    let mut arrived_refused = 0usize;
    let mut first_error = String::new();
    // Redis: up, then down until the instant, then up again.
    let mut down_at: Option<Instant> = None;
    let mut up_at: Option<Instant> = None;
    let mut first_accept_after: Option<Instant> = None;
    let mut last_progress = Instant::now();
    // Publishing stops by then even if a relay never accepts again, so the
    // losses can still be counted within the deadline.
    let give_up = deadline
        - Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now()) / 3);
    let mut gave_up = false;

    loop {
        let now = Instant::now();
        // Redis's schedule.
        if down_at.is_none() && accepted >= total / 3 {
            r.redis.shutdown()?;
            down_at = Some(Instant::now());
        }
        if let (Some(d), None) = (down_at, up_at) {
            if now >= d + r.down {
                r.redis.restart()?;
                up_at = Some(Instant::now());
            }
        }
        // Publishers.
        for p in 0..spec.publishers {
            if in_flight[p].is_some() || now < pub_ready_at[p] || !lp.net.is_open(conn_of_pub[p]) {
                continue;
            }
            let own = &owned[p];
            for j in 0..own.len() {
                let c = own[(pub_rr[p] + j) % own.len()];
                if !gave_up
                    && acc_c[c] + chan_busy[c] < per_chan
                    && pending[c] + chan_busy[c] < spec.window
                {
                    let s = next_seq[c];
                    status[c].push(0);
                    have[c].push(0);
                    let body = body_of(&format!("c={c} s={s} t=0"), body_size);
                    lp.net
                        .send(conn_of_pub[p], &post_request(&pub_paths[c], &body));
                    next_seq[c] += 1;
                    chan_busy[c] += 1;
                    in_flight[p] = Some((c, s));
                    pub_rr[p] = (pub_rr[p] + j + 1) % own.len();
                    break;
                }
            }
        }
        // Listeners due to ask again.
        let mut i = 0;
        while i < repoll.len() {
            if repoll[i].0 <= now {
                let l = repoll.swap_remove(i).1;
                lp.net.send(
                    conn_of_listener[l],
                    &get_request(&sub_paths[l / k], Some(&cursors[l])),
                );
            } else {
                i += 1;
            }
        }
        if !gave_up && now > give_up {
            gave_up = true;
        }
        let all_answered = in_flight.iter().all(|f| f.is_none())
            && (gave_up || acc_c.iter().all(|&a| a == per_chan));
        if all_answered && pending.iter().all(|&p| p == 0) {
            break;
        }
        // Nothing more can come: stop waiting after 5 s without progress.
        if all_answered && now.duration_since(last_progress) > Duration::from_secs(5) {
            break;
        }
        lp.net.poll(5, &mut lp.evs);
        let evs = std::mem::take(&mut lp.evs);
        for mut ev in evs {
            let id = match &ev {
                Event::Connected(id)
                | Event::Response(id, _)
                | Event::Message(id, _)
                | Event::StreamOpen(id, ..)
                | Event::Closed(id, _) => *id,
            };
            let w = who.get(id).copied().unwrap_or(Who::Gone);
            match (w, &mut ev) {
                (Who::Listener(l), Event::Connected(_)) => {
                    // A listener's new connection asks from its cursor.
                    let req = if t.is_stream() {
                        t.request(&sub_paths[l / k])
                    } else {
                        get_request(&sub_paths[l / k], Some(&cursors[l]))
                    };
                    lp.net.send(id, &req);
                }
                (Who::Publisher(_), Event::Connected(_)) => {}
                (Who::Listener(_), Event::StreamOpen(..)) => {}
                (Who::Listener(l), ev @ (Event::Response(..) | Event::Message(..))) => {
                    let (body, cursor, ok) = match ev {
                        Event::Response(_, resp) => (
                            std::mem::take(&mut resp.body),
                            (resp.last_modified.take(), resp.etag.take()),
                            resp.status == 200,
                        ),
                        Event::Message(_, m) => (std::mem::take(&mut m.data), (None, None), true),
                        _ => unreachable!(),
                    };
                    if !ok {
                        listener_errors += 1;
                        repoll.push((Instant::now() + Duration::from_millis(50), l));
                        continue;
                    }
                    let c = l / k;
                    if let (Some(mc), Some(s), _) = parse_msg(&body) {
                        if mc == c && s < status[c].len() {
                            if got[l].len() <= s {
                                got[l].resize(s + 1, false);
                            }
                            if last[l].is_some_and(|p| s <= p) || got[l][s] {
                                repeated += 1;
                                if first_error.is_empty() {
                                    first_error = format!("channel {c}: {s} after {:?}", last[l]);
                                }
                            } else {
                                got[l][s] = true;
                                last[l] = Some(s);
                                have[c][s] += 1;
                                last_progress = Instant::now();
                                if status[c][s] == 1 && have[c][s] as usize == k {
                                    pending[c] -= 1;
                                }
                                if status[c][s] == 2 && have[c][s] == 1 {
                                    arrived_refused += 1;
                                }
                            }
                        }
                    }
                    if !t.is_stream() {
                        cursors[l] = cursor;
                        lp.net
                            .send(id, &get_request(&sub_paths[c], Some(&cursors[l])));
                    }
                }
                (Who::Publisher(p), Event::Response(_, resp)) => {
                    let Some((c, s)) = in_flight[p].take() else {
                        return Err("a publisher answered twice".into());
                    };
                    chan_busy[c] -= 1;
                    answered += 1;
                    last_progress = Instant::now();
                    if resp.status == 201 || resp.status == 202 {
                        accepted += 1;
                        acc_c[c] += 1;
                        status[c][s] = 1;
                        if (have[c][s] as usize) < k {
                            pending[c] += 1;
                        }
                        if up_at.is_some() && first_accept_after.is_none() {
                            first_accept_after = Some(Instant::now());
                        }
                    } else {
                        refused += 1;
                        status[c][s] = 2;
                        if have[c][s] > 0 {
                            arrived_refused += 1;
                        }
                        pub_ready_at[p] = Instant::now() + Duration::from_millis(50);
                    }
                }
                (w @ (Who::Listener(_) | Who::Publisher(_)), Event::Closed(_, _)) => {
                    // Reconnect to the same server; the new connection asks
                    // again once it is up.
                    reconnects += 1;
                    who[id] = Who::Gone;
                    if let Who::Listener(l) = w {
                        repoll.retain(|&(_, x)| x != l);
                    }
                    let srv = match w {
                        Who::Listener(l) => pl.listener_srv(l),
                        Who::Publisher(p) => pl.publisher_srv(p),
                        Who::Gone => unreachable!(),
                    };
                    let nid = lp
                        .net
                        .connect_to(addrs[srv])
                        .map_err(|e| format!("reconnect: {e}"))?;
                    lp.opened += 1;
                    who.resize(nid + 1, Who::Gone);
                    who[nid] = w;
                    match w {
                        Who::Listener(l) => conn_of_listener[l] = nid,
                        Who::Publisher(p) => {
                            conn_of_pub[p] = nid;
                            // Its message's fate is unknown: counted refused.
                            if let Some((c, s)) = in_flight[p].take() {
                                chan_busy[c] -= 1;
                                answered += 1;
                                refused += 1;
                                status[c][s] = 2;
                            }
                        }
                        Who::Gone => {}
                    }
                }
                (_, Event::Connected(_) | Event::Closed(..)) => {}
                (w, ev) => {
                    return Err(format!(
                        "unexpected event for {}: {ev:?}",
                        match w {
                            Who::Listener(_) => "a listener",
                            Who::Publisher(_) => "a publisher",
                            Who::Gone => "a closed connection",
                        }
                    ))
                }
            }
        }
        lp.check_deadline(|| {
            format!(
                "{answered} answered ({accepted}/{total} accepted), {} channels pending",
                pending.iter().filter(|&&p| p > 0).count()
            )
        })?;
    }
    let mut lost_msgs = 0usize;
    let mut lost_deliveries = 0usize;
    for c in 0..nchan {
        for s in 0..status[c].len() {
            if status[c][s] == 1 && (have[c][s] as usize) < k {
                lost_msgs += 1;
                lost_deliveries += k - have[c][s] as usize;
            }
        }
    }
    if !first_error.is_empty() {
        eprintln!("    restart: {first_error}");
    }
    let ms_of = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() * 1e3,
        _ => f64::NAN,
    };
    let mut m = Metrics::new();
    m.insert("published", answered as f64);
    m.insert("accepted_share", accepted as f64 / total as f64);
    m.insert("accepted", accepted as f64);
    m.insert("refused", refused as f64);
    m.insert("lost_messages", lost_msgs as f64);
    m.insert("lost_deliveries", lost_deliveries as f64);
    m.insert("repeated", repeated as f64);
    m.insert("arrived_refused", arrived_refused as f64);
    m.insert("listener_errors", listener_errors as f64);
    m.insert("reconnects", reconnects as f64);
    m.insert("down_ms", ms_of(down_at, up_at));
    m.insert("recovery_ms", ms_of(up_at, first_accept_after));
    Ok(m)
}

pub(crate) fn parse_msg(b: &[u8]) -> (Option<usize>, Option<usize>, Option<u64>) {
    let s = std::str::from_utf8(b).unwrap_or("");
    let (mut c, mut q, mut t) = (None, None, None);
    for part in s.split(' ') {
        if let Some(v) = part.strip_prefix("c=") {
            c = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("s=") {
            q = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("t=") {
            t = v.parse().ok();
        }
    }
    (c, q, t)
}

/// Idle memory: `n` held listeners of transport `t` over `channels`
/// channels on a fresh server; growth of the instance's Pss (master +
/// workers) per listener.
pub fn idle_memory(
    srv: &Nginx,
    t: Transport,
    n: usize,
    channels: usize,
    settle: Duration,
    deadline: Instant,
) -> Result<Metrics, String> {
    let base = fresh_id("idle");
    let mut ctl = Ctl::new(srv.addr);
    // Let the fresh workers finish starting, then touch the control path
    // once so its first-use allocations are in the baseline.
    std::thread::sleep(settle);
    let w0 = ctl.writing()?;
    if matches!(srv.kind, Kind::Ours(_) | Kind::Nchan) {
        ctl.subscribers(&format!("{base}-warm"))?;
    }
    let (pss0, rss0) = srv.memory_kib();
    let mut lp = Loop::for_transport(srv.addr, deadline, t)?;
    lp.open(n, |net, id| {
        net.send(
            id,
            &t.request(&t.path(&format!("{base}-{}", id % channels))),
        );
    })?;
    if t.is_stream() {
        lp.wait_streams(n)?;
    }
    let mut seen = 0;
    lp.wait_quiet(
        Duration::from_millis(20),
        "waiting for held requests",
        |_| {
            seen = ctl.writing()?;
            Ok(seen >= w0 + n)
        },
    )
    .map_err(|e| format!("{e} (stub_status Writing {seen}, want {})", w0 + n))?;
    let until = Instant::now() + settle;
    lp.wait_quiet(Duration::from_millis(50), "holding", |_| {
        Ok(Instant::now() >= until)
    })?;
    let (pss1, rss1) = srv.memory_kib();
    let mut m = Metrics::new();
    m.insert(
        "pss_bytes_per_listener",
        (pss1 as f64 - pss0 as f64) * 1024.0 / n as f64,
    );
    m.insert(
        "rss_bytes_per_listener",
        (rss1 as f64 - rss0 as f64) * 1024.0 / n as f64,
    );
    m.insert("pss_before_kib", pss0 as f64);
    m.insert("pss_after_kib", pss1 as f64);
    Ok(m)
}

/// The stream ceiling: no nginx, no relay. A child process (this program
/// again, `--stream-ceiling-writer`, in its own process so that its
/// sockets count against its own descriptor limit) accepts `conns`
/// connections, answers each with an EventSource head (chunked), and in
/// each of `rounds` rounds writes one chunk holding one event (the bytes a
/// relay writes for a message) to every connection, one `write` each,
/// while this loop reads and checks them as it does a relay's streams. The
/// writer's CPU per write is what the kernel charges a server for one
/// stream delivery on loopback (the receiver's TCP input runs in the
/// sender's context there): the floor of any relay's server CPU per
/// stream delivery.
pub fn stream_ceiling(
    conns: usize,
    rounds: usize,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let body = body_of("stream ceiling", body_size);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--stream-ceiling-writer")
        .arg(conns.to_string())
        .arg(String::from_utf8_lossy(&body).into_owned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn the writer: {e}"))?;
    let mut to = child.stdin.take().ok_or("no stdin")?;
    let mut from = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    let mut read_line = |what: &str| -> Result<String, String> {
        line.clear();
        from.read_line(&mut line)
            .map_err(|e| format!("writer ({what}): {e}"))?;
        let l = line.trim().to_string();
        if let Some(e) = l.strip_prefix("error ") {
            return Err(format!("writer: {e}"));
        }
        if l.is_empty() {
            return Err(format!("writer ended ({what})"));
        }
        Ok(l)
    };
    let r = (|| {
        let port: u16 = read_line("port")?.parse().map_err(|_| "writer's port")?;
        let addr = SocketAddrV4::new([127, 0, 0, 1].into(), port);
        let mut lp = Loop::new(addr, deadline)?;
        lp.open(conns, |_, _| {})?;
        lp.wait_streams(conns)?;
        let mut got = vec![false; conns];
        let (mut server_ns, mut alls) = (0u64, Vec::with_capacity(rounds));
        for round in 0..rounds {
            got.iter_mut().for_each(|g| *g = false);
            let mut k = 0;
            let t0 = Instant::now();
            to.write_all(b"go\n").map_err(|e| format!("writer: {e}"))?;
            while k < conns {
                lp.net.poll(5, &mut lp.evs);
                for ev in lp.evs.drain(..) {
                    match ev {
                        Event::Message(id, m) if m.data == body => {
                            if std::mem::replace(&mut got[id], true) {
                                return Err(format!("round {round}: a stream got it twice"));
                            }
                            k += 1;
                        }
                        ev => return Err(format!("round {round}: unexpected {ev:?}")),
                    }
                }
                lp.check_deadline(|| format!("round {round}: {k}/{conns} delivered"))?;
            }
            alls.push(ms(t0.elapsed()));
            server_ns += read_line("cpu")?
                .parse::<u64>()
                .map_err(|_| "writer's cpu")?;
        }
        let mut m = Metrics::new();
        m.insert(
            "server_us_per_delivery",
            server_ns as f64 / (conns * rounds) as f64 / 1e3,
        );
        m.insert("all_ms", median(&alls));
        Ok(m)
    })();
    drop(to);
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// The writer of [`stream_ceiling`] (`push-bench --stream-ceiling-writer
/// CONNS BODY`): prints its port, accepts CONNS connections, then for each
/// `go` line on stdin writes the event to every one and prints the CPU
/// time (ns) that took it.
pub fn stream_ceiling_writer(conns: usize, body: &[u8]) -> Result<(), String> {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    // std listens with a backlog of 128; thousands of connects at once
    // need nginx's 4096 (listening again on Linux raises it).
    // SAFETY: listen on a socket this function owns.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::listen(listener.as_raw_fd(), 4096);
    }
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut out = std::io::stdout();
    writeln!(out, "{port}")
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())?;
    let mut event = b"id: 1:0\ndata: ".to_vec();
    event.extend_from_slice(body);
    event.extend_from_slice(b"\n\n");
    let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
    chunk.extend_from_slice(&event);
    chunk.extend_from_slice(b"\r\n");
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut socks = Vec::with_capacity(conns);
    while socks.len() < conns {
        let (mut s, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        s.set_nodelay(true).ok();
        s.write_all(head).map_err(|e| format!("head: {e}"))?;
        socks.push(s);
    }
    for line in std::io::stdin().lock().lines() {
        if line.map_err(|e| e.to_string())?.trim() != "go" {
            break;
        }
        let t0 = self_cpu_ns();
        for s in socks.iter_mut() {
            s.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
        }
        let used = self_cpu_ns() - t0;
        writeln!(out, "{used}")
            .and_then(|_| out.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The ceiling: `conns` keep-alive connections; in each of `rounds` rounds
/// every connection sends one request to the `return 200` location at once
/// and the round ends when all are answered — the shape of a fan-out round
/// (a burst of answers and requests on N connections), without a relay.
pub fn ceiling(
    srv: &Nginx,
    conns: usize,
    rounds: usize,
    body_size: usize,
    deadline: Instant,
) -> Result<Metrics, String> {
    let mut lp = Loop::new(srv.addr, deadline)?;
    let ids = lp.open(conns, |_, _| {})?;
    let req = get_request("/ceiling", None);
    let total = conns * rounds;
    let mut done = 0usize;
    let mut alls = Vec::with_capacity(rounds);
    let cpu0 = srv.cpu_ns();
    let cl0 = self_cpu_ns();
    let t0 = Instant::now();
    for round in 0..rounds {
        let tr = Instant::now();
        for &id in &ids {
            lp.net.send(id, &req);
        }
        let mut got = 0;
        while got < conns {
            lp.net.poll(5, &mut lp.evs);
            for ev in lp.evs.drain(..) {
                match ev {
                    Event::Response(_, r) => {
                        if r.status != 200 || r.body.len() != body_size {
                            return Err(format!("return 200 answered {}", status_line(&r)));
                        }
                        got += 1;
                        done += 1;
                    }
                    Event::Connected(_) => {}
                    Event::Closed(_, why) => return Err(why),
                    ev => return Err(format!("unexpected {ev:?}")),
                }
            }
            lp.check_deadline(|| format!("round {round}: {got}/{conns} answered"))?;
        }
        alls.push(ms(tr.elapsed()));
    }
    let elapsed = t0.elapsed();
    let mut m = Metrics::new();
    m.insert(
        "server_us_per_response",
        (srv.cpu_ns() - cpu0) as f64 / total as f64 / 1e3,
    );
    m.insert(
        "client_us_per_response",
        (self_cpu_ns() - cl0) as f64 / total as f64 / 1e3,
    );
    m.insert("responses_per_s", done as f64 / elapsed.as_secs_f64());
    m.insert("round_ms", median(&alls));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_subscriber_counts() {
        let text = b"queued messages: 0\r\nlast requested: 3 sec. ago\r\nactive subscribers: 42\r\nlast message id: 0:0\r\n";
        assert_eq!(number_after(text, b"subscribers"), Some(42));
        let json = br#"{"messages": 2, "requested": 5, "subscribers": 7, "last_message_id": null}"#;
        assert_eq!(number_after(json, b"subscribers"), Some(7));
        let st = b"Active connections: 3\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 12 Waiting: 2\n";
        assert_eq!(number_after(st, b"Writing:"), Some(12));
    }

    #[test]
    fn message_bodies() {
        let b = body_of("c=3 s=17 t=99", 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_msg(&b), (Some(3), Some(17), Some(99)));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
