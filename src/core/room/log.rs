//! A room's message log: the stored message and the reads the room needs.
//!
//! Writes leave the core as [`Effect::Append`](crate::core::room::effect::Effect::Append); reads come in
//! through [`RoomLog`], which the edge implements over SQLite and tests implement in memory.

use crate::core::ids::{RoomId, UserId};
use crate::core::protocol::RawJson;
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};

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
    /// Optional application data, as the sender wrote it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<RawJson>,
    /// Server time of acceptance.
    pub ts: Timestamp,
    /// Published with the server key (`"server": true`; absent otherwise): lets clients tell
    /// the app server's messages from a user's, whatever `user` says.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub server: bool,
}

impl Message {
    /// The bytes of its variable fields (text, data as JSON, id, author): what reads are bounded
    /// by. Never more than its `message:receive` frame, so a bound on it never cuts a replay
    /// whose frames fit.
    pub fn size(&self) -> usize {
        let data = self.data.as_ref().map_or(0, |d| d.get().len());
        self.text.len() + data + self.id.len() + self.user.as_str().len()
    }
}

/// What the ack of a stored message says: enough to answer a resend after the message itself
/// was trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Its position in the log.
    pub seq: u64,
    /// The client's (or the server's) message id.
    pub id: String,
    /// When it was accepted.
    pub ts: Timestamp,
}

impl Message {
    /// Its receipt.
    pub fn receipt(&self) -> Receipt {
        Receipt { seq: self.seq, id: self.id.clone(), ts: self.ts }
    }
}

/// Where the log stands: its last sequence number and the epoch naming this log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    /// Last assigned `seq` (0 for an empty log).
    pub seq: u64,
    /// Identifies this log; a new epoch means earlier sequence numbers are gone.
    pub epoch: String,
}

impl LogHead {
    /// Where a rebuilt log stands: after the last stored message, and never below `floor`, the
    /// last `seq` handed out before a failed write dropped the live room (its messages may have
    /// been read or acknowledged as a duplicate; their seqs are skipped, never reused).
    pub fn restore(stored: u64, floor: u64, epoch: String) -> LogHead {
        LogHead { seq: stored.max(floor), epoch }
    }
}

pub use crate::core::error::LogError;

/// Read access to a room's stored messages.
///
/// Reads are bounded by bytes as well as by count, so a log of large messages is never loaded
/// whole: walking from the starting point, a message is read while the [`Message::size`] of the
/// ones read before it is under `max_bytes` (so the first always comes).
pub trait RoomLog {
    /// Up to `limit` messages with `seq < before` (all when `before` is `None`), the newest ones,
    /// within `max_bytes` counted from the newest, in ascending `seq`.
    fn page(&self, before: Option<u64>, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError>;

    /// Up to `limit` messages with `seq > since`, the oldest ones, within `max_bytes`, in
    /// ascending `seq`.
    fn after(&self, since: u64, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError>;

    /// The receipt of the message `user` sent with the client id `id`, if it is stored or its
    /// id is still remembered after a trim.
    fn find(&self, user: &UserId, id: &str) -> Result<Option<Receipt>, LogError>;
}

/// An in-memory log for tests and simulations.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    /// Messages in ascending `seq`.
    pub messages: Vec<Message>,
    /// Ids of trimmed messages still remembered, in ascending `seq`.
    pub trimmed: Vec<(UserId, Receipt)>,
}

impl MemoryLog {
    /// Applies [`Effect::Trim`](crate::core::room::effect::Effect::Trim) as storage does.
    pub fn trim(&mut self, through: u64, forget_through: u64) {
        let cut = self.messages.partition_point(|m| m.seq <= through);
        let gone: Vec<Message> = self.messages.drain(..cut).collect();
        self.trimmed.extend(gone.iter().map(|m| (m.user.clone(), m.receipt())));
        self.trimmed.retain(|(_, r)| r.seq > forget_through);
    }
}

/// The messages of `walk` (in walking order) up to `limit` and within `max_bytes`, after
/// `used` bytes were already taken: one is taken while the bytes before it are under the bound.
fn within<'a>(
    walk: impl Iterator<Item = &'a Message>,
    limit: usize,
    max_bytes: usize,
    mut used: usize,
) -> Vec<Message> {
    let mut out = Vec::new();
    for m in walk.take(limit) {
        if used >= max_bytes {
            break;
        }
        used = used.saturating_add(m.size());
        out.push(m.clone());
    }
    out
}

impl RoomLog for MemoryLog {
    fn page(&self, before: Option<u64>, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        let end = before.map_or(self.messages.len(), |b| self.messages.partition_point(|m| m.seq < b));
        let newest = self.messages.get(..end).unwrap_or_default();
        let mut page = within(newest.iter().rev(), limit as usize, max_bytes, 0);
        page.reverse();
        Ok(page)
    }

