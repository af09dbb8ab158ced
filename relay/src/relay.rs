//! This worker's side of the relay: the listeners it holds and their counts
//! in the store, kept in step by one owner.
//!
//! Every change to the registry goes through [`Relay`], and every method
//! that takes listeners out of it reports how many left to the store's
//! [`Counts`] in the same call, so forgetting a listener cannot leave a
//! count behind. What the caller must then do with no lock held (answers to
//! write, workers to wake, message bytes to turn into deliveries) collects
//! in [`Effects`].

use std::rc::Rc;

use crate::delivery::Delivery;
use crate::proto::cursor::{Cursor, MsgId};
use crate::registry::{ChanKey, Held, Key, Registry};
use crate::transport::Transport;
use crate::zone::{Seq, Wake};

/// The store's count of this worker's held listeners, per channel.
pub trait Counts {
    /// `n` listeners of this worker left `chan`.
    fn released(&mut self, chan: ChanKey, n: u32);
}

/// Counts that are only added up, for a store that applies them itself
/// (the zone while it walks an inbox).
#[derive(Debug, Default)]
pub struct Tally(pub u32);

impl Counts for Tally {
    fn released(&mut self, _chan: ChanKey, n: u32) {
        self.0 += n;
    }
}

/// What a held listener is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Message(MsgRef),
    /// A newer listener took the channel (`last`): 409.
    Conflict,
    /// The channel was deleted: 410.
    Gone,
    /// Timeout or shutdown: the listener ends and asks again (304 with its
    /// cursor for a poll).
    Ended,
}

/// Which message an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgRef {
    /// A copy made under the lock, in [`Effects::copies`].
    Copy(u32),
    /// The message this worker is publishing right now (its body is the
    /// request's own).
    Published,
}

/// A message copied out of the store.
#[derive(Debug, Clone, Copy)]
struct Copied {
    id: MsgId,
    start: usize,
    ct_end: usize,
    event_end: usize,
    end: usize,
}

/// Message bytes copied out of the store while its lock is held, into
/// room reserved beforehand: a copy that does not fit is refused (and the
/// room it wanted remembered) rather than allocated under the lock.
#[derive(Debug, Default)]
pub struct Copies {
    bytes: Vec<u8>,
    list: Vec<Copied>,
    want_bytes: usize,
    want_list: usize,
}

/// Room kept between rounds, and the most that is kept.
const COPY_ROOM: usize = 16 * 1024;
const COPY_ROOM_KEPT: usize = 1024 * 1024;
const COPY_LIST: usize = 64;

impl Copies {
    /// Would `n` more messages of `bytes` bytes fit the reserved room?
    /// (Remembers what it would take when not.)
    pub fn has_room(&mut self, n: usize, bytes: usize) -> bool {
        let fits = self.bytes.capacity() - self.bytes.len() >= bytes
            && self.list.capacity() - self.list.len() >= n;
        if !fits {
            self.want_bytes = self.want_bytes.max(self.bytes.len() + bytes);
            self.want_list = self.want_list.max(self.list.len() + n);
        }
        fits
    }

    /// Copy a message in, or `None` when the reserved room is too small.
    pub fn push(
        &mut self,
        id: MsgId,
        content_type: &[u8],
        event: &[u8],
        body: &[u8],
    ) -> Option<MsgRef> {
        let start = self.bytes.len();
        if !self.has_room(1, content_type.len() + event.len() + body.len()) {
            return None;
        }
        // Within capacity: no extend reallocates.
        self.bytes.extend_from_slice(content_type);
        self.bytes.extend_from_slice(event);
        self.bytes.extend_from_slice(body);
        let i = self.list.len() as u32;
        self.list.push(Copied {
            id,
            start,
            ct_end: start + content_type.len(),
            event_end: start + content_type.len() + event.len(),
            end: self.bytes.len(),
        });
        Some(MsgRef::Copy(i))
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many copies there are (the next one is `MsgRef::Copy(len)`).
    pub fn len(&self) -> u32 {
        self.list.len() as u32
    }

    /// With no lock held: make the room the last refused copy wanted (and
    /// the usual room).
    pub fn make_room(&mut self) {
        let bytes = self.want_bytes.max(COPY_ROOM);
        let list = self.want_list.max(COPY_LIST);
        self.bytes.reserve(bytes.saturating_sub(self.bytes.len()));
        self.list.reserve(list.saturating_sub(self.list.len()));
        self.want_bytes = 0;
        self.want_list = 0;
    }

    /// With no lock held: the copies as deliveries, in order; then empty.
    pub fn take_deliveries(&mut self) -> Vec<Rc<Delivery>> {
        let out = self
            .list
            .iter()
            .map(|c| {
                Rc::new(Delivery::new(
                    c.id,
                    self.bytes[c.start..c.ct_end].to_vec(),
                    self.bytes[c.ct_end..c.event_end].to_vec(),
                    self.bytes[c.event_end..c.end].to_vec(),
                ))
            })
            .collect();
        self.list.clear();
        self.bytes.clear();
        if self.bytes.capacity() > COPY_ROOM_KEPT {
            self.bytes.shrink_to(COPY_ROOM);
        }
        out
    }
}

/// What an operation leaves for the caller to do once the lock is released.
#[derive(Debug, Default)]
pub struct Effects {
    /// Answers to this worker's held listeners, in order.
    pub answers: Vec<(Key, Answer)>,
    /// Other workers with new events for their listeners.
    pub wake: Vec<Wake>,
    pub copies: Copies,
    /// Events for this worker's listeners were lost (the zone was full when
    /// they were queued), and this many channels' listeners were
    /// resynchronised with the store.
    pub resynced: Option<usize>,
    keys: Vec<Key>,
}

impl Effects {
    fn answer_keys(&mut self, answer: Answer) {
        let keys = &mut self.keys;
        self.answers.extend(keys.drain(..).map(|k| (k, answer)));
    }
}

/// The listeners this worker holds for one backend.
#[derive(Debug, Default)]
pub struct Relay {
    registry: Registry,
    next_key: Key,
}

impl Relay {
    /// A relay whose keys are all above `first`: the module keeps one relay
    /// per store (the zone's, Redis's) and finds a listener by its key
    /// alone, so their key spaces must not meet. `Relay::default()` starts
    /// at 0.
    pub fn with_keys_above(first: Key) -> Relay {
        Relay {
            next_key: first,
            ..Relay::default()
        }
    }

