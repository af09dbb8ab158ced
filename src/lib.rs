//! ngx_http_push: a long-polling push relay for nginx.
//!
//! A request flows one way: a content handler (`handler`) reads the channel
//! id and the location's rules (`conf`), asks the shared store (`store`, in
//! the zone of `shm`), and either answers (`answer`) or parks the listener
//! in this worker (`worker`, `listeners`). A publish fans out to this
//! worker's listeners directly and to other workers through their inboxes
//! in the store and a wake-up datagram (`notify`).
//!
//! The pure parts (`store`, `listeners`, `cursor`, `info`, `msghttp`) are
//! safe Rust, unit-tested without nginx; the FFI stays in `conf`, `shm`,
//! `notify`, `worker`, `answer` and `handler`.

pub mod cursor;
pub mod info;
pub mod listeners;
pub mod msghttp;
pub mod store;

#[cfg(not(test))]
mod answer;
#[cfg(not(test))]
mod conf;
#[cfg(not(test))]
mod handler;
#[cfg(not(test))]
mod notify;
#[cfg(not(test))]
mod shm;
#[cfg(not(test))]
mod worker;

#[cfg(not(test))]
pub use module::*;

#[cfg(not(test))]
mod module {
    use core::ptr;

    use nginx_sys::*;

    use crate::conf;

    static CTX: ngx_http_module_t = ngx_http_module_t {
        preconfiguration: Some(conf::preconfiguration),
        postconfiguration: Some(conf::postconfiguration),
        create_main_conf: Some(conf::create_main_conf),
        init_main_conf: Some(conf::init_main_conf),
        create_srv_conf: None,
        merge_srv_conf: None,
        create_loc_conf: Some(conf::create_loc_conf),
        merge_loc_conf: Some(conf::merge_loc_conf),
    };

    ngx::ngx_modules!(ngx_http_push_module);

    #[used]
    #[allow(non_upper_case_globals)]
    #[no_mangle]
    pub static mut ngx_http_push_module: ngx_module_t = ngx_module_t {
        ctx: &raw const CTX as *mut _,
        // SAFETY: nginx reads the command table; it is never moved.
        commands: unsafe { &raw mut conf::COMMANDS[0] },
        type_: NGX_HTTP_MODULE as ngx_uint_t,
        init_process: Some(init_process),
        exit_process: Some(exit_process),
        ..ngx_module_t::default()
    };

    /// This module's descriptor (for its ctx_index).
    pub(crate) fn module() -> &'static ngx_module_t {
        // SAFETY: nginx writes the indexes before any callback that reads them.
        unsafe { &*ptr::addr_of!(ngx_http_push_module) }
    }

    pub(crate) fn module_ptr() -> *mut ngx_module_t {
        ptr::addr_of_mut!(ngx_http_push_module)
    }

    /// The zone declared by this cycle's http block, if any location uses
    /// the module.
    ///
    /// # Safety
    /// `cycle` is the running cycle.
    unsafe fn zone_of(cycle: *mut ngx_cycle_t) -> *mut ngx_shm_zone_t {
        let ctx = *(*cycle).conf_ctx.add(ngx_http_module.index) as *mut ngx_http_conf_ctx_t;
        if ctx.is_null() {
            return ptr::null_mut();
        }
        let mcf = *(*ctx).main_conf.add(module().ctx_index) as *mut conf::MainConf;
        if mcf.is_null() {
            return ptr::null_mut();
        }
        (*mcf).shm_zone
    }

    extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
        // SAFETY: nginx calls this once in each new worker with its cycle.
        unsafe {
            let zone = zone_of(cycle);
            if zone.is_null() {
                return NGX_OK as ngx_int_t;
            }
            crate::worker::start(cycle, zone)
        }
    }

    extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
        // SAFETY: nginx calls this once when the worker exits.
        unsafe { crate::worker::stop() }
    }
}
