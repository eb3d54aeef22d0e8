//! The one Durable Object shell. Rooms, user objects and documents are each a [`Kind`]: a core
//! (`core::object::Object`), its schema and SQL, its own HTTP endpoints and its calls. Everything
//! else is written here once, for all of them:
//!
//! - **live state**: the core rebuilt lazily from storage and the surviving sockets' attachments
//!   on the first event after a wake (the socket whose close woke the object counted once, so its
//!   departure is handled like any other), dropped when a write fails;
//! - **one order per batch** (`core::effect`): writes, then the frames and stream bytes that
//!   announce them, then calls to other objects;
//! - **batching and group commit**: writes are staged and frames queued; while events arrive less
//!   than 25 ms apart at an object with `BATCH_MIN_RECEIVERS` or more, the drain waits for the
//!   runtime to be idle, so the writes of every event handled meanwhile commit in one transaction
//!   and each socket gets one frame (an array) for all its envelopes (`core::outbox`); an idle or
//!   small object drains at once and adds no latency. A queue of nothing but announcements
//!   (member joins and leaves) waits `ANNOUNCE_HOLD_MS` more, until a frame that may not wait
//!   overtakes it, so a join storm costs each member one frame per hold. A connect is the
//!   exception: it commits what is staged before the socket exists, and again before the new
//!   socket's greeting leaves at once (`Outbox::take_leading`), so a joining client never waits
//!   for the drain;
//! - **failure**: a failed write drops the live state, tells the socket whose frame caused it, and
//!   closes every socket still owed a frame with 1011 (their clients resume), so nothing unwritten
//!   is ever announced;
//! - the **alarm** re-aimed at the core's next deadline, **event streams** fed and ended, sockets
//!   that refuse a frame closed (1011) and handled as closes, and the handlers the runtime calls.
//!
//! No borrow of the live state is held across an `.await`.

mod export;
mod live;

pub(crate) use export::durable_object;
use live::unavailable;
pub(crate) use live::{Live, Slot};

use super::socket;
use super::sql::{self, count_wake, random_id, read_meta, write_meta};
use super::sse::{Stream, StreamBody};
use super::{config, http, internal, now};
use crate::core::admission::Admission;
use crate::core::config::Config;
use crate::core::error::{close, Error, ErrorCode};
use crate::core::ids::ConnId;
use crate::core::object::{Attachment, EffectOf, Object};
use crate::core::outbox;
use crate::core::protocol::{self, Incoming};
use crate::core::time::Timestamp;
use serde_json::{Map, Value};
use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use wasm_bindgen::prelude::{wasm_bindgen, Closure};
use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::ext::ResponseInitExt;
use worker::worker_sys::web_sys;
use worker::{
    Env, Request, Response, SqlStorage, State, WebSocket, WebSocketPair, WebSocketRequestResponsePair,
};

/// The effects of a kind's core.
pub(crate) type Effects<K> = Vec<EffectOf<<K as Kind>::Core>>;
/// A kind's storage write.
pub(crate) type WriteOf<K> = <<K as Kind>::Core as Object>::Write;
/// A kind's call to another object.
pub(crate) type CallOf<K> = <<K as Kind>::Core as Object>::Call;
/// What a kind's sockets carry in their attachment.
pub(crate) type InfoOf<K> = <<K as Kind>::Core as Object>::Info;
/// What a kind's core gets with a new socket besides its attachment.
pub(crate) type ConnectOf<K> = <<K as Kind>::Core as Object>::Connect;
/// The storage a kind's core reads while it handles an input.
pub(crate) type ReaderOf<'r, K> = <<K as Kind>::Core as Object>::Reader<'r>;

/// What a kind loads from: its storage, its name (stored or, the first time, from the Worker),
/// the settings, and what outlived the previous live state.
pub(crate) struct Load<'a, K: Kind> {
    pub(crate) sql: &'a SqlStorage,
    pub(crate) name: &'a str,
    pub(crate) config: &'a Config,
    pub(crate) memo: &'a K::Memo,
}

