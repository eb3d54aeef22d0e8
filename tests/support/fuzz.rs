//! Random and mutated frames for the fuzz tests of every object: any JSON value, and envelopes
//! that are half plausible requests, half noise, some cut short or not JSON at all.

use super::Rng;
use serde_json::{json, Value};

/// Numbers at the edges an attacker tries: where 32-bit lengths wrap, where JS numbers stop being
/// exact, and past what any integer type here holds.
pub const EDGE_NUMBERS: [f64; 12] = [
    0.0,
    1.0,
    -1.0,
    2147483648.0,       // 2^31
    4294967295.0,       // 2^32 − 1
    4294967296.0,       // 2^32
    9007199254740991.0, // 2^53 − 1
    9007199254740992.0, // 2^53
    9007199254740993.0, // 2^53 + 1 (a JSON number no f64 holds exactly)
    18446744073709551615.0,
    1e300,
    -9007199254740993.0,
];

/// One of [`EDGE_NUMBERS`], written as JSON writes it (integers without a fraction).
pub fn edge_number(rng: &mut Rng) -> Value {
    let n = *rng.pick(&EDGE_NUMBERS);
    if n.fract() == 0.0 && n.abs() < 1.8e19 {
        if n >= 0.0 {
            json!(n as u64)
        } else {
            json!(n as i64)
        }
    } else {
        json!(n)
    }
}

/// Any JSON value, with the keys the protocol uses, nested a little; numbers at the edges and
/// large strings among them.
pub fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 6 } else { 8 }) {
        2 if rng.below(2) == 0 => edge_number(rng),
        5 if rng.below(8) == 0 => json!("x".repeat(1 + rng.below(20_000))),
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(rng.below(5) as f64 / 3.0),
        5 => json!(*rng.pick(&["", "hi", "alice", "c1", "é\u{1F600}", "x\ny", "topic", "general"])),
        6 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let keys = [
                "text",
                "id",
                "data",
                "key",
                "value",
                "ifVersion",
                "to",
                "toConn",
                "event",
                "before",
                "limit",
                "token",
                "status",
                "activity",
                "users",
                "ids",
                "all",
                "v",
                "op",
                "src",
                "seq",
                "pos",
                "anchor",
                "head",
            ];
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                map.insert(rng.pick(&keys).to_string(), value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

/// One frame from `events`, half the time with a plausible payload from `plausible`; returns the
/// text and the `ref` a reply is owed to (only intact envelopes with a ref are owed one).
pub fn frame(
    rng: &mut Rng,
    n: u64,
    events: &[&str],
    plausible: impl Fn(&mut Rng, &str, u64) -> Value,
) -> (String, Option<String>) {
    let with_ref = rng.below(2) == 0;
    let reference = format!("r{n}");
    let event = *rng.pick(events);
    // Half the frames are well-formed requests, so the success paths are exercised too.
    let d = if rng.below(2) == 0 { plausible(rng, event, n) } else { value(rng, 0) };
    let mut envelope = json!({ "t": event, "d": d });
    if with_ref {
        envelope["ref"] = json!(reference);
    }
    let text = match rng.below(10) {
        0 => "{".repeat(rng.below(3) + 1),
        1 => envelope.to_string().chars().take(rng.below(40)).collect(),
        2 => value(rng, 0).to_string(),
        _ => envelope.to_string(),
    };
    // Only frames that are intact envelopes with a ref are owed a reply.
    let owed = (with_ref && serde_json::from_str::<Value>(&text).ok().as_ref() == Some(&envelope))
        .then_some(reference);
    (text, owed)
}

/// The events a room socket is sent by the fuzzers (some unknown).
pub const ROOM_EVENTS: &[&str] = &[
    "message:send",
    "history:get",
    "typing:start",
    "typing:stop",
    "state:set",
    "signal",
    "broadcast",
    "auth:refresh",
    "nope",
    "",
];

/// A room request's payload, plausible half the time.
pub fn room_plausible(rng: &mut Rng, event: &str, n: u64) -> Value {
    match event {
        "message:send" => {
            let mut d = json!({ "text": rng.pick(&["hi", "é\u{1F600}", "", "x"]) });
            if rng.below(2) == 0 {
                d["id"] = json!(format!("m{}", n % 7)); // resends exercise the duplicate check
            }
            if rng.below(3) == 0 {
                d["data"] = value(rng, 1);
            }
            d
        }
        "state:set" => {
            let if_version = if rng.below(5) == 0 { edge_number(rng) } else { json!(rng.below(3)) };
            json!({ "key": rng.pick(&["topic", "poll"]), "value": value(rng, 1), "ifVersion": if_version })
        }
        "history:get" => match rng.below(4) {
            0 => json!({ "before": edge_number(rng), "limit": edge_number(rng) }),
            _ => json!({ "before": rng.below(40), "limit": rng.below(5) }),
        },
        "signal" => json!({ "to": rng.pick(&["alice", "bob", "carol"]), "data": value(rng, 1) }),
        "broadcast" => json!({ "event": "cursor", "data": value(rng, 1) }),
        _ => json!({}),
    }
}
