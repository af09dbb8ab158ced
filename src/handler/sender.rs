//! The content handler of `push_sender` locations: publish (`POST`, after
//! nginx has read the body), create (`PUT`), inspect (`GET`, `HEAD`) and
//! delete (`DELETE`) the channel, then answer with its info.

use std::rc::Rc;

use nginx_sys::{
    ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_ACCEPTED, NGX_HTTP_CREATED,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_OK, NGX_HTTP_SPECIAL_RESPONSE,
};
use push_relay::backend::{OpId, Publish, Published};
use push_relay::conf::Role;
use push_relay::delivery::{is_message_http, Delivery};
use push_relay::outcome::{Level, Refusal};
use push_relay::proto::info::ChannelInfo;
use push_relay::proto::msghttp;
use push_relay::proto::text::is_token;
use push_relay::redis::backend::Completion;
use push_relay::request::{sender_op, SenderOp};

use crate::conf::{self, Store};
use crate::http::request::Req;
use crate::runtime::ops::{self, Run};
use crate::runtime::{waiting, worker};

const ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// # Safety
/// nginx's content phase calls it with a live request.
pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: live for the call (the content phase's request).
    match unsafe { Req::new(r) } {
        Some(req) => send(req),
        None => ERROR,
    }
}

fn send(req: Req<'_>) -> ngx_int_t {
    let Some((lcf, mcf)) = conf::of_request(req.ngx()) else {
        return ERROR;
    };
    let id = req.channel(lcf, mcf);
    let op = sender_op(req.method(), id.as_ref().map(|_| ()).map_err(|e| *e));
    let (op, id) = match (op, id) {
        (Err(refusal), _) => {
            let _ = req.discard_body();
            return req.refuse(refusal.reply(), None);
        }
        (Ok(SenderOp::Options), _) => {
            let _ = req.discard_body();
            return req.preflight(
                Role::Sender,
                lcf.settings.transports(),
                req.allow_origin(lcf),
            );
        }
        (Ok(op), Ok(id)) => (op, id),
        (Ok(_), Err(_)) => return ERROR,
    };
    if op == SenderOp::Publish {
        // The id is read now, once, and kept for when the body is in.
        if req.keep_post_id(&id).is_none() {
            return ERROR;
        }
        let rc = req.read_body(publish_body);
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        return NGX_DONE as ngx_int_t;
    }
    if let Err(rc) = req.discard_body() {
        return rc;
    }
    let now = worker::now();
    let rules = lcf.settings.sender();
    let done = ops::run(lcf.store, |b, fx| match op {
        SenderOp::Create => b.create(&id, &rules, now, fx),
        SenderOp::Delete => b.delete(&id, now, fx),
        _ => b.info(&id, now, fx),
    });
    match done {
        None => ERROR,
        Some(Run::Done(out, fx)) => {
            ops::finish(fx, None);
            info(req, out)
        }
        Some(Run::Later(op)) => wait(req, lcf.store, op, false),
    }
}

/// Answer with the channel's info, or the refusal.
fn info(req: Req<'_>, out: Result<ChannelInfo, Refusal>) -> ngx_int_t {
    match out {
        Ok(info) => req.info(NGX_HTTP_OK as u16, &info),
        Err(refusal) => req.refuse(refusal.reply(), None),
    }
}

/// Wait for a store that answers later; `counted`: a POST, kept alive by
/// its body read.
fn wait(req: Req<'_>, store: Store, op: OpId, counted: bool) -> ngx_int_t {
    let Store::Redis { endpoint, .. } = store else {
        return ERROR;
    };
    match waiting::wait(req, usize::from(endpoint), op, resume, counted) {
        Ok(()) => NGX_DONE as ngx_int_t,
        Err(()) => ERROR,
    }
}

/// The operation completed (Redis): answer and finish the request.
fn resume(req: Req<'_>, c: Completion, _msgs: &[Rc<Delivery>]) {
    let rc = match c {
        Completion::Info(out) => info(req, out),
        Completion::Publish(out) => published(req, out),
        Completion::Listen(_) => ERROR,
    };
    req.finalize(rc);
}

/// `201` when a listener was held, else `202`, with the channel's info.
fn published(req: Req<'_>, out: Result<Published, Refusal>) -> ngx_int_t {
    match out {
        Ok(posted) => {
            let status = if posted.held > 0 {
                NGX_HTTP_CREATED
            } else {
                NGX_HTTP_ACCEPTED
            };
            req.info(status as u16, &posted.info)
        }
        Err(refusal) => req.refuse(refusal.reply(), None),
    }
}

/// The body of a POST has been read: publish it.
unsafe extern "C" fn publish_body(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls it with the live request whose body it read.
    let Some(req) = (unsafe { Req::new(r) }) else {
        return;
    };
    let rc = publish(req);
    // NGX_DONE: it waits on the store, and finishes when that answers.
    if rc != NGX_DONE as ngx_int_t {
        req.finalize(rc);
    }
}

fn publish(req: Req<'_>) -> ngx_int_t {
    let Some((lcf, _)) = conf::of_request(req.ngx()) else {
        return ERROR;
    };
    let Some(id) = req.post_id() else {
        return ERROR;
    };
    let Some(body) = req.body() else {
        req.log(Level::Error, "cannot read the request body");
        return ERROR;
    };
    let content_type = req.content_type().unwrap_or(b"");
    if is_message_http(content_type) {
        if let Err(e) = msghttp::parse(&body) {
            return req.refuse(Refusal::BadMessage(e).reply(), None);
        }
    }
    // Named events for EventSource listeners: a token, checked here so a
    // stream can never be split by it.
    let event = req.header(b"X-EventSource-Event").unwrap_or(b"");
    if !event.is_empty() && !is_token(event) {
        return req.refuse(Refusal::BadEventName.reply(), None);
    }
    let p = Publish {
        id,
        content_type,
        event,
        body: &body,
        rules: lcf.settings.sender(),
        now: worker::now(),
    };
    let store = lcf.store;
    let out = match ops::run(store, |b, fx| b.publish(&p, fx)) {
        None => return ERROR,
        Some(Run::Later(op)) => return wait(req, store, op, true),
        Some(Run::Done(out, fx)) => {
            let published = match &out {
                Ok(posted) if ops::wants_published(&fx) => Some(Rc::new(Delivery::new(
                    posted.id,
                    content_type.to_vec(),
                    event.to_vec(),
                    body,
                ))),
                _ => None,
            };
            ops::finish(fx, published.as_ref());
            out
        }
    };
    published(req, out)
}
