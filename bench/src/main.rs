//! `switchboard-bench`: measures Switchboard against the Socket.IO server it replaces and a
//! native ceiling, in one run on one machine, and reports ratios.
//!
//! ```text
//! switchboard-bench [--profile smoke|quick|full] [--targets switchboard,js-do,socket.io,ceiling]
//!                   [--storage disk|tmpfs] [--scenarios connect,fanout,rooms,notify,ot]
//!                   [--out results.json] [--report BENCHMARKS.md]
//! ```
//! `--connect 1000:100,10000:10000` replaces the profile's connect runs (sockets:room size).
//! `--storage` says where the two workerd targets keep Durable Object storage: `disk` (the
//! default: SQLite files, as `wrangler dev` and a deployment keep them) or `tmpfs` (the same files
//! on a RAM filesystem, /dev/shm: commits without a disk).
//! `smoke` runs every scenario at tiny sizes and exits non-zero if anything was lost; it never
//! writes a report. A run of only some scenarios (for profiling a lever) never writes one either.

mod client;
mod core_timing;
mod editor;
mod protocol;
mod report;
mod scenarios;
mod servers;
mod stats;
mod token;

use client::Clock;
use protocol::Flavor;
use serde_json::{json, Value};
use servers::Server;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Sizes of one run.
struct Profile {
    name: &'static str,
    /// (sockets, room size): every socket its own user.
    connect: &'static [(usize, usize)],
    connect_rate: u32,
    fanout_receivers: usize,
    fanout_rates: &'static [u32],
    fanout_step: Duration,
    rooms: usize,
    room_members: usize,
    rooms_run: Duration,
    notify_users: usize,
    notify_connected: usize,
    notify_calls: usize,
    ot_docs: usize,
    ot_editors: usize,
    ot_run: Duration,
}

/// Ops per second each OT editor aims at (with one op in flight, as real clients).
const OT_EDITOR_RATE: f64 = 5.0;
/// Before the connect scenario each target takes 2 new rooms of 100 sockets: the first requests
/// of a fresh process (code compiled on first use, then recompiled optimized once it is hot:
/// 20 connects were too few, the next 1,000 still paid ~150 ms of it) are reported apart, not
/// as a join storm.
const WARM_UP_ROOMS: usize = 2;
const WARM_UP_PER_ROOM: usize = 100;

