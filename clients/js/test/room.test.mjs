// Rooms through the SDK against the built worker in workerd: live traffic, reconnects after the
// network or the server drops, recovery with and without gaps, the outbox, acks and timeouts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { workerBehindProxy, withStorage, sdk, waitFor, reachStatus, until, call, sleep, join, recordingWebSocket, startWorker, startProxy, portOf } from "./helpers.mjs";

const { worker, proxy } = await workerBehindProxy();

test("a room opens on first use; messages, acks, members and typing flow; batches are unpacked", async () => {
  const alice = sdk(worker.http, "alice");
  const bob = sdk(worker.http, "bob");
  try {
    const a = alice.room("live-1");
    const b = bob.room("live-1");
    const got = [];
    b.on("message", (m) => got.push(m));
    await waitFor(b, "open");
    const members = waitFor(b, "members", (m) => m.includes("alice"));
    await waitFor(a, "open");
    assert.deepEqual(await members, ["alice", "bob"]);
    assert.equal(alice.status, "open");

    const typing = waitFor(b, "typing", (u) => u.includes("alice"));
    a.typing();
    a.typing(); // throttled: one frame
    assert.deepEqual(await typing, ["alice"]);

    // 15 messages at once: the server batches under load; the SDK unpacks and keeps order.
    const acks = await Promise.all(Array.from({ length: 15 }, (_, i) => a.send(`m${i}`, { data: { i } })));
    assert.deepEqual(acks.map((x) => x.seq), Array.from({ length: 15 }, (_, i) => i + 1));
    await until(() => got.length === 15, "15 messages at bob");
    assert.deepEqual(got.map((m) => m.text), acks.map((_, i) => `m${i}`));
    assert.deepEqual(got[3].data, { i: 3 });
    assert.equal(got[0].user, "alice");
    assert.equal(acks[2].id, got[2].id, "the ack carries the client id the message was stored with");

    const { version } = await a.setState("topic", "rust", { ifVersion: 0 });
    assert.equal(version, 1);
    await assert.rejects(a.setState("topic", "go", { ifVersion: 0 }), (e) => e.code === "conflict");
    const page = await b.history({ limit: 5 });
    assert.deepEqual(page.map((m) => m.seq), [11, 12, 13, 14, 15]);
    assert.equal(a.seq, 15);
  } finally {
    alice.close();
    bob.close();
  }
});

test("typing frames are throttled, and a message over MAX_TEXT_CHARS is refused before sending", async () => {
  const sent = [];
  const alice = sdk(worker.http, "alice", { WebSocket: recordingWebSocket(sent) });
  try {
    const room = alice.room("typing-1");
    await waitFor(room, "open");
    for (let i = 0; i < 50; i++) room.typing();
    room.typing(false);
    await sleep(100);
    assert.deepEqual(sent.filter((f) => f.t?.startsWith("typing")).map((f) => f.t), ["typing:start", "typing:stop"]);
    await assert.rejects(room.send("x".repeat(4001)), (e) => e.code === "too_large");
    await assert.rejects(room.send("x", { data: "y".repeat(70_000) }), (e) => e.code === "too_large");
    assert.equal(sent.filter((f) => f.t === "message:send").length, 0);
  } finally {
    alice.close();
  }
});

test("after the network drops, the room reconnects and recovers exactly what it missed", async () => {
  const alice = sdk(worker.http, "alice");
  const bob = sdk(proxy.url, "bob");
  try {
    const a = alice.room("drop-1");
    const b = bob.room("drop-1");
    const got = [];
    const statuses = [];
    b.on("message", (m) => got.push(m.text));
    bob.on("status", (s) => statuses.push(s));
    let resets = 0;
    b.on("reset", () => resets++);
    const firstOpen = await waitFor(b, "open");
    await a.send("before");
    await until(() => got.length === 1, "the first message");

    proxy.refuse = true;
    proxy.sever();
    await waitFor(bob, "status", (s) => s === "reconnecting");
    for (const text of ["gap-1", "gap-2", "gap-3"]) await a.send(text);
    const reopened = waitFor(b, "open");
    proxy.refuse = false;
    const state = await reopened;
    assert.equal(state.recovered, true);
    assert.notEqual(state.connId, firstOpen.connId, "a new socket");
    await a.send("after");
    await until(() => got.length === 5, "every message");
    assert.deepEqual(got, ["before", "gap-1", "gap-2", "gap-3", "after"]);
    assert.equal(resets, 0);
    assert.deepEqual(statuses.slice(-2), ["reconnecting", "open"]);
    assert.ok(bob.tokens.calls >= 2, "a fresh token from the callback for the reconnect");
  } finally {
    alice.close();
    bob.close();
  }
});

