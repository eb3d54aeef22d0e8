// Shared by the SDK's suites: the built worker in workerd (miniflare/harness.mjs), a TCP proxy in
// front of it that tests cut, stall or point elsewhere, and a WebSocket class that records what
// the SDK sends.
import net from "node:net";
import WebSocket from "ws";
export { startWorker, withStorage, token, call, sleep, join, connectUser, SERVER_KEY, SECRET } from "../../../miniflare/harness.mjs";
import { after } from "node:test";
import { startWorker as start, token as mint } from "../../../miniflare/harness.mjs";
import { createClient } from "../dist/index.js";

/**
 * A proxy on 127.0.0.1 in front of `target` (a port). `sever()` resets every connection (what a
 * dropped network or a restarted server looks like to a client); `refuse` turns new connections
 * away; `stall` keeps connections open but silently drops everything both ways (a dead network
 * path: only a heartbeat notices); `dropDown` forwards requests but drops what comes back (a lost
 * ack); `blockUpgrades` cuts WebSocket handshakes but lets plain HTTP through (a proxy without
 * WebSocket support); `stripUpgrades` removes the `Upgrade` header instead, so the server answers
 * the handshake as plain HTTP (426); `holdStreams` passes an event stream's response headers but
 * holds back its body (a buffering proxy); `upgradeHeaderLimit` cuts WebSocket handshakes whose
 * request head is longer (a proxy's header-size limit, which a token in the subprotocol exceeds
 * while a tokenless probe does not); `upgrades` records every handshake (`at`, `bytes`, `cut`);
 * `retarget(port)` points new connections at another server.
 */
export async function startProxy(target) {
  const pairs = new Set();
  const proxy = {
    target,
    refuse: false,
    stall: false,
    blockUpgrades: false,
    stripUpgrades: false,
    holdStreams: false,
    upgradeHeaderLimit: Infinity,
    upgrades: [],
    dropDown: false,
    accepted: 0,
    sever() {
      for (const [a, b] of pairs) {
        a.resetAndDestroy?.() ?? a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    retarget(port) {
      proxy.target = port;
    },
  };
  const server = net.createServer((down) => {
    if (proxy.refuse) return down.destroy();
    proxy.accepted++;
    const up = net.connect(proxy.target, "127.0.0.1");
    const pair = [down, up];
    pairs.add(pair);
    let first = true;
    // An event stream's response whose headers have passed while `holdStreams` holds the body.
    let stream = false;
    let holding = false;
    down.on("data", (chunk) => {
      const text = chunk.toString("latin1");
      if (first && /^GET [^ ]*\/events[ ?]/.test(text)) stream = true;
      if (first && /^upgrade:\s*websocket/im.test(text)) {
        const head = text.indexOf("\r\n\r\n") + 4 || text.length;
        const cut = head > proxy.upgradeHeaderLimit;
        proxy.upgrades.push({ at: Date.now(), bytes: head, cut });
        if (cut) return end();
      }
      // A proxy that strips WebSockets: an upgrade request is cut off, plain HTTP passes.
      if (first && proxy.blockUpgrades && /^upgrade:\s*websocket/im.test(text)) return end();
      if (first && proxy.stripUpgrades) chunk = Buffer.from(chunk.toString("latin1").replace(/^upgrade:\s*websocket\r\n/im, ""), "latin1");
      first = false;
      if (!proxy.stall) up.write(chunk);
    });
    up.on("data", (chunk) => {
      if (stream && proxy.holdStreams) {
        if (holding) return;
        holding = true;
        const head = chunk.indexOf("\r\n\r\n");
        if (head < 0) return;
        chunk = chunk.subarray(0, head + 4);
      }
      if (!proxy.stall && !proxy.dropDown) down.write(chunk);
    });
    const end = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on("close", end);
    up.on("close", end);
    down.on("error", end);
    up.on("error", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.close = () => {
    proxy.sever();
    return new Promise((r) => server.close(r));
  };
  return proxy;
}

export const portOf = (worker) => Number(new URL(worker.http).port);

/** The worker and a cutting proxy in front of it, for a whole test file; stopped after its tests. */
export async function workerBehindProxy() {
  const worker = await start();
  const proxy = await startProxy(portOf(worker));
  after(async () => {
    await proxy.close();
    await worker.close();
  });
  return { worker, proxy };
}

/** A `ws` subclass that records every frame the SDK sends, parsed, into `sent`. */
export function recordingWebSocket(sent = []) {
  return class Recording extends WebSocket {
    send(data, ...rest) {
      try {
        sent.push(JSON.parse(data));
      } catch {
        sent.push(data);
      }
      return super.send(data, ...rest);
    }
  };
}

/** Fast timings so reconnect tests take seconds, not minutes. */
export const FAST = { reconnectDelayMs: 50, reconnectDelayMaxMs: 400, heartbeatMs: 300, pongTimeoutMs: 300, requestTimeoutMs: 3000 };

/** An SDK client for `user` against `url`, with a fresh token from a callback on every connect. */
export function sdk(url, user, options = {}) {
  const tokens = { calls: 0 };
  const client = createClient({
    url,
    WebSocket,
    token: () => {
      tokens.calls++;
      return mint(user, options.tokenOptions);
    },
    ...FAST,
    ...options,
  });
  client.tokens = tokens;
  const errors = [];
  client.on("error", (e) => errors.push(e));
  client.errors = errors;
  return client;
}

/** Resolves when `emitter` emits `event` with a value `predicate` accepts; rejects after `ms`. */
export function waitFor(emitter, event, predicate = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Resolves once `emitter.status` is `status`: at once if it already is, else on its `status` event. */
export function reachStatus(emitter, status, ms = 5000) {
  if (emitter.status === status) return Promise.resolve(status);
  return waitFor(emitter, "status", (s) => s === status, ms);
}

/** Polls `check` until it returns truthy; rejects after `ms` with `what`. */
export async function until(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
