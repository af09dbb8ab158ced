//! Directives and configuration.
//!
//! Values are parsed by nginx's own slot handlers (sizes, times, flags,
//! enums), so `nginx -t` reports a bad value the way nginx's own modules do:
//! naming the directive, the file and the line.

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::*;
use ngx::ngx_string;

use crate::store::Concurrency;

const UNSET: isize = -1;
const UNSET_UINT: usize = usize::MAX;
const UNSET_PTR: *mut ngx_http_complex_value_t = usize::MAX as *mut _;
const UNSET_SIZE: usize = usize::MAX;

/// nginx's own minimum for a slab zone: eight 4 KiB pages.
pub const MIN_BUFFER_SIZE: usize = 32 * 1024;
const DEFAULT_BUFFER_SIZE: usize = 3 * 1024 * 1024;

pub const ROLE_NONE: usize = 0;
pub const ROLE_SENDER: usize = 1;
pub const ROLE_LISTENER: usize = 2;

pub const MODE_LONG_POLL: usize = 0;
pub const MODE_INTERVAL_POLL: usize = 1;

#[repr(C)]
pub struct MainConf {
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
            buffer_size: UNSET_SIZE,
            shm_zone: ptr::null_mut(),
            used: false,
            var_push_id: -1,
            var_push_channel_id: -1,
        }
    }
}

#[repr(C)]
pub struct LocConf {
    pub role: usize,
    pub mode: usize,
    pub concurrency: usize,
    pub queue: ngx_flag_t,
    pub message_timeout: time_t,
    pub buffer_length: ngx_int_t,
    pub min_buffer_length: ngx_int_t,
    pub group: *mut ngx_http_complex_value_t,
    pub listener_timeout: ngx_msec_t,
    pub authorized_only: ngx_flag_t,
    pub max_id_length: ngx_int_t,
    pub max_subscribers: ngx_int_t,
    pub channel_timeout: time_t,
    pub allow_origin: *mut ngx_http_complex_value_t,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            role: ROLE_NONE,
            mode: MODE_LONG_POLL,
            concurrency: UNSET_UINT,
            queue: UNSET,
            message_timeout: UNSET as time_t,
            buffer_length: UNSET,
            min_buffer_length: UNSET,
            group: UNSET_PTR,
            listener_timeout: UNSET_UINT,
            authorized_only: UNSET,
            max_id_length: UNSET,
            max_subscribers: UNSET,
            channel_timeout: UNSET as time_t,
            allow_origin: UNSET_PTR,
        }
    }
}

impl LocConf {
    pub fn concurrency(&self) -> Concurrency {
        match self.concurrency {
            1 => Concurrency::First,
            2 => Concurrency::Broadcast,
            _ => Concurrency::Last,
        }
    }

    /// Inherit what this level leaves unset (nginx's ngx_conf_merge_*).
    pub fn merge(&mut self, prev: &LocConf) {
        fn m<T: Copy + PartialEq>(v: &mut T, unset: T, prev: T, default: T) {
            if *v == unset {
                *v = if prev == unset { default } else { prev };
            }
        }
        m(&mut self.concurrency, UNSET_UINT, prev.concurrency, 0);
        m(&mut self.queue, UNSET, prev.queue, 1);
        m(
            &mut self.message_timeout,
            UNSET as time_t,
            prev.message_timeout,
            3600,
        );
        m(&mut self.buffer_length, UNSET, prev.buffer_length, 10);
        m(
            &mut self.min_buffer_length,
            UNSET,
            prev.min_buffer_length,
            1,
        );
        m(&mut self.group, UNSET_PTR, prev.group, ptr::null_mut());
        m(
            &mut self.listener_timeout,
            UNSET_UINT,
            prev.listener_timeout,
            0,
        );
        m(&mut self.authorized_only, UNSET, prev.authorized_only, 0);
        m(&mut self.max_id_length, UNSET, prev.max_id_length, 512);
        m(&mut self.max_subscribers, UNSET, prev.max_subscribers, 0);
        m(
            &mut self.channel_timeout,
            UNSET as time_t,
            prev.channel_timeout,
            3600,
        );
        m(
            &mut self.allow_origin,
            UNSET_PTR,
            prev.allow_origin,
            UNSET_PTR,
        );
    }

