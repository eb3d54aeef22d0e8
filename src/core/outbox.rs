//! Adaptive batching of outgoing frames.
//!
//! The shell queues every frame here instead of sending it, and drains the queue as soon as the
//! runtime is idle. With no backlog a drain holds one frame and each socket gets it unchanged.
//! When several events were handled before the drain could run (a backlog), each socket gets one
//! JSON array of its frames in order: `[{"t":...},{"t":...}]`, split into several arrays when
//! it would exceed [`MAX_BATCH_BYTES`]. Fewer, larger frames are the main
//! lever against the per-send cost of the runtime, and they appear only under load.
//!
//! Per-socket order is kept exactly: a socket's frames leave in the order they were queued.

use crate::core::ids::ConnId;
use crate::core::time::Timestamp;
use std::collections::HashMap;

/// Who a queued frame is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every socket of the object except one (or none).
    All {
        /// The socket left out.
        except: Option<ConnId>,
    },
    /// One socket.
    One(ConnId),
}

impl Target {
    fn includes(&self, conn: &ConnId) -> bool {
        match self {
            Target::All { except } => except.as_ref() != Some(conn),
            Target::One(one) => one == conn,
        }
    }
}

/// Frames waiting for the next drain.
#[derive(Debug, Default)]
pub struct Outbox {
    items: Vec<(Target, String)>,
    /// How many of `items` are announcements, which may wait ([`Outbox::announce`]).
    announcements: usize,
    /// Sockets that joined while frames were queued, with how many were queued then: a
    /// broadcast queued before a socket existed is not for it. Cleared by every drain.
    late: HashMap<ConnId, usize>,
}

/// One distinct frame and every socket it goes to: the shell builds it once for all of them.
pub type Delivery = (String, Vec<ConnId>);

/// Largest batch frame, in bytes: past it the next envelopes start a new frame, so a backlog
/// never becomes one frame of unbounded size. Equal to the default `MAX_FRAME_BYTES`; one
/// envelope larger than this is sent alone, as a plain object.
pub const MAX_BATCH_BYTES: usize = 65_536;

/// Events closer together than this mean a backlog is forming (milliseconds).
pub const BUSY_GAP_MS: u64 = 25;

/// How long a queue of nothing but announcements (member joins and leaves) may wait for its
/// drain while events arrive in quick succession (milliseconds): a join storm into a room then
/// costs each member one frame per hold rather than one per join. Any other frame drains the
/// queue at once, so nothing else waits for it.
pub const ANNOUNCE_HOLD_MS: u64 = 20;

/// The delay of a drain timer to set now, if one is needed: none is scheduled (`due`), or the
/// one scheduled fires later than this queue may wait. A deferred drain waits
/// [`ANNOUNCE_HOLD_MS`] for a queue of nothing but announcements, else 0 (as soon as the runtime
/// is idle). A timer that fires after its drain ran early finds nothing due, or runs a later
/// drain early: harmless either way. Spacing the drains of an object with many receivers further
/// (40 µs per receiver) was measured and not kept: it cut the CPU per delivery by a quarter but
/// lifted p99 over 50 ms at 100–200 messages/s to 500 sockets.
pub fn drain_timer(due: Option<Timestamp>, now: Timestamp, only_announcements: bool) -> Option<u64> {
    let delay = if only_announcements { ANNOUNCE_HOLD_MS } else { 0 };
    match due {
        Some(due) if due <= now.plus_millis(delay) => None,
        _ => Some(delay),
    }
}

/// At most this many announcements wait for one held drain: each socket that joined meanwhile
/// gets its own suffix of them, so a drain of `n` costs about n²/2 envelopes.
pub const MAX_HELD_ANNOUNCEMENTS: usize = 64;

/// An object with fewer receivers than this (sockets and event streams) sends every event's
/// frames at once: the timer of a deferred drain costs about as much as ten sends in workerd,
/// more than batching saves when each frame has a few recipients.
pub const BATCH_MIN_RECEIVERS: usize = 16;

