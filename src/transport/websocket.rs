//! WebSocket (RFC 6455, HTTP/1.1 only): the `101` handshake, a frame for
//! every message (from the message's pre-framed buffer), and the client's
//! frames read and checked here (masked, small; pings answered, data
//! ignored). Every end sends a close frame and lets nginx linger until the
//! client closes, so the frame is not lost to a reset.

use core::ffi::c_void;
use std::rc::Rc;

use nginx_sys::{
    ngx_handle_read_event, ngx_http_request_t, ngx_http_send_special, ngx_int_t, ngx_str_t,
    ngx_tcp_nodelay, ngx_uint_t, NGX_AGAIN, NGX_ERROR, NGX_HTTP_FLUSH,
    NGX_HTTP_SWITCHING_PROTOCOLS, NGX_OK,
};
use push_relay::conf::ListenerRules;
use push_relay::delivery::Delivery;
use push_relay::proto::websocket::{self, close, close_frame, frame, op, Incoming, Parser};

use super::stream::{self, Owner, Stream};
use crate::http::request::Req;
use crate::runtime::ops::{self, Out};
use crate::runtime::parked::{self, HeldCtx, Parking};
use crate::runtime::worker::with;

const PING: &[u8] = &[0x80 | op::PING, 0];
const CLOSE_GOING_AWAY: &[u8] = &close_frame(close::GOING_AWAY);
const CLOSE_CONFLICT: &[u8] = &close_frame(close::CONFLICT);
const CLOSE_GONE: &[u8] = &close_frame(close::GONE);

/// A WebSocket stream's own state, after the shared `Stream` (in the
/// request's pool; dropped by `release`). `repr(C)`: `stream::of` reads the
/// `Stream` at its start.
#[repr(C)]
pub struct Ws {
    pub stream: Stream,
    /// `ws+meta.nchan` was agreed.
    meta: bool,
    /// The location's `default_type`, for messages the sender gave none.
    default_type: ngx_str_t,
    /// Made when the client first sends something.
    parser: Option<Box<Parser>>,
}

/// Answer the upgrade with `101`, park `req` as a stream, and send its
/// backlog. `key` is the client's `Sec-WebSocket-Key`, `protocols` its
/// `Sec-WebSocket-Protocol`.
pub fn start<'r>(
    req: Req<'r>,
    mut parking: Parking<'r>,
    rules: &ListenerRules,
    key: &[u8],
    protocols: Option<&[u8]>,
    backlog: &[Rc<Delivery>],
) -> Result<(), ()> {
    let meta = websocket::offers_meta(protocols);
    let default_type = req.default_type();
    let ws = req
        .keep(Ws {
            stream: Stream::new(req, rules, PING).ok_or(())?,
            meta,
            default_type: ngx_str_t {
                len: default_type.len(),
                data: default_type.as_ptr().cast_mut(),
            },
            parser: None,
        })
        .ok_or(())?;
    parking.stream = (ws as *mut Ws).cast::<c_void>();
    parking.release = Some(release);
    parked::park(req, parking)?;
    handshake(req, key, meta).ok_or(())?;
    for d in backlog {
        write_message(req, ws, d).map_err(|_| ())?;
    }
    ws.stream.schedule();
    // Frames the client sent right behind its upgrade request.
    on_read(req.raw());
    Ok(())
}

fn handshake(req: Req<'_>, key: &[u8], meta: bool) -> Option<()> {
    let accept = req.pool_copy(websocket::accept_key(key).as_bytes())?;
    let f = req.fields();
    f.headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS as ngx_uint_t;
    f.headers_out.status_line = ngx_str_t {
        len: 23,
        data: b"101 Switching Protocols".as_ptr().cast_mut(),
    };
    f.headers_out.content_length_n = -1;
    f.set_keepalive(0);
    req.add_header(b"Upgrade", b"websocket")?;
    req.add_header(b"Sec-WebSocket-Accept", accept)?;
    if meta {
        req.add_header(
            b"Sec-WebSocket-Protocol",
            websocket::META_PROTOCOL.as_bytes(),
        )?;
    }
    let f = req.fields();
    f.read_event_handler = Some(read_handler);
    f.write_event_handler = Some(stream::on_write);
    let rc = req.send_header();
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t {
        return None;
    }
    // The header alone would wait for more output (postpone_output).
    // SAFETY: a live request whose header was just sent; the connection is
    // the request's.
    unsafe {
        if ngx_http_send_special(req.raw(), NGX_HTTP_FLUSH as ngx_uint_t) == NGX_ERROR as ngx_int_t
        {
            return None;
        }
        ngx_tcp_nodelay(req.get().connection);
    }
    Some(())
}

/// The frame of a message, shared with every stream of this worker that
/// uses the same framing.
fn write_message(req: Req<'_>, ws: &mut Ws, d: &Rc<Delivery>) -> Result<(), stream::Broken> {
    let default_type = ws.default_type.as_bytes();
    let frame = d.websocket_frame(ws.meta, default_type);
    match frame {
        std::borrow::Cow::Borrowed(f) => ws.stream.write(req, f, Owner::Shared(d.clone()), false),
        std::borrow::Cow::Owned(f) => ws.stream.write_vec(req, f, false),
    }
}