    /// `None`: no CORS headers; the default is `*`.
    pub fn allow_origin(&self) -> Option<*mut ngx_http_complex_value_t> {
        if self.allow_origin == UNSET_PTR {
            None
        } else {
            Some(self.allow_origin)
        }
    }
}

// ---- directive handlers ---------------------------------------------------

/// The arguments of the directive being parsed.
///
/// # Safety
/// `cf` is the `ngx_conf_t` nginx passed to a directive handler.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: during a directive handler `cf->args` is an array of ngx_str_t
    // with at least the directive name in it.
    let a = &*(*cf).args;
    core::slice::from_raw_parts(a.elts as *const ngx_str_t, a.nelts)
}

/// # Safety
/// Called by nginx while parsing the configuration.
unsafe fn main_conf(cf: *mut ngx_conf_t) -> *mut MainConf {
    // SAFETY: inside the http block `cf->ctx` is an ngx_http_conf_ctx_t whose
    // main_conf array has our slot filled by create_main_conf.
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    *(*ctx).main_conf.add(crate::module().ctx_index) as *mut MainConf
}

/// # Safety
/// Called by nginx while parsing the configuration.
unsafe fn core_loc_conf(cf: *mut ngx_conf_t) -> *mut ngx_http_core_loc_conf_t {
    // SAFETY: as above, for the core module's location configuration.
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    *(*ctx).loc_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_loc_conf_t
}

const CONF_OK: *mut c_char = ptr::null_mut();

fn conf_err(msg: &'static core::ffi::CStr) -> *mut c_char {
    msg.as_ptr() as *mut c_char
}

/// `push_sender`, `push_listener` and their aliases (`cmd.post` says which).
///
/// # Safety
/// Called by nginx while parsing, with our location configuration.
unsafe extern "C" fn set_role(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with the location configuration of our
    // module (NGX_HTTP_LOC_CONF_OFFSET) and a valid cf/cmd.
    let lcf = &mut *(conf as *mut LocConf);
    let role = (*cmd).post as usize;
    if lcf.role == role {
        return conf_err(c"is duplicate");
    }
    if lcf.role != ROLE_NONE {
        return conf_err(c"cannot be used together with push_sender/push_listener in one location");
    }
    lcf.role = role;
    if role == ROLE_LISTENER {
        if let Some(mode) = args(cf).get(1) {
            lcf.mode = match mode.as_bytes() {
                b"long-poll" => MODE_LONG_POLL,
                b"interval-poll" => MODE_INTERVAL_POLL,
                _ => return conf_err(c"takes \"long-poll\" or \"interval-poll\""),
            };
        }
    }
    (*main_conf(cf)).used = true;
    (*core_loc_conf(cf)).handler = Some(if role == ROLE_SENDER {
        crate::handler::sender_handler
    } else {
        crate::handler::listener_handler
    });
    CONF_OK
}

/// `push_buffer_size`: nginx's size syntax, at least 32k.
///
/// # Safety
/// Called by nginx while parsing, with our main configuration.
unsafe extern "C" fn set_buffer_size(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: main configuration of our module, valid during parsing.
    let mcf = &mut *(conf as *mut MainConf);
    if mcf.buffer_size != UNSET_SIZE {
        return conf_err(c"is duplicate");
    }
    let mut value = args(cf)[1];
    let size = ngx_parse_size(&mut value);
    if size < 0 {
        return conf_err(c"has an invalid size");
    }
    if (size as usize) < MIN_BUFFER_SIZE {
        return conf_err(c"must be at least 32k (eight 4 KiB pages)");
    }
    mcf.buffer_size = size as usize;
    CONF_OK
}

