//! The document state machine: the single writer that orders every edit to one document (the
//! Jupiter / Google Wave model, so only TP1 is needed), plus its editors' cursors.
//!
//! A submitted op names the version it was based on; the document transforms it over every op
//! applied since (each with side `left`, as ShareDB does), applies it, logs it at the version it
//! was applied at, acknowledges the sender and sends it to everyone else in version order. A
//! resubmitted `(src, seq)` is acknowledged again and never applied twice. The shell persists
//! the op log and periodic snapshots ([`DocEffect`]) and rebuilds the document with
//! [`Doc::restore`] after a wake.

use crate::core::auth;
use crate::core::caps::DocRights;
use crate::core::config::Config;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, DocId, UserId};
use crate::core::ot::{self, transform, transform_position, Op, Side};
use crate::core::protocol::{self, Envelope, Incoming, Ref};
use crate::core::throttle::{Bucket, Rate};
use crate::core::time::Timestamp;
use crate::core::timers::Timers;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};

/// A snapshot is written every this many ops; the log older than `DOC_LOG_RETAIN` ops is
/// deleted then.
pub const SNAPSHOT_EVERY: u64 = 100;

/// Sources (`src`) whose last `seq` is remembered for duplicate detection; past it the least
/// recently active is forgotten.
pub const MAX_SOURCES: usize = 10_000;

/// Longest `src`, in bytes.
pub const MAX_SRC_LEN: usize = 128;

/// What the shell keeps per socket in its hibernation attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocConnInfo {
    /// The connection id.
    #[serde(rename = "c")]
    pub conn: ConnId,
    /// The authenticated user.
    #[serde(rename = "u")]
    pub user: UserId,
    /// When the socket's token expires.
    #[serde(rename = "x")]
    pub expires: Timestamp,
    /// Whether the token allows editing.
    #[serde(rename = "w")]
    pub can_write: bool,
}

/// An applied op as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// The version it was applied at (the document was at `v`, then at `v + 1`).
    pub v: u64,
    /// The op as applied (transformed, normalized).
    pub op: Op,
    /// The submitting client's id.
    pub src: String,
    /// The client's counter.
    pub seq: u64,
}

impl LoggedOp {
    fn frame(&self) -> String {
        protocol::event(
            "operation",
            &json!({ "v": self.v, "op": self.op.to_json(), "src": self.src, "seq": self.seq }),
        )
    }
}

/// One instruction for the document's shell, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum DocEffect {
    /// Persist an applied op.
    AppendOp(LoggedOp),
    /// Remember the last `seq` applied from `src` (and at which version); `forget` is a source
    /// to drop from storage to stay under [`MAX_SOURCES`].
    SaveSource {
        /// The client id.
        src: String,
        /// Its last applied counter.
        seq: u64,
        /// The version that op was applied at.
        v: u64,
        /// A source forgotten to make room.
        forget: Option<String>,
    },
    /// Persist the text at version `v`, and delete logged ops below `compact_before`.
    SaveSnapshot {
        /// The version of `text`.
        v: u64,
        /// The whole text.
        text: String,
        /// Ops below this version are no longer needed.
        compact_before: u64,
    },
    /// Store this connection's new data in its socket attachment (after `auth:refresh`).
    UpdateConn(DocConnInfo),
    /// Send `frame` to one connection.
    Send {
        /// Recipient.
        to: ConnId,
        /// A complete JSON text frame.
        frame: String,
    },
    /// Send `frame` to every connection except `except`.
    Broadcast {
        /// Left out (usually the sender).
        except: Option<ConnId>,
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
}

/// A cursor: a caret, or a selection from `anchor` to `head` (code points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// A caret.
    Caret(usize),
    /// A selection; `head` may be before `anchor`.
    Selection {
        /// Where it started.
        anchor: usize,
        /// Where it ends (the caret).
        head: usize,
    },
}

impl Cursor {
    fn moved(self, op: &Op) -> Cursor {
        match self {
            Cursor::Caret(p) => Cursor::Caret(transform_position(p, op)),
            Cursor::Selection { anchor, head } => Cursor::Selection {
                anchor: transform_position(anchor, op),
                head: transform_position(head, op),
            },
        }
    }

