//! Load that survives faults, for tests/faults.rs and the soak: listeners
//! that follow a channel over every transport (long-poll and interval-poll
//! with the cursor headers, EventSource with `Last-Event-ID`, WebSocket
//! with `last_event_id`) and come back after anything (a killed worker, a
//! reload, a reset, a stream ended) from the last message they got; and
//! publishers that record how every message was answered. `check_channel`
//! then says whether every listener got every accepted (`201`/`202`)
//! message exactly once, in order.
//!
//! A message body is a token `p<publisher>-<seq>` (or `end`, which stops
//! the followers), optionally followed by a space and `pad` filler bytes;
//! followers check the filler and keep only the token.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stream::{es_request, EventStream, Item};
use super::{chan_path, pct, position, Conf, Conn, Cursor, Nginx, RecvError, Req, Response};

/// The token that ends a follower.
pub const END: &str = "end";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    LongPoll,
    IntervalPoll,
    EventSource,
    WebSocket,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::LongPoll,
        Transport::IntervalPoll,
        Transport::EventSource,
        Transport::WebSocket,
    ];
    /// The `transport` label of `push_stats`.
    pub fn label(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-poll",
            Transport::IntervalPoll => "interval-poll",
            Transport::EventSource => "eventsource",
            Transport::WebSocket => "websocket",
        }
    }
    /// Is a listener of this transport held (counted) while it waits?
    pub fn is_held(self) -> bool {
        self != Transport::IntervalPoll
    }
}

/// The listener location the followers use: `/` offers long-poll,
/// EventSource and WebSocket (broadcast), `/ip` interval-poll.
pub const FOLLOW_LISTENER: &str = "set $push_id $arg_channel;
push_listener long-poll eventsource websocket;
push_listener_concurrency broadcast;";
pub const FOLLOW_INTERVAL: &str = "location /ip {
add_header X-Worker $pid always;
set $push_id $arg_channel;
push_listener interval-poll;
}";

impl Conf {
    /// The listener locations `follow` expects (`FOLLOW_LISTENER`,
    /// `FOLLOW_INTERVAL`).
    pub fn for_followers(self) -> Conf {
        self.listener_body(FOLLOW_LISTENER)
            .listener_server(FOLLOW_INTERVAL)
    }
}

/// The raw request of a listener of transport `t` on `ch` (WebSocket: an
/// upgrade), for clients that send it and never read (aborts, slow
/// readers).
pub fn raw_listener_request(t: Transport, ch: &str) -> Vec<u8> {
    let path = chan_path(ch);
    match t {
        Transport::EventSource => es_request(&path, &[]),
        Transport::WebSocket => format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes(),
        Transport::IntervalPoll => Req::get(&format!("/ip?channel={}", pct(ch.as_bytes()))).to_bytes(),
        Transport::LongPoll => Req::get(&path).to_bytes(),
    }
}

/// A message id `(time, tag)`.
pub type Id = (i64, u64);

pub fn parse_id(s: &str) -> Option<Id> {
    let (t, tag) = s.trim().split_once(':')?;
    Some((t.parse().ok()?, tag.parse().ok()?))
}

/// `next` is the message right after `prev` in one channel's sequence.
pub fn is_successor(prev: Id, next: Id) -> bool {
    if next.0 == prev.0 {
        next.1 == prev.1 + 1
    } else {
        next.0 > prev.0 && next.1 == 0
    }
}

