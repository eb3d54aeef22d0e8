//! HTTP routing as a pure function of method and path, so every route and its error status is
//! tested on the host. Checks run in the documented order: unknown route (404), wrong method
//! (405), bad id (400); the upgrade and token checks follow in the edge.

use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{DocId, IdError, RoomId, UserId};
use crate::core::room::Resume;

/// A request the Worker knows how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Health,
    /// `GET /v1/rooms/:room/ws`
    RoomSocket(RoomId),
    /// `GET /v1/rooms/:room/stats` (server key): the object's counters.
    RoomStats(RoomId),
    /// `GET /v1/rooms/:room/messages` (user token): a history page.
    RoomHistory(RoomId),
    /// `POST /v1/rooms/:room/messages` (server key or user token): publish a message.
    RoomPublish(RoomId),
    /// `GET /v1/rooms/:room/events` (user token): messages as Server-Sent Events.
    RoomEvents(RoomId),
    /// `GET /v1/users/me/ws`: the caller's own user object.
    UserSocket,
    /// `GET /v1/users/me/notifications` (user token): an inbox page.
    UserNotifications,
    /// `POST /v1/users/me/notifications/read` (user token): mark read.
    UserRead,
    /// `GET /v1/users/:user/stats` (server key): the user object's counters.
    UserStats(UserId),
    /// `POST /v1/notify` (server key): notifications for many users.
    Notify,
    /// `GET /v1/docs/:doc/ws`: a document's editing socket.
    DocSocket(DocId),
    /// `GET /v1/docs/:doc` (user token or server key): `{v, text}`.
    DocGet(DocId),
    /// `GET /v1/docs/:doc/stats` (server key): the document object's counters.
    DocStats(DocId),
}

/// Matches `method` and `path` (without the query string) to a route.
pub fn route(method: &str, path: &str) -> Result<Route, Error> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match segments.as_slice() {
        ["healthz"] => {
            allow(method, "GET", path)?;
            Ok(Route::Health)
        }
        ["v1", "rooms", room, "ws"] => {
            allow(method, "GET", path)?;
            room_id(room).map(Route::RoomSocket)
        }
        ["v1", "rooms", room, "stats"] => {
            allow(method, "GET", path)?;
            room_id(room).map(Route::RoomStats)
        }
        ["v1", "rooms", room, "messages"] => {
            let publish = method.eq_ignore_ascii_case("POST");
            if !publish {
                allow(method, "GET", path)
                    .map_err(|e| Error { message: format!("{path} takes GET or POST"), ..e })?;
            }
            room_id(room).map(if publish { Route::RoomPublish } else { Route::RoomHistory })
        }
        ["v1", "rooms", room, "events"] => {
            allow(method, "GET", path)?;
            room_id(room).map(Route::RoomEvents)
        }
        ["v1", "users", "me", "ws"] => allow(method, "GET", path).map(|()| Route::UserSocket),
        ["v1", "users", "me", "notifications"] => {
            allow(method, "GET", path).map(|()| Route::UserNotifications)
        }
        ["v1", "users", "me", "notifications", "read"] => {
            allow(method, "POST", path).map(|()| Route::UserRead)
        }
        ["v1", "users", user, "stats"] => {
            allow(method, "GET", path)?;
            id("user", user, UserId::parse).map(Route::UserStats)
        }
        ["v1", "notify"] => allow(method, "POST", path).map(|()| Route::Notify),
        ["v1", "docs", doc] => {
            allow(method, "GET", path)?;
            id("doc", doc, DocId::parse).map(Route::DocGet)
        }
        ["v1", "docs", doc, "ws"] => {
            allow(method, "GET", path)?;
            id("doc", doc, DocId::parse).map(Route::DocSocket)
        }
        ["v1", "docs", doc, "stats"] => {
            allow(method, "GET", path)?;
            id("doc", doc, DocId::parse).map(Route::DocStats)
        }
        _ => Err(Error::new(ErrorCode::NotFound, format!("no route for {path}"))),
    }
}

fn allow(method: &str, allowed: &str, path: &str) -> Result<(), Error> {
    if method.eq_ignore_ascii_case(allowed) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::MethodNotAllowed, format!("{path} takes {allowed}")))
    }
}

/// Reads an optional whole-number query parameter; anything else is a 400.
pub fn number_param(name: &str, value: Option<&str>) -> Result<Option<u64>, Error> {
    value
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                Error::new(ErrorCode::BadRequest, format!("{name} must be a whole number, got {v:?}"))
            })
        })
        .transpose()
}

/// A reconnect position from `?since=&epoch=`: `None` for a plain connect. A `since` without
/// an `epoch` cannot be checked against the log, so it resumes nothing (`recovered: false`).
pub fn resume_query(since: Option<&str>, epoch: Option<&str>) -> Result<Option<Resume>, Error> {
    let since = number_param("since", since)?;
    Ok(match (since, epoch) {
        (None, None) => None,
        (since, epoch) => {
            Some(Resume { since: since.unwrap_or(0), epoch: epoch.unwrap_or_default().to_owned() })
        }
    })
}