    fn clamped(self, len: usize) -> Cursor {
        match self {
            Cursor::Caret(p) => Cursor::Caret(p.min(len)),
            Cursor::Selection { anchor, head } => {
                Cursor::Selection { anchor: anchor.min(len), head: head.min(len) }
            }
        }
    }

    fn json(self, user: &UserId, conn: &ConnId, v: u64) -> Value {
        match self {
            Cursor::Caret(pos) => json!({ "user": user, "conn": conn, "pos": pos, "v": v }),
            Cursor::Selection { anchor, head } => {
                json!({ "user": user, "conn": conn, "anchor": anchor, "head": head, "v": v })
            }
        }
    }
}

/// Rate-limited classes of document events.
#[derive(Debug, Clone, Copy)]
enum EventClass {
    Op,
    Cursor,
    Read,
}

impl EventClass {
    const COUNT: usize = 3;

    fn rate(self) -> Rate {
        match self {
            EventClass::Op => Rate { per_sec: 20, burst: 40 },
            EventClass::Cursor => Rate { per_sec: 20, burst: 40 },
            EventClass::Read => Rate { per_sec: 5, burst: 20 },
        }
    }

    fn noun(self) -> &'static str {
        match self {
            EventClass::Op => "ops",
            EventClass::Cursor => "cursor updates",
            EventClass::Read => "reads",
        }
    }
}

#[derive(Debug)]
struct Connection {
    info: DocConnInfo,
    strikes: protocol::Strikes,
    buckets: [Bucket; EventClass::COUNT],
    cursor: Option<Cursor>,
}

/// One document's live state.
#[derive(Debug)]
pub struct Doc {
    id: DocId,
    config: Config,
    version: u64,
    text: String,
    /// Length of `text` in code points (what cursors are clamped to).
    chars: usize,
    /// The retained ops, contiguous, ending at `version - 1`.
    log: VecDeque<LoggedOp>,
    /// Per source: its last applied `seq` and the version it was applied at.
    sources: BTreeMap<String, (u64, u64)>,
    snapshot_v: u64,
    conns: BTreeMap<ConnId, Connection>,
    timers: Timers<ConnId>,
}

/// What the shell read from storage.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    /// The latest snapshot's version (0 with none).
    pub snapshot_v: u64,
    /// The latest snapshot's text.
    pub snapshot_text: String,
    /// Logged ops in version order, at least every one from `snapshot_v` on.
    pub ops: Vec<LoggedOp>,
    /// Remembered sources: `src` → (last seq, version).
    pub sources: BTreeMap<String, (u64, u64)>,
}

/// A reconnect position: the version the client has (`?v=`).
pub type ResumeFrom = Option<u64>;

impl Doc {
    /// Rebuilds the document from storage: the snapshot plus every logged op after it.
    pub fn restore(id: DocId, stored: StoredDoc, config: Config) -> Result<Doc, Error> {
        let corrupt =
            |why: String| Error::new(ErrorCode::Internal, format!("stored document is corrupt: {why}"));
        let mut text = stored.snapshot_text;
        let mut version = stored.snapshot_v;
        let mut log = VecDeque::new();
        let first = stored.ops.first().map_or(version, |o| o.v.min(version));
        for (expected, logged) in (first..).zip(stored.ops) {
            if logged.v != expected {
                return Err(corrupt(format!("op log jumps from {expected} to {}", logged.v)));
            }
            if logged.v >= version {
                text = ot::apply(&text, &logged.op).map_err(|e| corrupt(e.0))?;
                version = logged.v + 1;
            }
            log.push_back(logged);
        }
        let retain = config.limits.doc_log_retain;
        while log.len() as u64 > retain {
            log.pop_front();
        }
        let chars = ot::chars(&text);
        Ok(Doc {
            id,
            config,
            version,
            text,
            chars,
            log,
            sources: stored.sources,
            snapshot_v: stored.snapshot_v,
            conns: BTreeMap::new(),
            timers: Timers::default(),
        })
    }

    /// The document id.
    pub fn id(&self) -> &DocId {
        &self.id
    }

    /// The current version (ops applied).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The oldest version a submit or resume may be based on.
    pub fn log_floor(&self) -> u64 {
        self.log.front().map_or(self.version, |o| o.v)
    }

