//! ngx_http_push: a push relay inside nginx.
//!
//! This crate is the thin layer between nginx and the relay logic of
//! `push_relay` (in `relay/`), which holds every decision as safe,
//! unit-tested Rust. A request flows one way:
//!
//! - `http` reads the request (channel id, cursor, method, body) and calls
//!   the relay through a `Backend`; it writes the answers that come back;
//! - `runtime` is this worker: the shared zone and its lock, the worker's
//!   slot, its parked requests, the wake-ups between workers, its timers;
//! - `transport` hands a held listener what the relay decided for it;
//! - `conf` is the directives, parsed by nginx's own parsers;
//! - `module` is what nginx loads.
//!
//! Unsafe code lives in these files only, each block with its `SAFETY`.
#![deny(unsafe_op_in_unsafe_fn)]

mod conf;
mod http;
mod module;
mod runtime;
mod transport;

pub use module::ngx_http_push_module;
