// The demo page in a real browser, as users run it: the built worker with its static assets
// (miniflare/harness.mjs, as `npm run dev` serves them), two browser contexts signed in as two
// users, each behind its own TCP proxy that the test can cut. setOffline alone would leave open
// WebSockets up; closing every proxied connection (and refusing new ones) cuts them for real.
//
// The steps share the two pages and run in order: sign-in, presence, chat with typing, the
// notification bell, co-editing, then a cut during which the other user sends. A screenshot of
// each page is kept in artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { startWorker, SERVER_KEY } from "../miniflare/harness.mjs";
import { launch, ARTIFACTS } from "./harness.mjs";

/**
 * Quick reconnects, and no event-stream fallback: the cut must end in a WebSocket reconnect. The
 * values are at or above the SDK's floors (reconnectDelayMaxMs at least 1,000, heartbeat and pong
 * timeout at least 1,000), which it would raise them to anyway.
 */
const SDK = "reconnectDelayMs=100&reconnectDelayMaxMs=1000&fallbackAfter=0&heartbeatMs=2000&pongTimeoutMs=2000";
const WAIT = 10_000;

/**
 * A TCP proxy on 127.0.0.1 in front of `port`. `cut()` resets every connection through it and
 * turns new ones away until `restore()`.
 */
async function startProxy(port) {
  const pairs = new Set();
  const proxy = { cut: false, connections: 0 };
  const server = net.createServer((down) => {
    if (proxy.cut) return down.resetAndDestroy();
    proxy.connections++;
    const up = net.connect(port, "127.0.0.1");
    const pair = [down, up];
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    const end = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    for (const s of pair) s.on("close", end).on("error", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.sever = () => {
    proxy.cut = true;
    for (const [down, up] of pairs) {
      down.resetAndDestroy();
      up.destroy();
    }
    pairs.clear();
  };
  proxy.restore = () => (proxy.cut = false);
  proxy.close = () => {
    proxy.sever();
    return new Promise((r) => server.close(r));
  };
  return proxy;
}

let worker;
let browser;
const users = {};

/** Opens the demo for `name` in a fresh browser context behind its own proxy, and signs in. */
async function signIn(name) {
  const proxy = await startProxy(Number(new URL(worker.http).port));
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${proxy.url}/?room=general&${SDK}`);
  await page.fill("#signin-name", name);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector("#connection[data-status=open]", { timeout: WAIT });
  users[name] = { proxy, context, page, errors };
  return users[name];
}

/** The texts of the messages `page` lists, in order. */
const texts = (page) => page.$$eval("#messages li .text", (els) => els.map((e) => e.textContent));
const count = (list, text) => list.filter((t) => t === text).length;

/** Waits until `page` lists a stored (not pending) message with exactly `text`. */
function waitForMessage(page, text) {
  return page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li:not(.pending) .text")].some((e) => e.textContent === t),
    text,
    { timeout: WAIT },
  );
}

async function send(page, text) {
  await page.fill("#composer", text);
  await page.press("#composer", "Enter");
}

const sharedText = (page) => page.$eval("#shared-text", (ta) => ta.value);

before(async () => {
  worker = await startWorker();
  browser = await launch();
  await signIn("alice");
  await signIn("bob");
});

after(async () => {
  for (const [name, { page }] of Object.entries(users)) {
    await page.screenshot({ path: join(ARTIFACTS, `demo-${name}.png`) }).catch(() => {});
  }
  await browser?.close();
  for (const { proxy } of Object.values(users)) await proxy.close();
  await worker?.close();
});

test("both users are in the room and see each other's presence, status changes included", async () => {
  const { alice, bob } = users;
  await alice.page.waitForSelector("#members li[data-user=bob]", { timeout: WAIT });
  await bob.page.waitForSelector("#members li[data-user=alice]", { timeout: WAIT });
  await alice.page.waitForSelector("#people li[data-user=bob][data-status=online]", { timeout: WAIT });
  await bob.page.waitForSelector("#people li[data-user=alice][data-status=online]", { timeout: WAIT });
  await alice.page.selectOption("#my-status", "busy");
  await bob.page.waitForSelector("#people li[data-user=alice][data-status=busy]", { timeout: WAIT });
  await alice.page.selectOption("#my-status", "online");
  await bob.page.waitForSelector("#people li[data-user=alice][data-status=online]", { timeout: WAIT });
});

test("chat: the other sees the typing indicator, then the message; replies come back", async () => {
  const { alice, bob } = users;
  await alice.page.fill("#composer", "hello bo");
  await bob.page.waitForSelector('#typing[data-users="alice"]', { timeout: WAIT });
  assert.match(await bob.page.textContent("#typing"), /alice is typing/);
  await alice.page.fill("#composer", "hello bob");
  await alice.page.press("#composer", "Enter");
  await waitForMessage(bob.page, "hello bob");
  // Sending stops typing at once (not after the server's typing timeout).
  await bob.page.waitForSelector('#typing[data-users=""]', { timeout: WAIT });
  await send(bob.page, "hi alice");
  await waitForMessage(alice.page, "hi alice");
  await waitForMessage(alice.page, "hello bob");
  assert.deepEqual(await texts(alice.page), ["hello bob", "hi alice"]);
  assert.deepEqual(await texts(bob.page), ["hello bob", "hi alice"]);
});

test("a /v1/notify call lights the bell with the unread count; marking read clears it", async () => {
  const { bob } = users;
  const notify = (title) =>
    fetch(`${worker.http}/v1/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${SERVER_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ users: ["bob"], notification: { type: "mention", title } }),
    });
  assert.equal((await notify("alice mentioned you")).status, 202);
  await bob.page.waitForSelector('#bell.lit #unread[data-count="1"]', { timeout: WAIT });
  assert.equal((await notify("a second one")).status, 202);
  await bob.page.waitForSelector('#unread[data-count="2"]', { timeout: WAIT });
  await bob.page.click("#bell");
  await bob.page.waitForSelector("#notifications li.unread >> text=alice mentioned you", { timeout: WAIT });
  await bob.page.screenshot({ path: join(ARTIFACTS, "demo-bell.png") });
  await bob.page.click("#notifications >> text=Mark all read");
  await bob.page.waitForSelector("#unread", { state: "detached", timeout: WAIT });
  await bob.page.click("#bell");
});

