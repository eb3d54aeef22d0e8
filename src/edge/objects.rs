//! Requests to the Durable Objects, from the Worker and from one object to another: which
//! binding holds each kind, the header that names the object (an object knows only its id), and
//! the one header that carries what the Worker verified ([`Admission`]).

use super::{http, internal};
use crate::core::admission::Admission;
use crate::core::error::Error;
use worker::{Env, Method, ObjectNamespace, Request, Response};

/// The three kinds of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Room,
    User,
    Doc,
}

impl Kind {
    fn binding(self) -> &'static str {
        match self {
            Kind::Room => "ROOMS",
            Kind::User => "USERS",
            Kind::Doc => "DOCS",
        }
    }

    fn host(self) -> &'static str {
        match self {
            Kind::Room => "room.internal",
            Kind::User => "user.internal",
            Kind::Doc => "doc.internal",
        }
    }
}

/// A request for `endpoint` (with its query) of the object `id`, naming it, with what the Worker
/// verified about the caller.
pub(crate) fn request(
    kind: Kind,
    id: &str,
    endpoint: &str,
    method: Method,
    body: Option<String>,
    admission: &Admission,
) -> Result<Request, Error> {
    let headers = worker::Headers::new();
    headers.set(internal::OBJECT, id).map_err(http::internal)?;
    if *admission != Admission::default() {
        headers.set(internal::ADMISSION, &admission.to_header()).map_err(http::internal)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(method).with_headers(headers).with_body(body.map(Into::into));
    Request::new_with_init(&format!("https://{}/{endpoint}", kind.host()), &init).map_err(http::internal)
}

/// Sends `req` to the object `id` of `kind`.
pub(crate) async fn send(env: &Env, kind: Kind, id: &str, req: Request) -> Result<Response, Error> {
    send_in(&namespace(env, kind)?, id, req).await
}

/// Sends `req` to the object `id` of a namespace already looked up (fan-outs reuse it).
pub(crate) async fn send_in(namespace: &ObjectNamespace, id: &str, req: Request) -> Result<Response, Error> {
    let stub = namespace.id_from_name(id).and_then(|id| id.get_stub()).map_err(http::internal)?;
    stub.fetch_with_request(req).await.map_err(http::internal)
}

/// The namespace of `kind`, for [`send_in`].
pub(crate) fn namespace(env: &Env, kind: Kind) -> Result<ObjectNamespace, Error> {
    env.durable_object(kind.binding()).map_err(http::internal)
}
