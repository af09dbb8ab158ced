//! Running relay operations against this worker's backend, and carrying
//! out what they leave to do once the lock is released: wake-ups to other
//! workers, message copies turned into deliveries, answers to this worker's
//! held listeners.

use std::rc::Rc;

use nginx_sys::{ngx_event_t, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN};
use push_relay::backend::{Backend, OpId, Step};
use push_relay::delivery::Delivery;
use push_relay::registry::{ChanKey, Key};
use push_relay::relay::{Answer, Effects, MsgRef};
use push_relay::zone::Wake;
use push_relay::zone_backend::ZoneBackend;

use super::faults;
use super::wakeup::Sent;
use super::worker::{self, arm, with};
use crate::conf::Store;

/// What a held listener is sent, as its transport receives it.
#[derive(Clone, Copy)]
pub enum Out<'a> {
    Message(&'a Rc<Delivery>),
    Conflict,
    Gone,
    /// Timeout or shutdown.
    Ended,
}

/// The transports' way to hand `Out` to the held listener `key` (given to
/// the worker when it starts, so this layer does not reach up to them).
pub type Deliver = fn(Key, Out<'_>);

/// Hand `out` to held listener `key` through its transport.
pub fn deliver(key: Key, out: Out<'_>) {
    if let Some(deliver) = with(|w| w.deliver) {
        deliver(key, out);
    }
}

/// How far an operation got.
pub enum Run<T> {
    /// Done, with what it left to carry out (`finish`).
    Done(T, Effects),
    /// It completes later: the request waits on this operation.
    Later(OpId),
}

/// Run `op` on the store of a location.
pub fn run<T>(
    store: Store,
    op: impl FnMut(&mut dyn Backend, &mut Effects) -> Step<T>,
) -> Option<Run<T>> {
    match store {
        Store::Zone => zone(op).map(|(t, fx)| Run::Done(t, fx)),
        Store::Redis {
            endpoint,
            namespace,
        } => redis(usize::from(endpoint), usize::from(namespace), op),
    }
}

/// Run `op` on a Redis endpoint's backend (one namespace of it), and send
/// what it queued.
fn redis<T>(
    ep: usize,
    ns: usize,
    mut op: impl FnMut(&mut dyn Backend, &mut Effects) -> Step<T>,
) -> Option<Run<T>> {
    let (step, fx) = with(|w| {
        let mut fx = core::mem::take(&mut w.fx);
        let c = w.redis.get_mut(ep)?;
        let step = op(&mut c.backend.scope(ns), &mut fx);
        c.flush();
        Some((step, fx))
    })??;
    match step {
        Step::Ready(t) => Some(Run::Done(t, fx)),
        Step::Later(op) => {
            finish(fx, None);
            Some(Run::Later(op))
        }
        Step::Retry => {
            finish(fx, None);
            None
        }
    }
}

/// Run `op` on the zone: lock, run, unlock. When it asks for more copy
/// room, carry out what it did so far, make the room and run it again.
/// `None` when the zone is not set up in this worker (or on re-entry), or
/// should the zone ever answer "later".
pub fn zone<T>(
    mut op: impl FnMut(&mut dyn Backend, &mut Effects) -> Step<T>,
) -> Option<(T, Effects)> {
    loop {
        let (step, fx) = with(|w| {
            let mut fx = core::mem::take(&mut w.fx);
            let lock = w.zone.lock();
            let mut backend = ZoneBackend::new(lock.store, &mut w.relay, w.me);
            (op(&mut backend, &mut fx), fx)
        })?;
        match step {
            Step::Ready(t) => return Some((t, fx)),
            Step::Retry => {
                finish(fx, None);
                with(|w| w.fx.copies.make_room());
            }
            Step::Later(_) => {
                finish(fx, None);
                return None;
            }
        }
    }
}

/// A held listener of `store` went away. The zone's lock is taken only if
/// it was still held.
pub fn forget(store: Store, chan: ChanKey, key: Key) -> bool {
    let now = worker::now();
    with(|w| match store {
        Store::Zone => {
            if !w.relay.is_held(chan, key) {
                return false;
            }
            let lock = w.zone.lock();
            ZoneBackend::new(lock.store, &mut w.relay, w.me).forget(chan, key, now)
        }
        Store::Redis { endpoint, .. } => match w.redis.get_mut(usize::from(endpoint)) {
            Some(c) => {
                let gone = c.backend.scope(0).forget(chan, key, now);
                c.flush();
                gone
            }
            None => false,
        },
    })
    .unwrap_or(false)
}

/// Take what other workers queued for this one, and answer it.
pub fn catch_up() {
    let now = worker::now();
    if faults::resync_always() {
        with(|w| w.zone.lock().store.flag_resync(w.me));
    }
    if let Some(((), fx)) = zone(|b, fx| b.catch_up(now, fx)) {
        finish(fx, None);
    }
}

/// Carry out an operation's effects, then give the scratch back. Returns
/// the deliveries made from its copies, so the caller can answer its own
/// request with one (`MsgRef::Copy(i)` is the i-th). `published` is the
/// delivery of the message this worker just published, if any answer
/// carries it.
pub fn finish(fx: Effects, published: Option<&Rc<Delivery>>) -> Vec<Rc<Delivery>> {
    finish_then(fx, published, |_| {})
}

/// `finish`, with `first` run once the deliveries exist and before any
/// answer is written: requests resumed there (parked, streams started)
/// then get the answers of the same batch (a message or a deletion that
/// arrived right behind the reply that held them).
pub fn finish_then(
    mut fx: Effects,
    published: Option<&Rc<Delivery>>,
    first: impl FnOnce(&[Rc<Delivery>]),
) -> Vec<Rc<Delivery>> {
    if let Some(n) = fx.resynced.take() {
        with(|w| {
            ngx::ngx_log_error!(
                NGX_LOG_WARN,
                w.log,
                "push: events for this worker's listeners were lost (the zone was full); {} channel(s) resynchronised with the store",
                n
            );
        });
    }
    if !fx.wake.is_empty() {
        wake(&fx.wake);
        fx.wake.clear();
    }
    let msgs = fx.copies.take_deliveries();
    first(&msgs);
    let mut answers = core::mem::take(&mut fx.answers);
    for (key, answer) in answers.drain(..) {
        let out = match answer {
            Answer::Message(MsgRef::Copy(i)) => msgs.get(i as usize).map(Out::Message),
            Answer::Message(MsgRef::Published) => published.map(Out::Message),
            Answer::Conflict => Some(Out::Conflict),
            Answer::Gone => Some(Out::Gone),
            Answer::Ended => Some(Out::Ended),
        };
        if let Some(out) = out {
            deliver(key, out);
        }
    }
    fx.answers = answers;
    with(|w| w.fx = fx);
    msgs
}

/// The published message, as a delivery, if any of `fx`'s answers carry it.
pub fn wants_published(fx: &Effects) -> bool {
    fx.answers
        .iter()
        .any(|(_, a)| *a == Answer::Message(MsgRef::Published))
}

/// How long to wait before sending refused wake-ups again, and how often.
const REWAKE_MSEC: usize = 50;
const REWAKE_TRIES: u32 = 20;

/// Wake the workers that now have something in their inbox; forget those
/// that are gone; send again, a little later, what the kernel refused.
pub fn wake(targets: &[Wake]) {
    let mut gone = Vec::new();
    with(|w| {
        for t in targets {
            match w.waker.send(t.pid, t.nonce) {
                Sent::Ok => {}
                Sent::Gone => gone.push(*t),
                Sent::Failed(errno) => {
                    if w.rewake.is_empty() {
                        ngx::ngx_log_error!(
                            NGX_LOG_ERR,
                            w.log,
                            "push: wake-up to worker process {} failed (errno {}); retrying",
                            t.pid,
                            errno
                        );
                    }
                    if !w.rewake.contains(t) {
                        w.rewake.push(*t);
                    }
                    w.rewake_tries = 0;
                    arm(&mut w.rewake_timer, REWAKE_MSEC);
                }
            }
        }
    });
    if gone.is_empty() {
        return;
    }
    let now = worker::now();
    with(|w| {
        let lock = w.zone.lock();
        for g in gone {
            if lock.store.workers().any(|x| x == g) {
                lock.store.unregister_worker(g.id, now);
                ngx::ngx_log_error!(
                    NGX_LOG_NOTICE,
                    w.log,
                    "push: worker process {} is gone; its listeners and owed messages are released",
                    g.pid
                );
            }
        }
    });
}

/// The retry timer of refused wake-ups. After `REWAKE_TRIES` it gives up:
/// the target's own sweep looks at its inbox every second anyway.
pub unsafe extern "C" fn on_rewake(_ev: *mut ngx_event_t) {
    with(|w| {
        w.rewake_tries += 1;
        let targets = core::mem::take(&mut w.rewake);
        for t in targets {
            match w.waker.send(t.pid, t.nonce) {
                Sent::Failed(_) if w.rewake_tries < REWAKE_TRIES => w.rewake.push(t),
                _ => {}
            }
        }
        if !w.rewake.is_empty() {
            arm(&mut w.rewake_timer, REWAKE_MSEC);
        } else if w.rewake_tries < REWAKE_TRIES {
            ngx::ngx_log_error!(NGX_LOG_NOTICE, w.log, "push: wake-ups delivered on retry");
        } else {
            ngx::ngx_log_error!(
                NGX_LOG_ERR,
                w.log,
                "push: wake-ups still refused; the workers will find their events at their next sweep"
            );
        }
    });
}
