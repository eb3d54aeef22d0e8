//! Bad input never hurts any object: rooms, users and documents run through one driver over
//! the object contract ([`support::solo`]). And the user and document objects in more depth: random and mutated frames from
//! several sockets on a moving clock, mixed with notify calls and edits. Nothing panics, every
//! owed `ref` gets exactly one reply, the unread count matches the stored rows, and the stored
//! document rebuilds to the live one.

mod support;

use serde_json::{json, Value};
use support::docs::{doc_config, random_op, DocStore};
use support::fuzz::{self, value};
use support::shell::{self, Shell};
use support::solo::{Solo, Storage};
use support::users::Users;
use support::Rng;
use switchboard::core::doc::{Doc, DocCall, DocConnInfo, DocWrite, ResumeFrom};
use switchboard::core::ids::{ConnId, DocId, RoomId, UserId};
use switchboard::core::object::Object;
use switchboard::core::protocol::Incoming;
use switchboard::core::room::log::LogHead;
use switchboard::core::room::{ConnInfo, Resume, Room};
use switchboard::core::time::Timestamp;
use switchboard::core::user::watch::WatchPolicy;
use switchboard::core::user::{StoredUser, User, UserConnInfo};

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
                    let _ = net.http_status(user, body);
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

/// One kind of object under the common fuzzer: how to make it alone, what a socket carries, what
/// it is sent, and what must hold after a run.
trait Fuzzed: Object + Sized {
    type Store: Storage<Self>;
    const EVENTS: &'static [&'static str];
    fn solo() -> Solo<Self, Self::Store>;
    /// The `n`-th socket's attachment and connect input; every third cannot write.
    fn socket(n: u32, now: Timestamp) -> (Self::Info, Self::Connect);
    fn plausible(solo: &Solo<Self, Self::Store>, rng: &mut Rng, event: &str, n: u64) -> Value;
    /// What must hold after a run (storage agrees with the live object).
    fn check(solo: &mut Solo<Self, Self::Store>, seed: u64);
}

/// Random and mutated frames from several sockets on a moving clock (alarms firing, tokens
/// expiring), a socket now and then leaving and coming back: nothing panics and every owed
/// `ref` gets exactly one reply. The same driver for every kind of object.
fn fuzz<O: Fuzzed>() -> usize {
    let mut replied = 0;
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut solo = O::solo();
        let mut next = 0u32;
        let mut connect = |solo: &mut Solo<O, O::Store>| {
            next += 1;
            let (info, with) = O::socket(next, solo.now);
            solo.accept(info, with)
        };
        let mut conns: Vec<ConnId> = (0..3).map(|_| connect(&mut solo)).collect();
        for n in 0..400u64 {
            solo.advance(rng.below(2_000) as u64);
            if rng.below(40) == 0 {
                let gone = conns.swap_remove(rng.below(conns.len()));
                solo.close(&gone);
                conns.push(connect(&mut solo));
            }
            let at = rng.below(conns.len());
            if solo.closed.contains_key(&conns[at]) || !solo.inboxes.contains_key(&conns[at]) {
                // Closed by the object (expired token, abuse): the client reconnects.
                conns[at] = connect(&mut solo);
            }
            let conn = conns[at].clone();
            solo.take(&conn);
            let (text, owed) =
                fuzz::frame(&mut rng, n, O::EVENTS, |rng, event, n| O::plausible(&solo, rng, event, n));
            solo.send_raw(&conn, &text);
            let frames = solo.take(&conn);
            if let (Some(reference), false) = (owed, solo.closed.contains_key(&conn)) {
                assert_eq!(replies_to(&frames, &reference), 1, "seed {seed} frame {n}: {text} → {frames:?}");
                replied += 1;
            }
        }
        O::check(&mut solo, seed);
    }
    replied
}

/// Tokens that live a few minutes, so expiry is exercised too.
fn lifetime(n: u32, now: Timestamp) -> Timestamp {
    now.plus_millis(if n.is_multiple_of(4) { 90_000 } else { 3_600_000 })
}

