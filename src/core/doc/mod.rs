//! The document state machine: the single writer that orders every edit to one document (the
//! Jupiter / Google Wave model, so only TP1 is needed), plus its editors' cursors.
//!
//! A submitted op names the version it was based on; the document transforms it over every op
//! applied since (each with side `left`, as ShareDB does), applies it, logs it at the version it
//! was applied at, acknowledges the sender and sends it to everyone else in version order. A
//! resubmitted `(src, seq)` of the same user is acknowledged again and never applied twice
//! ([`sources`]). The shell persists the op log and periodic snapshots ([`DocEffect`]) and
//! rebuilds the document with [`Doc::restore`] after a wake.
//!
//! Memory is bounded by bytes, not only by counts: the live log keeps at most
//! `RECOVERY_MAX_BYTES` of ops (and `DOC_LOG_RETAIN` of them), a snapshot is written every
//! [`SNAPSHOT_EVERY`] ops or `RECOVERY_MAX_BYTES` of ops, and a rebuild reads only the snapshot
//! and the ops after it. Older ops stay in storage for `ops:get` pages.
//!
//! Storage is never trusted to be well formed: a row that does not parse, apply or follow its
//! predecessor ends the rebuild there, and the document goes on from the last good version in
//! a new epoch ([`Repair`]) instead of refusing every connect.
//!
//! `request.rs` lists what a socket may send (`op:submit`, `cursor:update`, `ops:get`,
//! `auth:refresh`), decoded once into a typed [`Request`].

mod cursor;
pub mod request;
pub mod sources;

pub use cursor::Cursor;
pub use request::Request;
pub use sources::{Applied, Owner, Sources};

use crate::core::caps::DocRights;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, DocId, UserId};
use crate::core::object::{reply, Effect, Object};
use crate::core::ot::{self, transform, Op, Side, MAX_LEN};
use crate::core::protocol::{self, Envelope, Ref, Refresh, Requests};
use crate::core::sessions::{SessionLimits, Sessions};
use crate::core::throttle::{Budgets, EventClasses, Rate};
use crate::core::time::Timestamp;
use request::{CursorUpdate, OpSubmit, OpsGet};
use serde::Deserialize;
use serde_json::{json, Value};
use sources::Seen;
use std::collections::{BTreeMap, VecDeque};

/// A snapshot is written every this many ops (or sooner, when the ops since the last one reach
/// `RECOVERY_MAX_BYTES`); the log older than `DOC_LOG_RETAIN` ops is deleted then.
pub const SNAPSHOT_EVERY: u64 = 100;

/// Most components in one op: each costs a step of every transform and cursor move.
pub const MAX_OP_COMPONENTS: usize = 1_000;

/// Longest `src`, in bytes.
pub const MAX_SRC_LEN: usize = 128;

/// What the shell keeps per socket in its hibernation attachment (`can_write`: may edit).
pub type DocConnInfo = crate::core::sessions::ConnInfo;

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
    fn data(&self) -> Value {
        json!({ "v": self.v, "op": self.op.to_json(), "src": self.src, "seq": self.seq })
    }

    fn frame(&self) -> String {
        protocol::event("operation", &self.data())
    }

    /// The row storage keeps for it.
    pub fn stored(&self) -> StoredOp {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        StoredOp {
            v: int(self.v),
            op: self.op.to_json().to_string(),
            src: self.src.clone(),
            seq: int(self.seq),
        }
    }
}

/// An op row as storage holds it, not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredOp {
    /// Its version.
    pub v: i64,
    /// The op as JSON text.
    pub op: String,
    /// The client id.
    pub src: String,
    /// The client's counter.
    pub seq: i64,
}

impl StoredOp {
    /// The logged op it holds, checked: a version and counter in range and an op that parses
    /// within the limits.
    fn parse(&self) -> Result<LoggedOp, String> {
        let number = |n: i64, what: &str| {
            u64::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_LEN)
                .ok_or_else(|| format!("{what} {n} is out of range"))
        };
        let value: Value =
            serde_json::from_str(&self.op).map_err(|e| format!("op {} is not JSON: {e}", self.v))?;
        // No component cap here: a transformed op may have more than a submitted one, and what
        // was stored is loaded as long as it parses, applies and follows its predecessor.
        let op = Op::from_json(&value).map_err(|e| format!("op {}: {e}", self.v))?;
        Ok(LoggedOp {
            v: number(self.v, "version")?,
            op,
            src: self.src.clone(),
            seq: number(self.seq, "seq")?,
        })
    }
}

