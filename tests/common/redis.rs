//! A real `redis-server` for tests: started in its own temporary directory
//! on a free loopback port (never Debian's service on 6379), without
//! persistence unless asked (`appendonly`), stopped by pid. Every wait is a
//! condition with a deadline (PING answers), never a fixed sleep.
//!
//! Std only, so that both the relay crate's tests
//! (`#[path = "../../tests/common/redis.rs"] mod redis_server;`) and the
//! module's nginx tests (`common::redis`) use it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long redis-server may take to start or stop.
pub const REDIS_DEADLINE: Duration = Duration::from_secs(10);

static N: AtomicUsize = AtomicUsize::new(0);

/// The redis-server binary: `PUSH_REDIS_SERVER`, else the one in PATH.
pub fn redis_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PUSH_REDIS_SERVER") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("redis-server");
        if p.is_file() {
            return p;
        }
    }
    panic!("redis-server not found: install it with `scripts/deps.sh redis-server` (as root)");
}

#[derive(Debug, Clone, Default)]
pub struct RedisOpts {
    /// `--appendonly yes` (with `appendfsync always`, so a stop loses
    /// nothing).
    pub appendonly: bool,
    /// `--requirepass`.
    pub password: Option<String>,
    /// More `--name value` pairs.
    pub extra: Vec<(String, String)>,
}

pub struct RedisServer {
    pub port: u16,
    pub opts: RedisOpts,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOpts::default())
    }

    /// On a given port (a test that points a client at it first).
    pub fn start_on(port: u16, opts: RedisOpts) -> RedisServer {
        let mut r = RedisServer::new(opts);
        r.port = port;
        if !r.spawn() {
            panic!(
                "redis-server did not start on port {port}; see {}",
                r.log_path().display()
            );
        }
        r
    }

    fn new(opts: RedisOpts) -> RedisServer {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("push-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        RedisServer {
            port: 0,
            opts,
            dir,
            child: None,
        }
    }

    pub fn start_with(opts: RedisOpts) -> RedisServer {
        let mut r = RedisServer::new(opts);
        // A port picked free may be taken before redis binds it: retry.
        for _ in 0..5 {
            r.port = free_port();
            if r.spawn() {
                return r;
            }
        }
        panic!("redis-server did not start; see {}", r.log_path().display());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn url(&self) -> String {
        match &self.opts.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start on `self.port`; false if it did not come up.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(redis_server_bin());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--protected-mode", "no"]);
        if self.opts.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(p) = &self.opts.password {
            cmd.args(["--requirepass", p]);
        }
        for (k, v) in &self.opts.extra {
            cmd.arg(format!("--{k}")).arg(v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot run {}: {e}", redis_server_bin().display()),
        };
        let end = Instant::now() + REDIS_DEADLINE;
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.ping() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut req = Vec::new();
        if let Some(p) = &self.opts.password {
            req.extend_from_slice(&encode(&[b"AUTH", p.as_bytes()]));
        }
        req.extend_from_slice(&encode(&[b"PING"]));
        if s.write_all(&req).is_err() {
            return false;
        }
        let mut r = BufReader::new(s);
        if self.opts.password.is_some() && !matches!(read_reply(&mut r), Some(Reply::Status(_))) {
            return false;
        }
        matches!(read_reply(&mut r), Some(Reply::Status(s)) if s == "PONG")
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let end = Instant::now() + REDIS_DEADLINE;
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop (SIGTERM: an append-only file is flushed).
    pub fn stop(&mut self) {
        self.signal("TERM");
        self.reap();
    }

    /// Abrupt stop (SIGKILL).
    pub fn kill(&mut self) {
        self.signal("KILL");
        self.reap();
    }

    /// Freeze (SIGSTOP) and thaw (SIGCONT): a Redis that stops answering.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Start again on the same port and directory (after `stop`/`kill`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let end = Instant::now() + REDIS_DEADLINE;
        while Instant::now() < end {
            if self.spawn() {
                return;
            }
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// One command on a fresh connection (RESP2).
    pub fn cmd(&self, args: &[&[u8]]) -> Reply {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(REDIS_DEADLINE)).unwrap();
        let mut req = Vec::new();
        if let Some(p) = &self.opts.password {
            req.extend_from_slice(&encode(&[b"AUTH", p.as_bytes()]));
        }
        req.extend_from_slice(&encode(args));
        s.write_all(&req).unwrap();
        let mut r = BufReader::new(s);
        if self.opts.password.is_some() {
            read_reply(&mut r);
        }
        read_reply(&mut r).expect("a reply")
    }

    /// Every key (SCAN), sorted.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let Reply::Array(v) = self.cmd(&[b"SCAN", &cursor, b"COUNT", b"1000"]) else {
                panic!("SCAN");
            };
            let [Reply::Bulk(Some(next)), Reply::Array(keys)] = &v[..] else {
                panic!("SCAN reply");
            };
            for k in keys {
                if let Reply::Bulk(Some(k)) = k {
                    out.push(k.clone());
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next.clone();
        }
        out.sort();
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
            self.kill();
        }
        if std::env::var_os("PUSH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        }
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn read_reply(r: &mut impl BufRead) -> Option<Reply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).ok()?;
    let l = String::from_utf8_lossy(line.strip_suffix(b"\r\n")?).into_owned();
    let (t, rest) = l.split_at(1);
    Some(match t {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(rest.parse().ok()?),
        "$" => {
            let n: i64 = rest.parse().ok()?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut b = vec![0; n as usize + 2];
                r.read_exact(&mut b).ok()?;
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
        }
        "*" => {
            let n: i64 = rest.parse().ok()?;
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.push(read_reply(r)?);
            }
            Reply::Array(v)
        }
        _ => return None,
    })
}
