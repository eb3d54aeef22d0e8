// The user's event stream (`GET /v1/users/me/events`) and the fallback's HTTP writes in workerd:
// user:state first, presence and notifications as on the socket, the status and subscribe
// routes, the end at exp, keepalives, the socket limit, CORS, a refused token, and a closed
// stream starting the grace period like a socket's close.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, connectUser, open, token, openEvents, call, sleep, rawStream } from "./harness.mjs";

const APP = "https://app.example.com";
let worker;
before(
  async () =>
    (worker = await startWorker({
      preventEviction: true,
      vars: { MAX_SOCKETS_PER_USER: "2", SSE_KEEPALIVE_MS: "500", PRESENCE_GRACE_MS: "800" },
    })),
);
after(() => worker?.close());

const events = (user, options) => openEvents(`${worker.http}/v1/users/me/events?token=${token(user, options)}`);
const stats = async (user) => (await call(worker, "GET", `/v1/users/${user}/stats`)).body;
const post = (user, path, body) => call(worker, "POST", `/v1/users/me/${path}`, { body, auth: token(user) });


test("the stream opens with user:state, and the user is online through it", async () => {
  await call(worker, "POST", "/v1/notify", { body: { users: ["una"], notification: { type: "mention" } } });
  const stream = await events("una");
  assert.equal(stream.status, 200);
  assert.match(stream.headers.get("content-type"), /text\/event-stream/);
  const first = await stream.next(() => true);
  assert.equal(first.event, "user:state", "user:state comes first");
  assert.equal(first.data.user, "una");
  assert.equal(first.data.status, "online");
  assert.equal(first.data.unread, 1);
  assert.equal(typeof first.data.connId, "string");
  const s = await stats("una");
  assert.equal(s.streams, 1);
  assert.equal(s.connections, 0);
  assert.equal(s.presence.status, "online");
  stream.close();
});

test("watched users' presence and notifications arrive on the stream; reads update the count", async () => {
  const bob = await connectUser(worker, "bob");
  const stream = await events("ann");
  await stream.next("user:state");
  const sub = await post("ann", "subscribe", { users: ["bob"] });
  assert.equal(sub.status, 200);
  assert.deepEqual(sub.body.presence.map((p) => [p.user, p.status]), [["bob", "online"]]);
  assert.equal((await bob.request("presence:set", { status: "busy" })).ok, true);
  const update = await stream.next((e) => e.event === "presence:update" && e.data.user === "bob");
  assert.equal(update.data.status, "busy");

  const notified = await call(worker, "POST", "/v1/notify", {
    body: { users: ["ann"], notification: { type: "mention", title: "hi" } },
  });
  assert.equal(notified.status, 202);
  assert.equal((await stream.next("notification:new")).data.title, "hi");
  assert.equal((await stream.next("notification:count")).data.unread, 1);
  const read = await post("ann", "notifications/read", { all: true });
  assert.deepEqual(read.body, { unread: 0 });
  assert.equal((await stream.next("notification:count")).data.unread, 0);

  const unsub = await post("ann", "unsubscribe", { users: ["bob", "zed"] });
  assert.deepEqual(unsub.body, { users: ["bob"] });
  stream.close();
  await bob.close();
});

test("POST /v1/users/me/status sets the status on every device and for watchers; active marks activity", async () => {
  const none = await post("cleo", "status", { status: "busy" });
  assert.equal(none.status, 409, "no device holds the status");
  assert.equal(none.body.error.code, "conflict");

  const watcher = await connectUser(worker, "wes");
  const stream = await events("cleo");
  await stream.next("user:state");
  await watcher.request("presence:subscribe", { users: ["cleo"] });
  const set = await post("cleo", "status", { status: "busy", activity: "focus" });
  assert.equal(set.status, 200);
  assert.equal(set.body.status, "busy");
  assert.equal(set.body.activity, "focus");
  const own = await stream.next((e) => e.event === "presence:update" && e.data.status === "busy");
  assert.equal(own.data.activity, "focus");
  const seen = await watcher.next((f) => f.t === "presence:update" && f.d.user === "cleo" && f.d.status === "busy");
  assert.equal(seen.d.activity, "focus");

  assert.equal((await post("cleo", "status", { status: "asleep" })).status, 400);
  assert.equal((await post("cleo", "status", "not json")).status, 400);
  const active = await post("cleo", "active", {});
  assert.equal(active.status, 200);
  assert.deepEqual(active.body, {});
  stream.close();
  await watcher.close();
});

test("the fallback's writes share the user's frame budget (429 with Retry-After)", async () => {
  const stream = await events("rita");
  await stream.next("user:state");
  // At once: the bucket refills 10/s, so calls spread over seconds would all pass.
  const all = await Promise.all(
    Array.from({ length: 45 }, () =>
      fetch(`${worker.http}/v1/users/me/active`, { method: "POST", headers: { authorization: `Bearer ${token("rita")}` } }),
    ),
  );
  const limited = all.find((res) => res.status === 429);
  assert.ok(limited, "refused within 45 calls (burst 30)");
  assert.ok(Number(limited.headers.get("retry-after")) >= 1);
  assert.equal((await limited.json()).error.code, "rate_limited");
  stream.close();
});

test("a stream ends with a close event at its token's exp", async () => {
  const stream = await rawStream(`${worker.http}/v1/users/me/events?token=${token("tess", { ttl: 2 })}`);
  assert.equal(stream.status, 200);
  const started = Date.now();
  await Promise.race([stream.done, sleep(6000)]);
  assert.ok(stream.ended, "the stream ended");
  assert.ok(Date.now() - started >= 900, "not before its token expired");
  assert.match(stream.text, /^event: user:state\n/);
  assert.match(stream.text, /event: close\ndata: \{"code":4001,"reason":"token expired"\}\n\n$/);
  assert.equal((await stats("tess")).streams, 0);
});

