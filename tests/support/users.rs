//! Many user objects in memory, with a virtual clock: effects are applied to per-user stores
//! and sockets, and calls between objects are delivered at once, as the shell would make them.
//! A "restart" rebuilds a user from what its store holds, as a wake does.
#![allow(dead_code)]

use super::config;
use super::shell::{self, Shell};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchboard::core::admission::Admission;
use switchboard::core::caps::Capabilities;
use switchboard::core::config::{Config, Limits};
use switchboard::core::error::Error;
use switchboard::core::ids::{ConnId, UserId};
use switchboard::core::object::{Object, SSE_KEEPALIVE};
use switchboard::core::presence::PresenceTimes;
use switchboard::core::protocol::Incoming;
use switchboard::core::time::Timestamp;
use switchboard::core::user::endpoint::Endpoint;
use switchboard::core::user::inbox::MemoryInbox;
use switchboard::core::user::watch::{UnwatchRequest, WatchPolicy, WatchRequest};
use switchboard::core::user::{
    SavedPresence, StoredUser, User, UserCall, UserConnInfo, UserEffect, UserStreamInfo, UserWrite,
};

pub const TIMES: PresenceTimes = PresenceTimes { away_ms: 300_000, offline_ms: 600_000, grace_ms: 30_000 };

/// What one user's storage holds.
#[derive(Default, Clone)]
pub struct Store {
    pub presence: Option<SavedPresence>,
    pub policy: WatchPolicy,
    pub watchers: BTreeMap<UserId, bool>,
    pub watching: BTreeMap<UserId, u64>,
    pub inbox: MemoryInbox,
    pub writes: usize,
}

impl Store {
    /// Stores one write as the user object's SQL does.
    pub fn write(&mut self, write: UserWrite) {
        match write {
            UserWrite::SavePresence(p) => {
                self.presence = Some(p);
                self.writes += 1;
            }
            UserWrite::SavePolicy(p) => self.policy = p,
            UserWrite::Inbox(write) => self.inbox.apply(&write),
            UserWrite::SaveWatcher { watcher, active } => {
                self.watchers.insert(watcher, active);
            }
            UserWrite::RemoveWatcher(w) => {
                self.watchers.remove(&w);
            }
            UserWrite::SaveWatching { user, rev } => {
                self.watching.insert(user, rev);
            }
            UserWrite::RemoveWatching(u) => {
                self.watching.remove(&u);
            }
        }
    }
}

/// A user object alone ([`super::solo::Solo`]): no other user's object answers its calls.
impl super::solo::Storage<User> for Store {
    fn write(&mut self, write: UserWrite) {
        Store::write(self, write);
    }

    fn reader(&self) -> &(dyn switchboard::core::user::inbox::Inbox + '_) {
        &self.inbox
    }

    fn call(&mut self, user: &mut User, call: UserCall, _now: Timestamp) -> Vec<UserEffect> {
        let gone = || Error::new(switchboard::core::error::ErrorCode::Internal, "no such object here");
        match call {
            UserCall::Push { to, .. } => user.pushed(to.into_iter().map(|u| (u, Err(gone()))).collect()),
            UserCall::Watch { users, reply, .. } => {
                let results = users.into_iter().map(|u| (u, Err(gone()))).collect();
                match reply {
                    Some(reply) => user.watched(reply, results),
                    None => user.resumed(results),
                }
            }
            UserCall::Unwatch(_) => Vec::new(),
        }
    }
}

