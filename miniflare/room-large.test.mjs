// Large rooms in workerd, with ROOM_MEMBER_LIST_MAX set to 5: room:state stays capped with the
// count and a cursor, joins past the setting reach the others as one members:diff a second (on
// the room's alarm), members:get pages everyone once, and going back under the setting sends the
// complete list and single member events again. Typing changes there come as at most one
// typing:update a second to every socket, with the capped list as it is then.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join, sleep } from "./harness.mjs";

const MAX = 5;
let worker;
before(async () => (worker = await startWorker({ vars: { ROOM_MEMBER_LIST_MAX: String(MAX) } })));
after(() => worker?.close());

const users = (list) => list.map((m) => m.user);
const name = (i) => `u${String(i).padStart(2, "0")}`;

test("past the setting: capped room:state, coalesced diffs, paging, and back", async () => {
  const room = "large-1";
  const clients = [];
  for (let i = 0; i < MAX; i++) clients.push(await join(worker, room, name(i)));
  const first = clients[0];
  // Up to the setting: one member:join per new user, the whole list.
  for (let i = 1; i < MAX; i++) assert.equal((await first.next("member:join")).d.user, name(i));
  assert.deepEqual(users(clients[MAX - 1].state.members), [0, 1, 2, 3, 4].map(name));
  assert.equal(clients[MAX - 1].state.memberCount, MAX);
  assert.equal(clients[MAX - 1].state.membersNext, undefined);

  // Twelve more users at once: the room is large.
  const more = await Promise.all(Array.from({ length: 12 }, (_, i) => join(worker, room, name(MAX + i))));
  clients.push(...more);
  for (const c of more) {
    assert.ok(c.state.members.length <= MAX, "room:state lists at most the setting");
    assert.ok(c.state.memberCount > MAX && c.state.memberCount <= 17);
    assert.equal(c.state.membersNext, users(c.state.members).at(-1));
    assert.ok(JSON.stringify(c.state).length < 1_000, "room:state stays small");
  }
  const late = await join(worker, room, "zz-late");
  clients.push(late);
  assert.deepEqual(users(late.state.members), [0, 1, 2, 3, 4].map(name), "the first members by id");
  assert.equal(late.state.memberCount, 18);

  // The others hear of it by diffs, at most one a second, never by member:join.
  await sleep(2_500);
  const diffs = first.frames.filter((f) => f.t === "members:diff");
  assert.ok(diffs.length >= 1 && diffs.length <= 4, `one diff a second at most: ${diffs.length}`);
  assert.equal(diffs.at(-1).d.count, 18);
  assert.ok(!first.frames.some((f) => f.t === "member:join"), "no single joins past the setting");
  for (const d of diffs) assert.ok(d.d.truncated || d.d.joins.length + d.d.leaves.length <= MAX, "bounded diffs");

  // members:get pages everyone once, in id order.
  const seen = [];
  let after = late.state.membersNext;
  seen.push(...users(late.state.members));
  while (after !== undefined) {
    const page = await late.request("members:get", { after, limit: 4 });
    assert.equal(page.ok, true, JSON.stringify(page));
    assert.ok(page.d.members.length <= 4);
    assert.equal(page.d.count, 18);
    seen.push(...users(page.d.members));
    after = page.d.next;
  }
  const everyone = [...Array.from({ length: 17 }, (_, i) => name(i)), "zz-late"];
  assert.deepEqual(seen, everyone);
  const clamped = await late.request("members:get", { limit: 1000 });
  assert.equal(clamped.d.members.length, MAX, "pages are at most the setting");

  // Back to the setting: the diff carries the complete list, then single events again.
  for (const c of clients.slice(MAX - 1)) {
    if (c !== late) await c.close();
  }
  await sleep(2_500);
  const back = first.frames.filter((f) => f.t === "members:diff").at(-1);
  assert.equal(back.d.count, MAX);
  assert.deepEqual(users(back.d.members), [...[0, 1, 2, 3].map(name), "zz-late"]);
  await late.close();
  assert.deepEqual((await first.next("member:leave")).d, { user: "zz-late" });
  for (const c of clients.slice(0, MAX - 1)) await c.close();
});

test("past the setting: typing reaches every socket as at most one typing:update a second, the last state winning", async () => {
  const room = "large-typing";
  const clients = [];
  for (let i = 0; i < MAX + 2; i++) clients.push(await join(worker, room, name(i)));
  const [watcher, ...typists] = clients; // seven members: the room is large
  await sleep(1_500); // the member diffs go out first
  const arrivals = [];
  watcher.ws.on("message", (data) => {
    if (data.toString().includes('"typing:update"')) arrivals.push(Date.now());
  });
  const began = Date.now();
  // Six typists, one more than the setting shows; then the first two stop within the second.
  for (const t of typists) assert.deepEqual((await t.request("typing:start")).d, {}, "the reply is unchanged");
  for (const t of typists.slice(0, 2)) assert.deepEqual((await t.request("typing:stop")).d, {});
  const first = await watcher.next("typing:update");
  assert.deepEqual(first.d.users, [name(1)], "the first change after a quiet second goes at once");
  assert.ok(arrivals[0] - began < 900, `at once: ${arrivals[0] - began} ms`);
  await sleep(2_500);
  const updates = watcher.frames.filter((f) => f.t === "typing:update");
  assert.ok(updates.length >= 1 && updates.length <= 2, `one update a second at most: ${JSON.stringify(updates)}`);
  const shown = [3, 4, 5].map(name); // u06 was past the setting when it started: acked, not shown
  assert.deepEqual(updates.at(-1).d.users, shown, "the stops went out with the interval: the last state wins");
  for (const u of updates) assert.ok(u.d.users.length <= MAX, "at most the setting shown");
  for (let i = 1; i < arrivals.length; i++) assert.ok(arrivals[i] - arrivals[i - 1] >= 800, `spaced: ${arrivals}`);
  const own = typists[2].frames.filter((f) => f.t === "typing:update").at(-1);
  assert.deepEqual(own.d.users, shown, "the typist's own socket gets the update too");
  // Everyone stops: one more update, empty.
  for (const t of typists.slice(2)) t.send({ t: "typing:stop" });
  await sleep(1_500);
  assert.deepEqual(watcher.frames.filter((f) => f.t === "typing:update").at(-1).d.users, []);
  for (const c of clients) await c.close();
});
