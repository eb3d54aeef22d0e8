// Where the workerd peers keep Durable Object storage during a benchmark run. BENCH_STORAGE=disk
// (the default, what `wrangler dev` and a deployment do: SQLite files on the disk under
// bench/results/.storage-*) or tmpfs (the same SQLite files on a RAM filesystem, /dev/shm, so a
// commit's fsync costs nothing). Miniflare "without persistence" is no RAM setting: it writes the
// same files under the system's temporary directory, which on many machines (this one) is disk.
// Every run starts empty.
import { mkdirSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The statfs type of a tmpfs mount (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const RAM_ROOT = "/dev/shm";

/** The storage directory of peer `name`, made empty, and the label of the setting. */
export function storageDir(name) {
  const mode = process.env.BENCH_STORAGE ?? "disk";
  let dir;
  if (mode === "disk") {
    dir = fileURLToPath(new URL(`../results/.storage-${name}-${process.pid}`, import.meta.url));
  } else if (mode === "tmpfs") {
    let type;
    try {
      type = statfsSync(RAM_ROOT).type;
    } catch {
      type = undefined;
    }
    if (type !== TMPFS_MAGIC) throw new Error(`BENCH_STORAGE=tmpfs needs ${RAM_ROOT} mounted as tmpfs`);
    dir = `${RAM_ROOT}/switchboard-bench-${name}-${process.pid}`;
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
