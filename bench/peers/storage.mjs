// Where the workerd peers keep Durable Object storage during a benchmark run. BENCH_STORAGE=disk
// (the default, what `wrangler dev` and a deployment do: SQLite files on the disk under
// bench/results/.storage-*) or tmpfs (the same SQLite files on a RAM filesystem, /dev/shm, so a
// commit's fsync costs nothing). Miniflare "without persistence" is no RAM setting: it writes the
// same files under the system's temporary directory, which on many machines (this one) is disk.
// Every run starts empty.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The statfs type of a tmpfs mount (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const RAM_ROOT = "/dev/shm";
/** Free space a tmpfs run asks for before it starts. */
const MIN_RAM_FREE = 256 * 2 ** 20;

/** The storage directory of peer `name`, made empty, and the label of the setting. */
export function storageDir(name) {
  const mode = process.env.BENCH_STORAGE ?? "disk";
  let dir;
  if (mode === "disk") {
    dir = fileURLToPath(new URL(`../results/.storage-${name}-${process.pid}`, import.meta.url));
  } else if (mode === "tmpfs") {
    let fs;
    try {
      fs = statfsSync(RAM_ROOT);
    } catch {
      fs = undefined;
    }
    if (fs?.type !== TMPFS_MAGIC) throw new Error(`BENCH_STORAGE=tmpfs needs ${RAM_ROOT} mounted as tmpfs`);
    // A container's default /dev/shm is 64 MiB: fail here rather than with SQLITE_FULL mid-run.
    const free = fs.bavail * fs.bsize;
    if (free < MIN_RAM_FREE) {
      throw new Error(`BENCH_STORAGE=tmpfs: ${RAM_ROOT} has ${Math.round(free / 2 ** 20)} MiB free, under ${MIN_RAM_FREE / 2 ** 20}`);
    }
    // A fresh directory of our own: /dev/shm is shared by every user of the machine.
    // BENCH_RUN (scripts/bench.sh's pid) lets the script remove what a killed peer left behind.
    const run = process.env.BENCH_RUN ?? "manual";
    return { dir: mkdtempSync(`${RAM_ROOT}/switchboard-bench-${run}-${name}-`), storage: mode };
  } else {
    throw new Error(`BENCH_STORAGE must be disk or tmpfs, not ${mode}`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return { dir, storage: mode };
}

export function removeStorage(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

export function devSecret() {
  const text = readFileSync(new URL("../../.dev.vars.example", import.meta.url), "utf8");
  return text.match(/^JWT_SECRET="?([^"\n]*)"?$/m)[1];
}
