//! What a room socket may send: every event, its payload as a typed struct, its rate class and
//! whether it needs the right to write. `docs/protocol.md` describes each one; the SDK's
//! `clients/js/src/types.ts` declares the same payloads, checked against these in its tests.

use super::EventClass;
use crate::core::ids::{ConnId, UserId};
use crate::core::protocol::{RawJson, Refresh, Requests};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The events a room socket accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `message:send`
    Send,
    /// `history:get`
    History,
    /// `members:get`
    Members,
    /// `typing:start`
    TypingStart,
    /// `typing:stop`
    TypingStop,
    /// `state:set`
    StateSet,
    /// `signal`
    Signal,
    /// `broadcast`
    Broadcast,
    /// `auth:refresh`
    Refresh,
}

impl Event {
    /// The bucket this event draws from.
    pub fn class(self) -> EventClass {
        match self {
            Event::Send => EventClass::Message,
            Event::TypingStart | Event::TypingStop => EventClass::Typing,
            Event::StateSet => EventClass::State,
            Event::Signal => EventClass::Signal,
            Event::Broadcast => EventClass::Broadcast,
            Event::History | Event::Members | Event::Refresh => EventClass::Read,
        }
    }

    /// Whether the event needs the token's `send` right; a read-only socket is refused it.
    pub fn writes(self) -> bool {
        !matches!(self, Event::History | Event::Members | Event::Refresh)
    }
}

/// A request decoded from a room socket's frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `message:send`
    Send(SendMessage),
    /// `history:get`
    History(HistoryGet),
    /// `members:get`
    Members(MembersGet),
    /// `typing:start` (its `d`, if any, is ignored)
    TypingStart,
    /// `typing:stop` (its `d`, if any, is ignored)
    TypingStop,
    /// `state:set`
    StateSet(StateSet),
    /// `signal`
    Signal(Signal),
    /// `broadcast`
    Broadcast(Broadcast),
    /// `auth:refresh`
    Refresh(Refresh),
}

impl Requests for Request {
    type Event = Event;

    const EVENTS: &'static [Event] = &[
        Event::Send,
        Event::History,
        Event::Members,
        Event::TypingStart,
        Event::TypingStop,
        Event::StateSet,
        Event::Signal,
        Event::Broadcast,
        Event::Refresh,
    ];

    fn name(event: Event) -> &'static str {
        match event {
            Event::Send => "message:send",
            Event::History => "history:get",
            Event::Members => "members:get",
            Event::TypingStart => "typing:start",
            Event::TypingStop => "typing:stop",
            Event::StateSet => "state:set",
            Event::Signal => "signal",
            Event::Broadcast => "broadcast",
            Event::Refresh => "auth:refresh",
        }
    }

    fn deserialize<'de, D: Deserializer<'de>>(event: Event, data: D) -> Result<Request, D::Error> {
        Ok(match event {
            Event::Send => Request::Send(SendMessage::deserialize(data)?),
            Event::History => Request::History(HistoryGet::deserialize(data)?),
            Event::Members => Request::Members(MembersGet::deserialize(data)?),
            Event::TypingStart => Request::TypingStart,
            Event::TypingStop => Request::TypingStop,
            Event::StateSet => Request::StateSet(StateSet::deserialize(data)?),
            Event::Signal => Request::Signal(Signal::deserialize(data)?),
            Event::Broadcast => Request::Broadcast(Broadcast::deserialize(data)?),
            Event::Refresh => Request::Refresh(Refresh::deserialize(data)?),
        })
    }
}

/// `message:send`: a message for the room; `id` makes a resend idempotent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SendMessage {
    /// The text (may be empty when `data` is given).
    pub text: String,
    /// The client's message id.
    #[serde(default)]
    pub id: Option<String>,
    /// Application data, relayed and stored as sent.
    #[serde(default)]
    pub data: Option<RawJson>,
}

/// `history:get`: a page of messages before `before` (default: the newest).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HistoryGet {
    /// Only messages with a smaller `seq`.
    #[serde(default)]
    pub before: Option<u64>,
    /// Page size (default 50, at most `HISTORY_PAGE_MAX`).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `members:get`: a page of the room's members in id order, after `after` (default: from the
/// first).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MembersGet {
    /// Only members whose id sorts after this one (the previous page's `next`).
    #[serde(default)]
    pub after: Option<UserId>,
    /// Page size (default and at most `ROOM_MEMBER_LIST_MAX`).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `state:set`: writes one key of the room's live state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StateSet {
    /// The key.
    pub key: String,
    /// Any JSON value (`null` included, but not absent).
    pub value: Value,
    /// Write only if the key is at this version (0: does not exist yet).
    #[serde(default, rename = "ifVersion")]
    pub if_version: Option<u64>,
}

/// `signal`: relays `data` to one user's sockets in the room, or to one of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Signal {
    /// The recipient.
    pub to: UserId,
    /// Narrows the recipient to this connection.
    #[serde(default, rename = "toConn")]
    pub to_conn: Option<ConnId>,
    /// Anything (an offer, an answer, an ICE candidate).
    #[serde(default)]
    pub data: Value,
}

/// `broadcast`: relays an application event to everyone else in the room.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Broadcast {
    /// The application's event name.
    pub event: String,
    /// Anything.
    #[serde(default)]
    pub data: Value,
}
