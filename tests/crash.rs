//! A worker killed while it holds the zone's lock, at chosen points inside
//! the store's updates (the debug build's fault `crash=<point>@<file>`):
//! the next holder finds the holder mark, repairs and checks the store (the
//! fault `validate` also checks the slab and the whole store at every
//! unlock, an `alert` if anything is off), and the relay goes on: nothing
//! acknowledged is lost, every listener is served, counts are true. A
//! store damaged beyond what an interrupted update explains is rebuilt
//! empty, and the relay goes on from there.

#[macro_use]
mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

const INTERVAL: &str = "location /ip { set $push_id $arg_channel; push_listener interval-poll; }";
const SHORT: &str =
    "location /short { set $push_id $arg_channel; push_sender; push_message_timeout 1s; }";

/// Lines every such test leaves (the kill, and the recovery's report).
const EXPECTED: &[&str] = &[
    "exited on signal 9",
    "was locked by",
    "died holding the zone's lock",
];

struct Rig {
    ngx: Nginx,
    arm: PathBuf,
    _dir: TempDir,
}

fn rig(fault: &str) -> Rig {
    let dir = TempDir::new("arm");
    // nginx's workers (user `nobody` when the tests run as root) delete it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let arm = dir.path().join("arm");
    let ngx = Conf::new(4)
        .main(&format!(
            "env NGX_HTTP_PUSH_FAULTS={fault}@{},validate;",
            arm.display()
        ))
        .listener_extra("push_listener_concurrency broadcast;")
        .listener_server(INTERVAL)
        .sender_server(SHORT)
        .start();
    Rig {
        ngx,
        arm,
        _dir: dir,
    }
}

/// A listener following channel `c` with its cursor, reconnecting when
/// its worker is gone; what it received, in order.
struct Follower {
    conn: Conn,
    cursor: Cursor,
    got: Vec<String>,
}

impl Follower {
    /// Receive until `last` arrives; 304s and a dead worker's EOF make it
    /// listen again with its cursor.
    fn follow_until(&mut self, ngx: &Nginx, last: &str) {
        let end = std::time::Instant::now() + PROMPT * 2;
        while std::time::Instant::now() < end {
            match self.conn.try_recv(PROMPT) {
                Ok(r) if r.status == 200 => {
                    self.cursor = Cursor::of(&r);
                    let text = r.text();
                    self.got.push(text.clone());
                    self.conn.send(&listen_req("c", &self.cursor));
                    if text == last {
                        return;
                    }
                }
                Ok(r) if r.status == 304 => {
                    self.cursor = Cursor::of(&r);
                    self.conn.send(&listen_req("c", &self.cursor));
                }
                Ok(r) => panic!("listener got {} {}", r.status, r.text()),
                Err(_) => {
                    self.conn = ngx.listener();
                    self.conn.send(&listen_req("c", &self.cursor));
                }
            }
        }
        panic!("{last:?} never arrived; got {:?}", self.got);
    }
}

/// Until every follower is held again: take what arrived (a message, a
/// 304, its dead worker's EOF) and listen again with the cursor.
fn settle(ngx: &Nginx, fs: &mut [Follower]) {
    wait_until(PROMPT, "every listener held again", || {
        for f in fs.iter_mut() {
            if f.conn.is_answered_within(Duration::ZERO) {
                match f.conn.try_recv(PROMPT) {
                    Ok(r) => {
                        if r.status == 200 {
                            f.got.push(r.text());
                        }
                        f.cursor = Cursor::of(&r);
                    }
                    Err(_) => f.conn = ngx.listener(),
                }
                f.conn.send(&listen_req("c", &f.cursor));
            }
        }
        ngx.subscribers("c") == Some(4)
    });
}

/// One listener of `c` in each worker, all past message "m1".
fn followers(ngx: &Nginx) -> Vec<Follower> {
    let mut fs: Vec<Follower> = ngx
        .spread_connections(ngx.listener_port, 4)
        .into_iter()
        .map(|(conn, _)| Follower {
            conn,
            cursor: Cursor::default(),
            got: Vec::new(),
        })
        .collect();
    for f in &mut fs {
        f.conn.send(&listen_req("c", &f.cursor));
    }
    ngx.wait_subscribers("c", 4);
    assert_eq!(ngx.post("c", b"m1").status, 201);
    for f in &mut fs {
        f.follow_until(ngx, "m1");
    }
    ngx.wait_subscribers("c", 4);
    fs
}

