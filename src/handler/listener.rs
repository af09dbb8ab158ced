//! The content handler of `push_listener` locations: read the request, ask
//! the relay, then answer at once, park the request, or start its stream.
//! A store that answers later (Redis) resumes the same code when the
//! listen completes.

use std::rc::Rc;

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR};
use push_relay::backend::{Listen, Listened};
use push_relay::conf::{ListenerRules, Role};
use push_relay::delivery::Delivery;
use push_relay::outcome::{Level, Refusal};
use push_relay::redis::backend::Completion;
use push_relay::relay::MsgRef;
use push_relay::request::{listener_op, ListenerOp};
use push_relay::transport::{choose, Transport};

use crate::conf::{self, LocConf, Store};
use crate::http::request::Req;
use crate::runtime::ops::{self, Run};
use crate::runtime::parked::{self, Parking};
use crate::runtime::{waiting, worker};
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

/// What a listener request is, read from it (again, when it resumes).
struct Asked<'r> {
    store: Store,
    rules: ListenerRules,
    transport: Transport,
    origin: Option<&'r [u8]>,
}

fn asked<'r>(
    req: Req<'r>,
    lcf: &LocConf,
    origin: Option<&'r [u8]>,
) -> Result<Asked<'r>, ngx_int_t> {
    let rules = lcf.settings.listener();
    match choose(rules.transports, req.method(), &req.hints()) {
        Ok(transport) => Ok(Asked {
            store: lcf.store,
            rules,
            transport,
            origin,
        }),
        Err(refusal) => Err(req.refuse(refusal.reply(), Some(origin))),
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
    let a = match asked(req, lcf, origin) {
        Ok(a) => a,
        Err(rc) => return rc,
    };
    if let Some(t) = worker::totals() {
        t.listener_request(a.transport);
    }
    let ask = Listen {
        id: &id,
        cursor: if a.transport.is_stream() {
            req.stream_cursor()
        } else {
            req.cursor()
        },
        rules: a.rules,
        transport: a.transport,
        now: worker::now(),
    };
    match ops::run(a.store, |b, fx| b.listen(&ask, fx)) {
        None => ERROR,
        Some(Run::Done(out, fx)) => {
            let msgs = ops::finish(fx, None);
            listened(req, &a, out, &msgs)
        }
        Some(Run::Later(op)) => {
            let Store::Redis { endpoint, .. } = a.store else {
                return ERROR;
            };
            match waiting::wait(req, usize::from(endpoint), op, resume, false) {
                Ok(()) => NGX_DONE as ngx_int_t,
                Err(()) => ERROR,
            }
        }
    }
}

/// The listen completed (Redis): continue as if it had at once.
fn resume(req: Req<'_>, c: Completion, msgs: &[Rc<Delivery>]) {
    let Some((lcf, _)) = conf::of_request(req.ngx()) else {
        return req.finalize_parked(ERROR);
    };
    let rc = match (c, asked(req, lcf, req.allow_origin(lcf))) {
        (Completion::Listen(out), Ok(a)) => listened(req, &a, out, msgs),
        (_, Err(rc)) => rc,
        _ => ERROR,
    };
    // NGX_DONE (held) drops the count the wait took; park took its own.
    req.finalize_parked(rc);
}

/// Answer, park or start what the store decided; `msgs` are the
/// deliveries of the operation's copies.
fn listened(
    req: Req<'_>,
    a: &Asked<'_>,
    out: Result<Listened, Refusal>,
    msgs: &[Rc<Delivery>],
) -> ngx_int_t {
    match out {
        Ok(Listened::Held { chan, key, backlog }) => {
            let parking = Parking {
                key,
                chan,
                store: a.store,
                transport: a.transport,
                origin: a.origin,
                timeout_ms: if a.transport.is_stream() {
                    0
                } else {
                    a.rules.timeout_ms
                },
                stream: core::ptr::null_mut(),
                release: None,
            };
            let backlog = msgs
                .get(backlog.start as usize..backlog.end as usize)
                .unwrap_or(&[]);
            delivered(a.transport, backlog.len());
            let started = match a.transport {
                Transport::EventSource => eventsource::start(req, parking, &a.rules, backlog),
                Transport::WebSocket => websocket::start(
                    req,
                    parking,
                    &a.rules,
                    req.header(b"Sec-WebSocket-Key").unwrap_or(b""),
                    req.header(b"Sec-WebSocket-Protocol"),
                    backlog,
                ),
                _ => parked::park(req, parking),
            };
            req.debug(format_args!(
                "listener held ({}), {} message(s) of backlog",
                a.transport.name(),
                backlog.len()
            ));
            if started.is_err() {
                ops::forget(a.store, chan, key);
                worker::with(|w| w.parked.remove(key));
                req.log(
                    Level::Error,
                    "cannot hold a listener: no memory in its request pool",
                );
                return ERROR;
            }
            NGX_DONE as ngx_int_t
        }
        Ok(Listened::Message(MsgRef::Copy(i))) => match msgs.get(i as usize) {
            Some(d) => {
                delivered(a.transport, 1);
                req.debug(format_args!(
                    "listener answered at once ({})",
                    a.transport.name()
                ));
                req.message(d, a.origin)
            }
            None => ERROR,
        },
        Ok(Listened::Message(MsgRef::Published)) => ERROR,
        Ok(Listened::NotModified) => req.not_modified(a.origin),
        Err(refusal) => req.refuse(refusal.reply(), Some(a.origin)),
    }
}

/// Count messages a listener got with its request's own answer.
fn delivered(t: Transport, n: usize) {
    if let (Some(totals), true) = (worker::totals(), n > 0) {
        let mut by = [0u64; 4];
        by[t as usize] = n as u64;
        totals.delivered(&by);
    }
}
