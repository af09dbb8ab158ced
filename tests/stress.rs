//! Bounded load tests against missed messages across workers: concurrent
//! publishers in several workers, walkers following the cursor in other
//! workers, many channels at once, and a reload in the middle of traffic.
//! Every walker must see every message, in the channel's order, once.

#[macro_use]
mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `req` on `conn`, reopening the connection when the server closed
/// it before answering (idle keep-alive closed by an exiting worker: the
/// request was not processed, so a retry is safe). Reopens after an answer
/// that says `Connection: close`.
fn request_retry(conn: &mut Conn, req: &Req, timeout: Duration) -> Response {
    for _ in 0..10 {
        match conn.try_request(req, timeout) {
            Ok(r) => {
                if !r.is_keep_alive() {
                    *conn = Conn::open(conn.port);
                }
                return r;
            }
            Err(RecvError::Closed { partial }) if partial.is_empty() => {
                *conn = Conn::open(conn.port);
            }
            Err(RecvError::Io(_)) => *conn = Conn::open(conn.port),
            Err(e) => panic!("{} {}: {e}", req.method, req.path),
        }
    }
    panic!("{} {}: connection kept closing", req.method, req.path);
}

/// Follows channel `ch` with the cursor until `total` messages were seen.
fn walker(mut conn: Conn, ch: String, total: usize, end: Instant) -> Vec<Vec<u8>> {
    let mut cursor = Cursor::default();
    let mut got = Vec::new();
    while got.len() < total {
        assert!(
            Instant::now() < end,
            "walker on {ch}: only {} of {total} before the deadline",
            got.len()
        );
        let req = listen_req(&ch, &cursor);
        let r = match conn.try_request(&req, Duration::from_secs(20)) {
            Ok(r) => {
                if !r.is_keep_alive() {
                    conn = Conn::open(conn.port);
                }
                r
            }
            Err(RecvError::Timeout) => panic!(
                "walker on {ch} held 20 s after {} of {total} messages, cursor {cursor:?}, last {:?}: a missed wake-up or a skipped message",
                got.len(),
                got.last().map(|b: &Vec<u8>| String::from_utf8_lossy(b).into_owned())
            ),
            Err(_) => {
                conn = Conn::open(conn.port);
                continue;
            }
        };
        match r.status {
            200 => {
                if cursor.etag.is_some() {
                    let prev = (
                        http_date(cursor.last_modified.as_deref().unwrap()).unwrap(),
                        cursor.tag().unwrap(),
                    );
                    let next = position(&r);
                    let ok = if next.0 == prev.0 {
                        next.1 == prev.1 + 1
                    } else {
                        next.0 > prev.0 && next.1 == 0
                    };
                    assert!(
                        ok,
                        "walker on {ch}, worker {:?}: asked after {prev:?}, got {next:?} ({:?}) after {} messages: not the next message",
                        r.worker(),
                        r.text(),
                        got.len()
                    );
                }
                cursor = r.cursor();
                got.push(r.body);
            }
            304 => {
                // Shutdown of this worker: cursor echoed, ask again.
                assert_eq!(r.header("Last-Modified"), cursor.last_modified.as_deref());
            }
            s => panic!("walker on {ch}: status {s} {:?}", r.text()),
        }
    }
    got
}

fn publisher(port: u16, ch: String, tag: usize, n: usize, sent: Arc<AtomicUsize>) {
    let mut conn = Conn::open(port);
    for i in 0..n {
        let body = format!("p{tag}-{i}");
        let req = Req::post(&chan_path(&ch), body.as_bytes()).header("Content-Type", "text/plain");
        let r = request_retry(&mut conn, &req, PROMPT);
        assert!(
            r.status == 201 || r.status == 202,
            "publish {body}: {}",
            r.status
        );
        sent.fetch_add(1, Ordering::SeqCst);
    }
}

/// Two publishers (in different workers when there are several) and four
/// walkers (in distinct workers) on one channel. Optionally reloads nginx
/// halfway through.
fn publish_and_walk(workers: usize, reload: bool) {
    let ngx = Conf::new(workers)
        .http("push_message_buffer_length 1000; push_listener_concurrency broadcast;")
        .start();
    let per_pub = 150;
    let total = 2 * per_pub;
    let end = Instant::now() + Duration::from_secs(90);
    let walkers: Vec<_> = ngx
        .spread_connections(ngx.listener_port, 4)
        .into_iter()
        .map(|(c, _)| std::thread::spawn(move || walker(c, "s".into(), total, end)))
        .collect();
    let sent = Arc::new(AtomicUsize::new(0));
    let pubs: Vec<_> = (0..2)
        .map(|t| {
            let (port, sent) = (ngx.sender_port, sent.clone());
            std::thread::spawn(move || publisher(port, "s".into(), t, per_pub, sent))
        })
        .collect();
    if reload {
        wait_until(Duration::from_secs(60), "half published", || {
            sent.load(Ordering::SeqCst) >= total / 2
        });
        let old = ngx.reload();
        assert!(
            ngx.wait_workers_gone(&old, Duration::from_secs(10)),
            "old workers exit"
        );
    }
    for p in pubs {
        p.join().expect("publisher");
    }
    let seqs: Vec<Vec<Vec<u8>>> = walkers
        .into_iter()
        .map(|w| w.join().expect("walker"))
        .collect();
    for (w, seq) in seqs.iter().enumerate() {
        assert_eq!(seq.len(), total, "walker {w}");
        assert_eq!(seq, &seqs[0], "walker {w} saw another order than walker 0");
        for t in 0..2 {
            let mine: Vec<String> = seq
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .filter(|s| s.starts_with(&format!("p{t}-")))
                .collect();
            let want: Vec<String> = (0..per_pub).map(|i| format!("p{t}-{i}")).collect();
            assert_eq!(
                mine, want,
                "walker {w}: publisher {t}'s messages, each once, in order"
            );
        }
    }
    ngx.stop_and_check();
}

