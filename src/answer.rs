//! HTTP answers: a message, a 304 with the cursor echoed, a status with a
//! short plain-text reason, channel info.
//!
//! Every function here fills `r->headers_out`, sends the header and the body
//! through nginx's filters (so gzip, chunked and HEAD work as usual) and
//! returns nginx's result for the caller to return (content handler) or to
//! finalize with (held request). Nothing here touches the store.

use core::ffi::c_void;
use core::ptr;
use std::rc::Rc;

use nginx_sys::*;

use crate::cursor::{etag, http_date, Etag, MsgId};
use crate::msghttp;

/// A message as this worker sends it: copied out of the zone once, shared by
/// every listener it goes to, freed with the last of their requests.
pub struct Delivery {
    etag: Etag,
    last_modified: [u8; 29],
    content_type: Vec<u8>,
    data: Vec<u8>,
    embedded: Option<Embedded>,
}

/// A `message/http` message, parsed once per worker.
struct Embedded {
    status: ngx_uint_t,
    status_line: Vec<u8>,
    content_type: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body_at: usize,
}

pub fn is_message_http(content_type: &[u8]) -> bool {
    let base = content_type.split(|&b| b == b';').next().unwrap_or(b"");
    base.trim_ascii().eq_ignore_ascii_case(b"message/http")
}

impl Delivery {
    pub fn new(content_type: &[u8], data: Vec<u8>, id: MsgId) -> Rc<Delivery> {
        let embedded = if is_message_http(content_type) {
            // Checked when it was published; a failure here means the body is
            // sent as it is, which is still a correct HTTP answer.
            msghttp::parse(&data).ok().map(|e| {
                let mut status_line = e.status.to_string().into_bytes();
                status_line.push(b' ');
                status_line.extend_from_slice(e.reason);
                Embedded {
                    status: e.status as ngx_uint_t,
                    status_line,
                    content_type: e.content_type.map(|c| c.to_vec()),
                    headers: e
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_vec(), v.to_vec()))
                        .collect(),
                    body_at: data.len() - e.body.len(),
                }
            })
        } else {
            None
        };
        Rc::new(Delivery {
            etag: etag(id.tag),
            last_modified: http_date(id.time),
            content_type: content_type.to_vec(),
            data,
            embedded,
        })
    }

    fn body(&self) -> &[u8] {
        match &self.embedded {
            Some(e) => &self.data[e.body_at..],
            None => &self.data,
        }
    }
}

/// Copy bytes into the request pool (header values must outlive the call).
///
/// # Safety
/// `r` is a live request.
unsafe fn pool_str(r: *mut ngx_http_request_t, s: &[u8]) -> Option<ngx_str_t> {
    if s.is_empty() {
        return Some(ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        });
    }
    let p = ngx_pnalloc((*r).pool, s.len()) as *mut u8;
    if p.is_null() {
        return None;
    }
    ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
    Some(ngx_str_t {
        len: s.len(),
        data: p,
    })
}

