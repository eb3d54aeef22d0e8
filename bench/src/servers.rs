//! Starting the servers under test as their own processes, and reading their memory and CPU
//! from /proc (Linux).

use crate::protocol::Flavor;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server.
pub struct Server {
    /// Which one.
    pub flavor: Flavor,
    /// `ws://127.0.0.1:port`
    pub ws: String,
    /// The process doing the serving (workerd for Switchboard), for /proc readings.
    pub pid: u32,
    child: Child,
    /// Lines to a workerd launcher (`profile-start <name>`, `profile-stop <name>`); closing it
    /// asks the launcher to stop.
    stdin: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    /// The launcher's later stdout lines: its answers to those window lines.
    said: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

impl Server {
    /// Starts `flavor`'s server; `root` is the repository, `storage` where workerd targets keep
    /// Durable Object storage (`disk` or `tmpfs`; the others store nothing).
    pub async fn start(flavor: Flavor, root: &Path, storage: &str) -> Result<Server, String> {
        let mut cmd = match flavor {
            Flavor::Switchboard => node(root, "bench/peers/switchboard.mjs"),
            Flavor::JsDo => node(root, "bench/peers/js-do.mjs"),
            Flavor::SocketIo => node(root, "bench/peers/socketio/server.mjs"),
            Flavor::Ceiling => Command::new(sibling_binary("ceiling")?),
        };
        let mut child = cmd
            .env("BENCH_STORAGE", storage)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", flavor.name()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| format!("{} did not start within 60 s", flavor.name()))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} exited before printing its port", flavor.name()))?;
        // Keep draining stdout so the server never blocks on a full pipe; a launcher's answers
        // to window lines go to `said`.
        let (tell, said) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tell.send(line);
            }
        });
        let ready: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{line}: {e}"))?;
        let port = ready["port"].as_u64().ok_or_else(|| format!("no port in {line}"))?;
        let parent = child.id().ok_or("server exited")?;
        let pid = match flavor {
            Flavor::Switchboard | Flavor::JsDo => {
                find_descendant(parent, "workerd").ok_or("no workerd process found")?
            }
            _ => parent,
        };
        Ok(Server {
            flavor,
            ws: format!("ws://127.0.0.1:{port}"),
            pid,
            child,
            stdin: tokio::sync::Mutex::new(stdin),
            said: tokio::sync::Mutex::new(said),
        })
    }

    /// Marks the start (`true`) or end of a measured window named `name`: with BENCH_PROFILE
    /// set, a workerd launcher samples its CPU profile over exactly that window. Waits (at most
    /// 30 s) until the launcher answers, so the profiler runs before the window's load starts.
    pub async fn window(&self, name: &str, start: bool) {
        use tokio::io::AsyncWriteExt;
        if !matches!(self.flavor, Flavor::Switchboard | Flavor::JsDo) {
            return;
        }
        let command = format!("profile-{} {name}", if start { "start" } else { "stop" });
        if let Some(stdin) = self.stdin.lock().await.as_mut() {
            let _ = stdin.write_all(format!("{command}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        } else {
            return;
        }
        let mut said = self.said.lock().await;
        let answered = async {
            while let Some(line) = said.recv().await {
                if line.trim() == format!("done {command}") {
                    return;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), answered).await.is_err() {
            eprintln!("   {} did not answer {command} within 30 s", self.flavor.name());
        }
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }

    /// User + system CPU time consumed so far, in milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        cpu_ms(self.pid)
    }

    /// Waits (at most 30 s) until the server is nearly idle — under 5 % of a core for half a
    /// second — so one scenario's cleanup (thousands of closing sockets) does not bleed into
    /// the next one's numbers.
    pub async fn settle(&self) {
        for _ in 0..60 {
            let before = self.cpu_ms();
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.cpu_ms().saturating_sub(before) < 25 {
                return;
            }
        }
    }

    /// Stops the server and waits until it is gone, so the next one measures alone. A workerd
    /// launcher is asked to stop by closing its stdin (it writes its profile, then shuts workerd
    /// down); then SIGTERM; a server still running after 20 s more is killed, workerd included.
    pub async fn stop(mut self) {
        drop(self.stdin.lock().await.take());
        let launcher = matches!(self.flavor, Flavor::Switchboard | Flavor::JsDo);
        let mut exited =
            launcher && tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_ok();
        if !exited {
            if let Some(launcher) = self.child.id() {
                let _ = Command::new("kill").arg("-TERM").arg(launcher.to_string()).status().await;
            }
            exited = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.is_ok();
        }
        if !exited {
            let _ = self.child.kill().await;
        }
        for _ in 0..200 {
            if !Path::new(&format!("/proc/{}", self.pid)).exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = Command::new("kill").arg("-KILL").arg(self.pid.to_string()).status().await;
    }
}

fn node(root: &Path, script: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(root.join(script)).current_dir(root);
    cmd
}

fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} not built (cargo build -p switchboard-bench --bins)", path.display()))
    }
}

fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace().map(str::to_owned).collect()
}

fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid).get(1)?.parse().ok()
}

/// The first process named `name` below `ancestor`.
fn find_descendant(ancestor: u32, name: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|&pid| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != name {
            return false;
        }
        let mut p = pid;
        while let Some(parent) = ppid(p) {
            if parent == ancestor {
                return true;
            }
            if parent <= 1 {
                break;
            }
            p = parent;
        }
        false
    })
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ms(pid: u32) -> u64 {
    let fields = stat_fields(pid);
    // utime and stime are fields 14 and 15 of /proc/pid/stat (here 11 and 12 after the name).
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    ticks * 1000 / clock_ticks_per_sec()
}

fn clock_ticks_per_sec() -> u64 {
    100 // USER_HZ on Linux
}