/// The stored ops just before the snapshot at `snapshot_v` that still parse and run contiguously
/// up to it: not needed to rebuild the text, but kept in the live log so late submits and
/// resumes reach back as far as before the wake.
fn history(rows: &[StoredOp], snapshot_v: u64) -> Vec<LoggedOp> {
    let mut kept: Vec<LoggedOp> = Vec::new();
    for row in rows.iter().filter(|r| r.v >= 0 && (r.v as u64) < snapshot_v).rev() {
        let expected = kept.last().map_or(snapshot_v, |o| o.v).checked_sub(1);
        match row.parse() {
            Ok(logged) if Some(logged.v) == expected => kept.push(logged),
            _ => break,
        }
    }
    kept.reverse();
    kept
}

/// Reads a submitted op within the limits.
fn parse_op(value: &Value) -> Result<Op, Error> {
    if value.as_array().is_some_and(|c| c.len() > MAX_OP_COMPONENTS) {
        return Err(Error::new(
            ErrorCode::TooLarge,
            format!("an op has at most {MAX_OP_COMPONENTS} components"),
        ));
    }
    Op::from_json(value).map_err(|e| Error::new(ErrorCode::BadRequest, format!("bad op: {e}")))
}

/// A rebuild that stopped at a bad stored op: the document goes on from the last good version,
/// at a version no client has seen, in a new epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The first version that could not be loaded (its op and every later one are dropped).
    pub dropped_from: u64,
    /// The version the document continues at (past every stored version, so none is reused).
    pub continued_at: u64,
    /// Why.
    pub reason: String,
}

/// One instruction for the document's shell.
pub type DocEffect = Effect<DocWrite, DocCall, DocConnInfo>;

/// A write to the document's storage.
#[derive(Debug, Clone, PartialEq)]
pub enum DocWrite {
    /// Persist an applied op.
    AppendOp(LoggedOp),
    /// Remember the last `seq` applied from `(user, src)` (and at which version); `forget` is an
    /// entry to drop from storage to stay in bounds.
    SaveSource {
        /// Whose source.
        user: UserId,
        /// The client id.
        src: String,
        /// Its last applied counter and version.
        applied: Applied,
        /// An entry forgotten to make room.
        forget: Option<(Owner, String)>,
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
    /// Remember the document's epoch (first load of a document without one).
    SaveEpoch(String),
    /// A rebuild stopped at a bad op: store `text` as the snapshot at `repair.continued_at`,
    /// delete every logged op, forget the sources of dropped ops, store `epoch`, and report.
    Repair {
        /// What happened.
        repair: Repair,
        /// The new epoch.
        epoch: String,
        /// The text at the last good version.
        text: String,
    },
}

/// What the document asks of storage after a batch's writes and frames: a read whose answer
/// is a frame (documents call no other object).
#[derive(Debug, Clone, PartialEq)]
pub enum DocCall {
    /// Answer `ops:get` from storage: read the logged ops from version `from` up to (not
    /// including) `until`, at most about `max_bytes` of them, and send `to` the frame
    /// [`ops_page`] builds from them.
    ReadOps {
        /// Who asked.
        to: ConnId,
        /// Their request's ref.
        reply_to: Ref,
        /// First version wanted.
        from: u64,
        /// The document's version when asked.
        until: u64,
        /// Byte budget of the page (one op more is read when the first alone is over it).
        max_bytes: usize,
    },
}

/// Rate-limited classes of document events, each with its own bucket per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// `op:submit`
    Op,
    /// `cursor:update`
    Cursor,
    /// `ops:get`
    Read,
    /// `auth:refresh` alone: reads in one tab must not starve another tab's token refresh.
    Refresh,
}

impl EventClass {
    const ALL: [EventClass; 4] = [EventClass::Op, EventClass::Cursor, EventClass::Read, EventClass::Refresh];

