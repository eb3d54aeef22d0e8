//! The user state machine: one user's sockets on every device, their status presence, the
//! users they watch and who watches them, and their notification inbox.
//!
//! Like the room, it answers every input with effects ([`UserEffect`]) and owns no sockets,
//! storage or clock. Unlike the room, some effects are calls to other users' objects (pushing a
//! status change to watchers, subscribing); the shell makes them after applying the writes and
//! hands the answers back through [`User::watched`] and [`User::pushed`].
//!
//! `request.rs` lists what a socket may send, decoded once into a typed [`Request`]; `inbox.rs`
//! holds the notification rules, `watch.rs` who may watch whom and the messages user objects
//! exchange; [`crate::core::presence`] the status state machine this drives.

mod effect;
pub mod inbox;
pub mod request;
mod streams;
pub mod watch;

pub use effect::{PendingReply, SavedPresence, UserCall, UserConnInfo, UserEffect, UserWrite};

pub use request::Request;

use crate::core::auth;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::object::Object;
use crate::core::presence::{Change, Status};
use crate::core::protocol::{self, Envelope, Incoming, Ref, Refresh, Requests};
use crate::core::sessions::{self, SessionLimits, Sessions};
use crate::core::throttle::{Bucket, Rate};
use crate::core::time::Timestamp;
use crate::core::timers::{earliest, Timers};
use inbox::{Inbox, InboxCounts, InboxState, NewNotification, Notification, ReadRequest};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use watch::{PresenceUpdate, PushAnswer, WatchPolicy, WatchRequest};

pub use streams::{StatusRequest, UserStreamInfo};

/// Every frame on a user's sockets draws from one bucket, the user's: these sockets carry
/// little traffic, and sharing it means a reconnect or another device buys no fresh burst.
pub const FRAME_RATE: Rate = Rate { per_sec: 10, burst: 30 };

/// Watchers are pushed a user's status at most once per window: changes inside it are
/// coalesced and the latest goes out when it ends.
pub const PUSH_WINDOW_MS: u64 = 1000;

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

/// A `presence:subscribe` whose watched users have not answered yet.
#[derive(Debug, Default)]
struct Subscribing {
    /// Watch calls in flight that name this user.
    calls: u32,
    /// `false` once an unsubscribe or a narrower token cancelled it: its answers are undone.
    wanted: bool,
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

