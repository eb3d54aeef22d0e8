//! The user object's rules on a virtual clock: status transitions, watchers across objects,
//! and the notification inbox.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::users::{open_policy, uid, Users, TIMES};
use switchboard::core::caps::Capabilities;
use switchboard::core::config::Limits;
use switchboard::core::object::Object;
use switchboard::core::user::inbox::Inbox;
use switchboard::core::user::watch::WatchPolicy;
use switchboard::core::user::PUSH_WINDOW_MS;

/// `(user, status)` of each `presence:update` about someone in `about`.
fn statuses(frames: &[Value]) -> Vec<(String, String)> {
    statuses_about(frames, &["alice"])
}

fn statuses_about(frames: &[Value], about: &[&str]) -> Vec<(String, String)> {
    frames
        .iter()
        .filter(|f| about.iter().any(|u| f["d"]["user"] == *u))
        .map(|f| (f["d"]["user"].as_str().unwrap().to_owned(), f["d"]["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(user: &str, status: &str) -> (String, String) {
    (user.to_owned(), status.to_owned())
}

#[test]
fn greeting_carries_status_and_unread() {
    let mut net = Users::new();
    net.notify("alice", json!({ "type": "mention" }), None).unwrap();
    let phone = net.connect("alice");
    let state = net.take(&phone, "user:state").remove(0);
    assert_eq!(state["d"]["user"], "alice");
    assert_eq!(state["d"]["status"], "online");
    assert_eq!(state["d"]["lastSeen"], net.now.as_millis());
    assert_eq!(state["d"]["unread"], 1);
    assert!(state["d"]["connId"].is_string());
}

#[test]
fn away_then_offline_then_back_on_every_device_and_watcher() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    let laptop = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["alice"] } }));
    let reply = net.reply(&bob, "s");
    assert_eq!(
        reply["d"]["presence"],
        json!([{ "user": "alice", "status": "online", "lastSeen": net.now.as_millis() }])
    );
    let mine = net.take(&phone, "presence:update");
    assert_eq!(statuses(&mine), vec![pair("alice", "online")], "own status shows on own devices");
    net.take(&laptop, "presence:update");

    net.advance(TIMES.away_ms);
    net.advance(TIMES.offline_ms - TIMES.away_ms);
    let expected = vec![pair("alice", "away"), pair("alice", "offline")];
    assert_eq!(statuses(&net.take(&phone, "presence:update")), expected);
    assert_eq!(statuses(&net.take(&laptop, "presence:update")), expected);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), expected);

    net.send(&laptop, json!({ "t": "presence:active" }));
    assert_eq!(statuses(&net.take(&phone, "presence:update")), vec![pair("alice", "online")]);
    // Watchers were pushed `offline` a moment ago: the next push waits for the window's end.
    assert!(net.take(&bob, "presence:update").is_empty());
    net.advance(PUSH_WINDOW_MS);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "online")]);
}

#[test]
fn any_frame_is_activity_and_postpones_away() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    net.take(&phone, "presence:update");
    net.advance(TIMES.away_ms - 1000);
    net.send(&phone, json!({ "t": "notification:list", "ref": 1 }));
    net.advance(TIMES.away_ms - 1000);
    assert!(net.take(&phone, "presence:update").is_empty(), "still online");
    net.advance(1000);
    assert_eq!(statuses(&net.take(&phone, "presence:update")), vec![pair("alice", "away")]);
}

#[test]
fn a_reload_within_the_grace_period_tells_watchers_nothing() {
    let mut net = Users::new();
    let bob = net.connect("bob");
    let tab = net.connect("alice");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.disconnect(&tab);
    net.advance(TIMES.grace_ms / 2);
    let tab = net.connect("alice");
    net.advance(TIMES.grace_ms);
    assert!(statuses(&net.take(&bob, "presence:update")).is_empty());
    net.disconnect(&tab);
    net.advance(TIMES.grace_ms - 1);
    assert!(statuses(&net.take(&bob, "presence:update")).is_empty());
    net.advance(1);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "offline")]);
}

#[test]
fn busy_is_kept_through_inactivity_and_shown_everywhere() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    let laptop = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.send(
        &phone,
        json!({ "t": "presence:set", "ref": "b", "d": { "status": "busy", "activity": "focus" } }),
    );
    assert_eq!(net.reply(&phone, "b")["d"]["status"], "busy");
    let update = net.take(&laptop, "presence:update").remove(0);
    assert_eq!(update["d"]["activity"], "focus");
    net.advance(TIMES.offline_ms * 3);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "busy")]);
    net.send(&phone, json!({ "t": "presence:set", "ref": "x", "d": { "status": "asleep" } }));
    assert_eq!(net.reply(&phone, "x")["error"]["code"], "bad_request");
}

