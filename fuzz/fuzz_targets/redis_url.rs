//! `push_redis` URLs. Input: the URL (as UTF-8, lossily), or with a first
//! byte of 0xff a structured URL to write out and parse back.
//!
//! Checked: an accepted URL, written back in canonical form (user and
//! password %-escaped), parses to the same value; a written URL parses to
//! what was written.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use push_relay::redis::url::{RedisUrl, DEFAULT_PORT};

fn escape(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn write(u: &RedisUrl) -> String {
    let mut s = String::from("redis://");
    if let Some(p) = &u.password {
        if let Some(user) = &u.user {
            s.push_str(&escape(user));
        }
        s.push(':');
        s.push_str(&escape(p));
        s.push('@');
    }
    if u.host.contains(':') {
        s.push_str(&format!("[{}]", u.host));
    } else {
        s.push_str(&u.host);
    }
    s.push_str(&format!(":{}", u.port));
    if let Some(db) = u.db {
        s.push_str(&format!("/{db}"));
    }
    s
}

#[derive(Arbitrary, Debug)]
struct Shape {
    host: Vec<u8>,
    v6: bool,
    port: u16,
    user: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
    db: Option<u32>,
}

fuzz_target!(|data: &[u8]| {
    if let [0xff, rest @ ..] = data {
        let Ok(sh) = Shape::arbitrary(&mut Unstructured::new(rest)) else {
            return;
        };
        let alphabet: &[u8] = if sh.v6 {
            b"0123456789abcdefABCDEF:."
        } else {
            b"abcdefghijklmnopqrstuvwxyz0123456789-._"
        };
        let host: String = sh
            .host
            .iter()
            .map(|&b| alphabet[usize::from(b) % alphabet.len()] as char)
            .collect();
        if host.is_empty() || sh.port == 0 || (!sh.v6 && host.contains(':')) {
            return;
        }
        let want = RedisUrl {
            host,
            port: sh.port,
            user: sh.password.as_ref().and(sh.user.filter(|u| !u.is_empty())),
            password: sh.password,
            db: sh.db,
        };
        let text = write(&want);
        assert_eq!(RedisUrl::parse(&text), Ok(want), "{text}");
        return;
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(u) = RedisUrl::parse(&text) {
        assert!(!u.host.is_empty());
        assert_ne!(u.port, 0);
        if u.user.is_some() {
            assert!(u.password.is_some());
        }
        let again = write(&u);
        assert_eq!(
            RedisUrl::parse(&again).as_ref(),
            Ok(&u),
            "{text} -> {again}"
        );
        let _ = DEFAULT_PORT;
    }
});
