//! What nginx loads: the module descriptor, its HTTP context, and the
//! per-process hooks that start and stop this worker's part of the relay.

use core::ptr;

use nginx_sys::{
    ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleConfExt, HttpModuleLocationConf, HttpModuleMainConf};

use crate::conf::{self, LocConf, MainConf};

/// The module, for ngx's configuration traits.
pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: nginx writes the module's indexes while loading it, before
        // any callback that reads them, and never moves the descriptor.
        unsafe { &*ptr::addr_of!(ngx_http_push_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut nginx_sys::ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        unsafe { conf::preconfiguration(cf) }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut nginx_sys::ngx_conf_t) -> ngx_int_t {
        // SAFETY: as above.
        unsafe { conf::postconfiguration(cf) }
    }

    unsafe extern "C" fn init_main_conf(
        _cf: *mut nginx_sys::ngx_conf_t,
        conf: *mut core::ffi::c_void,
    ) -> *mut core::ffi::c_char {
        // SAFETY: `conf` is the MainConf made by create_main_conf.
        unsafe { (*conf.cast::<MainConf>()).init() };
        ptr::null_mut()
    }
}

// SAFETY: create_main_conf/create_loc_conf (the trait's defaults) make these
// types for this module's slots, and nothing else writes them.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: Some(Module::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_push_module);

#[used]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static mut ngx_http_push_module: ngx_module_t = ngx_module_t {
    ctx: &raw const CTX as *mut _,
    commands: conf::directives::COMMANDS.as_ptr(),
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// The module's descriptor as nginx wants it for calls that take one.
pub fn module_ptr() -> *mut ngx_module_t {
    ptr::addr_of_mut!(ngx_http_push_module)
}

extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx calls this once in each new worker with its running
    // cycle, whose http configuration (if any) is complete.
    let cycle = unsafe { &*cycle };
    // SAFETY: our main configuration slot holds a MainConf.
    let mcf = unsafe { cycle.http_main_conf_unchecked::<MainConf>(Module::module()) };
    let Some(zone) = mcf
        .map(|m| unsafe { m.as_ref() }.shm_zone)
        .filter(|z| !z.is_null())
    else {
        return NGX_OK as ngx_int_t;
    };
    // SAFETY: the zone was declared by this cycle's postconfiguration and is
    // mapped for the worker's whole life.
    unsafe { crate::runtime::worker::start(cycle.log, zone) }
}

extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    crate::runtime::worker::stop();
}
