//! Shared test helpers: token signing and a room simulator with a virtual clock.
#![allow(dead_code)]

pub mod docs;
pub mod fuzz;
pub mod shell;
pub mod solo;
pub mod users;

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeMap;
use switchboard::core::auth::AuthConfig;
use switchboard::core::caps::Capabilities;
use switchboard::core::config::{Config, Limits};
use switchboard::core::error::Error;
use switchboard::core::ids::{ConnId, RoomId, UserId};
use switchboard::core::object::{Never, Object};
use switchboard::core::protocol::Incoming;
use switchboard::core::room::log::{LogHead, MemoryLog};
use switchboard::core::room::{ConnInfo, Resume, Room, RoomEffect, RoomWrite, StreamInfo, SSE_KEEPALIVE};
use switchboard::core::time::Timestamp;

pub const SECRET: &[u8] = b"test-secret";

/// Signs `claims` with HMAC-SHA256 under `secret`, with any header (bad ones too).
pub fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let body = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
        Base64UrlUnpadded::encode_string(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length works for HMAC");
    mac.update(body.as_bytes());
    format!("{body}.{}", Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes()))
}

pub fn hs256(claims: &Value) -> String {
    sign(&json!({ "alg": "HS256", "typ": "JWT" }), claims, SECRET)
}

pub fn config(limits: Limits) -> Config {
    Config {
        auth: AuthConfig { hs256_secret: SECRET.to_vec(), audience: None, issuer: None, leeway_secs: 0 },
        server_api_key: Some("server-key".into()),
        default_caps: Capabilities::parse(r#"{"*":["join","send"]}"#).unwrap(),
        limits,
        presence: Default::default(),
    }
}

/// One room driven entirely in memory: effects are applied to inboxes, a log and a state table;
/// the virtual clock fires the room's alarm whenever it passes `poll_timeout`.
pub struct Sim {
    pub room: Room,
    pub log: MemoryLog,
    pub now: Timestamp,
    pub inboxes: BTreeMap<ConnId, Vec<Value>>,
    pub closed: BTreeMap<ConnId, u16>,
    pub stored_state: BTreeMap<String, Value>,
    pub attachments: BTreeMap<ConnId, ConnInfo>,
    /// What each open event stream received after its opening.
    pub streams: BTreeMap<ConnId, Vec<String>>,
    /// Streams the room ended, with their last event.
    pub ended_streams: BTreeMap<ConnId, String>,
    next_conn: u32,
}

impl Sim {
    pub fn new(room: &str) -> Sim {
        Sim::with_limits(room, Limits::default())
    }

    pub fn with_limits(room: &str, limits: Limits) -> Sim {
        Sim::with_config(room, config(limits))
    }

    pub fn with_config(room: &str, config: Config) -> Sim {
        let head = LogHead { seq: 0, epoch: "ep1".into() };
        Sim {
            room: Room::new(RoomId::parse(room).unwrap(), head, BTreeMap::new(), config),
            log: MemoryLog::default(),
            now: Timestamp(1_700_000_000_000),
            inboxes: BTreeMap::new(),
            closed: BTreeMap::new(),
            stored_state: BTreeMap::new(),
            attachments: BTreeMap::new(),
            streams: BTreeMap::new(),
            ended_streams: BTreeMap::new(),
            next_conn: 0,
        }
    }

    /// Moves the clock forward, firing the alarm at each deadline on the way.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        while let Some(deadline) = self.room.poll_timeout().filter(|d| *d <= target) {
            self.now = self.now.max(deadline);
            let effects = self.room.handle_alarm(self.now);
            self.apply(effects);
        }
        self.now = target;
    }

    pub fn connect(&mut self, user: &str) -> ConnId {
        self.connect_with(user, 3_600_000, true, None)
    }

    /// Connects with a token lifetime, the write right and an optional resume position.
    pub fn connect_with(
        &mut self,
        user: &str,
        ttl_ms: u64,
        can_write: bool,
        resume: Option<(u64, &str)>,
    ) -> ConnId {
        let user = UserId::parse(user).unwrap();
        self.room.check_capacity(&user).expect("room has capacity");
        self.next_conn += 1;
        let conn = ConnId::parse(&format!("c{}", self.next_conn)).unwrap();
        self.inboxes.insert(conn.clone(), Vec::new());
        let info = ConnInfo { conn: conn.clone(), user, expires: self.now.plus_millis(ttl_ms), can_write };
        self.attachments.insert(conn.clone(), info.clone());
        let resume = resume.map(|(since, epoch)| Resume { since, epoch: epoch.into() });
        let effects = self.room.handle_connect(info, resume, self.now, &self.log);
        self.apply(effects);
        conn
    }

    /// Opens an event stream for `user` whose token lives `ttl_ms`; returns its id and opening.
    pub fn open_stream(&mut self, user: &str, ttl_ms: u64) -> Result<(ConnId, String), Error> {
        self.next_conn += 1;
        let id = ConnId::parse(&format!("s{}", self.next_conn)).unwrap();
        let info = StreamInfo {
            id: id.clone(),
            user: UserId::parse(user).unwrap(),
            expires: self.now.plus_millis(ttl_ms),
        };
        let opening = self.room.open_stream(info, None, self.now, &self.log)?;
        self.streams.insert(id.clone(), Vec::new());
        Ok((id, opening))
    }

    /// The client of an event stream went away.
    pub fn drop_stream(&mut self, id: &ConnId) {
        self.streams.remove(id);
        self.room.close_stream(id);
    }

    pub fn send(&mut self, conn: &ConnId, frame: Value) {
        self.send_raw(conn, &frame.to_string());
    }

    pub fn send_raw(&mut self, conn: &ConnId, text: &str) {
        let effects = self.room.handle_frame(conn, Incoming::Text(text), self.now, &self.log);
        self.apply(effects);
    }

    pub fn close(&mut self, conn: &ConnId) {
        self.inboxes.remove(conn);
        self.attachments.remove(conn);
        let effects = self.room.handle_close(conn, self.now);
        self.apply(effects);
    }

    /// Drains what `conn` received.
    pub fn take(&mut self, conn: &ConnId) -> Vec<Value> {
        self.inboxes.get_mut(conn).map(std::mem::take).unwrap_or_default()
    }

    /// Drains what `conn` received and returns the only frame.
    pub fn take_one(&mut self, conn: &ConnId) -> Value {
        let mut frames = self.take(conn);
        assert_eq!(frames.len(), 1, "expected one frame, got {frames:?}");
        frames.remove(0)
    }

    pub fn apply(&mut self, effects: Vec<RoomEffect>) {
        shell::apply(self, effects);
    }
}

