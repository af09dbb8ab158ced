//! The listeners this worker holds, by channel.
//!
//! Only keys live here (the channel's serial, the listener's order `seq`
//! and its worker-local `key`): the requests themselves are found by key in
//! the module's table of parked requests, which forgets a request the
//! moment nginx frees it. Every `take_*` removes what it returns, so a
//! listener is answered at most once whatever nginx does while answers are
//! being written. Only the relay (`Relay`) changes it, so that the
//! store's counts always follow.

use std::collections::HashMap;

use crate::proto::cursor::{Cursor, MsgId};
use crate::transport::Transport;
use crate::zone::Seq;

/// A held listener's key in this worker: unique for the worker's life.
pub type Key = u64;

/// A channel as the listeners of one backend know it. `serial` tells apart
/// two channels that had the same id at different times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChanKey {
    pub hash: u64,
    pub serial: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub key: Key,
    /// Order among all listeners of the channel (the `last`/`first` rules,
    /// and which messages were published after it was held).
    pub seq: Seq,
    pub cursor: Cursor,
    /// Held under `last`: a newer listener on the channel ends it (409).
    pub yields: bool,
    pub transport: Transport,
}

#[derive(Debug, Default)]
struct LocalChannel {
    hash: u64,
    /// Ordered by `seq` (they are added in that order).
    held: Vec<Held>,
}

#[derive(Debug, Default)]
pub struct Registry {
    channels: HashMap<u64, LocalChannel>,
    /// Listeners held, by transport (`Transport::ALL` order).
    by_transport: [usize; 4],
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
        self.by_transport.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn hold(&mut self, chan: ChanKey, held: Held) {
        let spare = &mut self.spare;
        let ch = self
            .channels
            .entry(chan.serial)
            .or_insert_with(|| LocalChannel {
                hash: chan.hash,
                held: spare.pop().unwrap_or_default(),
            });
        self.by_transport[held.transport as usize] += 1;
        ch.held.push(held);
    }

    /// Held listeners by transport (`Transport::ALL` order).
    pub fn by_transport(&self) -> [usize; 4] {
        self.by_transport
    }

    /// Forget one listener; false when it was not held (already answered).
    pub(crate) fn remove(&mut self, serial: u64, key: Key) -> bool {
        let Some(ch) = self.channels.get_mut(&serial) else {
            return false;
        };
        let Some(i) = ch.held.iter().position(|h| h.key == key) else {
            return false;
        };
        let h = ch.held.remove(i);
        self.by_transport[h.transport as usize] -= 1;
        if ch.held.is_empty() {
            self.drop_channel(serial);
        }
        true
    }

    /// Would message `id`, published when the channel's next listener was
    /// `upto`, go to any listener held here?
    pub fn wants(&self, serial: u64, id: MsgId, upto: Seq) -> bool {
        self.channels
            .get(&serial)
            .is_some_and(|c| c.held.iter().any(|h| admits(h, id, upto)))
    }

    /// Hand message `id` to every listener held before `upto` whose cursor
    /// admits it: their keys go to `out`. Listeners whose transport ends on
    /// a message leave (their number is returned); the others stay with
    /// their cursor moved past it.
    pub(crate) fn deliver(&mut self, serial: u64, id: MsgId, upto: Seq, out: &mut Vec<Key>) -> u32 {
        let Some(ch) = self.channels.get_mut(&serial) else {
            return 0;
        };
        let before = ch.held.len();
        let by_transport = &mut self.by_transport;
        ch.held.retain_mut(|h| {
            if !admits(h, id, upto) {
                return true;
            }
            out.push(h.key);
            if h.transport.ends_on_message() {
                by_transport[h.transport as usize] -= 1;
                return false;
            }
            h.cursor = Cursor::after(id);
            true
        });
        let left = before - ch.held.len();
        if ch.held.is_empty() {
            self.drop_channel(serial);
        }
        left as u32
    }

    /// `last` rule: take every listener held before `before`.
    pub(crate) fn take_before(&mut self, serial: u64, before: Seq, out: &mut Vec<Key>) -> u32 {
        self.take_where(serial, out, |h| h.seq < before)
    }

    /// Take every listener of a channel.
    pub(crate) fn take_all(&mut self, serial: u64, out: &mut Vec<Key>) -> u32 {
        self.take_where(serial, out, |_| true)
    }

    /// Listeners held on one channel; not removed.
    pub fn peek(&self, serial: u64) -> &[Held] {
        self.channels.get(&serial).map_or(&[], |c| &c.held)
    }

