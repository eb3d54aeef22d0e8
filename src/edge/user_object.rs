//! `UserObject`: one per user (JWT `sub`). Holds the user's sockets on every device through the
//! Hibernation API, their status, watchers and inbox in SQLite, their one alarm, and a [`User`]
//! rebuilt lazily after every wake. Calls to other users' objects (status pushes, watch
//! requests) are made after the effects that caused them are applied, without holding the
//! borrow, and their answers go back into the core.

use super::sql::{
    self, bound, corrupt, count_wake, random_id, read_meta, rows, run, safe_integer, write_meta,
};
use super::sse::{self, Stream};
use super::users::{fan_out, CALL_CONCURRENCY};
use super::{config, http, internal, now, socket};
use crate::core::error::LogError;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::notify::Delivery;
use crate::core::object::{phases, Effect, Object, SSE_KEEPALIVE};
use crate::core::protocol;
use crate::core::route::number_param;
use crate::core::time::Timestamp;
use crate::core::user::inbox::{Inbox, InboxCounts, InboxWrite, Notification, ReadRequest};
use crate::core::user::request::Users;
use crate::core::user::watch::{PresenceUpdate, PushAnswer, UnwatchRequest, WatchPolicy, WatchRequest};
use crate::core::user::{
    StatusRequest, StoredUser, User, UserCall, UserConnInfo, UserEffect, UserStreamInfo, UserWrite,
};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use worker::{
    durable_object, Env, Request, Response, ResponseBuilder, SqlStorage, SqlStorageValue, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

/// The schema's versions, in order (see [`sql::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the first release (5a06e97).
    "CREATE TABLE IF NOT EXISTS notifications (
       id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, read INTEGER NOT NULL, key TEXT UNIQUE, content TEXT NOT NULL
     );
     CREATE TABLE IF NOT EXISTS watchers (user TEXT PRIMARY KEY, active INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS watching (user TEXT PRIMARY KEY, rev INTEGER NOT NULL);",
];

/// Ids per `IN (...)`: SQLite in a Durable Object binds at most 100 values per statement.
const IDS_PER_STATEMENT: usize = 100;

struct Live {
    user: User,
    sockets: HashMap<ConnId, WebSocket>,
    /// Open Server-Sent Events responses, by the id the user knows them by. They live only in
    /// this instance: an open response keeps the object in memory, and whatever drops the live
    /// state (a failed write, a restart) ends them, so a rebuild never finds one.
    streams: HashMap<ConnId, Stream>,
    /// The alarm this instance last set (`None` after a wake: unknown, so it is set again).
    alarm: Option<Timestamp>,
    sql: SqlStorage,
}

/// A user's Durable Object.
#[durable_object]
pub struct UserObject {
    /// Shared with background calls, which outlive the request that started them.
    inner: Rc<Inner>,
}

struct Inner {
    state: State,
    env: Env,
    live: RefCell<Option<Live>>,
}

