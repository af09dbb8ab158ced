//! push-bench: runs the same workloads (long-poll, EventSource and
//! WebSocket listeners) against ngx_http_push and nchan, each in its own
//! nginx started from the distribution's binary, alternating between them,
//! and writes BENCHMARKS.md plus an SVG plot.
//!
//! Run it through `scripts/bench.sh`; `push-bench --help` lists options.

mod net;
mod report;
mod server;
mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use server::{Kind, Nginx, Settings};
use workloads::{Metrics, Transport};

pub struct Opts {
    pub so: PathBuf,
    pub relays: Vec<String>,
    pub transports: Vec<Transport>,
    pub reps: usize,
    pub rounds: usize,
    pub fanout: Vec<usize>,
    pub tp_channels: usize,
    pub tp_per_channel: usize,
    pub tp_publishers: usize,
    pub tp_messages: usize,
    pub idle: usize,
    pub idle_channels: usize,
    pub ceiling_conns: usize,
    pub ceiling_per_conn: usize,
    pub deadline: Duration,
    pub out: PathBuf,
    pub svg: PathBuf,
    pub settings: Settings,
    pub command: String,
    /// Run the Redis workloads (two servers each, one Redis).
    pub redis: bool,
    pub redis_bin: PathBuf,
    pub redis_fanout: usize,
    pub latency_rounds: usize,
    pub redis_down: Duration,
}

const HELP: &str = "push-bench: ngx_http_push vs nchan on the distribution's nginx

options (defaults in brackets):
  --so PATH            our module built for /usr/sbin/nginx
                       [$PUSH_MODULE_SO or target/distro/release/libngx_http_push.so]
  --nginx PATH         nginx binary [$PUSH_NGINX_BIN or /usr/sbin/nginx]
  --relays LIST        ours,nchan [ours,nchan]
  --transports LIST    listener transports of every workload
                       [long-poll,eventsource,websocket,ws-meta]
  --reps N             repetitions of each workload per relay, alternating [3]
  --rounds N           fan-out messages per N [5]
  --fanout LIST        fan-out listener counts [1000,5000,10000]
  --messages N         throughput messages [20000]
  --channels N         throughput channels [100]
  --listeners N        throughput listeners per channel [10]
  --publishers N       throughput concurrent publishers [16]
  --idle N             idle-memory held listeners [10000]
  --idle-channels N    idle-memory channels [1000]
  --ceiling-conns N    return-200 ceiling connections [10000]
  --ceiling-rounds N   rounds of one request per ceiling connection [10]
  --body BYTES         message / return-200 body size [64]
  --deadline SECS      bound of each workload run [60]
  --out PATH           report [BENCHMARKS.md]
  --svg PATH           fan-out plot [bench/fanout.svg]
  --redis              also run the Redis workloads: two servers of each relay
                       sharing one redis-server of this program's own
  --redis-bin PATH     redis-server binary [/usr/bin/redis-server]
  --redis-fanout N     Redis fan-out listeners over both servers [10000]
  --latency-rounds N   cross-server latency messages [200]
  --redis-down-ms MS   how long Redis stays down in the restart workload [1000]
  --quick              small sizes, one repetition (a smoke run)
";