    fn after(&self, since: u64, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        let start = self.messages.partition_point(|m| m.seq <= since);
        Ok(within(self.messages.iter().skip(start), limit as usize, max_bytes, 0))
    }

    fn find(&self, user: &UserId, id: &str) -> Result<Option<Receipt>, LogError> {
        let stored = self.messages.iter().find(|m| &m.user == user && m.id == id).map(Message::receipt);
        Ok(stored
            .or_else(|| self.trimmed.iter().find(|(u, r)| u == user && r.id == id).map(|(_, r)| r.clone())))
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
    fn page(&self, before: Option<u64>, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        let newer = self.pending.iter().rev().filter(|m| before.is_none_or(|b| m.seq < b));
        let mut from_pending = within(newer, limit as usize, max_bytes, 0);
        from_pending.reverse();
        let used = from_pending.iter().fold(0usize, |sum, m| sum.saturating_add(m.size()));
        let rest = limit.saturating_sub(from_pending.len() as u32);
        let oldest_pending = self.pending.first().map(|m| m.seq);
        let base_before = match (before, oldest_pending) {
            (Some(b), Some(p)) => Some(b.min(p)),
            (b, p) => b.or(p),
        };
        let mut page = if rest > 0 && used < max_bytes {
            self.base.page(base_before, rest, max_bytes - used)?
        } else {
            Vec::new()
        };
        page.extend(from_pending);
        Ok(page)
    }

    fn after(&self, since: u64, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        let mut out = self.base.after(since, limit, max_bytes)?;
        let last = out.last().map_or(since, |m| m.seq);
        let used = out.iter().fold(0usize, |sum, m| sum.saturating_add(m.size()));
        let room = (limit as usize).saturating_sub(out.len());
        out.extend(within(self.pending.iter().filter(|m| m.seq > last), room, max_bytes, used));
        Ok(out)
    }

    fn find(&self, user: &UserId, id: &str) -> Result<Option<Receipt>, LogError> {
        match self.pending.iter().find(|m| &m.user == user && m.id == id) {
            Some(m) => Ok(Some(m.receipt())),
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
            text: "x".repeat(seq as usize % 4 * 5),
            data: None,
            ts: Timestamp(seq),
            server: false,
        }
    }

    #[test]
    fn an_overlay_reads_like_one_log() {
        let all: Vec<Message> = (1..=10).map(|s| msg(s, "u", &format!("m{s}"))).collect();
        let whole = MemoryLog { messages: all.clone(), ..MemoryLog::default() };
        for split in 0..=10 {
            let base = MemoryLog { messages: all[..split].to_vec(), ..MemoryLog::default() };
            let overlay = Overlay { base: &base, pending: &all[split..] };
            for bytes in [1, 9, 30, usize::MAX] {
                for before in [None, Some(1), Some(3), Some(8), Some(11), Some(50)] {
                    for limit in [1, 2, 5, 20] {
                        assert_eq!(
                            overlay.page(before, limit, bytes),
                            whole.page(before, limit, bytes),
                            "split {split} {before:?} {limit} {bytes}"
                        );
                    }
                }
                for since in [0, 2, 7, 10] {
                    for limit in [1, 3, 20] {
                        assert_eq!(
                            overlay.after(since, limit, bytes),
                            whole.after(since, limit, bytes),
                            "split {split} since {since} {bytes}"
                        );
                    }
                }
            }
            let u = UserId::parse("u").unwrap();
            assert_eq!(overlay.find(&u, "m9"), whole.find(&u, "m9"));
            assert_eq!(overlay.find(&u, "m2"), whole.find(&u, "m2"));
            assert_eq!(overlay.find(&u, "nope"), Ok(None));
        }
    }

    #[test]
    fn reads_stop_once_the_bytes_before_reach_the_bound_but_always_return_one() {
        let log =
            MemoryLog { messages: (1..=10).map(|s| msg(s, "u", "ab")).collect(), ..MemoryLog::default() };
        // Sizes: id 2 + user 1 + text (seq % 4 * 5).
        let sizes: Vec<usize> = log.messages.iter().map(Message::size).collect();
        assert_eq!(sizes[..4], [8, 13, 18, 3]);
        let seqs = |v: Vec<Message>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(log.after(0, 100, 1).unwrap()), vec![1], "the first always comes");
        assert_eq!(seqs(log.after(0, 100, 21).unwrap()), vec![1, 2], "8 + 13 = 21 reaches it");
        assert_eq!(seqs(log.after(0, 100, 22).unwrap()), vec![1, 2, 3]);
        assert_eq!(seqs(log.page(None, 100, 1).unwrap()), vec![10]);
        assert_eq!(seqs(log.page(Some(5), 100, 19).unwrap()), vec![3, 4], "3 + 18 from the newest");
    }
}
