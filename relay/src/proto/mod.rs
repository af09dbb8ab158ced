//! Wire formats: the message cursor, channel info bodies, `message/http`
//! bodies, EventSource events, WebSocket frames, and the byte helpers they
//! share. Pure functions of their input.

pub mod cursor;
pub mod eventsource;
pub mod info;
pub mod msghttp;
pub mod text;
pub mod websocket;
