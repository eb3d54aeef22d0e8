//! Issue-3 room rules on the virtual clock: idempotent sends, recovery, typing expiry, live
//! state, signals, broadcasts, rate limits, read-only sockets, token refresh and expiry,
//! server publish, and the per-user socket limit.

mod support;

use serde_json::{json, Value};
use support::{hs256, Sim};
use switchboard::core::config::Limits;
use switchboard::core::error::{close, ErrorCode};
use switchboard::core::ids::{ConnId, UserId};
use switchboard::core::object::{Effect, Object};
use switchboard::core::protocol::{Incoming, RawJson};
use switchboard::core::room::{EventClass, Publish};

fn of_type(frames: &[Value], t: &str) -> Vec<Value> {
    frames.iter().filter(|f| f["t"] == t).cloned().collect()
}

/// Connects `users` and drains their greetings.
fn quiet<const N: usize>(sim: &mut Sim, users: [&str; N]) -> [ConnId; N] {
    let conns = users.map(|u| sim.connect(u));
    for c in &conns {
        sim.take(c);
    }
    conns
}

#[test]
fn resending_the_same_client_id_returns_the_original_and_broadcasts_nothing() {
    let mut sim = Sim::new("r");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    sim.send(&a, json!({"t":"message:send","ref":1,"d":{"text":"hi","id":"m1"}}));
    let first = sim.take_one(&a);
    sim.take(&b);
    sim.advance(5000);
    sim.send(&a, json!({"t":"message:send","ref":2,"d":{"text":"hi","id":"m1"}}));
    let again = sim.take_one(&a);
    assert_eq!(again["d"]["seq"], first["d"]["seq"]);
    assert_eq!(again["d"]["ts"], first["d"]["ts"]);
    assert_eq!(again["d"]["duplicate"], true);
    assert!(sim.take(&b).is_empty(), "no second broadcast");
    assert_eq!(sim.store.log.messages.len(), 1);
    // The same id from another user is another message.
    sim.send(&b, json!({"t":"message:send","ref":3,"d":{"text":"hi","id":"m1"}}));
    assert_eq!(sim.take_one(&b)["d"]["seq"], 2);
}

