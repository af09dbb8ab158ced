//! What the fault tests measure: `push_stats` scrapes (the zone's gauges
//! and counters, all workers together) and each worker's resident memory
//! (`/proc/<pid>/status`, `VmRSS`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{poll_until, Conf, Nginx, Req, PROMPT};

/// Where `Conf::with_stats` puts `push_stats` (in the sender server).
pub const STATS_PATH: &str = "/_stats";

/// One scrape: every sample by `name{labels}` as the text writes it.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: HashMap<String, f64>,
}

pub const TRANSPORTS: [&str; 4] = ["long-poll", "interval-poll", "eventsource", "websocket"];

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse::<f64>().ok()?))
            })
            .collect();
        Metrics {
            text: text.to_string(),
            samples,
        }
    }
    pub fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{}", self.text))
    }
    /// `nginx_push_<name>`.
    pub fn one(&self, name: &str) -> f64 {
        self.get(&format!("nginx_push_{name}"))
    }
    /// `nginx_push_<name>{<label>="<value>"}`.
    pub fn of(&self, name: &str, label: &str, value: &str) -> f64 {
        self.get(&format!("nginx_push_{name}{{{label}=\"{value}\"}}"))
    }
    /// Held listeners of one transport.
    pub fn listeners(&self, transport: &str) -> u64 {
        self.of("listeners", "transport", transport) as u64
    }
    /// Held listeners of every transport.
    pub fn listeners_total(&self) -> u64 {
        TRANSPORTS.iter().map(|t| self.listeners(t)).sum()
    }
    pub fn channels(&self) -> u64 {
        self.one("channels") as u64
    }
    pub fn zone_used(&self) -> u64 {
        self.one("zone_bytes_used") as u64
    }
    /// A one-line summary for logs and reports.
    pub fn summary(&self) -> String {
        format!(
            "zone_bytes_used={} channels={} listeners{{lp={},ip={},es={},ws={}}} stored={} published={}",
            self.zone_used(),
            self.channels(),
            self.listeners("long-poll"),
            self.listeners("interval-poll"),
            self.listeners("eventsource"),
            self.listeners("websocket"),
            self.one("messages_stored"),
            self.one("messages_published_total"),
        )
    }
}

impl Conf {
    /// Adds `location = /_stats { push_stats; }` to the sender server.
    pub fn with_stats(self) -> Conf {
        self.sender_server(&format!("location = {STATS_PATH} {{ push_stats; }}"))
    }
}

impl Nginx {
    /// One scrape of `STATS_PATH` (the configuration needs `with_stats`).
    pub fn scrape(&self) -> Metrics {
        let r = self.sender().recv_now(&Req::get(STATS_PATH));
        assert_eq!(
            r.status,
            200,
            "push_stats answered {}: {}",
            r.status,
            r.text()
        );
        Metrics::parse(&r.text())
    }

    /// Scrapes until `cond` holds (the gauges of other workers are at most a
    /// sweep, one second, old), within `timeout`; the last scrape.
    pub fn scrape_until(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&Metrics) -> bool,
    ) -> Metrics {
        let mut last = None;
        let ok = poll_until(timeout, || {
            let m = self.scrape();
            let done = cond(&m);
            last = Some(m);
            if !done {
                // A scrape walks the channel table under the zone lock:
                // do not spin on it.
                std::thread::sleep(Duration::from_millis(50));
            }
            done
        });
        let m = last.expect("at least one scrape");
        assert!(
            ok,
            "timed out waiting for {what}; last scrape: {}",
            m.summary()
        );
        m
    }

    /// `scrape_until` with the usual patience.
    pub fn scrape_until_prompt(&self, what: &str, cond: impl FnMut(&Metrics) -> bool) -> Metrics {
        self.scrape_until(PROMPT, what, cond)
    }

    /// VmRSS (KiB) of every worker that is not shutting down.
    pub fn workers_rss_kb(&self) -> BTreeMap<i32, u64> {
        self.live_worker_pids()
            .into_iter()
            .filter_map(|p| Some((p, rss_kb(p)?)))
            .collect()
    }
}

/// `VmRSS` of process `pid` in KiB (None once it is gone).
pub fn rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}
