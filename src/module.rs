//! What nginx loads: the module descriptor, its HTTP context and directive
//! table, and the hooks that wire the layers together: declaring `$push_id`
//! and the zone, giving sender and listener locations their content
//! handler, and starting and stopping this worker's part of the relay.

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_MODULE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleConfExt, HttpModuleLocationConf, HttpModuleMainConf};
use push_relay::conf::Role;

use crate::conf::{self, LocConf, MainConf, RedisSetting};
use crate::{handler, runtime, slots, transport};

/// The module, for ngx's configuration traits (allocation and merge of
/// its configurations).
pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        slots::descriptor()
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        unsafe { conf::preconfiguration(cf) }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx calls it once per http block, after parsing it.
        match unsafe { postconfiguration(cf) } {
            Some(()) => NGX_OK as ngx_int_t,
            None => NGX_ERROR as ngx_int_t,
        }
    }

    unsafe extern "C" fn init_main_conf(_cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
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

/// Read back `$push_id`'s index, give each sender and listener location
/// its content handler, and declare the zone if any location needs it.
///
/// # Safety
/// `cf` is the http block's configuration, after parsing.
unsafe fn postconfiguration(cf: *mut ngx_conf_t) -> Option<()> {
    // SAFETY: the caller's contract.
    let mcf = unsafe { conf::main_of(cf)? };
    // SAFETY: as above.
    unsafe { conf::variable_indexes(cf, mcf)? };
    let used = !mcf.roles.is_empty();
    let roles = core::mem::take(&mut mcf.roles);
    for (mut clcf, mut lcf, role) in roles {
        // SAFETY: the core and our location configurations of a location of
        // this http block, recorded while parsing it, merged by now.
        let (clcf, lcf) = unsafe { (clcf.as_mut(), lcf.as_mut()) };
        clcf.handler = Some(match role {
            Role::Sender => handler::sender::handler,
            _ => handler::listener::handler,
        });
        if let RedisSetting::Url { text, addr } = lcf.redis {
            let ns = lcf.namespace().to_vec();
            lcf.store = mcf.redis_store(text.as_bytes(), addr, &ns)?;
        }
    }
    if used {
        // SAFETY: postconfiguration is where zones are declared.
        mcf.shm_zone = unsafe { runtime::zone::declare(cf, mcf.buffer_size)? };
    }
    Some(())
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

#[cfg(feature = "export-modules")]
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

extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx calls this once in each new worker with its running
    // cycle, whose http configuration (if any) is complete.
    let cycle = unsafe { &*cycle };
    // SAFETY: our main configuration slot holds a MainConf of the running
    // cycle, which outlives the worker's use of it.
    let Some(mcf) = (unsafe { cycle.http_main_conf_unchecked::<MainConf>(slots::descriptor()) })
        .map(|m| unsafe { m.as_ref() })
    else {
        return NGX_OK as ngx_int_t;
    };
    if mcf.shm_zone.is_null() {
        return NGX_OK as ngx_int_t;
    }
    // SAFETY: the zone was declared by this cycle's postconfiguration and is
    // mapped for the worker's whole life; the host name is the cycle's.
    unsafe {
        runtime::worker::start(
            cycle.log,
            mcf.shm_zone,
            mcf,
            cycle.hostname.as_bytes(),
            transport::deliver,
        )
    }
}

extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    runtime::worker::stop();
}
