//! Writing an answer: a message, a `304` with the cursor echoed, a refusal
//! with its plain-text reason and log line, channel info, a preflight.
//!
//! Each fills `headers_out`, sends the header and the body through nginx's
//! filters (so gzip, chunked and HEAD work as usual) and returns nginx's
//! result, for the caller to return (content handler) or to finalize with
//! (a held request). Nothing here touches the store.

use core::ffi::c_void;
use core::ptr;
use std::rc::Rc;

use nginx_sys::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_http_output_filter, ngx_http_send_header,
    ngx_http_set_content_type, ngx_int_t, ngx_list_push, ngx_pcalloc, ngx_pnalloc,
    ngx_pool_cleanup_add, ngx_str_t, ngx_table_elt_t, ngx_uint_t, off_t, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_MODIFIED, NGX_HTTP_OK, NGX_LOG_ALERT, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};
use push_relay::conf::Role;
use push_relay::delivery::Delivery;
use push_relay::outcome::{Level, Reply};
use push_relay::proto::info::{render, ChannelInfo, InfoFormat};
use push_relay::request::preflight;
use push_relay::transport::Transports;

use super::request::Req;

const ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// nginx's log level for a relay log line.
pub(crate) fn ngx_level(level: Level) -> ngx_uint_t {
    (match level {
        Level::Alert => NGX_LOG_ALERT,
        Level::Error => NGX_LOG_ERR,
        Level::Warn => NGX_LOG_WARN,
        Level::Notice => NGX_LOG_NOTICE,
        Level::Info => NGX_LOG_INFO,
    }) as ngx_uint_t
}

impl<'r> Req<'r> {
    /// One line in the error log, on the request's connection log.
    pub fn log(&self, level: Level, msg: &str) {
        ngx::ngx_log_error!(ngx_level(level), self.ngx().log(), "push: {}", msg);
    }

    /// A line at nginx's `debug` level (http mask): only an nginx built
    /// `--with-debug` has it; the others compile it out.
    pub fn debug(&self, args: core::fmt::Arguments<'_>) {
        ngx::ngx_log_debug_mask!(DebugMask::Http, self.ngx().log(), "push: {}", args);
    }

