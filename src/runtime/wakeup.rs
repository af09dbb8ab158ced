//! Cross-worker wake-ups.
//!
//! Each worker owns a non-blocking Unix datagram socket bound to an abstract
//! name made of its pid and a random nonce, registered in its own event
//! loop. A worker that queued events for another (see the store's inboxes)
//! sends it one byte; the receiver drains the socket and then reads its
//! inbox. The inbox is the truth: a wake-up that finds the socket's queue
//! full (`EAGAIN`) is merged with one already pending, so nothing is lost.
//! A send that fails otherwise is retried, then reported, and the caller
//! tries again later.

use core::ffi::{c_int, c_void};
use core::mem;
use core::ptr;

use nginx_sys::{
    __errno_location, __socket_type_SOCK_CLOEXEC, __socket_type_SOCK_DGRAM,
    __socket_type_SOCK_NONBLOCK, bind, close, ngx_close_connection, ngx_connection_t, ngx_event_t,
    ngx_get_connection, ngx_handle_read_event, ngx_int_t, ngx_log_t, recv, sa_family_t, sendto,
    sockaddr, sockaddr_un, socket, socklen_t, __CONST_SOCKADDR_ARG, AF_UNIX, EAGAIN, ECONNREFUSED,
    ENOBUFS, ENOENT, NGX_OK,
};

use super::faults;

/// What sending a wake-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered, or merged with one already queued.
    Ok,
    /// No socket by that name: the worker is gone.
    Gone,
    /// The kernel refused it, with this errno, even after retries.
    Failed(i32),
}

/// Attempts per wake-up before it is reported as failed.
const ATTEMPTS: u32 = 3;

fn address(pid: i32, nonce: u64) -> (sockaddr_un, socklen_t) {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut sa: sockaddr_un = unsafe { mem::zeroed() };
    sa.sun_family = AF_UNIX as sa_family_t;
    // Abstract namespace: a leading NUL, nothing on the filesystem to clean.
    let name = format!("ngx_http_push/{pid}/{nonce:016x}");
    let bytes = name.as_bytes();
    let n = bytes.len().min(sa.sun_path.len() - 1);
    for (dst, src) in sa.sun_path[1..=n].iter_mut().zip(bytes) {
        *dst = *src as _;
    }
    let len = mem::size_of::<sa_family_t>() + 1 + n;
    (sa, len as socklen_t)
}

fn sockaddr_arg(sa: &sockaddr_un) -> __CONST_SOCKADDR_ARG {
    __CONST_SOCKADDR_ARG {
        __sockaddr__: (sa as *const sockaddr_un).cast::<sockaddr>(),
    }
}

fn errno() -> c_int {
    // SAFETY: libc's thread-local errno location is always valid.
    unsafe { *__errno_location() }
}

/// This worker's wake-up socket, as an nginx connection.
pub struct Waker {
    conn: *mut ngx_connection_t,
}

impl Waker {
    /// Bind the socket and register it for reading; `handler` runs when a
    /// wake-up arrives, and with `c->close` set when the worker shuts down.
    ///
    /// # Safety
    /// Called in a worker's init_process, with the cycle's log.
    pub unsafe fn open(
        pid: i32,
        nonce: u64,
        log: *mut ngx_log_t,
        handler: unsafe extern "C" fn(*mut ngx_event_t),
    ) -> Option<Waker> {
        let kind =
            __socket_type_SOCK_DGRAM | __socket_type_SOCK_NONBLOCK | __socket_type_SOCK_CLOEXEC;
        // SAFETY: plain socket calls on a descriptor we own.
        let fd = unsafe { socket(AF_UNIX as c_int, kind as c_int, 0) };
        if fd < 0 {
            return None;
        }
        let (sa, len) = address(pid, nonce);
        // SAFETY: as above; on failure the descriptor is closed.
        unsafe {
            if bind(fd, sockaddr_arg(&sa), len) != 0 {
                close(fd);
                return None;
            }
        }
        // SAFETY: ngx_get_connection takes ownership of fd; on failure it
        // does not, and we close it.
        let c = unsafe { ngx_get_connection(fd, log) };
        if c.is_null() {
            // SAFETY: still ours.
            unsafe { close(fd) };
            return None;
        }
        // SAFETY: a connection nginx just gave us, with its two events.
        unsafe {
            let rev = (*c).read;
            (*rev).handler = Some(handler);
            (*rev).log = log;
            (*(*c).write).log = log;
            // Idle: nginx calls the read handler with c->close set when the
            // worker is exiting, which is our cue to release held listeners.
            (*c).set_idle(1);
            if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
                ngx_close_connection(c);
                return None;
            }
        }
        Some(Waker { conn: c })
    }

    /// Read everything queued (the events are edge-triggered).
    pub fn drain(&self) {
        if self.conn.is_null() {
            return;
        }
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: a plain recv on our own open, non-blocking socket.
            let n = unsafe {
                recv(
                    (*self.conn).fd,
                    buf.as_mut_ptr().cast::<c_void>(),
                    buf.len(),
                    0,
                )
            };
            if n <= 0 {
                break;
            }
        }
    }

    /// Wake another worker.
    pub fn send(&self, pid: i32, nonce: u64) -> Sent {
        if self.conn.is_null() {
            return Sent::Failed(0);
        }
        if faults::wake_fails() {
            return Sent::Failed(ENOBUFS as i32);
        }
        let (sa, len) = address(pid, nonce);
        let mut last = 0;
        for _ in 0..ATTEMPTS {
            // SAFETY: a plain sendto on our own open socket.
            let n = unsafe {
                sendto(
                    (*self.conn).fd,
                    b"!".as_ptr().cast::<c_void>(),
                    1,
                    0,
                    sockaddr_arg(&sa),
                    len,
                )
            };
            if n >= 0 {
                return Sent::Ok;
            }
            match errno() as u32 {
                // Its queue is full, so a wake-up is already pending.
                EAGAIN => return Sent::Ok,
                ECONNREFUSED | ENOENT => return Sent::Gone,
                // EINTR, ENOBUFS, ENOMEM...: try again.
                e => last = e as i32,
            }
        }
        Sent::Failed(last)
    }

    pub fn close(&mut self) {
        if !self.conn.is_null() {
            // SAFETY: our open connection; closed once (then null).
            unsafe { ngx_close_connection(self.conn) };
            self.conn = ptr::null_mut();
        }
    }
}
