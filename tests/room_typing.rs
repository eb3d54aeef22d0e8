//! Typing in large rooms on the virtual clock: past `ROOM_MEMBER_LIST_MAX` members typing
//! changes are coalesced into at most one `typing:update` per `TYPING_UPDATE_MS` (the first after
//! a quiet interval at once), to every socket, with the capped set as it is when sent; a small
//! room keeps one update per change to the others. Crossing the setting either way mid-interval
//! loses no change, and a room's typing frames per second no longer grow with its typists.

mod support;

use serde_json::{json, Value};
use support::{Rng, Sim};
use switchboard::core::config::Limits;
use switchboard::core::ids::{ConnId, UserId};
use switchboard::core::object::{Effect, Object};
use switchboard::core::protocol::Incoming;
use switchboard::core::room::{ConnInfo, RoomEffect, MEMBERS_DIFF_MS, TYPING_UPDATE_MS};

fn sim(max: usize) -> Sim {
    Sim::with_limits("hall", Limits { room_member_list_max: max, ..Limits::default() })
}

/// Connects `users`, lets the member diffs go out, and drains every inbox.
fn settled(sim: &mut Sim, users: &[&str]) -> Vec<ConnId> {
    let conns: Vec<ConnId> = users.iter().map(|u| sim.connect(u)).collect();
    sim.advance(10 * MEMBERS_DIFF_MS);
    for c in sim.inboxes.values_mut() {
        c.clear();
    }
    conns
}

/// The `users` of each `typing:update` `conn` received, draining its inbox.
fn updates(sim: &mut Sim, conn: &ConnId) -> Vec<Vec<String>> {
    sim.take(conn).iter().filter(|f| f["t"] == "typing:update").map(names).collect()
}

