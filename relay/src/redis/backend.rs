//! [`RedisBackend`]: the crate's [`Backend`] over one Redis connection per
//! worker, with this worker's listeners of Redis channels in their own
//! [`Relay`] (keys above [`KEYS_ABOVE`], apart from the zone's).
//!
//! # Driving it (the nginx side)
//! All times are milliseconds of one monotonic clock (`ngx_current_msec`).
//! - [`RedisBackend::connecting`] when a connection attempt starts (at
//!   worker start, and each time the retry timer fires); then
//!   [`RedisBackend::connected`] when the TCP connection is up.
//! - Write [`RedisBackend::output`] whenever it is not empty (after every
//!   call below), draining what the socket took.
//! - [`RedisBackend::input`] with the bytes read; it returns the completed
//!   operations `(OpId, Completion)` and leaves answers for held listeners
//!   in `Effects` (message copies in `fx.copies`, answers in `fx.answers`),
//!   to be carried out as for the zone.
//! - [`RedisBackend::expired`] after each input and from a timer (a few
//!   times per connect timeout while [`RedisBackend::in_flight`] > 0): true
//!   means close the connection and call `disconnected`.
//! - [`RedisBackend::disconnected`] when the connection fails or closes
//!   (also after a failed connect); it returns the operations that fail
//!   with it. Then arm the retry timer with
//!   [`RedisBackend::retry_after`].
//! - [`RedisBackend::heartbeat`] every `push_redis_heartbeat`: renews this
//!   worker's listener registrations, unsubscribes idle channels, pings.
//! - [`RedisBackend::take_logs`]: lines for the error log.
//! - Requests: [`RedisBackend::scope`] gives a [`Backend`] for one
//!   namespace; its operations return `Step::Later(op)` while a connection
//!   is up or being made, and their outcomes arrive from `input` or
//!   `disconnected`. With Redis down they answer at once: `503`
//!   ([`Refusal::Unavailable`]) for senders, channel info and
//!   interval-poll; long-poll listeners are held here and registered and
//!   caught up when Redis is back.
//!
//! # Ordering
//! Redis writes pub/sub messages and replies into one connection in the
//! order it executed them; everything that changes the held listeners is
//! applied in that order here (a message announced by reference holds back
//! what follows until its `GET` returns). A channel is subscribed before
//! (pipelined ahead of) the listen script of its first listener, so nothing
//! published in between is missed. After a reconnect each channel is
//! resubscribed, then one `resync` script registers this worker's count
//! and returns the stored messages; announcements that arrive before its
//! reply wait, and are replayed after it (listeners' cursors drop
//! duplicates).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::backend::{Backend, Listen, Listened, OpId, Publish, Published, Step};
use crate::conf::{Concurrency, SenderRules};
use crate::outcome::{Level, Refusal};
use crate::proto::cursor::{Cursor, MsgId};
use crate::proto::info::ChannelInfo;
use crate::registry::{ChanKey, Key};
use crate::relay::{Counts, Effects, MsgRef, Relay};
use crate::transport::Transport;
use crate::zone::Seq;

use super::client::{Client, ClientConfig, Incoming, Phase, Tx};
use super::keys::{marker, ChannelKeys, Part};
use super::payload::{Announce, Record};
use super::resp::{Arg, Frame, Limits};
use super::scripts::{self, ListenReply, ResyncReply, Script};
use super::url::RedisUrl;

/// Listener keys of Redis channels are above this (the zone's are below).
pub const KEYS_ABOVE: Key = 1 << 62;

/// How often, at most, the count changes of this worker's listeners go to
/// Redis (one `register` per channel for all of them): a long-poll
/// listener that comes back after its message, to a channel this worker is
/// subscribed to and counted on (or whose listen is on its way), is held
/// without a round trip to Redis.
pub const COUNTS_MS: u64 = 50;

/// A message whose stored form is longer than this is announced by key
/// reference rather than inline (see the README and the report).
pub const INLINE_MAX: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: RedisUrl,
    /// Every `push_redis_namespace` used with this URL; [`RedisBackend::scope`]
    /// takes an index into it.
    pub namespaces: Vec<Vec<u8>>,
    pub heartbeat_ms: u64,
    pub connect_timeout_ms: u64,
    /// This worker, unique among all workers of all servers (for example
    /// the host name, pid and a random number).
    pub worker: Vec<u8>,
    /// Seeds the reconnection jitter.
    pub seed: u64,
    pub inline_max: usize,
    /// Seconds a message announced by reference stays fetchable after it
    /// left the buffer (or when it was never stored).
    pub ref_ttl: u64,
    /// Seconds a deleted channel's tombstone stays.
    pub tombstone_ttl: u64,
    /// A channel's subscription is dropped this long after its last
    /// listener left (checked at each heartbeat).
    pub linger_ms: u64,
    pub limits: Limits,
    /// Listener keys of this backend start above this (a worker with
    /// several backends gives each its own range: its parked requests are
    /// found by key).
    pub keys_above: Key,
}

impl RedisConfig {
    pub fn new(url: RedisUrl, namespaces: Vec<Vec<u8>>, worker: Vec<u8>) -> RedisConfig {
        RedisConfig {
            url,
            namespaces,
            heartbeat_ms: 10_000,
            connect_timeout_ms: 1000,
            worker,
            seed: 0,
            inline_max: INLINE_MAX,
            ref_ttl: 60,
            tombstone_ttl: 3600,
            linger_ms: 5000,
            limits: Limits::default(),
            keys_above: KEYS_ABOVE,
        }
    }
}

/// The outcome of an operation that returned `Step::Later`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Listen(Result<Listened, Refusal>),
    Publish(Result<Published, Refusal>),
    /// `create`, `info` and `delete`.
    Info(Result<ChannelInfo, Refusal>),
}

/// A namespace: an index into [`RedisConfig::namespaces`].
pub type Ns = usize;

#[derive(Debug, Clone, Copy)]
struct Waiter {
    cursor: Cursor,
    yields: bool,
    transport: Transport,
    authorized_only: bool,
    /// Once its script has run the channel exists in Redis, whatever the
    /// reply (it holds, or it finds a message or another listener): a
    /// holding listen that authorized-only cannot refuse.
    vouches: bool,
}

#[derive(Debug)]
enum Tag {
    Listen { op: OpId, serial: u64, w: Waiter },
    Publish { op: OpId, serial: u64 },
    Info { op: OpId, serial: u64 },
    Delete { op: OpId, serial: u64 },
    Fetch { token: u64 },
    Register { serial: u64 },
    Resync { serial: u64 },
}

/// An operation asked for before the handshake finished.
enum Queued {
    Listen {
        op: OpId,
        serial: u64,
        w: Waiter,
        hold: bool,
        rules: crate::conf::ListenerRules,
    },
    Publish {
        op: OpId,
        serial: u64,
        content_type: Vec<u8>,
        event: Vec<u8>,
        body: Vec<u8>,
        rules: SenderRules,
    },
    Create {
        op: OpId,
        serial: u64,
        rules: SenderRules,
    },
    Info {
        op: OpId,
        serial: u64,
    },
    Delete {
        op: OpId,
        serial: u64,
    },
}

/// A frame kept for later (something ahead of it waits).
#[derive(Debug, Clone)]
enum Owned {
    Bytes(Vec<u8>, u8),
    Int(i64),
    Null,
    Other,
    List(Vec<Owned>, u8),
}

impl Owned {
    fn of(f: &Frame<'_>) -> Owned {
        match f {
            Frame::Simple(b) => Owned::Bytes(b.to_vec(), b'+'),
            Frame::Error(b) => Owned::Bytes(b.to_vec(), b'-'),
            Frame::Bulk(b) => Owned::Bytes(b.to_vec(), b'$'),
            Frame::Int(i) => Owned::Int(*i),
            Frame::Null => Owned::Null,
            Frame::Array(v) => Owned::List(v.iter().map(Owned::of).collect(), b'*'),
            Frame::Map(v) => Owned::List(v.iter().map(Owned::of).collect(), b'%'),
            Frame::Push(v) => Owned::List(v.iter().map(Owned::of).collect(), b'>'),
            _ => Owned::Other,
        }
    }

