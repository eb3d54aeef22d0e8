//! `RoomObject`: one per room. Holds the room's sockets through the Hibernation API, its log and
//! live state in SQLite, its one alarm, and a [`Room`] rebuilt lazily after every wake. The room
//! adds to the shell (`edge::shell`) its schema and SQL, messages written together at each drain
//! (group commit) and read meanwhile through an overlay, its history trimming, the seq floor, and
//! three endpoints: history, publish and the event stream.

use super::shell::{durable_object, Effects, Inbound, Kind, Load, Loaded, ReaderOf, Shell, Store, WriteOf};
use super::sql::{self, bound, corrupt, random_id, read_meta, run, safe_integer, safe_number, write_meta};
use super::{http, now, sse};
use crate::core::admission::Admission;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{RoomId, UserId};
use crate::core::object::{Effect, Never};
use crate::core::protocol::RawJson;
use crate::core::room::log::{LogError, LogHead, Message, Overlay, Receipt, RoomLog};
use crate::core::room::{HistoryPage, Publish, Resume, Room, RoomWrite, StateEntry, StreamInfo};
use crate::core::time::Timestamp;
use js_sys::JsString;
use serde::Deserialize;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::{Response, SqlStorage, SqlStorageValue};

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

/// What a live room keeps beside its core.
pub(crate) struct RoomKind {
    id: RoomId,
    /// Messages accepted but not yet written: written together at the next drain (group
    /// commit), before anything that announces them is sent; reads see them meanwhile.
    pending: Vec<Message>,
    states: Vec<(String, StateEntry)>,
    /// The latest `Trim` asked for, done after the next write.
    trim: Option<(u64, u64)>,
    /// Shared with the object: the highest `seq` a dropped live room had handed out.
    floor: Rc<Cell<u64>>,
}

/// One commit of a room: its new messages and key/value changes.
pub(crate) struct RoomBatch {
    messages: Vec<Message>,
    states: Vec<(String, StateEntry)>,
}

durable_object!(
    /// A chat room's Durable Object.
    RoomObject,
    RoomKind
);

impl Kind for RoomKind {
    type Core = Room;
    type Batch = RoomBatch;
    /// The highest `seq` a dropped live room handed out.
    type Memo = Rc<Cell<u64>>;
    const NAME: &'static str = "room";
    const LABEL: &'static str = "room";
    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;

    fn load(from: Load<'_, Self>) -> Result<Loaded<Self>, Error> {
        let Load { sql, name, config, memo: floor } = from;
        let id = RoomId::parse(name).map_err(|_| corrupt("room id"))?;
        let epoch = match read_meta(sql, "epoch")? {
            Some(epoch) => epoch,
            None => {
                let epoch = random_id()?.to_string();
                write_meta(sql, "epoch", &epoch)?;
                epoch
            }
        };
        #[derive(Deserialize)]
        struct Head {
            seq: Option<i64>,
        }
        let head: Vec<Head> = sql::rows(sql, "SELECT MAX(seq) AS seq FROM messages", Vec::new())?;
        let stored = head.first().and_then(|h| h.seq).unwrap_or(0).max(0) as u64;
        let seq_floor = seq_floor(sql, stored, floor.get())?;
        let room = Room::new(
            id.clone(),
            LogHead::restore(stored, seq_floor, epoch),
            read_state(sql)?,
            config.clone(),
        );
        let kind =
            RoomKind { id, pending: Vec::new(), states: Vec::new(), trim: None, floor: Rc::clone(floor) };
        Ok((room, kind, Vec::new()))
    }

    fn stage(&mut self, write: WriteOf<Self>) {
        match write {
            RoomWrite::Append(message) => self.pending.push(message),
            RoomWrite::PutState { key, entry } => self.states.push((key, entry)),
            RoomWrite::Trim { through, forget_through } => self.trim = Some((through, forget_through)),
        }
    }

    fn take_batch(&mut self) -> Option<RoomBatch> {
        if self.pending.is_empty() && self.states.is_empty() {
            return None;
        }
        Some(RoomBatch {
            messages: std::mem::take(&mut self.pending),
            states: std::mem::take(&mut self.states),
        })
    }

