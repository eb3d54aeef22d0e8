// Starts Switchboard's release build in workerd through Miniflare for the benchmark (not
// wrangler dev, whose proxy runs out of file handles near 3,300 sockets), with storage where
// BENCH_STORAGE says (bench/peers/storage.mjs). Every socket of the generator is its own user,
// so the per-user socket limit stays at its deployed value. Prints {"port": N, "storage"}.
import { startWorker } from "../../miniflare/harness.mjs";
import { storageDir, removeStorage } from "./storage.mjs";

const persist = storageDir("switchboard");
const worker = await startWorker({ persist: persist ?? undefined });
console.log(JSON.stringify({ port: Number(new URL(worker.http).port), storage: persist ? "disk" : "memory" }));
const stop = async () => {
  await worker.close();
  removeStorage(persist);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