#[test]
fn watchers_fan_out_to_every_device_and_unsubscribe_stops_it() {
    let mut net = Users::new();
    let alice = net.connect("alice");
    let bob1 = net.connect("bob");
    let bob2 = net.connect("bob");
    let carol = net.connect("carol");
    for (conn, r) in [(&bob1, "b"), (&carol, "c")] {
        net.send(conn, json!({ "t": "presence:subscribe", "ref": r, "d": { "users": ["alice"] } }));
        assert_eq!(net.reply(conn, r)["ok"], true);
    }
    assert_eq!(net.user(&uid("alice")).watchers().len(), 2);
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "away" } }));
    for conn in [&bob1, &bob2, &carol] {
        assert_eq!(statuses(&net.take(conn, "presence:update")), vec![pair("alice", "away")]);
    }
    net.send(&bob2, json!({ "t": "presence:unsubscribe", "ref": "u", "d": { "users": ["alice", "zed"] } }));
    assert_eq!(net.reply(&bob2, "u")["d"]["users"], json!(["alice"]));
    assert!(!net.user(&uid("alice")).watchers().contains_key(&uid("bob")));
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "online" } }));
    net.advance(PUSH_WINDOW_MS);
    assert!(net.take(&bob1, "presence:update").is_empty());
    assert_eq!(statuses(&net.take(&carol, "presence:update")), vec![pair("alice", "online")]);
}

#[test]
fn a_watcher_without_sockets_is_not_woken_and_catches_up_on_return() {
    let mut net = Users::new();
    let alice = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.disconnect(&bob);
    net.advance(TIMES.grace_ms);
    assert!(net.user(&uid("bob")).paused());
    assert_eq!(net.user(&uid("alice")).watchers().get(&uid("bob")), Some(&false), "paused at alice");
    let woken = net.woken.get(&uid("bob")).copied().unwrap_or(0);
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "busy" } }));
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "away" } }));
    assert_eq!(net.woken.get(&uid("bob")).copied().unwrap_or(0), woken, "bob's object was not called");

    let bob = net.connect("bob");
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "away")], "caught up");
    assert_eq!(net.user(&uid("alice")).watchers().get(&uid("bob")), Some(&true));
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "online" } }));
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "online")]);
}

#[test]
fn watching_follows_the_policy_and_its_limits() {
    let mut net = Users::with_limits(Limits { presence_max_watch: 2, ..Limits::default() });
    let friends_only = WatchPolicy { friends: Some([uid("bob")].into()), caps: Capabilities::default() };
    let alice = net.connect_with("alice", friends_only, 3_600_000);
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "1", "d": { "users": ["bob", "carol"] } }));
    let refused = net.reply(&alice, "1");
    assert_eq!(refused["error"]["code"], "forbidden");
    assert!(refused["error"]["message"].as_str().unwrap().contains("carol"));
    assert!(net.user(&uid("alice")).watching().is_empty(), "all or nothing");
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "2", "d": { "users": ["bob", "alice"] } }));
    let ok = net.reply(&alice, "2");
    assert_eq!(
        ok["d"]["presence"],
        json!([{ "user": "bob", "status": "offline", "lastSeen": 0 }]),
        "self skipped"
    );

    let dave = net.connect("dave");
    net.send(&dave, json!({ "t": "presence:subscribe", "ref": "3", "d": { "users": ["a", "b", "c"] } }));
    assert_eq!(net.reply(&dave, "3")["error"]["code"], "too_large");
    for (i, watcher) in ["w1", "w2", "w3"].iter().enumerate() {
        let c = net.connect(watcher);
        net.send(&c, json!({ "t": "presence:subscribe", "ref": i.to_string(), "d": { "users": ["star"] } }));
        let reply = net.reply(&c, &i.to_string());
        assert_eq!(reply["ok"], true);
        if i == 2 {
            assert_eq!(reply["d"]["failed"][0]["error"]["code"], "too_many_connections", "{reply}");
        }
    }

    // A newer token without bob among the friends drops the subscription at both ends.
    let narrower = WatchPolicy { friends: Some([uid("carol")].into()), caps: Capabilities::default() };
    net.connect_with("alice", narrower, 3_600_000);
    assert!(net.user(&uid("alice")).watching().is_empty());
    assert!(net.user(&uid("bob")).watchers().is_empty());
}

#[test]
fn a_late_push_never_overwrites_a_newer_status() {
    let mut net = Users::new();
    net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    let current = net.user(&uid("alice")).status();
    let stale = switchboard::core::user::watch::PresenceUpdate::new(uid("alice"), current, 0);
    let (answer, effects) = net.user(&uid("bob")).presence_pushed(stale);
    assert!(answer.watching && answer.active);
    assert!(effects.is_empty());
}

#[test]
fn status_and_subscriptions_survive_eviction() {
    let mut net = Users::new();
    let alice = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "busy" } }));
    net.take(&bob, "presence:update");
    net.evict(&uid("alice"));
    net.evict(&uid("bob"));
    assert_eq!(net.user(&uid("alice")).status().status, switchboard::core::presence::Status::Busy);
    net.send(&alice, json!({ "t": "presence:set", "d": { "status": "online" } }));
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "online")]);
    net.evict(&uid("alice"));
    net.advance(TIMES.away_ms);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "away")], "timer re-armed");
}

#[test]
fn notify_delivers_to_every_device_once_per_key() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    let laptop = net.connect("alice");
    let n = json!({ "type": "mention", "title": "Bob", "body": "hi", "data": { "room": "r" } });
    let first = net.notify("alice", n.clone(), Some("k1")).unwrap();
    assert_eq!(first, json!({ "id": 1, "unread": 1 }));
    let retry = net.notify("alice", n.clone(), Some("k1")).unwrap();
    assert_eq!(retry, json!({ "id": 1, "unread": 1, "duplicate": true }));
    for conn in [&phone, &laptop] {
        let new = net.take(conn, "notification:new");
        assert_eq!(new.len(), 1);
        assert_eq!(new[0]["d"]["title"], "Bob");
        assert_eq!(new[0]["d"]["read"], false);
        assert_eq!(new[0]["d"]["type"], "mention");
        assert_eq!(
            net.take(conn, "notification:count"),
            vec![json!({ "t": "notification:count", "d": { "unread": 1 } })]
        );
    }
    assert_eq!(net.stores[&uid("alice")].inbox.rows.len(), 1);
    assert_eq!(net.notify("alice", n, Some("k2")).unwrap()["id"], 2);
}

