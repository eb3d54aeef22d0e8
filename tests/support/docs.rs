//! One document object and several editing clients in memory, on a virtual clock, with FIFO
//! channels that deliver after random delays. Each client runs the standard OT client: one op
//! in flight, later edits composed into a buffer behind it, incoming ops transformed against
//! both (`transform(mine, remote, left)`, `transform(remote, mine, right)`).
#![allow(dead_code)]

use super::shell::{self, Shell};
use super::{config, Rng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use switchboard::core::config::Limits;
use switchboard::core::doc::{
    Applied, Doc, DocCall, DocConnInfo, DocEffect, DocWrite, LoggedOp, Owner, StoredDoc,
};
use switchboard::core::ids::{ConnId, DocId, UserId};
use switchboard::core::object::{Effect, Object};
use switchboard::core::ot::{self, compose, transform, Component, Deleted, Op, Side};
use switchboard::core::protocol::Incoming;
use switchboard::core::time::Timestamp;

/// What the document's storage holds.
#[derive(Default, Clone)]
pub struct DocStore {
    pub snapshot: (u64, String),
    pub ops: BTreeMap<u64, LoggedOp>,
    pub sources: BTreeMap<(Owner, String), Applied>,
    pub epoch: Option<String>,
}

impl DocStore {
    pub fn stored(&self) -> StoredDoc {
        StoredDoc {
            epoch: self.epoch.clone(),
            snapshot_v: self.snapshot.0,
            snapshot_text: self.snapshot.1.clone(),
            ops: self.ops.values().filter(|o| o.v >= self.snapshot.0).map(LoggedOp::stored).collect(),
            sources: self.sources.clone(),
        }
    }

    /// What the shell answers a `ReadOps` with: the page built from the stored rows.
    pub fn read(&self, call: &DocCall) -> (ConnId, String) {
        let DocCall::ReadOps { to, reply_to, from, until, max_bytes } = call;
        let rows: Vec<_> =
            self.ops.range(*from..).take_while(|(v, _)| *v < until).map(|(_, o)| o.stored()).collect();
        (to.clone(), switchboard::core::doc::ops_page(reply_to, *from, *until, *max_bytes, &rows))
    }

    /// Stores one write as the shell's SQL does.
    pub fn write(&mut self, write: &DocWrite) {
        match write {
            DocWrite::AppendOp(op) => {
                self.ops.insert(op.v, op.clone());
            }
            DocWrite::SaveSource { user, src, applied, forget } => {
                self.sources.insert((Some(user.clone()), src.clone()), *applied);
                if let Some(f) = forget {
                    self.sources.remove(f);
                }
            }
            DocWrite::SaveEpoch(epoch) => self.epoch = Some(epoch.clone()),
            DocWrite::Repair { repair, epoch, text } => {
                self.snapshot = (repair.continued_at, text.clone());
                self.ops.clear();
                self.sources.retain(|_, a| a.v < repair.dropped_from);
                self.epoch = Some(epoch.clone());
            }
            DocWrite::SaveSnapshot { v, text, compact_before } => {
                self.snapshot = (*v, text.clone());
                self.ops.retain(|k, _| k >= compact_before);
            }
        }
    }

    /// Stores what a rebuild decided (its effects are all writes).
    pub fn restored(&mut self, effects: &[DocEffect]) {
        for effect in effects {
            if let Effect::Write(write) = effect {
                self.write(write);
            }
        }
    }
}

/// A document alone ([`super::solo::Solo`]): `ops:get` pages are read from this store.
impl super::solo::Storage<Doc> for DocStore {
    fn write(&mut self, write: DocWrite) {
        DocStore::write(self, &write);
    }

    fn reader(&self) -> &() {
        &()
    }

    fn call(&mut self, _doc: &mut Doc, call: DocCall, _now: Timestamp) -> Vec<DocEffect> {
        let (to, frame) = self.read(&call);
        vec![Effect::Send { to, frame }]
    }
}

/// A client's view, run by the standard client algorithm.
pub struct Client {
    pub conn: ConnId,
    pub src: String,
    pub text: String,
    /// The server version this client's `text` (minus pending ops) reflects.
    pub version: u64,
    pub inflight: Option<(Op, u64)>,
    pub buffer: Option<Op>,
    pub next_seq: u64,
    /// Acks received per seq.
    pub acks: BTreeMap<u64, u32>,
    pub errors: Vec<Value>,
}

impl Client {
    fn submit_frame(&self, op: &Op, seq: u64) -> String {
        json!({ "t": "op:submit", "ref": seq, "d": { "v": self.version, "op": op.to_json(), "src": self.src, "seq": seq } })
            .to_string()
    }

    /// A local edit: applied at once, sent now or composed behind the op in flight.
    fn edit(&mut self, op: Op) -> Option<String> {
        self.text = ot::apply(&self.text, &op).expect("generated ops fit the client's text");
        if self.inflight.is_none() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let frame = self.submit_frame(&op, seq);
            self.inflight = Some((op, seq));
            return Some(frame);
        }
        self.buffer = Some(match self.buffer.take() {
            Some(b) => compose(&b, &op),
            None => op,
        });
        None
    }

    /// A frame from the server; returns a frame to send (the buffer, once the ack frees it).
    fn receive(&mut self, frame: &Value) -> Option<String> {
        match frame["t"].as_str() {
            Some("operation") => {
                let v = frame["d"]["v"].as_u64().unwrap();
                assert_eq!(v, self.version, "{}: operations arrive in version order", self.src);
                let mut remote = Op::from_json(&frame["d"]["op"]).unwrap();
                if let Some((mine, seq)) = self.inflight.take() {
                    let mine2 = transform(&mine, &remote, Side::Left);
                    remote = transform(&remote, &mine, Side::Right);
                    self.inflight = Some((mine2, seq));
                }
                if let Some(buffer) = self.buffer.take() {
                    let buffer2 = transform(&buffer, &remote, Side::Left);
                    remote = transform(&remote, &buffer, Side::Right);
                    self.buffer = Some(buffer2);
                }
                self.text = ot::apply(&self.text, &remote).expect("a transformed remote op fits");
                self.version += 1;
                None
            }
            Some("reply") if frame["ok"] == true => {
                let seq = frame["d"]["seq"].as_u64().unwrap();
                *self.acks.entry(seq).or_default() += 1;
                match &self.inflight {
                    Some((_, s)) if *s == seq => {
                        self.inflight = None;
                        self.version = frame["d"]["v"].as_u64().unwrap() + 1;
                        let buffer = self.buffer.take()?;
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        let frame = self.submit_frame(&buffer, seq);
                        self.inflight = Some((buffer, seq));
                        Some(frame)
                    }
                    _ => None, // a repeated ack for a resubmission
                }
            }
            Some("reply") => {
                self.errors.push(frame.clone());
                None
            }
            _ => None,
        }
    }
}