/// The storage a reader reads and, for a reader that commits before it reads, the transaction.
pub(crate) struct Store<'a> {
    pub(crate) sql: &'a SqlStorage,
    pub(crate) state: &'a State,
}

/// A loaded kind: its core, what it keeps beside the core, and the effects the load decided.
pub(crate) type Loaded<K> = (<K as Kind>::Core, K, Effects<K>);

/// One kind of object: what it adds to the shell. `Self` is what the kind keeps beside its core
/// while it is live (staged writes, handles).
pub(crate) trait Kind: Sized + 'static {
    /// The object's core.
    type Core: Object + 'static;
    /// Writes staged for one commit.
    type Batch: 'static;
    /// What outlives the live state in this instance (a room's highest handed-out seq).
    type Memo: Default;

    /// The key of the object's name in `meta`.
    const NAME: &'static str;
    /// What errors and close reasons call it.
    const LABEL: &'static str;
    /// The schema's versions, in order (see [`sql::migrate`]).
    const MIGRATIONS: &'static [&'static str];

    /// The core as storage holds it, what the kind keeps beside it, and the effects the load
    /// decided (a repair's writes).
    fn load(from: Load<'_, Self>) -> Result<Loaded<Self>, Error>;

    /// Keeps one write for the next commit.
    fn stage(&mut self, write: WriteOf<Self>);

    /// Takes what was staged, if anything.
    fn take_batch(&mut self) -> Option<Self::Batch>;

    /// Writes one batch; the shell runs it in one transaction unless it is one statement.
    fn write(sql: &SqlStorage, batch: &Self::Batch) -> Result<(), Error>;

    /// Whether `write` makes a single statement of `batch`, atomic by itself: the shell then
    /// spares the transaction (`transactionSync` cost as much as the `INSERT` it wrapped).
    fn one_statement(batch: &Self::Batch) -> bool {
        let _ = batch;
        false
    }

    /// After a batch is stored: upkeep, and what announces it beyond the core's own effects.
    fn stored(&mut self, core: &Self::Core, sql: &SqlStorage, batch: &Self::Batch) -> Effects<Self> {
        let _ = (core, sql, batch);
        Vec::new()
    }

    /// Runs `f` with the reader the core reads storage through. Reads must see the staged
    /// writes: a room's log overlays its pending messages; a reader that cannot overlay commits
    /// what is staged before its first read, and reports a failure through `read_failure`.
    fn read<R>(
        &self,
        core: &mut Self::Core,
        store: &Store<'_>,
        f: impl for<'r> FnOnce(&mut Self::Core, &ReaderOf<'r, Self>) -> R,
    ) -> R;

    /// A commit the reader made that failed: the live state is then dropped.
    fn read_failure(&self) -> Option<Error> {
        None
    }

    /// The live state is being dropped (a write failed, or the instance goes away).
    fn dropped(&self, core: &Self::Core) {
        let _ = core;
    }

    /// Makes one round of calls; their answers go back in through [`Shell::apply`].
    async fn call(shell: &Rc<Shell<Self>>, calls: Vec<CallOf<Self>>);

    /// What the kind adds to its core's counters from storage (see [`Shell::stats`]).
    fn stats(sql: &SqlStorage, stats: &mut Map<String, Value>) -> Result<(), Error> {
        let _ = (sql, stats);
        Ok(())
    }

    /// The kind's own HTTP endpoints (everything but `/connect` and `/stats`).
    async fn endpoint(shell: &Rc<Shell<Self>>, inbound: Inbound) -> Result<Response, Error>;
}

/// A Worker → object request: the endpoint, the object's name and what the Worker verified.
pub(crate) struct Inbound {
    pub(crate) path: String,
    /// The object's name as the Worker routed it (an object knows only its id).
    pub(crate) name: Option<String>,
    pub(crate) admission: Admission,
    pub(crate) req: Request,
}

