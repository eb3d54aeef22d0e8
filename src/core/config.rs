//! Settings, read once per request from the Worker's environment (`[vars]` and secrets) through
//! a lookup function, so the core never sees `worker::Env`.

use crate::core::auth::AuthConfig;
use crate::core::caps::Capabilities;
use crate::core::origin::AllowedOrigins;
use crate::core::presence::PresenceTimes;

/// Limits that protect an object and its other clients from one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame, in bytes (`MAX_FRAME_BYTES`, default 65,536).
    pub max_frame_bytes: usize,
    /// Longest `message:send` text, in Unicode scalar values (`MAX_TEXT_CHARS`, default 4,000).
    pub max_text_chars: usize,
    /// Most messages in one history page (`HISTORY_PAGE_MAX`, default 100).
    pub history_page_max: u32,
    /// Rejected frames within a rolling minute after which the socket is closed with 4002 (`MAX_STRIKES`, default 20, at most 1,000).
    pub max_strikes: u32,
    /// How long a `typing:start` lasts without a refresh (`TYPING_TTL_MS`, default 6,000).
    pub typing_ttl_ms: u64,
    /// Most missed messages a reconnect can recover (`RECOVERY_WINDOW`, default 1,000).
    pub recovery_window: u32,
    /// Largest recovery a reconnect may replay, in bytes of frames: a room's `?since=` replay,
    /// an SSE opening or a document's `?v=` resume over it answers `recovered:false` /
    /// `resumed:false` instead (`RECOVERY_MAX_BYTES`, default 1,048,576). Also the most op bytes
    /// a document keeps in memory past its snapshot, and one `ops:get` page.
    pub recovery_max_bytes: usize,
    /// Most sockets one user may hold in one room (`MAX_SOCKETS_PER_USER`, default 10).
    pub max_sockets_per_user: usize,
    /// Most keys in a room's live state (`STATE_MAX_KEYS`, default 256).
    pub state_max_keys: usize,
    /// Largest `state:set` value as JSON, in bytes (`STATE_MAX_VALUE_BYTES`, default 16,384).
    pub state_max_value_bytes: usize,
    /// Notifications kept per user; past it the oldest read ones go first (`NOTIFY_RETENTION`,
    /// default 500).
    pub notify_retention: u64,
    /// Most users one user may watch, and most watchers one user may have (`PRESENCE_MAX_WATCH`,
    /// default 256): each is a request when a status changes.
    pub presence_max_watch: usize,
    /// Largest document, in UTF-8 bytes (`DOC_MAX_BYTES`, default 1,048,576; a snapshot is one
    /// SQLite row, which holds at most 2 MB).
    pub doc_max_bytes: usize,
    /// Messages a room keeps (`ROOM_HISTORY_MAX`, default 10,000): older ones are deleted as new
    /// ones are written; their `(user, id)` is remembered for as many messages again, so a late
    /// resend is still recognized.
    pub room_history_max: u64,
    /// How often an open event stream gets a keepalive comment (`SSE_KEEPALIVE_MS`, default
    /// 25,000), so proxies do not close an idle stream.
    pub sse_keepalive_ms: u64,
    /// Operations a document keeps for late submitters and reconnects (`DOC_LOG_RETAIN`,
    /// default 1,000): a submit based on an older version gets `snapshot_required`.
    pub doc_log_retain: u64,
    /// Most members a room lists in `room:state` and announces one by one
    /// (`ROOM_MEMBER_LIST_MAX`, default 100, 1 to 1,000). A room with more (a large room) lists
    /// that many with `memberCount`, pages the rest with `members:get`, and coalesces member
    /// changes into one `members:diff` a second.
    pub room_member_list_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_text_chars: 4000,
            history_page_max: 100,
            max_strikes: 20,
            typing_ttl_ms: 6000,
            recovery_window: 1000,
            recovery_max_bytes: 1 << 20,
            max_sockets_per_user: 10,
            state_max_keys: 256,
            state_max_value_bytes: 16 * 1024,
            notify_retention: 500,
            presence_max_watch: 256,
            doc_max_bytes: 1 << 20,
            doc_log_retain: 1000,
            room_history_max: 10_000,
            sse_keepalive_ms: 25_000,
            room_member_list_max: 100,
        }
    }
}

/// Everything configurable.
#[derive(Debug, Clone)]
pub struct Config {
    /// Token verification settings.
    pub auth: AuthConfig,
    /// The key app servers present on server routes (`SERVER_API_KEY`); `None` disables them.
    pub server_api_key: Option<String>,
    /// Capabilities of a token without a `cap` claim (`DEFAULT_CAPS`, JSON; unset: none).
    pub default_caps: Capabilities,
    /// Per-object limits.
    pub limits: Limits,
    /// When user status turns away and offline.
    pub presence: PresenceTimes,
}

/// A setting is present but unusable, or a required one is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server misconfigured: {}", self.0)
    }
}

