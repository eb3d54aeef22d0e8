//! The machine and versions measured on, the smoke checks, and the BENCHMARKS.md tables.

use serde_json::{json, Value};
use std::path::Path;

/// Where generated tables go in BENCHMARKS.md, one section per storage setting (disk is the
/// default table); the text around them is kept.
fn markers(storage: &str) -> (String, String) {
    let section = if storage == "tmpfs" { "results-tmpfs" } else { "results" };
    (format!("<!-- {section}:start -->"), format!("<!-- {section}:end -->"))
}

/// Today's date, UTC, from the system clock.
pub fn today() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Cores, memory and CPU model of this machine.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "cpu": model.unwrap_or_else(|| "unknown".into()),
    })
}

fn package_version(root: &Path, package: &str) -> Value {
    let path = root.join("node_modules").join(package).join("package.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map_or(Value::Null, |v| v["version"].clone())
}

/// Versions of everything measured.
pub fn versions(root: &Path) -> Value {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    json!({
        "switchboard": env!("CARGO_PKG_VERSION"),
        "node": node,
        "miniflare": package_version(root, "miniflare"),
        "socket.io": package_version(root, "socket.io"),
    })
}

/// What a smoke run got wrong: lost connections or messages.
pub fn smoke_problems(run: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(results) = run["results"].as_object() else { return vec!["no results".into()] };
    for (target, r) in results {
        for c in r["connect"].as_array().into_iter().flatten() {
            if c["failures"] != 0 || c["broadcast_received"] != c["sockets"] {
                problems.push(format!("{target} connect: {c}"));
            }
        }
        for s in r["fanout"]["steps"].as_array().into_iter().flatten() {
            if s["losses"] != 0 || s["delivered"] == 0 {
                problems.push(format!("{target} fanout: {s}"));
            }
        }
        let rooms = &r["rooms"];
        if rooms["delivered"] != rooms["expected"] || rooms["delivered"] == 0 {
            problems.push(format!("{target} rooms: {rooms}"));
        }
        let ot = &r["ot"];
        if !ot.is_null() && (ot["errors"] != 0 || ot["failed_editors"] != 0 || ot["acked"] == 0) {
            problems.push(format!("{target} ot: {ot}"));
        }
        let notify = &r["notify"];
        if !notify.is_null()
            && (notify["delivered"] != notify["expected"]
                || notify["delivered"] == 0
                || notify["failed_calls"] != 0)
        {
            problems.push(format!("{target} notify: {notify}"));
        }
    }
    problems
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

/// The generated section: one table per scenario, each target a row, ratios below.
pub fn tables(run: &Value) -> String {
    let r = &run["results"];
    let targets = ["switchboard", "js-do", "socket.io", "ceiling"];
    let present: Vec<&str> = targets.iter().copied().filter(|t| !r[*t].is_null()).collect();
    let mut out = String::new();
    let m = &run["machine"];
    let v = &run["versions"];
    out += &format!(
        "Run `{}` on {} — {} cores, {} GiB, {}. Switchboard {} in workerd via Miniflare {}, Socket.IO {} on Node {}.\n\n",
        run["profile"].as_str().unwrap_or("?"),
        run["date"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory_gib"],
        m["cpu"].as_str().unwrap_or("?"),
        v["switchboard"].as_str().unwrap_or("?"),
        v["miniflare"].as_str().unwrap_or("?"),
        v["socket.io"].as_str().unwrap_or("?"),
        v["node"].as_str().unwrap_or("?"),
    );
    out += &format!(
        "Storage of the workerd targets (switchboard, js-do): **{}** ({}). Every socket is its own user; \
         rooms scenario senders and receivers alike. Each message goes as the SDK sends it, with a \
         `ref` (answered by the ack) and a client id (checked for a resend by Switchboard). `js-do` \
         is the plain-JavaScript Durable Object of `bench/peers/js-do` on the same runtime (no \
         member events, typing, limits, duplicate check or recovery); \
         Socket.IO and the ceiling store nothing.\n\n",
        run["storage"].as_str().unwrap_or("?"),
        if run["storage"] == "tmpfs" {
            "the same SQLite files on a RAM filesystem, /dev/shm: commits cost no disk"
        } else {
            "SQLite files on the disk, as `wrangler dev` and a deployment keep them"
        },
    );
    out += &format!(
        "Release wasm: {} bytes. Core processing per `message:send` in a 1,000-socket room (host, our code only): {:.2} µs.\n\n",
        run["wasm_bytes"],
        num(&run["core_us_per_message"])
    );

    out += "### 1. connect\n\nEvery socket its own user, at 1,000/s, into rooms of the size shown; then one message into each room. Server CPU: the server process's user + system time while the sockets connected.\n\n| target | sockets | room size | connects/s | handshake p50 ms | p99 ms | failures | server CPU ms | RSS KiB/socket | broadcast received | last delivery ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    for t in &present {
        for c in r[*t]["connect"].as_array().into_iter().flatten() {
            out += &format!(
                "| {t} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {:.1} | {} | {:.1} |\n",
                c["sockets"],
                c["room_size"],
                num(&c["connects_per_sec"]),
                num(&c["handshake_p50_ms"]),
                num(&c["handshake_p99_ms"]),
                c["failures"],
                c["server_cpu_ms"],
                num(&c["rss_per_socket_kib"]),
                c["broadcast_received"],
                num(&c["broadcast_last_ms"]),
            );
        }
    }
    let warm: Vec<String> = present
        .iter()
        .filter(|t| r[**t]["warm_up"].is_object())
        .map(|t| {
            let w = &r[*t]["warm_up"];
            format!("{t} {:.1} / {:.1} ms", num(&w["handshake_p50_ms"]), num(&w["handshake_max_ms"]))
        })
        .collect();
    if let Some(w) = present.iter().map(|t| &r[*t]["warm_up"]).find(|w| w.is_object()) {
        out += &format!(
            "\nBefore these rows each target's fresh process took {} sockets into {} new rooms (code compiled on first use, the first objects), not counted above; their handshake p50 / max: {}.\n",
            w["sockets"],
            w["rooms"],
            warm.join(", ")
        );
    }

    out += "\n### 2. fan-out\n\n| target | receivers | msgs/s sent | delivered/s | p50 ms | p99 ms | max ms | losses | server CPU µs/delivery |\n|---|---|---|---|---|---|---|---|---|\n";
    for t in &present {
        let f = &r[*t]["fanout"];
        for s in f["steps"].as_array().into_iter().flatten() {
            out += &format!(
                "| {t} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.1} |\n",
                f["receivers"],
                s["rate"],
                num(&s["delivered_per_sec"]),
                num(&s["p50_ms"]),
                num(&s["p99_ms"]),
                num(&s["max_ms"]),
                s["losses"],
                num(&s["server_cpu_us_per_delivery"]),
            );
        }
    }
    out +=
        "\nHighest delivered rate with p99 < 50 ms and no losses:\n\n| target | deliveries/s |\n|---|---|\n";
    for t in &present {
        out += &format!("| {t} | {:.0} |\n", num(&r[*t]["fanout"]["best_delivered_per_sec"]));
    }

    out += "\n### 3. rooms\n\n| target | rooms × members | sent | delivered / expected | p50 ms | p99 ms | max ms | server CPU % |\n|---|---|---|---|---|---|---|---|\n";
    for t in &present {
        let x = &r[*t]["rooms"];
        out += &format!(
            "| {t} | {} × {} | {} | {} / {} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
            x["rooms"],
            x["members"],
            x["sent"],
            x["delivered"],
            x["expected"],
            num(&x["p50_ms"]),
            num(&x["p99_ms"]),
            num(&x["max_ms"]),
            num(&x["server_cpu_percent"]),
        );
    }

    let sb = &r["switchboard"];
    let pair = |other: &str| {
        let o = &r[other];
        let connect_p99 =
            |x: &Value, i: usize| x["connect"].get(i).map_or(0.0, |c| num(&c["handshake_p99_ms"]));
        let connects = sb["connect"].as_array().map_or(0, Vec::len);
        let connect_ratios: Vec<String> =
            (0..connects).map(|i| ratio(connect_p99(sb, i), connect_p99(o, i))).collect();
        format!(
            "| Switchboard / {other} | {} | {} | {} | {} |\n",
            ratio(num(&sb["fanout"]["best_delivered_per_sec"]), num(&o["fanout"]["best_delivered_per_sec"])),
            connect_ratios.join(" · "),
            ratio(num(&sb["rooms"]["p99_ms"]), num(&o["rooms"]["p99_ms"])),
            ratio(num(&sb["rooms"]["server_cpu_percent"]), num(&o["rooms"]["server_cpu_percent"])),
        )
    };
    if !sb.is_null() {
        out += "\n### Ratios\n\n| | fan-out best rate (higher is better) | connect p99, each row of table 1 (lower is better) | rooms p99 (lower is better) | rooms CPU (lower is better) |\n|---|---|---|---|---|\n";
        for other in ["js-do", "socket.io", "ceiling"] {
            if !r[other].is_null() {
                out += &pair(other);
            }
        }
    }
    out += "\n### 4. notify\n\nOne app-server call naming every user; the connected ones each have one device online.\n\n| target | users | connected | calls | HTTP answer p50 ms | max ms | all devices have it p50 ms | max ms | per device p50 ms | p99 ms | delivered / expected |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    for t in &present {
        let n = &r[*t]["notify"];
        if n.is_null() {
            continue;
        }
        out += &format!(
            "| {t} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {} |\n",
            n["users"],
            n["connected"],
            n["calls"],
            num(&n["http_p50_ms"]),
            num(&n["http_max_ms"]),
            num(&n["all_devices_p50_ms"]),
            num(&n["all_devices_max_ms"]),
            num(&n["device_p50_ms"]),
            num(&n["device_p99_ms"]),
            n["delivered"],
            n["expected"],
        );
    }
    let notify_p50 = |t: &str| num(&r[t]["notify"]["all_devices_p50_ms"]);
    if !r["switchboard"]["notify"].is_null() && !r["socket.io"]["notify"].is_null() {
        out += &format!(
            "\nSwitchboard / socket.io, all devices p50 (lower is better): {}. The ceiling has no notify route.\n",
            ratio(notify_p50("switchboard"), notify_p50("socket.io"))
        );
    }
    let ot = &r["switchboard"]["ot"];
    if !ot.is_null() {
        out += &format!(
            "\n### 5. OT documents\n\nSwitchboard only (the peers have no documents). Each editor keeps one op in flight and aims at 5 ops/s.\n\n| documents × editors | seconds | target ops/s | acked ops/s | ack p50 ms | p99 ms | max ms | errors | core transforms/s (host) |\n|---|---|---|---|---|---|---|---|---|\n| {} × {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.0} |\n",
            ot["docs"],
            ot["editors_per_doc"],
            ot["secs"],
            num(&ot["target_ops_per_sec"]),
            num(&ot["acked_per_sec"]),
            num(&ot["ack_p50_ms"]),
            num(&ot["ack_p99_ms"]),
            num(&ot["ack_max_ms"]),
            ot["errors"],
            num(&ot["core_transforms_per_sec"]),
        );
    }
    out
}

/// Replaces the generated section of `path` (creating the file if needed), keeping the rest.
pub fn write_markdown(run: &Value, path: &Path) -> std::io::Result<()> {
    let (start, end) = markers(run["storage"].as_str().unwrap_or("disk"));
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let generated = format!("{start}\n{}{end}", tables(run));
    let updated = match (existing.find(&start), existing.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{generated}{}", &existing[..s], &existing[e + end.len()..]),
        _ => format!("{existing}\n{generated}\n"),
    };
    std::fs::write(path, updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(losses: u64) -> Value {
        let target = json!({
            "warm_up": {"sockets": 20, "rooms": 2, "handshake_p50_ms": 3.0, "handshake_max_ms": 30.0},
            "connect": [{"sockets": 2, "room_size": 2, "failures": 0, "broadcast_received": 2, "handshake_p99_ms": 4.0}],
            "fanout": {"receivers": 2, "steps": [{"rate": 10, "losses": losses, "delivered": 20}], "best_delivered_per_sec": 20.0},
            "rooms": {"rooms": 1, "members": 2, "delivered": 4, "expected": 4, "p99_ms": 2.0, "server_cpu_percent": 5.0},
        });
        json!({ "profile": "smoke", "results": { "switchboard": target.clone(), "socket.io": target } })
    }

    #[test]
    fn smoke_checks_catch_losses() {
        assert!(smoke_problems(&run(0)).is_empty());
        assert_eq!(smoke_problems(&run(3)).len(), 2);
    }

    #[test]
    fn the_generated_section_replaces_only_itself() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("B.md");
        let (start, end) = markers("disk");
        std::fs::write(&path, format!("# B\nintro\n{start}\nold\n{end}\nanalysis\n")).unwrap();
        write_markdown(&run(0), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# B\nintro\n"));
        assert!(text.ends_with("\nanalysis\n"));
        assert!(!text.contains("old"));
        assert!(text.contains("| Switchboard / socket.io | 1.00 |"));
        assert!(text.contains("took 20 sockets into 2 new rooms"));
        assert!(text.contains("switchboard 3.0 / 30.0 ms, socket.io 3.0 / 30.0 ms"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dates() {
        assert_eq!(today().len(), 10);
    }
}