    pub fn held(&self) -> usize {
        self.registry.len()
    }

    /// Held listeners by transport (`Transport::ALL` order).
    pub fn held_by_transport(&self) -> [usize; 4] {
        self.registry.by_transport()
    }

    /// Is listener `key` still held on `chan`?
    pub fn is_held(&self, chan: ChanKey, key: Key) -> bool {
        self.registry.peek(chan.serial).iter().any(|h| h.key == key)
    }

    /// Listeners held on one channel, for a resynchronisation.
    pub fn peek(&self, serial: u64) -> &[Held] {
        self.registry.peek(serial)
    }

    /// Every channel with listeners held here.
    pub fn channels(&self) -> impl Iterator<Item = ChanKey> + '_ {
        self.registry.channels()
    }

    /// Would message `id` (published before listener `upto`) go to anyone
    /// held here on `chan`?
    pub fn wants(&self, chan: ChanKey, id: MsgId, upto: Seq) -> bool {
        self.registry.wants(chan.serial, id, upto)
    }

    /// Hold a listener the store has just counted on `chan`; returns its
    /// key.
    pub fn hold(
        &mut self,
        chan: ChanKey,
        seq: Seq,
        cursor: Cursor,
        yields: bool,
        transport: Transport,
    ) -> Key {
        self.next_key += 1;
        let key = self.next_key;
        self.registry.hold(
            chan,
            Held {
                key,
                seq,
                cursor,
                yields,
                transport,
            },
        );
        key
    }

    /// A listener went away (client gone, timeout, or it could not be
    /// parked). False when it had already been answered.
    pub fn forget<C: Counts + ?Sized>(&mut self, counts: &mut C, chan: ChanKey, key: Key) -> bool {
        let gone = self.registry.remove(chan.serial, key);
        if gone {
            counts.released(chan, 1);
        }
        gone
    }

    /// Message `id` of `chan`, published before listener `upto`, goes to
    /// every listener here whose cursor admits it.
    pub fn message<C: Counts + ?Sized>(
        &mut self,
        counts: &mut C,
        chan: ChanKey,
        id: MsgId,
        upto: Seq,
        msg: MsgRef,
        fx: &mut Effects,
    ) {
        let left = self.registry.deliver(chan.serial, id, upto, &mut fx.keys);
        fx.answer_keys(Answer::Message(msg));
        if left > 0 {
            counts.released(chan, left);
        }
    }

    /// `last` rule: listeners held before `before` answer 409.
    pub fn conflict<C: Counts + ?Sized>(
        &mut self,
        counts: &mut C,
        chan: ChanKey,
        before: Seq,
        fx: &mut Effects,
    ) {
        let n = self.registry.take_before(chan.serial, before, &mut fx.keys);
        fx.answer_keys(Answer::Conflict);
        if n > 0 {
            counts.released(chan, n);
        }
    }

    /// The channel was deleted: every listener on it answers 410.
    pub fn deleted<C: Counts + ?Sized>(&mut self, counts: &mut C, chan: ChanKey, fx: &mut Effects) {
        let n = self.registry.take_all(chan.serial, &mut fx.keys);
        fx.answer_keys(Answer::Gone);
        if n > 0 {
            counts.released(chan, n);
        }
    }

