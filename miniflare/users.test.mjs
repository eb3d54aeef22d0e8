// User objects in workerd: status across devices and watchers through real alarms, the
// notification inbox behind /v1/notify, and what survives hibernation and restarts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, connectUser, call, token, sleep, withStorage, open } from "./harness.mjs";

// Short enough to watch transitions happen; the defaults are minutes.
const FAST = { PRESENCE_AWAY_MS: "1500", PRESENCE_OFFLINE_MS: "3000", PRESENCE_GRACE_MS: "1000" };

const statusOf = (user) => (f) => f.t === "presence:update" && f.d.user === user;

test("two devices and a watcher: a notify call arrives live on both, read on one updates the other", async () => {
  const worker = await startWorker();
  try {
    const phone = await connectUser(worker, "alice");
    const laptop = await connectUser(worker, "alice");
    assert.equal(phone.state.user, "alice");
    assert.equal(phone.state.status, "online");
    assert.equal(phone.state.unread, 0);
    assert.notEqual(phone.state.connId, laptop.state.connId);
    const bob = await connectUser(worker, "bob");
    const sub = await bob.request("presence:subscribe", { users: ["alice"] });
    assert.equal(sub.ok, true);
    assert.deepEqual(sub.d.presence.map((p) => [p.user, p.status]), [["alice", "online"]]);

    const notification = { type: "mention", title: "Bob mentioned you", body: "hi", data: { room: "general" } };
    const sent = await call(worker, "POST", "/v1/notify", {
      body: { users: ["alice", "carol"], notification },
      headers: { "idempotency-key": "call-1" },
    });
    assert.equal(sent.status, 202);
    assert.equal(sent.body.delivered, 2);
    assert.equal(sent.body.failed, 0);
    assert.deepEqual(sent.body.results[0], { user: "alice", ok: true, id: 1, unread: 1 });
    for (const device of [phone, laptop]) {
      const n = (await device.next("notification:new")).d;
      assert.equal(n.id, 1);
      assert.equal(n.read, false);
      assert.equal(n.title, notification.title);
      assert.deepEqual(n.data, notification.data);
      assert.equal((await device.next("notification:count")).d.unread, 1);
    }

    // A retried call delivers nothing twice.
    const retry = await call(worker, "POST", "/v1/notify", {
      body: { users: ["alice"], notification },
      headers: { "idempotency-key": "call-1" },
    });
    assert.deepEqual(retry.body.results[0], { user: "alice", ok: true, id: 1, unread: 1, duplicate: true });

    const read = await phone.request("notification:read", { ids: [1] });
    assert.equal(read.d.unread, 0);
    assert.equal((await laptop.next("notification:count")).d.unread, 0);
    assert.equal(laptop.frames.filter((f) => f.t === "notification:new").length, 0, "the retry sent nothing");

    const page = await call(worker, "GET", "/v1/users/me/notifications", { auth: token("alice") });
    assert.equal(page.status, 200);
    assert.equal(page.body.unread, 0);
    assert.deepEqual(page.body.notifications.map((n) => [n.id, n.type, n.read]), [[1, "mention", true]]);

    await call(worker, "POST", "/v1/notify", { body: { users: ["alice"], notification: { type: "follow" } } });
    await phone.next((f) => f.t === "notification:count" && f.d.unread === 1);
    const all = await call(worker, "POST", "/v1/users/me/notifications/read", { auth: token("alice"), body: { all: true } });
    assert.deepEqual([all.status, all.body], [200, { unread: 0 }]);
    await laptop.next((f) => f.t === "notification:count" && f.d.unread === 0);

    // Status set on one device shows on the other and at the watcher.
    await laptop.request("presence:set", { status: "busy", activity: "in a meeting" });
    const update = (await bob.next(statusOf("alice"))).d;
    assert.deepEqual([update.status, update.activity], ["busy", "in a meeting"]);
    assert.equal((await phone.next((f) => statusOf("alice")(f) && f.d.status === "busy")).d.activity, "in a meeting");
    for (const c of [phone, laptop, bob]) await c.close();
  } finally {
    await worker.close();
  }
});

