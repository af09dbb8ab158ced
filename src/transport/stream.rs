//! What EventSource and WebSocket streams share: an output queue of frames
//! written through nginx's filters without copying (each buffer points into
//! a frame its owner keeps alive until nginx has sent it), the bound on
//! what one client may have queued (`push_listener_max_pending`), and one
//! timer for the idle timeout and the keep-alive pings.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use std::collections::VecDeque;
use std::rc::Rc;

use nginx_sys::{
    ngx_add_timer, ngx_alloc_chain_link, ngx_buf_t, ngx_chain_t, ngx_current_msec, ngx_del_timer,
    ngx_event_t, ngx_http_output_filter, ngx_http_request_t, ngx_int_t, ngx_msec_t, ngx_pcalloc,
    NGX_ERROR,
};
use push_relay::conf::ListenerRules;
use push_relay::delivery::Delivery;
use push_relay::outcome::Level;

use crate::http::request::Req;
use crate::runtime::ops::{self, Out};
use crate::runtime::parked;

/// Who keeps a queued frame's bytes alive (held for its drop).
#[allow(dead_code)]
pub enum Owner {
    Static,
    Shared(Rc<Delivery>),
    Own(Vec<u8>),
}

/// Why a write did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// nginx could not write (the connection failed).
    Failed,
    /// The client reads too slowly: more than `max_pending` is queued.
    TooSlow(usize),
}

/// Buffers handed to nginx, oldest first, with the owners of their bytes.
/// The oldest is kept inline: a stream whose writes go out at once (the
/// common case) never allocates its queue, so an idle stream holds none.
#[derive(Default)]
struct Sent {
    head: Option<(NonNull<ngx_chain_t>, Owner)>,
    rest: VecDeque<(NonNull<ngx_chain_t>, Owner)>,
}

impl Sent {
    fn push_back(&mut self, e: (NonNull<ngx_chain_t>, Owner)) {
        if self.head.is_none() {
            self.head = Some(e);
        } else {
            self.rest.push_back(e);
        }
    }

    fn front(&self) -> Option<&(NonNull<ngx_chain_t>, Owner)> {
        self.head.as_ref()
    }

    fn pop_front(&mut self) -> Option<(NonNull<ngx_chain_t>, Owner)> {
        let e = self.head.take();
        self.head = self.rest.pop_front();
        e
    }
}

/// The whole span of a queued buffer (`start..end`; null for an empty one).
///
/// # Safety
/// `cl` is a queued link of a stream, with its buffer.
unsafe fn span(cl: NonNull<ngx_chain_t>) -> (usize, usize) {
    // SAFETY: the caller's contract.
    let b = unsafe { &*(*cl.as_ptr()).buf };
    (b.start as usize, b.end as usize)
}

pub struct Stream {
    sent: Sent,
    /// The bytes of every buffer in `sent`, sent or not.
    queued: usize,
    /// Links (each with its buffer) that nginx is done with, chained
    /// through their own `next` (no allocation).
    free: *mut ngx_chain_t,
    max_pending: usize,
    idle_ms: ngx_msec_t,
    ping_ms: ngx_msec_t,
    ping: &'static [u8],
    last_out: ngx_msec_t,
    last_msg: ngx_msec_t,
    /// Allocated only when a timeout or a ping is configured.
    timer: *mut ngx_event_t,
    /// Set once its end is written: nothing more is sent.
    ended: bool,
}

fn now_ms() -> ngx_msec_t {
    // SAFETY: nginx's cached clock, updated by this thread's event loop.
    unsafe { ngx_current_msec }
}

impl Stream {
    /// A stream for `req`, with its timer (in the request's pool) if
    /// `rules` set a timeout or a ping; `ping` is the transport's
    /// keep-alive frame. The caller keeps it in the request's pool.
    pub fn new(req: Req<'_>, rules: &ListenerRules, ping: &'static [u8]) -> Option<Stream> {
        let mut timer = ptr::null_mut();
        if rules.timeout_ms > 0 || rules.ping_ms > 0 {
            // SAFETY: an event from the live request's pool, armed only while
            // the stream lives (its release disarms it).
            unsafe {
                timer = ngx_pcalloc(req.get().pool, core::mem::size_of::<ngx_event_t>())
                    .cast::<ngx_event_t>();
                let t = timer.as_mut()?;
                t.handler = Some(on_timer);
                t.data = req.raw().cast::<c_void>();
                t.log = (*req.get().connection).log;
                t.set_cancelable(1);
            }
        }
        let now = now_ms();
        Some(Stream {
            sent: Sent::default(),
            queued: 0,
            free: ptr::null_mut(),
            max_pending: rules.max_pending,
            idle_ms: rules.timeout_ms as ngx_msec_t,
            ping_ms: rules.ping_ms as ngx_msec_t,
            ping,
            last_out: now,
            last_msg: now,
            timer,
            ended: false,
        })
    }