/// `parked`'s release hook.
///
/// # Safety
/// `p` is the `Ws` that `start` kept, released once.
unsafe fn release(p: *mut c_void) {
    // SAFETY: the caller's contract; pool memory goes with the pool.
    unsafe {
        let ws = p.cast::<Ws>();
        (*ws).stream.stop_timer();
        core::ptr::drop_in_place(ws);
    }
}

/// The WebSocket state of a parked request.
pub fn of<'r>(req: Req<'r>) -> Option<&'r mut Ws> {
    let ctx = parked::ctx(req)?;
    // SAFETY: set by `start` with `park`; lives until `release`, used from
    // one callback at a time.
    unsafe { ctx.stream.cast::<Ws>().as_mut() }
}

/// Hand a held WebSocket stream what the relay decided for it.
pub fn deliver(req: Req<'_>, ctx: &HeldCtx, ws: &mut Ws, out: Out<'_>) {
    match out {
        Out::Message(d) => {
            ws.stream.note_message();
            if let Err(why) = write_message(req, ws, d) {
                stream::abort(req, why);
            }
        }
        Out::Conflict => end(req, ctx, ws, Close::Static(CLOSE_CONFLICT)),
        Out::Gone => end(req, ctx, ws, Close::Static(CLOSE_GONE)),
        Out::Ended => end(req, ctx, ws, Close::Static(CLOSE_GOING_AWAY)),
    }
}

/// The close frame a stream ends with.
enum Close {
    Static(&'static [u8]),
    Echo(Vec<u8>),
}

/// Send a close frame and finish, lingering until the client closes.
fn end(req: Req<'_>, ctx: &HeldCtx, ws: &mut Ws, close: Close) {
    with(|w| w.parked.remove(ctx.key));
    ws.stream.stop_timer();
    let ok = match close {
        Close::Static(b) => ws.stream.write(req, b, Owner::Static, true),
        Close::Echo(v) => ws.stream.write_vec(req, v, true),
    };
    req.fields().set_lingering_close(1);
    req.finalize_parked(if ok.is_ok() {
        NGX_OK as ngx_int_t
    } else {
        NGX_ERROR as ngx_int_t
    });
}

/// The client went away: finish at once.
fn gone(req: Req<'_>) {
    stream::abort(req, stream::Broken::Failed);
}

unsafe extern "C" fn read_handler(r: *mut ngx_http_request_t) {
    on_read(r);
}

/// Read what the client sent: answer pings, close on a close or a
/// protocol error, ignore data.
fn on_read(r: *mut ngx_http_request_t) {
    // SAFETY: a live request: nginx's read handler call, or `start`'s.
    let Some(req) = (unsafe { Req::new(r) }) else {
        return;
    };
    let (Some(ctx), Some(ws)) = (parked::ctx(req), of(req)) else {
        return;
    };
    if ws.stream.is_ended() {
        return;
    }
    let c = req.get().connection;
    let mut buf = [0u8; 4096];
    let mut events = Vec::new();
    // What nginx read past the upgrade request's headers comes first.
    let leftover = req.header_leftover();
    if !leftover.is_empty() {
        ws.parser
            .get_or_insert_with(Box::default)
            .feed(leftover, &mut events);
        req.consume_header_leftover();
        if !handle(req, &ctx, ws, &mut events) {
            return;
        }
    }
    // SAFETY: the live request's connection.
    let Some(recv) = (unsafe { (*c).recv }) else {
        return gone(req);
    };
    loop {
        // SAFETY: the request's connection and its recv, into a buffer we own.
        let n = unsafe { recv(c, buf.as_mut_ptr(), buf.len()) };
        if n == NGX_AGAIN as isize {
            break;
        }
        if n <= 0 {
            return gone(req);
        }
        ws.parser
            .get_or_insert_with(Box::default)
            .feed(&buf[..n as usize], &mut events);
        if !handle(req, &ctx, ws, &mut events) {
            return;
        }
    }
    // SAFETY: the connection's read event, re-armed after EAGAIN.
    if unsafe { ngx_handle_read_event((*c).read, 0) } != NGX_OK as ngx_int_t {
        gone(req);
    }
}

/// Act on what the parser found; false when the stream ended.
fn handle(req: Req<'_>, ctx: &HeldCtx, ws: &mut Ws, events: &mut Vec<Incoming>) -> bool {
    for e in events.drain(..) {
        match e {
            Incoming::Ping(payload) => {
                if let Err(why) = ws.stream.write_vec(req, frame(op::PONG, &payload), false) {
                    stream::abort(req, why);
                    return false;
                }
            }
            Incoming::Close(Some(code)) | Incoming::Fail(code) => {
                ops::forget(ctx.store, ctx.chan, ctx.key);
                // Echo the client's code (or ours for its fault).
                end(req, ctx, ws, Close::Echo(close_frame(code).to_vec()));
                return false;
            }
            Incoming::Close(None) => {
                ops::forget(ctx.store, ctx.chan, ctx.key);
                // None for none.
                end(req, ctx, ws, Close::Echo(vec![0x80 | op::CLOSE, 0]));
                return false;
            }
        }
    }
    true
}