test("status goes away and offline through real alarms, and back online on activity", async () => {
  const worker = await startWorker({ vars: FAST });
  try {
    const alice = await connectUser(worker, "alice");
    const bob = await connectUser(worker, "bob");
    await bob.request("presence:subscribe", { users: ["alice"] });
    const started = Date.now();
    assert.equal((await bob.next(statusOf("alice"))).d.status, "away");
    assert.ok(Date.now() - started >= 1000, "not before PRESENCE_AWAY_MS");
    const offline = (await bob.next(statusOf("alice"))).d;
    assert.equal(offline.status, "offline");
    assert.equal(offline.lastSeen, alice.state.lastSeen, "lastSeen is the last activity");

    await alice.request("presence:active");
    assert.equal((await bob.next(statusOf("alice"))).d.status, "online");

    // The last socket closing: offline after the grace period, not at once.
    const closedAt = Date.now();
    await alice.close();
    assert.equal((await bob.next(statusOf("alice"))).d.status, "offline");
    assert.ok(Date.now() - closedAt >= 900, "the grace period ran first");
    await bob.close();
  } finally {
    await worker.close();
  }
});

test("a reload within the grace period does not flap; a watcher away is paused, then caught up", async () => {
  const worker = await startWorker({ vars: { ...FAST, PRESENCE_AWAY_MS: "60000", PRESENCE_OFFLINE_MS: "120000" } });
  const stats = async (user) => (await call(worker, "GET", `/v1/users/${user}/stats`)).body;
  try {
    let alice = await connectUser(worker, "alice");
    let bob = await connectUser(worker, "bob");
    await bob.request("presence:subscribe", { users: ["alice"] });
    await alice.close();
    alice = await connectUser(worker, "alice"); // a reload
    await sleep(1500);
    assert.equal(bob.frames.filter(statusOf("alice")).length, 0, "no offline/online flap");

    await bob.close();
    await sleep(1800); // bob's grace period passes: his object pauses his subscriptions
    assert.deepEqual((await stats("alice")).watchers, { bob: false });
    assert.equal((await stats("bob")).paused, true);
    await alice.request("presence:set", { status: "busy" });
    await sleep(200);
    assert.deepEqual((await stats("alice")).watchers, { bob: false }, "alice made no call to bob");

    bob = await connectUser(worker, "bob");
    assert.equal((await bob.next(statusOf("alice"))).d.status, "busy", "caught up on return");
    assert.deepEqual((await stats("alice")).watchers, { bob: true });
    await alice.request("presence:set", { status: "online" });
    assert.equal((await bob.next(statusOf("alice"))).d.status, "online");

    await bob.request("presence:unsubscribe", { users: ["alice"] });
    assert.deepEqual((await stats("alice")).watchers, {});
    await alice.close();
    await bob.close();
  } finally {
    await worker.close();
  }
});

test("watching follows the friends claim when the default grants nothing", async () => {
  const worker = await startWorker({ vars: { DEFAULT_CAPS: '{"*":["join","send"]}' } });
  try {
    const alice = await connectUser(worker, "alice", { extra: { friends: ["bob"] } });
    const refused = await alice.request("presence:subscribe", { users: ["bob", "carol"] });
    assert.equal(refused.error.code, "forbidden");
    const ok = await alice.request("presence:subscribe", { users: ["bob"] });
    assert.deepEqual(ok.d.presence, [{ user: "bob", status: "offline", lastSeen: 0 }]);
    const bad = await open(`${worker.ws}/v1/users/me/ws?token=${token("x", { extra: { friends: ["no spaces"] } })}`).catch((e) => e);
    assert.equal(bad.status, 401);
    await alice.close();
  } finally {
    await worker.close();
  }
});