/// What a kind's Durable Object holds: the runtime's state and environment, the live state.
pub(crate) struct Shell<K: Kind> {
    pub(crate) state: State,
    pub(crate) env: Env,
    live: RefCell<Slot<K>>,
    memo: K::Memo,
    /// The callback of a deferred drain, made on first use.
    drain: OnceCell<Closure<dyn FnMut()>>,
    /// Each socket's connection id, by socket: one lookup per frame instead of reading the
    /// attachment back (a JS object walked field by field). Empty after a wake; filled as
    /// sockets connect or send.
    conn_ids: js_sys::WeakMap,
    /// A round of calls is being made (`run_calls`), and whether more were asked for meanwhile.
    calling: Cell<bool>,
    more_calls: Cell<bool>,
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's timer: the callback runs once the events already queued are handled.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: i32);
}

impl<K: Kind> Shell<K> {
    pub(crate) fn new(state: State, env: Env) -> Rc<Self> {
        // Answered by the runtime without waking the object; failing to set it only costs wakes.
        if let Ok(pair) = WebSocketRequestResponsePair::new(r#"{"t":"ping"}"#, r#"{"t":"pong"}"#) {
            let _ = state.as_raw().set_websocket_auto_response(&pair);
        }
        Rc::new(Shell {
            state,
            env,
            live: RefCell::new(None),
            memo: K::Memo::default(),
            drain: OnceCell::new(),
            calling: Cell::new(false),
            more_calls: Cell::new(false),
            conn_ids: js_sys::WeakMap::new(),
        })
    }

