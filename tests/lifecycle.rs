//! Client aborts while held, reload keeping messages, reload and graceful
//! quit answering held listeners 304 with their cursor.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

/// A held listener that resets its connection is forgotten at once: the
/// count drops to 0, a POST answers 202 (nobody was written to), and the
/// message is stored for the next listener.
fn abort_while_held(workers: usize) {
    let ngx = Conf::new(workers).start();
    for (round, rst) in [(0, true), (1, false)] {
        let ch = format!("ab{round}");
        let l = ngx.listener();
        let mut l = l;
        l.send(&Req::get(&chan_path(&ch)));
        ngx.wait_subscribers(&ch, 1);
        if rst {
            l.abort();
        } else {
            l.close();
        }
        ngx.wait_subscribers(&ch, 0);
        let pr = ngx.post(&ch, b"after abort");
        assert_eq!(
            pr.status, 202,
            "nobody held after the abort (round {round})"
        );
        let r = ngx.listener().recv_now(&Req::get(&chan_path(&ch)));
        assert_eq!(r.body, b"after abort");
    }
    ngx.stop_and_check();
}

/// Aborting one of several broadcast listeners does not affect the others.
fn abort_one_of_many(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 4);
    for (c, _) in conns.iter_mut() {
        c.send(&Req::get(&chan_path("m")));
    }
    ngx.wait_subscribers("m", 4);
    let (gone, _) = conns.remove(1);
    gone.abort();
    ngx.wait_subscribers("m", 3);
    assert_eq!(ngx.post("m", b"to the rest").status, 201);
    for (c, pid) in conns.iter_mut() {
        let r = c.recv(PROMPT);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"to the rest");
        assert_eq!(r.worker(), Some(*pid));
    }
    ngx.stop_and_check();
}

/// Many listeners reset right as a message is published: no crash, and
/// every survivor gets the message.
fn abort_racing_delivery(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    for round in 0..3 {
        let ch = format!("race{round}");
        let mut conns: Vec<Conn> = (0..40).map(|_| ngx.listener()).collect();
        for c in conns.iter_mut() {
            c.send(&Req::get(&chan_path(&ch)));
        }
        ngx.wait_subscribers(&ch, 40);
        let keep: Vec<Conn> = conns.split_off(20);
        let mut sender = ngx.sender();
        sender.send(&Req::post(&chan_path(&ch), b"racing").header("Content-Type", "text/plain"));
        for c in conns {
            c.abort();
        }
        let pr = sender.recv(PROMPT);
        assert!(pr.status == 201, "POST with survivors: {}", pr.status);
        for mut c in keep {
            let r = c.recv(PROMPT);
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"racing");
        }
        ngx.wait_subscribers(&ch, 0);
    }
    ngx.stop_and_check();
}

/// Reload keeps the zone and every stored message: after new workers serve,
/// a listener walks the same messages with the same cursors.
fn reload_keeps_messages(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut before = Vec::new();
    for i in 0..3 {
        ngx.publish("k", format!("kept {i}").as_bytes());
    }
    let mut cursor = Cursor::default();
    for _ in 0..3 {
        let r = ngx.listener().recv_now(&listen_req("k", &cursor));
        cursor = r.cursor();
        before.push(r);
    }
    for reload in 0..2 {
        let old = ngx.reload();
        // Old workers accept for a moment after a reload: wait them out so
        // that the listener below is served by the new generation.
        assert!(
            ngx.wait_workers_gone(&old, Duration::from_secs(10)),
            "old workers exit"
        );
        let mut l = ngx.listener();
        let pid = l.worker_pid();
        assert!(!old.contains(&pid), "served by a new worker");
        let mut cursor = Cursor::default();
        for (i, b) in before.iter().enumerate() {
            let r = l.recv_now(&listen_req("k", &cursor));
            assert_eq!(r.status, 200, "reload {reload}, message {i}");
            assert_eq!(r.body, b.body);
            assert_eq!(position(&r), position(b));
            cursor = r.cursor();
        }
    }
    // Publishing continues the same sequence.
    ngx.publish("k", b"after reload");
    let r = ngx
        .listener()
        .recv_now(&listen_req("k", &before[2].cursor()));
    assert_eq!(r.body, b"after reload");
    assert!(position(&r) > position(&before[2]));
    ngx.stop_and_check();
}

/// Holds one listener with a cursor (channel with a message) and one
/// without (empty channel) in different workers; returns them with the
/// cursor used.
fn hold_two(ngx: &Nginx) -> (Vec<(Conn, i32)>, Cursor) {
    ngx.publish("hc", b"seen");
    let seen = ngx.listener().recv_now(&Req::get(&chan_path("hc")));
    let cursor = seen.cursor();
    let mut conns = ngx.spread_connections(ngx.listener_port, 2);
    conns[0].0.send(&listen_req("hc", &cursor));
    conns[1].0.send(&Req::get(&chan_path("hn")));
    ngx.wait_subscribers("hc", 1);
    ngx.wait_subscribers("hn", 1);
    (conns, cursor)
}

fn assert_304_echo(r: &Response, cursor: &Cursor, what: &str) {
    assert_eq!(r.status, 304, "{what}: held listener answered {}", r.status);
    assert_eq!(
        r.header("Last-Modified"),
        cursor.last_modified.as_deref(),
        "{what}: Last-Modified echoed"
    );
    match (&cursor.etag, r.header("Etag")) {
        (Some(sent), Some(got)) => {
            assert_eq!(etag_number(got), etag_number(sent), "{what}: Etag echoed")
        }
        (None, None) => {}
        (s, g) => panic!("{what}: Etag sent {s:?}, echoed {g:?}"),
    }
}

