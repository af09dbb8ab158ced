//! The shared store: every channel and message of all workers, and the
//! per-worker inboxes that carry fan-out work between workers.
//!
//! It lives in the module's shared-memory zone and is only ever touched while
//! the zone's mutex is held (the module's `runtime::zone`); the store itself
//! is plain safe Rust, generic over the allocator so that the unit tests run
//! it on the heap. Every allocation is fallible (`try_reserve`,
//! `try_new_in`): running out of zone memory is an answer (`507`), never a
//! panic, and an operation that cannot get its memory changes nothing.

mod check;
pub mod points;

use core::hash::Hasher;

pub use check::{Census, Defect, Repairs};
use points::point;

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box;
use allocator_api2::vec::Vec;

pub use crate::conf::Concurrency;
use crate::proto::cursor::{Cursor, MsgId};
pub use crate::proto::info::ChannelInfo;

/// A worker process as the store knows it: unique for the zone's lifetime,
/// unlike a pid or a process slot.
pub type WorkerId = u32;
/// Order of held listeners across all workers (the `last`/`first` rules).
pub type Seq = u64;

/// Why the store could not do what it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The zone has no room: `507`, and nothing changed.
    NoMemory,
    /// An invariant did not hold (a channel that must exist does not): a
    /// bug, answered `500` and logged at `alert`.
    Inconsistent,
}

use StoreError::NoMemory;

/// A stored (or in-flight) message.
pub struct Message<A: Allocator> {
    pub id: MsgId,
    /// Unix second after which it is gone; 0 = never.
    expires: u64,
    /// Other workers that were told about it and have not fetched it yet.
    pending: u32,
    pub content_type: Vec<u8, A>,
    /// The sender's `X-EventSource-Event`; empty = none.
    pub event: Vec<u8, A>,
    pub body: Vec<u8, A>,
}

impl<A: Allocator> core::fmt::Debug for Message<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Message({:?}, {} bytes)", self.id, self.body.len())
    }
}

impl<A: Allocator> Message<A> {
    fn expired(&self, now: u64) -> bool {
        self.expires != 0 && now >= self.expires
    }
}

/// Copy `src` into a new zone vector, or fail without side effects.
fn copy_in<A: Allocator>(src: &[u8], alloc: A) -> Result<Vec<u8, A>, StoreError> {
    let mut v = Vec::new_in(alloc);
    v.try_reserve_exact(src.len()).map_err(|_| NoMemory)?;
    v.extend_from_slice(src);
    Ok(v)
}

/// Push onto a vector without ever panicking on allocation failure.
fn try_push<T, A: Allocator>(v: &mut Vec<T, A>, value: T) -> Result<(), StoreError> {
    v.try_reserve(1).map_err(|_| NoMemory)?;
    v.push_within_capacity(value).map_err(|_| NoMemory)
}

pub struct Channel<A: Allocator + Clone> {
    next: Option<Box<Channel<A>, A>>,
    hash: u64,
    /// Distinguishes this channel from an earlier one with the same id.
    serial: u64,
    id: Vec<u8, A>,
    /// Oldest first; at most the publishing location's buffer length.
    stored: Vec<Message<A>, A>,
    /// Evicted or never stored, but still owed to other workers.
    transit: Vec<Message<A>, A>,
    /// Held listeners per worker.
    holders: Vec<(WorkerId, u32), A>,
    /// Newest message id, kept even when the message itself was not stored.
    last_id: Option<MsgId>,
    /// Newest held listener: under `last`, older ones are conflicts.
    newest_seq: Seq,
    sender_created: bool,
    created: u64,
    last_used: u64,
    last_requested: Option<u64>,
    /// Idle lifetime of a sender-created channel, seconds.
    idle_timeout: u64,
    /// Messages of this channel that expired, or were evicted by newer ones
    /// (for the stats; folded into the store's when the channel goes).
    expired_n: u64,
    evicted_n: u64,
}

impl<A: Allocator + Clone> Channel<A> {
    pub fn held(&self) -> u32 {
        self.holders.iter().map(|h| h.1).sum()
    }

    pub fn last_id(&self) -> Option<MsgId> {
        self.last_id
    }

    /// The newest listener held on the channel (the `last` rule's winner).
    pub fn newest_seq(&self) -> Seq {
        self.newest_seq
    }

    pub fn stored_len(&self) -> usize {
        self.stored.len()
    }

    /// Every stored, unexpired message the cursor admits, oldest first (a
    /// stream's backlog).
    pub fn backlog<'c>(
        &'c self,
        cursor: &'c Cursor,
        now: u64,
    ) -> impl Iterator<Item = &'c Message<A>> + 'c {
        self.stored
            .iter()
            .filter(move |m| !m.expired(now) && cursor.admits(m.id))
    }

    /// The first stored, unexpired message the cursor admits.
    pub fn next_for(&self, cursor: &Cursor, now: u64) -> Option<&Message<A>> {
        self.stored
            .iter()
            .find(|m| !m.expired(now) && cursor.admits(m.id))
    }

    pub fn info(&self, now: u64) -> ChannelInfo {
        let since = self.last_requested.unwrap_or(self.created);
        ChannelInfo {
            messages: self.stored.iter().filter(|m| !m.expired(now)).count() as u32,
            requested: now.saturating_sub(since) as i64,
            subscribers: self.held(),
            last_message_id: self.last_id,
        }
    }

    /// Free the expired messages; whether there were any.
    fn expire(&mut self, now: u64) -> bool {
        let before = self.expired_n;
        let mut i = 0;
        while i < self.stored.len() {
            if self.stored[i].expired(now) {
                let m = self.stored.remove(i);
                self.expired_n += 1;
                self.park_or_drop(m);
            } else {
                i += 1;
            }
        }
        self.expired_n != before
    }

    /// A message leaving the buffer is freed unless another worker still
    /// has to fetch it.
    fn park_or_drop(&mut self, m: Message<A>) {
        if m.pending > 0 {
            // `transit` always has room reserved for what publish put in
            // flight (see `publish`); if not, dropping only loses a copy
            // another worker would have delivered to listeners that are
            // held, and the worker resynchronises from the buffer.
            let _ = try_push(&mut self.transit, m);
        }
    }

    fn add_holder(&mut self, w: WorkerId) -> Result<(), StoreError> {
        if let Some(h) = self.holders.iter_mut().find(|h| h.0 == w) {
            h.1 += 1;
            return Ok(());
        }
        try_push(&mut self.holders, (w, 1))
    }

    fn remove_holders(&mut self, w: WorkerId, n: u32) {
        if let Some(i) = self.holders.iter().position(|h| h.0 == w) {
            let h = &mut self.holders[i];
            h.1 = h.1.saturating_sub(n);
            if h.1 == 0 {
                self.holders.swap_remove(i);
            }
        }
    }

    /// Nothing keeps it alive: no message, nobody held, nothing in flight.
    fn is_empty(&self) -> bool {
        self.stored.is_empty() && self.transit.is_empty() && self.holders.is_empty()
    }

    fn is_idle(&self, now: u64) -> bool {
        self.is_empty()
            && (!self.sender_created || now >= self.last_used.saturating_add(self.idle_timeout))
    }

    /// Message `id`, stored or in transit.
    fn fetch(&self, id: MsgId) -> Option<&Message<A>> {
        self.stored
            .iter()
            .chain(self.transit.iter())
            .find(|m| m.id == id)
    }

    /// Take one pending reference off message `id`; a message in transit
    /// is freed once nobody owes it.
    fn release(&mut self, id: MsgId) {
        if let Some(m) = self.stored.iter_mut().find(|m| m.id == id) {
            m.pending = m.pending.saturating_sub(1);
        } else if let Some(i) = self.transit.iter().position(|m| m.id == id) {
            let m = &mut self.transit[i];
            m.pending = m.pending.saturating_sub(1);
            if m.pending == 0 {
                self.transit.remove(i);
            }
        }
    }
}

