//! Listener transports: how a held listener is handed what the relay
//! decided for it. The relay hands "a held listener of transport T" an
//! [`Out`]; each transport writes it its own way. Long-poll answers once
//! and finishes the request; only it assumes that. EventSource and
//! WebSocket stay open and share the output queue of `stream`.

pub mod eventsource;
pub mod longpoll;
pub mod stream;
pub mod websocket;

use push_relay::registry::Key;
use push_relay::transport::Transport;

use crate::http::request::Req;
use crate::runtime::ops::Out;
use crate::runtime::parked;
use crate::runtime::worker::with;

/// Hand `out` to the held listener `key`, if its request is still there;
/// its transport when it was.
pub fn deliver(key: Key, out: Out<'_>) -> Option<Transport> {
    let r = with(|w| w.parked.get(key))??;
    // SAFETY: a request in the parked table is live: its cleanup takes it
    // out before nginx frees it.
    let req = unsafe { Req::new(r) }?;
    let ctx = parked::ctx(req)?;
    let transport = ctx.transport;
    match ctx.transport {
        Transport::LongPoll | Transport::IntervalPoll => longpoll::answer(req, &ctx, out),
        Transport::EventSource => {
            if let Some(s) = stream::of(req) {
                eventsource::deliver(req, &ctx, s, out);
            }
        }
        Transport::WebSocket => {
            if let Some(ws) = websocket::of(req) {
                websocket::deliver(req, &ctx, ws, out);
            }
        }
    }
    Some(transport)
}
