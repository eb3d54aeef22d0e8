//! A room's message log: the stored message and the reads the room needs.
//!
//! Writes leave the core as [`Effect::Append`](crate::core::effect::Effect::Append); reads come in
//! through [`RoomLog`], which the edge implements over SQLite and tests implement in memory.

use crate::core::ids::{RoomId, UserId};
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A persisted room message, exactly as `message:receive` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The room.
    pub room: RoomId,
    /// Position in the room's log, from 1, without gaps.
    pub seq: u64,
    /// The client's message id, or one the server made.
    pub id: String,
    /// Who sent it.
    pub user: UserId,
    /// The text.
    pub text: String,
    /// Optional application data.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<Value>,
    /// Server time of acceptance.
    pub ts: Timestamp,
}

/// Where the log stands: its last sequence number and the epoch naming this log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    /// Last assigned `seq` (0 for an empty log).
    pub seq: u64,
    /// Identifies this log; a new epoch means earlier sequence numbers are gone.
    pub epoch: String,
}

/// A storage read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError(pub String);

/// Read access to a room's stored messages.
pub trait RoomLog {
    /// Up to `limit` messages with `seq < before` (all when `before` is `None`), the newest ones,
    /// in ascending `seq`.
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Message>, LogError>;

    /// Up to `limit` messages with `seq > since`, the oldest ones, in ascending `seq`.
    fn after(&self, since: u64, limit: u32) -> Result<Vec<Message>, LogError>;

    /// The message `user` sent with the client id `id`, if any.
    fn find(&self, user: &UserId, id: &str) -> Result<Option<Message>, LogError>;
}

/// An in-memory log for tests and simulations.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    /// Messages in ascending `seq`.
    pub messages: Vec<Message>,
}

impl RoomLog for MemoryLog {
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Message>, LogError> {
        let end = before.map_or(self.messages.len(), |b| self.messages.partition_point(|m| m.seq < b));
        let start = end.saturating_sub(limit as usize);
        Ok(self.messages.get(start..end).unwrap_or_default().to_vec())
    }

    fn after(&self, since: u64, limit: u32) -> Result<Vec<Message>, LogError> {
        let start = self.messages.partition_point(|m| m.seq <= since);
        Ok(self.messages.iter().skip(start).take(limit as usize).cloned().collect())
    }

    fn find(&self, user: &UserId, id: &str) -> Result<Option<Message>, LogError> {
        Ok(self.messages.iter().find(|m| &m.user == user && m.id == id).cloned())
    }
}