test("a restarted workerd on the same storage: the room reconnects and recovers through the restart", () =>
  withStorage(async (start) => {
    let server = await start();
    const relay = await startProxy(portOf(server));
    const bob = sdk(relay.url, "bob");
    try {
      const b = bob.room("restart-1");
      const got = [];
      b.on("message", (m) => got.push([m.seq, m.text]));
      const first = await waitFor(b, "open");
      assert.equal((await call(server, "POST", "/v1/rooms/restart-1/messages", { body: { text: "one" } })).status, 200);
      await until(() => got.length === 1, "the first message");

      relay.refuse = true;
      await server.close(); // every socket drops with the runtime
      await reachStatus(bob, "reconnecting");
      server = await start();
      relay.retarget(portOf(server));
      assert.equal((await call(server, "POST", "/v1/rooms/restart-1/messages", { body: { text: "two" } })).status, 200);
      const reopened = waitFor(b, "open");
      relay.refuse = false;
      const state = await reopened;
      assert.equal(state.recovered, true);
      assert.equal(state.epoch, first.epoch, "the log survived the restart");
      await until(() => got.length === 2, "the message published during the restart");
      assert.deepEqual(got, [[1, "one"], [2, "two"]]);
    } finally {
      bob.close();
      await relay.close();
      await server.close();
    }
  }));

