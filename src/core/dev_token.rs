//! Dev-only sign-in: `POST /v1/dev/token {"user"}` mints a short-lived token for any user id,
//! so the demo page (and `curl`) can sign in without an app server.
//!
//! It exists only where the `DEV_TOKENS` setting turns it on (`.dev.vars.example` does,
//! `wrangler.toml` never does); otherwise the route is answered like any unknown path (404).
//! Anyone who can reach a service with it on can act as every user, so it is for local
//! development only. Minting is pure: the caller passes `now`.

use crate::core::auth::AuthConfig;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::time::Timestamp;
use chrono::DateTime;
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde::{Deserialize, Serialize};

/// Lifetime of a minted token when the request names none, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 900;
/// Shortest lifetime a request may ask for, in seconds.
pub const MIN_TTL_SECS: u64 = 10;
/// Longest lifetime a request may ask for, in seconds.
pub const MAX_TTL_SECS: u64 = 3600;
/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024;

/// Whether the `DEV_TOKENS` setting turns the route on: `1`, `true`, `yes` or `on` (any case).
/// Unset, empty or anything else is off.
pub fn enabled(setting: Option<&str>) -> bool {
    setting.is_some_and(|v| {
        let v = v.trim();
        ["1", "true", "yes", "on"].iter().any(|on| v.eq_ignore_ascii_case(on))
    })
}

/// Whether a request from `origin` may mint a token: the Worker's own pages (`own`, its scheme
/// and host), pages on this machine (a local front end on another port) and callers without an
/// `Origin` (curl, scripts), whatever `ALLOWED_ORIGINS` says: `.dev.vars` allows every origin,
/// and a site a developer visits must not be able to sign in as anyone on their server.
pub fn origin_may_mint(origin: Option<&str>, own: &str) -> bool {
    let Some(origin) = origin else { return true };
    if origin.eq_ignore_ascii_case(own) {
        return true;
    }
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => rest,
    };
    ["localhost", "127.0.0.1", "[::1]"].iter().any(|local| host.eq_ignore_ascii_case(local))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    user: String,
    ttl: Option<u64>,
}

/// The claims of a minted token: `sub`, plus `aud` and `iss` when the service checks them. No
/// `cap` claim, so the token gets `DEFAULT_CAPS`.
#[derive(Debug, Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// The answer of the route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minted {
    /// The JWT (HS256 with `JWT_SECRET`).
    pub token: String,
    /// The user it names (`sub`).
    pub user: UserId,
    /// When it expires, milliseconds since the epoch (`exp` is whole seconds).
    pub expires: Timestamp,
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::BadRequest, message)
}

