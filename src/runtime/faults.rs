//! Faults the integration tests inject, in debug builds only (release
//! builds compile every check here to `false`). A worker reads
//! `NGX_HTTP_PUSH_FAULTS` at start (nginx keeps it for workers with
//! `env NGX_HTTP_PUSH_FAULTS=...;`), a comma-separated list of:
//! - `park`: parking a listener fails, as when its pool is exhausted;
//! - `wake=N`: the next N wake-up datagrams fail with `ENOBUFS`;
//! - `resync`: every look at the inbox also resynchronises all listeners,
//!   as after events were lost;
//! - `crash=<point>@<file>`: at the named point inside an update of the
//!   zone (`push_relay::zone::points`, or `alloc`/`free` in the zone's
//!   allocator), a worker that can delete `<file>` kills itself with
//!   SIGKILL, holding the zone's lock (the file makes it happen once);
//! - `misfile@<file>`: likewise, right after taking the lock, but first
//!   damaging the store beyond repair (the rebuild's test);
//! - `validate`: check the slab and the whole store at every unlock.

#[cfg(debug_assertions)]
mod imp {
    use std::cell::Cell;

    use std::sync::OnceLock;

    thread_local! {
        static PARK: Cell<bool> = const { Cell::new(false) };
        static WAKE: Cell<u32> = const { Cell::new(0) };
        static RESYNC: Cell<bool> = const { Cell::new(false) };
        static VALIDATE: Cell<bool> = const { Cell::new(false) };
    }

    /// (point, arm file) of `crash`, and the arm file of `misfile`.
    static CRASH: OnceLock<(String, String)> = OnceLock::new();
    static MISFILE: OnceLock<String> = OnceLock::new();

    /// Die at once, as `kill -9` would.
    pub fn die() {
        // SAFETY: raise only sends this process a signal.
        unsafe { nginx_sys::raise(nginx_sys::SIGKILL as i32) };
    }

    pub fn reached(point: &str) {
        if let Some((p, file)) = CRASH.get() {
            if p == point && std::fs::remove_file(file).is_ok() {
                die();
            }
        }
    }

    fn reached_static(point: &'static str) {
        reached(point)
    }

    pub fn misfile_armed() -> bool {
        MISFILE
            .get()
            .is_some_and(|f| std::fs::remove_file(f).is_ok())
    }

    pub fn validate() -> bool {
        VALIDATE.with(Cell::get)
    }

    pub fn load() {
        let Ok(spec) = std::env::var("NGX_HTTP_PUSH_FAULTS") else {
            return;
        };
        for item in spec.split(',') {
            match item.split_once('=') {
                None if item == "park" => PARK.with(|p| p.set(true)),
                None if item == "resync" => RESYNC.with(|p| p.set(true)),
                None if item == "validate" => VALIDATE.with(|p| p.set(true)),
                None => {
                    if let Some(file) = item.strip_prefix("misfile@") {
                        let _ = MISFILE.set(file.to_string());
                    }
                }
                Some(("crash", spec)) => {
                    if let Some((point, file)) = spec.split_once('@') {
                        let _ = CRASH.set((point.to_string(), file.to_string()));
                        push_relay::zone::points::set_hook(reached_static);
                    }
                }
                Some(("wake", n)) => WAKE.with(|w| w.set(n.parse().unwrap_or(0))),
                _ => {}
            }
        }
    }

    pub fn park_fails() -> bool {
        PARK.with(Cell::get)
    }

    pub fn resync_always() -> bool {
        RESYNC.with(Cell::get)
    }

    pub fn wake_fails() -> bool {
        WAKE.with(|w| {
            let n = w.get();
            w.set(n.saturating_sub(1));
            n > 0
        })
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    pub fn load() {}
    pub fn park_fails() -> bool {
        false
    }
    pub fn wake_fails() -> bool {
        false
    }
    pub fn resync_always() -> bool {
        false
    }
    pub fn reached(_point: &str) {}
    pub fn validate() -> bool {
        false
    }
}

#[cfg(debug_assertions)]
pub use imp::{die, misfile_armed};
pub use imp::{load, park_fails, reached, resync_always, validate, wake_fails};
