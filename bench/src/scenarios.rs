//! The scenarios, each bounded in count and time, loopback only.

use crate::client::{self, Clock, Conn, Receipt};
use crate::servers::Server;
use crate::stats::Samples;
use crate::token;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages per second one sender sends (under Switchboard's per-user message rate; each sender
/// is its own user).
const PER_SENDER_RATE: u32 = 5;

/// Opens `n` sockets into `room` at `rate` per second. Every socket is its own user, named
/// `prefix{i}`, as on a real service where each member is a person (and so the per-user socket
/// limit stays at its deployed value).
async fn open_many(
    server: &Server,
    room: &str,
    prefix: &str,
    n: usize,
    rate: u32,
    clock: Clock,
    received: &Arc<AtomicU64>,
) -> (Vec<Conn>, Samples, Samples, usize) {
    open_each(server, n, rate, clock, received, |i| (room.to_owned(), format!("{prefix}{i}"))).await
}

/// Opens `n` sockets at `rate` per second; socket `i` joins room `place(i).0` as user
/// `place(i).1`. Returns the connections, their handshake times and how many failed.
async fn open_each(
    server: &Server,
    n: usize,
    rate: u32,
    clock: Clock,
    received: &Arc<AtomicU64>,
    place: impl Fn(usize) -> (String, String),
) -> (Vec<Conn>, Samples, Samples, usize) {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
        let (room, user) = place(i);
        let token = token::mint(&user, 3600);
        let url = server.flavor.url(&server.ws, &room, &token);
        let (flavor, received) = (server.flavor, received.clone());
        tasks.push(tokio::spawn(
            async move { client::open(flavor, &url, &room, &token, clock, received).await },
        ));
    }
    let (mut conns, mut handshakes, mut upgrades, mut failures) =
        (Vec::with_capacity(n), Samples::default(), Samples::default(), 0);
    for task in tasks {
        match task.await {
            Ok(Ok((conn, took, upgraded))) => {
                handshakes.record(took.as_micros() as u64);
                upgrades.record(upgraded.as_micros() as u64);
                conns.push(conn);
            }
            _ => failures += 1,
        }
    }
    (conns, handshakes, upgrades, failures)
}

async fn finish_all(conns: Vec<Conn>) -> Vec<Receipt> {
    let mut all = Vec::new();
    for c in conns {
        all.extend(c.finish().await);
    }
    all
}

