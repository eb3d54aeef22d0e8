//! The Worker's document routes: the editing socket, the snapshot, and operators' stats.

use super::objects::{self, Kind};
use super::{config, http, upgrade_identity, Call};
use crate::core::admission::Admission;
use crate::core::auth::{self, Caller};
use crate::core::caps::DocRights;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::DocId;
use crate::core::route::number_param;
use worker::{Env, Method, Request, Response};

fn doc_request(doc: &DocId, endpoint: &str, admission: &Admission) -> Result<Request, Error> {
    objects::request(Kind::Doc, doc.as_str(), endpoint, Method::Get, None, admission)
}

async fn forward(env: &Env, doc: &DocId, req: Request) -> Result<Response, Error> {
    objects::send(env, Kind::Doc, doc.as_str(), req).await
}

/// `GET /v1/docs/:doc/ws?v=&epoch=`: the common checks, `read` on the document (403), then the upgrade
/// goes to the document with the socket's rights and the version to resume from.
pub(crate) async fn connect(call: &Call, env: &Env, doc: &DocId) -> Result<Response, Error> {
    let (creds, identity, config) = upgrade_identity(call, env)?;
    let rights = DocRights::to_read(identity.caps_or(&config.default_caps), doc)?;
    let resume = number_param("v", call.query("v").as_deref())?;
    let epoch = call.query("epoch");
    if epoch.as_ref().is_some_and(|e| e.is_empty() || e.len() > 64) {
        return Err(Error::new(ErrorCode::BadRequest, "epoch must be 1 to 64 characters"));
    }
    let admission = Admission {
        user: Some(identity.user.clone()),
        expires: Some(identity.expires),
        can_write: rights.write,
        since: resume,
        epoch: resume.and(epoch),
        protocol: creds.protocol.map(str::to_owned),
        ..Admission::default()
    };
    let mut req = doc_request(doc, "connect", &admission)?;
    req.headers_mut().and_then(|h| h.set("upgrade", "websocket")).map_err(http::internal)?;
    forward(env, doc, req).await
}

/// `GET /v1/docs/:doc`: `{doc, v, text}` for a user who may read it, or an app server.
pub(crate) async fn get(call: &Call, env: &Env, doc: &DocId) -> Result<Response, Error> {
    let config = config(env)?;
    if let Caller::User(identity) = call.caller(&config)? {
        DocRights::to_read(identity.caps_or(&config.default_caps), doc)?;
    }
    forward(env, doc, doc_request(doc, "snapshot", &Admission::default())?).await
}

/// `GET /v1/docs/:doc/stats` (server key).
pub(crate) async fn stats(call: &Call, env: &Env, doc: &DocId) -> Result<Response, Error> {
    let config = config(env)?;
    auth::check_server_key(call.header("authorization").as_deref(), config.server_api_key.as_deref())?;
    forward(env, doc, doc_request(doc, "stats", &Admission::default())?).await
}
