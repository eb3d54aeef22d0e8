//! The room state machine: members, messages, typing, live state and relays for one room.
//!
//! It owns the in-memory view of the room (sequence head, connections, typing, key/value state,
//! timers) and answers every input with [`Effect`]s. It does not own sockets, storage or time:
//! the shell rebuilds it after a wake from storage and the sockets' attachments
//! ([`Room::restore_conn`]), reads the log through [`RoomLog`], passes `now`, and sets the
//! object's alarm to [`Room::poll_timeout`] after every input.
//!
//! `request.rs` lists what a socket may send, decoded once into a typed [`Request`]. The events
//! are handled by concern: `messages.rs` (send, publish, history, recovery), `members.rs` (the
//! member list, large rooms' paging and coalesced diffs), `typing.rs`, `state.rs` (key/value
//! live data) and `relay.rs` (signal, broadcast).

pub mod effect;
pub mod log;
mod members;
mod messages;
mod relay;
pub mod request;
mod state;
mod streams;
mod typing;

pub use crate::core::object::SSE_KEEPALIVE;
pub use effect::{ConnInfo, RoomEffect, RoomWrite, StateEntry};
pub use members::MEMBERS_DIFF_MS;
pub use messages::{Ack, HistoryPage, Publish, Resume};
pub use request::Request;
pub use streams::StreamInfo;
pub use typing::TYPING_UPDATE_MS;

use crate::core::admission::Admission;
use crate::core::caps::RoomRights;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, RoomId, UserId};
use crate::core::object::{counters, Object};
use crate::core::protocol::{self, Envelope, Requests};
use crate::core::room::log::{LogHead, RoomLog};
use crate::core::sessions::{self, Access, Sessions};
use crate::core::throttle::{Budgets, EventClasses, Rate};
use crate::core::time::Timestamp;
use crate::core::timers::{earliest, Timers};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Inside the room, its effects are just `Effect`.
type Effect = RoomEffect;

/// How `auth:refresh` judges a room socket's new token: it must still allow joining; `send` is
/// its write right.
const ACCESS: Access = Access {
    rights: |caps, room| {
        let rights = RoomRights::of(caps, room);
        (rights.join, rights.send)
    },
    write_field: "canSend",
    refused: "the new token does not allow joining this room",
};

/// Rate-limited classes of client events, each with its own bucket per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventClass {
    /// `message:send`
    Message,
    /// `typing:start`, `typing:stop`
    Typing,
    /// `state:set`
    State,
    /// `signal`
    Signal,
    /// `broadcast`
    Broadcast,
    /// `history:get`, `members:get`, `auth:refresh`
    Read,
}

impl EventClass {
    const ALL: [EventClass; 6] = [
        EventClass::Message,
        EventClass::Typing,
        EventClass::State,
        EventClass::Signal,
        EventClass::Broadcast,
        EventClass::Read,
    ];

    /// The documented default rate of this class.
    pub fn rate(self) -> Rate {
        match self {
            EventClass::Message => Rate { per_sec: 10, burst: 20 },
            EventClass::Typing => Rate { per_sec: 4, burst: 8 },
            EventClass::State => Rate { per_sec: 10, burst: 20 },
            EventClass::Signal => Rate { per_sec: 20, burst: 50 },
            EventClass::Broadcast => Rate { per_sec: 5, burst: 10 },
            EventClass::Read => Rate { per_sec: 5, burst: 20 },
        }
    }

    fn noun(self) -> &'static str {
        match self {
            EventClass::Message => "messages",
            EventClass::Typing => "typing events",
            EventClass::State => "state updates",
            EventClass::Signal => "signals",
            EventClass::Broadcast => "broadcasts",
            EventClass::Read => "reads",
        }
    }
}

/// A deadline the room keeps (token deadlines are kept by its sessions).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The user's typing entry lapses.
    Typing(UserId),
    /// An event stream's token expires.
    StreamExpiry(ConnId),
    /// Open event streams are due a keepalive comment.
    Keepalive,
    /// A large room's coalesced member changes are due (`members:diff`).
    MembersDiff,
    /// A large room's coalesced typing changes are due (`typing:update`).
    TypingUpdate,
}

impl EventClasses for EventClass {
    const CLASSES: &'static [EventClass] = &EventClass::ALL;

