//! `RoomObject`: one per room. Holds the room's sockets through the Hibernation API, its message
//! log in SQLite, and a [`Room`] rebuilt lazily after every wake.

use super::{config, http, internal, now, socket};
use crate::core::config::Config;
use crate::core::effect::Effect;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, RoomId, UserId};
use crate::core::log::{LogError, LogHead, Message, MessageLog};
use crate::core::protocol::{self, Incoming};
use crate::core::room::{ConnInfo, Room};
use crate::core::time::Timestamp;
use js_sys::JsString;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{
    durable_object, Env, Request, Response, ResponseBuilder, SqlStorage, SqlStorageValue, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL, user TEXT NOT NULL,
  text TEXT NOT NULL, data TEXT, ts INTEGER NOT NULL
);";

/// Largest integer JS numbers (and so SQLite bindings here) carry exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The room as it lives between events: rebuilt after a wake, dropped when storage fails.
struct Live {
    room: Room,
    sockets: HashMap<ConnId, WebSocket>,
}

/// A chat room's Durable Object.
#[durable_object]
pub struct RoomObject {
    state: State,
    env: Env,
    live: RefCell<Option<Live>>,
}

impl worker::DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        // Answered by the runtime without waking the object; failing to set it only costs wakes.
        if let Ok(pair) = WebSocketRequestResponsePair::new(r#"{"t":"ping"}"#, r#"{"t":"pong"}"#) {
            let _ = state.as_raw().set_websocket_auto_response(&pair);
        }
        RoomObject { state, env, live: RefCell::new(None) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let result = match req.path().as_str() {
            "/connect" => self.accept_connection(&req),
            "/stats" => self.stats(&req),
            _ => Err(Error::new(ErrorCode::NotFound, "no such room endpoint")),
        };
        result.or_else(|e| http::error(&e))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(conn) = conn_of(&ws) else {
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
        let frame = match &message {
            WebSocketIncomingMessage::String(text) => Incoming::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => Incoming::Binary(bytes.len()),
        };
        let sql = self.state.storage().sql();
        let room_id = live.room.id().clone();
        let log = SqlLog { sql: &sql, room: &room_id };
        let effects = live.room.handle_frame(&conn, frame, now(), &log);
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
        // In hibernation mode the close handshake is ours to finish, or the client sees 1006.
        socket::close(&ws, u16::try_from(code).unwrap_or(close::NORMAL), &reason);
        self.forget(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.forget(&ws);
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // No timers yet: typing expiry and token expiry arrive with the room's timer table.
        Response::ok("")
    }
}

fn conn_of(ws: &WebSocket) -> Option<ConnId> {
    ws.deserialize_attachment::<ConnInfo>().ok().flatten().map(|info| info.conn)
}

impl RoomObject {
    fn accept_connection(&self, req: &Request) -> Result<Response, Error> {
        let headers = req.headers();
        let header = |name: &str| headers.get(name).ok().flatten();
        let bad = || Error::new(ErrorCode::Internal, "malformed internal connect request");
        let room = header(internal::ROOM).and_then(|r| RoomId::parse(&r).ok()).ok_or_else(bad)?;
        let user = header(internal::USER).and_then(|u| UserId::parse(&u).ok()).ok_or_else(bad)?;
        let expires =
            header(internal::EXPIRES).and_then(|x| x.parse().ok()).map(Timestamp).ok_or_else(bad)?;
        let info = ConnInfo { conn: random_id()?, user: user.clone(), expires };

        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, Some(&room))?;
        let pair = WebSocketPair::new().map_err(http::internal)?;
        let tags = [format!("u:{user}"), format!("c:{}", info.conn)];
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        socket::accept(&self.state, &pair.server, &tag_refs)
            .map_err(|_| Error::new(ErrorCode::Internal, "could not accept the socket"))?;
        pair.server.serialize_attachment(&info).map_err(http::internal)?;
        live.sockets.insert(info.conn.clone(), pair.server.clone());
        let effects = live.room.handle_connect(info, now());
        self.apply(&mut slot, None, effects);

        let mut response = ResponseBuilder::new().with_status(101);
        if let Some(protocol) = header(internal::PROTOCOL) {
            response = response.with_header("sec-websocket-protocol", &protocol).map_err(http::internal)?;
        }
        Ok(response.with_websocket(pair.client).empty())
    }

    /// Operational counters; `wakes` counts how often the room was rebuilt from storage.
    fn stats(&self, req: &Request) -> Result<Response, Error> {
        let hint = req.headers().get(internal::ROOM).ok().flatten().and_then(|r| RoomId::parse(&r).ok());
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, hint.as_ref())?;
        let wakes = read_meta(&self.state.storage().sql(), "wakes")?.unwrap_or_default();
        http::json(
            200,
            &serde_json::json!({
                "room": live.room.id(),
                "seq": live.room.seq(),
                "epoch": live.room.epoch(),
                "connections": live.room.connection_count(),
                "members": live.room.members().count(),
                "wakes": wakes.parse::<u64>().unwrap_or(0),
            }),
        )
    }

    /// The live room, rebuilt from storage and the surviving sockets when the object just woke.
    fn load<'a>(
        &self,
        slot: &'a mut Option<Live>,
        room_hint: Option<&RoomId>,
    ) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            *slot = Some(self.rebuild(room_hint)?);
        }
        slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "room not loaded"))
    }

    fn rebuild(&self, room_hint: Option<&RoomId>) -> Result<Live, Error> {
        let config: Config = config(&self.env)?;
        let sql = self.state.storage().sql();
        sql.exec(SCHEMA, None).map_err(storage)?;
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
        let wakes = read_meta(&sql, "wakes")?.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        write_meta(&sql, "wakes", &(wakes + 1).to_string())?;
        #[derive(Deserialize)]
        struct Head {
            seq: Option<i64>,
        }
        let head: Vec<Head> = sql
            .exec("SELECT MAX(seq) AS seq FROM messages", None)
            .and_then(|c| c.to_array())
            .map_err(storage)?;
        let seq = head.first().and_then(|h| h.seq).unwrap_or(0).max(0) as u64;

        let mut room = Room::new(room, LogHead { seq, epoch }, config.limits);
        let mut sockets = HashMap::new();
        for ws in socket::open_sockets(&self.state)
            .map_err(|_| Error::new(ErrorCode::Internal, "could not list sockets"))?
        {
            match ws.deserialize_attachment::<ConnInfo>() {
                Ok(Some(info)) => {
                    sockets.insert(info.conn.clone(), ws);
                    room.restore_conn(info);
                }
                _ => socket::close(&ws, close::INTERNAL, "lost connection state"),
            }
        }
        Ok(Live { room, sockets })
    }

    /// Applies effects in order. A failed write drops the live state (the next event rebuilds it
    /// from storage), tells `origin`, and skips the rest, so nothing unwritten is announced.
    fn apply(&self, slot: &mut Option<Live>, origin: Option<&ConnId>, effects: Vec<Effect>) {
        let mut closed = Vec::new();
        for effect in effects {
            let Some(live) = slot.as_mut() else { return };
            match effect {
                Effect::Append(message) => {
                    if let Err(e) = append(&self.state.storage().sql(), &message) {
                        if let Some(ws) = origin.and_then(|c| live.sockets.get(c)) {
                            socket::send(ws, &protocol::error_frame(&e));
                        }
                        *slot = None;
                        return;
                    }
                }
                Effect::Send { to, frame } => {
                    if let Some(ws) = live.sockets.get(&to) {
                        socket::send(ws, &frame);
                    }
                }
                Effect::Broadcast { except, frame } => {
                    let frame = JsString::from(frame);
                    for (id, ws) in &live.sockets {
                        if except.as_ref() != Some(id) {
                            socket::send_js(ws, &frame);
                        }
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(ws) = live.sockets.get(&conn) {
                        socket::close(ws, code, reason);
                    }
                    closed.push(conn);
                }
            }
        }
        for conn in closed {
            self.forget_conn(slot, &conn);
        }
    }

    fn forget(&self, ws: &WebSocket) {
        let Some(conn) = conn_of(ws) else { return };
        let mut slot = self.live.borrow_mut();
        // Only a live room has members to tell; after a wake the rebuild skips closed sockets.
        if slot.is_some() {
            self.forget_conn(&mut slot, &conn);
        }
    }

    fn forget_conn(&self, slot: &mut Option<Live>, conn: &ConnId) {
        let Some(live) = slot.as_mut() else { return };
        live.sockets.remove(conn);
        let effects = live.room.handle_close(conn);
        self.apply(slot, None, effects);
    }
}

