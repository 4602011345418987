//! Keeping passwords out of every text the engine shows: URLs with their passwords
//! masked ([`redact`]), and the passwords a URL carries ([`Secrets`]) to scrub from
//! driver messages and log lines.
//!
//! A URL carries a password in its userinfo (`user:password@host`, raw or
//! percent-encoded) or in a query parameter (`password=`, `pass=`, `pwd=`,
//! `sslpassword=`, any case). A password with a raw `/`, `?`, `#` or `@` makes the URL
//! malformed: then everything from the first `:` after `://` up to the last `@` is
//! masked, and so is the whole query, since nothing tells where the password ends.

use std::sync::RwLock;

/// What a password is replaced with.
pub const MASK: &str = "***";

/// Query parameters whose value is a password (compared case-insensitively).
const SECRET_PARAMS: [&str; 4] = ["password", "pass", "pwd", "sslpassword"];

/// Passwords shorter than this are scrubbed from free text only as whole words, so a
/// one-letter password does not mangle every message.
const SHORT: usize = 4;

/// A URL cut where passwords may hide.
struct Parts<'a> {
    /// `scheme://` (or `scheme:`, or nothing).
    prefix: &'a str,
    /// Everything between the prefix and the last `@` of the userinfo, if any.
    userinfo: Option<&'a str>,
    /// Host, port and path.
    rest: &'a str,
    /// The query without its `?` (up to the end of the URL, fragment included).
    query: Option<&'a str>,
    /// False when the URL is malformed around its userinfo: then the query is masked
    /// whole and a userinfo without `:` is masked too.
    well_formed: bool,
}

fn split(url: &str) -> Parts<'_> {
    let scheme_len = url
        .find(':')
        .filter(|&i| {
            i > 0
                && url[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        })
        .unwrap_or(0);
    let (scheme, after) = if scheme_len > 0 {
        (&url[..scheme_len], &url[scheme_len + 1..])
    } else {
        ("", url)
    };
    let hierarchical = after.starts_with("//");
    let prefix_len = if scheme_len == 0 {
        0
    } else if hierarchical {
        scheme_len + 3
    } else {
        scheme_len + 1
    };
    let (prefix, body) = url.split_at(prefix_len);
    // `sqlite:///path` is a path: an `@` there is part of a file name, not a credential.
    let last_at = if scheme.eq_ignore_ascii_case("sqlite") && body.starts_with('/') {
        None
    } else {
        body.rfind('@')
    };
    let authority_end = body.find(['/', '?', '#']).unwrap_or(body.len());
    let (userinfo, rest, well_formed) = match last_at {
        Some(at) => (
            Some(&body[..at]),
            &body[at + 1..],
            hierarchical && at < authority_end && url::Url::parse(url).is_ok(),
        ),
        None => (None, body, true),
    };
    let (rest, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    Parts {
        prefix,
        userinfo,
        rest,
        query,
        well_formed,
    }
}

/// The user shown in place of `userinfo` (`user:***`, or `***` when nothing is safe to
/// show), or `None` when the userinfo holds no password.
fn masked_userinfo(userinfo: &str, well_formed: bool) -> Option<String> {
    match userinfo.split_once(':') {
        Some((user, _)) => Some(format!("{user}:{MASK}")),
        None if well_formed => None,
        None => Some(MASK.to_owned()),
    }
}

/// The `key=value` pairs of a query, where a secret's value runs on across `&`s that
/// do not start another `key=` (a raw `&` inside a password).
fn pairs(query: &str) -> Vec<&str> {
    let key_of = |pair: &str| is_secret_key(pair.split('=').next().unwrap_or(""));
    let mut out = Vec::new();
    let mut start = 0;
    let mut secret = key_of(query);
    for (i, _) in query.match_indices('&') {
        let next = &query[i + 1..];
        let starts_pair = next
            .split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && !k.contains('&'));
        if secret && !starts_pair {
            continue;
        }
        out.push(&query[start..i]);
        start = i + 1;
        secret = key_of(next);
    }
    out.push(&query[start..]);
    out
}

fn is_secret_key(raw: &str) -> bool {
    let key = decode(raw, true);
    SECRET_PARAMS
        .iter()
        .any(|s| key.trim().eq_ignore_ascii_case(s))
}

