//! The soak (not in CI): `scripts/soak.sh` builds the release module and
//! runs this test against it for 10 minutes (`--duration`): followers of
//! every transport that must miss nothing, publishers, bursts of aborted
//! listeners, and `nginx -s reload` every 30 s; worker RSS and zone use at
//! the start, every minute and at the end. It fails (the script exits
//! non-zero) if a message answered 201/202 did not reach a follower, or if
//! error.log has an alert.
//!
//! By hand: `PUSH_NGINX_BIN=... PUSH_MODULE_SO=... PUSH_SOAK_SECS=600
//! cargo test --test soak -- --ignored --nocapture`.

#[macro_use]
mod common;

use common::load::*;
use common::metrics::{rss_kb, Metrics};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn line(t0: Instant, ngx: &Nginx, m: &Metrics, deliveries: usize, reloads: usize, aborts: usize) {
    let rss = ngx.workers_rss_kb();
    eprintln!(
        "[soak {:>4}s] workers RSS KiB {:?} (sum {}, max {}); master RSS {} KiB; {}; deliveries {deliveries}; reloads {reloads}; aborted listeners {aborts}",
        t0.elapsed().as_secs(),
        rss.values().collect::<Vec<_>>(),
        rss.values().sum::<u64>(),
        rss.values().max().copied().unwrap_or(0),
        rss_kb(ngx.master_pid()).unwrap_or(0),
        m.summary(),
    );
}

