//! The wasm32 shell: the Worker's fetch handler and the Durable Objects. It translates between
//! the platform (requests, sockets, SQLite, alarms) and the core; every rule lives in the core.

mod http;
mod placeholders;
mod room_object;
mod socket;

use crate::core::auth;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::route::{route, Route};
use crate::core::time::Timestamp;
use worker::{event, Context, Date, Env, Method, Request, Response};

/// Headers on the Worker → object request carrying what the Worker already verified. An
/// object is reachable only through its Worker, so it trusts them.
pub(crate) mod internal {
    pub const ROOM: &str = "x-switchboard-room";
    pub const USER: &str = "x-switchboard-user";
    pub const EXPIRES: &str = "x-switchboard-expires";
    pub const PROTOCOL: &str = "x-switchboard-protocol";
}

pub(crate) fn now() -> Timestamp {
    Timestamp(Date::now().as_millis())
}

/// Reads every setting from `[vars]` and secrets.
pub(crate) fn config(env: &Env) -> Result<Config, Error> {
    Config::from_lookup(|name| env.var(name).or_else(|_| env.secret(name)).ok().map(|v| v.to_string()))
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match serve(req, env).await {
        Ok(response) => Ok(response),
        Err(error) => http::error(&error),
    }
}

async fn serve(req: Request, env: Env) -> Result<Response, Error> {
    let url = req.url().map_err(http::internal)?;
    let method = req.method();
    match route(method.as_ref(), url.path())? {
        Route::Health => {
            http::json(200, &serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
        }
        Route::RoomSocket(room) => {
            let headers = req.headers();
            let header = |name: &str| headers.get(name).ok().flatten();
            let is_upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            if !is_upgrade {
                return Err(Error::new(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade"));
            }
            let query_token = url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
            let creds = auth::upgrade_credentials(
                header("authorization").as_deref(),
                header("sec-websocket-protocol").as_deref(),
                query_token.as_deref(),
            )?;
            let config = config(&env)?;
            let identity = auth::authenticate(&creds, &config.auth, now())?;

            let mut forward = room_request("connect", &room)?;
            let h = forward.headers_mut().map_err(http::internal)?;
            let set = |name: &str, value: &str| h.set(name, value).map_err(http::internal);
            set("upgrade", "websocket")?;
            set(internal::USER, identity.user.as_str())?;
            set(internal::EXPIRES, &identity.expires.as_millis().to_string())?;
            if let Some(protocol) = creds.protocol {
                set(internal::PROTOCOL, protocol)?;
            }
            room_stub(&env, &room)?.fetch_with_request(forward).await.map_err(http::internal)
        }
        Route::RoomStats(room) => {
            let config = config(&env)?;
            let authorization = req.headers().get("authorization").ok().flatten();
            auth::check_server_key(authorization.as_deref(), config.server_api_key.as_deref())?;
            room_stub(&env, &room)?
                .fetch_with_request(room_request("stats", &room)?)
                .await
                .map_err(http::internal)
        }
    }
}

/// A Worker → room object request for `endpoint`, naming the room (objects only know their id).
fn room_request(endpoint: &str, room: &crate::core::ids::RoomId) -> Result<Request, Error> {
    let mut req =
        Request::new(&format!("https://room.internal/{endpoint}"), Method::Get).map_err(http::internal)?;
    req.headers_mut().and_then(|h| h.set(internal::ROOM, room.as_str())).map_err(http::internal)?;
    Ok(req)
}

fn room_stub(env: &Env, room: &crate::core::ids::RoomId) -> Result<worker::Stub, Error> {
    let rooms = env.durable_object("ROOMS").map_err(http::internal)?;
    rooms.id_from_name(room.as_str()).and_then(|id| id.get_stub()).map_err(http::internal)
}