    fn rate(self) -> Rate {
        EventClass::rate(self)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One room's live state.
#[derive(Debug)]
pub struct Room {
    id: RoomId,
    head: LogHead,
    config: Config,
    conns: Sessions<ConnInfo>,
    /// Open sockets per user: members are the keys.
    members: BTreeMap<UserId, usize>,
    typing: BTreeSet<UserId>,
    state: BTreeMap<String, StateEntry>,
    /// Rate budgets per user, shared by their sockets and their HTTP publishes.
    budgets: Budgets<EventClass>,
    /// Open event streams (the shell holds the streams themselves).
    streams: BTreeMap<ConnId, StreamInfo>,
    timers: Timers<Timer>,
    /// Member changes waiting for the next `members:diff` (large rooms).
    diff: members::MemberDiff,
    /// Typing changes waiting for the next `typing:update` (large rooms).
    typing_updates: typing::TypingUpdates,
    /// The latest time an input brought (`handle_close` has no clock of its own).
    clock: Timestamp,
    /// When budgets of absent users were last pruned: at most once a second, not per join.
    pruned: Option<Timestamp>,
}

impl Room {
    /// A room whose log stands at `head` with live `state`, and no connections yet.
    pub fn new(id: RoomId, head: LogHead, state: BTreeMap<String, StateEntry>, config: Config) -> Room {
        Room {
            id,
            head,
            conns: Sessions::new(sessions::SessionLimits::of(&config)),
            config,
            members: BTreeMap::new(),
            typing: BTreeSet::new(),
            state,
            budgets: Budgets::default(),
            streams: BTreeMap::new(),
            timers: Timers::default(),
            diff: members::MemberDiff::default(),
            typing_updates: typing::TypingUpdates::default(),
            clock: Timestamp(0),
            pruned: None,
        }
    }

    /// The room id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// The last assigned sequence number.
    pub fn seq(&self) -> u64 {
        self.head.seq
    }

    /// The log's epoch.
    pub fn epoch(&self) -> &str {
        &self.head.epoch
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Users with at least one open connection, in id order.
    pub fn members(&self) -> impl Iterator<Item = &UserId> {
        self.members.keys()
    }

    /// How many users have at least one open connection.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Users shown typing now, in id order (at most `ROOM_MEMBER_LIST_MAX`).
    pub fn typing_users(&self) -> impl Iterator<Item = &UserId> {
        self.typing.iter()
    }

    /// Refuses a new socket or event stream for `user` over `MAX_SOCKETS_PER_USER` (sockets and
    /// streams count together); checked before accepting.
    pub fn check_capacity(&self, user: &UserId) -> Result<(), Error> {
        let max = self.config.limits.max_sockets_per_user;
        let held = self.members.get(user).copied().unwrap_or(0) + self.streams_of(user);
        if held >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("at most {max} sockets and event streams per user in a room"),
            ));
        }
        Ok(())
    }

    /// Adds a socket; `true` when it is its user's first.
    fn add(&mut self, info: ConnInfo, now: Timestamp) -> bool {
        // Budgets are pruned as sockets arrive (and on publishes): handle_close has no clock.
        self.tick(now);
        self.forget_full_budgets(now);
        let user = info.user.clone();
        if !self.conns.add(info) {
            return false;
        }
        let count = self.members.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    fn throttle(&mut self, user: &UserId, class: EventClass, now: Timestamp) -> Result<(), Error> {
        self.budgets.take(user, class, now).map_err(|ms| Error::rate_limited(class.noun(), ms))
    }

    /// Budgets of users without a socket here that have refilled are the same as new ones.
    /// Forgetting them walks every budget, so it is done at most once a second (not on every
    /// join of a connect storm); one forgotten a little later is still the same as a new one.
    fn forget_full_budgets(&mut self, now: Timestamp) {
        if self.pruned.is_some_and(|at| now < at.plus_millis(1000)) {
            return;
        }
        self.pruned = Some(now);
        let members = &self.members;
        self.budgets.forget_refilled(now, |user| members.contains_key(user));
    }

    /// Notes the time an input brought.
    fn tick(&mut self, now: Timestamp) {
        self.clock = self.clock.max(now);
    }
}

/// The `room:state` greeting, serialized straight from the room (no `serde_json::Value` tree:
/// a greeting lists up to `ROOM_MEMBER_LIST_MAX` members and every state key).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomState<'a> {
    room: &'a RoomId,
    conn_id: &'a ConnId,
    user: &'a UserId,
    seq: u64,
    epoch: &'a str,
    members: &'a [members::Member<'a>],
    member_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    members_next: Option<&'a UserId>,
    typing: &'a BTreeSet<UserId>,
    state: &'a BTreeMap<String, StateEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
}

impl Object for Room {
    type Write = RoomWrite;
    type Call = crate::core::object::Never;
    type Info = ConnInfo;
    /// Where a reconnecting socket asked to `resume`.
    type Connect = Option<Resume>;
    type Reader<'a> = dyn RoomLog + 'a;

    fn admit(&self, conn: ConnId, admission: &Admission) -> Result<(ConnInfo, Option<Resume>), Error> {
        let user = admission.user()?.clone();
        self.check_capacity(&user)?;
        let info = ConnInfo { conn, user, expires: admission.expires()?, can_write: admission.can_write };
        Ok((info, Resume::admitted(admission)))
    }

