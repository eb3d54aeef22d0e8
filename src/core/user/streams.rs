//! The user's event streams (`GET /v1/users/me/events`), the fallback for clients without
//! WebSockets, and the HTTP writes those clients make instead of frames.
//!
//! A stream is a device like a socket: it counts against `MAX_SOCKETS_PER_USER`, brings the
//! user online when it opens, and its end starts the grace period like a socket's close. It
//! gets what every socket gets from the object — `user:state` first, then `presence:update`,
//! `notification:new`, `notification:count` — as Server-Sent Events, a `: keepalive` comment
//! every `SSE_KEEPALIVE_MS`, and ends with a `close` event at its token's `exp` plus the leeway.
//! The shell owns the streams themselves and reports the ones that went away or fell behind.

use super::{Timer, User, UserCall, UserEffect, FRAME_RATE};
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::presence::Change;
use crate::core::protocol;
use crate::core::time::Timestamp;
use crate::core::user::watch::{PresenceUpdate, WatchPolicy};
use serde_json::{json, Value};

/// An open event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStreamInfo {
    /// The stream's id, unique among the user's sockets and streams (it is `user:state`'s `connId`).
    pub id: ConnId,
    /// When the token expires: the stream ends then (plus the leeway).
    pub expires: Timestamp,
}

/// Most bytes a user stream may have queued for a client that does not read: its events are
/// small (a status, a notification of at most 16 KiB), unlike a room's replay, so one user's ten
/// streams cannot pin ten `RECOVERY_MAX_BYTES` in their object.
pub const USER_STREAM_MAX_QUEUED: usize = 64 * 1024;

/// `POST /v1/users/me/status`: its body is the `presence:set` payload.
pub type StatusRequest = super::request::PresenceSet;

impl User {
    /// Opens an event stream with the token's watch `policy`: refused over
    /// `MAX_SOCKETS_PER_USER` (sockets and streams together); otherwise `user:state` goes to
    /// the stream first, the user comes online as with a socket, and the stream ends at the
    /// token's deadline. The shell must hold the stream before it applies the effects.
    pub fn open_stream(
        &mut self,
        info: UserStreamInfo,
        policy: WatchPolicy,
        now: Timestamp,
    ) -> Result<Vec<UserEffect>, Error> {
        self.check_capacity()?;
        let before = self.saved.clone();
        if self.streams.is_empty() {
            self.timers.set(Timer::Keepalive, now.plus_millis(self.config.limits.sse_keepalive_ms));
        }
        // The same moment a socket with this token is closed: exp plus the leeway.
        self.timers.set(Timer::StreamExpiry(info.id.clone()), self.conns.deadline(info.expires));
        let id = info.id.clone();
        self.streams.insert(id.clone(), info);
        let (mut effects, greeting, resume) = self.arrive(&id, policy, now);
        effects.push(UserEffect::StreamSend {
            to: id,
            event: protocol::sse_event("user:state", None, &greeting),
        });
        effects.extend(resume);
        Ok(self.finish(&before, effects, now, true))
    }

    /// A stream ended without the user object asking (its client went away, or fell behind):
    /// like a socket's close, the last device leaving starts the grace period.
    #[must_use]
    pub fn close_stream(&mut self, id: &ConnId, now: Timestamp) -> Vec<UserEffect> {
        let before = self.saved.clone();
        if !self.forget_stream(id, now) {
            return Vec::new();
        }
        // As after a socket's close, no calls: an owed push waits for its alarm.
        self.finish(&before, Vec::new(), now, false)
    }

    /// Open event streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Whether a stream whose client has `unread` bytes still queued may be sent more: one that
    /// fell more than `USER_STREAM_MAX_QUEUED` (or `RECOVERY_MAX_BYTES`, if smaller) behind is
    /// ended instead of buffered (its client reconnects and gets a fresh `user:state`).
    pub fn stream_keeps_up(&self, unread: usize) -> bool {
        unread <= USER_STREAM_MAX_QUEUED.min(self.config.limits.recovery_max_bytes)
    }

    /// Removes a stream and counts the device gone; `false` when it was not open.
    fn forget_stream(&mut self, id: &ConnId, now: Timestamp) -> bool {
        if self.streams.remove(id).is_none() {
            return false;
        }
        self.timers.cancel(&Timer::StreamExpiry(id.clone()));
        if self.streams.is_empty() {
            self.timers.cancel(&Timer::Keepalive);
        }
        self.device_left(now);
        true
    }