    fn rate(self) -> Rate {
        match self {
            EventClass::Op => Rate { per_sec: 20, burst: 40 },
            EventClass::Cursor => Rate { per_sec: 20, burst: 40 },
            EventClass::Read => Rate { per_sec: 5, burst: 20 },
            EventClass::Refresh => Rate { per_sec: 1, burst: 5 },
        }
    }

    fn noun(self) -> &'static str {
        match self {
            EventClass::Op => "ops",
            EventClass::Cursor => "cursor updates",
            EventClass::Read => "reads",
            EventClass::Refresh => "token refreshes",
        }
    }
}

impl EventClasses for EventClass {
    const CLASSES: &'static [EventClass] = &EventClass::ALL;

    fn rate(self) -> Rate {
        EventClass::rate(self)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An op in the live log, with the size of its `operation` frame.
#[derive(Debug)]
struct Logged {
    op: LoggedOp,
    bytes: usize,
}

impl Logged {
    fn new(op: LoggedOp) -> Logged {
        let bytes = op.frame().len();
        Logged { op, bytes }
    }
}

/// One document's live state.
#[derive(Debug)]
pub struct Doc {
    id: DocId,
    config: Config,
    epoch: String,
    version: u64,
    text: String,
    /// Length of `text` in code points (what cursors are clamped to).
    chars: u64,
    /// The live ops, contiguous, ending at `version - 1`; bounded by count and bytes.
    log: VecDeque<Logged>,
    log_bytes: usize,
    sources: Sources,
    snapshot_v: u64,
    /// Bytes of the ops applied since the snapshot (a snapshot is due past the byte limit).
    bytes_since_snapshot: usize,
    repair: Option<Repair>,
    conns: Sessions<DocConnInfo>,
    /// Each editor's cursor, once it sent one.
    cursors: BTreeMap<ConnId, Cursor>,
    /// Rate budgets per user, shared by their sockets.
    budgets: Budgets<EventClass>,
    /// Sockets that survived the wake which repaired the document: their text is the one before
    /// the repair, so they are closed (to reload) instead of restored.
    stale_editors: Vec<ConnId>,
}

/// What the shell read from storage.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    /// The document's epoch, when it has one.
    pub epoch: Option<String>,
    /// The latest snapshot's version (0 with none).
    pub snapshot_v: u64,
    /// The latest snapshot's text.
    pub snapshot_text: String,
    /// Logged ops from `snapshot_v` on, in version order.
    pub ops: Vec<StoredOp>,
    /// Remembered sources.
    pub sources: BTreeMap<(Owner, String), Applied>,
}

/// A reconnect position: the version the client has (`?v=`) and, when it knows it, the epoch
/// that version belongs to (`&epoch=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeFrom {
    /// The client's version.
    pub v: u64,
    /// The epoch of that version.
    pub epoch: Option<String>,
}