/// Replaces the password of a URL with `***`: its userinfo password and the value of
/// every password query parameter. Safe on any input, malformed URLs included.
pub fn redact(url: &str) -> String {
    let parts = split(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(parts.prefix);
    if let Some(userinfo) = parts.userinfo {
        match masked_userinfo(userinfo, parts.well_formed) {
            Some(masked) => out.push_str(&masked),
            None => out.push_str(userinfo),
        }
        out.push('@');
    }
    out.push_str(parts.rest);
    if let Some(query) = parts.query {
        out.push('?');
        if !parts.well_formed {
            out.push_str(MASK);
            return out;
        }
        let masked: Vec<String> = pairs(query)
            .into_iter()
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    out
}

/// Percent-decodes `s` (and `+` as a space when `plus`), lossily as UTF-8.
fn decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) if plus => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The passwords one URL carries, as written and decoded, to scrub from any text.
#[derive(Clone, Debug, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Every password of `url`: its userinfo password and password query values, each
    /// as written, percent-decoded and (query values) with `+` read as a space.
    pub fn of(url: &str) -> Self {
        let parts = split(url);
        let mut found = Vec::new();
        if let Some(userinfo) = parts.userinfo {
            match userinfo.split_once(':') {
                Some((_, password)) => found.push((password, false)),
                None if !parts.well_formed => found.push((userinfo, false)),
                None => {}
            }
        }
        if let Some(query) = parts.query {
            for pair in pairs(query) {
                if let Some((key, value)) = pair.split_once('=') {
                    if !parts.well_formed || is_secret_key(key) {
                        found.push((value, true));
                        // The driver stops at the first `&`: that part is its password.
                        found.push((value.split('&').next().unwrap_or(""), true));
                        found.push((value.split('#').next().unwrap_or(""), true));
                    }
                }
            }
        }
        let mut secrets = Vec::new();
        for (raw, is_query) in found {
            for text in [raw.to_owned(), decode(raw, false), decode(raw, is_query)] {
                if !text.is_empty() && !secrets.contains(&text) {
                    secrets.push(text);
                }
            }
        }
        // Longest first, so a password that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self(secrets)
    }

    /// True when the URL carries no password.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every password replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        scrub_all(text, &self.0)
    }
}

fn scrub_all(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if secret.len() >= SHORT {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        } else {
            out = replace_words(&out, secret);
        }
    }
    out
}

/// Replaces `word` in `text` where it is not part of a longer alphanumeric word.
fn replace_words(text: &str, word: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(word) {
        if i < last {
            continue;
        }
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let inside = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        if !inside(before) && !inside(after) {
            out.push_str(&text[last..i]);
            out.push_str(MASK);
            last = i + word.len();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Every password of every URL this process opened (see [`remember`]).
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds the passwords of `url` to those [`scrub_known`] removes (log lines).
pub fn remember(url: &str) {
    let secrets = Secrets::of(url);
    if secrets.is_empty() {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    for secret in secrets.0 {
        if !known.contains(&secret) {
            known.push(secret);
        }
    }
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` without any password of a URL this process opened; `None` when there was
/// nothing to replace.
pub fn scrub_known(text: &str) -> Option<String> {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    if known.is_empty() {
        return None;
    }
    let out = scrub_all(text, &known);
    (out != text).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords() {
        assert_eq!(redact("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
        assert_eq!(redact("sqlite:///a:b@c.db"), "sqlite:///a:b@c.db");
        assert_eq!(redact("sqlite://a:pw@c/db"), "sqlite://a:***@c/db");
        assert_eq!(redact("mysql://u:p@ss@h/db"), "mysql://u:***@h/db");
        assert_eq!(
            redact("postgres://u:a%2Fb@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }

    #[test]
    fn malformed_urls_mask_up_to_the_last_at_and_the_query() {
        for url in [
            "postgres://app:ab/S3cretPW@127.0.0.1:5432/test",
            "postgres://app:ab#S3cretPW@127.0.0.1:5432/test",
            "postgres://app:ab?S3cretPW@127.0.0.1:5432/test",
            "postgres://app:12/S3cretPW@127.0.0.1:5432/test?x=1",
            "postgres://app:S3cretPW@127.0.0.1:notaport/test?password=S3cretPW",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("S3cretPW"), "{url} -> {shown}");
            assert!(
                shown.starts_with("postgres://app:***@127.0.0.1:"),
                "{shown}"
            );
        }
        assert_eq!(
            redact("postgres://a/S3cretPW@h/db?sslmode=require"),
            "postgres://***@h/db?***"
        );
        assert_eq!(redact("postgres:app:S3cretPW@h"), "postgres:app:***@h");
    }

    #[test]
    fn query_passwords() {
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&PassWord=S3cret&x=1"),
            "postgres://u@h/db?sslmode=require&PassWord=***&x=1"
        );
        assert_eq!(
            redact("mysql://u@h/db?pwd=a&b&ssl-mode=disabled"),
            "mysql://u@h/db?pwd=***&ssl-mode=disabled"
        );
        assert_eq!(
            redact("postgres://u@h/db?sslpassword=k%20y&pass=z"),
            "postgres://u@h/db?sslpassword=***&pass=***"
        );
        assert_eq!(
            redact("postgres://u@h/db?pass%77ord=z"),
            "postgres://u@h/db?pass%77ord=***"
        );
    }

    #[test]
    fn secrets_are_scrubbed_raw_and_decoded() {
        let s = Secrets::of("postgres://u:a%2FS3cret%20x@h/db?password=q+w%21e");
        assert_eq!(
            s.scrub("pw a/S3cret x and a%2FS3cret%20x"),
            "pw *** and ***"
        );
        assert_eq!(s.scrub("got q w!e or q+w!e"), "got *** or ***");
        let short = Secrets::of("redis://:ab@h/0");
        assert_eq!(short.scrub("about ab, (ab)"), "about ***, (***)");
        assert!(Secrets::of("redis://h/0").is_empty());
    }
}
