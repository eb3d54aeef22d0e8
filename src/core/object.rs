//! The contract every object core keeps with its shell: the [`Object`] trait, which rooms,
//! users and documents implement, so the shell and the test simulator are written once for all
//! of them. Its effects are [`crate::core::effect`] (re-exported here); its connections
//! (strikes, token expiry, `auth:refresh`, replies) are [`crate::core::sessions`].

use crate::core::admission::Admission;
pub use crate::core::effect::{phases, reply, Attachment, Effect, Never, Phases, SSE_KEEPALIVE};
use crate::core::error::Error;
use crate::core::ids::ConnId;
use crate::core::protocol::{Envelope, Incoming};
use crate::core::sessions::{self, Sessions};
use crate::core::time::Timestamp;
use serde_json::{Map, Value};

/// The effects of an object `O`.
pub type EffectOf<O> = Effect<<O as Object>::Write, <O as Object>::Call, <O as Object>::Info>;

/// The contract every object core implements: its inputs (`handle_*`, `now` passed in), its
/// one timer ([`Object::poll_timeout`]), and its rebuild from socket attachments after a wake.
/// The shell calls these and applies the effects in the order of [`phases`].
pub trait Object {
    /// The object's storage writes.
    type Write;
    /// The object's calls (to other objects, or reads answered with a frame).
    type Call;
    /// What a socket's attachment holds.
    type Info: Attachment;
    /// What the shell hands over with a new socket besides its attachment (a resume position,
    /// the token's watch policy).
    type Connect;
    /// The storage a frame may read during its handling (a room's log, a user's inbox).
    type Reader<'a>: ?Sized;

    /// A socket the Worker admitted (`admission`), after the object's own checks (the socket
    /// limit, 429): what its attachment holds and what the object gets with it. Checked before
    /// the socket is accepted.
    fn admit(&self, conn: ConnId, admission: &Admission) -> Result<(Self::Info, Self::Connect), Error>;

    /// A socket was accepted: greet it.
    fn handle_connect(
        &mut self,
        info: Self::Info,
        with: Self::Connect,
        now: Timestamp,
        reader: &Self::Reader<'_>,
    ) -> Vec<EffectOf<Self>>;

    /// The object's sockets.
    fn sessions(&mut self) -> &mut Sessions<Self::Info>;

    /// Handles one request from `sender` that passed the sessions' checks (known socket, token
    /// in time, decoded envelope): the object's own rights, budget and payload decoding, then
    /// the request. An error is answered by [`Sessions::settle`].
    fn dispatch(
        &mut self,
        sender: &Self::Info,
        envelope: Envelope,
        now: Timestamp,
        reader: &Self::Reader<'_>,
    ) -> Result<Vec<EffectOf<Self>>, Error>;

    /// A frame arrived on `conn`: the sessions find and check its sender, the object dispatches
    /// it, the sessions answer a failure (reply or error frame, strike, 4002 at the limit).
    fn handle_frame(
        &mut self,
        conn: &ConnId,
        frame: Incoming<'_>,
        now: Timestamp,
        reader: &Self::Reader<'_>,
    ) -> Vec<EffectOf<Self>> {
        let (sender, decoded) = match self.sessions().receive(conn, frame, now) {
            Ok(received) => received,
            Err(done) => return done,
        };
        let (reply_to, envelope) = sessions::split(decoded);
        let outcome = envelope.and_then(|envelope| self.dispatch(&sender, envelope, now, reader));
        self.sessions().settle(conn, reply_to.as_ref(), outcome, now)
    }

    /// A socket closed (or errored, or was closed by an effect).
    fn handle_close(&mut self, conn: &ConnId, now: Timestamp) -> Vec<EffectOf<Self>>;

    /// The alarm fired.
    fn handle_alarm(&mut self, now: Timestamp) -> Vec<EffectOf<Self>>;

    /// When the shell should next call [`Object::handle_alarm`]: the one alarm.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Re-adds a socket that survived hibernation; announces nothing.
    fn restore_conn(&mut self, info: Self::Info, now: Timestamp);

    /// After every survivor is restored: what the rebuild decided (applied before anything else).
    fn restored(&mut self, now: Timestamp) -> Vec<EffectOf<Self>> {
        let _ = now;
        Vec::new()
    }

    /// An event stream's client went away, or it fell too far behind and the shell ended it.
    fn stream_closed(&mut self, id: &ConnId, now: Timestamp) -> Vec<EffectOf<Self>> {
        let _ = (id, now);
        Vec::new()
    }

    /// Whether an event stream whose client has `unread` bytes still queued may be sent more;
    /// past the bound the shell ends it rather than buffer without limit.
    fn stream_keeps_up(&self, unread: usize) -> bool {
        let _ = unread;
        true
    }

    /// The socket a call owes a reply to, if any: should the shell drop the live state before
    /// the call is made, it closes that socket (1011) rather than leave it waiting.
    fn owed(call: &Self::Call) -> Option<&ConnId> {
        let _ = call;
        None
    }

    /// Counters for operators and tests (`GET /v1/.../stats`), as one JSON object; the shell
    /// adds what only it knows (the alarm it set, the wakes it counted).
    fn stats(&self) -> Map<String, Value>;
}

/// The counters of an object literal (`json!({...})`), for [`Object::stats`].
pub fn counters(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(counters) => counters,
        _ => Map::new(),
    }
}
