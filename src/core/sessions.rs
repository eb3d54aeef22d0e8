//! The connections of one object, as every object core keeps them: each socket's attachment
//! data, its strikes, and its token's deadline (the `exp` plus the leeway, one timer each).
//!
//! Every frame passes through here twice. [`Sessions::receive`] finds the sender and decodes
//! the envelope; a socket past its deadline is closed (4001) unless the frame is
//! `auth:refresh`. Then the object dispatches the request, and [`Sessions::settle`] turns an
//! error into the failure frame (a `reply` or an `error`), a strike, and at the limit a 4002
//! close. `auth:refresh` itself is [`Sessions::refresh`]: the object only decides what the
//! new token allows. Rate budgets are not here: each object draws its own (per user and class
//! in rooms and documents, one bucket in user objects).

use crate::core::auth::{self, AuthConfig, Identity};
use crate::core::caps::Capabilities;
use crate::core::config::Config;
use crate::core::effect::{impl_attachment, reply, Attachment, Effect};
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::protocol::{self, DecodeError, Envelope, Incoming, Ref, Strikes};
use crate::core::time::Timestamp;
use crate::core::timers::Timers;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What rooms and documents keep per socket in its hibernation attachment (user objects keep
/// less: [`crate::core::user::UserConnInfo`]). Kept small: the runtime caps attachments at 2 KB.
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
    /// Whether the token allows writing (a room's `send`, a document's `write`); without it the
    /// socket is read-only.
    #[serde(rename = "w")]
    pub can_write: bool,
}

impl_attachment!(ConnInfo);

/// One open socket.
#[derive(Debug)]
struct Session<I> {
    info: I,
    strikes: Strikes,
}

/// The limits sessions enforce, from the object's [`crate::core::config::Config`].
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `MAX_FRAME_BYTES`.
    pub max_frame_bytes: usize,
    /// `MAX_STRIKES`.
    pub max_strikes: u32,
    /// `JWT_LEEWAY_SECS`.
    pub leeway_secs: i64,
}

impl SessionLimits {
    /// The limits `config` sets.
    pub fn of(config: &Config) -> SessionLimits {
        SessionLimits {
            max_frame_bytes: config.limits.max_frame_bytes,
            max_strikes: config.limits.max_strikes,
            leeway_secs: config.auth.leeway_secs,
        }
    }
}

/// An object's open sockets.
#[derive(Debug)]
pub struct Sessions<I> {
    limits: SessionLimits,
    conns: BTreeMap<ConnId, Session<I>>,
    /// Each socket's token deadline.
    expiry: Timers<ConnId>,
}

/// A frame from a known socket that may be heard: who sent it and what it decoded to.
pub type Received<I> = (I, Result<Envelope, DecodeError>);

impl<I: Attachment> Sessions<I> {
    /// No sockets yet.
    pub fn new(limits: SessionLimits) -> Sessions<I> {
        Sessions { limits, conns: BTreeMap::new(), expiry: Timers::default() }
    }

    /// Adds a socket and arms its token deadline; `false` when it was already there (then its
    /// data is replaced).
    pub fn add(&mut self, info: I) -> bool {
        let conn = info.conn().clone();
        self.expiry.set(conn.clone(), self.deadline(info.expires()));
        match self.conns.get_mut(&conn) {
            Some(session) => {
                session.info = info;
                false
            }
            None => {
                self.conns.insert(conn, Session { info, strikes: Strikes::default() });
                true
            }
        }
    }

    /// Forgets a socket; its data when it was open.
    pub fn remove(&mut self, conn: &ConnId) -> Option<I> {
        self.expiry.cancel(conn);
        self.conns.remove(conn).map(|s| s.info)
    }

    /// A socket's data.
    pub fn get(&self, conn: &ConnId) -> Option<&I> {
        self.conns.get(conn).map(|s| &s.info)
    }