async fn wait_for(counter: &AtomicU64, target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The first connects after a server started: code compiled on first use and the first
/// objects make them slower than any later ones, once per process. Measured apart, so that the
/// connect scenario measures joins rather than the start.
#[derive(Debug, Serialize)]
pub struct WarmUp {
    pub sockets: usize,
    pub rooms: usize,
    pub handshake_p50_ms: f64,
    pub handshake_max_ms: f64,
}

/// Opens `rooms × per_room` sockets, each its own user, at `rate`/s into new rooms, then closes
/// them and waits for the server to settle.
pub async fn warm_up(server: &Server, rooms: usize, per_room: usize, rate: u32, clock: Clock) -> WarmUp {
    let n = rooms * per_room;
    let ignored = Arc::new(AtomicU64::new(0));
    let (conns, mut handshakes, _, _) = open_each(server, n, rate, clock, &ignored, |i| {
        (format!("warm-up-{}", i / per_room), format!("w{i}"))
    })
    .await;
    finish_all(conns).await;
    server.settle().await;
    let (p50, _, max) = handshakes.summary_ms();
    WarmUp { sockets: n, rooms, handshake_p50_ms: p50, handshake_max_ms: max }
}

/// Scenario 1: `n` sockets, each its own user, connect at `rate`/s into rooms of `room_size`
/// (room `k` takes sockets `k·room_size …`, so every join lands in a room that is filling up);
/// then one message into each room, which every member must receive.
#[derive(Debug, Serialize)]
pub struct ConnectResult {
    pub sockets: usize,
    pub room_size: usize,
    pub rate: u32,
    pub connects_per_sec: f64,
    pub handshake_p50_ms: f64,
    pub handshake_p99_ms: f64,
    /// The upgrade alone (the `101` answered), before the greeting: what the Worker → object hop
    /// and accept cost, apart from when the object sends `room:state`.
    pub upgrade_p50_ms: f64,
    pub upgrade_p99_ms: f64,
    pub failures: usize,
    /// The server's CPU time (user + system, every thread) while the sockets connected.
    pub server_cpu_ms: u64,
    pub rss_per_socket_kib: f64,
    pub broadcast_received: u64,
    pub broadcast_last_ms: f64,
}

pub async fn connect(server: &Server, n: usize, room_size: usize, rate: u32, clock: Clock) -> ConnectResult {
    let room_size = room_size.clamp(1, n.max(1));
    let rooms = n.div_ceil(room_size);
    let room = |k: usize| format!("connect-{n}-{room_size}-{k}");
    let received = Arc::new(AtomicU64::new(0));
    let rss_before = server.rss_kib();
    let window = format!("connect-{n}-{room_size}");
    server.window(&window, true).await;
    let started = Instant::now();
    let cpu_before = server.cpu_ms();
    let (conns, mut handshakes, mut upgrades, failures) =
        open_each(server, n, rate, clock, &received, |i| (room(i / room_size), format!("c{n}-{i}"))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu_ms = server.cpu_ms().saturating_sub(cpu_before);
    server.window(&window, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server.rss_kib();

    let sender_received = Arc::new(AtomicU64::new(0));
    let (senders, _, _, _) =
        open_each(server, rooms, 1000, clock, &sender_received, |k| (room(k), format!("sender{n}-{k}")))
            .await;
    let sent_at = clock.now_us();
    // A sender that failed to open leaves its room without the message (counted as missing).
    if senders.len() == rooms {
        for (k, s) in senders.iter().enumerate() {
            s.send(server.flavor.message(&room(k), sent_at));
        }
    }
    wait_for(&received, conns.len() as u64, Duration::from_secs(20)).await;
    let receipts = finish_all(conns.into_iter().chain(senders).collect()).await;
    let last = receipts.iter().filter(|(s, _)| *s == sent_at).map(|(_, l)| *l).max().unwrap_or(0);
    let connected = handshakes.len();
    let (p50, p99, _) = handshakes.summary_ms();
    let (upgrade_p50, upgrade_p99, _) = upgrades.summary_ms();
    ConnectResult {
        sockets: n,
        room_size,
        rate,
        connects_per_sec: connected as f64 / elapsed.max(1e-9),
        handshake_p50_ms: p50,
        handshake_p99_ms: p99,
        upgrade_p50_ms: upgrade_p50,
        upgrade_p99_ms: upgrade_p99,
        failures,
        server_cpu_ms,
        rss_per_socket_kib: rss_after.saturating_sub(rss_before) as f64 / connected.max(1) as f64,
        broadcast_received: received.load(Ordering::Relaxed),
        broadcast_last_ms: last as f64 / 1000.0,
    }
}

/// Scenario 2, one step: messages at `rate`/s into a room of receivers.
#[derive(Debug, Serialize)]
pub struct FanoutStep {
    pub rate: u32,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub delivered_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub losses: u64,
    pub server_cpu_us_per_delivery: f64,
}

#[derive(Debug, Serialize)]
pub struct FanoutResult {
    pub receivers: usize,
    pub step_secs: f64,
    pub steps: Vec<FanoutStep>,
    /// The highest delivered rate of a step with p99 < 50 ms and no losses.
    pub best_delivered_per_sec: f64,
}

pub async fn fanout(
    server: &Server,
    receivers: usize,
    rates: &[u32],
    step: Duration,
    clock: Clock,
) -> FanoutResult {
    let room = format!("fanout-{receivers}");
    let received = Arc::new(AtomicU64::new(0));
    let (conns, _, _, _) = open_many(server, &room, "r", receivers, 1000, clock, &received).await;
    let max_rate = rates.iter().copied().max().unwrap_or(1);
    let sender_count = max_rate.div_ceil(PER_SENDER_RATE) as usize;
    let ignored = Arc::new(AtomicU64::new(0));
    let (senders, _, _, _) = open_many(server, &room, "s", sender_count, 1000, clock, &ignored).await;
    // Every sender is in the room too; their receipts are not counted.
    let listeners = conns.len() as u64;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One message before measuring: a room's first write creates its storage (on disk, the
    // SQLite file), a one-time cost per room that would otherwise be 1/count of a step's
    // deliveries and decide its p99. Its receipts are before every step's window.
    if let Some(s) = senders.first() {
        s.send(server.flavor.message(&room, clock.now_us()));
        wait_for(&received, listeners, Duration::from_secs(10)).await;
    }

    let mut windows = Vec::new();
    server.window("fanout", true).await;
    for &rate in rates {
        let start_us = clock.now_us();
        let cpu_before = server.cpu_ms();
        let count = (f64::from(rate) * step.as_secs_f64()).round() as u64;
        let began = Instant::now();
        for k in 0..count {
            tokio::time::sleep_until((began + Duration::from_secs_f64(k as f64 / f64::from(rate))).into())
                .await;
            if let Some(s) = senders.get(k as usize % senders.len().max(1)) {
                s.send(server.flavor.message(&room, clock.now_us()));
            }
        }
        let end_us = clock.now_us();
        // Let the step drain before the next one starts, so steps do not overlap.
        tokio::time::sleep(Duration::from_millis(500)).await;
        windows.push((rate, start_us, end_us, count, server.cpu_ms() - cpu_before));
    }
    server.window("fanout", false).await;
    // Whatever has not arrived 10 s after the last step is lost, not merely late.
    let expected_total: u64 = (windows.iter().map(|w| w.3).sum::<u64>() + 1) * listeners;
    wait_for(&received, expected_total, Duration::from_secs(10)).await;
    let receipts = finish_all(conns).await;
    drop(finish_all(senders).await);

    let mut steps = Vec::new();
    for (rate, start, end, sent, cpu_ms) in windows {
        let mut samples = Samples::default();
        for (sent_at, latency) in &receipts {
            if (start..=end).contains(sent_at) {
                samples.record(*latency);
            }
        }
        let delivered = samples.len() as u64;
        let expected = sent * listeners;
        let (p50, p99, max) = samples.summary_ms();
        steps.push(FanoutStep {
            rate,
            sent,
            expected,
            delivered,
            delivered_per_sec: delivered as f64 / step.as_secs_f64(),
            p50_ms: p50,
            p99_ms: p99,
            max_ms: max,
            losses: expected.saturating_sub(delivered),
            server_cpu_us_per_delivery: cpu_ms as f64 * 1000.0 / delivered.max(1) as f64,
        });
    }
    let best = steps
        .iter()
        .filter(|s| s.p99_ms < 50.0 && s.losses == 0 && s.delivered > 0)
        .map(|s| s.delivered_per_sec)
        .fold(0.0, f64::max);
    FanoutResult {
        receivers: listeners as usize,
        step_secs: step.as_secs_f64(),
        steps,
        best_delivered_per_sec: best,
    }
}

/// Scenario 3: many small rooms, every member sending once a second.
#[derive(Debug, Serialize)]
pub struct RoomsResult {
    pub rooms: usize,
    pub members: usize,
    pub secs: f64,
    pub sent: u64,
    pub delivered: u64,
    pub expected: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_cpu_percent: f64,
}

pub async fn rooms(
    server: &Server,
    rooms: usize,
    members: usize,
    run: Duration,
    clock: Clock,
) -> RoomsResult {
    let received = Arc::new(AtomicU64::new(0));
    let mut by_room = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let room = format!("small-{r}");
        let (conns, _, _, _) =
            open_many(server, &room, &format!("m{r}-"), members, 2000, clock, &received).await;
        by_room.push((room, conns));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.window("rooms", true).await;
    let cpu_before = server.cpu_ms();
    let began = Instant::now();
    let total = rooms * members;
    let per_sec = total as f64;
    let count = (per_sec * run.as_secs_f64()) as usize;
    let start_us = clock.now_us();
    for k in 0..count {
        tokio::time::sleep_until((began + Duration::from_secs_f64(k as f64 / per_sec)).into()).await;
        let (room, conns) = &by_room[(k / members) % rooms];
        if let Some(c) = conns.get(k % members) {
            c.send(server.flavor.message(room, clock.now_us()));
        }
    }
    let end_us = clock.now_us();
    wait_for(&received, (count * members.saturating_sub(1)) as u64, Duration::from_secs(10)).await;
    let cpu_ms = server.cpu_ms() - cpu_before;
    let wall = began.elapsed().as_secs_f64();
    server.window("rooms", false).await;
    let mut samples = Samples::default();
    for (_, conns) in by_room {
        for (sent, latency) in finish_all(conns).await {
            if (start_us..=end_us).contains(&sent) {
                samples.record(latency);
            }
        }
    }
    let (p50, p99, max) = samples.summary_ms();
    let min_members = members.saturating_sub(1) as u64;
    RoomsResult {
        rooms,
        members,
        secs: run.as_secs_f64(),
        sent: count as u64,
        delivered: samples.len() as u64,
        expected: count as u64 * min_members,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        server_cpu_percent: cpu_ms as f64 / 10.0 / wall,
    }
}

/// Scenario 4: one app-server call notifying `users` users, of whom the first `connected` have
/// a device online, repeated `calls` times → how long until every connected device has it.
#[derive(Debug, Serialize)]
pub struct NotifyResult {
    pub users: usize,
    pub connected: usize,
    pub calls: usize,
    /// The app server's wait for the HTTP answer.
    pub http_p50_ms: f64,
    pub http_max_ms: f64,
    /// Each call's answer time, in order: the first call also creates the users' objects.
    pub http_each_ms: Vec<f64>,
    /// Per call: from sending the request until the last connected device had it.
    pub all_devices_p50_ms: f64,
    pub all_devices_max_ms: f64,
    /// Per device and call.
    pub device_p50_ms: f64,
    pub device_p99_ms: f64,
    pub delivered: u64,
    pub expected: u64,
    pub failed_calls: usize,
}

pub async fn notify(
    server: &Server,
    users: usize,
    connected: usize,
    calls: usize,
    server_key: &str,
    clock: Clock,
) -> Option<NotifyResult> {
    let path = server.flavor.notify_path()?;
    let addr = server.ws.trim_start_matches("ws://").to_owned();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(connected);
    let started = Instant::now();
    for i in 0..connected {
        tokio::time::sleep_until((started + Duration::from_millis(i as u64)).into()).await;
        let token = token::mint(&format!("n{i}"), 3600);
        let url = server.flavor.user_url(&server.ws, &token)?;
        let (flavor, received) = (server.flavor, received.clone());
        tasks.push(tokio::spawn(async move {
            client::open(flavor, &url, "notify", &token, clock, received).await
        }));
    }
    let mut devices = Vec::with_capacity(connected);
    for task in tasks {
        if let Ok(Ok((conn, _, _))) = task.await {
            devices.push(conn);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_users: Vec<String> = (0..users).map(|i| format!("n{i}")).collect();
    let (mut http, mut http_each_ms, mut sent_times, mut failed_calls) =
        (Samples::default(), Vec::new(), Vec::new(), 0);
    for call in 0..calls {
        let sent_at = clock.now_us();
        let body = serde_json::json!({
            "users": all_users,
            "notification": { "type": "bench", "title": "bench", "data": { "sent": sent_at } },
        })
        .to_string();
        let began = Instant::now();
        match client::post(&addr, path, server_key, &body).await {
            Ok((status, _)) if (200..300).contains(&status) => {
                let took = began.elapsed().as_micros() as u64;
                http.record(took);
                http_each_ms.push(took as f64 / 1000.0);
            }
            _ => failed_calls += 1,
        }
        sent_times.push(sent_at);
        let target = ((call + 1) * devices.len()) as u64;
        wait_for(&received, target, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let receipts = finish_all(devices).await;
    let (mut per_device, mut all_devices) = (Samples::default(), Samples::default());
    for sent_at in &sent_times {
        let latencies: Vec<u64> = receipts.iter().filter(|(s, _)| s == sent_at).map(|(_, l)| *l).collect();
        latencies.iter().for_each(|l| per_device.record(*l));
        if let Some(last) = latencies.iter().max() {
            all_devices.record(*last);
        }
    }
    let (http_p50, _, http_max) = http.summary_ms();
    let (all_p50, _, all_max) = all_devices.summary_ms();
    let (device_p50, device_p99, _) = per_device.summary_ms();
    Some(NotifyResult {
        users,
        connected,
        calls,
        http_p50_ms: http_p50,
        http_max_ms: http_max,
        http_each_ms,
        all_devices_p50_ms: all_p50,
        all_devices_max_ms: all_max,
        device_p50_ms: device_p50,
        device_p99_ms: device_p99,
        delivered: per_device.len() as u64,
        expected: (calls * connected) as u64,
        failed_calls,
    })
}
