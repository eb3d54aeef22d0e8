//! Server-Sent Events streams, the fallback for clients without WebSockets: who holds them (they
//! count against `MAX_SOCKETS_PER_USER` with the user's sockets), when each ends (its token's
//! expiry), and the keepalive comment every `SSE_KEEPALIVE_MS`. The shell owns the streams
//! themselves and reports the ones that went away or fell behind.

use super::{Effect, Resume, Room, Timer};
use crate::core::error::{close, Error};
use crate::core::ids::{ConnId, UserId};
use crate::core::protocol;
use crate::core::room::log::RoomLog;
use crate::core::time::Timestamp;
use serde_json::json;

/// An open event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's id, unique among the room's sockets and streams.
    pub id: ConnId,
    /// The token's user.
    pub user: UserId,
    /// When the token expires: the stream ends then.
    pub expires: Timestamp,
}

impl Room {
    /// Opens an event stream: refused over `MAX_SOCKETS_PER_USER` (sockets and streams of the
    /// user together); otherwise its opening (see [`Room::open_event_stream`]), with its end at
    /// the token's expiry and the keepalive running while any stream is open.
    pub fn open_stream(
        &mut self,
        info: StreamInfo,
        resume: Option<&Resume>,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Result<String, Error> {
        self.check_capacity(&info.user)?;
        // An opening replays up to RECOVERY_MAX_BYTES: it draws from the user's read budget.
        self.throttle(&info.user, super::EventClass::Read, now)?;
        if self.streams.is_empty() {
            self.timers.set(Timer::Keepalive, now.plus_millis(self.config.limits.sse_keepalive_ms));
        }
        // The same moment a socket with this token is closed: exp plus the leeway.
        let deadline = crate::core::protocol::token_deadline(info.expires, self.config.auth.leeway_secs);
        self.timers.set(Timer::StreamExpiry(info.id.clone()), deadline);
        self.streams.insert(info.id.clone(), info);
        Ok(self.open_event_stream(resume, log))
    }

    /// A stream ended without the room asking (the client went away, or it fell behind).
    pub fn close_stream(&mut self, id: &ConnId) {
        if self.streams.remove(id).is_some() {
            self.timers.cancel(&Timer::StreamExpiry(id.clone()));
        }
        if self.streams.is_empty() {
            self.timers.cancel(&Timer::Keepalive);
        }
    }

    /// Open event streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Streams `user` holds.
    pub(super) fn streams_of(&self, user: &UserId) -> usize {
        self.streams.values().filter(|s| &s.user == user).count()
    }

    /// Whether a stream whose client has `unread` bytes still queued may be sent more: one that
    /// fell more than `RECOVERY_MAX_BYTES` behind is ended instead of buffered without bound (the
    /// client reconnects with `Last-Event-ID` and resumes from storage).
    pub fn stream_keeps_up(&self, unread: usize) -> bool {
        unread <= self.config.limits.recovery_max_bytes
    }

    /// The stream's token expired: a `close` event, then the end.
    pub(super) fn expire_stream(&mut self, id: ConnId) -> Option<Effect> {
        self.streams.contains_key(&id).then(|| {
            self.close_stream(&id);
            let data = json!({ "code": close::TOKEN_EXPIRED, "reason": "token expired" });
            Effect::StreamEnd { stream: id, last: protocol::sse_event("close", None, &data) }
        })
    }

    /// Keepalive time: a comment to every stream, and again in `SSE_KEEPALIVE_MS`.
    pub(super) fn keepalive(&mut self, now: Timestamp) -> Option<Effect> {
        (!self.streams.is_empty()).then(|| {
            self.timers.set(Timer::Keepalive, now.plus_millis(self.config.limits.sse_keepalive_ms));
            Effect::Keepalive
        })
    }
}
