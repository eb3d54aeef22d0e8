//! HTTP routing as a pure function of method and path, so every route and its error status is
//! tested on the host. Checks run in the documented order: unknown route (404), wrong method
//! (405), bad id (400); the Worker checks the origin (403) and answers `OPTIONS` between the 404
//! and the 405 (see [`Target`]); each route's own checks follow ([`crate::core::gate`]).

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
    /// `GET /v1/users/me/events` (user token): what the user socket carries, as Server-Sent Events.
    UserEvents,
    /// `POST /v1/users/me/status` (user token): choose a status (`presence:set`).
    UserStatus,
    /// `POST /v1/users/me/active` (user token): mark activity (`presence:active`).
    UserActive,
    /// `POST /v1/users/me/subscribe` (user token): watch users (`presence:subscribe`).
    UserSubscribe,
    /// `POST /v1/users/me/unsubscribe` (user token): stop watching (`presence:unsubscribe`).
    UserUnsubscribe,
    /// `POST /v1/notify` (server key): notifications for many users.
    Notify,
    /// `GET /v1/docs/:doc/ws`: a document's editing socket.
    DocSocket(DocId),
    /// `GET /v1/docs/:doc` (user token or server key): `{v, text}`.
    DocGet(DocId),
    /// `GET /v1/docs/:doc/stats` (server key): the document object's counters.
    DocStats(DocId),
    /// `POST /v1/dev/token` (dev only, see [`crate::core::dev_token`]): a token for any user.
    DevToken,
}