    fn one_statement(batch: &RoomBatch) -> bool {
        match (batch.messages.len(), batch.states.len()) {
            (0, states) => states == 1,
            (messages, 0) => messages <= ROWS_PER_INSERT,
            _ => false,
        }
    }

    fn write(sql: &SqlStorage, batch: &RoomBatch) -> Result<(), Error> {
        write_messages(sql, &batch.messages)?;
        batch.states.iter().try_for_each(|(key, entry)| put_state(sql, key, entry))
    }

    /// Trims the history, and sends the stored messages to the event streams.
    fn stored(&mut self, room: &Room, sql: &SqlStorage, batch: &RoomBatch) -> Effects<Self> {
        self.trim_history(sql);
        // Built only for open streams: most rooms have none.
        if batch.messages.is_empty() || room.stream_count() == 0 {
            return Vec::new();
        }
        let event: String = batch.messages.iter().map(|m| room.message_event(m)).collect();
        vec![Effect::StreamBroadcast { event }]
    }

    /// The log as SQLite holds it, with the pending messages over it.
    fn read<R>(
        &self,
        room: &mut Room,
        store: &Store<'_>,
        f: impl for<'r> FnOnce(&mut Room, &ReaderOf<'r, Self>) -> R,
    ) -> R {
        let base = SqlLog { sql: store.sql, room: &self.id };
        f(room, &Overlay { base: &base, pending: &self.pending })
    }

    /// A live room is dropped when a write failed: its head may be ahead of storage (messages
    /// still pending, or sequenced but never appended), and the rebuild must not hand those
    /// seqs out again.
    fn dropped(&self, room: &Room) {
        self.floor.set(self.floor.get().max(room.seq()));
    }

    async fn call(_: &Rc<Shell<Self>>, calls: Vec<Never>) {
        if let Some(never) = calls.into_iter().next() {
            match never {}
        }
    }

    async fn endpoint(shell: &Rc<Shell<Self>>, mut inbound: Inbound) -> Result<Response, Error> {
        match inbound.path.as_str() {
            "/history" => history(shell, &inbound),
            "/publish" => {
                // Read before borrowing the room: no borrow may live across an await.
                let body = inbound.req.text().await.unwrap_or_default();
                publish(shell, &inbound, body)
            }
            "/events" => events(shell, &inbound),
            _ => Err(Error::new(ErrorCode::NotFound, "no such room endpoint")),
        }
    }
}

/// The last seq handed out before a failed write (`floor`), kept in `meta` once it is ahead of
/// storage so that an eviction does not forget it either.
fn seq_floor(sql: &SqlStorage, stored: u64, floor: u64) -> Result<u64, Error> {
    let kept = read_meta(sql, "seq_floor")?.and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    if floor > stored && floor > kept {
        write_meta(sql, "seq_floor", &floor.to_string())?;
    }
    Ok(floor.max(kept))
}

impl RoomKind {
    /// Deletes what `Trim` asked for, after the messages that made it due are written.
    /// Trimming is upkeep: a failure is logged and retried with the next write, and never holds
    /// back the acks of messages already stored.
    fn trim_history(&mut self, sql: &SqlStorage) {
        let Some((through, forget_through)) = self.trim else { return };
        let done = safe_integer(through).and_then(|through| {
            let forget = safe_integer(forget_through)?;
            // Only ids still inside the window are copied (a long log trimmed at once after an
            // upgrade copies at most ROOM_HISTORY_MAX of them).
            run(
                sql,
                "INSERT OR IGNORE INTO trimmed (seq, id, user, ts)
                 SELECT seq, id, user, ts FROM messages WHERE seq <= ? AND seq > ?",
                vec![through.clone(), forget.clone()],
            )?;
            run(sql, "DELETE FROM messages WHERE seq <= ?", vec![through])?;
            run(sql, "DELETE FROM trimmed WHERE seq <= ?", vec![forget])
        });
        if done.is_ok() {
            self.trim = None;
        }
    }
}

