//! What the generator says to each server, so one generator drives all three at the same
//! client cost: Switchboard's JSON envelope, Socket.IO v4 over Engine.IO 4 on a WebSocket, and
//! the ceiling server's bare text.

use serde_json::{json, Value};

/// Which server a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Switchboard in workerd.
    Switchboard,
    /// The plain-JavaScript Durable Object on the same runtime (bench/peers/js-do), speaking
    /// Switchboard's frames for rooms.
    JsDo,
    /// The Node `socket.io` peer.
    SocketIo,
    /// The native broadcast server: no auth, no JSON, no storage.
    Ceiling,
}

impl Flavor {
    /// Every target, in report order.
    pub const ALL: [Flavor; 4] = [Flavor::Switchboard, Flavor::JsDo, Flavor::SocketIo, Flavor::Ceiling];

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Switchboard => "switchboard",
            Flavor::JsDo => "js-do",
            Flavor::SocketIo => "socket.io",
            Flavor::Ceiling => "ceiling",
        }
    }

    /// The WebSocket URL for `room` on the server at `base` (`ws://127.0.0.1:port`).
    pub fn url(self, base: &str, room: &str, token: &str) -> String {
        match self {
            Flavor::Switchboard | Flavor::JsDo => format!("{base}/v1/rooms/{room}/ws?token={token}"),
            Flavor::SocketIo => format!("{base}/socket.io/?EIO=4&transport=websocket"),
            Flavor::Ceiling => format!("{base}/{room}"),
        }
    }

    /// The WebSocket URL of a user's own channel (notifications), when the server has one.
    pub fn user_url(self, base: &str, token: &str) -> Option<String> {
        match self {
            Flavor::Switchboard => Some(format!("{base}/v1/users/me/ws?token={token}")),
            // Socket.IO joins every socket to its user's room on connection.
            Flavor::SocketIo => Some(format!("{base}/socket.io/?EIO=4&transport=websocket")),
            Flavor::JsDo | Flavor::Ceiling => None,
        }
    }

    /// The app-server route that notifies many users in one call.
    pub fn notify_path(self) -> Option<&'static str> {
        match self {
            Flavor::Switchboard => Some("/v1/notify"),
            Flavor::SocketIo => Some("/notify"),
            Flavor::JsDo | Flavor::Ceiling => None,
        }
    }

    /// A chat message carrying the send time `sent_us` (µs since the run started). To Switchboard
    /// and js-do it goes as the SDK sends every message: with a `ref` that asks for the reply (the
    /// ack) and a client `id` that makes a resend idempotent (unique per sender: each sends at
    /// most once per µs).
    pub fn message(self, room: &str, sent_us: u64) -> String {
        match self {
            Flavor::Switchboard | Flavor::JsDo => json!({
                "t": "message:send",
                "ref": sent_us,
                "d": { "text": "bench", "id": format!("b{sent_us}"), "data": { "sent": sent_us } }
            })
            .to_string(),
            Flavor::SocketIo => socketio::event(
                "message:send",
                &json!({ "room": room, "text": "bench", "sent": sent_us }),
                None,
            ),
            Flavor::Ceiling => json!({ "text": "bench", "sent": sent_us }).to_string(),
        }
    }
}

/// What an incoming text frame means to the generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The connection is ready to send and receive room traffic.
    Joined,
    /// A chat message or notification sent at this time (µs since the run started).
    Message { sent_us: u64 },
    /// Send this frame back (Engine.IO heartbeat, Socket.IO handshake steps).
    Reply(String),
    /// Nothing the generator needs.
    Other,
}

/// Interprets one text frame from `flavor`'s server, for a client that joins `room` with `token`.
/// A Switchboard frame may be a batch: a JSON array of envelopes, each interpreted in order.
pub fn interpret(flavor: Flavor, frame: &str, room: &str, token: &str) -> Vec<Incoming> {
    match flavor {
        Flavor::Switchboard | Flavor::JsDo => match typed(frame) {
            Some(incoming) => incoming,
            None => match serde_json::from_str::<Value>(frame) {
                Ok(Value::Array(batch)) => batch.iter().map(switchboard_envelope).collect(),
                Ok(v) => vec![switchboard_envelope(&v)],
                Err(_) => vec![Incoming::Other],
            },
        },
        Flavor::SocketIo => vec![socketio::interpret(frame, room, token)],
        Flavor::Ceiling => {
            vec![serde_json::from_str::<Value>(frame).map(|v| sent_of(&v)).unwrap_or(Incoming::Other)]
        }
    }
}