#[test]
fn read_on_one_device_updates_the_count_on_all() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    let laptop = net.connect("alice");
    for _ in 0..3 {
        net.notify("alice", json!({ "type": "t" }), None).unwrap();
    }
    net.take(&phone, "notification:count");
    net.take(&laptop, "notification:count");
    net.send(&phone, json!({ "t": "notification:read", "ref": "r", "d": { "ids": [1, 3, 3, 99] } }));
    assert_eq!(net.reply(&phone, "r")["d"]["unread"], 1);
    for conn in [&phone, &laptop] {
        assert_eq!(net.take(conn, "notification:count")[0]["d"]["unread"], 1);
    }
    net.send(&laptop, json!({ "t": "notification:read", "ref": "again", "d": { "ids": [1] } }));
    assert!(net.take(&phone, "notification:count").is_empty(), "nothing changed, nothing sent");
    net.send(&laptop, json!({ "t": "notification:list", "ref": "l", "d": { "limit": 2 } }));
    let page = net.reply(&laptop, "l");
    let ids: Vec<u64> =
        page["d"]["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [3, 2]);
    assert_eq!(page["d"]["notifications"][0]["read"], true);
    net.send(&laptop, json!({ "t": "notification:list", "ref": "l2", "d": { "before": 2 } }));
    assert_eq!(net.reply(&laptop, "l2")["d"]["notifications"][0]["id"], 1);
    net.send(&laptop, json!({ "t": "notification:read", "ref": "all", "d": { "all": true } }));
    assert_eq!(net.reply(&laptop, "all")["d"]["unread"], 0);
    assert_eq!(net.take(&phone, "notification:count")[0]["d"]["unread"], 0);
    for bad in [json!({}), json!({ "ids": [1], "all": true }), json!({ "all": false }), json!({ "ids": "1" })]
    {
        net.send(&phone, json!({ "t": "notification:read", "ref": "bad", "d": bad }));
        assert_eq!(net.reply(&phone, "bad")["error"]["code"], "bad_request", "{bad}");
    }
}

#[test]
fn retention_drops_oldest_read_first_and_unread_always_matches_the_store() {
    let mut net = Users::with_limits(Limits { notify_retention: 5, ..Limits::default() });
    let alice = uid("alice");
    let phone = net.connect("alice");
    let mut seed = 7u64;
    let mut random = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for step in 0..400 {
        match random(4) {
            0 | 1 => {
                net.notify("alice", json!({ "type": "t" }), Some(&format!("k{}", random(50)))).unwrap();
            }
            2 => {
                let last = net.stores[&alice].inbox.counts().last_id.max(1);
                let ids: Vec<u64> = (0..3).map(|_| 1 + random(last)).collect();
                net.send(&phone, json!({ "t": "notification:read", "d": { "ids": ids } }));
            }
            _ => net.evict(&alice),
        }
        let counts = net.stores[&alice].inbox.counts();
        assert!(counts.total <= 5, "step {step}");
        assert_eq!(net.user(&alice).unread(), counts.unread, "step {step}");
        assert_eq!(net.user(&alice).stored_notifications(), counts.total, "step {step}");
    }
    // Oldest read ones go first: with two read and the cap reached, the next one drops a read one.
    let mut net = Users::with_limits(Limits { notify_retention: 3, ..Limits::default() });
    let phone = net.connect("alice");
    for _ in 0..3 {
        net.notify("alice", json!({ "type": "t" }), None).unwrap();
    }
    net.send(&phone, json!({ "t": "notification:read", "d": { "ids": [2] } }));
    net.notify("alice", json!({ "type": "t" }), None).unwrap();
    let kept: Vec<u64> = net.stores[&alice].inbox.page(None, 10).unwrap().iter().map(|n| n.id).collect();
    assert_eq!(kept, [4, 3, 1]);
    net.notify("alice", json!({ "type": "t" }), None).unwrap();
    let kept: Vec<u64> = net.stores[&alice].inbox.page(None, 10).unwrap().iter().map(|n| n.id).collect();
    assert_eq!(kept, [5, 4, 3], "then the oldest unread");
    assert_eq!(net.user(&alice).unread(), 3);
}

