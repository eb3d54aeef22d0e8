//! The user state machine: one user's sockets on every device, their status presence, the
//! users they watch and who watches them, and their notification inbox.
//!
//! Like the room, it answers every input with effects ([`UserEffect`]) and owns no sockets,
//! storage or clock. Unlike the room, some effects are calls to other users' objects (pushing a
//! status change to watchers, subscribing); the shell makes them after applying the writes and
//! hands the answers back through [`User::watched`] and [`User::pushed`].
//!
//! This file holds the user's state, the dispatch of socket requests and its side of the object
//! contract (connect, frame, close, alarm, restore). The rest, by concern:
//! - `request.rs`: what a socket may send, decoded once into a typed [`Request`];
//! - `effect.rs`: what the object asks its shell to do (writes, calls, the attachment);
//! - `devices.rs`: sockets and event streams as devices: capacity, arriving, leaving, fan-out;
//! - `status.rs`: the status this object drives ([`crate::core::presence`]) and the one path
//!   every change takes;
//! - `watching.rs`: whom this user watches (subscriptions, pausing, the token's policy);
//! - `watchers.rs`: who watches this user (pushes, `POST /watch`, `POST /unwatch`);
//! - `watch.rs`: who may watch whom, and the messages user objects exchange;
//! - `notifications.rs`: `POST /notify`, inbox pages, marking read; `inbox.rs` its rules;
//! - `streams.rs`: event streams, and the HTTP writes of clients on that fallback;
//! - `endpoint.rs`: the object's HTTP requests, decoded once, and the answers given at once.

mod devices;
mod effect;
pub mod endpoint;
pub mod inbox;
mod notifications;
pub mod request;
mod status;
mod streams;
pub mod watch;
mod watchers;
mod watching;

pub use effect::{PendingReply, SavedPresence, UserCall, UserConnInfo, UserEffect, UserWrite};
pub use notifications::NotifyAck;
pub use request::Request;
pub use status::MAX_ACTIVITY_CHARS;
pub use streams::{StatusRequest, UserStreamInfo};
pub use watchers::PUSH_WINDOW_MS;
pub use watching::policy_of;

use crate::core::admission::Admission;
use crate::core::config::Config;
use crate::core::error::Error;
use crate::core::ids::{ConnId, UserId};
use crate::core::object::{counters, Object};
use crate::core::presence::Change;
use crate::core::protocol::{self, Envelope, Incoming, Ref, Refresh, Requests};
use crate::core::sessions::{self, SessionLimits, Sessions};
use crate::core::throttle::{Bucket, Rate};
use crate::core::time::Timestamp;
use crate::core::timers::{earliest, Timers};
use inbox::{Inbox, InboxCounts, InboxState};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use watch::WatchPolicy;
use watching::Subscribing;

/// Every frame on a user's sockets draws from one bucket, the user's: these sockets carry
/// little traffic, and sharing it means a reconnect or another device buys no fresh burst.
pub const FRAME_RATE: Rate = Rate { per_sec: 10, burst: 30 };

/// A deadline the user object keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The next status transition.
    Presence,
    /// Subscriptions pause when no socket came back within the grace period.
    Pause,
    /// The push window ends with a change watchers have not been pushed yet.
    Push,
    /// An event stream's token expires.
    StreamExpiry(ConnId),
    /// Open event streams are due a keepalive comment.
    Keepalive,
}

/// Everything stored about a user, as the shell reads it on a wake.
#[derive(Debug, Clone, Default)]
pub struct StoredUser {
    /// Status, revision, paused flag.
    pub presence: SavedPresence,
    /// Who this user may watch.
    pub policy: WatchPolicy,
    /// Who watches this user, and whether pushes to them are active.
    pub watchers: BTreeMap<UserId, bool>,
    /// Whom this user watches, with the newest revision seen.
    pub watching: BTreeMap<UserId, u64>,
    /// The inbox's counts.
    pub inbox: InboxCounts,
}

/// One user's live state.
#[derive(Debug)]
pub struct User {
    id: UserId,
    config: Config,
    saved: SavedPresence,
    policy: WatchPolicy,
    watchers: BTreeMap<UserId, bool>,
    watching: BTreeMap<UserId, u64>,
    inbox: InboxState,
    conns: Sessions<UserConnInfo>,
    /// Open event streams (the shell holds the streams themselves). Like sockets they are
    /// devices: they count toward the socket limit and keep the user online.
    streams: BTreeMap<ConnId, UserStreamInfo>,
    timers: Timers<Timer>,
    /// The user's frame budget, shared by all their sockets; in memory, like every bucket.
    bucket: Bucket,
    /// Subscriptions asked for and not answered yet; they count against the watch limit.
    subscribing: BTreeMap<UserId, Subscribing>,
    /// When watchers were last pushed a change (unknown after a wake: the next push goes at once).
    last_push: Option<Timestamp>,
}