test("co-editing the shared text converges, with the other's cursor shown", async () => {
  const { alice, bob } = users;
  await alice.page.click("#shared-text");
  await alice.page.keyboard.type("Notes\n");
  await bob.page.waitForFunction(() => document.querySelector("#shared-text").value === "Notes\n", null, { timeout: WAIT });
  // Both type at once, alice at the start and bob at the end.
  await bob.page.click("#shared-text");
  await bob.page.keyboard.press("Control+End");
  await alice.page.keyboard.press("Control+Home");
  await Promise.all([alice.page.keyboard.type("by alice, ", { delay: 15 }), bob.page.keyboard.type("bob was here", { delay: 15 })]);
  const expected = "by alice, Notes\nbob was here";
  for (const { page } of [alice, bob]) {
    await page.waitForFunction((t) => document.querySelector("#shared-text").value === t, expected, { timeout: WAIT });
  }
  assert.equal(await sharedText(alice.page), await sharedText(bob.page));
  // Each sees the other's caret drawn in the text.
  await alice.page.waitForSelector("#doc .caret[data-user=bob]", { timeout: WAIT });
  await bob.page.waitForSelector("#doc .caret[data-user=alice]", { timeout: WAIT });
  await alice.page.screenshot({ path: join(ARTIFACTS, "demo-coedit.png") });
});

test("a cut connection reconnects; every message arrives once on both sides", async () => {
  const { alice, bob } = users;
  const statusesBefore = (await alice.page.evaluate(() => window.demo.statuses)).length;
  alice.proxy.sever();
  await alice.page.waitForFunction(() => window.demo.client.status !== "open", null, { timeout: WAIT });
  // Bob talks while alice is cut off; alice writes too (her messages wait in the outbox).
  for (const text of ["while you were out 1", "while you were out 2", "while you were out 3"]) await send(bob.page, text);
  for (const text of ["alice offline 1", "alice offline 2"]) await send(alice.page, text);
  await alice.page.waitForFunction(() => document.querySelectorAll("#messages li.pending").length === 2, null, { timeout: WAIT });
  assert.equal(count(await texts(alice.page), "while you were out 1"), 0, "the cut page received nothing");
  alice.proxy.restore();
  await alice.page.waitForFunction(() => window.demo.client.status === "open", null, { timeout: WAIT });
  const statuses = (await alice.page.evaluate(() => window.demo.statuses)).slice(statusesBefore - 1);
  assert.ok(statuses.includes("reconnecting"), `went through reconnecting: ${statuses.join(" → ")}`);
  assert.equal(statuses.at(-1), "open");

  for (const text of ["while you were out 1", "while you were out 2", "while you were out 3"]) await waitForMessage(alice.page, text);
  for (const text of ["alice offline 1", "alice offline 2"]) {
    await waitForMessage(bob.page, text);
    await waitForMessage(alice.page, text);
  }
  const expected = ["hello bob", "hi alice", "while you were out 1", "while you were out 2", "while you were out 3", "alice offline 1", "alice offline 2"];
  assert.deepEqual(await texts(alice.page), expected, "alice has every message once, in order");
  assert.deepEqual(await texts(bob.page), expected, "bob has alice's offline messages once");
  // Still live both ways after the reconnect.
  await send(bob.page, "welcome back");
  await waitForMessage(alice.page, "welcome back");
  assert.ok(alice.proxy.connections > 3, "alice's page connected again through the proxy");
});

test("a reloaded page is still signed in and shows the room's history", async () => {
  const { bob } = users;
  const before = await texts(bob.page);
  await bob.page.reload();
  await bob.page.waitForSelector("#connection[data-status=open]", { timeout: WAIT });
  await bob.page.waitForFunction((n) => document.querySelectorAll("#messages li").length === n, before.length, { timeout: WAIT });
  assert.deepEqual(await texts(bob.page), before);
  assert.equal(await bob.page.textContent("#me"), "bob");
});

test("no page threw", () => {
  for (const [name, { errors }] of Object.entries(users)) assert.deepEqual(errors, [], name);
});
