//! The live state of an object and the drain: staged writes committed, queued frames and
//! stream bytes sent, departures heard, calls made ready — in that order (see `super`).

use super::{CallOf, Effects, Kind};
use crate::core::error::{close, Error};
use crate::core::ids::ConnId;
use crate::core::object::{phases, Attachment, Effect, EffectOf, Object, SSE_KEEPALIVE};
use crate::core::outbox::{Outbox, Target};
use crate::core::time::Timestamp;
use crate::edge::sse::Stream;
use crate::edge::{now, socket, sql};
use js_sys::JsString;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use worker::{SqlStorage, State, WebSocket};

/// The live state slot: `None` until the first event after a wake, and after a failed write.
pub(crate) type Slot<K> = Option<Live<K>>;

/// An object as it lives between events.
pub(crate) struct Live<K: Kind> {
    pub(crate) core: K::Core,
    pub(crate) kind: K,
    pub(crate) sockets: HashMap<ConnId, WebSocket>,
    /// Open Server-Sent Events responses, by the id the core knows them by. They live only in
    /// this instance: an open response keeps the object in memory, and whatever drops the live
    /// state ends them, so a rebuild never finds one.
    pub(crate) streams: HashMap<ConnId, Stream>,
    pub(crate) sql: SqlStorage,
    /// The alarm this instance last set (`None` after a wake: unknown, so it is set again).
    pub(crate) alarm: Option<Timestamp>,
    pub(super) staged: bool,
    pub(super) outbox: Outbox,
    /// Stream effects waiting for the drain, in order.
    pub(super) stream_queue: Vec<EffectOf<K::Core>>,
    /// Calls of batches not yet drained, and of drained ones (ready to be made).
    pub(super) calls: Vec<CallOf<K>>,
    pub(super) ready_calls: Vec<CallOf<K>>,
    /// Sockets closed or refused, and streams ended, whose departure the core has not heard yet.
    pub(super) departed: Vec<ConnId>,
    pub(super) streams_gone: Vec<ConnId>,
    /// When the scheduled drain's timer fires, if one is scheduled (`outbox::drain_timer`).
    pub(super) drain_due: Option<Timestamp>,
    /// When the previous batch was applied: events close together mean a backlog.
    pub(super) last_apply: Option<Timestamp>,
}

impl<K: Kind> Drop for Live<K> {
    fn drop(&mut self) {
        self.kind.dropped(&self.core);
    }
}

impl<K: Kind> Live<K> {
    pub(super) fn new(core: K::Core, kind: K, sockets: HashMap<ConnId, WebSocket>, sql: SqlStorage) -> Self {
        Live {
            core,
            kind,
            sockets,
            streams: HashMap::new(),
            sql,
            alarm: None,
            staged: false,
            outbox: Outbox::default(),
            stream_queue: Vec::new(),
            calls: Vec::new(),
            ready_calls: Vec::new(),
            departed: Vec::new(),
            streams_gone: Vec::new(),
            drain_due: None,
            last_apply: None,
        }
    }

    /// Queues a batch in phase order: writes staged, frames and stream bytes queued, calls kept
    /// until the drain that commits their writes. A `Close` first sends what is queued (the
    /// socket's frames go out before its close frame, and the writes they announce first).
    pub(super) fn queue(&mut self, state: &State, effects: Effects<K>) -> Result<(), Error> {
        let (writes, frames, calls) = phases(effects);
        for write in writes {
            self.kind.stage(write);
            self.staged = true;
        }
        for effect in frames {
            match effect {
                Effect::UpdateConn(info) => {
                    if let Some(ws) = self.sockets.get(info.conn()) {
                        let _ = ws.serialize_attachment(&info);
                    }
                }
                Effect::Send { to, frame } => self.outbox.push(Target::One(to), frame),
                Effect::Broadcast { except, frame } => self.outbox.push(Target::All { except }, frame),
                Effect::Announce { except, frame } => self.outbox.announce(except, frame),
                Effect::Close { conn, code, reason } => {
                    self.commit(state)?;
                    self.send_queued();
                    if let Some(ws) = self.sockets.remove(&conn) {
                        socket::close(&ws, code, reason);
                    }
                    self.departed.push(conn);
                }
                stream => self.stream_queue.push(stream),
            }
        }
        self.calls.extend(calls);
        Ok(())
    }

    /// Commits the staged writes in one transaction, then queues what announces them.
    pub(super) fn commit(&mut self, state: &State) -> Result<(), Error> {
        self.staged = false;
        let Some(batch) = self.kind.take_batch() else { return Ok(()) };
        let announced = if K::one_statement(&batch) {
            K::write(&self.sql, &batch)?;
            self.kind.stored(&self.core, &self.sql, &batch)
        } else {
            // The transaction's body must own what it writes; the batch comes back for `stored`.
            let (sql, batch) = (self.sql.clone(), Rc::new(batch));
            let written = Rc::clone(&batch);
            sql::transaction(state, move || K::write(&sql, &written))?;
            self.kind.stored(&self.core, &self.sql, &batch)
        };
        self.queue(state, announced)
    }