    /// A socket was accepted: replay what it missed when it asked to `resume`, greet it with
    /// `room:state`, and announce a new member to the others (in a large room, with the next
    /// `members:diff`).
    fn handle_connect(
        &mut self,
        info: ConnInfo,
        resume: Option<Resume>,
        now: Timestamp,
        log: &(dyn RoomLog + '_),
    ) -> Vec<Effect> {
        let conn = info.conn.clone();
        let user = info.user.clone();
        let first_socket = self.add(info, now);
        let mut effects = Vec::new();
        let recovered = resume.map(|resume| match self.missed(&resume, log) {
            Some(messages) => {
                effects.extend(messages.iter().map(|m| Effect::Send {
                    to: conn.clone(),
                    frame: protocol::event("message:receive", m),
                }));
                true
            }
            None => false,
        });
        let listing = self.listing();
        let state = RoomState {
            room: &self.id,
            conn_id: &conn,
            user: &user,
            seq: self.head.seq,
            epoch: &self.head.epoch,
            members: &listing.members,
            member_count: listing.count,
            members_next: listing.next,
            typing: &self.typing,
            state: &self.state,
            recovered,
        };
        let frame = protocol::event("room:state", &state);
        effects.push(Effect::Send { to: conn.clone(), frame });
        if first_socket {
            effects.extend(self.member_changed(&user, true, Some(conn)));
        }
        effects
    }

    fn sessions(&mut self) -> &mut Sessions<Self::Info> {
        &mut self.conns
    }

    fn dispatch(
        &mut self,
        sender: &ConnInfo,
        envelope: Envelope,
        now: Timestamp,
        log: &(dyn RoomLog + '_),
    ) -> Result<Vec<Effect>, Error> {
        self.tick(now);
        let Envelope { event, reply_to, data } = envelope;
        // The event's rights and budget are checked before its payload is read.
        let event = Request::event(&event)?;
        if event.writes() && !sender.can_write {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "this token may read this room but not write to it",
            ));
        }
        self.throttle(&sender.user, event.class(), now)?;
        let r = reply_to;
        match Request::decode(event, data)? {
            Request::Send(p) => self.send_message(sender, r, p, now, log),
            Request::History(p) => self.history_get(sender, r, p, log),
            Request::Members(p) => self.members_get(sender, r, p),
            Request::TypingStart => Ok(self.typing_start(sender, r, now)),
            Request::TypingStop => Ok(self.typing_stop(sender, r, now)),
            Request::StateSet(p) => self.state_set(sender, r, p),
            Request::Signal(p) => self.signal(sender, r, p),
            Request::Broadcast(p) => self.broadcast(sender, r, p),
            Request::Refresh(p) => {
                let id = self.id.as_str();
                self.conns.refresh_rights(sender, r.as_ref(), &p.token, &self.config, id, &ACCESS, now)
            }
        }
    }

    /// A socket closed (or errored): forget it and announce a departure on the user's last one
    /// (in a large room, with the next `members:diff`).
    fn handle_close(&mut self, conn: &ConnId, now: Timestamp) -> Vec<Effect> {
        self.tick(now);
        let Some(gone) = self.conns.remove(conn) else { return Vec::new() };
        let user = gone.user;
        let last_socket = match self.members.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.members.remove(&user);
                true
            }
            None => false,
        };
        let mut effects = Vec::new();
        if last_socket {
            effects.extend(self.stop_typing(&user, None, now));
            effects.extend(self.member_changed(&user, false, None));
        }
        effects
    }

    /// The alarm fired: close sockets whose token expired, lapse stale typing entries, send
    /// what large rooms coalesce.
    fn handle_alarm(&mut self, now: Timestamp) -> Vec<Effect> {
        self.tick(now);
        let mut effects = self.conns.expired(now);
        let mut typing_update = false;
        for timer in self.timers.pop_due(now) {
            match timer {
                Timer::Typing(user) => effects.extend(self.stop_typing(&user, None, now)),
                Timer::StreamExpiry(id) => effects.extend(self.expire_stream(id)),
                Timer::Keepalive => effects.extend(self.keepalive(now)),
                Timer::MembersDiff => effects.extend(self.send_member_diff(now)),
                // After every lapse due now, so the update carries them.
                Timer::TypingUpdate => typing_update = true,
            }
        }
        if typing_update {
            effects.extend(self.send_typing_update(now));
        }
        effects
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        earliest(self.conns.next_deadline(), self.timers.next())
    }

    /// Re-adds a connection that survived hibernation; announces nothing.
    fn restore_conn(&mut self, info: ConnInfo, now: Timestamp) {
        self.add(info, now);
    }

    fn stream_closed(&mut self, id: &ConnId, _now: Timestamp) -> Vec<Effect> {
        self.close_stream(id);
        Vec::new()
    }

    fn stream_keeps_up(&self, unread: usize) -> bool {
        Room::stream_keeps_up(self, unread)
    }

    fn stats(&self) -> Map<String, Value> {
        counters(json!({
            "room": self.id,
            "seq": self.seq(),
            "epoch": self.epoch(),
            "connections": self.connection_count(),
            "members": self.member_count(),
            "streams": self.stream_count(),
        }))
    }
}

/// An empty `d` for replies that carry nothing.
fn empty() -> Value {
    Value::Object(Map::new())
}
