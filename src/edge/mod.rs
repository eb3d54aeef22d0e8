//! The wasm32 shell: the Worker's fetch handler and the Durable Objects. It translates between
//! the platform (requests, sockets, SQLite, alarms) and the core; every rule lives in the core.
//!
//! The Worker authenticates and authorizes every request, then forwards it to the room's,
//! user's or document's object with what it verified in [`internal`] headers.

mod dev;
mod doc_object;
mod docs;
mod http;
mod objects;
mod room_object;
mod rooms;
mod shell;
mod socket;
mod sql;
mod sse;
mod user_object;
mod users;

use crate::core::auth::{self, Caller};
use crate::core::body::CappedBody;
use crate::core::config::{self as settings, Config};
use crate::core::error::{close, Error, ErrorCode};
use crate::core::route::{Route, Target};
use crate::core::time::Timestamp;
use futures::StreamExt;
use worker::{event, Context, Env, Request, Response, Url};

/// Headers on the Worker → object request. An object is reachable only through its Worker, so
/// it trusts them.
pub(crate) mod internal {
    /// The object's name (a room, user or document id): an object knows only its own id.
    pub const OBJECT: &str = "x-switchboard-object";
    /// What the Worker verified about the caller, as JSON (`core::admission::Admission`).
    pub const ADMISSION: &str = "x-switchboard-admission";
}

/// The runtime's clock. `Date.now()` directly: `worker::Date::now()` builds a `Date` object per
/// call, which was 2 % of a room message's busy time.
pub(crate) fn now() -> Timestamp {
    // A float-to-int cast saturates: the clock can never make a bad timestamp.
    Timestamp(js_sys::Date::now() as u64)
}

/// One setting from `[vars]` or secrets.
fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name).or_else(|_| env.secret(name)).ok().map(|v| v.to_string())
}

thread_local! {
    /// The settings, read once per isolate: an isolate serves one deployment, whose `[vars]`
    /// and secrets do not change under it (reading them crossed into JS ~25 times per request).
    static CONFIG: std::cell::OnceCell<std::rc::Rc<Config>> = const { std::cell::OnceCell::new() };
}

/// Every setting from `[vars]` and secrets; a bad one is an error on every request until fixed.
pub(crate) fn config(env: &Env) -> Result<std::rc::Rc<Config>, Error> {
    if let Some(config) = CONFIG.with(|c| c.get().cloned()) {
        return Ok(config);
    }
    let config = Config::from_lookup(|name| setting(env, name))
        .map(std::rc::Rc::new)
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    Ok(CONFIG.with(|c| c.get_or_init(|| config).clone()))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let refusable = socket::refusable_upgrade(&req);
    let origin_sent = req.headers().get("origin").ok().flatten().is_some();
    // The allowed origin to answer with CORS headers, once `serve` has checked it; errors get
    // them too, or a page could not read why it was refused.
    let mut cors = None;
    // An `Origin` was sent and not allowed (an allowed one sets `cors`): that stays HTTP 403.
    let origin_refused = |cors: &Option<String>| origin_sent && cors.is_none();
    let response = match serve(req, env, &mut cors).await {
        Ok(response) => response,
        Err(error) => {
            match close::for_refused_upgrade(error.http_status(), refusable, origin_refused(&cors)) {
                Some(code) => return socket::refuse(code, &error),
                None => http::error(&error)?,
            }
        }
    };
    // The socket limit is the object's refusal: it arrives as the object's HTTP answer.
    if let Some(code) = close::for_refused_upgrade(response.status_code(), refusable, origin_refused(&cors)) {
        let mut response = response;
        let error = socket::error_of(&mut response).await;
        return socket::refuse(code, &error);
    }
    http::with_cors(response, cors.as_deref())
}

/// The request's parts the handlers read.
struct Call {
    url: Url,
    req: Request,
    /// The query's pairs, decoded once: a socket route asks for several and the `token` is long.
    pairs: std::cell::OnceCell<Vec<(String, String)>>,
    /// Whether the body was read (or its reading began).
    body_taken: bool,
}

/// The most of an unread body a refusal reads away before answering (see [`Call::discard_body`]).
const DISCARD_MAX: usize = 64 * 1024;

impl Call {
    fn header(&self, name: &str) -> Option<String> {
        self.req.headers().get(name).ok().flatten()
    }

    fn query(&self, name: &str) -> Option<String> {
        let pairs = self.pairs.get_or_init(|| self.url.query_pairs().into_owned().collect());
        pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// The request body, refused with 413 over `max` bytes: by its `Content-Length` before
    /// anything is read, and while streaming for a body without one (chunked) or one longer than
    /// declared, so at most `max` bytes are ever held. (`Request::text()` would buffer the whole
    /// body, however large, before its size could be checked.)
    async fn body(&mut self, max: usize) -> Result<String, Error> {
        self.body_taken = true;
        let mut body = CappedBody::new(max, self.header("content-length").as_deref())?;
        // A request without a body has no stream to read (`stream()` would fail).
        if self.req.inner().body().is_none() {
            return body.finish();
        }
        let mut stream = self.req.stream().map_err(http::internal)?;
        while let Some(chunk) = stream.next().await {
            // Returning early drops the stream, which cancels the rest of the upload.
            body.push(&chunk.map_err(|_| Error::new(ErrorCode::BadRequest, "unreadable body"))?)?;
        }
        body.finish()
    }

    /// Reads away a small body the route refused before reading it (a bad key, a bad token), so
    /// the answer is not a reset: a client still sending its body to a server that has answered
    /// and closed sees `ECONNRESET` instead of the 401. Larger bodies are left, and cut off.
    async fn discard_body(&mut self) {
        let declared = self.header("content-length").and_then(|l| l.parse::<usize>().ok());
        if self.body_taken || self.req.inner().body().is_none() || declared.is_some_and(|l| l > DISCARD_MAX) {
            return;
        }
        self.body_taken = true;
        let Ok(mut stream) = self.req.stream() else { return };
        let mut read = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(chunk.len());
            if read > DISCARD_MAX {
                return;
            }
        }
    }