/// The filler after a token: `pad` bytes `a..z` repeating.
pub fn filler(pad: usize) -> String {
    (0..pad).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

pub fn make_body(token: &str, pad: usize) -> String {
    if pad == 0 {
        token.to_string()
    } else {
        format!("{token} {}", filler(pad))
    }
}

/// The token of a body, if its filler is intact.
pub fn token_of(body: &str) -> Result<String, String> {
    match body.split_once(' ') {
        None => Ok(body.to_string()),
        Some((tok, rest)) if rest == filler(rest.len()) => Ok(tok.to_string()),
        Some((tok, rest)) => Err(format!(
            "damaged body of {tok}: {} filler bytes not as sent",
            rest.len()
        )),
    }
}

/// What a follower sees as it goes; the test reads it while the load runs.
#[derive(Default, Debug)]
pub struct Progress {
    pub received: AtomicUsize,
    pub reconnects: AtomicUsize,
    /// The worker serving it now (0: none yet).
    pub worker: AtomicI32,
    pub done: AtomicBool,
}

#[derive(Clone, Debug)]
pub struct Follow {
    pub port: u16,
    pub channel: String,
    pub transport: Transport,
    /// Give up at this point (a failure).
    pub deadline: Instant,
    /// Stop at the next chance (not a failure).
    pub stop: Arc<AtomicBool>,
    /// Pause between interval-poll requests answered 304.
    pub poll_interval: Duration,
    /// How long a held request or an idle stream may go without a message
    /// before the follower asks again (counted in `timeouts`).
    pub patience: Duration,
}

impl Follow {
    pub fn new(port: u16, channel: &str, transport: Transport, deadline: Instant) -> Follow {
        Follow {
            port,
            channel: channel.to_string(),
            transport,
            deadline,
            stop: Arc::new(AtomicBool::new(false)),
            poll_interval: Duration::from_millis(50),
            patience: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FollowerReport {
    pub transport: Transport,
    pub channel: String,
    /// Tokens in the order they arrived, with their ids.
    pub got: Vec<(Id, String)>,
    /// Connections lost or streams ended, resumed from the last id.
    pub reconnects: usize,
    /// Answers `304` (a shutting-down worker's, or interval-poll's).
    pub not_modified: usize,
    /// Requests or streams given up for want of a message (`patience`).
    pub timeouts: usize,
    /// Workers that served it.
    pub workers: BTreeSet<i32>,
    /// What stopped it short of `end`, if anything.
    pub failure: Option<String>,
}

impl FollowerReport {
    fn new(f: &Follow) -> FollowerReport {
        FollowerReport {
            transport: f.transport,
            channel: f.channel.clone(),
            got: Vec::new(),
            reconnects: 0,
            not_modified: 0,
            timeouts: 0,
            workers: BTreeSet::new(),
            failure: None,
        }
    }
    fn last(&self) -> Option<Id> {
        self.got.last().map(|(id, _)| *id)
    }
    /// Takes one message; false (with `failure` set) if it is not the next
    /// one, or damaged.
    fn take(&mut self, id: Id, body: &str, st: &Progress) -> bool {
        if let Some(prev) = self.last() {
            if !is_successor(prev, id) {
                self.failure = Some(format!(
                    "{:?} on {:?}: after {prev:?} got {id:?} ({:?}) after {} messages: not the next message",
                    self.transport,
                    self.channel,
                    body.split(' ').next().unwrap_or(""),
                    self.got.len()
                ));
                return false;
            }
        }
        match token_of(body) {
            Ok(tok) => self.got.push((id, tok)),
            Err(e) => {
                self.failure = Some(format!("{:?} on {:?}: {e}", self.transport, self.channel));
                return false;
            }
        }
        st.received.fetch_add(1, Ordering::Relaxed);
        true
    }
    fn ended(&self) -> bool {
        self.got.last().is_some_and(|(_, t)| t == END)
    }
    fn lost(&mut self, st: &Progress) {
        self.reconnects += 1;
        st.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection to `port` and the worker serving it (`GET /_pid`).
pub fn open_in_worker(port: u16) -> Result<(Conn, i32), String> {
    let mut c = Conn::try_open(port).map_err(|e| format!("connect: {e}"))?;
    let r = c
        .try_request(&Req::get("/_pid"), Duration::from_secs(10))
        .map_err(|e| format!("/_pid: {e}"))?;
    if r.status != 200 || !r.is_keep_alive() {
        return Err(format!(
            "/_pid answered {} (keep-alive {})",
            r.status,
            r.is_keep_alive()
        ));
    }
    let pid = r.text().trim().parse().map_err(|_| "pid".to_string())?;
    Ok((c, pid))
}

/// Starts a follower thread.
pub fn follow(f: Follow) -> (Arc<Progress>, JoinHandle<FollowerReport>) {
    let st = Arc::new(Progress::default());
    let st2 = st.clone();
    let h = std::thread::Builder::new()
        .name(format!("follow-{}", f.channel))
        .stack_size(512 * 1024)
        .spawn(move || {
            let r = match f.transport {
                Transport::LongPoll | Transport::IntervalPoll => follow_poll(&f, &st2),
                Transport::EventSource => follow_es(&f, &st2),
                Transport::WebSocket => follow_ws(&f, &st2),
            };
            st2.done.store(true, Ordering::SeqCst);
            r
        })
        .expect("spawn a follower");
    (st, h)
}

/// The time left before `deadline`, at most `cap`; None when it passed.
fn left(deadline: Instant, cap: Duration) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).min(cap))
}

/// Short pause before a reconnection (pacing, not synchronisation).
fn backoff() {
    std::thread::sleep(Duration::from_millis(20));
}

fn follow_poll(f: &Follow, st: &Progress) -> FollowerReport {
    let mut rep = FollowerReport::new(f);
    let interval = f.transport == Transport::IntervalPoll;
    let path = if interval {
        format!("/ip?channel={}", pct(f.channel.as_bytes()))
    } else {
        chan_path(&f.channel)
    };
    let mut conn: Option<Conn> = None;
    let mut cursor = Cursor::default();
    let mut last_err = String::new();
    while !rep.ended() && !f.stop.load(Ordering::Relaxed) {
        let Some(wait) = left(f.deadline, f.patience) else {
            rep.failure = Some(format!(
                "{:?} on {:?}: deadline after {} messages (cursor {cursor:?}, last error {last_err})",
                f.transport,
                f.channel,
                rep.got.len()
            ));
            break;
        };
        if conn.is_none() {
            match open_in_worker(f.port) {
                Ok((c, pid)) => {
                    rep.workers.insert(pid);
                    st.worker.store(pid, Ordering::Relaxed);
                    conn = Some(c);
                }
                Err(e) => {
                    last_err = e;
                    backoff();
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("a connection");
        let mut req = Req::get(&path);
        req = req.cursor(&cursor);
        match c.try_request(&req, wait) {
            Ok(r) => {
                if !r.is_keep_alive() {
                    conn = None;
                }
                match r.status {
                    200 => {
                        let id = position(&r);
                        if !rep.take(id, &r.text(), st) {
                            break;
                        }
                        cursor = r.cursor();
                    }
                    304 => {
                        rep.not_modified += 1;
                        if !echoes(&r, &cursor) {
                            rep.failure = Some(format!(
                                "{:?} on {:?}: 304 did not echo the cursor {cursor:?}: {:?}",
                                f.transport, f.channel, r.headers
                            ));
                            break;
                        }
                        if interval {
                            std::thread::sleep(f.poll_interval);
                        }
                    }
                    s => {
                        rep.failure = Some(format!(
                            "{:?} on {:?}: answered {s} {:?}",
                            f.transport,
                            f.channel,
                            r.text()
                        ));
                        break;
                    }
                }
            }
            Err(RecvError::Timeout) => {
                rep.timeouts += 1;
                conn = None;
            }
            Err(e) => {
                last_err = e.to_string();
                rep.lost(st);
                conn = None;
            }
        }
    }
    rep
}

/// A 304 echoes the request's cursor (none when it had none).
fn echoes(r: &Response, cursor: &Cursor) -> bool {
    r.header("Last-Modified") == cursor.last_modified.as_deref()
        && r.header("Etag").and_then(super::etag_number) == cursor.tag()
}

fn id_text(id: Id) -> String {
    format!("{}:{}", id.0, id.1)
}

fn follow_es(f: &Follow, st: &Progress) -> FollowerReport {
    let mut rep = FollowerReport::new(f);
    let path = chan_path(&f.channel);
    let mut last_err = String::new();
    'outer: while !rep.ended() && !f.stop.load(Ordering::Relaxed) {
        let Some(wait) = left(f.deadline, f.patience) else {
            rep.failure = Some(format!(
                "EventSource on {:?}: deadline after {} messages (last error {last_err})",
                f.channel,
                rep.got.len()
            ));
            break;
        };
        let (conn, pid) = match open_in_worker(f.port) {
            Ok(x) => x,
            Err(e) => {
                last_err = e;
                backoff();
                continue;
            }
        };
        rep.workers.insert(pid);
        st.worker.store(pid, Ordering::Relaxed);
        let last = rep.last().map(id_text);
        let extra: Vec<(&str, &str)> = last
            .as_deref()
            .map(|id| vec![("Last-Event-ID", id)])
            .unwrap_or_default();
        let (stream, buf) = conn.into_parts();
        let mut es = match EventStream::try_start(stream, buf, &es_request(&path, &extra), wait) {
            Ok(es) => es,
            Err(e) => {
                last_err = e;
                rep.lost(st);
                backoff();
                continue;
            }
        };
        if es.status != 200 {
            rep.failure = Some(format!(
                "EventSource on {:?}: answered {} {:?}",
                f.channel,
                es.status,
                es.plain_body()
            ));
            break;
        }
        loop {
            if f.stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            let Some(wait) = left(f.deadline, f.patience) else {
                continue 'outer;
            };
            match es.try_next(wait) {
                Ok(Some(Item::Event(e))) => {
                    let Some(id) = e.id.as_deref().and_then(parse_id) else {
                        rep.failure = Some(format!("EventSource event without an id: {e:?}"));
                        break 'outer;
                    };
                    if !rep.take(id, &e.data, st) {
                        break 'outer;
                    }
                    if rep.ended() {
                        break 'outer;
                    }
                }
                Ok(Some(Item::Comment(_))) => {}
                Ok(Some(Item::End)) => {
                    rep.lost(st);
                    continue 'outer;
                }
                Ok(None) => {
                    rep.timeouts += 1;
                    continue 'outer;
                }
                Err(e) => {
                    last_err = e.to_string();
                    rep.lost(st);
                    continue 'outer;
                }
            }
        }
    }
    rep
}

/// A WebSocket client (ws+meta.nchan) on a connection served by a known
/// worker, resuming after `last`.
fn ws_connect(
    conn: Conn,
    channel: &str,
    last: Option<Id>,
) -> Result<tungstenite::WebSocket<TcpStream>, String> {
    use tungstenite::client::IntoClientRequest;
    let port = conn.port;
    let (stream, rest) = conn.into_parts();
    if !rest.is_empty() {
        return Err("bytes left on the connection".into());
    }
    let mut path = chan_path(channel);
    if let Some(id) = last {
        path.push_str(&format!("&last_event_id={}%3A{}", id.0, id.1));
    }
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "ws+meta.nchan".parse().expect("header value"),
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    tungstenite::client(req, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| format!("handshake: {e}"))
}

/// `id: <t>:<tag>\ncontent-type: <type>\n\n<body>` (ws+meta.nchan).
fn ws_meta(frame: &[u8]) -> Option<(Id, String)> {
    let text = std::str::from_utf8(frame).ok()?;
    let (head, body) = text.split_once("\n\n")?;
    let id = head
        .lines()
        .next()?
        .strip_prefix("id: ")
        .and_then(parse_id)?;
    Some((id, body.to_string()))
}

fn follow_ws(f: &Follow, st: &Progress) -> FollowerReport {
    use tungstenite::Message;
    let mut rep = FollowerReport::new(f);
    let mut last_err = String::new();
    'outer: while !rep.ended() && !f.stop.load(Ordering::Relaxed) {
        if left(f.deadline, f.patience).is_none() {
            rep.failure = Some(format!(
                "WebSocket on {:?}: deadline after {} messages (last error {last_err})",
                f.channel,
                rep.got.len()
            ));
            break;
        }
        let (conn, pid) = match open_in_worker(f.port) {
            Ok(x) => x,
            Err(e) => {
                last_err = e;
                backoff();
                continue;
            }
        };
        rep.workers.insert(pid);
        st.worker.store(pid, Ordering::Relaxed);
        let mut ws = match ws_connect(conn, &f.channel, rep.last()) {
            Ok(ws) => ws,
            Err(e) => {
                last_err = e;
                rep.lost(st);
                backoff();
                continue;
            }
        };
        loop {
            if f.stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            let Some(wait) = left(f.deadline, f.patience) else {
                continue 'outer;
            };
            ws.get_mut().set_read_timeout(Some(wait)).ok();
            let frame = match ws.read() {
                Ok(Message::Text(t)) => t.as_bytes().to_vec(),
                Ok(Message::Binary(b)) => b.to_vec(),
                Ok(Message::Close(_)) => {
                    rep.lost(st);
                    continue 'outer;
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    rep.timeouts += 1;
                    continue 'outer;
                }
                Err(e) => {
                    last_err = e.to_string();
                    rep.lost(st);
                    continue 'outer;
                }
            };
            let Some((id, body)) = ws_meta(&frame) else {
                rep.failure = Some(format!(
                    "WebSocket on {:?}: not a ws+meta.nchan frame: {:?}",
                    f.channel,
                    String::from_utf8_lossy(&frame[..frame.len().min(200)])
                ));
                break 'outer;
            };
            if !rep.take(id, &body, st) || rep.ended() {
                break 'outer;
            }
        }
    }
    rep
}

// ---------------------------------------------------------------------------
// Publishers.

#[derive(Clone, Debug)]
pub struct Publish {
    pub port: u16,
    /// The publisher's number (`p<id>-<seq>`).
    pub id: usize,
    /// Round-robin over these channels, starting at `id`.
    pub channels: Vec<String>,
    /// Stop after this many messages (None: until `stop`).
    pub count: Option<usize>,
    pub stop: Arc<AtomicBool>,
    /// Pause after each answer (pacing).
    pub pace: Duration,
    /// Filler bytes after the token.
    pub pad: usize,
    /// Answers counted as refusals (e.g. 507, 503); any other status but
    /// 201/202 is a failure.
    pub refusable: Vec<u16>,
    pub deadline: Instant,
    /// The sender location's path prefix (`/`).
    pub path: String,
}

impl Publish {
    pub fn new(
        port: u16,
        id: usize,
        channels: &[String],
        count: usize,
        deadline: Instant,
    ) -> Publish {
        Publish {
            port,
            id,
            channels: channels.to_vec(),
            count: Some(count),
            stop: Arc::new(AtomicBool::new(false)),
            pace: Duration::from_millis(5),
            pad: 0,
            refusable: Vec::new(),
            deadline,
            path: "/".into(),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct PubReport {
    /// Tokens answered 201/202, by channel, in publishing order.
    pub accepted: BTreeMap<String, Vec<String>>,
    /// Tokens whose request was sent and never answered (the connection
    /// died): they may or may not have been stored.
    pub unknown: BTreeMap<String, Vec<String>>,
    /// Every status, counted.
    pub statuses: BTreeMap<u16, usize>,
    pub max_latency: Duration,
    /// When each answer arrived.
    pub answered_at: Vec<Instant>,
    pub failure: Option<String>,
}

impl PubReport {
    pub fn merge(reports: &[PubReport]) -> PubReport {
        let mut out = PubReport::default();
        for r in reports {
            for (ch, v) in &r.accepted {
                out.accepted
                    .entry(ch.clone())
                    .or_default()
                    .extend(v.iter().cloned());
            }
            for (ch, v) in &r.unknown {
                out.unknown
                    .entry(ch.clone())
                    .or_default()
                    .extend(v.iter().cloned());
            }
            for (s, n) in &r.statuses {
                *out.statuses.entry(*s).or_default() += n;
            }
            out.max_latency = out.max_latency.max(r.max_latency);
            out.answered_at.extend(r.answered_at.iter().copied());
            if out.failure.is_none() {
                out.failure = r.failure.clone();
            }
        }
        out.answered_at.sort();
        out
    }
    pub fn accepted_total(&self) -> usize {
        self.accepted.values().map(Vec::len).sum()
    }
    pub fn unknown_total(&self) -> usize {
        self.unknown.values().map(Vec::len).sum()
    }
    /// The longest time without any answer between `from` and `to`.
    pub fn longest_silence(&self, from: Instant, to: Instant) -> Duration {
        let mut prev = from;
        let mut worst = Duration::ZERO;
        for &t in self.answered_at.iter().filter(|&&t| t >= from && t <= to) {
            worst = worst.max(t - prev);
            prev = t;
        }
        worst.max(to.saturating_duration_since(prev))
    }
}

pub fn publish(p: Publish) -> JoinHandle<PubReport> {
    std::thread::Builder::new()
        .name(format!("publish-{}", p.id))
        .stack_size(512 * 1024)
        .spawn(move || publisher(&p))
        .expect("spawn a publisher")
}

fn publisher(p: &Publish) -> PubReport {
    let mut rep = PubReport::default();
    let mut conn: Option<Conn> = None;
    let mut seq = 0usize;
    while !p.stop.load(Ordering::Relaxed) && p.count.is_none_or(|n| seq < n) {
        if Instant::now() >= p.deadline {
            rep.failure = Some(format!("publisher {}: deadline after {seq} messages", p.id));
            break;
        }
        let ch = &p.channels[(seq + p.id) % p.channels.len()];
        if conn.is_none() {
            match Conn::try_open(p.port) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    backoff();
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("a connection");
        let tok = format!("p{}-{seq}", p.id);
        let req = Req::post(
            &format!("{}?channel={}", p.path, pct(ch.as_bytes())),
            make_body(&tok, p.pad).as_bytes(),
        )
        .header("Content-Type", "text/plain");
        let t0 = Instant::now();
        match c.try_request(&req, Duration::from_secs(30)) {
            Ok(r) => {
                let now = Instant::now();
                rep.max_latency = rep.max_latency.max(now - t0);
                rep.answered_at.push(now);
                *rep.statuses.entry(r.status).or_default() += 1;
                if !r.is_keep_alive() {
                    conn = None;
                }
                match r.status {
                    201 | 202 => rep.accepted.entry(ch.clone()).or_default().push(tok),
                    s if p.refusable.contains(&s) => {}
                    s => {
                        rep.failure = Some(format!(
                            "publisher {}: {tok} to {ch:?} answered {s} {:?}",
                            p.id,
                            r.text()
                        ));
                        break;
                    }
                }
            }
            Err(RecvError::Timeout) => {
                rep.failure = Some(format!(
                    "publisher {}: {tok} to {ch:?} not answered in 30 s",
                    p.id
                ));
                break;
            }
            Err(_) => {
                rep.unknown.entry(ch.clone()).or_default().push(tok);
                conn = None;
            }
        }
        seq += 1;
        if !p.pace.is_zero() {
            std::thread::sleep(p.pace);
        }
    }
    rep
}

/// Publishes `end` to every channel (retried until 201/202, bounded).
pub fn publish_end(ngx: &Nginx, channels: &[String], within: Duration) {
    for ch in channels {
        let ok = super::poll_until(within, || {
            Conn::try_open(ngx.sender_port)
                .ok()
                .and_then(|mut c| {
                    c.try_request(
                        &Req::post(&chan_path(ch), END.as_bytes())
                            .header("Content-Type", "text/plain"),
                        super::PROMPT,
                    )
                    .ok()
                })
                .is_some_and(|r| matches!(r.status, 201 | 202))
        });
        assert!(ok, "`end` to {ch:?} not accepted within {within:?}");
    }
}

/// Every held follower of each channel counted by the channel info (all
/// back after a fault, none left behind).
pub fn wait_held(ngx: &Nginx, counts: &BTreeMap<String, u64>, within: Duration) {
    let mut wrong = Vec::new();
    let ok = super::poll_until(within, || {
        wrong = counts
            .iter()
            .filter_map(|(ch, &n)| {
                let got = ngx.subscribers(ch).unwrap_or(0);
                (got != n).then(|| format!("{ch}: {got} of {n}"))
            })
            .collect();
        if !wrong.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        wrong.is_empty()
    });
    assert!(ok, "channel info counts after {within:?}: {wrong:?}");
}

/// Whether every follower of one channel got every accepted message of it,
/// exactly once, in order, and nothing that was not published; the
/// problems found.
pub fn check_channel(
    ch: &str,
    followers: &[&FollowerReport],
    accepted: &[String],
    unknown: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let accepted_set: BTreeSet<&str> = accepted.iter().map(String::as_str).collect();
    let unknown_set: BTreeSet<&str> = unknown.iter().map(String::as_str).collect();
    let mut reference: Option<Vec<&str>> = None;
    for (i, f) in followers.iter().enumerate() {
        let who = format!("{ch} follower {i} ({:?})", f.transport);
        if let Some(e) = &f.failure {
            problems.push(format!("{who}: {e}"));
            continue;
        }
        if !f.ended() {
            problems.push(format!("{who}: stopped without `end`"));
        }
        let toks: Vec<&str> = f
            .got
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| *t != END)
            .collect();
        let seen: BTreeSet<&str> = toks.iter().copied().collect();
        if seen.len() != toks.len() {
            problems.push(format!("{who}: a message arrived twice"));
        }
        let missing: Vec<&&str> = accepted_set.difference(&seen).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{who}: {} accepted messages missing, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        let strange: Vec<&&str> = seen
            .iter()
            .filter(|t| !accepted_set.contains(*t) && !unknown_set.contains(*t))
            .collect();
        if !strange.is_empty() {
            problems.push(format!(
                "{who}: {} messages nobody published as accepted or unanswered, e.g. {:?}",
                strange.len(),
                &strange[..strange.len().min(5)]
            ));
        }
        // Each publisher's messages in the order it published them.
        let mut last_seq: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &toks {
            if let Some((p, seq)) = t.split_once('-') {
                let seq: u64 = seq.parse().unwrap_or(0);
                if let Some(&prev) = last_seq.get(p) {
                    if seq <= prev {
                        problems.push(format!("{who}: {p}-{seq} after {p}-{prev}: out of order"));
                        break;
                    }
                }
                last_seq.insert(p, seq);
            }
        }
        match &reference {
            None => reference = Some(toks),
            Some(r) if *r != toks => problems.push(format!(
                "{who}: another sequence than follower 0 ({} against {} messages)",
                toks.len(),
                r.len()
            )),
            Some(_) => {}
        }
    }
    problems
}

/// `check_channel` for every channel of `followers`; panics with every
/// problem found.
pub fn assert_all_delivered(followers: &[FollowerReport], pubs: &PubReport) {
    let mut by_channel: BTreeMap<&str, Vec<&FollowerReport>> = BTreeMap::new();
    for f in followers {
        by_channel.entry(f.channel.as_str()).or_default().push(f);
    }
    let empty = Vec::new();
    let mut problems = Vec::new();
    for (ch, fs) in &by_channel {
        let accepted = pubs.accepted.get(*ch).unwrap_or(&empty);
        let unknown = pubs.unknown.get(*ch).unwrap_or(&empty);
        problems.extend(check_channel(ch, fs, accepted, unknown));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
}

/// Counts for a report line.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub followers: usize,
    pub deliveries: usize,
    pub reconnects: usize,
    pub not_modified: usize,
    pub timeouts: usize,
    pub by_transport: BTreeMap<&'static str, usize>,
}

pub fn tally(followers: &[FollowerReport]) -> Tally {
    let mut t = Tally::default();
    for f in followers {
        t.followers += 1;
        t.deliveries += f.got.len();
        t.reconnects += f.reconnects;
        t.not_modified += f.not_modified;
        t.timeouts += f.timeouts;
        *t.by_transport.entry(f.transport.label()).or_default() += 1;
    }
    t
}

/// How many of the unanswered publishes were stored after all (seen by the
/// followers of their channel).
pub fn unanswered_delivered(followers: &[FollowerReport], pubs: &PubReport) -> usize {
    pubs.unknown
        .iter()
        .map(|(ch, toks)| {
            let seen: BTreeSet<&str> = followers
                .iter()
                .filter(|f| &f.channel == ch)
                .flat_map(|f| f.got.iter().map(|(_, t)| t.as_str()))
                .collect();
            toks.iter().filter(|t| seen.contains(t.as_str())).count()
        })
        .sum()
}
