// Timing options have floors (and a ceiling: setTimeout treats anything over 2^31 - 1 ms as 0), so
// options an app takes from somewhere else — the demo page reads them from its URL — cannot make
// the SDK reconnect in a tight loop.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient } from "../dist/index.js";
import { workerBehindProxy, sdk, waitFor, sleep } from "./helpers.mjs";

const TIMINGS = ["reconnectDelayMs", "reconnectDelayMaxMs", "heartbeatMs", "pongTimeoutMs", "requestTimeoutMs", "refreshLeadMs", "fallbackProbeMs", "sseKeepaliveMs", "openTimeoutMs"];
const timings = (client) => Object.fromEntries(TIMINGS.map((k) => [k, client.options[k]]));
const { proxy } = await workerBehindProxy();
const make = (options) => createClient({ url: "http://127.0.0.1:1", token: "t", WebSocket, ...options });

test("timing options below their floors are raised to them, zero included", () => {
  const zeros = Object.fromEntries(TIMINGS.map((k) => [k, 0]));
  assert.deepEqual(timings(make({ ...zeros, fallbackProbeMs: 10 })), {
    reconnectDelayMs: 50,
    reconnectDelayMaxMs: 1000,
    heartbeatMs: 1000,
    pongTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    refreshLeadMs: 1000,
    fallbackProbeMs: 1000,
    sseKeepaliveMs: 500,
    openTimeoutMs: 1000,
  });
  assert.equal(make({ fallbackProbeMs: 0 }).options.fallbackProbeMs, 0, "0 still means: stay on the fallback");
  assert.equal(make({ fallbackProbeMs: -5 }).options.fallbackProbeMs, 0);
  assert.equal(make({ reconnectDelayMs: 4000, reconnectDelayMaxMs: 2000 }).options.reconnectDelayMaxMs, 4000, "the largest delay is at least the first");
});

test("defaults stay as documented; NaN falls back to the default and huge values are capped at setTimeout's limit", () => {
  assert.deepEqual(timings(make({})), {
    reconnectDelayMs: 500,
    reconnectDelayMaxMs: 15000,
    heartbeatMs: 25000,
    pongTimeoutMs: 10000,
    requestTimeoutMs: 10000,
    refreshLeadMs: 60000,
    fallbackProbeMs: 60000,
    sseKeepaliveMs: 25000,
    openTimeoutMs: 15000,
  });
  const odd = make({ heartbeatMs: NaN, pongTimeoutMs: Infinity, reconnectDelayMaxMs: 1e12, requestTimeoutMs: "7" });
  assert.equal(odd.options.heartbeatMs, 25000);
  assert.equal(odd.options.pongTimeoutMs, 2 ** 31 - 1);
  assert.equal(odd.options.reconnectDelayMaxMs, 2 ** 31 - 1);
  assert.equal(odd.options.requestTimeoutMs, 10000);
});

test("heartbeatMs=0&pongTimeoutMs=0&reconnectDelayMs=0&reconnectDelayMaxMs=0 (what a crafted demo URL passes) does not reconnect in a loop", async () => {
  const bob = sdk(proxy.url, "bob-zero", { heartbeatMs: 0, pongTimeoutMs: 0, reconnectDelayMs: 0, reconnectDelayMaxMs: 0 });
  try {
    const room = bob.room("zero-1");
    await waitFor(room, "open");
    const accepted = proxy.accepted;
    await sleep(2500);
    assert.ok(proxy.accepted - accepted <= 1, `connections in 2.5 s: ${proxy.accepted - accepted}`);
    assert.equal(room.status, "open");
  } finally {
    bob.close();
  }
});

test("a token valid for longer than setTimeout's limit (~24.8 days) does not expire at once and reconnect in a loop", async () => {
  const bob = sdk(proxy.url, "bob-long", { tokenOptions: { ttl: 40 * 86400 } });
  try {
    const room = bob.room("long-1");
    await waitFor(room, "open");
    const accepted = proxy.accepted;
    await sleep(1500);
    assert.equal(proxy.accepted - accepted, 0, "no reconnect");
    assert.equal(room.status, "open");
  } finally {
    bob.close();
  }
});
