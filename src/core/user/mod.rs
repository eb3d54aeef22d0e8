//! The user state machine: one user's sockets on every device, their status presence, the
//! users they watch and who watches them, and their notification inbox.
//!
//! Like the room, it answers every input with effects ([`UserEffect`]) and owns no sockets,
//! storage or clock. Unlike the room, some effects are calls to other users' objects (pushing a
//! status change to watchers, subscribing); the shell makes them after applying the writes and
//! hands the answers back through [`User::watched`] and [`User::pushed`].
//!
//! `inbox.rs` holds the notification rules, `watch.rs` who may watch whom and the messages user
//! objects exchange; [`crate::core::presence`] the status state machine this drives.

pub mod inbox;
pub mod watch;

use crate::core::auth;
use crate::core::config::Config;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::presence::{Change, Presence, Status};
use crate::core::protocol::{self, Envelope, Incoming, Ref};
use crate::core::throttle::{Bucket, Rate};
use crate::core::time::Timestamp;
use crate::core::timers::Timers;
use inbox::{Inbox, InboxCounts, InboxState, InboxWrite, NewNotification, Notification, ReadRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use watch::{PresenceUpdate, PushAnswer, UsersPayload, WatchPolicy, WatchRequest};

/// Every frame on a user socket shares one bucket: these sockets carry little traffic.
pub const FRAME_RATE: Rate = Rate { per_sec: 10, burst: 30 };

/// What the shell keeps per socket in its hibernation attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConnInfo {
    /// The connection id.
    #[serde(rename = "c")]
    pub conn: ConnId,
    /// When the socket's token expires.
    #[serde(rename = "x")]
    pub expires: Timestamp,
}

/// The persisted part of the user's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPresence {
    /// The status state machine.
    pub presence: Presence,
    /// Bumped on every status change; watchers ignore older pushes.
    pub rev: u64,
    /// Whether this user's subscriptions are paused (no socket for the grace period).
    pub paused: bool,
}

impl Default for SavedPresence {
    fn default() -> Self {
        // A user never seen has no socket, so their subscriptions start paused.
        SavedPresence { presence: Presence::new(), rev: 0, paused: true }
    }
}

/// Where the reply to a `presence:subscribe` goes once the watched objects answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingReply {
    /// The socket that asked.
    pub conn: ConnId,
    /// Its `ref`, when it wanted a reply.
    pub reply_to: Option<Ref>,
}

/// One instruction for the user object's shell, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum UserEffect {
    /// Persist the status.
    SavePresence(SavedPresence),
    /// Persist who this user may watch (from the newest token).
    SavePolicy(WatchPolicy),
    /// A write to the notification inbox.
    Inbox(InboxWrite),
    /// Persist a watcher of this user and whether pushes to it are active.
    SaveWatcher {
        /// The watching user.
        watcher: UserId,
        /// Whether it gets pushes.
        active: bool,
    },
    /// Forget a watcher.
    RemoveWatcher(UserId),
    /// Persist a user this user watches, with the newest revision of their status seen.
    SaveWatching {
        /// The watched user.
        user: UserId,
        /// Their status revision.
        rev: u64,
    },
    /// Forget a watched user.
    RemoveWatching(UserId),
    /// Store this connection's new data in its socket attachment.
    UpdateConn(UserConnInfo),
    /// Send `frame` to one connection.
    Send {
        /// Recipient.
        to: ConnId,
        /// A complete JSON text frame.
        frame: String,
    },
    /// Send `frame` to every connection of this user.
    Broadcast {
        /// A complete JSON text frame, serialized once.
        frame: String,
    },
    /// Close a connection; the shell reports it back through `handle_close`.
    Close {
        /// The connection.
        conn: ConnId,
        /// WebSocket close code.
        code: u16,
        /// Short reason.
        reason: &'static str,
    },
    /// Call: push `update` to each watcher's object (`POST /presence`); answers go to
    /// [`User::pushed`].
    Push {
        /// The watchers.
        to: Vec<UserId>,
        /// The new status.
        update: PresenceUpdate,
    },
    /// Call: ask each user's object to (re)start or pause pushes to this user (`POST /watch`);
    /// answers go to [`User::watched`] with `reply`.
    Watch {
        /// The watched users.
        users: Vec<UserId>,
        /// `false` pauses.
        active: bool,
        /// Where to reply when a socket asked.
        reply: Option<PendingReply>,
    },
    /// Call: tell each user's object this user stopped watching them (`POST /unwatch`).
    Unwatch(Vec<UserId>),
}