/// Work one worker owes another: answer its held listeners on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    pub hash: u64,
    pub serial: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Deliver message `id` to listeners held before `upto`.
    Message { id: MsgId, upto: Seq },
    /// `last` rule: listeners held before `before` answer 409.
    Conflict { before: Seq },
    /// The channel was deleted: every held listener answers 410.
    Deleted,
}

pub struct Worker<A: Allocator> {
    pub id: WorkerId,
    pub pid: i32,
    pub nonce: u64,
    inbox: Vec<Event, A>,
    /// An event could not be queued: the worker must resynchronise all its
    /// held listeners against the store.
    overflow: bool,
    /// This worker's held listeners by transport, and its gauges of each
    /// Redis endpoint (up, commands in flight), as it last wrote them.
    pub gauges: WorkerGauges,
}

/// Redis endpoints whose state a worker reports (the stats show the first
/// ones only).
pub const STATS_REDIS: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerGauges {
    pub held: [u32; 4],
    pub redis_up: [bool; STATS_REDIS],
    pub redis_pending: [u32; STATS_REDIS],
}

/// Where to send a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub id: WorkerId,
    pub pid: i32,
    pub nonce: u64,
}

/// The per-request limits and rules of the location a listener came to.
#[derive(Debug, Clone, Copy)]
pub struct ListenRules {
    pub concurrency: Concurrency,
    pub hold: bool,
    /// A stream: held even when stored messages are there (they are its
    /// backlog), never answered with one.
    pub stream: bool,
    pub authorized_only: bool,
    pub max_subscribers: u32,
}

#[derive(Debug)]
pub enum Listen<'a, A: Allocator> {
    /// Answer with this message now.
    Message(&'a Message<A>),
    /// Nothing newer and not held (interval-poll): `304`.
    NotModified,
    /// Authorized channels only, or the subscriber limit: `403`.
    Forbidden,
    /// `first` rule: someone already waits: `409`.
    Conflict,
    /// Hold it. Local listeners held before `seq` on this channel must answer
    /// `409` when `evict_older` is set (`last` rule).
    Hold {
        seq: Seq,
        hash: u64,
        serial: u64,
        evict_older: bool,
    },
}

/// Options of one publish.
pub struct NewMessage<'a> {
    pub content_type: &'a [u8],
    pub event: &'a [u8],
    pub body: &'a [u8],
    pub now: u64,
    /// Seconds a stored message lives; 0 = forever.
    pub message_timeout: u64,
    pub buffer_length: usize,
    pub queue: bool,
    pub channel_timeout: u64,
    pub worker: WorkerId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub id: MsgId,
    pub hash: u64,
    pub serial: u64,
    /// Listener sequence at publish time: later listeners came after it.
    pub upto: Seq,
    /// Listeners held on the channel, all workers, when it was published.
    pub held: u32,
}

pub struct Store<A: Allocator + Clone> {
    alloc: A,
    key: [u64; 2],
    buckets: Vec<Option<Box<Channel<A>, A>>, A>,
    /// The bucket table being replaced by a bigger one; empty but while
    /// `grow_buckets` moves the channels.
    rehash_from: Vec<Option<Box<Channel<A>, A>>, A>,
    channels: usize,
    workers: Vec<Worker<A>, A>,
    /// Deleted channels whose messages other workers still have to fetch
    /// (published just before the DELETE): freed once fetched.
    orphans: Vec<Box<Channel<A>, A>, A>,
    next_worker: WorkerId,
    next_seq: Seq,
    next_serial: u64,
    sweep_pos: usize,
    /// Expired and evicted messages of channels that are gone.
    retired: (u64, u64),
}

/// What the stats report of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub channels: u64,
    pub stored: u64,
    pub expired: u64,
    pub evicted: u64,
}

const INITIAL_BUCKETS: usize = 64;

impl<A: Allocator + Clone> Store<A> {
    /// An empty store; `key` seeds the channel-id hash (random per zone, so
    /// ids cannot be chosen to collide).
    pub fn new(alloc: A, key: [u64; 2]) -> Result<Self, StoreError> {
        let mut buckets = Vec::new_in(alloc.clone());
        buckets
            .try_reserve_exact(INITIAL_BUCKETS)
            .map_err(|_| NoMemory)?;
        buckets.resize_with(INITIAL_BUCKETS, || None);
        Ok(Store {
            workers: Vec::new_in(alloc.clone()),
            rehash_from: Vec::new_in(alloc.clone()),
            orphans: Vec::new_in(alloc.clone()),
            alloc,
            key,
            buckets,
            channels: 0,
            next_worker: 1,
            next_seq: 1,
            next_serial: 1,
            sweep_pos: 0,
            retired: (0, 0),
        })
    }

    /// A new, empty store replacing one damaged beyond repair: worker ids
    /// and channel serials continue after `counters` (the old store's, as
    /// far as they could be read), so nothing from before is mistaken for
    /// something new.
    pub fn new_after(
        alloc: A,
        key: [u64; 2],
        counters: (WorkerId, u64),
    ) -> Result<Self, StoreError> {
        let mut s = Store::new(alloc, key)?;
        s.next_worker = counters.0.max(1);
        s.next_serial = counters.1.max(1);
        Ok(s)
    }