impl worker::DurableObject for UserObject {
    fn new(state: State, env: Env) -> Self {
        if let Ok(pair) = WebSocketRequestResponsePair::new(r#"{"t":"ping"}"#, r#"{"t":"pong"}"#) {
            let _ = state.as_raw().set_websocket_auto_response(&pair);
        }
        UserObject { inner: Rc::new(Inner { state, env, live: RefCell::new(None) }) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let this = &self.inner;
        let path = req.path();
        let body = if req.method() == worker::Method::Post { req.text().await.ok() } else { None };
        let body = body.unwrap_or_default();
        let result = match path.as_str() {
            "/connect" => this.accept_connection(&req),
            "/events" => this.events(&req),
            "/status" => this.status(&req, &body),
            "/active" => this.active(&req),
            "/subscribe" => this.subscribe(&req, &body).await,
            "/unsubscribe" => this.unsubscribe(&req, &body),
            "/notify" => this.notify(&req, &body),
            "/notifications" => this.list(&req),
            "/read" => this.read(&req, &body),
            "/watch" => this.watch(&req, &body),
            "/unwatch" => this.unwatch(&req, &body),
            "/presence" => this.presence(&req, &body),
            "/stats" => this.stats(&req).map(|r| (r, Vec::new())),
            _ => Err(Error::new(ErrorCode::NotFound, "no such user endpoint")),
        };
        match result {
            Ok((response, calls)) => {
                if path == "/connect" || path == "/events" {
                    // The handshake (or the stream's headers) must not wait for other objects:
                    // resume in the background.
                    let inner = Rc::clone(this);
                    worker::wasm_bindgen_futures::spawn_local(async move { inner.run(calls).await });
                } else {
                    this.run(calls).await;
                }
                Ok(response)
            }
            Err(e) => http::error(&e),
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(conn) = socket::conn_of::<UserConnInfo>(&ws) else {
            socket::close(&ws, close::INTERNAL, "unknown connection");
            return Ok(());
        };
        let this = &self.inner;
        let calls = {
            let mut slot = this.live.borrow_mut();
            let live = match this.load(&mut slot, None) {
                Ok(live) => live,
                Err(e) => {
                    socket::send(&ws, &protocol::error_frame(&e));
                    socket::close(&ws, close::INTERNAL, "user unavailable");
                    return Ok(());
                }
            };
            let frame = socket::incoming(&message);
            let inbox = SqlInbox(&live.sql);
            let effects = live.user.handle_frame(&conn, frame, now(), &inbox);
            this.apply(&mut slot, Some(&conn), effects)
        };
        this.run(calls).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _clean: bool,
    ) -> worker::Result<()> {
        socket::finish_close(&ws, code, &reason);
        self.inner.forget(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.inner.forget(&ws);
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let this = &self.inner;
        let calls = {
            let mut slot = this.live.borrow_mut();
            match this.load(&mut slot, None) {
                Ok(live) => {
                    live.alarm = None; // this alarm is spent
                    let effects = live.user.handle_alarm(now());
                    this.apply(&mut slot, None, effects)
                }
                Err(_) => Vec::new(),
            }
        };
        this.run(calls).await;
        Response::ok("")
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn user_hint(req: &Request) -> Option<UserId> {
    header(req, internal::USER).and_then(|u| UserId::parse(&u).ok())
}

fn query(req: &Request, name: &str) -> Option<String> {
    req.url().ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(body)
        .map_err(|e| Error::new(ErrorCode::BadRequest, format!("body must be {what}: {e}")))
}

type Answer = Result<(Response, Vec<UserCall>), Error>;

impl Inner {
    fn accept_connection(&self, req: &Request) -> Answer {
        let bad = || Error::new(ErrorCode::Internal, "malformed internal connect request");
        let user = user_hint(req).ok_or_else(bad)?;
        let expires =
            header(req, internal::EXPIRES).and_then(|x| x.parse().ok()).map(Timestamp).ok_or_else(bad)?;
        let policy: WatchPolicy =
            header(req, internal::POLICY).and_then(|p| serde_json::from_str(&p).ok()).ok_or_else(bad)?;
        let info = UserConnInfo { conn: random_id()?, expires };

        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, Some(&user))?;
        live.user.check_capacity()?;
        let pair = WebSocketPair::new().map_err(http::internal)?;
        let mut response = ResponseBuilder::new().with_status(101);
        if let Some(protocol) = header(req, internal::PROTOCOL) {
            response = response.with_header("sec-websocket-protocol", &protocol).map_err(http::internal)?;
        }
        let tag = format!("c:{}", info.conn);
        socket::accept(&self.state, &pair.server, &[tag.as_str()])
            .map_err(|_| Error::new(ErrorCode::Internal, "could not accept the socket"))?;
        // The runtime now holds the socket: on any failure from here it is closed, or the next
        // wake would restore it as a connection that keeps the user online, whose client got no
        // greeting.
        match self.open(&mut slot, &pair.server, info, policy) {
            Ok(calls) => Ok((response.with_websocket(pair.client).empty(), calls)),
            Err(e) => {
                socket::close(&pair.server, close::INTERNAL, "could not open the connection");
                Err(e)
            }
        }
    }

    /// Makes an accepted socket one of the user's: its attachment, then the core's greeting
    /// and status change. On an error the user has not kept it (a failed write drops the
    /// live state; a stored `online` then ends through the grace period of the next wake).
    fn open(
        &self,
        slot: &mut Option<Live>,
        ws: &WebSocket,
        info: UserConnInfo,
        policy: WatchPolicy,
    ) -> Result<Vec<UserCall>, Error> {
        ws.serialize_attachment(&info).map_err(http::internal)?;
        let live = slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "user not loaded"))?;
        live.sockets.insert(info.conn.clone(), ws.clone());
        let effects = live.user.handle_connect(info, policy, now(), &SqlInbox(&live.sql));
        let calls = self.apply(slot, None, effects);
        if slot.is_none() {
            return Err(Error::new(ErrorCode::Internal, "could not open the connection"));
        }
        Ok(calls)
    }

    fn notify(&self, req: &Request, body: &str) -> Answer {
        let body: Delivery = parse_body(body, r#"{"notification", "key"?}"#)?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let (ack, effects) = live.user.notify(body.notification, body.key, now(), &SqlInbox(&live.sql))?;
        self.applied(&mut slot, effects, &ack)
    }

    fn list(&self, req: &Request) -> Answer {
        let before = number_param("before", query(req, "before").as_deref())?;
        let limit =
            number_param("limit", query(req, "limit").as_deref())?.map(|l| l.min(u64::from(u32::MAX)) as u32);
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let page = live.user.notifications(before, limit, &SqlInbox(&live.sql))?;
        let body = serde_json::json!({ "notifications": page, "unread": live.user.unread() });
        Ok((http::json(200, &body)?, Vec::new()))
    }

    fn read(&self, req: &Request, body: &str) -> Answer {
        let request: ReadRequest = parse_body(body, r#"{"ids": [...]} or {"all": true}"#)?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let effects = live.user.mark_read(&request, &SqlInbox(&live.sql))?;
        let unread = live.user.unread();
        self.applied(&mut slot, effects, &serde_json::json!({ "unread": unread }))
    }

    fn watch(&self, req: &Request, body: &str) -> Answer {
        let request: WatchRequest = parse_body(body, r#"{"watcher", "active"}"#)?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let (update, effects) = live.user.watch_requested(request)?;
        self.applied(&mut slot, effects, &update)
    }

    fn unwatch(&self, req: &Request, body: &str) -> Answer {
        let request: UnwatchRequest = parse_body(body, r#"{"watcher"}"#)?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let effects = live.user.unwatch_requested(&request.watcher);
        self.applied(&mut slot, effects, &serde_json::json!({}))
    }

    fn presence(&self, req: &Request, body: &str) -> Answer {
        let update: PresenceUpdate = parse_body(body, "a presence update")?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let (answer, effects) = live.user.presence_pushed(update);
        self.applied(&mut slot, effects, &answer)
    }

    /// `GET /v1/users/me/events`: a Server-Sent Events stream that gets what the user's sockets
    /// get, `user:state` first (see `core::user::streams`).
    fn events(self: &Rc<Self>, req: &Request) -> Answer {
        let bad = || Error::new(ErrorCode::Internal, "malformed internal events request");
        let user = user_hint(req).ok_or_else(bad)?;
        let expires =
            header(req, internal::EXPIRES).and_then(|x| x.parse().ok()).map(Timestamp).ok_or_else(bad)?;
        let policy: WatchPolicy =
            header(req, internal::POLICY).and_then(|p| serde_json::from_str(&p).ok()).ok_or_else(bad)?;
        let info = UserStreamInfo { id: random_id()?, expires };
        let id = info.id.clone();

        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, Some(&user))?;
        live.user.check_capacity()?;
        // A client that goes away is noticed when the runtime drops the body, not only at the
        // next keepalive: its departure starts the grace period as a socket's close does.
        let weak = Rc::downgrade(self);
        let gone = id.clone();
        let (stream, body) = Stream::watched(move || {
            if let Some(inner) = weak.upgrade() {
                worker::wasm_bindgen_futures::spawn_local(async move { inner.stream_gone(&gone) });
            }
        });
        // Held before the effects are applied: the first one addressed to it is `user:state`.
        live.streams.insert(id.clone(), stream);
        let effects = match live.user.open_stream(info, policy, now()) {
            Ok(effects) => effects,
            Err(e) => {
                live.streams.remove(&id);
                return Err(e);
            }
        };
        let calls = self.apply(&mut slot, None, effects);
        if slot.is_none() {
            return Err(Error::new(ErrorCode::Internal, "could not open the event stream"));
        }
        Ok((sse::response(body)?, calls))
    }

    /// A stream's client went away (its body was dropped).
    fn stream_gone(&self, id: &ConnId) {
        // Never waits for a borrow: a busy object notices at its next event instead (`load`).
        let Ok(mut slot) = self.live.try_borrow_mut() else { return };
        let Some(live) = slot.as_mut() else { return };
        if live.streams.remove(id).is_none() {
            return;
        }
        let effects = live.user.close_stream(id, now());
        // A departure makes no calls.
        let _ = self.apply(&mut slot, None, effects);
    }

    /// `POST /v1/users/me/status` with `{"status", "activity"?}`.
    fn status(&self, req: &Request, body: &str) -> Answer {
        let request = StatusRequest::parse(body)?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let (status, effects) = live.user.set_status(request, now())?;
        self.applied(&mut slot, effects, &status)
    }

    /// `POST /v1/users/me/active`.
    fn active(&self, req: &Request) -> Answer {
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let effects = live.user.mark_active(now())?;
        self.applied(&mut slot, effects, &serde_json::json!({}))
    }

    /// `POST /v1/users/me/subscribe` with `{"users": [...]}`: asks the watched users' objects,
    /// then answers as the `presence:subscribe` reply would.
    async fn subscribe(&self, req: &Request, body: &str) -> Answer {
        let bad = || Error::new(ErrorCode::Internal, "malformed internal subscribe request");
        let policy: WatchPolicy =
            header(req, internal::POLICY).and_then(|p| serde_json::from_str(&p).ok()).ok_or_else(bad)?;
        let request: Users = parse_body(body, r#"{"users": [...]}"#)?;
        let (me, wanted, mut calls) = {
            let mut slot = self.live.borrow_mut();
            let live = self.load(&mut slot, user_hint(req).as_ref())?;
            let me = live.user.id().clone();
            let (effects, wanted) = live.user.subscribe_over_http(request.users, policy, now());
            // The asking token's policy is stored (and what it no longer allows dropped) even
            // when it refuses this subscribe.
            let calls = self.apply(&mut slot, None, effects);
            if slot.is_none() {
                return Err(Error::new(ErrorCode::Internal, "could not store the change"));
            }
            (me, wanted?, calls)
        };
        // No borrow is held while the other objects answer.
        let results = if wanted.is_empty() {
            Vec::new()
        } else {
            let request = WatchRequest { watcher: me, active: true };
            fan_out(&self.env, wanted, "watch", &request, CALL_CONCURRENCY).await
        };
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, None)?;
        let (data, effects) = live.user.subscribed(results);
        let (response, more) = self.applied(&mut slot, effects, &data)?;
        calls.extend(more);
        Ok((response, calls))
    }

    /// `POST /v1/users/me/unsubscribe` with `{"users": [...]}`.
    fn unsubscribe(&self, req: &Request, body: &str) -> Answer {
        let request: Users = parse_body(body, r#"{"users": [...]}"#)?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let (users, effects) = live.user.unsubscribe_over_http(request.users, now())?;
        self.applied(&mut slot, effects, &serde_json::json!({ "users": users }))
    }

    /// Applies `effects`; answers 200 with `body` when every write succeeded.
    fn applied<T: serde::Serialize>(
        &self,
        slot: &mut Option<Live>,
        effects: Vec<UserEffect>,
        body: &T,
    ) -> Answer {
        let calls = self.apply(slot, None, effects);
        if slot.is_none() {
            return Err(Error::new(ErrorCode::Internal, "could not store the change"));
        }
        Ok((http::json(200, body)?, calls))
    }

    /// Counters for operators and tests; `wakes` counts rebuilds from storage.
    fn stats(&self, req: &Request) -> Result<Response, Error> {
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, user_hint(req).as_ref())?;
        let user = &live.user;
        http::json(
            200,
            &serde_json::json!({
                "user": user.id(),
                "presence": user.status(),
                "connections": user.connection_count(),
                "streams": user.stream_count(),
                "unread": user.unread(),
                "notifications": user.stored_notifications(),
                "watchers": user.watchers(),
                "watching": user.watching().keys().collect::<Vec<_>>(),
                "paused": user.paused(),
                "alarm": live.alarm,
                "wakes": sql::wakes(&live.sql)?,
            }),
        )
    }

    fn load<'a>(&self, slot: &'a mut Option<Live>, hint: Option<&UserId>) -> Result<&'a mut Live, Error> {
        self.load_with(slot, hint, None)
    }

    /// `load`, counting `closing` (the socket whose close woke the object) as connected.
    fn load_with<'a>(
        &self,
        slot: &'a mut Option<Live>,
        hint: Option<&UserId>,
        closing: Option<UserConnInfo>,
    ) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            let mut live = self.rebuild(hint, closing)?;
            let effects = live.user.restored(now());
            live.alarm = sql::sync_alarm(&self.state, None, live.user.poll_timeout());
            *slot = Some(live);
            // Stores a grace period the rebuild started (no socket survived); makes no calls.
            let _ = self.apply(slot, None, effects);
        }
        // Every event first forgets streams whose client left, so none counts a dead stream.
        let live = slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "user not loaded"))?;
        let gone: Vec<ConnId> =
            live.streams.iter().filter(|(_, s)| s.is_gone()).map(|(id, _)| id.clone()).collect();
        for id in gone {
            let Some(live) = slot.as_mut() else { break };
            live.streams.remove(&id);
            let effects = live.user.close_stream(&id, now());
            let _ = self.apply(slot, None, effects);
        }
        slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "user not loaded"))
    }

    /// The user as stored, with the surviving sockets restored (then call `User::restored`).
    fn rebuild(&self, hint: Option<&UserId>, closing: Option<UserConnInfo>) -> Result<Live, Error> {
        let config = config(&self.env)?;
        let sql = self.state.storage().sql();
        sql::migrate(&self.state, MIGRATIONS)?;
        let id = match (read_meta(&sql, "user")?, hint) {
            (Some(stored), _) => UserId::parse(&stored).map_err(|_| corrupt("user id"))?,
            (None, Some(hint)) => {
                write_meta(&sql, "user", hint.as_str())?;
                hint.clone()
            }
            (None, None) => return Err(Error::new(ErrorCode::Internal, "user object has no name yet")),
        };
        count_wake(&sql)?;
        let json_meta = |key: &str| -> Result<Option<String>, Error> { read_meta(&sql, key) };
        let stored = StoredUser {
            presence: match json_meta("presence")? {
                Some(p) => serde_json::from_str(&p).map_err(|_| corrupt("presence"))?,
                None => Default::default(),
            },
            policy: match json_meta("policy")? {
                Some(p) => serde_json::from_str(&p).map_err(|_| corrupt("watch policy"))?,
                None => WatchPolicy::default(),
            },
            watchers: read_watchers(&sql)?,
            watching: read_watching(&sql)?,
            inbox: inbox_counts(&sql)?,
        };
        let mut user = User::new(id, stored, (*config).clone());
        let now = now();
        let mut sockets = HashMap::new();
        for (ws, info) in socket::restored::<UserConnInfo>(&self.state)? {
            sockets.insert(info.conn.clone(), ws);
            user.restore_conn(info, now);
        }
        // The closing socket is listed but no longer open (CLOSING, then CLOSED), so it was
        // skipped above; count it once, with no socket to send to, until its close is handled.
        // The check keeps it single should a runtime still report it open.
        if let Some(info) = closing.filter(|c| !sockets.contains_key(&c.conn)) {
            user.restore_conn(info, now);
        }
        Ok(Live { user, sockets, streams: HashMap::new(), alarm: None, sql })
    }

    /// Applies effects in phase order (writes, then frames), re-aims the alarm, and returns the
    /// calls to make. A failed write drops the live state (the next event rebuilds it from
    /// storage), tells `origin`, and skips the rest, so nothing unwritten is announced.
    fn apply(
        &self,
        slot: &mut Option<Live>,
        origin: Option<&ConnId>,
        effects: Vec<UserEffect>,
    ) -> Vec<UserCall> {
        let (writes, frames, mut calls) = phases(effects);
        let Some(live) = slot.as_mut() else { return Vec::new() };
        if let Err(e) = writes.into_iter().try_for_each(|w| write(&live.sql, w)) {
            socket::report_failure(&live.sockets, origin, &e);
            *slot = None;
            return Vec::new();
        }
        let mut done = socket::Delivered::default();
        // Streams whose client went away or fell too far behind: ended, then their departure
        // is handled like a socket's close.
        let mut behind: Vec<ConnId> = Vec::new();
        for effect in frames {
            let Some(effect) = socket::deliver(&live.sockets, effect, &mut done) else { continue };
            let mut feed = |id: &ConnId, stream: &Stream, bytes: &[u8]| {
                if !behind.contains(id) && !feed(&live.user, stream, bytes) {
                    behind.push(id.clone());
                }
            };
            match effect {
                Effect::StreamSend { to, event } => {
                    if let Some(stream) = live.streams.get(&to) {
                        feed(&to, stream, event.as_bytes());
                    }
                }
                Effect::StreamBroadcast { event } => {
                    live.streams.iter().for_each(|(id, stream)| feed(id, stream, event.as_bytes()));
                }
                Effect::Keepalive => {
                    live.streams.iter().for_each(|(id, stream)| feed(id, stream, SSE_KEEPALIVE.as_bytes()));
                }
                Effect::StreamEnd { stream, last } => {
                    if let Some(ended) = live.streams.remove(&stream) {
                        ended.end(Some(last.as_bytes()));
                    }
                }
                // `deliver` applied the rest; `phases` took out writes and calls.
                _ => {}
            }
        }
        socket::close_refused(&live.sockets, &done.refused);
        for conn in done.closed.into_iter().chain(done.refused) {
            calls.extend(self.forget_conn(slot, &conn));
        }
        for id in behind {
            let Some(live) = slot.as_mut() else { break };
            // Dropping it ends it and frees what it queued; its client reconnects.
            live.streams.remove(&id);
            let effects = live.user.close_stream(&id, now());
            calls.extend(self.apply(slot, None, effects));
        }
        if let Some(live) = slot.as_mut() {
            live.alarm = sql::sync_alarm(&self.state, live.alarm, live.user.poll_timeout());
        }
        calls
    }

    /// A socket closed or failed. The event may be what woke the object: then the user is
    /// rebuilt with the closing socket still counted, so the close starts the grace period
    /// (and the offline alarm) like any other.
    fn forget(&self, ws: &WebSocket) {
        let Some(info) = socket::attachment::<UserConnInfo>(ws) else { return };
        let conn = info.conn.clone();
        let mut slot = self.live.borrow_mut();
        if slot.is_none() && self.load_with(&mut slot, None, Some(info)).is_err() {
            return;
        }
        // Closing makes no calls (pausing waits for the grace period's alarm).
        let _ = self.forget_conn(&mut slot, &conn);
    }

    fn forget_conn(&self, slot: &mut Option<Live>, conn: &ConnId) -> Vec<UserCall> {
        let Some(live) = slot.as_mut() else { return Vec::new() };
        live.sockets.remove(conn);
        let effects = live.user.handle_close(conn, now());
        self.apply(slot, None, effects)
    }
}

