// Refusals a browser can see: with `switchboard.v1` offered, a refused token, capability or
// socket limit is an accepted socket closed at once with 4401 / 4403 / 4429 after an `error`
// frame; without it, the HTTP status as before. (Origin refusals stay HTTP 403: origins.test.mjs.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startWorker, open, token } from "./harness.mjs";

let worker;
before(async () => (worker = await startWorker({ vars: { MAX_SOCKETS_PER_USER: "2" }, preventEviction: true })));
after(() => worker?.close());

/** Opens with `switchboard.v1` and `bearer.<jwt>`; resolves with what the socket saw until it closed. */
function closedAtOnce(path, jwt) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${worker.ws}${path}`, ["switchboard.v1", `bearer.${jwt}`]);
    const frames = [];
    let opened = false;
    ws.on("open", () => (opened = true));
    ws.on("message", (data) => frames.push(JSON.parse(data.toString())));
    ws.on("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.on("error", () => {});
    ws.on("close", (code, reason) => resolve({ opened, protocol: ws.protocol, code, reason: reason.toString(), frames }));
  });
}

const ROUTES = ["/v1/rooms/refuse-room/ws", "/v1/users/me/ws", "/v1/docs/refuse-doc/ws"];

test("a bad token with switchboard.v1 offered: accepted, an error frame, then 4401 on every socket route", async () => {
  for (const path of ROUTES) {
    for (const jwt of ["not-a-jwt", token("alice", { ttl: -60 }), token("alice", { secret: "wrong" })]) {
      const seen = await closedAtOnce(path, jwt);
      assert.equal(seen.opened, true, path);
      assert.equal(seen.protocol, "switchboard.v1", "the subprotocol is echoed, so browsers accept the handshake");
      assert.equal(seen.code, 4401, path);
      assert.equal(seen.frames.length, 1);
      assert.equal(seen.frames[0].t, "error");
      assert.equal(seen.frames[0].error.code, "unauthorized");
      assert.ok(seen.reason.length > 0 && Buffer.byteLength(seen.reason) < 123);
      assert.ok(!seen.reason.includes(jwt), "the reason never carries the token");
    }
  }
});

test("a missing right with switchboard.v1 offered closes with 4403", async () => {
  const noJoin = token("bob", { extra: { cap: { "room:elsewhere": ["join", "send"] } } });
  const room = await closedAtOnce("/v1/rooms/refuse-room/ws", noJoin);
  assert.equal(room.code, 4403);
  assert.equal(room.frames[0].error.code, "forbidden");
  const noRead = token("bob", { extra: { cap: { "doc:elsewhere": ["read"] } } });
  const doc = await closedAtOnce("/v1/docs/refuse-doc/ws", noRead);
  assert.equal(doc.code, 4403);
});

test("over MAX_SOCKETS_PER_USER with switchboard.v1 offered closes with 4429; without it, HTTP 429", async () => {
  const held = [];
  for (let i = 0; i < 2; i++) held.push(await open(`${worker.ws}/v1/rooms/crowded/ws?token=${token("carol")}`));
  const seen = await closedAtOnce("/v1/rooms/crowded/ws", token("carol"));
  assert.equal(seen.code, 4429);
  assert.equal(seen.frames[0].error.code, "too_many_connections");
  const plain = await open(`${worker.ws}/v1/rooms/crowded/ws?token=${token("carol")}`).catch((e) => e);
  assert.equal(plain.status, 429);
  for (const c of held) await c.close();
});

test("without the subprotocol, and for other failures, the HTTP status stays", async () => {
  const noProtocol = await open(`${worker.ws}/v1/rooms/refuse-room/ws?token=not-a-jwt`).catch((e) => e);
  assert.equal(noProtocol.status, 401);
  // A bad `since` is a 400 even with the subprotocol: only token, right and limit become codes.
  const badSince = await open(`${worker.ws}/v1/rooms/refuse-room/ws?since=x`, {
    protocols: ["switchboard.v1", `bearer.${token("dave")}`],
  }).catch((e) => e);
  assert.equal(badSince.status, 400);
  // A good token with the subprotocol still connects normally.
  const ok = await open(`${worker.ws}/v1/rooms/refuse-room/ws`, { protocols: ["switchboard.v1", `bearer.${token("dave")}`] });
  assert.equal((await ok.next("room:state")).t, "room:state");
  await ok.close();
});