test("bad bodies, keys and tokens are refused with clear errors", async () => {
  const worker = await startWorker();
  try {
    const notification = { type: "t" };
    const cases = [
      [{ auth: null, body: { users: ["a"], notification } }, 401, /server key/],
      [{ auth: "wrong", body: { users: ["a"], notification } }, 401, /wrong server key/],
      [{ auth: token("alice"), body: { users: ["a"], notification } }, 401, /server key/],
      [{ body: "not json" }, 400, /body must be/],
      [{ body: { users: [], notification } }, 400, /1 to 1000/],
      [{ body: { users: Array.from({ length: 1001 }, (_, i) => `u${i}`), notification } }, 400, /1 to 1000/],
      [{ body: { users: ["bad id"], notification } }, 400, /not a user id/],
      [{ body: { users: ["a"], notification: { title: "no type" } } }, 400, /type/],
      [{ body: { users: ["a"], notification: { type: "t", extra: 1 } } }, 400, /extra/],
      [{ body: { users: ["a"], notification: { type: "t", data: "x".repeat(20000) } } }, 413, /16384/],
    ];
    cases.push([{ body: { users: ["a"], notification }, headers: { "idempotency-key": "k".repeat(129) } }, 400, /Idempotency-Key/]);
    for (const [options, status, message] of cases) {
      const res = await call(worker, "POST", "/v1/notify", options);
      assert.equal(res.status, status, JSON.stringify(options).slice(0, 80));
      assert.match(res.body.error.message, message);
    }
    assert.equal((await call(worker, "GET", "/v1/notify")).status, 405);
    assert.equal((await call(worker, "GET", "/v1/users/me/notifications", { auth: null })).status, 401);
    const badRead = await call(worker, "POST", "/v1/users/me/notifications/read", { auth: token("alice"), body: { ids: "1" } });
    assert.equal(badRead.status, 400);
    const badLimit = await call(worker, "GET", "/v1/users/me/notifications?limit=x", { auth: token("alice") });
    assert.equal(badLimit.status, 400);
    const noUpgrade = await call(worker, "GET", `/v1/users/me/ws?token=${token("alice")}`);
    assert.equal(noUpgrade.status, 426);
    const expired = await open(`${worker.ws}/v1/users/me/ws?token=${token("alice", { ttl: -10 })}`).catch((e) => e);
    assert.equal(expired.status, 401);

    const alice = await connectUser(worker, "alice");
    const unknown = await alice.request("message:send", { text: "hi" });
    assert.equal(unknown.error.code, "unknown_event");
    const badStatus = await alice.request("presence:set", { status: "asleep" });
    assert.equal(badStatus.error.code, "bad_request");
    alice.send("{not json");
    assert.equal((await alice.next("error")).error.code, "bad_frame");
    await alice.close();
  } finally {
    await worker.close();
  }
});

test("the inbox and unread count survive hibernation and a restart", () =>
  withStorage(async (start) => {
    const first = await start();
    const stats = async (worker) => (await call(worker, "GET", "/v1/users/alice/stats")).body;
    try {
      const phone = await connectUser(first, "alice");
      for (const type of ["a", "b", "c"]) {
        await call(first, "POST", "/v1/notify", { body: { users: ["alice"], notification: { type } } });
      }
      await phone.next((f) => f.t === "notification:count" && f.d.unread === 3);
      const before = await stats(first);
      await sleep(12_000); // workerd evicts an idle object with only hibernatable sockets after ~10 s
      await call(first, "POST", "/v1/users/me/notifications/read", { auth: token("alice"), body: { ids: [2] } });
      await phone.next((f) => f.t === "notification:count" && f.d.unread === 2); // the socket survived
      const after = await stats(first);
      assert.equal(after.wakes, before.wakes + 1, "the object was evicted and rebuilt");
      assert.deepEqual([after.unread, after.notifications], [2, 3]);
      await phone.close();
    } finally {
      await first.close();
    }

    const second = await start();
    try {
      const again = await connectUser(second, "alice");
      assert.equal(again.state.unread, 2);
      const page = await again.request("notification:list", { limit: 10 });
      assert.deepEqual(page.d.notifications.map((n) => [n.id, n.type, n.read]), [
        [3, "c", false],
        [2, "b", true],
        [1, "a", false],
      ]);
      const next = await call(second, "POST", "/v1/notify", { body: { users: ["alice"], notification: { type: "d" } } });
      assert.equal(next.body.results[0].id, 4, "ids continue after a restart");
      await again.close();
    } finally {
      await second.close();
    }
  }));
