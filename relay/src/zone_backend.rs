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

use crate::backend::{Backend, Listen, Listened, Publish, Published, Step};
use crate::conf::{Concurrency, SenderRules};
use crate::outcome::{Refusal, Wanted};
use crate::proto::cursor::Cursor;
use crate::proto::info::ChannelInfo;
use crate::registry::{ChanKey, Key};
use crate::relay::{Answer, Counts, Effects, MsgRef, Relay, Tally};
use crate::zone::{
    EventKind, Listen as StoreListen, ListenRules, NewMessage, Seq, Store, StoreError, WorkerId,
};

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
                        let msg = fx.copies.push(m.id, &m.content_type, &m.event, &m.body)?;
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
        if everything_lost || !lost.is_empty() {
            fx.resynced = Some(fx.resynced.unwrap_or(0) + lost.len());
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
    /// store holds now. `last` listeners older than the newest one answer
    /// 409; then every stored message goes through the fan-out as if just
    /// published (each listener's cursor decides: a poll takes the first it
    /// admits, a stream all of them). False when a message did not fit the
    /// copy room.
    fn resync(&mut self, chan: ChanKey, now: u64, fx: &mut Effects) -> bool {
        let Some(c) = self.store.by_serial(chan.hash, chan.serial) else {
            let (mut counts, relay) = self.split(now);
            relay.deleted(&mut counts, chan, fx);
            return true;
        };
        let newest = c.newest_seq();
        let conflicted: Vec<Key> = self
            .relay
            .peek(chan.serial)
            .iter()
            .filter(|h| h.yields && h.seq < newest)
            .map(|h| h.key)
            .collect();
        let mut owed = Vec::new();
        for m in c.backlog(&Cursor::default(), now) {
            if self.relay.wants(chan, m.id, Seq::MAX) {
                match fx.copies.push(m.id, &m.content_type, &m.event, &m.body) {
                    Some(msg) => owed.push((m.id, msg)),
                    None => return false,
                }
            }
        }
        let (mut counts, relay) = self.split(now);
        for key in conflicted {
            relay.end_one(&mut counts, chan, key, Answer::Conflict, fx);
        }
        for (id, msg) in owed {
            relay.message(&mut counts, chan, id, Seq::MAX, msg, fx);
        }
        true
    }
}