impl Doc {
    /// Rebuilds the document from storage: the snapshot plus every logged op after it, up to
    /// the first that cannot be loaded. Also returns what the shell must write: a new epoch
    /// (`fresh_epoch`, when storage has none or the log had to be cut), and a repair.
    pub fn restore(
        id: DocId,
        stored: StoredDoc,
        config: Config,
        fresh_epoch: String,
    ) -> (Doc, Vec<DocEffect>) {
        let mut text = stored.snapshot_text;
        let mut version = stored.snapshot_v;
        let mut log = history(&stored.ops, version);
        let mut problem = None;
        let mut last_stored = version;
        for row in &stored.ops {
            // Versions past what clients carry are not real versions: never continue after them.
            if let Some(v) = u64::try_from(row.v).ok().filter(|v| *v < MAX_LEN) {
                last_stored = last_stored.max(v + 1);
            }
            if problem.is_some() || row.v < 0 || (row.v as u64) < version {
                continue;
            }
            let loaded = row.parse().and_then(|logged| {
                if logged.v != version {
                    return Err(format!("the op log jumps from {version} to {}", logged.v));
                }
                let next = ot::apply(&text, &logged.op).map_err(|e| format!("op {}: {e}", logged.v))?;
                Ok((logged, next))
            });
            match loaded {
                Ok((logged, next)) => {
                    text = next;
                    version += 1;
                    log.push(logged);
                }
                Err(why) => problem = Some(why),
            }
        }
        let mut effects = Vec::new();
        let mut sources = Sources::new(stored.sources);
        let mut snapshot_v = stored.snapshot_v;
        let epoch = match (problem, stored.epoch) {
            (Some(reason), _) => {
                // One past anything stored, so no client's version is current after the repair.
                let continued_at = last_stored.max(version).saturating_add(1);
                let repair = Repair { dropped_from: version, continued_at, reason };
                sources.forget_from(repair.dropped_from);
                version = repair.continued_at;
                snapshot_v = version;
                log.clear();
                effects.push(DocEffect::Write(DocWrite::Repair {
                    repair,
                    epoch: fresh_epoch.clone(),
                    text: text.clone(),
                }));
                fresh_epoch
            }
            (None, Some(epoch)) => epoch,
            (None, None) => {
                effects.push(DocEffect::Write(DocWrite::SaveEpoch(fresh_epoch.clone())));
                fresh_epoch
            }
        };
        let repair = effects.iter().find_map(|e| match e {
            DocEffect::Write(DocWrite::Repair { repair, .. }) => Some(repair.clone()),
            _ => None,
        });
        let mut doc = Doc {
            id,
            chars: ot::chars(&text),
            epoch,
            version,
            text,
            log: VecDeque::new(),
            log_bytes: 0,
            sources,
            snapshot_v,
            bytes_since_snapshot: 0,
            repair,
            conns: Sessions::new(SessionLimits::of(&config)),
            config,
            cursors: BTreeMap::new(),
            budgets: Budgets::default(),
            stale_editors: Vec::new(),
        };
        for logged in log {
            let entry = Logged::new(logged);
            doc.bytes_since_snapshot = doc.bytes_since_snapshot.saturating_add(entry.bytes);
            doc.push_log(entry);
        }
        (doc, effects)
    }

    /// The document id.
    pub fn id(&self) -> &DocId {
        &self.id
    }

