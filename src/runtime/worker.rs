//! This worker process: its place in the store, the listeners it holds, its
//! timers, and the work that arrives for its listeners from other workers'
//! wake-ups and from shutdown.
//!
//! The worker's state lives in a thread-local slot borrowed through
//! [`with`]: nginx runs every callback of the module on the worker's one
//! thread, and a callback that re-enters the module while the state is
//! borrowed gets `None` instead of a second `&mut` (answers are therefore
//! written with no borrow held: writing runs nginx code that can call back,
//! a failed write runs the request's cleanup).

use core::cell::RefCell;

use nginx_sys::{
    __errno_location, kill, ngx_add_timer, ngx_connection_t, ngx_del_timer, ngx_event_t,
    ngx_exiting, ngx_int_t, ngx_log_t, ngx_msec_t, ngx_pid, ngx_quit, ngx_shm_zone_t,
    ngx_terminate, ngx_time, ESRCH, NGX_ERROR, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_OK,
};
use push_relay::backend::{Backend, Step};
use push_relay::relay::{Effects, Relay};
use push_relay::zone::{Wake, WorkerId};

use super::faults;
use super::ops::{self, Deliver};
use super::parked::Parked;
use super::redis::RedisConn;
use super::wakeup::Waker;
use super::zone::Zone;
use crate::conf::MainConf;

pub struct Worker {
    pub zone: Zone,
    pub me: WorkerId,
    /// The listeners of zone channels held here, with their counts.
    pub relay: Relay,
    pub parked: Parked,
    pub waker: Waker,
    /// Wake-ups the kernel refused, to send again.
    pub rewake: Vec<Wake>,
    pub rewake_tries: u32,
    pub rewake_timer: Box<ngx_event_t>,
    sweep: Box<ngx_event_t>,
    /// Scratch lent to each operation, so fan-outs reuse its lists.
    pub fx: Effects,
    pub log: *mut ngx_log_t,
    /// How answers reach held listeners (the transports).
    pub deliver: Deliver,
    /// One connection per `push_redis` server (boxed: their events point
    /// into them).
    #[allow(clippy::vec_box)] // nginx keeps pointers into each: they must not move
    pub redis: Vec<Box<RedisConn>>,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Run `f` with this worker's state; `None` when the module has no zone in
/// this worker, or when called from inside another `with`.
pub fn with<R>(f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    WORKER.with(|slot| {
        let mut state = slot.try_borrow_mut().ok()?;
        state.as_mut().map(f)
    })
}

/// Seconds since the epoch, nginx's cached clock.
pub fn now() -> u64 {
    // SAFETY: reads nginx's cached time, updated by this thread's loop.
    ngx_time().max(0) as u64
}

/// Is this worker shutting down (reload, quit)?
pub fn exiting() -> bool {
    // SAFETY: nginx's process flags, written by this thread's signal
    // handling between events.
    unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 }
}

/// Free expired messages and idle channels a bit at a time, and look at the
/// inbox in case a wake-up was lost.
const SWEEP_MSEC: ngx_msec_t = 1000;
const SWEEP_BUCKETS: usize = 256;

fn timer(handler: unsafe extern "C" fn(*mut ngx_event_t), log: *mut ngx_log_t) -> Box<ngx_event_t> {
    // SAFETY: an all-zero ngx_event_t is nginx's own initial state for one.
    let mut ev: Box<ngx_event_t> = Box::new(unsafe { core::mem::zeroed() });
    ev.handler = Some(handler);
    ev.log = log;
    // A cancelable timer does not keep an exiting worker alive.
    ev.set_cancelable(1);
    ev
}

/// Arm `ev` if it is not armed.
pub fn arm(ev: &mut ngx_event_t, msec: ngx_msec_t) {
    if ev.timer_set() == 0 {
        // SAFETY: an event owned by the worker state, alive until `stop`.
        unsafe { ngx_add_timer(ev, msec) };
    }
}

fn disarm(ev: &mut ngx_event_t) {
    if ev.timer_set() != 0 {
        // SAFETY: as in `arm`.
        unsafe { ngx_del_timer(ev) };
    }
}

