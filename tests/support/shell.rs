//! The one effect interpreter of the host tests: every simulator (rooms, users, documents, the
//! fuzzers) applies an object's effects through [`apply`], in the order the edge shell uses —
//! writes, then frames, then calls — and supplies only what its fakes do with each kind.
#![allow(dead_code)]

use switchboard::core::ids::ConnId;
use switchboard::core::object::{phases, Effect, EffectOf, Object};

/// What a simulated shell does with each kind of effect.
pub trait Shell<O: Object> {
    /// Stores one write in the object's storage fake.
    fn write(&mut self, write: O::Write);
    /// Delivers a frame to one socket.
    fn send(&mut self, to: ConnId, frame: String);
    /// Delivers a frame to every socket but `except`.
    fn broadcast(&mut self, except: Option<ConnId>, frame: String);
    /// Closes a socket (and reports the close to the object, as the shell does).
    fn close(&mut self, conn: ConnId, code: u16);
    /// Stores a socket's new attachment.
    fn update_conn(&mut self, info: O::Info);
    /// Makes a call, after the batch's writes and frames.
    fn call(&mut self, call: O::Call);
    /// Sends a Server-Sent Event to one stream.
    fn stream_send(&mut self, to: ConnId, event: String) {
        panic!("no event streams here: {to} {event}")
    }
    /// Sends a Server-Sent Event to every stream.
    fn stream_broadcast(&mut self, event: String) {
        panic!("no event streams here: {event}")
    }
    /// Ends a stream after its last bytes.
    fn stream_end(&mut self, stream: ConnId, last: String) {
        panic!("no event streams here: {stream} {last}")
    }
    /// A keepalive for every stream.
    fn keepalive(&mut self) {
        panic!("no event streams here")
    }
}

/// Applies a batch in the shell's order: every write, then frames and closes in the order
/// given, then the calls.
pub fn apply<O: Object, S: Shell<O>>(shell: &mut S, effects: Vec<EffectOf<O>>) {
    let (writes, frames, calls) = phases(effects);
    for write in writes {
        shell.write(write);
    }
    for effect in frames {
        match effect {
            Effect::Send { to, frame } => shell.send(to, frame),
            Effect::Broadcast { except, frame } | Effect::Announce { except, frame } => {
                shell.broadcast(except, frame)
            }
            Effect::Close { conn, code, .. } => shell.close(conn, code),
            Effect::UpdateConn(info) => shell.update_conn(info),
            Effect::StreamSend { to, event } => shell.stream_send(to, event),
            Effect::StreamBroadcast { event } => shell.stream_broadcast(event),
            Effect::StreamEnd { stream, last } => shell.stream_end(stream, last),
            Effect::Keepalive => shell.keepalive(),
            Effect::Write(_) | Effect::Call(_) => unreachable!("phases() took these out"),
        }
    }
    for call in calls {
        shell.call(call);
    }
}
