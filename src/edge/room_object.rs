//! `RoomObject`: one per room. Holds the room's sockets through the Hibernation API, its log and
//! live state in SQLite, its one alarm, and a [`Room`] rebuilt lazily after every wake.

use super::sql::{
    self, bound, corrupt, count_wake, random_id, read_meta, run, safe_integer, storage, write_meta,
};
use super::sse::{self, Stream};
use super::{config, http, internal, now, socket};
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, RoomId, UserId};
use crate::core::object::{phases, Effect, Object};
use crate::core::outbox::{self, Outbox, Target};
use crate::core::protocol;
use crate::core::room::log::{LogError, LogHead, Message, Overlay, Receipt, RoomLog};
use crate::core::room::{
    ConnInfo, Publish, Resume, Room, RoomEffect, RoomWrite, StateEntry, StreamInfo, SSE_KEEPALIVE,
};
use crate::core::route::number_param;
use crate::core::time::Timestamp;
use js_sys::JsString;
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use worker::{
    durable_object, Env, Request, Response, ResponseBuilder, SqlStorage, SqlStorageValue, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

/// The schema's versions, in order (see [`sql::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the first release (5a06e97).
    "CREATE TABLE IF NOT EXISTS messages (
       seq INTEGER PRIMARY KEY, id TEXT NOT NULL, user TEXT NOT NULL,
       text TEXT NOT NULL, data TEXT, ts INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (user, id);
     CREATE TABLE IF NOT EXISTS state (
       key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL, user TEXT NOT NULL
     );",
    // 2: messages past ROOM_HISTORY_MAX are deleted; their ids stay here for the duplicate check.
    "CREATE TABLE trimmed (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, user TEXT NOT NULL, ts INTEGER NOT NULL);
     CREATE INDEX trimmed_by_sender ON trimmed (user, id);",
    // 3: messages the server key published are marked; older ones read as a user's.
    "ALTER TABLE messages ADD COLUMN server INTEGER NOT NULL DEFAULT 0;",
];

/// The room as it lives between events: rebuilt after a wake, dropped when storage fails.
struct Live {
    room: Room,
    sockets: HashMap<ConnId, WebSocket>,
    /// Open Server-Sent Events responses, by the id the room knows them by.
    streams: HashMap<ConnId, Stream>,
    /// The alarm this instance last set (`None` after a wake: unknown, so it is set again).
    alarm: Option<Timestamp>,
    /// Frames waiting for the next drain (see `core::outbox`).
    outbox: Outbox,
    flush_scheduled: bool,
    /// When the previous batch of effects was applied: events close together mean a backlog.
    last_apply: Option<Timestamp>,
    /// Messages accepted but not yet written: they are written together at the next drain
    /// (group commit), before anything that announces them is sent.
    pending: Vec<Message>,
    sql: SqlStorage,
    /// Shared with the object: the highest `seq` a dropped live room had handed out.
    floor: Rc<Cell<u64>>,
    /// The latest `Trim` asked for, done after the next write of messages.
    trim: Option<(u64, u64)>,
}

impl Drop for Live {
    /// A live room is dropped when a write failed: its head may be ahead of storage (messages
    /// still pending, or sequenced but never appended), and the rebuild must not hand those
    /// seqs out again.
    fn drop(&mut self) {
        self.floor.set(self.floor.get().max(self.room.seq()));
    }
}

