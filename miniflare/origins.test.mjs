// Origins, CORS and request-body limits in workerd: a browser page from a foreign origin is
// refused with 403 before anything else is looked at, allowed pages get CORS headers on every
// HTTP answer (errors and the event stream included), and oversize bodies are refused with 413
// without being read whole.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import WebSocket from "ws";
import { startWorker, open, token, openEvents, SERVER_KEY } from "./harness.mjs";

const APP = "https://app.example";
const LOCAL = "http://localhost:3000";
const EVIL = "https://evil.example";
const CORS_HEADERS = ["authorization", "content-type", "idempotency-key", "last-event-id"];

/** Opens a socket expecting a refusal; resolves with `{status, body}`. */
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

/** Opens a socket from `origin` and resolves with the client and the 101's headers. */
function openFrom(url, origin, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers: origin ? { origin } : {} });
    let upgrade;
    ws.once("upgrade", (res) => (upgrade = res.headers));
    ws.once("open", () => resolve({ ws, headers: upgrade }));
    ws.once("unexpected-response", (_req, res) => reject(new Error(`refused with ${res.statusCode}`)));
    ws.once("error", reject);
  });
}

async function fetchFrom(worker, origin, path, init = {}) {
  const headers = { ...(origin ? { origin } : {}), ...(init.headers ?? {}) };
  const res = await fetch(`${worker.http}${path}`, { ...init, headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** POSTs `chunks` (chunked transfer encoding when more than one) on a connection of its own. */
function postFresh(worker, path, headers, chunks) {
  const url = new URL(path, worker.http);
  return new Promise((resolve, reject) => {
    const one = chunks.length === 1 ? { "content-length": String(Buffer.byteLength(chunks[0])) } : {};
    const req = httpRequest(url, { method: "POST", agent: false, headers: { ...headers, ...one } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on("error", reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

function assertCors(res, origin, what) {
  assert.equal(res.headers.get("access-control-allow-origin"), origin, what);
  assert.equal(res.headers.get("access-control-expose-headers"), "Retry-After", what);
  assert.match(res.headers.get("vary") ?? "", /Origin/, what);
}

const roomWs = (worker, room, jwt) => `${worker.ws}/v1/rooms/${room}/ws?token=${jwt}`;

describe("ALLOWED_ORIGINS with listed origins", () => {
  let worker;
  before(async () => (worker = await startWorker({ vars: { ALLOWED_ORIGINS: `${APP}/, ${LOCAL}` } })));
  after(() => worker?.close());

  test("a foreign origin's WebSocket upgrade is 403 before its token is looked at", async () => {
    const routes = ["/v1/rooms/origin-room/ws", "/v1/users/me/ws", "/v1/docs/origin-doc/ws"];
    for (const route of routes) {
      for (const query of ["", "?token=not-a-jwt", `?token=${token("alice")}`]) {
        const e = await refused(`${worker.ws}${route}${query}`, { headers: { origin: EVIL } });
        assert.equal(e.status, 403, `${route}${query}`);
        assert.equal(e.body.error.code, "forbidden");
        assert.match(e.body.error.message, /evil\.example/);
      }
    }
    // Even a bad id or a missing upgrade header: the origin comes first.
    const badId = await fetchFrom(worker, EVIL, "/v1/rooms/bad%20id/ws");
    assert.equal(badId.status, 403);
  });

  test("an origin refusal stays HTTP 403 with the switchboard.v1 subprotocol", async () => {
    const e = await refused(`${worker.ws}/v1/rooms/origin-room/ws`, {
      protocols: ["switchboard.v1", `bearer.${token("alice")}`],
      headers: { origin: EVIL },
    });
    assert.equal(e.status, 403);
    assert.equal(e.body.error.code, "forbidden");
  });

  test("a foreign origin's HTTP request is 403 without CORS headers, preflight and healthz included", async () => {
    const calls = [
      ["GET", "/healthz"],
      ["GET", `/v1/docs/origin-doc?token=${token("alice")}`],
      ["POST", "/v1/notify"],
      ["POST", "/v1/rooms/origin-room/messages"],
      ["GET", "/v1/rooms/origin-room/events"],
      ["OPTIONS", "/v1/notify"],
      ["DELETE", "/v1/notify"],
    ];
    for (const [method, path] of calls) {
      const res = await fetchFrom(worker, EVIL, path, {
        method,
        headers: { authorization: `Bearer ${SERVER_KEY}` },
      });
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body.error.code, "forbidden");
      assert.equal(res.headers.get("access-control-allow-origin"), null);
    }
    for (const origin of ["null", "garbage", `${APP}.evil.example`, "http://app.example", `${APP}:8443`]) {
      assert.equal((await fetchFrom(worker, origin, "/healthz")).status, 403, origin);
    }
  });

  test("an unknown route is 404 before the origin is checked", async () => {
    const foreign = await fetchFrom(worker, EVIL, "/nope");
    assert.equal(foreign.status, 404);
    assert.equal(foreign.body.error.code, "not_found");
    const listed = await fetchFrom(worker, APP, "/v1/rooms/x");
    assert.equal(listed.status, 404);
    assertCors(listed, APP, "404 to a listed origin");
  });

  test("a listed origin opens sockets; the 101 carries no CORS headers", async () => {
    for (const origin of [APP, LOCAL, "HTTPS://APP.EXAMPLE:443"]) {
      const { ws, headers } = await openFrom(roomWs(worker, "origin-room", token("alice")), origin);
      assert.equal(headers["access-control-allow-origin"], undefined);
      ws.close();
    }
    const { ws } = await openFrom(`${worker.ws}/v1/users/me/ws?token=${token("alice")}`, APP);
    ws.close();
  });

  test("the Worker's own origin is allowed without being listed", async () => {
    const own = await fetchFrom(worker, worker.http, "/healthz");
    assert.equal(own.status, 200);
    assertCors(own, worker.http, "own origin");
    const { ws } = await openFrom(roomWs(worker, "origin-room", token("alice")), worker.http);
    ws.close();
  });

  test("requests without an Origin are not checked and get no CORS headers", async () => {
    const res = await fetchFrom(worker, null, "/healthz");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    assert.match(res.headers.get("vary") ?? "", /Origin/);
    const { ws } = await openFrom(roomWs(worker, "origin-room", token("alice")), null);
    ws.close();
  });

  test("an OPTIONS preflight on every route family is 204 with the CORS headers, before 405 and 400", async () => {
    const families = {
      "/healthz": ["GET"],
      "/v1/rooms/origin-room/messages": ["GET", "POST"],
      "/v1/rooms/origin-room/events": ["GET"],
      "/v1/rooms/origin-room/stats": ["GET"],
      "/v1/rooms/origin-room/ws": ["GET"],
      "/v1/rooms/bad%20id/messages": ["GET", "POST"],
      "/v1/users/me/notifications": ["GET"],
      "/v1/users/me/notifications/read": ["POST"],
      "/v1/users/alice/stats": ["GET"],
      "/v1/notify": ["POST"],
      "/v1/docs/origin-doc": ["GET"],
      "/v1/docs/origin-doc/stats": ["GET"],
    };
    for (const [path, methods] of Object.entries(families)) {
      const res = await fetchFrom(worker, APP, path, {
        method: "OPTIONS",
        headers: {
          "access-control-request-method": methods.at(-1),
          "access-control-request-headers": "authorization, content-type",
        },
      });
      assert.equal(res.status, 204, path);
      assert.equal(res.headers.get("access-control-allow-origin"), APP, path);
      const allowMethods = res.headers.get("access-control-allow-methods") ?? "";
      for (const m of methods) assert.ok(allowMethods.includes(m), `${path}: ${allowMethods}`);
      const allowHeaders = res.headers.get("access-control-allow-headers") ?? "";
      for (const h of CORS_HEADERS) assert.ok(allowHeaders.includes(h), `${path}: ${allowHeaders}`);
      assert.ok(Number(res.headers.get("access-control-max-age")) > 0, path);
      assert.match(res.headers.get("vary") ?? "", /Origin/, path);
    }
    const unknown = await fetchFrom(worker, APP, "/v1/nope", { method: "OPTIONS" });
    assert.equal(unknown.status, 404);
  });

  test("an OPTIONS without Origin is 204 with Allow and no CORS headers", async () => {
    const res = await fetchFrom(worker, null, "/v1/rooms/origin-room/messages", { method: "OPTIONS" });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("allow"), "GET, POST, OPTIONS");
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });

  test("a wrong method from a listed origin is 405 with CORS headers", async () => {
    const res = await fetchFrom(worker, APP, "/v1/notify", { method: "DELETE" });
    assert.equal(res.status, 405);
    assert.equal(res.body.error.code, "method_not_allowed");
    assertCors(res, APP, "405");
    // A method the runtime's Request type does not name is not served as GET.
    const odd = await fetchFrom(worker, null, "/healthz", { method: "PROPFIND" });
    assert.equal(odd.status, 405);
  });

  test("JSON answers, forwarded ones and errors carry Access-Control-Allow-Origin", async () => {
    const health = await fetchFrom(worker, APP, "/healthz");
    assert.equal(health.status, 200);
    assertCors(health, APP, "healthz");

    const doc = await fetchFrom(worker, APP, `/v1/docs/origin-doc?token=${token("alice")}`);
    assert.equal(doc.status, 200);
    assert.equal(doc.body.v, 0);
    assertCors(doc, APP, "forwarded document snapshot");

    const published = await fetchFrom(worker, LOCAL, "/v1/rooms/origin-room/messages", {
      method: "POST",
      headers: { authorization: `Bearer ${SERVER_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ text: "from a page" }),
    });
    assert.equal(published.status, 200);
    assert.ok(published.body.seq >= 1);
    assertCors(published, LOCAL, "forwarded publish");

    const unauthorized = await fetchFrom(worker, APP, "/v1/docs/origin-doc");
    assert.equal(unauthorized.status, 401);
    assert.equal(unauthorized.body.error.code, "unauthorized");
    assert.equal(unauthorized.headers.get("content-type"), "application/json");
    assertCors(unauthorized, APP, "401");

    const badRequest = await fetchFrom(worker, APP, `/v1/rooms/origin-room/messages?token=${token("alice")}&limit=x`);
    assert.equal(badRequest.status, 400);
    assertCors(badRequest, APP, "400");
  });

  test("the event stream carries Access-Control-Allow-Origin and still streams", async () => {
    const stream = await openEvents(`${worker.http}/v1/rooms/origin-sse/events?token=${token("alice")}`, {
      origin: APP,
    });
    try {
      assert.equal(stream.status, 200);
      assert.match(stream.headers.get("content-type"), /text\/event-stream/);
      assertCors(stream, APP, "SSE");
      await stream.next("room:state");
      const res = await fetchFrom(worker, null, "/v1/rooms/origin-sse/messages", {
        method: "POST",
        headers: { authorization: `Bearer ${SERVER_KEY}` },
        body: JSON.stringify({ text: "streamed" }),
      });
      assert.equal(res.status, 200);
      const event = await stream.next("message:receive");
      assert.equal(event.data.text, "streamed");
    } finally {
      stream.close();
    }
  });
});

describe("ALLOWED_ORIGINS empty (the wrangler.toml default)", () => {
  let worker;
  before(async () => (worker = await startWorker({ vars: { ALLOWED_ORIGINS: "" } })));
  after(() => worker?.close());

  test("only the Worker's own origin is allowed; no Origin is not checked", async () => {
    const own = await fetchFrom(worker, worker.http, "/healthz");
    assert.equal(own.status, 200);
    assertCors(own, worker.http, "own");
    const ownWs = await openFrom(roomWs(worker, "own-room", token("alice")), worker.http);
    ownWs.ws.close();

    const foreign = await fetchFrom(worker, APP, "/healthz");
    assert.equal(foreign.status, 403);
    const e = await refused(roomWs(worker, "own-room", token("alice")), { headers: { origin: APP } });
    assert.equal(e.status, 403);
    // Same host, another port: another origin.
    const port = Number(new URL(worker.http).port);
    assert.equal((await fetchFrom(worker, `http://127.0.0.1:${port + 1}`, "/healthz")).status, 403);

    assert.equal((await fetchFrom(worker, null, "/healthz")).status, 200);
    const plain = await openFrom(roomWs(worker, "own-room", token("alice")), null);
    plain.ws.close();
  });
});

describe("ALLOWED_ORIGINS=* (the dev configuration)", () => {
  let worker;
  before(async () => (worker = await startWorker({ vars: { ALLOWED_ORIGINS: "*" } })));
  after(() => worker?.close());

  test("any origin is allowed and echoed", async () => {
    for (const origin of [EVIL, "null", "http://localhost:5173"]) {
      const res = await fetchFrom(worker, origin, "/healthz");
      assert.equal(res.status, 200, origin);
      assertCors(res, origin, origin);
    }
    const { ws } = await openFrom(roomWs(worker, "any-room", token("alice")), EVIL);
    ws.close();
  });
});

/**
 * POSTs to `path` with raw node:http, writing `chunk` every few ms and never ending the body:
 * a response can only come from a server that stopped reading. Resolves with `{status, body}`.
 */
function postWithoutEnding(worker, path, { headers = {}, chunk, chunks }) {
  const url = new URL(`${worker.http}${path}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => {
          clearInterval(timer);
          req.destroy();
          resolve({ status: res.statusCode, body: body ? JSON.parse(body) : null });
        });
      },
    );
    req.on("error", (e) => {
      clearInterval(timer);
      reject(e);
    });
    let sent = 0;
    const timer = setInterval(() => {
      if (sent++ < chunks) req.write(chunk);
    }, 5);
  });
}

describe("request bodies over the limit", () => {
  let worker;
  before(async () => (worker = await startWorker()));
  after(() => worker?.close());
  const server = { authorization: `Bearer ${SERVER_KEY}`, "content-type": "application/json" };

  test("a POST declaring a body over the limit is 413 before the body is sent", async () => {
    // notify takes 256 KiB, publish MAX_FRAME_BYTES (64 KiB): declare 10 MB, send only 1 KiB.
    for (const path of ["/v1/notify", "/v1/rooms/body-room/messages"]) {
      const res = await postWithoutEnding(worker, path, {
        headers: { ...server, "content-length": String(10_000_000) },
        chunk: "x".repeat(1024),
        chunks: 1,
      });
      assert.equal(res.status, 413, path);
      assert.equal(res.body.error.code, "too_large");
    }
  });

  test("a chunked POST without Content-Length is cut off at the limit", async () => {
    // 16 KiB chunks, never ended: 20 of them pass notify's 256 KiB, 5 pass publish's 64 KiB.
    for (const [path, chunks] of [["/v1/notify", 20], ["/v1/rooms/body-room/messages", 5]]) {
      const res = await postWithoutEnding(worker, path, {
        headers: { ...server, "transfer-encoding": "chunked" },
        chunk: "x".repeat(16 * 1024),
        chunks,
      });
      assert.equal(res.status, 413, path);
      assert.equal(res.body.error.code, "too_large");
    }
  });

  test("a whole oversize body sent with fetch is 413, and a body at the limit still works", async () => {
    for (const path of ["/v1/notify", "/v1/rooms/body-room/messages"]) {
      const res = await fetchFrom(worker, null, path, {
        method: "POST",
        headers: server,
        body: JSON.stringify({ text: "x".repeat(300 * 1024) }),
      });
      assert.equal(res.status, 413, path);
      assert.equal(res.body.error.code, "too_large");
    }
    // On fresh connections: the server closes one whose oversize body it did not read, and
    // fetch may reuse it from its pool before it sees the close ("fetch failed").
    const ok = await postFresh(worker, "/v1/rooms/body-room/messages", server, [
      JSON.stringify({ text: "é".repeat(3000) }),
    ]);
    assert.equal(ok.status, 200);
    const body = JSON.stringify({ text: "chunked" });
    const chunked = await postFresh(worker, "/v1/rooms/body-room/messages", server, [body.slice(0, 10), body.slice(10)]);
    assert.equal(chunked.status, 200);
  });
});
