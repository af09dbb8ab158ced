//! The content handlers of listener and sender locations: read the
//! request, call the relay, answer (or park the listener).

pub mod listener;
pub mod sender;
