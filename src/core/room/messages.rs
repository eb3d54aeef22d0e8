//! Messages: send (idempotent by client id), server publish, history, and recovery of what a
//! reconnecting client missed.

use super::{ConnInfo, Effect, Room, RoomWrite};
use crate::core::admission::Admission;
use crate::core::auth::Caller;
use crate::core::caps::{Capabilities, RoomRights};
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, RoomId, UserId};
use crate::core::object::reply;
use crate::core::protocol::{self, RawJson, Ref};
use crate::core::room::log::{Message, Receipt, RoomLog};
use crate::core::room::request::{HistoryGet, SendMessage};
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Longest client message id, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// History page size when a request names no `limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// A reconnecting client's position: the last `seq` it saw, in the log named `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Last sequence number the client received.
    pub since: u64,
    /// The epoch that `since` belongs to.
    pub epoch: String,
}

impl Resume {
    /// The position the Worker admitted a socket or event stream with (`?since=&epoch=` or
    /// `Last-Event-ID`), if any.
    pub fn admitted(admission: &Admission) -> Option<Resume> {
        admission.since.map(|since| Resume { since, epoch: admission.epoch.clone().unwrap_or_default() })
    }
}

/// A message published over HTTP (`POST /v1/rooms/:room/messages`).
#[derive(Debug, Clone, Deserialize)]
pub struct Publish {
    /// The text.
    pub text: String,
    /// Optional application data, relayed and stored as sent.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// The author; only a server key may choose it (the edge decides).
    #[serde(default)]
    pub user: Option<String>,
}

/// The author an app server publishes as when its body names none.
pub const SYSTEM_USER: &str = "system";

impl Publish {
    /// Who the message is from: with the server key, the body's `user` or `system`; with a user
    /// token, the token's `sub` (the body's `user` is ignored), which needs `send` in `room`.
    pub fn author(
        &self,
        caller: &Caller,
        default_caps: &Capabilities,
        room: &RoomId,
    ) -> Result<UserId, Error> {
        match caller {
            Caller::Server => UserId::parse(self.user.as_deref().unwrap_or(SYSTEM_USER))
                .map_err(|e| Error::new(ErrorCode::BadRequest, format!("bad user: {e}"))),
            Caller::User(identity) => {
                let rights = RoomRights::of(identity.caps_or(default_caps), room.as_str());
                if rights.join && rights.send {
                    Ok(identity.user.clone())
                } else {
                    Err(Error::new(ErrorCode::Forbidden, format!("this token may not send to room {room}")))
                }
            }
        }
    }
}

fn internal(e: crate::core::room::log::LogError) -> Error {
    Error::new(ErrorCode::Internal, format!("could not read the log: {}", e.0))
}

/// A history page as `history:get` answers it and the HTTP history route returns it: written
/// straight from the messages (their verbatim data never goes through a `Value`).
#[derive(Debug, Serialize)]
pub struct HistoryPage<'a> {
    /// Oldest first.
    pub messages: &'a [Message],
}

/// The ack for a stored message (the reply to `message:send`, the answer to an HTTP publish).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ack {
    /// Its position in the log.
    pub seq: u64,
    /// Its id.
    pub id: String,
    /// When it was accepted.
    pub ts: Timestamp,
    /// A resend that found the original.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

fn ack(m: &Receipt, duplicate: bool) -> Ack {
    Ack { seq: m.seq, id: m.id.clone(), ts: m.ts, duplicate }
}