impl Inner {
    /// Makes the calls, feeds the answers back, and makes any calls those produce.
    async fn run(&self, mut calls: Vec<UserCall>) {
        let object = self;
        let me = match object.live.borrow().as_ref() {
            Some(live) => live.user.id().clone(),
            None => return,
        };
        // An answer can make one more round of calls (a subscribe overtaken by an unsubscribe is
        // undone at the watched object); the bound guards against a loop.
        for _ in 0..4 {
            if calls.is_empty() {
                return;
            }
            let mut next = Vec::new();
            for call in calls {
                let effects = match call {
                    UserCall::Push { to, update } => {
                        let answers: Vec<(UserId, Result<PushAnswer, Error>)> =
                            fan_out(&object.env, to, "presence", &update, CALL_CONCURRENCY).await;
                        object.with_user(|user| user.pushed(answers))
                    }
                    UserCall::Watch { users, active, reply } => {
                        let request = WatchRequest { watcher: me.clone(), active };
                        let results: Vec<(UserId, Result<PresenceUpdate, Error>)> =
                            fan_out(&object.env, users, "watch", &request, CALL_CONCURRENCY).await;
                        object.with_user(|user| match reply {
                            Some(reply) => user.watched(reply, results),
                            None => user.resumed(results),
                        })
                    }
                    UserCall::Unwatch(users) => {
                        let request = UnwatchRequest { watcher: me.clone() };
                        let _: Vec<(UserId, Result<serde_json::Value, Error>)> =
                            fan_out(&object.env, users, "unwatch", &request, CALL_CONCURRENCY).await;
                        None
                    }
                };
                if let Some(effects) = effects {
                    let mut slot = object.live.borrow_mut();
                    next.extend(object.apply(&mut slot, None, effects));
                }
            }
            calls = next;
        }
    }
}

