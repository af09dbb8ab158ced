//! Wire formats: the message cursor, channel info bodies, `message/http`
//! bodies, and the byte helpers they share. Pure functions of their input.

pub mod cursor;
pub mod info;
pub mod msghttp;
pub mod text;
