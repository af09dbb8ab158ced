//! The HTTP side: the content handlers of listener and sender locations,
//! and the request handle they read requests and write answers through.

pub mod listener;
pub mod request;
pub mod response;
pub mod sender;
