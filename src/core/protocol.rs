//! The wire format: JSON text frames in one envelope.
//!
//! ```text
//! client -> server   {"t": "message:send", "ref": "c-17", "d": {...}}   ref optional: asks for a reply
//! server -> client   {"t": "message:receive", "d": {...}}
//! reply              {"t": "reply", "ref": "c-17", "ok": true, "d": {...}}
//! ```
//!
//! This module decodes envelopes and encodes server frames; what an event *means* is up to the
//! object that receives it. Each object lists the events it accepts and their payloads in its
//! `request.rs` (a [`Requests`] type: one variant per event, each with a typed payload), and
//! decodes `d` once, into that type.

use crate::core::error::{Error, ErrorCode};
use crate::core::time::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Longest accepted `ref`, in bytes.
pub const MAX_REF_LEN: usize = 64;

/// A correlation id chosen by the client: a string or an integer, echoed back verbatim.
pub type Ref = Value;

/// Application JSON carried verbatim (a message's `data`): checked when it is read, then stored
/// and relayed as the same text, never rebuilt into a tree and printed again. Key order and the
/// client's spacing are kept.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

/// Reads the value's text, then walks it as a `Value` would be read, without building one: the
/// raw reader alone accepts what a `Value` refuses (nesting past serde_json's depth limit,
/// numbers beyond `f64`, lone surrogate escapes), which readers of the value later would choke on.
impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawJson, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        serde_json::from_str::<Checked>(raw.get()).map_err(serde::de::Error::custom)?;
        Ok(RawJson(raw))
    }
}

/// Any JSON value, walked element by element with serde_json's own checks, and kept nowhere.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Checked, A::Error> {
        while items.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<Checked, A::Error> {
        while entries.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

impl RawJson {
    /// Checks that `text` is one JSON value (storage hands it back as text).
    pub fn parse(text: String) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text).map(RawJson)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Whether it is `null` (a raw value holds no surrounding whitespace).
    pub fn is_null(&self) -> bool {
        self.get() == "null"
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

/// A decoded client frame.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Event name, e.g. `message:send`.
    pub event: String,
    /// Present when the client wants a reply.
    pub reply_to: Option<Ref>,
    /// The payload, still as its JSON text (`None` when absent or `null`): it is read once,
    /// straight into the event's typed request ([`Requests::decode`]).
    pub data: Option<Box<RawValue>>,
}

/// A frame that did not decode, with the `ref` when one could be read (then the answer is a
/// `reply`, otherwise an `error` frame).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The client's `ref`, if the frame was an object with a usable one.
    pub reply_to: Option<Ref>,
    /// What was wrong.
    pub error: Error,
}

/// Rejected frames on one socket: `MAX_STRIKES` within a rolling minute close it with 4002
/// ([`ABUSE_REASON`]), whatever accepted frames came between, so good frames cannot launder
/// bad ones. Only errors a well-behaved client never causes count ([`ErrorCode::is_strike`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Strikes {
    /// When the recent strikes happened, oldest first; at most `max` are kept.
    recent: std::collections::VecDeque<Timestamp>,
    /// Until when the last `rate_limited` answer asked this socket to wait.
    retry_at: Option<Timestamp>,
}

/// How long a strike counts.
pub const STRIKE_WINDOW_MS: u64 = 60_000;

/// The close reason that goes with 4002.
pub const ABUSE_REASON: &str = "too many rejected frames";

impl Strikes {
    /// A frame answered with `error` at `now`; `true` when the socket must be closed: it is a
    /// strike and the `max`-th within [`STRIKE_WINDOW_MS`].
    pub fn record(&mut self, error: &Error, max: u32, now: Timestamp) -> bool {
        if !error.code.is_strike() {
            return false;
        }
        if error.code == ErrorCode::RateLimited {
            // Budgets are per user, so one tab can spend another's: a refusal is a strike only
            // when this socket did not wait as its last refusal asked.
            let ignored = self.retry_at.is_some_and(|at| now < at);
            self.retry_at = Some(now.plus_millis(error.retry_after_ms.unwrap_or(0)));
            if !ignored {
                return false;
            }
        }
        let since = now.as_millis().saturating_sub(STRIKE_WINDOW_MS);
        while self.recent.front().is_some_and(|t| t.as_millis() <= since) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        while self.recent.len() > max {
            self.recent.pop_front();
        }
        self.recent.len() >= max
    }
}

/// The close reason that goes with 4001.
pub const EXPIRED_REASON: &str = "token expired";

/// The one event a socket may still send once its token expired.
pub const REFRESH_EVENT: &str = "auth:refresh";