    /// The current version (ops applied).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current epoch: it changes only when stored ops had to be dropped.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The current text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The repair this load made, if it had to cut the stored log.
    pub fn repair(&self) -> Option<&Repair> {
        self.repair.as_ref()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Remembered sources.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// The oldest version a submit or resume may be based on.
    pub fn log_floor(&self) -> u64 {
        self.log.front().map_or(self.version, |o| o.op.v)
    }

    /// Bytes of `operation` frames the live log holds.
    pub fn log_bytes(&self) -> usize {
        self.log_bytes
    }

    /// Refuses a new socket for `user` over `MAX_SOCKETS_PER_USER`.
    pub fn check_capacity(&self, user: &UserId) -> Result<(), Error> {
        let max = self.config.limits.max_sockets_per_user;
        if self.conns.iter().filter(|c| c.user == *user).count() >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("at most {max} sockets per user in a document"),
            ));
        }
        Ok(())
    }

    /// The `operation` frames a client at `from` missed, or `None` when they cannot be replayed:
    /// another epoch, outside the live log, or over `RECOVERY_MAX_BYTES`.
    fn replay(&self, from: &ResumeFrom) -> Option<Vec<String>> {
        if from.epoch.as_ref().is_some_and(|e| *e != self.epoch) {
            return None;
        }
        if from.v < self.log_floor() || from.v > self.version {
            return None;
        }
        let missed: Vec<&Logged> = self.log.iter().filter(|o| o.op.v >= from.v).collect();
        let bytes = missed.iter().fold(0usize, |sum, o| sum.saturating_add(o.bytes));
        if bytes > self.config.limits.recovery_max_bytes {
            return None;
        }
        Some(missed.iter().map(|o| o.op.frame()).collect())
    }

    fn submit(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: OpSubmit,
    ) -> Result<Vec<DocEffect>, Error> {
        if p.src.is_empty() || p.src.len() > MAX_SRC_LEN {
            return Err(Error::new(ErrorCode::BadRequest, format!("src must be 1 to {MAX_SRC_LEN} bytes")));
        }
        if p.seq > MAX_LEN {
            return Err(Error::new(ErrorCode::BadRequest, "seq must be a whole number up to 2^53 - 1"));
        }
        let ack =
            |v: u64| reply(&sender.conn, reply_to.as_ref(), &json!({ "v": v, "src": p.src, "seq": p.seq }));
        // A resubmission is answered before any version check: it was applied already.
        match self.sources.check(&sender.user, &p.src, p.seq, self.log_floor()) {
            Seen::Duplicate(v) => return Ok(ack(v).into_iter().collect()),
            Seen::Stale(last_seq) => {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("seq {} of {} is older than its last applied op (seq {last_seq})", p.seq, p.src),
                ))
            }
            Seen::New => {}
        }
        let mut op = parse_op(&p.op)?;
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
                    "v {} is older than the live op log, which starts at {}: fetch the missed ops with ops:get and rebase, or reload",
                    p.v,
                    self.log_floor()
                ),
            ));
        }
        // Each step is bounded by both ops' sizes; the result is checked after each one, so a
        // small op transformed over many cannot grow (or cost) without bound.
        for applied in self.log.iter().filter(|o| o.op.v >= p.v) {
            op = transform(&op, &applied.op.op, Side::Left);
            if op.components().len() > MAX_OP_COMPONENTS {
                return Err(Error::new(
                    ErrorCode::SnapshotRequired,
                    format!(
                        "the op grows past {MAX_OP_COMPONENTS} components when moved over the ops since v {}: rebase it on a newer version",
                        p.v
                    ),
                ));
            }
        }
        let text = ot::apply(&self.text, &op).map_err(|e| {
            Error::new(ErrorCode::BadRequest, format!("the op does not fit the document: {e}"))
        })?;
        let max = self.config.limits.doc_max_bytes;
        if text.len() > max {
            return Err(Error::new(ErrorCode::TooLarge, format!("the document would be over {max} bytes")));
        }
        let logged = LoggedOp { v: self.version, op, src: p.src, seq: p.seq };
        // `apply` succeeded, so the op read at most `chars` code points.
        self.chars = self.chars.saturating_sub(logged.op.base_len()).saturating_add(logged.op.target_len());
        self.text = text;
        self.version += 1;
        for cursor in self.cursors.values_mut() {
            *cursor = cursor.moved(&logged.op).clamped(self.chars);
        }
        let applied = Applied { seq: logged.seq, v: logged.v };
        let forget = self.sources.record(&sender.user, &logged.src, applied);
        let mut effects = vec![
            DocEffect::Write(DocWrite::AppendOp(logged.clone())),
            DocEffect::Write(DocWrite::SaveSource {
                user: sender.user.clone(),
                src: logged.src.clone(),
                applied,
                forget,
            }),
        ];
        let frame = logged.frame();
        let entry = Logged { op: logged.clone(), bytes: frame.len() };
        self.bytes_since_snapshot = self.bytes_since_snapshot.saturating_add(entry.bytes);
        if self.version - self.snapshot_v >= SNAPSHOT_EVERY
            || self.bytes_since_snapshot >= self.config.limits.recovery_max_bytes
        {
            self.snapshot_v = self.version;
            self.bytes_since_snapshot = 0;
            effects.push(DocEffect::Write(DocWrite::SaveSnapshot {
                v: self.version,
                text: self.text.clone(),
                compact_before: self.version.saturating_sub(self.config.limits.doc_log_retain),
            }));
        }
        let ack = json!({ "v": logged.v, "src": logged.src, "seq": logged.seq });
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &ack));
        effects.push(DocEffect::Broadcast { except: Some(sender.conn.clone()), frame });
        self.push_log(entry);
        Ok(effects)
    }

    /// Appends to the live log and trims it to `DOC_LOG_RETAIN` ops and `RECOVERY_MAX_BYTES`.
    fn push_log(&mut self, entry: Logged) {
        self.log_bytes = self.log_bytes.saturating_add(entry.bytes);
        self.log.push_back(entry);
        while self.log.len() as u64 > self.config.limits.doc_log_retain
            || (self.log_bytes > self.config.limits.recovery_max_bytes && self.log.len() > 1)
        {
            if let Some(gone) = self.log.pop_front() {
                self.log_bytes = self.log_bytes.saturating_sub(gone.bytes);
            }
        }
    }

    /// The length in code points the document had at version `v` (within the live log).
    fn chars_at(&self, v: u64) -> u64 {
        self.log.iter().rev().take_while(|o| o.op.v >= v).fold(self.chars, |len, o| {
            len.saturating_sub(o.op.op.target_len()).saturating_add(o.op.op.base_len())
        })
    }

    fn cursor(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: CursorUpdate,
    ) -> Result<Vec<DocEffect>, Error> {
        let Some(cursor) = p.cursor() else {
            return Err(Error::new(
                ErrorCode::BadRequest,
                "cursor:update takes {\"pos\", \"v\"} or {\"anchor\", \"head\", \"v\"}",
            ));
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
        // Clamped to the text it refers to first, so a far-out position walks no further than
        // a cursor at the end would.
        let cursor = cursor.clamped(self.chars_at(p.v));
        let cursor = self
            .log
            .iter()
            .filter(|o| o.op.v >= p.v)
            .fold(cursor, |c, o| c.moved(&o.op.op))
            .clamped(self.chars);
        if self.conns.get(&sender.conn).is_some() {
            self.cursors.insert(sender.conn.clone(), cursor);
        }
        let data = cursor.json(&sender.user, &sender.conn, self.version);
        let mut effects = vec![DocEffect::Broadcast {
            except: Some(sender.conn.clone()),
            frame: protocol::event("cursor:update", &data),
        }];
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &data));
        Ok(effects)
    }

    /// `ops:get {from}`: a page of logged ops from storage, so a client whose resume was refused
    /// can rebase its pending edits. Needs a `ref` (the page is the reply).
    fn ops_get(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: OpsGet,
    ) -> Result<Vec<DocEffect>, Error> {
        let Some(reply_to) = reply_to else {
            return Err(Error::new(ErrorCode::BadRequest, "ops:get needs a ref: the page is its reply"));
        };
        if p.from > self.version {
            return Err(Error::new(
                ErrorCode::BadVersion,
                format!("from {} is ahead of the document", p.from),
            ));
        }
        Ok(vec![DocEffect::Call(DocCall::ReadOps {
            to: sender.conn.clone(),
            reply_to,
            from: p.from,
            until: self.version,
            max_bytes: self.config.limits.recovery_max_bytes,
        })])
    }

    fn refresh_token(
        &mut self,
        sender: &DocConnInfo,
        reply_to: Option<Ref>,
        p: Refresh,
        now: Timestamp,
    ) -> Result<Vec<DocEffect>, Error> {
        let (config, doc) = (&self.config, self.id.as_str());
        self.conns.refresh_rights(
            sender,
            reply_to.as_ref(),
            &p.token,
            &config.auth,
            now,
            "canWrite",
            |identity| {
                let rights = DocRights::of(identity.caps_or(&config.default_caps), doc);
                if !rights.read {
                    return Err(Error::new(
                        ErrorCode::Forbidden,
                        "the new token does not allow reading this document",
                    ));
                }
                Ok(rights.write)
            },
        )
    }
}

