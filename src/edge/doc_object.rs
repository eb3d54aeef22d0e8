//! `DocumentObject`: one per document, the single writer that orders its edits. Holds the
//! editors' sockets through the Hibernation API, the op log, the remembered sources and
//! periodic snapshots in SQLite, its one alarm (token expiry), and a [`Doc`] rebuilt lazily
//! after every wake from the latest snapshot plus the ops after it.

use super::sql::{self, corrupt, count_wake, random_id, read_meta, rows, run, safe_integer, write_meta};
use super::{config, http, internal, now, socket};
use crate::core::doc::{
    ops_page, Applied, Doc, DocCall, DocConnInfo, DocEffect, DocWrite, LoggedOp, Owner, Repair, ResumeFrom,
    StoredDoc, StoredOp,
};
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, DocId, UserId};
use crate::core::object::{phases, Object};
use crate::core::protocol;
use crate::core::time::Timestamp;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use worker::{
    durable_object, Env, Request, Response, ResponseBuilder, SqlStorage, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

/// The schema's versions, in order (see [`sql::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the first release (5a06e97).
    "CREATE TABLE IF NOT EXISTS ops (v INTEGER PRIMARY KEY, op TEXT NOT NULL, src TEXT NOT NULL, seq INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS sources (src TEXT PRIMARY KEY, seq INTEGER NOT NULL, v INTEGER NOT NULL);",
    // 2: sources belong to a user, so no one can advance or evict another's; rows from before
    // keep an empty user (they answer exact resubmissions only).
    "CREATE TABLE sources_by_user (user TEXT NOT NULL, src TEXT NOT NULL, seq INTEGER NOT NULL, v INTEGER NOT NULL, PRIMARY KEY (user, src));
     INSERT INTO sources_by_user (user, src, seq, v) SELECT '', src, seq, v FROM sources;
     DROP TABLE sources;
     ALTER TABLE sources_by_user RENAME TO sources;",
    // 3: each op's size in bytes, so byte-bounded reads sum a column instead of measuring text.
    "ALTER TABLE ops ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE ops SET bytes = length(CAST(op AS BLOB));",
];

struct Live {
    doc: Doc,
    sockets: HashMap<ConnId, WebSocket>,
    /// The alarm this instance last set (`None` after a wake: unknown, so it is set again).
    alarm: Option<Timestamp>,
    sql: SqlStorage,
}

/// A collaborative document's Durable Object.
#[durable_object]
pub struct DocumentObject {
    state: State,
    env: Env,
    live: RefCell<Option<Live>>,
}