fn list(v: &str) -> Vec<usize> {
    v.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn parse_args() -> Result<Opts, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let env_or = |k: &str, d: PathBuf| std::env::var_os(k).map(PathBuf::from).unwrap_or(d);
    let mut o = Opts {
        so: env_or(
            "PUSH_MODULE_SO",
            root.join("target/distro/release/libngx_http_push.so"),
        ),
        relays: vec!["ours".into(), "nchan".into()],
        transports: Transport::ALL.to_vec(),
        reps: 3,
        rounds: 5,
        fanout: vec![1000, 5000, 10000],
        tp_channels: 100,
        tp_per_channel: 10,
        tp_publishers: 16,
        tp_messages: 20000,
        idle: 10000,
        idle_channels: 1000,
        ceiling_conns: 10000,
        ceiling_per_conn: 10,
        deadline: Duration::from_secs(60),
        out: PathBuf::from("BENCHMARKS.md"),
        svg: PathBuf::from("bench/fanout.svg"),
        settings: Settings {
            nginx_bin: env_or("PUSH_NGINX_BIN", PathBuf::from("/usr/sbin/nginx")),
            nchan_so: PathBuf::new(),
            echo_so: PathBuf::new(),
            body_size: 64,
            nofile: 50000,
        },
        command: std::env::var("PUSH_BENCH_COMMAND").unwrap_or_else(|_| {
            let a: Vec<String> = std::env::args().collect();
            a.join(" ")
        }),
        redis: false,
        redis_bin: PathBuf::from("/usr/bin/redis-server"),
        redis_fanout: 10000,
        latency_rounds: 200,
        redis_down: Duration::from_millis(1000),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v}"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--so" => o.so = val()?.into(),
            "--nginx" => o.settings.nginx_bin = val()?.into(),
            "--relays" => o.relays = val()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--transports" => {
                o.transports = val()?
                    .split(',')
                    .map(|s| Transport::parse(s.trim()).ok_or(format!("unknown transport {s}")))
                    .collect::<Result<_, _>>()?;
            }
            "--reps" => o.reps = num(val()?)?.max(1),
            "--rounds" => o.rounds = num(val()?)?.max(1),
            "--fanout" => o.fanout = list(&val()?),
            "--messages" => o.tp_messages = num(val()?)?,
            "--channels" => o.tp_channels = num(val()?)?.max(1),
            "--listeners" => o.tp_per_channel = num(val()?)?.max(1),
            "--publishers" => o.tp_publishers = num(val()?)?.max(1),
            "--idle" => o.idle = num(val()?)?,
            "--idle-channels" => o.idle_channels = num(val()?)?.max(1),
            "--ceiling-conns" => o.ceiling_conns = num(val()?)?.max(1),
            "--ceiling-rounds" => o.ceiling_per_conn = num(val()?)?.max(1),
            "--body" => o.settings.body_size = num(val()?)?.max(40),
            "--deadline" => o.deadline = Duration::from_secs(num(val()?)? as u64),
            "--out" => o.out = val()?.into(),
            "--svg" => o.svg = val()?.into(),
            "--redis" => o.redis = true,
            "--redis-bin" => o.redis_bin = val()?.into(),
            "--redis-fanout" => o.redis_fanout = num(val()?)?.max(2),
            "--latency-rounds" => o.latency_rounds = num(val()?)?.max(1),
            "--redis-down-ms" => o.redis_down = Duration::from_millis(num(val()?)? as u64),
            "--quick" => {
                o.redis_fanout = 1000;
                o.latency_rounds = 50;
                o.reps = 1;
                o.rounds = 3;
                o.fanout = vec![200, 1000];
                o.tp_messages = 2000;
                o.idle = 2000;
                o.idle_channels = 200;
                o.ceiling_conns = 1000;
            }
            _ => return Err(format!("unknown option {a} (see --help)")),
        }
    }
    let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    o.so = abs(&o.so);
    o.settings.nginx_bin = abs(&o.settings.nginx_bin);
    o.settings.nchan_so = find_module("ngx_nchan_module.so")?;
    o.settings.echo_so = find_module("ngx_http_echo_module.so")?;
    if o.tp_publishers > o.tp_channels {
        o.tp_publishers = o.tp_channels;
    }
    Ok(o)
}

/// Debian installs dynamic modules in /usr/lib/nginx/modules and names them
/// in /usr/share/nginx/modules-available/*.conf.
fn find_module(file: &str) -> Result<PathBuf, String> {
    let direct = PathBuf::from("/usr/lib/nginx/modules").join(file);
    if direct.exists() {
        return Ok(direct);
    }
    if let Ok(rd) = std::fs::read_dir("/usr/share/nginx/modules-available") {
        for e in rd.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for word in text.split([' ', ';', '\n']) {
                if word.ends_with(file) {
                    let p = PathBuf::from(word);
                    let p = if p.is_absolute() {
                        p
                    } else {
                        PathBuf::from("/usr/share/nginx").join(p)
                    };
                    if p.exists() {
                        return Ok(p);
                    }
                }
            }
        }
    }
    Err(format!(
        "{file} not found (apt-get install the module package)"
    ))
}

