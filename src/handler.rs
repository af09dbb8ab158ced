//! Content handlers of `push_sender` and `push_listener` locations.
//!
//! Each request goes: read the channel id and the location's rules, ask the
//! store under the zone lock, then answer (or park) with the lock released.

use core::ptr;
use std::borrow::Cow;

use nginx_sys::*;

use crate::answer::{self, Delivery};
use crate::conf::{LocConf, MainConf, MODE_INTERVAL_POLL};
use crate::cursor::Cursor;
use crate::info::{render, InfoFormat};
use crate::listeners::Held;
use crate::msghttp;
use crate::store::{Concurrency, Listen, ListenRules, NoMemory, Publish, Wake};
use crate::worker::{self, Answer, CONFLICT, GONE};

const LISTENER_ALLOW: &[u8] = b"GET, OPTIONS";
const SENDER_ALLOW: &[u8] = b"GET, PUT, POST, DELETE, OPTIONS";
const NO_ID: &str = "No channel id provided.\n";
const ID_TOO_LONG: &str = "Channel id is too long.\n";
const ZONE_FULL: &str = "507 Insufficient Storage: the push_buffer_size zone is full.\n";

/// # Safety
/// `r` is a request in one of our locations.
unsafe fn loc_conf<'a>(r: *mut ngx_http_request_t) -> &'a LocConf {
    // SAFETY: our loc conf slot, filled by create_loc_conf for every location.
    &*(*(*r).loc_conf.add(crate::module().ctx_index) as *const LocConf)
}

/// # Safety
/// `r` is a request in one of our locations.
unsafe fn main_conf<'a>(r: *mut ngx_http_request_t) -> &'a MainConf {
    // SAFETY: as above, for the http block's main configuration.
    &*(*(*r).main_conf.add(crate::module().ctx_index) as *const MainConf)
}

fn log_error(r: *mut ngx_http_request_t, msg: &str) {
    // SAFETY: a live request has a connection with a log.
    let log = unsafe { (*(*r).connection).log };
    ngx::ngx_log_error!(NGX_LOG_ERR, log, "push: {}", msg);
}

/// The value of an indexed variable, if set and non-empty.
///
/// # Safety
/// `r` is a live request.
unsafe fn variable<'a>(r: *mut ngx_http_request_t, index: ngx_int_t) -> Option<&'a [u8]> {
    if index < 0 {
        return None;
    }
    let v = ngx_http_get_indexed_variable(r, index as ngx_uint_t);
    if v.is_null() || (*v).not_found() != 0 || (*v).len() == 0 {
        return None;
    }
    Some(core::slice::from_raw_parts((*v).data, (*v).len() as usize))
}

/// Evaluate a complex value into the request pool.
///
/// # Safety
/// `r` is a live request, `cv` a compiled complex value.
unsafe fn complex<'a>(
    r: *mut ngx_http_request_t,
    cv: *mut ngx_http_complex_value_t,
) -> Option<&'a [u8]> {
    let mut s = ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    };
    if ngx_http_complex_value(r, cv, &mut s) != NGX_OK as ngx_int_t {
        return None;
    }
    Some(if s.len == 0 {
        &[]
    } else {
        core::slice::from_raw_parts(s.data, s.len)
    })
}

/// `$push_id` (or `$push_channel_id`), prefixed by `push_channel_group`.
///
/// # Safety
/// `r` is a live request in one of our locations.
unsafe fn channel_id<'a>(r: *mut ngx_http_request_t) -> Result<Cow<'a, [u8]>, &'static str> {
    let mcf = main_conf(r);
    let lcf = loc_conf(r);
    let id = variable(r, mcf.var_push_id)
        .or_else(|| variable(r, mcf.var_push_channel_id))
        .ok_or(NO_ID)?;
    if id.len() > lcf.max_id_length.max(0) as usize {
        return Err(ID_TOO_LONG);
    }
    if lcf.group.is_null() {
        // The common case borrows the variable's value (request pool).
        return Ok(Cow::Borrowed(id));
    }
    let group = complex(r, lcf.group).unwrap_or(&[]);
    let mut full = Vec::with_capacity(group.len() + 1 + id.len());
    full.extend_from_slice(group);
    full.push(b'/');
    full.extend_from_slice(id);
    Ok(Cow::Owned(full))
}

