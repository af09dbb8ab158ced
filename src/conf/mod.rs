//! The module's configuration as nginx stores it: the http block's main
//! configuration (zone size, variable indexes, the locations that need a
//! content handler) and each location's (the relay's `LocSettings` plus the
//! complex values nginx evaluates per request), and `$push_id`.

pub mod directives;

use core::ptr;

use core::ptr::NonNull;

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_complex_value_t, ngx_http_core_loc_conf_t,
    ngx_http_get_variable_index, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_msec_t, ngx_shm_zone_t, ngx_str_t, ngx_uint_t, sockaddr, socklen_t, NGX_ERROR,
    NGX_HTTP_VAR_CHANGEABLE, NGX_OK,
};
use ngx::http::{HttpModuleConfExt, Merge, MergeConfigError};
use ngx::ngx_string;
use push_relay::conf::{LocSettings, Role, DEFAULT_BUFFER_SIZE};
use push_relay::redis::url::RedisUrl;

use crate::slots;

/// `ngx_http_set_complex_value_slot`'s "unset".
const UNSET_CV: *mut ngx_http_complex_value_t = usize::MAX as *mut _;

pub struct MainConf {
    /// `push_buffer_size`; 0 until set or defaulted.
    pub buffer_size: usize,
    pub shm_zone: *mut ngx_shm_zone_t,
    /// Locations that are senders or listeners, to be given the content
    /// handler of their role (and their store) once the http block is
    /// parsed.
    pub roles: Vec<(NonNull<ngx_http_core_loc_conf_t>, NonNull<LocConf>, Role)>,
    pub var_push_id: ngx_int_t,
    pub var_push_channel_id: ngx_int_t,
    /// `push_redis_heartbeat`, `push_redis_connect_timeout` (msec).
    pub redis_heartbeat: ngx_msec_t,
    pub redis_connect_timeout: ngx_msec_t,
    /// The distinct Redis servers the locations use, with the namespaces
    /// used on each.
    pub endpoints: Vec<Endpoint>,
}

/// A Redis server some location's channels live in.
pub struct Endpoint {
    pub url: RedisUrl,
    /// The text of `push_redis`, which tells endpoints apart.
    pub text: Vec<u8>,
    pub addr: RedisAddr,
    pub namespaces: Vec<Vec<u8>>,
}

/// A resolved Redis address (in the configuration's pool).
#[derive(Clone, Copy)]
pub struct RedisAddr {
    pub sockaddr: *mut sockaddr,
    pub socklen: socklen_t,
    pub name: ngx_str_t,
}

/// `push_redis` of a location, as parsed.
#[derive(Clone, Copy)]
pub enum RedisSetting {
    Unset,
    Off,
    Url { text: ngx_str_t, addr: RedisAddr },
}

/// Where a location's channels live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// The shared-memory zone of this nginx.
    Zone,
    /// `endpoints[endpoint]`, in its namespace `namespace`.
    Redis { endpoint: u16, namespace: u16 },
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            buffer_size: 0,
            shm_zone: ptr::null_mut(),
            roles: Vec::new(),
            var_push_id: NGX_ERROR as ngx_int_t,
            var_push_channel_id: NGX_ERROR as ngx_int_t,
            redis_heartbeat: ngx_msec_t::MAX,
            redis_connect_timeout: ngx_msec_t::MAX,
            endpoints: Vec::new(),
        }
    }
}

impl MainConf {
    /// After the http block is parsed: the default size.
    pub fn init(&mut self) {
        if self.buffer_size == 0 {
            self.buffer_size = DEFAULT_BUFFER_SIZE;
        }
        if self.redis_heartbeat == ngx_msec_t::MAX {
            self.redis_heartbeat = 10_000;
        }
        if self.redis_connect_timeout == ngx_msec_t::MAX {
            self.redis_connect_timeout = 1000;
        }
    }

