//! The wasm32 shell: the Worker's fetch handler and the Durable Objects. It translates between
//! the platform (requests, sockets, SQLite, alarms) and the core; every rule lives in the core.
//!
//! The Worker checks every request as the core decides ([`crate::core::gate`]), then forwards
//! it to the room's, user's or document's object with what it verified in [`internal`] headers.

mod dev;
mod doc_object;
mod http;
mod objects;
mod room_object;
mod shell;
mod socket;
mod sql;
mod sse;
mod user_object;

use crate::core::body::CappedBody;
use crate::core::config::{self as settings, Config};
use crate::core::error::{close, Error, ErrorCode};
use crate::core::gate::{self, Asked, Plan};
use crate::core::notify;
use crate::core::origin::AllowedOrigins;
use crate::core::route::{Route, Target};
use crate::core::time::Timestamp;
use futures::StreamExt;
use worker::worker_sys::web_sys;
use worker::{event, Context, Env, Url};

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
    per_isolate(&CONFIG, || Config::from_lookup(|name| setting(env, name)))
}

/// What `make` reads from the deployment, made once per isolate and kept in `cell`. A failure is
/// not kept: it is an error on every request until the deployment is fixed.
fn per_isolate<T, E: std::fmt::Display>(
    cell: &'static std::thread::LocalKey<std::cell::OnceCell<std::rc::Rc<T>>>,
    make: impl FnOnce() -> Result<T, E>,
) -> Result<std::rc::Rc<T>, Error> {
    if let Some(made) = cell.with(|c| c.get().cloned()) {
        return Ok(made);
    }
    let made = make().map(std::rc::Rc::new).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    Ok(cell.with(|c| c.get_or_init(|| made).clone()))
}

thread_local! {
    /// `ALLOWED_ORIGINS`, read once per isolate like the settings.
    static ORIGINS: std::cell::OnceCell<std::rc::Rc<AllowedOrigins>> = const { std::cell::OnceCell::new() };
}

/// The origins allowed to call; a bad `ALLOWED_ORIGINS` is an error on every request until fixed.
fn allowed_origins(env: &Env) -> Result<std::rc::Rc<AllowedOrigins>, Error> {
    per_isolate(&ORIGINS, || settings::allowed_origins(|name| setting(env, name)))
}

/// The Worker's entry. It works on the runtime's own request and response objects: an object's
/// answer (the `101` of every socket above all) is passed on as it came, not copied into
/// workers-rs types and back, which cost a new `Response` and ~10 crossings per connect.
#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, _ctx: Context) -> worker::Result<web_sys::Response> {
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
                None => http::error(&error)?.into(),
            }
        }
    };
    // The socket limit is the object's refusal: it arrives as the object's HTTP answer.
    if let Some(code) = close::for_refused_upgrade(response.status(), refusable, origin_refused(&cors)) {
        let error = socket::error_of(&response).await;
        return socket::refuse(code, &error);
    }
    http::with_cors(response, cors.as_deref())
}

/// The request's parts the handlers read.
struct Call {
    url: Url,
    req: web_sys::Request,
    /// The query's pairs, decoded once: a socket route asks for several and the `token` is long.
    pairs: std::cell::OnceCell<Vec<(String, String)>>,
    /// Whether the body was read (or its reading began).
    body_taken: bool,
}

/// The most of an unread body a refusal reads away before answering (see [`Call::discard_body`]).
const DISCARD_MAX: usize = 64 * 1024;

impl Asked for Call {
    fn header(&self, name: &str) -> Option<String> {
        header(&self.req, name)
    }

    fn query(&self, name: &str) -> Option<String> {
        let pairs = self.pairs.get_or_init(|| self.url.query_pairs().into_owned().collect());
        pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl Call {
    /// The request body, refused with 413 over `max` bytes: by its `Content-Length` before
    /// anything is read, and while streaming for a body without one (chunked) or one longer than
    /// declared, so at most `max` bytes are ever held. (`Request::text()` would buffer the whole
    /// body, however large, before its size could be checked.)
    async fn body(&mut self, max: usize) -> Result<String, Error> {
        self.body_taken = true;
        let mut body = CappedBody::new(max, self.header("content-length").as_deref())?;
        // A request without a body has no stream to read (`stream()` would fail).
        if self.req.body().is_none() {
            return body.finish();
        }
        let mut stream = self.stream().map_err(http::internal)?;
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
        if self.body_taken || self.req.body().is_none() || declared.is_some_and(|l| l > DISCARD_MAX) {
            return;
        }
        self.body_taken = true;
        let Ok(mut stream) = self.stream() else { return };
        let mut read = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(chunk.len());
            if read > DISCARD_MAX {
                return;
            }
        }
    }
}

impl Call {
    /// The body as a stream of chunks (workers-rs reads it; only routes with a body get here).
    fn stream(&self) -> worker::Result<worker::ByteStream> {
        worker::Request::from(Clone::clone(&self.req)).stream()
    }
}

/// A request header.
fn header(req: &web_sys::Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Answers a request in the documented order: unknown route (404), origin (403, setting `cors`
/// when allowed), `OPTIONS` preflight (204), method (405), then each route's own checks.
async fn serve(
    req: web_sys::Request,
    env: Env,
    cors: &mut Option<String>,
) -> Result<web_sys::Response, Error> {
    let url = Url::parse(&req.url()).map_err(|_| Error::new(ErrorCode::BadRequest, "unreadable URL"))?;
    let path = url.path().to_owned();
    let target = Target::of(&path);
    let origin = header(&req, "origin");
    // Decided before the 404 is returned, so a page on an allowed origin can read its 404 too.
    let checked = allowed_origins(&env)
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
    // The raw method (workers-rs turns a method it does not know into GET).
    let method = req.method();
    if method.eq_ignore_ascii_case("OPTIONS") {
        return http::preflight(target.methods(), cors.as_deref()).map(Into::into);
    }
    let route = target.route(&method, &path)?;
    let mut call = Call { url, req, pairs: std::cell::OnceCell::new(), body_taken: false };
    let answer = answer(&mut call, &env, &route).await;
    if answer.is_err() {
        call.discard_body().await;
    }
    answer
}

/// Does what the gate ([`gate::plan`]) decided once the route's checks passed.
async fn answer(call: &mut Call, env: &Env, route: &Route) -> Result<web_sys::Response, Error> {
    match gate::plan(route, &*call, || config(env), now())? {
        Plan::Health => {
            http::json(200, &serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
                .map(Into::into)
        }
        Plan::DevToken => dev::token(call, env).await.map(Into::into),
        Plan::Notify => notify(call, env).await.map(Into::into),
        Plan::Publish(publishing) => {
            let body = call.body(publishing.max_body).await?;
            let to = publishing.forward(&body, &*config(env)?)?;
            objects::forward(env, &to, Some(body)).await
        }
        Plan::Forward(to) => {
            let body = match to.body {
                Some(max) => Some(call.body(max).await?),
                None => None,
            };
            objects::forward(env, &to, body).await
        }
    }
}

/// `POST /v1/notify` (the gate checked the server key): stores the notification in every listed
/// user's inbox, [`notify::CONCURRENCY`] objects at a time, and reports each user's outcome with 202.
async fn notify(call: &mut Call, env: &Env) -> Result<worker::Response, Error> {
    let config = config(env)?;
    let body = call.body(notify::MAX_BODY).await?;
    let request = notify::parse(&body, call.header("idempotency-key"), config.limits.max_text_chars)?;
    let answers =
        objects::fan_out(env, request.users, "notify", &request.delivery, notify::CONCURRENCY).await;
    http::json(202, &notify::response(answers))
}
