//! The stats of `push_stats`: a snapshot of the counters and gauges of the
//! whole server, and its two renderings, Prometheus's text format (0.0.4)
//! and one JSON object.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::conf::Role;
use crate::outcome::Refusal;
use crate::proto::text::push_u64;
use crate::request::Method;
use crate::transport::Transport;
use crate::zone::{StoreStats, WorkerGauges, STATS_REDIS};

/// Why a publish was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    ZoneFull,
    BadMessage,
    TooLarge,
    RedisUnavailable,
}

impl Rejected {
    pub const ALL: [Rejected; 4] = [
        Rejected::ZoneFull,
        Rejected::BadMessage,
        Rejected::TooLarge,
        Rejected::RedisUnavailable,
    ];

    /// The reason a refused publish counts under, if it counts. nginx's
    /// own `413` (`client_max_body_size`) is counted at the log phase.
    pub fn of(refusal: &Refusal) -> Option<Rejected> {
        Some(match refusal {
            Refusal::ZoneFull(_) => Rejected::ZoneFull,
            Refusal::TooLarge => Rejected::TooLarge,
            Refusal::BadMessage(_) | Refusal::BadEventName => Rejected::BadMessage,
            Refusal::Unavailable | Refusal::MaybeStored => Rejected::RedisUnavailable,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Rejected::ZoneFull => "zone_full",
            Rejected::BadMessage => "bad_message",
            Rejected::TooLarge => "too_large",
            Rejected::RedisUnavailable => "redis_unavailable",
        }
    }
}

/// The counters every worker adds to, kept in the zone beside the store
/// and updated without its lock (relaxed atomics: each is a sum, read
/// whole only by `push_stats`). Workers add batches (a fan-out's
/// deliveries at once), so the hot path pays one add per batch.
#[derive(Default)]
pub struct Totals {
    published: AtomicU64,
    delivered: [AtomicU64; 4],
    rejected: [AtomicU64; 4],
    listener_requests: [AtomicU64; 4],
    wakeups: AtomicU64,
    redis_commands: [AtomicU64; STATS_REDIS],
    redis_reconnects: [AtomicU64; STATS_REDIS],
}

fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Relaxed);
    }
}

impl Totals {
    pub fn published(&self) {
        add(&self.published, 1);
    }

    pub fn delivered(&self, by_transport: &[u64; 4]) {
        for (c, n) in self.delivered.iter().zip(by_transport) {
            add(c, *n);
        }
    }

    pub fn rejected(&self, why: Rejected) {
        add(&self.rejected[why as usize], 1);
    }

    pub fn listener_request(&self, t: Transport) {
        add(&self.listener_requests[t as usize], 1);
    }

    pub fn wakeups(&self, n: u64) {
        add(&self.wakeups, n);
    }

    /// Commands sent to, and reconnections made to, Redis endpoint `ep`
    /// since this worker last reported.
    pub fn redis(&self, ep: usize, commands: u64, reconnects: u64) {
        if ep < STATS_REDIS {
            add(&self.redis_commands[ep], commands);
            add(&self.redis_reconnects[ep], reconnects);
        }
    }

    fn load<const N: usize>(v: &[AtomicU64; N]) -> [u64; N] {
        core::array::from_fn(|i| v[i].load(Relaxed))
    }
}

/// Where a snapshot's zone and Redis figures come from.
pub struct Sources<'a, G> {
    pub store: StoreStats,
    /// Every live worker's gauges.
    pub gauges: G,
    /// `host:port` of each Redis endpoint, in endpoint order.
    pub redis: &'a [String],
    pub zone_used: u64,
    pub zone_size: u64,
}

