//! The content handler of `push_listener` locations: read the request, ask
//! the relay, then answer at once or park the request.

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR};
use push_relay::backend::{Listen, Listened};
use push_relay::conf::Role;
use push_relay::outcome::Level;
use push_relay::relay::MsgRef;
use push_relay::request::{listener_op, ListenerOp};
use push_relay::transport::{choose, Transport};

use crate::conf;
use crate::http::request::Req;
use crate::runtime::parked::{self, Parking};
use crate::runtime::{ops, worker};
use crate::transport::{eventsource, websocket};

const ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// # Safety
/// nginx's content phase calls it with a live request.
pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: live for the call (the content phase's request).
    match unsafe { Req::new(r) } {
        Some(req) => listen(req),
        None => ERROR,
    }
}

fn listen(req: Req<'_>) -> ngx_int_t {
    let Some((lcf, mcf)) = conf::of_request(req.ngx()) else {
        return ERROR;
    };
    let origin = req.allow_origin(lcf);
    let id = req.channel(lcf, mcf);
    let op = listener_op(req.method(), id.as_ref().map(|_| ()).map_err(|e| *e));
    let id = match (op, id) {
        (Err(refusal), _) => {
            let _ = req.discard_body();
            return req.refuse(refusal.reply(), Some(origin));
        }
        (Ok(ListenerOp::Options), _) => {
            let _ = req.discard_body();
            return req.preflight(Role::Listener, lcf.settings.transports(), origin);
        }
        (Ok(ListenerOp::Listen), Ok(id)) => id,
        (Ok(ListenerOp::Listen), Err(_)) => return ERROR,
    };
    if let Err(rc) = req.discard_body() {
        return rc;
    }
    if worker::exiting() {
        return req.not_modified(origin);
    }
    let rules = lcf.settings.listener();
    let transport = match choose(rules.transports, req.method(), &req.hints()) {
        Ok(t) => t,
        Err(refusal) => return req.refuse(refusal.reply(), Some(origin)),
    };
    let ask = Listen {
        id: &id,
        cursor: if transport.is_stream() {
            req.stream_cursor()
        } else {
            req.cursor()
        },
        rules,
        transport,
        now: worker::now(),
    };
    let Some((out, fx)) = ops::zone(|b, fx| b.listen(&ask, fx)) else {
        return ERROR;
    };
    match out {
        Ok(Listened::Held { chan, key, backlog }) => {
            let parking = Parking {
                key,
                chan,
                transport,
                origin,
                timeout_ms: if transport.is_stream() {
                    0
                } else {
                    rules.timeout_ms
                },
                stream: core::ptr::null_mut(),
                release: None,
            };
            // Parked (a poll) or started (a stream) before the answers the
            // listen produced (older listeners it ended) are written.
            let started = match transport {
                Transport::EventSource | Transport::WebSocket => {
                    let msgs = ops::finish(fx, None);
                    let backlog = msgs
                        .get(backlog.start as usize..backlog.end as usize)
                        .unwrap_or(&[]);
                    match transport {
                        Transport::EventSource => eventsource::start(req, parking, &rules, backlog),
                        _ => websocket::start(
                            req,
                            parking,
                            &rules,
                            req.header(b"Sec-WebSocket-Key").unwrap_or(b""),
                            req.header(b"Sec-WebSocket-Protocol"),
                            backlog,
                        ),
                    }
                }
                _ => {
                    let parked = parked::park(req, parking);
                    ops::finish(fx, None);
                    parked
                }
            };
            if started.is_err() {
                ops::forget(chan, key);
                worker::with(|w| w.parked.remove(key));
                req.log(
                    Level::Error,
                    "cannot hold a listener: no memory in its request pool",
                );
                return ERROR;
            }
            NGX_DONE as ngx_int_t
        }
        Ok(Listened::Message(m)) => {
            let msgs = ops::finish(fx, None);
            match m {
                MsgRef::Copy(i) => match msgs.get(i as usize) {
                    Some(d) => req.message(d, origin),
                    None => ERROR,
                },
                MsgRef::Published => ERROR,
            }
        }
        Ok(Listened::NotModified) => {
            ops::finish(fx, None);
            req.not_modified(origin)
        }
        Err(refusal) => {
            ops::finish(fx, None);
            req.refuse(refusal.reply(), Some(origin))
        }
    }
}
