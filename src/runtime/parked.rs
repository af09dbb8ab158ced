//! The requests this worker holds for the relay: parking one, noticing its
//! client leave, its timeout, and finding it again by key to answer it.
//!
//! Lists that outlive a call into nginx hold keys, never request pointers:
//! the table here is the only way from a key to a request, and a request
//! leaves it (in its cleanup) before nginx frees it.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use std::collections::HashMap;

use nginx_sys::{
    ngx_add_timer, ngx_del_timer, ngx_event_t, ngx_http_cleanup_add,
    ngx_http_request_empty_handler, ngx_http_request_t, ngx_http_test_reading, ngx_msec_t,
    ngx_pcalloc, ngx_str_t,
};
use push_relay::registry::{ChanKey, Key};
use push_relay::transport::Transport;

use super::faults;
use super::ops::{self, Out};
use super::worker::with;
use crate::conf::Store;
use crate::http::request::Req;

/// Held requests by key.
#[derive(Default)]
pub struct Parked {
    map: HashMap<Key, NonNull<ngx_http_request_t>>,
}

impl Parked {
    pub fn get(&self, key: Key) -> Option<*mut ngx_http_request_t> {
        self.map.get(&key).map(|r| r.as_ptr())
    }

    pub fn remove(&mut self, key: Key) -> Option<*mut ngx_http_request_t> {
        self.map.remove(&key).map(|r| r.as_ptr())
    }
}

/// A held listener's state, in its request's pool (the module's ctx).
#[derive(Clone, Copy)]
pub struct HeldCtx {
    pub key: Key,
    pub chan: ChanKey,
    /// The store whose relay holds it.
    pub store: Store,
    pub transport: Transport,
    /// `push_listener_timeout`, allocated only when one is set: most held
    /// requests never need the ~100 bytes of an event.
    timer: *mut ngx_event_t,
    /// `push_allow_origin` evaluated at arrival, in the request's pool.
    origin: ngx_str_t,
    has_origin: bool,
    /// A stream's state (its transport's), and how to release it when the
    /// request goes.
    pub stream: *mut c_void,
    release: Option<unsafe fn(*mut c_void)>,
}

impl HeldCtx {
    /// The request's origin for CORS headers (pool memory of the request
    /// this ctx belongs to).
    pub fn origin<'r>(&self, _req: Req<'r>) -> Option<&'r [u8]> {
        // SAFETY: `origin` points into the pool of the request `_req`
        // handles, which lives for 'r.
        self.has_origin
            .then(|| unsafe { core::slice::from_raw_parts(self.origin.data, self.origin.len) })
    }

    pub fn cancel_timer(&self) {
        // SAFETY: null, or the event `park` allocated in the same pool.
        if let Some(t) = unsafe { self.timer.as_mut() } {
            if t.timer_set() != 0 {
                // SAFETY: an armed timer of this worker.
                unsafe { ngx_del_timer(t) };
            }
        }
    }
}

/// The held-listener state of a parked request.
pub fn ctx(req: Req<'_>) -> Option<HeldCtx> {
    req.ctx::<HeldCtx>()
}

/// What parking a request needs.
pub struct Parking<'a> {
    pub key: Key,
    pub chan: ChanKey,
    pub store: Store,
    pub transport: Transport,
    pub origin: Option<&'a [u8]>,
    /// `push_listener_timeout` of a poll (a stream keeps its own timer).
    pub timeout_ms: u64,
    /// A stream's state, released by `release` when the request goes.
    pub stream: *mut c_void,
    pub release: Option<unsafe fn(*mut c_void)>,
}

/// Park `req`, held in the relay as `p.key` on `p.chan`: the module
/// answers it later. On failure nothing of it is left in this worker's
/// table, and the caller must forget it in the relay.
pub fn park(req: Req<'_>, p: Parking<'_>) -> Result<(), ()> {
    let Parking {
        key,
        chan,
        store,
        transport,
        origin,
        timeout_ms,
        stream,
        release,
    } = p;
    if faults::park_fails() {
        return Err(());
    }
    let r = req.raw();
    let mut timer = ptr::null_mut();
    // SAFETY: allocations from the live request's pool and a cleanup of the
    // request, all made before anything is registered.
    let cln = unsafe {
        if timeout_ms > 0 {
            timer = ngx_pcalloc(req.get().pool, core::mem::size_of::<ngx_event_t>())
                .cast::<ngx_event_t>();
            if timer.is_null() {
                return Err(());
            }
        }
        ngx_http_cleanup_add(r, 0)
    };
    if cln.is_null() {
        return Err(());
    }
    let held = HeldCtx {
        key,
        chan,
        store,
        transport,
        timer,
        origin: origin.map_or(ngx_str_t::default(), |o| ngx_str_t {
            len: o.len(),
            data: o.as_ptr().cast_mut(),
        }),
        has_origin: origin.is_some(),
        stream,
        release,
    };
    req.set_ctx(held).ok_or(())?;
    // SAFETY: the cleanup just added; the timer event is ours, in the
    // request's pool; the request's handlers and count are nginx's own
    // fields of this live main request.
    unsafe {
        (*cln).handler = Some(cleanup);
        (*cln).data = r.cast::<c_void>();
        if let Some(t) = timer.as_mut() {
            t.handler = Some(on_timeout);
            t.data = r.cast::<c_void>();
            t.log = (*req.get().connection).log;
            t.set_cancelable(1);
            ngx_add_timer(t, timeout_ms as ngx_msec_t);
        }
        // Notice a client that goes away while held.
        let f = req.fields();
        f.read_event_handler = Some(ngx_http_test_reading);
        f.write_event_handler = Some(ngx_http_request_empty_handler);
        let main = &mut *f.main;
        main.set_count(main.count() + 1);
    }
    with(|w| w.parked.map.insert(key, NonNull::from(req.fields())));
    Ok(())
}

/// The request is being freed (answered, aborted, or its connection died).
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: `data` is the request, still valid while its cleanups run.
    let Some(ctx) = (unsafe { Req::new(data.cast()) }).and_then(ctx) else {
        return;
    };
    ctx.cancel_timer();
    with(|w| w.parked.remove(ctx.key));
    ops::forget(ctx.store, ctx.chan, ctx.key);
    if let Some(release) = ctx.release {
        // SAFETY: the stream state its transport registered with `park`,
        // released once, here, as the request goes.
        unsafe { release(ctx.stream) };
    }
}

/// `push_listener_timeout` passed.
unsafe extern "C" fn on_timeout(ev: *mut ngx_event_t) {
    // SAFETY: the timer `park` armed; its data is the (live: the cleanup
    // disarms it) request.
    let Some(req) = (unsafe { Req::new((*ev).data.cast()) }) else {
        return;
    };
    let Some(ctx) = ctx(req) else {
        return;
    };
    let (chan, key) = (ctx.chan, ctx.key);
    if ops::forget(ctx.store, chan, key) {
        ops::deliver(key, Out::Ended);
    }
}