    /// The next worker id and channel serial.
    pub fn counters(&self) -> (WorkerId, u64) {
        (self.next_worker, self.next_serial)
    }

    /// Register again, under its own id, a worker the store lost when it
    /// was rebuilt.
    pub fn register_worker_as(
        &mut self,
        id: WorkerId,
        pid: i32,
        nonce: u64,
    ) -> Result<(), StoreError> {
        if self.workers.iter().any(|w| w.id == id) {
            return Ok(());
        }
        let w = Worker {
            id,
            pid,
            nonce,
            inbox: Vec::new_in(self.alloc.clone()),
            overflow: false,
            gauges: WorkerGauges::default(),
        };
        try_push(&mut self.workers, w)?;
        self.next_worker = self.next_worker.max(id + 1);
        Ok(())
    }

    /// Damage the store the way no interrupted update can (a channel moved
    /// to the wrong bucket): the tests' way to reach the rebuild.
    #[cfg(debug_assertions)]
    pub fn misfile_for_tests(&mut self) {
        let n = self.buckets.len();
        if let Some(b) = self.buckets.iter().position(Option::is_some) {
            if let Some(mut c) = self.buckets[b].take() {
                self.buckets[b] = c.next.take();
                let to = (b + 1) % n;
                c.next = self.buckets[to].take();
                self.buckets[to] = Some(c);
            }
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels
    }

    fn hash_id(&self, id: &[u8]) -> u64 {
        // SipHash with the zone's key mixed in first; the same binary gives
        // the same function in every worker.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(self.key[0]);
        h.write_u64(self.key[1]);
        h.write(id);
        h.finish()
    }

    fn bucket_of(&self, hash: u64) -> usize {
        (hash as usize) & (self.buckets.len() - 1)
    }

    /// The serial of the channel `id` (whose hash is `hash`), if it exists.
    fn locate(&self, hash: u64, id: &[u8]) -> Option<u64> {
        let mut cur = self.buckets[self.bucket_of(hash)].as_deref();
        while let Some(c) = cur {
            if c.hash == hash && c.id[..] == *id {
                return Some(c.serial);
            }
            cur = c.next.as_deref();
        }
        None
    }

    /// How many stored messages a stream starting at `cursor` would get
    /// at once, and their bytes (type, event name and body).
    pub fn backlog_size(&self, id: &[u8], cursor: &Cursor, now: u64) -> (usize, usize) {
        self.find(id).map_or((0, 0), |c| {
            c.backlog(cursor, now).fold((0, 0), |(n, b), m| {
                (
                    n + 1,
                    b + m.content_type.len() + m.event.len() + m.body.len(),
                )
            })
        })
    }

    pub fn find(&self, id: &[u8]) -> Option<&Channel<A>> {
        let hash = self.hash_id(id);
        self.by_serial(hash, self.locate(hash, id)?)
    }

    fn find_mut(&mut self, id: &[u8]) -> Option<&mut Channel<A>> {
        let hash = self.hash_id(id);
        let serial = self.locate(hash, id)?;
        self.by_serial_mut(hash, serial)
    }

    /// (hash, serial) of the channel `id`, created if missing; the id is
    /// hashed once.
    fn find_or_create(&mut self, id: &[u8], now: u64) -> Result<(u64, u64), StoreError> {
        let hash = self.hash_id(id);
        match self.locate(hash, id) {
            Some(serial) => Ok((hash, serial)),
            None => Ok((hash, self.create(hash, id, now)?)),
        }
    }

    /// The channel a worker's listeners were held on, if it still exists.
    fn by_serial_mut(&mut self, hash: u64, serial: u64) -> Option<&mut Channel<A>> {
        let b = self.bucket_of(hash);
        let mut cur = self.buckets[b].as_deref_mut();
        while let Some(c) = cur {
            if c.serial == serial {
                return Some(c);
            }
            cur = c.next.as_deref_mut();
        }
        None
    }

    pub fn by_serial(&self, hash: u64, serial: u64) -> Option<&Channel<A>> {
        Self::in_buckets(&self.buckets, hash, serial)
    }

    fn in_buckets(
        buckets: &[Option<Box<Channel<A>, A>>],
        hash: u64,
        serial: u64,
    ) -> Option<&Channel<A>> {
        let mut cur = buckets[(hash as usize) & (buckets.len() - 1)].as_deref();
        while let Some(c) = cur {
            if c.serial == serial {
                return Some(c);
            }
            cur = c.next.as_deref();
        }
        None
    }

    fn create(&mut self, hash: u64, id: &[u8], now: u64) -> Result<u64, StoreError> {
        self.grow_buckets();
        let channel = Channel {
            next: None,
            hash,
            serial: self.next_serial,
            id: copy_in(id, self.alloc.clone())?,
            stored: Vec::new_in(self.alloc.clone()),
            transit: Vec::new_in(self.alloc.clone()),
            holders: Vec::new_in(self.alloc.clone()),
            last_id: None,
            newest_seq: 0,
            sender_created: false,
            created: now,
            last_used: now,
            last_requested: None,
            idle_timeout: 0,
            expired_n: 0,
            evicted_n: 0,
        };
        let mut boxed = Box::try_new_in(channel, self.alloc.clone()).map_err(|_| NoMemory)?;
        let serial = self.next_serial;
        self.next_serial += 1;
        let b = self.bucket_of(hash);
        boxed.next = self.buckets[b].take();
        self.buckets[b] = Some(boxed);
        self.channels += 1;
        Ok(serial)
    }

    /// Double the bucket array when chains get long; if the zone has no room
    /// for a bigger one, chains just get longer.
    fn grow_buckets(&mut self) {
        if self.channels < self.buckets.len() {
            return;
        }
        let Some(len) = self.buckets.len().checked_mul(2) else {
            return;
        };
        let mut new = Vec::new_in(self.alloc.clone());
        if new.try_reserve_exact(len).is_err() {
            return;
        }
        new.resize_with(len, || None);
        // The old table stays reachable from the store while its channels
        // move, one at a time: a worker dying here leaves every channel in
        // one table or the other, and `repair` finishes the move.
        self.rehash_from = core::mem::replace(&mut self.buckets, new);
        self.finish_rehash();
        self.sweep_pos = 0;
    }

    /// Move the first channel left in `rehash_from` (a test's interrupted
    /// growth).
    #[cfg(test)]
    fn finish_rehash_one(&mut self) {
        if let Some(i) = self.rehash_from.iter().position(Option::is_some) {
            let mut c = self.rehash_from[i].take().unwrap();
            self.rehash_from[i] = c.next.take();
            let b = self.bucket_of(c.hash);
            c.next = self.buckets[b].take();
            self.buckets[b] = Some(c);
        }
    }

    /// Move every channel of `rehash_from` into `buckets`, then free it.
    fn finish_rehash(&mut self) {
        for i in 0..self.rehash_from.len() {
            while let Some(mut c) = self.rehash_from[i].take() {
                self.rehash_from[i] = c.next.take();
                let b = self.bucket_of(c.hash);
                c.next = self.buckets[b].take();
                self.buckets[b] = Some(c);
                point("rehash:moving");
            }
        }
        self.rehash_from = Vec::new_in(self.alloc.clone());
    }

    /// Unlink and free the channel `serial` (with all its messages).
    fn remove(&mut self, hash: u64, serial: u64) -> Option<Box<Channel<A>, A>> {
        let b = self.bucket_of(hash);
        let mut link = &mut self.buckets[b];
        loop {
            match link {
                None => return None,
                Some(c) if c.serial == serial => {
                    let mut c = link.take()?;
                    *link = c.next.take();
                    self.channels -= 1;
                    self.retired.0 += c.expired_n;
                    self.retired.1 += c.evicted_n;
                    return Some(c);
                }
                Some(c) => link = &mut c.next,
            }
        }
    }

    fn free_if_idle(&mut self, hash: u64, serial: u64, now: u64) {
        if self
            .by_serial(hash, serial)
            .is_some_and(|c| c.is_idle(now) && !c.sender_created)
        {
            self.remove(hash, serial);
        }
    }

    /// Hand `f` message `id` of a deleted channel; when it takes it (returns
    /// `Some`), one pending reference is released, and the orphan goes once
    /// nothing in it is owed.
    fn release_orphan<R>(
        &mut self,
        serial: u64,
        id: MsgId,
        f: impl FnOnce(Option<&Message<A>>) -> Option<R>,
    ) -> Option<R> {
        let Some(i) = self.orphans.iter().position(|c| c.serial == serial) else {
            return f(None);
        };
        let r = f(self.orphans[i].fetch(id))?;
        self.orphans[i].release(id);
        if self.orphans[i].transit.is_empty() {
            self.orphans.swap_remove(i);
        }
        Some(r)
    }

    // ---- workers -------------------------------------------------------

    pub fn register_worker(&mut self, pid: i32, nonce: u64) -> Result<WorkerId, StoreError> {
        let id = self.next_worker;
        self.register_worker_as(id, pid, nonce)?;
        Ok(id)
    }

    pub fn workers(&self) -> impl Iterator<Item = Wake> + '_ {
        self.workers.iter().map(|w| Wake {
            id: w.id,
            pid: w.pid,
            nonce: w.nonce,
        })
    }

