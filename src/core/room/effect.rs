//! What a state machine asks its shell to do. The shell applies effects in order, and storage
//! effects come before the frames that announce them, so nothing is acknowledged before it is
//! written.

use crate::core::ids::ConnId;
use crate::core::room::log::Message;
use crate::core::room::{ConnInfo, StateEntry};

/// One instruction for the edge shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
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
    /// Store this connection's new data in its socket attachment (after `auth:refresh`).
    UpdateConn(ConnInfo),
    /// Send `frame` to one connection.
    Send {
        /// Recipient.
        to: ConnId,
        /// A complete JSON text frame.
        frame: String,
    },
    /// Send the same `frame` to every connection of the object except `except`.
    Broadcast {
        /// The connection left out (usually the sender).
        except: Option<ConnId>,
        /// A complete JSON text frame, serialized once for all recipients.
        frame: String,
    },
    /// Send the last bytes `last` to an event stream, then end it (its token expired). The room
    /// has already forgotten it.
    EndStream {
        /// The stream.
        stream: ConnId,
        /// A final Server-Sent Event saying why.
        last: String,
    },
    /// Send [`SSE_KEEPALIVE`](crate::core::room::SSE_KEEPALIVE) to every open event stream.
    Keepalive,
    /// Close one connection with a code from [`crate::core::error::close`]; the shell then
    /// reports the closure back through `handle_close`.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// WebSocket close code.
        code: u16,
        /// Short reason, under the 123-byte close-frame limit.
        reason: &'static str,
    },
}
