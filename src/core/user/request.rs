//! What a user socket (`/v1/users/me/ws`) may send: every event and its payload as a typed
//! struct. All of them draw from the user's one frame budget ([`super::FRAME_RATE`]).
//! `docs/protocol.md` describes each one; the SDK's `clients/js/src/types.ts` declares the same
//! payloads, checked against these in its tests.

use super::inbox::ReadRequest;
use crate::core::ids::UserId;
use crate::core::presence::Status;
use crate::core::protocol::{Refresh, Requests};
use serde::{Deserialize, Deserializer};

/// The events a user socket accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `presence:active`
    Active,
    /// `presence:set`
    Set,
    /// `presence:subscribe`
    Subscribe,
    /// `presence:unsubscribe`
    Unsubscribe,
    /// `notification:list`
    List,
    /// `notification:read`
    Read,
    /// `auth:refresh`
    Refresh,
}

impl Event {
    /// Whether an accepted frame of this event is activity (keeps or brings the user `online`).
    /// `presence:set` decides the status itself; counting it as activity too could bring a user
    /// who chose `away` straight back `online`.
    pub fn is_activity(self) -> bool {
        self != Event::Set
    }
}

/// A request decoded from a user socket's frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `presence:active` (its `d`, if any, is ignored)
    Active,
    /// `presence:set`
    Set(PresenceSet),
    /// `presence:subscribe`
    Subscribe(Users),
    /// `presence:unsubscribe`
    Unsubscribe(Users),
    /// `notification:list`
    List(NotificationList),
    /// `notification:read`
    Read(ReadRequest),
    /// `auth:refresh`
    Refresh(Refresh),
}

impl Requests for Request {
    type Event = Event;

    const EVENTS: &'static [Event] = &[
        Event::Active,
        Event::Set,
        Event::Subscribe,
        Event::Unsubscribe,
        Event::List,
        Event::Read,
        Event::Refresh,
    ];

    fn name(event: Event) -> &'static str {
        match event {
            Event::Active => "presence:active",
            Event::Set => "presence:set",
            Event::Subscribe => "presence:subscribe",
            Event::Unsubscribe => "presence:unsubscribe",
            Event::List => "notification:list",
            Event::Read => "notification:read",
            Event::Refresh => "auth:refresh",
        }
    }

    fn deserialize<'de, D: Deserializer<'de>>(event: Event, data: D) -> Result<Request, D::Error> {
        Ok(match event {
            Event::Active => Request::Active,
            Event::Set => Request::Set(PresenceSet::deserialize(data)?),
            Event::Subscribe => Request::Subscribe(Users::deserialize(data)?),
            Event::Unsubscribe => Request::Unsubscribe(Users::deserialize(data)?),
            Event::List => Request::List(NotificationList::deserialize(data)?),
            Event::Read => Request::Read(ReadRequest::deserialize(data)?),
            Event::Refresh => Request::Refresh(Refresh::deserialize(data)?),
        })
    }
}

/// `presence:set`: the status the user chose, with an optional activity text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceSet {
    /// The chosen status.
    pub status: Status,
    /// What the user is doing; leaving it out clears it.
    #[serde(default)]
    pub activity: Option<String>,
}

/// `presence:subscribe` / `presence:unsubscribe`: the users to (un)watch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Users {
    /// The users.
    pub users: Vec<UserId>,
}

/// `notification:list`: a page of the inbox, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NotificationList {
    /// Only notifications with a smaller id.
    #[serde(default)]
    pub before: Option<u64>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u32>,
}
