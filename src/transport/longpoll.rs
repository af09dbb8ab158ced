//! Long-poll: a held request is answered once, with the message (200), a
//! conflict (409), the channel's deletion (410) or, on timeout and
//! shutdown, a 304 echoing its cursor, and then finished.

use push_relay::outcome::{ended_reply, Ending};

use crate::http::request::Req;
use crate::runtime::ops::Out;
use crate::runtime::parked::HeldCtx;
use crate::runtime::worker::with;

pub fn answer(req: Req<'_>, ctx: &HeldCtx, out: Out<'_>) {
    // Answered once: out of the table before anything is written, since a
    // failed write frees the request inside the call.
    with(|w| w.parked.remove(ctx.key));
    ctx.cancel_timer();
    let origin = ctx.origin(req);
    let rc = match out {
        Out::Message(d) => req.message(d, origin),
        Out::Ended => req.not_modified(origin),
        Out::Conflict => req.refuse(ended_reply(Ending::Conflict), Some(origin)),
        Out::Gone => req.refuse(ended_reply(Ending::Gone), Some(origin)),
    };
    req.finalize_parked(rc);
}