/// When a socket whose token carries `exp` (`expires`) must close: `JWT_LEEWAY_SECS` later, the
/// same skew (and clamp) token verification tolerates, so the alarm and frames agree with it.
pub fn token_deadline(expires: Timestamp, leeway_secs: i64) -> Timestamp {
    expires.plus_millis(leeway_secs.clamp(0, 86_400).unsigned_abs() * 1000)
}

/// Whether a frame on a socket past its token deadline must close the socket (4001) instead of
/// being handled: every frame but a readable `auth:refresh`.
pub fn expired_frame(decoded: &Result<Envelope, DecodeError>, now: Timestamp, deadline: Timestamp) -> bool {
    now >= deadline && !matches!(decoded, Ok(envelope) if envelope.event == REFRESH_EVENT)
}

/// What arrived on a socket, before decoding.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame of this many bytes (not part of the protocol).
    Binary(usize),
}

fn usable_ref(v: &Value) -> Option<Ref> {
    match v {
        Value::String(s) if s.len() <= MAX_REF_LEN => Some(v.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(v.clone()),
        _ => None,
    }
}

/// Decodes one frame. Oversize frames are refused before parsing.
pub fn decode(frame: Incoming<'_>, max_frame_bytes: usize) -> Result<Envelope, DecodeError> {
    let bare = |code, message: String| DecodeError { reply_to: None, error: Error::new(code, message) };
    let text = match frame {
        Incoming::Binary(_) => {
            return Err(bare(ErrorCode::BadFrame, "binary frames are not supported; send JSON text".into()))
        }
        Incoming::Text(text) => text,
    };
    if text.len() > max_frame_bytes {
        return Err(bare(ErrorCode::TooLarge, format!("frame is over {max_frame_bytes} bytes")));
    }
    // The envelope's fields, read in one pass; the payload stays text until its event is known.
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(default)]
        t: Option<Value>,
        #[serde(default, rename = "ref")]
        reply_to: Option<Value>,
        #[serde(default, borrow)]
        d: Option<&'a RawValue>,
    }
    // A struct also reads from a JSON array; only an object is an envelope.
    if !text.trim_start().starts_with('{') {
        let message = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => "frame must be a JSON object".to_owned(),
            Err(e) => format!("invalid JSON: {e}"),
        };
        return Err(bare(ErrorCode::BadFrame, message));
    }
    let fields: Fields<'_> = match serde_json::from_str(text) {
        Ok(fields) => fields,
        // Every field reads any JSON value, so the only data error is a field given twice.
        Err(e) if e.is_data() => {
            return Err(bare(ErrorCode::BadFrame, format!("not an envelope: {}", without_position(&e))))
        }
        Err(e) => return Err(bare(ErrorCode::BadFrame, format!("invalid JSON: {e}"))),
    };
    let reply_to = match fields.reply_to {
        None | Some(Value::Null) => None,
        Some(v) => match usable_ref(&v) {
            Some(r) => Some(r),
            None => {
                return Err(bare(
                    ErrorCode::BadFrame,
                    format!("ref must be a string of at most {MAX_REF_LEN} bytes or an integer"),
                ))
            }
        },
    };
    let event = match fields.t {
        Some(Value::String(t)) => t,
        _ => {
            return Err(DecodeError {
                reply_to,
                error: Error::new(ErrorCode::BadFrame, "frame needs a string field t"),
            })
        }
    };
    Ok(Envelope { event, reply_to, data: fields.d.map(ToOwned::to_owned) })
}

/// The requests one kind of object accepts on its sockets: one variant per event, each with its
/// payload as a typed struct (`room::Request`, `user::Request`, `doc::Request`).
///
/// A frame is handled in two steps, and its event name is matched once: [`Requests::event`]
/// looks the name up (an unknown one is `unknown_event`), so the rights and the rate class that
/// go with the event are checked before its payload is looked at; then [`Requests::decode`]
/// reads `d` into the request (a bad one is `bad_request`), and the object matches on that.
/// Payloads are read through serde only ([`Requests::deserialize`]), so the field names and which
/// are required can be read off these definitions: `examples/wire_requests.rs` prints them, and
/// the SDK's test checks its TypeScript request types against that.
pub trait Requests: Sized {
    /// The events, without payloads.
    type Event: Copy + PartialEq + 'static;

    /// Every event the object accepts.
    const EVENTS: &'static [Self::Event];

    /// An event's name on the wire.
    fn name(event: Self::Event) -> &'static str;

