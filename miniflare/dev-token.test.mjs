// The demo page as static assets in front of the worker, and the dev-only token route: on where
// DEV_TOKENS is set (.dev.vars.example), a 404 like any unknown path where it is not (wrangler.toml).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, open, call } from "./harness.mjs";

let dev;
let prod;
before(async () => {
  dev = await startWorker({ preventEviction: true });
  prod = await startWorker({ preventEviction: true, vars: { DEV_TOKENS: "" } });
});
after(async () => {
  await dev?.close();
  await prod?.close();
});

const mint = (worker, body, headers = {}) =>
  call(worker, "POST", "/v1/dev/token", { body, auth: null, headers: { "content-type": "application/json", ...headers } });

test("the demo page is served at / from the assets, and everything else still reaches the worker", async () => {
  for (const worker of [dev, prod]) {
    const page = await fetch(`${worker.http}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /text\/html/);
    assert.match(await page.text(), /<title>Switchboard demo<\/title>/);
    const script = await fetch(`${worker.http}/app.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get("content-type"), /javascript/);
    assert.ok((await script.text()).length > 10_000, "the bundle holds the SDK and React");
    assert.deepEqual((await call(worker, "GET", "/healthz", { auth: null })).body.ok, true);
    const missing = await call(worker, "GET", "/no-such-page", { auth: null });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, "not_found");
  }
});

test("with DEV_TOKENS on, POST /v1/dev/token mints a short-lived token the worker accepts", async () => {
  const before = Date.now();
  const res = await mint(dev, { user: "alice" });
  assert.equal(res.status, 200);
  assert.equal(res.body.user, "alice");
  assert.ok(res.body.expires >= Math.floor(before / 1000) * 1000 + 900_000 - 1000, "15 minutes by default");
  assert.ok(res.body.expires <= Date.now() + 900_000);
  const room = await open(`${dev.ws}/v1/rooms/dev-token/ws`, { protocols: ["switchboard.v1", `bearer.${res.body.token}`] });
  const state = await room.next("room:state");
  assert.equal(state.d.user, "alice");
  await room.close();
  // A page (with an Origin) gets the CORS headers every route gets.
  const ttl = await mint(dev, { user: "bob", ttl: 60 }, { origin: "http://localhost:5173" });
  assert.equal(ttl.status, 200);
  assert.ok(ttl.body.expires <= Date.now() + 60_000);
  // A site elsewhere may not, though .dev.vars allows every origin on the other routes.
  const remote = await mint(dev, { user: "mallory" }, { origin: "https://evil.example" });
  assert.equal(remote.status, 403);
  assert.equal(remote.body.error.code, "forbidden");
});

test("with DEV_TOKENS on, bad requests are refused", async () => {
  for (const body of ["not json", {}, { user: "bad user" }, { user: "a", ttl: 5 }, { user: "a", ttl: 3601 }, { user: "a", cap: {} }]) {
    const res = await mint(dev, body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(res.body.error.code, "bad_request");
  }
  assert.equal((await call(dev, "GET", "/v1/dev/token", { auth: null })).status, 405);
  assert.equal((await mint(dev, JSON.stringify({ user: "a".repeat(2000) }))).status, 413);
});

test("with DEV_TOKENS off (wrangler.toml), the route is an unknown path: 404 for every method", async () => {
  const unknown = await call(prod, "POST", "/v1/dev/nothing", { auth: null });
  // POST with a body last: a 404 leaves the body unread, and the connection it came on may not
  // serve another request.
  for (const method of ["GET", "OPTIONS", "POST"]) {
    const res = await call(prod, method, "/v1/dev/token", { auth: null, body: method === "POST" ? { user: "alice" } : undefined });
    assert.equal(res.status, 404, method);
    assert.equal(res.body.error.code, unknown.body.error.code);
    assert.equal(res.body.error.message, "no route for /v1/dev/token");
  }
});