    fn frame(&self) -> Frame<'_> {
        match self {
            Owned::Bytes(b, b'+') => Frame::Simple(b),
            Owned::Bytes(b, b'-') => Frame::Error(b),
            Owned::Bytes(b, _) => Frame::Bulk(b),
            Owned::Int(i) => Frame::Int(*i),
            Owned::Null => Frame::Null,
            Owned::Other => Frame::Bool(false),
            Owned::List(v, b'%') => Frame::Map(v.iter().map(Owned::frame).collect()),
            Owned::List(v, b'>') => Frame::Push(v.iter().map(Owned::frame).collect()),
            Owned::List(v, _) => Frame::Array(v.iter().map(Owned::frame).collect()),
        }
    }
}

/// Something that changes the held listeners, applied in arrival order.
enum Item {
    Push(Owned),
    Reply(Tag, Owned),
    /// A message announced by reference, waiting for its `GET`.
    Fetch {
        token: u64,
        serial: u64,
        id: MsgId,
        upto: Seq,
        /// `Some(None)`: the key was gone.
        got: Option<Option<Vec<u8>>>,
    },
}

#[derive(Debug)]
struct Chan {
    ns: Ns,
    id: Vec<u8>,
    keys: [Vec<u8>; 3],
    pubsub: Vec<u8>,
    tag: ChannelKeys,
    /// As sent: later commands run subscribed.
    subscribed: bool,
    /// When its last listener left (for the linger).
    idle_since: Option<u64>,
    inc: Option<Vec<u8>>,
    /// The highest listener order number seen.
    max_seq: Seq,
    /// Listen scripts in flight.
    listens: u32,
    /// Of those, the ones that [vouch](Waiter::vouches) for the channel.
    vouching: u32,
    /// Operations in flight.
    ops: u32,
    /// A resync is in flight: announcements wait in `deferred`.
    catching_up: bool,
    deferred: Vec<Owned>,
    /// The newest message id of the channel, as far as this worker knows
    /// for sure: set by a listen reply (the channel's last id then; `Some
    /// (None)`: it had none) and raised by every announcement after it.
    /// Known only while subscribed without a break.
    newest: Option<Option<MsgId>>,
    /// This worker's listener count on the channel as Redis has it, after
    /// every command sent; `delta`: changes not sent yet (coalesced, see
    /// [`COUNTS_MS`]).
    counted: i64,
    delta: i64,
    /// A listener was held here without asking Redis (its "last requested"
    /// time goes with the next count change).
    touched: bool,
}

impl Chan {
    fn keys(&self) -> [&[u8]; 3] {
        [&self.keys[0], &self.keys[1], &self.keys[2]]
    }
}

/// Count changes of this worker's listeners, sent at the end of each call.
struct Releases<'a>(&'a mut HashMap<u64, u32>);

impl Counts for Releases<'_> {
    fn released(&mut self, chan: ChanKey, n: u32) {
        *self.0.entry(chan.serial).or_default() += n;
    }
}

/// The weakest of some cursors: every message any of them admits.
fn weakest(cursors: impl Iterator<Item = Cursor>) -> Cursor {
    let mut out: Option<Cursor> = None;
    for c in cursors {
        if c.since.is_none() {
            return c;
        }
        out = Some(match out {
            Some(o) if (o.since, o.tag) <= (c.since, c.tag) => o,
            _ => c,
        });
    }
    out.unwrap_or_default()
}

fn cursor_args(c: &Cursor) -> (Vec<u8>, Vec<u8>) {
    let s = c
        .since
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_default();
    let t = c
        .tag
        .filter(|_| c.since.is_some())
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_default();
    (s, t)
}

/// Copy a message into the effects' copy room (there is no lock here:
/// room is made when needed).
fn copy(fx: &mut Effects, r: &Record<'_>) -> Option<MsgRef> {
    if let Some(m) = fx.copies.push(r.id, r.content_type, r.event, r.body) {
        return Some(m);
    }
    fx.copies.make_room();
    fx.copies.push(r.id, r.content_type, r.event, r.body)
}

struct State {
    cfg: RedisConfig,
    relay: Relay,
    chans: HashMap<u64, Chan>,
    /// Channel serials by namespace, then id (looked up without copying
    /// the id: every listen starts here).
    by_id: Vec<HashMap<Vec<u8>, u64>>,
    by_pubsub: HashMap<Vec<u8>, u64>,
    next_serial: u64,
    next_op: OpId,
    next_token: u64,
    queue: VecDeque<Item>,
    waiting: Vec<Queued>,
    releases: HashMap<u64, u32>,
    /// Listeners held while Redis was down (not registered yet), and
    /// whether their location was authorized-only.
    offline: HashMap<Key, bool>,
    markers: Vec<u64>,
    done: Vec<(OpId, Completion)>,
    logs: Vec<(Level, String)>,
    /// Per channel: the last message applied and how many listeners of
    /// this worker it ended (for a publish's own channel info).
    recent: HashMap<u64, (MsgId, u32)>,
    now_ms: u64,
}

pub struct RedisBackend {
    client: Client<Tag>,
    st: State,
}

/// A [`Backend`] for one namespace.
pub struct Scoped<'a> {
    b: &'a mut RedisBackend,
    ns: Ns,
}

impl RedisBackend {
    pub fn new(cfg: RedisConfig) -> RedisBackend {
        let keys_above = cfg.keys_above;
        let client = Client::new(ClientConfig {
            url: cfg.url.clone(),
            connect_timeout_ms: cfg.connect_timeout_ms,
            markers: cfg.namespaces.iter().map(|n| marker(n)).collect(),
            limits: cfg.limits,
            seed: cfg.seed,
        });
        RedisBackend {
            client,
            st: State {
                markers: vec![0; cfg.namespaces.len()],
                cfg,
                relay: Relay::with_keys_above(keys_above),
                chans: HashMap::new(),
                by_id: Vec::new(),
                by_pubsub: HashMap::new(),
                next_serial: 1,
                next_op: 1,
                next_token: 1,
                queue: VecDeque::new(),
                waiting: Vec::new(),
                releases: HashMap::new(),
                offline: HashMap::new(),
                done: Vec::new(),
                logs: Vec::new(),
                recent: HashMap::new(),
                now_ms: 0,
            },
        }
    }

