//! push_relay: everything ngx_http_push decides, as plain safe Rust that the
//! unit tests run without nginx.
//!
//! A request flows one way through it:
//! - `conf` turns directive values into the rules of a location;
//! - `request` reads what a client asked for (channel id, transport, method);
//! - `backend` is the seam to a channel store; `zone` is the shared-memory
//!   store every worker of one nginx uses, `zone_backend` its `Backend`;
//! - `relay` owns this worker's held listeners (`registry`) together with
//!   their counts in the store, and turns store events into answers;
//! - `redis` is the store several nginx servers share (its
//!   `RedisBackend`), sans-IO: the module owns the socket;
//! - `delivery` composes what a listener receives, `outcome` the status and
//!   log line of every refusal, `stats` what `push_stats` shows.
//!
//! The nginx module (the crate one level up) only reads requests, calls in
//! here and writes what comes back.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod conf;
pub mod delivery;
pub mod outcome;
pub mod proto;
pub mod redis;
pub mod registry;
pub mod relay;
pub mod request;
pub mod stats;
pub mod transport;
pub mod zone;
pub mod zone_backend;

#[cfg(test)]
mod testing;