test("when recovery is impossible the room emits reset with the latest history page", async () => {
  const small = await startWorker({ vars: { RECOVERY_WINDOW: "3" } });
  const relay = await startProxy(portOf(small));
  const alice = sdk(small.http, "alice");
  const bob = sdk(relay.url, "bob");
  try {
    const a = alice.room("gap-1");
    const b = bob.room("gap-1");
    const live = [];
    b.on("message", (m) => live.push(m.seq));
    await waitFor(b, "open");
    await a.send("m1");
    await until(() => live.length === 1, "m1");
    relay.refuse = true;
    relay.sever();
    await waitFor(bob, "status", (s) => s === "reconnecting");
    for (let i = 2; i <= 7; i++) await a.send(`m${i}`); // 6 missed > RECOVERY_WINDOW
    const reset = waitFor(b, "reset");
    relay.refuse = false;
    const { messages, state } = await reset;
    assert.equal(state.recovered, false);
    assert.deepEqual(messages.map((m) => m.text), ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    assert.deepEqual(live, [1], "nothing was replayed message by message");
    assert.equal(b.seq, 7);
    await a.send("m8");
    await until(() => live.length === 2, "m8 live after the reset");
    assert.deepEqual(live, [1, 8]);
  } finally {
    alice.close();
    bob.close();
    await relay.close();
    await small.close();
  }
});

test("messages sent while offline are replayed once each, in order, paced under the rate limit", async () => {
  const sent = [];
  const bob = sdk(proxy.url, "bob", { WebSocket: recordingWebSocket(sent), requestTimeoutMs: 20_000 });
  try {
    const b = bob.room("outbox-1");
    await waitFor(b, "open");
    proxy.refuse = true;
    proxy.sever();
    await waitFor(bob, "status", (s) => s === "reconnecting");
    const texts = Array.from({ length: 30 }, (_, i) => `offline-${i}`);
    const acks = Promise.all(texts.map((t) => b.send(t)));
    assert.equal(b.pending.length, 30);
    const started = Date.now();
    proxy.refuse = false;
    const done = await acks;
    const elapsed = Date.now() - started;
    assert.deepEqual(done.map((x) => x.seq), Array.from({ length: 30 }, (_, i) => i + 1));
    assert.equal(b.pending.length, 0);
    // 30 > the burst of 20: the pacer spreads the rest at the sustained rate instead of tripping it.
    assert.ok(elapsed >= 700, `paced (${elapsed} ms)`);
    assert.equal(bob.errors.length, 0, `no errors: ${bob.errors.map((e) => e.code)}`);
    const history = await call(worker, "GET", `/v1/rooms/outbox-1/messages?limit=100&token=${encodeURIComponent((await import("./helpers.mjs")).token("bob"))}`, { auth: null });
    assert.deepEqual(history.body.messages.map((m) => m.text), texts);
    assert.equal(sent.filter((f) => f.t === "message:send").length, 30, "each sent once: nothing was rate limited");
  } finally {
    bob.close();
  }
});

test("a lost ack rejects with timeout, keeps the message queued, the heartbeat replaces the mute socket, and it is stored once", async () => {
  const sent = [];
  const bob = sdk(proxy.url, "bob", { WebSocket: recordingWebSocket(sent) });
  const watcher = await join(worker, "ack-1", "carol");
  try {
    const b = bob.room("ack-1");
    await waitFor(b, "open");
    proxy.dropDown = true; // requests reach the server; nothing comes back
    const acked = waitFor(b, "ack", () => true, 8000);
    await assert.rejects(b.send("are you there", { id: "m-lost-ack", timeoutMs: 200 }), (e) => e.code === "timeout");
    assert.equal(b.pending.length, 1, "still queued after the timeout");
    const reopened = waitFor(b, "open", () => true, 8000);
    // No pong comes back either: the heartbeat finds the socket dead and replaces it.
    await reachStatus(bob, "reconnecting", 3000);
    proxy.dropDown = false;
    await reopened;
    const ack = await acked;
    assert.equal(ack.id, "m-lost-ack");
    assert.equal(b.pending.length, 0);
    const history = await watcher.request("history:get", {});
    assert.deepEqual(history.d.messages.map((m) => [m.id, m.text]), [["m-lost-ack", "are you there"]]);
    assert.equal(watcher.frames.filter((f) => f.t === "message:receive").length, 1, "delivered once");
  } finally {
    bob.close();
    await watcher.close();
  }
});

test("the heartbeat finds a silently dead socket and replaces it", async () => {
  const bob = sdk(proxy.url, "bob");
  try {
    const b = bob.room("stall-1");
    const first = await waitFor(b, "open");
    proxy.stall = true;
    await waitFor(bob, "status", (s) => s === "reconnecting", 3000);
    proxy.stall = false;
    const again = await waitFor(b, "open", () => true, 5000);
    assert.notEqual(again.connId, first.connId);
    assert.equal(again.recovered, true);
  } finally {
    bob.close();
  }
});

test("a large room: a partial member list with the count, diffs applied, loadMoreMembers pages the rest", async () => {
  const small = await startWorker({ vars: { ROOM_MEMBER_LIST_MAX: "2" } });
  const clients = ["ann", "ben", "cat", "dan"].map((u) => sdk(small.http, u));
  try {
    const [ann, ben, cat, dan] = clients.map((c) => c.room("big-1"));
    await waitFor(ann, "open");
    await waitFor(ben, "open");
    // Ben's greeting does not mean ann has had his member:join yet.
    await until(() => ann.members.includes("ben"), "ann hears of ben", 5000);
    assert.deepEqual(ann.members, ["ann", "ben"]);
    assert.equal(ann.memberCount, 2);
    assert.equal(ann.hasMoreMembers, false);

    // Past the setting: cat's greeting is partial, ann hears of cat by a diff.
    const counted = waitFor(ann, "memberCount", (n) => n === 3);
    const state = await waitFor(cat, "open");
    assert.deepEqual(state.members.map((m) => m.user), ["ann", "ben"]);
    assert.equal(state.memberCount, 3);
    assert.equal(cat.hasMoreMembers, true);
    assert.deepEqual(cat.members, ["ann", "ben"]);
    await counted;
    assert.deepEqual(ann.members, ["ann", "ben", "cat"], "the diff's joins are added");

    await waitFor(dan, "open");
    assert.equal(await cat.loadMoreMembers({ limit: 1 }), true);
    assert.deepEqual(cat.members, ["ann", "ben", "cat"]);
    assert.equal(await cat.loadMoreMembers(), false);
    assert.deepEqual(cat.members, ["ann", "ben", "cat", "dan"]);
    assert.equal(cat.memberCount, 4);
    const page = await cat.membersPage({ after: "ann", limit: 2 });
    assert.deepEqual(page, { members: [{ user: "ben" }, { user: "cat" }], count: 4, next: "cat" });

    // Back to the setting: the diff's complete list replaces the view.
    clients[3].close();
    clients[2].close();
    await until(() => ann.memberCount === 2 && !ann.members.includes("cat"), "ann sees the room small again", 5000);
    assert.deepEqual(ann.members, ["ann", "ben"]);
    assert.equal(ann.hasMoreMembers, false);
  } finally {
    for (const c of clients) c.close();
    await small.close();
  }
});