/// init_process: join the store and open this worker's wake-up socket.
///
/// # Safety
/// Called by nginx in a new worker process, with the cycle's log and this
/// module's zone.
pub unsafe fn start(
    log: *mut ngx_log_t,
    shm_zone: *mut ngx_shm_zone_t,
    mcf: &MainConf,
    host: &[u8],
    deliver: Deliver,
) -> ngx_int_t {
    // SAFETY: the caller's contract.
    let Some(zone) = (unsafe { Zone::of(shm_zone) }) else {
        return NGX_OK as ngx_int_t;
    };
    faults::load();
    // SAFETY: nginx's pid of this process, set before init_process.
    let pid = unsafe { ngx_pid };
    let nonce = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i32(pid);
        h.finish()
    };
    // SAFETY: in init_process, with the cycle's log.
    let Some(waker) = (unsafe { Waker::open(pid, nonce, log, on_wake) }) else {
        ngx::ngx_log_error!(NGX_LOG_EMERG, log, "push: cannot open the wake-up socket");
        return NGX_ERROR as ngx_int_t;
    };
    let me = {
        let lock = zone.lock();
        // Workers that died without saying so (crash, kill -9) still hold
        // counts and messages: let them go.
        let dead: Vec<Wake> = lock.store.workers().filter(|w| !alive(w.pid)).collect();
        for w in dead {
            lock.store.unregister_worker(w.id, now());
            ngx::ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "push: worker process {} is gone; its listeners and owed messages are released",
                w.pid
            );
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
    let installed = WORKER.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        *slot = Some(Worker {
            zone,
            me,
            relay: Relay::default(),
            parked: Parked::default(),
            waker,
            rewake: Vec::new(),
            rewake_tries: 0,
            rewake_timer: timer(ops::on_rewake, log),
            sweep: timer(on_sweep, log),
            fx: Effects::default(),
            log,
            deliver,
            redis: Vec::new(),
        });
        let w = slot.as_mut()?;
        w.fx.copies.make_room();
        arm(&mut w.sweep, SWEEP_MSEC);
        // This worker among all workers of all servers sharing a Redis.
        let id = format!("{}/{pid}/{nonce:x}", String::from_utf8_lossy(host));
        for (ep, e) in mcf.endpoints.iter().enumerate() {
            w.redis.push(RedisConn::new(ep, e, mcf, &id, log));
        }
        Some(())
    });
    if installed.is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    // Connect once the slot is in place (completions look it up).
    let n = with(|w| w.redis.len()).unwrap_or(0);
    for ep in 0..n {
        with(|w| w.redis[ep].start(ep));
    }
    NGX_OK as ngx_int_t
}

/// Does process `pid` exist?
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks; errno is thread-local.
    unsafe { kill(pid, 0) == 0 || *__errno_location() != ESRCH as i32 }
}

/// exit_process: answer what is still held and leave the store (whatever
/// the worker still owed is released).
pub fn stop() {
    release_all();
    with(|w| {
        disarm(&mut w.sweep);
        disarm(&mut w.rewake_timer);
        for c in &mut w.redis {
            c.stop();
        }
        w.waker.close();
        w.zone.lock().store.unregister_worker(w.me, now());
    });
}

/// The sweep timer.
unsafe extern "C" fn on_sweep(ev: *mut ngx_event_t) {
    with(|w| w.zone.lock().store.sweep(now(), SWEEP_BUCKETS));
    ops::catch_up();
    if !exiting() {
        // SAFETY: the worker's sweep event, which nginx just fired.
        arm(unsafe { &mut *ev }, SWEEP_MSEC);
    }
}

/// A wake-up arrived, or (with `c->close`) the worker is shutting down.
unsafe extern "C" fn on_wake(ev: *mut ngx_event_t) {
    // SAFETY: the wake-up connection's read event; its data is the
    // connection.
    let closing = unsafe { (*(*ev).data.cast::<ngx_connection_t>()).close() != 0 };
    if closing {
        // Reload or quit: every held listener ends now, so it reconnects to
        // a new worker at once; then stop listening.
        release_all();
        with(|w| w.waker.close());
        return;
    }
    with(|w| w.waker.drain());
    ops::catch_up();
}

/// Every held listener ends (the worker is exiting), in the zone and in
/// every Redis; what Redis must be told is sent at once.
pub fn release_all() {
    let now = now();
    if let Some(((), fx)) = ops::zone(|b, fx| {
        b.release_all(now, fx);
        Step::Ready(())
    }) {
        ops::finish(fx, None);
    }
    let n = with(|w| w.redis.len()).unwrap_or(0);
    for ep in 0..n {
        let fx = with(|w| {
            let mut fx = Effects::default();
            let c = &mut w.redis[ep];
            c.backend.scope(0).release_all(now, &mut fx);
            c.flush();
            fx
        });
        if let Some(fx) = fx {
            ops::finish(fx, None);
        }
    }
}