/// One workload, as run for one relay.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Work {
    Fanout(Transport, usize),
    Throughput(Transport),
    Idle(Transport),
    Ceiling,
    /// One write per stream from this program, no nginx (the floor of a
    /// stream delivery).
    StreamCeiling,
    /// Two servers sharing one Redis: publish on one, 10 listeners on the
    /// other, one message at a time.
    RedisLatency,
    /// Two servers: listeners spread over both, publish on the first.
    RedisFanout(Transport, usize),
    /// Two servers: listeners and publishers spread over both.
    RedisThroughput,
    /// The throughput load through a Redis restart.
    RedisRestart,
}

/// Results: per (workload, instance name), one entry per repetition.
pub type Results = BTreeMap<(Work, String), Vec<Result<Metrics, String>>>;

fn kind_for(name: &str, o: &Opts) -> Kind {
    match name {
        "ours" => Kind::Ours(o.so.clone()),
        "nchan" => Kind::Nchan,
        _ => Kind::Floor,
    }
}

fn is_redis(w: Work) -> bool {
    matches!(
        w,
        Work::RedisLatency | Work::RedisFanout(..) | Work::RedisThroughput | Work::RedisRestart
    )
}

fn tp_spec(o: &Opts) -> workloads::ThroughputSpec {
    workloads::ThroughputSpec {
        channels: o.tp_channels,
        per_channel: o.tp_per_channel,
        publishers: o.tp_publishers,
        messages: o.tp_messages - o.tp_messages % o.tp_channels,
        window: 5,
    }
}

/// A Redis workload: a fresh redis-server and two fresh servers of `kind`.
fn run_redis(work: Work, kind: Kind, o: &Opts) -> Result<Metrics, String> {
    let mut redis = server::Redis::start(&o.redis_bin)?;
    let mut a = Nginx::start_with(kind.clone(), &o.settings, Some(redis.at()))?;
    let mut b = match Nginx::start_with(kind, &o.settings, Some(redis.at())) {
        Ok(b) => b,
        Err(e) => {
            a.stop();
            return Err(e);
        }
    };
    let deadline = Instant::now() + o.deadline;
    let body = o.settings.body_size;
    let r = workloads::wait_publishable(&[&a, &b], deadline).and_then(|()| {
        let spread = |listen_on: Vec<usize>, publish_on: Vec<usize>| workloads::Placement {
            servers: vec![&a, &b],
            listen_on,
            publish_on,
            redis: None,
        };
        match work {
            Work::RedisLatency => {
                let mut pl = spread(vec![1], vec![0]);
                pl.redis = Some(&redis);
                workloads::fanout_on(
                    &pl,
                    Transport::LongPoll,
                    10,
                    o.latency_rounds,
                    body,
                    deadline,
                )
            }
            Work::RedisFanout(t, n) => {
                let mut pl = spread(vec![0, 1], vec![0]);
                pl.redis = Some(&redis);
                workloads::fanout_on(&pl, t, n, o.rounds, body, deadline)
            }
            Work::RedisThroughput => {
                let mut pl = spread(vec![0, 1], vec![0, 1]);
                pl.redis = Some(&redis);
                workloads::throughput_on(&pl, Transport::LongPoll, &tp_spec(o), body, deadline)
            }
            Work::RedisRestart => {
                let pl = spread(vec![0, 1], vec![0, 1]);
                let r = workloads::Restart {
                    redis: &mut redis,
                    down: o.redis_down,
                };
                workloads::redis_restart(&pl, r, Transport::LongPoll, &tp_spec(o), body, deadline)
            }
            _ => unreachable!("not a Redis workload"),
        }
    });
    let mut serious = a.serious_log_lines();
    serious.extend(b.serious_log_lines());
    a.stop();
    b.stop();
    redis.stop();
    if work == Work::RedisRestart {
        // A relay that logs alerts while Redis is away still has its
        // losses counted; the lines are counted beside them.
        if let Some(l) = serious.first() {
            eprintln!("    error log ({} alert/crit lines): {l}", serious.len());
        }
        return r.map(|mut m| {
            m.insert("serious_log_lines", serious.len() as f64);
            m
        });
    }
    match r {
        Ok(_) if !serious.is_empty() => Err(format!("error log: {}", serious[0])),
        Err(e) if !serious.is_empty() => Err(format!("{e}; error log: {}", serious[0])),
        other => other,
    }
}

