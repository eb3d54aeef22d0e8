//! Socket operations the `worker` crate either unwraps internally or converts per call.

use crate::core::error::{close, Error, ErrorCode};
use crate::core::object::Attachment;
use js_sys::JsString;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::worker_sys::web_sys;
use worker::{ResponseBuilder, State, WebSocket, WebSocketPair};

#[wasm_bindgen]
extern "C" {
    /// The same JS WebSocket, with `send` taking an already-built JS string.
    type RawSocket;

    #[wasm_bindgen(method, catch, js_name = send)]
    fn send_js(this: &RawSocket, data: &JsString) -> Result<(), JsValue>;
}

/// The WebSocket `readyState` of an open socket.
const OPEN: u16 = 1;

/// Accepts `ws` for hibernation, without tags (nothing looks sockets up by tag: the shell keeps
/// them by connection id); the `worker` wrapper would panic on failure.
pub(crate) fn accept(state: &State, ws: &WebSocket) -> Result<(), JsValue> {
    state.as_raw().accept_websocket(ws.as_ref())
}

/// The open sockets with the state each carries in its attachment, after a wake; a socket
/// without readable state is closed with 1011 (the client reconnects) and left out.
pub(crate) fn restored<T: Attachment>(state: &State) -> Result<Vec<(WebSocket, T)>, Error> {
    let listed = state.as_raw().get_websockets();
    let listed = listed.map_err(|_| Error::new(ErrorCode::Internal, "could not list sockets"))?;
    Ok(listed
        .into_iter()
        .filter(|ws| ws.ready_state() == OPEN)
        .map(WebSocket::from)
        .filter_map(|ws| match ws.deserialize_attachment::<T>() {
            Ok(Some(info)) => Some((ws, info)),
            _ => {
                close(&ws, close::INTERNAL, "lost connection state");
                None
            }
        })
        .collect())
}

/// Close reason for a socket a frame could not be sent to (with 1011): it may have missed
/// frames, so its client reconnects and resumes rather than go on with a gap.
pub(crate) const SEND_FAILED: &str = "could not send; reconnect";

/// Sends one pre-built JS string: a broadcast crosses into JS once, not once per recipient.
/// `false` when the runtime refused it (the socket closed meanwhile, or failed): the caller
/// closes the socket with 1011 ([`SEND_FAILED`]) and forgets it.
pub(crate) fn send_js(ws: &WebSocket, frame: &JsString) -> bool {
    let raw: &RawSocket = ws.as_ref().unchecked_ref();
    raw.send_js(frame).is_ok()
}

/// Sends a frame; `false` when the runtime refused it (see [`send_js`]).
pub(crate) fn send(ws: &WebSocket, frame: &str) -> bool {
    ws.send_with_str(frame).is_ok()
}

/// Closes with `code`; 1005 and 1006 cannot be sent on the wire, so they become 1000.
pub(crate) fn close(ws: &WebSocket, code: u16, reason: &str) {
    let code = if code == 1005 || code == 1006 { 1000 } else { code };
    let _ = ws.close(Some(code), Some(reason));
}

/// Whether a refused upgrade of `req` is reported on an accepted socket (4401/4403/4429) rather
/// than with its HTTP status: a WebSocket upgrade to a socket route offering `switchboard.v1`.
pub(crate) fn refusable_upgrade(req: &web_sys::Request) -> bool {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let is_upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let offers = header("sec-websocket-protocol")
        .is_some_and(|p| p.split(',').any(|p| p.trim() == crate::core::auth::SUBPROTOCOL));
    let url = req.url();
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let socket_route = path.ends_with("/ws");
    is_upgrade && offers && socket_route
}

/// The error an object's HTTP refusal carries (`{"error": {...}}`), or a generic one.
pub(crate) async fn error_of(response: &web_sys::Response) -> Error {
    let body = super::http::text(response).await;
    body.as_deref()
        .and_then(Error::from_http_body)
        .unwrap_or_else(|| Error::new(ErrorCode::TooManyConnections, "refused"))
}

/// Accepts the upgrade and closes the socket at once with `code`, after an `error` frame saying
/// why, echoing `switchboard.v1` as every accepted handshake does. This is how a browser, which
/// never sees the HTTP status of a refused handshake, learns that retrying cannot help.
pub(crate) fn refuse(code: u16, error: &Error) -> worker::Result<web_sys::Response> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    send(&pair.server, &crate::core::protocol::error_frame(error));
    // Close reasons must stay under 123 bytes; cut at a character boundary.
    let mut end = error.message.len().min(120);
    while !error.message.is_char_boundary(end) {
        end -= 1;
    }
    close(&pair.server, code, &error.message[..end]);
    Ok(ResponseBuilder::new()
        .with_status(101)
        .with_header("sec-websocket-protocol", crate::core::auth::SUBPROTOCOL)?
        .with_websocket(pair.client)
        .empty()
        .into())
}
