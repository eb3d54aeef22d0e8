// The user's own socket through the SDK: status, watching others across a reconnect,
// notifications with the unread count, and requests that honour retryAfterMs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { workerBehindProxy, sdk, waitFor, until, call, connectUser, recordingWebSocket, sleep } from "./helpers.mjs";

const { worker, proxy } = await workerBehindProxy();

test("status, notifications and the unread count on the user socket", async () => {
  const alice = sdk(worker.http, "alice");
  try {
    const me = alice.me();
    const state = await waitFor(me, "open");
    assert.equal(state.user, "alice");
    assert.equal(state.status, "online");
    const busy = await me.setStatus("busy", "in a meeting");
    assert.equal(busy.status, "busy");
    const arrived = waitFor(me, "notification");
    const counted = waitFor(me, "unread", (n) => n === 1);
    const res = await call(worker, "POST", "/v1/notify", { body: { users: ["alice"], notification: { type: "mention", title: "Bob mentioned you" } } });
    assert.equal(res.status, 202);
    assert.equal((await arrived).title, "Bob mentioned you");
    await counted;
    assert.equal(me.unread, 1);
    const page = await me.notifications();
    assert.equal(page.notifications.length, 1);
    assert.equal(await me.markRead("all"), 0);
    await until(() => me.unread === 0, "the count after reading");
  } finally {
    alice.close();
  }
});

test("watched users stay watched across a reconnect, and changes arrive", async () => {
  const sent = [];
  const alice = sdk(proxy.url, "alice", { WebSocket: recordingWebSocket(sent) });
  const bob = sdk(worker.http, "bob");
  try {
    const me = alice.me();
    await waitFor(me, "open");
    const bobMe = bob.me();
    await waitFor(bobMe, "open");
    const [p] = await me.subscribe(["bob"]);
    assert.equal(p.status, "online");
    const reopened = waitFor(me, "open");
    proxy.sever();
    await reopened;
    await until(() => sent.filter((f) => f.t === "presence:subscribe").length === 2, "a fresh subscribe after the reconnect");
    // The SDK subscribed again after the reconnect; a change of bob's reaches alice.
    const update = waitFor(me, "presence", (u) => u.user === "bob" && u.status === "busy", 5000);
    await bobMe.setStatus("busy");
    await update;
    assert.equal(me.watching.get("bob").status, "busy");
  } finally {
    alice.close();
    bob.close();
  }
});

test("a request over the user's shared budget waits retryAfterMs and succeeds instead of failing", async () => {
  const sent = [];
  const carol = sdk(worker.http, "carol", { WebSocket: recordingWebSocket(sent) });
  try {
    const me = carol.me();
    await waitFor(me, "open");
    // Another device of carol's spends the user's whole bucket (burst 30, 10/s) just before.
    // On a busy machine a token may refill between its refusal and the request, and then the
    // first try goes through and proves nothing: try again with a fresh device (each drain
    // costs that device strikes), at most five times.
    for (let round = 0; round < 5; round++) {
      const other = await connectUser(worker, "carol");
      try {
        for (let i = 0; i < 40; i++) other.send({ t: "presence:active" });
        assert.equal((await other.next("error")).error.code, "rate_limited");
        const before = sent.filter((f) => f.t === "presence:set").length;
        const status = round % 2 === 0 ? "away" : "busy";
        const reply = await me.setStatus(status);
        assert.equal(reply.status, status);
        const tries = sent.filter((f) => f.t === "presence:set").length - before;
        assert.ok(tries <= 3, `no hammering (${tries} tries)`);
        if (tries >= 2) return; // the first try was rate limited and sent again after retryAfterMs
      } finally {
        await other.close();
      }
      await sleep(3_500); // let the bucket refill before the next drain
    }
    assert.fail("the request never met an empty bucket in five rounds");
  } finally {
    carol.close();
  }
});