#[test]
fn bad_frames_expired_tokens_and_rate_limits() {
    let mut net = Users::with_limits(Limits { max_strikes: 3, ..Limits::default() });
    let phone = net.connect_with("alice", open_policy(), 60_000);
    net.send(&phone, json!({ "t": "message:send", "ref": "m" }));
    assert_eq!(net.reply(&phone, "m")["error"]["code"], "unknown_event");
    net.send(&phone, json!({ "t": "presence:subscribe", "ref": "p", "d": { "users": ["bad id"] } }));
    assert_eq!(net.reply(&phone, "p")["error"]["code"], "bad_request");
    net.send(
        &phone,
        json!({ "t": "presence:set", "ref": "a", "d": { "status": "busy", "activity": "x".repeat(200) } }),
    );
    assert_eq!(net.reply(&phone, "a")["error"]["code"], "bad_request");
    assert_eq!(net.closed.get(&phone), Some(&4002), "third strike");

    let mut net = Users::new();
    let phone = net.connect_with("alice", open_policy(), 60_000);
    for i in 0..31 {
        net.send(&phone, json!({ "t": "presence:active", "ref": i }));
    }
    let limited = net.take(&phone, "reply").into_iter().filter(|r| r["ok"] == false).collect::<Vec<_>>();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["error"]["code"], "rate_limited");
    net.advance(60_000);
    assert_eq!(net.closed.get(&phone), Some(&4001));
}

#[test]
fn notifications_are_validated() {
    let mut net = Users::new();
    let err = net.notify("alice", json!({ "type": "" }), None).unwrap_err();
    assert_eq!(err.code.as_str(), "bad_request");
    let err = net.notify("alice", json!({ "type": "t" }), Some(&"k".repeat(200))).unwrap_err();
    assert!(err.message.contains("Idempotency-Key"));
    assert_eq!(net.stores.get(&uid("alice")).map_or(0, |s| s.inbox.rows.len()), 0);
}

/// What a client shows of a status: `(status, activity)`; `lastSeen` is only news with a change.
fn view(d: &Value) -> (String, Option<String>) {
    (d["status"].as_str().unwrap().to_owned(), d["activity"].as_str().map(str::to_owned))
}

#[test]
fn a_rejected_frame_is_not_activity() {
    let mut net = Users::with_limits(Limits { max_strikes: 100, ..Limits::default() });
    let alice = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.advance(TIMES.away_ms);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "away")]);
    let writes = net.stores[&uid("alice")].writes;
    // Unknown event, bad payload, malformed frame: rejected, so the user is not active.
    net.send(&alice, json!({ "t": "message:send", "ref": "m", "d": { "text": "hi" } }));
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["bad id"] } }));
    net.send_raw(&alice, "{not json");
    assert_eq!(net.reply(&alice, "m")["ok"], false);
    assert_eq!(net.reply(&alice, "s")["ok"], false);
    let stored = net.stores[&uid("alice")].presence.clone().unwrap();
    assert_eq!(stored.presence.current().status, switchboard::core::presence::Status::Away, "stored");
    assert_eq!(net.stores[&uid("alice")].writes, writes, "nothing stored for a rejected frame");
    // A watcher subscribing now sees what the old watcher was told.
    let carol = net.connect("carol");
    net.send(&carol, json!({ "t": "presence:subscribe", "ref": "c", "d": { "users": ["alice"] } }));
    assert_eq!(net.reply(&carol, "c")["d"]["presence"][0]["status"], "away");
    // A valid frame is activity, stored and announced together (to watchers within the window).
    net.send(&alice, json!({ "t": "notification:list", "ref": "l" }));
    net.advance(PUSH_WINDOW_MS);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "online")]);
    assert_eq!(statuses(&net.take(&carol, "presence:update")), vec![pair("alice", "online")]);
}

