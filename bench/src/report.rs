//! BENCHMARKS.md and the fan-out SVG, written by hand.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::workloads::{median, Metrics, Transport};

const LP: Transport = Transport::LongPoll;
use crate::{Opts, Results, Work};

/// Median of each figure over the successful repetitions, or the reason
/// why none succeeded.
pub enum Agg {
    Ok { m: Metrics, ok: usize, runs: usize },
    Failed(String),
    Missing,
}

pub fn aggregate(results: &Results, work: Work, who: &str) -> Agg {
    let Some(runs) = results.get(&(work, who.to_string())) else {
        return Agg::Missing;
    };
    let oks: Vec<&Metrics> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    if oks.is_empty() {
        return match runs.iter().find_map(|r| r.as_ref().err()) {
            Some(e) => Agg::Failed(e.clone()),
            None => Agg::Missing,
        };
    }
    let mut m = Metrics::new();
    for k in oks[0].keys() {
        let v: Vec<f64> = oks.iter().filter_map(|x| x.get(k).copied()).collect();
        m.insert(k, median(&v));
    }
    Agg::Ok {
        m,
        ok: oks.len(),
        runs: runs.len(),
    }
}

impl Agg {
    fn get(&self, k: &str) -> Option<f64> {
        match self {
            Agg::Ok { m, .. } => m.get(k).copied().filter(|v| v.is_finite()),
            _ => None,
        }
    }

    fn cell(&self, k: &str, dec: usize) -> String {
        match self {
            Agg::Ok { .. } => self.get(k).map_or("–".into(), |v| fmt(v, dec)),
            Agg::Failed(_) => "failed".into(),
            Agg::Missing => "not run".into(),
        }
    }

    fn note(&self) -> Option<String> {
        match self {
            Agg::Ok { ok, runs, .. } if ok < runs => {
                Some(format!("{ok} of {runs} repetitions succeeded"))
            }
            Agg::Failed(e) => Some(format!("failed: {}", short(e))),
            _ => None,
        }
    }
}

fn short(e: &str) -> String {
    let e = e.replace('|', "/").replace('\n', " ");
    if e.chars().count() > 400 {
        format!("{}…", e.chars().take(400).collect::<String>())
    } else {
        e
    }
}

fn fmt(v: f64, dec: usize) -> String {
    if v.abs() >= 1000.0 && dec == 0 {
        // Thousands separators keep big counts readable.
        let s = format!("{:.0}", v);
        let neg = s.starts_with('-');
        let digits: Vec<char> = s.trim_start_matches('-').chars().collect();
        let mut out = String::new();
        for (i, c) in digits.iter().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(*c);
        }
        return if neg { format!("-{out}") } else { out };
    }
    format!("{v:.dec$}")
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_default()
}

fn machine(o: &Opts) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or("?".into(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let nginx_v = sh(o.settings.nginx_bin.to_str().unwrap_or("nginx"), &["-V"]);
    let nginx_first = nginx_v.lines().next().unwrap_or("?").to_string();
    let nchan_v = sh(
        "dpkg-query",
        &["-W", "-f", "${Version}", "libnginx-mod-nchan"],
    );
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    format!(
        "- CPU: {model}, {nproc} cores (`nproc`), {mem} RAM\n\
         - OS: {os}, kernel {kernel}\n\
         - nginx: `{nginx_first}` (`{}`), nchan: Debian `libnginx-mod-nchan` {nchan_v}\n\
         - server CPU time: {}; client CPU time: getrusage\n",
        o.settings.nginx_bin.display(),
        crate::server::cpu_source()
    )
}

struct Row {
    key: &'static str,
    label: &'static str,
    dec: usize,
}

const fn row(key: &'static str, label: &'static str, dec: usize) -> Row {
    Row { key, label, dec }
}

const FANOUT_ROWS: &[Row] = &[
    row("delivered_per_round", "delivered per round (must be N)", 0),
    row("first_ms", "time to first (ms, median of rounds)", 2),
    row("p50_ms", "p50 delivery (ms)", 2),
    row("p99_ms", "p99 delivery (ms)", 2),
    row("all_ms", "time to all (ms, median of rounds)", 2),
    row("server_us_per_delivery", "server CPU per delivery (µs)", 2),
    row("client_us_per_delivery", "client CPU per delivery (µs)", 2),
];

const TP_ROWS: &[Row] = &[
    row("publishes_per_s", "publishes/s", 0),
    row("deliveries_per_s", "deliveries/s", 0),
    row("lat_p50_ms", "delivery latency p50 (ms)", 2),
    row("lat_p99_ms", "delivery latency p99 (ms)", 2),
    row("deliveries", "deliveries", 0),
    row("missing", "missing (must be 0)", 0),
    row("repeated", "repeated or out of order (must be 0)", 0),
    row("foreign", "from another channel (must be 0)", 0),
    row("server_us_per_delivery", "server CPU per delivery (µs)", 2),
    row("client_us_per_delivery", "client CPU per delivery (µs)", 2),
];

const IDLE_ROWS: &[Row] = &[
    row(
        "pss_bytes_per_listener",
        "Pss growth per held listener (bytes)",
        0,
    ),
    row(
        "rss_bytes_per_listener",
        "Rss growth per held listener (bytes)",
        0,
    ),
    row("pss_before_kib", "Pss before (KiB, master + workers)", 0),
    row("pss_after_kib", "Pss after (KiB)", 0),
];

fn table(out: &mut String, rows: &[Row], ours: &Agg, nchan: &Agg, extra: Option<(&str, &Agg)>) {
    match extra {
        Some((name, _)) => {
            let _ = writeln!(out, "| metric | ours | nchan | ours/nchan | {name} |");
            out.push_str("|---|---:|---:|---:|---:|\n");
        }
        None => {
            out.push_str("| metric | ours | nchan | ours/nchan |\n|---|---:|---:|---:|\n");
        }
    }
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} |",
            r.label,
            ours.cell(r.key, r.dec),
            nchan.cell(r.key, r.dec),
            ratio(ours.get(r.key), nchan.get(r.key))
        );
        if let Some((_, e)) = extra {
            let _ = write!(out, " {} |", e.cell(r.key, r.dec));
        }
        out.push('\n');
    }
    let mut notes = vec![("ours", ours), ("nchan", nchan)];
    if let Some(e) = extra {
        notes.push(e);
    }
    for (who, a) in notes {
        if let Some(n) = a.note() {
            let _ = writeln!(out, "\n{who}: {n}.");
        }
    }
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "–",
    }
}

