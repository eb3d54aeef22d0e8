// Starts the plain-JavaScript Durable Object peer (bench/peers/js-do/worker.mjs) in workerd
// through Miniflare, exactly as Switchboard's launcher does, with storage where BENCH_STORAGE
// says. Prints {"port": N}.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import { storageDir, removeStorage, devSecret } from "./storage.mjs";
import { freePort, profileWindows } from "./profiler.mjs";

const { dir: persist, storage } = storageDir("js-do");
const profileDir = process.env.BENCH_PROFILE;
const inspectorPort = profileDir ? await freePort() : undefined;
const mf = new Miniflare({
  modules: true,
  scriptPath: fileURLToPath(new URL("./js-do/worker.mjs", import.meta.url)),
  compatibilityDate: "2026-04-01",
  durableObjects: { ROOMS: { className: "JsRoom", useSQLite: true } },
  durableObjectsPersist: persist,
  bindings: { JWT_SECRET: devSecret() },
  host: "127.0.0.1",
  port: 0,
  cf: false,
  ...(inspectorPort ? { inspectorPort } : {}),
});
const url = await mf.ready;
const windows = profileWindows(profileDir && { port: inspectorPort, dir: profileDir, prefix: `js-do-${storage}` });
console.log(JSON.stringify({ port: Number(url.port), storage }));
const stop = async () => {
  await windows.close();
  await mf.dispose();
  removeStorage(persist);
  process.exit(0);
};
// The generator names its measured windows on stdin and closes it to stop us (profiles are
// written first); Miniflare's own SIGTERM handler exits at once, so signals only serve a manual run.
process.stdin.on("end", stop);
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
