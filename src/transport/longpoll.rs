//! Long-poll: a held request is answered once, with the message (200), a
//! conflict (409), the channel's deletion (410) or, on timeout and
//! shutdown, a 304 echoing its cursor, and then finished.

use push_relay::outcome::{CONFLICT_BODY, GONE_BODY};

use super::Out;
use crate::http::request::Req;
use crate::runtime::parked::HeldCtx;
use crate::runtime::worker::with;

pub fn answer(req: Req<'_>, ctx: &mut HeldCtx, out: Out<'_>) {
    // Answered once: out of the table before anything is written, since a
    // failed write frees the request inside the call.
    with(|w| w.parked.remove(ctx.key));
    ctx.cancel_timer();
    let origin = ctx.origin(req);
    let rc = match out {
        Out::Message(d) => req.message(d, origin),
        Out::Ended => req.not_modified(origin),
        Out::Conflict | Out::Gone => {
            let (status, body) = match out {
                Out::Conflict => (409, CONFLICT_BODY),
                _ => (410, GONE_BODY),
            };
            match req.cors(origin) {
                Some(()) => req.status(status, body),
                None => nginx_sys::NGX_HTTP_INTERNAL_SERVER_ERROR as nginx_sys::ngx_int_t,
            }
        }
    };
    req.finalize_parked(rc);
}