fn run_one(work: Work, kind: Kind, o: &Opts) -> Result<Metrics, String> {
    if is_redis(work) {
        return run_redis(work, kind, o);
    }
    if work == Work::StreamCeiling {
        let n = o.fanout.iter().copied().max().unwrap_or(o.ceiling_conns);
        let deadline = Instant::now() + o.deadline;
        return workloads::stream_ceiling(n, o.ceiling_per_conn, o.settings.body_size, deadline);
    }
    let mut srv = Nginx::start(kind, &o.settings)?;
    let deadline = Instant::now() + o.deadline;
    let body = o.settings.body_size;
    let r = match work {
        Work::Fanout(t, n) => workloads::fanout(&srv, t, n, o.rounds, body, deadline),
        Work::Throughput(t) => workloads::throughput(&srv, t, &tp_spec(o), body, deadline),
        Work::Idle(t) => workloads::idle_memory(
            &srv,
            t,
            o.idle,
            o.idle_channels,
            Duration::from_millis(500),
            deadline,
        ),
        Work::Ceiling => {
            workloads::ceiling(&srv, o.ceiling_conns, o.ceiling_per_conn, body, deadline)
        }
        Work::StreamCeiling => unreachable!("run without nginx above"),
        _ => unreachable!("Redis workloads run above"),
    };
    let serious = srv.serious_log_lines();
    srv.stop();
    match r {
        Ok(_) if !serious.is_empty() => Err(format!("error log: {}", serious[0])),
        Err(e) if !serious.is_empty() => Err(format!("{e}; error log: {}", serious[0])),
        other => other,
    }
}