fn names(frame: &Value) -> Vec<String> {
    frame["d"]["users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
}

fn start(sim: &mut Sim, conn: &ConnId) {
    sim.send(conn, json!({"t":"typing:start"}));
}

fn stop(sim: &mut Sim, conn: &ConnId) {
    sim.send(conn, json!({"t":"typing:stop"}));
}

#[test]
fn a_large_room_sends_the_first_change_at_once_to_everyone_and_coalesces_the_rest() {
    let mut sim = sim(2);
    let c = settled(&mut sim, &["w", "a", "b", "c"]);
    let (w, a, b, cc) = (&c[0], &c[1], &c[2], &c[3]);
    assert!(sim.object.is_large());

    sim.send(a, json!({"t":"typing:start","ref":"t1"}));
    assert_eq!(
        sim.take(a),
        [json!({"t":"typing:update","d":{"users":["a"]}}), json!({"t":"reply","ref":"t1","ok":true,"d":{}})],
        "every socket gets it, the typist's too; its reply is unchanged"
    );
    assert_eq!(updates(&mut sim, w), [["a"]], "after a quiet interval: at once");
    assert_eq!(updates(&mut sim, b), [["a"]]);
    sim.take(cc);

    sim.advance(100);
    sim.send(b, json!({"t":"typing:start","ref":"t2"}));
    assert_eq!(sim.take(b), [json!({"t":"reply","ref":"t2","ok":true,"d":{}})], "the reply does not wait");
    sim.advance(100);
    stop(&mut sim, b);
    start(&mut sim, cc);
    sim.advance(TYPING_UPDATE_MS - 201);
    assert!(updates(&mut sim, w).is_empty(), "at most one update per interval");
    sim.advance(1);
    assert_eq!(updates(&mut sim, w), [["a", "c"]], "one update with the set as it is now");
    assert_eq!(updates(&mut sim, b), [["a", "c"]], "b never showed as typing to anyone who missed it");
    assert_eq!(updates(&mut sim, cc), [["a", "c"]]);
    assert_eq!(updates(&mut sim, a), [["a", "c"]]);

    // A change right after an update waits for the end of the next interval.
    sim.advance(10);
    stop(&mut sim, a);
    sim.advance(TYPING_UPDATE_MS - 11);
    assert!(updates(&mut sim, w).is_empty());
    sim.advance(1);
    assert_eq!(updates(&mut sim, w), [["c"]]);
    // Quiet again: nothing is left waiting, and the next change goes at once.
    sim.advance(3 * TYPING_UPDATE_MS);
    assert!(updates(&mut sim, w).is_empty());
    stop(&mut sim, cc);
    assert_eq!(updates(&mut sim, w), [Vec::<String>::new()]);
}

#[test]
fn a_stop_is_never_lost_and_an_interval_that_ends_where_it_began_sends_nothing() {
    let mut sim = sim(2);
    let c = settled(&mut sim, &["w", "a", "b"]);
    let (w, a) = (&c[0], &c[1]);
    start(&mut sim, a);
    assert_eq!(updates(&mut sim, w), [["a"]]);
    sim.advance(50);
    stop(&mut sim, a);
    sim.advance(TYPING_UPDATE_MS);
    assert_eq!(updates(&mut sim, w), [Vec::<String>::new()], "the stop went out with the interval's end");

    sim.advance(5 * TYPING_UPDATE_MS);
    start(&mut sim, a);
    assert_eq!(updates(&mut sim, w), [["a"]]);
    // A message ends the entry, and the user starts the next one within the interval.
    sim.send(a, json!({"t":"message:send","d":{"text":"hi"}}));
    start(&mut sim, a);
    sim.advance(2 * TYPING_UPDATE_MS);
    assert!(updates(&mut sim, w).is_empty(), "the set is what the sockets were told: nothing to send");
    // A message that ends typing for good goes out as a stop with the next update.
    sim.send(a, json!({"t":"message:send","d":{"text":"bye"}}));
    sim.advance(TYPING_UPDATE_MS);
    assert_eq!(updates(&mut sim, w), [Vec::<String>::new()]);
    // A user whose last socket leaves stops typing too (and the member diff says they left).
    start(&mut sim, &c[2]);
    sim.advance(10);
    sim.close(&c[2]);
    sim.advance(TYPING_UPDATE_MS);
    let frames = sim.take(w);
    let typing: Vec<Vec<String>> = frames.iter().filter(|f| f["t"] == "typing:update").map(names).collect();
    assert_eq!(typing, [vec!["b".to_owned()], vec![]]);
}

#[test]
fn an_entry_that_lapses_inside_an_interval_goes_out_with_that_update() {
    let mut sim = sim(3);
    let c = settled(&mut sim, &["w", "a", "b", "c", "d"]);
    let (w, a, b, cc) = (&c[0], &c[1], &c[2], &c[3]);
    let ttl = Limits::default().typing_ttl_ms;
    start(&mut sim, a);
    assert_eq!(updates(&mut sim, w), [["a"]]);
    sim.advance(ttl - TYPING_UPDATE_MS);
    start(&mut sim, b);
    assert_eq!(updates(&mut sim, w), [["a", "b"]], "quiet for more than an interval: at once");
    // c's start waits for the interval's end, which is exactly when a's entry lapses: the
    // update carries both, and no frame shows a typing after its entry lapsed.
    sim.advance(TYPING_UPDATE_MS / 2);
    start(&mut sim, cc);
    sim.advance(TYPING_UPDATE_MS / 2);
    assert_eq!(updates(&mut sim, w), [["b", "c"]]);
    // b's entry lapses after a quiet interval: at once, with the alarm.
    sim.advance(ttl - TYPING_UPDATE_MS - 1);
    assert!(updates(&mut sim, w).is_empty());
    sim.advance(1);
    assert_eq!(updates(&mut sim, w), [["c"]]);
    // c's lapses half an interval later: it waits for the interval's end.
    sim.advance(TYPING_UPDATE_MS / 2);
    assert!(updates(&mut sim, w).is_empty());
    sim.advance(TYPING_UPDATE_MS / 2);
    assert_eq!(updates(&mut sim, w), [Vec::<String>::new()], "c lapsed within the interval after");
    assert_eq!(sim.object.typing_users().count(), 0);
}

/// Typing is bounded like the member list: in a large room at most `ROOM_MEMBER_LIST_MAX` users
/// are shown typing, in coalesced updates as in `room:state`.
#[test]
fn a_large_room_shows_at_most_the_setting_typing() {
    let mut sim = sim(2);
    let c = settled(&mut sim, &["w", "a", "b", "c"]);
    let (w, typists) = (&c[0], &c[1..]);
    for t in typists {
        sim.send(t, json!({"t":"typing:start","ref":1}));
        assert_eq!(sim.take(t).last().map(|f| f["t"].clone()), Some(json!("reply")), "acknowledged");
    }
    sim.advance(TYPING_UPDATE_MS);
    assert_eq!(updates(&mut sim, w), [vec!["a"], vec!["a", "b"]], "the third typist is not shown");
    let late = sim.connect("late");
    assert_eq!(sim.take_one(&late)["d"]["typing"], json!(["a", "b"]));
    // When one stops, a new typist may be shown.
    stop(&mut sim, &typists[0]);
    start(&mut sim, &typists[2]);
    sim.advance(TYPING_UPDATE_MS);
    assert_eq!(updates(&mut sim, w), [["b", "c"]]);
}

#[test]
fn crossing_the_setting_upwards_mid_interval_coalesces_from_then_on() {
    let mut sim = sim(3);
    let c = settled(&mut sim, &["w", "a", "b"]);
    let (w, a, b) = (&c[0], &c[1], &c[2]);
    start(&mut sim, a);
    assert!(sim.take(a).is_empty(), "a small room: not to the typist's socket, as before");
    assert_eq!(sim.take(w), [json!({"t":"typing:update","d":{"users":["a"]}})]);
    sim.advance(100);
    let d = sim.connect("d"); // the fourth member: the room is large
    assert!(sim.object.is_large());
    sim.advance(100);
    start(&mut sim, b);
    assert!(updates(&mut sim, w).is_empty(), "an update went out 200 ms ago: this one waits");
    sim.advance(TYPING_UPDATE_MS - 201);
    assert!(updates(&mut sim, w).is_empty());
    sim.advance(1);
    assert_eq!(updates(&mut sim, w), [["a", "b"]]);
    assert_eq!(updates(&mut sim, b), [vec!["a"], vec!["a", "b"]], "to every socket now, the typist's too");
    let greeting = sim.take(&d);
    assert_eq!(greeting[0]["d"]["typing"], json!(["a"]), "the joiner's room:state had the set then");
    assert_eq!(names(greeting.iter().rev().find(|f| f["t"] == "typing:update").unwrap()), ["a", "b"]);
}

#[test]
fn crossing_the_setting_downwards_mid_interval_sends_the_waiting_update_then_single_ones() {
    let mut sim = sim(3);
    let c = settled(&mut sim, &["w", "a", "b", "d"]);
    let (w, a, b, d) = (&c[0], &c[1], &c[2], &c[3]);
    start(&mut sim, a);
    assert_eq!(updates(&mut sim, w), [["a"]]);
    sim.advance(100);
    start(&mut sim, d);
    sim.advance(100);
    sim.close(d); // small again, with d's stop and b's start still to tell
    assert!(!sim.object.is_large());
    start(&mut sim, b);
    assert!(updates(&mut sim, w).is_empty(), "an update is waiting: the change joins it");
    sim.advance(TYPING_UPDATE_MS - 200);
    assert_eq!(updates(&mut sim, w), [["a", "b"]], "d was never shown, and nothing is lost");
    assert_eq!(updates(&mut sim, b), [vec!["a"], vec!["a", "b"]], "every socket, the typist's too");
    // From then on a small room's single updates to the others, at once.
    sim.take(a);
    stop(&mut sim, a);
    assert!(sim.take(a).is_empty());
    assert_eq!(updates(&mut sim, w), [["b"]]);
    sim.advance(10 * TYPING_UPDATE_MS);
    assert_eq!(updates(&mut sim, w), [Vec::<String>::new()], "b's entry lapsed: one update, at once");
}

/// What one socket shows, kept from its frames, and when its last update came.
struct View {
    users: Vec<String>,
    last_update: Option<u64>,
}

impl View {
    /// Reads `conn`'s new frames at `now` (ms since the start). Checks that a view is never
    /// longer than `max`, and that an update sent while the room is large comes at least an
    /// interval after the previous one (frames are read every 10 ms at most, hence the slack).
    fn observe(&mut self, sim: &mut Sim, conn: &ConnId, now: u64, max: usize, seed: u64) {
        let large = sim.object.is_large();
        for f in sim.take(conn) {
            let users = match f["t"].as_str() {
                Some("room:state") => &f["d"]["typing"],
                Some("typing:update") => {
                    if let Some(last) = self.last_update.filter(|_| large) {
                        assert!(
                            now - last > TYPING_UPDATE_MS - 10,
                            "seed {seed}: updates at {last} and {now} ms"
                        );
                    }
                    self.last_update = Some(now);
                    &f["d"]["users"]
                }
                _ => continue,
            };
            self.users = users.as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect();
            assert!(self.users.len() <= max, "seed {seed}: at most the setting shown");
        }
    }

    /// Moves the clock `ms` forward in steps of 10 ms, observing after each (and once at least).
    fn wait(&mut self, sim: &mut Sim, conn: &ConnId, t0: u64, ms: u64, max: usize, seed: u64) {
        let mut left = ms;
        loop {
            let step = left.min(10);
            sim.advance(step);
            left -= step;
            let now = sim.now.0 - t0;
            self.observe(sim, conn, now, max, seed);
            if left == 0 {
                return;
            }
        }
    }
}

/// Random joins, leaves, starts, stops, messages and clock steps across the setting: a
/// socket's view (its `room:state`, then each `typing:update`) is never longer than the setting,
/// an update while the room is large is never less than an interval after the previous one, and
/// the view matches the room once it has been quiet for an interval: nothing shown stays stale.
#[test]
fn a_view_kept_from_the_frames_converges_and_stays_bounded() {
    let max = 3;
    let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut sim = sim(max);
        let t0 = sim.now.0;
        let watcher = sim.connect("watcher");
        let mut view = View { users: Vec::new(), last_update: None };
        let mut open: Vec<(String, ConnId)> = Vec::new();
        for _ in 0..300 {
            let any = (!open.is_empty()).then(|| open[rng.below(open.len().max(1))].1.clone());
            match (rng.below(10), any) {
                (0 | 1, _) => {
                    let user = rng.pick(&users).clone();
                    if open.iter().filter(|(u, _)| *u == user).count() < 2 {
                        let conn = sim.connect(&user);
                        open.push((user, conn));
                    }
                }
                (2, Some(_)) => {
                    let (_, conn) = open.remove(rng.below(open.len()));
                    sim.close(&conn);
                }
                (3 | 4, Some(conn)) => start(&mut sim, &conn),
                (5, Some(conn)) => stop(&mut sim, &conn),
                (6, Some(conn)) => sim.send(&conn, json!({"t":"message:send","d":{"text":"x"}})),
                _ => {
                    let steps = rng.below(150) as u64;
                    view.wait(&mut sim, &watcher, t0, steps * 10, max, seed);
                }
            }
            view.wait(&mut sim, &watcher, t0, 0, max, seed);
        }
        view.wait(&mut sim, &watcher, t0, TYPING_UPDATE_MS, max, seed);
        let actual: Vec<String> = sim.object.typing_users().map(|u| u.as_str().to_owned()).collect();
        assert_eq!(view.users, actual, "seed {seed}: quiet for an interval, the view is the room's");
        view.wait(&mut sim, &watcher, t0, Limits::default().typing_ttl_ms, max, seed);
        assert!(view.users.is_empty(), "seed {seed}: no one is shown typing forever: {:?}", view.users);
    }
}