    /// Arm the timer for the earlier of the idle timeout and the next ping.
    pub fn schedule(&mut self) {
        // SAFETY: null or this stream's timer, in its request's pool.
        let Some(t) = (unsafe { self.timer.as_mut() }) else {
            return;
        };
        let now = now_ms();
        let mut next = ngx_msec_t::MAX;
        if self.idle_ms > 0 {
            next = next.min((self.last_msg + self.idle_ms).saturating_sub(now));
        }
        if self.ping_ms > 0 {
            next = next.min((self.last_out + self.ping_ms).saturating_sub(now));
        }
        if t.timer_set() != 0 {
            // SAFETY: an armed timer of this worker.
            unsafe { ngx_del_timer(t) };
        }
        // SAFETY: as above; a cancelable timer does not hold an exiting worker.
        unsafe { ngx_add_timer(t, next.max(1)) };
    }

    pub fn stop_timer(&mut self) {
        // SAFETY: null or this stream's timer.
        if let Some(t) = unsafe { self.timer.as_mut() } {
            if t.timer_set() != 0 {
                // SAFETY: an armed timer of this worker.
                unsafe { ngx_del_timer(t) };
            }
        }
    }

    /// A message was written: the idle timeout restarts.
    pub fn note_message(&mut self) {
        self.last_msg = now_ms();
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Queue `bytes` (kept alive by `owner`) and flush; `last` ends the
    /// response.
    pub fn write(
        &mut self,
        req: Req<'_>,
        bytes: &[u8],
        owner: Owner,
        last: bool,
    ) -> Result<(), Broken> {
        if self.ended {
            return Ok(());
        }
        let cl = self.link(req).ok_or(Broken::Failed)?;
        // SAFETY: a link and buffer of this request's pool that nginx is not
        // using (new, or consumed and reaped); the bytes stay alive with
        // `owner`, which stays queued until nginx has sent them.
        let rc = unsafe {
            let b = &mut *(*cl.as_ptr()).buf;
            ptr::write(b, core::mem::zeroed::<ngx_buf_t>());
            if !bytes.is_empty() {
                b.pos = bytes.as_ptr().cast_mut();
                b.last = b.pos.add(bytes.len());
                b.start = b.pos;
                b.end = b.last;
                b.set_memory(1);
            }
            b.set_flush(1);
            if last {
                b.set_last_buf(if req.is_main() { 1 } else { 0 });
                b.set_last_in_chain(1);
            }
            (*cl.as_ptr()).next = ptr::null_mut();
            self.sent.push_back((cl, owner));
            self.queued += bytes.len();
            ngx_http_output_filter(req.raw(), cl.as_ptr())
        };
        self.last_out = now_ms();
        if last {
            self.ended = true;
        }
        self.after_output(rc)
    }

    /// Queue a frame built for this stream alone (it owns its bytes).
    pub fn write_vec(&mut self, req: Req<'_>, v: Vec<u8>, last: bool) -> Result<(), Broken> {
        // SAFETY: the vector's heap buffer, which does not move when the
        // vector moves into the queue, where it stays until nginx has sent
        // it.
        let bytes = unsafe { core::slice::from_raw_parts(v.as_ptr(), v.len()) };
        self.write(req, bytes, Owner::Own(v), last)
    }

    /// nginx wrote what it could: take back what it is done with, and
    /// check the bound.
    fn after_output(&mut self, rc: ngx_int_t) -> Result<(), Broken> {
        if rc == NGX_ERROR as ngx_int_t {
            return Err(Broken::Failed);
        }
        let pending = self.reap();
        if pending > self.max_pending && !self.ended {
            return Err(Broken::TooSlow(pending));
        }
        Ok(())
    }

    /// Release the front buffers nginx has sent; what is still queued.
    /// nginx sends them in order, so only the front one can be partly
    /// sent: no walk over the queue of a slow reader.
    fn reap(&mut self) -> usize {
        // SAFETY: every queued link's buffer is ours, in the request pool.
        unsafe {
            while let Some(&(cl, _)) = self.sent.front() {
                let b = &*(*cl.as_ptr()).buf;
                // The empty last buffer is never reused: nginx may still
                // hold it in its queue.
                if b.pos != b.last || b.last_buf() != 0 {
                    let (start, _) = span(cl);
                    return self.queued - (b.pos as usize).saturating_sub(start);
                }
                let (start, end) = span(cl);
                self.queued -= end - start;
                if let Some((cl, owner)) = self.sent.pop_front() {
                    drop(owner);
                    (*cl.as_ptr()).next = self.free;
                    self.free = cl.as_ptr();
                }
            }
            self.queued
        }
    }

    fn link(&mut self, req: Req<'_>) -> Option<NonNull<ngx_chain_t>> {
        if let Some(cl) = NonNull::new(self.free) {
            // SAFETY: a link of our free list (nginx is done with it).
            self.free = unsafe { (*cl.as_ptr()).next };
            return Some(cl);
        }
        let pool = req.get().pool;
        // SAFETY: a chain link and a buffer from the live request's pool.
        unsafe {
            let cl = NonNull::new(ngx_alloc_chain_link(pool))?;
            let b = ngx_pcalloc(pool, core::mem::size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
            if b.is_null() {
                return None;
            }
            (*cl.as_ptr()).buf = b;
            Some(cl)
        }
    }

    /// The transport's keep-alive.
    fn ping(&mut self, req: Req<'_>) -> Result<(), Broken> {
        self.write(req, self.ping, Owner::Static, false)
    }
}

/// `parked`'s release hook of a stream: drop its queue (and the frames it
/// kept alive) as its request goes; nginx sends nothing more for it.
///
/// # Safety
/// `p` is a stream kept in its request's pool, released once.
pub unsafe fn release(p: *mut c_void) {
    // SAFETY: the caller's contract; the pool memory itself goes with the
    // pool.
    unsafe {
        let s = p.cast::<Stream>();
        (*s).stop_timer();
        ptr::drop_in_place(s);
    }
}

/// The stream of a parked request (every stream transport's state starts
/// with its `Stream`).
pub fn of<'r>(req: Req<'r>) -> Option<&'r mut Stream> {
    let ctx = parked::ctx(req)?;
    // SAFETY: set by a stream transport with `park`: a `Stream`, or a
    // `repr(C)` state whose first field is one; it lives in the request's
    // pool until `release`, and is used from one callback at a time.
    unsafe { ctx.stream.cast::<Stream>().as_mut() }
}

