//! `push_redis redis://[[user]:password@]host[:port][/db]`: the URL parser
//! behind the directive, with the exact reasons `nginx -t` gives.
//!
//! The user and the password may carry `%XX` escapes (for `@`, `:` or `/`
//! in a password). The host is a name, an IPv4 address or a bracketed IPv6
//! address; the module resolves it. No TLS (`rediss://`), no Unix sockets,
//! no query.

/// A parsed `push_redis` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// As written, without brackets around an IPv6 address.
    pub host: String,
    pub port: u16,
    /// `None`: `AUTH` with the password only (the `default` user).
    pub user: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// `None`: no `SELECT`.
    pub db: Option<u32>,
}

pub const DEFAULT_PORT: u16 = 6379;

impl RedisUrl {
    /// How the stats name this server: `host:port[/db]`, never the
    /// credentials.
    pub fn label(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.db {
            Some(db) => format!("{host}:{}/{db}", self.port),
            None => format!("{host}:{}", self.port),
        }
    }
}

/// Why a URL is refused; `message()` is the text after
/// `push_redis "<url>": ` in nginx's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    Scheme,
    Tls,
    NoHost,
    BadHost,
    BadPort,
    BadDb,
    BadEscape,
    UserWithoutPassword,
    Trailing,
}

impl UrlError {
    pub fn message(self) -> &'static str {
        match self {
            UrlError::Scheme => "must start with \"redis://\"",
            UrlError::Tls => "TLS (\"rediss://\") is not supported",
            UrlError::NoHost => "has no host",
            UrlError::BadHost => "has an invalid host",
            UrlError::BadPort => "has an invalid port (1-65535)",
            UrlError::BadDb => "has an invalid database number (\"/0\", \"/1\", ...)",
            UrlError::BadEscape => "has an invalid %-escape",
            UrlError::UserWithoutPassword => {
                "names a user without a password (redis://user:password@host)"
            }
            UrlError::Trailing => "has a query, fragment or path after the database number",
        }
    }
}

fn unescape(s: &[u8]) -> Result<Vec<u8>, UrlError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            let hex = |b: Option<&u8>| -> Result<u8, UrlError> {
                let b = *b.ok_or(UrlError::BadEscape)?;
                (b as char)
                    .to_digit(16)
                    .map(|d| d as u8)
                    .ok_or(UrlError::BadEscape)
            };
            out.push(hex(s.get(i + 1))? << 4 | hex(s.get(i + 2))?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn host_ok(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let rest = if let Some(r) = url.strip_prefix("redis://") {
            r
        } else if url.starts_with("rediss://") {
            return Err(UrlError::Tls);
        } else {
            return Err(UrlError::Scheme);
        };
        if rest.contains(['?', '#']) {
            return Err(UrlError::Trailing);
        }
        // The userinfo ends at the last '@' (an unescaped '@' in a password
        // is taken as part of it).
        let (auth, hostpart) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.find(':') {
                None => return Err(UrlError::UserWithoutPassword),
                Some(i) => {
                    let user = unescape(&a.as_bytes()[..i])?;
                    let pass = unescape(&a.as_bytes()[i + 1..])?;
                    ((!user.is_empty()).then_some(user), Some(pass))
                }
            },
        };
        let (hostport, db) = match hostpart.find('/') {
            None => (hostpart, None),
            Some(i) => (&hostpart[..i], Some(&hostpart[i + 1..])),
        };
        let db = match db {
            None | Some("") => None,
            Some(d) if d.contains('/') => return Err(UrlError::Trailing),
            Some(d) if d.bytes().all(|b| b.is_ascii_digit()) => {
                Some(d.parse::<u32>().map_err(|_| UrlError::BadDb)?)
            }
            Some(_) => return Err(UrlError::BadDb),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']').ok_or(UrlError::BadHost)?;
            let host = &v6[..end];
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(UrlError::BadHost);
            }
            let after = &v6[end + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(UrlError::BadHost)?),
            };
            (host, port)
        } else {
            match hostport.rfind(':') {
                Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        if !hostport.starts_with('[') && !host_ok(host) {
            return Err(UrlError::BadHost);
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => return Err(UrlError::BadPort),
                    Ok(n) => n,
                }
            }
            Some(_) => return Err(UrlError::BadPort),
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            user,
            password,
            db,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(u: &str) -> RedisUrl {
        RedisUrl::parse(u).unwrap_or_else(|e| panic!("{u}: {}", e.message()))
    }

    #[test]
    fn host_port_db() {
        let u = ok("redis://127.0.0.1");
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6379, None));
        let u = ok("redis://cache.example:7000/3");
        assert_eq!(
            (u.host.as_str(), u.port, u.db),
            ("cache.example", 7000, Some(3))
        );
        let u = ok("redis://[::1]:6380/");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 6380, None));
        let u = ok("redis://[fe80::1]");
        assert_eq!((u.host.as_str(), u.port), ("fe80::1", 6379));
        assert_eq!((u.user, u.password), (None, None));
    }

    #[test]
    fn user_and_password() {
        let u = ok("redis://:s3cret@h");
        assert_eq!((u.user, u.password), (None, Some(b"s3cret".to_vec())));
        let u = ok("redis://app:p%40ss%3Aw%2Fd@h:1/0");
        assert_eq!(u.user, Some(b"app".to_vec()));
        assert_eq!(u.password, Some(b"p@ss:w/d".to_vec()));
        assert_eq!(u.db, Some(0));
        // The last '@' ends the userinfo.
        let u = ok("redis://:a@b@h");
        assert_eq!((u.password, u.host.as_str()), (Some(b"a@b".to_vec()), "h"));
        let u = ok("redis://:@h");
        assert_eq!(u.password, Some(Vec::new()));
    }

    #[test]
    fn refusals_have_exact_reasons() {
        for (u, e) in [
            ("http://h", UrlError::Scheme),
            ("h:6379", UrlError::Scheme),
            ("rediss://h", UrlError::Tls),
            ("redis://", UrlError::NoHost),
            ("redis://:6379", UrlError::NoHost),
            ("redis://:p@", UrlError::NoHost),
            ("redis://h:0", UrlError::BadPort),
            ("redis://h:65536", UrlError::BadPort),
            ("redis://h:", UrlError::BadPort),
            ("redis://h:x1", UrlError::BadPort),
            ("redis://h/x", UrlError::BadDb),
            ("redis://h/-1", UrlError::BadDb),
            ("redis://h/99999999999", UrlError::BadDb),
            ("redis://h/1/2", UrlError::Trailing),
            ("redis://h/1?x=1", UrlError::Trailing),
            ("redis://user@h", UrlError::UserWithoutPassword),
            ("redis://:%zz@h", UrlError::BadEscape),
            ("redis://:%4@h", UrlError::BadEscape),
            ("redis://ho st", UrlError::BadHost),
            ("redis://[::1", UrlError::BadHost),
            ("redis://[::1]x", UrlError::BadHost),
            ("redis://[]", UrlError::BadHost),
        ] {
            assert_eq!(RedisUrl::parse(u), Err(e), "{u}");
        }
        assert_eq!(UrlError::BadPort.message(), "has an invalid port (1-65535)");
        assert_eq!(UrlError::Scheme.message(), "must start with \"redis://\"");
    }
}