#[test]
fn stored_status_always_matches_what_watchers_were_told() {
    let frames = [
        json!({ "t": "presence:active" }),
        json!({ "t": "presence:active", "ref": "a" }),
        json!({ "t": "presence:set", "d": { "status": "away" } }),
        json!({ "t": "presence:set", "d": { "status": "online", "activity": "x" } }),
        json!({ "t": "presence:set", "d": { "status": "busy" } }),
        json!({ "t": "presence:set", "d": { "status": "offline", "activity": "y" } }),
        json!({ "t": "presence:set", "d": { "status": "asleep" } }),
        json!({ "t": "presence:set", "d": { "status": "busy", "activity": "z".repeat(200) } }),
        json!({ "t": "message:send", "d": { "text": "hi" } }),
        json!({ "t": "presence:subscribe", "d": { "users": ["bad id"] } }),
        json!({ "t": "notification:list", "ref": "l" }),
        json!({ "t": "auth:refresh", "d": { "token": "not a token" } }),
    ];
    let alice = uid("alice");
    // Tokens outlive the run (300 steps of up to 10 minutes).
    let ttl = 100 * 3_600_000;
    for seed in 1..=40u64 {
        let mut rng = support::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut net = Users::new();
        let mut devices = vec![net.connect_with("alice", open_policy(), ttl)];
        let bob = net.connect_with("bob", open_policy(), ttl);
        net.send(&bob, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["alice"] } }));
        let mut bob_view = view(&net.reply(&bob, "s")["d"]["presence"][0]);
        // What each of alice's devices was last told about her: the greeting, then updates.
        let mut own = BTreeMap::new();
        for step in 0..300 {
            match rng.below(10) {
                0..=4 => {
                    if let Some(conn) = devices.iter().find(|c| !net.closed.contains_key(*c)).cloned() {
                        if rng.below(6) == 0 {
                            net.send_raw(&conn, "{\"t\": 1");
                        } else {
                            net.send(&conn, rng.pick(&frames).clone());
                        }
                    }
                }
                5 | 6 => net.advance(*rng.pick(&[
                    10,
                    300,
                    PUSH_WINDOW_MS,
                    40_000,
                    TIMES.away_ms,
                    TIMES.offline_ms,
                ])),
                7 => {
                    let open: Vec<_> =
                        devices.iter().filter(|c| !net.closed.contains_key(*c)).cloned().collect();
                    if open.len() > 1 || (!open.is_empty() && rng.below(2) == 0) {
                        net.disconnect(rng.pick(&open));
                    } else {
                        devices.push(net.connect_with("alice", open_policy(), ttl));
                    }
                }
                8 => net.evict(&alice),
                _ => net.evict(&uid("bob")),
            }
            let ctx = format!("seed {seed} step {step}");
            let saved = net.stores[&alice].presence.clone().unwrap_or_default();
            let current = saved.presence.current();
            let stored = view(&serde_json::to_value(&current).unwrap());
            for conn in devices.iter().filter(|c| !net.closed.contains_key(*c)) {
                let got = net.sockets.get_mut(conn).unwrap();
                for f in got.drain(..) {
                    if f["t"] == "user:state" || (f["t"] == "presence:update" && f["d"]["user"] == "alice") {
                        own.insert(conn.clone(), view(&f["d"]));
                    }
                }
                assert_eq!(own.get(conn), Some(&stored), "{ctx}: own device {conn:?}");
            }
            if let Some(f) = net.take(&bob, "presence:update").iter().rfind(|f| f["d"]["user"] == "alice") {
                bob_view = view(&f["d"]);
            }
            let bob_rev = net.stores[&uid("bob")].watching.get(&alice).copied();
            if saved.unpushed {
                // Coalesced: the push is owed, and the alarm makes it within the window.
                let alarm = net.alarms.get(&alice).copied();
                assert!(alarm.is_some_and(|at| at <= net.now.plus_millis(PUSH_WINDOW_MS)), "{ctx}: no alarm");
            } else {
                assert_eq!(bob_rev, Some(saved.rev), "{ctx}: watcher's revision");
                assert_eq!(bob_view, stored, "{ctx}: watcher's view");
            }
        }
        // Once the window has passed, the old watcher and a new one agree with the store.
        net.advance(PUSH_WINDOW_MS);
        if let Some(f) = net.take(&bob, "presence:update").iter().rfind(|f| f["d"]["user"] == "alice") {
            bob_view = view(&f["d"]);
        }
        let saved = net.stores[&alice].presence.clone().unwrap_or_default();
        assert_eq!(bob_view, view(&serde_json::to_value(saved.presence.current()).unwrap()), "seed {seed}");
        let carol = net.connect("carol");
        net.send(&carol, json!({ "t": "presence:subscribe", "ref": "c", "d": { "users": ["alice"] } }));
        assert_eq!(view(&net.reply(&carol, "c")["d"]["presence"][0]), bob_view, "seed {seed}");
    }
}

#[test]
fn a_reconnect_does_not_reset_the_frame_budget() {
    let burst = switchboard::core::user::FRAME_RATE.burst;
    let limited = |net: &mut Users, conn| {
        net.take(conn, "reply")
            .into_iter()
            .filter(|r| r["ok"] == false)
            .map(|r| r["error"]["code"].clone())
            .collect::<Vec<_>>()
    };
    let mut net = Users::new();
    let phone = net.connect("alice");
    for i in 0..burst {
        net.send(&phone, json!({ "t": "presence:active", "ref": i }));
    }
    assert!(limited(&mut net, &phone).is_empty(), "the burst is allowed");
    net.disconnect(&phone);
    let again = net.connect("alice");
    net.send(&again, json!({ "t": "presence:active", "ref": "r" }));
    assert_eq!(limited(&mut net, &again), vec![json!("rate_limited")], "a reconnect buys no fresh burst");
    // Another device of the same user draws from the same budget.
    let laptop = net.connect("alice");
    net.send(&laptop, json!({ "t": "presence:active", "ref": "l" }));
    assert_eq!(limited(&mut net, &laptop), vec![json!("rate_limited")], "one budget per user");
    // It refills at the sustained rate, shared too.
    net.advance(1000 / u64::from(switchboard::core::user::FRAME_RATE.per_sec));
    net.send(&laptop, json!({ "t": "presence:active", "ref": "l2" }));
    assert!(limited(&mut net, &laptop).is_empty());
    net.send(&again, json!({ "t": "presence:active", "ref": "r2" }));
    assert_eq!(limited(&mut net, &again), vec![json!("rate_limited")]);
}

#[test]
fn in_flight_subscribes_count_against_the_watch_limit() {
    let mut net = Users::new();
    let max = Limits::default().presence_max_watch;
    let alice = net.connect("alice");
    net.hold_watch = true;
    for i in 0..10 {
        let users: Vec<String> = (0..max).map(|j| format!("u{i}-{j}")).collect();
        net.send(&alice, json!({ "t": "presence:subscribe", "ref": i.to_string(), "d": { "users": users } }));
    }
    for i in 1..10 {
        assert_eq!(net.reply(&alice, &i.to_string())["error"]["code"], "too_large", "subscribe {i}");
    }
    assert_eq!(net.held.len(), 1, "only the first subscribe calls anyone");
    net.release();
    let first = net.reply(&alice, "0");
    assert_eq!(first["d"]["presence"].as_array().unwrap().len(), max);
    assert_eq!(net.user(&uid("alice")).watching().len(), max);

    // Asking again for users already in flight does not count them twice.
    let mut net = Users::with_limits(Limits { presence_max_watch: 2, ..Limits::default() });
    let alice = net.connect("alice");
    net.hold_watch = true;
    for r in ["a", "b"] {
        net.send(&alice, json!({ "t": "presence:subscribe", "ref": r, "d": { "users": ["bob", "carol"] } }));
    }
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "c", "d": { "users": ["dave"] } }));
    assert_eq!(net.reply(&alice, "c")["error"]["code"], "too_large");
    net.release();
    for r in ["a", "b"] {
        assert_eq!(net.reply(&alice, r)["d"]["presence"].as_array().unwrap().len(), 2);
    }
    assert_eq!(net.user(&uid("alice")).watching().len(), 2);
}

