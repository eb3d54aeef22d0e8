//! Which browser origins may call the service (`ALLOWED_ORIGINS`), and the CORS headers that tell
//! a browser so.
//!
//! Tokens are bearer tokens, not cookies, so a foreign page cannot borrow a user's session; the
//! check still matters because a page that holds a token (or a query-string `?token=` it found)
//! should only be usable from the sites the operator lists. Requests without an `Origin` header
//! (app servers, native apps, `curl`) are not browsers acting for a page and are not checked.
//!
//! Origins compare as `scheme://host[:port]`: scheme and host case-insensitively, a default port
//! (`:80` for http/ws, `:443` for https/wss) equal to none, a trailing `/` ignored.

use crate::core::error::{Error, ErrorCode};

/// The `ALLOWED_ORIGINS` setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// `*`: any origin (the dev configuration).
    Any,
    /// Empty (the default): the Worker's own origin only.
    #[default]
    OwnOnly,
    /// Listed origins, normalized, besides the Worker's own.
    List(Vec<String>),
}

/// Headers a browser needs on a preflight; `content-type` is there because JSON bodies are not
/// a "simple" request, the others are the headers the routes read.
pub const ALLOW_HEADERS: &str = "authorization, content-type, idempotency-key, last-event-id";
/// How long a browser may cache a preflight answer, in seconds (Chromium caps it at 7,200).
pub const MAX_AGE_SECS: &str = "7200";

