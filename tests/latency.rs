//! Cross-worker delivery is event-driven: the time from a POST handled by
//! one worker to the answer of a listener held in another is measured over
//! 100 tries. A relay that polled on a timer would show its period here.
//!
//! `cargo test --test latency -- --nocapture` prints the figures.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn cross_worker_delivery_is_prompt() {
    let ngx = Conf::new(4)
        .listener_extra("push_listener_concurrency broadcast;")
        .start();
    let mut sender = ngx.sender();
    let sender_pid = sender.worker_pid();
    let (mut listener, listener_pid) = ngx.connection_not_in(ngx.listener_port, sender_pid);
    assert_ne!(
        listener_pid, sender_pid,
        "listener and sender in different workers"
    );
    let mut cursor = Cursor::default();
    let mut samples = Vec::new();
    for i in 0..100 {
        listener.send(&listen_req("lat", &cursor));
        ngx.wait_subscribers("lat", 1);
        let body = format!("m{i}");
        let t0 = Instant::now();
        let p = sender.request(&Req::post(&chan_path("lat"), body.as_bytes()));
        let m = listener.recv(PROMPT);
        let dt = t0.elapsed();
        assert_eq!(p.status, 201, "try {i}: the listener was held");
        assert_eq!(
            p.worker(),
            Some(sender_pid),
            "try {i}: POST handled by the sender's worker"
        );
        assert_eq!(m.body, body.as_bytes(), "try {i}");
        assert_eq!(
            m.worker(),
            Some(listener_pid),
            "try {i}: answered by the listener's worker"
        );
        cursor = m.cursor();
        samples.push(dt);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    println!(
        "POST -> delivery in another worker, 100 tries: median {:.3} ms, p90 {:.3} ms, max {:.3} ms",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    // Includes the POST's own round trip; a timer-driven relay would sit
    // at tens or hundreds of milliseconds.
    assert!(median < Duration::from_millis(20), "median {median:?}");
    ngx.stop_and_check();
}
