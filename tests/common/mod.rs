//! Integration test harness: a real nginx with the module loaded, in its own
//! temporary prefix, on ephemeral loopback ports, and a small HTTP/1.1 client
//! over `std::net::TcpStream`.
//!
//! Every test file does `#[macro_use] mod common;` and uses only part of this,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod browser;
/// Fault-tolerant load: cursor-following listeners of every transport and
/// publishers that record what was answered (tests/faults.rs, the soak).
pub mod load;
/// `push_stats` scrapes and worker memory (/proc).
pub mod metrics;
/// A real redis-server for the `push_redis` tests.
pub mod redis;
pub mod stream;

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "at once".
pub const PROMPT: Duration = Duration::from_secs(10);
/// How long a request must stay unanswered to be called "held" when we
/// also need a negative check (used together with positive conditions such
/// as the subscriber count, never alone as synchronisation).
pub const HELD_CHECK: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Small libc surface (no extra crates).

mod sys {
    use std::os::raw::{c_int, c_void};
    extern "C" {
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    pub const SIGHUP: c_int = 1;
    pub const SIGQUIT: c_int = 3;
    pub const SIGKILL: c_int = 9;
    pub const SIGTERM: c_int = 15;
    pub const SOL_SOCKET: c_int = 1;
    pub const SO_LINGER: c_int = 13;
    pub const SO_RCVBUF: c_int = 8;
    #[repr(C)]
    pub struct Linger {
        pub onoff: c_int,
        pub linger: c_int,
    }
}

/// Sends `sig` to `pid`; returns false if the process does not exist.
pub fn send_signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { sys::kill(pid, sig) == 0 }
}

pub const SIGHUP: i32 = sys::SIGHUP;
pub const SIGQUIT: i32 = sys::SIGQUIT;
pub const SIGKILL: i32 = sys::SIGKILL;
pub const SIGTERM: i32 = sys::SIGTERM;

// ---------------------------------------------------------------------------
// Waiting.

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
/// Returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Like `poll_until` but panics with `what` when the deadline passes.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, cond),
        "timed out after {timeout:?} waiting for: {what}"
    );
}

/// Runs `f` for each worker count (for tests that are cheap enough to run
/// serially); prefer `both_workers!` which makes one #[test] per count.
pub fn for_each_workers(counts: &[usize], mut f: impl FnMut(usize)) {
    for &w in counts {
        eprintln!("--- worker_processes {w}");
        f(w);
    }
}

/// `both_workers!(name);` where `fn name(workers: usize)` is a test body:
/// makes a module `name` with `#[test] fn workers_1` and `workers_4`.
#[macro_export]
macro_rules! both_workers {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn workers_1() {
                super::$name(1)
            }
            #[test]
            fn workers_4() {
                super::$name(4)
            }
        }
    )+};
}

// ---------------------------------------------------------------------------
// Binaries.

pub fn nginx_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PUSH_NGINX_BIN") {
        return PathBuf::from(p);
    }
    match option_env!("PUSH_NGINX_BUILD_DIR") {
        Some(dir) => Path::new(dir).join("nginx"),
        None => panic!("set PUSH_NGINX_BIN (build.rs did not export PUSH_NGINX_BUILD_DIR)"),
    }
}

pub fn module_so() -> PathBuf {
    if let Ok(p) = std::env::var("PUSH_MODULE_SO") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target = if target.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(target)
    } else {
        target
    };
    target.join("debug").join("libngx_http_push.so")
}

/// Hook for scripts/memcheck.sh: `PUSH_NGINX_WRAPPER` is a command (words
/// split at whitespace) that every nginx (started, or `nginx -t`) runs under, e.g.
/// `valgrind --log-file=/tmp/vg.%p.log`; unset, nginx runs as it is.
fn nginx_command() -> Command {
    let wrapper = std::env::var("PUSH_NGINX_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut c = Command::new(first);
            c.args(words).arg(nginx_bin());
            c
        }
        None => Command::new(nginx_bin()),
    }
}

/// `d` times `PUSH_TEST_SLOWDOWN` (default 1): the harness's own deadlines
/// for starting, reloading and stopping nginx, which a wrapper such as
/// valgrind makes many times slower.
pub fn slowed(d: Duration) -> Duration {
    let factor: u32 = std::env::var("PUSH_TEST_SLOWDOWN")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(1);
    d * factor.max(1)
}