#[test]
fn an_unsubscribe_racing_a_subscribe_is_undone_when_its_answers_land() {
    let mut net = Users::new();
    let alice = net.connect("alice");
    let bob = net.connect("bob");
    net.hold_watch = true;
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["bob"] } }));
    // The unwatch reaches bob's object before the watch does.
    net.send(&alice, json!({ "t": "presence:unsubscribe", "ref": "u", "d": { "users": ["bob"] } }));
    assert_eq!(
        net.reply(&alice, "u")["d"]["users"],
        json!(["bob"]),
        "the subscription in flight is cancelled"
    );
    net.release();
    let reply = net.reply(&alice, "s");
    assert_eq!(reply["d"]["presence"], json!([]));
    assert_eq!(reply["d"]["failed"][0]["user"], "bob");
    assert_eq!(reply["d"]["failed"][0]["error"]["code"], "conflict");
    assert!(net.user(&uid("alice")).watching().is_empty());
    assert!(net.stores[&uid("alice")].watching.is_empty());
    assert!(net.user(&uid("bob")).watchers().is_empty(), "undone at bob's object");
    assert!(net.stores[&uid("bob")].watchers.is_empty());
    net.send(&bob, json!({ "t": "presence:set", "d": { "status": "busy" } }));
    assert!(statuses_about(&net.take(&alice, "presence:update"), &["bob"]).is_empty());

    // Unsubscribing and subscribing again while the first is in flight keeps the subscription.
    net.hold_watch = true;
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "1", "d": { "users": ["bob"] } }));
    net.send(&alice, json!({ "t": "presence:unsubscribe", "d": { "users": ["bob"] } }));
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "2", "d": { "users": ["bob"] } }));
    net.release();
    assert_eq!(net.reply(&alice, "2")["d"]["presence"][0]["status"], "busy");
    assert!(net.user(&uid("alice")).watching().contains_key(&uid("bob")));
    assert_eq!(net.user(&uid("bob")).watchers().get(&uid("alice")), Some(&true));

    // Nor does a resume (a socket coming back) that an unsubscribe overtakes.
    net.disconnect(&alice);
    net.advance(TIMES.grace_ms);
    assert_eq!(net.user(&uid("bob")).watchers().get(&uid("alice")), Some(&false), "paused");
    net.hold_watch = true;
    let alice = net.connect("alice");
    net.send(&alice, json!({ "t": "presence:unsubscribe", "ref": "u2", "d": { "users": ["bob"] } }));
    assert_eq!(net.reply(&alice, "u2")["d"]["users"], json!(["bob"]));
    net.release();
    assert!(net.user(&uid("alice")).watching().is_empty());
    assert!(net.stores[&uid("alice")].watching.is_empty());
    assert!(net.user(&uid("bob")).watchers().is_empty(), "the resume is undone at bob's object");
}

#[test]
fn a_narrower_token_racing_a_subscribe_is_undone_when_its_answers_land() {
    let mut net = Users::new();
    let alice = net.connect("alice");
    net.hold_watch = true;
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["bob", "carol"] } }));
    let exp = net.now.as_millis() / 1000 + 3600;
    let token = support::hs256(&json!({ "sub": "alice", "exp": exp, "friends": ["carol"] }));
    net.send(&alice, json!({ "t": "auth:refresh", "ref": "r", "d": { "token": token } }));
    assert_eq!(net.reply(&alice, "r")["ok"], true);
    net.release();
    let reply = net.reply(&alice, "s");
    assert_eq!(reply["d"]["presence"][0]["user"], "carol");
    assert_eq!(reply["d"]["presence"].as_array().unwrap().len(), 1);
    assert_eq!(reply["d"]["failed"][0]["user"], "bob");
    assert_eq!(reply["d"]["failed"][0]["error"]["code"], "forbidden");
    let watching: Vec<_> = net.user(&uid("alice")).watching().keys().cloned().collect();
    assert_eq!(watching, vec![uid("carol")]);
    assert!(net.user(&uid("bob")).watchers().is_empty(), "undone at bob's object");
    assert_eq!(net.user(&uid("carol")).watchers().get(&uid("alice")), Some(&true));
}