/// A deadline the user object keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The next status transition.
    Presence,
    /// Subscriptions pause when no socket came back within the grace period.
    Pause,
    /// The socket's token expires.
    TokenExpiry(ConnId),
}

#[derive(Debug)]
struct Connection {
    info: UserConnInfo,
    strikes: protocol::Strikes,
    bucket: Bucket,
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
    conns: BTreeMap<ConnId, Connection>,
    timers: Timers<Timer>,
}

/// The answer to `POST /notify` for this user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyAck {
    /// The notification's id.
    pub id: u64,
    /// Unread notifications now.
    pub unread: u64,
    /// `true` when the idempotency key was seen before: nothing was delivered again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl User {
    /// The user as stored, with no sockets yet; call [`User::restore_conn`] for survivors, then
    /// [`User::restored`].
    pub fn new(id: UserId, stored: StoredUser, config: Config) -> User {
        let inbox = InboxState::new(stored.inbox, config.limits.notify_retention);
        User {
            id,
            config,
            saved: stored.presence,
            policy: stored.policy,
            watchers: stored.watchers,
            watching: stored.watching,
            inbox,
            conns: BTreeMap::new(),
            timers: Timers::default(),
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

    /// When the shell should next call [`User::handle_alarm`].
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// Re-adds a socket that survived hibernation; announces nothing.
    pub fn restore_conn(&mut self, info: UserConnInfo, now: Timestamp) {
        self.timers.set(Timer::TokenExpiry(info.conn.clone()), self.token_deadline(info.expires));
        let bucket = Bucket::full(FRAME_RATE, now);
        self.conns
            .insert(info.conn.clone(), Connection { info, strikes: protocol::Strikes::default(), bucket });
    }

    /// After the survivors are restored: re-arms the timers that live only in memory. When no
    /// socket survived but the user still shows as present, the grace period starts now; the
    /// effects persist that (apply them before anything else).
    #[must_use]
    pub fn restored(&mut self, now: Timestamp) -> Vec<UserEffect> {
        let before = self.saved.clone();
        self.saved.presence.restore_sockets(self.conns.len(), now);
        if self.conns.is_empty() && !self.saved.paused {
            let left = self.saved.presence.left_at().unwrap_or(now);
            self.timers.set(Timer::Pause, left.plus_millis(self.config.presence.grace_ms));
        }
        self.sync_presence_timer();
        self.saved_first(&before, Vec::new())
    }

    /// When a socket whose token expires at `expires` is closed (4001).
    fn token_deadline(&self, expires: Timestamp) -> Timestamp {
        protocol::token_deadline(expires, self.config.auth.leeway_secs)
    }

    /// Refuses a new socket over `MAX_SOCKETS_PER_USER`; checked before accepting.
    pub fn check_capacity(&self) -> Result<(), Error> {
        let max = self.config.limits.max_sockets_per_user;
        if self.conns.len() >= max {
            return Err(Error::new(ErrorCode::TooManyConnections, format!("at most {max} sockets per user")));
        }
        Ok(())
    }

    /// A socket was accepted with the token's watch `policy`: greet it with `user:state`, bring
    /// the user online, and resume paused subscriptions.
    pub fn handle_connect(
        &mut self,
        info: UserConnInfo,
        policy: WatchPolicy,
        now: Timestamp,
    ) -> Vec<UserEffect> {
        let before = self.saved.clone();
        let conn = info.conn.clone();
        let mut effects = self.set_policy(policy);
        self.restore_conn(info, now);
        let change = self.saved.presence.connect(now);
        self.timers.cancel(&Timer::Pause);
        let resume = std::mem::replace(&mut self.saved.paused, false);
        let current = self.status();
        let mut greeting = json!({ "user": self.id, "connId": conn, "unread": self.unread() });
        if let (Some(object), Ok(Value::Object(status))) =
            (greeting.as_object_mut(), serde_json::to_value(&current))
        {
            object.extend(status);
        }
        effects.push(UserEffect::Send { to: conn, frame: protocol::event("user:state", &greeting) });
        effects.extend(change.map(|c| self.announce(c)).unwrap_or_default());
        if resume && !self.watching.is_empty() {
            effects.push(UserEffect::Watch {
                users: self.watching.keys().cloned().collect(),
                active: true,
                reply: None,
            });
        }
        self.sync_presence_timer();
        self.saved_first(&before, effects)
    }

    /// A socket closed: the last one starts the grace period.
    pub fn handle_close(&mut self, conn: &ConnId, now: Timestamp) -> Vec<UserEffect> {
        if self.conns.remove(conn).is_none() {
            return Vec::new();
        }
        let before = self.saved.clone();
        self.timers.cancel(&Timer::TokenExpiry(conn.clone()));
        self.saved.presence.disconnect(now);
        if self.conns.is_empty() {
            self.timers.set(Timer::Pause, now.plus_millis(self.config.presence.grace_ms));
        }
        self.sync_presence_timer();
        self.saved_first(&before, Vec::new())
    }

    /// The alarm fired: status transitions, pausing subscriptions, expired tokens.
    pub fn handle_alarm(&mut self, now: Timestamp) -> Vec<UserEffect> {
        let before = self.saved.clone();
        let mut effects = Vec::new();
        for timer in self.timers.pop_due(now) {
            match timer {
                Timer::Presence => {
                    if let Some(change) = self.saved.presence.on_alarm(now, &self.config.presence) {
                        effects.extend(self.announce(change));
                    }
                }
                Timer::Pause => {
                    if self.conns.is_empty() && !self.saved.paused {
                        self.saved.paused = true;
                        if !self.watching.is_empty() {
                            let users = self.watching.keys().cloned().collect();
                            effects.push(UserEffect::Watch { users, active: false, reply: None });
                        }
                    }
                }
                Timer::TokenExpiry(conn) => effects.push(UserEffect::Close {
                    conn,
                    code: close::TOKEN_EXPIRED,
                    reason: protocol::EXPIRED_REASON,
                }),
            }
        }
        self.sync_presence_timer();
        self.saved_first(&before, effects)
    }

    /// A frame arrived on `conn`. Every frame is activity.
    pub fn handle_frame(
        &mut self,
        conn: &ConnId,
        frame: Incoming<'_>,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Vec<UserEffect> {
        let Some(expires) = self.conns.get(conn).map(|c| c.info.expires) else { return Vec::new() };
        let decoded = protocol::decode(frame, self.config.limits.max_frame_bytes);
        // The alarm may run late (or not yet after a wake): the deadline holds for frames too,
        // and an expired socket's frame is not activity.
        if protocol::expired_frame(&decoded, now, self.token_deadline(expires)) {
            let (code, reason) = (close::TOKEN_EXPIRED, protocol::EXPIRED_REASON);
            return vec![UserEffect::Close { conn: conn.clone(), code, reason }];
        }
        let before = self.saved.clone();
        let (reply_to, outcome) = match decoded {
            Err(e) => (e.reply_to, Err(e.error)),
            Ok(envelope) => (envelope.reply_to.clone(), self.dispatch(conn, envelope, now, inbox)),
        };
        let effects = match outcome {
            Ok(effects) => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.strikes.clear();
                }
                effects
            }
            Err(error) => self.reject(conn, reply_to.as_ref(), &error),
        };
        self.sync_presence_timer();
        self.saved_first(&before, effects)
    }

    /// Puts one `SavePresence` before everything else when the status (or just `lastSeen`)
    /// changed since `before`: written once, before any frame announces it.
    fn saved_first(&self, before: &SavedPresence, mut effects: Vec<UserEffect>) -> Vec<UserEffect> {
        if self.saved != *before {
            effects.insert(0, UserEffect::SavePresence(self.saved.clone()));
        }
        effects
    }

    fn reject(&mut self, conn: &ConnId, reply_to: Option<&Ref>, error: &Error) -> Vec<UserEffect> {
        let mut effects =
            vec![UserEffect::Send { to: conn.clone(), frame: protocol::failure(reply_to, error) }];
        let max = self.config.limits.max_strikes;
        if self.conns.get_mut(conn).is_some_and(|c| c.strikes.add(max)) {
            effects.push(UserEffect::Close {
                conn: conn.clone(),
                code: close::PROTOCOL_ABUSE,
                reason: protocol::ABUSE_REASON,
            });
        }
        effects
    }

    fn dispatch(
        &mut self,
        conn: &ConnId,
        envelope: Envelope,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Result<Vec<UserEffect>, Error> {
        let Envelope { event, reply_to, data } = envelope;
        if let Some(c) = self.conns.get_mut(conn) {
            c.bucket.take(FRAME_RATE, now).map_err(|ms| Error::rate_limited("frames", ms))?;
        }
        let mut effects = Vec::new();
        if event != "presence:set" {
            // `presence:set` decides the status itself; announcing `online` first would flap.
            if let Some(change) = self.saved.presence.activity(now) {
                effects.extend(self.announce(change));
            }
        }
        let reply = |data: Value| {
            reply_to
                .as_ref()
                .map(|r| UserEffect::Send { to: conn.clone(), frame: protocol::reply_ok(r, &data) })
        };
        match event.as_str() {
            "presence:active" => effects.extend(reply(json!({}))),
            "presence:set" => {
                let p: SetPayload = protocol::payload(&event, data)?;
                if p.activity.as_ref().is_some_and(|a| a.chars().count() > MAX_ACTIVITY_CHARS) {
                    return Err(Error::new(
                        ErrorCode::BadRequest,
                        format!("activity must be at most {MAX_ACTIVITY_CHARS} characters"),
                    ));
                }
                if let Some(change) = self.saved.presence.choose(p.status, p.activity, now) {
                    effects.extend(self.announce(change));
                }
                effects.extend(reply(serde_json::to_value(self.status()).unwrap_or_default()));
            }
            "presence:subscribe" => {
                let p: UsersPayload = protocol::payload(&event, data)?;
                effects.extend(self.subscribe(conn, reply_to, p.users)?);
            }
            "presence:unsubscribe" => {
                let p: UsersPayload = protocol::payload(&event, data)?;
                let users: Vec<UserId> =
                    p.users.into_iter().filter(|u| self.watching.remove(u).is_some()).collect();
                effects.extend(users.iter().cloned().map(UserEffect::RemoveWatching));
                effects.extend(reply(json!({ "users": users })));
                if !users.is_empty() {
                    effects.push(UserEffect::Unwatch(users));
                }
            }
            "notification:list" => {
                let p: ListPayload = protocol::payload(&event, data)?;
                let page = self.inbox.page(p.before, p.limit, inbox)?;
                effects.extend(reply(json!({ "notifications": page, "unread": self.unread() })));
            }
            "notification:read" => {
                let p: ReadRequest = protocol::payload(&event, data)?;
                effects.extend(self.mark_read(&p, inbox)?);
                effects.extend(reply(json!({ "unread": self.unread() })));
            }
            "auth:refresh" => {
                let p: RefreshPayload = protocol::payload(&event, data)?;
                effects.extend(self.refresh_token(conn, p, now)?);
                let expires = self.conns.get(conn).map(|c| c.info.expires);
                effects.extend(reply(json!({ "expires": expires })));
            }
            _ => return Err(Error::new(ErrorCode::UnknownEvent, format!("unknown event {event:?}"))),
        }
        Ok(effects)
    }

    fn subscribe(
        &mut self,
        conn: &ConnId,
        reply_to: Option<Ref>,
        users: Vec<UserId>,
    ) -> Result<Vec<UserEffect>, Error> {
        let max = self.config.limits.presence_max_watch;
        let mut wanted: Vec<UserId> = Vec::new();
        for user in users {
            if user != self.id && !wanted.contains(&user) {
                wanted.push(user);
            }
        }
        if let Some(denied) = wanted.iter().find(|u| !self.policy.allows(u)) {
            return Err(Error::new(ErrorCode::Forbidden, format!("this token may not watch {denied}")));
        }
        let new = wanted.iter().filter(|u| !self.watching.contains_key(*u)).count();
        if self.watching.len() + new > max {
            return Err(Error::new(ErrorCode::TooLarge, format!("a user may watch at most {max} users")));
        }
        let reply = PendingReply { conn: conn.clone(), reply_to };
        if wanted.is_empty() {
            return Ok(self.watched(reply, Vec::new()));
        }
        Ok(vec![UserEffect::Watch { users: wanted, active: true, reply: Some(reply) }])
    }

    /// The watched users' objects answered a [`UserEffect::Watch`]: remember the ones that
    /// answered, reply to the socket that asked (listing failures), or, for a resume, tell every
    /// socket about statuses that changed meanwhile.
    pub fn watched(
        &mut self,
        reply: PendingReply,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> Vec<UserEffect> {
        self.apply_watch_results(Some(reply), results)
    }

    /// Answers to a resume or pause ([`UserEffect::Watch`] without a reply).
    pub fn resumed(&mut self, results: Vec<(UserId, Result<PresenceUpdate, Error>)>) -> Vec<UserEffect> {
        self.apply_watch_results(None, results)
    }

    fn apply_watch_results(
        &mut self,
        reply: Option<PendingReply>,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        let mut presence = Vec::new();
        let mut failed = Vec::new();
        for (user, result) in results {
            match result {
                Ok(update) => {
                    let known = self.watching.insert(user.clone(), update.rev);
                    if known != Some(update.rev) {
                        effects.push(UserEffect::SaveWatching { user, rev: update.rev });
                    }
                    if reply.is_none() && known.is_some_and(|rev| rev < update.rev) && !self.conns.is_empty()
                    {
                        effects.push(UserEffect::Broadcast { frame: presence_frame(&update) });
                    }
                    presence.push(update);
                }
                Err(error) => failed.push(json!({ "user": user, "error": error })),
            }
        }
        if let Some(PendingReply { conn, reply_to: Some(r) }) = reply {
            let presence: Vec<_> = presence.iter().map(PresenceUpdate::entry).collect();
            let mut data = json!({ "presence": presence });
            if let (false, Some(object)) = (failed.is_empty(), data.as_object_mut()) {
                object.insert("failed".into(), Value::Array(failed));
            }
            effects.push(UserEffect::Send { to: conn, frame: protocol::reply_ok(&r, &data) });
        }
        effects
    }

    /// Watchers answered a [`UserEffect::Push`]: forget the ones that stopped watching, pause
    /// the ones without a socket. Failed pushes change nothing (the next change retries).
    pub fn pushed(&mut self, answers: Vec<(UserId, Result<PushAnswer, Error>)>) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        for (watcher, answer) in answers {
            match answer {
                Ok(PushAnswer { watching: false, .. }) if self.watchers.remove(&watcher).is_some() => {
                    effects.push(UserEffect::RemoveWatcher(watcher));
                }
                Ok(PushAnswer { active: false, .. }) => {
                    if let Some(active) = self.watchers.get_mut(&watcher).filter(|a| **a) {
                        *active = false;
                        effects.push(UserEffect::SaveWatcher { watcher, active: false });
                    }
                }
                _ => {}
            }
        }
        effects
    }

    /// `POST /watch`: another user starts, resumes or pauses watching this one.
    pub fn watch_requested(
        &mut self,
        request: WatchRequest,
    ) -> Result<(PresenceUpdate, Vec<UserEffect>), Error> {
        let max = self.config.limits.presence_max_watch;
        if !self.watchers.contains_key(&request.watcher) && self.watchers.len() >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("{} already has the most watchers allowed ({max})", self.id),
            ));
        }
        let mut effects = Vec::new();
        if self.watchers.insert(request.watcher.clone(), request.active) != Some(request.active) {
            effects.push(UserEffect::SaveWatcher { watcher: request.watcher, active: request.active });
        }
        Ok((self.update(), effects))
    }

    /// `POST /unwatch`.
    pub fn unwatch_requested(&mut self, watcher: &UserId) -> Vec<UserEffect> {
        match self.watchers.remove(watcher) {
            Some(_) => vec![UserEffect::RemoveWatcher(watcher.clone())],
            None => Vec::new(),
        }
    }

    /// `POST /presence`: a watched user's status changed.
    pub fn presence_pushed(&mut self, update: PresenceUpdate) -> (PushAnswer, Vec<UserEffect>) {
        let active = !self.saved.paused;
        let Some(known) = self.watching.get_mut(&update.user) else {
            return (PushAnswer { watching: false, active }, Vec::new());
        };
        let mut effects = Vec::new();
        if update.rev > *known {
            *known = update.rev;
            effects.push(UserEffect::SaveWatching { user: update.user.clone(), rev: update.rev });
            if !self.conns.is_empty() {
                effects.push(UserEffect::Broadcast { frame: presence_frame(&update) });
            }
        }
        (PushAnswer { watching: true, active }, effects)
    }

    /// `POST /notify`: stores the notification and tells every device.
    pub fn notify(
        &mut self,
        content: NewNotification,
        key: Option<String>,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Result<(NotifyAck, Vec<UserEffect>), Error> {
        content.validate(self.config.limits.max_text_chars)?;
        let (stored, writes) = self.inbox.store(content, key, now, inbox)?;
        let ack =
            NotifyAck { id: stored.notification.id, unread: self.unread(), duplicate: stored.duplicate };
        let mut effects: Vec<UserEffect> = writes.into_iter().map(UserEffect::Inbox).collect();
        if !stored.duplicate {
            effects.push(UserEffect::Broadcast {
                frame: protocol::event("notification:new", &stored.notification),
            });
            effects.push(self.count_frame());
        }
        Ok((ack, effects))
    }

    /// A page of the inbox, newest first.
    pub fn notifications(
        &self,
        before: Option<u64>,
        limit: Option<u32>,
        inbox: &dyn Inbox,
    ) -> Result<Vec<Notification>, Error> {
        self.inbox.page(before, limit, inbox)
    }

    /// Marks notifications read; every device gets the new count when it changed.
    pub fn mark_read(&mut self, request: &ReadRequest, inbox: &dyn Inbox) -> Result<Vec<UserEffect>, Error> {
        let writes = self.inbox.mark_read(request, inbox)?;
        let changed = !writes.is_empty();
        let mut effects: Vec<UserEffect> = writes.into_iter().map(UserEffect::Inbox).collect();
        if changed {
            effects.push(self.count_frame());
        }
        Ok(effects)
    }

    fn count_frame(&self) -> UserEffect {
        UserEffect::Broadcast {
            frame: protocol::event("notification:count", &json!({ "unread": self.unread() })),
        }
    }

    fn refresh_token(
        &mut self,
        conn: &ConnId,
        p: RefreshPayload,
        now: Timestamp,
    ) -> Result<Vec<UserEffect>, Error> {
        let identity = auth::verify(&p.token, &self.config.auth, now)?;
        if identity.user != self.id {
            return Err(Error::new(ErrorCode::Forbidden, "the new token is for another user"));
        }
        let policy = policy_of(&identity, &self.config);
        let mut effects = self.set_policy(policy);
        if let Some(c) = self.conns.get_mut(conn) {
            c.info.expires = identity.expires;
            let deadline = protocol::token_deadline(identity.expires, self.config.auth.leeway_secs);
            self.timers.set(Timer::TokenExpiry(conn.clone()), deadline);
            effects.push(UserEffect::UpdateConn(c.info.clone()));
        }
        Ok(effects)
    }

    /// Adopts the newest token's policy and drops subscriptions it no longer allows.
    fn set_policy(&mut self, policy: WatchPolicy) -> Vec<UserEffect> {
        if policy == self.policy {
            return Vec::new();
        }
        let dropped: Vec<UserId> = self.watching.keys().filter(|u| !policy.allows(u)).cloned().collect();
        self.policy = policy.clone();
        let mut effects = vec![UserEffect::SavePolicy(policy)];
        for user in &dropped {
            self.watching.remove(user);
            effects.push(UserEffect::RemoveWatching(user.clone()));
        }
        if !dropped.is_empty() {
            effects.push(UserEffect::Unwatch(dropped));
        }
        effects
    }

    /// A status change (the caller persists it first): shown on the user's own devices, pushed to active watchers.
    fn announce(&mut self, change: Change) -> Vec<UserEffect> {
        self.saved.rev += 1;
        let update = PresenceUpdate::new(self.id.clone(), change, self.saved.rev);
        let mut effects = Vec::new();
        if !self.conns.is_empty() {
            effects.push(UserEffect::Broadcast { frame: presence_frame(&update) });
        }
        let to: Vec<UserId> =
            self.watchers.iter().filter(|(_, active)| **active).map(|(u, _)| u.clone()).collect();
        if !to.is_empty() {
            effects.push(UserEffect::Push { to, update });
        }
        effects
    }

    fn update(&self) -> PresenceUpdate {
        PresenceUpdate::new(self.id.clone(), self.status(), self.saved.rev)
    }

    fn sync_presence_timer(&mut self) {
        match self.saved.presence.deadline(&self.config.presence) {
            Some(at) => self.timers.set(Timer::Presence, at),
            None => self.timers.cancel(&Timer::Presence),
        }
    }
}

/// Longest `presence:set` activity text, in characters.
pub const MAX_ACTIVITY_CHARS: usize = 128;

/// Who the holder of `identity` may watch.
pub fn policy_of(identity: &auth::Identity, config: &Config) -> WatchPolicy {
    WatchPolicy {
        friends: identity.friends.as_ref().map(|f| f.iter().cloned().collect()),
        caps: identity.caps_or(&config.default_caps).clone(),
    }
}

fn presence_frame(update: &PresenceUpdate) -> String {
    protocol::event("presence:update", &update.entry())
}

#[derive(Deserialize)]
struct SetPayload {
    status: Status,
    #[serde(default)]
    activity: Option<String>,
}

#[derive(Deserialize)]
struct ListPayload {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct RefreshPayload {
    token: String,
}
