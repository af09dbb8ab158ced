//! This worker process: its place in the store, the listeners it holds, and
//! the work that arrives for them (from its own senders, from other workers'
//! wake-ups, from timers, from clients that go away, from shutdown).
//!
//! Everything happens in two phases. First, under the zone lock, decide:
//! take listeners out of the registry, fix the store's counts, and collect
//! the answers owed. Then, with no lock and no borrow of the worker state,
//! write the answers: writing can run nginx code that calls back into this
//! module (a failed write runs the request's cleanup), and every request is
//! looked up again by its key before it is touched.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr;
use std::collections::HashMap;
use std::rc::Rc;

use nginx_sys::*;

use crate::answer::{self, Delivery};
use crate::listeners::{Held, Registry};
use crate::notify::{Sent, Waker};
use crate::shm::{Locked, Zone};
use crate::store::{EventKind, Seq, Wake, WorkerId};

/// What a held listener is answered.
pub enum Answer {
    Message(Rc<Delivery>),
    NotModified,
    Status(u32, &'static str),
}

pub struct Worker {
    pub zone: Zone,
    pub me: WorkerId,
    pub registry: Registry,
    /// Held requests by listener key; a request leaves it when nginx frees it
    /// or when it is answered, whichever comes first.
    live: HashMap<Seq, *mut ngx_http_request_t>,
    waker: Waker,
    sweep: Box<ngx_event_t>,
    /// Scratch lists kept between fan-outs: a round to thousands of
    /// listeners would otherwise allocate and free them every time.
    spare_answers: Vec<(Seq, Answer)>,
    spare_seqs: Vec<Seq>,
}

impl Worker {
    pub fn take_answers(&mut self) -> Vec<(Seq, Answer)> {
        core::mem::take(&mut self.spare_answers)
    }

    pub fn take_seqs(&mut self) -> Vec<Seq> {
        core::mem::take(&mut self.spare_seqs)
    }
}

struct Slot(UnsafeCell<Option<Worker>>);

// SAFETY: nginx worker processes are single-threaded as far as this module
// is concerned (it registers nothing with thread pools), so the slot is only
// ever accessed from one thread.
unsafe impl Sync for Slot {}

static WORKER: Slot = Slot(UnsafeCell::new(None));

/// Run `f` with this worker's state. `f` must not call into nginx request
/// processing (sending, finalizing), which may re-enter the module.
pub fn with<R>(f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    // SAFETY: single-threaded (see Slot), and no caller re-enters `with`
    // from inside `f`: answers are written after it returns.
    unsafe { (*WORKER.0.get()).as_mut().map(f) }
}

/// Seconds since the epoch, nginx's cached clock.
pub fn now() -> u64 {
    nginx_sys::ngx_time().max(0) as u64
}

const SWEEP_MSEC: ngx_msec_t = 1000;
const SWEEP_BUCKETS: usize = 256;

/// init_process: join the store and open this worker's wake-up socket.
///
/// # Safety
/// Called by nginx in a new worker process.
pub unsafe fn start(cycle: *mut ngx_cycle_t, shm_zone: *mut ngx_shm_zone_t) -> ngx_int_t {
    let Some(zone) = Zone::from_shm_zone(shm_zone) else {
        return NGX_OK as ngx_int_t;
    };
    let log = (*cycle).log;
    let pid = ngx_pid;
    let nonce = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i32(pid);
        h.finish()
    };
    let Some(waker) = Waker::open(pid, nonce, log, on_wake) else {
        ngx::ngx_log_error!(NGX_LOG_EMERG, log, "push: cannot open the wake-up socket");
        return NGX_ERROR as ngx_int_t;
    };
    let me = {
        let lock = zone.lock();
        // Workers that died without saying so (crash, kill -9) still hold
        // counts and messages: let them go.
        let dead: Vec<WorkerId> = lock
            .store
            .workers()
            .filter(|w| kill(w.pid, 0) != 0 && *__errno_location() == ESRCH as i32)
            .map(|w| w.id)
            .collect();
        for id in dead {
            lock.store.unregister_worker(id, now());
        }
        lock.store.register_worker(pid, nonce)
    };
    let Ok(me) = me else {
        ngx::ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "push: push_buffer_size is too small to register a worker"
        );
        return NGX_ERROR as ngx_int_t;
    };
    let mut sweep: Box<ngx_event_t> = Box::new(core::mem::zeroed());
    sweep.handler = Some(on_sweep);
    sweep.log = log;
    sweep.set_cancelable(1);
    sweep.data = ptr::null_mut();
    // SAFETY: single-threaded; nothing else holds a reference yet.
    *WORKER.0.get() = Some(Worker {
        zone,
        me,
        registry: Registry::default(),
        live: HashMap::new(),
        waker,
        sweep,
        spare_answers: Vec::new(),
        spare_seqs: Vec::new(),
    });
    with(|w| ngx_add_timer(&mut *w.sweep, SWEEP_MSEC));
    NGX_OK as ngx_int_t
}

