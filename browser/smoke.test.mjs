// The browser itself works: a page runs script, and its WebSocket reaches a local server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { WebSocketServer } from "ws";
import { launch } from "./harness.mjs";

test("chromium runs a page whose WebSocket echoes through a local server", async () => {
  const server = createServer((req, res) => res.end("<!doctype html><title>smoke</title>"));
  const wss = new WebSocketServer({ server });
  wss.on("connection", (ws) => ws.on("message", (m) => ws.send(`echo:${m}`)));
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    const echoed = await page.evaluate(
      (url) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.onopen = () => ws.send("hi");
          ws.onmessage = (e) => resolve(e.data);
          ws.onerror = () => reject(new Error("socket failed"));
        }),
      `ws://127.0.0.1:${port}/`,
    );
    assert.equal(echoed, "echo:hi");
  } finally {
    await browser.close();
    wss.close();
    server.close();
  }
});