/// Add an output header without copying it.
///
/// # Safety
/// `r` is a live request whose header has not been sent; `key` and `value`
/// stay valid until the request is freed (static, in the request pool, or
/// in a `Delivery` the request keeps alive).
pub unsafe fn add_header(
    r: *mut ngx_http_request_t,
    key: &[u8],
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    let h = ngx_list_push(&raw mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
    if h.is_null() {
        return None;
    }
    // Zeroed first: nginx before 1.23 has no `next` field, later ones need
    // it null.
    h.write(core::mem::zeroed());
    (*h).hash = 1;
    (*h).key = ngx_str_t {
        len: key.len(),
        data: key.as_ptr() as *mut u8,
    };
    (*h).value = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    Some(h)
}

/// # Safety
/// `r` is a live request whose header has not been sent; `ct` outlives it
/// (see `add_header`).
unsafe fn set_content_type(r: *mut ngx_http_request_t, ct: &[u8]) -> Option<()> {
    if ct.is_empty() {
        // The sender sent none: the listener location's default_type.
        if ngx_http_set_content_type(r) != NGX_OK as ngx_int_t {
            return None;
        }
        return Some(());
    }
    (*r).headers_out.content_type = ngx_str_t {
        len: ct.len(),
        data: ct.as_ptr() as *mut u8,
    };
    (*r).headers_out.content_type_len = ct.len();
    (*r).headers_out.content_type_lowcase = ptr::null_mut();
    Some(())
}

/// Send the header, then `body` unless this is a HEAD request.
///
/// # Safety
/// `r` is a live request; `body` stays valid until the request is freed
/// (it is in the request pool, static, or kept alive by a pool cleanup).
unsafe fn send(r: *mut ngx_http_request_t, body: &[u8]) -> ngx_int_t {
    (*r).headers_out.content_length_n = body.len() as off_t;
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let b = ngx_pcalloc((*r).pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    let out = ngx_alloc_chain_link((*r).pool);
    if b.is_null() || out.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    if !body.is_empty() {
        (*b).pos = body.as_ptr() as *mut u8;
        (*b).last = (*b).pos.add(body.len());
        (*b).set_memory(1);
    }
    (*b).set_last_buf(if r == (*r).main { 1 } else { 0 });
    (*b).set_last_in_chain(1);
    (*out).buf = b;
    (*out).next = ptr::null_mut();
    ngx_http_output_filter(r, out)
}

/// Pool cleanup of a request that was sent a message.
///
/// # Safety
/// nginx calls it once, with the pointer `message` registered.
unsafe extern "C" fn release_delivery(data: *mut c_void) {
    // SAFETY: `data` is the Rc leaked by `message` for this request.
    drop(Rc::from_raw(data as *const Delivery));
}

/// CORS headers common to every listener answer.
///
/// # Safety
/// `r` is a live request whose header has not been sent; `origin` outlives
/// it (static or in its pool).
pub unsafe fn cors(r: *mut ngx_http_request_t, origin: Option<&[u8]>) -> Option<()> {
    if let Some(o) = origin {
        add_header(r, b"Access-Control-Allow-Origin", o)?;
        add_header(r, b"Access-Control-Expose-Headers", b"Etag, Last-Modified")?;
    }
    Some(())
}

/// `200` with the message and its cursor.
///
/// # Safety
/// `r` is a live request whose header has not been sent; `origin` outlives
/// it (static or in its pool).
pub unsafe fn message(
    r: *mut ngx_http_request_t,
    d: &Rc<Delivery>,
    origin: Option<&[u8]>,
) -> ngx_int_t {
    // Headers and body are read from the shared copy: keep it alive with
    // the request, before anything points into it.
    let cln = ngx_pool_cleanup_add((*r).pool, 0);
    if cln.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    (*cln).handler = Some(release_delivery);
    (*cln).data = Rc::into_raw(d.clone()) as *mut c_void;
    match message_headers(r, d, origin) {
        Some(()) => send(r, d.body()),
        None => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
    }
}

/// # Safety
/// As `message`; `d` is kept alive by the request.
unsafe fn message_headers(
    r: *mut ngx_http_request_t,
    d: &Delivery,
    origin: Option<&[u8]>,
) -> Option<()> {
    (*r).headers_out.status = NGX_HTTP_OK as ngx_uint_t;
    match &d.embedded {
        Some(e) => {
            (*r).headers_out.status = e.status;
            (*r).headers_out.status_line = ngx_str_t {
                len: e.status_line.len(),
                data: e.status_line.as_ptr() as *mut u8,
            };
            set_content_type(r, e.content_type.as_deref().unwrap_or(b""))?;
            for (name, value) in &e.headers {
                add_header(r, name, value)?;
            }
        }
        None => set_content_type(r, &d.content_type)?,
    }
    // Our own cursor logic decides; nginx's must not answer 304 for us. A
    // plain Last-Modified header also survives statuses other than 200,
    // which nginx's own field would not (message/http).
    (*r).set_disable_not_modified(1);
    add_header(r, b"Last-Modified", &d.last_modified)?;
    // Known to nginx as the entity tag, so gzip marks it weak as it should.
    (*r).headers_out.etag = add_header(r, b"Etag", d.etag.as_bytes())?;
    add_header(r, b"Vary", b"If-None-Match, If-Modified-Since")?;
    cors(r, origin)
}

/// `304` with the request's own cursor echoed, so the client asks again
/// from where it was.
///
/// # Safety
/// `r` is a live request whose header has not been sent.
pub unsafe fn not_modified(r: *mut ngx_http_request_t, origin: Option<&[u8]>) -> ngx_int_t {
    let ims = (*r).headers_in.if_modified_since;
    let inm = (*r).headers_in.if_none_match;
    let ok = (|| {
        if !ims.is_null() {
            add_header(r, b"Last-Modified", (*ims).value.as_bytes())?;
        }
        if !inm.is_null() {
            add_header(r, b"Etag", (*inm).value.as_bytes())?;
        }
        cors(r, origin)
    })();
    if ok.is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    (*r).headers_out.status = NGX_HTTP_NOT_MODIFIED as ngx_uint_t;
    (*r).set_header_only(1);
    (*r).headers_out.content_length_n = -1;
    ngx_http_send_header(r)
}

/// A status with a short plain-text reason, plus optional extra headers.
///
/// # Safety
/// `r` is a live request whose header has not been sent.
pub unsafe fn status(
    r: *mut ngx_http_request_t,
    status: u32,
    reason: &'static str,
    extra: &[(&'static str, &[u8])],
) -> ngx_int_t {
    for (k, v) in extra {
        if add_header(r, k.as_bytes(), v).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    }
    (*r).headers_out.status = status as ngx_uint_t;
    if set_content_type(r, b"text/plain").is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    send(r, reason.as_bytes())
}

/// A status with a body built at run time (channel info).
///
/// # Safety
/// `r` is a live request whose header has not been sent.
pub unsafe fn body(
    r: *mut ngx_http_request_t,
    status: u32,
    content_type: &'static str,
    body: &[u8],
    extra: &[(&'static str, &[u8])],
) -> ngx_int_t {
    for (k, v) in extra {
        if add_header(r, k.as_bytes(), v).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    }
    let Some(b) = pool_str(r, body) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    (*r).headers_out.status = status as ngx_uint_t;
    if set_content_type(r, content_type.as_bytes()).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if b.len == 0 {
        return send(r, b"");
    }
    send(r, core::slice::from_raw_parts(b.data, b.len))
}