/// `push_allow_origin` for this request; `None` when CORS is off.
///
/// # Safety
/// `r` is a live request in one of our locations.
unsafe fn allow_origin<'a>(r: *mut ngx_http_request_t) -> Option<&'a [u8]> {
    let lcf = loc_conf(r);
    match lcf.allow_origin() {
        None => Some(b"*"),
        Some(cv) if cv.is_null() => Some(b"*"),
        Some(cv) => complex(r, cv).filter(|v| !v.is_empty()),
    }
}

/// A header's value from the request's header list (for headers nginx
/// does not keep a pointer to in every build, like Accept).
///
/// # Safety
/// `r` is a live request.
unsafe fn header_in<'a>(r: *mut ngx_http_request_t, name: &[u8]) -> Option<&'a [u8]> {
    let mut part: *mut ngx_list_part_t = &raw mut (*r).headers_in.headers.part;
    while !part.is_null() {
        let elts = (*part).elts as *const ngx_table_elt_t;
        for i in 0..(*part).nelts {
            let h = &*elts.add(i);
            if h.key.as_bytes().eq_ignore_ascii_case(name) {
                return Some(h.value.as_bytes());
            }
        }
        part = (*part).next;
    }
    None
}

/// # Safety
/// `h` is null or a header of a live request.
unsafe fn elt_value<'a>(h: *mut ngx_table_elt_t) -> Option<&'a [u8]> {
    if h.is_null() {
        None
    } else {
        Some((*h).value.as_bytes())
    }
}

const METHOD_GET: ngx_uint_t = NGX_HTTP_GET as ngx_uint_t;
const METHOD_HEAD: ngx_uint_t = NGX_HTTP_HEAD as ngx_uint_t;
const METHOD_POST: ngx_uint_t = NGX_HTTP_POST as ngx_uint_t;
const METHOD_PUT: ngx_uint_t = NGX_HTTP_PUT as ngx_uint_t;
const METHOD_DELETE: ngx_uint_t = NGX_HTTP_DELETE as ngx_uint_t;
const METHOD_OPTIONS: ngx_uint_t = NGX_HTTP_OPTIONS as ngx_uint_t;

// ---- listener ---------------------------------------------------------------

