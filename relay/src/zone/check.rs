//! Checking and repairing the store after a worker died while it held the
//! zone's lock (nginx's master force-unlocks a dead holder's mutex, but
//! the update it was making may be half done).
//!
//! `check` walks every bucket, channel, message, holder count, orphan,
//! worker and event, and says what does not hold. It reads a store a dead
//! process may have left half-written, so it checks every address against
//! the zone (the caller's `within`) before following it, never frees
//! anything, and bounds every walk. `repair` fixes what an interrupted
//! update can leave behind: a bucket table half moved, an element that
//! `Vec::remove` had copied but not yet cut off (two owners of one
//! allocation), derived counts (pending fetches, holders, the channel
//! count) out of step with the events and workers they count. What cannot
//! be explained that way is reported as a [`Defect`] that repair leaves
//! (the caller then resets the zone).

use std::collections::{HashMap, HashSet};

use allocator_api2::alloc::Allocator;
use allocator_api2::vec::Vec;

use super::{Channel, EventKind, Message, MsgId, Store, WorkerId};

/// What a check counted in a sound store.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub channels: usize,
    pub messages: usize,
    pub orphans: usize,
    pub workers: usize,
    pub events: usize,
}

/// The first thing found wrong, in words for the error log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect(pub String);

impl core::fmt::Display for Defect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a repair changed (all zero: nothing needed it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repairs {
    /// Channels moved to the new bucket table by an interrupted growth.
    pub rehashed: usize,
    /// Second owners of one allocation, let go of without freeing.
    pub duplicates: usize,
    /// Messages whose count of pending fetches was set to the events that
    /// owe them.
    pub pending: usize,
    /// In-flight messages and deleted channels nobody owes any more, freed.
    pub freed: usize,
    /// Holder counts of unknown workers, or of none, dropped.
    pub holders: usize,
    /// The channel count was wrong.
    pub recounted: bool,
}

impl Repairs {
    pub fn any(&self) -> bool {
        *self != Repairs::default()
    }
}

fn defect<T>(what: impl Into<String>) -> Result<T, Defect> {
    Err(Defect(what.into()))
}

/// Address and byte size of a vector's buffer, if it has one.
fn buffer<T, A: Allocator>(v: &Vec<T, A>) -> Option<Option<(usize, usize)>> {
    if v.len() > v.capacity() {
        return None;
    }
    if v.capacity() == 0 || core::mem::size_of::<T>() == 0 {
        return Some(None);
    }
    let bytes = v.capacity().checked_mul(core::mem::size_of::<T>())?;
    Some(Some((v.as_ptr() as usize, bytes)))
}

/// The walk's state: the zone test, and every allocation seen (two owners
/// of one block are a defect).
struct Walk<'a> {
    within: &'a dyn Fn(usize, usize) -> bool,
    seen: HashSet<usize>,
}

impl Walk<'_> {
    fn block(&mut self, addr: usize, bytes: usize, what: &str) -> Result<(), Defect> {
        if !(self.within)(addr, bytes) {
            return defect(format!("{what} at {addr:#x} is outside the zone"));
        }
        if !self.seen.insert(addr) {
            return defect(format!("{what} at {addr:#x} has two owners"));
        }
        Ok(())
    }

    fn vec<T, A: Allocator>(&mut self, v: &Vec<T, A>, what: &str) -> Result<(), Defect> {
        match buffer(v) {
            None => defect(format!("{what}: length beyond capacity")),
            Some(None) => Ok(()),
            Some(Some((addr, bytes))) => self.block(addr, bytes, what),
        }
    }

    fn message<A: Allocator>(&mut self, m: &Message<A>) -> Result<(), Defect> {
        self.vec(&m.content_type, "a message's content type")?;
        self.vec(&m.event, "a message's event name")?;
        self.vec(&m.body, "a message's body")
    }

    fn channel<A: Allocator + Clone>(
        &mut self,
        c: &Channel<A>,
        workers: &HashSet<WorkerId>,
    ) -> Result<usize, Defect> {
        let addr = c as *const Channel<A> as usize;
        self.block(addr, core::mem::size_of::<Channel<A>>(), "a channel")?;
        self.vec(&c.id, "a channel id")?;
        self.vec(&c.stored, "a stored-message list")?;
        self.vec(&c.transit, "an in-flight list")?;
        self.vec(&c.holders, "a holder list")?;
        for m in c.stored.iter().chain(c.transit.iter()) {
            self.message(m)?;
        }
        if c.stored.windows(2).any(|w| w[0].id >= w[1].id) {
            return defect("stored messages out of order");
        }
        if c.transit.iter().any(|m| m.pending == 0) {
            return defect("an in-flight message nobody owes");
        }
        let mut holders = HashSet::new();
        for h in c.holders.iter() {
            if h.1 == 0 || !workers.contains(&h.0) || !holders.insert(h.0) {
                return defect(format!("holder count {:?} of no live worker", *h));
            }
        }
        Ok(c.stored.len() + c.transit.len())
    }
}

