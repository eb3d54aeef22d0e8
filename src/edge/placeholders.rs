//! The document object exists from the first deploy so the storage migration names every
//! class once; it serves no route yet.

use worker::{durable_object, Env, Request, Response, Result, State};

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
