//! The document sequencer: convergence of five clients running the standard OT client over
//! channels with random delays, exactly-once application of resubmitted ops, and every rule of
//! `op:submit` and `cursor:update`.

mod support;

use serde_json::{json, Value};
use support::docs::{doc_config, random_op, DocSim, DocStore};
use support::shell::{self, Shell};
use support::{config, Rng};
use switchboard::core::config::Limits;
use switchboard::core::doc::{
    ops_page, Doc, DocCall, DocConnInfo, DocEffect, DocWrite, ResumeFrom, MAX_OP_COMPONENTS, SNAPSHOT_EVERY,
};
use switchboard::core::ids::{ConnId, DocId, UserId};
use switchboard::core::object::{Effect, Object};
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
        let (rebuilt, repaired) =
            Doc::restore(DocId::parse("d").unwrap(), sim.store.stored(), doc_config(), "e".into());
        assert!(repaired.is_empty(), "seed {seed}: {repaired:?}");
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
        let (doc, effects) =
            Doc::restore(DocId::parse("spec").unwrap(), store.stored(), config(limits), "e1".into());
        let mut store = store;
        store.restored(&effects);
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
        let resume = resume.map(|v| ResumeFrom { v, epoch: None });
        let effects = self.doc.handle_connect(info, resume, Timestamp(0), &());
        self.apply(effects);
    }

    fn apply(&mut self, effects: Vec<DocEffect>) {
        shell::apply(self, effects);
    }

    fn send(&mut self, c: &str, frame: Value) -> Value {
        let text = frame.to_string();
        self.now += 100;
        let effects = self.doc.handle_frame(&conn(c), Incoming::Text(&text), Timestamp(self.now), &());
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

impl Shell<Doc> for One {
    fn write(&mut self, write: DocWrite) {
        self.store.write(&write);
    }

    fn send(&mut self, to: ConnId, frame: String) {
        self.frames.push((to, serde_json::from_str(&frame).unwrap()));
    }

    fn broadcast(&mut self, except: Option<ConnId>, frame: String) {
        for c in ["w", "r", "w2"].map(conn) {
            if Some(&c) != except.as_ref() {
                self.frames.push((c, serde_json::from_str(&frame).unwrap()));
            }
        }
    }

    fn close(&mut self, _conn: ConnId, _code: u16) {}

    fn update_conn(&mut self, _info: DocConnInfo) {}

    /// `ops:get` pages are checked where a test asks for them (the effect itself).
    fn call(&mut self, _call: DocCall) {}
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
fn a_read_only_socket_is_refused_op_submit_before_its_payload_is_read() {
    let mut d = One::new(Limits::default(), "");
    let frame = |d: Value| json!({ "t": "op:submit", "ref": "s", "d": d });
    assert_eq!(d.send("r", frame(json!({"v": "x"})))["error"]["code"], "forbidden");
    let bad = d.send("w", frame(json!({"v": "x"})));
    assert_eq!(bad["error"]["code"], "bad_request");
    assert!(
        bad["error"]["message"].as_str().unwrap().starts_with("bad op:submit payload: invalid type"),
        "{bad}"
    );
    let unknown = d.send("r", json!({ "t": "op:sumbit", "ref": "s", "d": {} }));
    assert_eq!(unknown["error"]["code"], "unknown_event");
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
    let (rebuilt, _) =
        Doc::restore(DocId::parse("spec").unwrap(), d.store.stored(), config(Limits::default()), "e".into());
    assert_eq!((rebuilt.text(), rebuilt.version()), (d.doc.text(), 350));
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
    let gone = d.doc.handle_close(&conn("r"), Timestamp(0));
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

// Hardening (issue 10): each test is named after a behaviour that failed on 5a06e97.

#[test]
fn an_op_whose_lengths_wrap_at_32_bits_is_refused_and_the_document_still_loads() {
    let mut d = One::new(Limits::default(), "");
    // On wasm32 the two skips summed to 2^32 and wrapped to 0: accepted as ["x"] and stored.
    let wrapped = d.submit("w", 0, json!([4294967295u64, 1, "x"]), "a", 1);
    assert_eq!(wrapped["error"]["code"], "bad_request", "{wrapped}");
    for past_end in
        [json!([{"d": 4294967296u64}]), json!([9007199254740991u64, "x"]), json!([2147483648u64, "x"])]
    {
        assert_eq!(d.submit("w", 0, past_end.clone(), "a", 1)["error"]["code"], "bad_request", "{past_end}");
    }
    assert_eq!(d.submit("w", 0, json!([9007199254740992u64, "x"]), "a", 1)["error"]["code"], "bad_request");
    assert_eq!((d.doc.text(), d.doc.version()), ("", 0));
    assert!(d.store.ops.is_empty(), "nothing stored");
    assert_eq!(d.submit("w", 0, json!(["ok"]), "a", 1)["ok"], true);
    let (rebuilt, effects) =
        Doc::restore(DocId::parse("spec").unwrap(), d.store.stored(), config(Limits::default()), "e2".into());
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(rebuilt.text(), "ok");
}

#[test]
fn an_op_with_more_components_than_the_limit_is_refused() {
    let mut d = One::new(Limits::default(), "");
    let many: Vec<Value> =
        (0..=MAX_OP_COMPONENTS).map(|i| if i % 2 == 0 { json!("a") } else { json!({"d": 1}) }).collect();
    assert_eq!(d.submit("w", 0, Value::Array(many), "a", 1)["error"]["code"], "too_large");
    assert_eq!(d.doc.version(), 0);
}

#[test]
fn a_stored_op_that_does_not_load_is_cut_and_the_document_goes_on_in_a_new_epoch() {
    let mut d = One::new(Limits::default(), "");
    for seq in 1..=5 {
        assert_eq!(d.submit("w", seq - 1, json!(["x"]), "a", seq)["ok"], true);
    }
    let epoch = d.store.epoch.clone().unwrap();
    // What 5a06e97 could store: an op that wrapped, at version 3, and ops after it.
    let mut stored = d.store.stored();
    stored.ops[3].op = json!([4294967296u64, "x"]).to_string();
    let (mut doc, effects) =
        Doc::restore(DocId::parse("spec").unwrap(), stored, config(Limits::default()), "e2".into());
    let Some(Effect::Write(DocWrite::Repair { repair, epoch: new_epoch, text })) = effects.first() else {
        panic!("{effects:?}")
    };
    assert_eq!((repair.dropped_from, repair.continued_at), (3, 6), "no version a client holds is current");
    assert_eq!((text.as_str(), new_epoch.as_str()), ("xxx", "e2"));
    assert_eq!((doc.text(), doc.version(), doc.epoch()), ("xxx", 6, "e2"));
    assert!(doc.repair().is_some(), "reported");
    // Readable and writable; a resume from the old epoch is refused, whatever its version.
    let info = |c: &str| DocConnInfo {
        conn: conn(c),
        user: UserId::parse("user-w").unwrap(),
        expires: Timestamp(u64::MAX / 4),
        can_write: true,
    };
    let resumed = |effects: Vec<DocEffect>| {
        effects.iter().find_map(|e| match e {
            DocEffect::Send { frame, .. } if frame.contains("doc:snapshot") => {
                serde_json::from_str::<Value>(frame).ok().map(|f| f["d"]["resumed"].clone())
            }
            _ => None,
        })
    };
    let old = doc.handle_connect(info("w"), Some(ResumeFrom { v: 5, epoch: Some(epoch) }), Timestamp(0), &());
    assert_eq!(resumed(old), Some(json!(false)));
    for v in [4, 5] {
        let legacy = doc.handle_connect(info("w2"), Some(ResumeFrom { v, epoch: None }), Timestamp(0), &());
        assert_eq!(
            resumed(legacy),
            Some(json!(false)),
            "v {v}: a version from before lies before the new floor"
        );
    }
    let frame = json!({ "t": "op:submit", "ref": 1, "d": { "v": 6, "op": [3, "!"], "src": "a", "seq": 9 } })
        .to_string();
    let ok = doc.handle_frame(&conn("w"), Incoming::Text(&frame), Timestamp(1), &());
    assert!(ok.iter().any(|e| matches!(e, Effect::Write(DocWrite::AppendOp(o)) if o.v == 6)), "{ok:?}");
    assert_eq!(doc.text(), "xxx!");
}

#[test]
fn a_log_that_jumps_is_cut_at_the_gap_instead_of_refusing_every_connect() {
    let mut d = One::new(Limits::default(), "");
    for seq in 1..=4 {
        d.submit("w", seq - 1, json!(["y"]), "a", seq);
    }
    let mut stored = d.store.stored();
    stored.ops.remove(1);
    let (doc, effects) =
        Doc::restore(DocId::parse("spec").unwrap(), stored, config(Limits::default()), "e2".into());
    assert!(matches!(effects.first(), Some(Effect::Write(DocWrite::Repair { .. }))));
    assert_eq!((doc.text(), doc.version()), ("y", 5));
}

#[test]
fn sockets_that_survive_the_wake_that_repaired_a_document_are_closed_to_reload() {
    let mut d = One::new(Limits::default(), "");
    for seq in 1..=4 {
        d.submit("w", seq - 1, json!(["y"]), "a", seq);
    }
    let survivor = |c: &str| DocConnInfo {
        conn: conn(c),
        user: UserId::parse("user-w").unwrap(),
        expires: Timestamp(u64::MAX / 4),
        can_write: true,
    };
    let mut stored = d.store.stored();
    stored.ops.remove(1);
    let (mut repaired, _) =
        Doc::restore(DocId::parse("spec").unwrap(), stored, config(Limits::default()), "e2".into());
    repaired.restore_conn(survivor("w"), Timestamp(0));
    let closes = repaired.restored(Timestamp(0));
    assert!(
        matches!(closes.as_slice(), [Effect::Close { conn: c, code: 1011, .. }] if *c == conn("w")),
        "its text is the one before the repair: {closes:?}"
    );
    assert_eq!(repaired.connection_count(), 0);
    // A wake that repairs nothing keeps its survivors.
    let (mut intact, _) =
        Doc::restore(DocId::parse("spec").unwrap(), d.store.stored(), config(Limits::default()), "e3".into());
    intact.restore_conn(survivor("w"), Timestamp(0));
    assert!(intact.restored(Timestamp(0)).is_empty());
    assert_eq!(intact.connection_count(), 1);
}

#[test]
fn another_user_reusing_alices_src_cannot_make_her_next_op_a_duplicate() {
    let mut d = One::new(Limits::default(), "");
    d.connect("w2", true, None);
    assert_eq!(d.submit("w", 0, json!(["a"]), "alice-tab", 1)["ok"], true);
    // user-w2 claims Alice's src with a higher seq: on 5a06e97 her seq 2 was then "stale".
    assert_eq!(d.submit("w2", 1, json!(["m"]), "alice-tab", 50)["ok"], true);
    let reply = d.submit("w", 1, json!(["b"]), "alice-tab", 2);
    assert_eq!(reply["d"]["v"], 2, "applied, not answered as a duplicate: {reply}");
    assert_eq!(d.doc.text(), "bma");
    assert_eq!(
        d.submit("w", 1, json!(["b"]), "alice-tab", 2)["d"]["v"],
        2,
        "her own resubmission still dedupes"
    );
    assert_eq!(d.doc.version(), 3);
}

#[test]
fn a_seq_past_2_53_is_refused_and_the_document_keeps_answering() {
    let mut d = One::new(Limits::default(), "");
    assert_eq!(d.submit("w", 0, json!(["x"]), "a", 1u64 << 60)["error"]["code"], "bad_request");
    assert!(d.store.sources.is_empty());
    assert_eq!(d.submit("w", 0, json!(["x"]), "a", (1u64 << 53) - 1)["ok"], true);
}

#[test]
fn a_far_out_cursor_is_clamped_before_it_is_moved() {
    let mut d = One::new(Limits::default(), "hello");
    d.submit("w", 0, json!([5, "!"]), "a", 1);
    let reply = d.send("r", json!({ "t": "cursor:update", "ref": 1, "d": { "pos": 4294967295u64, "v": 0 } }));
    // Clamped to the end of "hello" at version 0, then moved: the insert at the end goes after it.
    assert_eq!(reply["d"]["pos"], 5, "{reply}");
    let huge = d.send("r", json!({ "t": "cursor:update", "ref": 2, "d": { "anchor": 0, "head": 18446744073709551615u64, "v": 1 } }));
    assert_eq!(huge["d"]["head"], 6);
}

#[test]
fn resumes_are_bounded_by_bytes_and_by_epoch() {
    let limits = Limits { recovery_max_bytes: 16 * 1024, ..Limits::default() };
    let mut d = One::new(limits, "");
    let big = "z".repeat(3000);
    for seq in 1..=4 {
        assert_eq!(d.submit("w", seq - 1, json!([big]), "a", seq)["ok"], true);
    }
    d.frames.clear();
    d.connect("w2", true, Some(0));
    assert_eq!(d.taken("w2", "operation").len(), 4, "12 KB: replayed");
    assert_eq!(d.taken("w2", "doc:snapshot")[0]["d"]["resumed"], true);
    for seq in 5..=8 {
        d.submit("w", seq - 1, json!([big]), "a", seq);
    }
    d.frames.clear();
    d.connect("w2", true, Some(2));
    assert!(d.taken("w2", "operation").is_empty(), "18 KB is over the limit: nothing replayed");
    assert_eq!(d.taken("w2", "doc:snapshot")[0]["d"]["resumed"], false);
    let epoch = d.doc.epoch().to_owned();
    let info = DocConnInfo {
        conn: conn("w2"),
        user: UserId::parse("user-w2").unwrap(),
        expires: Timestamp(u64::MAX / 4),
        can_write: true,
    };
    let other = d.doc.handle_connect(
        info.clone(),
        Some(ResumeFrom { v: 7, epoch: Some("another".into()) }),
        Timestamp(0),
        &(),
    );
    assert!(!other
        .iter()
        .any(|e| matches!(e, DocEffect::Send { frame, .. } if frame.contains("\"operation\""))));
    let same = d.doc.handle_connect(info, Some(ResumeFrom { v: 7, epoch: Some(epoch) }), Timestamp(0), &());
    assert_eq!(
        same.iter()
            .filter(|e| matches!(e, DocEffect::Send { frame, .. } if frame.contains("\"operation\"")))
            .count(),
        1
    );
}

#[test]
fn the_live_log_and_what_a_rebuild_reads_are_bounded_by_bytes() {
    let limits = Limits { recovery_max_bytes: 16 * 1024, ..Limits::default() };
    let mut d = One::new(limits.clone(), "");
    let big = "q".repeat(2000);
    for seq in 1..=30 {
        assert_eq!(d.submit("w", seq - 1, json!([big]), "a", seq)["ok"], true);
    }
    assert!(d.doc.log_bytes() <= 16 * 1024, "{}", d.doc.log_bytes());
    assert!(d.doc.log_floor() > 0);
    // A snapshot is written by bytes long before SNAPSHOT_EVERY ops.
    assert!(d.store.snapshot.0 >= 24, "snapshot at {}", d.store.snapshot.0);
    let stored = d.store.stored();
    let bytes: usize = stored.ops.iter().map(|o| o.op.len()).sum();
    assert!(bytes <= 16 * 1024 + 2100, "a rebuild reads {bytes} bytes of ops");
    let (rebuilt, _) = Doc::restore(DocId::parse("spec").unwrap(), stored, config(limits), "e".into());
    assert_eq!((rebuilt.text(), rebuilt.version()), (d.doc.text(), 30));
}

#[test]
fn ops_get_pages_stored_ops_within_the_byte_budget() {
    let limits = Limits { recovery_max_bytes: 16 * 1024, ..Limits::default() };
    let mut d = One::new(limits, "");
    let big = "p".repeat(5000);
    for seq in 1..=6 {
        d.submit("w", seq - 1, json!([big]), "a", seq);
    }
    let frame = json!({ "t": "ops:get", "ref": 7, "d": { "from": 1 } }).to_string();
    let effects = d.doc.handle_frame(&conn("r"), Incoming::Text(&frame), Timestamp(10_000), &());
    let Some(Effect::Call(DocCall::ReadOps { reply_to, from, until, max_bytes, .. })) = effects.first()
    else {
        panic!("{effects:?}")
    };
    assert_eq!((*from, *until), (1, 6));
    // What the shell reads: the rows from `from`, cut by its byte query (here: all of them).
    let rows: Vec<_> = d.store.ops.values().filter(|o| o.v >= 1).map(|o| o.stored()).collect();
    let page: Value = serde_json::from_str(&ops_page(reply_to, *from, *until, *max_bytes, &rows)).unwrap();
    let ops = page["d"]["ops"].as_array().unwrap();
    assert_eq!(ops.len(), 4, "16 KB of 5 KB ops: the page stops once over the budget");
    assert_eq!(
        (ops[0]["v"].clone(), page["d"]["next"].clone(), page["d"]["v"].clone()),
        (json!(1), json!(5), json!(6))
    );
    let gone: Value = serde_json::from_str(&ops_page(reply_to, 0, 6, 1000, &rows)).unwrap();
    assert_eq!(gone["error"]["code"], "snapshot_required", "version 0 is no longer stored");
    let done: Value = serde_json::from_str(&ops_page(reply_to, 6, 6, 1000, &[])).unwrap();
    assert_eq!((done["d"]["ops"].clone(), done["d"]["next"].clone()), (json!([]), json!(6)));
    let no_ref = d.send("r", json!({ "t": "ops:get", "d": { "from": 1 } }));
    assert_eq!(no_ref, Value::Null, "without a ref: an error frame, no read");
}

#[test]
fn after_exp_plus_leeway_only_auth_refresh_is_heard() {
    let store = DocStore { snapshot: (0, String::new()), ..DocStore::default() };
    let (mut doc, _) =
        Doc::restore(DocId::parse("spec").unwrap(), store.stored(), config(Limits::default()), "e".into());
    let info = DocConnInfo {
        conn: conn("w"),
        user: UserId::parse("u").unwrap(),
        expires: Timestamp(10_000),
        can_write: true,
    };
    doc.handle_connect(info, None, Timestamp(0), &());
    assert_eq!(doc.poll_timeout(), Some(Timestamp(10_000)));
    let op =
        json!({ "t": "op:submit", "ref": 1, "d": { "v": 0, "op": ["x"], "src": "a", "seq": 1 } }).to_string();
    // The alarm has not run yet (it may be late): the frame itself is refused with 4001.
    let late = doc.handle_frame(&conn("w"), Incoming::Text(&op), Timestamp(10_001), &());
    assert!(matches!(late.as_slice(), [DocEffect::Close { code: 4001, .. }]), "{late:?}");
    assert_eq!(doc.version(), 0);
}

#[test]
fn a_reconnect_does_not_refill_the_users_rate_budget() {
    let mut d = One::new(Limits::default(), "");
    let spam = |d: &mut One, c: &str| {
        let frame = json!({ "t": "cursor:update", "d": { "pos": 0, "v": 0 } }).to_string();
        (0..60)
            .filter(|_| {
                let effects = d.doc.handle_frame(&conn(c), Incoming::Text(&frame), Timestamp(d.now), &());
                effects
                    .iter()
                    .any(|e| matches!(e, DocEffect::Send { frame, .. } if frame.contains("rate_limited")))
            })
            .count()
    };
    assert!(spam(&mut d, "r") > 0, "the burst is spent");
    let gone = d.doc.handle_close(&conn("r"), Timestamp(d.now));
    d.apply(gone);
    d.connect("r", false, None);
    let limited = spam(&mut d, "r");
    assert!(
        limited >= 55,
        "a new socket of the same user starts with the same empty budget ({limited} limited)"
    );
}

#[test]
fn good_frames_between_bad_ones_do_not_reset_the_strikes() {
    let mut d = One::new(Limits { max_strikes: 5, ..Limits::default() }, "");
    let closed =
        |effects: &[DocEffect]| effects.iter().any(|e| matches!(e, DocEffect::Close { code: 4002, .. }));
    let good = json!({ "t": "cursor:update", "d": { "pos": 0, "v": 0 } }).to_string();
    for n in 1..=5 {
        let bad = d.doc.handle_frame(&conn("w"), Incoming::Text("{nope"), Timestamp(n * 1000), &());
        let ok = d.doc.handle_frame(&conn("w"), Incoming::Text(&good), Timestamp(n * 1000 + 1), &());
        assert!(!closed(&ok));
        assert_eq!(
            closed(&bad),
            n == 5,
            "strike {n}: one good frame after each bad one cleared them on 5a06e97"
        );
    }
}

#[test]
fn a_race_a_good_client_can_lose_is_answered_but_is_not_a_strike() {
    let mut d = One::new(Limits { max_strikes: 3, ..Limits::default() }, "");
    d.submit("w", 0, json!(["a"]), "tab", 5);
    for n in 0..10 {
        let stale =
            json!({ "t": "op:submit", "ref": n, "d": { "v": 0, "op": ["b"], "src": "tab", "seq": 1 } })
                .to_string();
        let effects = d.doc.handle_frame(&conn("w"), Incoming::Text(&stale), Timestamp(1000 + n), &());
        assert!(effects
            .iter()
            .any(|e| matches!(e, DocEffect::Send { frame, .. } if frame.contains("conflict"))));
        assert!(
            !effects.iter().any(|e| matches!(e, DocEffect::Close { .. })),
            "conflict {n} closed the socket"
        );
    }
    // Strikes older than a minute no longer count.
    for t in [0u64, 61_000, 122_000] {
        let bad = d.doc.handle_frame(&conn("r"), Incoming::Text("{"), Timestamp(10_000 + t), &());
        assert!(!bad.iter().any(|e| matches!(e, DocEffect::Close { .. })));
    }
}

// From the adversarial review of the hardening (2026-11-28).

#[test]
fn an_op_that_grows_past_the_component_cap_when_transformed_is_refused_not_stored() {
    let mut d = One::new(Limits::default(), &"a".repeat(600));
    let mut many = Vec::new();
    for _ in 0..500 {
        many.extend([json!(1), json!("x")]);
    }
    assert_eq!(d.submit("w", 0, Value::Array(many), "a", 1)["ok"], true);
    // Based on v0, this delete becomes 1,001 components over the 500 inserts.
    let grown = d.submit("w", 0, json!([{"d": 501}]), "a", 2);
    assert_eq!(grown["error"]["code"], "snapshot_required", "{grown}");
    assert_eq!(d.doc.version(), 1);
    assert_eq!(d.submit("w", 1, json!([{"d": 1}]), "a", 2)["ok"], true, "rebased, it fits");
    let (_, effects) =
        Doc::restore(DocId::parse("spec").unwrap(), d.store.stored(), config(Limits::default()), "e2".into());
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Write(DocWrite::Repair { .. }))),
        "nothing stored is cut on load"
    );
}

