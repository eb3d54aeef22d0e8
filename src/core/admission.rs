//! What the Worker verified about a request, and the position the caller asked for, as the
//! object it routes the request to receives it: one typed value, serialized once into one internal header and parsed once by the
//! object, with the same meaning in rooms, user objects and documents.
//!
//! An object is reachable only through its Worker, so it trusts the value; the Worker builds it
//! only after checking the token or the server key and the caller's rights.

use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::time::Timestamp;
use crate::core::user::watch::WatchPolicy;
use serde::{Deserialize, Serialize};

/// A verified caller and what it asked for, beyond the object's name and the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Admission {
    /// Who is asking: the token's `sub`, or the author an app server publishes as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// When the caller's token expires (`exp`, before the leeway): a socket or event stream is
    /// closed then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The token may write here: `send` in a room, `write` in a document.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub can_write: bool,
    /// Who the caller may watch (user objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<WatchPolicy>,
    /// Where a reconnecting client resumes: a room's `seq` or a document's version `v`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The log epoch `since` belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// A page of a room's history or a user's inbox: only entries below this `seq` or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// The page's size; the object caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The WebSocket subprotocol to echo in the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// An app server (the server key) is the caller.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub server: bool,
    /// The caller's `Idempotency-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Admission {
    /// The value an object received, or `None` when there was none.
    pub fn parse(header: Option<&str>) -> Result<Admission, Error> {
        match header {
            None => Ok(Admission::default()),
            Some(text) => serde_json::from_str(text).map_err(|_| malformed()),
        }
    }

    /// The value as the header carries it.
    pub fn to_header(&self) -> String {
        // Serializing plain fields cannot fail; an empty object would only lose the admission.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// The caller, which the endpoint needs.
    pub fn user(&self) -> Result<&UserId, Error> {
        self.user.as_ref().ok_or_else(malformed)
    }

    /// The token's expiry, which sockets and streams need.
    pub fn expires(&self) -> Result<Timestamp, Error> {
        self.expires.ok_or_else(malformed)
    }

    /// The watch policy, which user sockets, streams and subscribes need.
    pub fn policy(&self) -> Result<&WatchPolicy, Error> {
        self.policy.as_ref().ok_or_else(malformed)
    }
}

/// The Worker sent a request its object cannot read: a bug, not the client's fault.
fn malformed() -> Error {
    Error::new(ErrorCode::Internal, "malformed internal request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_survives_its_header() {
        let admission = Admission {
            user: Some(UserId::parse("ann").unwrap()),
            expires: Some(Timestamp(1_700_000_000_000)),
            can_write: true,
            policy: Some(WatchPolicy::default()),
            since: Some(42),
            epoch: Some("e1".into()),
            before: Some(7),
            limit: Some(50),
            protocol: Some("switchboard.v1".into()),
            server: false,
            idempotency_key: Some("k".into()),
        };
        assert_eq!(Admission::parse(Some(&admission.to_header())).unwrap(), admission);
        assert_eq!(Admission::parse(None).unwrap(), Admission::default());
        assert_eq!(Admission::default().to_header(), "{}");
    }

    #[test]
    fn a_missing_or_unreadable_field_is_an_internal_error() {
        assert_eq!(Admission::parse(Some("{nope")).unwrap_err().code, ErrorCode::Internal);
        let empty = Admission::default();
        assert_eq!(empty.user().unwrap_err().code, ErrorCode::Internal);
        assert_eq!(empty.expires().unwrap_err().code, ErrorCode::Internal);
        assert_eq!(empty.policy().unwrap_err().code, ErrorCode::Internal);
    }
}