pub struct Users {
    pub users: BTreeMap<UserId, User>,
    pub stores: BTreeMap<UserId, Store>,
    /// Frames received per connection.
    pub sockets: BTreeMap<ConnId, Vec<Value>>,
    pub owner: BTreeMap<ConnId, UserId>,
    /// Each socket's token expiry, as its attachment keeps it.
    pub expires: BTreeMap<ConnId, Timestamp>,
    pub closed: BTreeMap<ConnId, u16>,
    /// How often each object handled a call from another object.
    pub woken: BTreeMap<UserId, usize>,
    /// Each object's alarm, kept by the "platform" across evictions.
    pub alarms: BTreeMap<UserId, Timestamp>,
    pub now: Timestamp,
    pub config: Config,
    /// While set, `Watch` calls stay in flight (in `held`) until [`Users::release`]: their
    /// answers land after whatever the test does meanwhile. Other calls are made at once.
    pub hold_watch: bool,
    pub held: Vec<(UserId, UserCall)>,
    /// Events each open event stream received, as `(event, data)`; a keepalive comment is
    /// `("keepalive", null)`.
    pub streams: BTreeMap<ConnId, Vec<(String, Value)>>,
    pub stream_owner: BTreeMap<ConnId, UserId>,
    /// Streams the user object ended, with the last event it sent (`None`: dropped, no event).
    pub ended: BTreeMap<ConnId, Option<(String, Value)>>,
    next_conn: u32,
}

/// Reads the Server-Sent Events in `text` as `(event, data)` pairs.
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            if block.starts_with(':') {
                return ("keepalive".to_owned(), Value::Null);
            }
            let mut event = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (event, data)
        })
        .collect()
}