impl Live {
    /// Writes the pending messages in one go, then sends everything queued: each distinct
    /// frame becomes one JS string for all its recipients. On a failed write nothing is sent.
    fn flush(&mut self) -> Result<(), Error> {
        self.flush_scheduled = false;
        if !self.pending.is_empty() {
            if let Err(e) = write_messages(&self.sql, &self.pending) {
                self.abandon();
                return Err(e);
            }
            self.trim_history();
            let events: String =
                std::mem::take(&mut self.pending).iter().map(|m| self.room.message_event(m)).collect();
            self.push_streams(events.as_bytes());
        }
        // Each round drops the sockets that refused a frame, which queues their departures
        // for the rest; it ends because every round with a failure removes a socket.
        loop {
            let mut failed: Vec<ConnId> = Vec::new();
            let sockets = &self.sockets;
            for (frame, recipients) in self.outbox.drain_open(sockets.keys(), |c| sockets.contains_key(c)) {
                let frame = JsString::from(frame);
                for conn in recipients {
                    // Nothing more after a refused frame: the socket must not see a gap.
                    if failed.contains(&conn) {
                        continue;
                    }
                    if let Some(ws) = self.sockets.get(&conn) {
                        if !socket::send_js(ws, &frame) {
                            failed.push(conn);
                        }
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            for conn in failed {
                self.drop_socket(&conn);
            }
        }
    }

    /// Before the room is dropped after a failed write: nothing queued may go out (it may
    /// announce what was not written), so every socket owed a frame is closed with 1011; its
    /// client reconnects, resumes and resends what was not acknowledged, instead of waiting for
    /// a frame (a reply, `room:state`) that never comes. Closed, it is not restored on the next
    /// wake, and its close event announces its departure then.
    fn abandon(&mut self) {
        self.pending.clear();
        for (_, recipients) in self.outbox.drain(self.sockets.keys()) {
            for conn in recipients {
                if let Some(ws) = self.sockets.remove(&conn) {
                    socket::close(&ws, close::INTERNAL, "room unavailable");
                }
            }
        }
    }

    /// Closes a socket that refused a frame (1011: its client reconnects and resumes instead of
    /// missing frames silently) and handles its close now; its departure is queued for the rest.
    fn drop_socket(&mut self, conn: &ConnId) {
        if let Some(ws) = self.sockets.remove(conn) {
            socket::close(&ws, close::INTERNAL, socket::SEND_FAILED);
        }
        for effect in self.room.handle_close(conn, now()) {
            match effect {
                Effect::Send { to, frame } => self.outbox.push(Target::One(to), frame),
                Effect::Broadcast { except, frame } => self.outbox.push(Target::All { except }, frame),
                // A close only produces frames.
                _ => {}
            }
        }
    }

    /// Sends `bytes` to every event stream. A stream whose client went away, or fell more than
    /// `RECOVERY_MAX_BYTES` behind, is ended instead (the room forgets it), so a slow reader
    /// never makes the room buffer without bound; its client resumes with `Last-Event-ID`.
    fn push_streams(&mut self, bytes: &[u8]) {
        let room = &mut self.room;
        self.streams.retain(|id, stream| {
            let keep = room.stream_keeps_up(stream.unread()) && stream.push(bytes);
            if !keep {
                room.close_stream(id);
            }
            keep
        });
    }

    /// Forgets streams whose client went away, before anything counts them.
    fn prune_streams(&mut self) {
        let room = &mut self.room;
        self.streams.retain(|id, stream| {
            let open = !stream.is_gone();
            if !open {
                room.close_stream(id);
            }
            open
        });
    }

    /// Deletes what `Effect::Trim` asked for, after the messages that made it due are written.
    /// Trimming is upkeep: a failure is logged and retried with the next write, and never holds
    /// back the acks of messages already stored.
    fn trim_history(&mut self) {
        let Some((through, forget_through)) = self.trim else { return };
        let done = safe_integer(through).and_then(|through| {
            let forget = safe_integer(forget_through)?;
            // Only ids still inside the window are copied (a long log trimmed at once after an
            // upgrade copies at most ROOM_HISTORY_MAX of them).
            run(
                &self.sql,
                "INSERT OR IGNORE INTO trimmed (seq, id, user, ts)
                 SELECT seq, id, user, ts FROM messages WHERE seq <= ? AND seq > ?",
                vec![through.clone(), forget.clone()],
            )?;
            run(&self.sql, "DELETE FROM messages WHERE seq <= ?", vec![through])?;
            run(&self.sql, "DELETE FROM trimmed WHERE seq <= ?", vec![forget])
        });
        if done.is_ok() {
            self.trim = None;
        }
    }

    /// The log as reads must see it: SQLite plus the messages not yet written.
    fn log<'a>(sql: &'a SqlLog<'a>, pending: &'a [Message]) -> Overlay<'a, SqlLog<'a>> {
        Overlay { base: sql, pending }
    }
}

/// A chat room's Durable Object.
#[durable_object]
pub struct RoomObject {
    state: State,
    env: Env,
    /// Shared with the deferred flush task, which runs between events.
    live: Rc<RefCell<Option<Live>>>,
    /// The highest `seq` a dropped live room handed out (see `Drop for Live`).
    floor: Rc<Cell<u64>>,
}

impl worker::DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        // Answered by the runtime without waking the object; failing to set it only costs wakes.
        if let Ok(pair) = WebSocketRequestResponsePair::new(r#"{"t":"ping"}"#, r#"{"t":"pong"}"#) {
            let _ = state.as_raw().set_websocket_auto_response(&pair);
        }
        RoomObject { state, env, live: Rc::new(RefCell::new(None)), floor: Rc::new(Cell::new(0)) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        // Read the body before borrowing the room: no borrow may live across an await.
        let body = if path == "/publish" { req.text().await.ok() } else { None };
        let result = match path.as_str() {
            "/connect" => self.accept_connection(&req),
            "/stats" => self.stats(&req),
            "/history" => self.history(&req),
            "/publish" => self.publish(&req, body.unwrap_or_default()),
            "/events" => self.events(&req),
            _ => Err(Error::new(ErrorCode::NotFound, "no such room endpoint")),
        };
        result.or_else(|e| http::error(&e))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(conn) = socket::conn_of::<ConnInfo>(&ws) else {
            socket::close(&ws, close::INTERNAL, "unknown connection");
            return Ok(());
        };
        let mut slot = self.live.borrow_mut();
        let live = match self.load(&mut slot, None) {
            Ok(live) => live,
            Err(e) => {
                socket::send(&ws, &protocol::error_frame(&e));
                socket::close(&ws, close::INTERNAL, "room unavailable");
                return Ok(());
            }
        };
        let frame = socket::incoming(&message);
        let sql = self.state.storage().sql();
        let room_id = live.room.id().clone();
        let base = SqlLog { sql: &sql, room: &room_id };
        let effects = live.room.handle_frame(&conn, frame, now(), &Live::log(&base, &live.pending));
        self.apply(&mut slot, Some(&conn), effects);
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
        self.forget(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.forget(&ws);
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let mut slot = self.live.borrow_mut();
        // The alarm may find the object evicted: rebuilding restores every socket's token expiry.
        if let Ok(live) = self.load(&mut slot, None) {
            live.alarm = None; // this alarm is spent
            let effects = live.room.handle_alarm(now());
            self.apply(&mut slot, None, effects);
        }
        Response::ok("")
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn room_hint(req: &Request) -> Option<RoomId> {
    header(req, internal::ROOM).and_then(|r| RoomId::parse(&r).ok())
}

fn resume_of(req: &Request) -> Option<Resume> {
    let since = header(req, internal::SINCE)?.parse().ok()?;
    Some(Resume { since, epoch: header(req, internal::EPOCH).unwrap_or_default() })
}

fn query(req: &Request, name: &str) -> Option<String> {
    req.url().ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

impl RoomObject {
    fn accept_connection(&self, req: &Request) -> Result<Response, Error> {
        let bad = || Error::new(ErrorCode::Internal, "malformed internal connect request");
        let room = room_hint(req).ok_or_else(bad)?;
        let user = header(req, internal::USER).and_then(|u| UserId::parse(&u).ok()).ok_or_else(bad)?;
        let expires =
            header(req, internal::EXPIRES).and_then(|x| x.parse().ok()).map(Timestamp).ok_or_else(bad)?;
        let can_send = header(req, internal::CAN_SEND).as_deref() == Some("1");
        let info = ConnInfo { conn: random_id()?, user, expires, can_write: can_send };

        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, Some(&room))?;
        live.room.check_capacity(&info.user)?;
        // Frames queued before this socket existed are not for it; sending them now also
        // means a failed write fails the connect before any socket exists.
        if let Err(e) = live.flush() {
            *slot = None;
            return Err(e);
        }
        let pair = WebSocketPair::new().map_err(http::internal)?;
        let mut response = ResponseBuilder::new().with_status(101);
        if let Some(protocol) = header(req, internal::PROTOCOL) {
            response = response.with_header("sec-websocket-protocol", &protocol).map_err(http::internal)?;
        }
        let tags = [format!("u:{}", info.user), format!("c:{}", info.conn)];
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        socket::accept(&self.state, &pair.server, &tag_refs)
            .map_err(|_| Error::new(ErrorCode::Internal, "could not accept the socket"))?;
        // The runtime now holds the socket: on any failure from here it is closed, or the next
        // wake would restore it as a member nobody was told of, whose client got no greeting.
        if let Err(e) = self.open(&mut slot, &pair.server, info, resume_of(req).as_ref()) {
            socket::close(&pair.server, close::INTERNAL, "could not open the connection");
            return Err(e);
        }
        Ok(response.with_websocket(pair.client).empty())
    }

    /// Makes an accepted socket a member: its attachment, then the core's greeting and join.
    /// On an error the room has not kept it (a failed write drops the whole room).
    fn open(
        &self,
        slot: &mut Option<Live>,
        ws: &WebSocket,
        info: ConnInfo,
        resume: Option<&Resume>,
    ) -> Result<(), Error> {
        ws.serialize_attachment(&info).map_err(http::internal)?;
        let live = slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "room not loaded"))?;
        live.sockets.insert(info.conn.clone(), ws.clone());
        let sql = self.state.storage().sql();
        let room_id = live.room.id().clone();
        let log = SqlLog { sql: &sql, room: &room_id };
        let effects = live.room.handle_connect(info, resume.cloned(), now(), &log);
        if !self.apply(slot, None, effects) {
            return Err(Error::new(ErrorCode::Internal, "could not open the connection"));
        }
        Ok(())
    }

    /// Operational counters; `wakes` counts how often the room was rebuilt from storage.
    fn stats(&self, req: &Request) -> Result<Response, Error> {
        let mut slot = self.live.borrow_mut();
        let live = self.flushed(&mut slot, room_hint(req).as_ref())?;
        let wakes = sql::wakes(&self.state.storage().sql())?;
        http::json(
            200,
            &serde_json::json!({
                "room": live.room.id(),
                "seq": live.room.seq(),
                "epoch": live.room.epoch(),
                "connections": live.room.connection_count(),
                "members": live.room.members().count(),
                "streams": live.room.stream_count(),
                "alarm": live.alarm,
                "wakes": wakes,
            }),
        )
    }

    fn history(&self, req: &Request) -> Result<Response, Error> {
        let before = number_param("before", query(req, "before").as_deref())?;
        let limit =
            number_param("limit", query(req, "limit").as_deref())?.map(|l| l.min(u64::from(u32::MAX)) as u32);
        let user = header(req, internal::USER).and_then(|u| UserId::parse(&u).ok());
        let mut slot = self.live.borrow_mut();
        let live = self.flushed(&mut slot, room_hint(req).as_ref())?;
        let sql = self.state.storage().sql();
        let room_id = live.room.id().clone();
        let log = SqlLog { sql: &sql, room: &room_id };
        let messages = match user {
            Some(user) => live.room.http_history(&user, before, limit, now(), &log)?,
            // Only the Worker calls this endpoint, and it always names the user.
            None => return Err(Error::new(ErrorCode::Internal, "malformed internal history request")),
        };
        http::json(200, &serde_json::json!({ "messages": messages }))
    }

    fn publish(&self, req: &Request, body: String) -> Result<Response, Error> {
        let user = header(req, internal::USER)
            .and_then(|u| UserId::parse(&u).ok())
            .ok_or_else(|| Error::new(ErrorCode::Internal, "malformed internal publish request"))?;
        let publish: Publish = serde_json::from_str(&body)
            .map_err(|e| Error::new(ErrorCode::BadRequest, format!("bad body: {e}")))?;
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, room_hint(req).as_ref())?;
        let sql = self.state.storage().sql();
        let room_id = live.room.id().clone();
        let base = SqlLog { sql: &sql, room: &room_id };
        let log = Live::log(&base, &live.pending);
        let by_server = header(req, internal::SERVER).as_deref() == Some("1");
        let (ack, effects) = live.room.handle_publish(
            user,
            publish,
            header(req, internal::IDEMPOTENCY_KEY),
            by_server,
            now(),
            &log,
        )?;
        let stored = Error::new(ErrorCode::Internal, "could not store the message");
        if !self.apply(&mut slot, None, effects) {
            return Err(stored);
        }
        // The ack is the HTTP response: write now rather than with the next batch.
        if let Some(live) = slot.as_mut() {
            if live.flush().is_err() {
                *slot = None;
                return Err(stored);
            }
        }
        http::json(200, &ack)
    }

    /// Server-Sent Events: the core's opening (missed messages, `room:state`), then every new
    /// message as it is stored (see `apply`).
    fn events(&self, req: &Request) -> Result<Response, Error> {
        let bad = || Error::new(ErrorCode::Internal, "malformed internal events request");
        let user = header(req, internal::USER).and_then(|u| UserId::parse(&u).ok()).ok_or_else(bad)?;
        let expires =
            header(req, internal::EXPIRES).and_then(|x| x.parse().ok()).map(Timestamp).ok_or_else(bad)?;
        let info = StreamInfo { id: random_id()?, user, expires };
        let mut slot = self.live.borrow_mut();
        let live = self.flushed(&mut slot, room_hint(req).as_ref())?;
        let sql = self.state.storage().sql();
        let room_id = live.room.id().clone();
        let id = info.id.clone();
        let log = SqlLog { sql: &sql, room: &room_id };
        let opening = live.room.open_stream(info, resume_of(req).as_ref(), now(), &log)?;
        let (stream, body) = Stream::new();
        stream.push(opening.as_bytes());
        live.streams.insert(id, stream);
        // The stream's expiry and the keepalive are deadlines of the one alarm.
        self.sync_alarm(live);
        sse::response(body)
    }

    /// The live room, rebuilt from storage and the surviving sockets when the object just woke.
    fn load<'a>(
        &self,
        slot: &'a mut Option<Live>,
        room_hint: Option<&RoomId>,
    ) -> Result<&'a mut Live, Error> {
        self.load_with(slot, room_hint, None)
    }

    /// `load`, counting `closing` (the socket whose close woke the object) as a member.
    fn load_with<'a>(
        &self,
        slot: &'a mut Option<Live>,
        room_hint: Option<&RoomId>,
        closing: Option<ConnInfo>,
    ) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            let mut live = self.rebuild(room_hint, closing)?;
            self.sync_alarm(&mut live);
            *slot = Some(live);
        }
        let live = slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "room not loaded"))?;
        // Every event first forgets streams whose client left, so none counts a dead stream.
        live.prune_streams();
        Ok(live)
    }

    fn rebuild(&self, room_hint: Option<&RoomId>, closing: Option<ConnInfo>) -> Result<Live, Error> {
        let config = config(&self.env)?;
        let sql = self.state.storage().sql();
        sql::migrate(&self.state, MIGRATIONS)?;
        let room = match (read_meta(&sql, "room")?, room_hint) {
            (Some(stored), _) => RoomId::parse(&stored).map_err(|_| corrupt("room id"))?,
            (None, Some(hint)) => {
                write_meta(&sql, "room", hint.as_str())?;
                hint.clone()
            }
            (None, None) => return Err(Error::new(ErrorCode::Internal, "room has no name yet")),
        };
        let epoch = match read_meta(&sql, "epoch")? {
            Some(epoch) => epoch,
            None => {
                let epoch = random_id()?.to_string();
                write_meta(&sql, "epoch", &epoch)?;
                epoch
            }
        };
        count_wake(&sql)?;
        #[derive(Deserialize)]
        struct Head {
            seq: Option<i64>,
        }
        let head: Vec<Head> = sql
            .exec("SELECT MAX(seq) AS seq FROM messages", None)
            .and_then(|c| c.to_array())
            .map_err(storage)?;
        let stored = head.first().and_then(|h| h.seq).unwrap_or(0).max(0) as u64;
        let floor = self.seq_floor(&sql, stored)?;

        let mut room =
            Room::new(room, LogHead::restore(stored, floor, epoch), read_state(&sql)?, (*config).clone());
        let now = now();
        let mut sockets = HashMap::new();
        for (ws, info) in socket::restored::<ConnInfo>(&self.state)? {
            sockets.insert(info.conn.clone(), ws);
            room.restore_conn(info, now);
        }
        // The closing socket is listed but no longer open (CLOSING, then CLOSED), so it was
        // skipped above; count it once, with no socket to send to, until its close is handled.
        // The check keeps it single should a runtime still report it open.
        if let Some(info) = closing.filter(|c| !sockets.contains_key(&c.conn)) {
            room.restore_conn(info, now);
        }
        Ok(Live {
            room,
            sockets,
            streams: HashMap::new(),
            alarm: None,
            outbox: Outbox::default(),
            flush_scheduled: false,
            last_apply: None,
            pending: Vec::new(),
            sql,
            floor: Rc::clone(&self.floor),
            trim: None,
        })
    }

    /// The last seq handed out before a failed write, kept in `meta` once it is ahead of
    /// storage so that an eviction does not forget it either.
    fn seq_floor(&self, sql: &SqlStorage, stored: u64) -> Result<u64, Error> {
        let kept = read_meta(sql, "seq_floor")?.and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let floor = self.floor.get();
        if floor > stored && floor > kept {
            write_meta(sql, "seq_floor", &floor.to_string())?;
        }
        Ok(floor.max(kept))
    }

    /// The live room with every accepted message written, for reads that leave the object at
    /// once (HTTP history, an event stream's opening, stats): they never show a message that
    /// could still fail to be stored, and a new stream does not get a pending message twice
    /// (in its opening and again when it is written).
    fn flushed<'a>(
        &self,
        slot: &'a mut Option<Live>,
        room_hint: Option<&RoomId>,
    ) -> Result<&'a mut Live, Error> {
        if let Err(e) = self.load(slot, room_hint)?.flush() {
            *slot = None;
            return Err(e);
        }
        slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "room not loaded"))
    }

    fn sync_alarm(&self, live: &mut Live) {
        live.alarm = sql::sync_alarm(&self.state, live.alarm, live.room.poll_timeout());
    }

    /// Applies effects in order and re-aims the alarm. A failed write drops the live state (the
    /// next event rebuilds it from storage), tells `origin`, and skips the rest, so nothing
    /// unwritten is announced; it returns `false` then.
    fn apply(&self, slot: &mut Option<Live>, origin: Option<&ConnId>, effects: Vec<RoomEffect>) -> bool {
        let (writes, frames, _) = phases(effects);
        let mut closed = Vec::new();
        for write in writes {
            let Some(live) = slot.as_mut() else { return false };
            match write {
                // Messages are written together at the next drain (group commit).
                RoomWrite::Append(message) => live.pending.push(message),
                RoomWrite::Trim { through, forget_through } => live.trim = Some((through, forget_through)),
                RoomWrite::PutState { key, entry } => {
                    if let Err(e) = put_state(&live.sql, &key, &entry) {
                        return self.fail(slot, origin, &e);
                    }
                }
            }
        }
        for effect in frames {
            let Some(live) = slot.as_mut() else { return false };
            match effect {
                Effect::Keepalive => live.push_streams(SSE_KEEPALIVE.as_bytes()),
                Effect::StreamEnd { stream, last } => {
                    if let Some(ended) = live.streams.remove(&stream) {
                        ended.end(Some(last.as_bytes()));
                    }
                }
                Effect::UpdateConn(info) => {
                    if let Some(ws) = live.sockets.get(&info.conn) {
                        let _ = ws.serialize_attachment(&info);
                    }
                }
                Effect::Send { to, frame } => live.outbox.push(Target::One(to), frame),
                Effect::Broadcast { except, frame } => live.outbox.push(Target::All { except }, frame),
                Effect::Close { conn, code, reason } => {
                    // What was queued for the socket goes out before its close frame.
                    if let Err(e) = live.flush() {
                        return self.fail(slot, origin, &e);
                    }
                    if let Some(ws) = live.sockets.get(&conn) {
                        socket::close(ws, code, reason);
                    }
                    closed.push(conn);
                }
                // Rooms have no user-addressed streams; messages reach streams as they are
                // written (`Live::flush`).
                Effect::StreamSend { .. } | Effect::StreamBroadcast { .. } => {}
                Effect::Write(_) | Effect::Call(_) => {}
            }
        }
        for conn in closed {
            self.forget_conn(slot, &conn);
        }
        if let Some(live) = slot.as_mut() {
            self.sync_alarm(live);
            let now = now();
            let previous = live.last_apply.replace(now);
            if outbox::should_defer(now, previous, live.flush_scheduled) {
                self.schedule_flush(live);
            } else if let Err(e) = live.flush() {
                return self.fail(slot, origin, &e);
            }
        }
        true
    }

    /// Drains the outbox once the runtime is idle, after the events that queued up meanwhile,
    /// whose frames then share one send per socket.
    fn schedule_flush(&self, live: &mut Live) {
        if live.flush_scheduled || (live.outbox.is_empty() && live.pending.is_empty()) {
            return;
        }
        live.flush_scheduled = true;
        let cell = Rc::clone(&self.live);
        worker::wasm_bindgen_futures::spawn_local(async move {
            loop {
                worker::Delay::from(std::time::Duration::ZERO).await;
                // No handler holds the borrow across an await, so this succeeds between events.
                if let Ok(mut slot) = cell.try_borrow_mut() {
                    // A failed write drops the room: nothing unwritten was announced, and the
                    // next event rebuilds it from storage; clients resend unacked messages.
                    if slot.as_mut().is_some_and(|live| live.flush().is_err()) {
                        *slot = None;
                    }
                    break;
                }
            }
        });
    }

    fn fail(&self, slot: &mut Option<Live>, origin: Option<&ConnId>, error: &Error) -> bool {
        if let Some(live) = slot.as_ref() {
            socket::report_failure(&live.sockets, origin, error);
        }
        if let Some(live) = slot.as_mut() {
            live.abandon();
        }
        *slot = None;
        false
    }

    /// A socket closed or failed. The event may be what woke the object: then the room is
    /// rebuilt with the closing socket still counted as a member, so its departure is
    /// announced like any other (the rebuild alone would skip it, and nobody would be told).
    fn forget(&self, ws: &WebSocket) {
        let Some(info) = socket::attachment::<ConnInfo>(ws) else { return };
        let conn = info.conn.clone();
        let mut slot = self.live.borrow_mut();
        if slot.is_none() && self.load_with(&mut slot, None, Some(info)).is_err() {
            return;
        }
        self.forget_conn(&mut slot, &conn);
    }

    fn forget_conn(&self, slot: &mut Option<Live>, conn: &ConnId) {
        let Some(live) = slot.as_mut() else { return };
        live.sockets.remove(conn);
        let effects = live.room.handle_close(conn, now());
        self.apply(slot, None, effects);
    }
}