#[test]
fn a_stored_op_over_the_submit_cap_still_loads() {
    let mut d = One::new(Limits::default(), "");
    d.submit("w", 0, json!(["a".repeat(800)]), "a", 1);
    let mut stored = d.store.stored();
    // What an older release (no cap) or a transform could have stored: 1,600 components.
    let op: Vec<Value> = (0..1600).map(|i| if i % 2 == 0 { json!(1) } else { json!("z") }).collect();
    stored.ops.push(switchboard::core::doc::StoredOp {
        v: 1,
        op: Value::Array(op).to_string(),
        src: "a".into(),
        seq: 2,
    });
    let (doc, effects) =
        Doc::restore(DocId::parse("spec").unwrap(), stored, config(Limits::default()), "e2".into());
    assert!(effects.iter().all(|e| !matches!(e, Effect::Write(DocWrite::Repair { .. }))), "{effects:?}");
    assert_eq!((doc.version(), doc.text().len()), (2, 1600));
}

#[test]
fn after_a_wake_the_live_log_reaches_back_before_the_snapshot() {
    let mut d = One::new(Limits::default(), "");
    for seq in 1..=(SNAPSHOT_EVERY + 1) {
        d.submit("w", seq - 1, json!(["y"]), "a", seq);
    }
    assert_eq!(d.store.snapshot.0, SNAPSHOT_EVERY);
    let mut stored = d.store.stored();
    // The shell reads the ops before the snapshot too (bounded by bytes and DOC_LOG_RETAIN).
    stored.ops = d.store.ops.values().map(|o| o.stored()).collect();
    let (mut doc, _) =
        Doc::restore(DocId::parse("spec").unwrap(), stored, config(Limits::default()), "e".into());
    assert_eq!(doc.log_floor(), 0, "on 5a06e97's successor before this fix: 100");
    let info = DocConnInfo {
        conn: conn("w"),
        user: UserId::parse("user-w").unwrap(),
        expires: Timestamp(u64::MAX / 4),
        can_write: true,
    };
    doc.handle_connect(info, None, Timestamp(0), &());
    let late = json!({ "t": "op:submit", "ref": 1, "d": { "v": 99, "op": ["late"], "src": "b", "seq": 1 } })
        .to_string();
    let effects = doc.handle_frame(&conn("w"), Incoming::Text(&late), Timestamp(1), &());
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Write(DocWrite::AppendOp(o)) if o.v == 101)),
        "{effects:?}"
    );
}

