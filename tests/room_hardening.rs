//! Issue-10 hardening of rooms on the virtual clock: replays and history bounded by bytes,
//! history trimmed with ids remembered, per-user budgets, server-marked messages, and event
//! streams with expiry, keepalives and the socket limit.

mod support;

use serde_json::{json, Value};
use std::cell::Cell;
use support::Sim;
use switchboard::core::config::Limits;
use switchboard::core::ids::UserId;
use switchboard::core::object::Object;
use switchboard::core::room::log::{LogError, MemoryLog, Message, Receipt, RoomLog};
use switchboard::core::room::Resume;

/// A log that counts the bytes (`Message::size`) its reads hand out.
struct Counting<'a> {
    log: &'a MemoryLog,
    read: Cell<usize>,
}

impl Counting<'_> {
    fn count(&self, messages: Vec<Message>) -> Vec<Message> {
        self.read.set(self.read.get() + messages.iter().map(Message::size).sum::<usize>());
        messages
    }
}

impl RoomLog for Counting<'_> {
    fn page(&self, before: Option<u64>, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        self.log.page(before, limit, max_bytes).map(|m| self.count(m))
    }
    fn after(&self, since: u64, limit: u32, max_bytes: usize) -> Result<Vec<Message>, LogError> {
        self.log.after(since, limit, max_bytes).map(|m| self.count(m))
    }
    fn find(&self, user: &UserId, id: &str) -> Result<Option<Receipt>, LogError> {
        self.log.find(user, id)
    }
}

fn limits() -> Limits {
    Limits { recovery_max_bytes: 16 * 1024, ..Limits::default() }
}

/// A room holding `n` messages of about 4 KB each from `alice`.
fn room_of_big_messages(n: usize) -> Sim {
    let mut sim = Sim::with_limits("big", limits());
    let a = sim.connect("alice");
    for i in 0..n {
        sim.send(&a, json!({"t":"message:send","d":{"text":"x".repeat(4000),"id":format!("m{i}")}}));
        sim.advance(1000);
    }
    sim.close(&a);
    sim
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter(|f| f["t"] == "message:receive").filter_map(|f| f["d"]["seq"].as_u64()).collect()
}

#[test]
fn a_replay_over_recovery_max_bytes_answers_recovered_false_and_replays_nothing() {
    let mut sim = room_of_big_messages(10);
    let all = sim.connect_with("bob", 60_000, true, Some((0, "ep1")));
    let frames = sim.take(&all);
    assert_eq!(seqs(&frames), Vec::<u64>::new(), "40 KB of missed messages are over the 16 KB bound");
    assert_eq!(frames.last().unwrap()["d"]["recovered"], false);

    let few = sim.connect_with("carol", 60_000, true, Some((7, "ep1")));
    let frames = sim.take(&few);
    assert_eq!(seqs(&frames), vec![8, 9, 10], "12 KB fit");
    assert_eq!(frames.last().unwrap()["d"]["recovered"], true);
}

#[test]
fn a_refused_replay_reads_no_more_than_the_byte_bound_from_the_log() {
    let sim = room_of_big_messages(50);
    let counting = Counting { log: &sim.store.log, read: Cell::new(0) };
    let resume = Resume { since: 0, epoch: "ep1".into() };
    assert!(sim.object.missed(&resume, &counting).is_none());
    let read = counting.read.get();
    assert!(read <= 16 * 1024 + 4100, "read {read} bytes of 200 KB");
}