impl Inner {
    /// Runs `f` on the live user; `None` when the object lost its state meanwhile (the answers
    /// are then dropped: the stored state stays consistent and the next change retries).
    fn with_user(&self, f: impl FnOnce(&mut User) -> Vec<UserEffect>) -> Option<Vec<UserEffect>> {
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, None).ok()?;
        Some(f(&mut live.user))
    }
}

/// Applies one storage write.
fn write(sql: &SqlStorage, write: UserWrite) -> Result<(), Error> {
    match write {
        UserWrite::SavePresence(saved) => serde_json::to_string(&saved)
            .map_err(|_| corrupt("presence"))
            .and_then(|p| write_meta(sql, "presence", &p)),
        UserWrite::SavePolicy(policy) => serde_json::to_string(&policy)
            .map_err(|_| corrupt("policy"))
            .and_then(|p| write_meta(sql, "policy", &p)),
        UserWrite::Inbox(write) => write_inbox(sql, &write),
        UserWrite::SaveWatcher { watcher, active } => run(
            sql,
            "INSERT INTO watchers (user, active) VALUES (?, ?) ON CONFLICT(user) DO UPDATE SET active = excluded.active",
            vec![watcher.to_string().into(), SqlStorageValue::from(i64::from(active))],
        ),
        UserWrite::RemoveWatcher(watcher) => {
            run(sql, "DELETE FROM watchers WHERE user = ?", vec![watcher.to_string().into()])
        }
        UserWrite::SaveWatching { user, rev } => safe_integer(rev).and_then(|rev| {
            run(
                sql,
                "INSERT INTO watching (user, rev) VALUES (?, ?) ON CONFLICT(user) DO UPDATE SET rev = excluded.rev",
                vec![user.to_string().into(), rev],
            )
        }),
        UserWrite::RemoveWatching(user) => {
            run(sql, "DELETE FROM watching WHERE user = ?", vec![user.to_string().into()])
        }
    }
}