impl<A: Allocator + Clone> Store<A> {
    /// Walk the whole store. `within(addr, bytes)`: that block lies in the
    /// zone (a pointer a dead process left half-written may not).
    pub fn check(&self, within: &dyn Fn(usize, usize) -> bool) -> Result<Census, Defect> {
        let mut walk = Walk {
            within,
            seen: HashSet::new(),
        };
        walk.vec(&self.buckets, "the bucket table")?;
        walk.vec(&self.rehash_from, "the old bucket table")?;
        walk.vec(&self.workers, "the worker list")?;
        walk.vec(&self.orphans, "the deleted-channel list")?;
        if !self.buckets.len().is_power_of_two() {
            return defect("a bucket table that is not a power of two");
        }
        if !self.rehash_from.is_empty() {
            return defect("a bucket table growth was interrupted");
        }
        let mut census = Census::default();
        let mut workers = HashSet::new();
        for w in self.workers.iter() {
            if !workers.insert(w.id) {
                return defect(format!("worker {} listed twice", w.id));
            }
            walk.vec(&w.inbox, "an inbox")?;
        }
        census.workers = workers.len();
        // Messages by (serial, id), with their pending count.
        let mut pending: HashMap<(u64, MsgId), u32> = HashMap::new();
        let mut serials = HashSet::new();
        for (b, head) in self.buckets.iter().enumerate() {
            let mut cur = head.as_deref();
            while let Some(c) = cur {
                census.messages += walk.channel(c, &workers)?;
                if self.bucket_of(c.hash) != b {
                    return defect("a channel in the wrong bucket");
                }
                if !serials.insert(c.serial) {
                    return defect(format!("channel serial {} twice", c.serial));
                }
                for m in c.stored.iter().chain(c.transit.iter()) {
                    pending.insert((c.serial, m.id), m.pending);
                }
                census.channels += 1;
                cur = c.next.as_deref();
            }
        }
        if census.channels != self.channels {
            return defect(format!(
                "{} channels linked, {} counted",
                census.channels, self.channels
            ));
        }
        for o in self.orphans.iter() {
            census.messages += walk.channel(o, &workers)?;
            if o.transit.is_empty() || !o.stored.is_empty() || o.next.is_some() {
                return defect("a deleted channel that is not only owed messages");
            }
            if !serials.insert(o.serial) {
                return defect(format!("channel serial {} twice", o.serial));
            }
            for m in o.transit.iter() {
                pending.insert((o.serial, m.id), m.pending);
            }
            census.orphans += 1;
        }
        let mut owed: HashMap<(u64, MsgId), u32> = HashMap::new();
        for w in self.workers.iter() {
            let mut seen = HashSet::new();
            for e in w.inbox.iter() {
                census.events += 1;
                if !seen.insert(*e) {
                    return defect(format!("an event queued twice for worker {}", w.id));
                }
                if let EventKind::Message { id, .. } = e.kind {
                    *owed.entry((e.serial, id)).or_default() += 1;
                }
            }
        }
        for (key, p) in &pending {
            let due = owed.get(key).copied().unwrap_or(0);
            if *p != due {
                return defect(format!(
                    "a message owed to {due} worker(s) counts {p} pending fetches"
                ));
            }
        }
        Ok(census)
    }

