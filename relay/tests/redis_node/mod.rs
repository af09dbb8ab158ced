//! A test driver for `RedisBackend`: one "worker" (of one "server") over a
//! std `TcpStream` to a real redis-server, pumped by the test. It plays the
//! nginx side: writes the output, feeds what it reads, checks `expired`,
//! calls `heartbeat` when due and reconnects after `retry_after`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use push_relay::backend::{Backend, Listen, Listened, OpId, Publish, Published, Step};
use push_relay::conf::{Concurrency, ListenerRules, SenderRules};
use push_relay::outcome::Refusal;
use push_relay::proto::cursor::{Cursor, MsgId};
use push_relay::proto::info::ChannelInfo;
use push_relay::redis::backend::{Completion, RedisBackend, RedisConfig};
use push_relay::redis::client::Phase;
use push_relay::redis::url::RedisUrl;
use push_relay::registry::{ChanKey, Key};
use push_relay::relay::{Answer, Effects, MsgRef};
use push_relay::transport::{Transport, Transports};

pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, PartialEq, Eq)]
pub enum Got {
    Msg {
        id: MsgId,
        content_type: Vec<u8>,
        body: Vec<u8>,
    },
    Conflict,
    Gone,
    Ended,
}

impl std::fmt::Debug for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Got::Msg { id, body, .. } if body.len() > 40 => {
                write!(f, "Msg({id}, {} bytes)", body.len())
            }
            Got::Msg { id, body, .. } => {
                write!(f, "Msg({id}, {:?})", String::from_utf8_lossy(body))
            }
            Got::Conflict => write!(f, "Conflict"),
            Got::Gone => write!(f, "Gone"),
            Got::Ended => write!(f, "Ended"),
        }
    }
}

impl Got {
    pub fn body(&self) -> &[u8] {
        match self {
            Got::Msg { body, .. } => body,
            other => panic!("not a message: {other:?}"),
        }
    }

