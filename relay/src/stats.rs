//! The stats of `push_stats`: a snapshot of the counters and gauges of the
//! whole server, and its two renderings, Prometheus's text format (0.0.4)
//! and one JSON object.

use crate::proto::text::push_u64;
use crate::transport::Transport;

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

    pub fn name(self) -> &'static str {
        match self {
            Rejected::ZoneFull => "zone_full",
            Rejected::BadMessage => "bad_message",
            Rejected::TooLarge => "too_large",
            Rejected::RedisUnavailable => "redis_unavailable",
        }
    }
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
    Transport::ALL.iter().map(|t| t.name()).zip(v.iter().copied()).collect()
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
        one("channels", Kind::Gauge, "Channels in the zone now.", s.channels),
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