pub fn markdown(o: &Opts, res: &Results, took: Duration) -> String {
    let mut s = String::new();
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let max_n = o.fanout.iter().copied().max().unwrap_or(0);
    let ceil = aggregate(res, Work::Ceiling, "floor");
    let ceil_us = ceil.get("server_us_per_response");
    let _ = writeln!(s, "# Benchmarks: ngx_http_push vs nchan\n");
    let _ = writeln!(
        s,
        "Generated by the benchmark program (`bench/`, run by `scripts/bench.sh`) on {date}, \
         in {:.0} s. Both relays run in `{}` with the same settings; every figure is the \
         median over {} repetition(s), run alternately (ours, nchan, ours, nchan, …), \
         each on a freshly started nginx. The machine is shared and noisy: the **ratios** \
         from one run are what count.\n",
        took.as_secs_f64(),
        o.settings.nginx_bin.display(),
        o.reps
    );
    let _ = writeln!(s, "## Machine\n\n{}", machine(o));

    // Summary against the targets of issue 4.
    let fo = aggregate(res, Work::Fanout(LP, max_n), "ours");
    let fn_ = aggregate(res, Work::Fanout(LP, max_n), "nchan");
    let tpo = aggregate(res, Work::Throughput(LP), "ours");
    let tpn = aggregate(res, Work::Throughput(LP), "nchan");
    let io = aggregate(res, Work::Idle(LP), "ours");
    let inc = aggregate(res, Work::Idle(LP), "nchan");
    let fl = aggregate(res, Work::Idle(LP), "floor");
    let r = |a: &Agg, b: &Agg, k: &str| match (a.get(k), b.get(k)) {
        (Some(x), Some(y)) if y != 0.0 => Some(x / y),
        _ => None,
    };
    let cpu_ratio = r(&fo, &fn_, "server_us_per_delivery");
    let ceil_mult = fo
        .get("server_us_per_delivery")
        .zip(ceil_us)
        .map(|(a, b)| a / b);
    let nchan_ceil_mult = fn_
        .get("server_us_per_delivery")
        .zip(ceil_us)
        .map(|(a, b)| a / b);
    let all_ratio = r(&fo, &fn_, "all_ms");
    let tp_ratio = r(&tpo, &tpn, "deliveries_per_s");
    let clean = |a: &Agg| {
        let v = ["missing", "repeated", "foreign"].map(|k| a.get(k));
        if v.iter().all(|x| x.is_some()) {
            Some(v.iter().all(|x| *x == Some(0.0)))
        } else {
            None
        }
    };
    let floor_b = fl.get("pss_bytes_per_listener");
    let ours_add = io
        .get("pss_bytes_per_listener")
        .zip(floor_b)
        .map(|(a, b)| a - b);
    let nchan_add = inc
        .get("pss_bytes_per_listener")
        .zip(floor_b)
        .map(|(a, b)| a - b);
    let f2 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    let f0 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    let _ = writeln!(s, "## Targets (issue 4)\n");
    s.push_str("| target | measured | goal | met |\n|---|---:|---:|---|\n");
    let _ = writeln!(
        s,
        "| fan-out N={max_n}: server CPU per delivery, ours/nchan | {} | ≤ 0.60 | {} |",
        f2(cpu_ratio),
        met(cpu_ratio.map(|v| v <= 0.6))
    );
    let _ = writeln!(
        s,
        "| fan-out N={max_n}: server CPU per delivery ÷ `return 200` ceiling | ours {} (nchan {}) | ≤ 1.30 | {} |",
        f2(ceil_mult),
        f2(nchan_ceil_mult),
        met(ceil_mult.map(|v| v <= 1.3))
    );
    let _ = writeln!(
        s,
        "| fan-out N={max_n}: time to all, ours/nchan | {} | ≤ 0.80 | {} |",
        f2(all_ratio),
        met(all_ratio.map(|v| v <= 0.8))
    );
    let _ = writeln!(
        s,
        "| throughput: deliveries/s, ours/nchan | {} | ≥ 1.30 | {} |",
        f2(tp_ratio),
        met(tp_ratio.map(|v| v >= 1.3))
    );
    let _ = writeln!(
        s,
        "| throughput: in order, none missing or repeated | ours {} (nchan {}) | all | {} |",
        met(clean(&tpo)),
        met(clean(&tpn)),
        met(clean(&tpo))
    );
    let _ = writeln!(
        s,
        "| idle: bytes per held listener above nginx's floor | ours {} (nchan {}) | ≤ 256 | {} |\n",
        f0(ours_add),
        f0(nchan_add),
        met(ours_add.map(|v| v <= 256.0))
    );

    let _ = writeln!(s, "## Fan-out\n");
    let _ = writeln!(
        s,
        "N held long-poll listeners on one channel, {} rounds of one POST each; after a \
         message every listener asks again with its cursor (`If-Modified-Since` = the \
         `Last-Modified` it got, `If-None-Match` = the `Etag`). A round ends when every \
         listener is held again (`stub_status` shows N requests in progress), so server CPU per delivery covers \
         one answer plus one re-poll request per listener — the same work as one \
         keep-alive `return 200` exchange. Times are from just before the POST is written \
         to the last byte of each listener's answer. Body {} bytes.\n",
        o.rounds, o.settings.body_size
    );
    for &n in &o.fanout {
        let a = aggregate(res, Work::Fanout(LP, n), "ours");
        let b = aggregate(res, Work::Fanout(LP, n), "nchan");
        let _ = writeln!(s, "### N = {n}\n");
        table(&mut s, FANOUT_ROWS, &a, &b, None);
        if let Some(c) = ceil_us {
            let _ = writeln!(
                s,
                "| server CPU per delivery ÷ ceiling | {} | {} | |",
                f2(a.get("server_us_per_delivery").map(|v| v / c)),
                f2(b.get("server_us_per_delivery").map(|v| v / c)),
            );
        }
        s.push('\n');
    }
    let svg_rel = o
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|p| o.svg.strip_prefix(p).ok())
        .unwrap_or(&o.svg)
        .display()
        .to_string();
    let _ = writeln!(s, "![fan-out: time to all against N]({svg_rel})\n");

    let _ = writeln!(s, "## Throughput\n");
    let _ = writeln!(
        s,
        "{} channels × {} listeners, {} publishers on keep-alive connections (each owns \
         a fixed set of channels, so a channel's order is its publisher's order), {} \
         messages. A publisher sends a channel's next message only while that channel is \
         fewer than 5 messages ahead of its slowest listener (below the buffer length of \
         10), so a lost message is the relay's fault, never an overrun by the client. \
         Every listener checks the sequence numbers in the bodies. Latency: from the \
         publisher's send to the listener's last byte.\n",
        o.tp_channels, o.tp_per_channel, o.tp_publishers, o.tp_messages
    );
    table(&mut s, TP_ROWS, &tpo, &tpn, None);
    s.push('\n');

    let _ = writeln!(s, "## Idle memory\n");
    let _ = writeln!(
        s,
        "{} held listeners over {} channels on a freshly started nginx; growth of the \
         summed `Pss` (`/proc/<pid>/smaps_rollup`) of master and workers, which counts the \
         shared-memory zone pages that were touched, divided by the number of listeners. \
         The floor is nginx itself holding requests (`echo_sleep 300;`, Debian's \
         `libnginx-mod-http-echo`); what a relay adds per listener is its figure minus the \
         floor.\n",
        o.idle, o.idle_channels
    );
    table(&mut s, IDLE_ROWS, &io, &inc, Some(("floor (echo)", &fl)));
    let _ = writeln!(
        s,
        "| added above the floor (bytes) | {} | {} | {} | |\n",
        f0(ours_add),
        f0(nchan_add),
        ratio(ours_add, nchan_add)
    );

    streams(&mut s, o, res);
    redis(&mut s, o, res);

    let _ = writeln!(s, "## Ceiling\n");
    let _ = writeln!(
        s,
        "The same nginx (floor instance) answering `return 200` with a {}-byte body on {} \
         keep-alive connections, in {} rounds: every connection sends one request at once, \
         the round ends when all are answered (a fan-out round without a relay).\n",
        o.settings.body_size, o.ceiling_conns, o.ceiling_per_conn
    );
    s.push_str("| metric | return 200 |\n|---|---:|\n");
    for (k, label, d) in [
        ("server_us_per_response", "server CPU per response (µs)", 2),
        ("client_us_per_response", "client CPU per response (µs)", 2),
        ("responses_per_s", "responses/s", 0),
        ("round_ms", "time for a round (ms, median)", 2),
    ] {
        let _ = writeln!(s, "| {label} | {} |", ceil.cell(k, d));
    }
    if let Some(n) = ceil.note() {
        let _ = writeln!(s, "\nreturn 200: {n}.");
    }
    s.push('\n');

    // The hand-written analysis (profiles, what each change bought) lives
    // beside the program and is carried into every report.
    if let Ok(analysis) = std::fs::read_to_string("bench/ANALYSIS.md") {
        s.push_str(analysis.trim_end());
        s.push_str("\n\n");
    }

    let _ = writeln!(s, "## Settings (identical for all instances)\n");
    let _ = writeln!(
        s,
        "```nginx\ndaemon off; master_process on; worker_processes 2; worker_rlimit_nofile {};",
        o.settings.nofile
    );
    s.push_str(
        "\
         events { worker_connections 20000; }\n\
         http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;\n\
         \x20      server { listen 127.0.0.1:<ephemeral> backlog=4096; … } }\n\
         # ours:  push_buffer_size 64M;\n\
         #        location /sub { set $push_id $arg_id; push_listener; push_listener_concurrency broadcast; }\n\
         #        location /stream { set $push_id $arg_id; push_listener long-poll eventsource websocket; push_listener_concurrency broadcast; }\n\
         #        location /pub { set $push_id $arg_id; push_sender; push_message_buffer_length 10; }\n\
         # nchan: nchan_max_reserved_memory 64M;\n\
         #        location /sub { nchan_subscriber longpoll; nchan_channel_id $arg_id; }\n\
         #        location /stream { nchan_subscriber longpoll eventsource websocket; nchan_channel_id $arg_id; }\n\
         #        location /pub { nchan_publisher; nchan_channel_id $arg_id; nchan_message_buffer_length 10; }\n\
         # floor: location /sub { echo_sleep 300; }\n\
         #        location /stream { default_type text/event-stream; echo \": hi\"; echo_flush; echo_sleep 300; }\n\
         # all:   location /ceiling { return 200 \"<body>\"; }  location /status { stub_status; }\n```\n\n",
    );
    let _ = writeln!(s, "## Reproduce\n");
    let _ = writeln!(
        s,
        "```sh\nscripts/bench.sh            # as root: installs nginx, nginx-dev, \
         libnginx-mod-nchan, libnginx-mod-http-echo if missing\n```\n\nThis run: `{}`\n",
        o.command
    );
    s
}

