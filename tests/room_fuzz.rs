//! Bad input never hurts: thousands of random and mutated frames from several sockets, on a
//! moving virtual clock. Nothing panics, the log stays gapless, every `ref` gets exactly one reply.

mod support;

use serde_json::json;
use support::{fuzz, Rng, Sim};

#[test]
fn random_frames_never_hurt_the_room() {
    let (mut stored, mut replied) = (0, 0);
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut sim = Sim::new("fuzz");
        let mut conns = vec![sim.connect("alice"), sim.connect("bob"), sim.connect("alice")];
        for n in 0..500u64 {
            if rng.below(50) == 0 && conns.len() > 1 {
                let gone = conns.swap_remove(rng.below(conns.len()));
                sim.close(&gone);
                let user = *rng.pick(&["alice", "bob", "carol"]);
                conns.push(sim.connect(user));
            }
            sim.advance(rng.below(400) as u64);
            let mut conn = rng.pick(&conns).clone();
            if sim.closed.contains_key(&conn) {
                // Closed for abuse (4002): the client reconnects, as the other fuzzers' do.
                conns.retain(|c| *c != conn);
                let user = *rng.pick(&["alice", "bob", "carol"]);
                conn = sim.connect(user);
                conns.push(conn.clone());
            }
            let (text, owed) = fuzz::frame(&mut rng, n, fuzz::ROOM_EVENTS, fuzz::room_plausible);
            sim.send_raw(&conn, &text);
            let frames = sim.take(&conn);
            if let Some(reference) = owed {
                if !sim.closed.contains_key(&conn) {
                    let replies =
                        frames.iter().filter(|f| f["t"] == "reply" && f["ref"] == json!(reference)).count();
                    assert_eq!(replies, 1, "seed {seed} frame {n}: {text} → {frames:?}");
                    replied += 1;
                }
            }
        }
        let seqs: Vec<u64> = sim.store.log.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seed {seed}: the log has no gaps");
        assert_eq!(sim.object.seq(), seqs.len() as u64);
        stored += seqs.len();
    }
    // The generator must reach the success paths too, or it proves little.
    assert!(stored > 200 && replied > 2000, "stored {stored} messages, checked {replied} replies");
    eprintln!("fuzz: {stored} messages stored, {replied} replies checked");
}
