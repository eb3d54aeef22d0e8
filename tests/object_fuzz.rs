//! Bad input never hurts the user and document objects either: random and mutated frames from
//! several sockets on a moving clock, mixed with notify calls and edits. Nothing panics, every
//! owed `ref` gets exactly one reply, the unread count matches the stored rows, and the stored
//! document rebuilds to the live one.

mod support;

use serde_json::{json, Value};
use support::docs::{doc_config, random_op, DocStore};
use support::fuzz::{self, value};
use support::shell::{self, Shell};
use support::users::Users;
use support::Rng;
use switchboard::core::doc::{Doc, DocCall, DocConnInfo, DocWrite};
use switchboard::core::ids::{ConnId, DocId, UserId};
use switchboard::core::object::Object;
use switchboard::core::protocol::Incoming;
use switchboard::core::time::Timestamp;

fn replies_to(frames: &[Value], reference: &str) -> usize {
    frames.iter().filter(|f| f["t"] == "reply" && f["ref"] == json!(reference)).count()
}

fn user_plausible(rng: &mut Rng, event: &str, _n: u64) -> Value {
    match event {
        "presence:set" => {
            json!({ "status": rng.pick(&["online", "away", "busy", "offline", "asleep"]), "activity": value(rng, 2) })
        }
        "presence:subscribe" | "presence:unsubscribe" => {
            json!({ "users": (0..rng.below(4)).map(|_| *rng.pick(&["bob", "carol", "alice", "bad id"])).collect::<Vec<_>>() })
        }
        "notification:list" => match rng.below(4) {
            0 => json!({ "before": fuzz::edge_number(rng), "limit": fuzz::edge_number(rng) }),
            _ => json!({ "before": rng.below(20), "limit": rng.below(5) }),
        },
        "notification:read" => match rng.below(3) {
            0 => json!({ "all": true }),
            1 => json!({ "ids": [fuzz::edge_number(rng), rng.below(20)] }),
            _ => json!({ "ids": (0..rng.below(4)).map(|_| rng.below(20)).collect::<Vec<_>>() }),
        },
        _ => json!({}),
    }
}

#[test]
fn random_frames_never_hurt_the_user_object() {
    let events = [
        "presence:set",
        "presence:active",
        "presence:subscribe",
        "presence:unsubscribe",
        "notification:list",
        "notification:read",
        "auth:refresh",
        "message:send",
        "",
    ];
    let mut replied = 0;
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut net = Users::new();
        let mut conns = vec![net.connect("alice"), net.connect("alice"), net.connect("bob")];
        for n in 0..400u64 {
            net.advance(rng.below(60_000) as u64);
            if rng.below(8) == 0 {
                let user = *rng.pick(&["alice", "bob"]);
                let key = format!("k{}", rng.below(10));
                let _ = net.notify(user, json!({ "type": "t" }), Some(&key));
            }
            if rng.below(40) == 0 {
                let gone = conns.swap_remove(rng.below(conns.len()));
                if !net.closed.contains_key(&gone) {
                    net.disconnect(&gone);
                }
                let user = *rng.pick(&["alice", "bob", "carol"]);
                conns.push(net.connect(user));
            }
            let conn = rng.pick(&conns).clone();
            if net.closed.contains_key(&conn) {
                continue;
            }
            let (text, owed) = fuzz::frame(&mut rng, n, &events, user_plausible);
            net.send_raw(&conn, &text);
            let frames = net.take(&conn, "reply");
            if let (Some(reference), false) = (owed, net.closed.contains_key(&conn)) {
                assert_eq!(replies_to(&frames, &reference), 1, "seed {seed} frame {n}: {text} → {frames:?}");
                replied += 1;
            }
        }
        for user in ["alice", "bob"] {
            let id = UserId::parse(user).unwrap();
            let counts = net.stores.get(&id).map(|s| s.inbox.counts()).unwrap_or_default();
            assert_eq!(
                net.user(&id).unread(),
                counts.unread,
                "seed {seed}: {user}'s unread matches the store"
            );
        }
    }
    assert!(replied > 2000, "checked {replied} replies");
}