/// A transport's columns: ours, nchan and their ratio.
struct Group<'a> {
    label: &'a str,
    ours: Agg,
    nchan: Agg,
}

fn groups(res: &Results, o: &Opts, work: impl Fn(Transport) -> Work) -> Vec<Group<'static>> {
    o.transports
        .iter()
        .filter(|t| t.is_stream())
        .map(|&t| Group {
            label: t.name(),
            ours: aggregate(res, work(t), "ours"),
            nchan: aggregate(res, work(t), "nchan"),
        })
        .collect()
}

/// One table with an (ours, nchan, ours/nchan) triple of columns per
/// transport; `extra` rows are written as they are.
fn multi_table(out: &mut String, rows: &[Row], gs: &[Group], extra: &[String]) {
    out.push_str("| metric |");
    for g in gs {
        let _ = write!(out, " ours {0} | nchan {0} | ours/nchan |", g.label);
    }
    out.push_str("\n|---|");
    for _ in gs {
        out.push_str("---:|---:|---:|");
    }
    out.push('\n');
    for r in rows {
        let _ = write!(out, "| {} |", r.label);
        for g in gs {
            let _ = write!(
                out,
                " {} | {} | {} |",
                g.ours.cell(r.key, r.dec),
                g.nchan.cell(r.key, r.dec),
                ratio(g.ours.get(r.key), g.nchan.get(r.key))
            );
        }
        out.push('\n');
    }
    for e in extra {
        out.push_str(e);
        out.push('\n');
    }
    for g in gs {
        for (who, a) in [("ours", &g.ours), ("nchan", &g.nchan)] {
            if let Some(n) = a.note() {
                let _ = writeln!(out, "\n{who} {}: {n}.", g.label);
            }
        }
    }
}

