//! HTTP responses: JSON bodies and the one mapping from core errors to statuses.

use crate::core::error::{Error, ErrorCode};
use crate::core::origin;
use serde::Serialize;
use worker::worker_sys::web_sys;
use worker::{Response, ResponseBuilder};

/// A JSON response with `status`.
pub(crate) fn json<T: Serialize>(status: u16, body: &T) -> Result<Response, Error> {
    ResponseBuilder::new().with_status(status).from_json(body).map_err(internal)
}

/// The error as `{"error":{"code","message"}}` with its status.
pub(crate) fn error(error: &Error) -> worker::Result<Response> {
    let mut response = ResponseBuilder::new()
        .with_status(error.http_status())
        .with_header("content-type", "application/json")?;
    if let Some(ms) = error.retry_after_ms {
        // HTTP counts whole seconds; rounding up never invites an early retry.
        response = response.with_header("retry-after", &ms.div_ceil(1000).max(1).to_string())?;
    }
    // `fixed`, not `ok`: `ok` replaces the content type with text/plain.
    Ok(response.fixed(error.to_http_body().into_bytes()))
}

/// A platform failure, logged and reported as `internal` (its text never reaches the client).
pub(crate) fn internal(e: worker::Error) -> Error {
    worker::console_error!("internal error: {e}");
    Error::new(ErrorCode::Internal, "internal error")
}

/// `204` to an `OPTIONS` request on a route taking `methods`, with the preflight headers when the
/// request came from the allowed `origin`.
pub(crate) fn preflight(methods: &str, origin: Option<&str>) -> Result<Response, Error> {
    let headers = worker::Headers::new();
    headers.set("allow", &format!("{methods}, OPTIONS")).map_err(internal)?;
    for (name, value) in origin.map(|o| origin::preflight_headers(o, methods)).unwrap_or_default() {
        headers.set(name, &value).map_err(internal)?;
    }
    Ok(ResponseBuilder::new().with_status(204).with_headers(headers).empty())
}

/// A response's body as text.
pub(crate) async fn text(response: &web_sys::Response) -> Option<String> {
    let promise = response.text().ok()?;
    worker::wasm_bindgen_futures::JsFuture::from(promise).await.ok()?.as_string()
}

/// `response` with `Vary: Origin`, plus the CORS headers for the allowed `origin`. The 101 of a
/// WebSocket upgrade is left alone: it carries the socket, and browsers ignore CORS on it.
pub(crate) fn with_cors(
    response: web_sys::Response,
    origin: Option<&str>,
) -> worker::Result<web_sys::Response> {
    if response.status() == 101 {
        return Ok(response);
    }
    // A response forwarded from an object has immutable headers: set them on a copy. The body
    // (an event stream included) passes through untouched.
    let headers = web_sys::Headers::new_with_headers(&response.headers())?;
    headers.set("vary", "Origin")?;
    for (name, value) in origin.map(origin::response_headers).unwrap_or_default() {
        headers.set(name, &value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(response.status());
    init.set_status_text(&response.status_text());
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_readable_stream_and_init(response.body().as_ref(), &init)?)
}
