//! One Redis connection, sans-IO: bytes in, bytes out, time passed in.
//!
//! It speaks RESP3 (`HELLO 3`, with `AUTH` inside when the URL has
//! credentials; then `SELECT`, `SCRIPT LOAD` of every script and the
//! markers of the namespaces), pipelines commands (any number in flight,
//! replies matched in order), tells RESP3 pushes from replies (in RESP3 the
//! confirmations of `SUBSCRIBE` / `UNSUBSCRIBE` are pushes: they are
//! matched to their command here and not passed on), reloads a script and
//! retries on `NOSCRIPT` transparently, and says when the connection must be
//! dropped ([`Client::expired`]: a command unanswered for the connect
//! timeout, a protocol error, a failed handshake) and when to try again
//! ([`Client::retry_after`]).
//!
//! Replies and pushes are handed to the caller in the order they arrived,
//! which is the order Redis executed the commands: a push published before
//! a script ran comes before that script's reply.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::Duration;

use crate::outcome::Level;

use super::backoff::Backoff;
use super::resp::{command, Arg, Frame, Limits, Reader};
use super::scripts::{marker_reply, Script};
use super::url::RedisUrl;

/// How many times one command is retried after `NOSCRIPT`.
const NOSCRIPT_RETRIES: u8 = 3;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub url: RedisUrl,
    pub connect_timeout_ms: u64,
    /// Marker keys, one per namespace, read (and set when missing) at
    /// every handshake.
    pub markers: Vec<Vec<u8>>,
    pub limits: Limits,
    /// Seeds the reconnection jitter (the worker's pid, for example).
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection; waiting to retry.
    Down,
    /// Connecting or shaking hands: commands queue up.
    Connecting,
    /// The handshake is done.
    Ready,
}

enum What<T> {
    Tag(T),
    Eval {
        tag: T,
        script: Script,
        bytes: Vec<u8>,
        tries: u8,
    },
    /// Confirmations (pushes) still expected.
    Sub(usize),
    Unsub(usize),
    Hello,
    Select,
    Load(Script),
    Reload,
    Marker(usize),
    Ignore,
}

struct Pending<T> {
    what: What<T>,
    /// Where the command starts in the output stream.
    start: u64,
}

