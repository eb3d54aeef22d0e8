//! The one effect type of every object core, and the order its shell applies a batch in.
//!
//! An object's input handlers (`handle_*`, each given `now`) return effects; the shell applies
//! each batch in one order, the same in production and in tests:
//!
//! 1. **writes** ([`Effect::Write`]), in the order given, committed together;
//! 2. **frames and connections** (sends, broadcasts, closes, attachment updates, event-stream
//!    bytes), in the order given, only once the writes they announce are stored;
//! 3. **calls** ([`Effect::Call`]) to other objects, or reads whose answer is a frame, after
//!    everything above; their answers go back into the core as new inputs.
//!
//! A failed write drops the live object and skips the rest of the batch, so nothing unwritten
//! is announced. What each object writes and calls is its own (`W`, `C`); everything else is
//! shared. The contract that produces them is [`crate::core::object::Object`].

use crate::core::ids::ConnId;
use crate::core::protocol::{self, Ref};
use crate::core::time::Timestamp;
use serde::Serialize;

/// An object that makes no calls of this kind: `Effect<W, Never, I>` has no `Call` to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

/// One instruction for the shell: `W` is the object's storage write, `C` its call to another
/// object (or [`Never`]), `I` what it keeps in a socket's attachment.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<W, C, I> {
    /// Persist something; applied before every frame of its batch.
    Write(W),
    /// Store this connection's new data in its socket attachment (after `auth:refresh`).
    UpdateConn(I),
    /// Send `frame` to one connection.
    Send {
        /// Recipient.
        to: ConnId,
        /// A complete JSON text frame.
        frame: String,
    },
    /// Send the same `frame` to every connection of the object except `except`.
    Broadcast {
        /// The connection left out (usually the sender).
        except: Option<ConnId>,
        /// A complete JSON text frame, serialized once for all recipients.
        frame: String,
    },
    /// [`Effect::Broadcast`] for news nobody waits on (a member joined or left): while events
    /// arrive in quick succession it may wait up to [`ANNOUNCE_HOLD_MS`] for the frames that
    /// follow, so a join storm sends each member one frame per hold instead of one per join.
    /// Any other frame queued meanwhile takes it along at once, in order.
    ///
    /// [`ANNOUNCE_HOLD_MS`]: crate::core::outbox::ANNOUNCE_HOLD_MS
    Announce {
        /// The connection left out.
        except: Option<ConnId>,
        /// A complete JSON text frame, serialized once for all recipients.
        frame: String,
    },
    /// Close one connection with a code from [`crate::core::error::close`]; the shell then
    /// reports the closure back through `handle_close`.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// WebSocket close code.
        code: u16,
        /// Short reason, under the 123-byte close-frame limit.
        reason: &'static str,
    },
    /// Send a Server-Sent Event (complete, with its blank line) to one event stream.
    StreamSend {
        /// The stream.
        to: ConnId,
        /// The event's bytes.
        event: String,
    },
    /// Send a Server-Sent Event to every open event stream.
    StreamBroadcast {
        /// The event's bytes, built once.
        event: String,
    },
    /// Send the last bytes `last` to an event stream, then end it (its token expired). The
    /// object has already forgotten it.
    StreamEnd {
        /// The stream.
        stream: ConnId,
        /// A final event saying why.
        last: String,
    },
    /// Send [`SSE_KEEPALIVE`] to every open event stream.
    Keepalive,
    /// A call made after the batch's writes and frames.
    Call(C),
}

/// A batch split into its phases: writes, frame-phase effects, calls.
pub type Phases<W, C, I> = (Vec<W>, Vec<Effect<W, C, I>>, Vec<C>);

/// Splits a batch into its writes, its frames (everything of the frame phase) and its calls,
/// each in the order given: the order every shell and simulator applies them in.
pub fn phases<W, C, I>(effects: Vec<Effect<W, C, I>>) -> Phases<W, C, I> {
    let (mut writes, mut frames, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for effect in effects {
        match effect {
            Effect::Write(w) => writes.push(w),
            Effect::Call(c) => calls.push(c),
            other => frames.push(other),
        }
    }
    (writes, frames, calls)
}

/// The comment line sent to every open event stream every `SSE_KEEPALIVE_MS`.
pub const SSE_KEEPALIVE: &str = ": keepalive\n\n";

/// A `reply ok` with `data` to `to` when it asked for one (`reply_to`).
pub fn reply<W, C, I, D: Serialize>(
    to: &ConnId,
    reply_to: Option<&Ref>,
    data: &D,
) -> Option<Effect<W, C, I>> {
    reply_to.map(|r| Effect::Send { to: to.clone(), frame: protocol::reply_ok(r, data) })
}

/// What a socket's hibernation attachment holds, at the least: its connection id and when its
/// token expires. Each object adds its own fields (the user, the write right).
pub trait Attachment: Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned {
    /// The connection id.
    fn conn(&self) -> &ConnId;
    /// When the socket's token expires (`exp`, before the leeway).
    fn expires(&self) -> Timestamp;
}

/// Implements [`Attachment`] for a struct whose `conn` and `expires` fields are what the trait
/// reads, as in every attachment so far (`sessions::ConnInfo`, `user::UserConnInfo`).
macro_rules! impl_attachment {
    ($attachment:ty) => {
        impl $crate::core::effect::Attachment for $attachment {
            fn conn(&self) -> &$crate::core::ids::ConnId {
                &self.conn
            }

            fn expires(&self) -> $crate::core::time::Timestamp {
                self.expires
            }
        }
    };
}
pub(crate) use impl_attachment;
