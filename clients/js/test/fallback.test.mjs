// Where WebSockets are blocked, a room falls back to its event stream and HTTP: live messages,
// sends stored once and in order, history, recovery after the stream drops.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { io } from "@switchboard/client/socket.io";
import { startWorker, startProxy, portOf, sdk, waitFor, until, call, token, sleep, reachStatus } from "./helpers.mjs";

let worker;
let proxy;
before(async () => {
  // Keepalives often: a stream whose client left is noticed when a write to it fails.
  worker = await startWorker({ vars: { SSE_KEEPALIVE_MS: "500" } });
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

test("after WebSocket attempts fail, me() uses the user event stream and HTTP writes, and goes back to a socket when it can", async () => {
  const alice = sdk(worker.http, "alice-u");
  const bob = sdk(proxy.url, "bob-u", { fallbackAfter: 2, fallbackProbeMs: 300 });
  try {
    const aliceMe = alice.me();
    await waitFor(aliceMe, "open");
    const me = bob.me();
    const state = await waitFor(me, "open", () => true, 8000);
    assert.equal(me.transport, "stream");
    assert.equal(state.user, "bob-u");
    assert.equal(state.status, "online", "a device on the stream is online");
    let stats = (await call(worker, "GET", "/v1/users/bob-u/stats")).body;
    assert.deepEqual([stats.streams, stats.connections], [1, 0]);

    // Watching over HTTP, changes over the stream.
    const [p] = await me.subscribe(["alice-u"]);
    assert.equal(p.status, "online");
    const busy = waitFor(me, "presence", (u) => u.user === "alice-u" && u.status === "busy");
    await aliceMe.setStatus("busy");
    await busy;
    assert.equal(me.watching.get("alice-u").status, "busy");

    // Notifications light the count; reading over HTTP clears it.
    const arrived = waitFor(me, "notification");
    const counted = waitFor(me, "unread", (n) => n === 1);
    assert.equal((await call(worker, "POST", "/v1/notify", { body: { users: ["bob-u"], notification: { type: "mention", title: "ping" } } })).status, 202);
    assert.equal((await arrived).title, "ping");
    await counted;
    assert.equal((await me.notifications()).notifications.length, 1);
    assert.equal(await me.markRead("all"), 0);
    await until(() => me.unread === 0, "the count after reading");

    // Status and activity over HTTP reach the user's other devices and watchers.
    await aliceMe.subscribe(["bob-u"]);
    const chosen = waitFor(aliceMe, "presence", (u) => u.user === "bob-u" && u.status === "busy");
    assert.equal((await me.setStatus("busy", "lunch")).status, "busy");
    assert.equal((await chosen).activity, "lunch");
    me.active();
    await assert.rejects(me.request("auth:nope", {}), (e) => e.code === "unsupported");

    // WebSockets get through again: the next probe moves me() back to a socket.
    const reopened = waitFor(me, "open", () => true, 5000);
    proxy.blockUpgrades = false;
    await reopened;
    assert.equal(me.transport, "websocket");
    await until(async () => {
      stats = (await call(worker, "GET", "/v1/users/bob-u/stats")).body;
      return stats.streams === 0 && stats.connections === 1;
    }, "the stream replaced by a socket");
    assert.equal(stats.presence.status, "busy", "the chosen status survives the move");
  } finally {
    proxy.blockUpgrades = true;
    alice.close();
    bob.close();
  }
});

test("the Socket.IO facade with polling allowed connects over the user's event stream where WebSockets are blocked", async () => {
  const friend = sdk(worker.http, "fay-f");
  const socket = io(proxy.url, {
    auth: { token: token("gus-f", { extra: { friends: ["fay-f"] } }) },
    transports: ["websocket", "polling"],
    reconnectionDelay: 20,
    reconnectionDelayMax: 100,
    WebSocket,
  });
  const log = [];
  const updates = [];
  const notes = [];
  socket.on("connect", () => log.push("connect"));
  socket.on("connect_error", () => log.push("connect_error"));
  socket.on("presence:update", (p) => updates.push(p));
  socket.on("notification:new", (n) => notes.push(n));
  try {
    const fay = friend.me();
    await waitFor(fay, "open");
    await until(() => socket.connected, "connected over the stream", 8000);
    assert.deepEqual(log, ["connect_error", "connect_error", "connect_error", "connect"], "three WebSocket attempts, then the stream");
    // The token's friends were subscribed over HTTP; their changes arrive over the stream.
    await until(async () => (await call(worker, "GET", "/v1/users/fay-f/stats")).body.watchers["gus-f"] === true, "the automatic subscribe");
    await fay.setStatus("busy");
    await until(() => updates.some((p) => p.userId === "fay-f" && p.status === "busy"), "a friend's status");
    await call(worker, "POST", "/v1/notify", { body: { users: ["gus-f"], notification: { type: "like", title: "liked" } } });
    await until(() => notes.length === 1, "notification:new");
    const set = await new Promise((resolve) => socket.emit("presence:update", { status: "away" }, resolve));
    assert.ok(set, "the ack");
  } finally {
    socket.disconnect();
    friend.close();
  }
});

test("a proxy that strips the upgrade (the server answers 426) counts toward the fallback instead of stopping", async () => {
  proxy.blockUpgrades = false;
  proxy.stripUpgrades = true;
  const carl = sdk(proxy.url, "carl-u", { fallbackAfter: 2, fallbackProbeMs: 0 });
  try {
    const me = carl.me();
    const errors = [];
    me.on("connectError", (e) => errors.push(e.closeCode));
    const state = await waitFor(me, "open", () => true, 8000);
    assert.equal(me.transport, "stream");
    assert.equal(state.user, "carl-u");
    assert.deepEqual(errors, [426, 426], "two handshakes answered 426, then the stream");
    assert.equal(me.status, "open");
  } finally {
    proxy.stripUpgrades = false;
    proxy.blockUpgrades = true;
    carl.close();
  }
});

test("an event stream that stops delivering bytes (a cut network, a half-open TCP) is found dead: me() reconnects and updates flow again", async () => {
  // The worker sends a keepalive every 500 ms here; the client is told so.
  const dan = sdk(proxy.url, "dan-u", { fallbackAfter: 1, fallbackProbeMs: 0, sseKeepaliveMs: 500, openTimeoutMs: 2000 });
  try {
    const me = dan.me();
    const first = await waitFor(me, "open", () => true, 8000);
    assert.equal(me.transport, "stream");
    // Longer than two keepalive periods plus slack: the keepalive comments alone keep it alive.
    await sleep(3000);
    assert.equal(me.status, "open", "keepalive comments count as bytes arriving");
    const stalled = Date.now();
    proxy.stall = true; // the TCP connection stays, nothing passes either way
    await reachStatus(me, "reconnecting", 6000);
    const noticedAfter = Date.now() - stalled;
    assert.ok(noticedAfter >= 1000, `not before two keepalive periods (${noticedAfter} ms)`);
    const reopened = waitFor(me, "open", () => true, 10000);
    proxy.stall = false;
    const again = await reopened;
    assert.notEqual(again.connId, first.connId);
    const arrived = waitFor(me, "notification", () => true, 5000);
    assert.equal((await call(worker, "POST", "/v1/notify", { body: { users: ["dan-u"], notification: { type: "mention", title: "after the cut" } } })).status, 202);
    assert.equal((await arrived).title, "after the cut");
  } finally {
    proxy.stall = false;
    dan.close();
  }
});

test("a room's event stream that stops delivering bytes is found dead too, and what was sent meanwhile arrives once after it resumes", async () => {
  const alice = sdk(worker.http, "alice-d");
  const bob = sdk(proxy.url, "bob-d", { fallbackAfter: 1, fallbackProbeMs: 0, sseKeepaliveMs: 500, openTimeoutMs: 2000 });
  try {
    const a = alice.room("dead-stream-1");
    const b = bob.room("dead-stream-1");
    const atBob = [];
    const opened = waitFor(b, "open", () => true, 8000);
    b.on("message", (m) => atBob.push(m.text));
    await opened;
    assert.equal(b.transport, "stream");
    proxy.stall = true;
    await a.send("while silent");
    await reachStatus(b, "reconnecting", 6000);
    const resumed = waitFor(b, "open", () => true, 10000);
    proxy.stall = false;
    assert.equal((await resumed).recovered, true);
    await until(() => atBob.includes("while silent"), "the message sent while the stream was silent");
    assert.deepEqual(atBob, ["while silent"]);
  } finally {
    proxy.stall = false;
    alice.close();
    bob.close();
  }
});

test("a proxy that passes the event stream's headers but buffers its body: the stream is given up after openTimeoutMs and retried, not left connecting", async () => {
  proxy.holdStreams = true;
  const fred = sdk(proxy.url, "fred-u", { fallbackAfter: 1, fallbackProbeMs: 0, openTimeoutMs: 1500 });
  try {
    const me = fred.me();
    const errors = [];
    me.on("connectError", (e) => errors.push(e));
    await until(() => errors.length >= 2, "the stream's opening timed out", 6000);
    assert.equal(me.transport, "stream");
    assert.equal(errors[1].closeCode, 1006);
    assert.match(errors[1].message, /user:state/);
    assert.equal(me.status, "reconnecting");
    proxy.holdStreams = false;
    const state = await waitFor(me, "open", () => true, 8000);
    assert.equal(state.user, "fred-u");
    assert.equal(me.transport, "stream");
  } finally {
    proxy.holdStreams = false;
    fred.close();
  }
});

test("the Socket.IO facade with polling allowed falls back where a proxy strips the upgrade (HTTP 426) instead of giving up", async () => {
  proxy.blockUpgrades = false;
  proxy.stripUpgrades = true;
  const socket = io(proxy.url, {
    auth: { token: token("hal-f") },
    transports: ["websocket", "polling"],
    reconnectionDelay: 20,
    reconnectionDelayMax: 100,
    WebSocket,
  });
  const log = [];
  socket.on("connect", () => log.push("connect"));
  socket.on("connect_error", (e) => log.push(`connect_error:${e.closeCode}`));
  try {
    await until(() => socket.connected, "connected over the stream", 8000);
    assert.deepEqual(log, ["connect_error:426", "connect_error:426", "connect_error:426", "connect"]);
    assert.equal(socket.active, true);
    assert.equal(socket.client.me().transport, "stream");
  } finally {
    proxy.stripUpgrades = false;
    proxy.blockUpgrades = true;
    socket.disconnect();
  }
});

test("where the tokenless probe gets through but the real handshake keeps failing, each failed return doubles the wait before the next probe", async () => {
  // A proxy with a header-size limit: the ~1 KB token in the subprotocol is over it, the probe is not.
  proxy.blockUpgrades = false;
  proxy.upgradeHeaderLimit = 1000;
  proxy.upgrades = [];
  const gil = sdk(proxy.url, "gil-u", { fallbackAfter: 1, fallbackProbeMs: 1000, tokenOptions: { extra: { pad: "x".repeat(800) } } });
  try {
    const me = gil.me();
    let opens = 0;
    me.on("open", () => opens++);
    const real = () => proxy.upgrades.filter((u) => u.cut);
    await until(() => real().length >= 4, "four real handshakes", 15000);
    const at = real().map((u) => u.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    assert.ok(gaps[1] >= 1.6 * gaps[0] && gaps[2] >= 1.6 * gaps[1], `the waits double: ${gaps.join(", ")} ms`);
    assert.ok(proxy.upgrades.some((u) => !u.cut), "the probes got through");
    await until(() => me.status === "open" && me.transport === "stream", "back on the stream");
    assert.ok(opens <= 5, `one stream opening per return (${opens})`);

    // The limit goes: the next probe's return holds, and a WebSocket that stays open a probe
    // period resets the wait, so a later fallback probes after fallbackProbeMs again.
    proxy.upgradeHeaderLimit = Infinity;
    await until(() => me.status === "open" && me.transport === "websocket", "back on a WebSocket", 12000);
    await sleep(1300);
    proxy.upgradeHeaderLimit = 1000;
    proxy.upgrades = [];
    proxy.sever();
    await until(() => real().length >= 2, "a real handshake after the next probe", 5000);
    const [x, y] = real().map((u) => u.at);
    assert.ok(y - x < 2000, `probing every fallbackProbeMs again (${y - x} ms)`);
  } finally {
    proxy.upgradeHeaderLimit = Infinity;
    proxy.blockUpgrades = true;
    gil.close();
  }
});
