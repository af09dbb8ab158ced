//! Reading a request: a handle over nginx's request that the handlers use
//! without `unsafe`, and what they read through it (method, headers, the
//! channel id, the cursor, the body).

use core::any::TypeId;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::borrow::Cow;

use nginx_sys::{
    ngx_http_arg, ngx_http_core_loc_conf_t, ngx_http_core_module, ngx_http_discard_request_body,
    ngx_http_get_indexed_variable, ngx_http_read_client_request_body, ngx_http_request_t,
    ngx_int_t, ngx_pcalloc, ngx_read_file, ngx_str_t, ngx_table_elt_t, ngx_uint_t, NGX_HTTP_DELETE,
    NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_OPTIONS, NGX_HTTP_POST, NGX_HTTP_PUT,
    NGX_HTTP_VERSION_11, NGX_HTTP_VERSION_20, NGX_OK,
};
use ngx::http::Request;
use push_relay::outcome::Refusal;
use push_relay::proto::cursor::Cursor;
use push_relay::request::{channel_id, Method};
use push_relay::transport::Hints;

use crate::conf::{LocConf, MainConf, Origin};
use crate::slots;

/// The module's ctx of a request: a value tagged with its type, so it is
/// only ever read back as what it was stored as.
#[repr(C)]
struct Tagged<T> {
    tag: TypeId,
    value: T,
}

/// The channel id of a POST, kept in its pool while nginx reads the body.
#[derive(Clone, Copy)]
struct PostId {
    data: *const u8,
    len: usize,
}

/// A request nginx handed the module, live for `'r`.
#[derive(Clone, Copy)]
pub struct Req<'r> {
    r: NonNull<ngx_http_request_t>,
    _live: PhantomData<&'r mut ngx_http_request_t>,
}

