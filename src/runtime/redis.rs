//! This worker's connections to Redis, one per `push_redis` server, in
//! nginx's own event loop: the outbound connection (nginx's
//! `ngx_event_connect_peer`), its read and write handlers, and the timers
//! for reconnection, heartbeats and command timeouts. The protocol is
//! `push_relay::redis` (sans-IO): this file only moves its bytes, tells it
//! the time, and hands what it completes to the requests waiting on it.

use core::ffi::{c_int, c_void};
use core::ptr;
use std::collections::HashMap;

use nginx_sys::{
    getsockopt, ngx_add_timer, ngx_close_connection, ngx_connection_t, ngx_current_msec,
    ngx_del_timer, ngx_event_connect_peer, ngx_event_get_peer, ngx_event_t, ngx_handle_read_event,
    ngx_handle_write_event, ngx_int_t, ngx_log_t, ngx_msec_t, ngx_peer_connection_t, ngx_str_t,
    socklen_t, NGX_AGAIN, NGX_ERROR, NGX_OK, SOL_SOCKET, SO_ERROR,
};
use push_relay::backend::OpId;
use push_relay::redis::backend::{Completion, RedisBackend, RedisConfig, COUNTS_MS, KEYS_ABOVE};
use push_relay::relay::Effects;

use super::ops;
use super::waiting::{self, Waiter};
use super::worker::with;
use crate::conf::{Endpoint, MainConf, RedisAddr};
use crate::http::response::ngx_level;

/// Each endpoint's listeners get keys from their own range.
const KEY_RANGE_BITS: u32 = 48;

pub struct RedisConn {
    pub backend: RedisBackend,
    addr: RedisAddr,
    name: ngx_str_t,
    peer: ngx_peer_connection_t,
    /// Null when there is no connection.
    conn: *mut ngx_connection_t,
    connecting: bool,
    heartbeat_ms: ngx_msec_t,
    watch_ms: ngx_msec_t,
    retry: ngx_event_t,
    beat: ngx_event_t,
    watch: ngx_event_t,
    /// Sends the coalesced count changes of this worker's listeners.
    counts: ngx_event_t,
    /// Requests whose operation is in flight.
    pub waiting: HashMap<OpId, Waiter>,
    read_buf: Vec<u8>,
    log: *mut ngx_log_t,
    /// What a connect that failed at once left to carry out (it happens
    /// inside a borrow of the worker).
    pending_after: Option<(Vec<(OpId, Completion)>, Effects)>,
    /// Commands and reconnections as last added to the totals.
    reported: (u64, u64),
}

fn now_ms() -> u64 {
    // SAFETY: nginx's cached clock, updated by this thread's event loop.
    unsafe { ngx_current_msec as u64 }
}

fn timer(
    handler: unsafe extern "C" fn(*mut ngx_event_t),
    ep: usize,
    log: *mut ngx_log_t,
) -> ngx_event_t {
    // SAFETY: an all-zero event is nginx's own initial state for one.
    let mut ev: ngx_event_t = unsafe { core::mem::zeroed() };
    ev.handler = Some(handler);
    ev.data = ep as *mut c_void;
    ev.log = log;
    // Cancelable: it does not keep an exiting worker alive.
    ev.set_cancelable(1);
    ev
}

fn arm(ev: &mut ngx_event_t, msec: u64) {
    if ev.timer_set() != 0 {
        // SAFETY: an armed timer of this worker.
        unsafe { ngx_del_timer(ev) };
    }
    // SAFETY: an event owned by the worker's (boxed, never moved) state.
    unsafe { ngx_add_timer(ev, msec.max(1) as ngx_msec_t) };
}

fn disarm(ev: &mut ngx_event_t) {
    if ev.timer_set() != 0 {
        // SAFETY: as in `arm`.
        unsafe { ngx_del_timer(ev) };
    }
}