    /// Answer one listener and end it (a resynchronisation found what it
    /// was owed). False when it was no longer held.
    pub fn end_one<C: Counts + ?Sized>(
        &mut self,
        counts: &mut C,
        chan: ChanKey,
        key: Key,
        answer: Answer,
        fx: &mut Effects,
    ) -> bool {
        let gone = self.forget(counts, chan, key);
        if gone {
            fx.answers.push((key, answer));
        }
        gone
    }

    /// The worker is exiting: every listener ends.
    pub fn release_all<C: Counts + ?Sized>(&mut self, counts: &mut C, fx: &mut Effects) {
        for (chan, key) in self.registry.drain() {
            counts.released(chan, 1);
            fx.answers.push((key, Answer::Ended));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Counts kept per channel, to check they follow the registry.
    #[derive(Default)]
    struct Book(HashMap<u64, i64>);

    impl Counts for Book {
        fn released(&mut self, chan: ChanKey, n: u32) {
            *self.0.entry(chan.serial).or_default() -= i64::from(n);
        }
    }

    const A: ChanKey = ChanKey { hash: 1, serial: 1 };

    fn hold(r: &mut Relay, book: &mut Book, seq: Seq) -> Key {
        *book.0.entry(A.serial).or_default() += 1;
        r.hold(A, seq, Cursor::default(), true, Transport::LongPoll)
    }

    #[test]
    fn every_way_out_gives_the_count_back() {
        let mut r = Relay::default();
        let mut book = Book::default();
        let mut fx = Effects::default();
        let k1 = hold(&mut r, &mut book, 1);
        hold(&mut r, &mut book, 2);
        hold(&mut r, &mut book, 3);
        assert!(r.forget(&mut book, A, k1));
        assert!(!r.forget(&mut book, A, k1), "once only");
        r.conflict(&mut book, A, 3, &mut fx);
        assert_eq!(fx.answers, vec![(2, Answer::Conflict)]);
        let id = MsgId { time: 5, tag: 0 };
        r.message(&mut book, A, id, 4, MsgRef::Published, &mut fx);
        assert_eq!(fx.answers[1], (3, Answer::Message(MsgRef::Published)));
        assert_eq!(book.0[&A.serial], 0);
        assert_eq!(r.held(), 0);
        let k = hold(&mut r, &mut book, 9);
        r.deleted(&mut book, A, &mut fx);
        assert_eq!(fx.answers.last(), Some(&(k, Answer::Gone)));
        hold(&mut r, &mut book, 10);
        r.release_all(&mut book, &mut fx);
        assert_eq!(fx.answers.last().map(|a| a.1), Some(Answer::Ended));
        assert_eq!(book.0[&A.serial], 0);
    }

    #[test]
    fn later_listeners_do_not_get_an_earlier_publish() {
        let mut r = Relay::default();
        let mut book = Book::default();
        let mut fx = Effects::default();
        hold(&mut r, &mut book, 7);
        let id = MsgId { time: 5, tag: 0 };
        assert!(!r.wants(A, id, 7));
        r.message(&mut book, A, id, 7, MsgRef::Published, &mut fx);
        assert!(fx.answers.is_empty());
        assert_eq!(book.0[&A.serial], 1);
    }

    #[test]
    fn relays_with_their_own_key_space_never_share_a_key() {
        let mut zone = Relay::default();
        let mut other = Relay::with_keys_above(1 << 63);
        let a = zone.hold(A, 1, Cursor::default(), false, Transport::LongPoll);
        let b = other.hold(A, 1, Cursor::default(), false, Transport::LongPoll);
        assert_eq!((a, b), (1, (1 << 63) + 1));
    }

    #[test]
    fn copies_never_grow_under_the_lock() {
        let mut c = Copies::default();
        let id = MsgId { time: 1, tag: 0 };
        assert_eq!(
            c.push(id, b"t", b"e", b"body"),
            None,
            "no room reserved yet"
        );
        c.make_room();
        let cap = c.bytes.capacity();
        assert_eq!(c.push(id, b"t", b"e", b"body"), Some(MsgRef::Copy(0)));
        let big = vec![1u8; cap];
        assert_eq!(c.push(id, b"", b"", &big), None);
        assert_eq!(c.bytes.capacity(), cap, "refused, not reallocated");
        let d = c.take_deliveries();
        assert_eq!((d.len(), d[0].body()), (1, &b"body"[..]));
        assert_eq!(&d[0].content_type[..], b"t");
        assert_eq!(&d[0].event[..], b"e");
        c.make_room();
        assert!(c.bytes.capacity() >= cap);
        assert_eq!(c.push(id, b"", b"", &big), Some(MsgRef::Copy(0)));
        assert_eq!(c.take_deliveries()[0].body(), &big[..]);
    }
}
