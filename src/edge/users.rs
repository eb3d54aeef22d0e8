//! The Worker's user routes (`/v1/users/me/...`, `/v1/notify`) and calls into user objects,
//! which user objects also use to reach each other.

use super::objects::{self, Kind};
use super::{config, http, Call};
use crate::core::admission::Admission;
use crate::core::auth;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::notify;
use crate::core::route::number_param;
use crate::core::user::policy_of;
use futures::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Method, ObjectNamespace, Request, Response};

/// Largest `POST /v1/notify` body: 1,000 user ids and a notification fit with room to spare.
const MAX_NOTIFY_BODY: usize = 256 * 1024;

fn user_request(
    user: &UserId,
    endpoint: &str,
    method: Method,
    body: Option<String>,
    admission: &Admission,
) -> Result<Request, Error> {
    objects::request(Kind::User, user.as_str(), endpoint, method, body, admission)
}

async fn forward(env: &Env, user: &UserId, req: Request) -> Result<Response, Error> {
    objects::send(env, Kind::User, user.as_str(), req).await
}

/// POSTs the JSON `body` to `user`'s object at `endpoint` and decodes the answer; an error
/// answer becomes the error it carries.
async fn call_user<T: DeserializeOwned>(
    users: &ObjectNamespace,
    user: &UserId,
    endpoint: &str,
    body: &str,
) -> Result<T, Error> {
    let req = user_request(user, endpoint, Method::Post, Some(body.to_owned()), &Admission::default())?;
    let mut response = objects::send_in(users, user.as_str(), req).await?;
    let status = response.status_code();
    let text = response.text().await.map_err(http::internal)?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text).map_err(|_| Error::new(ErrorCode::Internal, "unreadable answer"));
    }
    #[derive(serde::Deserialize)]
    struct Failure {
        error: Error,
    }
    Err(serde_json::from_str::<Failure>(&text)
        .map(|f| f.error)
        .unwrap_or_else(|_| Error::new(ErrorCode::Internal, format!("user object answered {status}"))))
}