#[test]
fn flapping_status_is_pushed_at_most_once_per_window_and_the_last_one_wins() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    let laptop = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.take(&laptop, "presence:update");
    let woken = |net: &Users| net.woken.get(&uid("bob")).copied().unwrap_or(0);
    let before = woken(&net);
    for i in 0..10 {
        let status = if i % 2 == 0 { "away" } else { "online" };
        net.send(&phone, json!({ "t": "presence:set", "d": { "status": status } }));
        net.advance(PUSH_WINDOW_MS / 20);
    }
    net.send(&phone, json!({ "t": "presence:set", "d": { "status": "busy", "activity": "focus" } }));
    assert_eq!(net.take(&laptop, "presence:update").len(), 11, "own devices see every change at once");
    assert_eq!(
        statuses(&net.take(&bob, "presence:update")),
        vec![pair("alice", "away")],
        "the first at once"
    );
    assert_eq!(woken(&net) - before, 1);
    net.advance(PUSH_WINDOW_MS);
    let last = net.take(&bob, "presence:update");
    assert_eq!(statuses(&last), vec![pair("alice", "busy")], "then the latest, once");
    assert_eq!(last[0]["d"]["activity"], "focus");
    assert_eq!(woken(&net) - before, 2);
    assert_eq!(
        net.stores[&uid("bob")].watching[&uid("alice")],
        net.stores[&uid("alice")].presence.as_ref().unwrap().rev
    );
    // After a quiet window the next change goes out at once again.
    net.advance(PUSH_WINDOW_MS);
    net.send(&phone, json!({ "t": "presence:set", "d": { "status": "online" } }));
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "online")]);
}

#[test]
fn a_coalesced_push_survives_eviction() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.send(&phone, json!({ "t": "presence:set", "d": { "status": "away" } }));
    net.send(&phone, json!({ "t": "presence:set", "d": { "status": "busy" } }));
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "away")]);
    net.evict(&uid("alice"));
    net.advance(PUSH_WINDOW_MS);
    assert_eq!(
        statuses(&net.take(&bob, "presence:update")),
        vec![pair("alice", "busy")],
        "owed push made after the wake"
    );
    assert!(!net.stores[&uid("alice")].presence.as_ref().unwrap().unpushed);
}

#[test]
fn after_exp_plus_leeway_any_frame_but_auth_refresh_closes_with_4001() {
    let mut net = Users::new();
    net.config.auth.leeway_secs = 30;
    let phone = net.connect_with("alice", open_policy(), 10_000);
    let laptop = net.connect_with("alice", open_policy(), 10_000);
    let start = net.now;
    assert_eq!(net.alarms[&uid("alice")], start.plus_millis(40_000), "the alarm waits for the leeway");

    // The alarm has not run (late, or the object just woke): frames within the leeway count.
    net.now = start.plus_millis(39_999);
    net.send(&phone, json!({ "t": "presence:active", "ref": "a" }));
    assert_eq!(net.reply(&phone, "a")["ok"], true);

    net.now = start.plus_millis(40_000);
    net.send(&phone, json!({ "t": "presence:active", "ref": "b" }));
    assert_eq!(net.closed.get(&phone), Some(&4001));
    assert!(net.take(&phone, "reply").is_empty(), "the expired frame was not handled");

    let exp_s = net.now.as_secs() + 3600;
    let fresh = support::hs256(&json!({ "sub": "alice", "exp": exp_s }));
    net.send(&laptop, json!({ "t": "auth:refresh", "ref": "r", "d": { "token": fresh } }));
    assert_eq!(net.reply(&laptop, "r")["d"]["expires"], exp_s * 1000);
    net.send(&laptop, json!({ "t": "presence:active", "ref": "c" }));
    assert_eq!(net.reply(&laptop, "c")["ok"], true);
    assert!(!net.closed.contains_key(&laptop));
}

#[test]
fn closing_the_last_socket_while_evicted_tells_watchers_offline_after_the_grace_period() {
    let mut net = Users::new();
    let alice = uid("alice");
    let phone = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["alice"] } }));
    net.reply(&bob, "s");
    net.take(&bob, "presence:update");
    net.advance(60_000);
    net.evict(&alice);

    net.disconnect(&phone);
    net.advance(TIMES.grace_ms - 1);
    assert!(net.take(&bob, "presence:update").is_empty(), "not before the grace period");
    net.advance(1);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "offline")]);
    assert_eq!(net.user(&alice).connection_count(), 0);
}