    /// The live state slot. Never held across an `.await`.
    pub(crate) fn slot(&self) -> RefMut<'_, Slot<K>> {
        self.live.borrow_mut()
    }

    /// The live object, rebuilt from storage and the surviving sockets when it just woke. Every
    /// event first hears of the event streams whose client left, so none counts a dead stream.
    pub(crate) fn load<'a>(
        self: &Rc<Self>,
        slot: &'a mut Slot<K>,
        name: Option<&str>,
    ) -> Result<&'a mut Live<K>, Error> {
        self.load_with(slot, name, None)
    }

    /// `load`, counting `closing` (the socket whose close woke the object) as connected.
    fn load_with<'a>(
        self: &Rc<Self>,
        slot: &'a mut Slot<K>,
        name: Option<&str>,
        closing: Option<InfoOf<K>>,
    ) -> Result<&'a mut Live<K>, Error> {
        if slot.is_none() {
            let (live, effects) = self.rebuild(name, closing)?;
            *slot = Some(live);
            if !self.apply(slot, None, effects) {
                return Err(Error::new(ErrorCode::Internal, format!("could not restore the {}", K::LABEL)));
            }
        }
        let live = slot.as_mut().ok_or_else(|| not_loaded::<K>())?;
        let gone: Vec<ConnId> =
            live.streams.iter().filter(|(_, s)| s.is_gone()).map(|(id, _)| id.clone()).collect();
        if !gone.is_empty() {
            for id in gone {
                live.streams.remove(&id);
                live.streams_gone.push(id);
            }
            self.apply(slot, None, Vec::new());
        }
        slot.as_mut().ok_or_else(|| not_loaded::<K>())
    }

    /// Runs `f` on the live core with its reader. A commit the reader made before reading that
    /// failed drops the live state (telling `origin`), as any failed write does.
    pub(crate) fn read<R>(
        self: &Rc<Self>,
        slot: &mut Slot<K>,
        origin: Option<&ConnId>,
        f: impl for<'r> FnOnce(&mut K::Core, &ReaderOf<'r, K>) -> R,
    ) -> Result<R, Error> {
        let live = slot.as_mut().ok_or_else(not_loaded::<K>)?;
        let store = Store { sql: &live.sql, state: &self.state };
        let out = live.kind.read(&mut live.core, &store, f);
        if let Some(e) = live.kind.read_failure() {
            self.fail(slot, origin, &e);
            return Err(e);
        }
        Ok(out)
    }

    /// The live object with everything queued drained, for reads that leave the object at once
    /// (stats, HTTP history, an event stream's opening): they never show an unwritten write.
    pub(crate) fn drained<'a>(
        self: &Rc<Self>,
        slot: &'a mut Slot<K>,
        name: Option<&str>,
    ) -> Result<&'a mut Live<K>, Error> {
        let live = self.load(slot, name)?;
        if let Err(e) = live.flush(&self.state) {
            self.fail(slot, None, &e);
            return Err(e);
        }
        slot.as_mut().ok_or_else(|| not_loaded::<K>())
    }

    fn rebuild(
        self: &Rc<Self>,
        hint: Option<&str>,
        closing: Option<InfoOf<K>>,
    ) -> Result<(Live<K>, Effects<K>), Error> {
        let config = config(&self.env)?;
        let sql = self.state.storage().sql();
        sql::migrate(&self.state, K::MIGRATIONS)?;
        let (name, first) = match (read_meta(&sql, K::NAME)?, hint) {
            (Some(stored), _) => (stored, false),
            (None, Some(hint)) => (hint.to_owned(), true),
            (None, None) => {
                return Err(Error::new(ErrorCode::Internal, format!("{} has no name yet", K::LABEL)))
            }
        };
        let from = Load { sql: &sql, name: &name, config: &config, memo: &self.memo };
        let (mut core, kind, mut effects) = K::load(from)?;
        if first {
            write_meta(&sql, K::NAME, &name)?;
        }
        count_wake(&sql)?;
        let now = now();
        let mut sockets = HashMap::new();
        for (ws, info) in socket::restored::<InfoOf<K>>(&self.state)? {
            sockets.insert(info.conn().clone(), ws);
            core.restore_conn(info, now);
        }
        // The closing socket is listed but no longer open (CLOSING, then CLOSED), so it was
        // skipped above; count it once, with no socket to send to, until its close is handled.
        // The check keeps it single should a runtime still report it open.
        if let Some(info) = closing.filter(|c| !sockets.contains_key(c.conn())) {
            core.restore_conn(info, now);
        }
        effects.extend(core.restored(now));
        Ok((Live::new(core, kind, sockets, sql), effects))
    }

    /// Applies a batch (see the module doc) and re-aims the alarm. An idle object drains at
    /// once; under a backlog the drain waits for the runtime to be idle. A failed write drops
    /// the live state, tells `origin`, and skips the rest; it returns `false` then.
    pub(crate) fn apply(
        self: &Rc<Self>,
        slot: &mut Slot<K>,
        origin: Option<&ConnId>,
        effects: Effects<K>,
    ) -> bool {
        self.apply_greeting(slot, origin, effects, None, now())
    }

    /// [`Shell::apply`] at `now` that first sends `greeted`, a socket that just joined, its greeting
    /// ([`Live::greet`]): what is left queued then decides how soon the drain runs.
    fn apply_greeting(
        self: &Rc<Self>,
        slot: &mut Slot<K>,
        origin: Option<&ConnId>,
        effects: Effects<K>,
        greeted: Option<&ConnId>,
        now: Timestamp,
    ) -> bool {
        let Some(live) = slot.as_mut() else { return false };
        // The greeting goes before the departures are heard: a socket that refused it departs
        // with the others, in this batch.
        let queued = live.queue(&self.state, effects);
        let greeting = queued.and_then(|()| greeted.map_or(Ok(()), |conn| live.greet(&self.state, conn)));
        if let Err(e) = greeting.and_then(|()| live.settle(&self.state, now)) {
            return self.fail(slot, origin, &e);
        }
        let previous = live.last_apply.replace(now);
        let receivers = live.sockets.len() + live.streams.len();
        if outbox::should_defer(now, previous, live.drain_due.is_some(), receivers) {
            self.schedule_flush(live, now);
        } else if let Err(e) = live.flush(&self.state) {
            return self.fail(slot, origin, &e);
        }
        live.sync_alarm(&self.state);
        true
    }

    /// [`Shell::apply`], drained at once: for an answer that says the writes are stored.
    pub(crate) fn apply_now(self: &Rc<Self>, slot: &mut Slot<K>, effects: Effects<K>) -> Result<(), Error> {
        let stored = || Error::new(ErrorCode::Internal, "could not store the change");
        if !self.apply(slot, None, effects) {
            return Err(stored());
        }
        let live = slot.as_mut().ok_or_else(stored)?;
        if let Err(e) = live.flush(&self.state) {
            self.fail(slot, None, &e);
            return Err(stored());
        }
        Ok(())
    }

    /// Drains once the runtime is idle, after the events that queue up meanwhile; a queue of
    /// nothing but announcements waits `ANNOUNCE_HOLD_MS` more (`outbox::drain_timer`), until
    /// a frame that may not wait schedules an earlier drain, which takes everything along.
    /// One `setTimeout` with a callback made once per instance: no promise, no task, no
    /// future to poll (a spawned task with a `Delay` cost ~13 % of a room message's busy time).
    fn schedule_flush(self: &Rc<Self>, live: &mut Live<K>, now: Timestamp) {
        if !live.has_queued() {
            return;
        }
        if let Some(delay) = outbox::drain_timer(live.drain_due, now, live.can_wait()) {
            live.drain_due = Some(now.plus_millis(delay));
            self.after(delay);
        }
    }

    /// Drains after `delay_ms`, and after the events queued by then. A timer that finds the
    /// queue already drained does nothing; one that finds a later drain scheduled runs it early.
    fn after(self: &Rc<Self>, delay_ms: u64) {
        let drain = self.drain.get_or_init(|| {
            let shell = Rc::downgrade(self);
            Closure::new(move || {
                if let Some(shell) = shell.upgrade() {
                    shell.deferred_flush();
                }
            })
        });
        set_timeout(drain.as_ref().unchecked_ref(), i32::try_from(delay_ms).unwrap_or(i32::MAX));
    }

    fn deferred_flush(self: &Rc<Self>) {
        // No handler holds the borrow across an await, so this succeeds between events.
        let Ok(mut slot) = self.live.try_borrow_mut() else {
            self.after(0);
            return;
        };
        // A handler may have drained meanwhile (an HTTP answer, a connect).
        if let Some(live) = slot.as_mut().filter(|live| live.drain_due.is_some()) {
            if let Err(e) = live.flush(&self.state) {
                self.fail(&mut slot, None, &e);
            }
        }
        drop(slot);
        self.spawn_calls();
    }

    /// The failure path of every object: a write failed, so the socket whose frame caused it
    /// (`origin`) gets an `error` frame, and the live state is dropped ([`Live::abandon`]).
    fn fail(&self, slot: &mut Slot<K>, origin: Option<&ConnId>, error: &Error) -> bool {
        if let Some(live) = slot.as_mut() {
            if let Some(ws) = origin.and_then(|c| live.sockets.get(c)) {
                socket::send(ws, &protocol::error_frame(error));
            }
            live.abandon();
        }
        *slot = None;
        false
    }

    /// Makes the calls of everything drained, and the calls their answers lead to; the bound
    /// guards against two objects answering each other forever.
    /// One task makes them at a time: calls asked for while it runs are made by it, after the
    /// ones before them, so one event's calls never overtake an earlier event's (a `Watch` then
    /// an `Unwatch` to the same user); a caller that finds it running returns at once.
    pub(crate) async fn run_calls(self: &Rc<Self>) {
        if self.calling.replace(true) {
            self.more_calls.set(true);
            return;
        }
        /// Clears `calling` however the task ends, so no later call waits for a task gone.
        struct Calling<'a>(&'a Cell<bool>);
        impl Drop for Calling<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _calling = Calling(&self.calling);
        loop {
            self.more_calls.set(false);
            for _ in 0..4 {
                let calls = match self.live.try_borrow_mut() {
                    Ok(mut slot) => slot.as_mut().map(|live| std::mem::take(&mut live.ready_calls)),
                    Err(_) => None,
                };
                match calls {
                    Some(calls) if !calls.is_empty() => K::call(self, calls).await,
                    _ => break,
                }
            }
            if !self.more_calls.get() {
                break;
            }
        }
    }

    /// [`Shell::run_calls`] in the background, when there are calls to make.
    fn spawn_calls(self: &Rc<Self>) {
        let pending =
            self.live.try_borrow().is_ok_and(|slot| slot.as_ref().is_some_and(|l| !l.ready_calls.is_empty()));
        if pending {
            let shell = Rc::clone(self);
            worker::wasm_bindgen_futures::spawn_local(async move { shell.run_calls().await });
        }
    }

    /// Runs `f` on the live core (rebuilt if it went away) and applies what it returns; `false`
    /// when the object could not be loaded or the effects not stored.
    pub(crate) fn with_core(self: &Rc<Self>, f: impl FnOnce(&mut K::Core) -> Effects<K>) -> bool {
        let mut slot = self.live.borrow_mut();
        let Ok(live) = self.load(&mut slot, None) else { return false };
        let effects = f(&mut live.core);
        self.apply(&mut slot, None, effects)
    }

    /// A new event stream for the kind's endpoint to register under `id`: when its client goes
    /// away the core hears it at once, not only at the next write to the stream.
    pub(crate) fn new_stream(self: &Rc<Self>, id: &ConnId) -> (Stream, StreamBody) {
        let weak = Rc::downgrade(self);
        let gone = id.clone();
        Stream::watched(move || {
            if let Some(shell) = weak.upgrade() {
                worker::wasm_bindgen_futures::spawn_local(async move { shell.stream_gone(&gone) });
            }
        })
    }

    fn stream_gone(self: &Rc<Self>, id: &ConnId) {
        // Never waits for a borrow: a busy object notices at its next event instead (`load`).
        let Ok(mut slot) = self.live.try_borrow_mut() else { return };
        let Some(live) = slot.as_mut() else { return };
        if live.streams.remove(id).is_some() {
            live.streams_gone.push(id.clone());
            self.apply(&mut slot, None, Vec::new());
            drop(slot);
            self.spawn_calls();
        }
    }
}