/// A history page, drawn from the asking user's read budget.
fn history(shell: &Rc<Shell<RoomKind>>, inbound: &Inbound) -> Result<Response, Error> {
    let Admission { before, limit, .. } = inbound.admission;
    let user = inbound.admission.user()?;
    let mut slot = shell.slot();
    shell.drained(&mut slot, inbound.name.as_deref())?;
    let messages =
        shell.read(&mut slot, None, |room, log| room.http_history(user, before, limit, now(), log))??;
    http::json(200, &HistoryPage { messages: &messages })
}

/// A message published over HTTP; the answer is its ack, so it is written before answering.
fn publish(shell: &Rc<Shell<RoomKind>>, inbound: &Inbound, body: String) -> Result<Response, Error> {
    let admission = &inbound.admission;
    let user = admission.user()?.clone();
    let publish: Publish = serde_json::from_str(&body)
        .map_err(|e| Error::new(ErrorCode::BadRequest, format!("bad body: {e}")))?;
    let mut slot = shell.slot();
    shell.load(&mut slot, inbound.name.as_deref())?;
    let key = admission.idempotency_key.clone();
    let (ack, effects) = shell.read(&mut slot, None, |room, log| {
        room.handle_publish(user, publish, key, admission.server, now(), log)
    })??;
    shell
        .apply_now(&mut slot, effects)
        .map_err(|_| Error::new(ErrorCode::Internal, "could not store the message"))?;
    http::json(200, &ack)
}

/// Server-Sent Events: the core's opening (missed messages, `room:state`), then every new
/// message as it is stored (`RoomKind::stored`).
fn events(shell: &Rc<Shell<RoomKind>>, inbound: &Inbound) -> Result<Response, Error> {
    let admission = &inbound.admission;
    let info =
        StreamInfo { id: random_id()?, user: admission.user()?.clone(), expires: admission.expires()? };
    let id = info.id.clone();
    let mut slot = shell.slot();
    shell.drained(&mut slot, inbound.name.as_deref())?;
    let resume = Resume::admitted(admission);
    let opening =
        shell.read(&mut slot, None, |room, log| room.open_stream(info, resume.as_ref(), now(), log))??;
    let (stream, body) = shell.new_stream(&id);
    stream.push(opening.as_bytes());
    if let Some(live) = slot.as_mut() {
        live.streams.insert(id, stream);
    }
    // The stream's expiry and the keepalive are deadlines of the one alarm.
    shell.apply(&mut slot, None, Vec::new());
    sse::response(body)
}

fn read_state(sql: &SqlStorage) -> Result<BTreeMap<String, StateEntry>, Error> {
    #[derive(Deserialize)]
    struct Row {
        key: String,
        value: String,
        version: i64,
        user: String,
    }
    let found: Vec<Row> = sql::rows(sql, "SELECT key, value, version, user FROM state", Vec::new())?;
    found
        .into_iter()
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
    run(
        sql,
        "INSERT INTO state (key, value, version, user) VALUES (?, ?, ?, ?)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, user = excluded.user",
        vec![
            key.to_owned().into(),
            entry.value.to_string().into(),
            safe_integer(entry.version)?,
            entry.user.to_string().into(),
        ],
    )
}

/// Rows per INSERT: seven bound values each, under the per-statement limit of 100.
const ROWS_PER_INSERT: usize = 10;

#[wasm_bindgen]
extern "C" {
    /// The runtime's SQL storage, for a statement whose bindings cross in the call itself.
    type RawSql;

    #[wasm_bindgen(method, catch, js_name = exec)]
    #[allow(clippy::too_many_arguments)]
    fn exec_message(
        this: &RawSql,
        query: &JsString,
        seq: f64,
        id: &str,
        user: &str,
        text: &str,
        data: Option<&str>,
        ts: f64,
        server: f64,
    ) -> Result<JsValue, JsValue>;

    /// The rows a statement returned.
    type RawCursor;

    #[wasm_bindgen(method, catch, js_name = exec)]
    fn exec_find(this: &RawSql, query: &JsString, user: &str, id: &str) -> Result<RawCursor, JsValue>;

    #[wasm_bindgen(method, catch, js_name = toArray)]
    fn rows(this: &RawCursor) -> Result<js_sys::Array, JsValue>;
}