/// Queues `bytes` on a stream; `false` when its client went away or is more than
/// `RECOVERY_MAX_BYTES` behind (the stream is to be ended rather than buffered without bound).
fn feed(user: &User, stream: &Stream, bytes: &[u8]) -> bool {
    user.stream_keeps_up(stream.unread()) && stream.push(bytes)
}

fn read_watchers(sql: &SqlStorage) -> Result<BTreeMap<UserId, bool>, Error> {
    #[derive(Deserialize)]
    struct Row {
        user: String,
        active: i64,
    }
    let found: Vec<Row> = rows(sql, "SELECT user, active FROM watchers", Vec::new())?;
    found
        .into_iter()
        .map(|r| Ok((UserId::parse(&r.user).map_err(|_| corrupt("watcher"))?, r.active != 0)))
        .collect()
}

fn read_watching(sql: &SqlStorage) -> Result<BTreeMap<UserId, u64>, Error> {
    #[derive(Deserialize)]
    struct Row {
        user: String,
        rev: i64,
    }
    let found: Vec<Row> = rows(sql, "SELECT user, rev FROM watching", Vec::new())?;
    found
        .into_iter()
        .map(|r| Ok((UserId::parse(&r.user).map_err(|_| corrupt("watched user"))?, r.rev.max(0) as u64)))
        .collect()
}

