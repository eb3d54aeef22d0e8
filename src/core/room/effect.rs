//! What a room asks its shell to do: the shared [`Effect`](crate::core::object::Effect) with
//! the room's own storage writes ([`RoomWrite`]) and the data it keeps per socket
//! ([`ConnInfo`]). Rooms make no calls to other objects. This file imports nothing else of the
//! room, so the room's modules can all use it.

use crate::core::ids::UserId;
use crate::core::object::{Effect, Never};
use crate::core::room::log::Message;
pub use crate::core::sessions::ConnInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One instruction for the room's shell.
pub type RoomEffect = Effect<RoomWrite, Never, ConnInfo>;

/// A write to the room's storage.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomWrite {
    /// Persist a new message in the room's log (and hand it to HTTP event streams).
    Append(Message),
    /// Delete the room's messages up to `through` (they are past `ROOM_HISTORY_MAX`), keeping
    /// their `(user, id)` for the duplicate check, and forget the kept ids up to
    /// `forget_through`. Comes after the `Append` that made it due.
    Trim {
        /// The newest message to delete.
        through: u64,
        /// The newest remembered id to forget.
        forget_through: u64,
    },
    /// Persist one key of the room's live state.
    PutState {
        /// The key.
        key: String,
        /// Its new value, version and author.
        entry: StateEntry,
    },
}

/// One key's current value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Any JSON value.
    pub value: Value,
    /// Starts at 1 and grows by one per write to this key.
    pub version: u64,
    /// Who wrote it last.
    pub user: UserId,
}