#[test]
fn an_event_stream_opening_over_recovery_max_bytes_says_recovered_false() {
    let sim = room_of_big_messages(10);
    let opening =
        sim.object.open_event_stream(Some(&Resume { since: 0, epoch: "ep1".into() }), &sim.store.log);
    assert!(!opening.contains("message:receive"), "nothing replayed");
    assert!(opening.contains(r#""recovered":false"#), "{opening}");
    let resumed =
        sim.object.open_event_stream(Some(&Resume { since: 8, epoch: "ep1".into() }), &sim.store.log);
    assert_eq!(resumed.matches("event: message:receive").count(), 2);
    assert!(resumed.contains(r#""recovered":true"#));
}

#[test]
fn history_pages_are_bounded_by_bytes_and_hold_at_least_one_message() {
    let mut sim = room_of_big_messages(10);
    let b = sim.connect("bob");
    sim.take(&b);
    sim.send(&b, json!({"t":"history:get","ref":"h","d":{"limit":100}}));
    let page = sim.take_one(&b);
    let got: Vec<u64> =
        page["d"]["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, vec![6, 7, 8, 9, 10], "the newest 16 KB (and the one that crosses it), ascending");

    let mut tiny = Sim::with_limits("tiny", Limits { recovery_max_bytes: 1, ..limits() });
    let a = tiny.connect("alice");
    for i in 0..3 {
        tiny.send(&a, json!({"t":"message:send","d":{"text":format!("m{i}")}}));
    }
    tiny.take(&a);
    tiny.send(&a, json!({"t":"history:get","ref":"h","d":{"before":3}}));
    assert_eq!(tiny.take_one(&a)["d"]["messages"][0]["seq"], 2, "at least one message per page");
}

#[test]
fn a_room_rebuilt_after_a_failed_write_never_reuses_a_seq_it_handed_out() {
    use std::collections::BTreeMap;
    use switchboard::core::ids::{ConnId, RoomId};
    use switchboard::core::object::{Effect, Object};
    use switchboard::core::protocol::Incoming;
    use switchboard::core::room::log::LogHead;
    use switchboard::core::room::{ConnInfo, Room, RoomWrite};
    use switchboard::core::time::Timestamp;

    // Seqs 4 and 5 were handed out, then their write failed: storage holds up to 3.
    let head = LogHead::restore(3, 5, "ep1".into());
    let mut room =
        Room::new(RoomId::parse("floor").unwrap(), head, BTreeMap::new(), support::config(Limits::default()));
    let conn = ConnId::parse("c1").unwrap();
    let now = Timestamp(1_000);
    let info = ConnInfo {
        conn: conn.clone(),
        user: UserId::parse("alice").unwrap(),
        expires: Timestamp(u64::MAX / 2),
        can_write: true,
    };
    room.restore_conn(info, now);
    let frame = r#"{"t":"message:send","d":{"text":"after the failure"}}"#;
    let effects = room.handle_frame(&conn, Incoming::Text(frame), now, &MemoryLog::default());
    let appended: Vec<u64> = effects
        .iter()
        .filter_map(|e| if let Effect::Write(RoomWrite::Append(m)) = e { Some(m.seq) } else { None })
        .collect();
    assert_eq!(appended, vec![6]);
    assert_eq!(LogHead::restore(7, 5, "e".into()).seq, 7, "storage ahead of the floor wins");
}

fn send_text(sim: &mut Sim, conn: &switchboard::core::ids::ConnId, text: &str, id: Option<&str>) -> Value {
    let mut d = json!({ "text": text });
    if let Some(id) = id {
        d["id"] = json!(id);
    }
    sim.send(conn, json!({"t":"message:send","ref":"s","d":d}));
    let frames = sim.take(conn);
    frames.into_iter().find(|f| f["t"] == "reply").expect("a reply")
}

#[test]
fn room_history_is_trimmed_to_room_history_max_oldest_first() {
    let mut sim = Sim::with_limits("trim", Limits { room_history_max: 5, ..Limits::default() });
    let a = sim.connect("alice");
    for i in 1..=8 {
        send_text(&mut sim, &a, &format!("m{i}"), None);
        sim.advance(200);
    }
    assert_eq!(sim.store.log.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8]);
    sim.send(&a, json!({"t":"history:get","ref":"h","d":{"limit":100}}));
    let page = sim.take_one(&a);
    assert_eq!(page["d"]["messages"].as_array().unwrap().len(), 5);
    assert_eq!(sim.object.seq(), 8, "trimming never moves the head");
}

#[test]
fn a_late_resend_of_a_trimmed_message_is_not_stored_twice_within_the_id_window() {
    let mut sim = Sim::with_limits("ids", Limits { room_history_max: 3, ..Limits::default() });
    let a = sim.connect("alice");
    sim.take(&a);
    let first = send_text(&mut sim, &a, "hello", Some("m-1"));
    for i in 2..=6 {
        send_text(&mut sim, &a, &format!("m{i}"), None);
    }
    assert!(sim.store.log.messages.iter().all(|m| m.seq > 3), "m-1 was trimmed");
    let again = send_text(&mut sim, &a, "hello", Some("m-1"));
    assert_eq!((again["d"]["seq"].clone(), again["d"]["duplicate"].clone()), (json!(1), json!(true)));
    assert_eq!(again["d"]["ts"], first["d"]["ts"]);
    assert_eq!(sim.object.seq(), 6, "nothing stored");
    // Three more messages later (2 x ROOM_HISTORY_MAX in all) the id is forgotten.
    send_text(&mut sim, &a, "m7", None);
    let late = send_text(&mut sim, &a, "hello", Some("m-1"));
    assert_eq!(late["d"]["seq"], 8);
    assert!(late["d"].get("duplicate").is_none());
}

#[test]
fn rate_budgets_belong_to_the_user_across_sockets_and_reconnects() {
    use switchboard::core::room::EventClass;
    let mut sim = Sim::new("budget");
    let burst = EventClass::Message.rate().burst;
    let one = sim.connect("alice");
    for i in 0..burst {
        assert_eq!(send_text(&mut sim, &one, &format!("m{i}"), None)["ok"], true);
    }
    let two = sim.connect("alice");
    sim.take(&two);
    let limited = send_text(&mut sim, &two, "from another tab", None);
    assert_eq!(limited["error"]["code"], "rate_limited", "a second socket shares the budget");
    sim.close(&one);
    sim.close(&two);
    let back = sim.connect("alice");
    sim.take(&back);
    assert_eq!(send_text(&mut sim, &back, "reconnected", None)["error"]["code"], "rate_limited");
    let other = sim.connect("bob");
    sim.take(&other);
    assert_eq!(send_text(&mut sim, &other, "bob's own budget", None)["ok"], true);
    sim.advance(1000);
    assert_eq!(send_text(&mut sim, &back, "refilled", None)["ok"], true);
}

#[test]
fn http_publish_with_a_user_token_draws_on_the_users_budget_but_the_server_key_is_unthrottled() {
    use switchboard::core::error::ErrorCode;
    use switchboard::core::room::{EventClass, Publish};
    let mut sim = Sim::new("publish");
    let alice = UserId::parse("alice").unwrap();
    let publish = |text: &str| Publish { text: text.into(), data: None, user: None };
    let burst = EventClass::Message.rate().burst;
    for _ in 0..burst {
        let (_, effects) = sim
            .object
            .handle_publish(alice.clone(), publish("x"), None, false, sim.now, &sim.store.log)
            .unwrap();
        sim.apply(effects);
    }
    let err = sim
        .object
        .handle_publish(alice.clone(), publish("x"), None, false, sim.now, &sim.store.log)
        .unwrap_err();
    assert_eq!((err.code, err.retry_after_ms), (ErrorCode::RateLimited, Some(100)));
    let a = sim.connect("alice");
    sim.take(&a);
    assert_eq!(
        send_text(&mut sim, &a, "socket", None)["error"]["code"],
        "rate_limited",
        "HTTP and sockets share it"
    );
    let system = UserId::parse("system").unwrap();
    for _ in 0..(burst * 3) {
        let (_, effects) = sim
            .object
            .handle_publish(system.clone(), publish("x"), None, true, sim.now, &sim.store.log)
            .unwrap();
        sim.apply(effects);
    }
}

#[test]
fn messages_published_with_the_server_key_are_marked_server_and_a_user_named_system_is_not() {
    use switchboard::core::room::Publish;
    let mut sim = Sim::new("mark");
    let watcher = sim.connect("watcher");
    sim.take(&watcher);
    let system = UserId::parse("system").unwrap();
    let publish = |text: &str| Publish { text: text.into(), data: None, user: None };
    let (_, effects) = sim
        .object
        .handle_publish(system.clone(), publish("deploy"), None, true, sim.now, &sim.store.log)
        .unwrap();
    sim.apply(effects);
    let (_, effects) =
        sim.object.handle_publish(system, publish("fake"), None, false, sim.now, &sim.store.log).unwrap();
    sim.apply(effects);
    let impostor = sim.connect("system");
    sim.take(&impostor);
    sim.send(&impostor, json!({"t":"message:send","d":{"text":"also fake"}}));
    let got = sim.take(&watcher);
    let marks: Vec<(Value, Value)> = got
        .iter()
        .filter(|f| f["t"] == "message:receive")
        .map(|f| (f["d"]["text"].clone(), f["d"].get("server").cloned().unwrap_or(Value::Null)))
        .collect();
    assert_eq!(
        marks,
        vec![(json!("deploy"), json!(true)), (json!("fake"), Value::Null), (json!("also fake"), Value::Null)]
    );
    assert_eq!(sim.store.log.messages.iter().map(|m| m.server).collect::<Vec<_>>(), vec![true, false, false]);
}

#[test]
fn an_event_stream_ends_with_a_close_event_at_its_tokens_expiry() {
    let mut sim = Sim::new("sse-exp");
    let (short, opening) = sim.open_stream("alice", 5_000).unwrap();
    assert!(opening.contains("event: room:state"));
    let (long, _) = sim.open_stream("bob", 60_000).unwrap();
    sim.advance(4_999);
    assert!(sim.ended_streams.is_empty());
    sim.advance(1);
    assert_eq!(
        sim.ended_streams.get(&short).map(String::as_str),
        Some("event: close\ndata: {\"code\":4001,\"reason\":\"token expired\"}\n\n")
    );
    assert!(sim.streams.contains_key(&long));
    assert_eq!(sim.object.stream_count(), 1);
}

#[test]
fn event_streams_count_with_sockets_against_max_sockets_per_user() {
    use switchboard::core::error::ErrorCode;
    let mut sim = Sim::with_limits("sse-cap", Limits { max_sockets_per_user: 2, ..Limits::default() });
    sim.connect("alice");
    let (stream, _) = sim.open_stream("alice", 60_000).unwrap();
    assert_eq!(sim.open_stream("alice", 60_000).unwrap_err().code, ErrorCode::TooManyConnections);
    let alice = UserId::parse("alice").unwrap();
    assert_eq!(
        sim.object.check_capacity(&alice).unwrap_err().code,
        ErrorCode::TooManyConnections,
        "nor a socket"
    );
    assert!(sim.open_stream("bob", 60_000).is_ok(), "per user");
    sim.drop_stream(&stream);
    assert!(sim.open_stream("alice", 60_000).is_ok(), "a closed stream frees its place");
}

#[test]
fn open_event_streams_get_a_keepalive_every_sse_keepalive_ms_and_the_timer_stops_with_the_last() {
    let mut sim = Sim::with_limits("sse-ka", Limits { sse_keepalive_ms: 1_000, ..Limits::default() });
    assert_eq!(sim.object.poll_timeout(), None);
    let (a, _) = sim.open_stream("alice", 3_600_000).unwrap();
    sim.advance(500);
    let (b, _) = sim.open_stream("bob", 3_600_000).unwrap();
    sim.advance(2_600);
    assert_eq!(sim.streams[&a].len(), 3, "at 1, 2 and 3 s");
    assert_eq!(sim.streams[&b].len(), 3, "one timer for all streams");
    assert!(sim.streams[&a].iter().all(|c| c == ": keepalive\n\n"));
    sim.drop_stream(&a);
    sim.drop_stream(&b);
    assert_eq!(sim.object.poll_timeout(), None, "no keepalive without streams");
}

#[test]
fn a_stream_more_than_recovery_max_bytes_behind_does_not_keep_up() {
    let sim = Sim::with_limits("sse-slow", limits());
    assert!(sim.object.stream_keeps_up(16 * 1024));
    assert!(!sim.object.stream_keeps_up(16 * 1024 + 1));
}

// From the second adversarial review (2026-11-28).

#[test]
fn event_stream_openings_draw_from_the_users_read_budget() {
    use switchboard::core::error::ErrorCode;
    let mut sim = Sim::with_limits("sse-rate", Limits { max_sockets_per_user: 1_000, ..Limits::default() });
    // Each opening may replay up to RECOVERY_MAX_BYTES: a loop of them is throttled like reads.
    let refused = (0..40).filter_map(|_| sim.open_stream("alice", 60_000).err()).collect::<Vec<_>>();
    assert!(!refused.is_empty(), "40 openings at once all passed");
    assert!(refused.iter().all(|e| e.code == ErrorCode::RateLimited && e.retry_after_ms.is_some()));
    assert!(sim.open_stream("bob", 60_000).is_ok(), "another user's budget is untouched");
}

#[test]
fn http_history_draws_from_the_users_read_budget() {
    use switchboard::core::error::ErrorCode;
    let mut sim = Sim::new("history-rate");
    let alice = UserId::parse("alice").unwrap();
    let log = MemoryLog::default();
    let refused = (0..40)
        .filter_map(|_| sim.object.http_history(&alice, None, None, sim.now, &log).err())
        .collect::<Vec<_>>();
    assert!(!refused.is_empty() && refused.iter().all(|e| e.code == ErrorCode::RateLimited));
}

#[test]
fn an_event_stream_ends_at_exp_plus_the_leeway_like_a_socket() {
    let mut config = support::config(Limits::default());
    config.auth.leeway_secs = 30;
    let mut sim = Sim::with_config("sse-leeway", config);
    let (stream, _) = sim.open_stream("alice", 5_000).unwrap();
    sim.advance(5_000 + 29_999);
    assert!(sim.ended_streams.is_empty(), "the Worker still accepts this token");
    sim.advance(1);
    assert!(sim.ended_streams.contains_key(&stream));
}