impl<A: Allocator + Clone> Backend for ZoneBackend<'_, A> {
    fn listen(&mut self, req: &Listen<'_>, fx: &mut Effects) -> Step<Result<Listened, Refusal>> {
        if !self.take_inbox(req.now, fx) {
            return Step::Retry;
        }
        let stream = req.transport.is_stream();
        if stream {
            // A stream's backlog is copied after it is counted: check the
            // room first, while nothing has changed.
            let (n, bytes) = self.store.backlog_size(req.id, &req.cursor, req.now);
            if !fx.copies.has_room(n, bytes) {
                return Step::Retry;
            }
        }
        let rules = ListenRules {
            concurrency: req.rules.concurrency,
            hold: req.transport.holds(),
            stream,
            authorized_only: req.rules.authorized_only,
            max_subscribers: req.rules.max_subscribers,
        };
        let out = match self
            .store
            .listen(req.id, &req.cursor, &rules, req.now, self.me)
        {
            Err(e) => Err(refusal(e, Wanted::Listener)),
            Ok(StoreListen::Message(m)) => {
                match fx.copies.push(m.id, &m.content_type, &m.event, &m.body) {
                    Some(msg) => Ok(Listened::Message(msg)),
                    None => return Step::Retry,
                }
            }
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
                if evict_older {
                    let (mut counts, relay) = self.split(req.now);
                    relay.conflict(&mut counts, chan, seq, fx);
                }
                let first = fx.copies.len();
                let mut cursor = req.cursor;
                if stream {
                    let Some(c) = self.store.by_serial(hash, serial) else {
                        return Step::Ready(Err(Refusal::Internal));
                    };
                    for m in c.backlog(&req.cursor, req.now) {
                        // Room was checked above (the listen may only have
                        // expired some of what was counted); were it short,
                        // the cursor never moves past what was not sent.
                        if fx
                            .copies
                            .push(m.id, &m.content_type, &m.event, &m.body)
                            .is_none()
                        {
                            break;
                        }
                        cursor = Cursor::after(m.id);
                    }
                }
                let yields = req.rules.concurrency == Concurrency::Last;
                let key = self.relay.hold(chan, seq, cursor, yields, req.transport);
                Ok(Listened::Held {
                    chan,
                    key,
                    backlog: first..fx.copies.len(),
                })
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
            event: req.event,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ListenerRules;
    use crate::proto::cursor::{Cursor, MsgId};
    use crate::relay::Answer;
    use crate::testing::Limited;
    use crate::transport::{Transport, Transports};
    use allocator_api2::alloc::Global;

    /// Two workers of one zone, each with its own listeners.
    struct Two<A: Allocator + Clone> {
        store: Store<A>,
        ids: [WorkerId; 2],
        relays: [Relay; 2],
    }

    fn two_in<A: Allocator + Clone>(alloc: A) -> Two<A> {
        let mut store = Store::new(alloc, [7, 8]).unwrap();
        let a = store.register_worker(1, 1).unwrap();
        let b = store.register_worker(2, 2).unwrap();
        Two {
            store,
            ids: [a, b],
            relays: [Relay::default(), Relay::default()],
        }
    }

    fn two() -> Two<Global> {
        two_in(Global)
    }

    fn roomy() -> Effects {
        let mut fx = Effects::default();
        fx.copies.make_room();
        fx
    }

    fn rules(concurrency: Concurrency) -> ListenerRules {
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

    const SENDER: SenderRules = SenderRules {
        queue: true,
        message_timeout: 0,
        buffer_length: 10,
        channel_timeout: 3600,
    };

    impl<A: Allocator + Clone> Two<A> {
        fn on(&mut self, w: usize) -> ZoneBackend<'_, A> {
            ZoneBackend::new(&mut self.store, &mut self.relays[w], self.ids[w])
        }

        fn listen(&mut self, w: usize, c: Concurrency, fx: &mut Effects) -> Listened {
            let req = Listen {
                id: b"ch",
                cursor: Cursor::default(),
                rules: rules(c),
                transport: Transport::LongPoll,
                now: 10,
            };
            match self.on(w).listen(&req, fx) {
                Step::Ready(Ok(l)) => l,
                other => panic!("{other:?}"),
            }
        }

        fn publish(
            &mut self,
            w: usize,
            body: &[u8],
            fx: &mut Effects,
        ) -> Step<Result<Published, Refusal>> {
            let req = Publish {
                id: b"ch",
                content_type: b"text/plain",
                event: b"",
                body,
                rules: SENDER,
                now: 10,
            };
            self.on(w).publish(&req, fx)
        }

        fn subscribers(&mut self) -> Option<u32> {
            self.store.info(b"ch", 10).map(|i| i.subscribers)
        }
    }

    fn held_key(l: Listened) -> (ChanKey, Key) {
        match l {
            Listened::Held { chan, key, .. } => (chan, key),
            other => panic!("not held: {other:?}"),
        }
    }

    #[test]
    fn publish_answers_the_publishers_own_listeners_and_gives_their_count_back() {
        let mut t = two();
        let mut fx = roomy();
        let (_, key) = held_key(t.listen(0, Concurrency::Broadcast, &mut fx));
        assert_eq!(t.subscribers(), Some(1));
        let Step::Ready(Ok(p)) = t.publish(0, b"hi", &mut fx) else {
            panic!()
        };
        assert_eq!((p.held, p.info.subscribers), (1, 0));
        assert_eq!(fx.answers, vec![(key, Answer::Message(MsgRef::Published))]);
        assert!(fx.wake.is_empty(), "nobody else to wake");
    }

    #[test]
    fn another_workers_listener_gets_a_copy_through_its_inbox() {
        let mut t = two();
        let mut fa = roomy();
        let (_, key) = held_key(t.listen(0, Concurrency::Broadcast, &mut fa));
        let mut fb = roomy();
        assert!(matches!(
            t.publish(1, b"over there", &mut fb),
            Step::Ready(Ok(_))
        ));
        assert_eq!(
            fb.wake.iter().map(|w| w.id).collect::<Vec<_>>(),
            vec![t.ids[0]]
        );
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Ready(()));
        assert_eq!(fa.answers, vec![(key, Answer::Message(MsgRef::Copy(0)))]);
        let d = fa.copies.take_deliveries();
        assert_eq!(d[0].body(), b"over there");
        assert_eq!(d[0].id, MsgId { time: 10, tag: 0 });
        assert_eq!(t.subscribers(), Some(0));
    }

    #[test]
    fn a_copy_that_does_not_fit_leaves_the_event_queued_until_there_is_room() {
        let mut t = two();
        let mut fa = Effects::default(); // no room reserved at all
        let (_, key) = held_key(t.listen(0, Concurrency::Broadcast, &mut fa));
        let mut fb = roomy();
        let big = vec![b'x'; 100_000];
        assert!(matches!(t.publish(1, &big, &mut fb), Step::Ready(Ok(_))));
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Retry);
        assert!(fa.answers.is_empty());
        assert_eq!(t.subscribers(), Some(1), "still held, nothing lost");
        fa.copies.make_room();
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Ready(()));
        assert_eq!(fa.answers, vec![(key, Answer::Message(MsgRef::Copy(0)))]);
        assert_eq!(fa.copies.take_deliveries()[0].body(), &big[..]);
    }

    #[test]
    fn a_stored_message_for_a_new_listener_is_copied_or_retried() {
        let mut t = two();
        let mut fx = roomy();
        let big = vec![b'y'; 50_000];
        assert!(matches!(t.publish(1, &big, &mut fx), Step::Ready(Ok(_))));
        let mut tight = Effects::default();
        let req = Listen {
            id: b"ch",
            cursor: Cursor::default(),
            rules: rules(Concurrency::Last),
            transport: Transport::LongPoll,
            now: 10,
        };
        assert_eq!(t.on(0).listen(&req, &mut tight), Step::Retry);
        tight.copies.make_room();
        assert_eq!(
            t.on(0).listen(&req, &mut tight),
            Step::Ready(Ok(Listened::Message(MsgRef::Copy(0))))
        );
    }

    #[test]
    fn last_rule_ends_this_workers_older_listener_and_tells_the_other() {
        let mut t = two();
        let mut fa = roomy();
        let (_, first) = held_key(t.listen(0, Concurrency::Last, &mut fa));
        let (_, other) = held_key(t.listen(1, Concurrency::Last, &mut roomy()));
        let mut fx = roomy();
        held_key(t.listen(0, Concurrency::Last, &mut fx));
        // Both older listeners answer 409: this worker's at once, the
        // other worker's through its inbox.
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Ready(()));
        assert!(fa.answers.is_empty());
        let mut fb = roomy();
        assert_eq!(t.on(1).catch_up(10, &mut fb), Step::Ready(()));
        assert_eq!(fx.answers, vec![(first, Answer::Conflict)]);
        assert_eq!(fb.answers, vec![(other, Answer::Conflict)]);
        assert_eq!(t.subscribers(), Some(1));
    }

    #[test]
    fn first_rule_refuses_and_a_forgotten_listener_frees_the_rule() {
        let mut t = two();
        let mut fx = roomy();
        let (chan, key) = held_key(t.listen(0, Concurrency::First, &mut fx));
        let req = Listen {
            id: b"ch",
            cursor: Cursor::default(),
            rules: rules(Concurrency::First),
            transport: Transport::LongPoll,
            now: 10,
        };
        assert_eq!(
            t.on(1).listen(&req, &mut fx),
            Step::Ready(Err(Refusal::Conflict))
        );
        // The park of the first one failed: forgetting it gives its count
        // back, so `first` does not refuse forever, and the listener-only
        // channel is freed.
        assert!(t.on(0).forget(chan, key, 10));
        assert!(!t.on(0).forget(chan, key, 10), "once only");
        assert_eq!(t.subscribers(), None, "channel freed");
        held_key(t.listen(1, Concurrency::First, &mut fx));
    }

    #[test]
    fn delete_answers_gone_here_and_there() {
        let mut t = two();
        let mut fa = roomy();
        let (_, mine) = held_key(t.listen(0, Concurrency::Broadcast, &mut fa));
        let (_, theirs) = held_key(t.listen(1, Concurrency::Broadcast, &mut fa));
        let mut fx = roomy();
        let Step::Ready(Ok(info)) = t.on(0).delete(b"ch", 10, &mut fx) else {
            panic!()
        };
        assert_eq!(info.subscribers, 2);
        assert_eq!(fx.answers, vec![(mine, Answer::Gone)]);
        let mut fb = roomy();
        assert_eq!(t.on(1).catch_up(10, &mut fb), Step::Ready(()));
        assert_eq!(fb.answers, vec![(theirs, Answer::Gone)]);
        assert_eq!(
            t.on(0).info(b"ch", 10, &mut fx),
            Step::Ready(Err(Refusal::NotFound))
        );
    }

    #[test]
    fn lost_events_are_resynchronised_from_the_store() {
        let budget = Limited::new(16 * 1024);
        let mut t = two_in(budget.clone());
        let mut fb = roomy();
        let (_, old) = held_key(t.listen(1, Concurrency::Last, &mut fb));
        // Fill the zone, so that B's inbox cannot take the conflict event.
        let mut fx = roomy();
        let fill = vec![0u8; 500];
        loop {
            let req = Publish {
                id: b"fill",
                content_type: b"",
                event: b"",
                body: &fill,
                rules: SenderRules {
                    buffer_length: usize::MAX,
                    ..SENDER
                },
                now: 10,
            };
            if !matches!(t.on(0).publish(&req, &mut fx), Step::Ready(Ok(_))) {
                break;
            }
        }
        budget.0.set(0);
        held_key(t.listen(0, Concurrency::Last, &mut fx));
        assert_eq!(t.on(1).catch_up(10, &mut fb), Step::Ready(()));
        assert_eq!(fb.answers, vec![(old, Answer::Conflict)]);
        assert_eq!(fb.resynced, Some(1), "reported, for the log");
    }

    #[test]
    fn a_stream_gets_its_backlog_stays_held_and_takes_every_message() {
        let mut t = two();
        let mut fx = roomy();
        for b in [&b"one"[..], b"two"] {
            assert!(matches!(t.publish(1, b, &mut fx), Step::Ready(Ok(_))));
        }
        let req = Listen {
            id: b"ch",
            cursor: Cursor::default(),
            rules: rules(Concurrency::Broadcast),
            transport: Transport::EventSource,
            now: 10,
        };
        let mut fa = Effects::default();
        assert_eq!(
            t.on(0).listen(&req, &mut fa),
            Step::Retry,
            "no room yet: nothing done"
        );
        assert_eq!(t.subscribers(), Some(0));
        fa.copies.make_room();
        let Step::Ready(Ok(Listened::Held { key, backlog, .. })) = t.on(0).listen(&req, &mut fa)
        else {
            panic!()
        };
        assert_eq!(backlog, 0..2);
        let d = fa.copies.take_deliveries();
        assert_eq!((d[0].body(), d[1].body()), (&b"one"[..], &b"two"[..]));
        // Two more, from the other worker: both arrive, and it stays held.
        for b in [&b"three"[..], b"four"] {
            assert!(matches!(t.publish(1, b, &mut fx), Step::Ready(Ok(_))));
        }
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Ready(()));
        assert_eq!(
            fa.answers,
            vec![
                (key, Answer::Message(MsgRef::Copy(0))),
                (key, Answer::Message(MsgRef::Copy(1)))
            ]
        );
        let d = fa.copies.take_deliveries();
        assert_eq!((d[0].body(), d[1].body()), (&b"three"[..], &b"four"[..]));
        assert_eq!(t.subscribers(), Some(1), "a stream stays");
        // Its cursor moved: a resync would not send them again.
        t.store.flag_resync(t.ids[0]);
        fa.answers.clear();
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Ready(()));
        assert!(fa.answers.is_empty(), "{:?}", fa.answers);
        // Two more whose events are lost: the resync sends both, in order,
        // and the stream stays.
        for b in [&b"five"[..], b"six"] {
            assert!(matches!(t.publish(1, b, &mut fx), Step::Ready(Ok(_))));
        }
        let me = t.ids[0];
        t.store.drain_inbox(me, 10, |_, _| Some(0));
        t.store.flag_resync(me);
        assert_eq!(t.on(0).catch_up(10, &mut fa), Step::Ready(()));
        let d = fa.copies.take_deliveries();
        let bodies: Vec<&[u8]> = fa
            .answers
            .iter()
            .map(|(k, a)| {
                assert_eq!(*k, key);
                match a {
                    Answer::Message(MsgRef::Copy(i)) => d[*i as usize].body(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(bodies, vec![&b"five"[..], b"six"]);
        assert_eq!(t.subscribers(), Some(1));
    }

    #[test]
    fn a_full_zone_and_a_broken_invariant_are_different_refusals() {
        assert_eq!(
            refusal(StoreError::NoMemory, Wanted::Message),
            Refusal::ZoneFull(Wanted::Message)
        );
        assert_eq!(
            refusal(StoreError::Inconsistent, Wanted::Message),
            Refusal::Internal
        );
    }

    #[test]
    fn shutdown_ends_every_listener_and_zeroes_the_counts() {
        let mut t = two();
        let mut fx = roomy();
        held_key(t.listen(0, Concurrency::Broadcast, &mut fx));
        held_key(t.listen(0, Concurrency::Broadcast, &mut fx));
        t.store.touch(b"ch", 10, 3600).unwrap();
        t.on(0).release_all(10, &mut fx);
        assert_eq!(fx.answers.len(), 2);
        assert!(fx.answers.iter().all(|a| a.1 == Answer::Ended));
        assert_eq!(t.subscribers(), Some(0));
    }
}
