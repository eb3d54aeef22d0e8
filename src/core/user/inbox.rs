//! The notification inbox: what a notification is, how the store is read, and the rules for
//! storing, listing, marking read and trimming. Writes leave as effects; reads go through
//! [`Inbox`], which SQLite implements in the shell and [`MemoryInbox`] in tests.
//!
//! Ids are per user, increasing from 1, and never reused (trimming keeps the newest). The unread
//! count the user object keeps always equals the stored unread rows: every write that changes it
//! is decided here, from counts the store reported when the object woke.

use crate::core::error::LogError;
use crate::core::error::{Error, ErrorCode};
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `type`, in characters.
pub const MAX_TYPE_CHARS: usize = 64;
/// Longest `title`, in characters.
pub const MAX_TITLE_CHARS: usize = 256;
/// Largest notification as JSON (type, title, body and data together), in bytes.
pub const MAX_NOTIFICATION_BYTES: usize = 16 * 1024;
/// Most notifications in one page.
pub const PAGE_MAX: u32 = 100;
/// Most ids in one `notification:read`.
pub const READ_MAX_IDS: usize = 1000;
/// Longest `Idempotency-Key`, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Refuses an `Idempotency-Key` that is empty or over [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} bytes"),
        ));
    }
    Ok(())
}

/// What an app server sends: `{"type", "title"?, "body"?, "data"?}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewNotification {
    /// What kind of notification, for the client to choose how to show it (`"mention"`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Anything the app wants to carry (a link, ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl NewNotification {
    /// Checks the documented limits; the error says which one was broken.
    pub fn validate(&self, max_body_chars: usize) -> Result<(), Error> {
        let bad = |m: String| Err(Error::new(ErrorCode::BadRequest, m));
        let kind = self.kind.chars().count();
        if kind == 0 || kind > MAX_TYPE_CHARS {
            return bad(format!("notification.type must be 1 to {MAX_TYPE_CHARS} characters"));
        }
        if self.title.as_ref().is_some_and(|t| t.chars().count() > MAX_TITLE_CHARS) {
            return bad(format!("notification.title must be at most {MAX_TITLE_CHARS} characters"));
        }
        if self.body.as_ref().is_some_and(|b| b.chars().count() > max_body_chars) {
            return bad(format!("notification.body must be at most {max_body_chars} characters"));
        }
        let size = serde_json::to_string(self).map(|s| s.len()).unwrap_or(usize::MAX);
        if size > MAX_NOTIFICATION_BYTES {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("notification is over {MAX_NOTIFICATION_BYTES} bytes as JSON"),
            ));
        }
        Ok(())
    }
}

/// A stored notification, as clients receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Per-user id, increasing.
    pub id: u64,
    /// When it was stored, ms since the epoch.
    pub ts: Timestamp,
    /// Whether the user marked it read.
    pub read: bool,
    /// What the app server sent.
    #[serde(flatten)]
    pub content: NewNotification,
}

/// Reads the stored inbox.
pub trait Inbox {
    /// Up to `limit` notifications with an id below `before` (all when `None`), newest first.
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Notification>, LogError>;
    /// The notification stored under an idempotency key, if it is still kept.
    fn by_key(&self, key: &str) -> Result<Option<Notification>, LogError>;
    /// How many of `ids` are stored and unread.
    fn count_unread(&self, ids: &[u64]) -> Result<u64, LogError>;
}

/// What the store holds, counted once when the object wakes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxCounts {
    /// The highest id ever stored (0 for none).
    pub last_id: u64,
    /// Rows stored.
    pub total: u64,
    /// Rows stored and unread.
    pub unread: u64,
}

/// A write for the shell, in the order the core decided it.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxWrite {
    /// Store a new notification, remembering `key` for retries.
    Store(Notification, Option<String>),
    /// Mark these ids read (ids not stored are ignored).
    MarkRead(Vec<u64>),
    /// Mark every notification read.
    MarkAllRead,
    /// Delete `count` rows: read ones oldest first, then unread ones oldest first.
    Trim(u64),
}

/// `notification:read` and its HTTP twin: `{"ids": [...]}` or `{"all": true}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReadRequest {
    /// The ids to mark read.
    #[serde(default)]
    pub ids: Option<Vec<u64>>,
    /// Marks everything read.
    #[serde(default)]
    pub all: Option<bool>,
}

/// The counts the user object keeps, and the rules that change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxState {
    counts: InboxCounts,
    retention: u64,
}

/// The outcome of storing one notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The stored notification (the earlier one on a retry).
    pub notification: Notification,
    /// Whether the key had been seen: nothing was stored or delivered this time.
    pub duplicate: bool,
}

impl InboxState {
    /// The inbox as the store reported it, keeping at most `retention` rows.
    pub fn new(counts: InboxCounts, retention: u64) -> InboxState {
        InboxState { counts, retention: retention.max(1) }
    }

    /// Stored unread notifications.
    pub fn unread(&self) -> u64 {
        self.counts.unread
    }

