//! The user's event stream (`GET /v1/users/me/events`) and the HTTP writes of clients on the
//! fallback, on a virtual clock: a stream is a device like a socket.

mod support;

use serde_json::{json, Value};
use support::users::{open_policy, uid, Users, TIMES};
use switchboard::core::config::Limits;
use switchboard::core::error::ErrorCode;
use switchboard::core::object::Object;
use switchboard::core::user::PUSH_WINDOW_MS;

fn statuses(frames: &[Value], about: &str) -> Vec<String> {
    frames.iter().filter(|d| d["user"] == about).map(|d| d["status"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_stream_gets_user_state_first_then_what_sockets_get() {
    let mut net = Users::new();
    net.notify("alice", json!({ "type": "mention" }), None).unwrap();
    let stream = net.open_stream("alice").unwrap();
    let events = net.streams[&stream].clone();
    let (first, state) = &events[0];
    assert_eq!(first, "user:state", "user:state comes first");
    assert_eq!(state["user"], "alice");
    assert_eq!(state["status"], "online");
    assert_eq!(state["unread"], 1);
    assert_eq!(state["connId"], stream.to_string());
    assert_eq!(state["lastSeen"], net.now.as_millis());

    // Notifications and the count arrive as on a socket.
    let phone = net.connect("alice");
    net.take_events(&stream, "presence:update");
    net.notify("alice", json!({ "type": "mention", "title": "hi" }), None).unwrap();
    let new = net.take_events(&stream, "notification:new");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["title"], "hi");
    assert_eq!(net.take_events(&stream, "notification:count"), vec![json!({ "unread": 2 })]);
    assert_eq!(net.take(&phone, "notification:new").len(), 1, "the socket gets it too");

    // Read on the socket: the stream gets the new count.
    net.send(&phone, json!({ "t": "notification:read", "d": { "all": true } }));
    assert_eq!(net.take_events(&stream, "notification:count"), vec![json!({ "unread": 0 })]);

    // Watched users' changes arrive as presence:update.
    let bob = net.connect("bob");
    assert_eq!(net.http_subscribe("alice", &["bob"]).unwrap()["presence"][0]["status"], "online");
    net.send(&bob, json!({ "t": "presence:set", "d": { "status": "busy" } }));
    net.advance(PUSH_WINDOW_MS);
    assert_eq!(statuses(&net.take_events(&stream, "presence:update"), "bob"), ["busy"]);
}

#[test]
fn an_open_stream_keeps_the_user_online_and_its_end_starts_the_grace_period() {
    let mut net = Users::new();
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    net.take(&bob, "presence:update");

    let stream = net.open_stream("alice").unwrap();
    assert_eq!(
        statuses(
            &net.take(&bob, "presence:update").iter().map(|f| f["d"].clone()).collect::<Vec<_>>(),
            "alice"
        ),
        ["online"]
    );
    assert_eq!(net.user(&uid("alice")).stream_count(), 1);

    // A reload within the grace period tells watchers nothing.
    net.drop_stream(&stream);
    net.advance(TIMES.grace_ms / 2);
    let stream = net.open_stream("alice").unwrap();
    net.advance(TIMES.grace_ms);
    assert!(net.take(&bob, "presence:update").is_empty());

    // The last device leaving: offline after the grace period, and subscriptions pause.
    net.drop_stream(&stream);
    net.advance(TIMES.grace_ms - 1);
    assert!(net.take(&bob, "presence:update").is_empty());
    net.advance(1);
    let updates: Vec<Value> = net.take(&bob, "presence:update").iter().map(|f| f["d"].clone()).collect();
    assert_eq!(statuses(&updates, "alice"), ["offline"]);
    assert!(net.user(&uid("alice")).paused());
}

#[test]
fn a_stream_without_activity_goes_away_like_a_socket_and_active_brings_it_back() {
    let mut net = Users::new();
    let stream = net.open_stream("alice").unwrap();
    net.take_events(&stream, "presence:update");
    net.advance(TIMES.away_ms);
    assert_eq!(statuses(&net.take_events(&stream, "presence:update"), "alice"), ["away"]);
    net.http_active("alice").unwrap();
    assert_eq!(statuses(&net.take_events(&stream, "presence:update"), "alice"), ["online"]);
}

#[test]
fn streams_count_with_sockets_toward_the_limit() {
    let mut net = Users::with_limits(Limits { max_sockets_per_user: 2, ..Limits::default() });
    let _phone = net.connect("alice");
    let stream = net.open_stream("alice").unwrap();
    assert_eq!(net.open_stream("alice").unwrap_err().code, ErrorCode::TooManyConnections);
    assert_eq!(net.user(&uid("alice")).check_capacity().unwrap_err().code, ErrorCode::TooManyConnections);
    net.drop_stream(&stream);
    assert!(net.open_stream("alice").is_ok(), "a dropped stream frees its place");
}

#[test]
fn a_stream_ends_with_a_close_event_at_exp_plus_leeway() {
    let mut net = Users::new();
    net.config.auth.leeway_secs = 5;
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    let stream = net.open_stream_with("alice", open_policy(), 60_000).unwrap();
    net.take(&bob, "presence:update");
    net.advance(60_000 + 4_999);
    assert!(!net.ended.contains_key(&stream), "the leeway holds");
    net.advance(1);
    let last = net.ended[&stream].clone().expect("a last event");
    assert_eq!(last, ("close".to_owned(), json!({ "code": 4001, "reason": "token expired" })));
    assert_eq!(net.user(&uid("alice")).stream_count(), 0);
    // Its end is a device leaving: offline after the grace period.
    net.advance(TIMES.grace_ms);
    let updates: Vec<Value> = net.take(&bob, "presence:update").iter().map(|f| f["d"].clone()).collect();
    assert_eq!(statuses(&updates, "alice"), ["offline"]);
}

#[test]
fn open_streams_get_a_keepalive_every_interval() {
    let mut net = Users::with_limits(Limits { sse_keepalive_ms: 1_000, ..Limits::default() });
    let stream = net.open_stream("alice").unwrap();
    net.advance(3_500);
    assert_eq!(net.take_events(&stream, "keepalive").len(), 3);
    net.drop_stream(&stream);
    assert_eq!(
        net.user(&uid("alice")).poll_timeout(),
        Some(net.now.plus_millis(TIMES.grace_ms)),
        "no keepalive left"
    );
}

#[test]
fn a_stream_too_far_behind_is_to_be_ended() {
    let net = Users::with_limits(Limits { recovery_max_bytes: 100, ..Limits::default() });
    let mut net = net;
    let user = net.user(&uid("alice"));
    assert!(user.stream_keeps_up(100));
    assert!(!user.stream_keeps_up(101));
}

#[test]
fn the_status_route_sets_and_announces_like_presence_set() {
    let mut net = Users::new();
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    // Without a device there is nothing to hold the status: refused.
    let refused = net.http_status("alice", json!({ "status": "busy" })).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict);
    assert_eq!(net.http_active("alice").unwrap_err().code, ErrorCode::Conflict);

    let stream = net.open_stream("alice").unwrap();
    let phone = net.connect("alice");
    net.take_events(&stream, "presence:update");
    net.take(&phone, "presence:update");
    net.advance(PUSH_WINDOW_MS);
    net.take(&bob, "presence:update");
    let answer = net.http_status("alice", json!({ "status": "busy", "activity": "focus" })).unwrap();
    assert_eq!(answer["status"], "busy");
    assert_eq!(answer["activity"], "focus");
    let on_stream = net.take_events(&stream, "presence:update");
    assert_eq!(on_stream[0]["activity"], "focus");
    assert_eq!(statuses(&on_stream, "alice"), ["busy"]);
    assert_eq!(net.take(&phone, "presence:update").len(), 1, "and on the socket");
    net.advance(PUSH_WINDOW_MS);
    let updates: Vec<Value> = net.take(&bob, "presence:update").iter().map(|f| f["d"].clone()).collect();
    assert_eq!(statuses(&updates, "alice"), ["busy"], "and to watchers");

    let bad = net.http_status("alice", json!({ "status": "asleep" })).unwrap_err();
    assert_eq!(bad.code, ErrorCode::BadRequest);
    let long =
        net.http_status("alice", json!({ "status": "busy", "activity": "x".repeat(129) })).unwrap_err();
    assert_eq!(long.code, ErrorCode::BadRequest);
}

#[test]
fn http_writes_draw_from_the_users_frame_budget() {
    let mut net = Users::new();
    let phone = net.connect("alice");
    for i in 0..20 {
        net.send(&phone, json!({ "t": "presence:active", "ref": i }));
    }
    for _ in 0..10 {
        net.http_active("alice").unwrap();
    }
    let limited = net.http_status("alice", json!({ "status": "online" })).unwrap_err();
    assert_eq!(limited.code, ErrorCode::RateLimited);
    assert!(limited.retry_after_ms.is_some());
    assert_eq!(net.http_subscribe("alice", &["bob"]).unwrap_err().code, ErrorCode::RateLimited);
    net.advance(1_000);
    assert!(net.http_active("alice").is_ok(), "refilled");
}

#[test]
fn subscribing_over_http_answers_like_the_socket_reply() {
    let mut net = Users::new();
    let _carol = net.connect("carol");
    let stream = net.open_stream("alice").unwrap();
    let answer = net.http_subscribe("alice", &["carol", "dave", "alice"]).unwrap();
    let mut users: Vec<&str> =
        answer["presence"].as_array().unwrap().iter().map(|p| p["user"].as_str().unwrap()).collect();
    users.sort();
    assert_eq!(users, ["carol", "dave"], "yourself is ignored");
    assert!(net.user(&uid("carol")).watchers().contains_key(&uid("alice")));

    let gone = net.http_unsubscribe("alice", &["carol", "zed"]).unwrap();
    assert_eq!(gone, json!({ "users": ["carol"] }));
    assert!(!net.user(&uid("carol")).watchers().contains_key(&uid("alice")));
    net.take_events(&stream, "presence:update");

    // A token that does not allow watching: forbidden, nothing subscribed.
    let mut net = Users::new();
    let policy = switchboard::core::user::watch::WatchPolicy::default();
    net.open_stream_with("erin", policy.clone(), 3_600_000).unwrap();
    assert_eq!(net.http_subscribe_with("erin", policy, &["carol"]).unwrap_err().code, ErrorCode::Forbidden);
    assert!(net.user(&uid("erin")).watching().is_empty());
}

/// Found in review: the HTTP subscribe was judged by the policy a device last connected with,
/// which outlives every device, so a token whose `friends` no longer names carol could still
/// read her status. The asking token decides, and what it no longer allows is dropped.
#[test]
fn an_http_subscribe_is_judged_by_the_token_that_asks() {
    let mut net = Users::new();
    let _carol = net.connect("carol");
    let stream = net.open_stream("bob").unwrap();
    net.http_subscribe("bob", &["carol"]).unwrap();
    assert!(net.user(&uid("carol")).watchers().contains_key(&uid("bob")));
    net.drop_stream(&stream);

    let narrower = switchboard::core::user::watch::WatchPolicy::default();
    let refused = net.http_subscribe_with("bob", narrower, &["carol"]).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden);
    assert!(net.user(&uid("bob")).watching().is_empty(), "the narrower token dropped carol");
    assert!(!net.user(&uid("carol")).watchers().contains_key(&uid("bob")), "carol's object was told");
}