impl Snapshot {
    /// The counters, the store's figures and the workers' gauges together.
    pub fn take<'a, G>(totals: &Totals, src: Sources<'_, G>) -> Snapshot
    where
        G: Iterator<Item = &'a WorkerGauges>,
    {
        let commands = Totals::load(&totals.redis_commands);
        let reconnects = Totals::load(&totals.redis_reconnects);
        let mut redis: Vec<RedisFigures> = src
            .redis
            .iter()
            .take(STATS_REDIS)
            .enumerate()
            .map(|(ep, name)| RedisFigures {
                name: name.clone(),
                up: true,
                commands: commands[ep],
                reconnects: reconnects[ep],
                pending: 0,
            })
            .collect();
        let mut listeners = [0u64; 4];
        for g in src.gauges {
            for (t, n) in listeners.iter_mut().zip(g.held) {
                *t += u64::from(n);
            }
            for (ep, r) in redis.iter_mut().enumerate() {
                r.up &= g.redis_up[ep];
                r.pending += u64::from(g.redis_pending[ep]);
            }
        }
        Snapshot {
            published: totals.published.load(Relaxed),
            delivered: Totals::load(&totals.delivered),
            stored: src.store.stored,
            expired: src.store.expired,
            evicted: src.store.evicted,
            rejected: Totals::load(&totals.rejected),
            channels: src.store.channels,
            listeners,
            listener_requests: Totals::load(&totals.listener_requests),
            zone_used: src.zone_used,
            zone_size: src.zone_size,
            wakeups: totals.wakeups.load(Relaxed),
            redis,
        }
    }
}

/// How `push_stats` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4",
            Format::Json => "application/json",
        }
    }

    pub fn render(self, s: &Snapshot) -> Vec<u8> {
        match self {
            Format::Prometheus => prometheus(s),
            Format::Json => json(s),
        }
    }
}

/// A `push_stats` request: `GET` or `HEAD`, JSON when `Accept` names it.
pub fn asked(method: Method, accept: Option<&[u8]>) -> Result<Format, Refusal> {
    if !matches!(method, Method::Get | Method::Head) {
        return Err(Refusal::NotAllowed(Role::Stats));
    }
    let json = accept.is_some_and(|a| a.to_ascii_lowercase().windows(4).any(|w| w == b"json"));
    Ok(if json {
        Format::Json
    } else {
        Format::Prometheus
    })
}

/// One Redis server's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisFigures {
    /// `host:port`.
    pub name: String,
    /// Every live worker is connected.
    pub up: bool,
    pub commands: u64,
    pub reconnects: u64,
    pub pending: u64,
}

/// Everything `push_stats` shows, for every worker together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub published: u64,
    /// By transport, `Transport::ALL` order.
    pub delivered: [u64; 4],
    pub stored: u64,
    pub expired: u64,
    pub evicted: u64,
    /// By reason, `Rejected::ALL` order.
    pub rejected: [u64; 4],
    pub channels: u64,
    pub listeners: [u64; 4],
    pub listener_requests: [u64; 4],
    pub zone_used: u64,
    pub zone_size: u64,
    pub wakeups: u64,
    pub redis: Vec<RedisFigures>,
}

enum Kind {
    Counter,
    Gauge,
}

/// One metric: name (without the prefix), kind, help, and its samples
/// (label value, number); a label name of `""` means none.
struct Metric<'a> {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    label: &'static str,
    samples: Vec<(&'a str, u64)>,
}

fn by_transport(v: &[u64; 4]) -> Vec<(&'static str, u64)> {
    Transport::ALL
        .iter()
        .map(|t| t.name())
        .zip(v.iter().copied())
        .collect()
}