/// A known path before its method is looked at, with its id segments still raw. The Worker
/// needs this between the 404 and the 405: origins are checked and `OPTIONS` preflights are
/// answered for every known path, whatever method it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/healthz`
    Health,
    /// `/v1/rooms/:room/ws`
    RoomSocket(&'a str),
    /// `/v1/rooms/:room/stats`
    RoomStats(&'a str),
    /// `/v1/rooms/:room/messages` (history with GET, publish with POST)
    RoomMessages(&'a str),
    /// `/v1/rooms/:room/events`
    RoomEvents(&'a str),
    /// `/v1/users/me/ws`
    UserSocket,
    /// `/v1/users/me/notifications`
    UserNotifications,
    /// `/v1/users/me/notifications/read`
    UserRead,
    /// `/v1/users/:user/stats`
    UserStats(&'a str),
    /// `/v1/users/me/events`
    UserEvents,
    /// `/v1/users/me/status`
    UserStatus,
    /// `/v1/users/me/active`
    UserActive,
    /// `/v1/users/me/subscribe`
    UserSubscribe,
    /// `/v1/users/me/unsubscribe`
    UserUnsubscribe,
    /// `/v1/notify`
    Notify,
    /// `/v1/docs/:doc`
    DocGet(&'a str),
    /// `/v1/docs/:doc/ws`
    DocSocket(&'a str),
    /// `/v1/docs/:doc/stats`
    DocStats(&'a str),
    /// `/v1/dev/token` (known only where `DEV_TOKENS` is on: the Worker answers 404 otherwise)
    DevToken,
}

impl<'a> Target<'a> {
    /// The known path `path` names (without the query string), or 404.
    pub fn of(path: &'a str) -> Result<Target<'a>, Error> {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        Ok(match segments.as_slice() {
            ["healthz"] => Target::Health,
            ["v1", "rooms", room, "ws"] => Target::RoomSocket(room),
            ["v1", "rooms", room, "stats"] => Target::RoomStats(room),
            ["v1", "rooms", room, "messages"] => Target::RoomMessages(room),
            ["v1", "rooms", room, "events"] => Target::RoomEvents(room),
            ["v1", "users", "me", "ws"] => Target::UserSocket,
            ["v1", "users", "me", "notifications"] => Target::UserNotifications,
            ["v1", "users", "me", "notifications", "read"] => Target::UserRead,
            ["v1", "users", user, "stats"] => Target::UserStats(user),
            ["v1", "users", "me", "events"] => Target::UserEvents,
            ["v1", "users", "me", "status"] => Target::UserStatus,
            ["v1", "users", "me", "active"] => Target::UserActive,
            ["v1", "users", "me", "subscribe"] => Target::UserSubscribe,
            ["v1", "users", "me", "unsubscribe"] => Target::UserUnsubscribe,
            ["v1", "notify"] => Target::Notify,
            ["v1", "docs", doc] => Target::DocGet(doc),
            ["v1", "docs", doc, "ws"] => Target::DocSocket(doc),
            ["v1", "docs", doc, "stats"] => Target::DocStats(doc),
            ["v1", "dev", "token"] => Target::DevToken,
            _ => return Err(Error::new(ErrorCode::NotFound, format!("no route for {path}"))),
        })
    }

    /// The methods the path takes besides `OPTIONS`, as an `Allow` list.
    pub fn methods(self) -> &'static str {
        match self {
            Target::RoomMessages(_) => "GET, POST",
            Target::UserRead | Target::Notify | Target::DevToken => "POST",
            Target::UserStatus | Target::UserActive | Target::UserSubscribe | Target::UserUnsubscribe => {
                "POST"
            }
            _ => "GET",
        }
    }

    /// The route for `method` (405 when the path does not take it), then its ids (400).
    pub fn route(self, method: &str, path: &str) -> Result<Route, Error> {
        if !self.methods().split(", ").any(|m| m.eq_ignore_ascii_case(method)) {
            return Err(Error::new(ErrorCode::MethodNotAllowed, format!("{path} takes {}", self.methods())));
        }
        let post = method.eq_ignore_ascii_case("POST");
        Ok(match self {
            Target::Health => Route::Health,
            Target::RoomSocket(room) => Route::RoomSocket(room_id(room)?),
            Target::RoomStats(room) => Route::RoomStats(room_id(room)?),
            Target::RoomMessages(room) if post => Route::RoomPublish(room_id(room)?),
            Target::RoomMessages(room) => Route::RoomHistory(room_id(room)?),
            Target::RoomEvents(room) => Route::RoomEvents(room_id(room)?),
            Target::UserSocket => Route::UserSocket,
            Target::UserNotifications => Route::UserNotifications,
            Target::UserRead => Route::UserRead,
            Target::UserStats(user) => Route::UserStats(id("user", user, UserId::parse)?),
            Target::UserEvents => Route::UserEvents,
            Target::UserStatus => Route::UserStatus,
            Target::UserActive => Route::UserActive,
            Target::UserSubscribe => Route::UserSubscribe,
            Target::UserUnsubscribe => Route::UserUnsubscribe,
            Target::Notify => Route::Notify,
            Target::DocGet(doc) => Route::DocGet(id("doc", doc, DocId::parse)?),
            Target::DocSocket(doc) => Route::DocSocket(id("doc", doc, DocId::parse)?),
            Target::DocStats(doc) => Route::DocStats(id("doc", doc, DocId::parse)?),
            Target::DevToken => Route::DevToken,
        })
    }
}

/// Matches `method` and `path` (without the query string) to a route: 404, then 405, then 400.
pub fn route(method: &str, path: &str) -> Result<Route, Error> {
    Target::of(path)?.route(method, path)
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

/// Longest epoch a client may name: ours are 24 characters; anything longer cannot match.
const MAX_EPOCH_BYTES: usize = 64;

/// Whether `epoch` could be one of ours: at most 64 printable ASCII characters (ours are 24 hex
/// digits). Anything else cannot match, and could not travel in the header to the object.
pub fn usable_epoch(epoch: &str) -> bool {
    epoch.len() <= MAX_EPOCH_BYTES && epoch.bytes().all(|b| b.is_ascii_graphic())
}

/// A reconnect position from `?since=&epoch=`: `None` for a plain connect. A `since` without
/// an `epoch` cannot be checked against the log, so it resumes nothing (`recovered: false`).
pub fn resume_query(since: Option<&str>, epoch: Option<&str>) -> Result<Option<Resume>, Error> {
    let since = number_param("since", since)?;
    if epoch.is_some_and(|e| !usable_epoch(e)) {
        return Err(Error::new(ErrorCode::BadRequest, "epoch must be at most 64 printable ASCII characters"));
    }
    Ok(match (since, epoch) {
        (None, None) => None,
        (since, epoch) => {
            Some(Resume { since: since.unwrap_or(0), epoch: epoch.unwrap_or_default().to_owned() })
        }
    })
}

/// A reconnect position from an SSE `Last-Event-ID` (`<epoch>:<seq>`, the ids we send).
pub fn resume_from_event_id(id: &str) -> Option<Resume> {
    let (epoch, seq) = id.rsplit_once(':').filter(|(epoch, _)| usable_epoch(epoch))?;
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
    fn the_user_fallback_routes() {
        assert_eq!(route("GET", "/v1/users/me/events"), Ok(Route::UserEvents));
        assert_eq!(route("POST", "/v1/users/me/status"), Ok(Route::UserStatus));
        assert_eq!(route("POST", "/v1/users/me/active"), Ok(Route::UserActive));
        assert_eq!(route("POST", "/v1/users/me/subscribe"), Ok(Route::UserSubscribe));
        assert_eq!(route("POST", "/v1/users/me/unsubscribe"), Ok(Route::UserUnsubscribe));
        assert_eq!(code("POST", "/v1/users/me/events"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("GET", "/v1/users/me/status"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("GET", "/v1/users/alice/events"), ErrorCode::NotFound, "only your own");
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
    fn dev_token_route() {
        assert_eq!(route("POST", "/v1/dev/token"), Ok(Route::DevToken));
        assert_eq!(code("GET", "/v1/dev/token"), ErrorCode::MethodNotAllowed);
        assert_eq!(code("POST", "/v1/dev/token/x"), ErrorCode::NotFound);
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
        // An epoch longer than any we hand out cannot match; it would only grow internal headers.
        let long = "e".repeat(65);
        assert_eq!(resume_query(Some("7"), Some(&long)).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(resume_from_event_id(&format!("{long}:9")), None);
        assert!(resume_query(Some("7"), Some(&long[..64])).is_ok());
        assert_eq!(resume_query(Some("7"), Some("ü")).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(resume_query(Some("7"), Some("a\u{7f}")).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(resume_from_event_id("é:9"), None);
    }

    #[test]
    fn every_known_path_names_its_methods_for_options_and_405() {
        assert_eq!(Target::of("/v1/rooms/general/messages").map(Target::methods), Ok("GET, POST"));
        assert_eq!(Target::of("/v1/notify").map(Target::methods), Ok("POST"));
        assert_eq!(Target::of("/v1/users/me/notifications/read").map(Target::methods), Ok("POST"));
        assert_eq!(Target::of("/v1/docs/spec").map(Target::methods), Ok("GET"));
        // A known path with a bad id is still known: the origin check and OPTIONS come first.
        assert_eq!(Target::of("/v1/rooms/bad%20id/ws"), Ok(Target::RoomSocket("bad%20id")));
        assert_eq!(Target::of("/nope").unwrap_err().code, ErrorCode::NotFound);
        // OPTIONS is not a method of any route: the Worker answers it before routing.
        assert_eq!(code("OPTIONS", "/v1/rooms/general/ws"), ErrorCode::MethodNotAllowed);
        let e = route("DELETE", "/v1/rooms/general/messages").unwrap_err();
        assert_eq!(e.message, "/v1/rooms/general/messages takes GET, POST");
        assert_eq!(route("post", "/v1/notify"), Ok(Route::Notify));
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