/// A row of per-group values computed from each group's ours and nchan.
fn derived_row(
    label: &str,
    gs: &[Group],
    dec: usize,
    f: impl Fn(&Group) -> (Option<f64>, Option<f64>),
) -> String {
    let fd = |v: Option<f64>| v.map_or("–".into(), |v| fmt(v, dec));
    let mut s = format!("| {label} |");
    for g in gs {
        let (a, b) = f(g);
        let _ = write!(s, " {} | {} | {} |", fd(a), fd(b), ratio(a, b));
    }
    s
}

const STREAM_IDLE_ROWS: &[Row] = &[
    row(
        "pss_bytes_per_listener",
        "Pss growth per held stream (bytes)",
        0,
    ),
    row(
        "rss_bytes_per_listener",
        "Rss growth per held stream (bytes)",
        0,
    ),
    row("pss_before_kib", "Pss before (KiB, master + workers)", 0),
    row("pss_after_kib", "Pss after (KiB)", 0),
];

/// The stream sections (issue 8): targets, fan-out, throughput, idle.
fn streams(s: &mut String, o: &Opts, res: &Results) {
    if !o.transports.iter().any(|t| t.is_stream()) {
        return;
    }
    let max_n = o.fanout.iter().copied().max().unwrap_or(0);
    let lp_o = |n| aggregate(res, Work::Fanout(LP, n), "ours");
    let lp_n = |n| aggregate(res, Work::Fanout(LP, n), "nchan");
    let floor = aggregate(res, Work::Idle(LP), "floor");
    let sfloor = aggregate(res, Work::Idle(Transport::EventSource), "floor");
    let floor_b = floor.get("pss_bytes_per_listener");
    let sfloor_b = sfloor.get("pss_bytes_per_listener");
    let cpu = "server_us_per_delivery";
    let f2 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    let f0 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    };
    let sub = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let sc = aggregate(res, Work::StreamCeiling, "floor");
    let sc_us = sc.get(cpu);

    let _ = writeln!(s, "## Streams (issue 8): EventSource and WebSocket\n");
    let _ = writeln!(
        s,
        "The same workloads with streaming listeners on `/stream` (ours: \
         `push_listener long-poll eventsource websocket; push_listener_concurrency broadcast;`, \
         nchan: `nchan_subscriber longpoll eventsource websocket;`), in the same run and the \
         same nginx instances' settings as the long-poll ones, alternating ours and nchan \
         and interleaving the transports. `eventsource`: `Accept: text/event-stream`, \
         chunked HTTP/1.1, events parsed by the client; `websocket`: an RFC 6455 upgrade, \
         bare text frames; `ws-meta`: the same with the `ws+meta.nchan` subprotocol (each \
         frame carries `id:` and `content-type:` before the body). A stream is counted open \
         when its head (`200` / `101`) has arrived and `stub_status` shows it held. Every \
         message is checked: the exact body, once per stream, the same id on every stream \
         of a round and a new one each round (EventSource, `ws-meta`), text frames \
         (WebSocket). A stream fan-out round ends when every stream has the message and \
         every worker of the server sleeps again (state `S` in `/proc/<pid>/stat` on two \
         looks 1 ms apart), so server CPU per delivery covers all the work the message \
         caused: one write per stream, with no answer and no re-poll.\n"
    );

    // Targets.
    let _ = writeln!(s, "### Targets (issue 8)\n");
    s.push_str("| target | transport | measured | goal | met |\n|---|---|---:|---:|---|\n");
    let fo = groups(res, o, |t| Work::Fanout(t, max_n));
    let tp = groups(res, o, Work::Throughput);
    let idle = groups(res, o, Work::Idle);
    let lpo = lp_o(max_n).get(cpu);
    let lpn = lp_n(max_n).get(cpu);
    for g in &fo {
        let v = div(g.ours.get(cpu), lpo);
        let _ = writeln!(
            s,
            "| fan-out N={max_n}: server CPU per delivery, ours stream ÷ ours long-poll | {} | {} (nchan's own: {}) | ≤ 0.50 | {} |",
            g.label,
            f2(v),
            f2(div(g.nchan.get(cpu), lpn)),
            met(v.map(|v| v <= 0.5))
        );
    }
    for g in &fo {
        let v = div(g.ours.get(cpu), g.nchan.get(cpu));
        let _ = writeln!(
            s,
            "| fan-out N={max_n}: server CPU per delivery, ours/nchan | {} | {} | ≤ 0.80 | {} |",
            g.label,
            f2(v),
            met(v.map(|v| v <= 0.8))
        );
    }
    for g in &fo {
        let v = div(g.ours.get("all_ms"), g.nchan.get("all_ms"));
        let _ = writeln!(
            s,
            "| fan-out N={max_n}: time to all, ours/nchan | {} | {} | ≤ 0.80 | {} |",
            g.label,
            f2(v),
            met(v.map(|v| v <= 0.8))
        );
    }
    let clean = |a: &Agg| {
        let v = ["missing", "repeated", "foreign"].map(|k| a.get(k));
        if v.iter().all(|x| x.is_some()) {
            Some(v.iter().all(|x| *x == Some(0.0)))
        } else {
            None
        }
    };
    for g in &tp {
        let _ = writeln!(
            s,
            "| throughput: in order, none missing or repeated | {} | ours {} (nchan {}) | all | {} |",
            g.label,
            met(clean(&g.ours)),
            met(clean(&g.nchan)),
            met(clean(&g.ours))
        );
    }
    for g in &idle {
        let v = sub(g.ours.get("pss_bytes_per_listener"), floor_b);
        let _ = writeln!(
            s,
            "| idle: bytes per held stream above nginx's floor | {} | ours {} (nchan {}) | ≤ 256 | {} |",
            g.label,
            f0(v),
            f0(sub(g.nchan.get("pss_bytes_per_listener"), floor_b)),
            met(v.map(|v| v <= 256.0))
        );
    }
    s.push('\n');

    // Fan-out.
    let _ = writeln!(s, "### Stream fan-out\n");
    let _ = writeln!(
        s,
        "N streams on one channel, {} rounds of one POST each; times from just before the \
         POST is written to the read that completed each stream's message. Body {} bytes. \
         The last rows divide each relay's stream figure by its own long-poll figure at the \
         same N (the `Fan-out` section above).\n",
        o.rounds, o.settings.body_size
    );
    for &n in &o.fanout {
        let gs = groups(res, o, |t| Work::Fanout(t, n));
        let (lo, ln) = (lp_o(n).get(cpu), lp_n(n).get(cpu));
        let extra = vec![
            derived_row("server CPU per delivery ÷ own long-poll", &gs, 2, |g| {
                (div(g.ours.get(cpu), lo), div(g.nchan.get(cpu), ln))
            }),
            derived_row("server CPU per delivery ÷ write floor", &gs, 2, |g| {
                (div(g.ours.get(cpu), sc_us), div(g.nchan.get(cpu), sc_us))
            }),
        ];
        let _ = writeln!(s, "#### N = {n}\n");
        multi_table(s, FANOUT_ROWS, &gs, &extra);
        s.push('\n');
    }

    let _ = writeln!(s, "### Write floor (stream ceiling)\n");
    let _ = writeln!(
        s,
        "What a stream delivery cannot cost less than on this machine: a process of this \
         program (no nginx, no relay) holding {} loopback connections answered with an \
         EventSource head, writing one chunk with one event ({}-byte body, the bytes a relay \
         writes) to each with one `write`, {} rounds, while the benchmark's client reads \
         and checks them as it does a relay's streams. Its own CPU per write (getrusage) \
         includes, as a relay's does, the receiver's TCP input, which loopback runs in the \
         sender's context. One writer against a relay's two workers, so its time to all is \
         not comparable.\n",
        o.fanout.iter().copied().max().unwrap_or(o.ceiling_conns),
        o.settings.body_size,
        o.ceiling_per_conn
    );
    s.push_str("| metric | one write per stream |\n|---|---:|\n");
    let _ = writeln!(
        s,
        "| CPU per write (µs) | {} |\n| time to all (ms, median of rounds) | {} |",
        sc.cell(cpu, 2),
        sc.cell("all_ms", 2)
    );
    if let Some(n) = sc.note() {
        let _ = writeln!(s, "\nwrite floor: {n}.");
    }
    s.push('\n');

    let _ = writeln!(s, "### Stream throughput\n");
    let _ = writeln!(
        s,
        "{} channels × {} streams, {} publishers, {} messages, the same flow control and \
         checks as the long-poll throughput (a channel at most 5 messages ahead of its \
         slowest stream; every stream checks the sequence numbers in the bodies).\n",
        o.tp_channels, o.tp_per_channel, o.tp_publishers, o.tp_messages
    );
    let lpt_o = aggregate(res, Work::Throughput(LP), "ours").get(cpu);
    let lpt_n = aggregate(res, Work::Throughput(LP), "nchan").get(cpu);
    let extra = vec![derived_row(
        "server CPU per delivery ÷ own long-poll",
        &tp,
        2,
        |g| (div(g.ours.get(cpu), lpt_o), div(g.nchan.get(cpu), lpt_n)),
    )];
    multi_table(s, TP_ROWS, &tp, &extra);
    s.push('\n');

    let _ = writeln!(s, "### Stream idle memory\n");
    let _ = writeln!(
        s,
        "{} held streams over {} channels on a freshly started nginx, measured as the \
         long-poll idle memory is (growth of the summed `Pss` of master and workers per \
         stream). nginx's floor is the same as there: a held request (`echo_sleep`), {} \
         bytes. A second floor for reference: nginx holding a streaming response that has \
         sent its head and a first chunk (`echo \": hi\"; echo_flush; echo_sleep 300;` with \
         `default_type text/event-stream`), {} bytes.\n",
        o.idle,
        o.idle_channels,
        f0(floor_b),
        f0(sfloor_b)
    );
    let extra = vec![
        derived_row("added above the floor (bytes)", &idle, 0, |g| {
            (
                sub(g.ours.get("pss_bytes_per_listener"), floor_b),
                sub(g.nchan.get("pss_bytes_per_listener"), floor_b),
            )
        }),
        derived_row("added above the streaming floor (bytes)", &idle, 0, |g| {
            (
                sub(g.ours.get("pss_bytes_per_listener"), sfloor_b),
                sub(g.nchan.get("pss_bytes_per_listener"), sfloor_b),
            )
        }),
    ];
    multi_table(s, STREAM_IDLE_ROWS, &idle, &extra);
    if let Some(n) = floor.note().or(sfloor.note()) {
        let _ = writeln!(s, "\nfloor: {n}.");
    }
    s.push('\n');
}