fn concurrent_publish_walk(workers: usize) {
    publish_and_walk(workers, false);
}

fn reload_during_traffic(workers: usize) {
    publish_and_walk(workers, true);
}

/// 200 channels, one held listener each, spread over the workers; one
/// burst of publishes reaches every one of them.
fn many_channels_burst(workers: usize) {
    let ngx = Conf::new(workers).start();
    let n = 200;
    let mut conns: Vec<(Conn, i32)> = ngx.spread_connections(ngx.listener_port, workers);
    while conns.len() < n {
        let mut c = ngx.listener();
        let pid = c.worker_pid();
        conns.push((c, pid));
    }
    for (i, (c, _)) in conns.iter_mut().enumerate() {
        c.send(&Req::get(&chan_path(&format!("mc{i}"))));
    }
    for i in 0..n {
        ngx.wait_subscribers(&format!("mc{i}"), 1);
    }
    let mut s = ngx.sender();
    for i in 0..n {
        let r = s.request(&Req::post(
            &chan_path(&format!("mc{i}")),
            format!("to {i}").as_bytes(),
        ));
        assert_eq!(r.status, 201, "channel mc{i}");
    }
    for (i, (c, pid)) in conns.iter_mut().enumerate() {
        let r = c.recv(PROMPT);
        assert_eq!(r.status, 200, "listener {i}");
        assert_eq!(r.text(), format!("to {i}"));
        assert_eq!(r.worker(), Some(*pid));
    }
    ngx.stop_and_check();
}

/// Held listeners with a cursor, then two messages published at the same
/// moment (from two workers, and pipelined on one connection): each
/// listener must be answered with the first message after its cursor, not
/// the newest. 40 rounds.
fn burst_to_held(workers: usize) {
    let ngx = Conf::new(workers)
        .http("push_listener_concurrency broadcast;")
        .start();
    let mut ls = ngx.spread_connections(ngx.listener_port, workers.max(2));
    let mut ss = ngx.spread_connections(ngx.sender_port, workers.clamp(1, 2));
    if ss.len() < 2 {
        let c = ngx.sender();
        ss.push((c, 0));
    }
    ngx.publish("bh", b"start");
    let mut cursor = ngx
        .listener()
        .recv_now(&Req::get(&chan_path("bh")))
        .cursor();
    for round in 0..40 {
        for (l, _) in ls.iter_mut() {
            l.send(&listen_req("bh", &cursor));
        }
        ngx.wait_subscribers("bh", ls.len() as u64);
        let a = format!("r{round}-a");
        let b = format!("r{round}-b");
        if round % 2 == 0 {
            // two workers at once
            ss[0].0.send(&Req::post(&chan_path("bh"), a.as_bytes()));
            ss[1].0.send(&Req::post(&chan_path("bh"), b.as_bytes()));
            let ra = ss[0].0.recv(PROMPT);
            let rb = ss[1].0.recv(PROMPT);
            assert!(ra.status == 201 || ra.status == 202);
            assert!(rb.status == 201 || rb.status == 202);
        } else {
            // pipelined on one connection
            ss[0].0.send(&Req::post(&chan_path("bh"), a.as_bytes()));
            ss[0].0.send(&Req::post(&chan_path("bh"), b.as_bytes()));
            ss[0].0.recv(PROMPT);
            ss[0].0.recv(PROMPT);
        }
        // The first message after the cursor, as an immediate answer says.
        let first = ngx.listener().recv_now(&listen_req("bh", &cursor));
        assert_eq!(first.status, 200);
        for (i, (l, pid)) in ls.iter_mut().enumerate() {
            let r = l.recv(PROMPT);
            assert_eq!(r.status, 200, "round {round}, listener {i}");
            assert_eq!(
                (r.text(), position(&r)),
                (first.text(), position(&first)),
                "round {round}: held listener {i} (worker {pid}) was not given the first message after its cursor"
            );
        }
        // Skip past both for the next round.
        let second = ngx.listener().recv_now(&listen_req("bh", &first.cursor()));
        cursor = second.cursor();
    }
    ngx.stop_and_check();
}

both_workers!(
    concurrent_publish_walk,
    reload_during_traffic,
    many_channels_burst,
    burst_to_held,
);
