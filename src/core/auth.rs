//! Who is calling: token extraction from an upgrade request and JWT verification.
//!
//! Verification is pure: the caller passes `now`. Only algorithms on [`ALLOWED_ALGORITHMS`] are
//! accepted, so `alg: none` and algorithm-confusion tokens fail before any key is used. Errors
//! describe what was wrong with a token, never the token itself.

use crate::core::caps::Capabilities;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::time::Timestamp;
use chrono::{DateTime, Duration, Utc};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, TimeOptions, UntrustedToken, ValidationError};
use serde::Deserialize;

/// Algorithms a token may be signed with.
pub const ALLOWED_ALGORITHMS: &[&str] = &["HS256"];

/// The WebSocket subprotocol a browser offers next to its `bearer.<jwt>` entry.
pub const SUBPROTOCOL: &str = "switchboard.v1";

/// Prefix of the subprotocol entry that carries a token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// How tokens are verified.
#[derive(Clone)]
pub struct AuthConfig {
    /// HS256 shared secret (`JWT_SECRET`).
    pub hs256_secret: Vec<u8>,
    /// Required `aud` (`JWT_AUDIENCE`), when set.
    pub audience: Option<String>,
    /// Required `iss` (`JWT_ISSUER`), when set.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (`JWT_LEEWAY_SECS`, default 0).
    pub leeway_secs: i64,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("hs256_secret", &"<redacted>")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user: UserId,
    /// The token's `exp`.
    pub expires: Timestamp,
    /// The token's `cap` claim, when it has one.
    pub caps: Option<Capabilities>,
    /// The token's `friends` claim: the users whose status this user may watch.
    pub friends: Option<Vec<UserId>>,
}

impl Identity {
    /// The token's capabilities, or `default` when it states none.
    pub fn caps_or<'a>(&'a self, default: &'a Capabilities) -> &'a Capabilities {
        self.caps.as_ref().unwrap_or(default)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CustomClaims {
    sub: Option<String>,
    aud: Option<Audience>,
    iss: Option<String>,
    cap: Option<Capabilities>,
    friends: Option<Vec<String>>,
}

fn unauthorized(message: &str) -> Error {
    Error::new(ErrorCode::Unauthorized, message)
}

/// Verifies `token` at time `now` and returns who it names.
pub fn verify(token: &str, config: &AuthConfig, now: Timestamp) -> Result<Identity, Error> {
    let untrusted = UntrustedToken::new(token).map_err(|_| unauthorized("malformed token"))?;
    if !ALLOWED_ALGORITHMS.contains(&untrusted.algorithm()) {
        return Err(unauthorized("token algorithm is not allowed"));
    }
    let key = Hs256Key::new(&config.hs256_secret);
    let token = Hs256.validator::<CustomClaims>(&key).validate(&untrusted).map_err(|e| match e {
        ValidationError::MalformedClaims(_) => unauthorized("malformed token claims"),
        ValidationError::AlgorithmMismatch { .. } => unauthorized("token algorithm is not allowed"),
        _ => unauthorized("bad token signature"),
    })?;
    let claims: &Claims<CustomClaims> = token.claims();

    let now_dt = DateTime::<Utc>::from_timestamp_millis(i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
        .ok_or_else(|| Error::new(ErrorCode::Internal, "clock out of range"))?;
    let leeway = Duration::try_seconds(config.leeway_secs.clamp(0, 86_400)).unwrap_or_default();
    let time = TimeOptions::new(leeway, move || now_dt);
    claims.validate_expiration(&time).map_err(|e| match e {
        ValidationError::NoClaim(_) => unauthorized("token has no exp claim"),
        _ => unauthorized("token expired"),
    })?;
    if claims.not_before.is_some() {
        claims.validate_maturity(&time).map_err(|_| unauthorized("token is not valid yet (nbf)"))?;
    }
    let custom = &claims.custom;
    if let Some(wanted) = &config.audience {
        if !custom.aud.as_ref().is_some_and(|aud| aud.contains(wanted)) {
            return Err(unauthorized("token audience does not match"));
        }
    }
    if let Some(wanted) = &config.issuer {
        if custom.iss.as_deref() != Some(wanted.as_str()) {
            return Err(unauthorized("token issuer does not match"));
        }
    }
    let sub = custom.sub.as_deref().ok_or_else(|| unauthorized("token has no sub claim"))?;
    let user = UserId::parse(sub).map_err(|e| unauthorized(&format!("token sub {e}")))?;
    let expires_ms = claims.expiration.map(|exp| exp.timestamp_millis().max(0) as u64).unwrap_or(0);
    let friends = custom
        .friends
        .as_ref()
        .map(|ids| ids.iter().map(|id| UserId::parse(id)).collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(|e| unauthorized(&format!("token friends claim: every id {e}")))?;
    Ok(Identity { user, expires: Timestamp(expires_ms), caps: custom.cap.clone(), friends })
}

/// The credentials an upgrade request carries, and the subprotocol to echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeCredentials {
    /// The raw token, if any place held one.
    pub token: Option<String>,
    /// The subprotocol to echo in `Sec-WebSocket-Protocol` (never the token entry).
    pub protocol: Option<&'static str>,
}

/// Finds the token in, by preference, `Authorization: Bearer`, a `bearer.<jwt>` subprotocol
/// entry, or `?token=`; and decides which subprotocol to echo.
///
/// A client that offers subprotocols must offer [`SUBPROTOCOL`]: a browser fails the handshake
/// when the server echoes none, so offering only `bearer.<jwt>` is answered with 400 instead.
pub fn upgrade_credentials(
    authorization: Option<&str>,
    protocols: Option<&str>,
    query_token: Option<&str>,
) -> Result<UpgradeCredentials, Error> {
    let offered: Vec<&str> =
        protocols.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let protocol_token = offered.iter().find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX));
    let protocol = if offered.is_empty() {
        None
    } else if offered.contains(&SUBPROTOCOL) {
        Some(SUBPROTOCOL)
    } else {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!("offer the subprotocol {SUBPROTOCOL} next to any bearer.<token> entry"),
        ));
    };
    let header_token = match authorization {
        None => None,
        Some(value) => match value.trim().split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Some(rest.trim()),
            _ => return Err(unauthorized("Authorization header must be 'Bearer <token>'")),
        },
    };
    let token = header_token.or(protocol_token).or(query_token).filter(|t| !t.is_empty());
    Ok(UpgradeCredentials { token: token.map(str::to_owned), protocol })
}

