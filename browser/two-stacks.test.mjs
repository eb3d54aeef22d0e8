// Same code, two stacks: one React chat app (browser/seed-app/, written the way apps built on
// socket.io-client are: a useSocket() hook and a ChatRoom that re-joins on every connect) runs in
// Chromium twice: bundled as it is, against a seed-shaped Socket.IO server (seed-server.mjs), and
// bundled with only its import line changed to "@switchboard/client/socket.io", against the built
// worker in workerd. One scenario drives both with two browser contexts (two users in one room):
// messages, typing, a real connection cut and the reconnect, a cut long enough to exhaust the
// app's reconnection attempts and its Reconnect button, and a third tab whose token is refused.
// What the app shows (and logs about its connection) must be the same. Bundles and screenshots
// go to artifacts/two-stacks/ (gitignored).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import net from "node:net";
import { mkdirSync, readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { launch, ARTIFACTS } from "./harness.mjs";
import { startWorker, token, SECRET } from "../miniflare/harness.mjs";
import { startSeedServer } from "./seed-server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const APP = join(here, "seed-app");
const OUT = join(ARTIFACTS, "two-stacks");
const ROOM = "two-stacks";
const ORIGINAL_IMPORT = 'import { io } from "socket.io-client";';
const SWITCHBOARD_IMPORT = 'import { io } from "@switchboard/client/socket.io";';
// Short reconnection delays through the app's own options (the seed's are 1,000 / 5,000 ms).
const ENV = { RECONNECTION_DELAY: 100, RECONNECTION_DELAY_MAX: 400 };

/** The SDK's dist/ is what `@switchboard/client/socket.io` resolves to: build it when stale. */
function ensureSdkBuilt() {
  const dist = join(root, "clients/js/dist/socket.io.js");
  const src = join(root, "clients/js/src");
  const newest = Math.max(...readdirSync(src).map((f) => statSync(join(src, f)).mtimeMs));
  if (!existsSync(dist) || statSync(dist).mtimeMs < newest) {
    execFileSync("npm", ["run", "build", "--workspace", "clients/js"], { cwd: root, stdio: "inherit" });
  }
}

/**
 * Bundles the app for the browser; for Switchboard, useSocket.js is loaded with its one import
 * line changed (and nothing else: the build fails if the line is not there exactly once).
 */
async function bundle(stack) {
  const plugins = [];
  if (stack === "switchboard") {
    plugins.push({
      name: "change-the-import",
      setup(build) {
        build.onLoad({ filter: /seed-app[\\/]useSocket\.js$/ }, (args) => {
          const source = readFileSync(args.path, "utf8");
          assert.equal(source.split(ORIGINAL_IMPORT).length, 2, "useSocket.js imports socket.io-client exactly once");
          return { contents: source.replace(ORIGINAL_IMPORT, SWITCHBOARD_IMPORT), loader: "js" };
        });
      },
    });
  }
  await esbuild.build({
    entryPoints: [join(APP, "main.jsx")],
    outfile: join(OUT, `${stack}.js`),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    // React's development build: StrictMode mounts, unmounts and mounts effects again, as in `vite dev`.
    define: { "process.env.NODE_ENV": '"development"' },
    sourcemap: "inline",
    logLevel: "warning",
    plugins,
  });
}

/** Serves the two bundles, each in a page whose host sets the app's env before it runs. */
async function startPageServer() {
  const server = createServer((req, res) => {
    const m = new URL(req.url, "http://x").pathname.match(/^\/(socketio|switchboard)(\.html|\.js)$/);
    // One request per connection: a proxy in front of it routes each connection by its first request.
    res.setHeader("connection", "close");
    if (!m) return res.writeHead(req.url === "/favicon.ico" ? 204 : 404).end();
    if (m[2] === ".js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(readFileSync(join(OUT, `${m[1]}.js`)));
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><meta charset="utf-8"><title>chat (${m[1]})</title><div id="root"></div><script type="module" src="/${m[1]}.js"></script>`);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

/**
 * A TCP proxy on 127.0.0.1 in front of the server at `port`, for one user: `sever()` resets every
 * connection (a dropped network), `refuse` turns new ones away. With `pagesPort`, a connection
 * whose first request asks for the app's page or bundle goes to the page server instead, so the
 * app is served from the same origin as its socket server (and the browser treats it as local).
 */
async function startProxy(port, { pagesPort } = {}) {
  const pairs = new Set();
  const server = net.createServer((down) => {
    if (proxy.refuse) return down.resetAndDestroy();
    let up = null;
    const end = () => {
      pairs.delete(pair);
      down.destroy();
      up?.destroy();
    };
    const pair = { reset: () => (down.resetAndDestroy(), up?.destroy()) };
    pairs.add(pair);
    down.on("error", end).on("close", end);
    down.once("data", (first) => {
      const page = pagesPort && /^GET \/(socketio|switchboard)\.(html|js) /.test(first.toString("latin1", 0, 64));
      up = net.connect(page ? pagesPort : port, "127.0.0.1");
      up.on("error", end).on("close", end);
      up.write(first);
      down.pipe(up);
      up.pipe(down);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    refuse: false,
    sever() {
      for (const pair of pairs) pair.reset();
      pairs.clear();
    },
    close() {
      proxy.sever();
      return new Promise((r) => server.close(r));
    },
  };
  return proxy;
}

let browser, pages, seed, worker;
const runs = {};

before(async () => {
  ensureSdkBuilt();
  mkdirSync(OUT, { recursive: true });
  [, , pages, seed, worker, browser] = await Promise.all([
    bundle("socketio"),
    bundle("switchboard"),
    startPageServer(),
    startSeedServer({ secret: SECRET }),
    startWorker(),
    launch(),
  ]);
});

after(async () => {
  await browser?.close();
  await Promise.all([pages?.close(), seed?.close(), worker?.close()]);
});

/** Polls `check` (may be async) until it returns truthy; fails with `what` after `ms`. */
async function until(check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * One user's tab: its own browser context, behind its own proxy to the server, so it can be cut
 * alone. `sameOrigin`: the page is served through the proxy, from the socket server's origin, and
 * the app calls `io("")`, as the seed's hook does without VITE_SOCKET_URL; otherwise it comes
 * from the page server and the app is given the server's URL.
 */
async function openUser(stack, port, user, { tokenOptions = {}, sameOrigin = false } = {}) {
  const proxy = await startProxy(port, { pagesPort: sameOrigin ? pages.port : undefined });
  const context = await browser.newContext();
  const env = { ...ENV, SOCKET_URL: sameOrigin ? "" : proxy.url, ROOM_ID: ROOM, USER_ID: user };
  const site = sameOrigin ? proxy.url : pages.url;
  // The app reads its token from localStorage, as the seed's hook does.
  await context.addInitScript(
    ({ env, token }) => {
      globalThis.__ENV__ = env;
      localStorage.setItem("accessToken", token);
    },
    { env, token: token(user, tokenOptions) },
  );
  const page = await context.newPage();
  const log = [];
  const problems = [];
  page.on("console", (msg) => {
    const text = msg.text();
    if (text.startsWith("socket: ")) log.push(text.slice(8));
    // The browser's own lines about failed connections (the cut) are not the app's errors.
    const network = /^WebSocket connection to .* failed|^Failed to load resource/.test(text);
    if (msg.type() === "error" && !text.startsWith("socket: ") && !network) problems.push(text);
  });
  page.on("pageerror", (err) => problems.push(String(err)));
  await page.goto(`${site}/${stack}.html`);
  const text = (id) => page.locator(`[data-testid=${id}]`).textContent();
  return {
    user,
    page,
    proxy,
    log,
    problems,
    status: () => text("status"),
    room: () => text("room"),
    typing: () => text("typing"),
    messages: () => page.$$eval("[data-testid=messages] li", (lis) => lis.map((li) => li.textContent)),
    input: page.locator("[data-testid=input]"),
    async send(message) {
      await this.input.fill(message);
      await this.input.press("Enter");
      await until(async () => (await this.messages()).includes(`${user}: ${message}`), `${user}'s own "${message}" (optimistic)`);
    },
    async close() {
      await context.close();
      await proxy.close();
    },
  };
}

const ready = async (tab) => (await tab.status()) === "connected" && (await tab.room()) === `in ${ROOM}`;
const has = (tab, line) => async () => (await tab.messages()).includes(line);

/** The app's console log with what depends on the stack's wording or on timing made alike. */
const normalized = (log) => log.map((l) => l.replace(/^connect_error \(.*\)$/, "connect_error"));

/**
 * The one scenario both stacks must pass, step by step, from what the app renders. Returns what
 * can be compared across stacks: the rendered message lists and the connection events.
 */
async function scenario(stack, port) {
  const [alice, bob, mallory] = await Promise.all([
    openUser(stack, port, "alice"),
    openUser(stack, port, "bob", { sameOrigin: true }),
    // A token the server refuses: socket.io's auth middleware error.
    openUser(stack, port, "mallory", { tokenOptions: { secret: "not-the-server-secret" } }),
  ]);
  try {
    await until(async () => (await ready(alice)) && (await ready(bob)), "both connected and in the room");

    // Messages, each shown once at the other side (and optimistically at the sender's).
    await alice.send("hi bob");
    await until(has(bob, "alice: hi bob"), "bob gets alice's message");
    await bob.send("hi alice");
    await until(has(alice, "bob: hi alice"), "alice gets bob's message");

    // Typing: bob types, alice sees it; bob clears the box, it clears. Nobody sees themselves.
    await bob.input.pressSequentially("typ");
    await until(async () => (await alice.typing()) === "bob typing…", "alice sees bob typing");
    assert.equal(await bob.typing(), "", "bob does not see himself typing");
    await bob.input.fill("");
    await until(async () => (await alice.typing()) === "", "bob's typing clears at alice");
    // Alice types and sends: bob sees her typing, then her message, and the typing ends.
    await alice.input.pressSequentially("typing then sending");
    await until(async () => (await bob.typing()) === "alice typing…", "bob sees alice typing");
    await alice.input.press("Enter");
    await until(has(bob, "alice: typing then sending"), "bob gets the typed message");
    await until(async () => (await bob.typing()) === "", "alice's typing clears at bob when she sends");

    // Reconnect: bob starts typing, then his connection is cut for real (every TCP connection
    // reset, new ones turned away until the app shows it is disconnected): his typing ends at
    // alice's; then he is let back in and the app reconnects by itself.
    await bob.input.pressSequentially("brb");
    await until(async () => (await alice.typing()) === "bob typing…", "alice sees bob typing before the cut");
    bob.proxy.refuse = true;
    bob.proxy.sever();
    await until(async () => (await bob.status()) === "disconnected", "bob's app shows disconnected");
    assert.equal(await bob.room(), "not in a room");
    await until(async () => (await alice.typing()) === "", "bob's typing ends at alice's when he is cut");
    bob.proxy.refuse = false;
    await until(() => ready(bob), "bob's app connected and in the room again");
    assert.equal(await alice.status(), "connected", "alice was not cut");

    // After the reconnect, messages flow both ways again. Bob speaks first: on both stacks his
    // re-join is then in place before alice answers.
    await bob.send("back again");
    await until(has(alice, "bob: back again"), "alice gets bob's message after his reconnect");
    await alice.send("welcome back");
    await until(has(bob, "alice: welcome back"), "bob gets alice's message after his reconnect");

    // A longer cut: the app's 5 reconnection attempts run out (reconnect_failed) and nothing
    // retries; the app's Reconnect button (socket.connect()) brings it back.
    const before = bob.log.length;
    bob.proxy.refuse = true;
    bob.proxy.sever();
    await until(() => bob.log.includes("reconnect failed"), "bob's app gives up after 5 attempts", 20_000);
    bob.proxy.refuse = false;
    await new Promise((r) => setTimeout(r, 300)); // nothing may reconnect on its own now
    assert.equal(await bob.status(), "disconnected", "gave up: still disconnected");
    const attempts = [1, 2, 3, 4, 5].flatMap((n) => [`reconnect attempt ${n}`, "connect_error"]);
    assert.deepEqual(normalized(bob.log.slice(before)), ["disconnect (transport close)", ...attempts, "reconnect failed"]);
    await bob.page.locator("[data-testid=reconnect]").click();
    await until(() => ready(bob), "bob connected again by hand");
    await bob.send("retried by hand");
    await until(has(alice, "bob: retried by hand"), "alice gets bob's message after the manual reconnect");
    await alice.send("got it");
    await until(has(bob, "alice: got it"), "bob gets alice's message after the manual reconnect");

    const transcripts = { alice: await alice.messages(), bob: await bob.messages() };
    const expected = [
      "alice: hi bob",
      "bob: hi alice",
      "alice: typing then sending",
      "bob: back again",
      "alice: welcome back",
      "bob: retried by hand",
      "alice: got it",
    ];
    assert.deepEqual(transcripts.alice, expected, `${stack}: alice's messages, once each, in order`);
    assert.deepEqual(transcripts.bob, expected, `${stack}: bob's messages, once each, in order`);
    await bob.page.screenshot({ path: join(OUT, `${stack}-bob.png`) });

    // The refused token: one connect_error, no retry, disconnected.
    assert.equal(await mallory.status(), "disconnected");
    assert.deepEqual(normalized(mallory.log), ["connect_error"], `${stack}: a refused token is not retried`);

    // Connection events as the app logged them; how many attempts the short cut took depends on
    // timing, so those are left out.
    const events = (tab) => normalized(tab.log).filter((l) => /^(connect|disconnect|reconnect failed)/.test(l) && l !== "connect_error");
    assert.deepEqual(events(alice), ["connect"], `${stack}: alice connected once`);
    for (const tab of [alice, bob, mallory]) assert.deepEqual(tab.problems, [], `${stack}: no page errors at ${tab.user}`);
    return {
      transcripts,
      connection: { alice: events(alice), bob: events(bob), mallory: normalized(mallory.log) },
      log: { alice: alice.log, bob: bob.log, mallory: mallory.log },
    };
  } finally {
    await Promise.all([alice.close(), bob.close(), mallory.close()]);
  }
}

test("socket.io-client against a seed-shaped Socket.IO server", async () => {
  runs.socketio = await scenario("socketio", seed.port);
  console.log(`socket.io-client app's connection log: ${JSON.stringify(runs.socketio.log)}`);
});

test("the same app with only its import changed, against Switchboard", async () => {
  runs.switchboard = await scenario("switchboard", Number(new URL(worker.http).port));
  console.log(`Switchboard app's connection log: ${JSON.stringify(runs.switchboard.log)}`);
});

test("both runs showed the same thing", () => {
  assert.ok(runs.socketio && runs.switchboard, "both runs finished");
  assert.deepEqual(runs.switchboard.transcripts, runs.socketio.transcripts, "the rendered message lists");
  assert.deepEqual(runs.switchboard.connection, runs.socketio.connection, "connect, disconnect (with reasons), reconnect failed and connect_error, as the app saw them");
});
