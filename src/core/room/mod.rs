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

pub use members::MEMBERS_DIFF_MS;
pub use messages::{Publish, Resume};
pub use request::Request;
pub use state::StateEntry;
pub use streams::{StreamInfo, SSE_KEEPALIVE};

use crate::core::auth;
use crate::core::caps::RoomRights;
use crate::core::config::Config;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, RoomId, UserId};
use crate::core::protocol::{self, Envelope, Incoming, Ref, Refresh, Requests};
use crate::core::room::effect::Effect;
use crate::core::room::log::{LogHead, RoomLog};
use crate::core::throttle::{Budgets, EventClasses, Rate};
use crate::core::time::Timestamp;
use crate::core::timers::Timers;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What the shell keeps per socket (in its hibernation attachment) to rebuild the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// The connection id.
    #[serde(rename = "c")]
    pub conn: ConnId,
    /// The authenticated user.
    #[serde(rename = "u")]
    pub user: UserId,
    /// When the socket's token expires.
    #[serde(rename = "x")]
    pub expires: Timestamp,
    /// Whether the token allows writing (`send`); without it the socket is read-only.
    #[serde(rename = "w")]
    pub can_send: bool,
}

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

/// A deadline the room keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The socket's token expires.
    TokenExpiry(ConnId),
    /// The user's typing entry lapses.
    Typing(UserId),
    /// An event stream's token expires.
    StreamExpiry(ConnId),
    /// Open event streams are due a keepalive comment.
    Keepalive,
    /// A large room's coalesced member changes are due (`members:diff`).
    MembersDiff,
}

#[derive(Debug)]
struct Connection {
    info: ConnInfo,
    /// Consecutive rejected frames; reset by any accepted one.
    strikes: protocol::Strikes,
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
    conns: BTreeMap<ConnId, Connection>,
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
            config,
            conns: BTreeMap::new(),
            members: BTreeMap::new(),
            typing: BTreeSet::new(),
            state,
            budgets: Budgets::default(),
            streams: BTreeMap::new(),
            timers: Timers::default(),
            diff: members::MemberDiff::default(),
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

    /// When the shell should next call [`Room::handle_alarm`].
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next()
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

    /// Re-adds a connection that survived hibernation; announces nothing.
    pub fn restore_conn(&mut self, info: ConnInfo, now: Timestamp) {
        self.add(info, now);
    }