fn brief(work: Work, m: &Metrics) -> String {
    let g = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    match work {
        Work::Fanout(..) | Work::RedisFanout(..) | Work::RedisLatency => format!(
            "all {:.1} ms, p50 {:.1} ms, server {:.2} us/delivery",
            g("all_ms"),
            g("p50_ms"),
            g("server_us_per_delivery")
        ),
        Work::Throughput(_) | Work::RedisThroughput => format!(
            "{:.0} deliveries/s, p99 {:.1} ms, missing {} repeated {}",
            g("deliveries_per_s"),
            g("lat_p99_ms"),
            g("missing"),
            g("repeated")
        ),
        Work::Idle(_) => format!(
            "{:.0} B/listener (Pss), {:.0} B (Rss)",
            g("pss_bytes_per_listener"),
            g("rss_bytes_per_listener")
        ),
        Work::Ceiling => format!(
            "{:.2} us/response server, {:.0} responses/s",
            g("server_us_per_response"),
            g("responses_per_s")
        ),
        Work::StreamCeiling => format!(
            "{:.2} us/write, all {:.1} ms",
            g("server_us_per_delivery"),
            g("all_ms")
        ),
        Work::RedisRestart => format!(
            "{} accepted, {} refused, {} lost, {} repeated",
            g("accepted"),
            g("refused"),
            g("lost_messages"),
            g("repeated")
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--stream-ceiling-writer") {
        let n = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let body = args.get(3).cloned().unwrap_or_default();
        server::raise_nofile();
        if let Err(e) = workloads::stream_ceiling_writer(n, body.as_bytes()) {
            println!("error {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("push-bench: {e}");
            std::process::exit(2);
        }
    };
    let (nofile, hard) = server::raise_nofile();
    o.settings.nofile = hard.min(50000);
    let need = o
        .fanout
        .iter()
        .copied()
        .chain([o.idle, o.ceiling_conns, o.tp_channels * o.tp_per_channel])
        .chain(o.redis.then_some(o.redis_fanout))
        .max()
        .unwrap_or(0)
        + 64;
    if (nofile as usize) < need {
        eprintln!("push-bench: RLIMIT_NOFILE is {nofile}, {need} needed (ulimit -n / run as root)");
        std::process::exit(2);
    }
    eprintln!(
        "push-bench: nginx {}, module {}, nchan {}, cpu from {}",
        o.settings.nginx_bin.display(),
        o.so.display(),
        o.settings.nchan_so.display(),
        server::cpu_source()
    );
    let started = Instant::now();
    // Transports interleaved within each size, so that the stream and the
    // long-poll figures of one relay come from the same minutes.
    let mut works: Vec<Work> = Vec::new();
    for &n in &o.fanout {
        works.extend(o.transports.iter().map(|&t| Work::Fanout(t, n)));
    }
    works.extend(o.transports.iter().map(|&t| Work::Throughput(t)));
    works.extend(o.transports.iter().map(|&t| Work::Idle(t)));
    if o.redis {
        works.push(Work::RedisLatency);
        for &t in &o.transports {
            if matches!(t, Transport::LongPoll | Transport::EventSource) {
                works.push(Work::RedisFanout(t, o.redis_fanout));
            }
        }
        works.push(Work::RedisThroughput);
        works.push(Work::RedisRestart);
    }
    let mut results: Results = BTreeMap::new();
    for &work in &works {
        for rep in 0..o.reps {
            for relay in &o.relays {
                let key = (work, relay.clone());
                let prev = results.entry(key.clone()).or_default();
                // A relay that failed once is not run again (no repeated
                // waits for the deadline).
                if prev.iter().any(|r| r.is_err()) {
                    continue;
                }
                let t = Instant::now();
                let r = run_one(work, kind_for(relay, &o), &o);
                match &r {
                    Ok(m) => eprintln!(
                        "  {work:?} {relay} rep {}: {} ({:.1} s)",
                        rep + 1,
                        brief(work, m),
                        t.elapsed().as_secs_f64()
                    ),
                    Err(e) => eprintln!("  {work:?} {relay} rep {}: FAILED: {e}", rep + 1),
                }
                results.get_mut(&key).expect("inserted above").push(r);
            }
        }
        // The floor instance: idle memory (echo_sleep) and the ceiling
        // after the long-poll idle workload; a held streaming response
        // (echo, echo_flush, echo_sleep) after the first stream one.
        let floor_works: &[Work] = match work {
            Work::Idle(Transport::LongPoll) => &[Work::Idle(Transport::LongPoll), Work::Ceiling],
            Work::Idle(t) if o.transports.iter().find(|t| t.is_stream()) == Some(&t) => {
                &[Work::Idle(Transport::EventSource), Work::StreamCeiling]
            }
            _ => &[],
        };
        for rep in 0..if floor_works.is_empty() { 0 } else { o.reps } {
            for &w in floor_works {
                let r = run_one(w, Kind::Floor, &o);
                match &r {
                    Ok(m) => eprintln!("  {w:?} floor rep {}: {}", rep + 1, brief(w, m)),
                    Err(e) => eprintln!("  {w:?} floor rep {}: FAILED: {e}", rep + 1),
                }
                results.entry((w, "floor".into())).or_default().push(r);
            }
        }
    }
    let md = report::markdown(&o, &results, started.elapsed());
    let svg = report::svg(&o, &results);
    if let Some(dir) = o.svg.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&o.svg, svg) {
        eprintln!("push-bench: writing {}: {e}", o.svg.display());
    }
    if let Err(e) = std::fs::write(&o.out, &md) {
        eprintln!("push-bench: writing {}: {e}", o.out.display());
        std::process::exit(1);
    }
    println!("{md}");
    eprintln!(
        "push-bench: wrote {} and {} in {:.0} s",
        o.out.display(),
        o.svg.display(),
        started.elapsed().as_secs_f64()
    );
}