impl Room {
    pub(super) fn send_message(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: SendMessage,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Result<Vec<Effect>, Error> {
        let except = Some(sender.conn.clone());
        let (ack, mut effects) =
            self.accept_message(&sender.user, except, p.text, p.id, p.data, false, now, log)?;
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &ack));
        Ok(effects)
    }

    /// A message from an app server (`by_server`: the server key, unthrottled) or a user's
    /// HTTP client (drawing on that user's message budget, shared with their sockets); the reply
    /// body is the ack.
    pub fn handle_publish(
        &mut self,
        user: UserId,
        p: Publish,
        idempotency_key: Option<String>,
        by_server: bool,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Result<(Ack, Vec<Effect>), Error> {
        if !by_server {
            self.throttle(&user, super::EventClass::Message, now)?;
        }
        let result = self.accept_message(&user, None, p.text, idempotency_key, p.data, by_server, now, log);
        self.forget_full_budgets(now);
        result
    }

    /// Validates, deduplicates and sequences a message: `Append`, then a `Broadcast` to all but
    /// `except`, then the sender's typing entry cleared. Returns the ack with the effects.
    /// `server` marks a message the server key published.
    #[allow(clippy::too_many_arguments)]
    fn accept_message(
        &mut self,
        user: &UserId,
        except: Option<ConnId>,
        text: String,
        id: Option<String>,
        data: Option<RawJson>,
        server: bool,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Result<(Ack, Vec<Effect>), Error> {
        let max = self.config.limits.max_text_chars;
        if text.chars().count() > max {
            return Err(Error::new(ErrorCode::TooLarge, format!("text is over {max} characters")));
        }
        let data = data.filter(|d| !d.is_null());
        if text.is_empty() && data.is_none() {
            return Err(Error::new(ErrorCode::BadRequest, "message needs a text or data"));
        }
        if let Some(id) = &id {
            if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN || id.chars().any(char::is_control) {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("id must be 1 to {MAX_MESSAGE_ID_LEN} bytes without control characters"),
                ));
            }
            if let Some(original) = log.find(user, id).map_err(internal)? {
                return Ok((ack(&original, true), Vec::new()));
            }
        }
        let seq = self.head.seq + 1;
        let message = Message {
            room: self.id.clone(),
            seq,
            id: id.unwrap_or_else(|| self.server_message_id(seq)),
            user: user.clone(),
            text,
            data,
            ts: now,
            server,
        };
        self.head.seq = seq;
        let frame = protocol::event("message:receive", &message);
        let acked = ack(&message.receipt(), false);
        let mut effects = vec![Effect::Write(RoomWrite::Append(message))];
        // Past ROOM_HISTORY_MAX the oldest goes, its id kept for as many messages again.
        let max = self.config.limits.room_history_max;
        if let Some(through) = seq.checked_sub(max).filter(|t| *t > 0) {
            effects.push(Effect::Write(RoomWrite::Trim {
                through,
                forget_through: through.saturating_sub(max),
            }));
        }
        effects.push(Effect::Broadcast { except, frame });
        effects.extend(self.stop_typing(user, None, now));
        Ok((acked, effects))
    }

    /// The id of a message whose sender named none: `<epoch>-<seq>` (built without the
    /// formatting machinery, which costs a message several times this in wasm).
    fn server_message_id(&self, seq: u64) -> String {
        let mut digits = itoa::Buffer::new();
        let seq = digits.format(seq);
        let mut id = String::with_capacity(self.head.epoch.len() + 1 + seq.len());
        id.push_str(&self.head.epoch);
        id.push('-');
        id.push_str(seq);
        id
    }

    pub(super) fn history_get(
        &self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: HistoryGet,
        log: &dyn RoomLog,
    ) -> Result<Vec<Effect>, Error> {
        let reply_to = reply_to
            .ok_or_else(|| Error::new(ErrorCode::BadRequest, "history:get needs a ref to reply to"))?;
        let messages = self.history(p.before, p.limit, log)?;
        Ok(reply(&sender.conn, Some(&reply_to), &HistoryPage { messages: &messages }).into_iter().collect())
    }

    /// A history page: up to `limit` (default 50, at most `HISTORY_PAGE_MAX`) messages before
    /// `before`, ascending, and about `RECOVERY_MAX_BYTES` at most (at least one message), so a
    /// page of large messages never loads them all.
    pub fn history(
        &self,
        before: Option<u64>,
        limit: Option<u32>,
        log: &dyn RoomLog,
    ) -> Result<Vec<Message>, Error> {
        let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT).clamp(1, self.config.limits.history_page_max);
        log.page(before, limit, self.config.limits.recovery_max_bytes).map_err(internal)
    }

    /// A history page over HTTP for `user`, drawn from their read budget like `history:get`:
    /// each page may cost up to `RECOVERY_MAX_BYTES` of reads.
    pub fn http_history(
        &mut self,
        user: &UserId,
        before: Option<u64>,
        limit: Option<u32>,
        now: Timestamp,
        log: &dyn RoomLog,
    ) -> Result<Vec<Message>, Error> {
        self.throttle(user, super::EventClass::Read, now)?;
        self.history(before, limit, log)
    }

    /// Exactly the messages after `resume.since`, or `None` when they cannot all be given:
    /// another epoch, a position ahead of the log, more than the recovery window, more than
    /// `RECOVERY_MAX_BYTES` of frames, or a log read that comes back short. Never a silent gap.
    /// The read itself stops at the byte bound, so an oversized replay is never loaded whole.
    pub fn missed(&self, resume: &Resume, log: &dyn RoomLog) -> Option<Vec<Message>> {
        if resume.epoch != self.head.epoch || resume.since > self.head.seq {
            return None;
        }
        let count = self.head.seq - resume.since;
        if count > u64::from(self.config.limits.recovery_window) {
            return None;
        }
        let max_bytes = self.config.limits.recovery_max_bytes;
        let messages = log.after(resume.since, count as u32, max_bytes).ok()?;
        let contiguous = messages.len() as u64 == count
            && messages.iter().zip(resume.since + 1..).all(|(m, expected)| m.seq == expected);
        // `size` undercounts a frame (keys, seq, escapes): the frames themselves decide.
        let bytes = messages
            .iter()
            .fold(0usize, |sum, m| sum.saturating_add(protocol::event("message:receive", m).len()));
        (contiguous && bytes <= max_bytes).then_some(messages)
    }

    /// The start of a Server-Sent Events stream: the missed messages when `resume` can be
    /// served, then `room:state` (with `recovered` when a resume position was given).
    pub fn open_event_stream(&self, resume: Option<&Resume>, log: &dyn RoomLog) -> String {
        let missed = resume.and_then(|r| self.missed(r, log));
        let mut state = json!({ "room": self.id, "seq": self.head.seq, "epoch": self.head.epoch });
        if resume.is_some() {
            state["recovered"] = Value::Bool(missed.is_some());
        }
        let mut out = String::from(": switchboard event stream\n\n");
        for message in missed.unwrap_or_default() {
            out.push_str(&self.message_event(&message));
        }
        out.push_str(&protocol::sse_event("room:state", None, &state));
        out
    }

    /// A message as a Server-Sent Event whose id, `<epoch>:<seq>`, is a resume position.
    pub fn message_event(&self, message: &Message) -> String {
        protocol::sse_event("message:receive", Some(&format!("{}:{}", self.head.epoch, message.seq)), message)
    }
}