#[test]
fn a_tab_refused_for_the_users_shared_budget_is_not_struck_when_it_waits() {
    let mut d = One::new(Limits { max_strikes: 3, ..Limits::default() }, "");
    let frame = json!({ "t": "cursor:update", "d": { "pos": 0, "v": 0 } }).to_string();
    let mut closed = false;
    for _ in 0..60 {
        let effects = d.doc.handle_frame(&conn("w"), Incoming::Text(&frame), Timestamp(10_000), &());
        closed |= effects.iter().any(|e| matches!(e, DocEffect::Close { .. }));
    }
    assert!(closed, "a socket that ignores retryAfterMs is still closed");
    let mut polite = One::new(Limits { max_strikes: 3, ..Limits::default() }, "");
    let mut t = 10_000u64;
    let mut closed = false;
    for _ in 0..300 {
        t += 40; // 25/s against 20/s: refused now and then, and it waits as asked
        let effects = polite.doc.handle_frame(&conn("w"), Incoming::Text(&frame), Timestamp(t), &());
        if let Some(DocEffect::Send { frame: f, .. }) = effects.first() {
            if let Ok(v) = serde_json::from_str::<Value>(f) {
                if let Some(ms) = v["error"]["retryAfterMs"].as_u64() {
                    t += ms;
                }
            }
        }
        closed |= effects.iter().any(|e| matches!(e, DocEffect::Close { .. }));
    }
    assert!(!closed, "a client that honours retryAfterMs is never closed");
}