/// Verifies the credentials of an upgrade request: 401 when no valid token is present.
pub fn authenticate(
    creds: &UpgradeCredentials,
    config: &AuthConfig,
    now: Timestamp,
) -> Result<Identity, Error> {
    let token = creds.token.as_deref().ok_or_else(|| unauthorized("missing token"))?;
    verify(token, config, now)
}

/// Who is calling an HTTP route that app servers and users share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An app server, with the server key.
    Server,
    /// A user, with a valid token.
    User(Identity),
}

/// Identifies the caller of an HTTP route that app servers and users share: the server key
/// (`Authorization: Bearer <key>`), else a user token as [`http_user`] reads it.
pub fn http_caller(
    authorization: Option<&str>,
    query_token: Option<&str>,
    server_api_key: Option<&str>,
    config: &AuthConfig,
    now: Timestamp,
) -> Result<Caller, Error> {
    if check_server_key(authorization, server_api_key).is_ok() {
        return Ok(Caller::Server);
    }
    http_user(authorization, query_token, config, now).map(Caller::User)
}

/// The user calling an HTTP route that only users call: a token from `Authorization` or
/// `?token=` (a server key there is just an invalid token).
pub fn http_user(
    authorization: Option<&str>,
    query_token: Option<&str>,
    config: &AuthConfig,
    now: Timestamp,
) -> Result<Identity, Error> {
    authenticate(&upgrade_credentials(authorization, None, query_token)?, config, now)
}

/// Checks `Authorization: Bearer <key>` against the configured server key in constant time.
/// Without a configured key, server routes are closed.
pub fn check_server_key(authorization: Option<&str>, configured: Option<&str>) -> Result<(), Error> {
    let configured =
        configured.ok_or_else(|| unauthorized("server routes are disabled: SERVER_API_KEY is not set"))?;
    let presented = authorization
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or_else(|| unauthorized("missing server key"))?;
    if constant_time_eq(presented.as_bytes(), configured.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("wrong server key"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret; the contents are compared without an early exit.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