    /// The namespace `ns` (an index into the configured namespaces) as a
    /// [`Backend`].
    pub fn scope(&mut self, ns: Ns) -> Scoped<'_> {
        Scoped { b: self, ns }
    }

    /// The index of a namespace, if configured.
    pub fn namespace(&self, name: &[u8]) -> Option<Ns> {
        self.st.cfg.namespaces.iter().position(|n| n == name)
    }

    /// This worker's held listeners of Redis channels.
    pub fn relay(&self) -> &Relay {
        &self.st.relay
    }

    /// Is the connection up and its handshake done?
    pub fn is_up(&self) -> bool {
        self.client.phase() == Phase::Ready
    }

    pub fn phase(&self) -> Phase {
        self.client.phase()
    }

    /// Commands waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.client.in_flight() + self.st.waiting.len()
    }

    /// Commands sent, connections made (for the stats).
    pub fn commands_total(&mut self) -> u64 {
        self.client.tx().commands
    }

    pub fn reconnects_total(&self) -> u64 {
        // The first connection is not a reconnection.
        self.client.connections.saturating_sub(1)
    }

    pub fn output(&mut self) -> &mut Vec<u8> {
        self.client.output()
    }

    pub fn take_logs(&mut self) -> Vec<(Level, String)> {
        let mut logs = self.client.take_logs();
        logs.append(&mut self.st.logs);
        logs
    }

    pub fn expired(&self, now: u64) -> bool {
        self.client.expired(now)
    }

    pub fn retry_after(&self, now: u64) -> Duration {
        self.client.retry_after(now)
    }

    pub fn connecting(&mut self, now: u64) {
        self.st.now_ms = now;
        self.client.connecting(now);
    }

    pub fn connected(&mut self, now: u64) {
        self.st.now_ms = now;
        self.client.connected(now);
    }

    pub fn input(&mut self, bytes: &[u8], now: u64, fx: &mut Effects) -> Vec<(OpId, Completion)> {
        self.st.now_ms = now;
        let RedisBackend { client, st } = self;
        client.input(bytes, now, |tx, inc| st.incoming(tx, inc, fx));
        self.flush();
        std::mem::take(&mut self.st.done)
    }

    pub fn disconnected(&mut self, now: u64, fx: &mut Effects) -> Vec<(OpId, Completion)> {
        self.st.now_ms = now;
        let lost = self.client.disconnected(now);
        let st = &mut self.st;
        // What arrived stays valid: apply it (a reference whose GET is lost
        // counts as gone; the resync on reconnect brings it).
        while let Some(item) = st.queue.pop_front() {
            match item {
                Item::Fetch {
                    serial,
                    id,
                    upto,
                    got,
                    ..
                } => st.fetched(serial, id, upto, got.flatten().as_deref(), fx),
                Item::Push(o) => st.push(&o.frame(), fx, None),
                Item::Reply(tag, o) => st.reply(None, tag, &o.frame(), fx),
            }
        }
        for (tag, sent) in lost {
            st.lost(tag, sent, fx);
        }
        for q in std::mem::take(&mut st.waiting) {
            match q {
                Queued::Listen {
                    op,
                    serial,
                    w,
                    hold,
                    ..
                } => {
                    let c = st.listen_offline(op, serial, w, hold);
                    st.done.push((op, c));
                }
                Queued::Publish { op, serial, .. } => {
                    st.op_done(serial);
                    st.done
                        .push((op, Completion::Publish(Err(Refusal::Unavailable))));
                }
                Queued::Create { op, serial, .. }
                | Queued::Info { op, serial }
                | Queued::Delete { op, serial } => {
                    st.op_done(serial);
                    st.done
                        .push((op, Completion::Info(Err(Refusal::Unavailable))));
                }
            }
        }
        for c in st.chans.values_mut() {
            c.subscribed = false;
            c.listens = 0;
            c.vouching = 0;
            c.ops = 0;
            c.catching_up = false;
            c.deferred.clear();
            c.newest = None;
            c.counted = 0;
            c.delta = 0;
        }
        st.releases.clear();
        std::mem::take(&mut st.done)
    }

    /// Every `push_redis_heartbeat`.
    pub fn heartbeat(&mut self, now: u64) {
        self.st.now_ms = now;
        if self.client.phase() != Phase::Ready {
            return;
        }
        self.flush_counts();
        let RedisBackend { client, st } = self;
        let tx = client.tx();
        let before = tx.commands;
        let hb = st.cfg.heartbeat_ms;
        let mut idle: Vec<u64> = Vec::new();
        let mut unsub: Vec<Vec<u8>> = Vec::new();
        for (&serial, c) in st.chans.iter_mut() {
            let held = st.relay.peek(serial);
            if !held.is_empty() {
                c.idle_since = None;
                // Every hold's seq is at most max_seq.
                let max = c.max_seq;
                let (mode, n): (&[u8], i64) = if c.listens == 0 {
                    c.counted = held.len() as i64;
                    c.delta = 0;
                    (b"s", held.len() as i64)
                } else {
                    (b"a", 0)
                };
                let touched = core::mem::take(&mut c.touched);
                tx.eval(
                    Tag::Register { serial },
                    Script::Register,
                    &c.keys(),
                    &[
                        Arg::B(&st.cfg.worker),
                        Arg::B(mode),
                        Arg::I(n),
                        Arg::U(max),
                        Arg::U(hb),
                        Arg::B(if touched { b"1" } else { b"0" }),
                    ],
                );
                c.ops += 1;
                continue;
            }
            if c.listens > 0 || c.ops > 0 || c.catching_up {
                continue;
            }
            if c.subscribed {
                let since = *c.idle_since.get_or_insert(now);
                if now.saturating_sub(since) >= st.cfg.linger_ms {
                    c.subscribed = false;
                    c.newest = None;
                    unsub.push(c.pubsub.clone());
                }
            } else {
                idle.push(serial);
            }
        }
        for chunk in unsub.chunks(256) {
            let names: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            tx.unsubscribe(&names);
        }
        for serial in idle {
            st.forget_chan(serial);
        }
        if tx.commands == before {
            tx.ping();
        }
    }

    /// Count changes of this worker's listeners are noted, to go out with
    /// the next [`RedisBackend::flush_counts`].
    fn flush(&mut self) {
        let st = &mut self.st;
        st.note_idle();
        for (serial, n) in st.releases.drain() {
            if let Some(c) = st.chans.get_mut(&serial) {
                c.delta -= i64::from(n);
            }
        }
    }

    /// Whether count changes wait to be sent (the module then calls
    /// [`RedisBackend::flush_counts`] within [`COUNTS_MS`]).
    pub fn counts_pending(&self) -> bool {
        self.client.phase() == Phase::Ready
            && (!self.st.releases.is_empty() || self.st.chans.values().any(|c| c.delta != 0))
    }

    /// Send every channel's count change, one `register` each.
    pub fn flush_counts(&mut self) {
        self.flush();
        let RedisBackend { client, st } = self;
        if client.phase() != Phase::Ready {
            return;
        }
        let serials: Vec<u64> = st
            .chans
            .iter()
            .filter(|(_, c)| c.delta != 0)
            .map(|(&s, _)| s)
            .collect();
        for serial in serials {
            st.send_count(client.tx(), serial);
        }
    }
}