/// What arrived, for the caller.
#[derive(Debug)]
pub enum Incoming<'f, 'a, T> {
    /// The handshake is done; the namespaces' marker seconds, in the order
    /// of [`ClientConfig::markers`].
    Ready(&'f [u64]),
    /// The reply to a command sent with `tag` (possibly an error frame).
    Reply(T, &'f Frame<'a>),
    /// A pub/sub message (`>3 message <channel> <payload>`) or another push.
    Push(&'f Frame<'a>),
}

/// The write side: what the caller may do while handling what arrived.
pub struct Tx<T> {
    out: Vec<u8>,
    /// Bytes ever appended to `out`.
    produced: u64,
    pending: VecDeque<Pending<T>>,
    shas: [Vec<u8>; Script::ALL.len()],
    /// Commands sent over this connection (stats).
    pub commands: u64,
}

impl<T> Tx<T> {
    fn push(&mut self, what: What<T>, args: &[Arg<'_>]) {
        let start = self.produced;
        let before = self.out.len();
        command(&mut self.out, args);
        self.produced += (self.out.len() - before) as u64;
        self.commands += 1;
        self.pending.push_back(Pending { what, start });
    }

    /// A command whose reply comes back under `tag`.
    pub fn cmd(&mut self, tag: T, args: &[Arg<'_>]) {
        self.push(What::Tag(tag), args);
    }

    /// `EVALSHA` of a loaded script; on `NOSCRIPT` it is loaded again and
    /// the call repeated, transparently.
    pub fn eval(&mut self, tag: T, script: Script, keys: &[&[u8]], argv: &[Arg<'_>]) {
        let mut bytes = Vec::new();
        let mut all: Vec<Arg<'_>> = Vec::with_capacity(3 + keys.len() + argv.len());
        all.push(Arg::B(b"EVALSHA"));
        all.push(Arg::B(&self.shas[script.index()]));
        all.push(Arg::U(keys.len() as u64));
        all.extend(keys.iter().map(|k| Arg::B(k)));
        all.extend_from_slice(argv);
        command(&mut bytes, &all);
        self.send_eval(tag, script, bytes, 0);
    }

    fn send_eval(&mut self, tag: T, script: Script, bytes: Vec<u8>, tries: u8) {
        let start = self.produced;
        self.out.extend_from_slice(&bytes);
        self.produced += bytes.len() as u64;
        self.commands += 1;
        self.pending.push_back(Pending {
            what: What::Eval {
                tag,
                script,
                bytes,
                tries,
            },
            start,
        });
    }

    pub fn subscribe(&mut self, channels: &[&[u8]]) {
        self.channels(b"SUBSCRIBE", channels);
    }

    pub fn unsubscribe(&mut self, channels: &[&[u8]]) {
        self.channels(b"UNSUBSCRIBE", channels);
    }

    fn channels(&mut self, verb: &'static [u8], channels: &[&[u8]]) {
        if channels.is_empty() {
            return;
        }
        let mut args = Vec::with_capacity(channels.len() + 1);
        args.push(Arg::B(verb));
        args.extend(channels.iter().map(|c| Arg::B(c)));
        let what = if verb == b"SUBSCRIBE" {
            What::Sub(channels.len())
        } else {
            What::Unsub(channels.len())
        };
        self.push(what, &args);
    }

    /// A command whose reply nobody needs (a heartbeat `PING`).
    pub fn ping(&mut self) {
        self.push(What::Ignore, &[Arg::B(b"PING")]);
    }

    /// Commands waiting for their reply (or confirmations).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

pub struct Client<T> {
    cfg: ClientConfig,
    rx: Reader,
    tx: Tx<T>,
    phase: Phase,
    /// Handshake replies still expected.
    handshake: usize,
    /// The namespaces' markers, kept across connections.
    markers: Vec<u64>,
    /// The connection must be dropped.
    broken: bool,
    /// When the current attempt started, the TCP connection came up, and
    /// the last bytes arrived.
    connecting_at: u64,
    connected_at: Option<u64>,
    last_input: u64,
    /// The command heading the queue (by stream offset) and when the
    /// driver first saw it waiting: the command timeout counts from then,
    /// on the driver's clock only.
    head_seen: Cell<(u64, u64)>,
    retry_at: u64,
    backoff: Backoff,
    logs: Vec<(Level, String)>,
    /// Connections made ready (stats).
    pub connections: u64,
}

impl<T> Client<T> {
    pub fn new(cfg: ClientConfig) -> Client<T> {
        Client {
            rx: Reader::new(cfg.limits),
            tx: Tx {
                out: Vec::new(),
                produced: 0,
                pending: VecDeque::new(),
                shas: Default::default(),
                commands: 0,
            },
            phase: Phase::Down,
            handshake: 0,
            markers: vec![0; cfg.markers.len()],
            broken: false,
            connecting_at: 0,
            connected_at: None,
            last_input: 0,
            head_seen: Cell::new((u64::MAX, 0)),
            retry_at: 0,
            backoff: Backoff::new(cfg.connect_timeout_ms, cfg.seed),
            logs: Vec::new(),
            connections: 0,
            cfg,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Commands waiting for their reply (or confirmations).
    pub fn in_flight(&self) -> usize {
        self.tx.pending.len()
    }

    pub fn tx(&mut self) -> &mut Tx<T> {
        &mut self.tx
    }

    /// Bytes to write; the driver drains what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.tx.out
    }

    pub fn take_logs(&mut self) -> Vec<(Level, String)> {
        std::mem::take(&mut self.logs)
    }

    pub fn log(&mut self, level: Level, line: String) {
        self.logs.push((level, line));
    }

    fn target(&self) -> String {
        format!("{}:{}", self.cfg.url.host, self.cfg.url.port)
    }

    /// A connection attempt starts: the handshake is queued.
    pub fn connecting(&mut self, now: u64) {
        self.tx.out.clear();
        self.tx.pending.clear();
        self.rx.reset();
        self.phase = Phase::Connecting;
        self.broken = false;
        self.connecting_at = now;
        self.connected_at = None;
        self.last_input = now;
        let url = &self.cfg.url;
        let mut hello: Vec<Arg<'_>> = vec![Arg::B(b"HELLO"), Arg::B(b"3")];
        if let Some(pass) = &url.password {
            hello.push(Arg::B(b"AUTH"));
            hello.push(Arg::B(url.user.as_deref().unwrap_or(b"default")));
            hello.push(Arg::B(pass));
        }
        self.tx.push(What::Hello, &hello);
        self.handshake = 1;
        if let Some(db) = url.db {
            self.tx
                .push(What::Select, &[Arg::B(b"SELECT"), Arg::U(u64::from(db))]);
            self.handshake += 1;
        }
        for s in Script::ALL {
            self.tx.push(
                What::Load(s),
                &[
                    Arg::B(b"SCRIPT"),
                    Arg::B(b"LOAD"),
                    Arg::B(s.source().as_bytes()),
                ],
            );
            self.handshake += 1;
        }
        for i in 0..self.cfg.markers.len() {
            let key = self.cfg.markers[i].clone();
            let known = self.markers.get(i).copied().unwrap_or(0);
            let floor = if known > 0 { known + 1 } else { 0 };
            self.tx.push(
                What::Marker(i),
                &[
                    Arg::B(b"EVAL"),
                    Arg::B(Script::Marker.source().as_bytes()),
                    Arg::U(1),
                    Arg::B(&key),
                    Arg::U(floor),
                ],
            );
            self.handshake += 1;
        }
    }

    /// The TCP connection is up: the driver may write.
    pub fn connected(&mut self, now: u64) {
        self.connected_at = Some(now);
        self.last_input = now;
    }

    /// The connection is gone. Returns the tags of the commands that got no
    /// reply, each with whether it may have run (some of it was written).
    pub fn disconnected(&mut self, now: u64) -> Vec<(T, bool)> {
        let written = self.tx.produced - self.tx.out.len() as u64;
        let was_ready = self.phase == Phase::Ready;
        let mut lost = Vec::new();
        for p in self.tx.pending.drain(..) {
            match p.what {
                What::Tag(tag) | What::Eval { tag, .. } => lost.push((tag, p.start < written)),
                _ => {}
            }
        }
        self.tx.out.clear();
        self.rx.reset();
        self.phase = Phase::Down;
        self.handshake = 0;
        let delay = self.backoff.next_delay();
        self.retry_at = now.saturating_add(delay);
        let what = if was_ready {
            "lost the connection to"
        } else {
            "could not connect to"
        };
        let line = format!(
            "push_redis: {what} Redis at {}; {} commands unanswered; next attempt in {} ms",
            self.target(),
            lost.len(),
            delay
        );
        self.logs.push((Level::Error, line));
        lost
    }

    /// How long to wait before the next connection attempt.
    pub fn retry_after(&self, now: u64) -> Duration {
        Duration::from_millis(self.retry_at.saturating_sub(now))
    }

    /// Must the driver drop the connection now? A failed handshake, a
    /// protocol error, or Redis silent for the connect timeout while a
    /// reply (or the connection) is awaited.
    pub fn expired(&self, now: u64) -> bool {
        if self.broken {
            return true;
        }
        let limit = self.cfg.connect_timeout_ms;
        match self.phase {
            Phase::Down => false,
            _ if self.connected_at.is_none() => now.saturating_sub(self.connecting_at) > limit,
            _ => match self.tx.pending.front() {
                None => false,
                Some(p) => {
                    let (start, seen) = self.head_seen.get();
                    let since = if start == p.start {
                        seen
                    } else {
                        self.head_seen.set((p.start, now));
                        now
                    };
                    now.saturating_sub(since.max(self.last_input)) > limit
                }
            },
        }
    }

    fn fail(&mut self, line: String) {
        self.logs.push((Level::Error, line));
        self.broken = true;
    }

    /// Bytes read from the connection. `f` gets each reply and push in
    /// order, with the write side to send more.
    pub fn input(
        &mut self,
        bytes: &[u8],
        now: u64,
        mut f: impl FnMut(&mut Tx<T>, Incoming<'_, '_, T>),
    ) {
        if self.phase == Phase::Down || self.broken {
            return;
        }
        self.last_input = now;
        self.rx.feed(bytes);
        loop {
            if self.broken {
                return;
            }
            let (frame, used) = match self.rx.peek() {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    let line = format!(
                        "push_redis: bad reply from Redis at {}: {}",
                        self.target(),
                        e.reason()
                    );
                    // `rx` is borrowed by nothing here (the error is Copy).
                    self.logs.push((Level::Error, line));
                    self.broken = true;
                    return;
                }
            };
            let outcome = Self::dispatch(
                &mut self.tx,
                &mut self.handshake,
                &mut self.markers,
                &frame,
                &mut f,
            );
            drop(frame);
            self.rx.consume(used);
            match outcome {
                Dispatched::Done => {}
                Dispatched::Ready => {
                    self.phase = Phase::Ready;
                    self.backoff.reset();
                    self.connections += 1;
                    let line = format!("push_redis: connected to Redis at {}", self.target());
                    self.logs.push((Level::Notice, line));
                    let markers = self.markers.clone();
                    f(&mut self.tx, Incoming::Ready(&markers));
                }
                Dispatched::Fail(line) => {
                    let line = format!("push_redis: Redis at {}: {line}", self.target());
                    self.fail(line);
                }
            }
        }
    }

    fn dispatch(
        tx: &mut Tx<T>,
        handshake: &mut usize,
        markers: &mut [u64],
        frame: &Frame<'_>,
        f: &mut impl FnMut(&mut Tx<T>, Incoming<'_, '_, T>),
    ) -> Dispatched {
        if let Frame::Push(items) = frame {
            let kind = items.first().and_then(Frame::bytes).unwrap_or(b"");
            let confirm = match kind {
                b"subscribe" => Some(true),
                b"unsubscribe" => Some(false),
                _ => None,
            };
            let Some(sub) = confirm else {
                f(tx, Incoming::Push(frame));
                return Dispatched::Done;
            };
            // Confirmations come when their command runs: it heads the queue.
            let Some(head) = tx.pending.front_mut() else {
                return Dispatched::Fail("an unexpected subscription confirmation".into());
            };
            let left = match (&mut head.what, sub) {
                (What::Sub(n), true) | (What::Unsub(n), false) => n,
                _ => return Dispatched::Fail("replies out of step with the commands".into()),
            };
            *left = left.saturating_sub(1);
            if *left == 0 {
                tx.pending.pop_front();
            }
            return Dispatched::Done;
        }
        let Some(p) = tx.pending.pop_front() else {
            return Dispatched::Fail("a reply to no command".into());
        };
        let err = match frame {
            Frame::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        };
        let was_handshaking = *handshake > 0;
        if let Err(line) = Self::handle(p.what, tx, handshake, markers, frame, err, f) {
            return Dispatched::Fail(line);
        }
        if was_handshaking && *handshake == 0 {
            return Dispatched::Ready;
        }
        Dispatched::Done
    }

    fn handle(
        what: What<T>,
        tx: &mut Tx<T>,
        handshake: &mut usize,
        markers: &mut [u64],
        frame: &Frame<'_>,
        err: Option<String>,
        f: &mut impl FnMut(&mut Tx<T>, Incoming<'_, '_, T>),
    ) -> Result<(), String> {
        match what {
            What::Tag(tag) => f(tx, Incoming::Reply(tag, frame)),
            What::Eval {
                tag,
                script,
                bytes,
                tries,
            } => {
                let noscript = err.as_deref().is_some_and(|e| e.starts_with("NOSCRIPT"));
                if noscript && tries < NOSCRIPT_RETRIES {
                    let src = script.source().as_bytes();
                    tx.push(
                        What::Reload,
                        &[Arg::B(b"SCRIPT"), Arg::B(b"LOAD"), Arg::B(src)],
                    );
                    tx.send_eval(tag, script, bytes, tries + 1);
                } else {
                    f(tx, Incoming::Reply(tag, frame));
                }
            }
            What::Sub(_) | What::Unsub(_) => {
                // An error instead of the confirmations (an ACL, say).
                return Err(format!(
                    "(UN)SUBSCRIBE refused: {}",
                    err.as_deref().unwrap_or("unexpected reply")
                ));
            }
            What::Hello => {
                if let Some(e) = &err {
                    return Err(hello_refusal(e));
                }
                let proto = frame.items().and_then(|kv| {
                    kv.chunks(2)
                        .find(|p| p.first().and_then(Frame::bytes) == Some(b"proto"))
                        .and_then(|p| p.get(1).and_then(Frame::int))
                });
                if proto != Some(3) {
                    return Err(
                        "push_redis needs Redis 6 or newer (RESP3 was not granted by HELLO 3)"
                            .into(),
                    );
                }
                *handshake = handshake.saturating_sub(1);
            }
            What::Select => {
                if let Some(e) = &err {
                    return Err(format!("SELECT refused: {e}"));
                }
                *handshake = handshake.saturating_sub(1);
            }
            What::Load(s) => match (&err, frame.bytes()) {
                (None, Some(sha)) => {
                    tx.shas[s.index()] = sha.to_vec();
                    *handshake = handshake.saturating_sub(1);
                }
                _ => {
                    return Err(format!(
                        "SCRIPT LOAD of the {} script refused: {}",
                        s.name(),
                        err.as_deref().unwrap_or("unexpected reply")
                    ))
                }
            },
            What::Marker(i) => match (&err, marker_reply(frame)) {
                (None, Ok(v)) => {
                    // Never below what this worker saw before: a marker
                    // made again lower (by a worker that did not know the
                    // old one) still starts new ids after the old ones.
                    if let Some(m) = markers.get_mut(i) {
                        *m = if v >= *m { v } else { *m + 1 };
                    }
                    *handshake = handshake.saturating_sub(1);
                }
                _ => {
                    return Err(format!(
                        "the marker script failed: {}",
                        err.as_deref().unwrap_or("unexpected reply")
                    ))
                }
            },
            What::Reload | What::Ignore => {}
        }
        Ok(())
    }
}

enum Dispatched {
    Done,
    Ready,
    Fail(String),
}

/// The log line for a refused `HELLO 3`.
fn hello_refusal(e: &str) -> String {
    let upper = e.to_ascii_uppercase();
    if upper.contains("UNKNOWN COMMAND") || upper.starts_with("NOPROTO") {
        format!("push_redis needs Redis 6 or newer (HELLO 3 was answered: {e})")
    } else if upper.starts_with("WRONGPASS") || upper.contains("INVALID PASSWORD") {
        format!("the user or password of push_redis was refused: {e}")
    } else if upper.starts_with("NOAUTH") {
        format!("Redis wants a password: give it in the push_redis URL ({e})")
    } else {
        format!("HELLO 3 refused: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ClientConfig {
        ClientConfig {
            url: RedisUrl::parse(url).unwrap(),
            connect_timeout_ms: 1000,
            markers: vec![b"push:epoch".to_vec()],
            limits: Limits::default(),
            seed: 1,
        }
    }

    /// The canned handshake replies for `c` (HELLO, SELECT?, loads, marker).
    fn handshake_replies(select: bool) -> Vec<u8> {
        let mut r = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n".to_vec();
        if select {
            r.extend_from_slice(b"+OK\r\n");
        }
        for i in 0..Script::ALL.len() {
            r.extend_from_slice(format!("$40\r\n{:040}\r\n", i).as_bytes());
        }
        r.extend_from_slice(b"$10\r\n1764170000\r\n");
        r
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Ready(Vec<u64>),
        Reply(u32, String),
        Push(String),
    }

    fn feed(c: &mut Client<u32>, bytes: &[u8], now: u64) -> Vec<Got> {
        let mut got = Vec::new();
        c.input(bytes, now, |_, inc| {
            got.push(match inc {
                Incoming::Ready(m) => Got::Ready(m.to_vec()),
                Incoming::Reply(t, f) => Got::Reply(t, format!("{f:?}")),
                Incoming::Push(f) => Got::Push(format!("{f:?}")),
            })
        });
        got
    }

    #[test]
    fn handshake_with_auth_and_select() {
        let mut c: Client<u32> = Client::new(cfg("redis://app:pw@h:1/2"));
        c.connecting(0);
        let out = String::from_utf8_lossy(c.output()).into_owned();
        assert!(out.starts_with(
            "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
        ));
        assert_eq!(out.matches("SCRIPT").count(), Script::ALL.len());
        assert!(out.contains("push:epoch"));
        c.connected(1);
        let got = feed(&mut c, &handshake_replies(true), 2);
        assert_eq!(got, vec![Got::Ready(vec![1_764_170_000])]);
        assert_eq!(c.phase(), Phase::Ready);
        assert!(!c.expired(5000), "nothing in flight");
    }

    #[test]
    fn password_only_authenticates_as_default() {
        let mut c: Client<u32> = Client::new(cfg("redis://:pw@h"));
        c.connecting(0);
        let out = String::from_utf8_lossy(c.output()).into_owned();
        assert!(out.contains("$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n"));
        assert!(!out.contains("SELECT"));
    }

    #[test]
    fn a_redis_without_resp3_fails_with_a_clear_line() {
        let mut c: Client<u32> = Client::new(cfg("redis://h"));
        c.connecting(0);
        c.connected(0);
        feed(&mut c, b"-ERR unknown command 'HELLO'\r\n", 1);
        assert!(c.expired(1));
        let logs = c.take_logs();
        assert!(
            logs[0].1.contains("push_redis needs Redis 6 or newer"),
            "{logs:?}"
        );
        let lost = c.disconnected(2);
        assert!(lost.is_empty());
        assert_eq!(c.phase(), Phase::Down);
        assert_eq!(c.retry_after(2), Duration::from_millis(1000));
    }

    #[test]
    fn replies_match_in_order_and_pushes_are_told_apart() {
        let mut c: Client<u32> = Client::new(cfg("redis://h"));
        c.connecting(0);
        c.connected(0);
        feed(&mut c, &handshake_replies(false), 1);
        c.tx().cmd(1, &[Arg::B(b"GET"), Arg::B(b"a")]);
        c.tx().subscribe(&[b"x", b"y"]);
        c.tx().cmd(2, &[Arg::B(b"GET"), Arg::B(b"b")]);
        let got = feed(
            &mut c,
            b"$1\r\nA\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$2\r\nhi\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\ny\r\n:2\r\n_\r\n",
            2,
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], Got::Reply(1, "Bulk([65])".into()));
        assert!(matches!(&got[1], Got::Push(p) if p.contains("[104, 105]")));
        assert_eq!(got[2], Got::Reply(2, "Null".into()));
        assert_eq!(c.tx().in_flight(), 0);
    }

    #[test]
    fn noscript_reloads_and_retries_transparently() {
        let mut c: Client<u32> = Client::new(cfg("redis://h"));
        c.connecting(0);
        c.connected(0);
        feed(&mut c, &handshake_replies(false), 1);
        c.output().clear();
        c.tx().eval(7, Script::Info, &[b"k"], &[]);
        let first = c.output().clone();
        c.output().clear();
        let got = feed(&mut c, b"-NOSCRIPT No matching script.\r\n", 2);
        assert!(got.is_empty());
        let again = String::from_utf8_lossy(c.output()).into_owned();
        assert!(again.contains("SCRIPT"));
        assert!(again.ends_with(&*String::from_utf8_lossy(&first)));
        let got = feed(
            &mut c,
            b"$40\r\n0000000000000000000000000000000000000005\r\n*1\r\n:0\r\n",
            3,
        );
        assert_eq!(got, vec![Got::Reply(7, "Array([Int(0)])".into())]);
    }

    #[test]
    fn silence_expires_and_unsent_commands_are_told_from_sent_ones() {
        let mut c: Client<u32> = Client::new(cfg("redis://h"));
        c.connecting(0);
        assert!(!c.expired(1000));
        assert!(c.expired(1001), "connect timeout");
        c.connected(500);
        assert!(!c.expired(600), "the handshake is first seen waiting");
        assert!(!c.expired(1500));
        assert!(c.expired(1601), "handshake unanswered");
        feed(&mut c, &handshake_replies(false), 1600);
        let n = c.output().len();
        c.output().drain(..n); // all written
        c.tx().cmd(1, &[Arg::B(b"PING")]);
        c.tx().cmd(2, &[Arg::B(b"PING")]);
        let first_len = c.output().len() / 2;
        c.output().drain(..first_len); // only the first written
        assert!(!c.expired(1700));
        assert!(!c.expired(2600));
        assert!(c.expired(2701));
        let lost = c.disconnected(2700);
        assert_eq!(lost, vec![(1, true), (2, false)]);
    }

    #[test]
    fn a_protocol_error_breaks_the_connection() {
        let mut c: Client<u32> = Client::new(cfg("redis://h"));
        c.connecting(0);
        c.connected(0);
        feed(&mut c, b"?oops\r\n", 1);
        assert!(c.expired(1));
        assert!(c.take_logs()[0].1.contains("bad reply"));
    }
}
