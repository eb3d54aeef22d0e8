//! Small and large rooms: up to `ROOM_MEMBER_LIST_MAX` members the whole list and one event per
//! change; past it a capped list with the count, `members:get` pages, and changes coalesced into
//! one `members:diff` per interval on the virtual clock.

mod support;

use serde_json::{json, Value};
use support::Sim;
use switchboard::core::config::Limits;
use switchboard::core::ids::ConnId;
use switchboard::core::object::Object;
use switchboard::core::room::MEMBERS_DIFF_MS;

fn sim(max: usize) -> Sim {
    Sim::with_limits("hall", Limits { room_member_list_max: max, ..Limits::default() })
}

fn users(frame: &Value) -> Vec<String> {
    frame.as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_owned()).collect()
}

/// Frames of `conn` whose `t` is `event`, draining its inbox.
fn events(sim: &mut Sim, conn: &ConnId, event: &str) -> Vec<Value> {
    sim.take(conn).into_iter().filter(|f| f["t"] == event).collect()
}

#[test]
fn up_to_the_setting_every_change_is_announced_at_once_with_the_whole_list() {
    let mut sim = sim(3);
    let a = sim.connect("a");
    sim.connect("b");
    let c = sim.connect("c");
    let state = sim.take_one(&c);
    assert_eq!(users(&state["d"]["members"]), ["a", "b", "c"], "exactly at the setting: the whole list");
    assert_eq!(state["d"]["memberCount"], 3);
    assert!(state["d"].get("membersNext").is_none(), "a complete list has no cursor");
    let told: Vec<Value> = sim.take(&a).into_iter().skip(1).collect();
    assert_eq!(
        told,
        [json!({"t":"member:join","d":{"user":"b"}}), json!({"t":"member:join","d":{"user":"c"}})]
    );
    sim.close(&c);
    assert_eq!(sim.take(&a), [json!({"t":"member:leave","d":{"user":"c"}})]);
    sim.advance(10 * MEMBERS_DIFF_MS);
    assert!(sim.take(&a).is_empty(), "a small room sends no diffs");
    assert_eq!(sim.object.poll_timeout().map(|_| ()), Some(()), "only the token expiries remain");
}

#[test]
fn crossing_the_setting_caps_room_state_and_coalesces_joins_into_one_diff_per_interval() {
    let mut sim = sim(3);
    let a = sim.connect("a");
    for u in ["b", "c"] {
        sim.connect(u);
    }
    sim.take(&a);
    let d = sim.connect("d");
    let state = sim.take_one(&d);
    assert_eq!(
        users(&state["d"]["members"]),
        ["a", "b", "c"],
        "the first members by id, at most the setting"
    );
    assert_eq!(state["d"]["memberCount"], 4);
    assert_eq!(state["d"]["membersNext"], "c", "the cursor to page the rest");
    assert!(sim.take(&a).is_empty(), "no member:join past the setting");

    // The first change after a quiet interval goes out with the next alarm, which is due now.
    sim.advance(0);
    let diff = json!({"t":"members:diff","d":{"joins":[{"user":"d"}],"leaves":[],"count":4}});
    assert_eq!(sim.take(&a), std::slice::from_ref(&diff));
    assert_eq!(sim.take(&d), [diff], "every socket gets the diff, the joiner too");

    // Within the next interval: nothing until it ends, then one diff with everything.
    let e = sim.connect("e");
    sim.advance(100);
    let f = sim.connect("f");
    sim.close(&e);
    sim.advance(MEMBERS_DIFF_MS - 200);
    assert!(events(&mut sim, &a, "members:diff").is_empty(), "at most one diff per interval");
    sim.advance(100);
    assert_eq!(
        sim.take(&a),
        [json!({"t":"members:diff","d":{"joins":[{"user":"f"}],"leaves":[{"user":"e"}],"count":5}})],
        "a join and leave within one interval arrive as the leave"
    );
    assert_eq!(sim.take(&f).len(), 2, "room:state, then the diff (the joiner applies its own join again)");
}

#[test]
fn a_user_who_leaves_and_comes_back_within_an_interval_is_a_join() {
    let mut sim = sim(2);
    let a = sim.connect("a");
    sim.connect("b");
    let c = sim.connect("c");
    sim.advance(0);
    sim.take(&a);
    sim.close(&c);
    sim.connect("c");
    sim.advance(MEMBERS_DIFF_MS);
    assert_eq!(
        events(&mut sim, &a, "members:diff"),
        [json!({"t":"members:diff","d":{"joins":[{"user":"c"}],"leaves":[],"count":3}})],
        "a client that joined in between saw c leave in its room:state; the join puts c back"
    );
}