#[test]
fn a_user_whose_sockets_vanished_unseen_goes_offline_after_the_grace_period_once_woken() {
    let mut net = Users::new();
    let alice = uid("alice");
    let phone = net.connect("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["alice"] } }));
    net.reply(&bob, "s");
    net.take(&bob, "presence:update");
    net.evict(&alice);
    net.vanish(&phone);

    // The next wake (here the away alarm, which the platform kept) finds no socket: the grace
    // period starts then, and is stored, so another eviction does not lose it.
    net.advance(TIMES.away_ms);
    assert!(statuses(&net.take(&bob, "presence:update")).is_empty(), "not before the grace period");
    net.evict(&alice);
    net.advance(TIMES.grace_ms);
    assert_eq!(statuses(&net.take(&bob, "presence:update")), vec![pair("alice", "offline")]);
    assert_eq!(net.user(&alice).status().status, switchboard::core::presence::Status::Offline);
}

/// The shell's contract when anything fails after it accepted a socket: it closes the socket
/// (1011) and hands the close to the core, which must then keep no presence for it.
#[test]
fn a_socket_dropped_right_after_connect_leaves_no_presence() {
    let mut net = Users::new();
    let alice = uid("alice");
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    let tab = net.connect("alice");
    net.disconnect(&tab);
    assert_eq!(net.user(&alice).connection_count(), 0);
    net.advance(TIMES.grace_ms);
    assert_eq!(
        statuses(&net.take(&bob, "presence:update")),
        vec![pair("alice", "online"), pair("alice", "offline")]
    );
    assert_eq!(net.user(&alice).status().status, switchboard::core::presence::Status::Offline);
    assert_eq!(net.user(&alice).poll_timeout(), None, "no timer of the dropped socket is left");
}

#[test]
fn stats_count_devices_the_inbox_and_the_watch_lists() {
    let mut net = Users::new();
    net.notify("alice", json!({ "type": "mention" }), None).unwrap();
    net.connect("alice");
    net.open_stream("alice").unwrap();
    net.http_subscribe("alice", &["bob"]).unwrap();
    let stats = Value::Object(net.user(&uid("alice")).stats());
    assert_eq!(stats["user"], "alice");
    assert_eq!(stats["presence"]["status"], "online");
    assert_eq!((stats["connections"].clone(), stats["streams"].clone()), (json!(1), json!(1)));
    assert_eq!((stats["unread"].clone(), stats["notifications"].clone()), (json!(1), json!(1)));
    assert_eq!((stats["watching"].clone(), stats["paused"].clone()), (json!(["bob"]), json!(false)));
    assert_eq!(Value::Object(net.user(&uid("bob")).stats())["watchers"], json!({ "alice": true }));
}

#[test]
fn http_requests_are_decoded_once_and_answered_as_the_socket_answers() {
    use switchboard::core::admission::Admission;
    use switchboard::core::error::ErrorCode;
    use switchboard::core::user::endpoint::{Endpoint, HttpRequest};
    use switchboard::core::user::request::{NotificationList, Users as UserList};
    let none = Admission::default();
    let page = Admission { before: Some(9), limit: Some(5), ..Admission::default() };
    let list = NotificationList { before: Some(9), limit: Some(5) };
    assert_eq!(Endpoint::parse("/notifications", "", &page), Ok(Endpoint::Now(HttpRequest::List(list))));
    assert_eq!(Endpoint::parse("/events", "", &none), Ok(Endpoint::Events));
    let bob = Endpoint::Subscribe(UserList { users: vec![uid("bob")] });
    assert_eq!(Endpoint::parse("/subscribe", r#"{"users": ["bob"]}"#, &none), Ok(bob));
    let unknown = Endpoint::parse("/nope", "", &none).unwrap_err();
    assert_eq!((unknown.code, unknown.message.as_str()), (ErrorCode::NotFound, "no such user endpoint"));
    for (path, what) in [
        ("/notify", r#"{"notification", "key"?}"#),
        ("/read", r#"{"ids": [...]} or {"all": true}"#),
        ("/status", r#"{"status", "activity"?}"#),
        ("/subscribe", r#"{"users": [...]}"#),
        ("/unsubscribe", r#"{"users": [...]}"#),
        ("/watch", r#"{"watcher", "active"}"#),
        ("/unwatch", r#"{"watcher"}"#),
        ("/presence", "a presence update"),
    ] {
        let e = Endpoint::parse(path, "1", &none).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{path}");
        assert!(e.message.starts_with(&format!("body must be {what}: ")), "{path}: {}", e.message);
    }

    let mut net = Users::new();
    let phone = net.connect("alice");
    net.take(&phone, "user:state");
    net.notify("alice", json!({ "type": "t" }), None).unwrap();
    net.notify("alice", json!({ "type": "t" }), None).unwrap();
    let inbox = net.http("alice", "/notifications", Value::Null).unwrap();
    assert_eq!(inbox["unread"], 2);
    assert_eq!(inbox["notifications"][0]["id"], 2, "newest first");
    net.send(&phone, json!({ "t": "notification:list", "ref": "l" }));
    assert_eq!(net.reply(&phone, "l")["d"], inbox, "the socket's reply is the same page");
    assert_eq!(net.http("alice", "/read", json!({ "all": true })).unwrap(), json!({ "unread": 0 }));
    assert_eq!(net.take(&phone, "notification:count").last().unwrap()["d"]["unread"], 0);

    let update = net.http("bob", "/watch", json!({ "watcher": "alice", "active": true })).unwrap();
    assert_eq!(update["user"], "bob");
    assert_eq!(net.user(&uid("bob")).watchers().get(&uid("alice")), Some(&true));
    assert_eq!(net.http("bob", "/unwatch", json!({ "watcher": "alice" })).unwrap(), json!({}));
    assert!(net.user(&uid("bob")).watchers().is_empty());
    let pushed = net.http("alice", "/presence", update).unwrap();
    assert_eq!(pushed["watching"], false, "alice does not watch bob");
}

#[test]
fn a_subscribe_from_a_socket_owes_that_socket_its_reply_and_a_resume_owes_none() {
    use switchboard::core::user::{User, UserCall};
    let mut net = Users::new();
    let alice = net.connect("alice");
    net.hold_watch = true;
    net.send(&alice, json!({ "t": "presence:subscribe", "ref": "s", "d": { "users": ["bob"] } }));
    let (_, call) = net.held.pop().expect("a held watch call");
    assert_eq!(User::owed(&call), Some(&alice));
    let resume = UserCall::Watch { users: vec![uid("bob")], active: true, reply: None };
    assert_eq!(User::owed(&resume), None);
    assert_eq!(User::owed(&UserCall::Unwatch(vec![uid("bob")])), None);
}