impl Config {
    /// Reads every setting through `lookup(name)`; empty strings count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ConfigError(format!("{name} must be a whole number, got {v:?}"))),
            }
        };
        let secret = get("JWT_SECRET").ok_or_else(|| ConfigError("JWT_SECRET is not set".into()))?;
        let defaults = Limits::default();
        let presence = PresenceTimes::default();
        let default_caps = match get("DEFAULT_CAPS") {
            None => Capabilities::default(),
            Some(json) => Capabilities::parse(&json)
                .ok_or_else(|| ConfigError("DEFAULT_CAPS must be a JSON object of string arrays".into()))?,
        };
        Ok(Config {
            auth: AuthConfig {
                hs256_secret: secret.into_bytes(),
                audience: get("JWT_AUDIENCE"),
                issuer: get("JWT_ISSUER"),
                leeway_secs: number("JWT_LEEWAY_SECS", 0)? as i64,
            },
            server_api_key: get("SERVER_API_KEY"),
            default_caps,
            limits: Limits {
                max_frame_bytes: number("MAX_FRAME_BYTES", defaults.max_frame_bytes as u64)? as usize,
                max_text_chars: number("MAX_TEXT_CHARS", defaults.max_text_chars as u64)? as usize,
                history_page_max: number("HISTORY_PAGE_MAX", defaults.history_page_max.into())?.clamp(1, 1000)
                    as u32,
                max_strikes: number("MAX_STRIKES", defaults.max_strikes.into())?.clamp(1, 1_000) as u32,
                typing_ttl_ms: number("TYPING_TTL_MS", defaults.typing_ttl_ms)?.clamp(100, 600_000),
                recovery_window: number("RECOVERY_WINDOW", defaults.recovery_window.into())?.clamp(0, 100_000)
                    as u32,
                recovery_max_bytes: number("RECOVERY_MAX_BYTES", defaults.recovery_max_bytes as u64)?
                    .clamp(16 * 1024, 16 << 20) as usize,
                max_sockets_per_user: number("MAX_SOCKETS_PER_USER", defaults.max_sockets_per_user as u64)?
                    .clamp(1, 10_000) as usize,
                state_max_keys: number("STATE_MAX_KEYS", defaults.state_max_keys as u64)?.clamp(1, 100_000)
                    as usize,
                state_max_value_bytes: number("STATE_MAX_VALUE_BYTES", defaults.state_max_value_bytes as u64)?
                    .clamp(16, 1 << 20) as usize,
                notify_retention: number("NOTIFY_RETENTION", defaults.notify_retention)?.clamp(1, 100_000),
                presence_max_watch: number("PRESENCE_MAX_WATCH", defaults.presence_max_watch as u64)?
                    .clamp(1, 1000) as usize,
                doc_max_bytes: number("DOC_MAX_BYTES", defaults.doc_max_bytes as u64)?.clamp(1024, 1_800_000)
                    as usize,
                doc_log_retain: number("DOC_LOG_RETAIN", defaults.doc_log_retain)?.clamp(10, 100_000),
                room_history_max: number("ROOM_HISTORY_MAX", defaults.room_history_max)?.clamp(1, 10_000_000),
                sse_keepalive_ms: number("SSE_KEEPALIVE_MS", defaults.sse_keepalive_ms)?
                    .clamp(100, 3_600_000),
                room_member_list_max: number("ROOM_MEMBER_LIST_MAX", defaults.room_member_list_max as u64)?
                    .clamp(1, 1000) as usize,
            },
            presence: PresenceTimes {
                away_ms: number("PRESENCE_AWAY_MS", presence.away_ms)?.clamp(100, 86_400_000),
                offline_ms: number("PRESENCE_OFFLINE_MS", presence.offline_ms)?.clamp(100, 86_400_000),
                grace_ms: number("PRESENCE_GRACE_MS", presence.grace_ms)?.clamp(0, 3_600_000),
            },
        })
    }
}

/// `ALLOWED_ORIGINS`: comma-separated origins, `*` for any, empty for the Worker's own only (see
/// [`AllowedOrigins`]). Read apart from [`Config`] because every route checks it first, before
/// settings that only some routes need (`/healthz` works without `JWT_SECRET`).
pub fn allowed_origins(lookup: impl Fn(&str) -> Option<String>) -> Result<AllowedOrigins, ConfigError> {
    AllowedOrigins::parse(lookup("ALLOWED_ORIGINS").as_deref())
        .map_err(|why| ConfigError(format!("ALLOWED_ORIGINS: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let c = Config::from_lookup(lookup(&[("JWT_SECRET", "s"), ("JWT_AUDIENCE", "")])).unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.auth.audience, None);
        assert_eq!(c.server_api_key, None);
    }

    #[test]
    fn missing_secret_and_bad_numbers_are_errors() {
        assert!(Config::from_lookup(lookup(&[])).is_err());
        let err = Config::from_lookup(lookup(&[("JWT_SECRET", "s"), ("MAX_FRAME_BYTES", "lots")]));
        assert!(err.unwrap_err().0.contains("MAX_FRAME_BYTES"));
        let caps = Config::from_lookup(lookup(&[("JWT_SECRET", "s"), ("DEFAULT_CAPS", "[1]")]));
        assert!(caps.unwrap_err().0.contains("DEFAULT_CAPS"));
    }

    #[test]
    fn default_caps_are_parsed() {
        let c = Config::from_lookup(lookup(&[("JWT_SECRET", "s"), ("DEFAULT_CAPS", r#"{"*":["join"]}"#)]))
            .unwrap();
        assert!(c.default_caps.allows("room:x", "join"));
    }

    #[test]
    fn allowed_origins_setting() {
        assert_eq!(allowed_origins(lookup(&[])), Ok(AllowedOrigins::OwnOnly));
        assert_eq!(allowed_origins(lookup(&[("ALLOWED_ORIGINS", "")])), Ok(AllowedOrigins::OwnOnly));
        assert_eq!(allowed_origins(lookup(&[("ALLOWED_ORIGINS", "*")])), Ok(AllowedOrigins::Any));
        assert_eq!(
            allowed_origins(lookup(&[("ALLOWED_ORIGINS", "https://a.example, https://b.example:8443")])),
            Ok(AllowedOrigins::List(vec!["https://a.example".into(), "https://b.example:8443".into()]))
        );
        let bad = allowed_origins(lookup(&[("ALLOWED_ORIGINS", "a.example")])).unwrap_err();
        assert!(bad.0.contains("ALLOWED_ORIGINS"));
    }
}
