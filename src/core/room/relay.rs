//! Ephemeral relays, never persisted: `signal` to one user's sockets (WebRTC offer/answer/ICE)
//! and `broadcast` to everyone else (cursors, reactions).

use super::{empty, ConnInfo, Effect, Room};
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::object::reply;
use crate::core::protocol::{self, Ref};
use crate::core::room::request::{Broadcast, Signal};
use serde::Serialize;
use serde_json::{json, Value};

/// Longest `broadcast` event name, in bytes.
pub const MAX_BROADCAST_EVENT_LEN: usize = 64;

impl Room {
    pub(super) fn signal(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: Signal,
    ) -> Result<Vec<Effect>, Error> {
        let frame = protocol::event("signal", &Relayed::new(None, &p.data, sender));
        let mut effects: Vec<Effect> = self
            .conns
            .iter()
            .filter(|c| c.user == p.to && c.conn != sender.conn)
            .filter(|c| p.to_conn.as_ref().is_none_or(|wanted| *wanted == c.conn))
            .map(|c| Effect::Send { to: c.conn.clone(), frame: frame.clone() })
            .collect();
        if effects.is_empty() {
            let whom = match &p.to_conn {
                Some(conn) => format!("connection {conn} of {}", p.to),
                None => format!("user {}", p.to),
            };
            return Err(Error::new(ErrorCode::NotFound, format!("{whom} has no socket in this room")));
        }
        let delivered = effects.len();
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &json!({ "delivered": delivered })));
        Ok(effects)
    }

    pub(super) fn broadcast(
        &mut self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: Broadcast,
    ) -> Result<Vec<Effect>, Error> {
        if p.event.is_empty() || p.event.len() > MAX_BROADCAST_EVENT_LEN {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("event must be 1 to {MAX_BROADCAST_EVENT_LEN} bytes"),
            ));
        }
        let d = Relayed::new(Some(&p.event), &p.data, sender);
        let mut effects = vec![Effect::Broadcast {
            except: Some(sender.conn.clone()),
            frame: protocol::event("broadcast", &d),
        }];
        effects.extend(reply(&sender.conn, reply_to.as_ref(), &empty()));
        Ok(effects)
    }
}

/// A relayed `signal` or `broadcast`, with who sent it.
#[derive(Serialize)]
struct Relayed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    data: &'a Value,
    from: &'a UserId,
    #[serde(rename = "fromConn")]
    from_conn: &'a ConnId,
}

impl<'a> Relayed<'a> {
    fn new(event: Option<&'a str>, data: &'a Value, sender: &'a ConnInfo) -> Self {
        Relayed { event, data, from: &sender.user, from_conn: &sender.conn }
    }
}