/// Graceful quit answers every held listener 304 with its cursor echoed
/// (none when it had none), and nginx exits promptly.
fn quit_answers_held(workers: usize) {
    let mut ngx = Conf::new(workers).start();
    let (mut conns, cursor) = hold_two(&ngx);
    let t0 = Instant::now();
    ngx.quit();
    let r0 = conns[0].0.recv(Duration::from_secs(5));
    assert_304_echo(&r0, &cursor, "quit, with cursor");
    let r1 = conns[1].0.recv(Duration::from_secs(5));
    assert_304_echo(&r1, &Cursor::default(), "quit, without cursor");
    assert!(
        ngx.wait_exit(Duration::from_secs(5)),
        "nginx exits after quit"
    );
    eprintln!("quit: answered and exited in {:?}", t0.elapsed());
    ngx.assert_log_clean();
    ngx.stop_and_check();
}

/// Reload answers held listeners of the old workers 304 promptly (not when
/// some timeout passes); they reconnect with their cursor and miss nothing.
fn reload_answers_held(workers: usize) {
    let ngx = Conf::new(workers).start();
    let (mut conns, cursor) = hold_two(&ngx);
    let t0 = Instant::now();
    let old = ngx.reload();
    let r0 = conns[0].0.recv(Duration::from_secs(3));
    assert_304_echo(&r0, &cursor, "reload, with cursor");
    let r1 = conns[1].0.recv(Duration::from_secs(3));
    assert_304_echo(&r1, &Cursor::default(), "reload, without cursor");
    eprintln!("reload: held listeners answered within {:?}", t0.elapsed());
    assert!(
        ngx.wait_workers_gone(&old, Duration::from_secs(5)),
        "old workers exit promptly"
    );

    // Reconnect with the echoed cursor: a message published meanwhile
    // (before the listener is back) is not missed.
    ngx.publish("hc", b"while away");
    let echoed = r0.cursor();
    let r = ngx.listener().recv_now(&listen_req("hc", &echoed));
    assert_eq!(r.body, b"while away");
    // And a new held listener in a new worker gets the next one.
    let mut l = ngx.listener();
    l.send(&listen_req("hc", &r.cursor()));
    ngx.wait_subscribers("hc", 1);
    assert_eq!(ngx.post("hc", b"next").status, 201);
    assert_eq!(l.recv(PROMPT).body, b"next");
    ngx.stop_and_check();
}

/// Idle keep-alive listener connections and held ones together do not make
/// quit hang.
fn quit_with_many_held(workers: usize) {
    let mut ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let mut conns: Vec<Conn> = (0..50).map(|_| ngx.listener()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(&Req::get(&chan_path(&format!("q{}", i % 5))));
    }
    for i in 0..5 {
        ngx.wait_subscribers(&format!("q{i}"), 10);
    }
    // Idle keep-alive connections (each has served one request).
    let _idle: Vec<Conn> = (0..10)
        .map(|_| {
            let mut c = ngx.listener();
            c.worker_pid();
            c
        })
        .collect();
    ngx.quit();
    for c in conns.iter_mut() {
        assert_eq!(c.recv(Duration::from_secs(5)).status, 304);
    }
    assert!(ngx.wait_exit(Duration::from_secs(5)));
    ngx.stop_and_check();
}

both_workers!(
    abort_while_held,
    abort_one_of_many,
    abort_racing_delivery,
    reload_keeps_messages,
    quit_answers_held,
    reload_answers_held,
    quit_with_many_held,
);

/// A worker killed while it holds listeners (a crash) leaves nothing behind:
/// its held count is released, so `first` lets a new listener wait instead
/// of answering 409 forever, and messages flow again.
#[test]
fn crashed_worker_is_forgotten() {
    let ngx = Conf::new(2)
        .listener_extra("push_listener_concurrency first;")
        .start();
    let mut held = ngx.listener();
    let victim = held.worker_pid();
    held.send(&Req::get(&chan_path("crash")));
    ngx.wait_subscribers("crash", 1);
    assert!(send_signal(victim, SIGKILL));
    // The master starts a replacement; the store forgets the dead worker.
    // Its listener-only channel is freed with it (info: 404).
    wait_until(PROMPT, "the dead worker's listener is released", || {
        matches!(ngx.subscribers("crash"), None | Some(0))
    });
    let (mut l, _) = ngx.connection_not_in(ngx.listener_port, victim);
    l.send(&Req::get(&chan_path("crash")));
    ngx.wait_subscribers("crash", 1);
    assert_eq!(ngx.post("crash", b"after the crash").status, 201);
    assert_eq!(l.recv(PROMPT).body, b"after the crash");
    let crashes = ngx
        .bad_log_lines()
        .iter()
        .filter(|l| l.contains("exited on signal 9"))
        .count();
    assert_eq!(
        crashes,
        1,
        "exactly the one worker we killed: {:?}",
        ngx.bad_log_lines()
    );
    let reaped = format!("worker process {victim} is gone");
    assert!(
        ngx.error_log()
            .lines()
            .any(|l| l.contains("[notice]") && l.contains(&reaped)),
        "the release of the dead worker is logged: {}",
        ngx.error_log()
    );
    ngx.stop_without_check();
}