#[test]
fn more_changes_than_the_bound_send_only_the_count() {
    let mut sim = sim(3);
    let a = sim.connect("a");
    for u in ["b", "c", "d"] {
        sim.connect(u);
    }
    sim.advance(0);
    sim.take(&a);
    for u in ["e", "f", "g", "h"] {
        sim.connect(u);
    }
    sim.advance(MEMBERS_DIFF_MS);
    assert_eq!(
        sim.take(&a),
        [json!({"t":"members:diff","d":{"joins":[],"leaves":[],"count":8,"truncated":true}})]
    );
}

#[test]
fn going_back_under_the_setting_sends_the_whole_list_then_single_events_again() {
    let mut sim = sim(3);
    let a = sim.connect("a");
    sim.connect("b");
    sim.connect("c");
    let d = sim.connect("d");
    sim.advance(0);
    sim.take(&a);
    // Down to exactly the setting: the diff carries the complete list, replacing the client's.
    sim.close(&d);
    sim.advance(MEMBERS_DIFF_MS);
    assert_eq!(
        sim.take(&a),
        [json!({"t":"members:diff","d":{"joins":[],"leaves":[{"user":"d"}],"count":3,
            "members":[{"user":"a"},{"user":"b"},{"user":"c"}]}})]
    );
    // Small again: changes are announced one by one, at once.
    let e = sim.connect("e");
    assert!(sim.take_one(&e)["d"].get("membersNext").is_some(), "four again: partial");
    sim.advance(MEMBERS_DIFF_MS);
    sim.take(&a);
    sim.close(&e);
    sim.advance(MEMBERS_DIFF_MS);
    sim.take(&a);
    let b2 = sim.connect("b");
    assert!(sim.take(&a).is_empty(), "a second tab is no change");
    sim.close(&b2);
    sim.close(&ConnId::parse("c3").unwrap());
    assert_eq!(sim.take(&a), [json!({"t":"member:leave","d":{"user":"c"}})], "small: at once");
    let f = sim.connect("f");
    assert_eq!(sim.take(&a), [json!({"t":"member:join","d":{"user":"f"}})], "at the setting: at once");
    sim.take(&f);
}

#[test]
fn members_get_pages_every_member_once_in_id_order() {
    let mut sim = sim(4);
    let names: Vec<String> = (0..11).map(|i| format!("user{i:02}")).collect();
    let conns: Vec<ConnId> = names.iter().map(|n| sim.connect(n)).collect();
    let me = conns[0].clone();
    sim.take(&me);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for round in 0.. {
        assert!(round < 10, "paging ends");
        let mut d = json!({ "limit": 3 });
        if let Some(a) = &after {
            d["after"] = json!(a);
        }
        sim.send(&me, json!({"t":"members:get","ref":round,"d":d}));
        let reply = sim.take_one(&me);
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["d"]["count"], 11);
        let page = users(&reply["d"]["members"]);
        assert!(page.len() <= 3);
        seen.extend(page);
        match reply["d"].get("next") {
            Some(next) => after = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, names, "every member once, in id order");

    // The page size is clamped to the setting; without a limit it is the setting.
    sim.send(&me, json!({"t":"members:get","ref":"big","d":{"limit": 1000}}));
    assert_eq!(users(&sim.take_one(&me)["d"]["members"]).len(), 4);
    sim.send(&me, json!({"t":"members:get","ref":"zero","d":{"limit": 0}}));
    assert_eq!(users(&sim.take_one(&me)["d"]["members"]).len(), 1);
    sim.send(&me, json!({"t":"members:get","ref":"all"}));
    let first = sim.take_one(&me);
    assert_eq!(users(&first["d"]["members"]), names[..4]);
    assert_eq!(first["d"]["next"], "user03");
    // Past the end: an empty page, no cursor.
    sim.send(&me, json!({"t":"members:get","ref":"end","d":{"after":"zzz"}}));
    assert_eq!(sim.take_one(&me), json!({"t":"reply","ref":"end","ok":true,"d":{"members":[],"count":11}}));
    // It needs a ref, and a valid cursor.
    sim.send(&me, json!({"t":"members:get"}));
    assert_eq!(sim.take_one(&me)["error"]["code"], "bad_request");
    sim.send(&me, json!({"t":"members:get","ref":"bad","d":{"after":"no spaces"}}));
    assert_eq!(sim.take_one(&me)["error"]["code"], "bad_request");
}

#[test]
fn members_get_works_in_small_rooms_for_read_only_sockets_and_draws_from_reads() {
    let mut sim = sim(100);
    sim.connect("a");
    let ro = sim.connect_with("viewer", 3_600_000, false, None);
    sim.take(&ro);
    sim.send(&ro, json!({"t":"members:get","ref":1}));
    assert_eq!(
        sim.take_one(&ro),
        json!({"t":"reply","ref":1,"ok":true,"d":{"members":[{"user":"a"},{"user":"viewer"}],"count":2}})
    );
    // The read budget is 20 at once.
    for i in 0..19 {
        sim.send(&ro, json!({"t":"members:get","ref":i}));
    }
    sim.take(&ro);
    sim.send(&ro, json!({"t":"members:get","ref":"over"}));
    assert_eq!(sim.take_one(&ro)["error"]["code"], "rate_limited");
}

