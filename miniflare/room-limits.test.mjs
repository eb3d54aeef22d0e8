// Issue-10 room limits in workerd: replays and history bounded by bytes, reads that never see
// unwritten messages, trimmed history, per-user publish budgets, server-marked messages, and
// event streams that end with their token, send keepalives and count against the socket limit.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join, open, token, openEvents, call, sleep, SERVER_KEY, rawStream } from "./harness.mjs";

let worker;
before(
  async () =>
    (worker = await startWorker({
      preventEviction: true,
      vars: { RECOVERY_MAX_BYTES: "16384", MAX_SOCKETS_PER_USER: "2", SSE_KEEPALIVE_MS: "500", ROOM_HISTORY_MAX: "20" },
    })),
);
after(() => worker?.close());

const publish = (room, body, headers = {}, auth = SERVER_KEY) =>
  fetch(`${worker.http}/v1/rooms/${room}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${auth}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

test("a replay or event-stream opening over RECOVERY_MAX_BYTES answers recovered:false; history pages are bounded by bytes", async () => {
  const first = await join(worker, "bytes-1", "alice");
  const epoch = first.state.epoch;
  for (let i = 1; i <= 10; i++) assert.equal((await publish("bytes-1", { text: "x".repeat(4000) })).status, 200);

  const all = await open(`${worker.ws}/v1/rooms/bytes-1/ws?token=${token("bob")}&since=0&epoch=${epoch}`);
  const state = await all.next();
  assert.equal(state.t, "room:state", "nothing is replayed before room:state");
  assert.equal(state.d.recovered, false);

  const few = await open(`${worker.ws}/v1/rooms/bytes-1/ws?token=${token("carol")}&since=8&epoch=${epoch}`);
  const frames = [await few.next(), await few.next(), await few.next()];
  assert.deepEqual(frames.map((f) => (f.t === "room:state" ? f.d.recovered : f.d.seq)), [9, 10, true]);

  const stream = await openEvents(`${worker.http}/v1/rooms/bytes-1/events?token=${token("dave")}&since=0&epoch=${epoch}`);
  assert.equal((await stream.next("room:state")).data.recovered, false);
  assert.equal(stream.events.filter((e) => e.event === "message:receive").length, 0);
  stream.close();

  const page = await call(worker, "GET", `/v1/rooms/bytes-1/messages?limit=100`, { auth: token("erin") });
  assert.deepEqual(page.body.messages.map((m) => m.seq), [6, 7, 8, 9, 10], "about 16 KB, the newest");
  const older = await call(worker, "GET", `/v1/rooms/bytes-1/messages?limit=100&before=6`, { auth: token("erin") });
  assert.deepEqual(older.body.messages.map((m) => m.seq), [1, 2, 3, 4, 5]);
  for (const c of [first, all, few]) await c.close();
});

test("an event stream opened while messages wait for the group commit gets each message once", async () => {
  const alice = await join(worker, "commit-1", "alice");
  for (let round = 0; round < 3; round++) {
    if (round > 0) await sleep(1000); // the message budget refills (10/s, burst 20)
    // A burst of sends is committed as a group; the stream opens in the middle of it.
    const acks = Array.from({ length: 9 }, (_, i) => alice.request("message:send", { text: `r${round}-${i}` }));
    const stream = await openEvents(`${worker.http}/v1/rooms/commit-1/events?token=${token("bob")}`);
    await Promise.all(acks);
    const state = await stream.next("room:state");
    const last = (await alice.request("message:send", { text: `end-${round}` })).d.seq;
    await stream.next((e) => e.event === "message:receive" && e.data.seq === last);
    const seqs = stream.events.filter((e) => e.event === "message:receive").map((e) => e.data.seq);
    assert.equal(new Set(seqs).size, seqs.length, `round ${round}: a message arrived twice: ${seqs}`);
    assert.ok(seqs.every((s) => s > state.data.seq), `round ${round}: a message at or before room:state's seq ${state.data.seq}`);
    stream.close();
  }
  await alice.close();
});

test("history is trimmed to ROOM_HISTORY_MAX and a late resend of a trimmed message is not stored twice", async () => {
  const first = await (await publish("trim-1", { text: "first" }, { "idempotency-key": "k-1" })).json();
  for (let i = 2; i <= 25; i++) assert.equal((await publish("trim-1", { text: `m${i}` })).status, 200);
  const page = await call(worker, "GET", `/v1/rooms/trim-1/messages?limit=100`, { auth: token("erin") });
  assert.deepEqual(page.body.messages.map((m) => m.seq), Array.from({ length: 20 }, (_, i) => i + 6));
  const again = await (await publish("trim-1", { text: "first" }, { "idempotency-key": "k-1" })).json();
  assert.deepEqual(again, { ...first, duplicate: true });
  const stats = await call(worker, "GET", "/v1/rooms/trim-1/stats");
  assert.equal(stats.body.seq, 25, "nothing was stored again");
});

