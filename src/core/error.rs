//! Every error code, close code and HTTP error the service emits, in one place.
//!
//! Client authors read these names in `docs/protocol.md`; a code, once shipped, keeps its
//! meaning. Messages are for humans and may change; they never contain a token.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code carried in `reply` and `error` frames and in HTTP
/// error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not a JSON object envelope with a string `t` (or is binary).
    BadFrame,
    /// The envelope is fine but `t` names no event the server knows.
    UnknownEvent,
    /// The event is known but its `d` is missing a field or has a wrong type or value.
    BadRequest,
    /// The frame, text or body is over a configured limit.
    TooLarge,
    /// No valid token: missing, malformed, bad signature, wrong algorithm, expired, not yet valid.
    Unauthorized,
    /// The token is valid but does not allow this.
    Forbidden,
    /// No such route, or the target of a request (a user to signal) is not there.
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// A WebSocket route was called without `Upgrade: websocket`.
    UpgradeRequired,
    /// An `ifVersion` did not match the current version.
    Conflict,
    /// Over a per-connection rate; `retryAfterMs` says when to try again.
    RateLimited,
    /// The user already has the maximum number of sockets in this object.
    TooManyConnections,
    /// An `op:submit` names a document version the server has not reached.
    BadVersion,
    /// An `op:submit` is based on a version older than the retained op log: reload the document.
    SnapshotRequired,
    /// Something failed on our side (storage); the request may be retried.
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `"bad_frame"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UpgradeRequired => "upgrade_required",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::BadVersion => "bad_version",
            ErrorCode::SnapshotRequired => "snapshot_required",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether a frame answered with this code counts towards `MAX_STRIKES`: frames that could
    /// never be valid, forbidden ones, and rate-limited ones. Races a well-behaved client can
    /// lose (`conflict`, a `signal` to a peer who just left, versions, our own failures) do not.
    pub fn is_strike(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame
                | ErrorCode::UnknownEvent
                | ErrorCode::BadRequest
                | ErrorCode::TooLarge
                | ErrorCode::Unauthorized
                | ErrorCode::Forbidden
                | ErrorCode::RateLimited
        )
    }

    /// The HTTP status this code maps to when it answers an HTTP request.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadFrame | ErrorCode::BadRequest | ErrorCode::UnknownEvent => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::BadVersion | ErrorCode::SnapshotRequired => 409,
            ErrorCode::RateLimited | ErrorCode::TooManyConnections => 429,
            ErrorCode::TooLarge => 413,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error value: a stable code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// Free text for people; never contains secrets.
    pub message: String,
    /// With `rate_limited`: milliseconds until the request would be accepted.
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Error {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), retry_after_ms: None }
    }

    /// `rate_limited`, retry after `ms`.
    pub fn rate_limited(what: &str, ms: u64) -> Self {
        Error {
            code: ErrorCode::RateLimited,
            message: format!("too many {what}; retry in {ms} ms"),
            retry_after_ms: Some(ms),
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The JSON body of an HTTP error response: `{"error":{"code","message"}}`.
    pub fn to_http_body(&self) -> String {
        serde_json::json!({ "error": self }).to_string()
    }

    /// The error an HTTP error body carries ([`Error::to_http_body`]), when it is one: how the
    /// Worker reads an object's refusal and an object reads another's.
    pub fn from_http_body(body: &str) -> Option<Error> {
        #[derive(serde::Deserialize)]
        struct Body {
            error: Error,
        }
        serde_json::from_str::<Body>(body).ok().map(|b| b.error)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

/// WebSocket close codes the server uses. 4000–4999 are ours; see `docs/protocol.md`.
pub mod close {
    /// Normal closure (also sent back when a client closes without a code).
    pub const NORMAL: u16 = 1000;
    /// The object failed to set up or serve the socket; reconnect with backoff.
    pub const INTERNAL: u16 = 1011;
    /// The socket's token expired and no `auth:refresh` arrived in time; reconnect with a new one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Too many rejected frames in a row (malformed or over a rate); fix the client first.
    pub const PROTOCOL_ABUSE: u16 = 4002;
    /// A refused upgrade reported on the socket: no valid token (HTTP 401).
    pub const REFUSED_UNAUTHORIZED: u16 = 4401;
    /// A refused upgrade reported on the socket: the token lacks the right (HTTP 403).
    pub const REFUSED_FORBIDDEN: u16 = 4403;
    /// A refused upgrade reported on the socket: the user holds too many sockets (HTTP 429).
    pub const REFUSED_TOO_MANY: u16 = 4429;

    /// The close code that reports a refused upgrade on an accepted socket. A browser never
    /// learns the HTTP status of a refused handshake, so a client that offered `switchboard.v1`
    /// gets its socket accepted and closed at once with 4401, 4403 or 4429 instead of a 401, 403
    /// or 429. Every other status stays HTTP, and so does an `Origin` refusal (a page the service
    /// does not allow gets no socket at all). `None`: answer with the HTTP status.
    pub fn for_refused_upgrade(status: u16, offered_subprotocol: bool, origin_refused: bool) -> Option<u16> {
        if !offered_subprotocol || origin_refused {
            return None;
        }
        match status {
            401 => Some(REFUSED_UNAUTHORIZED),
            403 => Some(REFUSED_FORBIDDEN),
            429 => Some(REFUSED_TOO_MANY),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close::*;

    #[test]
    fn refusals_mirror_their_status_only_for_clients_offering_the_subprotocol() {
        assert_eq!(for_refused_upgrade(401, true, false), Some(4401));
        assert_eq!(for_refused_upgrade(403, true, false), Some(4403));
        assert_eq!(for_refused_upgrade(429, true, false), Some(4429));
        assert_eq!(for_refused_upgrade(401, false, false), None, "no subprotocol: the HTTP status");
        assert_eq!(for_refused_upgrade(403, true, true), None, "an origin refusal stays HTTP 403");
        for status in [400, 404, 405, 426, 500] {
            assert_eq!(for_refused_upgrade(status, true, false), None, "{status} stays HTTP");
        }
    }
    #[test]
    fn an_http_error_body_reads_back_as_its_error() {
        use super::{Error, ErrorCode};
        let error = Error::new(ErrorCode::TooManyConnections, "socket limit");
        assert_eq!(
            Error::from_http_body(&error.to_http_body()).map(|e| (e.code, e.message)),
            Some((ErrorCode::TooManyConnections, "socket limit".to_owned()))
        );
        assert_eq!(Error::from_http_body(r#"{"ok":true}"#), None);
        assert_eq!(Error::from_http_body("not json"), None);
    }
}

/// A storage read the core asked for failed (rooms' message log, users' inbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError(pub String);