/// A message on its way, due at `at`.
struct InFlight {
    at: u64,
    to_server: bool,
    client: usize,
    text: String,
}

pub struct DocSim {
    pub doc: Doc,
    pub store: DocStore,
    pub clients: Vec<Client>,
    pub now: u64,
    pub rng: Rng,
    /// Messages per direction and client, FIFO; `last` keeps each channel's order.
    queue: VecDeque<InFlight>,
    last: BTreeMap<(bool, usize), u64>,
    pub max_delay: u64,
    pub applied: u64,
}

pub fn doc_config() -> switchboard::core::config::Config {
    config(Limits { doc_log_retain: 10_000, ..Limits::default() })
}

impl DocSim {
    pub fn new(clients: usize, seed: u64, initial: &str) -> DocSim {
        let store = DocStore { snapshot: (0, initial.to_owned()), ..DocStore::default() };
        let (doc, effects) =
            Doc::restore(DocId::parse("d").unwrap(), store.stored(), doc_config(), "e1".into());
        let mut store = store;
        store.restored(&effects);
        let mut sim = DocSim {
            doc,
            store,
            clients: Vec::new(),
            now: 0,
            rng: Rng(seed.max(1)),
            queue: VecDeque::new(),
            last: BTreeMap::new(),
            max_delay: 50,
            applied: 0,
        };
        for i in 0..clients {
            sim.join(i);
        }
        sim
    }

    fn join(&mut self, i: usize) {
        let conn = ConnId::parse(&format!("c{i}")).unwrap();
        let info = DocConnInfo {
            conn: conn.clone(),
            user: UserId::parse(&format!("u{i}")).unwrap(),
            expires: Timestamp(u64::MAX / 4),
            can_write: true,
        };
        let effects = self.doc.handle_connect(info, None, Timestamp(self.now), &());
        let mut snapshot = None;
        for e in effects {
            if let DocEffect::Send { frame, .. } = e {
                let f: Value = serde_json::from_str(&frame).unwrap();
                if f["t"] == "doc:snapshot" {
                    snapshot = Some(f);
                }
            }
        }
        let s = snapshot.expect("doc:snapshot on open");
        self.clients.push(Client {
            conn,
            src: format!("src-{i}"),
            text: s["d"]["text"].as_str().unwrap().to_owned(),
            version: s["d"]["v"].as_u64().unwrap(),
            inflight: None,
            buffer: None,
            next_seq: 1,
            acks: BTreeMap::new(),
            errors: Vec::new(),
        });
    }

