//! The directive table and the handlers nginx calls to parse each
//! directive. Numbers, sizes, times, flags and complex values go through
//! nginx's own slot handlers straight into `LocSettings`; the role, the
//! transports and the enum directives through the handlers here, which
//! refuse a bad value the way nginx's own modules do (`"push_x" directive
//! must be ... in file:line` at `nginx -t`).

use core::ffi::{c_char, c_void, CStr};
use core::mem::offset_of;
use core::ptr::{self, NonNull};

use nginx_sys::{
    ngx_atoi, ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_set_msec_slot, ngx_conf_set_num_slot,
    ngx_conf_set_sec_slot, ngx_conf_set_size_slot, ngx_conf_set_str_slot, ngx_conf_t,
    ngx_http_core_loc_conf_t, ngx_http_core_module, ngx_http_set_complex_value_slot, ngx_int_t,
    ngx_parse_size, ngx_parse_url, ngx_pnalloc, ngx_str_t, ngx_uint_t, ngx_url_t, NGX_CONF_ANY,
    NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_ERROR, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
    NGX_OK,
};
use ngx::http::HttpModuleConfExt;
use ngx::ngx_string;
use push_relay::conf::{must_be, pick, LocSettings, Names, Role, CONCURRENCY, MIN_BUFFER_SIZE};
use push_relay::redis::url::RedisUrl;
use push_relay::transport::Transports;

use super::{LocConf, MainConf, RedisAddr, RedisSetting};

const OK: *mut c_char = ptr::null_mut();

/// Refuse the directive being parsed with a fixed reason.
fn refuse(reason: &'static CStr) -> *mut c_char {
    reason.as_ptr().cast_mut()
}

/// Refuse with a reason made at run time (copied into the configuration
/// pool, where nginx reads it from).
///
/// # Safety
/// `cf` is the configuration being parsed.
unsafe fn refuse_with(cf: *mut ngx_conf_t, reason: &str) -> *mut c_char {
    // SAFETY: the pool of the configuration being parsed; nginx prints the
    // string before the pool goes.
    let p = unsafe { ngx_pnalloc((*cf).pool, reason.len() + 1) }.cast::<u8>();
    if p.is_null() {
        return refuse(c"is invalid");
    }
    // SAFETY: `p` has room for the reason and its NUL.
    unsafe {
        ptr::copy_nonoverlapping(reason.as_ptr(), p, reason.len());
        *p.add(reason.len()) = 0;
    }
    p.cast()
}

/// The directive's words, its name first.
///
/// # Safety
/// `cf` is the `ngx_conf_t` nginx passed to a directive handler.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: during a directive handler `cf->args` is an array of
    // ngx_str_t holding at least the directive's name.
    unsafe {
        let a = &*(*cf).args;
        core::slice::from_raw_parts(a.elts as *const ngx_str_t, a.nelts)
    }
}

/// What `push_sender` / `push_listener` and their aliases set (`cmd.post`).
#[derive(Clone, Copy)]
#[repr(usize)]
enum Becomes {
    Sender = 1,
    Listener = 2,
    Subscriber = 3,
}

unsafe extern "C" fn set_role(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with our location configuration
    // (NGX_HTTP_LOC_CONF_OFFSET) and the command from our table.
    let (lcf, post) = unsafe { (&mut *conf.cast::<LocConf>(), (*cmd).post as usize) };
    let (role, names) = match post {
        x if x == Becomes::Sender as usize => (Role::Sender, Names::Seed),
        x if x == Becomes::Listener as usize => (Role::Listener, Names::Seed),
        _ => (Role::Listener, Names::Legacy),
    };
    let s = &mut lcf.settings;
    if s.role == role {
        return refuse(c"is duplicate");
    }
    if s.role != Role::None {
        return refuse(c"cannot be used together with push_sender/push_listener in one location");
    }
    // SAFETY: a directive handler's `cf`.
    let words = unsafe { args(cf) };
    if role == Role::Listener {
        match Transports::parse(words[1..].iter().map(|w| w.as_bytes())) {
            Ok(t) => s.transports = t,
            // SAFETY: a directive handler's `cf`.
            Err(reason) => return unsafe { refuse_with(cf, reason) },
        }
    }
    s.role = role;
    s.names = names;
    // SAFETY: `cf` is inside the http block, where our main configuration
    // and the core module's location configuration exist.
    let (mcf, clcf) = unsafe {
        (
            super::main_of(cf),
            (*cf).http_location_conf_unchecked::<ngx_http_core_loc_conf_t>(&*ptr::addr_of!(
                ngx_http_core_module
            )),
        )
    };
    let (Some(mcf), Some(clcf)) = (mcf, clcf) else {
        return refuse(c"is not allowed here");
    };
    // The content handler (and the store) are set once the http block is
    // parsed.
    mcf.roles.push((clcf, NonNull::from(&mut *lcf), role));
    OK
}

