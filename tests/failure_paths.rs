//! When a step inside the module fails: a listener that cannot be parked,
//! a wake-up the kernel refuses, events lost to a full zone; and the log
//! lines that tell an operator. Debug builds of the module take injected
//! faults from `NGX_HTTP_PUSH_FAULTS` (see src/runtime/faults.rs).

#[macro_use]
mod common;

use common::*;

fn with_faults(workers: usize, faults: &str) -> Conf {
    Conf::new(workers).main(&format!("env NGX_HTTP_PUSH_FAULTS={faults};"))
}

/// A listener whose request cannot be parked gets 500 and gives its count
/// back: under `first` the next listener is not refused with 409, the
/// channel's subscriber count stays 0, and a channel only that listener
/// made is freed.
fn park_failure_gives_the_count_back(workers: usize) {
    let ngx = with_faults(workers, "park")
        .listener_extra("push_listener_concurrency first;")
        .start();
    for round in 0..3 {
        let r = ngx.listener().request(&Req::get(&chan_path("p")));
        assert_eq!(r.status, 500, "round {round}: {}", r.text());
        assert_eq!(ngx.subscribers("p"), None, "round {round}: channel freed");
    }
    ngx.sender().request(&Req::new("PUT", &chan_path("p")));
    let r = ngx.listener().request(&Req::get(&chan_path("p")));
    assert_eq!(r.status, 500, "not 409: no count was left behind");
    assert_eq!(ngx.subscribers("p"), Some(0));
    assert!(
        ngx.error_log().contains("cannot hold a listener"),
        "the failure is logged"
    );
    ngx.stop_and_check();
}

both_workers!(park_failure_gives_the_count_back);

/// A wake-up the kernel refuses (ENOBUFS) is sent again: the listener in
/// the other worker still gets the message at once, and the log says so.
#[test]
fn refused_wake_ups_are_sent_again() {
    let ngx = with_faults(2, "wake=2").start();
    let mut l = ngx.listener();
    let lpid = l.worker_pid();
    l.send(&Req::get(&chan_path("w")));
    ngx.wait_subscribers("w", 1);
    let (mut s, spid) = ngx.connection_not_in(ngx.sender_port, lpid);
    assert_ne!(spid, lpid);
    // Whichever worker's wake-up is refused first, it is retried.
    let pr = s.request(&Req::post(&chan_path("w"), b"through"));
    assert_eq!(pr.status, 201);
    assert_eq!(l.recv(PROMPT).body, b"through");
    wait_until(PROMPT, "the refusal and the retry are logged", || {
        let log = ngx.error_log();
        log.contains("failed (errno 105); retrying") && log.contains("delivered on retry")
    });
    ngx.stop_and_check();
}

/// When events were lost, the worker resynchronises its listeners from the
/// store: delivery still works and a warning names what happened.
#[test]
fn resynchronising_is_logged_and_loses_nothing() {
    let ngx = with_faults(2, "resync")
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let held = ngx.spread_connections(ngx.listener_port, 2);
    let mut conns = Vec::new();
    for (mut c, _) in held {
        c.send(&Req::get(&chan_path("r")));
        conns.push(c);
    }
    ngx.wait_subscribers("r", 2);
    assert_eq!(ngx.post("r", b"still").status, 201);
    for c in &mut conns {
        assert_eq!(c.recv(PROMPT).body, b"still");
    }
    wait_until(PROMPT, "the resync warning", || {
        ngx.error_log()
            .lines()
            .any(|l| l.contains("[warn]") && l.contains("resynchronised"))
    });
    assert_eq!(ngx.subscribers("r"), Some(0));
    ngx.stop_and_check();
}

/// A POST's channel id is read once, when the request arrives: a group
/// made of a variable that changes while the body is read (here the body
/// itself) does not move the message to another channel.
#[test]
fn post_reads_its_channel_id_once() {
    let ngx = Conf::new(1)
        .sender_extra("push_channel_group $request_body;")
        .start();
    let pr = ngx.post("once", b"body-as-group");
    assert_eq!(pr.status, 202, "{}", pr.text());
    // A bodiless GET in the same location names the same channel.
    let info = ngx.sender().request(&Req::get(&chan_path("once")));
    assert_eq!(
        info.status, 200,
        "the message is where the POST was addressed"
    );
    assert_eq!(info_field(&info.text(), "queued messages"), Some(1));
    ngx.stop_and_check();
}

/// Client faults are logged at `info`, as nginx logs them, not `error`.
#[test]
fn client_faults_log_at_info() {
    let ngx = Conf::new(1).start();
    let before = ngx.error_log().lines().count();
    assert_eq!(ngx.listener().request(&Req::get("/")).status, 400);
    assert_eq!(
        ngx.listener()
            .request(&Req::post(&chan_path("m"), b"x"))
            .status,
        405
    );
    assert_eq!(
        ngx.sender()
            .request(&Req::new("PATCH", &chan_path("m")))
            .status,
        405
    );
    let log = ngx.error_log();
    let new: Vec<&str> = log
        .lines()
        .skip(before)
        .filter(|l| l.contains("push:"))
        .collect();
    assert_eq!(new.len(), 3, "one line each: {new:?}");
    assert!(new.iter().all(|l| l.contains("[info]")), "{new:?}");
    ngx.stop_and_check();
}