    /// Every channel this worker holds listeners on.
    pub fn channels(&self) -> impl Iterator<Item = ChanKey> + '_ {
        self.channels.iter().map(|(&serial, c)| ChanKey {
            hash: c.hash,
            serial,
        })
    }

    fn take_where(&mut self, serial: u64, out: &mut Vec<Key>, pick: impl Fn(&Held) -> bool) -> u32 {
        let Some(ch) = self.channels.get_mut(&serial) else {
            return 0;
        };
        let before = out.len();
        let by_transport = &mut self.by_transport;
        ch.held.retain(|h| {
            if pick(h) {
                out.push(h.key);
                by_transport[h.transport as usize] -= 1;
                false
            } else {
                true
            }
        });
        if ch.held.is_empty() {
            self.drop_channel(serial);
        }
        (out.len() - before) as u32
    }

    fn drop_channel(&mut self, serial: u64) {
        if let Some(ch) = self.channels.remove(&serial) {
            if ch.held.capacity() >= SPARE_MIN_CAPACITY && self.spare.len() < SPARE_LISTS {
                let mut list = ch.held;
                list.clear();
                self.spare.push(list);
            }
        }
    }

    /// Take every listener of every channel (the worker is exiting).
    pub(crate) fn drain(&mut self) -> Vec<(ChanKey, Key)> {
        let mut all = Vec::with_capacity(self.len());
        for (serial, ch) in self.channels.drain() {
            let chan = ChanKey {
                hash: ch.hash,
                serial,
            };
            all.extend(ch.held.iter().map(|h| (chan, h.key)));
        }
        self.by_transport = [0; 4];
        all
    }
}

fn admits(h: &Held, id: MsgId, upto: Seq) -> bool {
    h.seq < upto && h.cursor.admits(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CH: ChanKey = ChanKey { hash: 9, serial: 1 };

    fn h(seq: Seq, since: Option<u64>, tag: Option<u32>) -> Held {
        Held {
            key: seq + 100,
            seq,
            cursor: Cursor { since, tag },
            yields: false,
            transport: Transport::LongPoll,
        }
    }

    #[test]
    fn message_goes_only_to_earlier_listeners_whose_cursor_admits_it() {
        let mut r = Registry::default();
        r.hold(CH, h(1, None, None));
        r.hold(CH, h(2, Some(200), Some(0)));
        r.hold(CH, h(5, None, None));
        let id = MsgId { time: 100, tag: 0 };
        assert!(r.wants(1, id, 5));
        assert!(!r.wants(1, id, 1));
        let mut out = vec![];
        let n = r.deliver(1, id, 5, &mut out);
        assert_eq!((n, out), (1, vec![101]));
        assert_eq!(r.len(), 2);
        assert_eq!(r.peek(1).len(), 2);
    }

    #[test]
    fn conflict_takes_older_and_delete_takes_all() {
        let mut r = Registry::default();
        let ch = ChanKey { hash: 9, serial: 7 };
        for s in 1..=4 {
            r.hold(ch, h(s, None, None));
        }
        let mut out = vec![];
        assert_eq!(r.take_before(7, 4, &mut out), 3);
        assert_eq!(out, vec![101, 102, 103]);
        out.clear();
        assert_eq!(r.take_all(7, &mut out), 1);
        assert_eq!(r.len(), 0);
        assert_eq!(r.channels().count(), 0);
    }

    #[test]
    fn remove_is_once_only() {
        let mut r = Registry::default();
        r.hold(CH, h(1, None, None));
        assert!(r.remove(1, 101));
        assert!(!r.remove(1, 101));
        let mut out = vec![];
        assert_eq!(r.take_all(1, &mut out), 0);
    }

    #[test]
    fn drain_returns_everything() {
        let mut r = Registry::default();
        r.hold(ChanKey { hash: 9, serial: 7 }, h(1, None, None));
        r.hold(ChanKey { hash: 8, serial: 6 }, h(2, None, None));
        let mut all = r.drain();
        all.sort_by_key(|(c, _)| c.serial);
        assert_eq!(
            all,
            vec![
                (ChanKey { hash: 8, serial: 6 }, 102),
                (ChanKey { hash: 9, serial: 7 }, 101)
            ]
        );
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn counts_by_transport_follow_every_way_out() {
        let mut r = Registry::default();
        let mut stream = h(1, None, None);
        stream.transport = Transport::EventSource;
        r.hold(CH, stream);
        r.hold(CH, h(2, None, None));
        r.hold(CH, h(3, None, None));
        assert_eq!(r.by_transport(), [2, 0, 1, 0]);
        let mut out = vec![];
        r.deliver(1, MsgId { time: 1, tag: 0 }, 3, &mut out);
        assert_eq!(
            r.by_transport(),
            [1, 0, 1, 0],
            "the poll left, the stream stayed"
        );
        assert!(r.remove(1, 103));
        r.take_all(1, &mut out);
        assert_eq!(r.by_transport(), [0; 4]);
    }

    #[test]
    fn emptied_lists_are_reused() {
        let mut r = Registry::default();
        for s in 0..100 {
            r.hold(CH, h(s, None, None));
        }
        let mut out = vec![];
        r.take_all(1, &mut out);
        assert_eq!(r.spare.len(), 1);
        r.hold(CH, h(200, None, None));
        assert!(r.spare.is_empty());
        assert!(r.peek(1).len() == 1);
    }
}
