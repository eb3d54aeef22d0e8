//! The room state machine: members, messages and history for one room.
//!
//! It owns the in-memory view of the room (sequence head, who is connected) and answers every
//! input with [`Effect`]s. It does not own sockets, storage or time: the shell rebuilds it after a
//! wake from the log head and the sockets' attachments ([`Room::restore_conn`]), reads history
//! through [`MessageLog`], and passes `now`.

use crate::core::config::Limits;
use crate::core::effect::Effect;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, RoomId, UserId};
use crate::core::log::{LogHead, Message, MessageLog};
use crate::core::protocol::{self, Envelope, Incoming, Ref};
use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Longest client message id, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// History page size when `history:get` names no `limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// What the shell keeps per socket (in its hibernation attachment) to rebuild the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// The connection id.
    #[serde(rename = "c")]
    pub conn: ConnId,
    /// The authenticated user.
    #[serde(rename = "u")]
    pub user: UserId,
    /// When the socket's token expires.
    #[serde(rename = "x")]
    pub expires: Timestamp,
}

#[derive(Debug)]
struct Connection {
    info: ConnInfo,
    /// Consecutive rejected frames; reset by any accepted one.
    strikes: u32,
}

/// One room's live state.
#[derive(Debug)]
pub struct Room {
    id: RoomId,
    head: LogHead,
    limits: Limits,
    conns: BTreeMap<ConnId, Connection>,
    /// Open sockets per user: members are the keys.
    members: BTreeMap<UserId, usize>,
}

#[derive(Deserialize)]
struct SendPayload {
    text: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct HistoryPayload {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

impl Room {
    /// A room whose log stands at `head`, with no connections yet.
    pub fn new(id: RoomId, head: LogHead, limits: Limits) -> Room {
        Room { id, head, limits, conns: BTreeMap::new(), members: BTreeMap::new() }
    }

    /// The room id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// The last assigned sequence number.
    pub fn seq(&self) -> u64 {
        self.head.seq
    }

    /// The log's epoch.
    pub fn epoch(&self) -> &str {
        &self.head.epoch
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Users with at least one open connection, in id order.
    pub fn members(&self) -> impl Iterator<Item = &UserId> {
        self.members.keys()
    }

    /// Re-adds a connection that survived hibernation; announces nothing.
    pub fn restore_conn(&mut self, info: ConnInfo) {
        self.add(info);
    }

    fn add(&mut self, info: ConnInfo) -> bool {
        let user = info.user.clone();
        if self.conns.insert(info.conn.clone(), Connection { info, strikes: 0 }).is_some() {
            return false;
        }
        let count = self.members.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A socket was accepted: greet it with `room:state` and announce a new member to the others.
    pub fn handle_connect(&mut self, info: ConnInfo, _now: Timestamp) -> Vec<Effect> {
        let conn = info.conn.clone();
        let user = info.user.clone();
        let first_socket = self.add(info);
        let members: Vec<Value> = self.members().map(|u| json!({ "user": u })).collect();
        let state = json!({
            "room": self.id,
            "connId": conn,
            "user": user,
            "seq": self.head.seq,
            "epoch": self.head.epoch,
            "members": members,
        });
        let mut effects =
            vec![Effect::Send { to: conn.clone(), frame: protocol::event("room:state", &state) }];
        if first_socket {
            effects.push(Effect::Broadcast {
                except: Some(conn),
                frame: protocol::event("member:join", &json!({ "user": user })),
            });
        }
        effects
    }

    /// A socket closed (or errored): forget it and announce a departure on the user's last one.
    pub fn handle_close(&mut self, conn: &ConnId) -> Vec<Effect> {
        let Some(gone) = self.conns.remove(conn) else { return Vec::new() };
        let user = gone.info.user;
        let last_socket = match self.members.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.members.remove(&user);
                true
            }
            None => false,
        };
        if last_socket {
            vec![Effect::Broadcast {
                except: None,
                frame: protocol::event("member:leave", &json!({ "user": user })),
            }]
        } else {
            Vec::new()
        }
    }

    /// A frame arrived on `conn`.
    pub fn handle_frame(
        &mut self,
        conn: &ConnId,
        frame: Incoming<'_>,
        now: Timestamp,
        log: &dyn MessageLog,
    ) -> Vec<Effect> {
        let Some(sender) = self.conns.get(conn).map(|c| c.info.clone()) else { return Vec::new() };
        let (reply_to, outcome) = match protocol::decode(frame, self.limits.max_frame_bytes) {
            Err(e) => (e.reply_to, Err(e.error)),
            Ok(envelope) => {
                let reply_to = envelope.reply_to.clone();
                (reply_to, self.dispatch(&sender, envelope, now, log))
            }
        };
        match outcome {
            Ok(effects) => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.strikes = 0;
                }
                effects
            }
            Err(error) => self.reject(conn, reply_to.as_ref(), &error),
        }
    }

