// Closes that arrive while an object hibernates: the close event is what wakes the object (its
// wake counter proves the eviction), and it must still announce the departure.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join, connectUser, call, sleep } from "./harness.mjs";

const statusOf = (user) => (f) => f.t === "presence:update" && f.d.user === user;
const stats = async (worker, path) => (await call(worker, "GET", path)).body;

test("a member who closes while the room hibernates is announced as leaving", async () => {
  const worker = await startWorker();
  try {
    const alice = await join(worker, "naps", "alice");
    const bob = await join(worker, "naps", "bob");
    await alice.next("member:join");
    const before = await stats(worker, "/v1/rooms/naps/stats");
    assert.equal(before.members, 2);

    await sleep(12_000); // workerd evicts an idle object with only hibernatable sockets after ~10 s

    await bob.close();
    assert.deepEqual((await alice.next("member:leave")).d, { user: "bob" });
    const after = await stats(worker, "/v1/rooms/naps/stats");
    assert.equal(after.wakes, before.wakes + 1, "the close found the room evicted and woke it");
    assert.deepEqual([after.members, after.connections], [1, 1], "bob is not restored as a member");
    await alice.close();
  } finally {
    await worker.close();
  }
});

test("a watched user whose only socket closes while hibernated goes offline after the grace period", async () => {
  // Away and offline stay at their minutes-long defaults, so no alarm wakes the object early.
  const worker = await startWorker({ vars: { PRESENCE_GRACE_MS: "1000" } });
  try {
    const alice = await connectUser(worker, "alice");
    const bob = await connectUser(worker, "bob");
    const sub = await bob.request("presence:subscribe", { users: ["alice"] });
    assert.equal(sub.d.presence[0].status, "online");
    const before = await stats(worker, "/v1/users/alice/stats");

    await sleep(12_000); // workerd evicts an idle object with only hibernatable sockets after ~10 s

    const closedAt = Date.now();
    await alice.close();
    const offline = await bob.next((f) => statusOf("alice")(f) && f.d.status === "offline");
    assert.ok(Date.now() - closedAt >= 900, "after the grace period, not at once");
    assert.equal(offline.d.lastSeen, alice.state.lastSeen);
    const after = await stats(worker, "/v1/users/alice/stats");
    assert.equal(after.wakes, before.wakes + 1, "the close found the object evicted and woke it");
    assert.deepEqual([after.connections, after.presence.status], [0, "offline"]);
    await bob.close();
  } finally {
    await worker.close();
  }
});