/// Whether to hold this event's frames for a batch rather than send them now: only while a
/// backlog exists, judged by how soon after the previous event this one came, and where a
/// drain is worth batching (`receivers`, see [`BATCH_MIN_RECEIVERS`]). An idle object sends at
/// once and adds no latency. While a drain is pending every event joins it, to keep order.
pub fn should_defer(
    now: Timestamp,
    previous_event: Option<Timestamp>,
    drain_pending: bool,
    receivers: usize,
) -> bool {
    drain_pending
        || (receivers >= BATCH_MIN_RECEIVERS
            && previous_event.is_some_and(|p| now.as_millis().saturating_sub(p.as_millis()) < BUSY_GAP_MS))
}

impl Outbox {
    /// Queues `frame` for `target`.
    pub fn push(&mut self, target: Target, frame: String) {
        self.items.push((target, frame));
    }

    /// Queues an announcement for every socket but `except`: a frame that may wait for the
    /// ones that follow. (Always a broadcast, so `take_leading` never takes one out.)
    pub fn announce(&mut self, except: Option<ConnId>, frame: String) {
        self.items.push((Target::All { except }, frame));
        self.announcements += 1;
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether what is queued may wait [`ANNOUNCE_HOLD_MS`]: it is all announcements, and fewer
    /// than [`MAX_HELD_ANNOUNCEMENTS`].
    pub fn can_wait(&self) -> bool {
        self.announcements == self.items.len() && self.announcements < MAX_HELD_ANNOUNCEMENTS
    }

    /// `conn` joins now: of what is queued, it gets only what is addressed to it by name. A
    /// connect therefore need not drain the queue first, so the joins of a connect storm share
    /// their drains (and each member gets its `member:join`s as one frame).
    pub fn admit(&mut self, conn: ConnId) {
        if !self.items.is_empty() {
            self.late.insert(conn, self.items.len());
        }
    }

    /// Takes out the frames `conn` may get at once: those queued for it alone that no
    /// broadcast it gets comes before (its greeting, after a connect), batched as a drain would.
    /// A socket that just joined thus gets its greeting without waiting for the drain; the
    /// broadcasts keep their place.
    pub fn take_leading(&mut self, conn: &ConnId) -> Vec<String> {
        let mut taken = Vec::new();
        let mut i = 0;
        while let Some((target, _)) = self.items.get(i) {
            let joined_at = self.late.get(conn).copied().unwrap_or(0);
            let reaches = target.includes(conn) && (i >= joined_at || matches!(target, Target::One(_)));
            match target {
                Target::One(one) if one == conn => {
                    let (_, frame) = self.items.remove(i);
                    // Later items moved up by one: so do the join points after this one.
                    for at in self.late.values_mut() {
                        if *at > i {
                            *at -= 1;
                        }
                    }
                    taken.push(frame);
                }
                _ if reaches => break,
                _ => i += 1,
            }
        }
        let parts: Vec<&str> = taken.iter().map(String::as_str).collect();
        batches(&parts, MAX_BATCH_BYTES)
    }

    /// Empties the queue into deliveries for the sockets `conns` (the ones open now); batches
    /// hold at most [`MAX_BATCH_BYTES`]. A socket's deliveries are in the order to send them.
    pub fn drain<'a>(&mut self, conns: impl IntoIterator<Item = &'a ConnId>) -> Vec<Delivery> {
        self.drain_within(conns, MAX_BATCH_BYTES)
    }

