//! The content handlers of listener, sender and stats locations: read the
//! request, call the relay, answer (or park the listener).

pub mod listener;
pub mod sender;
pub mod stats;
