//! The server-side processing time per message inside the room object, measured on the host:
//! the core's `handle_frame` for a `message:send` in a room of 1,000 sockets, including the one
//! serialization of the broadcast frame. Sends, storage and the runtime are not in it.

use std::collections::BTreeMap;
use std::time::Instant;
use switchboard::core::auth::AuthConfig;
use switchboard::core::caps::Capabilities;
use switchboard::core::config::{Config, Limits};
use switchboard::core::ids::{ConnId, RoomId, UserId};
use switchboard::core::log::{LogHead, MemoryLog};
use switchboard::core::protocol::Incoming;
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
            ConnInfo { conn: conn.clone(), user, expires: Timestamp(u64::MAX / 2), can_send: true },
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
