// Where the workerd peers keep Durable Object storage during a benchmark run. BENCH_STORAGE=disk
// (the default, what `wrangler dev` and a deployment do: SQLite files on the disk under
// bench/results/.storage-*) or memory (Miniflare without persistence). Every run starts empty.
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

export function storageDir(name) {
  const mode = process.env.BENCH_STORAGE ?? "disk";
  if (mode === "memory") return null;
  if (mode !== "disk") throw new Error(`BENCH_STORAGE must be disk or memory, not ${mode}`);
  const dir = fileURLToPath(new URL(`../results/.storage-${name}-${process.pid}`, import.meta.url));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function removeStorage(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

export function devSecret() {
  const text = readFileSync(new URL("../../.dev.vars.example", import.meta.url), "utf8");
  return text.match(/^JWT_SECRET="?([^"\n]*)"?$/m)[1];
}
