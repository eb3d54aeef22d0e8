// Where WebSockets are blocked, a room falls back to its event stream and HTTP: live messages,
// sends stored once and in order, history, recovery after the stream drops.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, startProxy, portOf, sdk, waitFor, until } from "./helpers.mjs";

let worker;
let proxy;
before(async () => {
  worker = await startWorker();
  proxy = await startProxy(portOf(worker));
  proxy.blockUpgrades = true;
});
after(async () => {
  await proxy.close();
  await worker.close();
});

test("after WebSocket attempts fail, the room uses the event stream and HTTP publish", async () => {
  const alice = sdk(worker.http, "alice");
  const bob = sdk(proxy.url, "bob", { fallbackAfter: 2 });
  try {
    const a = alice.room("fallback-1");
    const b = bob.room("fallback-1");
    const atBob = [];
    const atAlice = [];
    await a.send("before bob");
    const opening = waitFor(b, "open", () => true, 8000);
    b.on("message", (m) => atBob.push(m.text)); // opens bob's room: two WebSocket attempts, then the stream
    a.on("message", (m) => atAlice.push(m.text));
    const opened = await opening;
    assert.equal(b.transport, "stream");
    assert.equal(opened.seq, 1);
    assert.equal(bob.status, "open");

    await a.send("live");
    await until(() => atBob.includes("live"), "a live message over the stream");
    const acks = await Promise.all(["b1", "b2", "b3"].map((t) => b.send(t, { id: `bob-${t}` })));
    assert.deepEqual(acks.map((x) => x.seq), [3, 4, 5], "stored in the order sent");
    await until(() => atAlice.length === 3, "bob's messages at alice");
    assert.deepEqual(atAlice, ["b1", "b2", "b3"]);
    const again = await b.send("b1", { id: "bob-b1" });
    assert.equal(again.duplicate, true, "the message id is the Idempotency-Key: a resend is stored once");
    assert.deepEqual((await b.history({ limit: 10 })).map((m) => m.text), ["before bob", "live", "b1", "b2", "b3"]);
    await assert.rejects(b.setState("k", 1), (e) => e.code === "unsupported");

    // The stream drops; what was sent meanwhile arrives once after it resumes from its seq.
    const resumed = waitFor(b, "open", () => true, 8000);
    proxy.sever();
    await a.send("while cut");
    const state = await resumed;
    assert.equal(state.recovered, true);
    await until(() => atBob.includes("while cut"), "the missed message");
    assert.deepEqual(atBob, ["live", "while cut"]);
  } finally {
    alice.close();
    bob.close();
  }
});