impl worker::DurableObject for DocumentObject {
    fn new(state: State, env: Env) -> Self {
        if let Ok(pair) = WebSocketRequestResponsePair::new(r#"{"t":"ping"}"#, r#"{"t":"pong"}"#) {
            let _ = state.as_raw().set_websocket_auto_response(&pair);
        }
        DocumentObject { state, env, live: RefCell::new(None) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let result = match req.path().as_str() {
            "/connect" => self.accept_connection(&req),
            "/snapshot" => self.snapshot(&req),
            "/stats" => self.stats(&req),
            _ => Err(Error::new(ErrorCode::NotFound, "no such document endpoint")),
        };
        result.or_else(|e| http::error(&e))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(conn) = socket::conn_of::<DocConnInfo>(&ws) else {
            socket::close(&ws, close::INTERNAL, "unknown connection");
            return Ok(());
        };
        let mut slot = self.live.borrow_mut();
        let live = match self.load(&mut slot, None) {
            Ok(live) => live,
            Err(e) => {
                socket::send(&ws, &protocol::error_frame(&e));
                socket::close(&ws, close::INTERNAL, "document unavailable");
                return Ok(());
            }
        };
        let frame = socket::incoming(&message);
        let effects = live.doc.handle_frame(&conn, frame, now(), &());
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
        if let Ok(live) = self.load(&mut slot, None) {
            live.alarm = None; // this alarm is spent
            let effects = live.doc.handle_alarm(now());
            self.apply(&mut slot, None, effects);
        }
        Response::ok("")
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn doc_hint(req: &Request) -> Option<DocId> {
    header(req, internal::DOC).and_then(|d| DocId::parse(&d).ok())
}

impl DocumentObject {
    fn accept_connection(&self, req: &Request) -> Result<Response, Error> {
        let bad = || Error::new(ErrorCode::Internal, "malformed internal connect request");
        let doc = doc_hint(req).ok_or_else(bad)?;
        let user = header(req, internal::USER).and_then(|u| UserId::parse(&u).ok()).ok_or_else(bad)?;
        let expires =
            header(req, internal::EXPIRES).and_then(|x| x.parse().ok()).map(Timestamp).ok_or_else(bad)?;
        let can_write = header(req, internal::CAN_SEND).as_deref() == Some("1");
        let resume = header(req, internal::SINCE)
            .and_then(|v| v.parse().ok())
            .map(|v| ResumeFrom { v, epoch: header(req, internal::EPOCH) });
        let info = DocConnInfo { conn: random_id()?, user, expires, can_write };

        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, Some(&doc))?;
        live.doc.check_capacity(&info.user)?;
        let pair = WebSocketPair::new().map_err(http::internal)?;
        let mut response = ResponseBuilder::new().with_status(101);
        if let Some(protocol) = header(req, internal::PROTOCOL) {
            response = response.with_header("sec-websocket-protocol", &protocol).map_err(http::internal)?;
        }
        let tag = format!("c:{}", info.conn);
        socket::accept(&self.state, &pair.server, &[tag.as_str()])
            .map_err(|_| Error::new(ErrorCode::Internal, "could not accept the socket"))?;
        // The runtime now holds the socket: on any failure from here it is closed, or it would
        // stay open without a snapshot (and come back as an editor after the next wake).
        if let Err(e) = self.open(&mut slot, &pair.server, info, resume) {
            socket::close(&pair.server, close::INTERNAL, "could not open the connection");
            return Err(e);
        }
        Ok(response.with_websocket(pair.client).empty())
    }

    /// Makes an accepted socket an editor: its attachment, then the replay and snapshot.
    fn open(
        &self,
        slot: &mut Option<Live>,
        ws: &WebSocket,
        info: DocConnInfo,
        resume: Option<ResumeFrom>,
    ) -> Result<(), Error> {
        ws.serialize_attachment(&info).map_err(http::internal)?;
        let live = slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "document not loaded"))?;
        let conn = info.conn.clone();
        live.sockets.insert(conn.clone(), ws.clone());
        let effects = live.doc.handle_connect(info, resume, now(), &());
        self.apply(slot, None, effects);
        match slot.as_ref() {
            Some(live) if live.sockets.contains_key(&conn) => Ok(()),
            _ => Err(Error::new(ErrorCode::Internal, "could not open the connection")),
        }
    }