    /// When the shell should next call [`Doc::handle_alarm`].
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// Refuses a new socket for `user` over `MAX_SOCKETS_PER_USER`.
    pub fn check_capacity(&self, user: &UserId) -> Result<(), Error> {
        let max = self.config.limits.max_sockets_per_user;
        if self.conns.values().filter(|c| c.info.user == *user).count() >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("at most {max} sockets per user in a document"),
            ));
        }
        Ok(())
    }

    /// Re-adds a socket that survived hibernation; announces nothing (cursors are ephemeral).
    pub fn restore_conn(&mut self, info: DocConnInfo, now: Timestamp) {
        self.timers.set(info.conn.clone(), info.expires);
        let buckets =
            [EventClass::Op, EventClass::Cursor, EventClass::Read].map(|c| Bucket::full(c.rate(), now));
        self.conns.insert(
            info.conn.clone(),
            Connection { info, strikes: protocol::Strikes::default(), buckets, cursor: None },
        );
    }

    /// A socket was accepted: replay the ops since `resume` when the log still has them, then
    /// `doc:snapshot`.
    pub fn handle_connect(
        &mut self,
        info: DocConnInfo,
        resume: ResumeFrom,
        now: Timestamp,
    ) -> Vec<DocEffect> {
        let conn = info.conn.clone();
        let (user, can_write) = (info.user.clone(), info.can_write);
        self.restore_conn(info, now);
        let mut effects = Vec::new();
        let resumed = resume.map(|from| {
            let ok = from >= self.log_floor() && from <= self.version;
            if ok {
                effects.extend(
                    self.log
                        .iter()
                        .filter(|o| o.v >= from)
                        .map(|o| DocEffect::Send { to: conn.clone(), frame: o.frame() }),
                );
            }
            ok
        });
        let cursors: Vec<Value> = self
            .conns
            .iter()
            .filter_map(|(c, state)| state.cursor.map(|cur| cur.json(&state.info.user, c, self.version)))
            .collect();
        let mut snapshot = json!({
            "doc": self.id, "v": self.version, "text": self.text, "connId": conn, "user": user,
            "canWrite": can_write, "cursors": cursors,
        });
        if let (Some(resumed), Some(object)) = (resumed, snapshot.as_object_mut()) {
            object.insert("resumed".into(), Value::Bool(resumed));
        }
        effects.push(DocEffect::Send { to: conn, frame: protocol::event("doc:snapshot", &snapshot) });
        effects
    }

    /// A socket closed: its cursor disappears for the others.
    pub fn handle_close(&mut self, conn: &ConnId) -> Vec<DocEffect> {
        let Some(gone) = self.conns.remove(conn) else { return Vec::new() };
        self.timers.cancel(conn);
        match gone.cursor {
            Some(_) => vec![DocEffect::Broadcast {
                except: None,
                frame: protocol::event(
                    "cursor:update",
                    &json!({ "user": gone.info.user, "conn": conn, "pos": null }),
                ),
            }],
            None => Vec::new(),
        }
    }

    /// The alarm fired: close sockets whose token expired.
    pub fn handle_alarm(&mut self, now: Timestamp) -> Vec<DocEffect> {
        self.timers
            .pop_due(now)
            .into_iter()
            .map(|conn| DocEffect::Close { conn, code: close::TOKEN_EXPIRED, reason: "token expired" })
            .collect()
    }

    /// A frame arrived on `conn`.
    pub fn handle_frame(&mut self, conn: &ConnId, frame: Incoming<'_>, now: Timestamp) -> Vec<DocEffect> {
        let Some(sender) = self.conns.get(conn).map(|c| c.info.clone()) else { return Vec::new() };
        let (reply_to, outcome) = match protocol::decode(frame, self.config.limits.max_frame_bytes) {
            Err(e) => (e.reply_to, Err(e.error)),
            Ok(envelope) => (envelope.reply_to.clone(), self.dispatch(&sender, envelope, now)),
        };
        match outcome {
            Ok(effects) => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.strikes.clear();
                }
                effects
            }
            Err(error) => {
                let mut effects = vec![DocEffect::Send {
                    to: conn.clone(),
                    frame: protocol::failure(reply_to.as_ref(), &error),
                }];
                let max = self.config.limits.max_strikes;
                if self.conns.get_mut(conn).is_some_and(|c| c.strikes.add(max)) {
                    effects.push(DocEffect::Close {
                        conn: conn.clone(),
                        code: close::PROTOCOL_ABUSE,
                        reason: protocol::ABUSE_REASON,
                    });
                }
                effects
            }
        }
    }

    fn dispatch(
        &mut self,
        sender: &DocConnInfo,
        envelope: Envelope,
        now: Timestamp,
    ) -> Result<Vec<DocEffect>, Error> {
        let Envelope { event, reply_to, data } = envelope;
        let class = match event.as_str() {
            "op:submit" => EventClass::Op,
            "cursor:update" => EventClass::Cursor,
            "auth:refresh" => EventClass::Read,
            _ => return Err(Error::new(ErrorCode::UnknownEvent, format!("unknown event {event:?}"))),
        };
        if matches!(class, EventClass::Op) && !sender.can_write {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "this token may read this document but not edit it",
            ));
        }
        if let Some(bucket) = self.conns.get_mut(&sender.conn).and_then(|c| c.buckets.get_mut(class as usize))
        {
            bucket.take(class.rate(), now).map_err(|ms| Error::rate_limited(class.noun(), ms))?;
        }
        match event.as_str() {
            "op:submit" => self.submit(sender, reply_to, protocol::payload(&event, data)?),
            "cursor:update" => self.cursor(sender, reply_to, protocol::payload(&event, data)?),
            _ => self.refresh_token(sender, reply_to, protocol::payload(&event, data)?, now),
        }
    }

    fn submit(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: SubmitPayload,
    ) -> Result<Vec<DocEffect>, Error> {
        if p.src.is_empty() || p.src.len() > MAX_SRC_LEN {
            return Err(Error::new(ErrorCode::BadRequest, format!("src must be 1 to {MAX_SRC_LEN} bytes")));
        }
        let ack = |v: u64| reply(sender, reply_to.clone(), json!({ "v": v, "src": p.src, "seq": p.seq }));
        // A resubmission is answered before any version check: it was applied already.
        if let Some(&(last_seq, last_v)) = self.sources.get(&p.src) {
            if p.seq == last_seq {
                return Ok(ack(last_v).into_iter().collect());
            }
            if p.seq < last_seq {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("seq {} of {} is older than its last applied op (seq {last_seq})", p.seq, p.src),
                ));
            }
        }
        let mut op =
            Op::from_json(&p.op).map_err(|e| Error::new(ErrorCode::BadRequest, format!("bad op: {e}")))?;
        if p.v > self.version {
            return Err(Error::new(
                ErrorCode::BadVersion,
                format!("v {} is ahead of the document, which is at {}", p.v, self.version),
            ));
        }
        if p.v < self.log_floor() {
            return Err(Error::new(
                ErrorCode::SnapshotRequired,
                format!(
                    "v {} is older than the op log, which starts at {}: reload the document",
                    p.v,
                    self.log_floor()
                ),
            ));
        }
        for applied in self.log.iter().filter(|o| o.v >= p.v) {
            op = transform(&op, &applied.op, Side::Left);
        }
        let text = ot::apply(&self.text, &op).map_err(|e| {
            Error::new(ErrorCode::BadRequest, format!("the op does not fit the document: {e}"))
        })?;
        let max = self.config.limits.doc_max_bytes;
        if text.len() > max {
            return Err(Error::new(ErrorCode::TooLarge, format!("the document would be over {max} bytes")));
        }
        let logged = LoggedOp { v: self.version, op, src: p.src, seq: p.seq };
        self.chars = self.chars + logged.op.target_len() - logged.op.base_len();
        self.text = text;
        self.version += 1;
        for c in self.conns.values_mut() {
            c.cursor = c.cursor.map(|cur| cur.moved(&logged.op));
        }
        let mut effects = vec![DocEffect::AppendOp(logged.clone())];
        effects.push(self.remember(&logged));
        if self.version - self.snapshot_v >= SNAPSHOT_EVERY {
            self.snapshot_v = self.version;
            effects.push(DocEffect::SaveSnapshot {
                v: self.version,
                text: self.text.clone(),
                compact_before: self.version.saturating_sub(self.config.limits.doc_log_retain),
            });
        }
        effects.extend(reply(
            sender,
            reply_to,
            json!({ "v": logged.v, "src": logged.src, "seq": logged.seq }),
        ));
        effects.push(DocEffect::Broadcast { except: Some(sender.conn.clone()), frame: logged.frame() });
        self.log.push_back(logged);
        while self.log.len() as u64 > self.config.limits.doc_log_retain {
            self.log.pop_front();
        }
        Ok(effects)
    }

    fn remember(&mut self, logged: &LoggedOp) -> DocEffect {
        self.sources.insert(logged.src.clone(), (logged.seq, logged.v));
        let forget = if self.sources.len() > MAX_SOURCES {
            let oldest = self.sources.iter().min_by_key(|(_, (_, v))| *v).map(|(src, _)| src.clone());
            oldest.inspect(|src| {
                self.sources.remove(src);
            })
        } else {
            None
        };
        DocEffect::SaveSource { src: logged.src.clone(), seq: logged.seq, v: logged.v, forget }
    }

    fn cursor(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: CursorPayload,
    ) -> Result<Vec<DocEffect>, Error> {
        let cursor = match (p.pos, p.anchor, p.head) {
            (Some(pos), None, None) => Cursor::Caret(pos),
            (None, Some(anchor), Some(head)) => Cursor::Selection { anchor, head },
            _ => {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    "cursor:update takes {\"pos\", \"v\"} or {\"anchor\", \"head\", \"v\"}",
                ))
            }
        };
        if p.v > self.version {
            return Err(Error::new(ErrorCode::BadVersion, format!("v {} is ahead of the document", p.v)));
        }
        if p.v < self.log_floor() {
            return Err(Error::new(
                ErrorCode::SnapshotRequired,
                "v is older than the op log: reload the document",
            ));
        }
        let cursor =
            self.log.iter().filter(|o| o.v >= p.v).fold(cursor, |c, o| c.moved(&o.op)).clamped(self.chars);
        if let Some(c) = self.conns.get_mut(&sender.conn) {
            c.cursor = Some(cursor);
        }
        let data = cursor.json(&sender.user, &sender.conn, self.version);
        let mut effects = vec![DocEffect::Broadcast {
            except: Some(sender.conn.clone()),
            frame: protocol::event("cursor:update", &data),
        }];
        effects.extend(reply(sender, reply_to, data));
        Ok(effects)
    }

    fn refresh_token(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: RefreshPayload,
        now: Timestamp,
    ) -> Result<Vec<DocEffect>, Error> {
        let identity = auth::verify(&p.token, &self.config.auth, now)?;
        if identity.user != sender.user {
            return Err(Error::new(ErrorCode::Forbidden, "the new token is for another user"));
        }
        let rights = DocRights::of(identity.caps_or(&self.config.default_caps), self.id.as_str());
        if !rights.read {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "the new token does not allow reading this document",
            ));
        }
        let info = DocConnInfo { expires: identity.expires, can_write: rights.write, ..sender.clone() };
        if let Some(c) = self.conns.get_mut(&sender.conn) {
            c.info = info.clone();
        }
        self.timers.set(sender.conn.clone(), info.expires);
        let mut effects = vec![DocEffect::UpdateConn(info.clone())];
        effects.extend(reply(
            sender,
            reply_to,
            json!({ "expires": info.expires, "canWrite": info.can_write }),
        ));
        Ok(effects)
    }
}

fn reply(sender: &DocConnInfo, reply_to: Option<Ref>, data: Value) -> Option<DocEffect> {
    reply_to.map(|r| DocEffect::Send { to: sender.conn.clone(), frame: protocol::reply_ok(&r, &data) })
}

#[derive(Deserialize)]
struct SubmitPayload {
    v: u64,
    op: Value,
    src: String,
    seq: u64,
}

#[derive(Deserialize)]
struct CursorPayload {
    #[serde(default)]
    pos: Option<usize>,
    #[serde(default)]
    anchor: Option<usize>,
    #[serde(default)]
    head: Option<usize>,
    v: u64,
}

#[derive(Deserialize)]
struct RefreshPayload {
    token: String,
}
