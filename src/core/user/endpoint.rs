//! The user object's HTTP endpoints, which the Worker and other user objects call: each request
//! decoded once from its path and body into a typed [`Endpoint`], and the ones answered at once
//! answered by [`User::answer`] with a JSON body and effects. The shell reads the body, holds
//! event streams, and makes the calls a subscribe waits for.

use super::inbox::{Inbox, ReadRequest};
use super::request::{NotificationList, Users};
use super::watch::{PresenceUpdate, UnwatchRequest, WatchRequest};
use super::{StatusRequest, User, UserEffect};
use crate::core::admission::Admission;
use crate::core::error::{Error, ErrorCode};
use crate::core::notify::Delivery;
use crate::core::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// A request to a user object.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `GET /events`: an event stream ([`User::open_stream`]).
    Events,
    /// `POST /subscribe`: `presence:subscribe` over HTTP. The watched users' objects are asked
    /// first ([`User::subscribe_over_http`]), then [`User::subscribed`] answers.
    Subscribe(Users),
    /// Answered at once by [`User::answer`].
    Now(HttpRequest),
}

/// A request to a user object answered at once.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpRequest {
    /// `POST /notify`: one user's part of `POST /v1/notify`.
    Notify(Delivery),
    /// `GET /notifications`: a page of the inbox.
    List(NotificationList),
    /// `POST /read`: mark notifications read.
    Read(ReadRequest),
    /// `POST /status`: `presence:set` over HTTP.
    Status(StatusRequest),
    /// `POST /active`: `presence:active` over HTTP.
    Active,
    /// `POST /unsubscribe`: `presence:unsubscribe` over HTTP.
    Unsubscribe(Users),
    /// `POST /watch`: another user's object starts, resumes or pauses watching this user.
    Watch(WatchRequest),
    /// `POST /unwatch`: another user's object stops watching.
    Unwatch(UnwatchRequest),
    /// `POST /presence`: a watched user's status, pushed by their object.
    Presence(PresenceUpdate),
}

impl Endpoint {
    /// Decodes the request for `path` with `body` (empty for a GET) and the page the Worker
    /// admitted: 404 for an unknown path, 400 for a body that is not the endpoint's.
    pub fn parse(path: &str, body: &str, admission: &Admission) -> Result<Endpoint, Error> {
        let now = |request| Ok(Endpoint::Now(request));
        match path {
            "/events" => Ok(Endpoint::Events),
            "/subscribe" => Ok(Endpoint::Subscribe(parse_body(body, r#"{"users": [...]}"#)?)),
            "/notify" => now(HttpRequest::Notify(parse_body(body, r#"{"notification", "key"?}"#)?)),
            "/notifications" => {
                now(HttpRequest::List(NotificationList { before: admission.before, limit: admission.limit }))
            }
            "/read" => now(HttpRequest::Read(parse_body(body, r#"{"ids": [...]} or {"all": true}"#)?)),
            "/status" => now(HttpRequest::Status(parse_body(body, r#"{"status", "activity"?}"#)?)),
            "/active" => now(HttpRequest::Active),
            "/unsubscribe" => now(HttpRequest::Unsubscribe(parse_body(body, r#"{"users": [...]}"#)?)),
            "/watch" => now(HttpRequest::Watch(parse_body(body, r#"{"watcher", "active"}"#)?)),
            "/unwatch" => now(HttpRequest::Unwatch(parse_body(body, r#"{"watcher"}"#)?)),
            "/presence" => now(HttpRequest::Presence(parse_body(body, "a presence update")?)),
            _ => Err(Error::new(ErrorCode::NotFound, "no such user endpoint")),
        }
    }
}

/// A body that must be `what`; anything else is a 400 that says so.
fn parse_body<T: DeserializeOwned>(body: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(body)
        .map_err(|e| Error::new(ErrorCode::BadRequest, format!("body must be {what}: {e}")))
}

/// An answer as its JSON body.
fn body(answer: impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(answer).map_err(|_| Error::new(ErrorCode::Internal, "unencodable answer"))
}

impl User {
    /// Answers `request` with the JSON body of its 200 and the effects, which the shell stores
    /// before the answer leaves.
    pub fn answer(
        &mut self,
        request: HttpRequest,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Result<(Value, Vec<UserEffect>), Error> {
        Ok(match request {
            HttpRequest::Notify(delivery) => {
                let (ack, effects) = self.notify(delivery.notification, delivery.key, now, inbox)?;
                (body(ack)?, effects)
            }
            HttpRequest::List(page) => (self.page(&page, inbox)?, Vec::new()),
            HttpRequest::Read(request) => self.read(&request, inbox)?,
            HttpRequest::Status(request) => {
                let (status, effects) = self.set_status(request, now)?;
                (body(status)?, effects)
            }
            HttpRequest::Active => (json!({}), self.mark_active(now)?),
            HttpRequest::Unsubscribe(request) => {
                let (users, effects) = self.unsubscribe_over_http(request.users, now)?;
                (json!({ "users": users }), effects)
            }
            HttpRequest::Watch(request) => {
                let (update, effects) = self.watch_requested(request)?;
                (body(update)?, effects)
            }
            HttpRequest::Unwatch(request) => (json!({}), self.unwatch_requested(&request.watcher)),
            HttpRequest::Presence(update) => {
                let (answer, effects) = self.presence_pushed(update);
                (body(answer)?, effects)
            }
        })
    }
}