#[test]
fn a_join_in_a_large_room_sends_a_bounded_greeting_and_nothing_to_the_others() {
    let mut sim = Sim::new("big");
    let first = sim.connect("u00000");
    for i in 1..1000 {
        sim.connect(&format!("u{i:05}"));
        if i % 100 == 0 {
            sim.advance(MEMBERS_DIFF_MS);
        }
    }
    sim.advance(MEMBERS_DIFF_MS);
    let diffs = events(&mut sim, &first, "members:diff");
    assert!(diffs.len() <= 11, "one diff per interval at most, got {}", diffs.len());
    assert!(diffs.iter().all(|d| d["d"]["joins"].as_array().unwrap().len() <= 100), "bounded diffs");
    assert_eq!(diffs.last().unwrap()["d"]["count"], 1000);
    for inbox in sim.inboxes.values_mut() {
        inbox.clear();
    }
    let late = sim.connect("zz-late");
    let state = sim.take_one(&late);
    assert_eq!(state["d"]["members"].as_array().unwrap().len(), 100, "capped at the setting");
    assert_eq!(state["d"]["memberCount"], 1001);
    assert_eq!(state["d"]["membersNext"], "u00099");
    assert!(state.to_string().len() < 4_000, "room:state stays small: {} bytes", state.to_string().len());
    assert!(sim.take(&first).is_empty(), "the join is not announced on its own");
    let inboxes_with_frames = sim.inboxes.values().filter(|i| !i.is_empty()).count();
    assert_eq!(inboxes_with_frames, 0, "nobody else received anything for that join");
}

/// A member's view of the room, kept from the frames it receives as an SDK would.
#[derive(Default)]
struct View {
    members: std::collections::BTreeSet<String>,
    count: u64,
}

impl View {
    fn apply(&mut self, frame: &Value) {
        let d = &frame["d"];
        match frame["t"].as_str().unwrap() {
            "room:state" => {
                self.members = users(&d["members"]).into_iter().collect();
                self.count = d["memberCount"].as_u64().unwrap();
            }
            "member:join" => {
                self.members.insert(d["user"].as_str().unwrap().to_owned());
                self.count = self.members.len() as u64;
            }
            "member:leave" => {
                self.members.remove(d["user"].as_str().unwrap());
                self.count = self.members.len() as u64;
            }
            "members:diff" => {
                if let Some(all) = d.get("members") {
                    self.members = users(all).into_iter().collect();
                } else {
                    for u in users(&d["leaves"]) {
                        self.members.remove(&u);
                    }
                    self.members.extend(users(&d["joins"]));
                }
                self.count = d["count"].as_u64().unwrap();
            }
            _ => {}
        }
    }
}

#[test]
fn random_comings_and_goings_across_the_setting_leave_every_view_right_once_the_diff_is_out() {
    for seed in 1..40u64 {
        let mut rng = support::Rng(seed * 7919);
        let mut sim = sim(4);
        let watcher = sim.connect("aaa-watcher");
        let mut view = View::default();
        let mut open: Vec<ConnId> = Vec::new();
        for _ in 0..200 {
            match rng.below(4) {
                0 | 1 if open.len() < 12 => {
                    let user = format!("u{}", rng.below(9));
                    if sim
                        .object
                        .check_capacity(&switchboard::core::ids::UserId::parse(&user).unwrap())
                        .is_ok()
                    {
                        let c = sim.connect(&user);
                        sim.take(&c);
                        open.push(c);
                    }
                }
                2 if !open.is_empty() => {
                    let c = open.remove(rng.below(open.len()));
                    sim.close(&c);
                }
                _ => sim.advance(rng.below(700) as u64),
            }
            for f in sim.take(&watcher) {
                if f["t"] == "members:diff" {
                    let listed = f["d"]["joins"].as_array().unwrap().len()
                        + f["d"]["leaves"].as_array().unwrap().len();
                    assert!(listed <= 4, "seed {seed}: a diff lists at most the setting");
                }
                view.apply(&f);
            }
        }
        sim.advance(2 * MEMBERS_DIFF_MS);
        for f in sim.take(&watcher) {
            view.apply(&f);
        }
        let actual: std::collections::BTreeSet<String> =
            sim.object.members().map(|u| u.as_str().to_owned()).collect();
        assert_eq!(view.count, actual.len() as u64, "seed {seed}: the count is exact");
        if actual.len() <= 4 {
            assert_eq!(view.members, actual, "seed {seed}: a small room's view is complete");
        }
    }
}