const REDIS_ROWS: &[Row] = &[
    row("redis_us_per_publish", "Redis CPU per publish (µs)", 1),
    row(
        "redis_cmds_per_publish",
        "Redis commands per publish (INFO commandstats: scripts' commands included)",
        1,
    ),
    row(
        "redis_scripts_per_publish",
        "of which script calls (EVALSHA/EVAL) per publish",
        1,
    ),
];

const RESTART_ROWS: &[Row] = &[
    row("published", "messages sent", 0),
    row("accepted", "answered 201/202", 0),
    row(
        "accepted_share",
        "share of the target accepted (1 = all)",
        2,
    ),
    row("refused", "refused (503 or connection lost)", 0),
    row(
        "lost_messages",
        "accepted, never reached every listener (must be 0)",
        0,
    ),
    row(
        "lost_deliveries",
        "deliveries missing (listeners × messages)",
        0,
    ),
    row("repeated", "repeated or out of order (must be 0)", 0),
    row("arrived_refused", "refused but delivered anyway", 0),
    row("listener_errors", "listener answers other than 200", 0),
    row("reconnects", "connections the servers closed (reopened)", 0),
    row(
        "serious_log_lines",
        "alert/crit/emerg lines in the two error logs",
        0,
    ),
    row("down_ms", "Redis down (ms)", 0),
    row(
        "recovery_ms",
        "restart to the first accepted publish (ms)",
        0,
    ),
];

