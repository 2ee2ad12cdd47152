//! Secrets never reach output: passwords in connection URLs (in the user info, or as a
//! `?password=` parameter) are replaced before printing.

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL that can be taken apart (`amqp:guest:secret@host`): nothing after the
        // scheme is shown when it may hold a password.
        return match url.split_once(':') {
            Some((scheme, _)) if url.contains('@') => format!("{scheme}:***"),
            _ if url.contains('@') => "***".into(),
            _ => url.to_string(),
        };
    };
    let (authority, tail) = split_authority(rest);
    let tail = redact_query(tail);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// Masks the value of every `password=` query parameter.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// The URL's password as written (percent-encoded), from the user info or a `password=` parameter.
fn raw_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let (authority, _) = split_authority(rest);
    let from_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password);
    let from_query = rest.split_once('?').and_then(|(_, q)| {
        q.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
                .map(|(_, v)| v)
        })
    });
    from_userinfo.or(from_query).filter(|p| !p.is_empty())
}

/// `user:pass@host:port` and what follows it (`/db?…`). The authority ends at the first `/` or `?`
/// after the last `@` before the query, so a password holding a `/` (base64 ones do) stays in it.
pub fn split_authority(rest: &str) -> (&str, &str) {
    let query = rest.find('?').unwrap_or(rest.len());
    let start = rest[..query].rfind('@').map_or(0, |at| at + 1);
    let end = rest[start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| start + i);
    rest.split_at(end)
}

/// The URL's password, decoded (what the server checks).
pub fn password(url: &str) -> Option<String> {
    raw_password(url).map(percent_decode)
}

/// `p%40ss` → `p@ss`; a malformed escape is kept as written.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes every occurrence of the URL's password, as written and decoded, from a message
/// (drivers and tools sometimes echo URLs).
pub fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_string();
    if let Some(raw) = raw_password(url) {
        out = out.replace(raw, "***");
        let decoded = percent_decode(raw);
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

/// A reqwest error and its causes on one line, without its URL (whose path or query may hold a
/// secret): what happened (refused, timed out, a certificate) is in the causes.
pub fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_does_not_parse_shows_no_password() {
        assert_eq!(redact_url("amqp:guest:secret@host:5672"), "amqp:***");
        assert_eq!(redact_url("guest:secret@host"), "guest:***");
        assert_eq!(redact_url("user@host"), "***");
        assert_eq!(redact_url("localhost:5672"), "localhost:5672");
    }

    #[test]
    fn passwords_are_masked() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgres://u@h/db?sslmode=require&password=s3cret",
                "postgres://u@h/db?sslmode=require&password=***",
            ),
            (
                "postgres://h/db?PASSWORD=s3cret",
                "postgres://h/db?PASSWORD=***",
            ),
            // Base64 passwords hold `/` and `+`, unencoded when pasted by hand.
            (
                "postgres://u:ab/cd+ef==@h:5432/db?sslmode=require",
                "postgres://u:***@h:5432/db?sslmode=require",
            ),
            ("amqps://u:a/b@mq/%2f", "amqps://u:***@mq/%2f"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected);
        }
        assert_eq!(
            scrub("bad password secret", "postgres://u:secret@h/db"),
            "bad password ***"
        );
        assert_eq!(
            scrub(
                "auth failed for p@ss and p%40ss",
                "postgres://u:p%40ss@h/db"
            ),
            "auth failed for *** and ***"
        );
        assert_eq!(
            scrub("no s3cret here", "postgres://u@h/db?password=s3cret"),
            "no *** here"
        );
        assert_eq!(
            scrub("failed: ab/cd+ef==", "postgres://u:ab/cd+ef==@h/db"),
            "failed: ***"
        );
    }

    #[test]
    fn passwords_are_decoded() {
        let cases = [
            ("postgres://u:p%40ss@h/db", Some("p@ss")),
            (
                "postgres://u@h/db?password=a%26b&sslmode=disable",
                Some("a&b"),
            ),
            ("postgres://u@h/db", None),
            ("postgres://u:@h/db", None),
        ];
        for (url, expected) in cases {
            assert_eq!(password(url).as_deref(), expected, "{url}");
        }
    }
}