    /// The stream's token expired: a `close` event, then the end (called from the alarm, which
    /// finishes the status change).
    pub(super) fn expire_stream(&mut self, id: ConnId, now: Timestamp) -> Option<UserEffect> {
        self.forget_stream(&id, now).then(|| {
            let data = json!({ "code": close::TOKEN_EXPIRED, "reason": protocol::EXPIRED_REASON });
            UserEffect::StreamEnd { stream: id, last: protocol::sse_event("close", None, &data) }
        })
    }

    /// Keepalive time: a comment to every stream, and again in `SSE_KEEPALIVE_MS`.
    pub(super) fn keepalive(&mut self, now: Timestamp) -> Option<UserEffect> {
        (!self.streams.is_empty()).then(|| {
            self.timers.set(Timer::Keepalive, now.plus_millis(self.config.limits.sse_keepalive_ms));
            UserEffect::Keepalive
        })
    }

    /// The HTTP writes of clients on the fallback draw from the user's frame budget, shared
    /// with their sockets, so the fallback buys no extra rate.
    fn take_budget(&mut self, now: Timestamp) -> Result<(), Error> {
        self.bucket.take(FRAME_RATE, now).map_err(|ms| Error::rate_limited("requests", ms))
    }

    /// A status belongs to connected devices: without a socket or stream nothing would ever
    /// take a chosen `online` (or `busy`) back to `offline`.
    fn require_device(&self) -> Result<(), Error> {
        if self.has_devices() {
            return Ok(());
        }
        Err(Error::new(ErrorCode::Conflict, "no open socket or event stream: connect a device first"))
    }

    /// `POST /v1/users/me/status`: `presence:set` for clients on the event-stream fallback.
    /// Answers the new status; the change is stored and announced as from a socket.
    pub fn set_status(
        &mut self,
        request: StatusRequest,
        now: Timestamp,
    ) -> Result<(Change, Vec<UserEffect>), Error> {
        self.take_budget(now)?;
        self.require_device()?;
        let before = self.saved.clone();
        self.choose_status(request.status, request.activity, now)?;
        let effects = self.finish(&before, Vec::new(), now, true);
        Ok((self.status(), effects))
    }

    /// `POST /v1/users/me/active`: `presence:active` for clients on the fallback.
    pub fn mark_active(&mut self, now: Timestamp) -> Result<Vec<UserEffect>, Error> {
        self.take_budget(now)?;
        self.require_device()?;
        let before = self.saved.clone();
        self.saved.presence.activity(now);
        Ok(self.finish(&before, Vec::new(), now, true))
    }

    /// `POST /v1/users/me/subscribe`: the checks and bookkeeping of `presence:subscribe`; the
    /// shell asks the returned users' objects (`POST /watch`) and hands their answers to
    /// [`User::subscribed`], whose data is the HTTP answer. The request is judged by the watch
    /// `policy` of the token that made it, which becomes the user's policy as on a connect (so a
    /// narrower token also drops what it no longer allows); the returned effects store that and
    /// are to be applied whether or not the subscribe is refused.
    pub fn subscribe_over_http(
        &mut self,
        users: Vec<UserId>,
        policy: WatchPolicy,
        now: Timestamp,
    ) -> (Vec<UserEffect>, Result<Vec<UserId>, Error>) {
        if let Err(e) = self.take_budget(now) {
            return (Vec::new(), Err(e));
        }
        let effects = self.set_policy(policy);
        (effects, self.plan_subscribe(users))
    }

    /// The watched users answered an HTTP subscribe: `{"presence", "failed"?}` as in the
    /// `presence:subscribe` reply, and the effects to apply.
    pub fn subscribed(
        &mut self,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> (Value, Vec<UserEffect>) {
        let (data, mut effects, undo) = self.settle_subscribe(results);
        if !undo.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(undo)));
        }
        (data, effects)
    }

    /// `POST /v1/users/me/unsubscribe`: `presence:unsubscribe` over HTTP; answers the users
    /// that were watched or on their way (cancelled).
    pub fn unsubscribe_over_http(
        &mut self,
        users: Vec<UserId>,
        now: Timestamp,
    ) -> Result<(Vec<UserId>, Vec<UserEffect>), Error> {
        self.take_budget(now)?;
        Ok(self.unwatch(users))
    }
}