/// Requests for a document at `version` with `text`: mostly fitting ops based on a recent
/// version, some stale or ahead, some garbage.
fn doc_plausible(text: &str, version: u64) -> impl Fn(&mut Rng, &str, u64) -> Value + '_ {
    move |rng: &mut Rng, event: &str, n: u64| match event {
        "op:submit" => json!({
            "v": (version + 1).saturating_sub(rng.below(4) as u64),
            "op": match rng.below(6) {
                0 => value(rng, 1),
                // Lengths at the edges, merged with a neighbour: what wrapped at 2^32 on wasm32.
                1 => json!([fuzz::edge_number(rng), fuzz::edge_number(rng), "x", {"d": fuzz::edge_number(rng)}]),
                _ => random_op(rng, text).to_json(),
            },
            "src": format!("s{}", rng.below(3)),
            "seq": if rng.below(8) == 0 { fuzz::edge_number(rng) } else { json!(n / 2 + rng.below(3) as u64) },
        }),
        "cursor:update" => {
            let v = version.saturating_sub(rng.below(3) as u64);
            let at =
                |rng: &mut Rng| if rng.below(4) == 0 { fuzz::edge_number(rng) } else { json!(rng.below(30)) };
            match rng.below(2) {
                0 => json!({ "pos": at(rng), "v": v }),
                _ => json!({ "anchor": at(rng), "head": at(rng), "v": v }),
            }
        }
        "ops:get" => {
            json!({ "from": if rng.below(3) == 0 { fuzz::edge_number(rng) } else { json!(version.saturating_sub(rng.below(5) as u64)) } })
        }
        _ => json!({}),
    }
}

#[test]
fn random_frames_never_hurt_the_document() {
    let events = ["op:submit", "op:submit", "cursor:update", "ops:get", "auth:refresh", "message:send", ""];
    let (mut replied, mut applied) = (0, 0);
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut store = DocStore { snapshot: (0, "hello 😀".into()), ..DocStore::default() };
        let (mut doc, first) =
            Doc::restore(DocId::parse("fuzz").unwrap(), store.stored(), doc_config(), "e".into());
        store.restored(&first);
        let mut conns = Vec::new();
        let mut next = 0;
        let mut connect = |doc: &mut Doc, store: &mut DocStore, conns: &mut Vec<ConnId>| {
            let conn = ConnId::parse(&format!("c{next}")).unwrap();
            let info = DocConnInfo {
                conn: conn.clone(),
                user: UserId::parse(&format!("u{}", next % 3)).unwrap(),
                expires: Timestamp(u64::MAX / 4),
                can_write: next % 3 != 2,
            };
            next += 1;
            let effects = doc.handle_connect(info, None, Timestamp(0), &());
            shell::apply(&mut Seen::new(store, &conn), effects);
            conns.push(conn);
        };
        for _ in 0..3 {
            connect(&mut doc, &mut store, &mut conns);
        }
        let mut now = 0;
        for n in 0..600u64 {
            now += rng.below(200) as u64;
            let at = rng.below(conns.len());
            let conn = conns[at].clone();
            let text_now = doc.text().to_owned();
            let (text, owed) = fuzz::frame(&mut rng, n, &events, doc_plausible(&text_now, doc.version()));
            let effects = doc.handle_frame(&conn, Incoming::Text(&text), Timestamp(now), &());
            let mut seen = Seen::new(&mut store, &conn);
            shell::apply(&mut seen, effects);
            let Seen { replies, closed, applied: added, .. } = seen;
            applied += added;
            if let (Some(reference), false) = (owed, closed) {
                assert_eq!(
                    replies_to(&replies, &reference),
                    1,
                    "seed {seed} frame {n}: {text} → {replies:?}"
                );
                replied += 1;
            }
            if closed {
                // Closed for abuse (4002): the client reconnects.
                let effects = doc.handle_close(&conn, Timestamp(now));
                shell::apply(&mut Seen::new(&mut store, &conn), effects);
                conns.swap_remove(at);
                connect(&mut doc, &mut store, &mut conns);
            }
        }
        let (rebuilt, repaired) =
            Doc::restore(DocId::parse("fuzz").unwrap(), store.stored(), doc_config(), "e".into());
        assert!(repaired.is_empty(), "seed {seed}: the stored document loads without repair");
        assert_eq!((rebuilt.text(), rebuilt.version()), (doc.text(), doc.version()), "seed {seed}");
    }
    assert!(replied > 2000 && applied > 300, "checked {replied} replies, {applied} ops applied");
    eprintln!("document fuzz: {replied} replies checked, {applied} ops applied");
}

/// The fuzzed document's shell: stores writes, keeps what reached the socket under test.
struct Seen<'a> {
    store: &'a mut DocStore,
    conn: &'a ConnId,
    replies: Vec<Value>,
    closed: bool,
    applied: u64,
}