/// A reconnect position from an SSE `Last-Event-ID` (`<epoch>:<seq>`, the ids we send).
pub fn resume_from_event_id(id: &str) -> Option<Resume> {
    let (epoch, seq) = id.rsplit_once(':')?;
    Some(Resume { since: seq.parse().ok()?, epoch: epoch.to_owned() })
}

fn room_id(segment: &str) -> Result<RoomId, Error> {
    id("room", segment, RoomId::parse)
}

fn id<T>(kind: &str, segment: &str, parse: impl Fn(&str) -> Result<T, IdError>) -> Result<T, Error> {
    let bad = |why: String| Error::new(ErrorCode::BadRequest, format!("bad {kind} id: {why}"));
    let decoded = percent_decode(segment).ok_or_else(|| bad("invalid percent-encoding".into()))?;
    parse(&decoded).map_err(|e| bad(e.to_string()))
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(method: &str, path: &str) -> ErrorCode {
        route(method, path).unwrap_err().code
    }

    #[test]
    fn known_routes() {
        assert_eq!(route("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(
            route("GET", "/v1/rooms/general/ws"),
            Ok(Route::RoomSocket(RoomId::parse("general").unwrap()))
        );
        assert_eq!(route("GET", "/v1/rooms/a%3Ab/ws"), Ok(Route::RoomSocket(RoomId::parse("a:b").unwrap())));
    }

    #[test]
    fn messages_take_get_and_post() {
        let general = || RoomId::parse("general").unwrap();
        assert_eq!(route("GET", "/v1/rooms/general/messages"), Ok(Route::RoomHistory(general())));
        assert_eq!(route("POST", "/v1/rooms/general/messages"), Ok(Route::RoomPublish(general())));
        assert_eq!(route("GET", "/v1/rooms/general/events"), Ok(Route::RoomEvents(general())));
        assert_eq!(code("PUT", "/v1/rooms/general/messages"), ErrorCode::MethodNotAllowed);
    }

    #[test]
    fn user_routes() {
        assert_eq!(route("GET", "/v1/users/me/ws"), Ok(Route::UserSocket));
        assert_eq!(route("GET", "/v1/users/me/notifications"), Ok(Route::UserNotifications));
        assert_eq!(route("POST", "/v1/users/me/notifications/read"), Ok(Route::UserRead));
        assert_eq!(route("POST", "/v1/notify"), Ok(Route::Notify));
        assert_eq!(
            route("GET", "/v1/users/a%40b/stats"),
            Ok(Route::UserStats(UserId::parse("a@b").unwrap()))
        );
        assert_eq!(code("GET", "/v1/notify"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("GET", "/v1/users/me/notifications/read"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("GET", "/v1/users/bad%20id/stats"), ErrorCode::BadRequest);
        assert_eq!(code("GET", "/v1/users/alice/ws"), ErrorCode::NotFound);
    }

    #[test]
    fn doc_routes() {
        let spec = || DocId::parse("spec").unwrap();
        assert_eq!(route("GET", "/v1/docs/spec/ws"), Ok(Route::DocSocket(spec())));
        assert_eq!(route("GET", "/v1/docs/spec"), Ok(Route::DocGet(spec())));
        assert_eq!(route("GET", "/v1/docs/spec/stats"), Ok(Route::DocStats(spec())));
        assert_eq!(code("POST", "/v1/docs/spec"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("GET", "/v1/docs/bad%20id/ws"), ErrorCode::BadRequest);
    }

    #[test]
    fn resume_positions() {
        assert_eq!(resume_query(None, None), Ok(None));
        assert_eq!(resume_query(Some("7"), Some("e")), Ok(Some(Resume { since: 7, epoch: "e".into() })));
        assert_eq!(resume_query(Some("7"), None), Ok(Some(Resume { since: 7, epoch: String::new() })));
        assert_eq!(resume_query(Some("-1"), Some("e")).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(resume_from_event_id("ab12:9"), Some(Resume { since: 9, epoch: "ab12".into() }));
        assert_eq!(resume_from_event_id("9"), None);
        assert_eq!(resume_from_event_id("e:x"), None);
    }

    #[test]
    fn errors_in_documented_order() {
        assert_eq!(code("GET", "/"), ErrorCode::NotFound);
        assert_eq!(code("GET", "/v1/rooms/general"), ErrorCode::NotFound);
        assert_eq!(code("GET", "/v1/rooms/general/ws/"), ErrorCode::NotFound);
        assert_eq!(code("POST", "/v1/rooms/general/ws"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("POST", "/v1/rooms/bad%20id/ws"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("GET", "/v1/rooms/bad%20id/ws"), ErrorCode::BadRequest);
        assert_eq!(code("GET", "/v1/rooms/%zz/ws"), ErrorCode::BadRequest);
        assert_eq!(code("GET", "/v1/rooms/%ff/ws"), ErrorCode::BadRequest);
        assert_eq!(code("GET", "/v1/rooms//ws"), ErrorCode::BadRequest);
        assert_eq!(code("GET", &format!("/v1/rooms/{}/ws", "r".repeat(200))), ErrorCode::BadRequest);
    }
}
