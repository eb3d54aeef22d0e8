//! The document sequencer: convergence of five clients running the standard OT client over
//! channels with random delays, exactly-once application of resubmitted ops, and every rule of
//! `op:submit` and `cursor:update`.

mod support;

use serde_json::{json, Value};
use support::docs::{doc_config, random_op, DocSim, DocStore};
use support::{config, Rng};
use switchboard::core::config::Limits;
use switchboard::core::doc::{Doc, DocConnInfo, DocEffect, SNAPSHOT_EVERY};
use switchboard::core::ids::{ConnId, DocId, UserId};
use switchboard::core::protocol::Incoming;
use switchboard::core::time::Timestamp;

#[test]
fn five_clients_converge_over_random_delays_and_every_op_is_acknowledged_once() {
    let mut total_ops = 0;
    for seed in 1..=200u64 {
        let mut sim = DocSim::new(5, seed, "hello 😀 world");
        for step in 0..80 {
            let who = sim.rng.below(5);
            sim.edit(who);
            let t = sim.now + sim.rng.below(30) as u64;
            sim.run_until(t);
            if step % 20 == 19 {
                sim.max_delay = [5, 50, 300][sim.rng.below(3)];
            }
        }
        sim.settle();
        let server = sim.doc.text().to_owned();
        for c in &sim.clients {
            assert!(c.errors.is_empty(), "seed {seed}: {:?}", c.errors);
            assert_eq!(c.text, server, "seed {seed}: {} diverged", c.src);
            assert_eq!(c.version, sim.doc.version(), "seed {seed}");
            assert!(c.inflight.is_none() && c.buffer.is_none());
            let sent: Vec<u64> = (1..c.next_seq).collect();
            assert_eq!(c.acks.keys().copied().collect::<Vec<_>>(), sent, "seed {seed}: every op acked");
            assert!(c.acks.values().all(|n| *n == 1), "seed {seed}: acked exactly once");
            total_ops += sent.len() as u64;
        }
        assert_eq!(sim.applied, sim.clients.iter().map(|c| c.next_seq - 1).sum::<u64>());
        // What storage holds rebuilds the same document.
        let rebuilt = Doc::restore(DocId::parse("d").unwrap(), sim.store.stored(), doc_config()).unwrap();
        assert_eq!((rebuilt.text(), rebuilt.version()), (server.as_str(), sim.doc.version()), "seed {seed}");
    }
    assert!(total_ops > 10_000, "{total_ops} ops");
}

#[test]
fn a_resubmitted_op_is_acknowledged_again_and_applied_once() {
    for seed in 1..=50u64 {
        let mut sim = DocSim::new(3, seed, "");
        for _ in 0..40 {
            let who = sim.rng.below(3);
            sim.edit(who);
            if sim.rng.below(3) == 0 {
                let again = sim.rng.below(3);
                sim.resubmit(again);
            }
            let t = sim.now + sim.rng.below(40) as u64;
            sim.run_until(t);
        }
        sim.settle();
        let server = sim.doc.text().to_owned();
        for c in &sim.clients {
            assert!(c.errors.is_empty(), "seed {seed}: {:?}", c.errors);
            assert_eq!(c.text, server, "seed {seed}");
            assert_eq!(c.acks.len() as u64, c.next_seq - 1);
        }
        let distinct: u64 = sim.clients.iter().map(|c| c.next_seq - 1).sum();
        assert_eq!(sim.applied, distinct, "seed {seed}: each (src, seq) applied once");
    }
}

/// A document with one writer (`w`) and one reader (`r`), for rule-by-rule tests.
struct One {
    doc: Doc,
    store: DocStore,
    frames: Vec<(ConnId, Value)>,
    /// Moves 100 ms per frame, so rate limits never interfere.
    now: u64,
}

fn conn(name: &str) -> ConnId {
    ConnId::parse(name).unwrap()
}

impl One {
    fn new(limits: Limits, text: &str) -> One {
        let store = DocStore { snapshot: (0, text.to_owned()), ..DocStore::default() };
        let doc = Doc::restore(DocId::parse("spec").unwrap(), store.stored(), config(limits)).unwrap();
        let mut one = One { doc, store, frames: Vec::new(), now: 0 };
        one.connect("w", true, None);
        one.connect("r", false, None);
        one.frames.clear();
        one
    }

