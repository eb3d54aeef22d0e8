//! Editors' cursors: a caret or a selection per connection, in code points, moved by every op
//! applied after the version the client named. Ephemeral: never stored. `cursor:update` is
//! handled here too: the cursor is moved from the version it names to the current one, kept,
//! and sent to the other editors; the document moves every kept cursor when it applies an op
//! (`submit.rs`) and announces a closed socket's cursor gone.

use super::effect::{DocConnInfo, DocEffect};
use super::request::CursorUpdate;
use super::Doc;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::object::reply;
use crate::core::ot::{transform_position, Op};
use crate::core::protocol::{self, Ref};
use serde_json::{json, Value};

/// A cursor: a caret, or a selection from `anchor` to `head` (code points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// A caret.
    Caret(u64),
    /// A selection; `head` may be before `anchor`.
    Selection {
        /// Where it started.
        anchor: u64,
        /// Where it ends (the caret).
        head: u64,
    },
}

impl Cursor {
    /// Where the cursor is after `op`.
    pub(super) fn moved(self, op: &Op) -> Cursor {
        match self {
            Cursor::Caret(p) => Cursor::Caret(transform_position(p, op)),
            Cursor::Selection { anchor, head } => Cursor::Selection {
                anchor: transform_position(anchor, op),
                head: transform_position(head, op),
            },
        }
    }

    /// The cursor kept within a document of `len` code points.
    pub(super) fn clamped(self, len: u64) -> Cursor {
        match self {
            Cursor::Caret(p) => Cursor::Caret(p.min(len)),
            Cursor::Selection { anchor, head } => {
                Cursor::Selection { anchor: anchor.min(len), head: head.min(len) }
            }
        }
    }

    pub(super) fn json(self, user: &UserId, conn: &ConnId, v: u64) -> Value {
        match self {
            Cursor::Caret(pos) => json!({ "user": user, "conn": conn, "pos": pos, "v": v }),
            Cursor::Selection { anchor, head } => {
                json!({ "user": user, "conn": conn, "anchor": anchor, "head": head, "v": v })
            }
        }
    }
}

impl CursorUpdate {
    /// The cursor it describes, if it is one of the two shapes.
    pub fn cursor(&self) -> Option<Cursor> {
        match (self.pos, self.anchor, self.head) {
            (Some(pos), None, None) => Some(Cursor::Caret(pos)),
            (None, Some(anchor), Some(head)) => Some(Cursor::Selection { anchor, head }),
            _ => None,
        }
    }
}

impl Doc {
    /// The length in code points the document had at version `v` (within the live log).
    fn chars_at(&self, v: u64) -> u64 {
        self.log.iter().rev().take_while(|o| o.op.v >= v).fold(self.chars, |len, o| {
            len.saturating_sub(o.op.op.target_len()).saturating_add(o.op.op.base_len())
        })
    }

    /// `cursor:update`: the sender's cursor as of version `p.v`, moved over the ops since, kept
    /// (while the socket is open) and sent to the other editors.
    pub(super) fn cursor(
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
}