/// exit_process: leave the store (whatever it still owed is released).
///
/// # Safety
/// Called by nginx when the worker exits.
pub unsafe fn stop() {
    release_all();
    with(|w| {
        if w.sweep.timer_set() != 0 {
            ngx_del_timer(&mut *w.sweep);
        }
        w.waker.close();
        let lock = w.zone.lock();
        lock.store.unregister_worker(w.me, now());
    });
}

/// The sweep timer: free expired messages and idle channels a bit at a time.
///
/// # Safety
/// nginx calls it with the worker's sweep event.
unsafe extern "C" fn on_sweep(ev: *mut ngx_event_t) {
    with(|w| {
        w.zone.lock().store.sweep(now(), SWEEP_BUCKETS);
    });
    if ngx_exiting == 0 && ngx_quit == 0 && ngx_terminate == 0 {
        ngx_add_timer(ev, SWEEP_MSEC);
    }
}

/// A wake-up arrived, or (with `c->close`) the worker is shutting down.
unsafe extern "C" fn on_wake(ev: *mut ngx_event_t) {
    let c = (*ev).data as *mut ngx_connection_t;
    if (*c).close() != 0 {
        // Reload or quit: answer every held listener 304 with its cursor so
        // it reconnects to a new worker at once; then stop listening.
        release_all();
        with(|w| w.waker.close());
        return;
    }
    with(|w| w.waker.drain());
    process_inbox();
}

/// Answer every held listener `304` (the worker is exiting).
pub fn release_all() {
    let answers = with(|w| {
        let all = w.registry.drain();
        let lock = w.zone.lock();
        let now = now();
        for &(serial, hash, _) in &all {
            lock.store.unlisten(hash, serial, w.me, 1, now);
        }
        all.into_iter()
            .map(|(_, _, seq)| (seq, Answer::NotModified))
            .collect::<Vec<_>>()
    });
    deliver(answers.unwrap_or_default());
}

/// Handle what other workers queued for this one.
pub fn process_inbox() {
    let answers = with(|w| {
        let zone = w.zone;
        let (answers, seqs) = catch_up(w, &mut zone.lock());
        w.spare_seqs = seqs;
        answers
    });
    deliver(answers.unwrap_or_default());
}

/// Under the lock, before anything else: take what other workers queued for
/// this one. Returns the answers owed so far and an empty scratch list.
pub fn catch_up(w: &mut Worker, lock: &mut Locked<'_>) -> (Vec<(Seq, Answer)>, Vec<Seq>) {
    let mut answers = w.take_answers();
    let mut seqs = w.take_seqs();
    take_inbox(lock, &mut w.registry, w.me, &mut answers, &mut seqs);
    seqs.clear();
    (answers, seqs)
}

/// Under the lock: turn this worker's queued events into answers. Also run
/// before this worker publishes or deletes, so that its own listeners get
/// older messages, queued by other workers, before newer ones.
fn take_inbox(
    lock: &mut Locked<'_>,
    registry: &mut Registry,
    me: WorkerId,
    answers: &mut Vec<(Seq, Answer)>,
    seqs: &mut Vec<Seq>,
) {
    let mut lost = Vec::new();
    let resync = lock.store.drain_inbox(me, |e, m| {
        seqs.clear();
        match e.kind {
            EventKind::Message { id, upto } => match m {
                Some(m) => {
                    let n = registry.take_admitted(e.serial, id, upto, seqs);
                    if n > 0 {
                        let d = Delivery::new(&m.content_type, m.body.to_vec(), m.id);
                        answers.extend(seqs.iter().map(|&s| (s, Answer::Message(d.clone()))));
                    }
                    n
                }
                None => {
                    lost.push((e.serial, e.hash));
                    0
                }
            },
            EventKind::Conflict { before } => {
                let n = registry.take_before(e.serial, before, seqs);
                answers.extend(seqs.iter().map(|&s| (s, Answer::Status(409, CONFLICT))));
                n
            }
            EventKind::Deleted => {
                let n = registry.take_all(e.serial, seqs);
                answers.extend(seqs.iter().map(|&s| (s, Answer::Status(410, GONE))));
                n
            }
        }
    });
    if resync {
        lost = registry.channels();
    }
    for (serial, hash) in lost {
        resync_channel(lock, registry, me, serial, hash, answers);
    }
}