#[test]
fn message_data_is_relayed_and_stored_exactly_as_sent() {
    let mut sim = Sim::new("r");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    // Key order, spacing and number spelling that a parse-and-print would change.
    let data = r#"{"z": 1.50, "a": ["é", {"y": null, "b": true}]}"#;
    let frame = format!(r#"{{"t":"message:send","ref":1,"d":{{"text":"hi","data":{data}}}}}"#);
    let effects = sim.object.handle_frame(&a, Incoming::Text(&frame), sim.now, &sim.store.log);
    let relayed: Vec<&String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert_eq!(relayed.len(), 1);
    assert!(relayed[0].contains(&format!(r#""data":{data}"#)), "{}", relayed[0]);
    sim.apply(effects);
    assert_eq!(sim.take_one(&b)["d"]["data"]["a"][0], "é");
    assert_eq!(sim.store.log.messages[0].data.as_ref().map(RawJson::get), Some(data));
    // `null` is no data: a message then needs a text.
    sim.take(&a);
    sim.send(&a, json!({"t":"message:send","ref":2,"d":{"text":"","data":null}}));
    assert_eq!(sim.take_one(&a)["error"]["code"], "bad_request");
    sim.send(&a, json!({"t":"message:send","ref":3,"d":{"text":"x","data":null}}));
    sim.take(&a);
    assert!(sim.take_one(&b)["d"].get("data").is_none());
    // Data that is not one JSON value never gets in.
    sim.send_raw(&a, r#"{"t":"message:send","ref":4,"d":{"text":"x","data":{"a":}}}"#);
    assert_eq!(sim.take_one(&a)["error"]["code"], "bad_frame");
    // Nor does what a JSON value may not be, though its text scans: nesting past serde_json's
    // limit, a number beyond f64, a lone surrogate. Each would break every later reader.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for bad in [deep.as_str(), r#"{"n":1e400}"#, r#""\ud800""#] {
        let frame = format!(r#"{{"t":"message:send","ref":5,"d":{{"text":"x","data":{bad}}}}}"#);
        sim.send_raw(&a, &frame);
        assert_eq!(sim.take_one(&a)["error"]["code"], "bad_request", "{bad}");
    }
    assert_eq!(sim.store.log.messages.len(), 2);
    // Line breaks between tokens are kept for sockets and history; an event stream's event
    // stays one `data:` line.
    let spaced = "{\n\"k\":\r\n[1,\n2]}";
    let frame = format!(r#"{{"t":"message:send","ref":6,"d":{{"text":"x","data":{spaced}}}}}"#);
    sim.send_raw(&a, &frame);
    sim.take(&a);
    assert_eq!(sim.take_one(&b)["d"]["data"]["k"][1], 2);
    sim.send(&a, json!({"t":"history:get","ref":7,"d":{}}));
    let page = sim.take_one(&a);
    assert_eq!(page["d"]["messages"][0]["data"]["z"], 1.5);
    assert_eq!(page["d"]["messages"][2]["data"]["k"][0], 1);
    let stored = sim.store.log.messages.last().cloned().unwrap();
    assert_eq!(stored.data.as_ref().map(RawJson::get), Some(spaced));
    let event = sim.object.message_event(&stored);
    let lines: Vec<&str> = event.trim_end().lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("event:") || l.starts_with("id:") || l.starts_with("data:")),
        "{event:?}"
    );
    let data: Value = serde_json::from_str(lines.last().unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!(data["data"]["k"][1], 2);
}

#[test]
fn a_reconnecting_client_gets_exactly_what_it_missed_then_room_state() {
    let mut sim = Sim::new("r");
    let [a] = quiet(&mut sim, ["alice"]);
    for i in 1..=5 {
        sim.send(&a, json!({"t":"message:send","d":{"text":format!("m{i}")}}));
    }
    let b = sim.connect_with("bob", 60_000, true, Some((2, "ep1")));
    let frames = sim.take(&b);
    let seqs: Vec<_> = frames.iter().take(3).map(|f| (f["t"].clone(), f["d"]["seq"].clone())).collect();
    assert_eq!(
        seqs,
        vec![
            (json!("message:receive"), json!(3)),
            (json!("message:receive"), json!(4)),
            (json!("message:receive"), json!(5))
        ]
    );
    assert_eq!(frames[3]["t"], "room:state");
    assert_eq!(frames[3]["d"]["recovered"], true);
    assert_eq!(frames.len(), 4);

    let up_to_date = sim.connect_with("carol", 60_000, true, Some((5, "ep1")));
    let frames = sim.take(&up_to_date);
    assert_eq!((frames.len(), frames[0]["d"]["recovered"].clone()), (1, json!(true)));

    for (since, epoch) in [(2, "other-epoch"), (9, "ep1")] {
        let c = sim.connect_with("dave", 60_000, true, Some((since, epoch)));
        let frames = sim.take(&c);
        assert_eq!(frames.len(), 1, "no partial replay for since={since} epoch={epoch}");
        assert_eq!(frames[0]["d"]["recovered"], false);
    }
    let plain = sim.connect("erin");
    assert!(
        sim.take(&plain)[0]["d"].get("recovered").is_none(),
        "a plain connect says nothing about recovery"
    );
}

#[test]
fn recovery_beyond_the_window_is_refused_not_truncated() {
    let mut sim = Sim::with_limits("r", Limits { recovery_window: 3, ..Limits::default() });
    let [a] = quiet(&mut sim, ["alice"]);
    for i in 0..5 {
        sim.send(&a, json!({"t":"message:send","d":{"text":format!("m{i}")}}));
    }
    let late = sim.connect_with("bob", 60_000, true, Some((1, "ep1")));
    let frames = sim.take(&late);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["d"]["recovered"], false);
    let near = sim.connect_with("bob", 60_000, true, Some((2, "ep1")));
    assert_eq!(sim.take(&near).len(), 4);
}

#[test]
fn typing_is_announced_on_change_and_expires_through_the_alarm() {
    let mut sim = Sim::new("t");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    sim.send(&a, json!({"t":"typing:start"}));
    assert_eq!(sim.take(&b), vec![json!({"t":"typing:update","d":{"users":["alice"]}})]);
    assert!(sim.take(&a).is_empty(), "the typist is not told about itself");
    sim.advance(4000);
    sim.send(&a, json!({"t":"typing:start"}));
    assert!(sim.take(&b).is_empty(), "a refresh changes nothing visible");
    sim.advance(5999);
    assert!(sim.take(&b).is_empty(), "refreshed: 6 s from the refresh, not the start");
    assert_eq!(sim.object.poll_timeout(), Some(sim.now.plus_millis(1)));
    sim.advance(1);
    assert_eq!(sim.take(&b), vec![json!({"t":"typing:update","d":{"users":[]}})]);
    assert_eq!(
        sim.object.poll_timeout(),
        Some(sim.now.plus_millis(3_600_000 - 10_000)),
        "only token expiries remain"
    );
}

#[test]
fn typing_ends_with_a_message_a_stop_or_the_last_socket() {
    let mut sim = Sim::new("t");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    sim.send(&a, json!({"t":"typing:start"}));
    sim.send(&b, json!({"t":"typing:start","ref":"x"}));
    assert_eq!(
        sim.take(&b),
        vec![
            json!({"t":"typing:update","d":{"users":["alice"]}}),
            json!({"t":"reply","ref":"x","ok":true,"d":{}})
        ]
    );
    assert_eq!(sim.take(&a), vec![json!({"t":"typing:update","d":{"users":["alice","bob"]}})]);
    sim.send(&a, json!({"t":"message:send","d":{"text":"done"}}));
    assert_eq!(
        of_type(&sim.take(&b), "typing:update"),
        vec![json!({"t":"typing:update","d":{"users":["bob"]}})]
    );
    assert_eq!(sim.take(&a), vec![json!({"t":"typing:update","d":{"users":["bob"]}})]);
    sim.send(&b, json!({"t":"typing:stop"}));
    assert_eq!(sim.take(&a), vec![json!({"t":"typing:update","d":{"users":[]}})]);
    sim.send(&b, json!({"t":"typing:stop"}));
    assert!(sim.take(&a).is_empty(), "stopping twice announces nothing");
    sim.send(&b, json!({"t":"typing:start"}));
    sim.take(&a);
    sim.close(&b);
    assert_eq!(
        sim.take(&a),
        vec![json!({"t":"typing:update","d":{"users":[]}}), json!({"t":"member:leave","d":{"user":"bob"}})]
    );
}

#[test]
fn state_is_versioned_per_key_with_conflicts_and_shown_on_join() {
    let mut sim = Sim::new("s");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    sim.send(&a, json!({"t":"state:set","ref":1,"d":{"key":"topic","value":"rust"}}));
    let update = json!({"t":"state:update","d":{"key":"topic","value":"rust","version":1,"user":"alice"}});
    assert_eq!(sim.take(&a), vec![update.clone(), json!({"t":"reply","ref":1,"ok":true,"d":{"version":1}})]);
    assert_eq!(sim.take(&b), vec![update]);
    sim.send(&b, json!({"t":"state:set","ref":2,"d":{"key":"topic","value":"wasm","ifVersion":1}}));
    assert_eq!(sim.take(&b)[1]["d"]["version"], 2);
    sim.send(&a, json!({"t":"state:set","ref":3,"d":{"key":"topic","value":"late","ifVersion":1}}));
    assert_eq!(of_type(&sim.take(&a), "reply")[0]["error"]["code"], "conflict");
    sim.send(&a, json!({"t":"state:set","ref":4,"d":{"key":"new","value":{"x":[1]},"ifVersion":0}}));
    assert_eq!(of_type(&sim.take(&a), "reply")[0]["d"]["version"], 1);
    assert_eq!(sim.store.state["topic"], json!({"value":"wasm","version":2,"user":"bob"}));

    let c = sim.connect("carol");
    assert_eq!(
        sim.take(&c)[0]["d"]["state"],
        json!({"topic":{"value":"wasm","version":2,"user":"bob"},"new":{"value":{"x":[1]},"version":1,"user":"alice"}})
    );
}

#[test]
fn state_limits() {
    let mut sim =
        Sim::with_limits("s", Limits { state_max_keys: 1, state_max_value_bytes: 10, ..Limits::default() });
    let [a] = quiet(&mut sim, ["alice"]);
    let code = |sim: &mut Sim, d: Value| {
        sim.send(&a, json!({"t":"state:set","ref":"r","d":d}));
        let replies = of_type(&sim.take(&a), "reply");
        replies[0]["error"]["code"].as_str().unwrap_or("ok").to_owned()
    };
    assert_eq!(code(&mut sim, json!({"key":"k","value":"0123456789"})), "too_large");
    assert_eq!(code(&mut sim, json!({"key":"","value":1})), "bad_request");
    assert_eq!(code(&mut sim, json!({"value":1})), "bad_request");
    assert_eq!(code(&mut sim, json!({"key":"k","value":1})), "ok");
    assert_eq!(code(&mut sim, json!({"key":"k2","value":1})), "too_large");
    assert_eq!(
        code(&mut sim, json!({"key":"k","value":2})),
        "ok",
        "updating an existing key is fine when full"
    );
}

#[test]
fn signals_reach_only_their_target() {
    let mut sim = Sim::new("sig");
    let [a, b1, b2, c] = quiet(&mut sim, ["alice", "bob", "bob", "carol"]);
    sim.send(&a, json!({"t":"signal","ref":1,"d":{"to":"bob","data":{"sdp":"offer"}}}));
    let expected = json!({"t":"signal","d":{"from":"alice","fromConn":"c1","data":{"sdp":"offer"}}});
    assert_eq!(sim.take(&b1), vec![expected.clone()]);
    assert_eq!(sim.take(&b2), vec![expected]);
    assert!(sim.take(&c).is_empty());
    assert_eq!(sim.take_one(&a)["d"]["delivered"], 2);
    sim.send(&a, json!({"t":"signal","d":{"to":"bob","toConn":"c3","data":"ice"}}));
    assert!(sim.take(&b1).is_empty());
    assert_eq!(sim.take(&b2).len(), 1);
    for d in [json!({"to":"nobody"}), json!({"to":"bob","toConn":"c4"})] {
        sim.send(&a, json!({"t":"signal","ref":"x","d":d}));
        assert_eq!(sim.take_one(&a)["error"]["code"], "not_found", "{d}");
    }
    sim.send(&a, json!({"t":"signal","ref":"x","d":{"data":1}}));
    assert_eq!(sim.take_one(&a)["error"]["code"], "bad_request");
}

#[test]
fn broadcasts_reach_everyone_else_and_are_never_stored() {
    let mut sim = Sim::new("b");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    sim.send(&a, json!({"t":"broadcast","d":{"event":"cursor","data":{"x":1}}}));
    assert_eq!(
        sim.take(&b),
        vec![json!({"t":"broadcast","d":{"event":"cursor","data":{"x":1},"from":"alice","fromConn":"c1"}})]
    );
    assert!(sim.take(&a).is_empty());
    assert!(sim.store.log.messages.is_empty() && sim.store.state.is_empty());
    sim.send(&a, json!({"t":"broadcast","ref":1,"d":{"event":""}}));
    assert_eq!(sim.take_one(&a)["error"]["code"], "bad_request");
}

#[test]
fn each_event_class_has_its_own_bucket_with_a_retry_hint() {
    let mut sim = Sim::new("rl");
    let [a] = quiet(&mut sim, ["alice"]);
    let burst = EventClass::Broadcast.rate().burst;
    for _ in 0..burst {
        sim.send(&a, json!({"t":"broadcast","d":{"event":"e"}}));
    }
    sim.send(&a, json!({"t":"broadcast","ref":"over","d":{"event":"e"}}));
    let reply = sim.take_one(&a);
    assert_eq!(reply["error"]["code"], "rate_limited");
    let retry = reply["error"]["retryAfterMs"].as_u64().unwrap();
    assert_eq!(retry, 1000 / u64::from(EventClass::Broadcast.rate().per_sec));
    // Messages have their own bucket.
    sim.send(&a, json!({"t":"message:send","ref":"m","d":{"text":"still fine"}}));
    assert_eq!(sim.take_one(&a)["ok"], true);
    sim.advance(retry);
    sim.send(&a, json!({"t":"broadcast","ref":"later","d":{"event":"e"}}));
    assert_eq!(sim.take_one(&a)["ok"], true);
}

#[test]
fn sustained_flooding_closes_the_socket() {
    let mut sim = Sim::with_limits("rl", Limits { max_strikes: 5, ..Limits::default() });
    let [a] = quiet(&mut sim, ["alice"]);
    // The first refusal is not a strike (another tab of the user may have spent the budget);
    // every frame sent before its `retryAfterMs` has passed is.
    for _ in 0..(EventClass::Message.rate().burst + 5) {
        sim.send(&a, json!({"t":"message:send","d":{"text":"spam"}}));
    }
    assert!(sim.closed.is_empty());
    sim.send(&a, json!({"t":"message:send","d":{"text":"spam"}}));
    assert_eq!(sim.closed.get(&a), Some(&close::PROTOCOL_ABUSE));
    assert_eq!(sim.store.log.messages.len(), EventClass::Message.rate().burst as usize);
}

#[test]
fn a_read_only_socket_reads_but_every_write_is_forbidden() {
    let mut sim = Sim::new("ro");
    let w = sim.connect("writer");
    let r = sim.connect_with("reader", 60_000, false, None);
    sim.take(&w);
    sim.take(&r);
    sim.send(&w, json!({"t":"message:send","d":{"text":"news"}}));
    assert_eq!(sim.take_one(&r)["t"], "message:receive");
    for (t, d) in [
        ("message:send", json!({"text":"x"})),
        ("typing:start", json!({})),
        ("typing:stop", json!({})),
        ("state:set", json!({"key":"k","value":1})),
        ("signal", json!({"to":"writer"})),
        ("broadcast", json!({"event":"e"})),
    ] {
        sim.send(&r, json!({"t":t,"ref":t,"d":d}));
        assert_eq!(sim.take_one(&r)["error"]["code"], "forbidden", "{t}");
    }
    sim.send(&r, json!({"t":"history:get","ref":"h"}));
    assert_eq!(sim.take_one(&r)["d"]["messages"].as_array().unwrap().len(), 1);
    assert!(sim.take(&w).is_empty());
}

#[test]
fn a_frame_is_answered_with_its_first_failure_event_then_right_then_rate_then_payload() {
    let mut sim = Sim::new("order");
    let w = sim.connect("writer");
    let r = sim.connect_with("reader", 60_000, false, None);
    sim.take(&w);
    sim.take(&r);
    let mut error = |conn: &ConnId, frame: Value| {
        sim.send(conn, frame);
        sim.take_one(conn)["error"].clone()
    };
    let unknown = error(&r, json!({"t":"message:sned","ref":1,"d":{"text":1}}));
    assert_eq!(unknown["code"], "unknown_event");
    assert_eq!(error(&r, json!({"t":"message:send","ref":2,"d":{"text":1}}))["code"], "forbidden");
    let bad = error(&w, json!({"t":"state:set","ref":3,"d":{"key":1,"value":1}}));
    assert_eq!(bad["code"], "bad_request");
    assert!(bad["message"].as_str().unwrap().starts_with("bad state:set payload: invalid type"), "{bad}");
    let missing = error(&w, json!({"t":"message:send","ref":4}));
    assert_eq!(missing["message"], "bad message:send payload: missing field `text`");
    // A bad payload still spends its event's budget, as the event was known and allowed.
    for _ in 0..EventClass::Broadcast.rate().burst {
        assert_eq!(error(&w, json!({"t":"broadcast","ref":5,"d":{}}))["code"], "bad_request");
    }
    assert_eq!(error(&w, json!({"t":"broadcast","ref":6,"d":{}}))["code"], "rate_limited");
    // Typing takes no payload: whatever `d` holds is ignored.
    sim.send(&w, json!({"t":"typing:start","ref":7,"d":5}));
    assert_eq!(sim.take_one(&w)["ok"], true);
    // A payload field given twice is refused, not read as whichever came last.
    sim.send_raw(&w, r#"{"t":"message:send","ref":8,"d":{"text":"a","text":"b"}}"#);
    let twice = sim.take_one(&w);
    assert_eq!((twice["ref"].clone(), twice["error"]["code"].clone()), (json!(8), json!("bad_request")));
}

#[test]
fn an_expired_token_closes_its_socket_unless_refreshed() {
    let mut sim = Sim::new("exp");
    let short = sim.connect_with("alice", 10_000, true, None);
    let other = sim.connect_with("alice", 20_000, true, None);
    sim.take(&short);
    sim.advance(9_999);
    assert!(sim.closed.is_empty());
    sim.advance(1);
    assert_eq!(sim.closed.get(&short), Some(&close::TOKEN_EXPIRED));
    assert!(!sim.closed.contains_key(&other));

    let exp_s = sim.now.as_secs() + 3600;
    let fresh = hs256(&json!({"sub":"alice","exp":exp_s}));
    sim.send(&other, json!({"t":"auth:refresh","ref":"r","d":{"token":fresh}}));
    let reply = of_type(&sim.take(&other), "reply").remove(0);
    assert_eq!(reply["d"], json!({"expires": exp_s * 1000, "canSend": true}));
    assert_eq!(sim.attachments[&other].expires.as_millis(), exp_s as u64 * 1000, "attachment updated");
    sim.advance(20_000);
    assert!(!sim.closed.contains_key(&other), "the refreshed token keeps the socket");
    sim.advance(3_600_000);
    assert_eq!(sim.closed.get(&other), Some(&close::TOKEN_EXPIRED));
}

#[test]
fn refresh_rejects_other_users_bad_tokens_and_lost_rights() {
    let mut sim = Sim::new("ref");
    let [a] = quiet(&mut sim, ["alice"]);
    let exp = sim.now.as_secs() + 60;
    let cases = [
        (hs256(&json!({"sub":"mallory","exp":exp})), "forbidden"),
        (hs256(&json!({"sub":"alice","exp":exp - 120})), "unauthorized"),
        ("garbage".to_owned(), "unauthorized"),
        (hs256(&json!({"sub":"alice","exp":exp,"cap":{"room:other":["join"]}})), "forbidden"),
    ];
    for (token, code) in cases {
        sim.send(&a, json!({"t":"auth:refresh","ref":"r","d":{"token":token}}));
        assert_eq!(sim.take_one(&a)["error"]["code"], code);
    }
    // A refreshed token with only `join` makes the socket read-only.
    let read_only = hs256(&json!({"sub":"alice","exp":exp,"cap":{"room:ref":["join"]}}));
    sim.send(&a, json!({"t":"auth:refresh","ref":"r","d":{"token":read_only}}));
    assert_eq!(sim.take_one(&a)["d"]["canSend"], false);
    sim.send(&a, json!({"t":"message:send","ref":"m","d":{"text":"x"}}));
    assert_eq!(sim.take_one(&a)["error"]["code"], "forbidden");
}

#[test]
fn server_publish_is_a_message_to_everyone_and_idempotent_by_key() {
    let mut sim = Sim::new("pub");
    let [a, b] = quiet(&mut sim, ["alice", "bob"]);
    let publish = |text: &str| Publish {
        text: text.into(),
        data: RawJson::parse(r#"{"kind":"deploy"}"#.into()).ok(),
        user: None,
    };
    let system = UserId::parse("system").unwrap();
    let (ack, effects) = sim
        .object
        .handle_publish(
            system.clone(),
            publish("v2 is out"),
            Some("k-1".into()),
            true,
            sim.now,
            &sim.store.log,
        )
        .unwrap();
    sim.apply(effects);
    // The answer as the HTTP body carries it.
    let ack = serde_json::to_value(&ack).unwrap();
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["id"], "k-1");
    for c in [&a, &b] {
        let got = sim.take_one(c);
        assert_eq!(
            (got["d"]["user"].as_str(), got["d"]["text"].as_str()),
            (Some("system"), Some("v2 is out"))
        );
    }
    let (again, effects) = sim
        .object
        .handle_publish(system, publish("v2 is out"), Some("k-1".into()), true, sim.now, &sim.store.log)
        .unwrap();
    assert!(effects.is_empty());
    let again = serde_json::to_value(&again).unwrap();
    assert_eq!((again["seq"].clone(), again["duplicate"].clone()), (json!(1), json!(true)));
    let empty = Publish { text: String::new(), data: None, user: None };
    let err = sim
        .object
        .handle_publish(UserId::parse("x").unwrap(), empty, None, true, sim.now, &sim.store.log)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

#[test]
fn sockets_per_user_are_capped() {
    let mut sim = Sim::with_limits("cap", Limits { max_sockets_per_user: 2, ..Limits::default() });
    sim.connect("alice");
    let second = sim.connect("alice");
    let alice = UserId::parse("alice").unwrap();
    assert_eq!(sim.object.check_capacity(&alice).unwrap_err().code, ErrorCode::TooManyConnections);
    assert!(sim.object.check_capacity(&UserId::parse("bob").unwrap()).is_ok());
    sim.close(&second);
    assert!(sim.object.check_capacity(&alice).is_ok());
}

#[test]
fn event_streams_open_with_the_missed_messages_then_room_state() {
    let mut sim = Sim::new("sse");
    let [a] = quiet(&mut sim, ["alice"]);
    for text in ["one", "two", "three"] {
        sim.send(&a, json!({"t":"message:send","d":{"text":text}}));
    }
    let resume = switchboard::core::room::Resume { since: 1, epoch: "ep1".into() };
    let opening = sim.object.open_event_stream(Some(&resume), &sim.store.log);
    let events: Vec<&str> = opening.split("\n\n").filter(|e| e.starts_with("event:")).collect();
    assert_eq!(events.len(), 3);
    assert!(events[0].starts_with("event: message:receive\nid: ep1:2\ndata: {"), "{}", events[0]);
    assert!(events[1].contains("id: ep1:3\n"));
    assert_eq!(
        events[2],
        r#"event: room:state
data: {"epoch":"ep1","recovered":true,"room":"sse","seq":3}"#
    );
    let plain = sim.object.open_event_stream(None, &sim.store.log);
    assert!(plain.ends_with("data: {\"epoch\":\"ep1\",\"room\":\"sse\",\"seq\":3}\n\n"));
    assert!(!plain.contains("message:receive"));
}

#[test]
fn the_author_of_a_published_message() {
    use switchboard::core::auth::{Caller, Identity};
    use switchboard::core::caps::Capabilities;
    use switchboard::core::ids::RoomId;
    use switchboard::core::time::Timestamp;
    let room = RoomId::parse("general").unwrap();
    let open = Capabilities::parse(r#"{"*":["join","send"]}"#).unwrap();
    let body = |user: Option<&str>| Publish { text: "x".into(), data: None, user: user.map(str::to_owned) };
    let author =
        |p: &Publish, c: &Caller| p.author(c, &open, &room).map(|u| u.to_string()).map_err(|e| e.code);
    assert_eq!(author(&body(None), &Caller::Server), Ok("system".into()));
    assert_eq!(author(&body(Some("bot")), &Caller::Server), Ok("bot".into()));
    assert_eq!(author(&body(Some("b o t")), &Caller::Server), Err(ErrorCode::BadRequest));
    let user = |caps: Option<&str>| {
        Caller::User(Identity {
            user: UserId::parse("carol").unwrap(),
            expires: Timestamp(0),
            caps: caps.map(|c| Capabilities::parse(c).unwrap()),
            friends: None,
        })
    };
    assert_eq!(
        author(&body(Some("someone-else")), &user(None)),
        Ok("carol".into()),
        "a user cannot pick the author"
    );
    assert_eq!(author(&body(None), &user(Some(r#"{"room:general":["join"]}"#))), Err(ErrorCode::Forbidden));
}

#[test]
fn after_exp_plus_leeway_any_frame_but_auth_refresh_closes_with_4001() {
    let mut config = support::config(Limits::default());
    config.auth.leeway_secs = 30;
    let mut sim = Sim::with_config("leeway", config);
    let a = sim.connect_with("alice", 10_000, true, None);
    let b = sim.connect_with("bob", 10_000, true, None);
    let c = sim.connect_with("carol", 10_000, true, None);
    for conn in [&a, &b, &c] {
        sim.take(conn);
    }
    assert_eq!(
        sim.object.poll_timeout(),
        Some(sim.now.plus_millis(40_000)),
        "the alarm waits for the leeway"
    );

    // The alarm has not run (late, or the object just woke): frames within the leeway count.
    sim.now = sim.now.plus_millis(39_999);
    sim.send(&a, json!({"t":"message:send","ref":1,"d":{"text":"still in time"}}));
    assert_eq!(sim.take_one(&a)["ok"], true);
    sim.take(&b);
    sim.take(&c);

    sim.now = sim.now.plus_millis(1);
    sim.send(&a, json!({"t":"typing:start"}));
    assert_eq!(sim.closed.get(&a), Some(&close::TOKEN_EXPIRED));
    sim.send_raw(&b, "{not json");
    assert_eq!(sim.closed.get(&b), Some(&close::TOKEN_EXPIRED), "a bad frame closes too");
    let left = sim.take(&c);
    assert!(of_type(&left, "typing:update").is_empty(), "the expired frame was not handled");
    assert_eq!(of_type(&left, "member:leave").len(), 2);

    let exp_s = sim.now.as_secs() + 3600;
    let fresh = hs256(&json!({"sub":"carol","exp":exp_s}));
    sim.send(&c, json!({"t":"auth:refresh","ref":"r","d":{"token":fresh}}));
    assert_eq!(sim.take_one(&c)["d"]["expires"], exp_s * 1000);
    sim.send(&c, json!({"t":"message:send","ref":2,"d":{"text":"refreshed"}}));
    assert_eq!(sim.take_one(&c)["ok"], true);
    assert!(!sim.closed.contains_key(&c));
    assert_eq!(
        sim.object.poll_timeout(),
        Some(switchboard::core::time::Timestamp(exp_s as u64 * 1000 + 30_000))
    );
}

#[test]
fn an_admitted_socket_carries_what_the_worker_verified() {
    use switchboard::core::admission::Admission;
    use switchboard::core::room::{ConnInfo, Resume};
    use switchboard::core::time::Timestamp;
    let mut sim = Sim::with_limits("cap", Limits { max_sockets_per_user: 1, ..Limits::default() });
    let alice = UserId::parse("alice").unwrap();
    let conn = ConnId::parse("c9").unwrap();
    let admission = Admission {
        user: Some(alice.clone()),
        expires: Some(Timestamp(9)),
        can_write: true,
        since: Some(4),
        epoch: Some("e".into()),
        ..Admission::default()
    };
    let (info, resume) = sim.object.admit(conn.clone(), &admission).unwrap();
    let expected =
        ConnInfo { conn: conn.clone(), user: alice.clone(), expires: Timestamp(9), can_write: true };
    assert_eq!((info, resume), (expected, Some(Resume { since: 4, epoch: "e".into() })));
    // A `since` without an epoch resumes nothing it can check (`recovered: false`).
    let no_epoch = Admission { epoch: None, ..admission.clone() };
    assert_eq!(
        sim.object.admit(conn.clone(), &no_epoch).unwrap().1,
        Some(Resume { since: 4, epoch: String::new() })
    );
    sim.connect("alice");
    assert_eq!(sim.object.admit(conn.clone(), &admission).unwrap_err().code, ErrorCode::TooManyConnections);
    assert_eq!(sim.object.admit(conn, &Admission::default()).unwrap_err().code, ErrorCode::Internal);
}