// ---------------------------------------------------------------------------
// Temporary prefix directory.

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ngx-push-{tag}-{}-{n}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp prefix");
        for sub in ["conf", "logs", "html"] {
            std::fs::create_dir_all(path.join(sub)).expect("create prefix subdir");
        }
        TempDir {
            path,
            keep: std::env::var_os("PUSH_TEST_KEEP").is_some(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("keeping test prefix {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration.

pub const DEFAULT_LISTENER: &str = "set $push_id $arg_channel;\npush_listener;";
pub const DEFAULT_SENDER: &str = "set $push_id $arg_channel;\npush_sender;";

/// The generated nginx.conf. Default shape: listener server (port
/// `listener_port`) with `location / { set $push_id $arg_channel;
/// push_listener; }`, sender server (port `sender_port`) with the same and
/// `push_sender`. Every server has `location = /_pid { return 200 $pid; }`
/// and every `location /` has `add_header X-Worker $pid always;`.
#[derive(Clone, Debug)]
pub struct Conf {
    pub workers: usize,
    /// Main-context directives.
    pub main: String,
    /// http-level directives.
    pub http: String,
    /// Body of the listener `location /` (after `add_header X-Worker`).
    pub listener: String,
    /// Body of the sender `location /`.
    pub sender: String,
    /// Extra server-level directives / locations in the listener server.
    pub listener_server: String,
    /// Extra server-level directives / locations in the sender server.
    pub sender_server: String,
    /// Whole `http {}` body instead of the default shape. Placeholders:
    /// `{listener_port}`, `{sender_port}`, `{port2}`, `{port3}`,
    /// `{pid_location}`, `{prefix}`.
    pub raw_http: Option<String>,
    /// `load_module` the push module (on by default).
    pub load_module: bool,
    /// Add `reuseport` to the listen directives.
    pub reuseport: bool,
    /// A whole configuration file (an example of the repository) instead of
    /// the generated one: its `listen` ports 8088 and 8089 become the test's
    /// ports, the module is loaded, nginx stays in the foreground.
    pub whole: Option<String>,
    /// Symbolic links made in the prefix before start (name, target).
    pub links: Vec<(String, PathBuf)>,
    /// `events { worker_connections N; }` (1024 unless raised).
    pub worker_connections: usize,
    /// The error log's level (`info` unless changed: a long run can keep
    /// `notice`, where every alert still shows).
    pub log_level: String,
}

impl Conf {
    pub fn new(workers: usize) -> Conf {
        Conf {
            workers,
            main: String::new(),
            http: String::new(),
            listener: DEFAULT_LISTENER.to_string(),
            sender: DEFAULT_SENDER.to_string(),
            listener_server: String::new(),
            sender_server: String::new(),
            raw_http: None,
            load_module: true,
            reuseport: false,
            whole: None,
            links: Vec::new(),
            worker_connections: 1024,
            log_level: "info".to_string(),
        }
    }

    /// The repository's example configuration `path` (relative to the
    /// repository), on the test's ports.
    pub fn example(path: &str) -> Conf {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
            .unwrap_or_else(|e| panic!("read {path}: {e}"));
        Conf {
            whole: Some(text),
            ..Conf::new(1)
        }
    }

    /// Link `name` in the prefix to `target` (relative to the repository).
    pub fn link(mut self, name: &str, target: &str) -> Conf {
        self.links.push((
            name.to_string(),
            Path::new(env!("CARGO_MANIFEST_DIR")).join(target),
        ));
        self
    }
    /// Appends http-level directives.
    pub fn http(mut self, s: &str) -> Conf {
        self.http.push_str(s);
        self.http.push('\n');
        self
    }
    pub fn main(mut self, s: &str) -> Conf {
        self.main.push_str(s);
        self.main.push('\n');
        self
    }
    /// Appends to the default listener location body.
    pub fn listener_extra(mut self, s: &str) -> Conf {
        self.listener.push('\n');
        self.listener.push_str(s);
        self
    }
    /// Appends to the default sender location body.
    pub fn sender_extra(mut self, s: &str) -> Conf {
        self.sender.push('\n');
        self.sender.push_str(s);
        self
    }
    /// Replaces the listener location body.
    pub fn listener_body(mut self, s: &str) -> Conf {
        self.listener = s.to_string();
        self
    }
    /// Replaces the sender location body.
    pub fn sender_body(mut self, s: &str) -> Conf {
        self.sender = s.to_string();
        self
    }
    pub fn listener_server(mut self, s: &str) -> Conf {
        self.listener_server.push_str(s);
        self.listener_server.push('\n');
        self
    }
    pub fn sender_server(mut self, s: &str) -> Conf {
        self.sender_server.push_str(s);
        self.sender_server.push('\n');
        self
    }
    pub fn raw_http(mut self, s: &str) -> Conf {
        self.raw_http = Some(s.to_string());
        self
    }
    pub fn without_module(mut self) -> Conf {
        self.load_module = false;
        self
    }
    pub fn reuseport(mut self) -> Conf {
        self.reuseport = true;
        self
    }
    /// Raises (or lowers) `worker_connections` for tests holding many
    /// connections per worker.
    pub fn worker_connections(mut self, n: usize) -> Conf {
        self.worker_connections = n;
        self
    }
    /// The error log's level.
    pub fn log_level(mut self, level: &str) -> Conf {
        self.log_level = level.to_string();
        self
    }

    /// Renders the configuration for `prefix` and `ports` (at least 2).
    pub fn render(&self, prefix: &Path, ports: &[u16]) -> String {
        if let Some(whole) = &self.whole {
            return format!(
                "daemon off;\nmaster_process on;\nload_module {};\n{}",
                module_so().display(),
                whole
                    .replace(":8088;", &format!(":{};", ports[0]))
                    .replace(":8089;", &format!(":{};", ports[1]))
            );
        }
        let p = prefix.display();
        let rp = if self.reuseport { " reuseport" } else { "" };
        let mut s = String::new();
        let _ = writeln!(s, "daemon off;");
        let _ = writeln!(s, "master_process on;");
        let _ = writeln!(s, "worker_processes {};", self.workers);
        let _ = writeln!(s, "pid {p}/logs/nginx.pid;");
        let _ = writeln!(s, "error_log {p}/logs/error.log {};", self.log_level);
        if self.load_module {
            let _ = writeln!(s, "load_module {};", module_so().display());
        }
        s.push_str(&self.main);
        let _ = writeln!(
            s,
            "events {{ worker_connections {}; }}",
            self.worker_connections
        );
        let _ = writeln!(s, "http {{");
        let _ = writeln!(s, "access_log {p}/logs/access.log;");
        let _ = writeln!(s, "client_body_temp_path {p}/client_body_temp;");
        let _ = writeln!(s, "proxy_temp_path {p}/proxy_temp;");
        let _ = writeln!(s, "fastcgi_temp_path {p}/fastcgi_temp;");
        let _ = writeln!(s, "uwsgi_temp_path {p}/uwsgi_temp;");
        let _ = writeln!(s, "scgi_temp_path {p}/scgi_temp;");
        let pid_loc = "location = /_pid { return 200 $pid; }";
        if let Some(raw) = &self.raw_http {
            let mut body = raw
                .replace("{listener_port}", &ports[0].to_string())
                .replace("{sender_port}", &ports[1].to_string())
                .replace("{pid_location}", pid_loc)
                .replace("{prefix}", &p.to_string());
            for (i, port) in ports.iter().enumerate().skip(2) {
                body = body.replace(&format!("{{port{i}}}"), &port.to_string());
            }
            s.push_str(&body);
            s.push('\n');
        } else {
            s.push_str(&self.http);
            let _ = writeln!(s, "server {{");
            let _ = writeln!(s, "listen 127.0.0.1:{}{rp};", ports[0]);
            let _ = writeln!(s, "{pid_loc}");
            s.push_str(&self.listener_server);
            let _ = writeln!(s, "location / {{");
            let _ = writeln!(s, "add_header X-Worker $pid always;");
            let _ = writeln!(s, "{}", self.listener);
            let _ = writeln!(s, "}}");
            let _ = writeln!(s, "}}");
            let _ = writeln!(s, "server {{");
            let _ = writeln!(s, "listen 127.0.0.1:{}{rp};", ports[1]);
            let _ = writeln!(s, "{pid_loc}");
            s.push_str(&self.sender_server);
            let _ = writeln!(s, "location / {{");
            let _ = writeln!(s, "add_header X-Worker $pid always;");
            let _ = writeln!(s, "{}", self.sender);
            let _ = writeln!(s, "}}");
            let _ = writeln!(s, "}}");
        }
        let _ = writeln!(s, "}}");
        s
    }

    fn port_count(&self) -> usize {
        match &self.raw_http {
            Some(raw) => {
                let mut n = 2;
                while raw.contains(&format!("{{port{n}}}")) {
                    n += 1;
                }
                n
            }
            None => 2,
        }
    }

    /// Runs `nginx -t` on this configuration (in a throwaway prefix).
    pub fn nginx_t(&self) -> ConfTest {
        let dir = TempDir::new("t");
        let ports = pick_ports(self.port_count());
        let text = self.render(dir.path(), &ports);
        let conf_path = dir.path().join("conf").join("nginx.conf");
        std::fs::write(&conf_path, &text).expect("write nginx.conf");
        let out = nginx_command()
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .output()
            .expect("run nginx -t");
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        ConfTest {
            ok: out.status.success(),
            output,
            conf_path: conf_path.display().to_string(),
            text,
        }
    }

    /// Starts nginx with this configuration (retrying with new ports if a
    /// port was taken meanwhile).
    pub fn start(self) -> Nginx {
        Nginx::start(self)
    }
}

/// Result of `nginx -t`.
#[derive(Debug)]
pub struct ConfTest {
    pub ok: bool,
    pub output: String,
    pub conf_path: String,
    pub text: String,
}

impl ConfTest {
    /// 1-based line number of the first line of the rendered conf containing
    /// `needle`.
    pub fn line_of(&self, needle: &str) -> usize {
        self.text
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} not in conf:\n{}", self.text))
    }
    /// Asserts `nginx -t` failed with a message naming `directive` and
    /// `conf:line` of the line containing `needle`.
    pub fn assert_refused(&self, directive: &str, needle: &str) {
        assert!(
            !self.ok,
            "nginx -t accepted a bad conf ({needle}):\n{}\n{}",
            self.output, self.text
        );
        assert!(
            self.output.contains("[emerg]"),
            "nginx -t output has no [emerg]: {}",
            self.output
        );
        assert!(
            self.output.contains(directive),
            "nginx -t output does not name {directive:?}: {}",
            self.output
        );
        let at = format!("{}:{}", self.conf_path, self.line_of(needle));
        assert!(
            self.output.contains(&at),
            "nginx -t output does not name {at:?}: {}",
            self.output
        );
    }
    pub fn assert_ok(&self) {
        assert!(
            self.ok,
            "nginx -t refused the conf:\n{}\n{}",
            self.output, self.text
        );
    }
}

/// Picks `n` distinct free loopback ports (all bound at once, then released).
pub fn pick_ports(n: usize) -> Vec<u16> {
    let socks: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("local addr").port())
        .collect()
}

// ---------------------------------------------------------------------------
// The nginx process.

pub struct Nginx {
    child: Option<Child>,
    pub conf: Conf,
    pub ports: Vec<u16>,
    pub listener_port: u16,
    pub sender_port: u16,
    stopped: bool,
    reaped: std::cell::Cell<bool>,
    // Declared last: removed after the process is gone.
    dir: TempDir,
}

impl Nginx {
    pub fn start(conf: Conf) -> Nginx {
        let mut last_err = String::new();
        for _attempt in 0..6 {
            let dir = TempDir::new("ngx");
            let ports = pick_ports(conf.port_count());
            let text = conf.render(dir.path(), &ports);
            let conf_path = dir.path().join("conf").join("nginx.conf");
            std::fs::write(&conf_path, &text).expect("write nginx.conf");
            for (name, target) in &conf.links {
                std::os::unix::fs::symlink(target, dir.path().join(name))
                    .expect("link in the prefix");
            }
            let stderr = std::fs::File::create(dir.path().join("logs").join("stderr.log"))
                .expect("create stderr.log");
            let child = nginx_command()
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn nginx");
            let mut ngx = Nginx {
                child: Some(child),
                listener_port: ports[0],
                sender_port: ports[1],
                ports,
                conf: conf.clone(),
                stopped: false,
                reaped: std::cell::Cell::new(false),
                dir,
            };
            match ngx.wait_ready() {
                Ok(()) => return ngx,
                Err(e) => {
                    let log = ngx.all_logs();
                    ngx.kill_all();
                    ngx.stopped = true;
                    if log.contains("Address already in use") {
                        last_err = log;
                        continue;
                    }
                    panic!("nginx did not start: {e}\n--- conf:\n{text}\n--- logs:\n{log}");
                }
            }
        }
        panic!("nginx did not start after retries (ports busy):\n{last_err}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let limit = slowed(Duration::from_secs(20));
        let end = Instant::now() + limit;
        let master = self.master_pid();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.reaped.set(true);
                    return Err(format!("nginx exited during start: {status}"));
                }
            }
            if Instant::now() > end {
                return Err(format!("not ready within {limit:?}"));
            }
            let workers = self.worker_pids();
            if workers.len() >= self.conf.workers && self.all_ports_answer(master) {
                // The ports might belong to someone else if nginx failed to
                // bind: make sure it is still running and logged no bind error.
                if self.error_log().contains("bind() to") {
                    return Err("bind failed: Address already in use".into());
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn all_ports_answer(&self, master: i32) -> bool {
        let raw = self.conf.raw_http.is_some() || self.conf.whole.is_some();
        for (i, &port) in self.ports.iter().enumerate() {
            let Ok(mut c) = Conn::try_open(port) else {
                return false;
            };
            if raw || i >= 2 {
                continue;
            }
            match c.try_request(&Req::get("/_pid"), Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => {
                    let pid: i32 = r.text().trim().parse().unwrap_or(0);
                    if parent_of(pid) != Some(master) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        true
    }

    pub fn prefix(&self) -> &Path {
        self.dir.path()
    }

    /// The master's pid; 0 once it has exited and been reaped (so no signal
    /// can reach a recycled pid).
    pub fn master_pid(&self) -> i32 {
        if self.reaped.get() {
            return 0;
        }
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// All children of the master (workers, including ones shutting down).
    pub fn worker_pids(&self) -> BTreeSet<i32> {
        children_of(self.master_pid())
    }

    /// Workers that are not shutting down. (Under `PUSH_NGINX_WRAPPER` the
    /// titles nginx gives its processes do not show: every child counts.)
    pub fn live_worker_pids(&self) -> BTreeSet<i32> {
        let wrapped = std::env::var_os("PUSH_NGINX_WRAPPER").is_some_and(|w| !w.is_empty());
        self.worker_pids()
            .into_iter()
            .filter(|&p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                (wrapped || cmd.contains("worker process")) && !cmd.contains("shutting down")
            })
            .collect()
    }

    pub fn error_log(&self) -> String {
        std::fs::read(self.prefix().join("logs").join("error.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn all_logs(&self) -> String {
        let stderr = std::fs::read(self.prefix().join("logs").join("stderr.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        format!("{}{}", stderr, self.error_log())
    }

    /// Lines of error.log that mean a defect: `[alert]`, `[emerg]`, a worker
    /// that exited on a signal.
    pub fn bad_log_lines(&self) -> Vec<String> {
        self.error_log()
            .lines()
            .filter(|l| {
                l.contains("[alert]") || l.contains("[emerg]") || (l.contains("exited on signal"))
            })
            .map(str::to_string)
            .collect()
    }

    pub fn assert_log_clean(&self) {
        let bad = self.bad_log_lines();
        assert!(
            bad.is_empty(),
            "error.log has bad lines:\n{}\n--- full log:\n{}",
            bad.join("\n"),
            self.error_log()
        );
    }

    // -- connections --------------------------------------------------------

    pub fn listener(&self) -> Conn {
        Conn::open(self.listener_port)
    }
    pub fn sender(&self) -> Conn {
        Conn::open(self.sender_port)
    }

    /// Opens keep-alive connections to `port` until `n` of them are served
    /// by `n` different worker pids. Returns `(conn, pid)` pairs.
    pub fn connections_in_distinct_workers(&self, port: u16, n: usize) -> Vec<(Conn, i32)> {
        assert!(
            n <= self.conf.workers,
            "asked for {n} distinct workers of {}",
            self.conf.workers
        );
        let mut got: Vec<(Conn, i32)> = Vec::new();
        let mut spare: Vec<Conn> = Vec::new();
        for _ in 0..2000 {
            if got.len() == n {
                return got;
            }
            let mut c = Conn::open(port);
            let pid = c.worker_pid();
            if got.iter().any(|(_, p)| *p == pid) {
                // Keep it open for a while: an idle worker is more likely to
                // win the next accept.
                spare.push(c);
                if spare.len() > 32 {
                    spare.remove(0);
                }
            } else {
                got.push((c, pid));
            }
        }
        panic!(
            "could not get {n} connections in distinct workers (got {:?})",
            got.iter().map(|(_, p)| *p).collect::<Vec<_>>()
        );
    }

    /// `n` connections to `port`, spread over as many distinct workers as
    /// there are (the first `min(n, workers)` are in distinct workers).
    pub fn spread_connections(&self, port: u16, n: usize) -> Vec<(Conn, i32)> {
        let distinct = n.min(self.conf.workers);
        let mut v = self.connections_in_distinct_workers(port, distinct);
        while v.len() < n {
            let mut c = Conn::open(port);
            let pid = c.worker_pid();
            v.push((c, pid));
        }
        v
    }

    /// A connection to `port` served by a worker other than `pid` (with one
    /// worker: any connection).
    pub fn connection_not_in(&self, port: u16, pid: i32) -> (Conn, i32) {
        for _ in 0..2000 {
            let mut c = Conn::open(port);
            let p = c.worker_pid();
            if p != pid || self.conf.workers == 1 {
                return (c, p);
            }
        }
        panic!("no connection outside worker {pid}");
    }

    /// A connection to `port` served by worker `pid`.
    pub fn connection_in(&self, port: u16, pid: i32) -> Conn {
        let mut keep = Vec::new();
        for _ in 0..2000 {
            let mut c = Conn::open(port);
            if c.worker_pid() == pid {
                return c;
            }
            keep.push(c);
            if keep.len() > 32 {
                keep.remove(0);
            }
        }
        panic!("no connection in worker {pid}");
    }

    // -- sender helpers -----------------------------------------------------

    /// POSTs `body` to channel `ch` (new connection), returns the answer.
    pub fn post(&self, ch: &str, body: &[u8]) -> Response {
        self.sender()
            .request(&Req::post(&chan_path(ch), body).header("Content-Type", "text/plain"))
    }
    /// POSTs with a given Content-Type (`None`: no Content-Type header).
    pub fn post_typed(&self, ch: &str, ctype: Option<&str>, body: &[u8]) -> Response {
        let mut req = Req::post(&chan_path(ch), body);
        if let Some(t) = ctype {
            req = req.header("Content-Type", t);
        }
        self.sender().request(&req)
    }
    /// POSTs and asserts the answer is 201 or 202.
    pub fn publish(&self, ch: &str, body: &[u8]) -> Response {
        let r = self.post(ch, body);
        assert!(
            r.status == 201 || r.status == 202,
            "POST to {ch:?} answered {} {:?}",
            r.status,
            r.text()
        );
        r
    }
    /// GET channel info on the sender location (plain text).
    pub fn info(&self, ch: &str) -> Response {
        self.sender().request(&Req::get(&chan_path(ch)))
    }
    /// `active subscribers: N` from the plain-text channel info; None when the
    /// channel does not exist or the line is missing.
    pub fn subscribers(&self, ch: &str) -> Option<u64> {
        let r = self.info(ch);
        if r.status != 200 {
            return None;
        }
        info_field(&r.text(), "active subscribers")
    }
    /// Waits (bounded) until the channel info reports `n` held listeners.
    pub fn wait_subscribers(&self, ch: &str, n: u64) {
        let mut last = None;
        let ok = poll_until(PROMPT, || {
            last = self.subscribers(ch);
            last == Some(n) || (n == 0 && last.is_none())
        });
        assert!(
            ok,
            "channel {ch:?}: expected `active subscribers: {n}`, last seen {last:?}"
        );
    }

    /// For a listener request just sent on `conn` (the only listener of
    /// `ch`): true once the info counts it as held, false once an answer
    /// starts arriving. Robust against slow immediate answers.
    pub fn held_or_answered(&self, conn: &mut Conn, ch: &str) -> bool {
        let mut held = None;
        wait_until(PROMPT, "listener held or answered", || {
            if conn.is_answered_within(Duration::from_millis(2)) {
                held = Some(false);
            } else if self.subscribers(ch).unwrap_or(0) >= 1 {
                // counted as held, and still no answer
                held = Some(!conn.is_answered_within(Duration::from_millis(1)));
            }
            held.is_some()
        });
        held.unwrap()
    }

    // -- lifecycle ----------------------------------------------------------

    /// SIGHUP, then waits until new workers (not in the old set) serve
    /// fresh connections on every port. Returns the old worker pids.
    pub fn reload(&self) -> BTreeSet<i32> {
        let old = self.worker_pids();
        let master = self.master_pid();
        assert!(master > 0 && send_signal(master, SIGHUP), "SIGHUP failed");
        let ports = self.ports.clone();
        let raw = self.conf.raw_http.is_some() || self.conf.whole.is_some();
        let limit = slowed(Duration::from_secs(20));
        wait_until(limit, "new workers after reload", || {
            let live = self.live_worker_pids();
            let fresh: BTreeSet<i32> = live.difference(&old).copied().collect();
            if fresh.len() < self.conf.workers {
                return false;
            }
            if raw {
                return true;
            }
            // Several fresh connections per port must be served by new workers.
            ports.iter().take(2).all(|&port| {
                (0..4).all(|_| match Conn::try_open(port) {
                    Ok(mut c) => match c.try_request(&Req::get("/_pid"), Duration::from_secs(2)) {
                        Ok(r) => fresh.contains(&r.text().trim().parse().unwrap_or(0)),
                        Err(_) => false,
                    },
                    Err(_) => false,
                })
            })
        });
        old
    }

    /// Waits until none of `pids` is still a child of the master.
    pub fn wait_workers_gone(&self, pids: &BTreeSet<i32>, timeout: Duration) -> bool {
        poll_until(timeout, || self.worker_pids().is_disjoint(pids))
    }

    /// Sends SIGQUIT (graceful shutdown) without waiting.
    pub fn quit(&self) {
        let pid = self.master_pid();
        if pid > 0 {
            send_signal(pid, SIGQUIT);
        }
    }

    /// Waits for the master to exit; true if it did within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let end = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    self.reaped.set(true);
                    return true;
                }
                Ok(None) => {}
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill_all(&mut self) {
        let workers = self.worker_pids();
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.reaped.set(true);
        for w in workers {
            send_signal(w, SIGKILL);
        }
    }

    /// Graceful quit (bounded), then checks the error log. Panics if the
    /// shutdown hangs or the log has `[alert]`/`[emerg]`/crash lines.
    pub fn stop_and_check(mut self) {
        self.stop_inner(Some(&[]));
    }

    /// Stops and checks like `stop_and_check`, except for log lines that
    /// contain one of `expected` (a worker the test killed, say).
    pub fn stop_and_check_allowing(mut self, expected: &[&str]) {
        self.stop_inner(Some(expected));
    }

    /// Stops (graceful, then SIGKILL) without checking anything.
    pub fn stop_without_check(mut self) {
        self.stop_inner(None);
    }

    /// `allowed`: check that nginx exited within its time of SIGQUIT and
    /// that error.log has no bad line but those containing one of these.
    fn stop_inner(&mut self, allowed: Option<&[&str]>) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let workers = self.worker_pids();
        self.quit();
        let exited = self.wait_exit(slowed(Duration::from_secs(10)));
        if !exited {
            self.kill_all();
        }
        for w in workers {
            // Orphaned workers (should not exist after a clean quit).
            send_signal(w, SIGKILL);
        }
        let Some(allowed) = allowed else {
            return;
        };
        assert!(
            exited,
            "nginx did not exit within {:?} of SIGQUIT\n--- log:\n{}",
            slowed(Duration::from_secs(10)),
            self.error_log()
        );
        let bad: Vec<String> = self
            .bad_log_lines()
            .into_iter()
            .filter(|l| !allowed.iter().any(|e| l.contains(e)))
            .collect();
        assert!(
            bad.is_empty(),
            "error.log has bad lines:\n{}\n--- full log:\n{}",
            bad.join("\n"),
            self.error_log()
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if !self.stopped {
                eprintln!(
                    "--- error.log of failed test ({}):\n{}",
                    self.prefix().display(),
                    tail(&self.error_log(), 60)
                );
            }
            self.stop_inner(None);
        } else {
            self.stop_inner(Some(&[]));
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn children_of(master: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    if master == 0 {
        return out;
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                if parent_of(pid) == Some(master) {
                    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()));
                    if state != Some('Z') {
                        out.insert(pid);
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Channel helpers.

/// `/?channel=<ch>` with `ch` percent-encoded.
pub fn chan_path(ch: &str) -> String {
    format!("/?channel={}", pct(ch.as_bytes()))
}

pub fn pct(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// Value of `key: value` in a plain-text channel info body.
pub fn info_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?.trim_start().strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The text after `key:` in a plain-text channel info body.
pub fn info_str(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?.trim_start().strip_prefix(':')?;
        Some(rest.trim().to_string())
    })
}

/// The message cursor a listener echoes back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub last_modified: Option<String>,
    pub etag: Option<String>,
}

impl Cursor {
    pub fn of(r: &Response) -> Cursor {
        Cursor {
            last_modified: r.header("Last-Modified").map(str::to_string),
            etag: r.header("Etag").map(str::to_string),
        }
    }
    /// The numeric tag inside `"n"`, `W/"n"` or `n`.
    pub fn tag(&self) -> Option<u64> {
        etag_number(self.etag.as_deref()?)
    }
}

pub fn etag_number(etag: &str) -> Option<u64> {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    let e = e.trim_matches('"');
    e.parse().ok()
}

/// A listener GET for channel `ch` carrying `cursor`.
pub fn listen_req(ch: &str, cursor: &Cursor) -> Req {
    let mut r = Req::get(&chan_path(ch));
    if let Some(lm) = &cursor.last_modified {
        r = r.header("If-Modified-Since", lm);
    }
    if let Some(e) = &cursor.etag {
        r = r.header("If-None-Match", e);
    }
    r
}

/// Deterministic test payload of `len` bytes (all byte values appear).
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as u8) ^ (i as u8)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client.

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Send the body with `Transfer-Encoding: chunked`, chunks of this size.
    pub chunked: Option<usize>,
    /// Do not add `Host` (for raw tests).
    pub no_host: bool,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            chunked: None,
            no_host: false,
        }
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    pub fn post(path: &str, body: &[u8]) -> Req {
        Req::new("POST", path).body(body)
    }
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn body(mut self, b: &[u8]) -> Req {
        self.body = Some(b.to_vec());
        self
    }
    pub fn chunked(mut self, chunk: usize) -> Req {
        self.chunked = Some(chunk.max(1));
        self
    }
    pub fn cursor(mut self, c: &Cursor) -> Req {
        if let Some(lm) = &c.last_modified {
            self = self.header("If-Modified-Since", lm);
        }
        if let Some(e) = &c.etag {
            self = self.header("If-None-Match", e);
        }
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = write!(out, "{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self.no_host
            && !self
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            out.extend_from_slice(b"Host: localhost\r\n");
        }
        for (k, v) in &self.headers {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        match (&self.body, self.chunked) {
            (Some(b), Some(size)) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in b.chunks(size) {
                    let _ = write!(out, "{:x}\r\n", c.len());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            (Some(b), None) => {
                let _ = write!(out, "Content-Length: {}\r\n\r\n", b.len());
                out.extend_from_slice(b);
            }
            (None, _) => out.extend_from_slice(b"\r\n"),
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_length(&self) -> Option<usize> {
        self.header("Content-Length")?.trim().parse().ok()
    }
    /// The `X-Worker` pid (add_header in every test location).
    pub fn worker(&self) -> Option<i32> {
        self.header("X-Worker")?.trim().parse().ok()
    }
    pub fn cursor(&self) -> Cursor {
        Cursor::of(self)
    }
    pub fn is_keep_alive(&self) -> bool {
        !self
            .header("Connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The peer closed the connection before a whole response arrived.
    Closed {
        partial: Vec<u8>,
    },
    Io(io::Error),
    Malformed(String),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Timeout => write!(f, "timeout"),
            RecvError::Closed { partial } => write!(
                f,
                "connection closed ({} bytes of a response: {:?})",
                partial.len(),
                String::from_utf8_lossy(&partial[..partial.len().min(300)])
            ),
            RecvError::Io(e) => write!(f, "io error: {e}"),
            RecvError::Malformed(m) => write!(f, "malformed response: {m}"),
        }
    }
}

/// One client connection (keep-alive capable).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pending: VecDeque<String>,
    pub port: u16,
    eof: bool,
}

impl Conn {
    pub fn try_open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            pending: VecDeque::new(),
            port,
            eof: false,
        })
    }
    pub fn open(port: u16) -> Conn {
        Conn::try_open(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
    }

    /// Sends a request without waiting for the answer.
    pub fn send(&mut self, req: &Req) {
        self.pending.push_back(req.method.clone());
        self.stream
            .write_all(&req.to_bytes())
            .unwrap_or_else(|e| panic!("send {} {}: {e}", req.method, req.path));
    }

    /// Sends raw bytes; `method` is what the response parser should assume
    /// (HEAD answers have no body).
    pub fn send_raw(&mut self, bytes: &[u8], method: &str) {
        self.pending.push_back(method.to_string());
        self.stream.write_all(bytes).expect("send raw bytes");
    }

    /// Writes bytes without expecting an answer (e.g. half a request).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Receives the answer to the oldest pending request.
    pub fn try_recv(&mut self, timeout: Duration) -> Result<Response, RecvError> {
        let end = Instant::now() + timeout;
        let method = self
            .pending
            .front()
            .cloned()
            .unwrap_or_else(|| "GET".into());
        let r = self.read_response(end, &method);
        if r.is_ok() {
            self.pending.pop_front();
        }
        r
    }

    /// Receives the answer to the oldest pending request; panics on timeout.
    pub fn recv(&mut self, timeout: Duration) -> Response {
        match self.try_recv(timeout) {
            Ok(r) => r,
            Err(e) => panic!("no response on port {} within {timeout:?}: {e}", self.port),
        }
    }

    pub fn try_request(&mut self, req: &Req, timeout: Duration) -> Result<Response, RecvError> {
        self.pending.push_back(req.method.clone());
        self.stream
            .write_all(&req.to_bytes())
            .map_err(RecvError::Io)?;
        self.try_recv(timeout)
    }

    /// Sends and receives (10 s bound).
    pub fn request(&mut self, req: &Req) -> Response {
        self.send(req);
        self.recv(PROMPT)
    }

    /// Sends and expects the answer at once (5 s bound: a held request fails).
    pub fn recv_now(&mut self, req: &Req) -> Response {
        self.send(req);
        match self.try_recv(Duration::from_secs(5)) {
            Ok(r) => r,
            Err(e) => panic!(
                "{} {} on port {} not answered at once: {e}",
                req.method, req.path, self.port
            ),
        }
    }

    /// True if any byte (or EOF) arrives within `dur`; consumes nothing.
    pub fn is_answered_within(&mut self, dur: Duration) -> bool {
        if !self.buf.is_empty() || self.eof {
            return true;
        }
        let _ = self
            .stream
            .set_read_timeout(Some(dur.max(Duration::from_millis(1))));
        let mut b = [0u8; 1];
        match self.stream.peek(&mut b) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    /// Which worker serves this connection (`GET /_pid` on it).
    pub fn worker_pid(&mut self) -> i32 {
        let r = self.request(&Req::get("/_pid"));
        assert_eq!(r.status, 200, "/_pid answered {}", r.status);
        r.text().trim().parse().expect("pid in /_pid body")
    }

    /// Closes abruptly with a TCP RST (SO_LINGER 0).
    pub fn abort(self) {
        use std::os::fd::AsRawFd;
        let l = sys::Linger {
            onoff: 1,
            linger: 0,
        };
        // SAFETY: valid fd owned by self.stream, pointer to a live Linger of
        // the size passed.
        let rc = unsafe {
            sys::setsockopt(
                self.stream.as_raw_fd(),
                sys::SOL_SOCKET,
                sys::SO_LINGER,
                &l as *const sys::Linger as *const std::os::raw::c_void,
                std::mem::size_of::<sys::Linger>() as u32,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_LINGER");
        drop(self);
    }

    /// Shrinks the socket's receive buffer (a client that reads slowly, or
    /// not at all, then holds the server's writes back sooner).
    pub fn set_recv_buffer(&self, bytes: i32) {
        use std::os::fd::AsRawFd;
        // SAFETY: valid fd owned by self.stream, pointer to a live int of
        // the size passed.
        let rc = unsafe {
            sys::setsockopt(
                self.stream.as_raw_fd(),
                sys::SOL_SOCKET,
                sys::SO_RCVBUF,
                &bytes as *const i32 as *const std::os::raw::c_void,
                4,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    }

    /// The socket and whatever was read from it but not consumed (for a
    /// stream client that takes over a connection in a known worker).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Closes with FIN (orderly).
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Waits until the server closes the connection (EOF or reset).
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.eof {
                return true;
            }
            match self.fill(end) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(RecvError::Timeout) => return false,
                Err(_) => return true,
            }
        }
    }

    fn fill(&mut self, end: Instant) -> Result<usize, RecvError> {
        let now = Instant::now();
        if now >= end {
            return Err(RecvError::Timeout);
        }
        let _ = self
            .stream
            .set_read_timeout(Some((end - now).max(Duration::from_millis(1))));
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(RecvError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(1),
            Err(e) => Err(RecvError::Io(e)),
        }
    }

    /// Makes sure at least `n` bytes are buffered.
    fn need(&mut self, n: usize, end: Instant) -> Result<(), RecvError> {
        while self.buf.len() < n {
            if self.eof || self.fill(end)? == 0 {
                return Err(RecvError::Closed {
                    partial: self.buf.clone(),
                });
            }
        }
        Ok(())
    }

    fn find(&mut self, pat: &[u8], from: usize, end: Instant) -> Result<usize, RecvError> {
        let mut start = from;
        loop {
            if let Some(i) = self.buf[start..].windows(pat.len()).position(|w| w == pat) {
                return Ok(start + i);
            }
            start = self.buf.len().saturating_sub(pat.len() - 1).max(from);
            if self.eof || self.fill(end)? == 0 {
                return Err(RecvError::Closed {
                    partial: self.buf.clone(),
                });
            }
        }
    }

    fn read_response(&mut self, end: Instant, method: &str) -> Result<Response, RecvError> {
        let head_end = self.find(b"\r\n\r\n", 0, end)?;
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(RecvError::Malformed(format!("status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RecvError::Malformed(format!("status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                return Err(RecvError::Malformed(format!("header line {l:?}")));
            };
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            reason,
            version,
            headers,
            body: Vec::new(),
        };
        if method.eq_ignore_ascii_case("HEAD")
            || status == 204
            || status == 304
            || (100..200).contains(&status)
        {
            return Ok(resp);
        }
        let chunked = resp
            .header("Transfer-Encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = self.find(b"\r\n", 0, end)?;
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size_str = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_str, 16)
                    .map_err(|_| RecvError::Malformed(format!("chunk size {line:?}")))?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // trailers until empty line
                    loop {
                        let le = self.find(b"\r\n", 0, end)?;
                        let empty = le == 0;
                        self.buf.drain(..le + 2);
                        if empty {
                            break;
                        }
                    }
                    break;
                }
                self.need(size + 2, end)?;
                body.extend_from_slice(&self.buf[..size]);
                if &self.buf[size..size + 2] != b"\r\n" {
                    return Err(RecvError::Malformed("chunk not followed by CRLF".into()));
                }
                self.buf.drain(..size + 2);
            }
            resp.body = body;
        } else if let Some(len) = resp.header("Content-Length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| RecvError::Malformed(format!("Content-Length {len:?}")))?;
            self.need(len, end)?;
            resp.body = self.buf.drain(..len).collect();
        } else {
            // Until EOF.
            while !self.eof {
                if self.fill(end)? == 0 {
                    break;
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }
}

// ---------------------------------------------------------------------------
// HTTP dates.

/// Parses an IMF-fixdate (`Wed, 26 Nov 2025 20:00:00 GMT`) to Unix seconds.
pub fn http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" || !parts[0].ends_with(',') {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == parts[2])? as i64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    if hms.len() != 3 {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// Formats Unix seconds as an IMF-fixdate.
pub fn fmt_http_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{wd}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        months[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The (time, tag) position of a message answer, for ordering checks.
pub fn position(r: &Response) -> (i64, u64) {
    let lm = r
        .header("Last-Modified")
        .unwrap_or_else(|| panic!("no Last-Modified in {} answer", r.status));
    let t = http_date(lm).unwrap_or_else(|| panic!("bad Last-Modified {lm:?}"));
    let e = r
        .header("Etag")
        .unwrap_or_else(|| panic!("no Etag in {} answer", r.status));
    let tag = etag_number(e).unwrap_or_else(|| panic!("bad Etag {e:?}"));
    (t, tag)
}

/// Asserts `next` is the message right after `prev` in one channel's
/// sequence: same second and tag+1, or a later second and tag 0.
pub fn assert_successor(prev: (i64, u64), next: (i64, u64)) {
    if next.0 == prev.0 {
        assert_eq!(
            next.1,
            prev.1 + 1,
            "same second: tag must grow by one ({prev:?} -> {next:?})"
        );
    } else {
        assert!(next.0 > prev.0, "time went backwards: {prev:?} -> {next:?}");
        assert_eq!(
            next.1, 0,
            "new second: tag must restart at 0 ({prev:?} -> {next:?})"
        );
    }
}