pub const CONFLICT: &str = "409 Conflict: another listener took this channel.\n";
pub const GONE: &str = "410 Gone: the channel was deleted.\n";

/// An event for this channel was lost: answer from the store's state.
fn resync_channel(
    lock: &mut Locked<'_>,
    registry: &mut Registry,
    me: WorkerId,
    serial: u64,
    hash: u64,
    answers: &mut Vec<(Seq, Answer)>,
) {
    let mut seqs = Vec::new();
    let now = now();
    let Some(c) = lock.store.by_serial(hash, serial) else {
        registry.take_all(serial, &mut seqs);
        answers.extend(seqs.iter().map(|&s| (s, Answer::Status(410, GONE))));
        return;
    };
    let held: Vec<Held> = registry.peek(serial).to_vec();
    let mut gone = 0;
    for h in held {
        if h.yields && h.seq < c.newest_seq() {
            // A `last` conflict whose event was lost.
            registry.remove(serial, h.seq);
            gone += 1;
            answers.push((h.seq, Answer::Status(409, CONFLICT)));
        } else if let Some(m) = c.next_for(&h.cursor, now) {
            registry.remove(serial, h.seq);
            gone += 1;
            let d = Delivery::new(&m.content_type, m.body.to_vec(), m.id);
            answers.push((h.seq, Answer::Message(d)));
        }
    }
    if gone > 0 {
        lock.store.unlisten(hash, serial, me, gone, now);
    }
}

/// Wake the workers that now have something in their inbox; forget those
/// that are gone.
pub fn wake_others(targets: &[Wake]) {
    if targets.is_empty() {
        return;
    }
    let gone: Vec<Wake> = with(|w| {
        targets
            .iter()
            .filter(|t| w.waker.send(t.pid, t.nonce) == Sent::Gone)
            .copied()
            .collect()
    })
    .unwrap_or_default();
    if gone.is_empty() {
        return;
    }
    with(|w| {
        let lock = w.zone.lock();
        for g in gone {
            if lock.store.workers().any(|x| x == g) {
                lock.store.unregister_worker(g.id, now());
            }
        }
    });
}

/// Per-request state of a held listener (in the request pool).
#[repr(C)]
pub struct HeldCtx {
    pub seq: Seq,
    pub serial: u64,
    pub hash: u64,
    /// `push_listener_timeout`, allocated only when one is configured: most
    /// held requests never need the ~100 bytes of an event.
    pub timer: *mut ngx_event_t,
    pub origin: ngx_str_t,
    pub has_origin: bool,
}

impl HeldCtx {
    /// # Safety
    /// `timer`, when set, is the event `park` allocated in the same pool.
    unsafe fn cancel_timer(&mut self) {
        if !self.timer.is_null() && (*self.timer).timer_set() != 0 {
            ngx_del_timer(self.timer);
        }
    }

    pub fn origin(&self) -> Option<&[u8]> {
        if self.has_origin {
            Some(self.origin.as_bytes())
        } else {
            None
        }
    }
}

