// Starts the plain-JavaScript Durable Object peer (bench/peers/js-do/worker.mjs) in workerd
// through Miniflare, exactly as Switchboard's launcher does, with storage where BENCH_STORAGE
// says. Prints {"port": N}.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import { storageDir, removeStorage, devSecret } from "./storage.mjs";
import { freePort, startProfiler } from "./profiler.mjs";

const persist = storageDir("js-do");
const profileDir = process.env.BENCH_PROFILE;
const inspectorPort = profileDir ? await freePort() : undefined;
const mf = new Miniflare({
  modules: true,
  scriptPath: fileURLToPath(new URL("./js-do/worker.mjs", import.meta.url)),
  compatibilityDate: "2026-04-01",
  durableObjects: { ROOMS: { className: "JsRoom", useSQLite: true } },
  durableObjectsPersist: persist ?? false,
  bindings: { JWT_SECRET: devSecret() },
  host: "127.0.0.1",
  port: 0,
  cf: false,
  ...(inspectorPort ? { inspectorPort } : {}),
});
const url = await mf.ready;
const stopProfiler = profileDir ? await startProfiler(inspectorPort, profileDir) : null;
console.log(JSON.stringify({ port: Number(url.port), storage: persist ? "disk" : "memory" }));
const stop = async () => {
  await stopProfiler?.(`js-do-${persist ? "disk" : "memory"}`);
  await mf.dispose();
  removeStorage(persist);
  process.exit(0);
};
// The generator closes our stdin to stop us (a profile is written first); Miniflare's own
// SIGTERM handler exits at once, so signals only serve a manual run.
process.stdin.on("end", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
