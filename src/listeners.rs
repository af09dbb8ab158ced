//! The listeners this worker holds, by channel.
//!
//! Only keys live here (the channel's hash and serial, the listener's
//! sequence number): the requests themselves are found through the answer
//! table in `worker.rs`, which forgets a request the moment nginx frees it.
//! Every `take_*` removes what it returns, so a listener is answered at most
//! once whatever nginx does while the answers are being written.

use std::collections::HashMap;

use crate::cursor::{Cursor, MsgId};
use crate::store::Seq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub seq: Seq,
    pub cursor: Cursor,
    /// Held under `last`: a newer listener on the channel ends it (409).
    pub yields: bool,
}

#[derive(Debug, Default)]
pub struct LocalChannel {
    pub hash: u64,
    /// Ordered by `seq` (they are added in that order).
    held: Vec<Held>,
}

#[derive(Debug, Default)]
pub struct Registry {
    channels: HashMap<u64, LocalChannel>,
    count: usize,
    /// Emptied listener lists kept for reuse: a channel whose thousands of
    /// listeners are answered at once and come straight back would
    /// otherwise free and regrow its list every round.
    spare: Vec<Vec<Held>>,
}

/// How many emptied lists are kept, and from which size on.
const SPARE_LISTS: usize = 8;
const SPARE_MIN_CAPACITY: usize = 64;

impl Registry {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn hold(&mut self, hash: u64, serial: u64, held: Held) {
        let spare = &mut self.spare;
        let ch = self.channels.entry(serial).or_insert_with(|| LocalChannel {
            hash,
            held: spare.pop().unwrap_or_default(),
        });
        ch.held.push(held);
        self.count += 1;
    }

    /// Forget one listener (its client went away). Returns the channel's
    /// hash when it was still held, so the store's count can follow.
    pub fn remove(&mut self, serial: u64, seq: Seq) -> Option<u64> {
        let ch = self.channels.get_mut(&serial)?;
        let i = ch.held.iter().position(|h| h.seq == seq)?;
        ch.held.remove(i);
        let hash = ch.hash;
        self.count -= 1;
        if ch.held.is_empty() {
            self.channels.remove(&serial);
        }
        Some(hash)
    }

    /// Take the listeners a matching message should go to: held before
    /// `upto` and whose cursor admits `id`.
    pub fn take_admitted(&mut self, serial: u64, id: MsgId, upto: Seq, out: &mut Vec<Seq>) -> u32 {
        self.take_where(serial, out, |h| h.seq < upto && h.cursor.admits(id))
    }

    /// `last` rule: take every listener held before `before`.
    pub fn take_before(&mut self, serial: u64, before: Seq, out: &mut Vec<Seq>) -> u32 {
        self.take_where(serial, out, |h| h.seq < before)
    }

    /// Take every listener of a channel.
    pub fn take_all(&mut self, serial: u64, out: &mut Vec<Seq>) -> u32 {
        self.take_where(serial, out, |_| true)
    }

    /// Listeners held on one channel, for a resync; not removed.
    pub fn peek(&self, serial: u64) -> &[Held] {
        self.channels.get(&serial).map_or(&[], |c| &c.held)
    }

    /// Every (serial, hash) this worker holds listeners on.
    pub fn channels(&self) -> Vec<(u64, u64)> {
        self.channels.iter().map(|(s, c)| (*s, c.hash)).collect()
    }

    fn take_where(
        &mut self,
        serial: u64,
        out: &mut Vec<Seq>,
        mut pick: impl FnMut(&Held) -> bool,
    ) -> u32 {
        let Some(ch) = self.channels.get_mut(&serial) else {
            return 0;
        };
        let before = out.len();
        ch.held.retain(|h| {
            if pick(h) {
                out.push(h.seq);
                false
            } else {
                true
            }
        });
        if ch.held.is_empty() {
            if let Some(ch) = self.channels.remove(&serial) {
                self.keep_spare(ch.held);
            }
        }
        let n = out.len() - before;
        self.count -= n;
        n as u32
    }

    fn keep_spare(&mut self, list: Vec<Held>) {
        if list.capacity() >= SPARE_MIN_CAPACITY && self.spare.len() < SPARE_LISTS {
            self.spare.push(list);
        }
    }

    /// Take every listener of every channel (the worker is exiting), with
    /// the channel each was on.
    pub fn drain(&mut self) -> Vec<(u64, u64, Seq)> {
        let mut all = Vec::with_capacity(self.count);
        for (serial, ch) in self.channels.drain() {
            all.extend(ch.held.iter().map(|h| (serial, ch.hash, h.seq)));
        }
        self.count = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: Seq, since: Option<u64>, tag: Option<u32>) -> Held {
        Held {
            seq,
            cursor: Cursor { since, tag },
            yields: false,
        }
    }

    #[test]
    fn message_goes_only_to_earlier_listeners_whose_cursor_admits_it() {
        let mut r = Registry::default();
        r.hold(9, 1, h(1, None, None));
        r.hold(9, 1, h(2, Some(200), Some(0)));
        r.hold(9, 1, h(5, None, None));
        let mut out = vec![];
        let n = r.take_admitted(1, MsgId { time: 100, tag: 0 }, 5, &mut out);
        assert_eq!((n, out), (1, vec![1]));
        assert_eq!(r.len(), 2);
        assert_eq!(r.peek(1).len(), 2);
    }

    #[test]
    fn conflict_takes_older_and_delete_takes_all() {
        let mut r = Registry::default();
        for s in 1..=4 {
            r.hold(9, 7, h(s, None, None));
        }
        let mut out = vec![];
        assert_eq!(r.take_before(7, 4, &mut out), 3);
        assert_eq!(out, vec![1, 2, 3]);
        out.clear();
        assert_eq!(r.take_all(7, &mut out), 1);
        assert_eq!(r.len(), 0);
        assert!(r.channels().is_empty());
    }

    #[test]
    fn remove_is_once_only() {
        let mut r = Registry::default();
        r.hold(9, 7, h(1, None, None));
        assert_eq!(r.remove(7, 1), Some(9));
        assert_eq!(r.remove(7, 1), None);
        let mut out = vec![];
        assert_eq!(r.take_all(7, &mut out), 0);
    }

    #[test]
    fn drain_returns_everything() {
        let mut r = Registry::default();
        r.hold(9, 7, h(1, None, None));
        r.hold(8, 6, h(2, None, None));
        let mut all = r.drain();
        all.sort();
        assert_eq!(all, vec![(6, 8, 2), (7, 9, 1)]);
        assert_eq!(r.len(), 0);
    }
}