fn metrics(s: &Snapshot) -> Vec<Metric<'_>> {
    let one = |name, kind, help, v| Metric {
        name,
        kind,
        help,
        label: "",
        samples: vec![("", v)],
    };
    let mut m = vec![
        one(
            "messages_published_total",
            Kind::Counter,
            "Messages published (answered 201 or 202).",
            s.published,
        ),
        Metric {
            name: "messages_delivered_total",
            kind: Kind::Counter,
            help: "Messages written to listeners, by transport.",
            label: "transport",
            samples: by_transport(&s.delivered),
        },
        one(
            "messages_stored",
            Kind::Gauge,
            "Messages stored in the zone now.",
            s.stored,
        ),
        one(
            "messages_expired_total",
            Kind::Counter,
            "Stored messages that expired (push_message_timeout).",
            s.expired,
        ),
        one(
            "messages_evicted_total",
            Kind::Counter,
            "Stored messages evicted by newer ones (push_message_buffer_length).",
            s.evicted,
        ),
        Metric {
            name: "publish_rejected_total",
            kind: Kind::Counter,
            help: "Publishes refused, by reason.",
            label: "reason",
            samples: Rejected::ALL
                .iter()
                .map(|r| r.name())
                .zip(s.rejected.iter().copied())
                .collect(),
        },
        one(
            "channels",
            Kind::Gauge,
            "Channels in the zone now.",
            s.channels,
        ),
        Metric {
            name: "listeners",
            kind: Kind::Gauge,
            help: "Listeners held now, by transport.",
            label: "transport",
            samples: by_transport(&s.listeners),
        },
        Metric {
            name: "listener_requests_total",
            kind: Kind::Counter,
            help: "Listener requests, by transport.",
            label: "transport",
            samples: by_transport(&s.listener_requests),
        },
        one(
            "zone_bytes_used",
            Kind::Gauge,
            "Bytes of the push_buffer_size zone in use.",
            s.zone_used,
        ),
        one(
            "zone_bytes_size",
            Kind::Gauge,
            "Size of the push_buffer_size zone.",
            s.zone_size,
        ),
        one(
            "worker_wakeups_total",
            Kind::Counter,
            "Wake-ups one worker sent another for its listeners.",
            s.wakeups,
        ),
    ];
    if !s.redis.is_empty() {
        let per = |name, kind, help, f: fn(&RedisFigures) -> u64| Metric {
            name,
            kind,
            help,
            label: "redis",
            samples: s.redis.iter().map(|r| (r.name.as_str(), f(r))).collect(),
        };
        m.push(per(
            "redis_up",
            Kind::Gauge,
            "1 when every worker is connected to this Redis.",
            |r| u64::from(r.up),
        ));
        m.push(per(
            "redis_commands_total",
            Kind::Counter,
            "Commands sent to this Redis.",
            |r| r.commands,
        ));
        m.push(per(
            "redis_reconnects_total",
            Kind::Counter,
            "Connections to this Redis made again after one was lost.",
            |r| r.reconnects,
        ));
        m.push(per(
            "redis_pending_commands",
            Kind::Gauge,
            "Commands sent to this Redis and not answered yet.",
            |r| r.pending,
        ));
    }
    m
}

const PREFIX: &str = "nginx_push_";

/// A label value, escaped as the text format wants.
fn push_label(out: &mut Vec<u8>, v: &str) {
    for c in v.bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            c => out.push(c),
        }
    }
}

/// Prometheus's text format, version 0.0.4.
pub fn prometheus(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    for m in metrics(s) {
        for (line, text) in [("# HELP ", m.help), ("# TYPE ", "")] {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(PREFIX.as_bytes());
            out.extend_from_slice(m.name.as_bytes());
            out.push(b' ');
            if line == "# TYPE " {
                out.extend_from_slice(match m.kind {
                    Kind::Counter => b"counter",
                    Kind::Gauge => b"gauge",
                });
            } else {
                out.extend_from_slice(text.as_bytes());
            }
            out.push(b'\n');
        }
        for (label, v) in &m.samples {
            out.extend_from_slice(PREFIX.as_bytes());
            out.extend_from_slice(m.name.as_bytes());
            if !m.label.is_empty() {
                out.push(b'{');
                out.extend_from_slice(m.label.as_bytes());
                out.extend_from_slice(b"=\"");
                push_label(&mut out, label);
                out.extend_from_slice(b"\"}");
            }
            out.push(b' ');
            push_u64(&mut out, *v);
            out.push(b'\n');
        }
    }
    out
}