impl shell::Shell<Room> for Sim {
    fn write(&mut self, write: RoomWrite) {
        room_write(&mut self.log, &mut self.stored_state, write);
    }

    fn send(&mut self, to: ConnId, frame: String) {
        if let Some(inbox) = self.inboxes.get_mut(&to) {
            inbox.push(serde_json::from_str(&frame).unwrap());
        }
    }

    fn broadcast(&mut self, except: Option<ConnId>, frame: String) {
        let value: Value = serde_json::from_str(&frame).unwrap();
        for (id, inbox) in self.inboxes.iter_mut() {
            if except.as_ref() != Some(id) {
                inbox.push(value.clone());
            }
        }
    }

    fn close(&mut self, conn: ConnId, code: u16) {
        self.closed.insert(conn.clone(), code);
        Sim::close(self, &conn);
    }

    fn update_conn(&mut self, info: ConnInfo) {
        self.attachments.insert(info.conn.clone(), info);
    }

    fn call(&mut self, call: Never) {
        match call {}
    }

    fn keepalive(&mut self) {
        for chunks in self.streams.values_mut() {
            chunks.push(SSE_KEEPALIVE.to_string());
        }
    }

    fn stream_end(&mut self, stream: ConnId, last: String) {
        assert!(self.streams.remove(&stream).is_some(), "ended a stream that is not open");
        self.ended_streams.insert(stream, last);
    }
}

/// Stores a room's write as its SQL does: the log (gapless) and the live state table.
pub fn room_write(log: &mut MemoryLog, state: &mut BTreeMap<String, Value>, write: RoomWrite) {
    match write {
        RoomWrite::Append(m) => {
            assert_eq!(m.seq, log.messages.last().map_or(0, |l| l.seq) + 1, "log has a gap");
            log.messages.push(m);
        }
        RoomWrite::Trim { through, forget_through } => log.trim(through, forget_through),
        RoomWrite::PutState { key, entry } => {
            state.insert(key, serde_json::to_value(entry).unwrap());
        }
    }
}

/// A room's storage for [`solo::Solo`].
#[derive(Default)]
pub struct RoomStore {
    pub log: MemoryLog,
    pub state: BTreeMap<String, Value>,
}

impl solo::Storage<Room> for RoomStore {
    fn write(&mut self, write: RoomWrite) {
        room_write(&mut self.log, &mut self.state, write);
    }

    fn reader(&self) -> &(dyn switchboard::core::room::log::RoomLog + '_) {
        &self.log
    }

    fn call(&mut self, _room: &mut Room, call: Never, _now: Timestamp) -> Vec<RoomEffect> {
        match call {}
    }
}

/// A small deterministic generator (xorshift), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
