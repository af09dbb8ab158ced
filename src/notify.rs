//! Cross-worker wake-ups.
//!
//! Each worker owns a non-blocking Unix datagram socket bound to an abstract
//! name made of its pid and a random nonce, registered in its own event
//! loop. A worker that queued events for another (see the store's inboxes)
//! sends it one byte; the receiver drains the socket and then reads its
//! inbox. The inbox is the truth: a wake-up that finds the socket's queue
//! full (EAGAIN) is merged with one already pending, so nothing is lost.

use core::ffi::{c_int, c_void};
use core::mem;
use core::ptr;

use nginx_sys::*;

/// What sending a wake-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered, or merged with one already queued.
    Ok,
    /// No socket by that name: the worker is gone.
    Gone,
}

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
        __sockaddr__: sa as *const sockaddr_un as *const sockaddr,
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
        let fd = socket(
            AF_UNIX as c_int,
            (__socket_type_SOCK_DGRAM | __socket_type_SOCK_NONBLOCK | __socket_type_SOCK_CLOEXEC)
                as c_int,
            0,
        );
        if fd < 0 {
            return None;
        }
        let (sa, len) = address(pid, nonce);
        if bind(fd, sockaddr_arg(&sa), len) != 0 {
            close(fd);
            return None;
        }
        // SAFETY: ngx_get_connection takes ownership of fd; on failure it
        // does not, and we close it.
        let c = ngx_get_connection(fd, log);
        if c.is_null() {
            close(fd);
            return None;
        }
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
        Some(Waker { conn: c })
    }

    /// Read everything queued (the events are edge-triggered).
    ///
    /// # Safety
    /// The waker is open.
    pub unsafe fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            let n = recv(
                (*self.conn).fd,
                buf.as_mut_ptr() as *mut c_void,
                buf.len(),
                0,
            );
            if n <= 0 {
                break;
            }
        }
    }

    /// Wake another worker.
    pub fn send(&self, pid: i32, nonce: u64) -> Sent {
        let (sa, len) = address(pid, nonce);
        // SAFETY: a plain sendto on our own open socket.
        let n = unsafe {
            sendto(
                (*self.conn).fd,
                b"!".as_ptr() as *const c_void,
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
            ECONNREFUSED | ENOENT => Sent::Gone,
            // EAGAIN: its queue is full, so a wake-up is already pending.
            _ => Sent::Ok,
        }
    }

    /// # Safety
    /// The waker is open; it is closed afterwards.
    pub unsafe fn close(&mut self) {
        if !self.conn.is_null() {
            ngx_close_connection(self.conn);
            self.conn = ptr::null_mut();
        }
    }
}
