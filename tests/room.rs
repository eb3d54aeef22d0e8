//! The room state machine through the simulator: join, send, history, leave, multi-tab members,
//! and bad input that must not hurt anyone.

mod support;

use serde_json::json;
use support::Sim;
use switchboard::core::config::Limits;
use switchboard::core::error::close;
use switchboard::core::object::Object;
use switchboard::core::room::log::RoomLog;

#[test]
fn joining_greets_with_room_state_and_tells_the_others() {
    let mut sim = Sim::new("general");
    let alice = sim.connect("alice");
    let state = sim.take_one(&alice);
    assert_eq!(
        state,
        json!({"t":"room:state","d":{"room":"general","connId":"c1","user":"alice","seq":0,"epoch":"ep1","members":[{"user":"alice"}],"memberCount":1,"typing":[],"state":{}}})
    );
    let bob = sim.connect("bob");
    assert_eq!(sim.take_one(&bob)["d"]["members"], json!([{"user":"alice"},{"user":"bob"}]));
    assert_eq!(sim.take_one(&alice), json!({"t":"member:join","d":{"user":"bob"}}));
}

#[test]
fn messages_get_consecutive_seqs_server_time_an_ack_and_reach_everyone_else() {
    let mut sim = Sim::new("general");
    let alice = sim.connect("alice");
    let bob = sim.connect("bob");
    let bob_tab = sim.connect("bob");
    sim.take(&alice);
    sim.take(&bob);
    sim.take(&bob_tab);

    sim.advance(1234);
    let ts = sim.now.as_millis();
    sim.send(&alice, json!({"t":"message:send","ref":"a1","d":{"text":"hi","id":"m-1","data":{"k":1}}}));
    assert_eq!(
        sim.take_one(&alice),
        json!({"t":"reply","ref":"a1","ok":true,"d":{"seq":1,"id":"m-1","ts":ts}})
    );
    let expected = json!({"t":"message:receive","d":{"room":"general","seq":1,"id":"m-1","user":"alice","text":"hi","data":{"k":1},"ts":ts}});
    assert_eq!(sim.take_one(&bob), expected);
    assert_eq!(sim.take_one(&bob_tab), expected);

    // Without an id the server makes one; without a ref there is no reply.
    sim.send(&bob, json!({"t":"message:send","d":{"text":"yo"}}));
    assert!(sim.take(&bob).is_empty());
    let received = sim.take_one(&alice);
    assert_eq!(received["d"]["seq"], 2);
    assert_eq!(received["d"]["id"], "ep1-2");
    assert!(received["d"].get("data").is_none());
    assert_eq!(sim.take_one(&bob_tab)["d"]["text"], "yo");
    assert_eq!(sim.object.seq(), 2);
    assert_eq!(sim.store.log.messages.len(), 2);
}