    fn connect(&mut self, c: &str, can_write: bool, resume: Option<u64>) {
        let info = DocConnInfo {
            conn: conn(c),
            user: UserId::parse(&format!("user-{c}")).unwrap(),
            expires: Timestamp(u64::MAX / 4),
            can_write,
        };
        let effects = self.doc.handle_connect(info, resume, Timestamp(0));
        self.apply(effects);
    }

    fn apply(&mut self, effects: Vec<DocEffect>) {
        for e in effects {
            self.store.apply(&e);
            match e {
                DocEffect::Send { to, frame } => {
                    self.frames.push((to, serde_json::from_str(&frame).unwrap()))
                }
                DocEffect::Broadcast { except, frame } => {
                    for c in ["w", "r", "w2"].map(conn) {
                        if Some(&c) != except.as_ref() {
                            self.frames.push((c, serde_json::from_str(&frame).unwrap()));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, c: &str, frame: Value) -> Value {
        let text = frame.to_string();
        self.now += 100;
        let effects = self.doc.handle_frame(&conn(c), Incoming::Text(&text), Timestamp(self.now));
        self.apply(effects);
        let r = frame["ref"].clone();
        let at = self.frames.iter().position(|(to, f)| to == &conn(c) && f["t"] == "reply" && f["ref"] == r);
        at.map(|i| self.frames.remove(i).1).unwrap_or(Value::Null)
    }

    fn submit(&mut self, c: &str, v: u64, op: Value, src: &str, seq: u64) -> Value {
        self.send(
            c,
            json!({ "t": "op:submit", "ref": "s", "d": { "v": v, "op": op, "src": src, "seq": seq } }),
        )
    }

    fn taken(&mut self, c: &str, event: &str) -> Vec<Value> {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.frames.drain(..).partition(|(to, f)| to == &conn(c) && f["t"] == event);
        self.frames = rest;
        mine.into_iter().map(|(_, f)| f).collect()
    }
}

#[test]
fn submit_transforms_over_what_was_applied_since_and_tells_the_others() {
    let mut d = One::new(Limits::default(), "abc");
    assert_eq!(d.submit("w", 0, json!([1, "X"]), "a", 1)["d"], json!({ "v": 0, "src": "a", "seq": 1 }));
    // Based on version 0, so it is moved over the "X" (the earlier op wins the tie: side left).
    assert_eq!(d.submit("w", 0, json!([1, "Y", 2]), "b", 1)["d"]["v"], 1, "a trailing skip is accepted");
    assert_eq!(d.doc.text(), "aYXbc");
    let ops = d.taken("r", "operation");
    assert_eq!(ops.len(), 2);
    assert_eq!(
        ops[1]["d"],
        json!({ "v": 1, "op": [1, "Y"], "src": "b", "seq": 1 }),
        "normalized, as applied"
    );
    assert!(d.taken("w", "operation").is_empty(), "the sender gets its ack, not its op");
}

#[test]
fn versions_duplicates_rights_and_sizes() {
    let mut d = One::new(Limits { doc_log_retain: 10, doc_max_bytes: 2000, ..Limits::default() }, "");
    assert_eq!(d.submit("w", 1, json!(["x"]), "a", 1)["error"]["code"], "bad_version");
    assert_eq!(d.submit("r", 0, json!(["x"]), "a", 1)["error"]["code"], "forbidden", "read-only socket");
    assert!(d.taken("r", "operation").is_empty());
    for (op, why) in [
        (json!([2, "x"]), "past the end"),
        (json!([0]), "above 0"),
        (json!("x"), "array"),
        (json!([{"d": 1}]), "past the end"),
    ] {
        let reply = d.submit("w", 0, op, "a", 1);
        assert_eq!(reply["error"]["code"], "bad_request");
        assert!(reply["error"]["message"].as_str().unwrap().contains(why), "{reply}");
    }
    assert_eq!(d.submit("w", 0, json!(["x".repeat(2001)]), "a", 1)["error"]["code"], "too_large");
    for seq in 1..=25 {
        assert_eq!(d.submit("w", seq - 1, json!(["x"]), "a", seq)["ok"], true);
    }
    assert_eq!(d.doc.log_floor(), 15);
    // A resubmission is acknowledged before any version check, even from before the log.
    assert_eq!(d.submit("w", 3, json!(["x"]), "a", 25)["d"], json!({ "v": 24, "src": "a", "seq": 25 }));
    assert_eq!(d.doc.version(), 25, "not applied twice");
    assert_eq!(d.submit("w", 3, json!(["x"]), "a", 24)["error"]["code"], "conflict");
    assert_eq!(d.submit("w", 14, json!(["x"]), "b", 1)["error"]["code"], "snapshot_required");
    assert_eq!(d.submit("w", 15, json!(["x"]), "b", 1)["ok"], true);
}

#[test]
fn snapshots_compaction_and_restore() {
    let retain = 150;
    let mut d = One::new(Limits { doc_log_retain: retain, ..Limits::default() }, "");
    let mut rng = Rng(9);
    for seq in 1..=350 {
        let op = random_op(&mut rng, d.doc.text());
        assert_eq!(d.submit("w", seq - 1, op.to_json(), "a", seq)["ok"], true);
    }
    assert_eq!(d.store.snapshot.0, 3 * SNAPSHOT_EVERY);
    assert_eq!(d.store.ops.keys().next().copied(), Some(3 * SNAPSHOT_EVERY - retain), "older ops deleted");
    let rebuilt =
        Doc::restore(DocId::parse("spec").unwrap(), d.store.stored(), config(Limits::default())).unwrap();
    assert_eq!((rebuilt.text(), rebuilt.version()), (d.doc.text(), 350));
    let mut broken = d.store.stored();
    broken.ops.remove(3);
    assert!(Doc::restore(DocId::parse("spec").unwrap(), broken, config(Limits::default())).is_err());
}

#[test]
fn cursors_are_moved_by_later_ops_and_shown_to_the_others() {
    let mut d = One::new(Limits::default(), "hello world");
    d.submit("w", 0, json!([5, ","]), "a", 1);
    // The reader's cursor refers to version 0, after "hello": the comma inserted there goes after
    // it, so it stays at 5.
    let reply = d.send("r", json!({ "t": "cursor:update", "ref": 1, "d": { "pos": 5, "v": 0 } }));
    assert_eq!(reply["d"]["pos"], 5);
    let seen = d.taken("w", "cursor:update");
    assert_eq!(seen[0]["d"], json!({ "user": "user-r", "conn": "r", "pos": 5, "v": 1 }));
    let sel =
        d.send("w", json!({ "t": "cursor:update", "ref": 2, "d": { "anchor": 7, "head": 99, "v": 1 } }));
    assert_eq!(
        (sel["d"]["anchor"].clone(), sel["d"]["head"].clone()),
        (json!(7), json!(12)),
        "clamped to the text"
    );
    d.submit("w", 1, json!(["<<"]), "a", 2);
    d.connect("w2", true, None);
    let snapshot = d.taken("w2", "doc:snapshot").remove(0);
    assert_eq!(snapshot["d"]["v"], 2);
    assert_eq!(snapshot["d"]["text"], "<<hello, world");
    let cursors = snapshot["d"]["cursors"].as_array().unwrap().clone();
    assert!(cursors.contains(&json!({ "user": "user-r", "conn": "r", "pos": 7, "v": 2 })), "{cursors:?}");
    let bad = d.send("r", json!({ "t": "cursor:update", "ref": 3, "d": { "pos": 1 } }));
    assert_eq!(bad["error"]["code"], "bad_request");
    let gone = d.doc.handle_close(&conn("r"));
    d.apply(gone);
    assert_eq!(d.taken("w", "cursor:update")[0]["d"]["pos"], Value::Null);
}

#[test]
fn a_reconnect_with_v_replays_what_it_missed() {
    let mut d = One::new(Limits::default(), "");
    d.submit("w", 0, json!(["a"]), "a", 1);
    d.submit("w", 1, json!(["b"]), "a", 2);
    d.frames.clear();
    d.connect("w2", true, Some(1));
    let replay = d.taken("w2", "operation");
    assert_eq!(replay.iter().map(|f| f["d"]["v"].clone()).collect::<Vec<_>>(), [json!(1)]);
    assert_eq!(d.taken("w2", "doc:snapshot")[0]["d"]["resumed"], true);
    d.connect("w2", true, Some(7));
    assert_eq!(d.taken("w2", "doc:snapshot")[0]["d"]["resumed"], false);
}
