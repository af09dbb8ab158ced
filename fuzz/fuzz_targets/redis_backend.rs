//! Everything Redis sends to a worker, through the whole sans-IO client
//! and `RedisBackend`: the handshake's replies, the scripts' replies to
//! listen / publish / create / info / delete, pub/sub pushes carrying
//! announcements, in random splits, then a disconnect.
//!
//! Input: a flags byte (bit 0: the fuzz bytes replace the canned handshake),
//! a count byte and that many operation bytes, then `split_plan` for the
//! reply stream. Checked: no panic, every completion is of an operation
//! that is pending, and each completes at most once.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use push_relay::backend::{Backend, Listen, Publish, Step};
use push_relay::conf::{Concurrency, ListenerRules, SenderRules};
use push_relay::proto::cursor::Cursor;
use push_relay::redis::backend::{RedisBackend, RedisConfig};
use push_relay::redis::scripts::Script;
use push_relay::redis::url::RedisUrl;
use push_relay::relay::Effects;
use push_relay::transport::{Transport, Transports};
use push_relay_fuzz::{chunks, split_plan};

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

fn handshake() -> Vec<u8> {
    let mut r = b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec();
    for i in 0..Script::ALL.len() {
        bulk(&mut r, format!("{i:040}").as_bytes());
    }
    bulk(&mut r, b"1764170000");
    r
}

const SENDER: SenderRules = SenderRules {
    queue: true,
    message_timeout: 60,
    buffer_length: 10,
    channel_timeout: 60,
};

fn rules(t: Transport, c: Concurrency) -> ListenerRules {
    ListenerRules {
        transports: Transports::only(t),
        concurrency: c,
        timeout_ms: 0,
        authorized_only: false,
        max_subscribers: 0,
        ping_ms: 0,
        max_pending: 1 << 20,
    }
}

fn track<T>(s: Step<T>, pending: &mut BTreeSet<u64>) {
    if let Step::Later(op) = s {
        assert!(pending.insert(op), "operation id {op} given twice");
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n % 9).min(rest.len());
    let (ops, rest) = rest.split_at(n);
    let (sizes, stream) = split_plan(rest);

    let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
    let mut b = RedisBackend::new(RedisConfig::new(
        url,
        vec![b"push:".to_vec(), b"other:".to_vec()],
        b"w1".to_vec(),
    ));
    let mut fx = Effects::default();
    let mut pending = BTreeSet::new();
    let mut now = 0;
    b.connecting(now);
    b.connected(now);
    if flags & 1 == 0 {
        let done = b.input(&handshake(), 1, &mut fx);
        assert!(done.is_empty());
    }
    for (i, &o) in ops.iter().enumerate() {
        let ns = usize::from(o >> 7);
        let id: &[u8] = if o & 0x40 != 0 { b"ch" } else { b"other" };
        let concurrency = [
            Concurrency::Broadcast,
            Concurrency::Last,
            Concurrency::First,
        ][usize::from(o >> 4 & 3) % 3];
        let t = [
            Transport::LongPoll,
            Transport::IntervalPoll,
            Transport::EventSource,
            Transport::WebSocket,
        ];
        match o & 0x0f {
            k @ 0..=3 => {
                let req = Listen {
                    id,
                    cursor: Cursor::default(),
                    rules: rules(t[usize::from(k)], concurrency),
                    transport: t[usize::from(k)],
                    now: now / 1000,
                };
                track(b.scope(ns).listen(&req, &mut fx), &mut pending);
            }
            4..=6 => {
                let req = Publish {
                    id,
                    content_type: if o & 1 == 1 {
                        b"message/http"
                    } else {
                        b"text/plain"
                    },
                    event: b"",
                    body: b"HTTP/1.1 200 OK\r\n\r\nbody",
                    rules: SENDER,
                    now: now / 1000,
                };
                track(b.scope(ns).publish(&req, &mut fx), &mut pending);
            }
            7 => track(
                b.scope(ns).create(id, &SENDER, now / 1000, &mut fx),
                &mut pending,
            ),
            8 | 9 => track(b.scope(ns).info(id, now / 1000, &mut fx), &mut pending),
            10 => track(b.scope(ns).delete(id, now / 1000, &mut fx), &mut pending),
            11 => track(b.scope(ns).catch_up(now / 1000, &mut fx), &mut pending),
            _ => b.heartbeat(now + i as u64),
        }
    }
    let complete = |done: Vec<(u64, push_relay::redis::backend::Completion)>,
                    pending: &mut BTreeSet<u64>| {
        for (op, _) in done {
            assert!(pending.remove(&op), "completion of {op}, not pending");
        }
    };
    for piece in chunks(stream, &sizes) {
        now += 7;
        let done = b.input(piece, now, &mut fx);
        complete(done, &mut pending);
        b.output().clear();
        let _ = b.take_logs();
        let _ = fx.copies.take_deliveries();
    }
    b.heartbeat(now + 20_000);
    let done = b.disconnected(now + 20_001, &mut fx);
    complete(done, &mut pending);
    b.scope(0).release_all(now + 20_002, &mut fx);
});
