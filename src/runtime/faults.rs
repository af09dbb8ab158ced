//! Faults the integration tests inject, in debug builds only (release
//! builds compile every check here to `false`). A worker reads
//! `NGX_HTTP_PUSH_FAULTS` at start (nginx keeps it for workers with
//! `env NGX_HTTP_PUSH_FAULTS=...;`), a comma-separated list of:
//! - `park`: parking a listener fails, as when its pool is exhausted;
//! - `wake=N`: the next N wake-up datagrams fail with `ENOBUFS`;
//! - `resync`: every look at the inbox also resynchronises all listeners,
//!   as after events were lost.

#[cfg(debug_assertions)]
mod imp {
    use std::cell::Cell;

    thread_local! {
        static PARK: Cell<bool> = const { Cell::new(false) };
        static WAKE: Cell<u32> = const { Cell::new(0) };
        static RESYNC: Cell<bool> = const { Cell::new(false) };
    }

    pub fn load() {
        let Ok(spec) = std::env::var("NGX_HTTP_PUSH_FAULTS") else {
            return;
        };
        for item in spec.split(',') {
            match item.split_once('=') {
                None if item == "park" => PARK.with(|p| p.set(true)),
                None if item == "resync" => RESYNC.with(|p| p.set(true)),
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
}

pub use imp::{load, park_fails, resync_always, wake_fails};
