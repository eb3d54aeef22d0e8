// Starts Switchboard's release build in workerd through Miniflare for the benchmark (not
// wrangler dev, whose proxy runs out of file handles near 3,300 sockets). Prints {"port": N}.
import { startWorker } from "../../miniflare/harness.mjs";

const worker = await startWorker({
  // The generator spreads thousands of sockets over ten users per room.
  vars: { MAX_SOCKETS_PER_USER: "10000" },
});
console.log(JSON.stringify({ port: Number(new URL(worker.http).port) }));
const stop = async () => {
  await worker.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
