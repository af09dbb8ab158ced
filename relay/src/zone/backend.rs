//! The shared-memory zone as a [`Backend`]: every operation completes at
//! once, under the zone's lock, which the caller holds for the backend's
//! whole (short) life.
//!
//! Each operation first takes this worker's inbox (what other workers
//! queued for its listeners), so that its own listeners always get older
//! messages before newer ones. Message bytes leave the zone only by copy
//! into room reserved beforehand ([`crate::relay::Copies`]); when a copy
//! does not fit, the operation stops with [`Step::Retry`] before changing
//! anything it would have to undo.

use allocator_api2::alloc::Allocator;

use super::{
    EventKind, Listen as StoreListen, ListenRules, NewMessage, Store, StoreError, WorkerId,
};
use crate::backend::{Backend, Listen, Listened, Publish, Published, Step};
use crate::conf::{Concurrency, SenderRules};
use crate::outcome::{Refusal, Wanted};
use crate::proto::info::ChannelInfo;
use crate::registry::{ChanKey, Key};
use crate::relay::{Answer, Counts, Effects, MsgRef, Relay, Tally};

pub struct ZoneBackend<'a, A: Allocator + Clone> {
    store: &'a mut Store<A>,
    relay: &'a mut Relay,
    me: WorkerId,
}

/// The zone's per-worker listener counts, as the relay changes them.
struct ZoneCounts<'s, A: Allocator + Clone> {
    store: &'s mut Store<A>,
    me: WorkerId,
    now: u64,
}

impl<A: Allocator + Clone> Counts for ZoneCounts<'_, A> {
    fn released(&mut self, chan: ChanKey, n: u32) {
        self.store
            .unlisten(chan.hash, chan.serial, self.me, n, self.now);
    }
}

fn refusal(e: StoreError, wanted: Wanted) -> Refusal {
    match e {
        StoreError::NoMemory => Refusal::ZoneFull(wanted),
        StoreError::Inconsistent => Refusal::Internal,
    }
}

impl<'a, A: Allocator + Clone> ZoneBackend<'a, A> {
    /// `store` is the zone's store, locked; `relay` this worker's listeners
    /// of the zone; `me` this worker as the store knows it.
    pub fn new(store: &'a mut Store<A>, relay: &'a mut Relay, me: WorkerId) -> Self {
        ZoneBackend { store, relay, me }
    }

    fn split(&mut self, now: u64) -> (ZoneCounts<'_, A>, &mut Relay) {
        (
            ZoneCounts {
                store: self.store,
                me: self.me,
                now,
            },
            self.relay,
        )
    }

    /// Workers with something new in their inbox.
    fn note_wakes(&self, fx: &mut Effects) {
        fx.wake.extend(self.store.to_wake(self.me));
    }

    /// Turn this worker's queued events into answers. False when a message
    /// did not fit the copy room (the rest stays queued).
    fn take_inbox(&mut self, now: u64, fx: &mut Effects) -> bool {
        let relay = &mut *self.relay;
        let mut lost: Vec<ChanKey> = Vec::new();
        let drained = self.store.drain_inbox(self.me, now, |e, m| {
            let chan = ChanKey {
                hash: e.hash,
                serial: e.serial,
            };
            let mut left = Tally::default();
            match e.kind {
                EventKind::Message { id, upto } => match m {
                    Some(m) if relay.wants(chan, id, upto) => {
                        let msg = fx.copies.push(m.id, &m.content_type, &m.body)?;
                        relay.message(&mut left, chan, id, upto, msg, fx);
                    }
                    Some(_) => {}
                    // Gone before this worker fetched it: ask the store.
                    None => lost.push(chan),
                },
                EventKind::Conflict { before } => relay.conflict(&mut left, chan, before, fx),
                EventKind::Deleted => relay.deleted(&mut left, chan, fx),
            }
            Some(left.0)
        });
        let Some(everything_lost) = drained else {
            return false;
        };
        if everything_lost {
            lost = self.relay.channels().collect();
        }
        for chan in lost {
            if !self.resync(chan, now, fx) {
                // Try again from the start next time.
                self.store.flag_resync(self.me);
                return false;
            }
        }
        true
    }

    /// An event for `chan` was lost: answer its listeners from what the
    /// store holds now. False when a message did not fit the copy room.
    fn resync(&mut self, chan: ChanKey, now: u64, fx: &mut Effects) -> bool {
        let Some(c) = self.store.by_serial(chan.hash, chan.serial) else {
            let (mut counts, relay) = self.split(now);
            relay.deleted(&mut counts, chan, fx);
            return true;
        };
        // Decide with the channel borrowed, then apply.
        let mut owed: Vec<(Key, Answer)> = Vec::new();
        for h in self.relay.peek(chan.serial) {
            if h.yields && h.seq < c.newest_seq() {
                // A `last` conflict whose event was lost.
                owed.push((h.key, Answer::Conflict));
            } else if let Some(m) = c.next_for(&h.cursor, now) {
                match fx.copies.push(m.id, &m.content_type, &m.body) {
                    Some(msg) => owed.push((h.key, Answer::Message(msg))),
                    None => return false,
                }
            }
        }
        let (mut counts, relay) = self.split(now);
        for (key, answer) in owed {
            relay.end_one(&mut counts, chan, key, answer, fx);
        }
        true
    }
}