    /// Reads `event`'s payload from `data`. An event without a payload ignores `data`.
    fn deserialize<'de, D: Deserializer<'de>>(event: Self::Event, data: D) -> Result<Self, D::Error>;

    /// The event called `name`, or `unknown_event`.
    fn event(name: &str) -> Result<Self::Event, Error> {
        Self::EVENTS
            .iter()
            .copied()
            .find(|e| Self::name(*e) == name)
            .ok_or_else(|| Error::new(ErrorCode::UnknownEvent, format!("unknown event {name:?}")))
    }

    /// Decodes `event`'s `d` (a missing `d` decodes as `{}`), or `bad_request` naming the event.
    fn decode(event: Self::Event, data: Option<Box<RawValue>>) -> Result<Self, Error> {
        let text = data.as_deref().map_or("{}", RawValue::get);
        // `text` is one JSON value (the envelope checked it), so nothing can trail it.
        Self::deserialize(event, &mut serde_json::Deserializer::from_str(text)).map_err(|e| {
            Error::new(
                ErrorCode::BadRequest,
                format!("bad {} payload: {}", Self::name(event), without_position(&e)),
            )
        })
    }
}

/// `auth:refresh`, accepted by every object: a fresh token for this socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refresh {
    /// The new token (a JWT).
    pub token: String,
}

/// A server-to-client event frame: `{"t": event, "d": data}`.
pub fn event<D: Serialize>(event: &str, data: &D) -> String {
    #[derive(Serialize)]
    struct Frame<'a, D> {
        t: &'a str,
        d: &'a D,
    }
    to_json(&Frame { t: event, d: data })
}

/// A successful reply: `{"t":"reply","ref":…,"ok":true,"d":…}`.
pub fn reply_ok<D: Serialize>(reply_to: &Ref, data: &D) -> String {
    #[derive(Serialize)]
    struct Reply<'a, D> {
        t: &'static str,
        #[serde(rename = "ref")]
        reply_to: &'a Ref,
        ok: bool,
        d: &'a D,
    }
    to_json(&Reply { t: "reply", reply_to, ok: true, d: data })
}

/// A failed reply: `{"t":"reply","ref":…,"ok":false,"error":{"code","message"}}`.
pub fn reply_err(reply_to: &Ref, error: &Error) -> String {
    #[derive(Serialize)]
    struct Reply<'a> {
        t: &'static str,
        #[serde(rename = "ref")]
        reply_to: &'a Ref,
        ok: bool,
        error: &'a Error,
    }
    to_json(&Reply { t: "reply", reply_to, ok: false, error })
}

/// An error that answers no request: `{"t":"error","error":{"code","message"}}`.
pub fn error_frame(error: &Error) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        t: &'static str,
        error: &'a Error,
    }
    to_json(&Frame { t: "error", error })
}

/// The answer to a failed request: a `reply` when it had a `ref`, else an `error` frame.
pub fn failure(reply_to: Option<&Ref>, error: &Error) -> String {
    match reply_to {
        Some(r) => reply_err(r, error),
        None => error_frame(error),
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Room for a typical frame up front: grown from empty, a message's frame is reallocated
    // (and copied) six times on its way to ~200 bytes.
    let mut bytes = Vec::with_capacity(256);
    // Serializing our own frame types (strings, numbers, maps with string keys) cannot fail, and
    // serde_json writes UTF-8; fall back to an internal-error frame rather than panicking.
    let written = serde_json::to_writer(&mut bytes, value).ok().and_then(|()| String::from_utf8(bytes).ok());
    written.unwrap_or_else(|| {
        r#"{"t":"error","error":{"code":"internal","message":"could not encode frame"}}"#.to_owned()
    })
}

/// One Server-Sent Events message: `event:`, optional `id:`, and the JSON `data:` on one line.
pub fn sse_event<D: Serialize>(event: &str, id: Option<&str>, data: &D) -> String {
    let mut out = format!("event: {event}\n");
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    // serde_json never emits a raw newline, but verbatim message data may hold line breaks
    // between tokens (the only place JSON allows them raw): as spaces, the value is the same and
    // the data stays a single `data:` line.
    let json = to_json(data);
    let json = if json.contains(['\n', '\r']) { json.replace(['\n', '\r'], " ") } else { json };
    out.push_str(&format!("data: {json}\n\n"));
    out
}

/// A serde error's message without the " at line 1 column 9" the text deserializer appends:
/// the position within `d` would only confuse (clients send `d` as an object, not as text).
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(at) if e.line() > 0 => message[..at].to_owned(),
        _ => message,
    }
}
