// App servers and clients without WebSockets: server publish, HTTP history, and the SSE fallback.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join, token, openEvents, SERVER_KEY } from "./harness.mjs";

let worker;
before(async () => (worker = await startWorker({ preventEviction: true })));
after(() => worker?.close());

const publish = (room, body, headers = {}) =>
  fetch(`${worker.http}/v1/rooms/${room}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${SERVER_KEY}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

test("server publish persists, broadcasts, and a retried Idempotency-Key delivers once", async () => {
  const alice = await join(worker, "pub-1", "alice");
  const res = await publish("pub-1", { text: "deploy finished", data: { build: 7 } }, { "idempotency-key": "deploy-7" });
  assert.equal(res.status, 200);
  const ack = await res.json();
  assert.deepEqual([ack.seq, ack.id], [1, "deploy-7"]);
  const got = await alice.next("message:receive");
  assert.deepEqual(got.d, { room: "pub-1", seq: 1, id: "deploy-7", user: "system", text: "deploy finished", data: { build: 7 }, ts: ack.ts, server: true });

  const retry = await (await publish("pub-1", { text: "deploy finished" }, { "idempotency-key": "deploy-7" })).json();
  assert.deepEqual([retry.seq, retry.duplicate], [1, true]);
  const asBot = await (await publish("pub-1", { text: "beep", user: "bot" })).json();
  assert.equal(asBot.seq, 2);
  assert.equal((await alice.next("message:receive")).d.user, "bot");
  assert.equal(alice.frames.filter((f) => f.t === "message:receive").length, 0, "the retry broadcast nothing");
  await alice.close();
});

test("publish refuses wrong keys and bad bodies; a user token publishes as its user", async () => {
  assert.equal((await publish("pub-2", { text: "x" }, { authorization: "Bearer wrong" })).status, 401);
  assert.equal((await publish("pub-2", { text: "x" }, { authorization: "" })).status, 401);
  for (const body of ["not json", { data: 1 }, { text: 5 }, { text: "x", user: "bad user" }, { text: "" }]) {
    const res = await publish("pub-2", body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal((await res.json()).error.code, "bad_request");
  }
  const asUser = await publish("pub-2", { text: "from http", user: "someone-else" }, { authorization: `Bearer ${token("carol")}` });
  assert.equal(asUser.status, 200);
  const history = await (await fetch(`${worker.http}/v1/rooms/pub-2/messages?token=${token("carol")}`)).json();
  assert.deepEqual(history.messages.map((m) => [m.user, m.text]), [["carol", "from http"]]);
  const readOnly = token("reader", { extra: { cap: { "room:pub-2": ["join"] } } });
  assert.equal((await publish("pub-2", { text: "no" }, { authorization: `Bearer ${readOnly}` })).status, 403);
});

test("HTTP history pages with before and limit, and needs a user token", async () => {
  for (let i = 1; i <= 4; i++) await publish("hist-1", { text: `h${i}` });
  const page = await fetch(`${worker.http}/v1/rooms/hist-1/messages?before=4&limit=2`, {
    headers: { authorization: `Bearer ${token("dave")}` },
  });
  assert.equal(page.status, 200);
  assert.deepEqual((await page.json()).messages.map((m) => m.seq), [2, 3]);
  assert.equal((await fetch(`${worker.http}/v1/rooms/hist-1/messages`)).status, 401);
  assert.equal((await fetch(`${worker.http}/v1/rooms/hist-1/messages?limit=x&token=${token("dave")}`)).status, 400);
});

test("the SSE fallback streams a message sent over a socket, and resumes from Last-Event-ID", async () => {
  const events = await openEvents(`${worker.http}/v1/rooms/sse-1/events?token=${token("eve")}`);
  assert.equal(events.status, 200);
  assert.match(events.headers.get("content-type"), /text\/event-stream/);
  const state = await events.next("room:state");
  assert.equal(state.data.seq, 0);

  const alice = await join(worker, "sse-1", "alice");
  await alice.request("message:send", { text: "hello sse" });
  const got = await events.next("message:receive");
  assert.equal(got.data.text, "hello sse");
  assert.equal(got.id, `${state.data.epoch}:1`);
  events.close();

  await alice.request("message:send", { text: "missed 1" });
  await alice.request("message:send", { text: "missed 2" });
  const resumed = await openEvents(`${worker.http}/v1/rooms/sse-1/events?token=${token("eve")}`, { "last-event-id": got.id });
  assert.deepEqual([(await resumed.next("message:receive")).data.text, (await resumed.next("message:receive")).data.text], ["missed 1", "missed 2"]);
  assert.equal((await resumed.next("room:state")).data.recovered, true);
  resumed.close();

  const refused = await openEvents(`${worker.http}/v1/rooms/sse-1/events`);
  assert.equal(refused.status, 401);
  await alice.close();
});