test("streams count with sockets against MAX_SOCKETS_PER_USER; a closed one frees its place", async () => {
  const socket = await connectUser(worker, "sam");
  const first = await events("sam");
  assert.equal(first.status, 200);
  await first.next("user:state");
  const second = await events("sam");
  assert.equal(second.status, 429);
  assert.equal(second.body.error.code, "too_many_connections");
  const refused = await open(`${worker.ws}/v1/users/me/ws?token=${token("sam")}`).catch((e) => e);
  assert.equal(refused.status, 429, "a socket over the limit too");
  first.close();
  // Noticed once the runtime finds its client gone: when a write to it (a keepalive) fails.
  let waited = 0;
  while ((await stats("sam")).streams > 0 && waited < 3000) {
    await sleep(100);
    waited += 100;
  }
  console.log(`# the closed stream was noticed after ~${waited} ms`);
  const again = await events("sam");
  assert.equal(again.status, 200, "a closed stream frees its place");
  again.close();
  await socket.close();
});

test("open streams get a keepalive comment every SSE_KEEPALIVE_MS", async () => {
  const stream = await rawStream(`${worker.http}/v1/users/me/events?token=${token("kim")}`);
  await sleep(1800);
  const count = stream.text.split(": keepalive\n\n").length - 1;
  assert.ok(count >= 2 && count <= 4, `${count} keepalives in 1.8 s at 500 ms`);
  stream.close();
});

test("closing the last stream starts the grace period: watchers see offline after it", async () => {
  const watcher = await connectUser(worker, "vic");
  const stream = await events("olive");
  await stream.next("user:state");
  await watcher.request("presence:subscribe", { users: ["olive"] });
  stream.close();
  const closedAt = Date.now();
  const offline = await watcher.next(
    (f) => f.t === "presence:update" && f.d.user === "olive" && f.d.status === "offline",
    5000,
  );
  assert.ok(offline);
  assert.ok(Date.now() - closedAt >= 700, "not before the grace period");
  assert.equal((await stats("olive")).streams, 0);
  await watcher.close();
});

test("a bad or missing token is 401 before any stream opens", async () => {
  const bad = await openEvents(`${worker.http}/v1/users/me/events?token=${token("eve", { secret: "wrong" })}`);
  assert.equal(bad.status, 401);
  assert.equal(bad.body.error.code, "unauthorized");
  const none = await openEvents(`${worker.http}/v1/users/me/events`);
  assert.equal(none.status, 401);
  const expired = await openEvents(`${worker.http}/v1/users/me/events?token=${token("eve", { ttl: -10 })}`);
  assert.equal(expired.status, 401);
  const server = await call(worker, "POST", "/v1/users/me/status", { body: { status: "busy" } });
  assert.equal(server.status, 401, "the server key is no user");
  assert.equal((await stats("eve")).streams, 0);
});

test("the stream and the writes carry CORS headers; preflights list the methods", async () => {
  const stream = await openEvents(`${worker.http}/v1/users/me/events?token=${token("cory")}`, { origin: APP });
  try {
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get("access-control-allow-origin"), APP);
    assert.match(stream.headers.get("vary") ?? "", /Origin/i);
    await stream.next("user:state");
    const set = await fetch(`${worker.http}/v1/users/me/status`, {
      method: "POST",
      headers: { origin: APP, authorization: `Bearer ${token("cory")}`, "content-type": "application/json" },
      body: JSON.stringify({ status: "away" }),
    });
    assert.equal(set.status, 200);
    assert.equal(set.headers.get("access-control-allow-origin"), APP);
    for (const [path, methods] of [
      ["events", "GET"],
      ["status", "POST"],
      ["active", "POST"],
      ["subscribe", "POST"],
      ["unsubscribe", "POST"],
    ]) {
      const res = await fetch(`${worker.http}/v1/users/me/${path}`, {
        method: "OPTIONS",
        headers: { origin: APP, "access-control-request-method": methods },
      });
      assert.equal(res.status, 204, path);
      assert.equal(res.headers.get("access-control-allow-origin"), APP);
      assert.match(res.headers.get("access-control-allow-methods"), new RegExp(methods));
    }
  } finally {
    stream.close();
  }
});

test("an open stream keeps the user object awake where a socket alone lets it hibernate", async () => {
  // Eviction on: a user object with only hibernatable sockets is evicted after ~10 s idle.
  const live = await startWorker({ vars: { SSE_KEEPALIVE_MS: "60000" } });
  try {
    const wakes = async (user) => (await call(live, "GET", `/v1/users/${user}/stats`)).body.wakes;
    const socket = await connectUser(live, "hib-socket");
    const stream = await openEvents(`${live.http}/v1/users/me/events?token=${token("hib-stream")}`);
    await stream.next("user:state");
    assert.equal(await wakes("hib-socket"), 1);
    assert.equal(await wakes("hib-stream"), 1);
    await sleep(12_000);
    assert.equal(await wakes("hib-socket"), 2, "the socket-only object was evicted and rebuilt (the proof eviction happens here)");
    assert.equal(await wakes("hib-stream"), 1, "the object holding a stream was not");
    await call(live, "POST", "/v1/notify", { body: { users: ["hib-stream"], notification: { type: "t", title: "still here" } } });
    assert.equal((await stream.next("notification:new")).data.title, "still here");
    stream.close();
    await socket.close();
  } finally {
    await live.close();
  }
});