impl User {
    /// The user as stored, with no sockets yet; call [`User::restore_conn`] for survivors, then
    /// [`User::restored`].
    pub fn new(id: UserId, stored: StoredUser, config: Config) -> User {
        let inbox = InboxState::new(stored.inbox, config.limits.notify_retention);
        let conns = Sessions::new(SessionLimits::of(&config));
        User {
            id,
            config,
            saved: stored.presence,
            policy: stored.policy,
            watchers: stored.watchers,
            watching: stored.watching,
            inbox,
            conns,
            streams: BTreeMap::new(),
            timers: Timers::default(),
            bucket: Bucket::full(FRAME_RATE, Timestamp(0)),
            subscribing: BTreeMap::new(),
            last_push: None,
        }
    }

    /// The user id.
    pub fn id(&self) -> &UserId {
        &self.id
    }

    /// The current status.
    pub fn status(&self) -> Change {
        self.saved.presence.current()
    }

    /// Unread notifications.
    pub fn unread(&self) -> u64 {
        self.inbox.unread()
    }

    /// Stored notifications.
    pub fn stored_notifications(&self) -> u64 {
        self.inbox.total()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Watchers, and whether pushes to each are active.
    pub fn watchers(&self) -> &BTreeMap<UserId, bool> {
        &self.watchers
    }

    /// Watched users, with the newest revision seen.
    pub fn watching(&self) -> &BTreeMap<UserId, u64> {
        &self.watching
    }

    /// Whether this user's subscriptions are paused.
    pub fn paused(&self) -> bool {
        self.saved.paused
    }

    fn handle_request(
        &mut self,
        conn: &ConnId,
        reply_to: Option<Ref>,
        request: Request,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Result<Vec<UserEffect>, Error> {
        let mut effects = Vec::new();
        let reply = |data: Value| {
            reply_to
                .as_ref()
                .map(|r| UserEffect::Send { to: conn.clone(), frame: protocol::reply_ok(r, &data) })
        };
        match request {
            Request::Active => effects.extend(reply(json!({}))),
            Request::Set(p) => {
                self.choose_status(p.status, p.activity, now)?;
                effects.extend(reply(serde_json::to_value(self.status()).unwrap_or_default()));
            }
            Request::Subscribe(p) => {
                effects.extend(self.subscribe(conn, reply_to, p.users)?);
            }
            Request::Unsubscribe(p) => {
                let (users, unwatch) = self.unwatch(p.users);
                effects.extend(reply(json!({ "users": users })));
                effects.extend(unwatch);
            }
            Request::List(p) => effects.extend(reply(self.page(&p, inbox)?)),
            Request::Read(p) => {
                let (unread, marked) = self.read(&p, inbox)?;
                effects.extend(marked);
                effects.extend(reply(unread));
            }
            Request::Refresh(p) => {
                effects.extend(self.refresh_token(conn, p, now)?);
                let expires = self.conns.get(conn).map(|c| c.expires);
                effects.extend(reply(json!({ "expires": expires })));
            }
        }
        Ok(effects)
    }

    fn refresh_token(&mut self, conn: &ConnId, p: Refresh, now: Timestamp) -> Result<Vec<UserEffect>, Error> {
        let mut policy = None;
        let config = &self.config;
        let info = self.conns.refresh(conn, &self.id, &p.token, &config.auth, now, |identity, current| {
            policy = Some(policy_of(identity, config));
            Ok(UserConnInfo { expires: identity.expires, ..current.clone() })
        })?;
        let mut effects = policy.map(|p| self.set_policy(p)).unwrap_or_default();
        effects.push(UserEffect::UpdateConn(info));
        Ok(effects)
    }
}

impl Object for User {
    type Write = UserWrite;
    type Call = UserCall;
    type Info = UserConnInfo;
    /// The token's watch policy.
    type Connect = WatchPolicy;
    type Reader<'a> = dyn Inbox + 'a;

    fn admit(&self, conn: ConnId, admission: &Admission) -> Result<(UserConnInfo, WatchPolicy), Error> {
        self.check_capacity()?;
        Ok((UserConnInfo { conn, expires: admission.expires()? }, admission.policy()?.clone()))
    }

    fn owed(call: &UserCall) -> Option<&ConnId> {
        match call {
            UserCall::Watch { reply: Some(reply), .. } => Some(&reply.conn),
            _ => None,
        }
    }

    /// A socket was accepted with the token's watch `policy`: greet it with `user:state`, bring
    /// the user online, and resume paused subscriptions.
    fn handle_connect(
        &mut self,
        info: UserConnInfo,
        policy: WatchPolicy,
        now: Timestamp,
        _inbox: &(dyn Inbox + '_),
    ) -> Vec<UserEffect> {
        let before = self.saved.clone();
        let conn = info.conn.clone();
        self.conns.add(info);
        let (mut effects, greeting, resume) = self.arrive(&conn, policy, now);
        effects.push(UserEffect::Send { to: conn, frame: protocol::event("user:state", &greeting) });
        effects.extend(resume);
        self.finish(&before, effects, now, true)
    }

    fn sessions(&mut self) -> &mut Sessions<Self::Info> {
        &mut self.conns
    }

    /// Decodes and handles one request; an accepted one that is activity
    /// ([`request::Event::is_activity`]) counts as such.
    fn dispatch(
        &mut self,
        sender: &UserConnInfo,
        envelope: Envelope,
        now: Timestamp,
        inbox: &(dyn Inbox + '_),
    ) -> Result<Vec<UserEffect>, Error> {
        let conn = &sender.conn;
        let Envelope { event, reply_to, data } = envelope;
        self.bucket.take(FRAME_RATE, now).map_err(|ms| Error::rate_limited("frames", ms))?;
        let event = Request::event(&event)?;
        let effects = self.handle_request(conn, reply_to, Request::decode(event, data)?, now, inbox)?;
        if event.is_activity() {
            self.saved.presence.activity(now);
        }
        Ok(effects)
    }

    /// A frame arrived on `conn`. Every accepted frame is activity; a rejected one (malformed,
    /// unknown, invalid, over the rate) is not, so it changes no status. An expired socket's
    /// frame closes it and is not activity either.
    fn handle_frame(
        &mut self,
        conn: &ConnId,
        frame: Incoming<'_>,
        now: Timestamp,
        inbox: &(dyn Inbox + '_),
    ) -> Vec<UserEffect> {
        let (sender, decoded) = match self.conns.receive(conn, frame, now) {
            Ok(received) => received,
            Err(done) => return done,
        };
        // Unlike rooms and documents, every frame (answered or refused) ends in `finish`.
        let before = self.saved.clone();
        let (reply_to, envelope) = sessions::split(decoded);
        let outcome = envelope.and_then(|envelope| self.dispatch(&sender, envelope, now, inbox));
        let effects = self.conns.settle(conn, reply_to.as_ref(), outcome, now);
        self.finish(&before, effects, now, true)
    }

    /// A socket closed: the last one starts the grace period.
    fn handle_close(&mut self, conn: &ConnId, now: Timestamp) -> Vec<UserEffect> {
        if self.conns.remove(conn).is_none() {
            return Vec::new();
        }
        let before = self.saved.clone();
        self.device_left(now);
        // The shell makes no calls after a close: an owed push waits for its alarm.
        self.finish(&before, Vec::new(), now, false)
    }

    /// The alarm fired: expired tokens, status transitions, pausing subscriptions.
    fn handle_alarm(&mut self, now: Timestamp) -> Vec<UserEffect> {
        let before = self.saved.clone();
        let mut effects = self.conns.expired(now);
        for timer in self.timers.pop_due(now) {
            match timer {
                Timer::Presence => {
                    self.saved.presence.on_alarm(now, &self.config.presence);
                }
                // `finish` makes the owed push (with whatever this alarm changed too).
                Timer::Push => {}
                Timer::Pause => effects.extend(self.pause_subscriptions()),
                Timer::StreamExpiry(stream) => effects.extend(self.expire_stream(stream, now)),
                Timer::Keepalive => effects.extend(self.keepalive(now)),
            }
        }
        self.finish(&before, effects, now, true)
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        earliest(self.conns.next_deadline(), self.timers.next())
    }

    /// Re-adds a socket that survived hibernation; announces nothing (the frame budget is the
    /// user's, not the socket's).
    fn restore_conn(&mut self, info: UserConnInfo, _now: Timestamp) {
        self.conns.add(info);
    }

    /// After the survivors are restored: re-arms the timers that live only in memory. When no
    /// socket survived but the user still shows as present, the grace period starts now; the
    /// effects persist that.
    fn restored(&mut self, now: Timestamp) -> Vec<UserEffect> {
        let before = self.saved.clone();
        self.saved.presence.restore_sockets(self.conns.len(), now);
        if self.conns.is_empty() && !self.saved.paused {
            let left = self.saved.presence.left_at().unwrap_or(now);
            self.timers.set(Timer::Pause, left.plus_millis(self.config.presence.grace_ms));
        }
        if self.saved.unpushed {
            // A push was owed when the object went away: make it on the next alarm.
            self.timers.set(Timer::Push, now);
        }
        // Stored and announced through the one path every change takes; no calls from here.
        self.finish(&before, Vec::new(), now, false)
    }

    fn stream_closed(&mut self, id: &ConnId, now: Timestamp) -> Vec<UserEffect> {
        self.close_stream(id, now)
    }

    fn stream_keeps_up(&self, unread: usize) -> bool {
        User::stream_keeps_up(self, unread)
    }

    fn stats(&self) -> Map<String, Value> {
        counters(json!({
            "user": self.id,
            "presence": self.status(),
            "connections": self.conns.len(),
            "streams": self.stream_count(),
            "unread": self.unread(),
            "notifications": self.stored_notifications(),
            "watchers": self.watchers,
            "watching": self.watching.keys().collect::<Vec<_>>(),
            "paused": self.saved.paused,
        }))
    }
}