impl State {
    fn chan(&mut self, ns: Ns, id: &[u8]) -> u64 {
        if let Some(&s) = self.by_id.get(ns).and_then(|m| m.get(id)) {
            return s;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let name = self.cfg.namespaces.get(ns).map_or(&[][..], Vec::as_slice);
        let tag = ChannelKeys::new(name, id);
        let pubsub = tag.key(Part::PubSub);
        let keys = [
            tag.key(Part::Channel),
            tag.key(Part::Messages),
            tag.key(Part::Listeners),
        ];
        if self.by_id.len() <= ns {
            self.by_id.resize_with(ns + 1, HashMap::new);
        }
        self.by_id[ns].insert(id.to_vec(), serial);
        self.by_pubsub.insert(pubsub.clone(), serial);
        self.chans.insert(
            serial,
            Chan {
                ns,
                id: id.to_vec(),
                keys,
                pubsub,
                tag,
                subscribed: false,
                idle_since: None,
                inc: None,
                max_seq: 0,
                listens: 0,
                vouching: 0,
                ops: 0,
                catching_up: false,
                deferred: Vec::new(),
                newest: None,
                counted: 0,
                delta: 0,
                touched: false,
            },
        );
        serial
    }

    fn forget_chan(&mut self, serial: u64) {
        if let Some(c) = self.chans.remove(&serial) {
            if let Some(m) = self.by_id.get_mut(c.ns) {
                m.remove(&c.id);
            }
            self.by_pubsub.remove(&c.pubsub);
            self.recent.remove(&serial);
        }
    }

    fn key(serial: u64) -> ChanKey {
        ChanKey { hash: 0, serial }
    }

    fn op_done(&mut self, serial: u64) {
        if let Some(c) = self.chans.get_mut(&serial) {
            c.ops = c.ops.saturating_sub(1);
        }
    }

    fn note_idle(&mut self) {
        let now = self.now_ms;
        for &serial in self.releases.keys() {
            if self.relay.peek(serial).is_empty() {
                if let Some(c) = self.chans.get_mut(&serial) {
                    c.idle_since.get_or_insert(now);
                }
            }
        }
    }

    fn log(&mut self, level: Level, line: String) {
        self.logs.push((level, line));
    }

    /// Send channel `serial`'s count change, if any: before every script
    /// that reads the channel's count (pipelined, so Redis applies it
    /// first), and from [`RedisBackend::flush_counts`].
    fn send_count(&mut self, tx: &mut Tx<Tag>, serial: u64) {
        let hb = self.cfg.heartbeat_ms;
        for (s, n) in self.releases.drain() {
            if let Some(c) = self.chans.get_mut(&s) {
                c.delta -= i64::from(n);
            }
        }
        let Some(c) = self.chans.get_mut(&serial) else {
            return;
        };
        // "Last requested" alone waits for a count change or the heartbeat.
        if c.delta == 0 {
            return;
        }
        tx.eval(
            Tag::Register { serial },
            Script::Register,
            &c.keys(),
            &[
                Arg::B(&self.cfg.worker),
                Arg::B(b"a"),
                Arg::I(c.delta),
                Arg::U(0),
                Arg::U(hb),
                Arg::B(if c.touched { b"1" } else { b"0" }),
            ],
        );
        c.counted += c.delta;
        c.delta = 0;
        c.touched = false;
        c.ops += 1;
    }

    /// A listener answered without a round trip to Redis, when this worker
    /// knows all it needs: the channel is subscribed, its newest message is
    /// known and the cursor is past it (nothing to fetch), Redis already
    /// counts this worker's listeners there or a listen that makes sure
    /// the channel exists is on its way, and the location's rules need
    /// no exact count (`broadcast`, no subscriber limit, not
    /// authorized-only). Held (or, for interval-poll, `304`) at once; the
    /// count change goes with the next [`RedisBackend::flush_counts`].
    fn listen_here(
        &mut self,
        serial: u64,
        req: &Listen<'_>,
        w: &Waiter,
        fx: &mut Effects,
    ) -> Option<Listened> {
        let c = self.chans.get_mut(&serial)?;
        let r = &req.rules;
        // Counted on the channel, or a listen that makes sure it exists
        // goes ahead of the count change (one connection keeps the order):
        // the `+1` then finds the channel in Redis.
        if !c.subscribed
            || c.catching_up
            || (c.counted <= 0 && c.vouching == 0)
            || r.concurrency != Concurrency::Broadcast
            || r.max_subscribers != 0
            || r.authorized_only
        {
            return None;
        }
        let newest = c.newest?;
        if newest.is_some_and(|id| req.cursor.admits(id)) {
            return None;
        }
        c.touched = true;
        if !req.transport.holds() {
            return Some(Listened::NotModified);
        }
        c.delta += 1;
        c.idle_since = None;
        let chan = Self::key(serial);
        let key = self
            .relay
            .hold(chan, c.max_seq, w.cursor, w.yields, w.transport);
        let at = fx.copies.len();
        Some(Listened::Held {
            chan,
            key,
            backlog: at..at,
        })
    }

    /// A listener held here while Redis is down (or its listen was lost).
    fn listen_offline(&mut self, op: OpId, serial: u64, w: Waiter, hold: bool) -> Completion {
        self.op_done(serial);
        if let Some(c) = self.chans.get_mut(&serial) {
            c.listens = c.listens.saturating_sub(1);
            c.vouching = c.vouching.saturating_sub(u32::from(w.vouches));
        }
        if !hold {
            return Completion::Listen(Err(Refusal::Unavailable));
        }
        let _ = op;
        let seq = self.chans.get(&serial).map_or(0, |c| c.max_seq);
        let key = self
            .relay
            .hold(Self::key(serial), seq, w.cursor, w.yields, w.transport);
        self.offline.insert(key, w.authorized_only);
        Completion::Listen(Ok(Listened::Held {
            chan: Self::key(serial),
            key,
            backlog: 0..0,
        }))
    }

    /// A command that got no reply.
    fn lost(&mut self, tag: Tag, sent: bool, _fx: &mut Effects) {
        match tag {
            Tag::Listen { op, serial, w } => {
                let c = self.listen_offline(op, serial, w, w.transport.holds());
                self.done.push((op, c));
            }
            Tag::Publish { op, serial } => {
                self.op_done(serial);
                let why = if sent {
                    Refusal::MaybeStored
                } else {
                    Refusal::Unavailable
                };
                self.done.push((op, Completion::Publish(Err(why))));
            }
            Tag::Info { op, serial } | Tag::Delete { op, serial } => {
                self.op_done(serial);
                self.done
                    .push((op, Completion::Info(Err(Refusal::Unavailable))));
            }
            Tag::Fetch { .. } | Tag::Register { .. } | Tag::Resync { .. } => {}
        }
    }

    fn incoming(&mut self, tx: &mut Tx<Tag>, inc: Incoming<'_, '_, Tag>, fx: &mut Effects) {
        match inc {
            Incoming::Ready(markers) => self.ready(tx, markers),
            Incoming::Push(f) => {
                if self.queue.is_empty() {
                    self.push(f, fx, Some(tx));
                } else {
                    self.queue.push_back(Item::Push(Owned::of(f)));
                }
            }
            Incoming::Reply(Tag::Fetch { token }, f) => {
                let got = match f {
                    Frame::Bulk(b) => Some(b.to_vec()),
                    _ => None,
                };
                for item in self.queue.iter_mut() {
                    if let Item::Fetch {
                        token: t, got: g, ..
                    } = item
                    {
                        if *t == token {
                            *g = Some(got);
                            break;
                        }
                    }
                }
                self.drain(tx, fx);
            }
            Incoming::Reply(tag, f) => {
                if self.queue.is_empty() {
                    self.reply(Some(tx), tag, f, fx);
                } else {
                    self.queue.push_back(Item::Reply(tag, Owned::of(f)));
                }
            }
        }
    }

    /// Apply what waits, up to a reference still being fetched.
    fn drain(&mut self, tx: &mut Tx<Tag>, fx: &mut Effects) {
        while let Some(front) = self.queue.front() {
            if matches!(front, Item::Fetch { got: None, .. }) {
                return;
            }
            let Some(item) = self.queue.pop_front() else {
                return;
            };
            match item {
                Item::Fetch {
                    serial,
                    id,
                    upto,
                    got,
                    ..
                } => self.fetched(serial, id, upto, got.flatten().as_deref(), fx),
                Item::Push(o) => {
                    // A reference met here waits at the front again.
                    let rest = std::mem::take(&mut self.queue);
                    self.push(&o.frame(), fx, Some(tx));
                    self.queue.extend(rest);
                }
                Item::Reply(tag, o) => {
                    let rest = std::mem::take(&mut self.queue);
                    self.reply(Some(tx), tag, &o.frame(), fx);
                    self.queue.extend(rest);
                }
            }
        }
    }

    /// The handshake is done: resubscribe, re-register and catch up every
    /// channel with held listeners, then send what was asked meanwhile.
    fn ready(&mut self, tx: &mut Tx<Tag>, markers: &[u64]) {
        self.markers = markers.to_vec();
        self.releases.clear();
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut serials: Vec<u64> = self.relay.channels().map(|c| c.serial).collect();
        serials.sort_unstable();
        for &serial in &serials {
            if let Some(c) = self.chans.get_mut(&serial) {
                c.subscribed = true;
                names.push(c.pubsub.clone());
            }
        }
        for chunk in names.chunks(256) {
            let n: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            tx.subscribe(&n);
        }
        let hb = self.cfg.heartbeat_ms;
        for serial in serials {
            let held = self.relay.peek(serial);
            let Some(c) = self.chans.get_mut(&serial) else {
                continue;
            };
            let max = c.max_seq;
            let cur = weakest(held.iter().map(|h| h.cursor));
            let (since, tag) = cursor_args(&cur);
            let inc = c.inc.clone().unwrap_or_default();
            tx.eval(
                Tag::Resync { serial },
                Script::Resync,
                &c.keys(),
                &[
                    Arg::B(&self.cfg.worker),
                    Arg::U(held.len() as u64),
                    Arg::U(max),
                    Arg::U(hb),
                    Arg::B(&since),
                    Arg::B(&tag),
                    Arg::B(&inc),
                ],
            );
            c.catching_up = true;
            c.counted = held.len() as i64;
            c.delta = 0;
            c.ops += 1;
        }
        for q in std::mem::take(&mut self.waiting) {
            self.send(tx, q);
        }
    }

    /// Send an operation (after the channel's pending count change, so it
    /// counts this worker's listeners exactly).
    fn send(&mut self, tx: &mut Tx<Tag>, q: Queued) {
        let hb = self.cfg.heartbeat_ms;
        let serial = match &q {
            Queued::Listen { serial, .. }
            | Queued::Publish { serial, .. }
            | Queued::Create { serial, .. }
            | Queued::Info { serial, .. }
            | Queued::Delete { serial, .. } => *serial,
        };
        self.send_count(tx, serial);
        match q {
            Queued::Listen {
                op,
                serial,
                w,
                hold,
                rules,
            } => {
                let Some(c) = self.chans.get_mut(&serial) else {
                    return;
                };
                if hold && !c.subscribed {
                    tx.subscribe(&[&c.pubsub]);
                    c.subscribed = true;
                    c.idle_since = None;
                    c.newest = None;
                }
                let (since, tag) = cursor_args(&w.cursor);
                let rule: &[u8] = match rules.concurrency {
                    Concurrency::Last => b"l",
                    Concurrency::First => b"f",
                    Concurrency::Broadcast => b"b",
                };
                let all: &[u8] = if w.transport.ends_on_message() {
                    b"0"
                } else {
                    b"1"
                };
                tx.eval(
                    Tag::Listen { op, serial, w },
                    Script::Listen,
                    &c.keys(),
                    &[
                        Arg::B(&self.cfg.worker),
                        Arg::B(&since),
                        Arg::B(&tag),
                        Arg::B(if hold { b"1" } else { b"0" }),
                        Arg::B(rule),
                        Arg::B(if rules.authorized_only { b"1" } else { b"0" }),
                        Arg::U(u64::from(rules.max_subscribers)),
                        Arg::U(hb),
                        Arg::B(&c.pubsub),
                        Arg::B(all),
                    ],
                );
            }
            Queued::Publish {
                op,
                serial,
                content_type,
                event,
                body,
                rules,
            } => {
                let Some(c) = self.chans.get(&serial) else {
                    return;
                };
                let marker = self.markers.get(c.ns).copied().unwrap_or(0);
                tx.eval(
                    Tag::Publish { op, serial },
                    Script::Publish,
                    &c.keys(),
                    &[
                        Arg::B(&content_type),
                        Arg::B(&body),
                        Arg::U(marker),
                        Arg::U(rules.buffer_length as u64),
                        Arg::U(rules.message_timeout),
                        Arg::B(if rules.queue { b"1" } else { b"0" }),
                        Arg::U(rules.channel_timeout),
                        Arg::U(self.cfg.inline_max as u64),
                        Arg::U(self.cfg.ref_ttl),
                        Arg::B(&c.pubsub),
                        Arg::B(&event),
                    ],
                );
            }
            Queued::Create { op, serial, rules } => {
                let Some(c) = self.chans.get(&serial) else {
                    return;
                };
                tx.eval(
                    Tag::Info { op, serial },
                    Script::Create,
                    &c.keys(),
                    &[Arg::U(rules.channel_timeout)],
                );
            }
            Queued::Info { op, serial } => {
                let Some(c) = self.chans.get(&serial) else {
                    return;
                };
                tx.eval(Tag::Info { op, serial }, Script::Info, &c.keys(), &[]);
            }
            Queued::Delete { op, serial } => {
                let Some(c) = self.chans.get(&serial) else {
                    return;
                };
                tx.eval(
                    Tag::Delete { op, serial },
                    Script::Delete,
                    &c.keys(),
                    &[
                        Arg::B(&c.pubsub),
                        Arg::U(self.cfg.inline_max as u64),
                        Arg::U(self.cfg.ref_ttl),
                        Arg::U(self.cfg.tombstone_ttl),
                    ],
                );
            }
        }
    }

    /// Send now, or keep until the handshake is done.
    fn submit(&mut self, client: &mut Client<Tag>, q: Queued) {
        if client.phase() == Phase::Ready {
            self.send(client.tx(), q);
        } else {
            self.waiting.push(q);
        }
    }

    /// A pub/sub push. `tx` is `None` when the connection is gone (a
    /// reference then cannot be fetched).
    fn push(&mut self, f: &Frame<'_>, fx: &mut Effects, tx: Option<&mut Tx<Tag>>) {
        let Some(items) = f.items() else {
            return;
        };
        if items.first().and_then(Frame::bytes) != Some(b"message") {
            return;
        }
        let (Some(name), Some(payload)) = (
            items.get(1).and_then(Frame::bytes),
            items.get(2).and_then(Frame::bytes),
        ) else {
            return;
        };
        let Some(&serial) = self.by_pubsub.get(name) else {
            return;
        };
        let Some(c) = self.chans.get_mut(&serial) else {
            return;
        };
        if c.catching_up {
            c.deferred.push(Owned::of(f));
            return;
        }
        let Some(ann) = Announce::decode(payload) else {
            self.log(
                Level::Warn,
                "push_redis: an announcement that does not decode was ignored".into(),
            );
            return;
        };
        let chan = Self::key(serial);
        let id = match &ann {
            Announce::Message { msg, .. } => Some(msg.id),
            Announce::Reference { id, .. } => Some(*id),
            _ => None,
        };
        if let (Some(id), Some(Some(n))) = (id, c.newest) {
            c.newest = Some(Some(n.max(id)));
        } else if let (Some(id), Some(None)) = (id, c.newest) {
            c.newest = Some(Some(id));
        }
        match ann {
            Announce::Message { upto, msg } => self.apply_message(serial, &msg, upto, fx),
            Announce::Reference { upto, id } => {
                if !self.relay.wants(chan, id, upto) {
                    return;
                }
                let Some(tx) = tx else {
                    return;
                };
                let token = self.next_token;
                self.next_token += 1;
                let key = c.tag.message(id.time, id.tag);
                tx.cmd(Tag::Fetch { token }, &[Arg::B(b"GET"), Arg::B(&key)]);
                self.queue.push_front(Item::Fetch {
                    token,
                    serial,
                    id,
                    upto,
                    got: None,
                });
            }
            Announce::Conflict { before } => {
                let mut r = Releases(&mut self.releases);
                self.relay.conflict(&mut r, chan, before, fx);
            }
            Announce::Deleted => {
                c.inc = None;
                c.newest = None;
                let mut r = Releases(&mut self.releases);
                self.relay.deleted(&mut r, chan, fx);
            }
        }
    }

    fn apply_message(&mut self, serial: u64, msg: &Record<'_>, upto: Seq, fx: &mut Effects) {
        let chan = Self::key(serial);
        if !self.relay.wants(chan, msg.id, upto) {
            return;
        }
        let Some(m) = copy(fx, msg) else {
            return;
        };
        let before = self.releases.get(&serial).copied().unwrap_or(0);
        let mut r = Releases(&mut self.releases);
        self.relay.message(&mut r, chan, msg.id, upto, m, fx);
        let after = self.releases.get(&serial).copied().unwrap_or(0);
        self.recent.insert(serial, (msg.id, after - before));
    }

    fn fetched(&mut self, serial: u64, id: MsgId, upto: Seq, got: Option<&[u8]>, fx: &mut Effects) {
        match got.and_then(Record::decode) {
            Some(r) if r.id == id => self.apply_message(serial, &r, upto, fx),
            _ => self.log(
                Level::Warn,
                format!(
                    "push_redis: message {id} was gone before this worker fetched it; \
                     its listeners get the next one"
                ),
            ),
        }
    }

    fn bad_reply(&mut self, what: &str, f: &Frame<'_>) -> Refusal {
        let line = match f {
            Frame::Error(e) => format!(
                "push_redis: Redis refused the {what} script: {}",
                String::from_utf8_lossy(e)
            ),
            _ => format!("push_redis: unexpected reply to the {what} script"),
        };
        self.log(Level::Error, line);
        Refusal::Unavailable
    }

    fn reply(&mut self, tx: Option<&mut Tx<Tag>>, tag: Tag, f: &Frame<'_>, fx: &mut Effects) {
        match tag {
            Tag::Listen { op, serial, w } => {
                self.op_done(serial);
                if let Some(c) = self.chans.get_mut(&serial) {
                    c.listens = c.listens.saturating_sub(1);
                    c.vouching = c.vouching.saturating_sub(u32::from(w.vouches));
                }
                let out = match scripts::listen_reply(f) {
                    Err(_) => Err(self.bad_reply("listen", f)),
                    Ok(ListenReply::NotModified) => Ok(Listened::NotModified),
                    Ok(ListenReply::Forbidden) => Err(Refusal::Forbidden),
                    Ok(ListenReply::Conflict) => Err(Refusal::Conflict),
                    Ok(ListenReply::Message(rec)) => match Record::decode(rec) {
                        Some(r) => copy(fx, &r).map(Listened::Message).ok_or(Refusal::Internal),
                        None => Err(self.bad_reply("listen", f)),
                    },
                    Ok(ListenReply::Held {
                        seq,
                        inc,
                        newest,
                        records,
                    }) => {
                        let chan = Self::key(serial);
                        if let Some(c) = self.chans.get_mut(&serial) {
                            c.inc = Some(inc.to_vec());
                            c.max_seq = c.max_seq.max(seq);
                            c.idle_since = None;
                            c.counted += 1;
                            // Subscribed before this script ran: what came
                            // after it is announced.
                            if c.subscribed {
                                c.newest = Some(c.newest.flatten().max(newest));
                            }
                        }
                        // A stream's backlog goes with it (the module
                        // writes it after the stream's headers); its cursor
                        // moves past it.
                        let first = fx.copies.len();
                        let mut cursor = w.cursor;
                        for rec in records.iter().filter_map(Frame::bytes) {
                            if let Some(r) = Record::decode(rec) {
                                if copy(fx, &r).is_some() {
                                    cursor = Cursor::after(r.id);
                                }
                            }
                        }
                        let key = self.relay.hold(chan, seq, cursor, w.yields, w.transport);
                        Ok(Listened::Held {
                            chan,
                            key,
                            backlog: first..fx.copies.len(),
                        })
                    }
                };
                self.done.push((op, Completion::Listen(out)));
            }
            Tag::Publish { op, serial } => {
                self.op_done(serial);
                let out = match scripts::publish_reply(f) {
                    Ok(p) => {
                        let mine = match self.recent.get(&serial) {
                            Some(&(id, n)) if id == p.id => n,
                            _ => 0,
                        };
                        Ok(Published {
                            id: p.id,
                            held: p.held,
                            info: ChannelInfo {
                                messages: p.messages,
                                requested: p.requested,
                                subscribers: p.held.saturating_sub(mine),
                                last_message_id: Some(p.id),
                            },
                        })
                    }
                    Err(_) => Err(self.bad_reply("publish", f)),
                };
                self.done.push((op, Completion::Publish(out)));
            }
            Tag::Info { op, serial } | Tag::Delete { op, serial } => {
                self.op_done(serial);
                let out = match scripts::info_reply(f) {
                    Ok(Some(i)) => Ok(i),
                    Ok(None) => Err(Refusal::NotFound),
                    Err(_) => Err(self.bad_reply("channel", f)),
                };
                self.done.push((op, Completion::Info(out)));
            }
            Tag::Fetch { .. } => {}
            Tag::Register { serial } => {
                self.op_done(serial);
                match scripts::register_reply(f) {
                    Ok(Some(inc)) => {
                        if let Some(c) = self.chans.get_mut(&serial) {
                            c.inc = Some(inc.to_vec());
                        }
                    }
                    Ok(None) => {
                        // The channel expired (this worker was too slow to
                        // renew?) while listeners are still held here: the
                        // next heartbeat registers them again.
                        if let Some(c) = self.chans.get_mut(&serial) {
                            c.counted = 0;
                            c.newest = None;
                        }
                    }
                    Err(_) => {
                        self.bad_reply("register", f);
                    }
                }
            }
            Tag::Resync { serial } => {
                self.op_done(serial);
                self.resynced(serial, f, fx);
                // Announcements that arrived meanwhile, in order, ahead of
                // anything queued after this reply.
                let deferred = match self.chans.get_mut(&serial) {
                    Some(c) => {
                        c.catching_up = false;
                        std::mem::take(&mut c.deferred)
                    }
                    None => Vec::new(),
                };
                if deferred.is_empty() {
                    return;
                }
                let rest = std::mem::take(&mut self.queue);
                self.queue.extend(deferred.into_iter().map(Item::Push));
                self.queue.extend(rest);
                if let Some(tx) = tx {
                    self.drain(tx, fx);
                }
            }
        }
    }

    fn resynced(&mut self, serial: u64, f: &Frame<'_>, fx: &mut Effects) {
        let chan = Self::key(serial);
        let keys: Vec<Key> = self.relay.peek(serial).iter().map(|h| h.key).collect();
        match scripts::resync_reply(f) {
            Err(_) => {
                self.bad_reply("resync", f);
            }
            Ok(ResyncReply::Deleted) => {
                if let Some(c) = self.chans.get_mut(&serial) {
                    c.inc = None;
                }
                let mut r = Releases(&mut self.releases);
                self.relay.deleted(&mut r, chan, fx);
            }
            Ok(ResyncReply::Missing) => {}
            Ok(ResyncReply::There {
                inc,
                sender,
                newest,
                records,
            }) => {
                if let Some(c) = self.chans.get_mut(&serial) {
                    c.inc = Some(inc.to_vec());
                    c.max_seq = c.max_seq.max(newest);
                }
                let held: Vec<(Key, Seq, bool)> = self
                    .relay
                    .peek(serial)
                    .iter()
                    .map(|h| (h.key, h.seq, h.yields))
                    .collect();
                let mut r = Releases(&mut self.releases);
                for (key, seq, yields) in held {
                    match self.offline.get(&key) {
                        // Authorized-only could not be checked while Redis
                        // was down: the listener ends and asks again.
                        Some(&true) if !sender => {
                            self.relay
                                .end_one(&mut r, chan, key, crate::relay::Answer::Ended, fx);
                        }
                        Some(_) => {}
                        // A newer `last` listener came while this worker
                        // did not hear of it.
                        None if yields && seq < newest => {
                            self.relay.end_one(
                                &mut r,
                                chan,
                                key,
                                crate::relay::Answer::Conflict,
                                fx,
                            );
                        }
                        None => {}
                    }
                }
                for rec in records.iter().filter_map(Frame::bytes) {
                    if let Some(rec) = Record::decode(rec) {
                        self.apply_message(serial, &rec, Seq::MAX, fx);
                    }
                }
            }
        }
        for k in keys {
            self.offline.remove(&k);
        }
    }
}

impl Backend for Scoped<'_> {
    fn listen(&mut self, req: &Listen<'_>, _fx: &mut Effects) -> Step<Result<Listened, Refusal>> {
        let RedisBackend { client, st } = &mut *self.b;
        let serial = st.chan(self.ns, req.id);
        let w = Waiter {
            cursor: req.cursor,
            yields: req.rules.concurrency == Concurrency::Last,
            transport: req.transport,
            authorized_only: req.rules.authorized_only,
            vouches: req.transport.holds() && !req.rules.authorized_only,
        };
        let hold = req.transport.holds();
        if client.phase() == Phase::Ready {
            if let Some(out) = st.listen_here(serial, req, &w, _fx) {
                return Step::Ready(Ok(out));
            }
        }
        let op = st.next_op;
        st.next_op += 1;
        if client.phase() == Phase::Down {
            if let Some(c) = st.chans.get_mut(&serial) {
                // Balanced by `listen_offline`.
                c.listens += 1;
                c.vouching += u32::from(w.vouches);
                c.ops += 1;
            }
            return match st.listen_offline(op, serial, w, hold) {
                Completion::Listen(r) => Step::Ready(r),
                _ => Step::Ready(Err(Refusal::Internal)),
            };
        }
        if let Some(c) = st.chans.get_mut(&serial) {
            c.listens += 1;
            c.vouching += u32::from(w.vouches);
            c.ops += 1;
        }
        st.submit(
            client,
            Queued::Listen {
                op,
                serial,
                w,
                hold,
                rules: req.rules,
            },
        );
        self.b.flush();
        Step::Later(op)
    }