fn read_state(sql: &SqlStorage) -> Result<BTreeMap<String, StateEntry>, Error> {
    #[derive(Deserialize)]
    struct Row {
        key: String,
        value: String,
        version: i64,
        user: String,
    }
    let rows: Vec<Row> = sql
        .exec("SELECT key, value, version, user FROM state", None)
        .and_then(|c| c.to_array())
        .map_err(storage)?;
    rows.into_iter()
        .map(|r| {
            let entry = StateEntry {
                value: serde_json::from_str(&r.value).map_err(|_| corrupt("state value"))?,
                version: r.version.max(0) as u64,
                user: UserId::parse(&r.user).map_err(|_| corrupt("state author"))?,
            };
            Ok((r.key, entry))
        })
        .collect()
}

fn put_state(sql: &SqlStorage, key: &str, entry: &StateEntry) -> Result<(), Error> {
    sql.exec(
        "INSERT INTO state (key, value, version, user) VALUES (?, ?, ?, ?)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, user = excluded.user",
        vec![
            key.to_owned().into(),
            entry.value.to_string().into(),
            safe_integer(entry.version)?,
            entry.user.to_string().into(),
        ],
    )
    .map(|_| ())
    .map_err(storage)
}

/// Rows per INSERT: seven bound values each, under the per-statement limit of 100.
const ROWS_PER_INSERT: usize = 10;

