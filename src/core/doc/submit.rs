//! `op:submit`, the document's one write: the ShareDB submit algorithm. A resubmitted
//! `(src, seq)` is acknowledged again and not applied ([`Sources`](super::Sources)); an op based
//! on an older version is transformed over every op applied since (each with side `left`),
//! checked against the limits after every step, applied, logged at the version it was applied
//! at, acknowledged to its sender and sent to everyone else. Every kept cursor moves with it, and
//! a snapshot is written every [`SNAPSHOT_EVERY`] ops or `RECOVERY_MAX_BYTES` of ops.

use super::effect::{DocConnInfo, DocEffect, DocWrite};
use super::log::{Logged, LoggedOp};
use super::request::OpSubmit;
use super::sources::{Applied, Seen};
use super::Doc;
use crate::core::error::{Error, ErrorCode};
use crate::core::object::reply;
use crate::core::ot::{self, transform, Op, Side, MAX_LEN};
use crate::core::protocol::Ref;
use serde_json::{json, Value};

/// A snapshot is written every this many ops (or sooner, when the ops since the last one reach
/// `RECOVERY_MAX_BYTES`); the log older than `DOC_LOG_RETAIN` ops is deleted then.
pub const SNAPSHOT_EVERY: u64 = 100;

/// Most components in one op: each costs a step of every transform and cursor move.
pub const MAX_OP_COMPONENTS: usize = 1_000;

/// Longest `src`, in bytes.
pub const MAX_SRC_LEN: usize = 128;

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

impl Doc {
    /// `op:submit` from `sender`: see the module docs.
    pub(super) fn submit(
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
}