impl<'r> Req<'r> {
    /// # Safety
    /// `r` is a live request that stays live (not finalized and freed) for
    /// `'r`: a content handler's or body handler's request for the call,
    /// or a parked request found in this worker's table.
    pub unsafe fn new(r: *mut ngx_http_request_t) -> Option<Req<'r>> {
        NonNull::new(r).map(|r| Req {
            r,
            _live: PhantomData,
        })
    }

    pub fn raw(self) -> *mut ngx_http_request_t {
        self.r.as_ptr()
    }

    /// The request as ngx's wrapper, for the calls it offers.
    pub fn ngx(&self) -> &'r Request {
        // SAFETY: live for 'r (the constructor's contract); Request is a
        // transparent wrapper of ngx_http_request_t.
        unsafe { Request::from_ngx_http_request(self.raw()) }
    }

    /// The request's fields, read.
    pub fn get(&self) -> &'r ngx_http_request_t {
        // SAFETY: live for 'r; the module only reads or writes the struct
        // from this worker's thread, one access at a time.
        unsafe { self.r.as_ref() }
    }

    /// The request's fields, for writing.
    #[allow(clippy::mut_from_ref)]
    pub fn fields(&self) -> &'r mut ngx_http_request_t {
        // SAFETY: as `get`; callers do not keep the reference across calls.
        unsafe { &mut *self.raw() }
    }

    pub fn is_main(&self) -> bool {
        self.ngx().is_main()
    }

    pub fn method(&self) -> Method {
        let m = self.get().method;
        match m as u32 {
            NGX_HTTP_GET => Method::Get,
            NGX_HTTP_HEAD => Method::Head,
            NGX_HTTP_POST => Method::Post,
            NGX_HTTP_PUT => Method::Put,
            NGX_HTTP_DELETE => Method::Delete,
            NGX_HTTP_OPTIONS => Method::Options,
            _ => Method::Other,
        }
    }

    /// The value of a request header, by name (case-insensitively).
    pub fn header(&self, name: &[u8]) -> Option<&'r [u8]> {
        self.ngx()
            .headers_in_iterator()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }

    /// A header nginx keeps a pointer to.
    fn known(&self, h: *mut ngx_table_elt_t) -> Option<&'r [u8]> {
        // SAFETY: null or a header element of this live request.
        unsafe { h.as_ref() }.map(|h| h.value.as_bytes())
    }

    pub fn if_modified_since(&self) -> Option<&'r [u8]> {
        self.known(self.get().headers_in.if_modified_since)
    }

    pub fn if_none_match(&self) -> Option<&'r [u8]> {
        self.known(self.get().headers_in.if_none_match)
    }

    pub fn content_type(&self) -> Option<&'r [u8]> {
        self.known(self.get().headers_in.content_type)
    }

    /// The listener's "next message after" from its cursor headers.
    pub fn cursor(&self) -> Cursor {
        Cursor::from_headers(self.if_modified_since(), self.if_none_match())
    }

    /// Where a stream starts (`Last-Event-ID`, `?last_event_id=`, then the
    /// cursor headers).
    pub fn stream_cursor(&self) -> Cursor {
        Cursor::for_stream(
            self.header(b"Last-Event-ID"),
            self.arg(b"last_event_id"),
            self.if_modified_since(),
            self.if_none_match(),
        )
    }

    /// A query argument's raw (still percent-encoded) value.
    pub fn arg(&self, name: &[u8]) -> Option<&'r [u8]> {
        let mut v = ngx_str_t::default();
        // SAFETY: a live request; nginx points `v` into its args.
        let rc = unsafe { ngx_http_arg(self.raw(), name.as_ptr().cast_mut(), name.len(), &mut v) };
        if rc != NGX_OK as ngx_int_t || v.len == 0 {
            return None;
        }
        // SAFETY: the value lies in the request line, which lives as long as
        // the request.
        Some(unsafe { core::slice::from_raw_parts(v.data, v.len) })
    }

    /// What the request says about the transport it wants.
    pub fn hints(&self) -> Hints<'r> {
        let version = self.get().http_version as u32;
        Hints {
            http11: version == NGX_HTTP_VERSION_11,
            http2: version >= NGX_HTTP_VERSION_20,
            main: self.is_main(),
            accept: self.header(b"Accept"),
            upgrade: self.header(b"Upgrade"),
            connection: self.header(b"Connection"),
            ws_version: self.header(b"Sec-WebSocket-Version"),
            ws_key: self.header(b"Sec-WebSocket-Key"),
        }
    }

    /// The location's `default_type`.
    pub fn default_type(&self) -> &'r [u8] {
        // SAFETY: the core module's location configuration of this request,
        // which outlives it.
        unsafe {
            let clcf = *self
                .get()
                .loc_conf
                .add((*core::ptr::addr_of!(ngx_http_core_module)).ctx_index)
                as *const ngx_http_core_loc_conf_t;
            clcf.as_ref().map_or(&[], |c| c.default_type.as_bytes())
        }
    }

    /// An indexed variable's value, if set.
    fn variable(&self, index: ngx_int_t) -> Option<&'r [u8]> {
        if index < 0 {
            return None;
        }
        // SAFETY: a live request and an index nginx gave us.
        let v = unsafe { ngx_http_get_indexed_variable(self.raw(), index as ngx_uint_t).as_ref()? };
        if v.not_found() != 0 || v.len() == 0 {
            return None;
        }
        // SAFETY: a found value's data/len describe memory of the request.
        Some(unsafe { core::slice::from_raw_parts(v.data, v.len() as usize) })
    }

    /// A complex value evaluated for this request (into its pool).
    fn complex(&self, cv: &nginx_sys::ngx_http_complex_value_t) -> Option<&'r [u8]> {
        self.ngx().get_complex_value(cv).map(|s| {
            let s = s.as_bytes();
            // SAFETY: evaluated into the request pool, which lives as long
            // as the request.
            unsafe { core::slice::from_raw_parts(s.as_ptr(), s.len()) }
        })
    }

    /// `$push_id` (or `$push_channel_id`) with `push_channel_group`, as the
    /// relay composes it. Read once per request.
    pub fn channel(&self, lcf: &LocConf, mcf: &MainConf) -> Result<Cow<'r, [u8]>, Refusal> {
        let id = self
            .variable(mcf.var_push_id)
            .or_else(|| self.variable(mcf.var_push_channel_id));
        let group = lcf.group().map(|g| self.complex(g).unwrap_or(&[]));
        channel_id(id, group, lcf.settings.max_id_length())
    }

    /// `push_allow_origin` for this request; `None` when CORS is off.
    pub fn allow_origin(&self, lcf: &LocConf) -> Option<&'r [u8]> {
        match lcf.allow_origin() {
            Origin::Star => Some(b"*"),
            Origin::Value(cv) => self.complex(cv).filter(|v| !v.is_empty()),
        }
    }

    /// Move `value` into the request's pool. nginx frees the memory with
    /// the pool but drops nothing: the caller drops it in place (a release
    /// hook run as the request goes).
    pub fn keep<T>(&self, value: T) -> Option<&'r mut T> {
        // SAFETY: an allocation from the live request's pool, aligned for any
        // type (NGX_ALIGNMENT), written before the reference is made.
        unsafe {
            let p = ngx_pcalloc(self.get().pool, core::mem::size_of::<T>()).cast::<T>();
            if p.is_null() {
                return None;
            }
            p.write(value);
            Some(&mut *p)
        }
    }

    /// What nginx read past this request's headers (a client that sent
    /// WebSocket frames right behind its upgrade).
    pub fn header_leftover(&self) -> &'r [u8] {
        // SAFETY: null, or the request's header buffer with [pos, last) read
        // from the client and not yet parsed.
        unsafe {
            match self.get().header_in.as_ref() {
                Some(b) if !b.pos.is_null() && b.last > b.pos => {
                    core::slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize)
                }
                _ => &[],
            }
        }
    }

    /// Mark `header_leftover` as consumed.
    pub fn consume_header_leftover(&self) {
        // SAFETY: as above; only `pos` moves, to `last`.
        unsafe {
            if let Some(b) = self.get().header_in.as_mut() {
                b.pos = b.last;
            }
        }
    }

    /// Keep `value` as the module's ctx of this request (in its pool, so it
    /// lives as long as the request; `Copy` types need no destructor).
    pub fn set_ctx<T: Copy + 'static>(&self, value: T) -> Option<()> {
        // SAFETY: an allocation from the live request's pool, aligned for any
        // type (NGX_ALIGNMENT), written before it is published as the ctx.
        unsafe {
            let p =
                ngx_pcalloc(self.get().pool, core::mem::size_of::<Tagged<T>>()).cast::<Tagged<T>>();
            if p.is_null() {
                return None;
            }
            p.write(Tagged {
                tag: TypeId::of::<T>(),
                value,
            });
            *self.get().ctx.add(slots::ctx_index()) = p.cast::<c_void>();
        }
        Some(())
    }

    /// The module's ctx of this request, if it holds a `T`.
    pub fn ctx<T: Copy + 'static>(&self) -> Option<T> {
        // SAFETY: our slot of the request's ctx array is null or a Tagged
        // value `set_ctx` wrote; its tag (first, repr(C)) says which T.
        unsafe {
            let p = (*self.get().ctx.add(slots::ctx_index())).cast::<Tagged<T>>();
            let tagged = p.as_ref()?;
            (tagged.tag == TypeId::of::<T>()).then_some(tagged.value)
        }
    }

    /// Keep a POST's channel id (copied into its pool) for when its body
    /// has been read.
    pub fn keep_post_id(&self, id: &[u8]) -> Option<()> {
        let id = self.pool_copy(id)?;
        self.set_ctx(PostId {
            data: id.as_ptr(),
            len: id.len(),
        })
    }

    /// The channel id `keep_post_id` kept.
    pub fn post_id(&self) -> Option<&'r [u8]> {
        let id = self.ctx::<PostId>()?;
        // SAFETY: `keep_post_id` copied it into this request's pool.
        Some(unsafe { core::slice::from_raw_parts(id.data, id.len) })
    }

    /// Have nginx read the body, then call `then` (or answer the request
    /// itself on error). Returns what the content handler returns.
    pub fn read_body(&self, then: unsafe extern "C" fn(*mut ngx_http_request_t)) -> ngx_int_t {
        // SAFETY: a live request in its content handler.
        unsafe { ngx_http_read_client_request_body(self.raw(), Some(then)) }
    }

    /// Read and drop the body (listeners and bodiless sender requests).
    pub fn discard_body(&self) -> Result<(), ngx_int_t> {
        // SAFETY: a live request.
        let rc = unsafe { ngx_http_discard_request_body(self.raw()) };
        if rc != NGX_OK as ngx_int_t {
            return Err(rc);
        }
        Ok(())
    }

    /// The request body, from nginx's memory buffers and from the
    /// temporary file it may have written it to. `None` if the file could
    /// not be read.
    pub fn body(&self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        // SAFETY: null or the body nginx read for this request.
        let Some(rb) = (unsafe { self.get().request_body.as_ref() }) else {
            return Some(body);
        };
        let mut cl = rb.bufs;
        // SAFETY: the body's chain: every link and buffer is valid, and an
        // in-memory buffer's [pos, last) or a file buffer's range is data.
        unsafe {
            while let Some(link) = cl.as_ref() {
                let b = &*link.buf;
                if b.in_file() != 0 {
                    let len = (b.file_last - b.file_pos).max(0) as usize;
                    let at = body.len();
                    body.resize(at + len, 0);
                    let n = ngx_read_file(b.file, body.as_mut_ptr().add(at), len, b.file_pos);
                    if n != len as isize {
                        return None;
                    }
                } else if !b.pos.is_null() && b.last > b.pos {
                    let len = b.last.offset_from(b.pos) as usize;
                    body.extend_from_slice(core::slice::from_raw_parts(b.pos, len));
                }
                cl = link.next;
            }
        }
        Some(body)
    }
}