    /// Fix what an interrupted update can leave behind (see the module
    /// comment), then make every worker resynchronise its held listeners
    /// with the store (events it should have been sent may be missing).
    /// The caller unregisters the dead worker afterwards (that needs the
    /// bucket table whole, which this finishes), then checks the store.
    pub fn repair(&mut self) -> Repairs {
        let mut r = Repairs::default();
        if !self.rehash_from.is_empty() {
            r.rehashed = self
                .rehash_from
                .iter()
                .map(|h| {
                    let mut n = 0;
                    let mut cur = h.as_deref();
                    while let Some(c) = cur {
                        n += 1;
                        cur = c.next.as_deref();
                    }
                    n
                })
                .sum();
            self.finish_rehash();
        }
        r.duplicates += forget_shared(&mut self.workers, |w| {
            (!w.inbox.is_empty() || w.inbox.capacity() > 0).then(|| w.inbox.as_ptr() as usize)
        });
        r.duplicates += forget_shared(&mut self.orphans, |o| Some(&**o as *const _ as usize));
        for w in self.workers.iter_mut() {
            let mut seen = HashSet::new();
            let before = w.inbox.len();
            w.inbox.retain(|e| seen.insert(*e));
            r.duplicates += before - w.inbox.len();
        }
        let live: HashSet<WorkerId> = self.workers.iter().map(|w| w.id).collect();
        let mut owed: HashMap<(u64, MsgId), u32> = HashMap::new();
        for w in self.workers.iter() {
            for e in w.inbox.iter() {
                if let EventKind::Message { id, .. } = e.kind {
                    *owed.entry((e.serial, id)).or_default() += 1;
                }
            }
        }
        let mut linked = 0;
        for head in self.buckets.iter_mut() {
            let mut cur = head.as_deref_mut();
            while let Some(c) = cur {
                repair_channel(c, &live, &owed, &mut r);
                linked += 1;
                cur = c.next.as_deref_mut();
            }
        }
        for o in self.orphans.iter_mut() {
            repair_channel(o, &live, &owed, &mut r);
        }
        let before = self.orphans.len();
        self.orphans.retain(|o| !o.transit.is_empty());
        r.freed += before - self.orphans.len();
        if linked != self.channels {
            self.channels = linked;
            r.recounted = true;
        }
        for w in self.workers.iter_mut() {
            w.overflow = true;
        }
        r
    }
}

/// Let go, without dropping, of every element that shares its allocation
/// (`key`) with a later one: the copy `Vec::remove`/`swap_remove` had made
/// when its process died. Keeps the later one, which is whole.
fn forget_shared<T, K: PartialEq, A: Allocator>(
    v: &mut Vec<T, A>,
    key: impl Fn(&T) -> Option<K>,
) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < v.len() {
        let k = key(&v[i]);
        if k.is_some() && v[i + 1..].iter().any(|x| key(x) == k) {
            core::mem::forget(v.remove(i));
            n += 1;
        } else {
            i += 1;
        }
    }
    n
}

