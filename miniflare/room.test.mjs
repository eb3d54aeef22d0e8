// Chat in one room over real sockets in workerd: greeting, messages, members, history.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join } from "./harness.mjs";

let worker;
before(async () => (worker = await startWorker({ preventEviction: true })));
after(() => worker?.close());

test("two clients chat and see each other's messages with consecutive seq", async () => {
  const alice = await join(worker, "chat-1", "alice");
  assert.equal(alice.state.room, "chat-1");
  assert.equal(alice.state.user, "alice");
  assert.equal(alice.state.seq, 0);
  assert.equal(typeof alice.state.epoch, "string");
  assert.deepEqual(alice.state.members, [{ user: "alice" }]);

  const bob = await join(worker, "chat-1", "bob");
  assert.deepEqual(bob.state.members, [{ user: "alice" }, { user: "bob" }]);
  assert.equal(bob.state.epoch, alice.state.epoch);
  assert.deepEqual((await alice.next("member:join")).d, { user: "bob" });

  const ack1 = await alice.request("message:send", { text: "hi bob", id: "a-1" });
  assert.equal(ack1.ok, true);
  assert.equal(ack1.d.seq, 1);
  assert.equal(ack1.d.id, "a-1");
  const got1 = await bob.next("message:receive");
  assert.deepEqual(got1.d, { room: "chat-1", seq: 1, id: "a-1", user: "alice", text: "hi bob", ts: ack1.d.ts });

  const ack2 = await bob.request("message:send", { text: "hi alice", data: { mood: "good" } });
  assert.equal(ack2.d.seq, 2);
  const got2 = await alice.next("message:receive");
  assert.equal(got2.d.seq, 2);
  assert.equal(got2.d.user, "bob");
  assert.deepEqual(got2.d.data, { mood: "good" });
  assert.equal(got2.d.id, ack2.d.id);

  // The sender does not receive its own message back.
  assert.equal(alice.frames.filter((f) => f.t === "message:receive" && f.d.seq === 1).length, 0);
  await alice.close();
  await bob.close();
});

test("history:get returns messages in ascending seq, paged by before and limit", async () => {
  const carol = await join(worker, "chat-history", "carol");
  for (let i = 1; i <= 5; i++) await carol.request("message:send", { text: `m${i}` });
  const all = await carol.request("history:get", {});
  assert.deepEqual(all.d.messages.map((m) => m.text), ["m1", "m2", "m3", "m4", "m5"]);
  const page = await carol.request("history:get", { before: 5, limit: 2 });
  assert.deepEqual(page.d.messages.map((m) => m.seq), [3, 4]);
  const huge = await carol.request("history:get", { limit: 100000 });
  assert.equal(huge.d.messages.length, 5);
  await carol.close();
});

test("members are listed once across tabs; join and leave fire on the first and last socket", async () => {
  const watcher = await join(worker, "chat-tabs", "watcher");
  const tab1 = await join(worker, "chat-tabs", "dave");
  assert.deepEqual((await watcher.next("member:join")).d, { user: "dave" });
  const tab2 = await join(worker, "chat-tabs", "dave");
  assert.deepEqual(tab2.state.members, [{ user: "dave" }, { user: "watcher" }]);
  assert.notEqual(tab1.state.connId, tab2.state.connId);

  // A message from one tab reaches the user's other tab.
  await tab1.request("message:send", { text: "from tab 1" });
  assert.equal((await tab2.next("message:receive")).d.text, "from tab 1");

  await tab1.close();
  await tab2.request("message:send", { text: "still here" });
  await watcher.next((f) => f.t === "message:receive" && f.d.text === "still here");
  assert.equal(watcher.frames.filter((f) => f.t === "member:join" || f.t === "member:leave").length, 0);
  await tab2.close();
  assert.deepEqual((await watcher.next("member:leave")).d, { user: "dave" });
  await watcher.close();
});

test("a join storm: the joins reach a member together, each once, in order, and on their own", async () => {
  const watcher = await join(worker, "chat-storm", "watcher");
  const frames = []; // every frame as it arrived: an array is one batch
  watcher.ws.on("message", (data) => frames.push(JSON.parse(data.toString())));
  // Joins in quick succession (each under 25 ms after the previous): once the room has 16
  // sockets it holds its member:join announcements for up to 20 ms, so they share frames.
  const joiners = [];
  for (let i = 0; i < 40; i++) joiners.push(await join(worker, "chat-storm", `storm-${String(i).padStart(2, "0")}`));
  // Nothing else is sent: the held announcements leave on their own.
  await watcher.next((f) => f.t === "member:join" && f.d.user === "storm-39", 2_000);
  const flat = frames.flatMap((f) => (Array.isArray(f) ? f : [f]));
  const joined = flat.filter((f) => f.t === "member:join").map((f) => f.d.user);
  assert.deepEqual(joined, joiners.map((c) => c.state.user), "each join once, in order");
  const joinFrames = frames.filter((f) => (Array.isArray(f) ? f : [f]).some((e) => e.t === "member:join"));
  assert.ok(joinFrames.length < joined.length, `joins share frames: ${JSON.stringify(frames)}`);

  // Newcomers in quick succession, the last of whom speaks at once: the message does not wait
  // for the hold (an earlier drain takes the held joins along), and comes after its join.
  const late = [];
  for (const user of ["storm-late-1", "storm-late-2", "storm-late"]) late.push(await join(worker, "chat-storm", user));
  const last = late.at(-1);
  await last.request("message:send", { text: "hello all" });
  await watcher.next((f) => f.t === "message:receive" && f.d.text === "hello all");
  const after = frames.flatMap((f) => (Array.isArray(f) ? f : [f]));
  const joinAt = after.findIndex((f) => f.t === "member:join" && f.d.user === "storm-late");
  assert.ok(joinAt >= 0 && joinAt < after.findIndex((f) => f.t === "message:receive"), "join before the message");
  await Promise.all([watcher, ...joiners, ...late].map((c) => c.close()));
});

test("the ping heartbeat is answered with pong", async () => {
  const eve = await join(worker, "chat-ping", "eve");
  eve.send('{"t":"ping"}');
  assert.deepEqual(await eve.next("pong"), { t: "pong" });
  await eve.close();
});

test("a burst of messages is stored once each and delivered in order, batched or not", async () => {
  const alice = await join(worker, "chat-burst", "alice");
  const bob = await join(worker, "chat-burst", "bob");
  const acks = await Promise.all(Array.from({ length: 15 }, (_, i) => alice.request("message:send", { text: `b${i}`, id: `burst-${i}` })));
  assert.deepEqual(acks.map((a) => a.d.seq).sort((x, y) => x - y), Array.from({ length: 15 }, (_, i) => i + 1));
  const got = [];
  for (let i = 0; i < 15; i++) got.push((await bob.next("message:receive")).d);
  assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 15 }, (_, i) => i + 1), "in seq order");
  // A resend inside the same burst window is still recognised.
  const again = await alice.request("message:send", { text: "b3", id: "burst-3" });
  assert.equal(again.d.duplicate, true);
  const history = await bob.request("history:get", {});
  assert.equal(history.d.messages.length, 15);
  await alice.close();
  await bob.close();
});