impl Object for Doc {
    type Write = DocWrite;
    type Call = DocCall;
    type Info = DocConnInfo;
    /// Where a reconnecting socket asked to resume from.
    type Connect = Option<ResumeFrom>;
    /// Reads go out as [`DocCall::ReadOps`]: nothing is read during a frame.
    type Reader<'a> = ();

    /// A socket was accepted: replay the ops since `resume` when the live log still has them,
    /// in the same epoch and within `RECOVERY_MAX_BYTES`, then `doc:snapshot`.
    fn handle_connect(
        &mut self,
        info: DocConnInfo,
        resume: Option<ResumeFrom>,
        _now: Timestamp,
        _reader: &(),
    ) -> Vec<DocEffect> {
        let conn = info.conn.clone();
        let (user, can_write) = (info.user.clone(), info.can_write);
        self.conns.add(info);
        let mut effects = Vec::new();
        let resumed = resume.map(|from| {
            let missed = self.replay(&from);
            if let Some(frames) = &missed {
                effects.extend(
                    frames.iter().map(|frame| DocEffect::Send { to: conn.clone(), frame: frame.clone() }),
                );
            }
            missed.is_some()
        });
        let cursors: Vec<Value> = self
            .cursors
            .iter()
            .filter_map(|(c, cur)| Some(cur.json(&self.conns.get(c)?.user, c, self.version)))
            .collect();
        let mut snapshot = json!({
            "doc": self.id, "v": self.version, "epoch": self.epoch, "text": self.text, "connId": conn,
            "user": user, "canWrite": can_write, "cursors": cursors,
        });
        if let (Some(resumed), Some(object)) = (resumed, snapshot.as_object_mut()) {
            object.insert("resumed".into(), Value::Bool(resumed));
        }
        effects.push(DocEffect::Send { to: conn, frame: protocol::event("doc:snapshot", &snapshot) });
        effects
    }

