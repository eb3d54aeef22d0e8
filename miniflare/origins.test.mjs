// Request-body limits in workerd: oversize bodies are refused with 413 without being read whole.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { startWorker, SERVER_KEY } from "./harness.mjs";

async function fetchFrom(worker, origin, path, init = {}) {
  const headers = { ...(origin ? { origin } : {}), ...(init.headers ?? {}) };
  const res = await fetch(`${worker.http}${path}`, { ...init, headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

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
    const ok = await fetchFrom(worker, null, "/v1/rooms/body-room/messages", {
      method: "POST",
      headers: server,
      body: JSON.stringify({ text: "é".repeat(3000) }),
    });
    assert.equal(ok.status, 200);
    const chunked = await fetchFrom(worker, null, "/v1/rooms/body-room/messages", {
      method: "POST",
      headers: server,
      body: new Blob([JSON.stringify({ text: "chunked" })]).stream(),
      duplex: "half",
    });
    assert.equal(chunked.status, 200);
  });
});