fn storage(e: worker::Error) -> Error {
    worker::console_error!("storage error: {e}");
    Error::new(ErrorCode::Internal, "storage error")
}

fn corrupt(what: &str) -> Error {
    Error::new(ErrorCode::Internal, format!("stored {what} is corrupt"))
}

fn read_meta(sql: &SqlStorage, key: &str) -> Result<Option<String>, Error> {
    #[derive(Deserialize)]
    struct Row {
        value: String,
    }
    let rows: Vec<Row> = sql
        .exec("SELECT value FROM meta WHERE key = ?", vec![SqlStorageValue::from(key.to_owned())])
        .and_then(|c| c.to_array())
        .map_err(storage)?;
    Ok(rows.into_iter().next().map(|r| r.value))
}

fn write_meta(sql: &SqlStorage, key: &str, value: &str) -> Result<(), Error> {
    sql.exec(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        vec![key.to_owned().into(), value.to_owned().into()],
    )
    .map(|_| ())
    .map_err(storage)
}

fn append(sql: &SqlStorage, m: &Message) -> Result<(), Error> {
    let data = match &m.data {
        Some(d) => SqlStorageValue::from(d.to_string()),
        None => SqlStorageValue::Null,
    };
    let number =
        |n: u64| SqlStorageValue::try_from_i64(i64::try_from(n).unwrap_or(i64::MAX)).map_err(storage);
    sql.exec(
        "INSERT INTO messages (seq, id, user, text, data, ts) VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            number(m.seq)?,
            m.id.clone().into(),
            m.user.to_string().into(),
            m.text.clone().into(),
            data,
            number(m.ts.as_millis())?,
        ],
    )
    .map(|_| ())
    .map_err(storage)
}

/// The room's log as SQLite holds it.
struct SqlLog<'a> {
    sql: &'a SqlStorage,
    room: &'a RoomId,
}

impl MessageLog for SqlLog<'_> {
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Message>, LogError> {
        #[derive(Deserialize)]
        struct Row {
            seq: i64,
            id: String,
            user: String,
            text: String,
            data: Option<String>,
            ts: i64,
        }
        let before = before
            .map_or(MAX_SAFE_INTEGER, |b| i64::try_from(b).unwrap_or(MAX_SAFE_INTEGER).min(MAX_SAFE_INTEGER));
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT seq, id, user, text, data, ts FROM messages WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                vec![SqlStorageValue::from(before), SqlStorageValue::from(i64::from(limit))],
            )
            .and_then(|c| c.to_array())
            .map_err(|e| LogError(e.to_string()))?;
        rows.into_iter()
            .rev()
            .map(|r| {
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
                })
            })
            .collect()
    }
}

/// 96 random bits as 24 hex characters: connection ids and log epochs.
fn random_id() -> Result<ConnId, Error> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|_| Error::new(ErrorCode::Internal, "no randomness available"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ConnId::parse(&hex).map_err(|_| Error::new(ErrorCode::Internal, "bad random id"))
}
