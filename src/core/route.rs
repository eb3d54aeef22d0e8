//! HTTP routing as a pure function of method and path, so every route and its error status is
//! tested on the host. Checks run in the documented order: unknown route (404), wrong method
//! (405), bad id (400); the upgrade and token checks follow in the edge.

use crate::core::error::{Error, ErrorCode};
use crate::core::ids::RoomId;

/// A request the Worker knows how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Health,
    /// `GET /v1/rooms/:room/ws`
    RoomSocket(RoomId),
    /// `GET /v1/rooms/:room/stats` (server key): the object's counters.
    RoomStats(RoomId),
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

fn room_id(segment: &str) -> Result<RoomId, Error> {
    let bad = |why: String| Error::new(ErrorCode::BadRequest, format!("bad room id: {why}"));
    let decoded = percent_decode(segment).ok_or_else(|| bad("invalid percent-encoding".into()))?;
    RoomId::parse(&decoded).map_err(|e| bad(e.to_string()))
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
