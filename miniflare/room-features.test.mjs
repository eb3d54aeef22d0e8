// Issue-3 room behaviour end to end in workerd: recovery, typing expiry through the alarm, live
// state, signals, rate limits, capabilities, token expiry and refresh, socket limits.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join, open, token, sleep } from "./harness.mjs";

let worker;
before(async () => (worker = await startWorker({ preventEviction: true, vars: { TYPING_TTL_MS: "1000", MAX_SOCKETS_PER_USER: "3" } })));
after(() => worker?.close());

test("a reconnect with since and epoch receives exactly what it missed, in order, then room:state", async () => {
  const alice = await join(worker, "recover-1", "alice");
  const bob = await join(worker, "recover-1", "bob");
  await alice.request("message:send", { text: "seen" });
  const lastSeen = (await bob.next("message:receive")).d.seq;
  const epoch = bob.state.epoch;
  await bob.close();
  for (const text of ["m1", "m2", "m3"]) await alice.request("message:send", { text });

  const back = await open(`${worker.ws}/v1/rooms/recover-1/ws?token=${token("bob")}&since=${lastSeen}&epoch=${epoch}`);
  const replay = [await back.next(), await back.next(), await back.next(), await back.next()];
  assert.deepEqual(replay.map((f) => f.t), ["message:receive", "message:receive", "message:receive", "room:state"]);
  assert.deepEqual(replay.slice(0, 3).map((f) => [f.d.seq, f.d.text]), [[2, "m1"], [3, "m2"], [4, "m3"]]);
  assert.equal(replay[3].d.recovered, true);
  assert.equal(replay[3].d.seq, 4);

  const wrong = await open(`${worker.ws}/v1/rooms/recover-1/ws?token=${token("carol")}&since=1&epoch=not-the-epoch`);
  const state = await wrong.next();
  assert.equal(state.t, "room:state");
  assert.equal(state.d.recovered, false);
  await sleep(100);
  assert.equal(wrong.frames.length, 0, "nothing replayed when recovery is refused");

  const bad = await open(`${worker.ws}/v1/rooms/recover-1/ws?token=${token("dave")}&since=abc&epoch=x`).catch((e) => e);
  assert.equal(bad.status, 400);
  for (const c of [alice, back, wrong]) await c.close();
});

test("typing is announced on change and expires by itself through the alarm", async () => {
  const alice = await join(worker, "typing-1", "alice");
  const bob = await join(worker, "typing-1", "bob");
  alice.send({ t: "typing:start" });
  assert.deepEqual((await bob.next("typing:update")).d, { users: ["alice"] });
  const started = Date.now();
  assert.deepEqual((await bob.next("typing:update", 4000)).d, { users: [] });
  const lasted = Date.now() - started;
  assert.ok(lasted >= 800, `expired after ${lasted} ms, TYPING_TTL_MS is 1000`);

  alice.send({ t: "typing:start" });
  await bob.next("typing:update");
  await alice.request("message:send", { text: "done typing" });
  assert.deepEqual((await bob.next("typing:update")).d, { users: [] }, "a message clears the typist");
  await alice.close();
  await bob.close();
});

test("state:set versions keys, reports conflicts and shows the state to newcomers", async () => {
  const alice = await join(worker, "state-1", "alice");
  const bob = await join(worker, "state-1", "bob");
  const set = await alice.request("state:set", { key: "topic", value: { title: "Rust" } });
  assert.deepEqual(set.d, { version: 1 });
  assert.deepEqual((await bob.next("state:update")).d, { key: "topic", value: { title: "Rust" }, version: 1, user: "alice" });
  assert.equal((await bob.request("state:set", { key: "topic", value: "Wasm", ifVersion: 1 })).d.version, 2);
  const conflict = await alice.request("state:set", { key: "topic", value: "late", ifVersion: 1 });
  assert.equal(conflict.error.code, "conflict");
  const carol = await join(worker, "state-1", "carol");
  assert.deepEqual(carol.state.state, { topic: { value: "Wasm", version: 2, user: "bob" } });
  for (const c of [alice, bob, carol]) await c.close();
});