    fn sessions(&mut self) -> &mut Sessions<Self::Info> {
        &mut self.conns
    }

    fn dispatch(
        &mut self,
        sender: &DocConnInfo,
        envelope: Envelope,
        now: Timestamp,
        _reader: &(),
    ) -> Result<Vec<DocEffect>, Error> {
        let Envelope { event, reply_to, data } = envelope;
        // The event's rights and budget are checked before its payload is read.
        let event = Request::event(&event)?;
        if event.writes() && !sender.can_write {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "this token may read this document but not edit it",
            ));
        }
        let class = event.class();
        self.budgets.take(&sender.user, class, now).map_err(|ms| Error::rate_limited(class.noun(), ms))?;
        match Request::decode(event, data)? {
            Request::Submit(p) => self.submit(sender, reply_to, p),
            Request::Cursor(p) => self.cursor(sender, reply_to, p),
            Request::OpsGet(p) => self.ops_get(sender, reply_to, p),
            Request::Refresh(p) => self.refresh_token(sender, reply_to, p, now),
        }
    }

    /// A socket closed: its cursor disappears for the others.
    fn handle_close(&mut self, conn: &ConnId, now: Timestamp) -> Vec<DocEffect> {
        let Some(gone) = self.conns.remove(conn) else { return Vec::new() };
        let conns = &self.conns;
        self.budgets.forget_refilled(now, |user| conns.iter().any(|c| c.user == *user));
        match self.cursors.remove(conn) {
            Some(_) => vec![DocEffect::Broadcast {
                except: None,
                frame: protocol::event(
                    "cursor:update",
                    &json!({ "user": gone.user, "conn": conn, "pos": null }),
                ),
            }],
            None => Vec::new(),
        }
    }

    /// The alarm fired: close sockets whose token expired (plus the leeway).
    fn handle_alarm(&mut self, now: Timestamp) -> Vec<DocEffect> {
        self.conns.expired(now)
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.conns.next_deadline()
    }

    /// Re-adds a socket that survived hibernation; announces nothing (cursors are ephemeral).
    fn restore_conn(&mut self, info: DocConnInfo, _now: Timestamp) {
        if self.repair.is_some() {
            self.stale_editors.push(info.conn);
        } else {
            self.conns.add(info);
        }
    }

    /// Closes the survivors of a repairing wake (they must reload, not edit on).
    fn restored(&mut self, _now: Timestamp) -> Vec<DocEffect> {
        std::mem::take(&mut self.stale_editors)
            .into_iter()
            .map(|conn| DocEffect::Close {
                conn,
                code: crate::core::error::close::INTERNAL,
                reason: "document repaired; reconnect",
            })
            .collect()
    }
}

/// The reply to `ops:get` from the rows storage returned for [`DocCall::ReadOps`]: the ops
/// from `from` in order, up to `until` and about `max_bytes`, and `next`, the version to ask
/// for next (`next == until`: nothing more). Refused with `snapshot_required` when storage no
/// longer holds `from`.
pub fn ops_page(reply_to: &Ref, from: u64, until: u64, max_bytes: usize, rows: &[StoredOp]) -> String {
    let mut ops = Vec::new();
    let mut bytes = 0usize;
    let mut next = from;
    for row in rows {
        let Ok(logged) = row.parse() else { break };
        if logged.v != next || next >= until || (bytes > 0 && bytes >= max_bytes) {
            break;
        }
        let data = logged.data();
        bytes = bytes.saturating_add(data.to_string().len());
        ops.push(data);
        next += 1;
    }
    if ops.is_empty() && from < until {
        let error = Error::new(
            ErrorCode::SnapshotRequired,
            format!("the ops from version {from} are no longer kept: reload the document"),
        );
        return protocol::reply_err(reply_to, &error);
    }
    protocol::reply_ok(reply_to, &json!({ "ops": ops, "next": next, "v": until }))
}