impl<A: Allocator + Clone> Backend for ZoneBackend<'_, A> {
    fn listen(&mut self, req: &Listen<'_>, fx: &mut Effects) -> Step<Result<Listened, Refusal>> {
        if !self.take_inbox(req.now, fx) {
            return Step::Retry;
        }
        let rules = ListenRules {
            concurrency: req.rules.concurrency,
            hold: req.transport.holds(),
            authorized_only: req.rules.authorized_only,
            max_subscribers: req.rules.max_subscribers,
        };
        let out = match self
            .store
            .listen(req.id, &req.cursor, &rules, req.now, self.me)
        {
            Err(e) => Err(refusal(e, Wanted::Listener)),
            Ok(StoreListen::Message(m)) => match fx.copies.push(m.id, &m.content_type, &m.body) {
                Some(msg) => Ok(Listened::Message(msg)),
                None => return Step::Retry,
            },
            Ok(StoreListen::NotModified) => Ok(Listened::NotModified),
            Ok(StoreListen::Forbidden) => Err(Refusal::Forbidden),
            Ok(StoreListen::Conflict) => Err(Refusal::Conflict),
            Ok(StoreListen::Hold {
                seq,
                hash,
                serial,
                evict_older,
            }) => {
                let chan = ChanKey { hash, serial };
                let (mut counts, relay) = self.split(req.now);
                if evict_older {
                    relay.conflict(&mut counts, chan, seq, fx);
                }
                let yields = req.rules.concurrency == Concurrency::Last;
                let key = relay.hold(chan, seq, req.cursor, yields, req.transport);
                Ok(Listened::Held { chan, key })
            }
        };
        self.note_wakes(fx);
        Step::Ready(out)
    }

    fn publish(&mut self, req: &Publish<'_>, fx: &mut Effects) -> Step<Result<Published, Refusal>> {
        if !self.take_inbox(req.now, fx) {
            return Step::Retry;
        }
        let p = NewMessage {
            content_type: req.content_type,
            body: req.body,
            now: req.now,
            message_timeout: req.rules.message_timeout,
            buffer_length: req.rules.buffer_length,
            queue: req.rules.queue,
            channel_timeout: req.rules.channel_timeout,
            worker: self.me,
        };
        let out = match self.store.publish(req.id, &p) {
            Err(e) => Err(refusal(e, Wanted::Message)),
            Ok(posted) => {
                let chan = ChanKey {
                    hash: posted.hash,
                    serial: posted.serial,
                };
                let (mut counts, relay) = self.split(req.now);
                relay.message(
                    &mut counts,
                    chan,
                    posted.id,
                    posted.upto,
                    MsgRef::Published,
                    fx,
                );
                match self.store.info(req.id, req.now) {
                    Some(info) => Ok(Published {
                        id: posted.id,
                        held: posted.held,
                        info,
                    }),
                    None => Err(Refusal::Internal),
                }
            }
        };
        self.note_wakes(fx);
        Step::Ready(out)
    }

    fn create(
        &mut self,
        id: &[u8],
        rules: &SenderRules,
        now: u64,
        fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        if !self.take_inbox(now, fx) {
            return Step::Retry;
        }
        let out = self
            .store
            .touch(id, now, rules.channel_timeout)
            .map_err(|e| refusal(e, Wanted::Channel));
        self.note_wakes(fx);
        Step::Ready(out)
    }

    fn info(
        &mut self,
        id: &[u8],
        now: u64,
        fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        if !self.take_inbox(now, fx) {
            return Step::Retry;
        }
        let out = self.store.info(id, now).ok_or(Refusal::NotFound);
        self.note_wakes(fx);
        Step::Ready(out)
    }

    fn delete(
        &mut self,
        id: &[u8],
        now: u64,
        fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>> {
        if !self.take_inbox(now, fx) {
            return Step::Retry;
        }
        let out = match self.store.delete(id, now, self.me) {
            Some((info, hash, serial)) => {
                let (mut counts, relay) = self.split(now);
                relay.deleted(&mut counts, ChanKey { hash, serial }, fx);
                Ok(info)
            }
            None => Err(Refusal::NotFound),
        };
        self.note_wakes(fx);
        Step::Ready(out)
    }

    fn catch_up(&mut self, now: u64, fx: &mut Effects) -> Step<()> {
        if self.take_inbox(now, fx) {
            Step::Ready(())
        } else {
            Step::Retry
        }
    }

    fn forget(&mut self, chan: ChanKey, key: Key, now: u64) -> bool {
        let (mut counts, relay) = self.split(now);
        relay.forget(&mut counts, chan, key)
    }

    fn release_all(&mut self, now: u64, fx: &mut Effects) {
        let (mut counts, relay) = self.split(now);
        relay.release_all(&mut counts, fx);
    }
}
