// Tokens through the SDK: renewed on the open socket before `exp`, replaced by reconnecting when
// renewal is impossible, and a refused token stops the client instead of retrying forever.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient } from "../dist/index.js";
import { startWorker, token, sdk, waitFor, sleep, FAST } from "./helpers.mjs";

let worker;
before(async () => {
  worker = await startWorker();
});
after(() => worker.close());

test("a short-lived token is renewed with auth:refresh before exp: the same socket stays open", async () => {
  const statuses = [];
  const alice = sdk(worker.http, "alice", { tokenOptions: { ttl: 3 } });
  try {
    alice.on("status", (s) => statuses.push(s));
    const room = alice.room("refresh-1");
    const opened = await waitFor(room, "open");
    await sleep(4500); // past the first token's exp
    assert.ok(alice.tokens.calls >= 2, `the callback was asked again (${alice.tokens.calls})`);
    const ack = await room.send("still here");
    assert.equal(ack.seq, 1);
    assert.equal(room.connId, opened.connId, "no reconnect: the token was renewed on the socket");
    assert.ok(!statuses.includes("reconnecting"), `statuses: ${statuses}`);
    assert.equal(alice.errors.length, 0);
  } finally {
    alice.close();
  }
});

test("when the token cannot be renewed in time, the socket is replaced with a fresh token", async () => {
  // The callback hands out the same token until it has expired (an app with a stale cache), so
  // auth:refresh has nothing newer to send; the server closes at exp, the SDK reconnects.
  let current = token("alice", { ttl: 2 });
  let calls = 0;
  const alice = createClient({
    url: worker.http,
    WebSocket,
    ...FAST,
    token: () => {
      calls++;
      const exp = JSON.parse(Buffer.from(current.split(".")[1], "base64url")).exp * 1000;
      if (Date.now() > exp) current = token("alice", { ttl: 3600 });
      return current;
    },
  });
  try {
    const room = alice.room("expiry-1");
    const first = await waitFor(room, "open");
    const second = await waitFor(room, "open", () => true, 6000);
    assert.notEqual(second.connId, first.connId, "a new socket");
    assert.equal(second.recovered, true);
    assert.ok(calls >= 2);
    assert.equal((await room.send("after expiry")).seq, 1);
  } finally {
    alice.close();
  }
});

test("a refused token stops the client and reports it instead of retrying forever", async () => {
  let calls = 0;
  const errors = [];
  const mallory = createClient({
    url: worker.http,
    WebSocket,
    ...FAST,
    token: () => {
      calls++;
      return token("mallory", { secret: "not-the-secret" });
    },
  });
  mallory.on("error", (e) => errors.push(e));
  try {
    const room = mallory.room("refused-1");
    const sending = room.send("never");
    const asking = room.history().catch((e) => e); // waits for the socket, which never opens
    await waitFor(room, "status", (s) => s === "closed", 5000);
    assert.equal(mallory.status, "closed");
    assert.equal(errors.at(-1).code, "refused");
    // The SDK offers switchboard.v1, so the server reports the refusal on the socket (4401), as
    // a browser needs; a client without it sees HTTP 401, which the SDK treats the same way.
    assert.equal(errors.at(-1).closeCode, 4401);
    await sleep(500);
    assert.equal(calls, 2, "one retry with a fresh token, then it stopped");
    const failed = await asking;
    assert.equal(failed.code, "refused", "a waiting request fails with the refusal");
    assert.equal(failed.closeCode, 4401);
    await assert.rejects(room.history(), (e) => e.code === "closed");
    // The queued message is still waiting in the outbox: a refused socket loses nothing silently.
    assert.equal(room.pending.length, 1);
    room.close();
    await assert.rejects(sending, (e) => e.code === "closed");
  } finally {
    mallory.close();
  }
});

test("a token without the right to join stops at once with 4403", async () => {
  let calls = 0;
  const errors = [];
  const client = createClient({
    url: worker.http,
    WebSocket,
    ...FAST,
    token: () => {
      calls++;
      return token("erin", { extra: { cap: { "room:other": ["join"] } } });
    },
  });
  client.on("error", (e) => errors.push(e));
  try {
    const room = client.room("private-1");
    await waitFor(room, "status", (s) => s === "closed", 5000);
    assert.equal(errors.at(-1).code, "refused");
    assert.equal(errors.at(-1).closeCode, 4403);
    assert.match(errors.at(-1).message, /join/);
    await sleep(300);
    assert.equal(calls, 1, "no retry: another token would not help");
  } finally {
    client.close();
  }
});

test("a static token string works, and without a global WebSocket the error says what to pass", async () => {
  const alice = createClient({ url: worker.ws, token: token("alice"), WebSocket });
  try {
    const room = alice.room("static-1");
    await waitFor(room, "open");
    assert.equal((await room.send("hi")).seq, 1);
  } finally {
    alice.close();
  }
  if (typeof globalThis.WebSocket === "undefined") {
    assert.throws(() => createClient({ url: worker.http, token: "x" }), /pass one/);
  }
});