impl<'a> Seen<'a> {
    fn new(store: &'a mut DocStore, conn: &'a ConnId) -> Seen<'a> {
        Seen { store, conn, replies: Vec::new(), closed: false, applied: 0 }
    }
}

impl Shell<Doc> for Seen<'_> {
    fn write(&mut self, write: DocWrite) {
        if let DocWrite::AppendOp(_) = write {
            self.applied += 1;
        }
        self.store.write(&write);
    }

    fn send(&mut self, to: ConnId, frame: String) {
        if to == *self.conn {
            self.replies.push(serde_json::from_str(&frame).unwrap());
        }
    }

    fn broadcast(&mut self, _except: Option<ConnId>, _frame: String) {}

    fn close(&mut self, _conn: ConnId, _code: u16) {
        self.closed = true;
    }

    fn update_conn(&mut self, _info: DocConnInfo) {}

    fn call(&mut self, call: DocCall) {
        let (to, page) = self.store.read(&call);
        self.send(to, page);
    }
}

/// Event streams opening, dropping and expiring among sockets, with the fallback's HTTP writes
/// carrying random bodies: nothing panics, the object counts exactly the streams the shell
/// holds, every stream starts with `user:state`, and a user left without any device ends up
/// `offline` after the grace period.
#[test]
fn streams_and_http_writes_never_hurt_the_user_object() {
    use switchboard::core::user::StatusRequest;
    let mut opened = 0;
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut net = Users::new();
        let mut conns = vec![net.connect("bob")];
        let mut streams: Vec<ConnId> = Vec::new();
        for n in 0..300u64 {
            net.advance(rng.below(20_000) as u64);
            let user = *rng.pick(&["alice", "bob"]);
            match rng.below(10) {
                0 | 1 => {
                    let ttl = if rng.below(3) == 0 { rng.below(30_000) as u64 } else { 3_600_000 };
                    if let Ok(stream) = net.open_stream_with(user, support::users::open_policy(), ttl) {
                        assert_eq!(net.streams[&stream][0].0, "user:state", "seed {seed} step {n}");
                        streams.push(stream);
                        opened += 1;
                    }
                }
                2 if !streams.is_empty() => {
                    let stream = streams.swap_remove(rng.below(streams.len()));
                    if !net.ended.contains_key(&stream) {
                        net.drop_stream(&stream);
                    }
                }
                3 => {
                    let body = json!({ "status": rng.pick(&["online", "away", "busy", "offline", "asleep"]), "activity": value(&mut rng, 2) });
                    let _ = StatusRequest::parse(&body.to_string()).and_then(|_| net.http_status(user, body));
                }
                4 => {
                    let _ = net.http_active(user);
                }
                5 => {
                    let list: Vec<&str> =
                        (0..rng.below(5)).map(|_| *rng.pick(&["alice", "bob", "carol"])).collect();
                    let _ = net.http_subscribe(user, &list);
                }
                6 => {
                    let list: Vec<&str> =
                        (0..rng.below(3)).map(|_| *rng.pick(&["alice", "bob", "carol"])).collect();
                    let _ = net.http_unsubscribe(user, &list);
                }
                7 => {
                    let _ = net.notify(user, json!({ "type": "t" }), None);
                }
                8 if rng.below(4) == 0 && !conns.is_empty() => {
                    let gone = conns.swap_remove(rng.below(conns.len()));
                    if !net.closed.contains_key(&gone) {
                        net.disconnect(&gone);
                    }
                    if net.user(&UserId::parse(user).unwrap()).check_capacity().is_ok() {
                        conns.push(net.connect(user));
                    }
                }
                _ => {}
            }
            for name in ["alice", "bob"] {
                let id = UserId::parse(name).unwrap();
                let held =
                    net.stream_owner.iter().filter(|(s, u)| **u == id && !net.ended.contains_key(*s)).count();
                assert_eq!(net.user(&id).stream_count(), held, "seed {seed} step {n}: {name}'s streams");
            }
        }
        // Everyone's devices go; after the grace period nobody shows present.
        for stream in streams {
            if !net.ended.contains_key(&stream) {
                net.drop_stream(&stream);
            }
        }
        for conn in conns {
            if !net.closed.contains_key(&conn) {
                net.disconnect(&conn);
            }
        }
        net.advance(support::users::TIMES.grace_ms);
        for name in ["alice", "bob"] {
            let status = net.user(&UserId::parse(name).unwrap()).status().status;
            assert_eq!(status, switchboard::core::presence::Status::Offline, "seed {seed}: {name}");
        }
    }
    assert!(opened > 500, "opened {opened} streams");
}