    /// Stored notifications.
    pub fn total(&self) -> u64 {
        self.counts.total
    }

    /// Stores `content` (unless `key` was seen), trimming past the retention cap.
    pub fn store(
        &mut self,
        content: NewNotification,
        key: Option<String>,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Result<(Stored, Vec<InboxWrite>), Error> {
        if let Some(key) = &key {
            check_key(key)?;
            if let Some(earlier) = inbox.by_key(key).map_err(storage)? {
                return Ok((Stored { notification: earlier, duplicate: true }, Vec::new()));
            }
        }
        let id = self.counts.last_id + 1;
        let notification = Notification { id, ts: now, read: false, content };
        self.counts =
            InboxCounts { last_id: id, total: self.counts.total + 1, unread: self.counts.unread + 1 };
        let mut writes = vec![InboxWrite::Store(notification.clone(), key)];
        if self.counts.total > self.retention {
            let excess = self.counts.total - self.retention;
            let read = self.counts.total - self.counts.unread;
            self.counts.unread -= excess.saturating_sub(read);
            self.counts.total = self.retention;
            writes.push(InboxWrite::Trim(excess));
        }
        Ok((Stored { notification, duplicate: false }, writes))
    }

    /// Marks notifications read; returns the writes (none when nothing changes).
    pub fn mark_read(&mut self, request: &ReadRequest, inbox: &dyn Inbox) -> Result<Vec<InboxWrite>, Error> {
        match (request.all, &request.ids) {
            (Some(true), None) => {
                if self.counts.unread == 0 {
                    return Ok(Vec::new());
                }
                self.counts.unread = 0;
                Ok(vec![InboxWrite::MarkAllRead])
            }
            (None, Some(ids)) if ids.len() <= READ_MAX_IDS => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                let newly_read = inbox.count_unread(&ids).map_err(storage)?;
                if newly_read == 0 {
                    return Ok(Vec::new());
                }
                self.counts.unread = self.counts.unread.saturating_sub(newly_read);
                Ok(vec![InboxWrite::MarkRead(ids)])
            }
            _ => Err(Error::new(
                ErrorCode::BadRequest,
                format!("send {{\"ids\": [...]}} (at most {READ_MAX_IDS}) or {{\"all\": true}}"),
            )),
        }
    }

    /// A page, newest first; `limit` defaults to and is capped at [`PAGE_MAX`].
    pub fn page(
        &self,
        before: Option<u64>,
        limit: Option<u32>,
        inbox: &dyn Inbox,
    ) -> Result<Vec<Notification>, Error> {
        let limit = limit.unwrap_or(PAGE_MAX).clamp(1, PAGE_MAX);
        inbox.page(before, limit).map_err(storage)
    }
}

fn storage(e: LogError) -> Error {
    Error::new(ErrorCode::Internal, format!("inbox unavailable: {}", e.0))
}

/// An inbox in memory that applies [`InboxWrite`]s exactly as the shell's SQL does.
#[derive(Debug, Default, Clone)]
pub struct MemoryInbox {
    /// Rows in id order, with their idempotency keys.
    pub rows: Vec<(Notification, Option<String>)>,
}

impl MemoryInbox {
    /// Applies one write.
    pub fn apply(&mut self, write: &InboxWrite) {
        match write {
            InboxWrite::Store(n, key) => self.rows.push((n.clone(), key.clone())),
            InboxWrite::MarkRead(ids) => {
                for (n, _) in &mut self.rows {
                    n.read |= ids.contains(&n.id);
                }
            }
            InboxWrite::MarkAllRead => self.rows.iter_mut().for_each(|(n, _)| n.read = true),
            InboxWrite::Trim(count) => {
                let mut order: Vec<(bool, u64)> = self.rows.iter().map(|(n, _)| (!n.read, n.id)).collect();
                order.sort_unstable();
                let doomed: Vec<u64> = order.into_iter().take(*count as usize).map(|(_, id)| id).collect();
                self.rows.retain(|(n, _)| !doomed.contains(&n.id));
            }
        }
    }

    /// What the store would report on a wake.
    pub fn counts(&self) -> InboxCounts {
        InboxCounts {
            last_id: self.rows.iter().map(|(n, _)| n.id).max().unwrap_or(0),
            total: self.rows.len() as u64,
            unread: self.rows.iter().filter(|(n, _)| !n.read).count() as u64,
        }
    }
}

impl Inbox for MemoryInbox {
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Notification>, LogError> {
        let before = before.unwrap_or(u64::MAX);
        Ok(self
            .rows
            .iter()
            .rev()
            .filter(|(n, _)| n.id < before)
            .take(limit as usize)
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn by_key(&self, key: &str) -> Result<Option<Notification>, LogError> {
        Ok(self.rows.iter().find(|(_, k)| k.as_deref() == Some(key)).map(|(n, _)| n.clone()))
    }

    fn count_unread(&self, ids: &[u64]) -> Result<u64, LogError> {
        Ok(self.rows.iter().filter(|(n, _)| !n.read && ids.contains(&n.id)).count() as u64)
    }
}
