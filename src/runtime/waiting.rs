//! Requests that wait for an operation of a store that answers later
//! (Redis): which request waits on which operation, what resumes it when
//! the operation completes, and forgetting it when its client leaves
//! first.

use core::ffi::c_void;
use core::ptr::NonNull;
use std::rc::Rc;

use nginx_sys::{ngx_http_cleanup_add, ngx_http_request_t};
use push_relay::backend::{Backend, Listened, OpId};
use push_relay::delivery::Delivery;
use push_relay::redis::backend::Completion;

use super::worker::with;
use crate::http::request::Req;

/// What continues a request once its operation completed.
pub type Resume = fn(Req<'_>, Completion, &[Rc<Delivery>]);

pub struct Waiter {
    r: NonNull<ngx_http_request_t>,
    resume: Resume,
}

/// The module's ctx of a waiting request.
#[derive(Clone, Copy)]
struct WaitCtx {
    ep: usize,
    op: OpId,
}

/// Make `req` wait for operation `op` of Redis endpoint `ep`. `counted`:
/// the request is already kept alive (a POST, whose body was read);
/// otherwise its count goes up here and its content handler returns
/// `NGX_DONE`.
pub fn wait(req: Req<'_>, ep: usize, op: OpId, resume: Resume, counted: bool) -> Result<(), ()> {
    req.set_ctx(WaitCtx { ep, op }).ok_or(())?;
    let r = req.raw();
    // SAFETY: a cleanup of the live request, and its count.
    unsafe {
        let cln = ngx_http_cleanup_add(r, 0);
        if cln.is_null() {
            return Err(());
        }
        (*cln).handler = Some(cleanup);
        (*cln).data = r.cast::<c_void>();
        if !counted {
            let main = &mut *req.fields().main;
            main.set_count(main.count() + 1);
        }
    }
    with(|w| {
        if let Some(c) = w.redis.get_mut(ep) {
            c.waiting.insert(
                op,
                Waiter {
                    r: NonNull::from(req.fields()),
                    resume,
                },
            );
        }
    });
    Ok(())
}

/// The request is going before its operation completed.
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: `data` is the request, valid while its cleanups run.
    let Some(req) = (unsafe { Req::new(data.cast()) }) else {
        return;
    };
    if let Some(ctx) = req.ctx::<WaitCtx>() {
        with(|w| w.redis.get_mut(ctx.ep).map(|c| c.waiting.remove(&ctx.op)));
    }
}

/// Operation `op` of endpoint `ep` completed: resume its request, or,
/// when the request has gone, forget the listener it held.
pub fn resume(ep: usize, op: OpId, c: Completion, msgs: &[Rc<Delivery>]) {
    let waiter = with(|w| w.redis.get_mut(ep).and_then(|c| c.waiting.remove(&op))).flatten();
    match waiter {
        Some(w) => {
            // SAFETY: a request in the waiting table is live: its cleanup
            // takes it out before nginx frees it.
            if let Some(req) = unsafe { Req::new(w.r.as_ptr()) } {
                (w.resume)(req, c, msgs);
            }
        }
        None => {
            if let Completion::Listen(Ok(Listened::Held { chan, key, .. })) = c {
                with(|w| {
                    if let Some(c) = w.redis.get_mut(ep) {
                        c.backend.scope(0).forget(chan, key, 0);
                        c.flush();
                    }
                });
            }
        }
    }
}