/// Writes `messages` with one multi-row INSERT per ten; the event's writes commit together.
fn write_messages(sql: &SqlStorage, messages: &[Message]) -> Result<(), Error> {
    for chunk in messages.chunks(ROWS_PER_INSERT) {
        let mut bindings = Vec::with_capacity(chunk.len() * 7);
        for m in chunk {
            let data = match &m.data {
                Some(d) => SqlStorageValue::from(d.to_string()),
                None => SqlStorageValue::Null,
            };
            bindings.extend([
                safe_integer(m.seq)?,
                m.id.clone().into(),
                m.user.to_string().into(),
                m.text.clone().into(),
                data,
                safe_integer(m.ts.as_millis())?,
                SqlStorageValue::from(i64::from(m.server)),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        sql.exec(
            &format!("INSERT INTO messages (seq, id, user, text, data, ts, server) VALUES {rows}"),
            bindings,
        )
        .map_err(storage)?;
    }
    Ok(())
}

/// The room's log as SQLite holds it.
struct SqlLog<'a> {
    sql: &'a SqlStorage,
    room: &'a RoomId,
}

#[derive(Deserialize)]
struct MessageRow {
    seq: i64,
    id: String,
    user: String,
    text: String,
    data: Option<String>,
    ts: i64,
    server: i64,
}

const MESSAGE_COLUMNS: &str = "seq, id, user, text, data, ts, server";

impl SqlLog<'_> {
    fn query(&self, sql: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<Message>, LogError> {
        let rows: Vec<MessageRow> =
            self.sql.exec(sql, bindings).and_then(|c| c.to_array()).map_err(|e| LogError(e.to_string()))?;
        rows.into_iter().map(|r| self.message(r)).collect()
    }

    fn message(&self, r: MessageRow) -> Result<Message, LogError> {
        Ok(Message {
            room: self.room.clone(),
            seq: r.seq.max(0) as u64,
            id: r.id,
            user: UserId::parse(&r.user).map_err(|_| LogError("stored user id is corrupt".into()))?,
            text: r.text,
            data: r
                .data
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| LogError(e.to_string()))?,
            ts: Timestamp(r.ts.max(0) as u64),
            server: r.server != 0,
        })
    }
}

/// A message row's [`Message::size`] in SQL: the UTF-8 bytes of text, data, id and author.
const ROW_SIZE: &str = "length(CAST(text AS BLOB)) + COALESCE(length(CAST(data AS BLOB)), 0)
  + length(CAST(id AS BLOB)) + length(CAST(user AS BLOB))";

impl SqlLog<'_> {
    /// The rows of `window` (a query of message columns, in walking order) while the bytes of
    /// the rows before each are under `max_bytes`, in ascending `seq`: SQLite sums the sizes,
    /// so rows past the bound never reach the Worker.
    fn within(
        &self,
        window: &str,
        bindings: Vec<SqlStorageValue>,
        max_bytes: usize,
        walk: &str,
    ) -> Result<Vec<Message>, LogError> {
        let q = format!(
            "SELECT {MESSAGE_COLUMNS} FROM (
               SELECT {MESSAGE_COLUMNS}, SUM({ROW_SIZE}) OVER (ORDER BY seq {walk}) - ({ROW_SIZE}) AS before
               FROM ({window})
             ) WHERE before < ? ORDER BY seq ASC"
        );
        let mut bindings = bindings;
        bindings.push(bound(max_bytes as u64));
        self.query(&q, bindings)
    }
}