    /// A copy of `s` in the request pool.
    pub fn pool_copy(&self, s: &[u8]) -> Option<&'r [u8]> {
        if s.is_empty() {
            return Some(&[]);
        }
        // SAFETY: the live request's pool; the copy lives as long as it.
        unsafe {
            let p = ngx_pnalloc(self.get().pool, s.len()).cast::<u8>();
            if p.is_null() {
                return None;
            }
            ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            Some(core::slice::from_raw_parts(p, s.len()))
        }
    }

    /// Add an output header without copying it; `key` and `value` must
    /// stay valid until the request is freed (static, in its pool, or in a
    /// delivery the request keeps alive).
    pub fn add_header(&self, key: &'r [u8], value: &'r [u8]) -> Option<*mut ngx_table_elt_t> {
        // SAFETY: the live request's output header list; the element is
        // zeroed first (nginx before 1.23 has no `next`, later ones need it
        // null) and then filled with pointers that outlive the request.
        unsafe {
            let h =
                ngx_list_push(&raw mut self.fields().headers_out.headers).cast::<ngx_table_elt_t>();
            if h.is_null() {
                return None;
            }
            h.write(core::mem::zeroed());
            (*h).hash = 1;
            (*h).key = ngx_str_t {
                len: key.len(),
                data: key.as_ptr().cast_mut(),
            };
            (*h).value = ngx_str_t {
                len: value.len(),
                data: value.as_ptr().cast_mut(),
            };
            Some(h)
        }
    }

    /// `ct` outlives the request; empty: the location's `default_type`.
    pub fn set_content_type(&self, ct: &'r [u8]) -> Option<()> {
        if ct.is_empty() {
            // SAFETY: a live request whose header is not sent.
            let rc = unsafe { ngx_http_set_content_type(self.raw()) };
            return (rc == NGX_OK as ngx_int_t).then_some(());
        }
        let out = &mut self.fields().headers_out;
        out.content_type = ngx_str_t {
            len: ct.len(),
            data: ct.as_ptr().cast_mut(),
        };
        out.content_type_len = ct.len();
        out.content_type_lowcase = ptr::null_mut();
        Some(())
    }

    /// Send the response header (a stream's body follows later).
    pub fn send_header(&self) -> ngx_int_t {
        // SAFETY: a live request whose header has not been sent.
        unsafe { ngx_http_send_header(self.raw()) }
    }

    /// Send the header, then `body` unless this is a HEAD request; `body`
    /// outlives the request.
    fn send(&self, body: &'r [u8]) -> ngx_int_t {
        self.fields().headers_out.content_length_n = body.len() as off_t;
        // SAFETY: a live request whose header has not been sent.
        let rc = unsafe { ngx_http_send_header(self.raw()) };
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || self.get().header_only() != 0
        {
            return rc;
        }
        // SAFETY: buffers from the request pool, pointing at memory that
        // lives as long as the request, handed to nginx's output filters.
        unsafe {
            let pool = self.get().pool;
            let b = ngx_pcalloc(pool, core::mem::size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
            let out = ngx_alloc_chain_link(pool);
            if b.is_null() || out.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            if !body.is_empty() {
                (*b).pos = body.as_ptr().cast_mut();
                (*b).last = (*b).pos.add(body.len());
                (*b).set_memory(1);
            }
            (*b).set_last_buf(if self.is_main() { 1 } else { 0 });
            (*b).set_last_in_chain(1);
            (*out).buf = b;
            (*out).next = ptr::null_mut();
            ngx_http_output_filter(self.raw(), out)
        }
    }

    /// CORS headers of every listener answer.
    pub fn cors(&self, origin: Option<&'r [u8]>) -> Option<()> {
        if let Some(o) = origin {
            self.add_header(b"Access-Control-Allow-Origin", o)?;
            self.add_header(b"Access-Control-Expose-Headers", b"Etag, Last-Modified")?;
        }
        Some(())
    }

    /// Keep `d` alive as long as the request (its headers and body are
    /// read from it, not copied).
    fn keep_delivery(&self, d: &Rc<Delivery>) -> Option<&'r Delivery> {
        // SAFETY: a pool cleanup of the live request, run once when the pool
        // goes; it drops the reference taken here.
        unsafe {
            let cln = ngx_pool_cleanup_add(self.get().pool, 0);
            if cln.is_null() {
                return None;
            }
            (*cln).handler = Some(release_delivery);
            let p = Rc::into_raw(d.clone());
            (*cln).data = p.cast_mut().cast::<c_void>();
            Some(&*p)
        }
    }

    /// `200` with the message and its cursor (or the status and headers of
    /// an embedded `message/http` response).
    pub fn message(&self, d: &Rc<Delivery>, origin: Option<&'r [u8]>) -> ngx_int_t {
        let Some(d) = self.keep_delivery(d) else {
            return NGX_ERROR as ngx_int_t;
        };
        match self.message_headers(d, origin) {
            Some(()) => self.send(d.body()),
            None => ERROR,
        }
    }

    fn message_headers(&self, d: &'r Delivery, origin: Option<&'r [u8]>) -> Option<()> {
        match &d.embedded {
            Some(e) => {
                let out = &mut self.fields().headers_out;
                out.status = e.status as ngx_uint_t;
                out.status_line = ngx_str_t {
                    len: e.status_line.len(),
                    data: e.status_line.as_ptr().cast_mut(),
                };
                self.set_content_type(e.content_type.as_deref().unwrap_or(b""))?;
                for (name, value) in &e.headers {
                    self.add_header(name, value)?;
                }
            }
            None => {
                self.fields().headers_out.status = NGX_HTTP_OK as ngx_uint_t;
                self.set_content_type(&d.content_type)?;
            }
        }
        // Our own cursor logic decides; nginx's must not answer 304 for us.
        // A plain Last-Modified header also survives statuses other than
        // 200, which nginx's own field would not (message/http).
        self.fields().set_disable_not_modified(1);
        self.add_header(b"Last-Modified", &d.last_modified)?;
        // Known to nginx as the entity tag, so gzip marks it weak as it should.
        let etag = self.add_header(b"Etag", d.etag.as_bytes())?;
        self.fields().headers_out.etag = etag;
        self.add_header(b"Vary", b"If-None-Match, If-Modified-Since")?;
        self.cors(origin)
    }

    /// `304` with the request's own cursor echoed, so the client asks again
    /// from where it was.
    pub fn not_modified(&self, origin: Option<&'r [u8]>) -> ngx_int_t {
        let echoed = (|| {
            if let Some(v) = self.if_modified_since() {
                self.add_header(b"Last-Modified", v)?;
            }
            if let Some(v) = self.if_none_match() {
                self.add_header(b"Etag", v)?;
            }
            self.cors(origin)
        })();
        if echoed.is_none() {
            return ERROR;
        }
        let r = self.fields();
        r.headers_out.status = NGX_HTTP_NOT_MODIFIED as ngx_uint_t;
        r.set_header_only(1);
        r.headers_out.content_length_n = -1;
        // SAFETY: a live request whose header has not been sent.
        unsafe { ngx_http_send_header(self.raw()) }
    }

    /// A refusal: its status, plain-text reason, `Allow` header and log
    /// line; CORS headers when `cors` (listener answers carry them).
    pub fn refuse(&self, reply: Reply, cors: Option<Option<&'r [u8]>>) -> ngx_int_t {
        if let Some((level, msg)) = reply.log {
            self.log(level, msg);
        }
        let headers = (|| {
            if let Some(origin) = cors {
                self.cors(origin)?;
            }
            if let Some((name, value)) = reply.header {
                self.add_header(name.as_bytes(), value.as_bytes())?;
            }
            Some(())
        })();
        if headers.is_none() {
            return ERROR;
        }
        self.status(reply.status, reply.body)
    }

    /// A status with a static plain-text body.
    pub fn status(&self, status: u16, body: &'static str) -> ngx_int_t {
        self.fields().headers_out.status = status as ngx_uint_t;
        if self.set_content_type(b"text/plain").is_none() {
            return ERROR;
        }
        self.send(body.as_bytes())
    }

    /// A status with a body made at run time (copied into the pool).
    pub fn dynamic(&self, status: u16, content_type: &'static str, body: &[u8]) -> ngx_int_t {
        let Some(body) = self.pool_copy(body) else {
            return ERROR;
        };
        self.fields().headers_out.status = status as ngx_uint_t;
        if self.set_content_type(content_type.as_bytes()).is_none() {
            return ERROR;
        }
        self.send(body)
    }

    /// Channel info in the format the request's `Accept` asks for.
    pub fn info(&self, status: u16, info: &ChannelInfo) -> ngx_int_t {
        let fmt = InfoFormat::from_accept(self.header(b"Accept"));
        self.dynamic(status, fmt.content_type(), &render(info, fmt))
    }

    /// `200` to a CORS preflight on a location of `role` offering
    /// `transports`.
    pub fn preflight(
        &self,
        role: Role,
        transports: Transports,
        origin: Option<&'r [u8]>,
    ) -> ngx_int_t {
        if let Some(o) = origin {
            let mut ok = self.add_header(b"Access-Control-Allow-Origin", o).is_some();
            if role == Role::Listener {
                ok &= self
                    .add_header(b"Access-Control-Expose-Headers", b"Etag, Last-Modified")
                    .is_some();
            }
            for (k, v) in preflight(role, transports) {
                ok &= self.add_header(k.as_bytes(), v.as_bytes()).is_some();
            }
            if !ok {
                return ERROR;
            }
        }
        self.dynamic(NGX_HTTP_OK as u16, "text/plain", b"")
    }
}

/// Pool cleanup of a request that was sent a message.
///
/// # Safety
/// nginx calls it once, with the pointer `keep` registered.
unsafe extern "C" fn release_delivery(data: *mut c_void) {
    // SAFETY: `data` is the Rc leaked by `keep` for this request.
    drop(unsafe { Rc::from_raw(data.cast_const().cast::<Delivery>()) });
}

impl Req<'_> {
    /// Finish a request the module answered outside its content handler
    /// (after reading its body). The handle is not used after.
    pub fn finalize(self, rc: ngx_int_t) {
        // SAFETY: a live request, finalized once; `self` is consumed.
        unsafe { nginx_sys::ngx_http_finalize_request(self.raw(), rc) };
    }

    /// Finish a parked request and run what its connection posted. The
    /// handle is not used after.
    pub fn finalize_parked(self, rc: ngx_int_t) {
        let c = self.get().connection;
        // SAFETY: a live parked request, finalized once; its connection is
        // read before, as finalizing may free the request.
        unsafe {
            nginx_sys::ngx_http_finalize_request(self.raw(), rc);
            nginx_sys::ngx_http_run_posted_requests(c);
        }
    }
}