/// `push_listener_concurrency`: nginx's enum slot, with an error that
/// names the directive and its choices.
unsafe extern "C" fn set_concurrency(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: our location configuration, valid during parsing.
    let lcf = &mut *(conf as *mut LocConf);
    if lcf.concurrency != UNSET_UINT {
        return conf_err(c"is duplicate");
    }
    lcf.concurrency = match args(cf)[1].as_bytes() {
        b"last" => 0,
        b"first" => 1,
        b"broadcast" => 2,
        _ => return conf_err(c"must be \"last\", \"first\" or \"broadcast\""),
    };
    CONF_OK
}

/// `push_min_message_buffer_length`: accepted for old configurations, and
/// checked like a number, but it changes nothing.
unsafe extern "C" fn set_ignored_num(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    ngx_conf_set_num_slot(cf, cmd, conf)
}

const LOC: usize = NGX_HTTP_LOC_CONF_OFFSET;
const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;
const SRV_LOC: u32 = NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn cmd(
    name: ngx_str_t,
    type_: u32,
    set: SetFn,
    conf: usize,
    offset: usize,
    post: *mut c_void,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post,
    }
}

macro_rules! off {
    ($f:ident) => {
        core::mem::offset_of!(LocConf, $f)
    };
}

const ROLE_SENDER_POST: *mut c_void = ROLE_SENDER as *mut c_void;
const ROLE_LISTENER_POST: *mut c_void = ROLE_LISTENER as *mut c_void;
const NOPOST: *mut c_void = ptr::null_mut();

pub static mut COMMANDS: [ngx_command_t; 30] = [
    cmd(
        ngx_string!("push_sender"),
        SRV_LOC | NGX_CONF_NOARGS,
        set_role,
        LOC,
        0,
        ROLE_SENDER_POST,
    ),
    cmd(
        ngx_string!("push_publisher"),
        SRV_LOC | NGX_CONF_NOARGS,
        set_role,
        LOC,
        0,
        ROLE_SENDER_POST,
    ),
    cmd(
        ngx_string!("push_listener"),
        SRV_LOC | NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        set_role,
        LOC,
        0,
        ROLE_LISTENER_POST,
    ),
    cmd(
        ngx_string!("push_subscriber"),
        SRV_LOC | NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        set_role,
        LOC,
        0,
        ROLE_LISTENER_POST,
    ),
    cmd(
        ngx_string!("push_listener_concurrency"),
        ANY | NGX_CONF_TAKE1,
        set_concurrency,
        LOC,
        0,
        NOPOST,
    ),
    cmd(
        ngx_string!("push_subscriber_concurrency"),
        ANY | NGX_CONF_TAKE1,
        set_concurrency,
        LOC,
        0,
        NOPOST,
    ),
    cmd(
        ngx_string!("push_queue_messages"),
        ANY | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        LOC,
        off!(queue),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_store_messages"),
        ANY | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        LOC,
        off!(queue),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_message_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_sec_slot,
        LOC,
        off!(message_timeout),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_message_buffer_length"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        off!(buffer_length),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_max_message_buffer_length"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        off!(buffer_length),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_min_message_buffer_length"),
        ANY | NGX_CONF_TAKE1,
        set_ignored_num,
        LOC,
        off!(min_buffer_length),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_channel_group"),
        SRV_LOC | NGX_CONF_TAKE1,
        ngx_http_set_complex_value_slot,
        LOC,
        off!(group),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_buffer_size"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_buffer_size,
        NGX_HTTP_MAIN_CONF_OFFSET,
        0,
        NOPOST,
    ),
    cmd(
        ngx_string!("push_max_reserved_memory"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_buffer_size,
        NGX_HTTP_MAIN_CONF_OFFSET,
        0,
        NOPOST,
    ),
    cmd(
        ngx_string!("push_listener_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        LOC,
        off!(listener_timeout),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_subscriber_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        LOC,
        off!(listener_timeout),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_authorized_channels_only"),
        ANY | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        LOC,
        off!(authorized_only),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_max_channel_id_length"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        off!(max_id_length),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_max_channel_subscribers"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        off!(max_subscribers),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_channel_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_sec_slot,
        LOC,
        off!(channel_timeout),
        NOPOST,
    ),
    cmd(
        ngx_string!("push_allow_origin"),
        ANY | NGX_CONF_TAKE1,
        ngx_http_set_complex_value_slot,
        LOC,
        off!(allow_origin),
        NOPOST,
    ),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
    ngx_command_t::empty(),
];

// ---- configuration callbacks ----------------------------------------------

/// # Safety
/// Called by nginx with the configuration being parsed.
pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    alloc_conf::<MainConf>(cf)
}

/// # Safety
/// Called by nginx with the configuration being parsed.
pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    alloc_conf::<LocConf>(cf)
}