fn inbox_counts(sql: &SqlStorage) -> Result<InboxCounts, Error> {
    #[derive(Deserialize)]
    struct Row {
        total: i64,
        unread: Option<i64>,
        last_id: Option<i64>,
    }
    let found: Vec<Row> = rows(
        sql,
        "SELECT COUNT(*) AS total, SUM(read = 0) AS unread, MAX(id) AS last_id FROM notifications",
        Vec::new(),
    )?;
    let row = found.into_iter().next().ok_or_else(|| corrupt("inbox"))?;
    let positive = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
    Ok(InboxCounts {
        last_id: positive(row.last_id),
        total: positive(Some(row.total)),
        unread: positive(row.unread),
    })
}

fn write_inbox(sql: &SqlStorage, write: &InboxWrite) -> Result<(), Error> {
    match write {
        InboxWrite::Store(n, key) => {
            let content = serde_json::to_string(&n.content).map_err(|_| corrupt("notification"))?;
            let key = key.clone().map_or(SqlStorageValue::Null, SqlStorageValue::from);
            run(
                sql,
                "INSERT INTO notifications (id, ts, read, key, content) VALUES (?, ?, 0, ?, ?)",
                vec![safe_integer(n.id)?, safe_integer(n.ts.as_millis())?, key, content.into()],
            )
        }
        InboxWrite::MarkRead(ids) => {
            for chunk in ids.chunks(IDS_PER_STATEMENT) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let bindings = chunk.iter().map(|id| bound(*id)).collect();
                run(sql, &format!("UPDATE notifications SET read = 1 WHERE id IN ({marks})"), bindings)?;
            }
            Ok(())
        }
        InboxWrite::MarkAllRead => run(sql, "UPDATE notifications SET read = 1 WHERE read = 0", Vec::new()),
        InboxWrite::Trim(count) => run(
            sql,
            "DELETE FROM notifications WHERE id IN
               (SELECT id FROM notifications ORDER BY read DESC, id ASC LIMIT ?)",
            vec![bound(*count)],
        ),
    }
}