/// Calls every user in `users` with the same body (serialized once), `concurrency` at a time;
/// answers in the order of `users`.
pub(crate) async fn fan_out<B: Serialize, T: DeserializeOwned>(
    env: &Env,
    users: Vec<UserId>,
    endpoint: &str,
    body: &B,
    concurrency: usize,
) -> Vec<(UserId, Result<T, Error>)> {
    let failed = |users: Vec<UserId>, e: Error| users.into_iter().map(|u| (u, Err(e.clone()))).collect();
    let body = match serde_json::to_string(body) {
        Ok(body) => body,
        Err(_) => return failed(users, Error::new(ErrorCode::Internal, "unencodable call")),
    };
    let namespace = match objects::namespace(env, Kind::User) {
        Ok(namespace) => namespace,
        Err(e) => return failed(users, e),
    };
    let (namespace, body) = (&namespace, body.as_str());
    stream::iter(users)
        .map(|user| async move {
            let answer = call_user(namespace, &user, endpoint, body).await;
            (user, answer)
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// Objects a user object calls at once when pushing to watchers or subscribing.
pub(crate) const CALL_CONCURRENCY: usize = 16;

/// The token's holder, with who they may watch: every route that opens a device or subscribes
/// sends the token's own rights, and a device's end (its token's expiry).
fn admission(identity: &auth::Identity, config: &Config) -> Admission {
    Admission {
        expires: Some(identity.expires),
        policy: Some(policy_of(identity, config)),
        ..Admission::default()
    }
}

/// `GET /v1/users/me/ws`: the caller's own object, with who they may watch.
pub(crate) async fn connect(call: &Call, env: &Env) -> Result<Response, Error> {
    let (creds, identity, config) = super::upgrade_identity(call, env)?;
    let admission =
        Admission { protocol: creds.protocol.map(str::to_owned), ..admission(&identity, &config) };
    let mut req = user_request(&identity.user, "connect", Method::Get, None, &admission)?;
    req.headers_mut().and_then(|h| h.set("upgrade", "websocket")).map_err(http::internal)?;
    forward(env, &identity.user, req).await
}

/// The user a `/v1/users/me/...` HTTP call is for: only a user token names one.
fn me(call: &Call, env: &Env) -> Result<UserId, Error> {
    Ok(call.user(&*config(env)?)?.user)
}

/// `GET /v1/users/me/notifications?before=&limit=`.
pub(crate) async fn notifications(call: &Call, env: &Env) -> Result<Response, Error> {
    let user = me(call, env)?;
    let mut endpoint = String::from("notifications?");
    if let Some(before) = number_param("before", call.query("before").as_deref())? {
        endpoint.push_str(&format!("before={before}&"));
    }
    if let Some(limit) = number_param("limit", call.query("limit").as_deref())? {
        endpoint.push_str(&format!("limit={limit}"));
    }
    forward(env, &user, user_request(&user, &endpoint, Method::Get, None, &Admission::default())?).await
}

/// `POST /v1/users/me/notifications/read` with `{"ids": [...]}` or `{"all": true}`.
pub(crate) async fn read(call: &mut Call, env: &Env) -> Result<Response, Error> {
    let user = me(call, env)?;
    let body = call.body(64 * 1024).await?;
    forward(env, &user, user_request(&user, "read", Method::Post, Some(body), &Admission::default())?).await
}

/// `GET /v1/users/me/events`: the caller's object as Server-Sent Events (the token from
/// `Authorization` or `?token=`, as `EventSource` cannot set headers), with who they may watch
/// and when the stream ends.
pub(crate) async fn events(call: &Call, env: &Env) -> Result<Response, Error> {
    let config = config(env)?;
    let identity = call.user(&config)?;
    let req = user_request(&identity.user, "events", Method::Get, None, &admission(&identity, &config))?;
    forward(env, &identity.user, req).await
}

/// Largest body of the fallback's writes (`status`, `active`, `subscribe`, `unsubscribe`):
/// `PRESENCE_MAX_WATCH` ids and more fit.
const MAX_WRITE_BODY: usize = 64 * 1024;

/// `POST /v1/users/me/{status,active,subscribe,unsubscribe}`: what a user socket's
/// `presence:*` frames do, for clients on the event-stream fallback; `endpoint` names the
/// object's handler.
pub(crate) async fn write(call: &mut Call, env: &Env, endpoint: &str) -> Result<Response, Error> {
    let config = config(env)?;
    let identity = call.user(&config)?;
    let body = call.body(MAX_WRITE_BODY).await?;
    // A subscribe is judged by the token that asks, not by the one a device last connected with.
    let req =
        user_request(&identity.user, endpoint, Method::Post, Some(body), &admission(&identity, &config))?;
    forward(env, &identity.user, req).await
}

/// `GET /v1/users/:user/stats` (server key).
pub(crate) async fn stats(call: &Call, env: &Env, user: &UserId) -> Result<Response, Error> {
    let config = config(env)?;
    auth::check_server_key(call.header("authorization").as_deref(), config.server_api_key.as_deref())?;
    forward(env, user, user_request(user, "stats", Method::Get, None, &Admission::default())?).await
}

/// `POST /v1/notify` (server key): stores the notification in every listed user's inbox,
/// [`notify::CONCURRENCY`] objects at a time, and reports each user's outcome with 202.
pub(crate) async fn notify(call: &mut Call, env: &Env) -> Result<Response, Error> {
    let config = config(env)?;
    auth::check_server_key(call.header("authorization").as_deref(), config.server_api_key.as_deref())?;
    let body = call.body(MAX_NOTIFY_BODY).await?;
    let request = notify::parse(&body, call.header("idempotency-key"), config.limits.max_text_chars)?;
    let answers = fan_out(env, request.users, "notify", &request.delivery, notify::CONCURRENCY).await;
    http::json(202, &notify::response(answers))
}