/// # Safety
/// `cf` is a valid configuration context.
unsafe fn alloc_conf<T: Default>(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: ngx_palloc returns memory aligned for any type (NGX_ALIGNMENT)
    // or null; it lives as long as the configuration cycle. The types are
    // plain data without Drop, so never running a destructor is fine.
    let p = ngx_palloc((*cf).pool, core::mem::size_of::<T>()) as *mut T;
    if p.is_null() {
        return ptr::null_mut();
    }
    p.write(T::default());
    p as *mut c_void
}

/// # Safety
/// Called by nginx with two location configurations made by create_loc_conf.
pub unsafe extern "C" fn merge_loc_conf(
    _cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: both are LocConf made by create_loc_conf.
    let prev = &*(prev as *const LocConf);
    let conf = &mut *(conf as *mut LocConf);
    conf.merge(prev);
    CONF_OK
}

/// # Safety
/// Called by nginx with the main configuration made by create_main_conf.
pub unsafe extern "C" fn init_main_conf(_cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: made by create_main_conf.
    let mcf = &mut *(conf as *mut MainConf);
    if mcf.buffer_size == UNSET_SIZE {
        mcf.buffer_size = DEFAULT_BUFFER_SIZE;
    }
    CONF_OK
}

static mut VAR_NAMES: [ngx_str_t; 2] = [ngx_string!("push_id"), ngx_string!("push_channel_id")];

/// Declare `$push_id` and its alias `$push_channel_id` so that `set` can
/// assign them; the module reads them back by index.
pub unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    for name in [&raw mut VAR_NAMES[0], &raw mut VAR_NAMES[1]] {
        // SAFETY: VAR_NAMES is only touched here, single-threaded, during
        // configuration; nginx keeps the pointer, which is static.
        let v = ngx_http_add_variable(cf, name, NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t);
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        (*v).get_handler = Some(unset_variable);
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
    (*v).set_not_found(1);
    NGX_OK as ngx_int_t
}

/// Read back the variables' indexes and declare the zone if a location
/// uses the module.
///
/// # Safety
/// Called by nginx once per http block.
pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: called once per http block with its configuration context.
    let mcf = &mut *main_conf(cf);
    mcf.var_push_id = ngx_http_get_variable_index(cf, &raw mut VAR_NAMES[0]);
    mcf.var_push_channel_id = ngx_http_get_variable_index(cf, &raw mut VAR_NAMES[1]);
    if mcf.var_push_id == NGX_ERROR as ngx_int_t
        || mcf.var_push_channel_id == NGX_ERROR as ngx_int_t
    {
        return NGX_ERROR as ngx_int_t;
    }
    if mcf.used {
        match crate::shm::add_zone(cf, mcf.buffer_size) {
            Some(z) => mcf.shm_zone = z,
            None => return NGX_ERROR as ngx_int_t,
        }
    }
    NGX_OK as ngx_int_t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_takes_parent_then_default() {
        let mut parent = LocConf::default();
        parent.buffer_length = 3;
        let mut child = LocConf::default();
        child.queue = 0;
        child.merge(&parent);
        assert_eq!(child.buffer_length, 3);
        assert_eq!(child.queue, 0);
        assert_eq!(child.message_timeout, 3600);
        assert_eq!(child.max_id_length, 512);
        assert_eq!(child.concurrency(), Concurrency::Last);
        assert!(child.allow_origin().is_none());
    }
}