impl Fuzzed for Room {
    type Store = support::RoomStore;
    const EVENTS: &'static [&'static str] = fuzz::ROOM_EVENTS;

    fn solo() -> Solo<Room, support::RoomStore> {
        let head = LogHead { seq: 0, epoch: "e".into() };
        let config = support::config(Default::default());
        let room = Room::new(RoomId::parse("fuzz").unwrap(), head, Default::default(), config);
        Solo::of(room, support::RoomStore::default(), Timestamp(1_700_000_000_000))
    }

    fn socket(n: u32, now: Timestamp) -> (ConnInfo, Option<Resume>) {
        let user = UserId::parse(["alice", "bob", "carol"][n as usize % 3]).unwrap();
        let conn = ConnId::parse(&format!("c{n}")).unwrap();
        (ConnInfo { conn, user, expires: lifetime(n, now), can_write: n % 3 != 2 }, None)
    }

    fn plausible(_: &Solo<Room, support::RoomStore>, rng: &mut Rng, event: &str, n: u64) -> Value {
        fuzz::room_plausible(rng, event, n)
    }

    fn check(solo: &mut Solo<Room, support::RoomStore>, seed: u64) {
        assert_eq!(solo.object.seq(), solo.store.log.messages.last().map_or(0, |m| m.seq), "seed {seed}");
    }
}

impl Fuzzed for User {
    type Store = support::users::Store;
    const EVENTS: &'static [&'static str] = &[
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

    fn solo() -> Solo<User, support::users::Store> {
        let mut config = support::config(Default::default());
        config.presence = support::users::TIMES;
        let user = User::new(UserId::parse("alice").unwrap(), StoredUser::default(), config);
        Solo::of(user, support::users::Store::default(), Timestamp(1_700_000_000_000))
    }

    fn socket(n: u32, now: Timestamp) -> (UserConnInfo, WatchPolicy) {
        let conn = ConnId::parse(&format!("c{n}")).unwrap();
        (UserConnInfo { conn, expires: lifetime(n, now) }, support::users::open_policy())
    }

    fn plausible(_: &Solo<User, support::users::Store>, rng: &mut Rng, event: &str, n: u64) -> Value {
        user_plausible(rng, event, n)
    }

    fn check(solo: &mut Solo<User, support::users::Store>, seed: u64) {
        assert_eq!(solo.object.unread(), solo.store.inbox.counts().unread, "seed {seed}");
        let saved = solo.store.presence.clone().unwrap_or_default();
        assert_eq!(
            saved.presence.current(),
            solo.object.status(),
            "seed {seed}: the stored status is the live one"
        );
    }
}

impl Fuzzed for Doc {
    type Store = DocStore;
    const EVENTS: &'static [&'static str] =
        &["op:submit", "op:submit", "cursor:update", "ops:get", "auth:refresh", "message:send", ""];

    fn solo() -> Solo<Doc, DocStore> {
        let mut store = DocStore { snapshot: (0, "hello 😀".into()), ..DocStore::default() };
        let (doc, first) =
            Doc::restore(DocId::parse("fuzz").unwrap(), store.stored(), doc_config(), "e".into());
        store.restored(&first);
        Solo::of(doc, store, Timestamp(1_700_000_000_000))
    }

    fn socket(n: u32, now: Timestamp) -> (DocConnInfo, Option<ResumeFrom>) {
        let user = UserId::parse(&format!("u{}", n % 3)).unwrap();
        let conn = ConnId::parse(&format!("c{n}")).unwrap();
        (DocConnInfo { conn, user, expires: lifetime(n, now), can_write: n % 3 != 2 }, None)
    }

    fn plausible(solo: &Solo<Doc, DocStore>, rng: &mut Rng, event: &str, n: u64) -> Value {
        doc_plausible(solo.object.text(), solo.object.version())(rng, event, n)
    }

    fn check(solo: &mut Solo<Doc, DocStore>, seed: u64) {
        let (rebuilt, repaired) =
            Doc::restore(DocId::parse("fuzz").unwrap(), solo.store.stored(), doc_config(), "e".into());
        assert!(repaired.is_empty(), "seed {seed}: the stored document loads without repair");
        assert_eq!(
            (rebuilt.text(), rebuilt.version()),
            (solo.object.text(), solo.object.version()),
            "seed {seed}"
        );
    }
}

#[test]
fn random_frames_never_hurt_any_kind_of_object() {
    let rooms = fuzz::<Room>();
    let users = fuzz::<User>();
    let docs = fuzz::<Doc>();
    eprintln!("common fuzzer: {rooms} room, {users} user, {docs} document replies checked");
    for (kind, replied) in [("room", rooms), ("user", users), ("document", docs)] {
        assert!(replied > 1500, "{kind}: checked {replied} replies");
    }
}