/// Park `r`: the module answers it later.
///
/// # Safety
/// `r` is the main request being handled by the listener content handler,
/// which returns NGX_DONE right after.
pub unsafe fn park(
    r: *mut ngx_http_request_t,
    held: Held,
    serial: u64,
    hash: u64,
    origin: Option<&[u8]>,
    timeout: ngx_msec_t,
) -> Result<(), ()> {
    let seq = held.seq;
    let ctx = ngx_pcalloc((*r).pool, core::mem::size_of::<HeldCtx>()) as *mut HeldCtx;
    let cln = ngx_http_cleanup_add(r, 0);
    if ctx.is_null() || cln.is_null() {
        return Err(());
    }
    (*ctx).seq = seq;
    (*ctx).serial = serial;
    (*ctx).hash = hash;
    if let Some(o) = origin {
        (*ctx).has_origin = true;
        (*ctx).origin = ngx_str_t {
            len: o.len(),
            data: o.as_ptr() as *mut u8,
        };
    }
    (*cln).handler = Some(held_cleanup);
    (*cln).data = ctx as *mut c_void;
    let set = &mut *(*r).ctx.add(crate::module().ctx_index);
    *set = ctx as *mut c_void;
    with(|w| {
        w.live.insert(seq, r);
        w.registry.hold(hash, serial, held);
    });
    if timeout > 0 {
        let t = ngx_pcalloc((*r).pool, core::mem::size_of::<ngx_event_t>()) as *mut ngx_event_t;
        if t.is_null() {
            return Err(());
        }
        (*t).handler = Some(held_timeout);
        (*t).data = r as *mut c_void;
        (*t).log = (*(*r).connection).log;
        (*t).set_cancelable(1);
        ngx_add_timer(t, timeout);
        (*ctx).timer = t;
    }
    // Notice a client that goes away while held.
    (*r).read_event_handler = Some(ngx_http_test_reading);
    (*r).write_event_handler = Some(ngx_http_request_empty_handler);
    (*(*r).main).set_count((*(*r).main).count() + 1);
    Ok(())
}

/// The request is being freed (answered, aborted, or the connection died).
unsafe extern "C" fn held_cleanup(data: *mut c_void) {
    // SAFETY: `data` is the HeldCtx in the request's pool, still valid while
    // the request's cleanups run.
    let ctx = &mut *(data as *mut HeldCtx);
    ctx.cancel_timer();
    with(|w| {
        w.live.remove(&ctx.seq);
        if w.registry.remove(ctx.serial, ctx.seq).is_some() {
            w.zone
                .lock()
                .store
                .unlisten(ctx.hash, ctx.serial, w.me, 1, now());
        }
    });
}

/// `push_listener_timeout` passed: `304`, cursor echoed.
unsafe extern "C" fn held_timeout(ev: *mut ngx_event_t) {
    let r = (*ev).data as *mut ngx_http_request_t;
    let ctx = &*((*(*r).ctx.add(crate::module().ctx_index)) as *const HeldCtx);
    let seq = ctx.seq;
    let (serial, hash) = (ctx.serial, ctx.hash);
    let taken = with(|w| {
        let taken = w.registry.remove(serial, seq).is_some();
        if taken {
            w.zone.lock().store.unlisten(hash, serial, w.me, 1, now());
        }
        taken
    });
    if taken == Some(true) {
        deliver(vec![(seq, Answer::NotModified)]);
    }
}

/// Write the answers owed to held listeners, each looked up again first.
pub fn deliver(mut answers: Vec<(Seq, Answer)>) {
    for (seq, answer) in answers.drain(..) {
        answer_one(seq, &answer);
    }
    with(|w| {
        if answers.capacity() > w.spare_answers.capacity() {
            w.spare_answers = answers;
        }
    });
}

/// Write one answer to every listener of `seqs` (a fan-out).
pub fn deliver_all(mut seqs: Vec<Seq>, answer: Answer) {
    for &seq in &seqs {
        answer_one(seq, &answer);
    }
    seqs.clear();
    with(|w| {
        if seqs.capacity() > w.spare_seqs.capacity() {
            w.spare_seqs = seqs;
        }
    });
}

fn answer_one(seq: Seq, answer: &Answer) {
    let Some(Some(r)) = with(|w| w.live.remove(&seq)) else {
        return;
    };
    // SAFETY: `r` was in the live table, so nginx has not freed it: its
    // cleanup removes it from there first. It is a parked main request.
    unsafe { answer_parked(r, answer) };
}

/// # Safety
/// `r` is a live parked request of this module.
unsafe fn answer_parked(r: *mut ngx_http_request_t, answer: &Answer) {
    let ctx = &mut *((*(*r).ctx.add(crate::module().ctx_index)) as *mut HeldCtx);
    ctx.cancel_timer();
    let c = (*r).connection;
    // In the request pool (or static): valid while `r` is.
    let origin = ctx.origin();
    let rc = match answer {
        Answer::Message(d) => answer::message(r, d, origin),
        Answer::NotModified => answer::not_modified(r, origin),
        Answer::Status(s, reason) => match answer::cors(r, origin) {
            Some(()) => answer::status(r, *s, reason, &[]),
            None => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        },
    };
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}
