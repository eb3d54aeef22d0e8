//! The user's devices: every socket and event stream counts, together, against
//! `MAX_SOCKETS_PER_USER`; the first to arrive brings the user online and resumes paused
//! subscriptions, the last to leave starts the grace period; and every event for the user goes to
//! all of them (a frame for the sockets, a Server-Sent Event for the streams). The sockets' own
//! bookkeeping (strikes, token deadlines) is [`Sessions`](crate::core::sessions::Sessions); the
//! streams' is `streams.rs`.

use super::effect::{UserCall, UserEffect};
use super::watch::WatchPolicy;
use super::{Timer, User};
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::ConnId;
use crate::core::protocol;
use crate::core::time::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

impl User {
    /// Refuses a new socket over `MAX_SOCKETS_PER_USER`; checked before accepting.
    pub fn check_capacity(&self) -> Result<(), Error> {
        let max = self.config.limits.max_sockets_per_user;
        if self.conns.len().saturating_add(self.streams.len()) >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("at most {max} sockets and event streams per user"),
            ));
        }
        Ok(())
    }

    /// A device (a socket or an event stream, already counted by the caller) arrived with the
    /// token's watch `policy`: the user comes online and paused subscriptions resume. Returns
    /// the policy's writes, the `user:state` greeting and the call resuming subscriptions, for
    /// the caller to put in order around its own greeting.
    pub(super) fn arrive(
        &mut self,
        conn: &ConnId,
        policy: WatchPolicy,
        now: Timestamp,
    ) -> (Vec<UserEffect>, Value, Option<UserEffect>) {
        let effects = self.set_policy(policy);
        self.saved.presence.connect(now);
        self.timers.cancel(&Timer::Pause);
        let resume = std::mem::replace(&mut self.saved.paused, false);
        let current = self.status();
        let mut greeting = json!({ "user": self.id, "connId": conn, "unread": self.unread() });
        if let (Some(object), Ok(Value::Object(status))) =
            (greeting.as_object_mut(), serde_json::to_value(&current))
        {
            object.extend(status);
        }
        let call = (resume && !self.watching.is_empty()).then(|| {
            UserEffect::Call(UserCall::Watch {
                users: self.watching.keys().cloned().collect(),
                active: true,
                reply: None,
            })
        });
        (effects, greeting, call)
    }

    /// Whether any device is connected: a socket or an event stream.
    pub(super) fn has_devices(&self) -> bool {
        !self.conns.is_empty() || !self.streams.is_empty()
    }

    /// `event` with `data` for every device: one frame for the sockets, one Server-Sent Event
    /// for the streams, each serialized once.
    pub(super) fn to_devices<D: Serialize>(&self, event: &str, data: &D) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        if !self.conns.is_empty() {
            effects.push(UserEffect::Broadcast { except: None, frame: protocol::event(event, data) });
        }
        if !self.streams.is_empty() {
            effects.push(UserEffect::StreamBroadcast { event: protocol::sse_event(event, None, data) });
        }
        effects
    }

    /// A socket or stream left: the last device starts the grace period.
    pub(super) fn device_left(&mut self, now: Timestamp) {
        self.saved.presence.disconnect(now);
        if !self.has_devices() {
            self.timers.set(Timer::Pause, now.plus_millis(self.config.presence.grace_ms));
        }
    }
}
