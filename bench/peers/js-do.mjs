// Starts the plain-JavaScript Durable Object peer (bench/peers/js-do/worker.mjs) in workerd
// through Miniflare, exactly as Switchboard's launcher does, with storage where BENCH_STORAGE
// says. Prints {"port": N}.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import { storageDir, removeStorage, devSecret } from "./storage.mjs";

const persist = storageDir("js-do");
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
});
const url = await mf.ready;
console.log(JSON.stringify({ port: Number(url.port), storage: persist ? "disk" : "memory" }));
const stop = async () => {
  await mf.dispose();
  removeStorage(persist);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
