//! What a user object asks its shell to do: the shared [`Effect`](crate::core::object::Effect)
//! with the user's storage writes ([`UserWrite`]), its calls to other users' objects
//! ([`UserCall`]) and the data it keeps per socket ([`UserConnInfo`]). This file imports
//! nothing else of the user object but its leaf modules, so every part of it can use this one.

use crate::core::effect::impl_attachment;
use crate::core::ids::{ConnId, UserId};
use crate::core::object::Effect;
use crate::core::presence::Presence;
use crate::core::protocol::Ref;
use crate::core::time::Timestamp;
use crate::core::user::inbox::InboxWrite;
use crate::core::user::watch::{PresenceUpdate, WatchPolicy};
use serde::{Deserialize, Serialize};

/// One instruction for the user object's shell.
pub type UserEffect = Effect<UserWrite, UserCall, UserConnInfo>;

/// A write to the user's storage.
#[derive(Debug, Clone, PartialEq)]
pub enum UserWrite {
    /// Persist the status.
    SavePresence(SavedPresence),
    /// Persist who this user may watch (from the newest token).
    SavePolicy(WatchPolicy),
    /// A write to the notification inbox.
    Inbox(InboxWrite),
    /// Persist a watcher of this user and whether pushes to it are active.
    SaveWatcher {
        /// The watching user.
        watcher: UserId,
        /// Whether it gets pushes.
        active: bool,
    },
    /// Forget a watcher.
    RemoveWatcher(UserId),
    /// Persist a user this user watches, with the newest revision of their status seen.
    SaveWatching {
        /// The watched user.
        user: UserId,
        /// Their status revision.
        rev: u64,
    },
    /// Forget a watched user.
    RemoveWatching(UserId),
}

/// A call to other users' objects, made after the batch's writes and frames; the answers go
/// back into the core.
#[derive(Debug, Clone, PartialEq)]
pub enum UserCall {
    /// Push `update` to each watcher's object (`POST /presence`); answers go to
    /// [`User::pushed`](super::User::pushed).
    Push {
        /// The watchers.
        to: Vec<UserId>,
        /// The new status.
        update: PresenceUpdate,
    },
    /// Ask each user's object to (re)start or pause pushes to this user (`POST /watch`);
    /// answers go to [`User::watched`](super::User::watched) with `reply`, or to
    /// [`User::resumed`](super::User::resumed) without.
    Watch {
        /// The watched users.
        users: Vec<UserId>,
        /// `false` pauses.
        active: bool,
        /// Where to reply when a socket asked.
        reply: Option<PendingReply>,
    },
    /// Tell each user's object this user stopped watching them (`POST /unwatch`).
    Unwatch(Vec<UserId>),
}

/// Where the reply to a `presence:subscribe` goes once the watched objects answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingReply {
    /// The socket that asked.
    pub conn: ConnId,
    /// Its `ref`, when it wanted a reply.
    pub reply_to: Option<Ref>,
}

/// What the shell keeps per socket in its hibernation attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConnInfo {
    /// The connection id.
    #[serde(rename = "c")]
    pub conn: ConnId,
    /// When the socket's token expires.
    #[serde(rename = "x")]
    pub expires: Timestamp,
}

impl_attachment!(UserConnInfo);

/// The persisted part of the user's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPresence {
    /// The status state machine.
    pub presence: Presence,
    /// Bumped on every status change; watchers ignore older pushes.
    pub rev: u64,
    /// Whether this user's subscriptions are paused (no socket for the grace period).
    pub paused: bool,
    /// A change watchers have not been pushed yet (coalesced into the window's one push).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpushed: bool,
}

impl Default for SavedPresence {
    fn default() -> Self {
        // A user never seen has no socket, so their subscriptions start paused.
        SavedPresence { presence: Presence::new(), rev: 0, paused: true, unpushed: false }
    }
}