/// Mints a token for the `{"user", "ttl"?}` request `body` at time `now`: 400 for a body that is
/// not that object, an invalid user id or a `ttl` outside [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
pub fn mint(body: &str, auth: &AuthConfig, now: Timestamp) -> Result<Minted, Error> {
    let request: MintRequest = serde_json::from_str(body)
        .map_err(|e| bad(format!("expected {{\"user\": \"<id>\", \"ttl\"?: <seconds>}}: {e}")))?;
    let user = UserId::parse(&request.user).map_err(|e| bad(format!("bad user id: {e}")))?;
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL_SECS);
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
        return Err(bad(format!("ttl must be {MIN_TTL_SECS} to {MAX_TTL_SECS} seconds, got {ttl}")));
    }
    let now_secs = now.as_millis() / 1000;
    let expires_secs = now_secs + ttl;
    let time = |secs: u64| {
        DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
            .ok_or_else(|| Error::new(ErrorCode::Internal, "clock out of range"))
    };
    let mut claims = Claims::new(DevClaims {
        sub: user.as_str(),
        aud: auth.audience.as_deref(),
        iss: auth.issuer.as_deref(),
    });
    claims.expiration = Some(time(expires_secs)?);
    claims.issued_at = Some(time(now_secs)?);
    let key = Hs256Key::new(&auth.hs256_secret);
    let token = Hs256
        .token(&Header::empty(), &claims, &key)
        .map_err(|_| Error::new(ErrorCode::Internal, "could not sign the token"))?;
    Ok(Minted { token, user, expires: Timestamp(expires_secs * 1000) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::verify;

    #[test]
    fn only_own_pages_and_callers_without_an_origin_may_mint() {
        let own = "http://127.0.0.1:8787";
        assert!(origin_may_mint(None, own));
        assert!(origin_may_mint(Some("http://127.0.0.1:8787"), own));
        assert!(origin_may_mint(Some("http://localhost:5173"), own), "a local front end");
        assert!(origin_may_mint(Some("http://[::1]:3000"), own));
        assert!(!origin_may_mint(Some("https://evil.example"), own));
        assert!(!origin_may_mint(Some("http://localhost.evil.example"), own));
        assert!(!origin_may_mint(Some("http://127.0.0.1.evil.example:80"), own));
        assert!(!origin_may_mint(Some("null"), own));
        assert!(!origin_may_mint(Some("file://"), own));
    }

    fn auth() -> AuthConfig {
        AuthConfig { hs256_secret: b"dev-secret".to_vec(), audience: None, issuer: None, leeway_secs: 0 }
    }

    const NOW: Timestamp = Timestamp(1_764_106_200_123);

    #[test]
    fn the_setting_turns_it_on_only_when_it_says_so() {
        for on in ["1", "true", "TRUE", " yes ", "on"] {
            assert!(enabled(Some(on)), "{on:?}");
        }
        for off in [None, Some(""), Some("0"), Some("false"), Some("off"), Some("no"), Some("enabled")] {
            assert!(!enabled(off), "{off:?}");
        }
    }

    #[test]
    fn a_minted_token_verifies_as_that_user_until_it_expires() {
        let minted = mint(r#"{"user": "alice"}"#, &auth(), NOW).unwrap();
        assert_eq!(minted.user.as_str(), "alice");
        assert_eq!(minted.expires, Timestamp((NOW.as_millis() / 1000 + DEFAULT_TTL_SECS) * 1000));
        let identity = verify(&minted.token, &auth(), NOW).unwrap();
        assert_eq!(identity.user.as_str(), "alice");
        assert_eq!(identity.expires, minted.expires);
        // No `cap` claim: DEFAULT_CAPS decides what it may do.
        assert_eq!(identity.caps, None);
        let later = Timestamp(minted.expires.as_millis() + 1000);
        assert_eq!(verify(&minted.token, &auth(), later).unwrap_err().message, "token expired");
        // Another secret does not accept it.
        let other = AuthConfig { hs256_secret: b"other".to_vec(), ..auth() };
        assert_eq!(verify(&minted.token, &other, NOW).unwrap_err().code, ErrorCode::Unauthorized);
    }

    #[test]
    fn ttl_is_bounded() {
        let minted = mint(r#"{"user": "bob", "ttl": 60}"#, &auth(), NOW).unwrap();
        assert_eq!(minted.expires, Timestamp((NOW.as_millis() / 1000 + 60) * 1000));
        for ttl in [0, MIN_TTL_SECS - 1, MAX_TTL_SECS + 1] {
            let e = mint(&format!(r#"{{"user": "bob", "ttl": {ttl}}}"#), &auth(), NOW).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{ttl}");
        }
    }

    #[test]
    fn audience_and_issuer_are_set_when_the_service_checks_them() {
        let strict = AuthConfig { audience: Some("rt".into()), issuer: Some("app".into()), ..auth() };
        let minted = mint(r#"{"user": "carol"}"#, &strict, NOW).unwrap();
        assert_eq!(verify(&minted.token, &strict, NOW).unwrap().user.as_str(), "carol");
    }

    #[test]
    fn bad_requests_are_refused() {
        for body in [
            "",
            "[]",
            "{}",
            r#"{"user": 7}"#,
            r#"{"user": "a b"}"#,
            r#"{"user": ""}"#,
            r#"{"user": "a", "cap": {}}"#,
        ] {
            assert_eq!(mint(body, &auth(), NOW).unwrap_err().code, ErrorCode::BadRequest, "{body}");
        }
    }
}