impl RedisConn {
    /// The connection state of endpoint `ep` of `mcf`, for a worker whose
    /// id among all servers is `worker`.
    pub fn new(
        ep: usize,
        e: &Endpoint,
        mcf: &MainConf,
        worker: &str,
        log: *mut ngx_log_t,
    ) -> Box<RedisConn> {
        let mut cfg = RedisConfig::new(
            e.url.clone(),
            e.namespaces.clone(),
            worker.as_bytes().to_vec(),
        );
        cfg.heartbeat_ms = mcf.redis_heartbeat as u64;
        cfg.connect_timeout_ms = mcf.redis_connect_timeout as u64;
        cfg.keys_above = KEYS_ABOVE + ((ep as u64) << KEY_RANGE_BITS);
        cfg.seed = worker.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Box::new(RedisConn {
            backend: RedisBackend::new(cfg),
            addr: e.addr,
            name: e.addr.name,
            // SAFETY: all-zero is nginx's initial state for a peer.
            peer: unsafe { core::mem::zeroed() },
            conn: ptr::null_mut(),
            connecting: false,
            heartbeat_ms: mcf.redis_heartbeat,
            watch_ms: (mcf.redis_connect_timeout / 4).max(50),
            retry: timer(on_retry, ep, log),
            beat: timer(on_beat, ep, log),
            watch: timer(on_watch, ep, log),
            counts: timer(on_counts, ep, log),
            waiting: HashMap::new(),
            read_buf: vec![0; 64 * 1024],
            log,
            pending_after: None,
            reported: (0, 0),
        })
    }

    /// While requests wait on this connection, its watch timer is not
    /// cancelable, so an exiting worker (a reload) stays until they are
    /// answered, by Redis or by the command timeout, instead of leaving
    /// their connections open. Whether any wait.
    pub fn hold_worker(&mut self) -> bool {
        let busy = !self.waiting.is_empty();
        self.watch.set_cancelable(u32::from(!busy));
        busy
    }

    /// Commands sent and reconnections made since the last call.
    pub fn counted(&mut self) -> (u64, u64) {
        let now = (
            self.backend.commands_total(),
            self.backend.reconnects_total(),
        );
        let d = (
            now.0.saturating_sub(self.reported.0),
            now.1.saturating_sub(self.reported.1),
        );
        self.reported = now;
        d
    }

    /// Start: connect, and run the heartbeat and the timeout watch.
    pub fn start(&mut self, ep: usize) {
        let hb = self.heartbeat_ms as u64;
        arm(&mut self.beat, hb);
        let w = self.watch_ms as u64;
        arm(&mut self.watch, w);
        self.connect(ep);
    }

    /// The worker is exiting: send what is queued (best effort), close.
    pub fn stop(&mut self) {
        self.backend.flush_counts();
        self.flush();
        disarm(&mut self.counts);
        disarm(&mut self.retry);
        disarm(&mut self.beat);
        disarm(&mut self.watch);
        self.close();
    }

    fn logs(&mut self) {
        for (level, line) in self.backend.take_logs() {
            ngx::ngx_log_error!(ngx_level(level), self.log, "push: {}", line);
        }
    }

