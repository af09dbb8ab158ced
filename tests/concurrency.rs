//! push_listener_concurrency last | first | broadcast, with the listeners
//! proven (by /_pid and X-Worker) to sit in different workers.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;

fn distinct_pids(conns: &[(Conn, i32)]) -> usize {
    conns.iter().map(|(_, p)| *p).collect::<BTreeSet<_>>().len()
}

/// last (the default): a newer listener makes the older one answer 409 at
/// once, in whatever worker it sits; only the newest gets the message.
fn last_wins(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 3);
    if workers > 1 {
        assert_eq!(distinct_pids(&conns), 3);
    }
    let mut answered = Vec::new();
    for i in 0..3 {
        let (c, _) = &mut conns[i];
        c.send(&Req::get(&chan_path("l")));
        if i > 0 {
            let (prev, ppid) = &mut conns[i - 1];
            let r = prev.recv(PROMPT);
            assert_eq!(
                r.status,
                409,
                "older listener #{} gets 409 when #{i} arrives",
                i - 1
            );
            assert_eq!(
                r.worker(),
                Some(*ppid),
                "409 comes from the older listener's worker"
            );
            answered.push(r);
        }
        ngx.wait_subscribers("l", 1);
    }
    let (newest, npid) = &mut conns[2];
    assert!(!newest.is_answered_within(HELD_CHECK), "newest stays held");
    assert_eq!(ngx.post("l", b"to the newest").status, 201);
    let m = newest.recv(PROMPT);
    assert_eq!(m.status, 200);
    assert_eq!(m.body, b"to the newest");
    assert_eq!(m.worker(), Some(*npid));
    // The 409'd connections are usable again (keep-alive) and get the
    // stored message.
    let (c0, _) = &mut conns[0];
    let r = c0.recv_now(&Req::get(&chan_path("l")));
    assert_eq!(r.body, b"to the newest");
    ngx.stop_and_check();
}

/// first: the oldest keeps waiting; newer listeners get 409 at once.
fn first_wins(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency first;")
        .start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 3);
    conns[0].0.send(&Req::get(&chan_path("f")));
    ngx.wait_subscribers("f", 1);
    for (i, (c, pid)) in conns.iter_mut().enumerate().skip(1) {
        let r = c.recv_now(&Req::get(&chan_path("f")));
        assert_eq!(r.status, 409, "newer listener #{i} gets 409");
        assert_eq!(r.worker(), Some(*pid));
    }
    ngx.wait_subscribers("f", 1);
    let (oldest, opid) = &mut conns[0];
    assert!(!oldest.is_answered_within(HELD_CHECK), "oldest stays held");
    assert_eq!(ngx.post("f", b"to the oldest").status, 201);
    let m = oldest.recv(PROMPT);
    assert_eq!(m.status, 200);
    assert_eq!(m.body, b"to the oldest");
    assert_eq!(m.worker(), Some(*opid));
    ngx.stop_and_check();
}

/// broadcast: every held listener in every worker gets every message.
fn broadcast_all(workers: usize) {
    let ngx = Conf::new(workers)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let n = 6;
    let mut conns = ngx.spread_connections(ngx.listener_port, n);
    if workers > 1 {
        assert_eq!(distinct_pids(&conns), workers.min(n));
    }
    let mut cursors = vec![Cursor::default(); n];
    for round in 0..3 {
        for (i, (c, _)) in conns.iter_mut().enumerate() {
            c.send(&listen_req("b", &cursors[i]));
        }
        ngx.wait_subscribers("b", n as u64);
        let body = payload(500 + round, round as u8);
        let pr = ngx.post_typed("b", Some("application/x-round"), &body);
        assert_eq!(pr.status, 201);
        let mut first: Option<Response> = None;
        for (i, (c, pid)) in conns.iter_mut().enumerate() {
            let m = c.recv(PROMPT);
            assert_eq!(m.status, 200, "listener {i} round {round}");
            assert!(m.body == body, "listener {i} round {round}: body");
            assert_eq!(m.header("Content-Type"), Some("application/x-round"));
            assert_eq!(m.worker(), Some(*pid));
            if let Some(f) = &first {
                for h in ["Etag", "Last-Modified", "Content-Length"] {
                    assert_eq!(m.header(h), f.header(h), "{h} equal for all listeners");
                }
            }
            cursors[i] = m.cursor();
            first.get_or_insert(m);
        }
        ngx.wait_subscribers("b", 0);
    }
    ngx.stop_and_check();
}

/// Concurrency is per channel: two channels under `last` do not kick each
/// other's listeners.
fn last_is_per_channel(workers: usize) {
    let ngx = Conf::new(workers).start();
    let mut conns = ngx.spread_connections(ngx.listener_port, 2);
    conns[0].0.send(&Req::get(&chan_path("p1")));
    conns[1].0.send(&Req::get(&chan_path("p2")));
    ngx.wait_subscribers("p1", 1);
    ngx.wait_subscribers("p2", 1);
    assert!(!conns[0].0.is_answered_within(HELD_CHECK));
    assert_eq!(ngx.post("p1", b"one").status, 201);
    assert_eq!(ngx.post("p2", b"two").status, 201);
    assert_eq!(conns[0].0.recv(PROMPT).body, b"one");
    assert_eq!(conns[1].0.recv(PROMPT).body, b"two");
    ngx.stop_and_check();
}

both_workers!(last_wins, first_wins, broadcast_all, last_is_per_channel);