/// The numbers for issue 13: a room of 1,000 members (each its own user) where `typists` users
/// type in 10 s cycles as the SDK does (`typing:start` at once and every 2.5 s, a message after
/// 6 s, which ends the entry, then 4 s idle), phases spread evenly. "Before" is the per-change
/// behaviour (what every room did, and what a room still does up to the setting: here the
/// setting is raised to 1,000 so the room is small); "after" is the default setting, 100.
/// Returns `typing:update` frames per second and their deliveries (frames × recipients) per
/// second over 30 s after a 10 s warm-up, counted from the room's effects.
fn typing_per_second(max: usize, typists: usize) -> (f64, f64) {
    const MEMBERS: usize = 1000;
    const CYCLE: u64 = 10_000;
    const WARMUP: u64 = 10_000;
    const END: u64 = WARMUP + 30_000;
    let mut sim = sim(max);
    // Joined through the object alone: the room's effects are counted below, not delivered.
    let conns: Vec<ConnId> = (0..MEMBERS)
        .map(|i| {
            let conn = ConnId::parse(&format!("c{i}")).unwrap();
            let user = UserId::parse(&format!("u{i:04}")).unwrap();
            let info = ConnInfo {
                conn: conn.clone(),
                user,
                expires: sim.now.plus_millis(3_600_000),
                can_write: true,
            };
            sim.object.handle_connect(info, None, sim.now, &sim.store.log);
            conn
        })
        .collect();
    let t0 = sim.now;
    // (time, typist, message?): a start, or the message that ends the entry.
    let mut script: Vec<(u64, usize, bool)> = Vec::new();
    for t in 0..typists {
        let mut at = t as u64 * CYCLE / typists as u64;
        while at < END {
            script.extend((0..3).map(|k| (at + k * 2_500, t, false)));
            script.push((at + 6_000, t, true));
            at += CYCLE;
        }
    }
    script.retain(|(at, _, _)| *at < END);
    script.sort();
    let (mut frames, mut deliveries) = (0usize, 0usize);
    let mut tally = |effects: Vec<RoomEffect>, at: u64| {
        for e in effects {
            if let Effect::Broadcast { except, frame } = e {
                if at >= WARMUP && frame.starts_with(r#"{"t":"typing:update""#) {
                    frames += 1;
                    deliveries += MEMBERS - usize::from(except.is_some());
                }
            }
        }
    };
    let run_alarms = |sim: &mut Sim, to: u64, tally: &mut dyn FnMut(Vec<RoomEffect>, u64)| {
        while let Some(due) = sim.object.poll_timeout().filter(|d| *d <= t0.plus_millis(to)) {
            sim.now = sim.now.max(due);
            let effects = sim.object.handle_alarm(sim.now);
            tally(effects, sim.now.0 - t0.0);
        }
        sim.now = t0.plus_millis(to);
    };
    for (at, t, message) in script {
        run_alarms(&mut sim, at, &mut tally);
        let conn = &conns[t * (MEMBERS / typists) % MEMBERS];
        let text =
            if message { r#"{"t":"message:send","d":{"text":"hi"}}"# } else { r#"{"t":"typing:start"}"# };
        let effects = sim.object.handle_frame(conn, Incoming::Text(text), sim.now, &sim.store.log);
        tally(effects, at);
    }
    run_alarms(&mut sim, END, &mut tally);
    let secs = ((END - WARMUP) / 1000) as f64;
    (frames as f64 / secs, deliveries as f64 / secs)
}

#[test]
fn typing_frames_per_second_in_a_room_of_a_thousand_stop_growing_with_its_typists() {
    println!("1,000 members, typists in 10 s cycles: typing:update frames/s and sends/s");
    println!("{:>8} | {:>24} | {:>24}", "typists", "before: frames/s  sends/s", "after: frames/s  sends/s");
    for typists in [1, 10, 100, 500] {
        let before = typing_per_second(1000, typists);
        let after = typing_per_second(100, typists);
        println!("{typists:>8} | {:>15.1} {:>8.0} | {:>14.1} {:>8.0}", before.0, before.1, after.0, after.1);
        assert!(after.0 <= 1.0 + 1.0 / 30.0, "{typists}: at most one update a second ({})", after.0);
        assert!(after.1 <= before.1 * 1.01 + 1.0, "{typists}: never many more: {after:?} vs {before:?}");
        if typists >= 100 {
            assert!(
                after.1 * 10.0 < before.1,
                "{typists}: an order of magnitude fewer: {after:?} vs {before:?}"
            );
        }
    }
}