    fn connect(&mut self, ep: usize) {
        self.backend.connecting(now_ms());
        // SAFETY: the peer lives in this boxed state for the worker's life;
        // the address is the configuration's.
        let rc = unsafe {
            self.peer = core::mem::zeroed();
            self.peer.sockaddr = self.addr.sockaddr;
            self.peer.socklen = self.addr.socklen;
            self.peer.name = &raw mut self.name;
            self.peer.get = Some(ngx_event_get_peer);
            self.peer.log = self.log;
            self.peer
                .set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_ERR);
            ngx_event_connect_peer(&mut self.peer)
        };
        let c = self.peer.connection;
        if c.is_null() || (rc != NGX_OK as ngx_int_t && rc != NGX_AGAIN as ngx_int_t) {
            self.conn = ptr::null_mut();
            return self.failed_connect();
        }
        self.conn = c;
        // SAFETY: the connection nginx just made for us.
        unsafe {
            (*c).data = ep as *mut c_void;
            (*(*c).read).handler = Some(on_read);
            (*(*c).write).handler = Some(on_write);
            (*(*c).read).log = self.log;
            (*(*c).write).log = self.log;
        }
        if rc == NGX_AGAIN as ngx_int_t {
            self.connecting = true;
            // SAFETY: the connection's write event; the connect timeout.
            unsafe { ngx_add_timer((*c).write, self.watch_ms * 4) };
        } else {
            self.on_connected();
        }
    }

    /// A connect that could not even start: try again later.
    fn failed_connect(&mut self) {
        let mut fx = Effects::default();
        let done = self.failed(&mut fx);
        self.pending_after = Some((done, fx));
    }

    fn on_connected(&mut self) {
        self.connecting = false;
        // SAFETY: the connect timer on the write event, if armed.
        unsafe {
            if !self.conn.is_null() && (*(*self.conn).write).timer_set() != 0 {
                ngx_del_timer((*self.conn).write);
            }
        }
        self.backend.connected(now_ms());
        self.flush();
        self.logs();
    }

    fn close(&mut self) {
        if !self.conn.is_null() {
            // SAFETY: our open connection, closed once (then null).
            unsafe { ngx_close_connection(self.conn) };
            self.conn = ptr::null_mut();
        }
        self.connecting = false;
    }

    /// The connection failed or closed: what was in flight fails (into
    /// `fx`); try again later.
    fn failed(&mut self, fx: &mut Effects) -> Vec<(OpId, Completion)> {
        self.close();
        let done = self.backend.disconnected(now_ms(), fx);
        let after = self.backend.retry_after(now_ms()).as_millis() as u64;
        arm(&mut self.retry, after);
        self.logs();
        done
    }

    /// Write what the backend queued, as far as the socket takes it; count
    /// changes go within `COUNTS_MS`.
    pub fn flush(&mut self) {
        if self.conn.is_null() || self.connecting {
            return;
        }
        if self.counts.timer_set() == 0 && self.backend.counts_pending() {
            arm(&mut self.counts, COUNTS_MS);
        }
        let c = self.conn;
        loop {
            let out = self.backend.output();
            if out.is_empty() {
                return;
            }
            // SAFETY: our open connection and its send, from a buffer we own.
            let n = unsafe {
                match (*c).send {
                    Some(send) => send(c, out.as_mut_ptr(), out.len()),
                    None => NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                // SAFETY: the connection's write event, re-armed.
                unsafe { ngx_handle_write_event((*c).write, 0) };
                return;
            }
            if n < 0 {
                // Seen by the read side (EOF/error) or the timeout watch.
                return;
            }
            out.drain(..n as usize);
        }
    }

    /// Read what Redis sent; the completed operations and their effects.
    fn read(&mut self) -> Option<(Vec<(OpId, Completion)>, Effects)> {
        let c = self.conn;
        if c.is_null() {
            return None;
        }
        let mut fx = Effects::default();
        let mut done = Vec::new();
        loop {
            // SAFETY: our open connection and its recv, into our buffer.
            let n = unsafe {
                match (*c).recv {
                    Some(recv) => recv(c, self.read_buf.as_mut_ptr(), self.read_buf.len()),
                    None => NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                break;
            }
            if n <= 0 {
                done.extend(self.failed(&mut fx));
                return Some((done, fx));
            }
            done.extend(
                self.backend
                    .input(&self.read_buf[..n as usize], now_ms(), &mut fx),
            );
        }
        // SAFETY: the connection's read event, re-armed after EAGAIN.
        if unsafe { ngx_handle_read_event((*c).read, 0) } != NGX_OK as ngx_int_t
            || self.backend.expired(now_ms())
        {
            done.extend(self.failed(&mut fx));
        } else {
            self.flush();
        }
        self.logs();
        Some((done, fx))
    }
}

/// Outside any borrow of the worker: resume the requests that waited on
/// completed operations, then write the answers of held listeners (those
/// just resumed included: Redis sent their replies before the pushes of
/// the same batch).
fn after(ep: usize, done: Vec<(OpId, Completion)>, fx: Effects) {
    ops::finish_then(fx, None, |msgs| {
        for (op, c) in done {
            waiting::resume(ep, op, c, msgs);
        }
    });
}

/// Run `f` on endpoint `ep`'s connection, then carry out what it produced.
fn on_conn(
    ep: usize,
    f: impl FnOnce(&mut RedisConn) -> Option<(Vec<(OpId, Completion)>, Effects)>,
) {
    let out = with(|w| w.redis.get_mut(ep).and_then(|c| f(c))).flatten();
    let pending = with(|w| w.redis.get_mut(ep).and_then(|c| c.pending_after.take())).flatten();
    if let Some((done, fx)) = pending {
        after(ep, done, fx);
    }
    if let Some((done, fx)) = out {
        after(ep, done, fx);
    }
}

fn ep_of_event(ev: *mut ngx_event_t) -> usize {
    // SAFETY: our timers carry the endpoint's index as their data.
    unsafe { (*ev).data as usize }
}

fn ep_of_conn_event(ev: *mut ngx_event_t) -> usize {
    // SAFETY: a read or write event of our connection, whose data is the
    // endpoint's index.
    unsafe { (*(*ev).data.cast::<ngx_connection_t>()).data as usize }
}

unsafe extern "C" fn on_read(ev: *mut ngx_event_t) {
    let ep = ep_of_conn_event(ev);
    on_conn(ep, |c| c.read());
}

unsafe extern "C" fn on_write(ev: *mut ngx_event_t) {
    let ep = ep_of_conn_event(ev);
    // SAFETY: nginx's event.
    let timedout = unsafe { (*ev).timedout() != 0 };
    on_conn(ep, |c| {
        if c.connecting {
            if timedout || !connect_succeeded(c.conn) {
                let mut fx = Effects::default();
                let done = c.failed(&mut fx);
                return Some((done, fx));
            }
            c.on_connected();
            return None;
        }
        c.flush();
        None
    });
}

/// Did a non-blocking connect succeed (`SO_ERROR` is 0)?
fn connect_succeeded(c: *mut ngx_connection_t) -> bool {
    if c.is_null() {
        return false;
    }
    let mut err: c_int = 0;
    let mut len = core::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: our connection's socket, into a local int of the size given.
    let rc = unsafe {
        getsockopt(
            (*c).fd,
            SOL_SOCKET as c_int,
            SO_ERROR as c_int,
            (&raw mut err).cast::<c_void>(),
            &mut len,
        )
    };
    rc == 0 && err == 0
}

unsafe extern "C" fn on_retry(ev: *mut ngx_event_t) {
    let ep = ep_of_event(ev);
    if super::worker::exiting() {
        return;
    }
    on_conn(ep, |c| {
        c.connect(ep);
        None
    });
}

unsafe extern "C" fn on_beat(ev: *mut ngx_event_t) {
    let ep = ep_of_event(ev);
    on_conn(ep, |c| {
        c.backend.heartbeat(now_ms());
        c.flush();
        c.logs();
        let hb = c.heartbeat_ms as u64;
        if !super::worker::exiting() {
            arm(&mut c.beat, hb);
        }
        None
    });
}

unsafe extern "C" fn on_counts(ev: *mut ngx_event_t) {
    let ep = ep_of_event(ev);
    on_conn(ep, |c| {
        c.backend.flush_counts();
        c.flush();
        None
    });
}

unsafe extern "C" fn on_watch(ev: *mut ngx_event_t) {
    let ep = ep_of_event(ev);
    on_conn(ep, |c| {
        let w = c.watch_ms as u64;
        if c.hold_worker() || !super::worker::exiting() {
            arm(&mut c.watch, w);
        }
        if !c.conn.is_null() && !c.connecting && c.backend.expired(now_ms()) {
            let mut fx = Effects::default();
            let done = c.failed(&mut fx);
            return Some((done, fx));
        }
        None
    });
}
