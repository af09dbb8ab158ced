//! ngx_http_push: a push relay inside nginx.
//!
//! This crate is the thin layer between nginx and the relay logic of
//! `push_relay` (in `relay/`), which holds every decision as safe,
//! unit-tested Rust. A request flows one way:
//!
//! - `handler`: the content handlers; they read the request, call the
//!   relay through a `Backend`, and answer or park the listener;
//! - `transport`: hands a held listener what the relay decided for it;
//! - `runtime`: this worker: the shared zone and its lock, the worker's
//!   slot, its parked requests, the wake-ups between workers, its timers;
//! - `http`: the request handle that reads requests and writes answers;
//! - `conf`: the directives, parsed by nginx's own parsers;
//! - `slots`: the module's descriptor and its slots in nginx's arrays;
//! - `module`: what nginx loads, wiring the layers together.
//!
//! Each layer uses only those below it, in that order (bottom last).
//! Unsafe code stays in `slots`, `conf`, `http`, `runtime`, `transport`
//! (a stream's buffers and timers) and `module`, each block with its
//! `SAFETY`; the handlers have it only at their entry.
#![deny(unsafe_op_in_unsafe_fn)]
// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod conf;
mod handler;
mod http;
mod module;
mod runtime;
mod slots;
mod transport;

pub use module::ngx_http_push_module;