/// The Redis section (issue 9).
fn redis(s: &mut String, o: &Opts, res: &Results) {
    if !o.redis {
        return;
    }
    let pair = |w: Work| (aggregate(res, w, "ours"), aggregate(res, w, "nchan"));
    let f2 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    let f0 = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    };
    let (lo, ln) = pair(Work::RedisLatency);
    let (to, tn) = pair(Work::RedisThroughput);
    let (ro, rn) = pair(Work::RedisRestart);
    let fans: Vec<(Transport, Agg, Agg)> = o
        .transports
        .iter()
        .filter(|t| matches!(t, Transport::LongPoll | Transport::EventSource))
        .map(|&t| {
            let (a, b) = pair(Work::RedisFanout(t, o.redis_fanout));
            (t, a, b)
        })
        .collect();

    let _ = writeln!(s, "## Several servers (Redis, issue 9)\n");
    let _ = writeln!(
        s,
        "Each run starts a redis-server of its own (`{}`, loopback, a fresh directory, \
         `appendonly yes`, `appendfsync everysec`, no RDB snapshots) and two nginx servers \
         of one relay, each with the settings above plus the Redis: ours \
         `push_redis redis://127.0.0.1:<port>;` in `http`; nchan an `upstream` with \
         `nchan_redis_server redis://127.0.0.1:<port>;` and `nchan_redis_pass` in every \
         location (its default `distributed` storage mode). Before measuring, each server \
         must accept a publish. Redis CPU is the redis-server's from `/proc`; Redis commands \
         are the calls summed over `INFO commandstats` (the `INFO` calls that read them \
         excepted), over the measured part only.\n",
        o.redis_bin.display()
    );

    let _ = writeln!(s, "### Targets (issue 9)\n");
    s.push_str("| target | measured | goal | met |\n|---|---:|---:|---|\n");
    let tp = div(to.get("deliveries_per_s"), tn.get("deliveries_per_s"));
    let _ = writeln!(
        s,
        "| throughput: deliveries/s, ours/nchan | {} | ≥ 1.50 | {} |",
        f2(tp),
        met(tp.map(|v| v >= 1.5))
    );
    let cmds = div(
        to.get("redis_cmds_per_publish"),
        tn.get("redis_cmds_per_publish"),
    );
    let _ = writeln!(
        s,
        "| throughput: Redis commands per publish, ours ÷ nchan | {} (ours {}, nchan {}) | ≤ 1.00 | {} |",
        f2(cmds),
        to.cell("redis_cmds_per_publish", 1),
        tn.cell("redis_cmds_per_publish", 1),
        met(cmds.map(|v| v <= 1.0))
    );
    for (t, a, b) in &fans {
        let v = div(
            a.get("redis_cmds_per_publish"),
            b.get("redis_cmds_per_publish"),
        );
        let _ = writeln!(
            s,
            "| fan-out {} N={}: Redis commands per publish, ours ÷ nchan | {} (ours {}, nchan {}) | ≤ 1.00 | {} |",
            t.name(),
            o.redis_fanout,
            f2(v),
            a.cell("redis_cmds_per_publish", 1),
            b.cell("redis_cmds_per_publish", 1),
            met(v.map(|v| v <= 1.0))
        );
    }
    let p50 = lo.get("p50_ms");
    let _ = writeln!(
        s,
        "| cross-server publish → delivery p50 (ms) | ours {} (nchan {}) | ≤ 1.00 | {} |",
        f2(p50),
        f2(ln.get("p50_ms")),
        met(p50.map(|v| v <= 1.0))
    );
    let lost = ro.get("lost_messages");
    let _ = writeln!(
        s,
        "| messages answered 201/202 lost through a Redis restart | ours {} (nchan {}) | 0 | {} |\n",
        f0(lost),
        f0(rn.get("lost_messages")),
        met(lost.map(|v| v == 0.0))
    );

    let pair_table = |s: &mut String, rows: &[&[Row]], a: &Agg, b: &Agg| {
        s.push_str("| metric | ours | nchan | ours/nchan |\n|---|---:|---:|---:|\n");
        for r in rows.iter().flat_map(|r| r.iter()) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.label,
                a.cell(r.key, r.dec),
                b.cell(r.key, r.dec),
                ratio(a.get(r.key), b.get(r.key))
            );
        }
        for (who, x) in [("ours", a), ("nchan", b)] {
            if let Some(n) = x.note() {
                let _ = writeln!(s, "\n{who}: {n}.");
            }
        }
        s.push('\n');
    };

    let _ = writeln!(s, "### Cross-server latency\n");
    let _ = writeln!(
        s,
        "10 long-poll listeners on the second server, {} messages published one at a time \
         on the first (the next once every listener has it and is held again); latency from \
         the POST's first byte to each listener's last.\n",
        o.latency_rounds
    );
    pair_table(s, &[FANOUT_ROWS, REDIS_ROWS], &lo, &ln);

    for (t, a, b) in &fans {
        let _ = writeln!(
            s,
            "### Fan-out over two servers: {}, N = {}\n",
            t.name(),
            o.redis_fanout
        );
        let _ = writeln!(
            s,
            "N listeners alternating between the two servers, {} messages published on the \
             first; server CPU is both servers' workers'.{}\n",
            o.rounds,
            if t.is_stream() {
                ""
            } else {
                " A long-poll listener asks again after every message, and in Redis mode a \
                 request with a cursor may cost a Redis command, which the commands per \
                 publish include."
            }
        );
        pair_table(s, &[FANOUT_ROWS, REDIS_ROWS], a, b);
    }

    let _ = writeln!(s, "### Throughput over two servers\n");
    let _ = writeln!(
        s,
        "The long-poll throughput workload ({} channels × {} listeners, {} publishers, {} \
         messages) with listeners and publishers alternating between the two servers, so \
         most deliveries cross from one server to the other.\n",
        o.tp_channels, o.tp_per_channel, o.tp_publishers, o.tp_messages
    );
    pair_table(s, &[TP_ROWS, REDIS_ROWS], &to, &tn);

    let _ = writeln!(s, "### Through a Redis restart\n");
    let _ = writeln!(
        s,
        "The same load; once a third of the messages are answered Redis is shut down \
         (`SHUTDOWN`, which flushes its append-only file) and started again {} ms later on \
         the same port and directory. Publishers go on all the time, each channel until \
         its share of the messages was accepted (after a refusal a publisher waits 50 ms \
         before its next message; publishing stops 10 s before the deadline if a relay \
         never accepts again); a listener answered with an \
         error asks again 50 ms later with its cursor, one whose connection is closed \
         reconnects and asks with its cursor. A channel is at most 5 accepted messages \
         ahead of its slowest listener. At the end every message answered 201/202 must \
         have reached every listener of its channel (the run waits until it has, or until \
         nothing has moved for 5 s).\n",
        o.redis_down.as_millis()
    );
    pair_table(s, &[RESTART_ROWS], &ro, &rn);
}