    fn publish(
        &mut self,
        req: &Publish<'_>,
        _fx: &mut Effects,
    ) -> Step<Result<Published, Refusal>> {
        let RedisBackend { client, st } = &mut *self.b;
        if client.phase() == Phase::Down {
            return Step::Ready(Err(Refusal::Unavailable));
        }
        let serial = st.chan(self.ns, req.id);
        let op = st.next_op;
        st.next_op += 1;
        if let Some(c) = st.chans.get_mut(&serial) {
            c.ops += 1;
        }
        st.submit(
            client,
            Queued::Publish {
                op,
                serial,
                content_type: req.content_type.to_vec(),
                event: req.event.to_vec(),
                body: req.body.to_vec(),
                rules: req.rules,
            },
        );
        self.b.flush();
        Step::Later(op)
    }

    fn create(
        &mut self,
        id: &[u8],
        rules: &SenderRules,
        _now: u64,
        _fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        self.simple(id, |op, serial| Queued::Create {
            op,
            serial,
            rules: *rules,
        })
    }

    fn info(
        &mut self,
        id: &[u8],
        _now: u64,
        _fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        self.simple(id, |op, serial| Queued::Info { op, serial })
    }

    fn delete(
        &mut self,
        id: &[u8],
        _now: u64,
        _fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        self.simple(id, |op, serial| Queued::Delete { op, serial })
    }

