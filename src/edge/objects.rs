//! Requests to the Durable Objects, from the Worker and from one object to another: which
//! binding holds each kind, the header that names the object (an object knows only its id), the
//! one header that carries what the Worker verified ([`Admission`]), and calls to many user
//! objects at once.

use super::{http, internal};
use crate::core::admission::Admission;
use crate::core::error::{Error, ErrorCode};
use crate::core::gate::{Forward, ObjectKind};
use crate::core::ids::UserId;
use futures::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;
use worker::{Env, ObjectNamespace};

fn binding(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Room => "ROOMS",
        ObjectKind::User => "USERS",
        ObjectKind::Doc => "DOCS",
    }
}

fn host(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Room => "room.internal",
        ObjectKind::User => "user.internal",
        ObjectKind::Doc => "doc.internal",
    }
}

/// A request for `endpoint` of the object `id`, naming it, with what the Worker verified; a
/// socket's asks for the upgrade. Built and sent as the runtime's own objects (see `send_in`).
fn request(
    kind: ObjectKind,
    id: &str,
    endpoint: &str,
    body: Option<String>,
    admission: &Admission,
    upgrade: bool,
) -> Result<web_sys::Request, Error> {
    let failed = |e: JsValue| http::internal(e.into());
    let headers = web_sys::Headers::new().map_err(failed)?;
    headers.set(internal::OBJECT, id).map_err(failed)?;
    if *admission != Admission::default() {
        headers.set(internal::ADMISSION, &admission.to_header()).map_err(failed)?;
    }
    if upgrade {
        headers.set("upgrade", "websocket").map_err(failed)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method(if body.is_some() { "POST" } else { "GET" });
    init.set_headers(&headers);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(&body));
    }
    web_sys::Request::new_with_str_and_init(&format!("https://{}/{endpoint}", host(kind)), &init)
        .map_err(failed)
}

/// Sends a request the Worker checked ([`crate::core::gate`]) to its object, with the caller's
/// `body` when it has one. The object's answer is the Worker's, as it came.
pub(crate) async fn forward(
    env: &Env,
    to: &Forward,
    body: Option<String>,
) -> Result<web_sys::Response, Error> {
    let req = request(to.kind, &to.id, to.endpoint, body, &to.admission, to.is_socket())?;
    send_in(&namespace(env, to.kind)?, &to.id, &req).await
}

/// Sends `req` to the object `id` of a namespace already looked up (fan-outs reuse it), through
/// the stub's own `fetch`: workers-rs would copy the answer into its types (headers, status, body,
/// socket: a crossing each) and the Worker back into a new `Response`.
async fn send_in(
    namespace: &ObjectNamespace,
    id: &str,
    req: &web_sys::Request,
) -> Result<web_sys::Response, Error> {
    let failed = |e: JsValue| http::internal(e.into());
    let stub = namespace.id_from_name(id).and_then(|id| id.get_stub()).map_err(http::internal)?;
    let stub: worker::worker_sys::DurableObject = stub.into_rpc();
    let answer = JsFuture::from(stub.fetch_with_request(req).map_err(failed)?).await.map_err(failed)?;
    answer.dyn_into::<web_sys::Response>().map_err(failed)
}

fn namespace(env: &Env, kind: ObjectKind) -> Result<ObjectNamespace, Error> {
    env.durable_object(binding(kind)).map_err(http::internal)
}

/// POSTs the JSON `body` to `user`'s object at `endpoint` and decodes the answer; an error
/// answer becomes the error it carries.
async fn call_user<T: DeserializeOwned>(
    users: &ObjectNamespace,
    user: &UserId,
    endpoint: &str,
    body: &str,
) -> Result<T, Error> {
    let req = request(
        ObjectKind::User,
        user.as_str(),
        endpoint,
        Some(body.to_owned()),
        &Admission::default(),
        false,
    )?;
    let response = send_in(users, user.as_str(), &req).await?;
    let status = response.status();
    let text =
        http::text(&response).await.ok_or_else(|| Error::new(ErrorCode::Internal, "unreadable answer"))?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text).map_err(|_| Error::new(ErrorCode::Internal, "unreadable answer"));
    }
    Err(Error::from_http_body(&text)
        .unwrap_or_else(|| Error::new(ErrorCode::Internal, format!("user object answered {status}"))))
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
    let namespace = match namespace(env, ObjectKind::User) {
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