#[test]
fn the_snapshot_and_stats_report_the_text_and_the_log() {
    let mut sim = DocSim::new(2, 7, "héllo");
    for i in 0..2 {
        sim.edit(i);
    }
    sim.settle();
    let doc = &sim.doc;
    let text = doc.text().to_owned();
    assert_eq!(doc.snapshot(), json!({ "doc": "d", "v": doc.version(), "epoch": "e1", "text": text }));
    let stats = Value::Object(doc.stats());
    assert_eq!(stats["chars"], json!(text.chars().count()));
    assert_eq!((stats["v"].clone(), stats["connections"].clone()), (json!(doc.version()), json!(2)));
    assert_eq!((stats["logFloor"].clone(), stats["sources"].clone()), (json!(doc.log_floor()), json!(2)));
    assert_eq!(stats["logBytes"], json!(doc.log_bytes()));
}

#[test]
fn an_admitted_socket_carries_its_rights_and_where_it_resumes() {
    use switchboard::core::admission::Admission;
    use switchboard::core::error::ErrorCode;
    let d = One::new(Limits { max_sockets_per_user: 1, ..Limits::default() }, "hi");
    let ann = UserId::parse("ann").unwrap();
    let admission = Admission {
        user: Some(ann.clone()),
        expires: Some(Timestamp(9)),
        can_write: true,
        since: Some(3),
        epoch: Some("e1".into()),
        ..Admission::default()
    };
    let (info, resume) = d.doc.admit(conn("c9"), &admission).unwrap();
    assert_eq!(info, DocConnInfo { conn: conn("c9"), user: ann, expires: Timestamp(9), can_write: true });
    assert_eq!(resume, Some(ResumeFrom { v: 3, epoch: Some("e1".into()) }));
    let plain = Admission { since: None, epoch: None, ..admission.clone() };
    assert_eq!(d.doc.admit(conn("c9"), &plain).unwrap().1, None);
    // `user-w` already holds its one socket.
    let writer = Admission { user: Some(UserId::parse("user-w").unwrap()), ..admission };
    assert_eq!(d.doc.admit(conn("c9"), &writer).unwrap_err().code, ErrorCode::TooManyConnections);
    assert_eq!(d.doc.admit(conn("c9"), &Admission::default()).unwrap_err().code, ErrorCode::Internal);
}

#[test]
fn a_read_of_older_ops_owes_its_socket_a_reply() {
    let call = DocCall::ReadOps { to: conn("c1"), reply_to: json!("r"), from: 0, until: 5, max_bytes: 1024 };
    assert_eq!(Doc::owed(&call), Some(&conn("c1")));
}