    /// Open sockets, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &I> {
        self.conns.values().map(|s| &s.info)
    }

    /// How many sockets are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The earliest token deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.expiry.next()
    }

    /// When a token that expires at `expires` stops being honoured: `exp` plus the leeway.
    pub fn deadline(&self, expires: Timestamp) -> Timestamp {
        protocol::token_deadline(expires, self.limits.leeway_secs)
    }

    /// The alarm fired: a 4001 close for every socket whose token deadline passed.
    pub fn expired<W, C>(&mut self, now: Timestamp) -> Vec<Effect<W, C, I>> {
        self.expiry.pop_due(now).into_iter().map(expired).collect()
    }

    /// The first step of every frame: `Ok` with the sender and the decoded envelope when the
    /// frame is to be handled; `Err` with what ends it here (nothing for an unknown socket, a
    /// 4001 close past the token's deadline: the alarm may run late, or not yet after a wake).
    pub fn receive<W, C>(
        &self,
        conn: &ConnId,
        frame: Incoming<'_>,
        now: Timestamp,
    ) -> Result<Received<I>, Vec<Effect<W, C, I>>> {
        let Some(sender) = self.get(conn).cloned() else { return Err(Vec::new()) };
        let decoded = protocol::decode(frame, self.limits.max_frame_bytes);
        if protocol::expired_frame(&decoded, now, self.deadline(sender.expires())) {
            return Err(vec![expired(conn.clone())]);
        }
        Ok((sender, decoded))
    }

    /// The last step of every frame: the request's effects, or for an error the failure frame
    /// and a strike (the `max_strikes`-th within the window closes the socket with 4002).
    pub fn settle<W, C>(
        &mut self,
        conn: &ConnId,
        reply_to: Option<&Ref>,
        outcome: Result<Vec<Effect<W, C, I>>, Error>,
        now: Timestamp,
    ) -> Vec<Effect<W, C, I>> {
        let error = match outcome {
            Ok(effects) => return effects,
            Err(error) => error,
        };
        let mut effects = vec![Effect::Send { to: conn.clone(), frame: protocol::failure(reply_to, &error) }];
        let max = self.limits.max_strikes;
        if self.conns.get_mut(conn).is_some_and(|s| s.strikes.record(&error, max, now)) {
            effects.push(Effect::Close {
                conn: conn.clone(),
                code: close::PROTOCOL_ABUSE,
                reason: protocol::ABUSE_REASON,
            });
        }
        effects
    }

    /// `auth:refresh` on `conn`, whose user is `user`: the token must verify and name the same
    /// user; `rights` decides from it what the socket may now do (its new data, or a refusal).
    /// The new data is kept and the deadline moved; the caller emits `UpdateConn` and replies.
    pub fn refresh(
        &mut self,
        conn: &ConnId,
        user: &UserId,
        token: &str,
        auth: &AuthConfig,
        now: Timestamp,
        rights: impl FnOnce(&Identity, &I) -> Result<I, Error>,
    ) -> Result<I, Error> {
        let identity = auth::verify(token, auth, now)?;
        if identity.user != *user {
            return Err(Error::new(ErrorCode::Forbidden, "the new token is for another user"));
        }
        let current = self.get(conn).ok_or_else(|| Error::new(ErrorCode::Internal, "unknown connection"))?;
        let info = rights(&identity, current)?;
        self.add(info.clone());
        Ok(info)
    }
}

/// How a room or a document judges the token of one of its sockets, in the object's own words
/// (clients may read them): what the token's capabilities allow there, what the `auth:refresh`
/// reply calls the write right, and why a new token that no longer lets the socket in is refused.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// From a token's capabilities and the object's id: whether a socket may be open there (a
    /// room's `join`, a document's `read`), and whether it may write (`send`, `write`).
    pub rights: fn(&Capabilities, &str) -> (bool, bool),
    /// The `auth:refresh` reply's field for the write right (`canSend`, `canWrite`).
    pub write_field: &'static str,
    /// The message of the `forbidden` refusal of a new token that does not let the socket stay.
    pub refused: &'static str,
}

impl Sessions<ConnInfo> {
    /// `auth:refresh` on a socket of the room or document `id`: the new token's rights there
    /// ([`Access::rights`], with the configured default capabilities for a token without any)
    /// must still let the socket in, or the refresh is refused ([`Access::refused`]); its write
    /// right replaces the old one. Answers `UpdateConn` and the reply `{"expires", <write_field>}`.
    #[allow(clippy::too_many_arguments)]
    pub fn refresh_rights<W, C>(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<&Ref>,
        token: &str,
        config: &Config,
        id: &str,
        access: &Access,
        now: Timestamp,
    ) -> Result<Vec<Effect<W, C, ConnInfo>>, Error> {
        let info =
            self.refresh(&sender.conn, &sender.user, token, &config.auth, now, |identity, current| {
                let (stays, can_write) = (access.rights)(identity.caps_or(&config.default_caps), id);
                if !stays {
                    return Err(Error::new(ErrorCode::Forbidden, access.refused));
                }
                Ok(ConnInfo { expires: identity.expires, can_write, ..current.clone() })
            })?;
        let mut data = serde_json::Map::new();
        data.insert("expires".into(), serde_json::json!(info.expires));
        data.insert(access.write_field.into(), serde_json::Value::Bool(info.can_write));
        let mut effects = vec![Effect::UpdateConn(info)];
        effects.extend(reply(&sender.conn, reply_to, &data));
        Ok(effects)
    }
}

/// Splits a decoded frame into the `ref` its answer goes to and the envelope (or the error that
/// answers it).
pub fn split(decoded: Result<Envelope, DecodeError>) -> (Option<Ref>, Result<Envelope, Error>) {
    match decoded {
        Err(e) => (e.reply_to, Err(e.error)),
        Ok(envelope) => (envelope.reply_to.clone(), Ok(envelope)),
    }
}

/// Closes a socket whose token expired (past the leeway) without a refresh.
fn expired<W, C, I>(conn: ConnId) -> Effect<W, C, I> {
    Effect::Close { conn, code: close::TOKEN_EXPIRED, reason: protocol::EXPIRED_REASON }
}