    /// The caller of a route app servers and users share (see [`auth::http_caller`]).
    fn caller(&self, config: &Config) -> Result<Caller, Error> {
        let (authorization, token) = (self.header("authorization"), self.query("token"));
        auth::http_caller(
            authorization.as_deref(),
            token.as_deref(),
            config.server_api_key.as_deref(),
            &config.auth,
            now(),
        )
    }

    /// The user calling a route only users call (see [`auth::http_user`]).
    fn user(&self, config: &Config) -> Result<auth::Identity, Error> {
        let (authorization, token) = (self.header("authorization"), self.query("token"));
        auth::http_user(authorization.as_deref(), token.as_deref(), &config.auth, now())
    }
}

/// Answers a request in the documented order: unknown route (404), origin (403, setting `cors`
/// when allowed), `OPTIONS` preflight (204), method (405), then each route's own checks.
async fn serve(req: Request, env: Env, cors: &mut Option<String>) -> Result<Response, Error> {
    let url = req.url().map_err(http::internal)?;
    let path = url.path().to_owned();
    let target = Target::of(&path);
    let origin = req.headers().get("origin").ok().flatten();
    // Decided before the 404 is returned, so a page on an allowed origin can read its 404 too.
    let checked = settings::allowed_origins(|name| setting(&env, name))
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
        .and_then(|allowed| allowed.check(origin.as_deref(), &url.origin().ascii_serialization()));
    if let Ok(Some(allowed)) = checked {
        *cors = Some(allowed.to_owned());
    }
    let target = target?;
    // Where DEV_TOKENS is off the dev token route is an unknown path, like any other.
    if target == Target::DevToken && !dev::enabled(&env) {
        return Err(Error::new(ErrorCode::NotFound, format!("no route for {path}")));
    }
    checked?;
    // The raw method: `Request::method()` turns a method it does not know into GET.
    let method = req.inner().method();
    if method.eq_ignore_ascii_case("OPTIONS") {
        return http::preflight(target.methods(), cors.as_deref());
    }
    let route = target.route(&method, &path)?;
    let mut call = Call { url, req, pairs: std::cell::OnceCell::new(), body_taken: false };
    let answer = match route {
        Route::Health => {
            http::json(200, &serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
        }
        Route::RoomSocket(room) => rooms::connect(&call, &env, &room).await,
        Route::RoomStats(room) => rooms::stats(&call, &env, &room).await,
        Route::RoomHistory(room) => rooms::history(&call, &env, &room).await,
        Route::RoomPublish(room) => rooms::publish(&mut call, &env, &room).await,
        Route::RoomEvents(room) => rooms::events(&call, &env, &room).await,
        Route::UserSocket => users::connect(&call, &env).await,
        Route::UserNotifications => users::notifications(&call, &env).await,
        Route::UserRead => users::read(&mut call, &env).await,
        Route::UserStats(user) => users::stats(&call, &env, &user).await,
        Route::UserEvents => users::events(&call, &env).await,
        Route::UserStatus => users::write(&mut call, &env, "status").await,
        Route::UserActive => users::write(&mut call, &env, "active").await,
        Route::UserSubscribe => users::write(&mut call, &env, "subscribe").await,
        Route::UserUnsubscribe => users::write(&mut call, &env, "unsubscribe").await,
        Route::Notify => users::notify(&mut call, &env).await,
        Route::DocSocket(doc) => docs::connect(&call, &env, &doc).await,
        Route::DocGet(doc) => docs::get(&call, &env, &doc).await,
        Route::DocStats(doc) => docs::stats(&call, &env, &doc).await,
        Route::DevToken => dev::token(&mut call, &env).await,
    };
    if answer.is_err() {
        call.discard_body().await;
    }
    answer
}

/// The checks every WebSocket route makes, in the documented order: an upgrade (426), usable
/// credentials (400/401), a valid token (401).
fn upgrade_identity(
    call: &Call,
    env: &Env,
) -> Result<(auth::UpgradeCredentials, auth::Identity, std::rc::Rc<Config>), Error> {
    let is_upgrade = call.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Err(Error::new(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade"));
    }
    let creds = auth::upgrade_credentials(
        call.header("authorization").as_deref(),
        call.header("sec-websocket-protocol").as_deref(),
        call.query("token").as_deref(),
    )?;
    let config = config(env)?;
    let identity = auth::authenticate(&creds, &config.auth, now())?;
    Ok((creds, identity, config))
}