test("signal reaches only its target; broadcast reaches everyone else", async () => {
  const alice = await join(worker, "signal-1", "alice");
  const bob = await join(worker, "signal-1", "bob");
  const carol = await join(worker, "signal-1", "carol");
  const sent = await alice.request("signal", { to: "bob", data: { type: "offer", sdp: "v=0" } });
  assert.deepEqual(sent.d, { delivered: 1 });
  const got = await bob.next("signal");
  assert.deepEqual(got.d, { from: "alice", fromConn: alice.state.connId, data: { type: "offer", sdp: "v=0" } });
  assert.equal((await alice.request("signal", { to: "nobody", data: 1 })).error.code, "not_found");

  alice.send({ t: "broadcast", d: { event: "cursor", data: { x: 3 } } });
  for (const c of [bob, carol]) assert.deepEqual((await c.next("broadcast")).d.data, { x: 3 });
  assert.equal(carol.frames.filter((f) => f.t === "signal").length, 0, "carol never saw the signal");
  for (const c of [alice, bob, carol]) await c.close();
});

test("over the rate a client gets rate_limited with a retry hint, and the room keeps working", async () => {
  const alice = await join(worker, "rate-1", "alice");
  const replies = await Promise.all(Array.from({ length: 15 }, () => alice.request("broadcast", { event: "spam" })));
  const limited = replies.filter((r) => !r.ok);
  assert.ok(limited.length >= 5, `${limited.length} of 15 broadcasts were limited (burst 10)`);
  assert.equal(limited[0].error.code, "rate_limited");
  assert.ok(limited[0].error.retryAfterMs > 0);
  assert.equal((await alice.request("message:send", { text: "messages have their own budget" })).ok, true);
  await alice.close();
});

test("capabilities: no join is 403 before the upgrade; join without send is read-only", async () => {
  const cap = (c) => token("reader", { extra: { cap: c } });
  const refused = await open(`${worker.ws}/v1/rooms/caps-1/ws?token=${cap({ "room:other": ["join", "send"] })}`).catch((e) => e);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, "forbidden");

  const writer = await join(worker, "caps-1", "writer");
  const reader = await open(`${worker.ws}/v1/rooms/caps-1/ws?token=${cap({ "room:caps-*": ["join"] })}`);
  await reader.next("room:state");
  await writer.request("message:send", { text: "read me" });
  assert.equal((await reader.next("message:receive")).d.text, "read me");
  assert.equal((await reader.request("message:send", { text: "no" })).error.code, "forbidden");
  assert.equal((await reader.request("state:set", { key: "k", value: 1 })).error.code, "forbidden");
  assert.equal((await reader.request("history:get", {})).ok, true);
  await writer.close();
  await reader.close();
});

test("an expiring token closes its socket with 4001 unless auth:refresh renewed it", async () => {
  const short = await open(`${worker.ws}/v1/rooms/expiry-1/ws?token=${token("alice", { ttl: 2 })}`);
  const renewed = await open(`${worker.ws}/v1/rooms/expiry-1/ws?token=${token("alice", { ttl: 2 })}`);
  await renewed.next("room:state");
  const reply = await renewed.request("auth:refresh", { token: token("alice", { ttl: 3600 }) });
  assert.equal(reply.ok, true);
  assert.equal((await renewed.request("auth:refresh", { token: token("mallory") })).error.code, "forbidden");
  // Local workerd sends the close frame from the alarm at once but ends the TCP connection only
  // when the object handles its next request, so the test watches for the close frame itself
  // (`ws` records it before its 'close' event, which waits for the TCP end).
  const deadline = Date.now() + 6000;
  while (!short.ws._closeFrameReceived && Date.now() < deadline) await sleep(50);
  assert.equal(short.ws._closeCode, 4001, "the expired socket got close code 4001");
  await sleep(500);
  assert.equal(renewed.ws.readyState, 1, "the refreshed socket stays open");
  assert.equal((await renewed.request("message:send", { text: "still here" })).ok, true);
  await renewed.close();
});

test("a user over MAX_SOCKETS_PER_USER is refused with 429", async () => {
  const tabs = [];
  for (let i = 0; i < 3; i++) tabs.push(await join(worker, "limit-1", "greedy"));
  const refused = await open(`${worker.ws}/v1/rooms/limit-1/ws?token=${token("greedy")}`).catch((e) => e);
  assert.equal(refused.status, 429);
  assert.equal(refused.body.error.code, "too_many_connections");
  for (const t of tabs) await t.close();
});
