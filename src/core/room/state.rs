//! Live key/value state of a room: versioned per key, persisted, sent whole in `room:state` and
//! key by key in `state:update`.

use super::{ConnInfo, Effect, Room, RoomWrite, StateEntry};
use crate::core::error::{Error, ErrorCode};
use crate::core::object::reply;
use crate::core::protocol::{self, Ref};
use crate::core::room::request::StateSet;
use serde::Serialize;
use serde_json::json;

/// Longest state key, in bytes.
pub const MAX_STATE_KEY_LEN: usize = 128;

impl Room {
    pub(super) fn state_set(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: StateSet,
    ) -> Result<Vec<Effect>, Error> {
        let limits = &self.config.limits;
        if p.key.is_empty() || p.key.len() > MAX_STATE_KEY_LEN || p.key.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("key must be 1 to {MAX_STATE_KEY_LEN} bytes without control characters"),
            ));
        }
        if p.value.to_string().len() > limits.state_max_value_bytes {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("value is over {} bytes as JSON", limits.state_max_value_bytes),
            ));
        }
        let current = self.state.get(&p.key).map_or(0, |e| e.version);
        if current == 0 && self.state.len() >= limits.state_max_keys {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("room state is full ({} keys)", limits.state_max_keys),
            ));
        }
        if let Some(expected) = p.if_version {
            if expected != current {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("{:?} is at version {current}, not {expected}", p.key),
                ));
            }
        }
        let entry = StateEntry { value: p.value, version: current + 1, user: sender.user.clone() };
        self.state.insert(p.key.clone(), entry.clone());
        let update = StateUpdate { key: &p.key, entry: &entry };
        let frame = protocol::event("state:update", &update);
        let mut effects = vec![
            Effect::Write(RoomWrite::PutState { key: p.key, entry: entry.clone() }),
            Effect::Broadcast { except: None, frame },
        ];
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &json!({ "version": entry.version })));
        Ok(effects)
    }
}

/// `state:update`: one key's new entry (`value`, `version`, `user`) beside its key.
#[derive(Serialize)]
struct StateUpdate<'a> {
    key: &'a str,
    #[serde(flatten)]
    entry: &'a StateEntry,
}
