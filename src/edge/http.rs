//! HTTP responses: JSON bodies and the one mapping from core errors to statuses.

use crate::core::error::{Error, ErrorCode};
use serde::Serialize;
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
    response.ok(error.to_http_body())
}

/// A platform failure, logged and reported as `internal` (its text never reaches the client).
pub(crate) fn internal(e: worker::Error) -> Error {
    worker::console_error!("internal error: {e}");
    Error::new(ErrorCode::Internal, "internal error")
}