    fn reject(&mut self, conn: &ConnId, reply_to: Option<&Ref>, error: &Error) -> Vec<Effect> {
        let mut effects = vec![Effect::Send { to: conn.clone(), frame: protocol::failure(reply_to, error) }];
        let strikes = match self.conns.get_mut(conn) {
            Some(c) => {
                c.strikes += 1;
                c.strikes
            }
            None => 0,
        };
        if strikes >= self.limits.max_strikes {
            effects.push(Effect::Close {
                conn: conn.clone(),
                code: close::PROTOCOL_ABUSE,
                reason: "too many bad frames",
            });
        }
        effects
    }

    fn dispatch(
        &mut self,
        sender: &ConnInfo,
        envelope: Envelope,
        now: Timestamp,
        log: &dyn MessageLog,
    ) -> Result<Vec<Effect>, Error> {
        let Envelope { event, reply_to, data } = envelope;
        match event.as_str() {
            "message:send" => self.send_message(sender, reply_to, protocol::payload(&event, &data)?, now),
            "history:get" => self.history(sender, reply_to, protocol::payload(&event, &data)?, log),
            _ => Err(Error::new(ErrorCode::UnknownEvent, format!("unknown event {event:?}"))),
        }
    }

    fn send_message(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: SendPayload,
        now: Timestamp,
    ) -> Result<Vec<Effect>, Error> {
        if p.text.chars().count() > self.limits.max_text_chars {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("text is over {} characters", self.limits.max_text_chars),
            ));
        }
        let data = p.data.filter(|d| !d.is_null());
        if p.text.is_empty() && data.is_none() {
            return Err(Error::new(ErrorCode::BadRequest, "message needs a text or data"));
        }
        if let Some(id) = &p.id {
            if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN || id.chars().any(char::is_control) {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("id must be 1 to {MAX_MESSAGE_ID_LEN} bytes without control characters"),
                ));
            }
        }
        let seq = self.head.seq + 1;
        let message = Message {
            room: self.id.clone(),
            seq,
            id: p.id.unwrap_or_else(|| format!("{}-{seq}", self.head.epoch)),
            user: sender.user.clone(),
            text: p.text,
            data,
            ts: now,
        };
        self.head.seq = seq;
        let mut effects = Vec::with_capacity(3);
        effects.push(Effect::Append(message.clone()));
        if let Some(r) = reply_to {
            let ack = json!({ "seq": seq, "id": message.id, "ts": message.ts });
            effects.push(Effect::Send { to: sender.conn.clone(), frame: protocol::reply_ok(&r, &ack) });
        }
        effects.push(Effect::Broadcast {
            except: Some(sender.conn.clone()),
            frame: protocol::event("message:receive", &message),
        });
        Ok(effects)
    }

    fn history(
        &self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: HistoryPayload,
        log: &dyn MessageLog,
    ) -> Result<Vec<Effect>, Error> {
        let reply_to = reply_to
            .ok_or_else(|| Error::new(ErrorCode::BadRequest, "history:get needs a ref to reply to"))?;
        let limit = p.limit.unwrap_or(DEFAULT_HISTORY_LIMIT).clamp(1, self.limits.history_page_max);
        let messages = log
            .page(p.before, limit)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("could not read history: {}", e.0)))?;
        let frame = protocol::reply_ok(&reply_to, &json!({ "messages": messages }));
        Ok(vec![Effect::Send { to: sender.conn.clone(), frame }])
    }
}
