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
//! This file holds the document's state and its side of the object contract (connect, dispatch,
//! close, alarm). The rest, by concern:
//! - `request.rs`: what a socket may send (`op:submit`, `cursor:update`, `ops:get`,
//!   `auth:refresh`), decoded once into a typed [`Request`], and each event's rate class;
//! - `effect.rs`: what the document asks its shell to do (writes, reads, the attachment);
//! - `log.rs`: an applied op as the log, storage and the wire hold it;
//! - `submit.rs`: `op:submit`, transforming and applying an op;
//! - `cursor.rs`: editors' cursors and `cursor:update`;
//! - `resume.rs`: replay on reconnect, and `ops:get` pages from storage;
//! - `restore.rs`: the rebuild after a wake, and the repair of a bad stored log;
//! - `sources.rs`: the duplicate table of `(src, seq)`.

mod cursor;
mod effect;
mod log;
pub mod request;
mod restore;
mod resume;
pub mod sources;
mod submit;

pub use cursor::Cursor;
pub use effect::{DocCall, DocConnInfo, DocEffect, DocWrite, Repair};
pub use log::{LoggedOp, StoredOp};
pub use request::{EventClass, Request};
pub use restore::StoredDoc;
pub use resume::{ops_page, ResumeFrom};
pub use sources::{Applied, Owner, Sources};
pub use submit::{MAX_OP_COMPONENTS, MAX_SRC_LEN, SNAPSHOT_EVERY};

use crate::core::admission::Admission;
use crate::core::caps::DocRights;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, DocId, UserId};
use crate::core::object::{counters, Object};
use crate::core::protocol::{self, Envelope, Requests};
use crate::core::sessions::{Access, Sessions};
use crate::core::throttle::Budgets;
use crate::core::time::Timestamp;
use log::Logged;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// How `auth:refresh` judges a document socket's new token: it must still allow reading;
/// `write` is its write right.
const ACCESS: Access = Access {
    rights: |caps, doc| {
        let rights = DocRights::of(caps, doc);
        (rights.read, rights.write)
    },
    write_field: "canWrite",
    refused: "the new token does not allow reading this document",
};

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

impl Doc {
    // `restore` (the one constructor) is in `restore.rs`.

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

    /// `GET /v1/docs/:doc`: `{doc, v, epoch, text}`.
    pub fn snapshot(&self) -> Value {
        json!({ "doc": self.id, "v": self.version, "epoch": self.epoch, "text": self.text })
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
}

impl Object for Doc {
    type Write = DocWrite;
    type Call = DocCall;
    type Info = DocConnInfo;
    /// Where a reconnecting socket asked to resume from.
    type Connect = Option<ResumeFrom>;
    /// Reads go out as [`DocCall::ReadOps`]: nothing is read during a frame.
    type Reader<'a> = ();

    fn admit(&self, conn: ConnId, admission: &Admission) -> Result<(DocConnInfo, Option<ResumeFrom>), Error> {
        let user = admission.user()?.clone();
        self.check_capacity(&user)?;
        let resume = admission.since.map(|v| ResumeFrom { v, epoch: admission.epoch.clone() });
        let info = DocConnInfo { conn, user, expires: admission.expires()?, can_write: admission.can_write };
        Ok((info, resume))
    }

    fn owed(call: &DocCall) -> Option<&ConnId> {
        let DocCall::ReadOps { to, .. } = call;
        Some(to)
    }

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
            Request::Refresh(p) => {
                let id = self.id.as_str();
                self.conns.refresh_rights(sender, reply_to.as_ref(), &p.token, &self.config, id, &ACCESS, now)
            }
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

    fn stats(&self) -> Map<String, Value> {
        counters(json!({
            "doc": self.id,
            "v": self.version,
            "epoch": self.epoch,
            "logFloor": self.log_floor(),
            "logBytes": self.log_bytes,
            "sources": self.sources.len(),
            "chars": crate::core::ot::chars(&self.text),
            "connections": self.conns.len(),
        }))
    }
}
