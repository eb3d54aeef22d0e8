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
use switchboard::core::object::Never;
use switchboard::core::room::log::{LogHead, MemoryLog};
use switchboard::core::room::{ConnInfo, Resume, Room, RoomEffect, RoomWrite, StreamInfo};
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

/// One room driven entirely in memory ([`solo::Solo`]): effects reach inboxes, a log and a
/// state table; the virtual clock fires the room's alarm whenever it passes `poll_timeout`.
pub type Sim = solo::Solo<Room, RoomStore>;

impl Sim {
    pub fn new(room: &str) -> Sim {
        Sim::with_limits(room, Limits::default())
    }

    pub fn with_limits(room: &str, limits: Limits) -> Sim {
        Sim::with_config(room, config(limits))
    }

    pub fn with_config(room: &str, config: Config) -> Sim {
        let head = LogHead { seq: 0, epoch: "ep1".into() };
        let room = Room::new(RoomId::parse(room).unwrap(), head, BTreeMap::new(), config);
        solo::Solo::of(room, RoomStore::default(), Timestamp(1_700_000_000_000))
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
        self.object.check_capacity(&user).expect("room has capacity");
        self.next_conn += 1;
        let conn = ConnId::parse(&format!("c{}", self.next_conn)).unwrap();
        let info = ConnInfo { conn, user, expires: self.now.plus_millis(ttl_ms), can_write };
        let resume = resume.map(|(since, epoch)| Resume { since, epoch: epoch.into() });
        self.accept(info, resume)
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
        let opening = self.object.open_stream(info, None, self.now, &self.store.log)?;
        self.streams.insert(id.clone(), Vec::new());
        Ok((id, opening))
    }

    /// The client of an event stream went away.
    pub fn drop_stream(&mut self, id: &ConnId) {
        self.streams.remove(id);
        self.object.close_stream(id);
    }

    pub fn send(&mut self, conn: &ConnId, frame: Value) {
        self.send_raw(conn, &frame.to_string());
    }

    /// Drains what `conn` received and returns the only frame.
    pub fn take_one(&mut self, conn: &ConnId) -> Value {
        let mut frames = self.take(conn);
        assert_eq!(frames.len(), 1, "expected one frame, got {frames:?}");
        frames.remove(0)
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