/// A relay's name, colour and (N, time to all) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Time to all against N, one line per relay.
pub fn svg(o: &Opts, res: &Results) -> String {
    let (w, h) = (640.0, 400.0);
    let (l, r, t, b) = (70.0, 20.0, 40.0, 55.0);
    let series: Vec<Series> = [("ours", "#d62728"), ("nchan", "#1f77b4")]
        .iter()
        .map(|&(who, color)| {
            let pts = o
                .fanout
                .iter()
                .filter_map(|&n| {
                    aggregate(res, Work::Fanout(LP, n), who)
                        .get("all_ms")
                        .map(|v| (n as f64, v))
                })
                .collect();
            (who, color, pts)
        })
        .collect();
    let xmax = o.fanout.iter().copied().max().unwrap_or(1) as f64;
    let ymax_raw = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ymax = nice_ceiling(if ymax_raw > 0.0 { ymax_raw } else { 1.0 });
    let xs = |x: f64| l + x / xmax * (w - l - r);
    let ys = |y: f64| h - b - y / ymax * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Fan-out: time until all N listeners have the message</text>"#,
        w / 2.0
    );
    // Grid and axes.
    for i in 0..=5 {
        let y = ymax * i as f64 / 5.0;
        let py = ys(y);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            py + 4.0,
            trim_num(y)
        );
    }
    for &n in &o.fanout {
        let px = xs(n as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{n}</text>"##,
            h - b,
            h - b + 5.0,
            h - b + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{:.1}" stroke="black"/>"##,
        h - b,
        w - r,
        h - b,
        h - b
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">held listeners N</text>"#,
        (l + w - r) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">time to all (ms)</text>"#,
        (t + h - b) / 2.0,
        (t + h - b) / 2.0
    );
    for (i, (who, color, pts)) in series.iter().enumerate() {
        if !pts.is_empty() {
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", xs(x), ys(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for &(x, y) in pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"><title>{who} N={x}: {y:.2} ms</title></circle>"#,
                    xs(x),
                    ys(y)
                );
            }
        }
        let ly = t + 12.0 + 18.0 * i as f64;
        let label = if pts.is_empty() {
            format!("{who} (no data)")
        } else {
            who.to_string()
        };
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            l + 15.0,
            l + 40.0,
            l + 46.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn trim_num(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