/// The inbox as SQLite holds it.
struct SqlInbox<'a>(&'a SqlStorage);

#[derive(Deserialize)]
struct NotificationRow {
    id: i64,
    ts: i64,
    read: i64,
    content: String,
}

impl NotificationRow {
    fn notification(self) -> Result<Notification, LogError> {
        Ok(Notification {
            id: self.id.max(0) as u64,
            ts: Timestamp(self.ts.max(0) as u64),
            read: self.read != 0,
            content: serde_json::from_str(&self.content).map_err(|e| LogError(e.to_string()))?,
        })
    }
}

impl SqlInbox<'_> {
    fn query(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<Notification>, LogError> {
        let found: Vec<NotificationRow> =
            self.0.exec(query, bindings).and_then(|c| c.to_array()).map_err(|e| LogError(e.to_string()))?;
        found.into_iter().map(NotificationRow::notification).collect()
    }
}

impl Inbox for SqlInbox<'_> {
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Notification>, LogError> {
        self.query(
            "SELECT id, ts, read, content FROM notifications WHERE id < ? ORDER BY id DESC LIMIT ?",
            vec![bound(before.unwrap_or(u64::MAX)), SqlStorageValue::from(i64::from(limit))],
        )
    }

    fn by_key(&self, key: &str) -> Result<Option<Notification>, LogError> {
        let found = self.query(
            "SELECT id, ts, read, content FROM notifications WHERE key = ?",
            vec![key.to_owned().into()],
        )?;
        Ok(found.into_iter().next())
    }

    fn count_unread(&self, ids: &[u64]) -> Result<u64, LogError> {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let mut total = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let bindings: Vec<SqlStorageValue> = chunk.iter().map(|id| bound(*id)).collect();
            let q = format!("SELECT COUNT(*) AS n FROM notifications WHERE read = 0 AND id IN ({marks})");
            let found: Vec<Count> =
                self.0.exec(&q, bindings).and_then(|c| c.to_array()).map_err(|e| LogError(e.to_string()))?;
            total += found.first().map_or(0, |c| c.n.max(0) as u64);
        }
        Ok(total)
    }
}