    fn snapshot(&self, req: &Request) -> Result<Response, Error> {
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, doc_hint(req).as_ref())?;
        let doc = &live.doc;
        http::json(
            200,
            &serde_json::json!({ "doc": doc.id(), "v": doc.version(), "epoch": doc.epoch(), "text": doc.text() }),
        )
    }

    /// Counters for operators and tests; `wakes` counts rebuilds from storage.
    fn stats(&self, req: &Request) -> Result<Response, Error> {
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, doc_hint(req).as_ref())?;
        let doc = &live.doc;
        http::json(
            200,
            &serde_json::json!({
                "doc": doc.id(),
                "v": doc.version(),
                "epoch": doc.epoch(),
                "logFloor": doc.log_floor(),
                "logBytes": doc.log_bytes(),
                "sources": doc.source_count(),
                "chars": crate::core::ot::chars(doc.text()),
                "connections": doc.connection_count(),
                "alarm": live.alarm,
                "wakes": sql::wakes(&live.sql)?,
                "repair": read_meta(&live.sql, "repair")?
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok()),
            }),
        )
    }

    fn load<'a>(&self, slot: &'a mut Option<Live>, hint: Option<&DocId>) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            let mut live = self.rebuild(hint)?;
            live.alarm = sql::sync_alarm(&self.state, None, live.doc.poll_timeout());
            *slot = Some(live);
        }
        slot.as_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "document not loaded"))
    }

    fn rebuild(&self, hint: Option<&DocId>) -> Result<Live, Error> {
        let config = config(&self.env)?;
        let sql = self.state.storage().sql();
        sql::migrate(&self.state, MIGRATIONS)?;
        let id = match (read_meta(&sql, "doc")?, hint) {
            (Some(stored), _) => DocId::parse(&stored).map_err(|_| corrupt("document id"))?,
            (None, Some(hint)) => {
                write_meta(&sql, "doc", hint.as_str())?;
                hint.clone()
            }
            (None, None) => return Err(Error::new(ErrorCode::Internal, "document has no name yet")),
        };
        count_wake(&sql)?;
        let snapshot_v = read_meta(&sql, "snapshot_v")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let limits = &config.limits;
        let mut ops = read_history(&sql, snapshot_v, limits.doc_log_retain, limits.recovery_max_bytes)?;
        ops.extend(read_ops(&sql, snapshot_v, None, None)?);
        let stored = StoredDoc {
            epoch: read_meta(&sql, "epoch")?,
            snapshot_v,
            snapshot_text: read_meta(&sql, "snapshot_text")?.unwrap_or_default(),
            ops,
            sources: read_sources(&sql)?,
        };
        let (mut doc, effects) = Doc::restore(id, stored, (*config).clone(), random_id()?.to_string());
        let now = now();
        let mut sockets = HashMap::new();
        for (ws, info) in socket::restored::<DocConnInfo>(&self.state)? {
            if doc.repair().is_some() {
                // Their text is the one before the repair: they must reload, not edit on.
                socket::close(&ws, close::INTERNAL, "document repaired; reconnect");
                continue;
            }
            sockets.insert(info.conn.clone(), ws);
            doc.restore_conn(info, now);
        }
        let mut live = Some(Live { doc, sockets, alarm: None, sql });
        self.apply(&mut live, None, effects);
        live.ok_or_else(|| Error::new(ErrorCode::Internal, "could not store the document's repair"))
    }

    /// Applies effects in phase order (writes, frames, reads) and re-aims the alarm. The writes
    /// commit together, so a failure halfway (an op stored without its source) cannot be left
    /// behind; a failed write drops the live state (rebuilt from storage on the next event),
    /// tells `origin`, and skips the rest, so nothing unwritten is acknowledged.
    fn apply(&self, slot: &mut Option<Live>, origin: Option<&ConnId>, effects: Vec<DocEffect>) {
        let (writes, frames, reads) = phases(effects);
        if !writes.is_empty() {
            let Some(live) = slot.as_ref() else { return };
            let sql = live.sql.clone();
            let written =
                sql::transaction(&self.state, move || writes.iter().try_for_each(|w| write(&sql, w)));
            if let Err(e) = written {
                socket::report_failure(&live.sockets, origin, &e);
                *slot = None;
                return;
            }
        }
        let Some(live) = slot.as_mut() else { return };
        let mut done = socket::Delivered::default();
        for effect in frames {
            // Documents have no event streams: every frame effect is a shared one.
            let _ = socket::deliver(&live.sockets, effect, &mut done);
        }
        for DocCall::ReadOps { to, reply_to, from, until, max_bytes } in reads {
            match read_ops(&live.sql, from, Some(until), Some(max_bytes)) {
                Ok(rows) => {
                    let page = ops_page(&reply_to, from, until, max_bytes, &rows);
                    let effect = DocEffect::Send { to, frame: page };
                    let _ = socket::deliver(&live.sockets, effect, &mut done);
                }
                Err(e) => socket::report_failure(&live.sockets, origin, &e),
            }
        }
        socket::close_refused(&live.sockets, &done.refused);
        let mut closed = done.closed;
        closed.extend(done.refused);
        closed.dedup();
        for conn in closed {
            self.forget_conn(slot, &conn);
        }
        if let Some(live) = slot.as_mut() {
            live.alarm = sql::sync_alarm(&self.state, live.alarm, live.doc.poll_timeout());
        }
    }

    fn forget(&self, ws: &WebSocket) {
        let Some(conn) = socket::conn_of::<DocConnInfo>(ws) else { return };
        let mut slot = self.live.borrow_mut();
        if slot.is_some() {
            self.forget_conn(&mut slot, &conn);
        }
    }

    fn forget_conn(&self, slot: &mut Option<Live>, conn: &ConnId) {
        let Some(live) = slot.as_mut() else { return };
        live.sockets.remove(conn);
        let effects = live.doc.handle_close(conn, now());
        self.apply(slot, None, effects);
    }
}

/// Applies one storage write.
fn write(sql: &SqlStorage, write: &DocWrite) -> Result<(), Error> {
    match write {
        DocWrite::AppendOp(op) => append_op(sql, op),
        DocWrite::SaveSource { user, src, applied, forget } => {
            save_source(sql, &Some(user.clone()), src, *applied, forget.clone())
        }
        DocWrite::SaveEpoch(epoch) => write_meta(sql, "epoch", epoch),
        DocWrite::Repair { repair, epoch, text } => save_repair(sql, repair, epoch, text),
        DocWrite::SaveSnapshot { v, text, compact_before } => {
            write_meta(sql, "snapshot_text", text)?;
            write_meta(sql, "snapshot_v", &v.to_string())?;
            run(sql, "DELETE FROM ops WHERE v < ?", vec![safe_integer(*compact_before)?])
        }
    }
}

fn append_op(sql: &SqlStorage, op: &LoggedOp) -> Result<(), Error> {
    run(
        sql,
        "INSERT INTO ops (v, op, src, seq, bytes) VALUES (?, ?, ?, ?, length(CAST(?2 AS BLOB)))",
        vec![
            safe_integer(op.v)?,
            op.op.to_json().to_string().into(),
            op.src.clone().into(),
            safe_integer(op.seq)?,
        ],
    )
}