/// An envelope read only as far as the generator needs: its event, and its payload left as
/// text unless it is a message. At 400,000 messages a second the generator shares the machine
/// with the server; a `Value` tree per message took most of a core.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    t: &'a str,
    #[serde(borrow)]
    d: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct Payload {
    data: Option<SentAt>,
}

#[derive(serde::Deserialize)]
struct SentAt {
    sent: Option<u64>,
}

/// `frame` read with the typed envelope; `None` when it does not fit (then the `Value` path
/// decides).
fn typed(frame: &str) -> Option<Vec<Incoming>> {
    let one = |e: &Envelope| match e.t {
        "room:state" | "user:state" => Some(Incoming::Joined),
        "message:receive" | "notification:new" => {
            let payload: Payload = serde_json::from_str(e.d?.get()).ok()?;
            Some(
                payload
                    .data
                    .and_then(|d| d.sent)
                    .map_or(Incoming::Other, |sent_us| Incoming::Message { sent_us }),
            )
        }
        _ => Some(Incoming::Other),
    };
    if frame.starts_with('[') {
        let batch: Vec<Envelope> = serde_json::from_str(frame).ok()?;
        batch.iter().map(one).collect()
    } else {
        one(&serde_json::from_str(frame).ok()?).map(|i| vec![i])
    }
}

fn switchboard_envelope(v: &Value) -> Incoming {
    match v["t"].as_str() {
        Some("room:state" | "user:state") => Incoming::Joined,
        Some("message:receive" | "notification:new") => sent_of(&v["d"]["data"]),
        _ => Incoming::Other,
    }
}

fn sent_of(v: &Value) -> Incoming {
    v["sent"].as_u64().map_or(Incoming::Other, |sent_us| Incoming::Message { sent_us })
}

/// Socket.IO v4 framing over an Engine.IO 4 WebSocket: `0` open, `2`/`3` ping/pong, `40` connect
/// (with auth), `42` event, `43` ack.
pub mod socketio {
    use super::Incoming;
    use serde_json::{json, Value};

    /// The ack id the generator uses for `room:join`.
    pub const JOIN_ACK: u32 = 1;

    /// A `42` event frame, with an ack id when one is wanted.
    pub fn event(name: &str, data: &Value, ack: Option<u32>) -> String {
        let ack = ack.map(|a| a.to_string()).unwrap_or_default();
        format!("42{ack}{}", json!([name, data]))
    }

    /// The Socket.IO connect packet with the JWT in `auth`.
    pub fn connect(token: &str) -> String {
        format!("40{}", json!({ "token": token }))
    }

