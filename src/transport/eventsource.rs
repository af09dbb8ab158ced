//! EventSource (`text/event-stream`): a `200` whose body stays open; every
//! message is an event, written from the message's one pre-framed buffer.
//! Over HTTP/1.1 the body is chunked, over HTTP/1.0 it ends with the
//! connection, over HTTP/2 it is the stream's DATA frames.

use std::rc::Rc;

use nginx_sys::{ngx_int_t, ngx_tcp_nodelay, ngx_uint_t, NGX_ERROR, NGX_HTTP_OK, NGX_OK};
use push_relay::conf::ListenerRules;
use push_relay::delivery::Delivery;
use push_relay::proto::eventsource::{CONFLICT, GONE, HELLO, PING};

use super::stream::{self, Owner, Stream};
use crate::http::request::Req;
use crate::runtime::ops::Out;
use crate::runtime::parked::{self, HeldCtx, Parking};
use crate::runtime::worker::with;

const CONTENT_TYPE: &[u8] = b"text/event-stream; charset=utf-8";

/// Park `req` as a stream, send its headers, the opening comment and its
/// backlog. `Err`: the request could not be started (the caller returns
/// an error for nginx to finalize; the relay forgets it in its cleanup or
/// at once).
pub fn start<'r>(
    req: Req<'r>,
    mut parking: Parking<'r>,
    rules: &ListenerRules,
    backlog: &[Rc<Delivery>],
) -> Result<(), ()> {
    let s = req
        .keep(Stream::new(req, rules, PING).ok_or(())?)
        .ok_or(())?;
    parking.stream = (s as *mut Stream).cast();
    parking.release = Some(stream::release);
    let origin = parking.origin;
    parked::park(req, parking)?;
    headers(req, origin).ok_or(())?;
    s.write(req, HELLO, Owner::Static, false).map_err(|_| ())?;
    for d in backlog {
        s.write(req, d.eventsource_frame(), Owner::Shared(d.clone()), false)
            .map_err(|_| ())?;
    }
    s.schedule();
    Ok(())
}

fn headers<'r>(req: Req<'r>, origin: Option<&'r [u8]>) -> Option<()> {
    let f = req.fields();
    f.headers_out.status = NGX_HTTP_OK as ngx_uint_t;
    f.headers_out.content_length_n = -1;
    req.set_content_type(CONTENT_TYPE)?;
    req.add_header(b"Cache-Control", b"no-cache")?;
    req.add_header(b"X-Accel-Buffering", b"no")?;
    req.cors(origin)?;
    req.fields().write_event_handler = Some(stream::on_write);
    let rc = req.send_header();
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t {
        return None;
    }
    // Small events go out at once rather than waiting for more.
    // SAFETY: the live request's connection.
    unsafe { ngx_tcp_nodelay(req.get().connection) };
    Some(())
}

/// Hand a held EventSource stream what the relay decided for it.
pub fn deliver(req: Req<'_>, ctx: &HeldCtx, s: &mut Stream, out: Out<'_>) {
    let done = match out {
        Out::Message(d) => {
            s.note_message();
            s.write(req, d.eventsource_frame(), Owner::Shared(d.clone()), false)
        }
        Out::Conflict => return end(req, ctx, s, Some(CONFLICT)),
        Out::Gone => return end(req, ctx, s, Some(GONE)),
        Out::Ended => return end(req, ctx, s, None),
    };
    if let Err(why) = done {
        stream::abort(req, why);
    }
}

/// End the stream cleanly (the client reconnects with its last id).
fn end(req: Req<'_>, ctx: &HeldCtx, s: &mut Stream, comment: Option<&'static [u8]>) {
    with(|w| w.parked.remove(ctx.key));
    s.stop_timer();
    let mut ok = comment.map_or(Ok(()), |c| s.write(req, c, Owner::Static, false));
    if ok.is_ok() {
        ok = s.write(req, &[], Owner::Static, true);
    }
    req.finalize_parked(if ok.is_ok() {
        NGX_OK as ngx_int_t
    } else {
        NGX_ERROR as ngx_int_t
    });
}
