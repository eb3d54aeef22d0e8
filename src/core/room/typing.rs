//! Typing indicators: one entry per user, expiring by itself after `TYPING_TTL_MS`, announced
//! only when the set of typing users changes. At most `ROOM_MEMBER_LIST_MAX` users are shown
//! typing at once, so `typing:update` and `room:state` stay small in a large room; a
//! `typing:start` past that is acknowledged and not shown.

use super::{empty, ConnInfo, Effect, Room, Timer};
use crate::core::ids::{ConnId, UserId};
use crate::core::object::reply;
use crate::core::protocol::{self, Ref};
use crate::core::time::Timestamp;
use serde_json::json;

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
                effects.push(self.typing_update(Some(sender.conn.clone())));
            }
        }
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &empty()));
        effects
    }

    pub(super) fn typing_stop(&mut self, sender: &ConnInfo, reply_to: Option<Ref>) -> Vec<Effect> {
        let mut effects: Vec<Effect> =
            self.stop_typing(&sender.user, Some(sender.conn.clone())).into_iter().collect();
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &empty()));
        effects
    }

    /// Removes `user`'s entry; announces the new set (to all but `except`) if it changed.
    pub(super) fn stop_typing(&mut self, user: &UserId, except: Option<ConnId>) -> Option<Effect> {
        self.timers.cancel(&Timer::Typing(user.clone()));
        self.typing.remove(user).then(|| self.typing_update(except))
    }

    fn typing_update(&self, except: Option<ConnId>) -> Effect {
        Effect::Broadcast {
            except,
            frame: protocol::event("typing:update", &json!({ "users": self.typing })),
        }
    }
}