/// The handlers the runtime calls.
impl<K: Kind> Shell<K> {
    /// A request from the Worker. A connect is answered synchronously (no promise: a connect
    /// storm is the hot path here); the kind's endpoints, which may read a body or wait for other
    /// objects, get a future.
    /// A connect works on the runtime's own request and response objects (workers-rs would copy
    /// both, a crossing per field); the other endpoints get workers-rs' request.
    pub(crate) fn fetch(
        self: &Rc<Self>,
        req: web_sys::Request,
    ) -> Result<worker::Result<web_sys::Response>, impl Future<Output = worker::Result<web_sys::Response>>>
    {
        let header = |name: &str| req.headers().get(name).ok().flatten();
        let (name, admission) = (header(internal::OBJECT), header(internal::ADMISSION));
        let admission = Admission::parse(admission.as_deref());
        let url = req.url();
        // `https://<kind>.internal/<endpoint>`: the path starts at the first `/` after the host.
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
        let path = path.split(['?', '#']).next().unwrap_or("/").to_owned();
        if path == "/connect" {
            let answer = admission.and_then(|admission| self.accept(name.as_deref(), &admission));
            // The handshake must not wait for other objects.
            self.spawn_calls();
            return Ok(answer.or_else(|e| http::error(&e).map(Into::into)));
        }
        let inbound = admission.map(|admission| Inbound {
            path: path.clone(),
            name,
            admission,
            req: Request::from(req),
        });
        let shell = Rc::clone(self);
        Err(async move {
            let answer = match inbound {
                Ok(inbound) if inbound.path == "/stats" => shell.stats(&inbound),
                Ok(inbound) => K::endpoint(&shell, inbound).await,
                Err(e) => Err(e),
            };
            if path == "/events" {
                // The stream's headers must not wait for other objects.
                shell.spawn_calls();
            } else {
                shell.run_calls().await;
            }
            answer.or_else(|e| http::error(&e)).map(Into::into)
        })
    }