fn repair_channel<A: Allocator + Clone>(
    c: &mut Channel<A>,
    live: &HashSet<WorkerId>,
    owed: &HashMap<(u64, MsgId), u32>,
    r: &mut Repairs,
) {
    let shared = |m: &Message<A>| Some(m.body.as_ptr() as usize).filter(|_| m.body.capacity() > 0);
    r.duplicates += forget_shared(&mut c.stored, shared);
    r.duplicates += forget_shared(&mut c.transit, shared);
    // Same id twice without a shared body (a torn copy): keep the later.
    r.duplicates += forget_shared(&mut c.stored, |m| Some(m.id));
    c.stored.sort_by_key(|m| m.id);
    let before = c.holders.len();
    let mut seen = HashSet::new();
    c.holders
        .retain(|h| h.1 > 0 && live.contains(&h.0) && seen.insert(h.0));
    r.holders += before - c.holders.len();
    let serial = c.serial;
    for m in c.stored.iter_mut().chain(c.transit.iter_mut()) {
        let due = owed.get(&(serial, m.id)).copied().unwrap_or(0);
        if m.pending != due {
            m.pending = due;
            r.pending += 1;
        }
    }
    let before = c.transit.len();
    c.transit.retain(|m| m.pending > 0);
    r.freed += before - c.transit.len();
}

#[cfg(test)]
mod tests {
    use super::super::tests::pubopts;
    use super::super::{Concurrency, ListenRules, NewMessage};
    use super::*;
    use crate::proto::cursor::Cursor;
    use allocator_api2::alloc::Global;
    use std::cell::RefCell;

    const ANYWHERE: &dyn Fn(usize, usize) -> bool = &|_, _| true;

    const HOLD: ListenRules = ListenRules {
        concurrency: Concurrency::Broadcast,
        hold: true,
        stream: false,
        authorized_only: false,
        max_subscribers: 0,
    };

    fn publish(s: &mut Store<Global>, ch: &[u8], body: &[u8], now: u64, w: WorkerId) {
        s.publish(ch, &pubopts(body, now, w)).unwrap();
    }

    /// Two workers, a channel each holds listeners on with messages owed
    /// to the other, a deleted channel still owed, and idle channels.
    fn busy() -> (Store<Global>, WorkerId, WorkerId) {
        let mut s = Store::new(Global, [1, 2]).unwrap();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        s.listen(b"shared", &Cursor::default(), &HOLD, 1, b)
            .unwrap();
        publish(&mut s, b"shared", b"one", 1, a);
        publish(&mut s, b"shared", b"two", 1, a);
        s.listen(b"doomed", &Cursor::default(), &HOLD, 1, b)
            .unwrap();
        publish(&mut s, b"doomed", b"last", 1, a);
        s.delete(b"doomed", 1, a).unwrap();
        for i in 0..5u8 {
            publish(&mut s, &[b'c', i], b"idle", 1, a);
        }
        (s, a, b)
    }

    #[test]
    fn a_sound_store_passes_with_its_census() {
        let (s, _, _) = busy();
        let c = s.check(ANYWHERE).unwrap();
        assert_eq!(c.channels, 6);
        assert_eq!(c.orphans, 1);
        assert_eq!(c.workers, 2);
        assert_eq!(
            c.events, 4,
            "two messages, one more and a deletion owed to b"
        );
        assert_eq!(c.messages, 2 + 5 + 1);
    }

    #[test]
    fn lost_events_leave_pending_counts_that_repair_sets_right() {
        let (mut s, _, b) = busy();
        // The worker that drained b's inbox died with it on its stack.
        let w = s.workers.iter_mut().find(|w| w.id == b).unwrap();
        w.inbox.clear();
        let d = s.check(ANYWHERE).unwrap_err();
        assert!(d.0.contains("pending"), "{d}");
        let r = s.repair();
        assert_eq!(r.pending, 3, "two stored, one in flight");
        assert_eq!(r.freed, 2, "the in-flight message and its deleted channel");
        s.check(ANYWHERE).unwrap();
        assert!(
            s.workers.iter().all(|w| w.overflow),
            "every worker resynchronises"
        );
    }

    #[test]
    fn a_copy_remove_had_not_cut_off_is_let_go_of_without_a_double_free() {
        let (mut s, _, _) = busy();
        let c = s.find_mut(b"c\x01").unwrap();
        // SAFETY: (a test) a bitwise copy, as Vec::remove leaves one when its
        // process dies between the copy and the length update; repair must
        // forget one of the two, or dropping the store frees twice.
        let twin = unsafe { core::ptr::read(&c.stored[0]) };
        c.stored.push(twin);
        let d = s.check(ANYWHERE).unwrap_err();
        assert!(d.0.contains("two owners"), "{d}");
        let r = s.repair();
        assert_eq!(r.duplicates, 1);
        s.check(ANYWHERE).unwrap();
        assert_eq!(s.find(b"c\x01").unwrap().stored_len(), 1);
        drop(s);
    }

