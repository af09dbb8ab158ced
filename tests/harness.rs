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

/// The fault tests' delivery check (`common::load::check_channel`) finds
/// every kind of wrong delivery, and passes a right one: otherwise the
/// fault suite could not fail.
#[test]
fn the_delivery_check_finds_what_is_wrong() {
    use common::load::*;
    let report = |toks: &[&str]| FollowerReport {
        transport: Transport::LongPoll,
        channel: "c".into(),
        got: toks
            .iter()
            .enumerate()
            .map(|(i, t)| ((100, i as u64), t.to_string()))
            .chain(std::iter::once(((101, 0), END.to_string())))
            .collect(),
        reconnects: 0,
        not_modified: 0,
        timeouts: 0,
        workers: Default::default(),
        failure: None,
    };
    let accepted: Vec<String> = ["p0-0", "p1-0", "p0-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown = vec!["p1-1".to_string()];
    let check = |fs: &[FollowerReport]| {
        let refs: Vec<&FollowerReport> = fs.iter().collect();
        check_channel("c", &refs, &accepted, &unknown)
    };
    let right = report(&["p0-0", "p1-0", "p0-1"]);
    assert!(check(&[right.clone(), right.clone()]).is_empty());
    // An unanswered publish may arrive (once).
    assert!(check(&[report(&["p0-0", "p1-0", "p1-1", "p0-1"])]).is_empty());
    let wrong = [
        ("missing", report(&["p0-0", "p0-1"])),
        ("twice", report(&["p0-0", "p1-0", "p1-0", "p0-1"])),
        ("out of order", report(&["p0-1", "p1-0", "p0-0"])),
        ("never published", report(&["p0-0", "p1-0", "p0-1", "p7-0"])),
    ];
    for (what, r) in wrong {
        assert!(!check(&[r]).is_empty(), "{what} not found");
    }
    // Followers of one channel that saw different sequences.
    let other = report(&["p1-0", "p0-0", "p0-1"]);
    assert!(
        !check(&[right.clone(), other]).is_empty(),
        "different orders"
    );
    // A follower that stopped short, or failed.
    let mut short = right.clone();
    short.got.pop();
    assert!(!check(&[short]).is_empty(), "no end");
    let mut failed = right;
    failed.failure = Some("not the next message".into());
    assert!(!check(&[failed]).is_empty(), "a failure");
    // The pieces the followers check as they go.
    assert!(is_successor((5, 1), (5, 2)) && is_successor((5, 9), (6, 0)));
    assert!(
        !is_successor((5, 1), (5, 3))
            && !is_successor((5, 1), (6, 1))
            && !is_successor((5, 1), (4, 0))
    );
    assert_eq!(token_of(&make_body("p3-9", 100)).unwrap(), "p3-9");
    let mut damaged = make_body("p3-9", 100);
    damaged.replace_range(20..21, "#");
    assert!(token_of(&damaged).is_err());
}
