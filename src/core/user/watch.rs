//! Who may watch whom, and the messages user objects exchange to keep watchers current.
//!
//! The watched user's object keeps its watchers (persisted, each active or paused) and pushes
//! its status changes to the active ones, coalesced to at most one push per
//! [`super::PUSH_WINDOW_MS`] (the latest status wins). A watcher's object pauses its subscriptions once
//! its last socket has been gone for the grace period, and resumes them when a socket returns,
//! so a user with no open socket is not woken for others' changes.

use crate::core::caps::Capabilities;
use crate::core::ids::UserId;
use crate::core::presence::{Change, Status};
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Who the connected user may watch: the users in their token's `friends` claim, plus any
/// `user:<id>` their capabilities grant `watch` on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchPolicy {
    /// The `friends` claim, when the token had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friends: Option<BTreeSet<UserId>>,
    /// The token's capabilities (or the configured default).
    #[serde(default)]
    pub caps: Capabilities,
}

impl WatchPolicy {
    /// Whether `target`'s status may be watched.
    pub fn allows(&self, target: &UserId) -> bool {
        self.friends.as_ref().is_some_and(|f| f.contains(target))
            || self.caps.allows(&format!("user:{target}"), "watch")
    }
}

/// A status as one user object tells another: the change plus the watched user's revision
/// counter, so a push that arrives late never overwrites a newer one. (Fields are spelled out
/// rather than flattened from [`Change`]: flattening costs serde a buffering deserializer.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// Whose status.
    pub user: UserId,
    /// The status.
    pub status: Status,
    /// Last activity, ms since the epoch.
    #[serde(rename = "lastSeen")]
    pub last_seen: Timestamp,
    /// The user's activity text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Increases with every change of this user's status.
    pub rev: u64,
}

/// What clients see of a [`PresenceUpdate`]: everything but the revision.
#[derive(Debug, Serialize)]
pub struct PresenceEntry<'a> {
    user: &'a UserId,
    status: Status,
    #[serde(rename = "lastSeen")]
    last_seen: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity: Option<&'a str>,
}

impl PresenceUpdate {
    /// `user`'s `change` at revision `rev`.
    pub fn new(user: UserId, change: Change, rev: u64) -> PresenceUpdate {
        PresenceUpdate {
            user,
            status: change.status,
            last_seen: change.last_seen,
            activity: change.activity,
            rev,
        }
    }

    /// The client's view.
    pub fn entry(&self) -> PresenceEntry<'_> {
        PresenceEntry {
            user: &self.user,
            status: self.status,
            last_seen: self.last_seen,
            activity: self.activity.as_deref(),
        }
    }
}

/// `POST /watch` from a watcher's object to the watched user's object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// The watching user.
    pub watcher: UserId,
    /// `false` pauses pushes to the watcher until it asks again with `true`.
    pub active: bool,
}

/// `POST /unwatch`: the watcher stops watching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwatchRequest {
    /// The user who stops watching.
    pub watcher: UserId,
}

/// The watcher's answer to a pushed [`PresenceUpdate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAnswer {
    /// `false`: the watcher no longer watches this user; forget it.
    pub watching: bool,
    /// `false`: the watcher has no socket; pause pushes until it resumes.
    pub active: bool,
}