#[test]
fn a_stream_resumes_paused_subscriptions_and_catches_up() {
    let mut net = Users::new();
    let carol = net.connect("carol");
    let stream = net.open_stream("alice").unwrap();
    net.http_subscribe("alice", &["carol"]).unwrap();
    net.drop_stream(&stream);
    net.advance(TIMES.grace_ms);
    assert!(net.user(&uid("alice")).paused());
    net.send(&carol, json!({ "t": "presence:set", "d": { "status": "busy" } }));
    net.advance(PUSH_WINDOW_MS);
    let stream = net.open_stream("alice").unwrap();
    assert!(!net.user(&uid("alice")).paused());
    let events = net.streams[&stream].clone();
    assert_eq!(events[0].0, "user:state");
    assert_eq!(
        statuses(&net.take_events(&stream, "presence:update"), "carol"),
        ["busy"],
        "caught up on open"
    );
}

#[test]
fn an_eviction_ends_streams_and_the_rebuild_starts_the_grace_period() {
    let mut net = Users::new();
    let bob = net.connect("bob");
    net.send(&bob, json!({ "t": "presence:subscribe", "d": { "users": ["alice"] } }));
    let stream = net.open_stream("alice").unwrap();
    net.take(&bob, "presence:update");
    // A restart: the stream dies with the instance, unseen.
    net.evict(&uid("alice"));
    assert!(net.ended.contains_key(&stream));
    assert_eq!(net.user(&uid("alice")).stream_count(), 0);
    net.advance(TIMES.grace_ms);
    let updates: Vec<Value> = net.take(&bob, "presence:update").iter().map(|f| f["d"].clone()).collect();
    assert_eq!(statuses(&updates, "alice"), ["offline"]);
}

