//! Editors' cursors: a caret or a selection per connection, in code points, moved by every op
//! applied after the version the client named. Ephemeral: never stored.

use crate::core::ids::{ConnId, UserId};
use crate::core::ot::{transform_position, Op};
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
