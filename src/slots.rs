//! This module's identity in nginx: its descriptor (defined and exported
//! in `module.rs`, declared here the way C modules declare their
//! `extern ngx_module_t`), through which every layer finds the module's
//! slots in nginx's per-module arrays.

use core::ptr;

use nginx_sys::ngx_module_t;

extern "C" {
    /// The descriptor `module.rs` exports to nginx.
    #[link_name = "ngx_http_push_module"]
    static DESCRIPTOR: ngx_module_t;
}

/// This module's descriptor.
pub fn descriptor() -> &'static ngx_module_t {
    // SAFETY: the exported static of this library; nginx writes its indexes
    // while loading the module, before any callback that reads them, and
    // never moves it.
    unsafe { &*ptr::addr_of!(DESCRIPTOR) }
}

/// The descriptor as nginx's calls take it (as a zone's tag).
pub fn descriptor_ptr() -> *mut ngx_module_t {
    ptr::addr_of!(DESCRIPTOR).cast_mut()
}

/// This module's index in the per-module arrays of the http block
/// (configurations, request contexts).
pub fn ctx_index() -> usize {
    descriptor().ctx_index
}
