//! Self-tests of the test harness against a plain nginx (no push module), so
//! a harness defect is not mistaken for a module defect.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

fn plain(workers: usize) -> Conf {
    Conf::new(workers)
        .without_module()
        .listener_body("return 200 \"listener $arg_channel\";")
        .sender_body("return 200 \"sender $arg_channel\";")
}

#[test]
fn starts_answers_and_keeps_alive() {
    let ngx = plain(2).start();
    let mut c = ngx.listener();
    let pid = c.worker_pid();
    assert!(ngx.worker_pids().contains(&pid));
    for i in 0..5 {
        let r = c.request(&Req::get(&chan_path(&format!("x{i}"))));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("listener x{i}"));
        assert_eq!(r.worker(), Some(pid), "keep-alive stays in one worker");
    }
    let r = ngx.sender().request(&Req::post("/?channel=a", b"body"));
    assert_eq!(r.text(), "sender a");
    // chunked request body accepted by nginx
    let r = ngx
        .sender()
        .request(&Req::post("/?channel=b", &payload(5000, 1)).chunked(700));
    assert_eq!(r.status, 200);
    ngx.stop_and_check();
}

#[test]
fn distinct_workers_reload_and_quit() {
    let ngx = plain(4).start();
    assert_eq!(ngx.worker_pids().len(), 4);
    let conns = ngx.connections_in_distinct_workers(ngx.listener_port, 4);
    let pids: std::collections::BTreeSet<i32> = conns.iter().map(|(_, p)| *p).collect();
    assert_eq!(pids.len(), 4);
    drop(conns);
    let old = ngx.reload();
    // The old workers leave gracefully, in their own time.
    assert!(ngx.wait_workers_gone(&old, Duration::from_secs(10)));
    assert!(ngx.live_worker_pids().is_disjoint(&old));
    assert_eq!(ngx.live_worker_pids().len(), 4);
    ngx.stop_and_check();
}

#[test]
fn chunked_response_and_held_request() {
    // A held request: proxy to a socket that accepts and never answers.
    let hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hold_port = hold.local_addr().unwrap().port();
    let ngx = Conf::new(1)
        .without_module()
        .http("proxy_read_timeout 30s;")
        .listener_body(&format!("proxy_pass http://127.0.0.1:{hold_port};"))
        .sender_body("gzip on; gzip_min_length 1; gzip_types *; return 200 \"0123456789012345678901234567890123456789\";")
        .start();
    let mut c = ngx.listener();
    c.send(&Req::get("/held"));
    assert!(!c.is_answered_within(Duration::from_millis(200)));
    c.abort();
    // gzip makes the response chunked
    let r = ngx
        .sender()
        .request(&Req::get("/").header("Accept-Encoding", "gzip"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert!(r.header("Transfer-Encoding").is_some());
    assert!(!r.body.is_empty());
    drop(hold);
    ngx.stop_and_check();
}

#[test]
fn nginx_t_reports_file_and_line() {
    let t = plain(1).http("keepalive_timeout sideways;").nginx_t();
    t.assert_refused("keepalive_timeout", "keepalive_timeout sideways;");
    plain(1).nginx_t().assert_ok();
}

#[test]
fn module_so_exists() {
    let so = module_so();
    assert!(so.exists(), "{} missing: run cargo build", so.display());
}

#[test]
fn crash_is_detected_in_error_log() {
    let ngx = plain(1).start();
    let pid = ngx.listener().worker_pid();
    assert!(send_signal(pid, 11));
    wait_until(PROMPT, "crash logged", || !ngx.bad_log_lines().is_empty());
    assert!(ngx
        .bad_log_lines()
        .iter()
        .any(|l| l.contains("exited on signal 11")));
    ngx.stop_without_check();
}

#[test]
fn http_dates_round_trip() {
    assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        http_date("Wed, 26 Nov 2025 15:13:20 GMT"),
        Some(1_764_170_000)
    );
    for t in [0, 951_782_400, 1_764_170_000, 4_102_444_799] {
        assert_eq!(
            http_date(&fmt_http_date(t)),
            Some(t),
            "{}",
            fmt_http_date(t)
        );
    }
    assert_eq!(
        fmt_http_date(1_764_170_000),
        "Wed, 26 Nov 2025 15:13:20 GMT"
    );
}