impl AllowedOrigins {
    /// Parses the comma-separated setting; `None` or blank means own origin only. An entry that
    /// is not an origin (a path, `null`, no scheme) is an error, so a typo does not silently
    /// lock a site out.
    pub fn parse(setting: Option<&str>) -> Result<AllowedOrigins, String> {
        let entries: Vec<&str> =
            setting.unwrap_or("").split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.contains(&"*") {
            return Ok(AllowedOrigins::Any);
        }
        if entries.is_empty() {
            return Ok(AllowedOrigins::OwnOnly);
        }
        entries
            .iter()
            .map(|e| {
                normalize(e).ok_or_else(|| format!("{e:?} is not an origin like https://app.example.com"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowedOrigins::List)
    }

    /// Decides on a request's `Origin` header. `own` is the request URL's origin.
    ///
    /// `Ok(None)`: no `Origin`, nothing to check and no CORS headers. `Ok(Some(origin))`: allowed;
    /// the value to echo in `Access-Control-Allow-Origin` (verbatim: browsers compare it exactly).
    /// `Err`: 403 `forbidden`.
    pub fn check<'a>(&self, origin: Option<&'a str>, own: &str) -> Result<Option<&'a str>, Error> {
        let Some(origin) = origin else { return Ok(None) };
        if *self == AllowedOrigins::Any {
            return Ok(Some(origin));
        }
        let allowed = normalize(origin).is_some_and(|o| {
            normalize(own).as_ref() == Some(&o)
                || matches!(self, AllowedOrigins::List(list) if list.contains(&o))
        });
        if allowed {
            Ok(Some(origin))
        } else {
            // The message names the origin (cut short) so an operator sees what to list.
            let shown: String = origin.chars().take(100).collect();
            Err(Error::new(
                ErrorCode::Forbidden,
                format!("origin {shown:?} is not allowed (ALLOWED_ORIGINS)"),
            ))
        }
    }
}

/// `scheme://host[:port]` in lower case without a default port, or `None` when `s` is not an
/// origin (`null`, a path, a query, user info, a bad port, an empty host).
fn normalize(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_suffix('/').unwrap_or(s);
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // An IPv6 host is bracketed and holds colons; the port is after the closing bracket.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            let addr_ok =
                !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'));
            if !addr_ok {
                return None;
            }
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            };
            let host_ok = !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !host_ok {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Some(match port {
        Some(p) if Some(p) != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Headers of a preflight (`OPTIONS`) answer for the allowed `origin` on a route taking
/// `methods` (e.g. `"GET, POST"`).
pub fn preflight_headers(origin: &str, methods: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-allow-methods", format!("{methods}, OPTIONS")),
        ("access-control-allow-headers", ALLOW_HEADERS.to_owned()),
        ("access-control-max-age", MAX_AGE_SECS.to_owned()),
        ("vary", "Origin".to_owned()),
    ]
}

/// Headers of every other answer to the allowed `origin`: without `Access-Control-Allow-Origin`
/// a browser hides the response (errors included) from the page; `Retry-After` is exposed so a
/// page can back off.
pub fn response_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-expose-headers", "Retry-After".to_owned()),
        ("vary", "Origin".to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://switchboard.example.workers.dev";

    fn allowed(setting: &str, origin: &str) -> bool {
        AllowedOrigins::parse(Some(setting)).unwrap().check(Some(origin), OWN).is_ok()
    }

    #[test]
    fn no_origin_is_not_checked() {
        let list = AllowedOrigins::parse(Some("")).unwrap();
        assert_eq!(list.check(None, OWN), Ok(None));
    }

    #[test]
    fn own_origin_is_always_allowed() {
        for setting in ["", "https://app.example"] {
            assert!(allowed(setting, OWN), "{setting}");
            assert!(allowed(setting, "HTTPS://Switchboard.Example.Workers.Dev"), "{setting}");
            assert!(allowed(setting, "https://switchboard.example.workers.dev:443"), "{setting}");
            assert!(allowed(setting, "https://switchboard.example.workers.dev/"), "{setting}");
        }
        // Another scheme or port is another origin.
        assert!(!allowed("", "http://switchboard.example.workers.dev"));
        assert!(!allowed("", "https://switchboard.example.workers.dev:8443"));
        // Own origin with a port, as under wrangler dev.
        let dev = AllowedOrigins::default();
        assert!(dev.check(Some("http://127.0.0.1:8787"), "http://127.0.0.1:8787").is_ok());
        assert!(dev.check(Some("http://127.0.0.1:8788"), "http://127.0.0.1:8787").is_err());
        assert!(dev.check(Some("http://localhost:8787"), "http://127.0.0.1:8787").is_err());
    }

    #[test]
    fn empty_list_allows_only_own_origin() {
        assert_eq!(AllowedOrigins::parse(None), Ok(AllowedOrigins::OwnOnly));
        assert_eq!(AllowedOrigins::parse(Some(" , ")), Ok(AllowedOrigins::OwnOnly));
        let e = AllowedOrigins::OwnOnly.check(Some("https://evil.example"), OWN).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(e.http_status(), 403);
        assert!(e.message.contains("https://evil.example"));
    }

    #[test]
    fn listed_origins_are_allowed_with_case_slash_and_default_port_differences() {
        let setting = "https://App.Example/, http://localhost:3000 ,https://admin.example:443";
        assert_eq!(
            AllowedOrigins::parse(Some(setting)),
            Ok(AllowedOrigins::List(vec![
                "https://app.example".into(),
                "http://localhost:3000".into(),
                "https://admin.example".into()
            ]))
        );
        assert!(allowed(setting, "https://app.example"));
        assert!(allowed(setting, "https://APP.example:443"));
        assert!(allowed(setting, "http://localhost:3000"));
        assert!(allowed(setting, "https://admin.example"));
        assert!(!allowed(setting, "http://app.example"));
        assert!(!allowed(setting, "https://app.example:8443"));
        assert!(!allowed(setting, "http://localhost:3001"));
        assert!(!allowed(setting, "https://sub.app.example"));
        assert!(!allowed(setting, "https://app.example.evil.example"));
    }

    #[test]
    fn star_allows_any_origin_and_echoes_it() {
        let any = AllowedOrigins::parse(Some("https://a.example, *")).unwrap();
        assert_eq!(any, AllowedOrigins::Any);
        assert_eq!(any.check(Some("https://evil.example"), OWN), Ok(Some("https://evil.example")));
        assert_eq!(any.check(Some("null"), OWN), Ok(Some("null")));
    }

    #[test]
    fn null_and_garbage_origins_are_refused() {
        for origin in [
            "null",
            "",
            "garbage",
            "https://",
            "https://app.example/path",
            "https://user@app.example",
            "https://app.example:99999",
            "https://app.example:",
            "https://app.example:8o",
            "://app.example",
            "1http://app.example",
            "https://app example",
            "https://app.example?x=1",
            "https://[::1",
            "ｈttps://app.example",
        ] {
            assert!(!allowed("https://app.example", origin), "{origin:?}");
        }
        // The echo of an allowed origin is verbatim.
        let list = AllowedOrigins::parse(Some("https://app.example")).unwrap();
        assert_eq!(list.check(Some("https://APP.example"), OWN), Ok(Some("https://APP.example")));
    }

    #[test]
    fn ipv6_origins_compare_by_address_and_port() {
        let list = AllowedOrigins::parse(Some("http://[::1]:8787")).unwrap();
        assert!(list.check(Some("http://[::1]:8787"), OWN).is_ok());
        assert!(list.check(Some("http://[::1]"), OWN).is_err());
        assert!(list.check(Some("http://[::1]x"), OWN).is_err());
        assert!(list.check(Some("http://[]:8787"), OWN).is_err());
        assert!(list.check(Some("http://[zz]:8787"), OWN).is_err());
        assert!(list.check(Some("http://a]b:8787"), OWN).is_err());
    }

    #[test]
    fn entries_that_are_not_origins_are_setting_errors() {
        for setting in ["null", "app.example", "https://app.example/path", "https://a.example, nope"] {
            assert!(AllowedOrigins::parse(Some(setting)).is_err(), "{setting}");
        }
    }

    #[test]
    fn cors_headers() {
        let pre = preflight_headers("https://app.example", "GET, POST");
        let get = |name: &str| pre.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("access-control-allow-origin"), Some("https://app.example"));
        assert_eq!(get("access-control-allow-methods"), Some("GET, POST, OPTIONS"));
        for h in ["authorization", "content-type", "idempotency-key", "last-event-id"] {
            assert!(get("access-control-allow-headers").is_some_and(|v| v.contains(h)), "{h}");
        }
        assert_eq!(get("access-control-max-age"), Some("7200"));
        assert_eq!(get("vary"), Some("Origin"));
        let res = response_headers("https://app.example");
        assert!(res.contains(&("access-control-expose-headers", "Retry-After".into())));
        assert!(res.contains(&("vary", "Origin".into())));
    }
}