    /// A frame arrived. Handled synchronously (the runtime calls this export without a promise
    /// or a microtask); the calls it leads to are made in the background.
    pub(crate) fn on_message(self: &Rc<Self>, ws: WebSocket, message: &JsValue) {
        let Some(conn) = self.conn_of(&ws) else {
            socket::close(&ws, close::INTERNAL, "unknown connection");
            return;
        };
        {
            let mut slot = self.live.borrow_mut();
            if let Err(e) = self.load(&mut slot, None) {
                socket::send(&ws, &protocol::error_frame(&e));
                socket::close(&ws, close::INTERNAL, &unavailable::<K>());
                return;
            }
            let text = message.as_string();
            let frame = match &text {
                Some(text) => Incoming::Text(text),
                None => Incoming::Binary(js_sys::Uint8Array::new(message).length() as usize),
            };
            // One clock read for the event: the runtime's clock does not move while it runs.
            let now = now();
            let handled = self
                .read(&mut slot, Some(&conn), |core, reader| core.handle_frame(&conn, frame, now, reader));
            if let Ok(effects) = handled {
                self.apply_greeting(&mut slot, Some(&conn), effects, None, now);
            }
        }
        self.spawn_calls();
    }

    /// A socket closed (the client's close is finished here: in hibernation mode the handshake
    /// is ours to complete) or failed.
    pub(crate) fn on_close(self: &Rc<Self>, ws: WebSocket, code: Option<(usize, String)>) {
        // Without our close frame the client waits. In the handler the socket reads CLOSING (2)
        // and is still listed by `getWebSockets`; after this it reads CLOSED (3), so a rebuild in
        // the same handler does not restore it (measured in local workerd).
        if let Some((code, reason)) = code {
            socket::close(&ws, u16::try_from(code).unwrap_or(close::NORMAL), &reason);
        }
        self.forget(&ws);
        self.spawn_calls();
    }