#[test]
#[ignore = "the soak: scripts/soak.sh (10 minutes on the release build)"]
fn soak() {
    let duration = env_secs("PUSH_SOAK_SECS", 600);
    let reload_every = env_secs("PUSH_SOAK_RELOAD_SECS", 30);
    let per_transport = 50;
    let ngx = Conf::new(4)
        .for_followers()
        .with_stats()
        .worker_connections(8192)
        .log_level("notice")
        .http("push_buffer_size 64m; push_message_buffer_length 200;")
        .start();
    eprintln!(
        "[soak] nginx {} module {} prefix {}; {}s, a reload every {}s",
        nginx_bin().display(),
        module_so().display(),
        ngx.prefix().display(),
        duration.as_secs(),
        reload_every.as_secs()
    );
    let t0 = Instant::now();
    let deadline = t0 + duration + Duration::from_secs(180);
    let channels: Vec<String> = (0..20).map(|i| format!("soak{i}")).collect();
    let mut progress = Vec::new();
    let mut handles = Vec::new();
    let mut held: BTreeMap<String, u64> = channels.iter().map(|c| (c.clone(), 0)).collect();
    for (i, t) in Transport::ALL
        .iter()
        .flat_map(|t| std::iter::repeat_n(*t, per_transport))
        .enumerate()
    {
        let ch = &channels[i % channels.len()];
        let mut f = Follow::new(ngx.listener_port, ch, t, deadline);
        f.poll_interval = Duration::from_millis(200);
        if t.is_held() {
            *held.get_mut(ch).unwrap() += 1;
        }
        let (st, h) = follow(f);
        progress.push(st);
        handles.push(h);
    }
    wait_held(&ngx, &held, Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let pubs: Vec<_> = (0..4)
        .map(|id| {
            let mut p = Publish::new(ngx.sender_port, id, &channels, 0, deadline);
            p.count = None;
            p.stop = stop.clone();
            p.pace = Duration::from_millis(50);
            p.pad = 100;
            publish(p)
        })
        .collect();
    let deliveries = || -> usize {
        progress
            .iter()
            .map(|p| p.received.load(Ordering::Relaxed))
            .sum()
    };
    let first = ngx.scrape();
    line(t0, &ngx, &first, 0, 0, 0);
    let mix = [
        Transport::LongPoll,
        Transport::EventSource,
        Transport::WebSocket,
        Transport::IntervalPoll,
    ];
    let mut reloads = 0;
    let mut aborts = 0;
    // Reloads half a period off the minute marks: a report is never taken
    // in the second after a reload, when the new workers' gauges are not
    // written yet (they write them every second).
    let mut next_reload = t0 + reload_every / 2;
    let mut next_report = t0 + Duration::from_secs(60);
    let mut next_abort = t0 + Duration::from_secs(5);
    let mut n = 0u64;
    while t0.elapsed() < duration {
        let now = Instant::now();
        if now >= next_reload {
            let old = ngx.reload();
            assert!(
                ngx.wait_workers_gone(&old, Duration::from_secs(30)),
                "old workers exit after reload {reloads}"
            );
            reloads += 1;
            next_reload += reload_every;
        }
        if now >= next_abort {
            // 200 listeners on the followers' channels and on new ones,
            // reset after a moment (held or not yet: both happen).
            let conns: Vec<Conn> = (0..200)
                .filter_map(|i| {
                    n += 1;
                    let ch = if i % 2 == 0 {
                        channels[i % channels.len()].clone()
                    } else {
                        format!("gone{n}")
                    };
                    let mut c = Conn::try_open(ngx.listener_port).ok()?;
                    c.write_bytes(&raw_listener_request(mix[i % mix.len()], &ch))
                        .ok()?;
                    Some(c)
                })
                .collect();
            // Pacing of the load generator: let most of them be held.
            std::thread::sleep(Duration::from_millis(200));
            aborts += conns.len();
            for c in conns {
                c.abort();
            }
            next_abort += Duration::from_secs(5);
        }
        if now >= next_report {
            line(t0, &ngx, &ngx.scrape(), deliveries(), reloads, aborts);
            next_report += Duration::from_secs(60);
        }
        // The orchestrator's tick.
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let pubs: Vec<PubReport> = pubs.into_iter().map(|p| p.join().unwrap()).collect();
    let pubs = PubReport::merge(&pubs);
    // The counts are the truth once everyone caught up.
    wait_held(&ngx, &held, Duration::from_secs(60));
    publish_end(&ngx, &channels, PROMPT);
    let followers: Vec<FollowerReport> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let last = ngx.scrape_until(Duration::from_secs(30), "no listener left", |m| {
        m.listeners_total() == 0
    });
    line(t0, &ngx, &last, deliveries(), reloads, aborts);
    // Messages lost: accepted ones a follower never got.
    let mut lost = 0;
    let mut problems = Vec::new();
    for f in &followers {
        let seen: BTreeSet<&str> = f.got.iter().map(|(_, t)| t.as_str()).collect();
        lost += pubs
            .accepted
            .get(&f.channel)
            .map(|a| a.iter().filter(|t| !seen.contains(t.as_str())).count())
            .unwrap_or(0);
    }
    let mut by_channel: BTreeMap<&str, Vec<&FollowerReport>> = BTreeMap::new();
    for f in &followers {
        by_channel.entry(&f.channel).or_default().push(f);
    }
    let empty = Vec::new();
    for (ch, fs) in &by_channel {
        problems.extend(check_channel(
            ch,
            fs,
            pubs.accepted.get(*ch).unwrap_or(&empty),
            pubs.unknown.get(*ch).unwrap_or(&empty),
        ));
    }
    let alerts: Vec<String> = ngx
        .error_log()
        .lines()
        .filter(|l| l.contains("[alert]") || l.contains("[emerg]") || l.contains("open socket"))
        .map(str::to_string)
        .collect();
    let t = tally(&followers);
    eprintln!(
        "[soak] done in {:?}: published {} accepted ({:?}), {} unanswered (of which delivered {}), max publish latency {:?}; \
         {} followers {:?}: {} deliveries, {} reconnects, {} 304s, {} timeouts; {reloads} reloads; {aborts} aborted listeners",
        t0.elapsed(),
        pubs.accepted_total(),
        pubs.statuses,
        pubs.unknown_total(),
        unanswered_delivered(&followers, &pubs),
        pubs.max_latency,
        t.followers,
        t.by_transport,
        t.deliveries,
        t.reconnects,
        t.not_modified,
        t.timeouts,
    );
    eprintln!(
        "[soak] zone_bytes_used start {} end {}; channels start {} end {}",
        first.zone_used(),
        last.zone_used(),
        first.channels(),
        last.channels()
    );
    eprintln!("[soak] messages lost: {lost}");
    eprintln!("[soak] problems: {}", problems.len());
    for p in problems.iter().take(20) {
        eprintln!("  {p}");
    }
    eprintln!("[soak] alert lines: {}", alerts.len());
    for a in alerts.iter().take(20) {
        eprintln!("  {a}");
    }
    assert!(pubs.failure.is_none(), "{:?}", pubs.failure);
    assert_eq!(lost, 0, "messages lost");
    assert!(problems.is_empty(), "delivery problems");
    assert!(alerts.is_empty(), "alert lines in error.log");
    ngx.stop_and_check();
}