pub fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// Everyone may watch everyone.
pub fn open_policy() -> WatchPolicy {
    WatchPolicy { friends: None, caps: Capabilities::parse(r#"{"*":["watch"]}"#).unwrap() }
}

impl Users {
    pub fn new() -> Users {
        Users::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Users {
        let mut config = config(limits);
        config.presence = TIMES;
        Users {
            users: BTreeMap::new(),
            stores: BTreeMap::new(),
            sockets: BTreeMap::new(),
            owner: BTreeMap::new(),
            expires: BTreeMap::new(),
            closed: BTreeMap::new(),
            woken: BTreeMap::new(),
            alarms: BTreeMap::new(),
            now: Timestamp(1_700_000_000_000),
            config,
            hold_watch: false,
            held: Vec::new(),
            streams: BTreeMap::new(),
            stream_owner: BTreeMap::new(),
            ended: BTreeMap::new(),
            next_conn: 0,
        }
    }

    /// The user's object, rebuilt from its store if it is not in memory.
    pub fn user(&mut self, id: &UserId) -> &mut User {
        if !self.users.contains_key(id) {
            let store = self.stores.entry(id.clone()).or_default().clone();
            let stored = StoredUser {
                presence: store.presence.clone().unwrap_or_default(),
                policy: store.policy.clone(),
                watchers: store.watchers.clone(),
                watching: store.watching.clone(),
                inbox: store.inbox.counts(),
            };
            let mut user = User::new(id.clone(), stored, self.config.clone());
            let now = self.now;
            let survivors: Vec<ConnId> = self
                .owner
                .iter()
                .filter(|(c, u)| *u == id && !self.closed.contains_key(*c))
                .map(|(c, _)| c.clone())
                .collect();
            for conn in survivors {
                let expires = self.expires.get(&conn).copied().unwrap_or(now);
                user.restore_conn(UserConnInfo { conn, expires }, now);
            }
            let effects = user.restored(now);
            self.users.insert(id.clone(), user);
            // As the shell does on a wake: persist what the rebuild decided, re-aim the alarm.
            self.apply(id, effects);
        }
        self.users.get_mut(id).unwrap()
    }

    /// The socket is gone without its object hearing of it (a restart drops every socket).
    pub fn vanish(&mut self, conn: &ConnId) {
        self.closed.insert(conn.clone(), 1006);
    }

    /// Drops the object from memory (eviction); its sockets stay open, as with hibernation.
    /// Its event streams end with it: the shell holds them in memory only.
    pub fn evict(&mut self, id: &UserId) {
        self.users.remove(id);
        let gone: Vec<ConnId> = self.open_streams(id).into_iter().collect();
        for stream in gone {
            self.ended.insert(stream, None);
        }
    }

    /// Opens an event stream (`GET /v1/users/me/events`) for `user`, with an hour's token.
    pub fn open_stream(&mut self, user: &str) -> Result<ConnId, Error> {
        self.open_stream_with(user, open_policy(), 3_600_000)
    }

    pub fn open_stream_with(
        &mut self,
        user: &str,
        policy: WatchPolicy,
        ttl_ms: u64,
    ) -> Result<ConnId, Error> {
        let id = uid(user);
        self.next_conn += 1;
        let stream = ConnId::parse(&format!("s{}", self.next_conn)).unwrap();
        let now = self.now;
        let info = UserStreamInfo { id: stream.clone(), expires: now.plus_millis(ttl_ms) };
        // As the shell does: the stream is held before the effects are applied.
        self.user(&id);
        self.streams.insert(stream.clone(), Vec::new());
        self.stream_owner.insert(stream.clone(), id.clone());
        match self.user(&id).open_stream(info, policy, now) {
            Ok(effects) => {
                self.apply(&id, effects);
                Ok(stream)
            }
            Err(e) => {
                self.streams.remove(&stream);
                self.stream_owner.remove(&stream);
                Err(e)
            }
        }
    }

    /// The stream's client went away; the shell reports it.
    pub fn drop_stream(&mut self, stream: &ConnId) {
        let id = self.stream_owner[stream].clone();
        self.ended.insert(stream.clone(), None);
        let now = self.now;
        let effects = self.user(&id).close_stream(stream, now);
        self.apply(&id, effects);
    }

    /// Events of `event` that `stream` received, consumed.
    pub fn take_events(&mut self, stream: &ConnId, event: &str) -> Vec<Value> {
        let events = self.streams.get_mut(stream).unwrap();
        let (matching, rest): (Vec<_>, Vec<_>) = events.drain(..).partition(|(e, _)| e == event);
        *events = rest;
        matching.into_iter().map(|(_, d)| d).collect()
    }

    /// An HTTP request to `user`'s object that is answered at once, taken as the shell takes it
    /// (`Endpoint::parse`, then `User::answer`); its answer is the 200's body.
    pub fn http(&mut self, user: &str, path: &str, body: Value) -> Result<Value, Error> {
        let id = uid(user);
        let now = self.now;
        let Endpoint::Now(request) = Endpoint::parse(path, &body.to_string(), &Admission::default())? else {
            panic!("{path} is not answered at once");
        };
        let inbox = self.stores.entry(id.clone()).or_default().inbox.clone();
        let (answer, effects) = self.user(&id).answer(request, now, &inbox)?;
        self.apply(&id, effects);
        Ok(answer)
    }

    /// `POST /v1/users/me/status`.
    pub fn http_status(&mut self, user: &str, body: Value) -> Result<Value, Error> {
        self.http(user, "/status", body)
    }

    /// `POST /v1/users/me/active`.
    pub fn http_active(&mut self, user: &str) -> Result<(), Error> {
        self.http(user, "/active", Value::Null).map(|_| ())
    }

    /// `POST /v1/users/me/subscribe`: the watched objects are asked at once, as the shell does
    /// before it answers.
    pub fn http_subscribe(&mut self, user: &str, users: &[&str]) -> Result<Value, Error> {
        self.http_subscribe_with(user, open_policy(), users)
    }

    /// `POST /v1/users/me/subscribe` with a token whose watch policy is `policy`.
    pub fn http_subscribe_with(
        &mut self,
        user: &str,
        policy: WatchPolicy,
        users: &[&str],
    ) -> Result<Value, Error> {
        let id = uid(user);
        let now = self.now;
        let (effects, wanted) =
            self.user(&id).subscribe_over_http(users.iter().map(|u| uid(u)).collect(), policy, now);
        self.apply(&id, effects);
        let wanted = wanted?;
        let mut results = Vec::new();
        for watched in wanted {
            let request = WatchRequest { watcher: id.clone(), active: true };
            let result = self.wake(&watched).watch_requested(request).map(|(update, effects)| {
                self.apply(&watched, effects);
                update
            });
            results.push((watched, result));
        }
        let (data, effects) = self.user(&id).subscribed(results);
        self.apply(&id, effects);
        Ok(data)
    }

    /// `POST /v1/users/me/unsubscribe`.
    pub fn http_unsubscribe(&mut self, user: &str, users: &[&str]) -> Result<Value, Error> {
        self.http(user, "/unsubscribe", json!({ "users": users }))
    }

    fn open_streams(&self, id: &UserId) -> Vec<ConnId> {
        self.stream_owner
            .iter()
            .filter(|(s, u)| *u == id && !self.ended.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn feed_stream(&mut self, stream: &ConnId, text: &str) {
        if self.ended.contains_key(stream) {
            return;
        }
        if let Some(events) = self.streams.get_mut(stream) {
            events.extend(sse_events(text));
        }
    }

    pub fn connect(&mut self, user: &str) -> ConnId {
        self.connect_with(user, open_policy(), 3_600_000)
    }

    pub fn connect_with(&mut self, user: &str, policy: WatchPolicy, ttl_ms: u64) -> ConnId {
        let id = uid(user);
        self.next_conn += 1;
        let conn = ConnId::parse(&format!("c{}", self.next_conn)).unwrap();
        // Wake the object before the new socket exists, or it would count as a survivor.
        self.user(&id).check_capacity().expect("capacity");
        self.sockets.insert(conn.clone(), Vec::new());
        self.owner.insert(conn.clone(), id.clone());
        let now = self.now;
        let info = UserConnInfo { conn: conn.clone(), expires: now.plus_millis(ttl_ms) };
        self.expires.insert(conn.clone(), info.expires);
        let effects = self.user(&id).handle_connect(info, policy, now, &MemoryInbox::default());
        self.apply(&id, effects);
        conn
    }

    /// The socket closes. As in the shell, a close that finds the object evicted rebuilds it
    /// with the closing socket still counted, then handles the close.
    pub fn disconnect(&mut self, conn: &ConnId) {
        let id = self.owner[conn].clone();
        self.user(&id);
        self.closed.insert(conn.clone(), 1000);
        let now = self.now;
        let effects = self.user(&id).handle_close(conn, now);
        self.apply(&id, effects);
    }

    pub fn send(&mut self, conn: &ConnId, frame: Value) {
        self.send_raw(conn, &frame.to_string());
    }

    pub fn send_raw(&mut self, conn: &ConnId, text: &str) {
        let id = self.owner[conn].clone();
        let now = self.now;
        let inbox = self.stores.entry(id.clone()).or_default().inbox.clone();
        let effects = self.user(&id).handle_frame(conn, Incoming::Text(text), now, &inbox);
        self.apply(&id, effects);
    }

    /// The app server's `POST /v1/notify` for one user.
    pub fn notify(&mut self, user: &str, notification: Value, key: Option<&str>) -> Result<Value, Error> {
        self.http(user, "/notify", json!({ "notification": notification, "key": key }))
    }

    /// Moves the clock, firing every user's alarm at each deadline on the way.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        loop {
            let next =
                self.alarms.iter().map(|(id, at)| (*at, id.clone())).filter(|(at, _)| *at <= target).min();
            let Some((at, id)) = next else { break };
            self.now = self.now.max(at);
            let now = self.now;
            self.alarms.remove(&id);
            let effects = self.user(&id).handle_alarm(now);
            self.apply(&id, effects);
        }
        self.now = target;
    }

    /// Makes the held `Watch` calls, in the order they were asked for, and stops holding.
    pub fn release(&mut self) {
        self.hold_watch = false;
        for (id, call) in std::mem::take(&mut self.held) {
            self.apply(&id, vec![UserEffect::Call(call)]);
        }
    }

    /// Frames of `event` that `conn` received, consumed.
    pub fn take(&mut self, conn: &ConnId, event: &str) -> Vec<Value> {
        let frames = self.sockets.get_mut(conn).unwrap();
        let (matching, rest): (Vec<Value>, Vec<Value>) = frames.drain(..).partition(|f| f["t"] == event);
        *frames = rest;
        matching
    }

    /// The reply to `ref`, consumed.
    pub fn reply(&mut self, conn: &ConnId, r: &str) -> Value {
        let replies = self.take(conn, "reply");
        let (mine, rest): (Vec<Value>, Vec<Value>) = replies.into_iter().partition(|f| f["ref"] == r);
        self.sockets.get_mut(conn).unwrap().extend(rest);
        mine.into_iter().next().unwrap_or_else(|| panic!("no reply to {r}"))
    }

    fn open_conns(&self, id: &UserId) -> Vec<ConnId> {
        self.owner
            .iter()
            .filter(|(c, u)| *u == id && !self.closed.contains_key(*c))
            .map(|(c, _)| c.clone())
            .collect()
    }

    fn wake(&mut self, id: &UserId) -> &mut User {
        *self.woken.entry(id.clone()).or_default() += 1;
        self.user(id)
    }

    pub fn apply(&mut self, id: &UserId, effects: Vec<UserEffect>) {
        shell::apply(&mut At { net: self, id: id.clone() }, effects);
        // The shell re-aims the alarm after every event.
        let next = self.users.get(id).and_then(User::poll_timeout);
        match next {
            Some(at) => self.alarms.insert(id.clone(), at),
            None => self.alarms.remove(id),
        };
    }

    fn deliver(&mut self, conn: &ConnId, frame: &str) {
        if self.closed.contains_key(conn) {
            return;
        }
        if let Some(inbox) = self.sockets.get_mut(conn) {
            inbox.push(serde_json::from_str(frame).unwrap());
        }
    }
}

/// The shell of one user object in the network: its store, its sockets and streams, and calls
/// delivered to the other objects at once.
struct At<'a> {
    net: &'a mut Users,
    id: UserId,
}

impl Shell<User> for At<'_> {
    fn write(&mut self, write: UserWrite) {
        self.net.stores.entry(self.id.clone()).or_default().write(write);
    }

    fn send(&mut self, to: ConnId, frame: String) {
        self.net.deliver(&to, &frame);
    }

    fn broadcast(&mut self, except: Option<ConnId>, frame: String) {
        for conn in self.net.open_conns(&self.id) {
            if except.as_ref() != Some(&conn) {
                self.net.deliver(&conn, &frame);
            }
        }
    }

    fn close(&mut self, conn: ConnId, code: u16) {
        self.net.closed.insert(conn.clone(), code);
        let now = self.net.now;
        let effects = self.net.user(&self.id).handle_close(&conn, now);
        self.net.apply(&self.id, effects);
    }

    fn update_conn(&mut self, info: UserConnInfo) {
        self.net.expires.insert(info.conn, info.expires);
    }

    fn call(&mut self, call: UserCall) {
        let (net, id) = (&mut *self.net, &self.id);
        match call {
            UserCall::Push { to, update } => {
                let mut answers = Vec::new();
                for watcher in to {
                    let (answer, effects) = net.wake(&watcher).presence_pushed(update.clone());
                    net.apply(&watcher, effects);
                    answers.push((watcher, Ok(answer)));
                }
                let effects = net.user(id).pushed(answers);
                net.apply(id, effects);
            }
            call @ UserCall::Watch { .. } if net.hold_watch => net.held.push((id.clone(), call)),
            UserCall::Watch { users, active, reply } => {
                let mut results = Vec::new();
                for user in users {
                    let request = WatchRequest { watcher: id.clone(), active };
                    let result = net.wake(&user).watch_requested(request);
                    let result = result.map(|(update, effects)| {
                        net.apply(&user, effects);
                        update
                    });
                    results.push((user, result));
                }
                let effects = match reply {
                    Some(reply) => net.user(id).watched(reply, results),
                    None => net.user(id).resumed(results),
                };
                net.apply(id, effects);
            }
            UserCall::Unwatch(users) => {
                for user in users {
                    let request = UnwatchRequest { watcher: id.clone() };
                    let effects = net.wake(&user).unwatch_requested(&request.watcher);
                    net.apply(&user, effects);
                }
            }
        }
    }

    fn stream_send(&mut self, to: ConnId, event: String) {
        self.net.feed_stream(&to, &event);
    }

    fn stream_broadcast(&mut self, event: String) {
        for stream in self.net.open_streams(&self.id) {
            self.net.feed_stream(&stream, &event);
        }
    }

    fn keepalive(&mut self) {
        for stream in self.net.open_streams(&self.id) {
            self.net.feed_stream(&stream, SSE_KEEPALIVE);
        }
    }

    fn stream_end(&mut self, stream: ConnId, last: String) {
        let last = sse_events(&last).into_iter().next();
        self.net.ended.insert(stream, last);
    }
}