    pub(crate) async fn on_alarm(self: &Rc<Self>) -> worker::Result<Response> {
        let handled = {
            let mut slot = self.live.borrow_mut();
            // The alarm may find the object evicted: rebuilding restores every token expiry.
            match self.load(&mut slot, None) {
                Ok(live) => {
                    live.alarm = None; // this alarm is spent
                    let effects = live.core.handle_alarm(now());
                    self.apply(&mut slot, None, effects)
                }
                Err(_) => false,
            }
        };
        self.run_calls().await;
        if !handled {
            // Thrown, so the runtime retries the alarm (with backoff) instead of forgetting it.
            return Err(worker::Error::RustError(format!("{} could not handle its alarm", K::LABEL)));
        }
        Response::ok("")
    }

    /// `GET /stats`: the core's counters, drained first, and what only the shell knows: the
    /// alarm it set and how often the object was rebuilt from storage (`wakes`).
    fn stats(self: &Rc<Self>, inbound: &Inbound) -> Result<Response, Error> {
        let mut slot = self.slot();
        let live = self.drained(&mut slot, inbound.name.as_deref())?;
        let mut stats = live.core.stats();
        stats.insert("alarm".into(), serde_json::json!(live.alarm));
        stats.insert("wakes".into(), sql::wakes(&live.sql)?.into());
        K::stats(&live.sql, &mut stats)?;
        http::json(200, &stats)
    }

