//! The Worker's own checks of each route, after routing ([`crate::core::route`]) and the origin,
//! as a pure function: the upgrade, the credentials, the token or server key, the caller's
//! rights and the query, in the documented order; and where a request that passes goes — which
//! object, which of its endpoints, and the [`Admission`] that carries what was verified.
//!
//! The Worker reads the request's headers and query through [`Asked`], reads a body when the
//! [`Plan`] asks for one, and sends; it decides nothing itself.

use crate::core::admission::Admission;
use crate::core::auth::{self, Caller, Identity};
use crate::core::caps::{DocRights, RoomRights};
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::RoomId;
use crate::core::room::{Publish, Resume};
use crate::core::route::{number_param, resume_from_event_id, resume_query, usable_epoch, Route};
use crate::core::time::Timestamp;
use crate::core::user::policy_of;
use std::ops::Deref;

/// Largest body of a user's writes (`notifications/read`, `status`, `active`, `subscribe`,
/// `unsubscribe`): `PRESENCE_MAX_WATCH` ids and more fit.
pub const MAX_WRITE_BODY: usize = 64 * 1024;

/// The endpoint every kind of object takes a socket at (a WebSocket upgrade).
pub const CONNECT: &str = "connect";

/// The parts of a request the checks read.
pub trait Asked {
    /// A header's value.
    fn header(&self, name: &str) -> Option<String>;
    /// A query parameter's decoded value.
    fn query(&self, name: &str) -> Option<String>;
}

/// The three kinds of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A room (`ROOMS`).
    Room,
    /// A user object (`USERS`).
    User,
    /// A document (`DOCS`).
    Doc,
}

/// A request for one object, with what the Worker verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// Which kind of object.
    pub kind: ObjectKind,
    /// The object's name: a room, user or document id.
    pub id: String,
    /// The object's endpoint ([`CONNECT`] for a socket).
    pub endpoint: &'static str,
    /// What the Worker verified, and the caller's page or resume position.
    pub admission: Admission,
    /// The caller's body is read (at most this many bytes) and passed on: a request with a body
    /// is a POST, any other a GET.
    pub body: Option<usize>,
}

impl Forward {
    /// Whether the request is a WebSocket upgrade.
    pub fn is_socket(&self) -> bool {
        self.endpoint == CONNECT
    }
}

/// What the Worker does with a request whose checks passed.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// `GET /healthz`: answer at once.
    Health,
    /// `POST /v1/dev/token`: the Worker mints (see [`crate::core::dev_token`]).
    DevToken,
    /// `POST /v1/notify`, the server key checked: the body goes to [`crate::core::notify::parse`],
    /// then to every user's object.
    Notify,
    /// `POST /v1/rooms/:room/messages`: the body decides the author ([`Publishing::forward`]).
    Publish(Publishing),
    /// Everything else: one object's endpoint.
    Forward(Forward),
}

/// A publish whose caller is known; its body names the message, and for an app server its author.
#[derive(Debug, Clone, PartialEq)]
pub struct Publishing {
    room: RoomId,
    caller: Caller,
    /// The most of the body to read: one frame's worth.
    pub max_body: usize,
    idempotency_key: Option<String>,
}

impl Publishing {
    /// The room's request once `body` is read: a 400 when it is not a message, a 403 when a user
    /// may not send to the room.
    pub fn forward(self, body: &str, config: &Config) -> Result<Forward, Error> {
        let publish: Publish = serde_json::from_str(body).map_err(|e| {
            Error::new(ErrorCode::BadRequest, format!("body must be {{\"text\", \"data\"?, \"user\"?}}: {e}"))
        })?;
        let author = publish.author(&self.caller, &config.default_caps, &self.room)?;
        let admission = Admission {
            user: Some(author),
            server: self.caller == Caller::Server,
            idempotency_key: self.idempotency_key,
            ..Admission::default()
        };
        Ok(Forward {
            kind: ObjectKind::Room,
            id: self.room.to_string(),
            endpoint: "publish",
            admission,
            body: Some(self.max_body),
        })
    }
}