    /// The endpoint and namespace of a `push_redis` location, added to the
    /// lists when first seen.
    pub fn redis_store(&mut self, text: &[u8], addr: RedisAddr, namespace: &[u8]) -> Option<Store> {
        let endpoint = match self.endpoints.iter().position(|e| e.text == text) {
            Some(i) => i,
            None => {
                let url = RedisUrl::parse(core::str::from_utf8(text).ok()?).ok()?;
                self.endpoints.push(Endpoint {
                    url,
                    text: text.to_vec(),
                    addr,
                    namespaces: Vec::new(),
                });
                self.endpoints.len() - 1
            }
        };
        let e = &mut self.endpoints[endpoint];
        let namespace = match e.namespaces.iter().position(|n| n == namespace) {
            Some(i) => i,
            None => {
                e.namespaces.push(namespace.to_vec());
                e.namespaces.len() - 1
            }
        };
        Some(Store::Redis {
            endpoint: u16::try_from(endpoint).ok()?,
            namespace: u16::try_from(namespace).ok()?,
        })
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
    pub redis: RedisSetting,
    /// `push_redis_namespace` (`ngx_conf_set_str_slot`); null data = unset.
    pub namespace: ngx_str_t,
    /// Where this location's channels live; set once the http block is
    /// parsed.
    pub store: Store,
}

/// `push_redis_namespace`'s default.
pub const DEFAULT_NAMESPACE: &[u8] = b"push:";

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            settings: LocSettings::default(),
            group: UNSET_CV,
            allow_origin: UNSET_CV,
            redis: RedisSetting::Unset,
            namespace: ngx_str_t::default(),
            store: Store::Zone,
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
        if matches!(self.redis, RedisSetting::Unset) {
            self.redis = prev.redis;
        }
        if self.namespace.data.is_null() {
            self.namespace = prev.namespace;
        }
        Ok(())
    }
}

impl LocConf {
    /// `push_redis_namespace` as merged.
    pub fn namespace(&self) -> &[u8] {
        if self.namespace.data.is_null() {
            DEFAULT_NAMESPACE
        } else {
            self.namespace.as_bytes()
        }
    }

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

/// nginx copies variable names, so a constant will do.
const VAR_NAMES: [ngx_str_t; 2] = [ngx_string!("push_id"), ngx_string!("push_channel_id")];

/// Declare `$push_id` and its alias `$push_channel_id` so that `set` can
/// assign them; the module reads them back by index.
///
/// # Safety
/// nginx calls it with the configuration being parsed.
pub unsafe fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    for mut name in VAR_NAMES {
        // SAFETY: the configuration being parsed; nginx copies the name.
        let v =
            unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t) };
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

/// Read back the variables' indexes.
///
/// # Safety
/// `cf` is the http block's configuration, after parsing.
pub unsafe fn variable_indexes(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Option<()> {
    for (mut name, slot) in VAR_NAMES
        .into_iter()
        .zip([&mut mcf.var_push_id, &mut mcf.var_push_channel_id])
    {
        // SAFETY: the configuration being parsed; nginx copies the name.
        *slot = unsafe { ngx_http_get_variable_index(cf, &mut name) };
        if *slot == NGX_ERROR as ngx_int_t {
            return None;
        }
    }
    Some(())
}

/// This module's main configuration of the http block being parsed.
///
/// # Safety
/// `cf` is inside an http block.
pub unsafe fn main_of(cf: *mut ngx_conf_t) -> Option<&'static mut MainConf> {
    // SAFETY: the caller's contract; our slot holds a MainConf.
    unsafe {
        Some(
            (*cf)
                .http_main_conf_unchecked::<MainConf>(slots::descriptor())?
                .as_mut(),
        )
    }
}

/// The module's location and main configuration of a request (every
/// location has them: create_loc_conf runs for all).
pub fn of_request(r: &ngx::http::Request) -> Option<(&'static LocConf, &'static MainConf)> {
    let m = slots::descriptor();
    // SAFETY: our slots hold a LocConf and a MainConf of the configuration
    // this request runs under, which outlives it.
    unsafe {
        Some((
            r.http_location_conf_unchecked::<LocConf>(m)?.as_ref(),
            r.http_main_conf_unchecked::<MainConf>(m)?.as_ref(),
        ))
    }
}