    /// Accepts an upgrade the Worker admitted: the core's capacity checks, then the socket.
    fn accept(
        self: &Rc<Self>,
        name: Option<&str>,
        admission: &Admission,
    ) -> Result<web_sys::Response, Error> {
        let mut slot = self.live.borrow_mut();
        let live = self.load(&mut slot, name)?;
        // Staged writes are committed first, so a failed write fails the connect before any
        // socket exists; queued frames wait for the drain (none of them is for this socket).
        if let Err(e) = live.commit(&self.state) {
            self.fail(&mut slot, None, &e);
            return Err(e);
        }
        let live = slot.as_mut().ok_or_else(not_loaded::<K>)?;
        let (info, connect) = live.core.admit(random_id()?, admission)?;
        let pair = WebSocketPair::new().map_err(http::internal)?;
        let response = upgraded(&pair.client, admission.protocol.as_deref())
            .map_err(|_| Error::new(ErrorCode::Internal, "could not answer the upgrade"))?;
        socket::accept(&self.state, &pair.server)
            .map_err(|_| Error::new(ErrorCode::Internal, "could not accept the socket"))?;
        // The runtime now holds the socket: on any failure from here it is closed, or the next
        // wake would restore it as a connection nobody was told of, whose client got no greeting.
        if let Err(e) = self.open(&mut slot, &pair.server, info, connect) {
            socket::close(&pair.server, close::INTERNAL, "could not open the connection");
            return Err(e);
        }
        Ok(response)
    }

    /// The connection id of `ws`.
    fn conn_of(&self, ws: &WebSocket) -> Option<ConnId> {
        let key: &js_sys::Object = ws.as_ref().unchecked_ref();
        if let Some(id) = self.conn_ids.get(key).as_string() {
            return ConnId::try_from(id).ok();
        }
        let conn = ws.deserialize_attachment::<InfoOf<K>>().ok().flatten()?.conn().clone();
        self.conn_ids.set(key, &JsValue::from_str(conn.as_str()));
        Some(conn)
    }

    /// Makes an accepted socket the core's: its attachment, then the core's greeting.
    fn open(
        self: &Rc<Self>,
        slot: &mut Slot<K>,
        ws: &WebSocket,
        info: InfoOf<K>,
        connect: ConnectOf<K>,
    ) -> Result<(), Error> {
        let failed = || Error::new(ErrorCode::Internal, "could not open the connection");
        ws.serialize_attachment(&info).map_err(http::internal)?;
        let live = slot.as_mut().ok_or_else(not_loaded::<K>)?;
        let conn = info.conn().clone();
        live.sockets.insert(conn.clone(), ws.clone());
        live.outbox.admit(conn.clone());
        self.conn_ids.set(ws.as_ref().unchecked_ref(), &JsValue::from_str(conn.as_str()));
        let effects =
            self.read(slot, None, |core, reader| core.handle_connect(info, connect, now(), reader))?;
        if !self.apply_greeting(slot, None, effects, Some(&conn), now()) {
            return Err(failed());
        }
        match slot.as_ref() {
            Some(live) if live.sockets.contains_key(&conn) => Ok(()),
            _ => Err(failed()),
        }
    }

    /// A socket closed or failed. The event may be what woke the object: then it is rebuilt with
    /// the closing socket still counted, so its departure is handled like any other.
    fn forget(self: &Rc<Self>, ws: &WebSocket) {
        let Ok(Some(info)) = ws.deserialize_attachment::<InfoOf<K>>() else { return };
        let conn = info.conn().clone();
        let mut slot = self.live.borrow_mut();
        let Ok(live) = self.load_with(&mut slot, None, Some(info)) else { return };
        live.sockets.remove(&conn);
        live.departed.push(conn);
        self.apply(&mut slot, None, Vec::new());
    }
}

/// The `101` that hands `client` over, echoing the subprotocol the Worker accepted.
fn upgraded(client: &WebSocket, protocol: Option<&str>) -> Result<web_sys::Response, JsValue> {
    let mut init = web_sys::ResponseInit::new();
    init.set_status(101);
    if let Some(protocol) = protocol {
        let headers = web_sys::Headers::new()?;
        headers.set("sec-websocket-protocol", protocol)?;
        init.set_headers(&headers);
    }
    init.websocket(client.as_ref())?;
    web_sys::Response::new_with_opt_str_and_init(None, &init)
}

fn not_loaded<K: Kind>() -> Error {
    Error::new(ErrorCode::Internal, format!("{} not loaded", K::LABEL))
}