    /// Handshake and heartbeat: open → connect with auth; connected → join the room (acked);
    /// the join ack → joined; ping → pong; events → messages.
    pub fn interpret(frame: &str, room: &str, token: &str) -> Incoming {
        if frame == "2" {
            return Incoming::Reply("3".into());
        }
        if frame.starts_with('0') {
            return Incoming::Reply(connect(token));
        }
        if let Some(rest) = frame.strip_prefix("40") {
            if rest.is_empty() || rest.starts_with('{') {
                return Incoming::Reply(event("room:join", &json!(room), Some(JOIN_ACK)));
            }
        }
        if frame.starts_with(&format!("43{JOIN_ACK}[")) {
            return Incoming::Joined;
        }
        if let Some(rest) = frame.strip_prefix("42") {
            let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            if let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(body) {
                let payload = parts.get(1).unwrap_or(&Value::Null);
                let sent = match parts.first().and_then(Value::as_str) {
                    Some("message:receive") => payload["sent"].as_u64(),
                    Some("notification:new") => payload["data"]["sent"].as_u64(),
                    _ => None,
                };
                if let Some(sent_us) = sent {
                    return Incoming::Message { sent_us };
                }
            }
        }
        Incoming::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switchboard_batches_are_read_in_order() {
        let batch = r#"[{"t":"message:receive","d":{"data":{"sent":1}}},{"t":"typing:update","d":{}},{"t":"message:receive","d":{"data":{"sent":2}}}]"#;
        assert_eq!(
            interpret(Flavor::Switchboard, batch, "r", "t"),
            vec![Incoming::Message { sent_us: 1 }, Incoming::Other, Incoming::Message { sent_us: 2 }]
        );
    }

    #[test]
    fn the_typed_reading_agrees_with_the_value_reading() {
        let frames = [
            r#"{"t":"room:state","d":{"room":"r","members":[{"user":"a"}]}}"#,
            r#"{"t":"user:state","d":{}}"#,
            r#"{"t":"message:receive","d":{"room":"r","seq":1,"text":"bench","data":{"sent":42},"ts":7}}"#,
            r#"{"t":"message:receive","d":{"text":"no data"}}"#,
            r#"{"t":"notification:new","d":{"data":{"sent":9}}}"#,
            r#"[{"t":"member:join","d":{"user":"b"}},{"t":"message:receive","d":{"data":{"sent":3}}}]"#,
            r#"{"t":"reply","ref":"1","ok":true}"#,
        ];
        for frame in frames {
            let by_value: Vec<Incoming> = match serde_json::from_str::<Value>(frame).unwrap() {
                Value::Array(batch) => batch.iter().map(switchboard_envelope).collect(),
                v => vec![switchboard_envelope(&v)],
            };
            assert_eq!(typed(frame), Some(by_value), "{frame}");
        }
        // What the typed reading cannot hold falls back to the `Value` reading.
        let odd = r#"{"t":"message:receive","d":{"data":"text, not an object"}}"#;
        assert_eq!(typed(odd), None);
        assert_eq!(interpret(Flavor::Switchboard, odd, "r", "t"), vec![Incoming::Other]);
    }

    fn one(flavor: Flavor, frame: &str, room: &str, token: &str) -> Incoming {
        let mut all = interpret(flavor, frame, room, token);
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    #[test]
    fn socketio_handshake_heartbeat_and_events() {
        let open =
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(one(Flavor::SocketIo, open, "r", "tok"), Incoming::Reply(r#"40{"token":"tok"}"#.into()));
        assert_eq!(
            one(Flavor::SocketIo, r#"40{"sid":"xyz"}"#, "r1", "tok"),
            Incoming::Reply(r#"421["room:join","r1"]"#.into())
        );
        assert_eq!(one(Flavor::SocketIo, r#"431[{"ok":true}]"#, "r", "t"), Incoming::Joined);
        assert_eq!(one(Flavor::SocketIo, "2", "r", "t"), Incoming::Reply("3".into()));
        let msg = r#"42["message:receive",{"room":"r","text":"bench","sent":1234,"user":"u"}]"#;
        assert_eq!(one(Flavor::SocketIo, msg, "r", "t"), Incoming::Message { sent_us: 1234 });
        assert_eq!(one(Flavor::SocketIo, r#"42["other",{}]"#, "r", "t"), Incoming::Other);
        let notification = r#"42["notification:new",{"type":"bench","data":{"sent":77},"ts":1}]"#;
        assert_eq!(one(Flavor::SocketIo, notification, "r", "t"), Incoming::Message { sent_us: 77 });
        assert_eq!(one(Flavor::SocketIo, r#"44{"message":"unauthorized"}"#, "r", "t"), Incoming::Other);
        assert_eq!(
            Flavor::SocketIo.message("r", 7),
            r#"42["message:send",{"room":"r","sent":7,"text":"bench"}]"#
        );
    }

    #[test]
    fn switchboard_and_ceiling_frames() {
        let state = r#"{"t":"room:state","d":{"room":"r"}}"#;
        assert_eq!(one(Flavor::Switchboard, state, "r", "t"), Incoming::Joined);
        let msg = r#"{"t":"message:receive","d":{"seq":1,"text":"bench","data":{"sent":99}}}"#;
        assert_eq!(one(Flavor::Switchboard, msg, "r", "t"), Incoming::Message { sent_us: 99 });
        assert_eq!(one(Flavor::Switchboard, "{\"t\":\"reply\"}", "r", "t"), Incoming::Other);
        let user_state = r#"{"t":"user:state","d":{"user":"u"}}"#;
        assert_eq!(one(Flavor::Switchboard, user_state, "r", "t"), Incoming::Joined);
        let notification = r#"{"t":"notification:new","d":{"id":1,"type":"bench","data":{"sent":8}}}"#;
        assert_eq!(one(Flavor::Switchboard, notification, "r", "t"), Incoming::Message { sent_us: 8 });
        assert_eq!(Flavor::Ceiling.user_url("ws://h", "t"), None);
        assert_eq!(
            one(Flavor::Ceiling, r#"{"text":"bench","sent":5}"#, "r", "t"),
            Incoming::Message { sent_us: 5 }
        );
        assert_eq!(Flavor::Switchboard.url("ws://h", "r", "tok"), "ws://h/v1/rooms/r/ws?token=tok");
        let sent: Value = serde_json::from_str(&Flavor::Switchboard.message("r", 42)).unwrap();
        assert_eq!(sent["d"]["data"]["sent"], 42);
        assert_eq!((&sent["ref"], &sent["d"]["id"]), (&json!(42), &json!("b42")));
    }
}
