//! A real browser for the tests: Debian's headless Chromium, driven over
//! WebDriver by Debian's chromedriver, started on an ephemeral loopback
//! port with a profile in a temporary directory, stopped by pid.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{pick_ports, poll_until, Conn, Req, TempDir, PROMPT};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: TempDir,
}

fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut req = Req::new(method, path).header("Content-Type", "application/json");
    if let Some(b) = body {
        req = req.body(b.to_string().as_bytes());
    }
    let r = Conn::open(port).request(&req);
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {}", r.text()));
    if r.status != 200 {
        panic!("WebDriver {method} {path} answered {}: {v}", r.status);
    }
    v["value"].clone()
}

impl Browser {
    /// Start chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/deps.sh chromium chromium-driver (scripts/test.sh does)"
            );
        }
        let port = pick_ports(1)[0];
        let profile = TempDir::new("chromium");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let ready = poll_until(PROMPT, || {
            Conn::try_open(port)
                .ok()
                .and_then(|mut c| {
                    c.try_request(&Req::get("/status"), Duration::from_secs(2))
                        .ok()
                })
                .is_some_and(|r| r.status == 200)
        });
        assert!(ready, "chromedriver did not answer on port {port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let v = call(port, "POST", "/session", Some(&caps));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    pub fn goto(&self, url: &str) {
        call(
            self.port,
            "POST",
            &format!("/session/{}/url", self.session),
            Some(&json!({ "url": url })),
        );
    }

    /// Run `script` (a function body) in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        call(
            self.port,
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Wait until `expr` is true in the page; panics with `what` after the
    /// deadline.
    pub fn wait_for(&self, expr: &str, what: &str) {
        let script = format!("return !!({expr});");
        let ok = poll_until(PROMPT, || self.eval(&script) == Value::Bool(true));
        assert!(ok, "timed out waiting in the browser for: {what} ({expr})");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = Conn::try_open(self.port).map(|mut c| {
                c.try_request(
                    &Req::new("DELETE", &format!("/session/{}", self.session)),
                    Duration::from_secs(5),
                )
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