/// `push_redis <url> | off`: the URL is checked and its host resolved
/// now, so `nginx -t` names a bad one with its file and line.
unsafe extern "C" fn set_redis(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: our location configuration.
    let lcf = unsafe { &mut *conf.cast::<LocConf>() };
    if !matches!(lcf.redis, RedisSetting::Unset) {
        return refuse(c"is duplicate");
    }
    // SAFETY: a directive with one argument.
    let arg = unsafe { args(cf) }[1];
    if arg.as_bytes() == b"off" {
        lcf.redis = RedisSetting::Off;
        return OK;
    }
    let Ok(text) = core::str::from_utf8(arg.as_bytes()) else {
        return refuse(c"takes a redis:// URL");
    };
    let url = match RedisUrl::parse(text) {
        Ok(u) => u,
        // SAFETY: a directive handler's `cf`.
        Err(e) => return unsafe { refuse_with(cf, e.message()) },
    };
    // SAFETY: a directive handler's `cf`; nginx resolves into its pool.
    match unsafe { resolve(cf, &url) } {
        Ok(addr) => {
            lcf.redis = RedisSetting::Url { text: arg, addr };
            OK
        }
        // SAFETY: as above.
        Err(reason) => unsafe { refuse_with(cf, &reason) },
    }
}

/// Resolve a Redis host the way nginx resolves upstream servers (once,
/// at configuration time).
///
/// # Safety
/// `cf` is the configuration being parsed.
unsafe fn resolve(cf: *mut ngx_conf_t, url: &RedisUrl) -> Result<RedisAddr, String> {
    let text = format!("{}:{}", url.host, url.port);
    // SAFETY: the configuration's pool; the copy and nginx's results live
    // as long as the configuration.
    unsafe {
        let data = ngx_pnalloc((*cf).pool, text.len()).cast::<u8>();
        if data.is_null() {
            return Err("cannot be resolved: out of memory".into());
        }
        ptr::copy_nonoverlapping(text.as_ptr(), data, text.len());
        let mut u: ngx_url_t = core::mem::zeroed();
        u.url = ngx_str_t {
            len: text.len(),
            data,
        };
        u.default_port = url.port;
        if ngx_parse_url((*cf).pool, &mut u) != NGX_OK as ngx_int_t || u.naddrs == 0 {
            let why = if u.err.is_null() {
                "host not found".to_string()
            } else {
                CStr::from_ptr(u.err).to_string_lossy().into_owned()
            };
            return Err(format!("cannot use \"{text}\": {why}"));
        }
        let a = &*u.addrs;
        Ok(RedisAddr {
            sockaddr: a.sockaddr,
            socklen: a.socklen,
            name: a.name,
        })
    }
}

/// `push_buffer_size`: nginx's size syntax, at least 32k.
unsafe extern "C" fn set_buffer_size(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: our main configuration (NGX_HTTP_MAIN_CONF_OFFSET).
    let mcf = unsafe { &mut *conf.cast::<MainConf>() };
    if mcf.buffer_size != 0 {
        return refuse(c"is duplicate");
    }
    // SAFETY: a directive with one argument.
    let mut value = unsafe { args(cf) }[1];
    // SAFETY: a valid ngx_str_t.
    let size = unsafe { ngx_parse_size(&mut value) };
    if size < 0 {
        return refuse(c"has an invalid size");
    }
    if (size as usize) < MIN_BUFFER_SIZE {
        return refuse(c"must be at least 32k (eight 4 KiB pages)");
    }
    mcf.buffer_size = size as usize;
    OK
}

/// `push_listener_concurrency`: one word of the `CONCURRENCY` table.
unsafe extern "C" fn set_concurrency(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: our location configuration.
    let s: &mut LocSettings = unsafe { &mut (*conf.cast::<LocConf>()).settings };
    if s.concurrency.is_some() {
        return refuse(c"is duplicate");
    }
    // SAFETY: a directive with one argument.
    match pick(CONCURRENCY, unsafe { args(cf) }[1].as_bytes()) {
        Some(c) => {
            s.concurrency = Some(c);
            OK
        }
        // SAFETY: a directive handler's `cf`.
        None => unsafe { refuse_with(cf, &must_be(CONCURRENCY)) },
    }
}

/// `push_min_message_buffer_length`: accepted for old configurations and
/// checked like a number, but it changes nothing (as in the 0.7x module),
/// so it is not stored.
unsafe extern "C" fn set_accepted_number(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: a directive with one argument.
    let v = unsafe { args(cf) }[1];
    // SAFETY: reads `len` bytes of a valid ngx_str_t.
    if unsafe { ngx_atoi(v.data, v.len) } == NGX_ERROR as isize {
        return refuse(c"invalid number");
    }
    OK
}

const LOC: ngx_uint_t = NGX_HTTP_LOC_CONF_OFFSET as ngx_uint_t;
const MAIN: ngx_uint_t = NGX_HTTP_MAIN_CONF_OFFSET as ngx_uint_t;
const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;
const SRV_LOC: u32 = NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn cmd(
    name: ngx_str_t,
    type_: u32,
    set: SetFn,
    conf: ngx_uint_t,
    offset: usize,
    post: usize,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post: post as *mut c_void,
    }
}

