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

/// A log whose newest messages are still in memory: `pending` (ascending, all after what `base`
/// holds) waits to be written in one statement. Reads see both, so grouping writes never hides a
/// message from history, recovery or the duplicate check.
pub struct Overlay<'a, L: RoomLog + ?Sized> {
    /// The stored log.
    pub base: &'a L,
    /// Messages accepted but not yet written, in ascending `seq`.
    pub pending: &'a [Message],
}

impl<L: RoomLog + ?Sized> RoomLog for Overlay<'_, L> {
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Message>, LogError> {
        let newer: Vec<&Message> = self.pending.iter().filter(|m| before.is_none_or(|b| m.seq < b)).collect();
        let from_pending = newer.len().min(limit as usize);
        let rest = limit - from_pending as u32;
        let oldest_pending = self.pending.first().map(|m| m.seq);
        let base_before = match (before, oldest_pending) {
            (Some(b), Some(p)) => Some(b.min(p)),
            (b, p) => b.or(p),
        };
        let mut page = if rest > 0 { self.base.page(base_before, rest)? } else { Vec::new() };
        page.extend(newer[newer.len() - from_pending..].iter().map(|m| (*m).clone()));
        Ok(page)
    }

    fn after(&self, since: u64, limit: u32) -> Result<Vec<Message>, LogError> {
        let mut out = self.base.after(since, limit)?;
        let last = out.last().map_or(since, |m| m.seq);
        let room = (limit as usize).saturating_sub(out.len());
        out.extend(self.pending.iter().filter(|m| m.seq > last).take(room).cloned());
        Ok(out)
    }

    fn find(&self, user: &UserId, id: &str) -> Result<Option<Message>, LogError> {
        match self.pending.iter().find(|m| &m.user == user && m.id == id) {
            Some(m) => Ok(Some(m.clone())),
            None => self.base.find(user, id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, user: &str, id: &str) -> Message {
        Message {
            room: RoomId::parse("r").unwrap(),
            seq,
            id: id.into(),
            user: UserId::parse(user).unwrap(),
            text: String::new(),
            data: None,
            ts: Timestamp(seq),
        }
    }

    #[test]
    fn an_overlay_reads_like_one_log() {
        let all: Vec<Message> = (1..=10).map(|s| msg(s, "u", &format!("m{s}"))).collect();
        let whole = MemoryLog { messages: all.clone() };
        for split in 0..=10 {
            let base = MemoryLog { messages: all[..split].to_vec() };
            let overlay = Overlay { base: &base, pending: &all[split..] };
            for before in [None, Some(1), Some(3), Some(8), Some(11), Some(50)] {
                for limit in [1, 2, 5, 20] {
                    assert_eq!(
                        overlay.page(before, limit),
                        whole.page(before, limit),
                        "split {split} {before:?} {limit}"
                    );
                }
            }
            for since in [0, 2, 7, 10] {
                for limit in [1, 3, 20] {
                    assert_eq!(
                        overlay.after(since, limit),
                        whole.after(since, limit),
                        "split {split} since {since}"
                    );
                }
            }
            let u = UserId::parse("u").unwrap();
            assert_eq!(overlay.find(&u, "m9"), whole.find(&u, "m9"));
            assert_eq!(overlay.find(&u, "m2"), whole.find(&u, "m2"));
            assert_eq!(overlay.find(&u, "nope"), Ok(None));
        }
    }
}
