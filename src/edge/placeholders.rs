//! The user and document objects exist from the first deploy so the storage migration names
//! every class once; they serve no route yet.

use worker::{durable_object, Env, Request, Response, Result, State};

/// Per-user object: presence and the notification inbox (not served yet).
#[durable_object(fetch)]
pub struct UserObject {
    _state: State,
}

impl worker::DurableObject for UserObject {
    fn new(state: State, _env: Env) -> Self {
        UserObject { _state: state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::error("user objects are not served yet", 501)
    }
}

/// Per-document object: the OT sequencer (not served yet).
#[durable_object(fetch)]
pub struct DocumentObject {
    _state: State,
}

impl worker::DurableObject for DocumentObject {
    fn new(state: State, _env: Env) -> Self {
        DocumentObject { _state: state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::error("document objects are not served yet", 501)
    }
}