/// Checks `route` for the request `asked` at `now` and says what to do with it. The settings are
/// read only where the route's checks reach them (`config`): a socket route's upgrade and
/// subprotocol checks come first, so they answer even while a setting is unusable.
pub fn plan<C: Deref<Target = Config>>(
    route: &Route,
    asked: &impl Asked,
    config: impl FnOnce() -> Result<C, Error>,
    now: Timestamp,
) -> Result<Plan, Error> {
    use ObjectKind::{Doc, Room, User};
    let to = |kind, id: &str, endpoint, admission| {
        Plan::Forward(Forward { kind, id: id.to_owned(), endpoint, admission, body: None })
    };
    // A user's write to their own object, with its body.
    let write = |identity: Identity, endpoint, admission| {
        let id = identity.user.to_string();
        Plan::Forward(Forward { kind: User, id, endpoint, admission, body: Some(MAX_WRITE_BODY) })
    };
    Ok(match route {
        Route::Health => Plan::Health,
        Route::DevToken => Plan::DevToken,
        Route::RoomSocket(room) => {
            let (protocol, identity, config) = upgrade(asked, config, now)?;
            let rights = RoomRights::to_join(identity.caps_or(&config.default_caps), room)?;
            let resume = resume_query(asked.query("since").as_deref(), asked.query("epoch").as_deref())?;
            let admission = Admission { can_write: rights.send, protocol, ..resuming(&identity, resume) };
            to(Room, room.as_str(), CONNECT, admission)
        }
        Route::UserSocket => {
            let (protocol, identity, config) = upgrade(asked, config, now)?;
            to(User, identity.user.as_str(), CONNECT, Admission { protocol, ..device(&identity, &config) })
        }
        Route::DocSocket(doc) => {
            let (protocol, identity, config) = upgrade(asked, config, now)?;
            let rights = DocRights::to_read(identity.caps_or(&config.default_caps), doc)?;
            let since = number_param("v", asked.query("v").as_deref())?;
            let epoch = asked.query("epoch");
            if epoch.as_ref().is_some_and(|e| e.is_empty() || !usable_epoch(e)) {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    "epoch must be 1 to 64 printable ASCII characters",
                ));
            }
            let admission = Admission {
                user: Some(identity.user),
                expires: Some(identity.expires),
                can_write: rights.write,
                since,
                epoch: since.and(epoch),
                protocol,
                ..Admission::default()
            };
            to(Doc, doc.as_str(), CONNECT, admission)
        }
        // Operators' counters: the server key.
        Route::RoomStats(room) => stats(asked, &*config()?, Room, room.as_str())?,
        Route::UserStats(user) => stats(asked, &*config()?, User, user.as_str())?,
        Route::DocStats(doc) => stats(asked, &*config()?, Doc, doc.as_str())?,
        Route::RoomHistory(room) => {
            let config = config()?;
            let identity = user(asked, &config, now)?;
            RoomRights::to_join(identity.caps_or(&config.default_caps), room)?;
            let (before, limit) = page(asked)?;
            // The page is drawn from this user's read budget in the room.
            let admission = Admission { user: Some(identity.user), before, limit, ..Admission::default() };
            to(Room, room.as_str(), "history", admission)
        }
        Route::RoomEvents(room) => {
            let config = config()?;
            let identity = user(asked, &config, now)?;
            RoomRights::to_join(identity.caps_or(&config.default_caps), room)?;
            let resume = match asked.header("last-event-id").and_then(|id| resume_from_event_id(&id)) {
                Some(resume) => Some(resume),
                None => resume_query(asked.query("since").as_deref(), asked.query("epoch").as_deref())?,
            };
            // The room counts the stream against the user's socket limit and ends it at the expiry.
            to(Room, room.as_str(), "events", resuming(&identity, resume))
        }
        Route::RoomPublish(room) => {
            let config = config()?;
            Plan::Publish(Publishing {
                room: room.clone(),
                caller: caller(asked, &config, now)?,
                max_body: config.limits.max_frame_bytes,
                idempotency_key: asked.header("idempotency-key"),
            })
        }
        Route::UserNotifications => {
            let identity = user(asked, &*config()?, now)?;
            let (before, limit) = page(asked)?;
            let admission = Admission { before, limit, ..Admission::default() };
            to(User, identity.user.as_str(), "notifications", admission)
        }
        Route::UserRead => write(user(asked, &*config()?, now)?, "read", Admission::default()),
        Route::UserEvents => {
            let config = config()?;
            let identity = user(asked, &config, now)?;
            to(User, identity.user.as_str(), "events", device(&identity, &config))
        }
        // The fallback's writes: what a user socket's `presence:*` frames do. A subscribe is
        // judged by the token that asks, not by the one a device last connected with.
        Route::UserStatus | Route::UserActive | Route::UserSubscribe | Route::UserUnsubscribe => {
            let config = config()?;
            let identity = user(asked, &config, now)?;
            let endpoint = match route {
                Route::UserStatus => "status",
                Route::UserActive => "active",
                Route::UserSubscribe => "subscribe",
                _ => "unsubscribe",
            };
            let admission = device(&identity, &config);
            write(identity, endpoint, admission)
        }
        Route::Notify => {
            server_key(asked, &*config()?)?;
            Plan::Notify
        }
        Route::DocGet(doc) => {
            let config = config()?;
            if let Caller::User(identity) = caller(asked, &config, now)? {
                DocRights::to_read(identity.caps_or(&config.default_caps), doc)?;
            }
            to(Doc, doc.as_str(), "snapshot", Admission::default())
        }
    })
}