    /// [`Outbox::drain`], where `is_open` says whether a socket is among `conns`: when only
    /// frames for single sockets are queued (greetings and replies, as in a connect storm), only
    /// those sockets are looked at instead of every open one. Same deliveries as `drain`.
    pub fn drain_open<'a>(
        &mut self,
        conns: impl IntoIterator<Item = &'a ConnId>,
        is_open: impl Fn(&ConnId) -> bool,
    ) -> Vec<Delivery> {
        if self.unbatched() {
            return self.drain_unbatched(conns, is_open);
        }
        if self.items.iter().any(|(target, _)| matches!(target, Target::All { .. })) {
            return self.drain(conns);
        }
        let items = std::mem::take(&mut self.items);
        self.announcements = 0;
        self.late.clear();
        let mut picks: HashMap<&ConnId, Vec<usize>> = HashMap::new();
        for (i, (target, _)) in items.iter().enumerate() {
            if let Target::One(conn) = target {
                if is_open(conn) {
                    picks.entry(conn).or_default().push(i);
                }
            }
        }
        let mut deliveries: Vec<(Vec<usize>, &ConnId)> = picks.into_iter().map(|(c, p)| (p, c)).collect();
        deliveries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (picked, conn) in deliveries {
            let parts: Vec<&str> =
                picked.iter().filter_map(|&i| items.get(i)).map(|(_, f)| f.as_str()).collect();
            for frame in batches(&parts, MAX_BATCH_BYTES) {
                out.push((frame, vec![conn.clone()]));
            }
        }
        out
    }

    /// Whether no socket gets more than one of the queued frames, so that each frame is its own
    /// delivery as queued and the drain need not group sockets by what they get (the common
    /// drain of a small object: one event's broadcast, with its reply to the sender beside it).
    /// That holds when nobody joined meanwhile, at most one broadcast is queued, and the frames
    /// for single sockets go to distinct ones the broadcast leaves out. Checked for short queues
    /// only: the distinct-socket check is quadratic.
    fn unbatched(&self) -> bool {
        const MAX_ITEMS: usize = 8;
        if !self.late.is_empty() || self.items.len() > MAX_ITEMS {
            return false;
        }
        let mut broadcasts = self.items.iter().filter_map(|(target, _)| match target {
            Target::All { except } => Some(except.as_ref()),
            Target::One(_) => None,
        });
        let left_out = broadcasts.next();
        if broadcasts.next().is_some() {
            return false;
        }
        let singles: Vec<&ConnId> = self
            .items
            .iter()
            .filter_map(|(target, _)| match target {
                Target::One(conn) => Some(conn),
                Target::All { .. } => None,
            })
            .collect();
        singles.iter().enumerate().all(|(i, conn)| {
            left_out.is_none_or(|except| except == Some(*conn)) && !singles[..i].contains(conn)
        })
    }

    /// The drain when [`Outbox::unbatched`] holds: each frame goes unchanged to the open sockets
    /// it is for, in the order queued.
    fn drain_unbatched<'a>(
        &mut self,
        conns: impl IntoIterator<Item = &'a ConnId>,
        is_open: impl Fn(&ConnId) -> bool,
    ) -> Vec<Delivery> {
        let items = std::mem::take(&mut self.items);
        self.announcements = 0;
        let mut conns = Some(conns);
        let mut out = Vec::with_capacity(items.len());
        for (target, frame) in items {
            let recipients: Vec<ConnId> = match &target {
                Target::One(conn) if is_open(conn) => vec![conn.clone()],
                Target::One(_) => continue,
                // At most one broadcast: `conns` is walked once.
                Target::All { except } => conns
                    .take()
                    .into_iter()
                    .flatten()
                    .filter(|conn| except.as_ref() != Some(*conn))
                    .cloned()
                    .collect(),
            };
            if !recipients.is_empty() {
                out.push((frame, recipients));
            }
        }
        out
    }

    /// [`Outbox::drain`] with batches of at most `cap` bytes.
    pub fn drain_within<'a>(
        &mut self,
        conns: impl IntoIterator<Item = &'a ConnId>,
        cap: usize,
    ) -> Vec<Delivery> {
        let items = std::mem::take(&mut self.items);
        self.announcements = 0;
        let late = std::mem::take(&mut self.late);
        // Nothing queued: no walk over every open socket.
        if items.is_empty() {
            return Vec::new();
        }
        // Sockets that receive the same subsequence of frames share one combined frame.
        let mut groups: HashMap<Vec<usize>, Vec<ConnId>> = HashMap::new();
        for conn in conns {
            let joined_at = late.get(conn).copied().unwrap_or(0);
            let picked: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(i, (target, _))| {
                    target.includes(conn) && (*i >= joined_at || matches!(target, Target::One(_)))
                })
                .map(|(i, _)| i)
                .collect();
            if !picked.is_empty() {
                groups.entry(picked).or_default().push(conn.clone());
            }
        }
        let mut deliveries: Vec<(Vec<usize>, Vec<ConnId>)> = groups.into_iter().collect();
        deliveries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (picked, recipients) in deliveries {
            let parts: Vec<&str> =
                picked.iter().filter_map(|&i| items.get(i)).map(|(_, f)| f.as_str()).collect();
            for frame in batches(&parts, cap) {
                out.push((frame, recipients.clone()));
            }
        }
        out
    }
}

