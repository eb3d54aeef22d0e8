// Every upgrade is checked before it is accepted: routes, ids, upgrade header, tokens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, open, token, SECRET } from "./harness.mjs";
import { signHs256, b64url } from "./jwt.mjs";

let worker;
before(async () => (worker = await startWorker({ preventEviction: true })));
after(() => worker?.close());

const roomUrl = (room = "auth-room") => `${worker.ws}/v1/rooms/${room}/ws`;
const now = () => Math.floor(Date.now() / 1000);

async function refused(url, options) {
  try {
    const client = await open(url, options);
    client.close();
  } catch (e) {
    if (e.status) return e;
    throw e;
  }
  assert.fail("the upgrade was accepted");
}

test("healthz answers 200 with a version", async () => {
  const res = await fetch(`${worker.http}/healthz`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.ok, true);
  assert.match(body.version, /^\d+\.\d+\.\d+/);
});

test("unknown routes are 404 and wrong methods 405, as JSON errors", async () => {
  const res = await fetch(`${worker.http}/nope`);
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "not_found");
  const post = await fetch(`${worker.http}/v1/rooms/general/ws`, { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal((await post.json()).error.code, "method_not_allowed");
});

test("a bad room id is 400, even before the token is looked at", async () => {
  for (const room of ["bad%20id", "a%2Fb", "x".repeat(129)]) {
    const e = await refused(roomUrl(room));
    assert.equal(e.status, 400, room);
    assert.equal(e.body.error.code, "bad_request");
  }
});

test("a plain request to a socket route is 426", async () => {
  const res = await fetch(`${worker.http}/v1/rooms/general/ws?token=${token("alice")}`);
  assert.equal(res.status, 426);
  assert.equal((await res.json()).error.code, "upgrade_required");
});

test("every bad token is refused with 401 before the upgrade, without echoing it", async () => {
  const cases = {
    missing: null,
    malformed: "not-a-jwt",
    "wrong signature": token("alice", { secret: "another-secret" }),
    "alg none": `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ sub: "alice", exp: now() + 60 })}.`,
    "alg not allowed": token("alice", { header: { alg: "HS512", typ: "JWT" } }),
    expired: token("alice", { ttl: -10 }),
    "not yet valid": token("alice", { extra: { nbf: now() + 600 } }),
    "no exp": signHs256({ sub: "alice" }, SECRET),
    "no sub": signHs256({ exp: now() + 60 }, SECRET),
    "bad sub": token("al ice"),
  };
  for (const [name, jwt] of Object.entries(cases)) {
    const url = jwt ? `${roomUrl()}?token=${encodeURIComponent(jwt)}` : roomUrl();
    const e = await refused(url);
    assert.equal(e.status, 401, name);
    assert.equal(e.body.error.code, "unauthorized", name);
    if (jwt) assert.ok(!JSON.stringify(e.body).includes(jwt), `${name}: the error echoes the token`);
  }
  const scheme = await refused(roomUrl(), { headers: { authorization: `Basic ${token("alice")}` } });
  assert.equal(scheme.status, 401);
});

test("the token is accepted from the Authorization header, a subprotocol or the query", async () => {
  const byHeader = await open(roomUrl(), { headers: { authorization: `Bearer ${token("h-user")}` } });
  assert.equal((await byHeader.next("room:state")).d.user, "h-user");
  await byHeader.close();

  const byProtocol = await open(roomUrl(), { protocols: ["switchboard.v1", `bearer.${token("p-user")}`] });
  assert.equal(byProtocol.ws.protocol, "switchboard.v1");
  assert.equal((await byProtocol.next("room:state")).d.user, "p-user");
  await byProtocol.close();

  const byQuery = await open(`${roomUrl()}?token=${token("q-user")}`);
  assert.equal((await byQuery.next("room:state")).d.user, "q-user");
  await byQuery.close();
});

test("offering only the bearer subprotocol is 400 with a clear message", async () => {
  const e = await refused(roomUrl(), { protocols: [`bearer.${token("alice")}`] });
  assert.equal(e.status, 400);
  assert.match(e.body.error.message, /switchboard\.v1/);
});

test("aud and iss are enforced when configured", async () => {
  const strict = await startWorker({ vars: { JWT_AUDIENCE: "chat-app", JWT_ISSUER: "https://auth.example" } });
  try {
    const url = `${strict.ws}/v1/rooms/general/ws?token=`;
    const good = { aud: "chat-app", iss: "https://auth.example" };
    const client = await open(url + token("alice", { extra: good }));
    assert.equal((await client.next("room:state")).d.user, "alice");
    await client.close();
    const list = await open(url + token("alice", { extra: { ...good, aud: ["other", "chat-app"] } }));
    await list.close();
    for (const extra of [{}, { ...good, aud: "other" }, { ...good, iss: "https://evil.example" }]) {
      const e = await refused(url + token("alice", { extra }));
      assert.equal(e.status, 401, JSON.stringify(extra));
    }
  } finally {
    await strict.close();
  }
});

test("the stats route needs the server key", async () => {
  const res = await fetch(`${worker.http}/v1/rooms/general/stats`, { headers: { authorization: "Bearer wrong" } });
  assert.equal(res.status, 401);
  assert.equal((await fetch(`${worker.http}/v1/rooms/general/stats`)).status, 401);
});