    pub fn id(&self) -> MsgId {
        match self {
            Got::Msg { id, .. } => *id,
            other => panic!("not a message: {other:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    Now(Got),
    NotModified,
    Held(ChanKey, Key),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Listen(Result<Listening, Refusal>),
    Publish(Result<Published, Refusal>),
    Info(Result<ChannelInfo, Refusal>),
}

pub struct Node {
    pub b: RedisBackend,
    sock: Option<TcpStream>,
    port: u16,
    t0: Instant,
    pub done: HashMap<OpId, Done>,
    pub answers: Vec<(Key, Got)>,
    /// Feed input one byte at a time.
    pub trickle: bool,
    /// Reconnect by itself after `retry_after`.
    pub reconnect: bool,
    /// Stop heartbeating (a server that hangs).
    pub frozen: bool,
    next_beat: u64,
    retry_at: Option<u64>,
    pub heartbeat_ms: u64,
}

pub fn config(port: u16, worker: &str, namespaces: &[&str], heartbeat_ms: u64) -> RedisConfig {
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let mut c = RedisConfig::new(
        url,
        namespaces.iter().map(|n| n.as_bytes().to_vec()).collect(),
        worker.as_bytes().to_vec(),
    );
    c.heartbeat_ms = heartbeat_ms;
    c.connect_timeout_ms = 500;
    c.seed = worker.len() as u64;
    c
}

pub fn listener(concurrency: Concurrency) -> ListenerRules {
    ListenerRules {
        transports: Transports::only(Transport::LongPoll),
        concurrency,
        timeout_ms: 0,
        authorized_only: false,
        max_subscribers: 0,
        ping_ms: 0,
        max_pending: 1 << 20,
    }
}

pub const SENDER: SenderRules = SenderRules {
    queue: true,
    message_timeout: 3600,
    buffer_length: 10,
    channel_timeout: 3600,
};

impl Node {
    pub fn new(cfg: RedisConfig) -> Node {
        let port = cfg.url.port;
        let hb = cfg.heartbeat_ms;
        let mut n = Node {
            b: RedisBackend::new(cfg),
            sock: None,
            port,
            t0: Instant::now(),
            done: HashMap::new(),
            answers: Vec::new(),
            trickle: false,
            reconnect: true,
            frozen: false,
            next_beat: hb,
            retry_at: None,
            heartbeat_ms: hb,
        };
        n.connect();
        n
    }

    /// A node connected and past its handshake.
    pub fn up(port: u16, worker: &str) -> Node {
        let mut n = Node::new(config(port, worker, &["push:"], 300));
        n.wait_up();
        n
    }

    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    pub fn connect(&mut self) {
        let now = self.now();
        self.b.connecting(now);
        match TcpStream::connect(("127.0.0.1", self.port)) {
            Ok(s) => {
                s.set_nonblocking(true).unwrap();
                s.set_nodelay(true).unwrap();
                self.sock = Some(s);
                self.b.connected(now);
            }
            Err(_) => self.drop_connection(),
        }
    }

    pub fn drop_connection(&mut self) {
        self.sock = None;
        let now = self.now();
        let mut fx = Effects::default();
        let c = self.b.disconnected(now, &mut fx);
        self.collect(c, &mut fx);
        self.retry_at = Some(now + self.b.retry_after(now).as_millis() as u64);
    }

    fn collect(&mut self, comps: Vec<(OpId, Completion)>, fx: &mut Effects) {
        let d = fx.copies.take_deliveries();
        let got = |m: MsgRef| match m {
            MsgRef::Copy(i) => {
                let d = &d[i as usize];
                Got::Msg {
                    id: d.id,
                    content_type: d.content_type.clone(),
                    body: d.data.clone(),
                }
            }
            MsgRef::Published => panic!("the Redis backend never answers with the request's body"),
        };
        for (k, a) in fx.answers.drain(..) {
            let g = match a {
                Answer::Message(m) => got(m),
                Answer::Conflict => Got::Conflict,
                Answer::Gone => Got::Gone,
                Answer::Ended => Got::Ended,
            };
            self.answers.push((k, g));
        }
        for (op, c) in comps {
            let d = match c {
                Completion::Listen(r) => Done::Listen(r.map(|l| match l {
                    Listened::Message(m) => Listening::Now(got(m)),
                    Listened::NotModified => Listening::NotModified,
                    Listened::Held { chan, key, .. } => Listening::Held(chan, key),
                })),
                Completion::Publish(r) => Done::Publish(r),
                Completion::Info(r) => Done::Info(r),
            };
            assert!(self.done.insert(op, d).is_none(), "op {op} completed twice");
        }
    }

    /// One round of I/O; true if anything was read.
    pub fn pump_once(&mut self) -> bool {
        let now = self.now();
        if self.sock.is_none() {
            if let Some(at) = self.retry_at {
                if self.reconnect && now >= at {
                    self.retry_at = None;
                    self.connect();
                }
            }
            return false;
        }
        if !self.frozen && now >= self.next_beat {
            self.next_beat = now + self.heartbeat_ms;
            self.b.heartbeat(now);
        }
        // As the module's timer does, within COUNTS_MS.
        if !self.frozen && self.b.counts_pending() {
            self.b.flush_counts();
        }
        let mut read_any = false;
        let mut broken = false;
        {
            let s = self.sock.as_mut().unwrap();
            let out = self.b.output();
            while !out.is_empty() {
                match s.write(out) {
                    Ok(n) => {
                        out.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        while !broken {
            let r = self.sock.as_mut().unwrap().read(&mut buf);
            match r {
                Ok(0) => broken = true,
                Ok(n) => {
                    read_any = true;
                    self.feed(&buf[..n]);
                    if self.sock.is_none() {
                        return true;
                    }
                    // Answers may have produced commands.
                    let s = self.sock.as_mut().unwrap();
                    let out = self.b.output();
                    if !out.is_empty() {
                        if let Ok(n) = s.write(out) {
                            out.drain(..n);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => broken = true,
            }
        }
        if broken || self.b.expired(self.now()) {
            self.drop_connection();
        }
        read_any
    }

    fn feed(&mut self, bytes: &[u8]) {
        let now = self.now();
        if self.trickle {
            for b in bytes {
                let mut fx = Effects::default();
                let c = self.b.input(std::slice::from_ref(b), now, &mut fx);
                self.collect(c, &mut fx);
            }
        } else {
            let mut fx = Effects::default();
            let c = self.b.input(bytes, now, &mut fx);
            self.collect(c, &mut fx);
        }
    }

    pub fn pump_until(&mut self, what: &str, mut cond: impl FnMut(&mut Node) -> bool) {
        let end = Instant::now() + DEADLINE;
        loop {
            if cond(self) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            if !self.pump_once() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Pump for a while, for negative checks.
    pub fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if !self.pump_once() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    pub fn wait_up(&mut self) {
        self.pump_until("the handshake", |n| n.b.is_up());
    }

    pub fn wait(&mut self, op: OpId) -> Done {
        self.pump_until(&format!("op {op}"), |n| n.done.contains_key(&op));
        self.done.remove(&op).unwrap()
    }

    pub fn answer(&mut self, key: Key) -> Got {
        self.pump_until(&format!("an answer for listener {key}"), |n| {
            n.answers.iter().any(|a| a.0 == key)
        });
        let i = self.answers.iter().position(|a| a.0 == key).unwrap();
        self.answers.remove(i).1
    }

    pub fn has_answer(&self, key: Key) -> bool {
        self.answers.iter().any(|a| a.0 == key)
    }

    // ---- operations (namespace 0 unless `_in`) ----------------------

    pub fn listen_step(
        &mut self,
        ns: usize,
        id: &[u8],
        cursor: Cursor,
        rules: ListenerRules,
        transport: Transport,
    ) -> Step<Result<Listened, Refusal>> {
        let mut fx = Effects::default();
        let req = Listen {
            id,
            cursor,
            rules,
            transport,
            now: 0,
        };
        let s = self.b.scope(ns).listen(&req, &mut fx);
        assert!(fx.answers.is_empty());
        s
    }

    pub fn listen_in(
        &mut self,
        ns: usize,
        id: &[u8],
        cursor: Cursor,
        rules: ListenerRules,
        transport: Transport,
    ) -> Result<Listening, Refusal> {
        match self.listen_step(ns, id, cursor, rules, transport) {
            Step::Later(op) => match self.wait(op) {
                Done::Listen(r) => r,
                other => panic!("{other:?}"),
            },
            Step::Ready(r) => r.map(|l| match l {
                Listened::Held { chan, key, .. } => Listening::Held(chan, key),
                Listened::NotModified => Listening::NotModified,
                Listened::Message(_) => panic!("a ready message"),
            }),
            Step::Retry => panic!("retry"),
        }
    }

    pub fn listen(
        &mut self,
        id: &[u8],
        cursor: Cursor,
        c: Concurrency,
    ) -> Result<Listening, Refusal> {
        self.listen_in(0, id, cursor, listener(c), Transport::LongPoll)
    }

    /// A held long-poll listener's key (broadcast, from the oldest).
    pub fn hold(&mut self, id: &[u8], cursor: Cursor) -> Key {
        match self.listen(id, cursor, Concurrency::Broadcast) {
            Ok(Listening::Held(_, k)) => k,
            other => panic!("not held: {other:?}"),
        }
    }

    pub fn publish_step(
        &mut self,
        ns: usize,
        id: &[u8],
        body: &[u8],
        rules: SenderRules,
    ) -> Step<Result<Published, Refusal>> {
        let mut fx = Effects::default();
        let req = Publish {
            id,
            content_type: b"text/plain",
            event: b"",
            body,
            rules,
            now: 0,
        };
        self.b.scope(ns).publish(&req, &mut fx)
    }

    pub fn publish_in(
        &mut self,
        ns: usize,
        id: &[u8],
        body: &[u8],
        rules: SenderRules,
    ) -> Result<Published, Refusal> {
        match self.publish_step(ns, id, body, rules) {
            Step::Later(op) => match self.wait(op) {
                Done::Publish(r) => r,
                other => panic!("{other:?}"),
            },
            Step::Ready(r) => r,
            Step::Retry => panic!("retry"),
        }
    }

    pub fn publish(&mut self, id: &[u8], body: &[u8]) -> Published {
        self.publish_in(0, id, body, SENDER).expect("published")
    }

    fn info_op(&mut self, ns: usize, which: u8, id: &[u8]) -> Result<ChannelInfo, Refusal> {
        let mut fx = Effects::default();
        let mut scoped = self.b.scope(ns);
        let s = match which {
            b'i' => scoped.info(id, 0, &mut fx),
            b'c' => scoped.create(id, &SENDER, 0, &mut fx),
            _ => scoped.delete(id, 0, &mut fx),
        };
        match s {
            Step::Later(op) => match self.wait(op) {
                Done::Info(r) => r,
                other => panic!("{other:?}"),
            },
            Step::Ready(r) => r,
            Step::Retry => panic!("retry"),
        }
    }

    pub fn info_in(&mut self, ns: usize, id: &[u8]) -> Result<ChannelInfo, Refusal> {
        self.info_op(ns, b'i', id)
    }

    pub fn info(&mut self, id: &[u8]) -> Result<ChannelInfo, Refusal> {
        self.info_op(0, b'i', id)
    }

    pub fn create(&mut self, id: &[u8]) -> Result<ChannelInfo, Refusal> {
        self.info_op(0, b'c', id)
    }

    pub fn delete(&mut self, id: &[u8]) -> Result<ChannelInfo, Refusal> {
        self.info_op(0, b'd', id)
    }

    pub fn forget(&mut self, chan: ChanKey, key: Key) -> bool {
        self.b.scope(0).forget(chan, key, 0)
    }

    pub fn phase(&self) -> Phase {
        self.b.phase()
    }

    /// Drop the connection without telling the backend yet (as when the
    /// network goes away), and do not reconnect until `reconnect` is set.
    pub fn cut(&mut self) {
        self.reconnect = false;
        self.drop_connection();
    }
}

/// Pump several nodes until `cond`.
pub fn pump_all_until(
    nodes: &mut [&mut Node],
    what: &str,
    mut cond: impl FnMut(&mut [&mut Node]) -> bool,
) {
    let end = Instant::now() + DEADLINE;
    loop {
        if cond(nodes) {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        let mut any = false;
        for n in nodes.iter_mut() {
            any |= n.pump_once();
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

pub fn after(id: MsgId) -> Cursor {
    Cursor::after(id)
}