    /// Sends every queued frame (each distinct one crosses into JS once for all its recipients)
    /// and stream byte. Sockets that refuse a frame are closed (1011) and get nothing more, so
    /// none sees a gap; streams whose client left or fell behind are ended. Both are noted as
    /// departed.
    pub(super) fn send_queued(&mut self) {
        for effect in std::mem::take(&mut self.stream_queue) {
            match effect {
                Effect::StreamSend { to, event } => self.feed(Some(&to), event.as_bytes()),
                Effect::StreamBroadcast { event } => self.feed(None, event.as_bytes()),
                Effect::Keepalive => self.feed(None, SSE_KEEPALIVE.as_bytes()),
                Effect::StreamEnd { stream, last } => {
                    if let Some(ended) = self.streams.remove(&stream) {
                        ended.end(Some(last.as_bytes()));
                    }
                }
                _ => {}
            }
        }
        let mut refused: Vec<ConnId> = Vec::new();
        // Consulted only once a socket refused: no hashing per recipient on the common path.
        let mut seen = HashSet::new();
        let sockets = &self.sockets;
        for (frame, recipients) in self.outbox.drain_open(sockets.keys(), |c| sockets.contains_key(c)) {
            let frame = JsString::from(frame);
            for conn in recipients {
                if !seen.is_empty() && seen.contains(&conn) {
                    continue;
                }
                if sockets.get(&conn).is_some_and(|ws| !socket::send_js(ws, &frame)) {
                    seen.insert(conn.clone());
                    refused.push(conn);
                }
            }
        }
        for conn in refused {
            if let Some(ws) = self.sockets.remove(&conn) {
                socket::close(&ws, close::INTERNAL, socket::SEND_FAILED);
            }
            self.departed.push(conn);
        }
    }

    /// Sends a socket that just joined what is queued for it alone (its greeting) at once,
    /// instead of at the drain; what is staged is committed first, so a greeting never announces
    /// an unwritten write. Broadcasts wait for the drain, in their order.
    pub(super) fn greet(&mut self, state: &State, conn: &ConnId) -> Result<(), Error> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        self.commit(state)?;
        let Some(ws) = self.sockets.get(conn) else { return Ok(()) };
        if !self.outbox.take_leading(conn).iter().all(|frame| socket::send(ws, frame)) {
            if let Some(ws) = self.sockets.remove(conn) {
                socket::close(&ws, close::INTERNAL, socket::SEND_FAILED);
            }
            self.departed.push(conn.clone());
        }
        Ok(())
    }

    /// Queues `bytes` on one stream or all; one that cannot take them is ended.
    fn feed(&mut self, to: Option<&ConnId>, bytes: &[u8]) {
        let core = &self.core;
        let mut behind = Vec::new();
        for (id, stream) in self.streams.iter().filter(|(id, _)| to.is_none_or(|to| to == *id)) {
            if !(core.stream_keeps_up(stream.unread()) && stream.push(bytes)) {
                behind.push(id.clone());
            }
        }
        for id in behind {
            // Dropping it ends it and frees what it queued; its client reconnects.
            self.streams.remove(&id);
            self.streams_gone.push(id);
        }
    }

    /// Tells the core of every socket and stream that went away, and queues what it answers.
    pub(super) fn settle(&mut self, state: &State, now: Timestamp) -> Result<(), Error> {
        while !self.departed.is_empty() || !self.streams_gone.is_empty() {
            for conn in std::mem::take(&mut self.departed) {
                let effects = self.core.handle_close(&conn, now);
                self.queue(state, effects)?;
            }
            for id in std::mem::take(&mut self.streams_gone) {
                let effects = self.core.stream_closed(&id, now);
                self.queue(state, effects)?;
            }
        }
        Ok(())
    }

    /// The drain: commit, send, hear the departures, until nothing is queued; the calls of
    /// everything drained are then ready to be made.
    pub(super) fn flush(&mut self, state: &State) -> Result<(), Error> {
        self.drain_due = None;
        loop {
            self.commit(state)?;
            self.send_queued();
            if self.departed.is_empty() && self.streams_gone.is_empty() {
                break;
            }
            self.settle(state, now())?;
        }
        self.ready_calls.append(&mut self.calls);
        self.sync_alarm(state);
        Ok(())
    }

    /// Whether the queued work may wait [`ANNOUNCE_HOLD_MS`](crate::core::outbox::ANNOUNCE_HOLD_MS):
    /// nothing but announcements, no write, stream bytes or call.
    pub(super) fn can_wait(&self) -> bool {
        !self.staged && self.stream_queue.is_empty() && self.calls.is_empty() && self.outbox.can_wait()
    }

    pub(super) fn has_queued(&self) -> bool {
        self.staged || !self.outbox.is_empty() || !self.stream_queue.is_empty() || !self.calls.is_empty()
    }

    /// Before the live state is dropped after a failed write: nothing queued may go out (it may
    /// announce what was not written), so every socket owed a frame is closed with 1011; its
    /// client reconnects, resumes and resends what was not acknowledged instead of waiting for a
    /// frame that never comes; so is one owed a reply by a call not yet made. Closed, it is not
    /// restored on the next wake.
    pub(super) fn abandon(&mut self) {
        let _ = self.kind.take_batch();
        let calls = self.calls.iter().chain(&self.ready_calls);
        let mut owed: Vec<ConnId> = calls.filter_map(K::Core::owed).cloned().collect();
        self.calls.clear();
        self.ready_calls.clear();
        for (_, recipients) in self.outbox.drain(self.sockets.keys()) {
            owed.extend(recipients);
        }
        for conn in owed {
            if let Some(ws) = self.sockets.remove(&conn) {
                socket::close(&ws, close::INTERNAL, &unavailable::<K>());
            }
        }
    }

    pub(super) fn sync_alarm(&mut self, state: &State) {
        self.alarm = sql::sync_alarm(state, self.alarm, self.core.poll_timeout());
    }
}

/// The close reason of a socket whose object lost its live state.
pub(super) fn unavailable<K: Kind>() -> String {
    format!("{} unavailable", K::LABEL)
}