    fn post(&mut self, to_server: bool, client: usize, text: String) {
        let delay = self.rng.below(self.max_delay as usize + 1) as u64;
        let key = (to_server, client);
        let at = (self.now + delay).max(self.last.get(&key).copied().unwrap_or(0));
        self.last.insert(key, at);
        let index = self.queue.iter().position(|m| m.at > at).unwrap_or(self.queue.len());
        self.queue.insert(index, InFlight { at, to_server, client, text });
    }

    /// Client `i` makes a random edit now.
    pub fn edit(&mut self, i: usize) {
        let op = random_op(&mut self.rng, &self.clients[i].text);
        if let Some(frame) = self.clients[i].edit(op) {
            self.post(true, i, frame);
        }
    }

    /// Client `i` sends its op in flight again (as after a reconnect).
    pub fn resubmit(&mut self, i: usize) {
        let c = &self.clients[i];
        if let Some((op, seq)) = &c.inflight {
            let frame = c.submit_frame(op, *seq);
            self.post(true, i, frame);
        }
    }

    /// Delivers everything due by `until`.
    pub fn run_until(&mut self, until: u64) {
        while self.queue.front().is_some_and(|m| m.at <= until) {
            let m = self.queue.pop_front().unwrap();
            self.now = self.now.max(m.at);
            if m.to_server {
                let conn = self.clients[m.client].conn.clone();
                let effects = self.doc.handle_frame(&conn, Incoming::Text(&m.text), Timestamp(self.now), &());
                shell::apply(self, effects);
            } else {
                let frame: Value = serde_json::from_str(&m.text).unwrap();
                if let Some(out) = self.clients[m.client].receive(&frame) {
                    self.post(true, m.client, out);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Delivers everything, however long it takes.
    pub fn settle(&mut self) {
        while let Some(at) = self.queue.back().map(|m| m.at) {
            self.run_until(at);
        }
    }

    fn index(&self, conn: &ConnId) -> usize {
        self.clients.iter().position(|c| &c.conn == conn).unwrap()
    }
}

/// The document's shell: frames go onto the delayed channels; closes are not simulated.
impl Shell<Doc> for DocSim {
    fn write(&mut self, write: DocWrite) {
        if let DocWrite::AppendOp(_) = write {
            self.applied += 1;
        }
        self.store.write(&write);
    }

    fn send(&mut self, to: ConnId, frame: String) {
        let i = self.index(&to);
        self.post(false, i, frame);
    }

    fn broadcast(&mut self, except: Option<ConnId>, frame: String) {
        for i in 0..self.clients.len() {
            if Some(&self.clients[i].conn) != except.as_ref() {
                self.post(false, i, frame.clone());
            }
        }
    }

    fn close(&mut self, _conn: ConnId, _code: u16) {}

    fn update_conn(&mut self, _info: DocConnInfo) {}

    fn call(&mut self, call: DocCall) {
        let (to, page) = self.store.read(&call);
        self.send(to, page);
    }
}

/// A random op that fits `text`: a few skips, inserts (astral characters and combining marks
/// among them) and deletes, normalized.
pub fn random_op(rng: &mut Rng, text: &str) -> Op {
    const ALPHABET: [&str; 8] = ["a", "b", " ", "é", "\u{301}", "😀", "中", "\n"];
    let len = ot::chars(text);
    let mut pos = 0;
    let mut components = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let left = len - pos;
        match rng.below(3) {
            0 if left > 0 => {
                let n = 1 + rng.below(left as usize) as u64;
                components.push(Component::Skip(n));
                pos += n;
            }
            2 if left > 0 => {
                let n = 1 + rng.below(left.min(4) as usize) as u64;
                components.push(Component::Delete(Deleted::Count(n)));
                pos += n;
            }
            _ => {
                let s: String = (0..1 + rng.below(3)).map(|_| *rng.pick(&ALPHABET)).collect();
                components.push(Component::Insert(s));
            }
        }
    }
    Op::normalize(components)
}