    fn catch_up(&mut self, _now: u64, _fx: &mut Effects) -> Step<()> {
        // Pushes arrive through `input`.
        Step::Ready(())
    }

    fn forget(&mut self, chan: ChanKey, key: Key, _now: u64) -> bool {
        let st = &mut self.b.st;
        let mut r = Releases(&mut st.releases);
        let gone = st.relay.forget(&mut r, chan, key);
        st.offline.remove(&key);
        self.b.flush();
        gone
    }

    fn release_all(&mut self, _now: u64, fx: &mut Effects) {
        let st = &mut self.b.st;
        let mut r = Releases(&mut st.releases);
        st.relay.release_all(&mut r, fx);
        st.offline.clear();
        self.b.flush();
    }
}

impl Scoped<'_> {
    fn simple(
        &mut self,
        id: &[u8],
        make: impl FnOnce(OpId, u64) -> Queued,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        let RedisBackend { client, st } = &mut *self.b;
        if client.phase() == Phase::Down {
            return Step::Ready(Err(Refusal::Unavailable));
        }
        let serial = st.chan(self.ns, id);
        let op = st.next_op;
        st.next_op += 1;
        if let Some(c) = st.chans.get_mut(&serial) {
            c.ops += 1;
        }
        st.submit(client, make(op, serial));
        Step::Later(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ListenerRules;
    use crate::relay::Answer;
    use crate::transport::Transports;

    fn backend() -> RedisBackend {
        let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
        RedisBackend::new(RedisConfig::new(
            url,
            vec![b"push:".to_vec()],
            b"w1".to_vec(),
        ))
    }

    fn bulk(b: &[u8]) -> Vec<u8> {
        let mut v = format!("${}\r\n", b.len()).into_bytes();
        v.extend_from_slice(b);
        v.extend_from_slice(b"\r\n");
        v
    }

    fn push(payload: &[u8]) -> Vec<u8> {
        let mut v = b">3\r\n".to_vec();
        v.extend(bulk(b"message"));
        v.extend(bulk(b"{push:ch}:p"));
        v.extend(bulk(payload));
        v
    }

    fn record(time: u64, tag: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        Record {
            id: MsgId { time, tag },
            content_type: b"t",
            event: b"",
            body,
        }
        .encode(&mut v);
        v
    }

    fn handshake() -> Vec<u8> {
        let mut r = b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec();
        for i in 0..Script::ALL.len() {
            r.extend(bulk(format!("{i:040}").as_bytes()));
        }
        r.extend(bulk(b"1764170000"));
        r
    }

    fn ready() -> RedisBackend {
        let mut b = backend();
        b.connecting(0);
        b.connected(0);
        let mut fx = Effects::default();
        assert!(b.input(&handshake(), 1, &mut fx).is_empty());
        assert!(b.is_up());
        b.output().clear();
        b
    }

    fn rules() -> ListenerRules {
        ListenerRules {
            transports: Transports::only(Transport::LongPoll),
            concurrency: Concurrency::Broadcast,
            timeout_ms: 0,
            authorized_only: false,
            max_subscribers: 0,
            ping_ms: 0,
            max_pending: 1 << 20,
        }
    }

    fn listen(
        b: &mut RedisBackend,
        t: Transport,
        cursor: Cursor,
    ) -> Step<Result<Listened, Refusal>> {
        let req = Listen {
            id: b"ch",
            cursor,
            rules: rules(),
            transport: t,
            now: 0,
        };
        b.scope(0).listen(&req, &mut Effects::default())
    }

    fn publish(b: &mut RedisBackend) -> Step<Result<Published, Refusal>> {
        let req = Publish {
            id: b"ch",
            content_type: b"t",
            event: b"",
            body: b"body",
            rules: SenderRules {
                queue: true,
                message_timeout: 60,
                buffer_length: 10,
                channel_timeout: 60,
            },
            now: 0,
        };
        b.scope(0).publish(&req, &mut Effects::default())
    }

    fn later<T: std::fmt::Debug>(s: Step<T>) -> OpId {
        match s {
            Step::Later(op) => op,
            other => panic!("{other:?}"),
        }
    }

    fn held(c: &Completion) -> Key {
        match c {
            Completion::Listen(Ok(Listened::Held { key, .. })) => *key,
            other => panic!("{other:?}"),
        }
    }

    fn held_reply(seq: u64) -> Vec<u8> {
        // The channel's last message: 100:5 (listeners with an earlier
        // cursor go to Redis).
        format!("*5\r\n:4\r\n:{seq}\r\n$3\r\n1.1\r\n:100\r\n:5\r\n").into_bytes()
    }

    const CONFIRM: &[u8] = b">3\r\n$9\r\nsubscribe\r\n$11\r\n{push:ch}:p\r\n:1\r\n";

    /// The first listen's confirmation, then its reply.
    fn first_held(seq: u64) -> Vec<u8> {
        let mut v = CONFIRM.to_vec();
        v.extend(held_reply(seq));
        v
    }

    #[test]
    fn redis_down_refuses_senders_and_holds_long_polls_here() {
        let mut b = backend();
        assert_eq!(publish(&mut b), Step::Ready(Err(Refusal::Unavailable)));
        assert_eq!(
            b.scope(0).info(b"ch", 0, &mut Effects::default()),
            Step::Ready(Err(Refusal::Unavailable))
        );
        assert_eq!(
            listen(&mut b, Transport::IntervalPoll, Cursor::default()),
            Step::Ready(Err(Refusal::Unavailable))
        );
        let Step::Ready(Ok(Listened::Held { key, .. })) =
            listen(&mut b, Transport::LongPoll, Cursor::default())
        else {
            panic!()
        };
        assert!(key > KEYS_ABOVE);
        assert_eq!(b.relay().held(), 1);
        assert!(b.output().is_empty(), "nothing to send while down");
    }

    #[test]
    fn subscribe_goes_ahead_of_the_first_listen_and_a_push_answers_it() {
        let mut b = ready();
        let op = later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        let out = String::from_utf8_lossy(b.output()).into_owned();
        let sub = out.find("SUBSCRIBE").unwrap();
        let eval = out.find("EVALSHA").unwrap();
        assert!(sub < eval, "{out}");
        let mut fx = Effects::default();
        // The subscription's confirmation is a push, not the reply.
        let bytes = first_held(1);
        let done = b.input(&bytes, 2, &mut fx);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, op);
        let key = held(&done[0].1);
        b.output().clear();
        // Announced inline, published after the listener (upto 2 > seq 1).
        let mut ann = b"M2:".to_vec();
        ann.extend(record(100, 0, b"hello"));
        let done = b.input(&push(&ann), 3, &mut fx);
        assert!(done.is_empty());
        assert_eq!(fx.answers, vec![(key, Answer::Message(MsgRef::Copy(0)))]);
        assert_eq!(fx.copies.take_deliveries()[0].body(), b"hello");
        // Its count goes back to Redis, with the next flush of counts.
        assert!(b.output().is_empty());
        assert!(b.counts_pending());
        b.flush_counts();
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert!(out.contains("$2\r\n-1\r\n"), "{out}");
    }

    #[test]
    fn listeners_back_behind_one_that_asks_redis_are_held_here() {
        let mut b = ready();
        later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        b.input(&first_held(1), 2, &mut Effects::default());
        b.output().clear();
        // Its message answers it, and its count goes back to Redis before
        // it is back: Redis counts none of this worker's listeners.
        let mut ann = b"M2:".to_vec();
        ann.extend(record(101, 0, b"m"));
        b.input(&push(&ann), 3, &mut Effects::default());
        b.flush_counts();
        b.output().clear();
        let after = Cursor::after(MsgId { time: 101, tag: 0 });
        // An interval-poll does not make sure the channel exists...
        later(listen(&mut b, Transport::IntervalPoll, after));
        b.output().clear();
        later(listen(&mut b, Transport::LongPoll, after));
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert_eq!(out.matches("EVALSHA").count(), 1, "asked: {out}");
        b.output().clear();
        // ...a long-poll does: the ones back behind it are held here, and
        // their +3 goes to Redis after its script, in one command.
        for _ in 0..3 {
            assert!(matches!(
                listen(&mut b, Transport::LongPoll, after),
                Step::Ready(Ok(Listened::Held { .. }))
            ));
        }
        assert!(b.output().is_empty(), "no round trip");
        b.flush_counts();
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert_eq!(out.matches("EVALSHA").count(), 1, "{out}");
        assert!(out.contains("$1\r\n3\r\n"), "{out}");
    }

    #[test]
    fn a_listener_past_the_newest_message_is_held_without_asking_redis() {
        let mut b = ready();
        later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        let k1 = held(&b.input(&first_held(1), 2, &mut Effects::default())[0].1);
        b.output().clear();
        let past = Cursor::after(MsgId { time: 100, tag: 5 });
        // Past 100:5, broadcast, counted on the channel: held here.
        let Step::Ready(Ok(Listened::Held { key: k2, .. })) =
            listen(&mut b, Transport::LongPoll, past)
        else {
            panic!("held at once")
        };
        assert!(b.output().is_empty(), "no round trip");
        assert_eq!(
            listen(&mut b, Transport::IntervalPoll, past),
            Step::Ready(Ok(Listened::NotModified))
        );
        // Not past it: Redis is asked.
        let op3 = later(listen(
            &mut b,
            Transport::LongPoll,
            Cursor::after(MsgId { time: 100, tag: 4 }),
        ));
        b.output().clear();
        // A newer message raises what is known; both held get it.
        let mut fx = Effects::default();
        let mut ann = b"M9:".to_vec();
        ann.extend(record(101, 0, b"new"));
        b.input(&push(&ann), 3, &mut fx);
        let answered: Vec<Key> = fx.answers.iter().map(|a| a.0).collect();
        assert!(answered.contains(&k1) && answered.contains(&k2));
        // One count change for both, sent once (the +1 of the one held
        // here went ahead of the third listener's script).
        assert!(b.output().is_empty());
        b.flush_counts();
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert_eq!(out.matches("EVALSHA").count(), 1, "{out}");
        assert!(out.contains("$2\r\n-2\r\n"), "two answered: {out}");
        b.output().clear();
        // Redis counts none of this worker's listeners now, but the third
        // listener's script is on its way (the channel exists once it has
        // run): one past the newest is held here.
        let after_new = Cursor::after(MsgId { time: 101, tag: 0 });
        assert!(matches!(
            listen(&mut b, Transport::LongPoll, after_new),
            Step::Ready(Ok(Listened::Held { .. }))
        ));
        assert!(b.output().is_empty(), "no round trip");
        // The count change sent before, then the third listener's script
        // answer (held in Redis's count)...
        let mut replies = b"*2\r\n:1\r\n$3\r\n1.1\r\n".to_vec();
        replies.extend(held_reply(3));
        let done = b.input(&replies, 4, &mut Effects::default());
        assert_eq!(done[0].0, op3);
        // ...so the next one past the newest is held here again, but
        // another rule needs Redis's exact count.
        assert!(matches!(
            listen(
                &mut b,
                Transport::LongPoll,
                Cursor::after(MsgId { time: 101, tag: 0 })
            ),
            Step::Ready(_)
        ));
        let mut first = rules();
        first.concurrency = Concurrency::First;
        let req = Listen {
            id: b"ch",
            cursor: after_new,
            rules: first,
            transport: Transport::LongPoll,
            now: 0,
        };
        later(b.scope(0).listen(&req, &mut Effects::default()));
    }

    #[test]
    fn a_message_published_before_the_listener_is_not_its_own() {
        let mut b = ready();
        let done = {
            later(listen(&mut b, Transport::LongPoll, Cursor::default()));
            b.input(&first_held(5), 2, &mut Effects::default())
        };
        let key = held(&done[0].1);
        let mut fx = Effects::default();
        let mut ann = b"M5:".to_vec();
        ann.extend(record(100, 0, b"old"));
        b.input(&push(&ann), 3, &mut fx);
        assert!(fx.answers.is_empty(), "upto 5 is not after seq 5");
        assert!(b.relay().is_held(State::key(1), key));
    }

    #[test]
    fn a_reference_holds_back_what_came_after_it_until_fetched() {
        let mut b = ready();
        later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        let l1 = held(&b.input(&first_held(1), 2, &mut Effects::default())[0].1);
        let op2 = later(listen(
            &mut b,
            Transport::LongPoll,
            Cursor::after(MsgId { time: 100, tag: 0 }),
        ));
        b.output().clear();
        let mut fx = Effects::default();
        // Redis ran: publish m1 (by reference), then listen L2, then
        // publish m2 (inline).
        let mut bytes = push(b"R2:100:0");
        bytes.extend(held_reply(2));
        let mut m2 = b"M3:".to_vec();
        m2.extend(record(100, 1, b"second"));
        bytes.extend(push(&m2));
        let done = b.input(&bytes, 3, &mut fx);
        assert!(done.is_empty(), "L2's reply waits behind the reference");
        assert!(fx.answers.is_empty(), "m2 waits too");
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert!(
            out.contains("GET") && out.contains("{push:ch}:k:100:0"),
            "{out}"
        );
        let done = b.input(&bulk(&record(100, 0, b"first")), 4, &mut fx);
        let l2 = held(&done[0].1);
        assert_eq!(done[0].0, op2);
        let d = fx.copies.take_deliveries();
        let got: Vec<(Key, &[u8])> = fx
            .answers
            .iter()
            .map(|&(k, a)| match a {
                Answer::Message(MsgRef::Copy(i)) => (k, d[i as usize].body()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec![(l1, &b"first"[..]), (l2, &b"second"[..])]);
    }

    #[test]
    fn conflict_and_delete_announcements() {
        let mut b = ready();
        later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        let k1 = held(&b.input(&first_held(1), 2, &mut Effects::default())[0].1);
        later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        let k2 = held(&b.input(&held_reply(2), 2, &mut Effects::default())[0].1);
        let mut fx = Effects::default();
        b.input(&push(b"C2"), 3, &mut fx);
        assert_eq!(fx.answers, vec![(k1, Answer::Conflict)]);
        b.input(&push(b"D"), 3, &mut fx);
        assert_eq!(fx.answers[1], (k2, Answer::Gone));
        b.input(&push(b"garbage"), 3, &mut fx);
        assert_eq!(fx.answers.len(), 2);
        assert!(b
            .take_logs()
            .iter()
            .any(|l| l.1.contains("does not decode")));
    }

    #[test]
    fn a_dropped_connection_tells_sent_from_unsent_publishes_and_keeps_listeners() {
        let mut b = ready();
        let sent = later(publish(&mut b));
        let n = b.output().len();
        b.output().drain(..n);
        let unsent = later(publish(&mut b));
        let lop = later(listen(&mut b, Transport::LongPoll, Cursor::default()));
        let iop = later(listen(&mut b, Transport::IntervalPoll, Cursor::default()));
        let done = b.disconnected(5, &mut Effects::default());
        let by: HashMap<OpId, Completion> = done.into_iter().collect();
        assert_eq!(by[&sent], Completion::Publish(Err(Refusal::MaybeStored)));
        assert_eq!(by[&unsent], Completion::Publish(Err(Refusal::Unavailable)));
        assert_eq!(by[&iop], Completion::Listen(Err(Refusal::Unavailable)));
        held(&by[&lop]);
        assert_eq!(b.relay().held(), 1, "held here until Redis is back");
        assert!(!b.is_up());
        assert!(b.retry_after(5) >= Duration::from_millis(1000));
    }

    #[test]
    fn operations_asked_while_connecting_wait_for_the_handshake() {
        let mut b = backend();
        b.connecting(0);
        let before = b.output().len();
        let op = later(publish(&mut b));
        assert_eq!(
            b.output().len(),
            before,
            "not sent before the marker is known"
        );
        b.connected(0);
        let mut fx = Effects::default();
        b.input(&handshake(), 1, &mut fx);
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert!(
            out.contains("EVALSHA") && out.contains("1764170000"),
            "marker passed"
        );
        let done = b.input(b"*5\r\n:1764170001\r\n:0\r\n:0\r\n:1\r\n:0\r\n", 2, &mut fx);
        assert_eq!(done.len(), 1);
        let Completion::Publish(Ok(p)) = done[0].1 else {
            panic!("{:?}", done[0].1)
        };
        assert_eq!((p.id.time, p.held, p.info.messages), (1_764_170_001, 0, 1));
        assert_eq!(done[0].0, op);
    }

    #[test]
    fn after_a_reconnect_announcements_wait_for_the_catch_up() {
        let mut b = ready();
        later(listen(
            &mut b,
            Transport::LongPoll,
            Cursor::after(MsgId { time: 100, tag: 0 }),
        ));
        let k = held(&b.input(&first_held(1), 2, &mut Effects::default())[0].1);
        b.disconnected(3, &mut Effects::default());
        b.connecting(4);
        b.connected(4);
        let mut fx = Effects::default();
        b.input(&handshake(), 5, &mut fx);
        let out = String::from_utf8_lossy(b.output()).into_owned();
        assert!(out.find("SUBSCRIBE").unwrap() < out.find("EVALSHA").unwrap());
        // m2 announced before the resync's reply, which brings m1 and m2.
        let mut m2 = b"M9:".to_vec();
        m2.extend(record(100, 2, b"m2"));
        let mut bytes = CONFIRM.to_vec();
        bytes.extend(push(&m2));
        bytes.extend(b"*6\r\n:1\r\n$3\r\n1.1\r\n:1\r\n:0\r\n");
        bytes.extend(bulk(&record(100, 1, b"m1")));
        bytes.extend(bulk(&record(100, 2, b"m2")));
        b.input(&bytes, 6, &mut fx);
        let d = fx.copies.take_deliveries();
        assert_eq!(fx.answers.len(), 1, "once: {:?}", fx.answers);
        assert_eq!(fx.answers[0].0, k);
        assert_eq!(
            d[0].body(),
            b"m1",
            "the first it missed, not the newer push"
        );
    }
}
