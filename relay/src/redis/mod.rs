//! Several servers sharing channels through Redis: everything of it that
//! needs no nginx, sans-IO (bytes in, bytes out, time passed in).
//!
//! - `resp`: the RESP3/RESP2 codec;
//! - `url`: `push_redis` URLs;
//! - `keys`: every key name the module writes;
//! - `payload`: stored messages and pub/sub announcements;
//! - `scripts`: the Lua scripts, their arguments and replies;
//! - `backoff`: reconnection delays with jitter;
//! - `client`: one connection (handshake, pipelining, pushes, NOSCRIPT,
//!   timeouts);
//! - `backend`: [`backend::RedisBackend`], the crate's `Backend` over it,
//!   with this worker's listeners of Redis channels.

pub mod backend;
pub mod backoff;
pub mod client;
pub mod keys;
pub mod payload;
pub mod resp;
pub mod scripts;
pub mod url;