/// Log why a stream was cut and end the request at once.
pub fn abort(req: Req<'_>, why: Broken) {
    if let Broken::TooSlow(pending) = why {
        req.log(
            Level::Info,
            &format!(
                "stream ended: its client reads too slowly ({pending} bytes queued, over push_listener_max_pending)"
            ),
        );
    }
    if let Some(ctx) = parked::ctx(req) {
        ops::forget(ctx.store, ctx.chan, ctx.key);
        crate::runtime::worker::with(|w| w.parked.remove(ctx.key));
    }
    if let Some(s) = of(req) {
        s.stop_timer();
        s.ended = true;
    }
    req.finalize_parked(NGX_ERROR as ngx_int_t);
}

/// The write handler of a stream's request: nginx can write again.
pub unsafe extern "C" fn on_write(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls it with the live request this handler was set on.
    let Some(req) = (unsafe { Req::new(r) }) else {
        return;
    };
    let Some(s) = of(req) else {
        return;
    };
    // SAFETY: a live request; a null chain only pushes what is queued.
    let rc = unsafe { ngx_http_output_filter(r, ptr::null_mut()) };
    if let Err(why) = s.after_output(rc) {
        abort(req, why);
    }
}

/// The stream's timer: the idle timeout or the next ping.
unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: the timer `new_in` armed; its data is the request, live (its
    // release disarms it).
    let Some(req) = (unsafe { Req::new((*ev).data.cast()) }) else {
        return;
    };
    let (Some(ctx), Some(s)) = (parked::ctx(req), of(req)) else {
        return;
    };
    let now = now_ms();
    if s.idle_ms > 0 && now.wrapping_sub(s.last_msg) >= s.idle_ms {
        // `push_listener_timeout` with no message: the stream ends.
        if ops::forget(ctx.store, ctx.chan, ctx.key) {
            ops::deliver(ctx.key, Out::Ended);
        }
        return;
    }
    if s.ping_ms > 0 && now.wrapping_sub(s.last_out) >= s.ping_ms {
        if let Err(why) = s.ping(req) {
            abort(req, why);
            return;
        }
    }
    s.schedule();
}