macro_rules! setting {
    ($f:ident) => {
        offset_of!(LocConf, settings) + offset_of!(LocSettings, $f)
    };
}

/// The directive table nginx reads (and never writes).
pub struct Commands([ngx_command_t; 29]);

// SAFETY: nginx only reads the table, from its single configuration thread.
unsafe impl Sync for Commands {}

impl Commands {
    pub const fn as_ptr(&'static self) -> *mut ngx_command_t {
        self.0.as_ptr().cast_mut()
    }
}

pub static COMMANDS: Commands = Commands([
    cmd(
        ngx_string!("push_sender"),
        SRV_LOC | NGX_CONF_NOARGS,
        set_role,
        LOC,
        0,
        Becomes::Sender as usize,
    ),
    cmd(
        ngx_string!("push_publisher"),
        SRV_LOC | NGX_CONF_NOARGS,
        set_role,
        LOC,
        0,
        Becomes::Sender as usize,
    ),
    cmd(
        ngx_string!("push_listener"),
        SRV_LOC | NGX_CONF_ANY,
        set_role,
        LOC,
        0,
        Becomes::Listener as usize,
    ),
    cmd(
        ngx_string!("push_subscriber"),
        SRV_LOC | NGX_CONF_ANY,
        set_role,
        LOC,
        0,
        Becomes::Subscriber as usize,
    ),
    cmd(
        ngx_string!("push_listener_concurrency"),
        ANY | NGX_CONF_TAKE1,
        set_concurrency,
        LOC,
        0,
        0,
    ),
    cmd(
        ngx_string!("push_subscriber_concurrency"),
        ANY | NGX_CONF_TAKE1,
        set_concurrency,
        LOC,
        0,
        0,
    ),
    cmd(
        ngx_string!("push_queue_messages"),
        ANY | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        LOC,
        setting!(queue),
        0,
    ),
    cmd(
        ngx_string!("push_store_messages"),
        ANY | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        LOC,
        setting!(queue),
        0,
    ),
    cmd(
        ngx_string!("push_message_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_sec_slot,
        LOC,
        setting!(message_timeout),
        0,
    ),
    cmd(
        ngx_string!("push_message_buffer_length"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        setting!(buffer_length),
        0,
    ),
    cmd(
        ngx_string!("push_max_message_buffer_length"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        setting!(buffer_length),
        0,
    ),
    cmd(
        ngx_string!("push_min_message_buffer_length"),
        ANY | NGX_CONF_TAKE1,
        set_accepted_number,
        LOC,
        0,
        0,
    ),
    cmd(
        ngx_string!("push_channel_group"),
        SRV_LOC | NGX_CONF_TAKE1,
        ngx_http_set_complex_value_slot,
        LOC,
        offset_of!(LocConf, group),
        0,
    ),
    cmd(
        ngx_string!("push_buffer_size"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_buffer_size,
        MAIN,
        0,
        0,
    ),
    cmd(
        ngx_string!("push_max_reserved_memory"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_buffer_size,
        MAIN,
        0,
        0,
    ),
    cmd(
        ngx_string!("push_listener_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        LOC,
        setting!(listener_timeout),
        0,
    ),
    cmd(
        ngx_string!("push_subscriber_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        LOC,
        setting!(listener_timeout),
        0,
    ),
    cmd(
        ngx_string!("push_authorized_channels_only"),
        ANY | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        LOC,
        setting!(authorized_only),
        0,
    ),
    cmd(
        ngx_string!("push_max_channel_id_length"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        setting!(max_id_length),
        0,
    ),
    cmd(
        ngx_string!("push_max_channel_subscribers"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        LOC,
        setting!(max_subscribers),
        0,
    ),
    cmd(
        ngx_string!("push_channel_timeout"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_sec_slot,
        LOC,
        setting!(channel_timeout),
        0,
    ),
    cmd(
        ngx_string!("push_listener_ping"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        LOC,
        setting!(ping),
        0,
    ),
    cmd(
        ngx_string!("push_listener_max_pending"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_size_slot,
        LOC,
        setting!(max_pending),
        0,
    ),
    cmd(
        ngx_string!("push_redis"),
        ANY | NGX_CONF_TAKE1,
        set_redis,
        LOC,
        0,
        0,
    ),
    cmd(
        ngx_string!("push_redis_namespace"),
        ANY | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        LOC,
        offset_of!(LocConf, namespace),
        0,
    ),
    cmd(
        ngx_string!("push_redis_heartbeat"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        MAIN,
        offset_of!(MainConf, redis_heartbeat),
        0,
    ),
    cmd(
        ngx_string!("push_redis_connect_timeout"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        MAIN,
        offset_of!(MainConf, redis_connect_timeout),
        0,
    ),
    cmd(
        ngx_string!("push_allow_origin"),
        ANY | NGX_CONF_TAKE1,
        ngx_http_set_complex_value_slot,
        LOC,
        offset_of!(LocConf, allow_origin),
        0,
    ),
    ngx_command_t::empty(),
]);
