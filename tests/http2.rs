//! Listeners over HTTP/2 (h2c, prior knowledge), driven by curl: a held
//! stream is answered, and a stream the client gives up on is forgotten.

#[macro_use]
mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn curl_h2(port: u16, path: &str, max_time: &str) -> Child {
    Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "--max-time",
            max_time,
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs (scripts/deps.sh installs it)")
}

fn wait_output(mut child: Child, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        if child.try_wait().expect("curl status").is_some() {
            let out = child.wait_with_output().expect("curl output");
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("curl still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn h2_listener(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_server("http2 on;")
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let port = ngx.listener_port;
    let held = curl_h2(port, "/?channel=h2", "10");
    ngx.wait_subscribers("h2", 1);
    assert_eq!(ngx.post("h2", b"over h2").status, 201);
    let out = wait_output(held, PROMPT);
    assert_eq!(out, "over h2\n200 2", "curl saw: {out:?}");

    // A stream whose client gives up (curl --max-time) is forgotten.
    let gone = curl_h2(port, "/?channel=h2b", "0.5");
    ngx.wait_subscribers("h2b", 1);
    let _ = wait_output(gone, PROMPT);
    ngx.wait_subscribers("h2b", 0);
    assert_eq!(ngx.post("h2b", b"nobody").status, 202);
    ngx.stop_and_check();
}

both_workers!(h2_listener);