    fn add(&mut self, info: ConnInfo, now: Timestamp) -> bool {
        // Budgets are pruned as sockets arrive (and on publishes): handle_close has no clock.
        self.tick(now);
        self.forget_full_budgets(now);
        let user = info.user.clone();
        self.timers.set(Timer::TokenExpiry(info.conn.clone()), self.token_deadline(info.expires));
        if self
            .conns
            .insert(info.conn.clone(), Connection { info, strikes: protocol::Strikes::default() })
            .is_some()
        {
            return false;
        }
        let count = self.members.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A socket was accepted: replay what it missed when it asked to `resume`, greet it with
    /// `room:state`, and announce a new member to the others (in a large room, with the next
    /// `members:diff`).
    pub fn handle_connect(
        &mut self,
        info: ConnInfo,
        resume: Option<&Resume>,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Vec<Effect> {
        let conn = info.conn.clone();
        let user = info.user.clone();
        let first_socket = self.add(info, now);
        let mut effects = Vec::new();
        let recovered = resume.map(|resume| match self.missed(resume, log) {
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
        let mut state = json!({
            "room": self.id,
            "connId": conn,
            "user": user,
            "seq": self.head.seq,
            "epoch": self.head.epoch,
            "members": listing.members,
            "memberCount": listing.count,
            "typing": self.typing,
            "state": self.state,
        });
        if let Some(object) = state.as_object_mut() {
            if let Some(recovered) = recovered {
                object.insert("recovered".into(), Value::Bool(recovered));
            }
            if let Some(next) = listing.next {
                object.insert("membersNext".into(), json!(next));
            }
        }
        effects.push(Effect::Send { to: conn.clone(), frame: protocol::event("room:state", &state) });
        if first_socket {
            effects.extend(self.member_changed(&user, true, Some(conn)));
        }
        effects
    }

    /// A socket closed (or errored): forget it and announce a departure on the user's last one
    /// (in a large room, with the next `members:diff`).
    pub fn handle_close(&mut self, conn: &ConnId) -> Vec<Effect> {
        let Some(gone) = self.conns.remove(conn) else { return Vec::new() };
        self.timers.cancel(&Timer::TokenExpiry(conn.clone()));
        let user = gone.info.user;
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
            effects.extend(self.stop_typing(&user, None));
            effects.extend(self.member_changed(&user, false, None));
        }
        effects
    }

    /// The alarm fired: close sockets whose token expired, lapse stale typing entries.
    pub fn handle_alarm(&mut self, now: Timestamp) -> Vec<Effect> {
        self.tick(now);
        let mut effects = Vec::new();
        for timer in self.timers.pop_due(now) {
            match timer {
                Timer::TokenExpiry(conn) => effects.push(expired(conn)),
                Timer::Typing(user) => effects.extend(self.stop_typing(&user, None)),
                Timer::StreamExpiry(id) => effects.extend(self.expire_stream(id)),
                Timer::Keepalive => effects.extend(self.keepalive(now)),
                Timer::MembersDiff => effects.extend(self.send_member_diff(now)),
            }
        }
        effects
    }

    /// A frame arrived on `conn`.
    pub fn handle_frame(
        &mut self,
        conn: &ConnId,
        frame: Incoming<'_>,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Vec<Effect> {
        let Some(sender) = self.conns.get(conn).map(|c| c.info.clone()) else { return Vec::new() };
        self.tick(now);
        let decoded = protocol::decode(frame, self.config.limits.max_frame_bytes);
        // The alarm may run late (or not yet after a wake): the deadline holds for frames too.
        if protocol::expired_frame(&decoded, now, self.token_deadline(sender.expires)) {
            return vec![expired(conn.clone())];
        }
        let (reply_to, outcome) = match decoded {
            Err(e) => (e.reply_to, Err(e.error)),
            Ok(envelope) => (envelope.reply_to.clone(), self.dispatch(&sender, envelope, now, log)),
        };
        match outcome {
            Ok(effects) => effects,
            Err(error) => self.reject(conn, reply_to.as_ref(), &error, now),
        }
    }

    fn reject(
        &mut self,
        conn: &ConnId,
        reply_to: Option<&Ref>,
        error: &Error,
        now: Timestamp,
    ) -> Vec<Effect> {
        let mut effects = vec![Effect::Send { to: conn.clone(), frame: protocol::failure(reply_to, error) }];
        let max = self.config.limits.max_strikes;
        if self.conns.get_mut(conn).is_some_and(|c| c.strikes.record(error, max, now)) {
            effects.push(Effect::Close {
                conn: conn.clone(),
                code: close::PROTOCOL_ABUSE,
                reason: protocol::ABUSE_REASON,
            });
        }
        effects
    }

    fn dispatch(
        &mut self,
        sender: &ConnInfo,
        envelope: Envelope,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Result<Vec<Effect>, Error> {
        let Envelope { event, reply_to, data } = envelope;
        // The event's rights and budget are checked before its payload is read.
        let event = Request::event(&event)?;
        if event.writes() && !sender.can_send {
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
            Request::TypingStop => Ok(self.typing_stop(sender, r)),
            Request::StateSet(p) => self.state_set(sender, r, p),
            Request::Signal(p) => self.signal(sender, r, p),
            Request::Broadcast(p) => self.broadcast(sender, r, p),
            Request::Refresh(p) => self.refresh_token(sender, r, p, now),
        }
    }

    /// When a socket whose token expires at `expires` is closed (4001).
    fn token_deadline(&self, expires: Timestamp) -> Timestamp {
        protocol::token_deadline(expires, self.config.auth.leeway_secs)
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

    fn refresh_token(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: Refresh,
        now: Timestamp,
    ) -> Result<Vec<Effect>, Error> {
        let identity = auth::verify(&p.token, &self.config.auth, now)?;
        if identity.user != sender.user {
            return Err(Error::new(ErrorCode::Forbidden, "the new token is for another user"));
        }
        let rights = RoomRights::of(identity.caps_or(&self.config.default_caps), self.id.as_str());
        if !rights.join {
            return Err(Error::new(ErrorCode::Forbidden, "the new token does not allow joining this room"));
        }
        let info = ConnInfo { expires: identity.expires, can_send: rights.send, ..sender.clone() };
        if let Some(c) = self.conns.get_mut(&sender.conn) {
            c.info = info.clone();
        }
        self.timers.set(Timer::TokenExpiry(sender.conn.clone()), self.token_deadline(info.expires));
        let mut effects = vec![Effect::UpdateConn(info.clone())];
        effects.extend(reply(sender, reply_to, json!({ "expires": info.expires, "canSend": info.can_send })));
        Ok(effects)
    }
}

/// Closes a socket whose token expired (past the leeway) without a refresh.
fn expired(conn: ConnId) -> Effect {
    Effect::Close { conn, code: close::TOKEN_EXPIRED, reason: protocol::EXPIRED_REASON }
}

/// A `reply ok` to `sender` when it asked for one.
fn reply(sender: &ConnInfo, reply_to: Option<Ref>, data: Value) -> Option<Effect> {
    reply_to.map(|r| Effect::Send { to: sender.conn.clone(), frame: protocol::reply_ok(&r, &data) })
}

/// An empty `d` for replies that carry nothing.
fn empty() -> Value {
    Value::Object(Map::new())
}
