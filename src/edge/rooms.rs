//! The Worker's room routes: the socket, server and user publishing, history, the event
//! stream, and operators' stats.

use super::objects::{self, Kind};
use super::{config, http, upgrade_identity, Call};
use crate::core::admission::Admission;
use crate::core::auth::{self, Caller};
use crate::core::caps::RoomRights;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::RoomId;
use crate::core::room::{Publish, Resume};
use crate::core::route::{number_param, resume_from_event_id, resume_query};
use worker::{Env, Method, Request, Response};

/// A user's rights in `room` (403 when they may not join it).
fn join_rights(identity: &auth::Identity, config: &Config, room: &RoomId) -> Result<RoomRights, Error> {
    RoomRights::to_join(identity.caps_or(&config.default_caps), room)
}

/// The caller `identity`, resuming after `resume`.
fn admission(identity: &auth::Identity, resume: Option<Resume>) -> Admission {
    Admission {
        user: Some(identity.user.clone()),
        expires: Some(identity.expires),
        since: resume.as_ref().map(|r| r.since),
        epoch: resume.map(|r| r.epoch),
        ..Admission::default()
    }
}

/// `GET /v1/rooms/:room/stats` (server key).
pub(crate) async fn stats(call: &Call, env: &Env, room: &RoomId) -> Result<Response, Error> {
    let config = config(env)?;
    auth::check_server_key(call.header("authorization").as_deref(), config.server_api_key.as_deref())?;
    forward(env, room, room_request(room, "stats", Method::Get, &Admission::default())?).await
}

/// `GET /v1/rooms/:room/messages?before=&limit=`: a history page for a user who may join.
pub(crate) async fn history(call: &Call, env: &Env, room: &RoomId) -> Result<Response, Error> {
    let config = config(env)?;
    let identity = call.user(&config)?;
    join_rights(&identity, &config, room)?;
    let before = number_param("before", call.query("before").as_deref())?;
    let limit = number_param("limit", call.query("limit").as_deref())?;
    let mut path = String::from("history?");
    if let Some(before) = before {
        path.push_str(&format!("before={before}&"));
    }
    if let Some(limit) = limit {
        path.push_str(&format!("limit={}", limit.min(u64::from(u32::MAX))));
    }
    // The page is drawn from this user's read budget in the room.
    let admission = Admission { user: Some(identity.user), ..Admission::default() };
    forward(env, room, room_request(room, &path, Method::Get, &admission)?).await
}

/// `GET /v1/rooms/:room/events`: the event stream, resumed from `Last-Event-ID` or
/// `?since=&epoch=`.
pub(crate) async fn events(call: &Call, env: &Env, room: &RoomId) -> Result<Response, Error> {
    let config = config(env)?;
    let identity = call.user(&config)?;
    join_rights(&identity, &config, room)?;
    let resume = match call.header("last-event-id").and_then(|id| resume_from_event_id(&id)) {
        Some(resume) => Some(resume),
        None => resume_query(call.query("since").as_deref(), call.query("epoch").as_deref())?,
    };
    // The room counts the stream against the user's socket limit and ends it at the expiry.
    let req = room_request(room, "events", Method::Get, &admission(&identity, resume))?;
    forward(env, room, req).await
}

/// `GET /v1/rooms/:room/ws`: the common checks, then the room's (403), then the upgrade goes to
/// the room.
pub(crate) async fn connect(call: &Call, env: &Env, room: &RoomId) -> Result<Response, Error> {
    let (creds, identity, config) = upgrade_identity(call, env)?;
    let rights = join_rights(&identity, &config, room)?;
    let resume = resume_query(call.query("since").as_deref(), call.query("epoch").as_deref())?;

    let admission = Admission {
        can_write: rights.send,
        protocol: creds.protocol.map(str::to_owned),
        ..admission(&identity, resume)
    };
    let mut req = room_request(room, "connect", Method::Get, &admission)?;
    req.headers_mut().and_then(|h| h.set("upgrade", "websocket")).map_err(http::internal)?;
    forward(env, room, req).await
}

/// `POST /v1/rooms/:room/messages`: an app server (any author, default `system`) or a user
/// (the author is the token's `sub`; needs `send`).
pub(crate) async fn publish(call: &mut Call, env: &Env, room: &RoomId) -> Result<Response, Error> {
    let config = config(env)?;
    let caller = call.caller(&config)?;
    let body = call.body(config.limits.max_frame_bytes).await?;
    let publish: Publish = serde_json::from_str(&body).map_err(|e| {
        Error::new(ErrorCode::BadRequest, format!("body must be {{\"text\", \"data\"?, \"user\"?}}: {e}"))
    })?;
    let author = publish.author(&caller, &config.default_caps, room)?;
    let admission = Admission {
        user: Some(author),
        server: matches!(caller, Caller::Server),
        idempotency_key: call.header("idempotency-key"),
        ..Admission::default()
    };
    let req = objects::request(Kind::Room, room.as_str(), "publish", Method::Post, Some(body), &admission)?;
    forward(env, room, req).await
}

/// A Worker → room object request for `endpoint`.
fn room_request(
    room: &RoomId,
    endpoint: &str,
    method: Method,
    admission: &Admission,
) -> Result<Request, Error> {
    objects::request(Kind::Room, room.as_str(), endpoint, method, None, admission)
}

async fn forward(env: &Env, room: &RoomId, req: Request) -> Result<Response, Error> {
    objects::send(env, Kind::Room, room.as_str(), req).await
}