    /// Forget a worker that exited or died: drop what it owed, its held
    /// listener counts, and the channels only it kept alive.
    pub fn unregister_worker(&mut self, id: WorkerId, now: u64) {
        let Some(i) = self.workers.iter().position(|w| w.id == id) else {
            return;
        };
        let w = self.workers.swap_remove(i);
        for e in w.inbox.iter() {
            if let EventKind::Message { id, .. } = e.kind {
                match self.by_serial_mut(e.hash, e.serial) {
                    Some(c) => c.release(id),
                    None => {
                        self.release_orphan(e.serial, id, |_| Some(()));
                    }
                }
            }
        }
        let mut dead: Vec<(u64, u64), A> = Vec::new_in(self.alloc.clone());
        for head in self.buckets.iter_mut() {
            let mut cur = head.as_deref_mut();
            while let Some(c) = cur {
                if c.holders.iter().any(|h| h.0 == id) {
                    c.remove_holders(id, u32::MAX);
                    if c.is_idle(now) && !c.sender_created {
                        // If the list cannot grow the channel stays until
                        // the next sweep frees it.
                        let _ = try_push(&mut dead, (c.hash, c.serial));
                    }
                }
                cur = c.next.as_deref_mut();
            }
        }
        for (hash, serial) in dead {
            self.remove(hash, serial);
        }
    }

    /// Queue an event for every other worker holding listeners on the
    /// channel; an event that cannot be queued makes that worker resync.
    fn notify(&mut self, hash: u64, serial: u64, kind: EventKind, except: WorkerId) {
        let Some(c) = Self::in_buckets(&self.buckets, hash, serial) else {
            return;
        };
        let holders = &c.holders;
        for w in self.workers.iter_mut() {
            if w.id == except || !holders.iter().any(|h| h.0 == w.id) {
                continue;
            }
            if try_push(&mut w.inbox, Event { hash, serial, kind }).is_err() {
                w.overflow = true;
            }
        }
    }