const PROFILES: [Profile; 3] = [
    Profile {
        name: "smoke",
        connect: &[(20, 10)],
        connect_rate: 200,
        fanout_receivers: 10,
        fanout_rates: &[10],
        fanout_step: Duration::from_secs(1),
        rooms: 5,
        room_members: 2,
        rooms_run: Duration::from_secs(1),
        notify_users: 20,
        notify_connected: 5,
        notify_calls: 2,
        ot_docs: 2,
        ot_editors: 3,
        ot_run: Duration::from_secs(1),
    },
    Profile {
        name: "quick",
        connect: &[(1000, 100), (10000, 10000)],
        connect_rate: 1000,
        fanout_receivers: 500,
        fanout_rates: &[20, 50, 100, 200, 400],
        fanout_step: Duration::from_secs(3),
        rooms: 500,
        room_members: 4,
        rooms_run: Duration::from_secs(5),
        notify_users: 1000,
        notify_connected: 200,
        notify_calls: 3,
        ot_docs: 20,
        ot_editors: 5,
        ot_run: Duration::from_secs(5),
    },
    Profile {
        name: "full",
        connect: &[(1000, 100), (5000, 5000), (10000, 10000)],
        connect_rate: 1000,
        fanout_receivers: 1000,
        fanout_rates: &[20, 50, 100, 200, 400],
        fanout_step: Duration::from_secs(5),
        rooms: 500,
        room_members: 4,
        rooms_run: Duration::from_secs(10),
        notify_users: 1000,
        notify_connected: 200,
        notify_calls: 5,
        ot_docs: 100,
        ot_editors: 5,
        ot_run: Duration::from_secs(10),
    },
];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let profile_name = arg(&args, "--profile").unwrap_or_else(|| "quick".into());
    let Some(profile) = PROFILES.iter().find(|p| p.name == profile_name) else {
        eprintln!("unknown profile {profile_name}: smoke, quick or full");
        std::process::exit(2);
    };
    let targets: Vec<Flavor> = arg(&args, "--targets")
        .unwrap_or_else(|| "switchboard,js-do,socket.io,ceiling".into())
        .split(',')
        .filter_map(|t| Flavor::ALL.into_iter().find(|f| f.name() == t))
        .collect();
    let connect_runs: Vec<(usize, usize)> = match arg(&args, "--connect") {
        Some(list) => list
            .split(',')
            .filter_map(|pair| {
                let (n, size) = pair.split_once(':')?;
                Some((n.trim().parse().ok()?, size.trim().parse().ok()?))
            })
            .collect(),
        None => profile.connect.to_vec(),
    };
    let storage = arg(&args, "--storage").unwrap_or_else(|| "disk".into());
    if storage != "disk" && storage != "tmpfs" {
        eprintln!("--storage must be disk or tmpfs, not {storage}");
        std::process::exit(2);
    }
    let scenarios = arg(&args, "--scenarios").unwrap_or_else(|| "connect,fanout,rooms,notify,ot".into());
    let runs = |name: &str| scenarios.split(',').any(|s| s == name);
    let root = std::env::var("SWITCHBOARD_ROOT").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("."));
    let dev_vars = std::fs::read_to_string(root.join(".dev.vars.example")).unwrap_or_default();
    token::set_secret(token::read_var(&dev_vars, "JWT_SECRET").unwrap_or_default());
    let server_key = token::read_var(&dev_vars, "SERVER_API_KEY").unwrap_or_default();

    let clock = Clock(Instant::now());
    let mut results = serde_json::Map::new();
    for flavor in targets {
        eprintln!("== {}", flavor.name());
        let server = match Server::start(flavor, &root, &storage).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start {}: {e}", flavor.name());
                std::process::exit(1);
            }
        };
        let mut warm_up = None;
        if runs("connect") {
            server.settle().await;
            let w = scenarios::warm_up(&server, WARM_UP_ROOMS, WARM_UP_PER_ROOM, profile.connect_rate, clock)
                .await;
            eprintln!("   warm-up: {w:?}");
            warm_up = Some(w);
        }
        let mut connect = Vec::new();
        for &(n, room_size) in connect_runs.iter().filter(|_| runs("connect")) {
            server.settle().await;
            let r = scenarios::connect(&server, n, room_size, profile.connect_rate, clock).await;
            eprintln!("   connect {n} into rooms of {room_size}: {r:?}");
            connect.push(r);
        }
        let mut fanout = None;
        if runs("fanout") {
            server.settle().await;
            let f = scenarios::fanout(
                &server,
                profile.fanout_receivers,
                profile.fanout_rates,
                profile.fanout_step,
                clock,
            )
            .await;
            eprintln!("   fanout best {:.0}/s", f.best_delivered_per_sec);
            fanout = Some(f);
        }
        let mut rooms = None;
        if runs("rooms") {
            server.settle().await;
            let r = scenarios::rooms(&server, profile.rooms, profile.room_members, profile.rooms_run, clock)
                .await;
            eprintln!("   rooms p99 {:.1} ms", r.p99_ms);
            rooms = Some(r);
        }
        let mut notify = None;
        if runs("notify") {
            server.settle().await;
            notify = scenarios::notify(
                &server,
                profile.notify_users,
                profile.notify_connected,
                profile.notify_calls,
                &server_key,
                clock,
            )
            .await;
        }
        if let Some(n) = &notify {
            eprintln!(
                "   notify all devices p50 {:.1} ms, answer p50 {:.1} ms",
                n.all_devices_p50_ms, n.http_p50_ms
            );
        }
        let mut ot = None;
        if runs("ot") && flavor == Flavor::Switchboard {
            server.settle().await;
            let r = editor::ot(
                &server,
                profile.ot_docs,
                profile.ot_editors,
                profile.ot_run,
                OT_EDITOR_RATE,
                clock,
            )
            .await;
            eprintln!("   ot acked {:.0}/s, p99 {:.1} ms", r.acked_per_sec, r.ack_p99_ms);
            ot = Some(r);
        }
        results.insert(
            flavor.name().into(),
            json!({ "warm_up": warm_up, "connect": connect, "fanout": fanout, "rooms": rooms, "notify": notify, "ot": ot }),
        );
        server.stop().await;
    }
    let run = json!({
        "profile": profile.name,
        "date": report::today(),
        "machine": report::machine(),
        "storage": storage,
        "versions": report::versions(&root),
        "wasm_bytes": std::fs::metadata(root.join("build/index_bg.wasm")).map(|m| m.len()).unwrap_or(0),
        "core_us_per_message": core_timing::message_us(1000, 20_000),
        "results": Value::Object(results),
    });
    let text = serde_json::to_string_pretty(&run).unwrap_or_default();
    println!("{text}");
    if let Some(out) = arg(&args, "--out") {
        if let Err(e) = std::fs::write(&out, &text) {
            eprintln!("cannot write {out}: {e}");
        }
    }
    if profile.name == "smoke" {
        let problems = report::smoke_problems(&run);
        for p in &problems {
            eprintln!("smoke: {p}");
        }
        std::process::exit(if problems.is_empty() { 0 } else { 1 });
    }
    let every_scenario = ["connect", "fanout", "rooms", "notify", "ot"].iter().all(|s| runs(s));
    if let (Some(path), true) = (arg(&args, "--report"), every_scenario) {
        if let Err(e) = report::write_markdown(&run, std::path::Path::new(&path)) {
            eprintln!("cannot write {path}: {e}");
        }
    }
}
