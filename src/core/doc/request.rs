//! What a document socket may send: every event, its payload as a typed struct, its rate class
//! ([`EventClass`], each with its own bucket per user) and whether it needs the right to write. `docs/protocol.md` describes each one; the SDK's
//! `clients/js/src/types.ts` declares the same payloads, checked against these in its tests.

use crate::core::protocol::{Refresh, Requests};
use crate::core::throttle::{EventClasses, Rate};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The events a document socket accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `op:submit`
    Submit,
    /// `cursor:update`
    Cursor,
    /// `ops:get`
    OpsGet,
    /// `auth:refresh`
    Refresh,
}

impl Event {
    /// The bucket this event draws from.
    pub fn class(self) -> EventClass {
        match self {
            Event::Submit => EventClass::Op,
            Event::Cursor => EventClass::Cursor,
            Event::OpsGet => EventClass::Read,
            Event::Refresh => EventClass::Refresh,
        }
    }

    /// Whether the event needs the token's `write` right; a read-only socket is refused it.
    pub fn writes(self) -> bool {
        self == Event::Submit
    }
}

/// Rate-limited classes of document events, each with its own bucket per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// `op:submit`
    Op,
    /// `cursor:update`
    Cursor,
    /// `ops:get`
    Read,
    /// `auth:refresh` alone: reads in one tab must not starve another tab's token refresh.
    Refresh,
}

impl EventClass {
    /// What a `rate_limited` refusal calls the events of this class.
    pub(super) fn noun(self) -> &'static str {
        match self {
            EventClass::Op => "ops",
            EventClass::Cursor => "cursor updates",
            EventClass::Read => "reads",
            EventClass::Refresh => "token refreshes",
        }
    }
}

impl EventClasses for EventClass {
    const CLASSES: &'static [EventClass] =
        &[EventClass::Op, EventClass::Cursor, EventClass::Read, EventClass::Refresh];

    fn rate(self) -> Rate {
        match self {
            EventClass::Op => Rate { per_sec: 20, burst: 40 },
            EventClass::Cursor => Rate { per_sec: 20, burst: 40 },
            EventClass::Read => Rate { per_sec: 5, burst: 20 },
            EventClass::Refresh => Rate { per_sec: 1, burst: 5 },
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A request decoded from a document socket's frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `op:submit`
    Submit(OpSubmit),
    /// `cursor:update`
    Cursor(CursorUpdate),
    /// `ops:get`
    OpsGet(OpsGet),
    /// `auth:refresh`
    Refresh(Refresh),
}

impl Requests for Request {
    type Event = Event;

    const EVENTS: &'static [Event] = &[Event::Submit, Event::Cursor, Event::OpsGet, Event::Refresh];

    fn name(event: Event) -> &'static str {
        match event {
            Event::Submit => "op:submit",
            Event::Cursor => "cursor:update",
            Event::OpsGet => "ops:get",
            Event::Refresh => "auth:refresh",
        }
    }

    fn deserialize<'de, D: Deserializer<'de>>(event: Event, data: D) -> Result<Request, D::Error> {
        Ok(match event {
            Event::Submit => Request::Submit(OpSubmit::deserialize(data)?),
            Event::Cursor => Request::Cursor(CursorUpdate::deserialize(data)?),
            Event::OpsGet => Request::OpsGet(OpsGet::deserialize(data)?),
            Event::Refresh => Request::Refresh(Refresh::deserialize(data)?),
        })
    }
}

/// `op:submit`: an edit based on version `v`, identified by `(src, seq)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OpSubmit {
    /// The version the op was made against.
    pub v: u64,
    /// The op, in the ot-text-unicode format (checked when it is applied).
    pub op: Value,
    /// The client's id, the same across reconnects.
    pub src: String,
    /// The client's counter for its ops.
    pub seq: u64,
}

/// `cursor:update`: a caret `{pos, v}` or a selection `{anchor, head, v}` as of version `v`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CursorUpdate {
    /// A caret.
    #[serde(default)]
    pub pos: Option<u64>,
    /// Where a selection starts.
    #[serde(default)]
    pub anchor: Option<u64>,
    /// Where a selection ends.
    #[serde(default)]
    pub head: Option<u64>,
    /// The version the positions refer to.
    pub v: u64,
}

/// `ops:get`: a page of the ops from version `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct OpsGet {
    /// The first version wanted.
    pub from: u64,
}