impl RoomLog for SqlLog<'_> {
    fn page(&self, before: Option<u64>, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        let before = bound(before.unwrap_or(u64::MAX));
        let window =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE seq < ? ORDER BY seq DESC LIMIT ?");
        self.within(&window, vec![before, SqlStorageValue::from(i64::from(limit))], max_bytes, "DESC")
    }

    fn after(&self, since: u64, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        let window = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq ASC LIMIT ?");
        self.within(&window, vec![bound(since), SqlStorageValue::from(i64::from(limit))], max_bytes, "ASC")
    }

    fn find(&self, user: &UserId, id: &str) -> Result<Option<Receipt>, LogError> {
        #[derive(Deserialize)]
        struct Row {
            seq: i64,
            id: String,
            ts: i64,
        }
        // A trimmed message's id is remembered in `trimmed`; a stored one is in `messages`.
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT seq, id, ts FROM messages WHERE user = ? AND id = ?
                 UNION ALL SELECT seq, id, ts FROM trimmed WHERE user = ? AND id = ? LIMIT 1",
                vec![
                    user.to_string().into(),
                    id.to_owned().into(),
                    user.to_string().into(),
                    id.to_owned().into(),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(|e| LogError(e.to_string()))?;
        Ok(rows.into_iter().next().map(|r| Receipt {
            seq: r.seq.max(0) as u64,
            id: r.id,
            ts: Timestamp(r.ts.max(0) as u64),
        }))
    }
}