    /// Workers that have something in their inbox, other than `me`.
    pub fn to_wake(&self, me: WorkerId) -> impl Iterator<Item = Wake> + '_ {
        self.workers
            .iter()
            .filter(move |w| w.id != me && (!w.inbox.is_empty() || w.overflow))
            .map(|w| Wake {
                id: w.id,
                pid: w.pid,
                nonce: w.nonce,
            })
    }

    /// Hand a worker its events, oldest first. For each, `f` gets the event
    /// and, for a message, the message itself while the lock is held; it
    /// returns how many of the worker's held listeners left the channel,
    /// or `None` to stop there (that event and the ones after it stay
    /// queued). Returns `Some(resync)` once the inbox is empty, `resync`
    /// saying that events were lost and the worker must resynchronise its
    /// listeners with the store; `None` when `f` stopped early.
    pub fn drain_inbox(
        &mut self,
        me: WorkerId,
        now: u64,
        mut f: impl FnMut(&Event, Option<&Message<A>>) -> Option<u32>,
    ) -> Option<bool> {
        let Some(w) = self.workers.iter_mut().find(|w| w.id == me) else {
            return Some(false);
        };
        // Nothing is queued for this worker while it drains (only this
        // worker's own operations queue events, and `f` makes none).
        let mut inbox = core::mem::replace(&mut w.inbox, Vec::new_in(self.alloc.clone()));
        let mut done = 0;
        for e in inbox.iter() {
            let taken = match (self.by_serial_mut(e.hash, e.serial), e.kind) {
                // Deleted since: its owed messages wait in the orphans.
                (None, EventKind::Message { id, .. }) => {
                    self.release_orphan(e.serial, id, |m| f(e, m))
                }
                (None, _) => f(e, None),
                (Some(c), EventKind::Message { id, .. }) => {
                    let taken = f(e, c.fetch(id));
                    if taken.is_some() {
                        c.release(id);
                    }
                    taken
                }
                (Some(_), _) => f(e, None),
            };
            let Some(taken) = taken else {
                break;
            };
            point("drain:taken");
            if let Some(c) = self.by_serial_mut(e.hash, e.serial) {
                c.remove_holders(me, taken);
            }
            self.free_if_idle(e.hash, e.serial, now);
            done += 1;
        }
        let complete = done == inbox.len();
        let w = self.workers.iter_mut().find(|w| w.id == me)?;
        if complete {
            // Keep the inbox's capacity: the next publish will want it again.
            inbox.clear();
            w.inbox = inbox;
            Some(core::mem::take(&mut w.overflow))
        } else {
            inbox.drain(..done);
            w.inbox = inbox;
            None
        }
    }

    /// Worker `id`'s gauges, as it sees them now.
    pub fn set_gauges(&mut self, id: WorkerId, gauges: WorkerGauges) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
            w.gauges = gauges;
        }
    }

    /// Every live worker's gauges.
    pub fn gauges(&self) -> impl Iterator<Item = &WorkerGauges> + '_ {
        self.workers.iter().map(|w| &w.gauges)
    }

    /// Channels, stored messages, and the expired and evicted ones since the
    /// zone began. It walks every channel (under the lock): a scrape's
    /// cost, kept off the publish and listen paths.
    pub fn stats(&self, now: u64) -> StoreStats {
        let mut st = StoreStats {
            channels: self.channels as u64,
            expired: self.retired.0,
            evicted: self.retired.1,
            ..StoreStats::default()
        };
        for head in self.buckets.iter() {
            let mut cur = head.as_deref();
            while let Some(c) = cur {
                st.stored += c.stored.iter().filter(|m| !m.expired(now)).count() as u64;
                st.expired += c.expired_n;
                st.evicted += c.evicted_n;
                cur = c.next.as_deref();
            }
        }
        st
    }

    /// Make worker `id` resynchronise all its listeners at its next look at
    /// its inbox (one of its events, or its wake-up, was lost).
    pub fn flag_resync(&mut self, id: WorkerId) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
            w.overflow = true;
        }
    }

    // ---- listeners -----------------------------------------------------

    /// A listener asks for the next message after `cursor`.
    pub fn listen(
        &mut self,
        id: &[u8],
        cursor: &Cursor,
        rules: &ListenRules,
        now: u64,
        me: WorkerId,
    ) -> Result<Listen<'_, A>, StoreError> {
        let hash = self.hash_id(id);
        let serial = match self.locate(hash, id) {
            Some(serial) => serial,
            None if rules.authorized_only => return Ok(Listen::Forbidden),
            // Nothing can be stored in a channel that does not exist.
            None if !rules.hold => return Ok(Listen::NotModified),
            None => self.create(hash, id, now)?,
        };
        let seq = self.next_seq;
        let c = self
            .by_serial_mut(hash, serial)
            .ok_or(StoreError::Inconsistent)?;
        c.last_requested = Some(now);
        c.last_used = now;
        if rules.authorized_only && !c.sender_created {
            self.free_if_idle(hash, serial, now);
            return Ok(Listen::Forbidden);
        }
        c.expire(now);
        if !rules.stream && c.next_for(cursor, now).is_some() {
            let c = self
                .by_serial(hash, serial)
                .ok_or(StoreError::Inconsistent)?;
            return c
                .next_for(cursor, now)
                .map(Listen::Message)
                .ok_or(StoreError::Inconsistent);
        }
        if !rules.hold {
            self.free_if_idle(hash, serial, now);
            return Ok(Listen::NotModified);
        }
        let held = c.held();
        let evict_older = rules.concurrency == Concurrency::Last && held > 0;
        let after_rule = if evict_older { 1 } else { held + 1 };
        if rules.concurrency == Concurrency::First && held > 0 {
            return Ok(Listen::Conflict);
        }
        if rules.max_subscribers != 0 && after_rule > rules.max_subscribers {
            self.free_if_idle(hash, serial, now);
            return Ok(Listen::Forbidden);
        }
        if c.add_holder(me).is_err() {
            self.free_if_idle(hash, serial, now);
            return Err(NoMemory);
        }
        c.newest_seq = seq;
        self.next_seq += 1;
        point("listen:held");
        if evict_older {
            self.notify(hash, serial, EventKind::Conflict { before: seq }, me);
        }
        Ok(Listen::Hold {
            seq,
            hash,
            serial,
            evict_older,
        })
    }

    /// `n` listeners of worker `me` held on a channel are gone (answered or
    /// disconnected).
    pub fn unlisten(&mut self, hash: u64, serial: u64, me: WorkerId, n: u32, now: u64) {
        if let Some(c) = self.by_serial_mut(hash, serial) {
            c.remove_holders(me, n);
            self.free_if_idle(hash, serial, now);
        }
    }

    // ---- senders -------------------------------------------------------

    /// Publish a message. All-or-nothing: on `NoMemory` nothing changed
    /// except that expired messages were freed.
    pub fn publish(&mut self, id: &[u8], p: &NewMessage<'_>) -> Result<Posted, StoreError> {
        match self.try_publish(id, p) {
            Err(StoreError::NoMemory) => {
                // Make room from what has expired anywhere, then retry once.
                self.sweep(p.now, usize::MAX);
                self.try_publish(id, p)
            }
            ok => ok,
        }
    }

    fn try_publish(&mut self, id: &[u8], p: &NewMessage<'_>) -> Result<Posted, StoreError> {
        let (hash, serial) = self.find_or_create(id, p.now)?;
        let alloc = self.alloc.clone();
        let upto = self.next_seq;
        let me = p.worker;
        let c = self
            .by_serial_mut(hash, serial)
            .ok_or(StoreError::Inconsistent)?;
        c.expire(p.now);
        let held = c.held();
        let remote: u32 = c.holders.iter().filter(|h| h.0 != me).count() as u32;
        let store = p.queue && p.buffer_length > 0;
        let msg_id = MsgId::next_after(c.last_id, p.now);

        // Reserve everything first so that committing cannot fail.
        let need_msg = store || remote > 0;
        let mut message = None;
        if need_msg {
            message = Some(Message {
                id: msg_id,
                expires: if p.message_timeout == 0 {
                    0
                } else {
                    p.now.saturating_add(p.message_timeout)
                },
                pending: remote,
                content_type: copy_in(p.content_type, alloc.clone())?,
                event: copy_in(p.event, alloc.clone())?,
                body: copy_in(p.body, alloc.clone())?,
            });
            c.stored.try_reserve(1).map_err(|_| NoMemory)?;
            // Room for everything that may move to transit now.
            let moving = c.stored.len() + 1;
            c.transit.try_reserve(moving).map_err(|_| NoMemory)?;
        }
        let remote_ids: Vec<WorkerId, A> = {
            let mut v = Vec::new_in(alloc.clone());
            v.try_reserve_exact(remote as usize).map_err(|_| NoMemory)?;
            v.extend(c.holders.iter().filter(|h| h.0 != me).map(|h| h.0));
            v
        };
        for w in self.workers.iter_mut() {
            if remote_ids.contains(&w.id) {
                w.inbox.try_reserve(1).map_err(|_| NoMemory)?;
            }
        }

        point("publish:reserved");
        // Commit.
        let c = self
            .by_serial_mut(hash, serial)
            .ok_or(StoreError::Inconsistent)?;
        c.last_id = Some(msg_id);
        c.sender_created = true;
        c.last_used = p.now;
        c.idle_timeout = p.channel_timeout;
        if let Some(m) = message {
            if store {
                c.stored.push(m);
                while c.stored.len() > p.buffer_length {
                    let old = c.stored.remove(0);
                    c.evicted_n += 1;
                    c.park_or_drop(old);
                }
            } else {
                c.park_or_drop(m);
            }
        }
        point("publish:stored");
        for w in self.workers.iter_mut() {
            if remote_ids.contains(&w.id) {
                let e = Event {
                    hash,
                    serial,
                    kind: EventKind::Message { id: msg_id, upto },
                };
                // Capacity was reserved above.
                let _ = w.inbox.push_within_capacity(e);
                point("publish:queued");
            }
        }
        Ok(Posted {
            id: msg_id,
            hash,
            serial,
            upto,
            held,
        })
    }

    /// `PUT`: create the channel (as a sender) without a message.
    pub fn touch(
        &mut self,
        id: &[u8],
        now: u64,
        channel_timeout: u64,
    ) -> Result<ChannelInfo, StoreError> {
        let (hash, serial) = self.find_or_create(id, now)?;
        let c = self
            .by_serial_mut(hash, serial)
            .ok_or(StoreError::Inconsistent)?;
        c.sender_created = true;
        c.last_used = now;
        c.idle_timeout = channel_timeout;
        c.expire(now);
        Ok(c.info(now))
    }

    pub fn info(&mut self, id: &[u8], now: u64) -> Option<ChannelInfo> {
        let c = self.find_mut(id)?;
        c.expire(now);
        Some(c.info(now))
    }

    /// `DELETE`: remove the channel; other workers are told to answer their
    /// held listeners `410`. Returns the info as it was and the channel's
    /// (hash, serial) for this worker's own listeners.
    pub fn delete(&mut self, id: &[u8], now: u64, me: WorkerId) -> Option<(ChannelInfo, u64, u64)> {
        let c = self.find_mut(id)?;
        c.expire(now);
        let info = c.info(now);
        let (hash, serial) = (c.hash, c.serial);
        self.notify(hash, serial, EventKind::Deleted, me);
        if let Some(mut c) = self.remove(hash, serial) {
            // Messages published before the DELETE stay deliverable to the
            // workers that were told about them (their events come first).
            c.holders.clear();
            let stored = core::mem::replace(&mut c.stored, Vec::new_in(self.alloc.clone()));
            for m in stored {
                if m.pending > 0 {
                    let _ = try_push(&mut c.transit, m);
                }
            }
            if !c.transit.is_empty() {
                let _ = try_push(&mut self.orphans, c);
            }
        }
        Some((info, hash, serial))
    }

    /// Free expired messages and idle channels, visiting at most `budget`
    /// buckets from where the last sweep stopped.
    pub fn sweep(&mut self, now: u64, budget: usize) {
        let n = self.buckets.len();
        let visits = budget.min(n);
        let mut dead: Option<(u64, u64)> = None;
        for _ in 0..visits {
            let b = self.sweep_pos % n;
            self.sweep_pos = (b + 1) % n;
            loop {
                if let Some((h, s)) = dead.take() {
                    self.remove(h, s);
                }
                let mut cur = self.buckets[b].as_deref_mut();
                while let Some(c) = cur {
                    if c.expire(now) {
                        point("sweep:expired");
                    }
                    if c.is_idle(now) {
                        dead = Some((c.hash, c.serial));
                        break;
                    }
                    cur = c.next.as_deref_mut();
                }
                if dead.is_none() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocator_api2::alloc::Global;
    use core::cell::Cell;
    use std::rc::Rc;
    use std::vec::Vec;

    use crate::testing::Limited;

    fn store() -> Store<Global> {
        Store::new(Global, [1, 2]).unwrap()
    }

    const HOLD_LAST: ListenRules = ListenRules {
        concurrency: Concurrency::Last,
        hold: true,
        stream: false,
        authorized_only: false,
        max_subscribers: 0,
    };

    pub(super) fn pubopts<'a>(body: &'a [u8], now: u64, w: WorkerId) -> NewMessage<'a> {
        NewMessage {
            content_type: b"text/plain",
            event: b"",
            body,
            now,
            message_timeout: 0,
            buffer_length: 10,
            queue: true,
            channel_timeout: 3600,
            worker: w,
        }
    }

    fn body_of<A: Allocator + Clone + core::fmt::Debug>(l: Listen<'_, A>) -> Vec<u8> {
        match l {
            Listen::Message(m) => m.body.to_vec(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn cursor_walks_same_second_messages_in_order() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        for b in [b"a", b"b", b"c"] {
            s.publish(b"ch", &pubopts(b, 100, w)).unwrap();
        }
        let mut cur = Cursor::default();
        let mut seen = vec![];
        loop {
            match s
                .listen(
                    b"ch",
                    &cur,
                    &ListenRules {
                        hold: false,
                        ..HOLD_LAST
                    },
                    100,
                    w,
                )
                .unwrap()
            {
                Listen::Message(m) => {
                    seen.push(m.body.to_vec());
                    cur = Cursor {
                        since: Some(m.id.time),
                        tag: Some(m.id.tag),
                    };
                }
                Listen::NotModified => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(
            s.find(b"ch").unwrap().last_id(),
            Some(MsgId { time: 100, tag: 2 })
        );
    }

    #[test]
    fn a_stream_is_held_with_its_backlog() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        for (i, b) in [b"a", b"b", b"c"].into_iter().enumerate() {
            let mut p = pubopts(b, 100 + i as u64, w);
            p.event = b"tick";
            s.publish(b"ch", &p).unwrap();
        }
        let after_a = Cursor::after(MsgId { time: 100, tag: 0 });
        assert_eq!(s.backlog_size(b"ch", &after_a, 200), (2, 2 * (10 + 4 + 1)));
        let stream = ListenRules {
            stream: true,
            concurrency: Concurrency::Broadcast,
            ..HOLD_LAST
        };
        let Listen::Hold { hash, serial, .. } = s.listen(b"ch", &after_a, &stream, 200, w).unwrap()
        else {
            panic!("a stream is held")
        };
        let c = s.by_serial(hash, serial).unwrap();
        let got: Vec<&[u8]> = c.backlog(&after_a, 200).map(|m| &m.body[..]).collect();
        assert_eq!(got, vec![&b"b"[..], b"c"]);
        assert!(c.backlog(&after_a, 200).all(|m| &m.event[..] == b"tick"));
        assert_eq!(c.held(), 1);
    }

    #[test]
    fn stats_count_what_expires_and_is_evicted_even_after_the_channel_goes() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        for i in 0..5u8 {
            let mut p = pubopts(core::slice::from_ref(&i), 100, w);
            p.buffer_length = 3;
            p.message_timeout = 10;
            p.channel_timeout = 1;
            s.publish(b"ch", &p).unwrap();
        }
        let st = s.stats(100);
        assert_eq!(
            (st.channels, st.stored, st.evicted, st.expired),
            (1, 3, 2, 0)
        );
        s.sweep(110, usize::MAX);
        let st = s.stats(110);
        assert_eq!((st.stored, st.expired, st.evicted), (0, 3, 2));
        s.sweep(200, usize::MAX);
        let st = s.stats(200);
        assert_eq!(st.channels, 0, "the idle channel is gone");
        assert_eq!((st.expired, st.evicted), (3, 2), "its counts are kept");
        let mut g = WorkerGauges::default();
        g.held[2] = 7;
        s.set_gauges(w, g);
        assert_eq!(s.gauges().next().map(|g| g.held), Some([0, 0, 7, 0]));
    }

    #[test]
    fn buffer_length_evicts_oldest() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        for i in 0..5u8 {
            let mut p = pubopts(core::slice::from_ref(&i), 100 + i as u64, w);
            p.buffer_length = 3;
            s.publish(b"ch", &p).unwrap();
        }
        assert_eq!(s.find(b"ch").unwrap().stored_len(), 3);
        let got = body_of(
            s.listen(b"ch", &Cursor::default(), &HOLD_LAST, 200, w)
                .unwrap(),
        );
        assert_eq!(got, vec![2]);
    }

    #[test]
    fn expired_messages_are_not_served_and_channel_id_keeps_counting() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        let mut p = pubopts(b"x", 100, w);
        p.message_timeout = 5;
        s.publish(b"ch", &p).unwrap();
        assert!(matches!(
            s.listen(b"ch", &Cursor::default(), &HOLD_LAST, 104, w)
                .unwrap(),
            Listen::Message(_)
        ));
        assert!(matches!(
            s.listen(b"ch", &Cursor::default(), &HOLD_LAST, 105, w)
                .unwrap(),
            Listen::Hold { .. }
        ));
        assert_eq!(s.find(b"ch").unwrap().stored_len(), 0);
    }

    #[test]
    fn queue_off_stores_nothing_but_ids_advance() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        let mut p = pubopts(b"x", 100, w);
        p.queue = false;
        s.publish(b"ch", &p).unwrap();
        s.publish(b"ch", &p).unwrap();
        let c = s.find(b"ch").unwrap();
        assert_eq!(c.stored_len(), 0);
        assert_eq!(c.last_id(), Some(MsgId { time: 100, tag: 1 }));
    }

    #[test]
    fn listener_only_channels_are_freed_when_empty() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        for i in 0..1000u32 {
            let id = i.to_string();
            match s
                .listen(id.as_bytes(), &Cursor::default(), &HOLD_LAST, 1, w)
                .unwrap()
            {
                Listen::Hold { hash, serial, .. } => s.unlisten(hash, serial, w, 1, 1),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.channel_count(), 0);
    }

    #[test]
    fn last_rule_tells_other_workers_and_first_rule_refuses() {
        let mut s = store();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        let first = match s
            .listen(b"ch", &Cursor::default(), &HOLD_LAST, 1, a)
            .unwrap()
        {
            Listen::Hold {
                seq, evict_older, ..
            } => {
                assert!(!evict_older);
                seq
            }
            other => panic!("{other:?}"),
        };
        let second = match s
            .listen(b"ch", &Cursor::default(), &HOLD_LAST, 1, b)
            .unwrap()
        {
            Listen::Hold {
                seq, evict_older, ..
            } => {
                assert!(evict_older);
                seq
            }
            other => panic!("{other:?}"),
        };
        assert!(second > first);
        assert_eq!(
            s.to_wake(b).map(|w| w.id).collect::<std::vec::Vec<_>>(),
            vec![a]
        );
        let mut events = vec![];
        s.drain_inbox(a, 1, |e, _| {
            events.push(e.kind);
            Some(1)
        });
        assert_eq!(events, vec![EventKind::Conflict { before: second }]);
        assert_eq!(s.find(b"ch").unwrap().held(), 1);

        let first_rules = ListenRules {
            concurrency: Concurrency::First,
            ..HOLD_LAST
        };
        assert!(matches!(
            s.listen(b"ch", &Cursor::default(), &first_rules, 1, a)
                .unwrap(),
            Listen::Conflict
        ));
    }

    #[test]
    fn publish_fans_out_to_other_workers_even_when_not_stored() {
        let mut s = store();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        let bc = ListenRules {
            concurrency: Concurrency::Broadcast,
            ..HOLD_LAST
        };
        s.listen(b"ch", &Cursor::default(), &bc, 1, b).unwrap();
        s.listen(b"ch", &Cursor::default(), &bc, 1, b).unwrap();
        let mut p = pubopts(b"hello", 1, a);
        p.queue = false;
        let out = s.publish(b"ch", &p).unwrap();
        assert_eq!(out.held, 2);
        let mut got = vec![];
        s.drain_inbox(b, 1, |_, m| {
            got.push(m.map(|m| m.body.to_vec()));
            Some(2)
        });
        assert_eq!(got, vec![Some(b"hello".to_vec())]);
        // Delivered and released: nothing is left in the zone for it.
        assert_eq!(s.channel_count(), 1);
        let c = s.find(b"ch").unwrap();
        assert_eq!(c.held(), 0);
        assert!(c.transit.is_empty());
    }

    #[test]
    fn delete_tells_holders_and_dead_worker_is_purged() {
        let mut s = store();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        s.listen(b"gone", &Cursor::default(), &HOLD_LAST, 1, b)
            .unwrap();
        s.touch(b"gone", 1, 60).unwrap();
        assert!(s.delete(b"gone", 1, a).is_some());
        let mut kinds = vec![];
        s.drain_inbox(b, 1, |e, _| {
            kinds.push(e.kind);
            Some(1)
        });
        assert_eq!(kinds, vec![EventKind::Deleted]);
        assert!(s.find(b"gone").is_none());

        s.listen(b"kept", &Cursor::default(), &HOLD_LAST, 1, b)
            .unwrap();
        s.publish(b"other", &pubopts(b"x", 1, a)).unwrap();
        s.unregister_worker(b, 1);
        assert!(
            s.find(b"kept").is_none(),
            "a dead worker's listener-only channel is freed"
        );
        assert_eq!(s.workers().count(), 1);
    }

    #[test]
    fn message_published_before_delete_still_reaches_other_workers() {
        let mut s = store();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        s.listen(b"d", &Cursor::default(), &HOLD_LAST, 1, b)
            .unwrap();
        let mut p = pubopts(b"last words", 1, a);
        p.queue = false;
        s.publish(b"d", &p).unwrap();
        s.delete(b"d", 1, a).unwrap();
        let mut seen = vec![];
        s.drain_inbox(b, 1, |e, m| {
            seen.push((e.kind, m.map(|m| m.body.to_vec())));
            Some(1)
        });
        assert!(
            matches!(seen[0], (EventKind::Message { .. }, Some(ref body)) if body == b"last words")
        );
        assert_eq!(seen[1], (EventKind::Deleted, None));
        assert!(s.orphans.is_empty(), "fetched: freed");
    }

    #[test]
    fn full_zone_refuses_without_damage() {
        let budget = Rc::new(Cell::new(16 * 1024));
        let mut s = Store::new(Limited(budget.clone()), [3, 4]).unwrap();
        let w = s.register_worker(1, 1).unwrap();
        let big = vec![7u8; 1000];
        let mut ok = 0;
        loop {
            let mut p = pubopts(&big, 1, w);
            p.buffer_length = 1000;
            match s.publish(b"ch", &p) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_eq!(e, NoMemory);
                    break;
                }
            }
        }
        assert!(ok > 3);
        let c = s.find(b"ch").unwrap();
        assert_eq!(c.stored_len(), ok);
        // The oldest is still intact, other channels still work once room exists.
        let first = body_of(
            s.listen(b"ch", &Cursor::default(), &HOLD_LAST, 1, w)
                .unwrap(),
        );
        assert_eq!(first, big);
        let mut p = pubopts(b"tiny", 1, w);
        p.buffer_length = 1;
        assert!(s.publish(b"ch", &p).is_err() || s.find(b"ch").unwrap().stored_len() == 1);
    }

    #[test]
    fn an_event_that_cannot_be_queued_makes_the_worker_resync() {
        let budget = Rc::new(Cell::new(16 * 1024));
        let mut s = Store::new(Limited(budget.clone()), [5, 6]).unwrap();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        s.listen(b"c", &Cursor::default(), &HOLD_LAST, 1, b)
            .unwrap();
        s.listen(b"c", &Cursor::default(), &HOLD_LAST, 1, a)
            .unwrap();
        s.drain_inbox(b, 1, |_, _| Some(0));
        // Fill the zone.
        let mut fill = pubopts(&[0u8; 500], 1, a);
        fill.buffer_length = usize::MAX;
        while s.publish(b"fill", &fill).is_ok() {}
        budget.set(0);
        // More conflicts than B's inbox has room for, with no memory left.
        let mut newest = 0;
        for _ in 0..64 {
            newest = match s
                .listen(b"c", &Cursor::default(), &HOLD_LAST, 1, a)
                .unwrap()
            {
                Listen::Hold { seq, .. } => seq,
                other => panic!("{other:?}"),
            };
        }
        let mut events = 0;
        let resync = s.drain_inbox(b, 1, |_, _| {
            events += 1;
            Some(0)
        });
        assert_eq!(resync, Some(true), "the lost conflicts are flagged");
        assert!(events < 64, "some were queued, not all: {events}");
        assert_eq!(
            s.find(b"c").unwrap().newest_seq(),
            newest,
            "the store knows who won"
        );
    }

    #[test]
    fn sweep_frees_idle_sender_channels_after_timeout() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        s.touch(b"a", 100, 10).unwrap();
        let mut p = pubopts(b"x", 100, w);
        p.message_timeout = 5;
        p.channel_timeout = 10;
        s.publish(b"b", &p).unwrap();
        s.sweep(105, usize::MAX);
        assert_eq!(s.channel_count(), 2);
        assert_eq!(s.find(b"b").unwrap().stored_len(), 0);
        s.sweep(110, usize::MAX);
        assert_eq!(s.channel_count(), 0);
    }

    #[test]
    fn ids_are_exact_and_many_channels_grow_the_table() {
        let mut s = store();
        let w = s.register_worker(1, 1).unwrap();
        for i in 0..500u32 {
            s.publish(format!("c{i}").as_bytes(), &pubopts(&i.to_le_bytes(), 1, w))
                .unwrap();
        }
        assert!(s.buckets.len() >= 512);
        for i in 0..500u32 {
            let c = s.find(format!("c{i}").as_bytes()).unwrap();
            assert_eq!(c.stored[0].body[..], i.to_le_bytes());
        }
        assert!(s.find(b"c5\0").is_none());
    }

    #[test]
    fn subscriber_limit_counts_after_the_rule() {
        let mut s = store();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        let rules = ListenRules {
            concurrency: Concurrency::Broadcast,
            max_subscribers: 2,
            ..HOLD_LAST
        };
        assert!(matches!(
            s.listen(b"c", &Cursor::default(), &rules, 1, a).unwrap(),
            Listen::Hold { .. }
        ));
        assert!(matches!(
            s.listen(b"c", &Cursor::default(), &rules, 1, b).unwrap(),
            Listen::Hold { .. }
        ));
        assert!(matches!(
            s.listen(b"c", &Cursor::default(), &rules, 1, a).unwrap(),
            Listen::Forbidden
        ));
        let last = ListenRules {
            concurrency: Concurrency::Last,
            max_subscribers: 1,
            ..HOLD_LAST
        };
        assert!(matches!(
            s.listen(b"d", &Cursor::default(), &last, 1, a).unwrap(),
            Listen::Hold { .. }
        ));
        assert!(matches!(
            s.listen(b"d", &Cursor::default(), &last, 1, b).unwrap(),
            Listen::Hold { .. }
        ));
    }
}