/// Every message of `ch`, oldest first (interval-poll from no cursor).
fn walk(ngx: &Nginx, ch: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = Cursor::default();
    let mut conn = ngx.listener();
    loop {
        let mut req = Req::get(&format!("/ip?channel={}", pct(ch.as_bytes())));
        if let Some(lm) = &cursor.last_modified {
            req = req.header("If-Modified-Since", lm);
        }
        if let Some(e) = &cursor.etag {
            req = req.header("If-None-Match", e);
        }
        let r = conn.recv_now(&req);
        match r.status {
            200 => {
                cursor = Cursor::of(&r);
                out.push(r.text());
            }
            304 => return out,
            s => panic!("walking {ch}: {s}"),
        }
        assert!(out.len() < 100, "walk does not end");
    }
}

/// Arm the crash, run `trigger`, and wait until a worker died of it and
/// the master replaced it.
fn crash(rig: &Rig, trigger: impl FnOnce(&Nginx)) {
    let before = rig.ngx.live_worker_pids();
    std::fs::write(&rig.arm, b"").unwrap();
    trigger(&rig.ngx);
    wait_until(PROMPT, "the armed point was reached", || !rig.arm.exists());
    wait_until(PROMPT, "the killed worker was replaced", || {
        let now = rig.ngx.live_worker_pids();
        now.len() == 4 && now != before
    });
}

/// After the crash: the recovery ran and found the store sound, and the
/// relay serves every listener, with true counts and nothing acknowledged
/// lost; `acked` are the messages of `c` answered 201/202 meanwhile,
/// `maybe` one that may or may not have been stored.
fn relay_goes_on(rig: Rig, mut fs: Vec<Follower>, acked: &[&str], maybe: Option<&str>) {
    let ngx = &rig.ngx;
    // Any request takes the lock; the recovery runs in whoever is first.
    wait_until(PROMPT, "the recovery's report", || {
        let _ = ngx.info("c");
        ngx.error_log().contains("push: the zone is sound")
    });
    let log = ngx.error_log();
    // The recovery's report, for RELIABILITY.md (`--nocapture`).
    for l in log
        .lines()
        .filter(|l| l.contains("push: the zone is sound"))
    {
        eprintln!("{}", l.split("push: ").nth(1).unwrap_or(l));
    }
    assert!(log.contains("died holding the zone's lock"), "{log}");
    assert!(!log.contains("zone check failed"), "{log}");
    assert!(!log.contains("beyond repair"), "{log}");
    settle(ngx, &mut fs);
    assert_eq!(ngx.post("c", b"after").status, 201);
    for f in &mut fs {
        f.follow_until(ngx, "after");
        let mut want: Vec<String> = vec!["m1".into()];
        want.extend(acked.iter().map(|s| s.to_string()));
        let got: Vec<String> = f
            .got
            .iter()
            .filter(|m| Some(m.as_str()) != maybe)
            .cloned()
            .collect();
        want.push("after".into());
        assert_eq!(got, want, "in order, each once");
        let dup = f.got.iter().filter(|m| Some(m.as_str()) == maybe).count();
        assert!(dup <= 1, "{:?} twice", maybe);
    }
    ngx.wait_subscribers("c", 4);
    let walked: Vec<String> = walk(ngx, "c")
        .into_iter()
        .filter(|m| Some(m.as_str()) != maybe)
        .collect();
    let mut want = vec!["m1".to_string()];
    want.extend(acked.iter().map(|s| s.to_string()));
    want.push("after".into());
    assert_eq!(walked, want);
    rig.ngx.stop_and_check_allowing(EXPECTED);
}

/// The POST whose worker dies gets no answer.
fn post_dies(ngx: &Nginx, body: &[u8]) {
    let mut s = ngx.sender();
    assert!(
        s.try_request(&Req::post(&chan_path("c"), body), PROMPT)
            .is_err(),
        "the publishing worker died before answering"
    );
}

#[test]
fn killed_with_the_message_reserved() {
    let rig = rig("crash=publish:reserved");
    let fs = followers(&rig.ngx);
    crash(&rig, |ngx| post_dies(ngx, b"lost"));
    relay_goes_on(rig, fs, &[], Some("lost"));
}

#[test]
fn killed_with_the_message_stored_but_nobody_told() {
    let rig = rig("crash=publish:stored");
    let fs = followers(&rig.ngx);
    crash(&rig, |ngx| post_dies(ngx, b"unacked"));
    relay_goes_on(rig, fs, &[], Some("unacked"));
}