#[test]
fn a_long_subscribe_list_of_repeats_counts_each_user_once() {
    let mut net = Users::new();
    net.open_stream("alice").unwrap();
    let mut users = vec!["bob"; 20_000];
    users.push("carol");
    let answer = net.http_subscribe("alice", &users).unwrap();
    let mut watched: Vec<&str> =
        answer["presence"].as_array().unwrap().iter().map(|p| p["user"].as_str().unwrap()).collect();
    watched.sort();
    assert_eq!(watched, ["bob", "carol"]);
}

#[test]
fn an_admitted_socket_carries_its_expiry_and_watch_policy() {
    use switchboard::core::admission::Admission;
    use switchboard::core::ids::ConnId;
    use switchboard::core::time::Timestamp;
    use switchboard::core::user::UserConnInfo;
    let mut net = Users::with_limits(Limits { max_sockets_per_user: 1, ..Limits::default() });
    let conn = ConnId::parse("c9").unwrap();
    let admission =
        Admission { expires: Some(Timestamp(9)), policy: Some(open_policy()), ..Admission::default() };
    let (info, policy) = net.user(&uid("alice")).admit(conn.clone(), &admission).unwrap();
    assert_eq!((info, policy), (UserConnInfo { conn: conn.clone(), expires: Timestamp(9) }, open_policy()));
    let no_policy = Admission { policy: None, ..admission.clone() };
    assert_eq!(
        net.user(&uid("alice")).admit(conn.clone(), &no_policy).unwrap_err().code,
        ErrorCode::Internal
    );
    net.open_stream("alice").unwrap();
    assert_eq!(
        net.user(&uid("alice")).admit(conn, &admission).unwrap_err().code,
        ErrorCode::TooManyConnections
    );
}