fn push_json_str(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    for c in v.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// One JSON object: a number for each metric without labels, an object of
/// label value → number for the others.
pub fn json(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.push(b'{');
    for (i, m) in metrics(s).into_iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        push_json_str(&mut out, m.name);
        out.extend_from_slice(b": ");
        if m.label.is_empty() {
            push_u64(&mut out, m.samples[0].1);
            continue;
        }
        out.push(b'{');
        for (j, (label, v)) in m.samples.iter().enumerate() {
            if j > 0 {
                out.extend_from_slice(b", ");
            }
            push_json_str(&mut out, label);
            out.extend_from_slice(b": ");
            push_u64(&mut out, *v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            published: 3,
            delivered: [1, 0, 2, 0],
            rejected: [1, 0, 0, 0],
            redis: vec![RedisFigures {
                name: "127.0.0.1:6379".into(),
                up: true,
                commands: 9,
                reconnects: 1,
                pending: 0,
            }],
            ..Snapshot::default()
        }
    }

    #[test]
    fn prometheus_text_has_help_type_and_every_label() {
        let t = String::from_utf8(prometheus(&snapshot())).unwrap();
        assert!(t.contains("# TYPE nginx_push_messages_published_total counter\n"));
        assert!(t.contains("\nnginx_push_messages_published_total 3\n"));
        assert!(t.contains("nginx_push_messages_delivered_total{transport=\"eventsource\"} 2\n"));
        assert!(t.contains("nginx_push_publish_rejected_total{reason=\"redis_unavailable\"} 0\n"));
        assert!(t.contains("# TYPE nginx_push_listeners gauge\n"));
        assert!(t.contains("nginx_push_redis_up{redis=\"127.0.0.1:6379\"} 1\n"));
        // Every sample line belongs to a metric declared just before.
        let mut declared = "";
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(declared), "{line} under {declared}");
            }
        }
    }

    #[test]
    fn a_snapshot_sums_the_counters_and_every_workers_gauges() {
        let t = Totals::default();
        t.published();
        t.delivered(&[2, 0, 5, 0]);
        t.delivered(&[1, 0, 0, 0]);
        t.rejected(Rejected::of(&Refusal::MaybeStored).unwrap());
        t.listener_request(Transport::WebSocket);
        t.wakeups(3);
        t.redis(0, 10, 1);
        t.redis(STATS_REDIS, 10, 1); // beyond the reported ones: ignored
        let mut a = WorkerGauges {
            held: [1, 0, 2, 0],
            ..WorkerGauges::default()
        };
        a.redis_up[0] = true;
        a.redis_pending[0] = 4;
        let mut b = a;
        b.redis_up[0] = false;
        let names = ["127.0.0.1:6379".to_string()];
        let s = Snapshot::take(
            &t,
            Sources {
                store: StoreStats {
                    channels: 2,
                    stored: 3,
                    expired: 1,
                    evicted: 0,
                },
                gauges: [a, b].iter(),
                redis: &names,
                zone_used: 10,
                zone_size: 20,
            },
        );
        assert_eq!(s.published, 1);
        assert_eq!(s.delivered, [3, 0, 5, 0]);
        assert_eq!(s.rejected, [0, 0, 0, 1]);
        assert_eq!(s.listener_requests, [0, 0, 0, 1]);
        assert_eq!(s.listeners, [2, 0, 4, 0]);
        assert_eq!((s.channels, s.stored, s.expired, s.wakeups), (2, 3, 1, 3));
        let r = &s.redis[0];
        assert_eq!(
            (r.up, r.pending, r.commands, r.reconnects),
            (false, 8, 10, 1)
        );
        assert_eq!(Rejected::of(&Refusal::NotFound), None);
        assert_eq!(
            Rejected::of(&Refusal::BadEventName),
            Some(Rejected::BadMessage)
        );
    }

    #[test]
    fn get_or_head_and_json_when_accept_names_it() {
        assert_eq!(asked(Method::Get, None), Ok(Format::Prometheus));
        assert_eq!(
            asked(Method::Head, Some(b"text/plain")),
            Ok(Format::Prometheus)
        );
        assert_eq!(
            asked(Method::Get, Some(b"text/html, Application/JSON;q=0.9")),
            Ok(Format::Json)
        );
        assert_eq!(
            asked(Method::Post, None),
            Err(Refusal::NotAllowed(Role::Stats))
        );
        let reply = Refusal::NotAllowed(Role::Stats).reply();
        assert_eq!(
            (reply.status, reply.header),
            (405, Some(("Allow", "GET, HEAD")))
        );
    }

    #[test]
    fn no_redis_no_redis_metrics() {
        let t = String::from_utf8(prometheus(&Snapshot::default())).unwrap();
        assert!(!t.contains("redis_up"));
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn json_is_one_object() {
        let j = String::from_utf8(json(&snapshot())).unwrap();
        assert!(j.starts_with("{\"messages_published_total\": 3, "));
        assert!(j.contains("\"messages_delivered_total\": {\"long-poll\": 1, \"interval-poll\": 0, \"eventsource\": 2, \"websocket\": 0}"));
        assert!(j.contains("\"redis_up\": {\"127.0.0.1:6379\": 1}"));
        assert!(j.ends_with("}\n"));
        let mut esc = Vec::new();
        push_json_str(&mut esc, "a\"b\\\n");
        assert_eq!(esc, b"\"a\\\"b\\\\\\u000a\"");
    }
}