#[test]
fn killed_halfway_through_telling_the_workers() {
    let rig = rig("crash=publish:queued");
    let fs = followers(&rig.ngx);
    crash(&rig, |ngx| post_dies(ngx, b"half"));
    relay_goes_on(rig, fs, &[], Some("half"));
}

#[test]
fn killed_while_holding_a_new_listener() {
    let rig = rig("crash=listen:held");
    let fs = followers(&rig.ngx);
    let past_m1 = fs[0].cursor.clone();
    crash(&rig, |ngx| {
        let mut l = ngx.listener();
        l.send(&listen_req("c", &past_m1));
        assert!(l.try_recv(PROMPT).is_err(), "its worker died");
    });
    relay_goes_on(rig, fs, &[], None);
}

#[test]
fn killed_while_draining_its_inbox() {
    let rig = rig("crash=drain:taken");
    let fs = followers(&rig.ngx);
    crash(&rig, |ngx| assert_eq!(ngx.post("c", b"m2").status, 201));
    relay_goes_on(rig, fs, &["m2"], None);
}

#[test]
fn killed_while_the_sweep_frees_expired_messages() {
    let rig = rig("crash=sweep:expired");
    let fs = followers(&rig.ngx);
    crash(&rig, |ngx| {
        let r = ngx
            .sender()
            .request(&Req::post("/short?channel=e", b"brief"));
        assert_eq!(r.status, 202);
    });
    relay_goes_on(rig, fs, &[], None);
}

#[test]
fn killed_while_the_bucket_table_grows() {
    let rig = rig("crash=rehash:moving");
    let fs = followers(&rig.ngx);
    let mut acked = Vec::new();
    crash(&rig, |ngx| {
        for i in 0..80 {
            let ch = format!("r{i}");
            let mut s = ngx.sender();
            if let Ok(r) = s.try_request(&Req::post(&chan_path(&ch), b"x"), PROMPT) {
                assert_eq!(r.status, 202);
                acked.push(ch);
            }
        }
    });
    assert!(acked.len() >= 79, "one POST died with its worker");
    for ch in &acked {
        assert_eq!(rig.ngx.info(ch).status, 200, "{ch} kept through the growth");
    }
    relay_goes_on(rig, fs, &[], None);
}

#[test]
fn killed_inside_an_allocation() {
    let rig = rig("crash=alloc");
    let fs = followers(&rig.ngx);
    crash(&rig, |ngx| post_dies(ngx, b"alloc"));
    relay_goes_on(rig, fs, &[], Some("alloc"));
}

#[test]
fn killed_right_after_a_free() {
    let rig = rig("crash=free");
    let fs = followers(&rig.ngx);
    // Evictions free: channel `f` keeps 10, the 11th frees the first.
    crash(&rig, |ngx| {
        for i in 0..12 {
            let mut s = ngx.sender();
            let _ = s.try_request(
                &Req::post(&chan_path("f"), format!("{i}").as_bytes()),
                PROMPT,
            );
        }
    });
    relay_goes_on(rig, fs, &[], None);
}

/// Damage no interrupted update explains (a channel in the wrong bucket,
/// made by the fault `misfile`): the store is rebuilt empty; held
/// listeners end and are held again in the new store; the relay serves.
#[test]
fn a_store_damaged_beyond_repair_is_rebuilt() {
    let rig = rig("misfile");
    let mut fs = followers(&rig.ngx);
    // The next worker to take the lock (a request, or a sweep within a
    // second) damages the store and dies.
    crash(&rig, |_| {});
    let ngx = &rig.ngx;
    wait_until(PROMPT, "the rebuild's report", || {
        let _ = ngx.info("c");
        ngx.error_log().contains("damaged beyond repair")
    });
    assert!(ngx.error_log().contains("it was rebuilt empty"));
    // Every listener is held in the new store (the old one's end with 304
    // and come back with their cursor).
    settle(ngx, &mut fs);
    assert_eq!(ngx.post("c", b"fresh").status, 201);
    for f in &mut fs {
        f.follow_until(ngx, "fresh");
    }
    assert_eq!(walk(ngx, "c"), vec!["fresh".to_string()], "m1 was lost");
    assert!(!ngx.error_log().contains("zone check failed"));
    let mut expected = EXPECTED.to_vec();
    expected.push("beyond repair");
    rig.ngx.stop_and_check_allowing(&expected);
}
