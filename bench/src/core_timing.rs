//! The server-side processing time per message inside the room object, measured on the host:
//! the core's `handle_frame` for a `message:send` in a room of 1,000 sockets, including the one
//! serialization of the broadcast frame. Sends, storage and the runtime are not in it. Also the
//! OT core's `transform` rate, for the document scenario.

use std::collections::BTreeMap;
use std::time::Instant;
use switchboard::core::auth::AuthConfig;
use switchboard::core::caps::Capabilities;
use switchboard::core::config::{Config, Limits};
use switchboard::core::ids::{ConnId, RoomId, UserId};
use switchboard::core::object::Object;
use switchboard::core::protocol::Incoming;
use switchboard::core::room::log::{LogHead, MemoryLog};
use switchboard::core::room::{ConnInfo, Room};
use switchboard::core::time::Timestamp;

/// Mean microseconds per `message:send` over `messages` frames from `sockets` connections.
pub fn message_us(sockets: usize, messages: usize) -> f64 {
    let config = Config {
        auth: AuthConfig { hs256_secret: b"x".to_vec(), audience: None, issuer: None, leeway_secs: 0 },
        server_api_key: None,
        default_caps: Capabilities::default(),
        limits: Limits { max_sockets_per_user: usize::MAX, ..Limits::default() },
        presence: Default::default(),
    };
    let Ok(room_id) = RoomId::parse("bench") else { return 0.0 };
    let mut room = Room::new(room_id, LogHead { seq: 0, epoch: "e".into() }, BTreeMap::new(), config);
    let mut conns = Vec::new();
    for i in 0..sockets {
        let (Ok(conn), Ok(user)) = (ConnId::parse(&format!("c{i}")), UserId::parse(&format!("u{}", i % 10)))
        else {
            return 0.0;
        };
        room.restore_conn(
            ConnInfo { conn: conn.clone(), user, expires: Timestamp(u64::MAX / 2), can_write: true },
            Timestamp(0),
        );
        conns.push(conn);
    }
    let log = MemoryLog::default();
    let frame = r#"{"t":"message:send","ref":"r","d":{"text":"hello everyone","data":{"sent":123456}}}"#;
    let started = Instant::now();
    for k in 0..messages {
        // Spread senders and time so no bucket runs dry: this measures work, not the limiter.
        let now = Timestamp(1_000_000 + (k as u64) * 1000);
        let effects = room.handle_frame(&conns[k % conns.len()], Incoming::Text(frame), now, &log);
        std::hint::black_box(effects);
    }
    started.elapsed().as_secs_f64() * 1e6 / messages as f64
}

/// The OT core's `transform` calls per second on the host: concurrent edits (an insert, a
/// delete with a skip, a replace) against each other, both sides, as the document object does
/// them when ops arrive based on an older version.
pub fn transforms_per_sec(calls: usize) -> f64 {
    use switchboard::core::ot::{transform, Op, Side};
    let ops: Vec<Op> = [
        serde_json::json!([120, "hello"]),
        serde_json::json!([40, {"d": 12}, 300, "x"]),
        serde_json::json!([118, {"d": 4}, "abcd"]),
        serde_json::json!(["start "]),
    ]
    .iter()
    .filter_map(|v| Op::from_json(v).ok())
    .collect();
    let started = Instant::now();
    for k in 0..calls {
        let (a, b) = (&ops[k % ops.len()], &ops[(k / ops.len()) % ops.len()]);
        let side = if k % 2 == 0 { Side::Left } else { Side::Right };
        std::hint::black_box(transform(a, b, side));
    }
    calls as f64 / started.elapsed().as_secs_f64().max(1e-9)
}