fn save_source(
    sql: &SqlStorage,
    user: &Owner,
    src: &str,
    applied: Applied,
    forget: Option<(Owner, String)>,
) -> Result<(), Error> {
    let owner = |o: &Owner| o.as_ref().map_or_else(String::new, |u| u.as_str().to_owned());
    run(
        sql,
        "INSERT INTO sources (user, src, seq, v) VALUES (?, ?, ?, ?)
         ON CONFLICT(user, src) DO UPDATE SET seq = excluded.seq, v = excluded.v",
        vec![owner(user).into(), src.to_owned().into(), safe_integer(applied.seq)?, safe_integer(applied.v)?],
    )?;
    match forget {
        Some((who, gone)) => {
            run(sql, "DELETE FROM sources WHERE user = ? AND src = ?", vec![owner(&who).into(), gone.into()])
        }
        None => Ok(()),
    }
}

/// Stores what a repair decided and logs it: the text at the last good version becomes the
/// snapshot at a version no client has seen, the log goes, and so do the dropped ops' sources.
fn save_repair(sql: &SqlStorage, repair: &Repair, epoch: &str, text: &str) -> Result<(), Error> {
    worker::console_error!(
        "document repaired: ops from version {} dropped, continuing at {}: {}",
        repair.dropped_from,
        repair.continued_at,
        repair.reason
    );
    let report = serde_json::json!({
        "droppedFrom": repair.dropped_from,
        "continuedAt": repair.continued_at,
        "reason": repair.reason,
        "epoch": epoch,
    });
    write_meta(sql, "snapshot_text", text)?;
    write_meta(sql, "snapshot_v", &repair.continued_at.to_string())?;
    write_meta(sql, "epoch", epoch)?;
    write_meta(sql, "repair", &report.to_string())?;
    run(sql, "DELETE FROM ops", Vec::new())?;
    run(sql, "DELETE FROM sources WHERE v >= ?", vec![safe_integer(repair.dropped_from)?])
}

/// Logged ops from version `from` on, below `until`, and at most about `max_bytes` of op text
/// (the first row always comes, however large), unparsed: the core decides what they are.
fn read_ops(
    sql: &SqlStorage,
    from: u64,
    until: Option<u64>,
    max_bytes: Option<usize>,
) -> Result<Vec<StoredOp>, Error> {
    let until = until.map_or(sql::bound(u64::MAX), sql::bound);
    let max_bytes = sql::bound(max_bytes.map_or(u64::MAX, |b| b as u64));
    rows(
        sql,
        "SELECT v, op, src, seq FROM (
           SELECT v, op, src, seq, SUM(bytes) OVER (ORDER BY v) - bytes AS before
           FROM ops WHERE v >= ? AND v < ?
         ) WHERE before < ? ORDER BY v",
        vec![sql::bound(from), until, max_bytes],
    )
}

/// The newest logged ops below the snapshot at `snapshot_v`: at most `retain` of them and about
/// `max_bytes`, in version order. A rebuild keeps them as history for late submits and resumes.
fn read_history(
    sql: &SqlStorage,
    snapshot_v: u64,
    retain: u64,
    max_bytes: usize,
) -> Result<Vec<StoredOp>, Error> {
    rows(
        sql,
        "SELECT v, op, src, seq FROM (
           SELECT v, op, src, seq, SUM(bytes) OVER (ORDER BY v DESC) AS newer
           FROM ops WHERE v >= ? AND v < ?
         ) WHERE newer <= ? ORDER BY v",
        vec![
            sql::bound(snapshot_v.saturating_sub(retain)),
            sql::bound(snapshot_v),
            sql::bound(max_bytes as u64),
        ],
    )
}

fn read_sources(sql: &SqlStorage) -> Result<BTreeMap<(Owner, String), Applied>, Error> {
    #[derive(Deserialize)]
    struct Row {
        user: String,
        src: String,
        seq: i64,
        v: i64,
    }
    let found: Vec<Row> = rows(sql, "SELECT user, src, seq, v FROM sources", Vec::new())?;
    // A row that does not read is skipped (and so forgotten), never a reason to refuse a load.
    Ok(found
        .into_iter()
        .filter_map(|r| {
            let owner = match r.user.as_str() {
                "" => None,
                user => Some(UserId::parse(user).ok()?),
            };
            let applied = Applied { seq: u64::try_from(r.seq).ok()?, v: u64::try_from(r.v).ok()? };
            Some(((owner, r.src), applied))
        })
        .collect())
}