    /// Refuses a new socket over `MAX_SOCKETS_PER_USER`; checked before accepting.
    pub fn check_capacity(&self) -> Result<(), Error> {
        let max = self.config.limits.max_sockets_per_user;
        if self.conns.len().saturating_add(self.streams.len()) >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("at most {max} sockets and event streams per user"),
            ));
        }
        Ok(())
    }

    /// A device (a socket or an event stream, already counted by the caller) arrived with the
    /// token's watch `policy`: the user comes online and paused subscriptions resume. Returns
    /// the policy's writes, the `user:state` greeting and the call resuming subscriptions, for
    /// the caller to put in order around its own greeting.
    fn arrive(
        &mut self,
        conn: &ConnId,
        policy: WatchPolicy,
        now: Timestamp,
    ) -> (Vec<UserEffect>, Value, Option<UserEffect>) {
        let effects = self.set_policy(policy);
        self.saved.presence.connect(now);
        self.timers.cancel(&Timer::Pause);
        let resume = std::mem::replace(&mut self.saved.paused, false);
        let current = self.status();
        let mut greeting = json!({ "user": self.id, "connId": conn, "unread": self.unread() });
        if let (Some(object), Ok(Value::Object(status))) =
            (greeting.as_object_mut(), serde_json::to_value(&current))
        {
            object.extend(status);
        }
        let call = (resume && !self.watching.is_empty()).then(|| {
            UserEffect::Call(UserCall::Watch {
                users: self.watching.keys().cloned().collect(),
                active: true,
                reply: None,
            })
        });
        (effects, greeting, call)
    }

    /// Whether any device is connected: a socket or an event stream.
    fn has_devices(&self) -> bool {
        !self.conns.is_empty() || !self.streams.is_empty()
    }

    /// Ends every handler that may change the status. A status (or activity text) different
    /// from `before` is announced: on the user's own devices at once, to watchers through
    /// [`User::push_owed`] (`calls`: whether the caller's shell makes calls now). One
    /// `SavePresence` goes before everything else when anything saved changed, so what is stored
    /// and what is announced cannot drift apart: there is no other way to store a status.
    fn finish(
        &mut self,
        before: &SavedPresence,
        mut effects: Vec<UserEffect>,
        now: Timestamp,
        calls: bool,
    ) -> Vec<UserEffect> {
        let (old, new) = (before.presence.current(), self.saved.presence.current());
        if (old.status, &old.activity) != (new.status, &new.activity) {
            self.saved.rev += 1;
            self.saved.unpushed = true;
            effects.extend(self.to_devices("presence:update", &self.update().entry()));
        }
        effects.extend(self.push_owed(now, calls));
        self.sync_presence_timer();
        if self.saved != *before {
            effects.insert(0, UserEffect::Write(UserWrite::SavePresence(self.saved.clone())));
        }
        effects
    }

    /// Pushes an owed change to the active watchers, at most once per [`PUSH_WINDOW_MS`]: inside
    /// the window it waits for the window's end (the `Push` timer), and then carries the
    /// latest status, so a flapping user costs each watcher one call per window.
    fn push_owed(&mut self, now: Timestamp, calls: bool) -> Option<UserEffect> {
        if !self.saved.unpushed {
            return None;
        }
        let to: Vec<UserId> =
            self.watchers.iter().filter(|(_, active)| **active).map(|(u, _)| u.clone()).collect();
        if to.is_empty() {
            // Paused watchers get the current status when they resume.
            self.saved.unpushed = false;
            self.timers.cancel(&Timer::Push);
            return None;
        }
        let due = self.last_push.map_or(now, |at| at.plus_millis(PUSH_WINDOW_MS));
        if now < due || !calls {
            self.timers.set(Timer::Push, due.max(now));
            return None;
        }
        self.saved.unpushed = false;
        self.last_push = Some(now);
        self.timers.cancel(&Timer::Push);
        Some(UserEffect::Call(UserCall::Push { to, update: self.update() }))
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
            Request::List(p) => {
                let page = self.inbox.page(p.before, p.limit, inbox)?;
                effects.extend(reply(json!({ "notifications": page, "unread": self.unread() })));
            }
            Request::Read(p) => {
                effects.extend(self.mark_read(&p, inbox)?);
                effects.extend(reply(json!({ "unread": self.unread() })));
            }
            Request::Refresh(p) => {
                effects.extend(self.refresh_token(conn, p, now)?);
                let expires = self.conns.get(conn).map(|c| c.expires);
                effects.extend(reply(json!({ "expires": expires })));
            }
        }
        Ok(effects)
    }

    /// `presence:set` (socket or HTTP): the chosen status, checked.
    fn choose_status(
        &mut self,
        status: Status,
        activity: Option<String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        if activity.as_ref().is_some_and(|a| a.chars().count() > MAX_ACTIVITY_CHARS) {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("activity must be at most {MAX_ACTIVITY_CHARS} characters"),
            ));
        }
        self.saved.presence.choose(status, activity, now);
        Ok(())
    }

    /// `presence:unsubscribe` (socket or HTTP): the users that were watched or on their way (a
    /// subscription still in flight is cancelled too; its answer is undone), and the effects.
    fn unwatch(&mut self, users: Vec<UserId>) -> (Vec<UserId>, Vec<UserEffect>) {
        let users: Vec<UserId> = users
            .into_iter()
            .filter(|u| {
                let cancelled = self.subscribing.get_mut(u).filter(|s| s.wanted).map(|s| s.wanted = false);
                self.watching.remove(u).is_some() || cancelled.is_some()
            })
            .collect();
        let mut effects: Vec<UserEffect> =
            users.iter().cloned().map(|x| UserEffect::Write(UserWrite::RemoveWatching(x))).collect();
        if !users.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(users.clone())));
        }
        (users, effects)
    }

    fn subscribe(
        &mut self,
        conn: &ConnId,
        reply_to: Option<Ref>,
        users: Vec<UserId>,
    ) -> Result<Vec<UserEffect>, Error> {
        let wanted = self.plan_subscribe(users)?;
        let reply = PendingReply { conn: conn.clone(), reply_to };
        if wanted.is_empty() {
            return Ok(self.watched(reply, Vec::new()));
        }
        Ok(vec![UserEffect::Call(UserCall::Watch { users: wanted, active: true, reply: Some(reply) })])
    }

    /// The checks of a subscribe (rights, the watch limit), and the subscriptions it puts on
    /// their way; returns the users whose objects are to be asked.
    fn plan_subscribe(&mut self, users: Vec<UserId>) -> Result<Vec<UserId>, Error> {
        let max = self.config.limits.presence_max_watch;
        // Repeats count once, in the order given; a set keeps a long list of repeats (a 64 KiB
        // body holds thousands of ids) from costing a quadratic scan.
        let mut seen = BTreeSet::new();
        let wanted: Vec<UserId> =
            users.into_iter().filter(|u| *u != self.id && seen.insert(u.clone())).collect();
        if let Some(denied) = wanted.iter().find(|u| !self.policy.allows(u)) {
            return Err(Error::new(ErrorCode::Forbidden, format!("this token may not watch {denied}")));
        }
        // Subscriptions still in flight count: their answers have not landed in `watching` yet.
        let new = wanted.iter().filter(|u| !self.watches(u)).count();
        if self.watch_count().saturating_add(new) > max {
            return Err(Error::new(ErrorCode::TooLarge, format!("a user may watch at most {max} users")));
        }
        for user in &wanted {
            let pending = self.subscribing.entry(user.clone()).or_default();
            pending.calls = pending.calls.saturating_add(1);
            pending.wanted = true;
        }
        Ok(wanted)
    }

    /// Whether `user` is watched or a subscription to them is on its way.
    fn watches(&self, user: &UserId) -> bool {
        self.watching.contains_key(user) || self.subscribing.get(user).is_some_and(|s| s.wanted)
    }

    /// Users watched, counting the subscriptions on their way.
    fn watch_count(&self) -> usize {
        let pending =
            self.subscribing.iter().filter(|(u, s)| s.wanted && !self.watching.contains_key(*u)).count();
        self.watching.len() + pending
    }

    /// The watched users' objects answered a subscribe's [`UserCall::Watch`]: rights and wishes
    /// are checked again, since an unsubscribe or a narrower token may have come in meanwhile.
    /// What is still wanted and allowed is remembered; the rest is undone at the watched
    /// user's object and listed in `failed`. The socket that asked gets its reply.
    pub fn watched(
        &mut self,
        reply: PendingReply,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> Vec<UserEffect> {
        let (data, mut effects, undo) = self.settle_subscribe(results);
        if let PendingReply { conn, reply_to: Some(r) } = reply {
            effects.push(UserEffect::Send { to: conn, frame: protocol::reply_ok(&r, &data) });
        }
        if !undo.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(undo)));
        }
        effects
    }

    /// What a subscribe's answers settle: the reply's data (`{"presence", "failed"?}`), the
    /// writes, and the users whose subscription is to be undone at their object.
    fn settle_subscribe(
        &mut self,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> (Value, Vec<UserEffect>, Vec<UserId>) {
        let mut effects = Vec::new();
        let mut presence = Vec::new();
        let mut failed = Vec::new();
        let mut undo = Vec::new();
        for (user, result) in results {
            let wanted = match self.subscribing.get_mut(&user) {
                Some(pending) => {
                    pending.calls = pending.calls.saturating_sub(1);
                    let wanted = pending.wanted;
                    if pending.calls == 0 {
                        self.subscribing.remove(&user);
                    }
                    Some(wanted)
                }
                None => None,
            };
            let refusal = match wanted {
                // The object lost its memory (a failed write) while the call was out.
                None => {
                    Some(Error::new(ErrorCode::Internal, "the subscription was interrupted; subscribe again"))
                }
                Some(_) if !self.policy.allows(&user) => {
                    Some(Error::new(ErrorCode::Forbidden, format!("the newest token may not watch {user}")))
                }
                Some(false) => {
                    Some(Error::new(ErrorCode::Conflict, "unsubscribed before the subscription completed"))
                }
                Some(true) => None,
            };
            match (result, refusal) {
                (Ok(update), None) => {
                    // A push may have landed first with a newer revision: keep the newest.
                    if self.watching.get(&user).is_none_or(|rev| *rev < update.rev) {
                        self.watching.insert(user.clone(), update.rev);
                        effects.push(UserEffect::Write(UserWrite::SaveWatching { user, rev: update.rev }));
                    }
                    presence.push(update);
                }
                (Ok(_), Some(error)) => {
                    failed.push(json!({ "user": user, "error": error }));
                    undo.push(user);
                }
                (Err(error), _) => failed.push(json!({ "user": user, "error": error })),
            }
        }
        let presence: Vec<_> = presence.iter().map(PresenceUpdate::entry).collect();
        let mut data = json!({ "presence": presence });
        if let (false, Some(object)) = (failed.is_empty(), data.as_object_mut()) {
            object.insert("failed".into(), Value::Array(failed));
        }
        (data, effects, undo)
    }

    /// Answers to a resume or pause ([`UserCall::Watch`] without a reply): statuses that
    /// changed meanwhile go to every socket. A user no longer watched (unsubscribed or dropped
    /// by a newer token while the call was out) is not watched again: the call is undone.
    pub fn resumed(&mut self, results: Vec<(UserId, Result<PresenceUpdate, Error>)>) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        let mut undo = Vec::new();
        for (user, result) in results {
            let Ok(update) = result else { continue };
            match self.watching.get_mut(&user) {
                Some(rev) if *rev < update.rev => {
                    *rev = update.rev;
                    effects.push(UserEffect::Write(UserWrite::SaveWatching { user, rev: update.rev }));
                    effects.extend(self.to_devices("presence:update", &update.entry()));
                }
                Some(_) => {}
                // A subscribe on its way settles it when its own answer lands.
                None if self.subscribing.get(&user).is_some_and(|s| s.wanted) => {}
                None => undo.push(user),
            }
        }
        if !undo.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(undo)));
        }
        effects
    }

    /// Watchers answered a [`UserCall::Push`]: forget the ones that stopped watching, pause
    /// the ones without a socket. Failed pushes change nothing (the next change retries).
    pub fn pushed(&mut self, answers: Vec<(UserId, Result<PushAnswer, Error>)>) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        for (watcher, answer) in answers {
            match answer {
                Ok(PushAnswer { watching: false, .. }) if self.watchers.remove(&watcher).is_some() => {
                    effects.push(UserEffect::Write(UserWrite::RemoveWatcher(watcher)));
                }
                Ok(PushAnswer { active: false, .. }) => {
                    if let Some(active) = self.watchers.get_mut(&watcher).filter(|a| **a) {
                        *active = false;
                        effects.push(UserEffect::Write(UserWrite::SaveWatcher { watcher, active: false }));
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
            effects.push(UserEffect::Write(UserWrite::SaveWatcher {
                watcher: request.watcher,
                active: request.active,
            }));
        }
        Ok((self.update(), effects))
    }

    /// `POST /unwatch`.
    pub fn unwatch_requested(&mut self, watcher: &UserId) -> Vec<UserEffect> {
        match self.watchers.remove(watcher) {
            Some(_) => vec![UserEffect::Write(UserWrite::RemoveWatcher(watcher.clone()))],
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
            effects.push(UserEffect::Write(UserWrite::SaveWatching {
                user: update.user.clone(),
                rev: update.rev,
            }));
            effects.extend(self.to_devices("presence:update", &update.entry()));
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
        let mut effects: Vec<UserEffect> =
            writes.into_iter().map(|x| UserEffect::Write(UserWrite::Inbox(x))).collect();
        if !stored.duplicate {
            effects.extend(self.to_devices("notification:new", &stored.notification));
            effects.extend(self.count_frame());
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
        let mut effects: Vec<UserEffect> =
            writes.into_iter().map(|x| UserEffect::Write(UserWrite::Inbox(x))).collect();
        if changed {
            effects.extend(self.count_frame());
        }
        Ok(effects)
    }

    fn count_frame(&self) -> Vec<UserEffect> {
        self.to_devices("notification:count", &json!({ "unread": self.unread() }))
    }

    /// `event` with `data` for every device: one frame for the sockets, one Server-Sent Event
    /// for the streams, each serialized once.
    fn to_devices<D: Serialize>(&self, event: &str, data: &D) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        if !self.conns.is_empty() {
            effects.push(UserEffect::Broadcast { except: None, frame: protocol::event(event, data) });
        }
        if !self.streams.is_empty() {
            effects.push(UserEffect::StreamBroadcast { event: protocol::sse_event(event, None, data) });
        }
        effects
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

    /// Adopts the newest token's policy and drops subscriptions it no longer allows.
    fn set_policy(&mut self, policy: WatchPolicy) -> Vec<UserEffect> {
        if policy == self.policy {
            return Vec::new();
        }
        let dropped: Vec<UserId> = self.watching.keys().filter(|u| !policy.allows(u)).cloned().collect();
        // Subscriptions in flight to users the new token does not allow are undone when they land.
        for (_, pending) in self.subscribing.iter_mut().filter(|(u, _)| !policy.allows(u)) {
            pending.wanted = false;
        }
        self.policy = policy.clone();
        let mut effects = vec![UserEffect::Write(UserWrite::SavePolicy(policy))];
        for user in &dropped {
            self.watching.remove(user);
            effects.push(UserEffect::Write(UserWrite::RemoveWatching(user.clone())));
        }
        if !dropped.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(dropped)));
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

impl Object for User {
    type Write = UserWrite;
    type Call = UserCall;
    type Info = UserConnInfo;
    /// The token's watch policy.
    type Connect = WatchPolicy;
    type Reader<'a> = dyn Inbox + 'a;

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
                Timer::Pause => {
                    if !self.has_devices() && !self.saved.paused {
                        self.saved.paused = true;
                        if !self.watching.is_empty() {
                            let users = self.watching.keys().cloned().collect();
                            effects.push(UserEffect::Call(UserCall::Watch {
                                users,
                                active: false,
                                reply: None,
                            }));
                        }
                    }
                }
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
