//! `choose`: which transport a listener request gets, from its method,
//! protocol and headers (`Upgrade`, `Connection`, `Sec-WebSocket-Version`,
//! `Sec-WebSocket-Key`, `Accept`), at a location offering any set of them.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use push_relay::outcome::Refusal;
use push_relay::proto::text::{list_has, trim};
use push_relay::request::Method;
use push_relay::transport::{choose, Hints, Transport, Transports};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    offered: u8,
    method: u8,
    http11: bool,
    http2: bool,
    main: bool,
    accept: Option<&'a [u8]>,
    upgrade: Option<&'a [u8]>,
    connection: Option<&'a [u8]>,
    ws_version: Option<&'a [u8]>,
    ws_key: Option<&'a [u8]>,
    /// Words of a `push_listener` directive, one a line.
    words: &'a [u8],
}

const METHODS: [Method; 7] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Other,
];

fn event_stream(accept: &[u8]) -> bool {
    accept.split(|&c| c == b',').any(|r| {
        let mut p = r.split(|&c| c == b';');
        trim(p.next().unwrap_or(&[])).eq_ignore_ascii_case(b"text/event-stream")
            && !p.any(|q| {
                let q = trim(q);
                q.len() >= 2
                    && q[..2].eq_ignore_ascii_case(b"q=")
                    && trim(&q[2..]).iter().all(|&c| c == b'0' || c == b'.')
            })
    })
}

fuzz_target!(|inp: Input<'_>| {
    // The directive's words parse to a set, or are refused.
    let words: Vec<&[u8]> = inp.words.split(|&c| c == b'\n').collect();
    if let Ok(set) = Transports::parse(words.iter().copied()) {
        assert!(!set.is_empty());
        let polls = [Transport::LongPoll, Transport::IntervalPoll]
            .iter()
            .filter(|&&t| set.contains(t))
            .count();
        assert!(polls <= 1);
    }

    let mut offered = Transports::EMPTY;
    for (i, t) in Transport::ALL.into_iter().enumerate() {
        if inp.offered & (1 << i) != 0 {
            offered = merge(offered, t);
        }
    }
    let method = METHODS[usize::from(inp.method) % METHODS.len()];
    let h = Hints {
        http11: inp.http11,
        http2: inp.http2,
        main: inp.main,
        accept: inp.accept,
        upgrade: inp.upgrade,
        connection: inp.connection,
        ws_version: inp.ws_version,
        ws_key: inp.ws_key,
    };
    let get = method == Method::Get;
    let wants_ws = offered.contains(Transport::WebSocket)
        && !inp.http2
        && inp.upgrade.is_some_and(|u| list_has(u, b"websocket"));
    let got = choose(offered, method, &h);
    match got {
        Ok(Transport::WebSocket) => {
            assert!(wants_ws && get && inp.http11 && inp.main);
            assert!(inp.connection.is_some_and(|c| list_has(c, b"upgrade")));
            assert_eq!(inp.ws_version.map(trim), Some(&b"13"[..]));
            assert!(inp.ws_key.is_some_and(|k| !trim(k).is_empty()));
        }
        Ok(Transport::EventSource) => {
            assert!(!wants_ws && get && inp.main);
            assert!(offered.contains(Transport::EventSource));
            assert!(inp.accept.is_some_and(event_stream));
        }
        Ok(Transport::LongPoll) => {
            assert!(!wants_ws && inp.main);
            assert_eq!(offered.poll(), Some(Transport::LongPoll));
            assert!(
                !(get
                    && offered.contains(Transport::EventSource)
                    && inp.accept.is_some_and(event_stream))
            );
        }
        Ok(Transport::IntervalPoll) => {
            // A subrequest gets it wherever it would have been held.
            assert!(offered.poll() == Some(Transport::IntervalPoll) || !inp.main);
        }
        Err(Refusal::NotAcceptable) => assert!(!wants_ws && offered.poll().is_none()),
        Err(Refusal::BadUpgrade | Refusal::UpgradeVersion) => assert!(wants_ws),
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
    // A stream is only ever chosen for a GET.
    if got.is_ok_and(Transport::is_stream) {
        assert!(get);
    }
});

/// `a` with `t` added (through the directive parser, the one public way).
fn merge(a: Transports, t: Transport) -> Transports {
    let mut names: Vec<&[u8]> = Transport::ALL
        .into_iter()
        .filter(|&x| a.contains(x))
        .map(|x| x.name().as_bytes())
        .collect();
    names.push(t.name().as_bytes());
    Transports::parse(names.iter().copied()).unwrap_or(a)
}