/// Where a sender's message id is looked up: a stored message, or a trimmed one's id.
const FIND_BY_SENDER: &str = "SELECT seq, id, ts FROM messages WHERE user = ?1 AND id = ?2
     UNION ALL SELECT seq, id, ts FROM trimmed WHERE user = ?1 AND id = ?2 LIMIT 1";

thread_local! {
    /// The duplicate check of every message with a client id, made a JS string once.
    static FIND_ONE: JsString = JsString::from(FIND_BY_SENDER);
    /// The one-row INSERT, made a JS string once per isolate.
    static INSERT_ONE: JsString =
        JsString::from(format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)").as_str());
}

/// Writes one message in one crossing: the cached statement, its numbers as numbers and its
/// strings (`data` as the sender wrote it; absent binds as NULL) decoded by the call's glue (the
/// generic `exec` makes a JS value and an array push of each binding, and decodes the statement
/// every time).
fn write_message(sql: &SqlStorage, m: &Message) -> Result<(), Error> {
    let raw: &RawSql = sql.as_ref().unchecked_ref();
    INSERT_ONE
        .with(|query| {
            raw.exec_message(
                query,
                safe_number(m.seq)?,
                &m.id,
                m.user.as_str(),
                &m.text,
                m.data.as_ref().map(RawJson::get),
                safe_number(m.ts.as_millis())?,
                f64::from(u8::from(m.server)),
            )
            .map_err(|e| sql::storage(worker::Error::from(e)))
        })
        .map(|_| ())
}

/// Writes `messages`: one alone in one crossing ([`write_message`]), more with one multi-row
/// INSERT per ten; the event's writes commit together.
fn write_messages(sql: &SqlStorage, messages: &[Message]) -> Result<(), Error> {
    if let [one] = messages {
        return write_message(sql, one);
    }
    for chunk in messages.chunks(ROWS_PER_INSERT) {
        let mut bindings = Vec::with_capacity(chunk.len() * 7);
        for m in chunk {
            let data = match &m.data {
                Some(d) => SqlStorageValue::from(d.get().to_owned()),
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
        let insert = format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {rows}");
        run(sql, &insert, bindings)?;
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
        let rows: Vec<MessageRow> = sql::read(self.sql, sql, bindings)?;
        rows.into_iter().map(|r| self.message(r)).collect()
    }

    fn message(&self, r: MessageRow) -> Result<Message, LogError> {
        Ok(Message {
            room: self.room.clone(),
            seq: r.seq.max(0) as u64,
            id: r.id,
            user: UserId::parse(&r.user).map_err(|_| LogError("stored user id is corrupt".into()))?,
            text: r.text,
            data: r.data.map(RawJson::parse).transpose().map_err(|e| LogError(e.to_string()))?,
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
        // The common answer, an id not seen before, takes one crossing and converts no row: the
        // statement is cached, the two strings cross in the call, and only an empty array comes
        // back. A duplicate (a resend) is read again through the generic path.
        let raw: &RawSql = self.sql.as_ref().unchecked_ref();
        let seen = FIND_ONE
            .with(|query| raw.exec_find(query, user.as_str(), id))
            .and_then(|cursor| cursor.rows())
            .map_err(|e| LogError(format!("{e:?}")))?;
        if seen.length() == 0 {
            return Ok(None);
        }
        let rows: Vec<Row> =
            sql::read(self.sql, FIND_BY_SENDER, vec![user.to_string().into(), id.to_owned().into()])?;
        Ok(rows.into_iter().next().map(|r| Receipt {
            seq: r.seq.max(0) as u64,
            id: r.id,
            ts: Timestamp(r.ts.max(0) as u64),
        }))
    }
}
