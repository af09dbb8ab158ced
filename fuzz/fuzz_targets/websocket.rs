//! Client WebSocket frames, fed to the incremental parser in random
//! splits. Input: see `split_plan` (chunk sizes, then the byte stream).
//!
//! Checked: the same answers whatever the split, and the same as a
//! whole-buffer reference decoder of the rules; the parser never holds more
//! than a frame header and 125 bytes; nothing comes after a close or an
//! error; a ping's payload is at most 125 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_relay::proto::websocket::{close, op, Incoming, Parser, MAX_CLIENT_MESSAGE};
use push_relay_fuzz::{chunks, split_plan};

/// The rules applied to a whole buffer at once.
fn reference(mut s: &[u8]) -> Vec<Incoming> {
    let mut out = Vec::new();
    let mut message: Option<u64> = None;
    let fail = |out: &mut Vec<Incoming>, code| {
        out.push(Incoming::Fail(code));
    };
    loop {
        if s.len() < 2 {
            return out;
        }
        let (b0, b1) = (s[0], s[1]);
        if b1 & 0x80 == 0 {
            fail(&mut out, close::PROTOCOL_ERROR);
            return out;
        }
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let hl = 2 + ext + 4;
        if s.len() < hl {
            return out;
        }
        let len = match ext {
            2 => u64::from(u16::from_be_bytes([s[2], s[3]])),
            8 => u64::from_be_bytes(s[2..10].try_into().unwrap()),
            _ => u64::from(b1 & 0x7f),
        };
        let mask: [u8; 4] = s[hl - 4..hl].try_into().unwrap();
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            fail(&mut out, close::PROTOCOL_ERROR);
            return out;
        }
        match opcode {
            op::CLOSE | op::PING | op::PONG => {
                if !fin || len > 125 {
                    fail(&mut out, close::PROTOCOL_ERROR);
                    return out;
                }
            }
            op::TEXT | op::BINARY | op::CONTINUATION => {
                let so_far = match (opcode, message) {
                    (op::CONTINUATION, Some(n)) => n,
                    (op::CONTINUATION, None) | (_, Some(_)) => {
                        fail(&mut out, close::PROTOCOL_ERROR);
                        return out;
                    }
                    (_, None) => 0,
                };
                let total = so_far.saturating_add(len);
                if total > MAX_CLIENT_MESSAGE {
                    fail(&mut out, close::TOO_BIG);
                    return out;
                }
                message = if fin { None } else { Some(total) };
            }
            _ => {
                fail(&mut out, close::PROTOCOL_ERROR);
                return out;
            }
        }
        let Some(end) = usize::try_from(len).ok().and_then(|l| hl.checked_add(l)) else {
            return out;
        };
        if s.len() < end {
            return out;
        }
        let payload: Vec<u8> = s[hl..end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        s = &s[end..];
        match opcode {
            op::PING => out.push(Incoming::Ping(payload)),
            op::CLOSE => {
                let valid = |c: u16| matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999);
                out.push(match payload.len() {
                    0 => Incoming::Close(None),
                    1 => Incoming::Fail(close::PROTOCOL_ERROR),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if valid(code) && std::str::from_utf8(&payload[2..]).is_ok() {
                            Incoming::Close(Some(code))
                        } else {
                            Incoming::Fail(close::PROTOCOL_ERROR)
                        }
                    }
                });
                return out;
            }
            _ => {}
        }
    }
}

fn run(pieces: &[&[u8]]) -> (Vec<Incoming>, bool) {
    let mut p = Parser::default();
    let mut out = Vec::new();
    for piece in pieces {
        let before = out.len();
        let was_done = p.is_done();
        p.feed(piece, &mut out);
        assert!(
            p.buffered() <= 14 + 125,
            "parser holds {} bytes",
            p.buffered()
        );
        if was_done {
            assert_eq!(out.len(), before, "answers after the end");
        }
    }
    (out, p.is_done())
}

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = split_plan(data);
    let (whole, whole_done) = run(&[stream]);
    let (split, split_done) = run(&chunks(stream, &sizes));
    let (bytewise, _) = run(&chunks(stream, &[1]));
    assert_eq!(whole, split);
    assert_eq!(whole, bytewise);
    assert_eq!(whole_done, split_done);
    assert_eq!(whole, reference(stream));
    for (i, inc) in whole.iter().enumerate() {
        match inc {
            Incoming::Ping(p) => assert!(p.len() <= 125),
            Incoming::Close(_) | Incoming::Fail(_) => {
                assert_eq!(i, whole.len() - 1, "the end is the last answer");
                assert!(whole_done);
            }
        }
    }
});
