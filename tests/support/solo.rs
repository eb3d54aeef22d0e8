//! One object of any kind, driven through the [`Object`] contract alone: its sockets' inboxes
//! and event streams, a storage fake, and a virtual clock that fires the alarm at every deadline. Effects go
//! through the one interpreter ([`super::shell::apply`]); only what storage does is the
//! object's own ([`Storage`]). The room tests' `Sim` is a `Solo` of a room; the object fuzzer
//! runs rooms, users and documents through it.
#![allow(dead_code)]

use super::shell::{self, Shell};
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard::core::ids::ConnId;
use switchboard::core::object::{Attachment, EffectOf, Object, SSE_KEEPALIVE};
use switchboard::core::protocol::Incoming;
use switchboard::core::time::Timestamp;

/// An object's storage fake: its writes, the reader its frames may use, and its calls.
pub trait Storage<O: Object> {
    /// Stores one write.
    fn write(&mut self, write: O::Write);
    /// What a frame may read.
    fn reader(&self) -> &O::Reader<'_>;
    /// Answers a call (a read for a frame, another object that is not there); returns the
    /// effects of feeding the answer back into `object`.
    fn call(&mut self, object: &mut O, call: O::Call, now: Timestamp) -> Vec<EffectOf<O>>;
}

/// One object with its storage, sockets and clock.
pub struct Solo<O: Object, S: Storage<O>> {
    pub object: O,
    pub store: S,
    pub now: Timestamp,
    /// Frames each open socket received.
    pub inboxes: BTreeMap<ConnId, Vec<Value>>,
    /// Sockets the object closed, with the code.
    pub closed: BTreeMap<ConnId, u16>,
    /// Each socket's attachment, as the shell keeps it.
    pub attachments: BTreeMap<ConnId, O::Info>,
    /// What each open event stream received after its opening.
    pub streams: BTreeMap<ConnId, Vec<String>>,
    /// Streams the object ended, with their last event.
    pub ended_streams: BTreeMap<ConnId, String>,
    /// Numbers the ids the simulator hands out.
    pub next_conn: u32,
}

impl<O: Object, S: Storage<O>> Solo<O, S> {
    pub fn of(object: O, store: S, now: Timestamp) -> Self {
        Solo {
            object,
            store,
            now,
            inboxes: BTreeMap::new(),
            closed: BTreeMap::new(),
            attachments: BTreeMap::new(),
            streams: BTreeMap::new(),
            ended_streams: BTreeMap::new(),
            next_conn: 0,
        }
    }

    /// A socket with `info` is accepted.
    pub fn accept(&mut self, info: O::Info, with: O::Connect) -> ConnId {
        let conn = info.conn().clone();
        self.inboxes.insert(conn.clone(), Vec::new());
        self.attachments.insert(conn.clone(), info.clone());
        let effects = self.object.handle_connect(info, with, self.now, self.store.reader());
        self.apply(effects);
        conn
    }

    pub fn send_raw(&mut self, conn: &ConnId, text: &str) {
        let effects = self.object.handle_frame(conn, Incoming::Text(text), self.now, self.store.reader());
        self.apply(effects);
    }

    /// The socket closes (the client left, or an effect closed it).
    pub fn close(&mut self, conn: &ConnId) {
        self.inboxes.remove(conn);
        self.attachments.remove(conn);
        let effects = self.object.handle_close(conn, self.now);
        self.apply(effects);
    }

    /// Moves the clock forward, firing the alarm at each deadline on the way.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        while let Some(deadline) = self.object.poll_timeout().filter(|d| *d <= target) {
            self.now = self.now.max(deadline);
            let effects = self.object.handle_alarm(self.now);
            self.apply(effects);
        }
        self.now = target;
    }

    /// Drains what `conn` received.
    pub fn take(&mut self, conn: &ConnId) -> Vec<Value> {
        self.inboxes.get_mut(conn).map(std::mem::take).unwrap_or_default()
    }

    pub fn apply(&mut self, effects: Vec<EffectOf<O>>) {
        shell::apply(self, effects);
    }
}

impl<O: Object, S: Storage<O>> Shell<O> for Solo<O, S> {
    fn write(&mut self, write: O::Write) {
        self.store.write(write);
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
        Solo::close(self, &conn);
    }

    fn update_conn(&mut self, info: O::Info) {
        self.attachments.insert(info.conn().clone(), info);
    }

    fn call(&mut self, call: O::Call) {
        let effects = self.store.call(&mut self.object, call, self.now);
        self.apply(effects);
    }

    fn stream_send(&mut self, to: ConnId, event: String) {
        if let Some(chunks) = self.streams.get_mut(&to) {
            chunks.push(event);
        }
    }

    fn stream_broadcast(&mut self, event: String) {
        for chunks in self.streams.values_mut() {
            chunks.push(event.clone());
        }
    }

    fn stream_end(&mut self, stream: ConnId, last: String) {
        assert!(self.streams.remove(&stream).is_some(), "ended a stream that is not open");
        self.ended_streams.insert(stream, last);
    }

    fn keepalive(&mut self) {
        for chunks in self.streams.values_mut() {
            chunks.push(SSE_KEEPALIVE.to_string());
        }
    }
}
