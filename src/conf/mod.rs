//! The module's configuration as nginx stores it: the http block's main
//! configuration (zone, variable indexes) and each location's (the relay's
//! `LocSettings` plus the complex values nginx evaluates per request), and
//! the configuration-time hooks that declare `$push_id` and the zone.

pub mod directives;

use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_complex_value_t, ngx_http_get_variable_index,
    ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t, ngx_shm_zone_t, ngx_str_t,
    ngx_uint_t, NGX_ERROR, NGX_HTTP_VAR_CHANGEABLE, NGX_OK,
};
use ngx::http::{HttpModuleMainConf, Merge, MergeConfigError};
use ngx::ngx_string;
use push_relay::conf::{LocSettings, DEFAULT_BUFFER_SIZE};

use crate::module::Module;

/// `ngx_http_set_complex_value_slot`'s "unset".
const UNSET_CV: *mut ngx_http_complex_value_t = usize::MAX as *mut _;

pub struct MainConf {
    /// `push_buffer_size`; 0 until set or defaulted.
    pub buffer_size: usize,
    pub shm_zone: *mut ngx_shm_zone_t,
    /// Some location is a sender or a listener: the zone is needed.
    pub used: bool,
    pub var_push_id: ngx_int_t,
    pub var_push_channel_id: ngx_int_t,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            buffer_size: 0,
            shm_zone: ptr::null_mut(),
            used: false,
            var_push_id: NGX_ERROR as ngx_int_t,
            var_push_channel_id: NGX_ERROR as ngx_int_t,
        }
    }
}

impl MainConf {
    /// After the http block is parsed: the default size.
    pub fn init(&mut self) {
        if self.buffer_size == 0 {
            self.buffer_size = DEFAULT_BUFFER_SIZE;
        }
    }
}

/// `push_allow_origin` as merged.
pub enum Origin<'a> {
    /// Not configured: `*`.
    Star,
    Value(&'a ngx_http_complex_value_t),
}

#[repr(C)]
pub struct LocConf {
    pub settings: LocSettings,
    /// `push_channel_group`; null when none.
    group: *mut ngx_http_complex_value_t,
    /// `push_allow_origin`; `UNSET_CV` until merged, then (when still
    /// unset) the default `*`.
    allow_origin: *mut ngx_http_complex_value_t,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            settings: LocSettings::default(),
            group: UNSET_CV,
            allow_origin: UNSET_CV,
        }
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        self.settings.merge(&prev.settings);
        if self.group == UNSET_CV {
            self.group = if prev.group == UNSET_CV {
                ptr::null_mut()
            } else {
                prev.group
            };
        }
        if self.allow_origin == UNSET_CV {
            self.allow_origin = prev.allow_origin;
        }
        Ok(())
    }
}

impl LocConf {
    pub fn group(&self) -> Option<&ngx_http_complex_value_t> {
        // SAFETY: after merge the pointer is null or a complex value that
        // nginx compiled into the configuration pool, which outlives every
        // request of this configuration.
        unsafe { self.group.as_ref() }.filter(|_| self.group != UNSET_CV)
    }

    pub fn allow_origin(&self) -> Origin<'_> {
        if self.allow_origin == UNSET_CV || self.allow_origin.is_null() {
            return Origin::Star;
        }
        // SAFETY: as for `group`.
        Origin::Value(unsafe { &*self.allow_origin })
    }
}

static mut VAR_NAMES: [ngx_str_t; 2] = [ngx_string!("push_id"), ngx_string!("push_channel_id")];

/// Declare `$push_id` and its alias `$push_channel_id` so that `set` can
/// assign them; the module reads them back by index.
///
/// # Safety
/// nginx calls it with the configuration being parsed.
pub unsafe fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    for i in 0..2 {
        // SAFETY: configuration runs single-threaded; nginx keeps the name
        // pointer, which is static.
        let v = unsafe {
            ngx_http_add_variable(
                cf,
                &raw mut VAR_NAMES[i],
                NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t,
            )
        };
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: a variable nginx just made.
        unsafe { (*v).get_handler = Some(unset_variable) };
    }
    NGX_OK as ngx_int_t
}

/// Until `set` assigns it, `$push_id` is "not found" (an empty id).
unsafe extern "C" fn unset_variable(
    _r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid value slot to fill.
    unsafe { (*v).set_not_found(1) };
    NGX_OK as ngx_int_t
}

/// Read back the variables' indexes and declare the zone if a location
/// uses the module.
///
/// # Safety
/// nginx calls it once per http block with its configuration.
pub unsafe fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: `cf` is the http block's configuration being parsed.
    let cf_ref = unsafe { &*cf };
    let Some(mcf) = Module::main_conf_mut(cf_ref) else {
        return NGX_ERROR as ngx_int_t;
    };
    for (i, slot) in [&mut mcf.var_push_id, &mut mcf.var_push_channel_id]
        .into_iter()
        .enumerate()
    {
        // SAFETY: as in preconfiguration.
        *slot = unsafe { ngx_http_get_variable_index(cf, &raw mut VAR_NAMES[i]) };
        if *slot == NGX_ERROR as ngx_int_t {
            return NGX_ERROR as ngx_int_t;
        }
    }
    if mcf.used {
        // SAFETY: postconfiguration is where zones are declared.
        match unsafe { crate::runtime::zone::declare(cf, mcf.buffer_size) } {
            Some(z) => mcf.shm_zone = z,
            None => return NGX_ERROR as ngx_int_t,
        }
    }
    NGX_OK as ngx_int_t
}

/// The module's location and main configuration of a request (every
/// location has them: create_loc_conf runs for all).
pub fn of_request(r: &ngx::http::Request) -> Option<(&'static LocConf, &'static MainConf)> {
    use ngx::http::HttpModuleLocationConf;
    Some((Module::location_conf(r)?, Module::main_conf(r)?))
}