    #[test]
    fn an_interrupted_growth_is_finished() {
        let (mut s, _, _) = busy();
        let mut bigger = Vec::new_in(Global);
        bigger.resize_with(s.buckets.len() * 2, || None);
        s.rehash_from = core::mem::replace(&mut s.buckets, bigger);
        // Half moved: the first channel of the old table already went.
        s.finish_rehash_one();
        let d = s.check(ANYWHERE).unwrap_err();
        assert!(d.0.contains("interrupted"), "{d}");
        let r = s.repair();
        assert_eq!(r.rehashed, 5);
        s.check(ANYWHERE).unwrap();
        for i in 0..5u8 {
            assert!(s.find(&[b'c', i]).is_some(), "channel {i} found again");
        }
        assert!(s.find(b"shared").is_some());
    }

    #[test]
    fn counts_of_nobody_and_a_wrong_channel_count_are_fixed() {
        let (mut s, _, _) = busy();
        s.find_mut(b"shared").unwrap().holders.push((99, 1));
        s.channels += 1;
        assert!(s.check(ANYWHERE).is_err());
        let r = s.repair();
        assert_eq!(r.holders, 1);
        assert!(r.recounted);
        s.check(ANYWHERE).unwrap();
    }

    #[test]
    fn an_event_queued_twice_is_dropped_once() {
        let (mut s, _, b) = busy();
        let w = s.workers.iter_mut().find(|w| w.id == b).unwrap();
        let e = w.inbox[0];
        w.inbox.push(e);
        assert!(s.check(ANYWHERE).unwrap_err().0.contains("twice"));
        assert_eq!(s.repair().duplicates, 1);
        s.check(ANYWHERE).unwrap();
    }

    #[test]
    fn a_pointer_outside_the_zone_is_a_defect_repair_cannot_fix() {
        let (mut s, _, _) = busy();
        let body = s.find(b"shared").unwrap().stored[0].body.as_ptr() as usize;
        let within = move |addr: usize, _| addr != body;
        let d = s.check(&within).unwrap_err();
        assert!(d.0.contains("outside the zone"), "{d}");
        s.repair();
        assert!(s.check(&within).is_err());
    }

    thread_local! {
        static REACHED: RefCell<std::vec::Vec<&'static str>> = const { RefCell::new(std::vec::Vec::new()) };
    }

    #[test]
    fn every_named_point_is_reached() {
        super::super::points::set_hook(|p| REACHED.with(|r| r.borrow_mut().push(p)));
        let mut s = Store::new(Global, [1, 2]).unwrap();
        let a = s.register_worker(1, 1).unwrap();
        let b = s.register_worker(2, 2).unwrap();
        let c = s.register_worker(3, 3).unwrap();
        s.listen(b"x", &Cursor::default(), &HOLD, 1, b).unwrap();
        s.listen(b"x", &Cursor::default(), &HOLD, 1, c).unwrap();
        let mut p = NewMessage {
            content_type: b"",
            event: b"",
            body: b"m",
            now: 1,
            message_timeout: 1,
            buffer_length: 10,
            queue: true,
            channel_timeout: 0,
            worker: a,
        };
        s.publish(b"x", &p).unwrap();
        s.drain_inbox(b, 1, |_, _| Some(1));
        for i in 0..100u8 {
            p.body = &[];
            s.publish(&[b'g', i], &p).unwrap();
        }
        s.sweep(10, usize::MAX);
        let reached = REACHED.with(|r| r.borrow().clone());
        for name in super::super::points::ALL {
            assert!(reached.contains(&name), "{name} not reached: {reached:?}");
        }
    }
}
