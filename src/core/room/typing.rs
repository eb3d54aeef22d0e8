//! Typing indicators: one entry per user, expiring by itself after `TYPING_TTL_MS`, announced
//! only when the set of typing users changes. At most `ROOM_MEMBER_LIST_MAX` users are shown
//! typing at once, so `typing:update` and `room:state` stay small in a large room; a
//! `typing:start` past that is acknowledged and not shown.
//!
//! A small room announces each change at once to the other sockets. A large room (or one with
//! an update still waiting) coalesces them, as it does member changes: at most one
//! `typing:update` per [`TYPING_UPDATE_MS`], to every socket, with the whole (capped) set as it
//! is when the update is sent, so the last state always wins and a stop is never lost. The first
//! change after a quiet interval goes out at once; later ones wait for the room's alarm. What
//! waits is one copy of the set the sockets were last told (at most the cap), not the changes.

use super::{empty, ConnInfo, Effect, Room, Timer};
use crate::core::ids::{ConnId, UserId};
use crate::core::object::reply;
use crate::core::protocol::{self, Ref};
use crate::core::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeSet;

/// Shortest time between two `typing:update` frames of a large room, in milliseconds.
pub const TYPING_UPDATE_MS: u64 = 1000;

/// Coalesced typing updates (a large room, or one that just stopped being large).
#[derive(Debug, Default)]
pub(super) struct TypingUpdates {
    /// While changes wait for the next update (its timer is set): the set the sockets were last
    /// told, so an interval that ends where it began sends nothing.
    told: Option<BTreeSet<UserId>>,
    /// When the last `typing:update` went out: the next coalesced one waits until
    /// `TYPING_UPDATE_MS` after it.
    last_sent: Option<Timestamp>,
}

impl Room {
    pub(super) fn typing_start(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        now: Timestamp,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let shown =
            self.typing.contains(&sender.user) || self.typing.len() < self.config.limits.room_member_list_max;
        if shown {
            let ttl = self.config.limits.typing_ttl_ms;
            self.timers.set(Timer::Typing(sender.user.clone()), now.plus_millis(ttl));
            if self.typing.insert(sender.user.clone()) {
                effects.extend(self.typing_changed(&sender.user, true, Some(sender.conn.clone()), now));
            }
        }
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &empty()));
        effects
    }

    pub(super) fn typing_stop(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        now: Timestamp,
    ) -> Vec<Effect> {
        let mut effects: Vec<Effect> =
            self.stop_typing(&sender.user, Some(sender.conn.clone()), now).into_iter().collect();
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &empty()));
        effects
    }

    /// Removes `user`'s entry; announces the new set if it changed (in a small room to all but
    /// `except`, in a large one with the next coalesced update).
    pub(super) fn stop_typing(
        &mut self,
        user: &UserId,
        except: Option<ConnId>,
        now: Timestamp,
    ) -> Option<Effect> {
        // Every message stops its sender's typing: most senders were not typing, and have no
        // timer either (one is set only with the entry; a stale one would find nothing to stop).
        if !self.typing.remove(user) {
            return None;
        }
        self.timers.cancel(&Timer::Typing(user.clone()));
        self.typing_changed(user, false, except, now)
    }

    /// `user` was just `added` to the typing set or removed from it. A small room with nothing
    /// waiting announces it at once to all but `except`. Otherwise the change is coalesced: sent
    /// at once to everyone after a quiet interval, else left for [`Room::send_typing_update`].
    fn typing_changed(
        &mut self,
        user: &UserId,
        added: bool,
        except: Option<ConnId>,
        now: Timestamp,
    ) -> Option<Effect> {
        let waiting = self.typing_updates.told.is_some();
        if !waiting && !self.is_large() {
            self.typing_updates.last_sent = Some(now);
            return Some(self.typing_update(except));
        }
        if waiting {
            return None; // the pending update will carry it
        }
        let due = self.typing_updates.last_sent.map(|last| last.plus_millis(TYPING_UPDATE_MS));
        match due {
            Some(due) if due > now => {
                // What the sockets were told is the set before this change.
                let mut told = self.typing.clone();
                if added {
                    told.remove(user);
                } else {
                    told.insert(user.clone());
                }
                self.typing_updates.told = Some(told);
                self.timers.set(Timer::TypingUpdate, due);
                None
            }
            _ => {
                self.typing_updates.last_sent = Some(now);
                Some(self.typing_update(None))
            }
        }
    }

    /// The typing-update timer fired: one `typing:update` to every socket with the set as it is
    /// now, unless it is the set they were last told.
    pub(super) fn send_typing_update(&mut self, now: Timestamp) -> Option<Effect> {
        let told = self.typing_updates.told.take()?;
        if told == self.typing {
            return None;
        }
        self.typing_updates.last_sent = Some(now);
        Some(self.typing_update(None))
    }

    fn typing_update(&self, except: Option<ConnId>) -> Effect {
        Effect::Broadcast {
            except,
            frame: protocol::event("typing:update", &TypingUpdate { users: &self.typing }),
        }
    }
}

/// `typing:update`: who is typing now.
#[derive(Serialize)]
struct TypingUpdate<'a> {
    users: &'a BTreeSet<UserId>,
}