/// `parts` as frames in order: runs of envelopes as JSON arrays of at most `cap` bytes, a run
/// of one as the envelope itself.
fn batches(parts: &[&str], cap: usize) -> Vec<String> {
    let join = |run: &[&str]| match run {
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(",")),
    };
    let mut frames = Vec::new();
    let mut start = 0;
    // `[` plus each part with its `,` or closing `]`.
    let mut bytes = 1;
    for (i, part) in parts.iter().enumerate() {
        if i > start && bytes + part.len() + 1 > cap {
            frames.push(join(&parts[start..i]));
            start = i;
            bytes = 1;
        }
        bytes += part.len() + 1;
    }
    if start < parts.len() {
        frames.push(join(&parts[start..]));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_open_delivers_what_drain_does() {
        let conns: Vec<ConnId> = ["a", "b", "c", "d"].iter().map(|x| c(x)).collect();
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..300 {
            let (mut slow, mut fast) = (Outbox::default(), Outbox::default());
            for i in 0..(next() % 8) {
                // Mostly single-socket frames, "e" among them closed; sometimes a broadcast.
                let target = match next() % 7 {
                    0 if round % 2 == 0 => Target::All { except: Some(c("b")) },
                    k => Target::One(c(["a", "b", "c", "d", "e", "a"][(k as usize) % 6])),
                };
                let frame = format!("{{\"n\":{i}}}");
                slow.push(target.clone(), frame.clone());
                fast.push(target, frame);
            }
            let open = |x: &ConnId| conns.contains(x);
            assert_eq!(fast.drain_open(&conns, open), slow.drain(&conns), "round {round}");
            assert!(fast.is_empty());
        }
    }

    fn c(id: &str) -> ConnId {
        ConnId::parse(id).unwrap()
    }

    /// A small deterministic generator for the randomized tests.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn the_fast_drains_deliver_what_the_general_drain_does_whatever_was_queued() {
        // Broadcasts with and without an exception, announcements, joins, greetings taken out,
        // single-socket frames (to "e" too, which is closed): whichever path `drain_open` takes
        // must deliver what `drain` does, and the unbatched one must be taken often.
        let names = ["a", "b", "c", "d", "e"];
        let conns: Vec<ConnId> = names[..4].iter().map(|x| c(x)).collect();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut unbatched = 0;
        for round in 0..20_000 {
            let (mut slow, mut fast) = (Outbox::default(), Outbox::default());
            for i in 0..(next() % 6) {
                let conn = c(names[(next() % 5) as usize]);
                let frame = format!("{{\"n\":{i}}}");
                match next() % 10 {
                    0 => [&mut slow, &mut fast].map(|o| o.push(Target::All { except: None }, frame.clone())),
                    1 | 2 => [&mut slow, &mut fast]
                        .map(|o| o.push(Target::All { except: Some(conn.clone()) }, frame.clone())),
                    3 => [&mut slow, &mut fast].map(|o| o.announce(Some(conn.clone()), frame.clone())),
                    4 => [&mut slow, &mut fast].map(|o| o.admit(conn.clone())),
                    5 => {
                        assert_eq!(slow.take_leading(&conn), fast.take_leading(&conn), "round {round}");
                        [(), ()]
                    }
                    _ => [&mut slow, &mut fast].map(|o| o.push(Target::One(conn.clone()), frame.clone())),
                };
            }
            unbatched += usize::from(fast.unbatched());
            let open = |x: &ConnId| conns.contains(x);
            assert_eq!(fast.drain_open(&conns, open), slow.drain(&conns), "round {round}");
            assert!(fast.is_empty() && fast.late.is_empty() && fast.can_wait());
        }
        assert!(unbatched > 1000, "the unbatched path was taken {unbatched} times");
    }

    #[test]
    fn an_event_s_reply_and_broadcast_go_out_as_queued_without_grouping() {
        let conns = [c("a"), c("b"), c("c")];
        let open = |x: &ConnId| conns.contains(x);
        let queue = |out: &mut Outbox| {
            out.push(Target::One(c("a")), "reply".into());
            out.push(Target::All { except: Some(c("a")) }, "message".into());
        };
        let (mut fast, mut slow) = (Outbox::default(), Outbox::default());
        queue(&mut fast);
        queue(&mut slow);
        assert!(fast.unbatched());
        let expected =
            vec![("reply".to_string(), vec![c("a")]), ("message".to_string(), vec![c("b"), c("c")])];
        assert_eq!(fast.drain_open(&conns, open), expected);
        assert_eq!(slow.drain(&conns), expected);
        // A socket that gets two frames, or one that joined meanwhile, is grouped as before.
        let mut twice = Outbox::default();
        twice.push(Target::One(c("b")), "reply".into());
        twice.push(Target::All { except: Some(c("a")) }, "message".into());
        assert!(!twice.unbatched());
        let mut joined = Outbox::default();
        joined.push(Target::All { except: None }, "message".into());
        joined.admit(c("c"));
        assert!(!joined.unbatched());
        assert_eq!(joined.drain_open(&conns, open), vec![("message".to_string(), vec![c("a"), c("b")])]);
    }

    #[test]
    fn without_backlog_frames_go_out_unchanged() {
        let mut out = Outbox::default();
        out.push(Target::All { except: Some(c("a")) }, r#"{"t":"x"}"#.into());
        let conns = [c("a"), c("b"), c("c")];
        assert_eq!(out.drain(&conns), vec![(r#"{"t":"x"}"#.to_string(), vec![c("b"), c("c")])]);
        assert!(out.is_empty());
        assert!(out.drain(&conns).is_empty());
    }

    #[test]
    fn only_a_queue_of_announcements_may_wait_and_they_keep_their_place() {
        let mut out = Outbox::default();
        assert!(out.can_wait(), "nothing queued waits for nothing");
        // b joined, then c: the member already there (a) is told of both; c is not told of b.
        out.announce(Some(c("b")), "join-b".into());
        out.admit(c("c"));
        out.announce(Some(c("c")), "join-c".into());
        assert!(out.can_wait());
        // A greeting taken out at once leaves the announcements waiting.
        out.push(Target::One(c("c")), "greeting-c".into());
        assert!(!out.can_wait());
        assert_eq!(out.take_leading(&c("c")), vec!["greeting-c".to_string()]);
        assert!(out.can_wait());
        // Anything else may not wait, and takes the announcements along in order.
        out.push(Target::All { except: Some(c("c")) }, "message-c".into());
        assert!(!out.can_wait());
        let mut got = out.drain(&[c("a"), c("b"), c("c")]);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("[join-b,join-c,message-c]".to_string(), vec![c("a")]),
                ("[join-c,message-c]".to_string(), vec![c("b")]),
            ]
        );
        assert!(out.can_wait() && out.is_empty(), "a drain forgets what it counted");
    }

    #[test]
    fn a_drain_timer_is_set_when_none_is_due_soon_enough() {
        let now = Timestamp(1_000);
        assert_eq!(drain_timer(None, now, false), Some(0), "nothing scheduled: drain when idle");
        assert_eq!(drain_timer(None, now, true), Some(ANNOUNCE_HOLD_MS), "announcements wait");
        let held = Some(now.plus_millis(ANNOUNCE_HOLD_MS));
        assert_eq!(drain_timer(held, now, true), None, "a held drain is already due in time");
        assert_eq!(drain_timer(held, now.plus_millis(5), true), None, "later announcements join it");
        assert_eq!(drain_timer(held, now, false), Some(0), "a frame that may not wait overtakes it");
        assert_eq!(drain_timer(Some(now), now, false), None, "a drain due now takes it along");
        assert_eq!(drain_timer(Some(now), now.plus_millis(30), false), None, "an overdue one too");
    }

    #[test]
    fn only_so_many_announcements_wait() {
        let mut out = Outbox::default();
        for i in 0..MAX_HELD_ANNOUNCEMENTS {
            assert!(out.can_wait(), "{i} held");
            out.announce(None, format!("{i}"));
        }
        assert!(!out.can_wait(), "past the cap the drain runs at once");
    }

    #[test]
    fn a_backlog_becomes_one_array_per_socket_in_order() {
        let mut out = Outbox::default();
        out.push(Target::All { except: Some(c("a")) }, "1".into());
        out.push(Target::One(c("a")), "ack".into());
        out.push(Target::All { except: Some(c("b")) }, "2".into());
        out.push(Target::All { except: None }, "3".into());
        let mut got = out.drain(&[c("a"), c("b"), c("c"), c("d")]);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("[1,2,3]".to_string(), vec![c("c"), c("d")]),
                ("[1,3]".to_string(), vec![c("b")]),
                ("[ack,2,3]".to_string(), vec![c("a")]),
            ]
        );
    }

    #[test]
    fn only_a_backlog_defers() {
        let (t, many) = (Timestamp(10_000), BATCH_MIN_RECEIVERS);
        assert!(!should_defer(t, None, false, many), "first event: send now");
        assert!(!should_defer(t, Some(Timestamp(9_000)), false, many), "idle room: send now");
        assert!(should_defer(t, Some(Timestamp(9_990)), false, many), "events 10 ms apart: batch");
        assert!(!should_defer(t, Some(Timestamp(9_990)), false, many - 1), "a few receivers: send now");
        assert!(should_defer(t, Some(Timestamp(1)), true, 1), "a drain is pending: join it, keep order");
    }

    #[test]
    fn a_batch_never_exceeds_the_byte_cap_and_keeps_order() {
        let mut out = Outbox::default();
        let frames: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"t":"message:receive","d":{{"seq":{i},"text":"{}"}}}}"#, "x".repeat(5000)))
            .collect();
        for f in &frames {
            out.push(Target::All { except: None }, f.clone());
        }
        let got = out.drain(&[c("a"), c("b")]);
        assert!(got.len() >= 4, "40 × 5 KB is split into several frames: {}", got.len());
        let mut received = Vec::new();
        for (frame, recipients) in &got {
            assert!(frame.len() <= MAX_BATCH_BYTES, "a frame of {} bytes", frame.len());
            assert_eq!(recipients, &vec![c("a"), c("b")]);
            match serde_json::from_str::<serde_json::Value>(frame).unwrap() {
                serde_json::Value::Array(batch) => received.extend(batch),
                one => received.push(one),
            }
        }
        let sent: Vec<serde_json::Value> = frames.iter().map(|f| serde_json::from_str(f).unwrap()).collect();
        assert_eq!(received, sent, "every envelope once, in order");
    }

    #[test]
    fn the_cap_is_exact_and_an_oversize_envelope_goes_alone() {
        assert_eq!(batches(&["1", "2", "3"], 5), vec!["[1,2]", "3"], "[1,2] is 5 bytes");
        assert_eq!(batches(&["1", "2", "3"], 4), vec!["1", "2", "3"]);
        assert_eq!(batches(&["1", "big-one", "2"], 5), vec!["1", "big-one", "2"], "alone and unwrapped");
        assert_eq!(batches(&["1", "2", "3"], 7), vec!["[1,2,3]"]);
        assert!(batches(&[], 7).is_empty());
    }

    #[test]
    fn a_socket_admitted_while_frames_wait_gets_only_what_comes_after_or_is_its_own() {
        let mut outbox = Outbox::default();
        outbox.push(Target::All { except: None }, r#"{"n":1}"#.into());
        outbox.push(Target::One(c("new")), r#"{"n":2}"#.into());
        outbox.admit(c("new"));
        outbox.push(Target::All { except: Some(c("new")) }, r#"{"n":3}"#.into());
        outbox.push(Target::One(c("new")), r#"{"n":4}"#.into());
        outbox.push(Target::All { except: None }, r#"{"n":5}"#.into());
        let conns = [c("old"), c("new")];
        let mut got: Vec<(String, Vec<ConnId>)> = outbox.drain(conns.iter());
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            vec![
                (r#"[{"n":2},{"n":4},{"n":5}]"#.to_owned(), vec![c("new")]),
                (r#"[{"n":1},{"n":3},{"n":5}]"#.to_owned(), vec![c("old")]),
            ]
        );
        // A drain forgets who was late: the next broadcast is everyone's.
        outbox.push(Target::All { except: None }, r#"{"n":6}"#.into());
        assert_eq!(outbox.drain(conns.iter()), vec![(r#"{"n":6}"#.to_owned(), vec![c("old"), c("new")])]);
        // Admitted to an empty queue, it is nobody's business.
        outbox.admit(c("newer"));
        assert!(outbox.late.is_empty());
    }

    #[test]
    fn a_new_socket_takes_its_greeting_and_every_delivery_keeps_its_order() {
        let mut outbox = Outbox::default();
        outbox.push(Target::All { except: None }, "1".into());
        outbox.admit(c("late"));
        outbox.push(Target::All { except: Some(c("new")) }, "2".into());
        outbox.admit(c("new"));
        outbox.push(Target::One(c("new")), "hello".into());
        outbox.push(Target::All { except: Some(c("new")) }, "joined".into());
        outbox.push(Target::One(c("new")), "more".into());
        outbox.push(Target::All { except: None }, "3".into());
        outbox.push(Target::One(c("new")), "after".into());
        assert_eq!(outbox.take_leading(&c("new")), vec!["[hello,more]"], "stops at a broadcast it gets");
        assert!(outbox.take_leading(&c("new")).is_empty(), "what is left waits behind the broadcast");
        let mut got = outbox.drain([c("old"), c("late"), c("new")].iter());
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            vec![
                ("[2,joined,3]".to_owned(), vec![c("late")]),
                ("[3,after]".to_owned(), vec![c("new")]),
                ("[1,2,joined,3]".to_owned(), vec![c("old")]),
            ]
        );
    }

    #[test]
    fn taking_a_greeting_delivers_what_a_drain_would_in_the_same_order() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let names = ["a", "b", "c", "d"];
        for round in 0..500 {
            let (mut whole, mut taken) = (Outbox::default(), Outbox::default());
            let mut joined: Vec<ConnId> = vec![c("a")];
            for i in 0..(next() % 12) {
                let who = c(names[(next() % 4) as usize]);
                if next() % 4 == 0 && !joined.contains(&who) {
                    whole.admit(who.clone());
                    taken.admit(who.clone());
                    joined.push(who);
                    continue;
                }
                let target = match next() % 3 {
                    0 => Target::All { except: Some(who) },
                    _ => Target::One(who),
                };
                whole.push(target.clone(), i.to_string());
                taken.push(target, i.to_string());
            }
            // Per socket: what it is sent at once, then its share of the drain, is what a drain
            // alone would have sent it.
            let who = c(names[(next() % 4) as usize]);
            let envelopes = |frame: &str| -> Vec<String> {
                match serde_json::from_str::<serde_json::Value>(frame) {
                    Ok(serde_json::Value::Array(items)) => items.iter().map(|v| v.to_string()).collect(),
                    _ => vec![frame.to_owned()],
                }
            };
            let first: Vec<String> = taken.take_leading(&who).iter().flat_map(|f| envelopes(f)).collect();
            let per_socket = |deliveries: Vec<Delivery>| {
                let mut by: HashMap<ConnId, Vec<String>> = HashMap::new();
                for (frame, recipients) in deliveries {
                    let parts = envelopes(&frame);
                    for r in recipients {
                        by.entry(r).or_default().extend(parts.iter().cloned());
                    }
                }
                by
            };
            let conns: Vec<ConnId> = names.iter().map(|n| c(n)).collect();
            let expected = per_socket(whole.drain(conns.iter()));
            let mut got = per_socket(taken.drain(conns.iter()));
            if !first.is_empty() {
                let rest = got.remove(&who).unwrap_or_default();
                got.insert(who.clone(), first.into_iter().chain(rest).collect());
            }
            assert_eq!(got, expected, "round {round}");
        }
    }

    #[test]
    fn sockets_that_left_get_nothing() {
        let mut out = Outbox::default();
        out.push(Target::One(c("gone")), "x".into());
        assert!(out.drain(&[c("a")]).is_empty());
    }
}
