// CPU profiles of workerd through the V8 inspector, for finding where each event's time goes.
// With BENCH_PROFILE=<dir>, a workerd launcher (switchboard.mjs, js-do.mjs) starts Miniflare with
// an inspector port, starts V8's sampling profiler on the user worker as soon as it is ready and,
// when the generator stops it, writes <dir>/<name>.cpuprofile (open it in Chrome's DevTools) and
// <dir>/<name>.txt: self time by function and by the buckets bench/README names.
import WebSocket from "ws";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";

/** A free loopback port for the inspector. */
export async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Reads `profile-start <name>` / `profile-stop <name>` lines from stdin (the generator's measured
 * windows) and, when `profiling` is set, samples each window into `<dir>/<prefix>-<name>.*`.
 * `close()` finishes a window still open.
 */
export function profileWindows(profiling) {
  let open = null; // {name, stop: Promise<(name) => Promise<void>>}
  let chain = Promise.resolve();
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const [command, name] = line.trim().split(/\s+/);
    chain = chain
      .then(async () => {
        if (!profiling) return;
        if (command === "profile-start" && !open) {
          open = { name, stop: await startProfiler(profiling.port, profiling.dir) };
        } else if (command === "profile-stop" && open?.name === name) {
          const { stop } = open;
          open = null;
          await stop(`${profiling.prefix}-${name}`);
        }
      })
      .catch((e) => console.error(`profiler: ${e.message}`))
      // The generator waits for this answer before it starts (or goes on after) the window.
      .then(() => console.log(`done ${command} ${name}`));
  });
  return {
    async close() {
      await chain;
      if (open) await open.stop(`${profiling.prefix}-${open.name}`).catch(() => {});
    },
  };
}

/** Starts sampling the user worker's isolate; resolves to `stop(name)`, which writes the files. */
export async function startProfiler(inspectorPort, dir, intervalUs = 200) {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const target = targets.find((t) => t.id.startsWith("core:user:"));
  if (!target) throw new Error(`no user worker among inspector targets ${targets.map((t) => t.id)}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  let next = 0;
  const pending = new Map();
  ws.on("message", (raw) => {
    const msg = JSON.parse(raw);
    pending.get(msg.id)?.(msg);
    pending.delete(msg.id);
  });
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      pending.set(id, (msg) => (msg.error ? reject(new Error(`${method}: ${msg.error.message}`)) : resolve(msg.result)));
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: intervalUs });
  await call("Profiler.start");
  return async (name) => {
    const { profile } = await call("Profiler.stop");
    ws.close();
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/${name}.cpuprofile`, JSON.stringify(profile));
    writeFileSync(`${dir}/${name}.txt`, summarize(profile));
  };
}

/**
 * Which part of an event's path a function belongs to. wasm-bindgen's imports (`__wbg_<name>_<hash>`)
 * carry the time of the runtime call they make, so they are sorted by the binding's name; wasm
 * functions keep their Rust names.
 */
export function bucket(fn) {
  if (fn === "(idle)" || fn === "(program)" || fn === "(garbage collector)") return fn;
  const binding = fn.match(/^__wbg_([A-Za-z0-9]+?)(?:_[0-9a-f]{8,})?$/)?.[1];
  const name = binding ?? fn;
  if (/^(setAlarm|getAlarm|deleteAlarm)$/.test(name)) return "alarm syncing";
  if (/^(exec|one|toArray|raw|next|sql|transactionSync|columnNames|rowsRead|rowsWritten)$/.test(name)) return "SQL";
  if (/^(serializeAttachment|deserializeAttachment)$/.test(name)) return "attachments (de)serialize";
  if (/^(send|close|accept|acceptWebSocket|getWebSockets|getTags)$/.test(name)) return "sockets (send, accept, list)";
  if (/^(parse|stringify)$/.test(name)) return "JSON (JS)";
  if (/serde_json|serde::de|serde::ser|Deserializer|Serializer|::deserialize|::serialize/.test(fn)) return "JSON (serde) in wasm";
  if (binding !== undefined || /passStringToWasm|getStringFromWasm|TextDecoder|TextEncoder|passArray|getArrayU8|^js-to-wasm|^wasm-to-js|__wbindgen/.test(fn))
    return "JS ↔ wasm crossings (glue, strings)";
  if (/alloc|dealloc|realloc|memcpy|memmove|memset/.test(fn)) return "allocation and copies in wasm";
  if (fn.includes("::")) return "our Rust (wasm), other";
  return "JS / runtime, other";
}

/** Self time by function (top 40) and by bucket, in ms and % of busy (non-idle) time. */
export function summarize(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = profile.timeDeltas ?? [];
  profile.samples.forEach((id, i) => {
    const dt = deltas[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
  });
  const byFunction = new Map();
  const byBucket = new Map();
  let busy = 0;
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    const fn = callFrame.functionName || "(anonymous)";
    const b = bucket(fn);
    if (b !== "(idle)") busy += us;
    const key = `${fn} ${callFrame.url ? `(${callFrame.url.split("/").pop()}:${callFrame.lineNumber})` : ""}`.trim();
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    byBucket.set(b, (byBucket.get(b) ?? 0) + us);
  }
  const rows = (map) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .map(([k, us]) => `${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / Math.max(busy, 1)).toFixed(1).padStart(5)} %  ${k}`);
  return [
    `busy (not idle): ${(busy / 1000).toFixed(0)} ms of ${((profile.endTime - profile.startTime) / 1000).toFixed(0)} ms sampled`,
    "",
    "by bucket:",
    ...rows(byBucket),
    "",
    "top functions by self time:",
    ...rows(byFunction).slice(0, 40),
    "",
  ].join("\n");
}
