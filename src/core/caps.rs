//! Capabilities: what a token allows, as the JWT `cap` claim states it.
//!
//! ```json
//! {"room:general": ["join", "send"], "room:group-*": ["join"], "doc:*": ["read"]}
//! ```
//!
//! A key names a resource exactly, or ends in `*` to match every resource with that prefix; the
//! rights of every matching key add up. A token without a `cap` claim gets the configured
//! default (`DEFAULT_CAPS`, same format), which the dev configuration leaves open.

use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{DocId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resource pattern → rights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capabilities(pub BTreeMap<String, Vec<String>>);

impl Capabilities {
    /// Whether any pattern matching `resource` grants `right`.
    pub fn allows(&self, resource: &str, right: &str) -> bool {
        self.0.iter().any(|(pattern, rights)| matches(pattern, resource) && rights.iter().any(|r| r == right))
    }

    /// Parses the JSON form; `None` when it is not an object of string arrays.
    pub fn parse(json: &str) -> Option<Capabilities> {
        serde_json::from_str(json).ok()
    }
}

fn matches(pattern: &str, resource: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => resource.starts_with(prefix),
        None => pattern == resource,
    }
}

/// What one socket may do in a room, fixed at connect and at `auth:refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomRights {
    /// May open a socket and read (`join`).
    pub join: bool,
    /// May write: messages, typing, state, signals, broadcasts (`send`).
    pub send: bool,
}

impl RoomRights {
    /// The rights `caps` grants in the room `room`.
    pub fn of(caps: &Capabilities, room: &str) -> RoomRights {
        let resource = format!("room:{room}");
        RoomRights { join: caps.allows(&resource, "join"), send: caps.allows(&resource, "send") }
    }

    /// The rights `caps` grants in `room`, refused (403) when they do not include joining it:
    /// the check of the room socket, its event stream and its HTTP history.
    pub fn to_join(caps: &Capabilities, room: &RoomId) -> Result<RoomRights, Error> {
        let rights = RoomRights::of(caps, room.as_str());
        if rights.join {
            Ok(rights)
        } else {
            Err(Error::new(ErrorCode::Forbidden, format!("this token may not join room {room}")))
        }
    }
}

/// What one socket may do in a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRights {
    /// May open a socket, receive operations and cursors (`read`, implied by `write`).
    pub read: bool,
    /// May submit operations (`write`).
    pub write: bool,
}

impl DocRights {
    /// The rights `caps` grants in the document `doc`.
    pub fn of(caps: &Capabilities, doc: &str) -> DocRights {
        let resource = format!("doc:{doc}");
        let write = caps.allows(&resource, "write");
        DocRights { read: write || caps.allows(&resource, "read"), write }
    }

    /// The rights `caps` grants in `doc`, refused (403) when they do not include reading it: the
    /// check of the document socket and `GET /v1/docs/:doc`.
    pub fn to_read(caps: &Capabilities, doc: &DocId) -> Result<DocRights, Error> {
        let rights = DocRights::of(caps, doc.as_str());
        if rights.read {
            Ok(rights)
        } else {
            Err(Error::new(ErrorCode::Forbidden, format!("this token may not read document {doc}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_and_reading_are_refused_with_403_where_not_granted() {
        let caps = Capabilities::parse(r#"{"room:general":["join"],"doc:spec":["write"]}"#).unwrap();
        let general = RoomId::parse("general").unwrap();
        assert_eq!(RoomRights::to_join(&caps, &general).unwrap(), RoomRights { join: true, send: false });
        let secret = RoomId::parse("secret").unwrap();
        assert_eq!(RoomRights::to_join(&caps, &secret).unwrap_err().code, ErrorCode::Forbidden);
        let spec = DocId::parse("spec").unwrap();
        assert_eq!(DocRights::to_read(&caps, &spec).unwrap(), DocRights { read: true, write: true });
        let other = DocId::parse("other").unwrap();
        assert_eq!(DocRights::to_read(&caps, &other).unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn exact_and_prefix_patterns_add_up() {
        let caps = Capabilities::parse(
            r#"{"room:general":["join","send"],"room:group-*":["join"],"room:group-admins":["send"]}"#,
        )
        .unwrap();
        assert_eq!(RoomRights::of(&caps, "general"), RoomRights { join: true, send: true });
        assert_eq!(RoomRights::of(&caps, "group-1"), RoomRights { join: true, send: false });
        assert_eq!(RoomRights::of(&caps, "group-admins"), RoomRights { join: true, send: true });
        assert_eq!(RoomRights::of(&caps, "general2"), RoomRights { join: false, send: false });
        assert_eq!(RoomRights::of(&caps, "other"), RoomRights { join: false, send: false });
    }

    #[test]
    fn write_implies_read_in_documents() {
        let caps =
            Capabilities::parse(r#"{"doc:spec":["write"],"doc:*":["read"],"room:*":["join"]}"#).unwrap();
        assert_eq!(DocRights::of(&caps, "spec"), DocRights { read: true, write: true });
        assert_eq!(DocRights::of(&caps, "other"), DocRights { read: true, write: false });
        assert_eq!(DocRights::of(&Capabilities::default(), "spec"), DocRights { read: false, write: false });
    }

    #[test]
    fn star_matches_everything_and_empty_matches_nothing() {
        let open = Capabilities::parse(r#"{"*":["join","send"]}"#).unwrap();
        assert!(RoomRights::of(&open, "anything").send);
        assert!(!RoomRights::of(&Capabilities::default(), "general").join);
        assert!(Capabilities::parse(r#"{"room:a":"join"}"#).is_none());
        assert!(Capabilities::parse("[]").is_none());
    }
}
