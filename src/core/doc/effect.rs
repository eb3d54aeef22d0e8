//! What a document asks its shell to do: the shared [`Effect`](crate::core::object::Effect)
//! with the document's storage writes ([`DocWrite`]), its reads whose answer is a frame
//! ([`DocCall`]) and the data it keeps per socket ([`DocConnInfo`]). A rebuild that had to cut
//! the stored log reports a [`Repair`]. This file imports nothing else of the document but its
//! leaf modules (`log.rs`, `sources.rs`), so every part of it can use this one.

use crate::core::doc::log::LoggedOp;
use crate::core::doc::sources::{Applied, Owner};
use crate::core::ids::{ConnId, UserId};
use crate::core::object::Effect;
use crate::core::protocol::Ref;

/// What the shell keeps per socket in its hibernation attachment (`can_write`: may edit).
pub type DocConnInfo = crate::core::sessions::ConnInfo;

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
    /// [`ops_page`](super::ops_page) builds from them.
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