/// Content handler of `push_listener` locations.
///
/// # Safety
/// Called by nginx's content phase with a live request.
pub unsafe extern "C" fn listener_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let method = (*r).method;
    if method == METHOD_OPTIONS {
        let _ = discard_body(r);
        return listener_options(r);
    }
    let origin = allow_origin(r);
    let id = match channel_id(r) {
        Ok(id) => id,
        Err(reason) => {
            let _ = discard_body(r);
            log_error(r, reason.trim_end());
            return listener_status(r, origin, NGX_HTTP_BAD_REQUEST, reason, &[]);
        }
    };
    if method != METHOD_GET && method != METHOD_HEAD {
        let _ = discard_body(r);
        log_error(r, "method not allowed on a push_listener location");
        return listener_status(
            r,
            origin,
            NGX_HTTP_NOT_ALLOWED,
            "405 Method Not Allowed\n",
            &[("Allow", LISTENER_ALLOW)],
        );
    }
    if let Err(rc) = discard_body(r) {
        return rc;
    }
    if ngx_exiting != 0 {
        return answer::not_modified(r, origin);
    }
    let lcf = loc_conf(r);
    let cursor = Cursor::from_headers(
        elt_value((*r).headers_in.if_modified_since),
        elt_value((*r).headers_in.if_none_match),
    );
    let rules = ListenRules {
        concurrency: lcf.concurrency(),
        // A subrequest (SSI, auth_request) cannot be parked: it answers
        // at once, like interval-poll.
        hold: lcf.mode != MODE_INTERVAL_POLL && r == (*r).main,
        authorized_only: lcf.authorized_only == 1,
        max_subscribers: lcf.max_subscribers.clamp(0, u32::MAX as isize) as u32,
    };
    enum Now {
        Message(std::rc::Rc<Delivery>),
        NotModified,
        Status(u32, &'static str),
        Hold {
            seq: u64,
            serial: u64,
            hash: u64,
            evicted: Vec<(u64, Answer)>,
            wake: Vec<Wake>,
        },
        Full,
    }
    let decided = worker::with(|w| {
        let me = w.me;
        let lock = w.zone.lock();
        let now = worker::now();
        match lock.store.listen(&id, &cursor, &rules, now, me) {
            Ok(Listen::Message(m)) => {
                Now::Message(Delivery::new(&m.content_type, m.body.to_vec(), m.id))
            }
            Ok(Listen::NotModified) => Now::NotModified,
            Ok(Listen::Forbidden) => Now::Status(
                NGX_HTTP_FORBIDDEN,
                "403 Forbidden: no listener allowed on this channel.\n",
            ),
            Ok(Listen::Conflict) => Now::Status(NGX_HTTP_CONFLICT, CONFLICT),
            Ok(Listen::Hold {
                seq,
                hash,
                serial,
                evict_older,
            }) => {
                let mut evicted = Vec::new();
                if evict_older {
                    let mut seqs = Vec::new();
                    let n = w.registry.take_before(serial, seq, &mut seqs);
                    if n > 0 {
                        lock.store.unlisten(hash, serial, me, n, now);
                    }
                    evicted.extend(seqs.into_iter().map(|s| (s, Answer::Status(409, CONFLICT))));
                }
                let wake = lock.store.to_wake(me).collect();
                Now::Hold {
                    seq,
                    serial,
                    hash,
                    evicted,
                    wake,
                }
            }
            Err(NoMemory) => Now::Full,
        }
    });
    let Some(decided) = decided else {
        // The module's zone is not set up in this worker.
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    match decided {
        Now::Message(d) => answer::message(r, &d, origin),
        Now::NotModified => answer::not_modified(r, origin),
        Now::Status(s, reason) => listener_status(r, origin, s, reason, &[]),
        Now::Full => {
            log_error(r, "push_buffer_size zone is full, listener refused");
            listener_status(r, origin, NGX_HTTP_INSUFFICIENT_STORAGE, ZONE_FULL, &[])
        }
        Now::Hold {
            seq,
            serial,
            hash,
            evicted,
            wake,
        } => {
            let parked = worker::park(
                r,
                Held {
                    seq,
                    cursor,
                    yields: rules.concurrency == Concurrency::Last,
                },
                serial,
                hash,
                origin,
                lcf.listener_timeout,
            );
            worker::wake_others(&wake);
            worker::deliver(evicted);
            if parked.is_err() {
                worker::with(|w| {
                    if w.registry.remove(serial, seq).is_some() {
                        w.zone
                            .lock()
                            .store
                            .unlisten(hash, serial, w.me, 1, worker::now());
                    }
                });
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            NGX_DONE as ngx_int_t
        }
    }
}

/// Every listener answer carries the CORS headers.
///
/// # Safety
/// `r` is a live request whose header has not been sent.
unsafe fn listener_status(
    r: *mut ngx_http_request_t,
    origin: Option<&[u8]>,
    status: u32,
    reason: &'static str,
    extra: &[(&'static str, &[u8])],
) -> ngx_int_t {
    if answer::cors(r, origin).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    answer::status(r, status, reason, extra)
}

/// # Safety
/// `r` is a live request whose header has not been sent.
unsafe fn listener_options(r: *mut ngx_http_request_t) -> ngx_int_t {
    let mut extra: Vec<(&'static str, &[u8])> = Vec::new();
    if let Some(o) = allow_origin(r) {
        extra.push(("Access-Control-Allow-Origin", o));
        extra.push(("Access-Control-Expose-Headers", b"Etag, Last-Modified"));
        extra.push(("Access-Control-Allow-Methods", LISTENER_ALLOW));
        extra.push((
            "Access-Control-Allow-Headers",
            b"If-None-Match, If-Modified-Since, Origin",
        ));
    }
    answer::body(r, NGX_HTTP_OK, "text/plain", b"", &extra)
}

/// # Safety
/// `r` is a live request.
unsafe fn discard_body(r: *mut ngx_http_request_t) -> Result<(), ngx_int_t> {
    let rc = ngx_http_discard_request_body(r);
    if rc != NGX_OK as ngx_int_t {
        return Err(rc);
    }
    Ok(())
}

// ---- sender -------------------------------------------------------------------

/// Content handler of `push_sender` locations.
///
/// # Safety
/// Called by nginx's content phase with a live request.
pub unsafe extern "C" fn sender_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let method = (*r).method;
    if method == METHOD_OPTIONS {
        discard_body(r).ok();
        let origin = allow_origin(r);
        let mut extra: Vec<(&'static str, &[u8])> = Vec::new();
        if let Some(o) = origin {
            extra.push(("Access-Control-Allow-Origin", o));
            extra.push(("Access-Control-Allow-Methods", SENDER_ALLOW));
            extra.push(("Access-Control-Allow-Headers", b"Content-Type, Origin"));
        }
        return answer::body(r, NGX_HTTP_OK, "text/plain", b"", &extra);
    }
    if ![
        METHOD_GET,
        METHOD_HEAD,
        METHOD_POST,
        METHOD_PUT,
        METHOD_DELETE,
    ]
    .contains(&method)
    {
        discard_body(r).ok();
        log_error(r, "method not allowed on a push_sender location");
        return answer::status(
            r,
            NGX_HTTP_NOT_ALLOWED,
            "405 Method Not Allowed\n",
            &[("Allow", SENDER_ALLOW)],
        );
    }
    let id = match channel_id(r) {
        Ok(id) => id,
        Err(reason) => {
            discard_body(r).ok();
            log_error(r, reason.trim_end());
            return answer::status(r, NGX_HTTP_BAD_REQUEST, reason, &[]);
        }
    };
    if method == METHOD_POST {
        let rc = ngx_http_read_client_request_body(r, Some(publish_body));
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        return NGX_DONE as ngx_int_t;
    }
    if let Err(rc) = discard_body(r) {
        return rc;
    }
    let lcf = loc_conf(r);
    let now = worker::now();
    enum Did {
        Info(crate::store::ChannelInfo),
        Deleted(crate::store::ChannelInfo, Vec<u64>, Vec<Wake>),
        NotFound,
        Full,
    }
    let mut earlier = Vec::new();
    let did = worker::with(|w| {
        let zone = w.zone;
        let mut lock = zone.lock();
        let mut seqs;
        (earlier, seqs) = worker::catch_up(w, &mut lock);
        match method {
            METHOD_PUT => match lock
                .store
                .touch(&id, now, lcf.channel_timeout.max(0) as u64)
            {
                Ok(i) => Did::Info(i),
                Err(NoMemory) => Did::Full,
            },
            METHOD_DELETE => match lock.store.delete(&id, now, w.me) {
                Some((info, _hash, serial)) => {
                    w.registry.take_all(serial, &mut seqs);
                    Did::Deleted(info, seqs, lock.store.to_wake(w.me).collect())
                }
                None => Did::NotFound,
            },
            _ => match lock.store.info(&id, now) {
                Some(i) => Did::Info(i),
                None => Did::NotFound,
            },
        }
    });
    worker::deliver(earlier);
    let Some(did) = did else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    match did {
        Did::Info(info) => send_info(r, NGX_HTTP_OK, &info),
        Did::Deleted(info, seqs, wake) => {
            worker::wake_others(&wake);
            worker::deliver_all(seqs, Answer::Status(410, GONE));
            send_info(r, NGX_HTTP_OK, &info)
        }
        Did::NotFound => answer::status(
            r,
            NGX_HTTP_NOT_FOUND,
            "404 Not Found: no such channel.\n",
            &[],
        ),
        Did::Full => {
            log_error(r, "push_buffer_size zone is full, channel not created");
            answer::status(r, NGX_HTTP_INSUFFICIENT_STORAGE, ZONE_FULL, &[])
        }
    }
}

/// # Safety
/// `r` is a live request whose header has not been sent.
unsafe fn send_info(
    r: *mut ngx_http_request_t,
    status: u32,
    info: &crate::store::ChannelInfo,
) -> ngx_int_t {
    let fmt = InfoFormat::from_accept(header_in(r, b"Accept"));
    let body = render(info, fmt);
    answer::body(r, status, fmt.content_type(), &body, &[])
}

/// Concatenate the request body, from memory buffers and from the temporary
/// file nginx may have written it to.
///
/// # Safety
/// `r` is a live request whose body has been read.
unsafe fn request_body(r: *mut ngx_http_request_t) -> Option<Vec<u8>> {
    let rb = (*r).request_body;
    let mut body = Vec::new();
    if rb.is_null() {
        return Some(body);
    }
    let mut cl = (*rb).bufs;
    while !cl.is_null() {
        let b = (*cl).buf;
        if (*b).in_file() != 0 {
            let len = ((*b).file_last - (*b).file_pos).max(0) as usize;
            let at = body.len();
            body.resize(at + len, 0);
            let n = ngx_read_file((*b).file, body.as_mut_ptr().add(at), len, (*b).file_pos);
            if n != len as isize {
                return None;
            }
        } else if !(*b).pos.is_null() && (*b).last > (*b).pos {
            let len = (*b).last.offset_from((*b).pos) as usize;
            body.extend_from_slice(core::slice::from_raw_parts((*b).pos, len));
        }
        cl = (*cl).next;
    }
    Some(body)
}

/// The body of a POST has been read: publish it.
unsafe extern "C" fn publish_body(r: *mut ngx_http_request_t) {
    let rc = publish(r);
    ngx_http_finalize_request(r, rc);
}

/// # Safety
/// `r` is a live POST request whose body has been read.
unsafe fn publish(r: *mut ngx_http_request_t) -> ngx_int_t {
    let Ok(id) = channel_id(r) else {
        return NGX_HTTP_BAD_REQUEST as ngx_int_t;
    };
    let Some(body) = request_body(r) else {
        log_error(r, "cannot read the request body");
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let content_type = elt_value((*r).headers_in.content_type)
        .unwrap_or(b"")
        .to_vec();
    if answer::is_message_http(&content_type) {
        if let Err(e) = msghttp::parse(&body) {
            log_error(r, e.reason());
            return answer::status(r, NGX_HTTP_BAD_REQUEST, e.reason(), &[]);
        }
    }
    let lcf = loc_conf(r);
    let now = worker::now();
    let p = Publish {
        content_type: &content_type,
        body: &body,
        now,
        message_timeout: lcf.message_timeout.max(0) as u64,
        buffer_length: lcf.buffer_length.max(0) as usize,
        queue: lcf.queue == 1,
        channel_timeout: lcf.channel_timeout.max(0) as u64,
        worker: 0,
    };
    let mut earlier = Vec::new();
    let done = worker::with(|w| {
        let zone = w.zone;
        let mut lock = zone.lock();
        // Older messages other workers queued for this one go first.
        let mut seqs;
        (earlier, seqs) = worker::catch_up(w, &mut lock);
        let p = Publish { worker: w.me, ..p };
        let published = lock.store.publish(&id, &p)?;
        let n = w
            .registry
            .take_admitted(published.serial, published.id, published.upto, &mut seqs);
        if n > 0 {
            lock.store
                .unlisten(published.hash, published.serial, w.me, n, now);
        }
        let info = lock.store.info(&id, now);
        let wake: Vec<Wake> = lock.store.to_wake(w.me).collect();
        Ok::<_, NoMemory>((published, seqs, info, wake))
    });
    let Some(done) = done else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let (published, seqs, info, wake) = match done {
        Ok(d) => d,
        Err(NoMemory) => {
            log_error(r, "push_buffer_size zone is full, message refused (507)");
            return answer::status(r, NGX_HTTP_INSUFFICIENT_STORAGE, ZONE_FULL, &[]);
        }
    };
    worker::wake_others(&wake);
    worker::deliver(earlier);
    if !seqs.is_empty() {
        let d = Delivery::new(&content_type, body, published.id);
        worker::deliver_all(seqs, Answer::Message(d));
    }
    let status = if published.held > 0 {
        NGX_HTTP_CREATED
    } else {
        NGX_HTTP_ACCEPTED
    };
    match info {
        Some(info) => send_info(r, status, &info),
        None => answer::status(r, status, "", &[]),
    }
}