test("a user's HTTP publishes share their sockets' budget: 429 with Retry-After and retryAfterMs; the server key is unthrottled", async () => {
  const pat = await join(worker, "budget-1", "pat");
  const sends = await Promise.all(Array.from({ length: 20 }, (_, i) => pat.request("message:send", { text: `s${i}` })));
  assert.ok(sends.every((r) => r.ok));
  const res = await publish("budget-1", { text: "over http" }, {}, token("pat"));
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "1");
  const body = await res.json();
  assert.equal(body.error.code, "rate_limited");
  assert.ok(body.error.retryAfterMs > 0 && body.error.retryAfterMs <= 1000, JSON.stringify(body));
  await pat.close();
  const back = await join(worker, "budget-1", "pat");
  assert.equal((await back.request("message:send", { text: "reconnected" })).error?.code, "rate_limited", "a reconnect is no fresh burst");
  for (let i = 0; i < 30; i++) assert.equal((await publish("budget-1", { text: `server ${i}` })).status, 200);
  await back.close();
});

test("messages published with the server key carry server:true; a user whose sub is system never does", async () => {
  const watcher = await join(worker, "mark-1", "watcher");
  assert.equal((await publish("mark-1", { text: "deploy" })).status, 200);
  const systemToken = token("system");
  assert.equal((await publish("mark-1", { text: "fake" }, {}, systemToken)).status, 200);
  const impostor = await join(worker, "mark-1", "system");
  await impostor.request("message:send", { text: "also fake" });
  const got = [await watcher.next("message:receive"), await watcher.next("message:receive"), await watcher.next("message:receive")];
  assert.deepEqual(got.map((f) => [f.d.text, f.d.user, f.d.server]), [
    ["deploy", "system", true],
    ["fake", "system", undefined],
    ["also fake", "system", undefined],
  ]);
  const history = await call(worker, "GET", "/v1/rooms/mark-1/messages", { auth: token("watcher") });
  assert.deepEqual(history.body.messages.map((m) => m.server ?? false), [true, false, false]);
  await watcher.close();
  await impostor.close();
});


const stats = async (room) => (await call(worker, "GET", `/v1/rooms/${room}/stats`)).body;

test("an event stream ends with a close event at its token's exp", async () => {
  const stream = await rawStream(`${worker.http}/v1/rooms/sse-exp/events?token=${token("tess", { ttl: 2 })}`);
  assert.equal(stream.status, 200);
  const started = Date.now();
  await Promise.race([stream.done, sleep(6000)]);
  assert.ok(stream.ended, "the stream ended");
  assert.ok(Date.now() - started >= 900, "not before its token expired");
  assert.match(stream.text, /event: close\ndata: \{"code":4001,"reason":"token expired"\}\n\n$/);
  assert.equal((await stats("sse-exp")).streams, 0);
});

test("event streams count with sockets against MAX_SOCKETS_PER_USER", async () => {
  const socket = await join(worker, "sse-cap", "sam");
  const first = await openEvents(`${worker.http}/v1/rooms/sse-cap/events?token=${token("sam")}`);
  assert.equal(first.status, 200);
  const second = await openEvents(`${worker.http}/v1/rooms/sse-cap/events?token=${token("sam")}`);
  assert.equal(second.status, 429);
  assert.equal(second.body.error.code, "too_many_connections");
  const refused = await open(`${worker.ws}/v1/rooms/sse-cap/ws?token=${token("sam")}`).catch((e) => e);
  assert.equal(refused.status, 429, "a socket over the limit too");
  first.close();
  // A stream whose client left is noticed when a write to it fails: at the next keepalive.
  await sleep(1500);
  const again = await openEvents(`${worker.http}/v1/rooms/sse-cap/events?token=${token("sam")}`);
  assert.equal(again.status, 200, "a closed stream frees its place");
  again.close();
  await socket.close();
});

test("open event streams get a keepalive comment every SSE_KEEPALIVE_MS", async () => {
  const stream = await rawStream(`${worker.http}/v1/rooms/sse-ka/events?token=${token("kim")}`);
  await sleep(1800);
  const count = stream.text.split(": keepalive\n\n").length - 1;
  assert.ok(count >= 2 && count <= 4, `${count} keepalives in 1.8 s at 500 ms`);
  stream.close();
});

test("an event stream whose client does not keep up is ended instead of buffered without bound", async () => {
  const { connect } = await import("node:net");
  const url = new URL(`${worker.http}/v1/rooms/sse-slow/events?token=${token("sloth")}`);
  const sock = connect(Number(url.port), url.hostname);
  await new Promise((resolve) => sock.once("connect", resolve));
  sock.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\n\r\n`);
  sock.pause(); // never read: the kernel's buffers fill, then the room's
  await sleep(200);
  assert.equal((await stats("sse-slow")).streams, 1);
  const data = "y".repeat(60_000);
  let published = 0;
  while (published < 400 && (await stats("sse-slow")).streams === 1) {
    for (let i = 0; i < 10; i++) assert.equal((await publish("sse-slow", { text: "big", data })).status, 200);
    published += 10;
  }
  assert.equal((await stats("sse-slow")).streams, 0, `still open after ${published} messages of 60 KB`);
  console.log(`# slow stream ended after ${published} messages of 60 KB`);
  sock.destroy();
  const reader = await openEvents(`${worker.http}/v1/rooms/sse-slow/events?token=${token("fast")}`);
  assert.equal((await reader.next("room:state")).data.seq, published, "the room goes on");
  reader.close();
});