/// The checks every socket route makes, in the documented order: an upgrade (426), usable
/// credentials (400/401), a valid token (401). Answers the subprotocol to echo.
fn upgrade<C: Deref<Target = Config>>(
    asked: &impl Asked,
    config: impl FnOnce() -> Result<C, Error>,
    now: Timestamp,
) -> Result<(Option<String>, Identity, C), Error> {
    let is_upgrade = asked.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Err(Error::new(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade"));
    }
    let creds = auth::upgrade_credentials(
        asked.header("authorization").as_deref(),
        asked.header("sec-websocket-protocol").as_deref(),
        asked.query("token").as_deref(),
    )?;
    let config = config()?;
    let identity = auth::authenticate(&creds, &config.auth, now)?;
    Ok((creds.protocol.map(str::to_owned), identity, config))
}

/// A server route: the server key, then the object's counters.
fn stats(asked: &impl Asked, config: &Config, kind: ObjectKind, id: &str) -> Result<Plan, Error> {
    server_key(asked, config)?;
    let stats =
        Forward { kind, id: id.to_owned(), endpoint: "stats", admission: Admission::default(), body: None };
    Ok(Plan::Forward(stats))
}

/// An app server's route: `Authorization: Bearer <SERVER_API_KEY>` (see [`auth::check_server_key`]).
fn server_key(asked: &impl Asked, config: &Config) -> Result<(), Error> {
    auth::check_server_key(asked.header("authorization").as_deref(), config.server_api_key.as_deref())
}

/// The caller of a route app servers and users share (see [`auth::http_caller`]).
fn caller(asked: &impl Asked, config: &Config, now: Timestamp) -> Result<Caller, Error> {
    let (authorization, token) = (asked.header("authorization"), asked.query("token"));
    let key = config.server_api_key.as_deref();
    auth::http_caller(authorization.as_deref(), token.as_deref(), key, &config.auth, now)
}

/// The user calling a route only users call (see [`auth::http_user`]).
fn user(asked: &impl Asked, config: &Config, now: Timestamp) -> Result<Identity, Error> {
    let (authorization, token) = (asked.header("authorization"), asked.query("token"));
    auth::http_user(authorization.as_deref(), token.as_deref(), &config.auth, now)
}

/// `?before=&limit=` of a history or inbox page (400 unless whole numbers).
fn page(asked: &impl Asked) -> Result<(Option<u64>, Option<u32>), Error> {
    let before = number_param("before", asked.query("before").as_deref())?;
    let limit = number_param("limit", asked.query("limit").as_deref())?;
    Ok((before, limit.map(|l| u32::try_from(l).unwrap_or(u32::MAX))))
}

/// The token's holder in a room, resuming after `resume`.
fn resuming(identity: &Identity, resume: Option<Resume>) -> Admission {
    Admission {
        user: Some(identity.user.clone()),
        expires: Some(identity.expires),
        since: resume.as_ref().map(|r| r.since),
        epoch: resume.map(|r| r.epoch),
        ..Admission::default()
    }
}

/// The token's holder opening a device of their own user object (or subscribing): who they may
/// watch, and when the device ends (its token's expiry).
fn device(identity: &Identity, config: &Config) -> Admission {
    Admission {
        expires: Some(identity.expires),
        policy: Some(policy_of(identity, config)),
        ..Admission::default()
    }
}
