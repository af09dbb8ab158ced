//! RESP3/RESP2 replies from Redis, decoded at once and through the
//! connection's `Reader` fed in random splits. Input: one flags byte
//! (bit 0: tight limits from the next five bytes), then `split_plan`.
//!
//! Checked: a decoded frame never claims more bytes than it was given and
//! decodes the same from exactly those bytes; every shorter prefix is
//! "incomplete" (never an error) with a `need` above the prefix and not
//! above the frame; the `Reader` yields the same frames, and an error or
//! none, whatever the split; frames keep within the limits; commands decode back to their
//! arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_relay::redis::resp::{command, decode, Arg, Frame, Limits, ProtoError, Reader};
use push_relay_fuzz::{chunks, split_plan};

fn within(f: &Frame<'_>, lim: &Limits) {
    match f {
        Frame::Bulk(b) => assert!(b.len() <= lim.max_bulk),
        Frame::Simple(b) | Frame::Double(b) | Frame::BigNumber(b) => {
            assert!(b.len() <= lim.max_line)
        }
        Frame::Array(v) | Frame::Map(v) | Frame::Push(v) => {
            assert!(v.len() <= lim.max_elements);
            v.iter().for_each(|g| within(g, lim));
        }
        _ => {}
    }
}

/// Frames (as text, they borrow) and the error, decoding `buf` in sequence.
fn sequence(buf: &[u8], lim: &Limits) -> (Vec<String>, Option<ProtoError>) {
    let mut out = Vec::new();
    let mut at = 0;
    // As the Reader, which decodes nothing before a byte is there.
    while at < buf.len() {
        let mut need = 0;
        match decode(&buf[at..], lim, &mut need) {
            Ok(Some((f, used))) => {
                out.push(format!("{f:?}"));
                at += used;
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn via_reader(pieces: &[&[u8]], lim: &Limits) -> (Vec<String>, Option<ProtoError>) {
    let mut r = Reader::new(*lim);
    let mut out = Vec::new();
    for p in pieces {
        r.feed(p);
        loop {
            match r.peek() {
                Ok(Some((f, used))) => {
                    out.push(format!("{f:?}"));
                    assert!(used <= r.buffered());
                    r.consume(used);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let (lim, data) = if flags & 1 == 1 && data.len() >= 5 {
        let l = Limits {
            max_bulk: usize::from(data[0]) * 4,
            max_frame: usize::from(data[1]) * 16,
            max_elements: usize::from(data[2]),
            max_depth: usize::from(data[3] % 20),
            max_line: usize::from(data[4]) * 2,
        };
        (l, &data[5..])
    } else {
        (Limits::default(), data)
    };
    let (sizes, buf) = split_plan(data);

    let mut need = 0;
    match decode(buf, &lim, &mut need) {
        Ok(Some((f, used))) => {
            assert!(
                used > 0 && used <= buf.len(),
                "used {used} of {}",
                buf.len()
            );
            within(&f, &lim);
            let mut n2 = 0;
            assert_eq!(
                decode(&buf[..used], &lim, &mut n2),
                Ok(Some((f.clone(), used)))
            );
            // Every prefix is incomplete, and asks for no more than the frame.
            let step = (used / 64).max(1);
            let mut p = 0;
            while p < used {
                let mut n = 0;
                match decode(&buf[..p], &lim, &mut n) {
                    Ok(None) => assert!(n > p && n <= used, "prefix {p}: need {n}, frame {used}"),
                    other => panic!("prefix {p} of a {used}-byte frame: {other:?}"),
                }
                p += if p < 64 || used - p < 64 { 1 } else { step };
            }
        }
        Ok(None) => assert!(need > buf.len(), "need {need} with {} there", buf.len()),
        Err(_) => {}
    }

    // The same frames, and an error or none, however the bytes arrive (which
    // error may differ: a frame both malformed and too large is refused for
    // whichever shows first).
    let whole = sequence(buf, &lim);
    let same = |(f, e): (Vec<String>, Option<ProtoError>)| (f, e.is_some());
    let want = same(whole);
    assert_eq!(same(via_reader(&chunks(buf, &sizes), &lim)), want);
    assert_eq!(same(via_reader(&[buf], &lim)), want);

    // A command is an array of its arguments as bulk strings.
    let args: Vec<&[u8]> = buf.split(|&b| b == 0).take(8).collect();
    let mut enc: Vec<Arg<'_>> = args.iter().map(|a| Arg::B(a)).collect();
    let n = u64::from_le_bytes({
        let mut e = [0u8; 8];
        let k = buf.len().min(8);
        e[..k].copy_from_slice(&buf[..k]);
        e
    });
    enc.push(Arg::U(n));
    enc.push(Arg::I(n as i64));
    let mut out = Vec::new();
    command(&mut out, &enc);
    let mut need = 0;
    let (f, used) = decode(&out, &Limits::default(), &mut need)
        .unwrap()
        .expect("a whole command");
    assert_eq!(used, out.len());
    let items = f.items().expect("an array");
    assert_eq!(items.len(), enc.len());
    for (a, it) in args.iter().zip(items) {
        assert_eq!(it, &Frame::Bulk(a));
    }
    assert_eq!(items[args.len()].bytes(), Some(n.to_string().as_bytes()));
    assert_eq!(items[args.len() + 1].int(), Some(n as i64));
});
