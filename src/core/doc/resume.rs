//! Catching up: a reconnecting client names the version (and epoch) it has ([`ResumeFrom`]);
//! the ops it missed are replayed from the live log when it still holds them, in the same epoch
//! and within `RECOVERY_MAX_BYTES`, before `doc:snapshot`. When they cannot be, `ops:get` reads
//! pages of them from storage ([`DocCall::ReadOps`](super::DocCall::ReadOps), answered with
//! [`ops_page`]), so the client can rebase its pending edits.

use super::effect::{DocCall, DocConnInfo, DocEffect};
use super::log::{Logged, StoredOp};
use super::request::OpsGet;
use super::Doc;
use crate::core::error::{Error, ErrorCode};
use crate::core::protocol::{self, Ref};
use serde_json::json;

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
    /// The `operation` frames a client at `from` missed, or `None` when they cannot be replayed:
    /// another epoch, outside the live log, or over `RECOVERY_MAX_BYTES`.
    pub(super) fn replay(&self, from: &ResumeFrom) -> Option<Vec<String>> {
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

    /// `ops:get {from}`: a page of logged ops from storage, so a client whose resume was refused
    /// can rebase its pending edits. Needs a `ref` (the page is the reply).
    pub(super) fn ops_get(
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
