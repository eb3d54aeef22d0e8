// Starts Switchboard's release build in workerd through Miniflare for the benchmark (not
// wrangler dev, whose proxy runs out of file handles near 3,300 sockets), with storage where
// BENCH_STORAGE says (bench/peers/storage.mjs). Every socket of the generator is its own user,
// so the per-user socket limit stays at its deployed value. Prints {"port": N, "storage"}.
import { startWorker } from "../../miniflare/harness.mjs";
import { storageDir, removeStorage } from "./storage.mjs";
import { freePort, profileWindows } from "./profiler.mjs";

const { dir: persist, storage } = storageDir("switchboard");
const profileDir = process.env.BENCH_PROFILE;
const inspectorPort = profileDir ? await freePort() : undefined;
// Without the demo's static assets: Miniflare runs its asset-router workers in this same workerd
// process in front of every request (in a deployment Cloudflare serves assets before the Worker,
// off the objects' threads); in a connect storm they took ~3× our worker's CPU, and the js-do
// peer has none.
const worker = await startWorker({ persist, inspectorPort, assets: false });
const windows = profileWindows(profileDir && { port: inspectorPort, dir: profileDir, prefix: `switchboard-${storage}` });
console.log(JSON.stringify({ port: Number(new URL(worker.http).port), storage }));
const stop = async () => {
  await windows.close();
  await worker.close();
  removeStorage(persist);
  process.exit(0);
};
// The generator names its measured windows on stdin and closes it to stop us (profiles are
// written first); Miniflare's own SIGTERM handler exits at once, so signals only serve a manual run.
process.stdin.on("end", stop);
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