#[test]
fn history_pages_ascend_and_clamp() {
    let mut sim = Sim::with_limits("h", Limits { history_page_max: 3, ..Limits::default() });
    let a = sim.connect("a");
    for i in 1..=7 {
        sim.send(&a, json!({"t":"message:send","d":{"text":format!("m{i}")}}));
    }
    sim.take(&a);
    let page = |sim: &mut Sim, d: serde_json::Value| {
        sim.send(&a, json!({"t":"history:get","ref":"h","d":d}));
        let reply = sim.take_one(&a);
        assert_eq!(reply["ok"], true, "{reply}");
        reply["d"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(page(&mut sim, json!({})), vec![5, 6, 7], "clamped to HISTORY_PAGE_MAX");
    assert_eq!(page(&mut sim, json!({"before": 5, "limit": 2})), vec![3, 4]);
    assert_eq!(page(&mut sim, json!({"before": 2})), vec![1]);
    assert_eq!(page(&mut sim, json!({"before": 1})), Vec::<u64>::new());
    assert_eq!(page(&mut sim, json!({"limit": 0})), vec![7], "limit is at least 1");
    assert_eq!(sim.store.log.page(None, 100, usize::MAX).unwrap().len(), 7);

    sim.send(&a, json!({"t":"history:get","d":{}}));
    assert_eq!(sim.take_one(&a)["error"]["code"], "bad_request", "history without a ref cannot be answered");
}

#[test]
fn members_are_users_not_sockets() {
    let mut sim = Sim::new("tabs");
    let w = sim.connect("watcher");
    sim.take(&w);
    let t1 = sim.connect("dave");
    let t2 = sim.connect("dave");
    let joins = sim.take(&w);
    assert_eq!(joins, vec![json!({"t":"member:join","d":{"user":"dave"}})], "second tab is not a new member");
    assert_eq!(sim.take(&t2)[0]["d"]["members"], json!([{"user":"dave"},{"user":"watcher"}]));

    sim.close(&t1);
    assert!(sim.take(&w).is_empty(), "one tab closing is not a departure");
    sim.close(&t2);
    assert_eq!(sim.take(&w), vec![json!({"t":"member:leave","d":{"user":"dave"}})]);
    assert_eq!(sim.object.members().map(|u| u.as_str()).collect::<Vec<_>>(), vec!["watcher"]);
    assert_eq!(sim.object.connection_count(), 1);
    sim.close(&t2);
    assert!(sim.take(&w).is_empty(), "closing twice is harmless");
}

#[test]
fn bad_frames_answer_with_codes_and_change_nothing() {
    let mut sim = Sim::new("bad");
    let a = sim.connect("a");
    let b = sim.connect("b");
    sim.take(&a);
    sim.take(&b);
    let cases = [
        ("nope", None, "bad_frame"),
        (r#"{"t":"what"}"#, None, "unknown_event"),
        (r#"{"t":"what","ref":"r"}"#, Some("r"), "unknown_event"),
        (r#"{"t":"message:send","ref":"r","d":{"text":1}}"#, Some("r"), "bad_request"),
        (r#"{"t":"message:send","ref":"r","d":"text"}"#, Some("r"), "bad_request"),
        (r#"{"t":"message:send","ref":"r","d":{"text":"","data":null}}"#, Some("r"), "bad_request"),
        (r#"{"t":"message:send","ref":"r","d":{"text":"x","id":"a\nb"}}"#, Some("r"), "bad_request"),
    ];
    for (raw, reply_to, code) in cases {
        sim.send_raw(&a, raw);
        let frame = sim.take_one(&a);
        match reply_to {
            Some(r) => assert_eq!(
                (frame["t"].as_str(), frame["ref"].as_str(), frame["ok"].as_bool()),
                (Some("reply"), Some(r), Some(false)),
                "{raw}"
            ),
            None => assert_eq!(frame["t"], "error", "{raw}"),
        }
        assert_eq!(frame["error"]["code"], code, "{raw}");
    }
    let long = "ü".repeat(Limits::default().max_text_chars + 1);
    sim.send(&a, json!({"t":"message:send","ref":"r","d":{"text":long}}));
    assert_eq!(sim.take_one(&a)["error"]["code"], "too_large");
    let exact = "ü".repeat(Limits::default().max_text_chars);
    sim.send(&a, json!({"t":"message:send","ref":"r","d":{"text":exact}}));
    assert_eq!(sim.take_one(&a)["d"]["seq"], 1, "the limit counts characters, not bytes");

    assert_eq!(sim.store.log.messages.len(), 1);
    assert_eq!(sim.take(&b).len(), 1, "the others only saw the valid message");
    assert!(sim.closed.is_empty());
}

#[test]
fn strikes_within_a_minute_close_the_socket_whatever_good_frames_came_between() {
    let mut sim = Sim::with_limits("abuse", Limits { max_strikes: 3, ..Limits::default() });
    let m = sim.connect("mallory");
    let o = sim.connect("other");
    sim.send_raw(&m, "x");
    sim.send(&m, json!({"t":"message:send","d":{"text":"fine"}}));
    sim.send_raw(&m, "x");
    sim.send(&m, json!({"t":"message:send","d":{"text":"fine"}}));
    // On 5a06e97 each good frame reset the count, so this never closed.
    assert!(sim.closed.is_empty());
    sim.send_raw(&m, "x");
    assert_eq!(sim.closed.get(&m), Some(&close::PROTOCOL_ABUSE));
    assert!(sim.take(&o).contains(&json!({"t":"member:leave","d":{"user":"mallory"}})));
    assert_eq!(sim.object.connection_count(), 1);
}

#[test]
fn strikes_older_than_a_minute_no_longer_count() {
    let mut sim = Sim::with_limits("patient", Limits { max_strikes: 3, ..Limits::default() });
    let m = sim.connect("mallory");
    for _ in 0..6 {
        sim.send_raw(&m, "x");
        sim.send_raw(&m, "x");
        sim.advance(61_000);
    }
    assert!(sim.closed.is_empty());
}

#[test]
fn frames_from_unknown_connections_are_ignored() {
    let mut sim = Sim::new("ghost");
    let a = sim.connect("a");
    sim.close(&a);
    sim.send(&a, json!({"t":"message:send","d":{"text":"boo"}}));
    assert!(sim.store.log.messages.is_empty());
}

/// The shell's contract when anything fails after it accepted a socket (attachment, the
/// greeting's flush): it closes the socket (1011) and hands the close to the core, which must
/// then hold no trace of it.
#[test]
fn a_socket_dropped_right_after_connect_leaves_no_member() {
    let mut sim = Sim::with_limits("r", Limits { max_sockets_per_user: 1, ..Limits::default() });
    let alice = sim.connect("alice");
    sim.take(&alice);
    let bob = sim.connect("bob");
    sim.close(&bob);
    let told: Vec<_> =
        sim.take(&alice).into_iter().map(|f| (f["t"].clone(), f["d"]["user"].clone())).collect();
    assert_eq!(told, vec![(json!("member:join"), json!("bob")), (json!("member:leave"), json!("bob"))]);
    assert_eq!(sim.object.members().map(|u| u.as_str()).collect::<Vec<_>>(), ["alice"]);
    assert_eq!(sim.object.connection_count(), 1);
    assert_eq!(
        sim.object.poll_timeout(),
        Some(sim.now.plus_millis(3_600_000)),
        "only alice's expiry is left"
    );
    let again = sim.connect("bob");
    assert_eq!(sim.take_one(&again)["d"]["members"], json!([{"user":"alice"},{"user":"bob"}]), "no ghost");
}

#[test]
fn stats_count_connections_members_and_the_log() {
    let mut sim = Sim::new("general");
    let alice = sim.connect("alice");
    sim.connect("alice");
    sim.connect("bob");
    sim.send(&alice, json!({"t":"message:send","d":{"text":"hi"}}));
    let stats = serde_json::Value::Object(sim.object.stats());
    let expected = json!({"room":"general","seq":1,"epoch":"ep1","connections":3,"members":2,"streams":0});
    assert_eq!(stats, expected);
}
