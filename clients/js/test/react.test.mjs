// The React hooks under StrictMode against the built worker (react-dom, no DOM: react-root.mjs): one
// socket per room or hook however often StrictMode mounts, everything closed after unmount, and
// the hooks' state following what the server sends.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createElement as h } from "react";
import { renderStrict } from "./react-root.mjs";
import WebSocket from "ws";
import { createClient } from "@switchboard/client";
import { SwitchboardProvider, useMessages, useTyping, useMembers, useConnectionStatus, useDocument, useNotifications, usePresence, useSwitchboard } from "@switchboard/client/react";
import { startWorker, token, sdk, until, call, sleep, FAST } from "./helpers.mjs";

let worker;
before(async () => {
  worker = await startWorker();
});
after(() => worker.close());

/** A WebSocket class that keeps every socket it made, to count and inspect them. */
function trackedWebSocket() {
  const made = [];
  class Tracked extends WebSocket {
    constructor(...args) {
      super(...args);
      made.push(this);
    }
  }
  return { Tracked, made, open: (part) => made.filter((ws) => ws.url.includes(part) && ws.readyState <= 1) };
}

test("a chat built on the hooks: one room socket under StrictMode, history, live and own messages, typing, members", async () => {
  const { Tracked, made, open } = trackedWebSocket();
  const client = createClient({ url: worker.http, token: () => token("alice"), WebSocket: Tracked, ...FAST });
  const bob = sdk(worker.http, "bob");
  const seen = {};
  function Chat() {
    const { messages, send } = useMessages("react-chat");
    const { members, count: memberCount } = useMembers("react-chat");
    Object.assign(seen, { messages, send, status: useConnectionStatus(), typing: useTyping("react-chat").typing, members, memberCount });
    return null;
  }
  try {
    const b = bob.room("react-chat");
    await b.send("before anyone mounted");
    const renderer = renderStrict(h(SwitchboardProvider, { client }, h(Chat)));
    await until(() => seen.status === "open" && seen.messages.length === 1, "history loaded");
    assert.equal(open("/rooms/").length, 1, "StrictMode's double mount opened one room socket");
    assert.equal(made.filter((ws) => ws.url.includes("/rooms/")).length, 1);
    assert.deepEqual(seen.members, ["alice", "bob"]);
    assert.equal(seen.memberCount, 2);

    await b.send("live from bob");
    await until(() => seen.messages.length === 2, "a live message");
    const acked = seen.send("mine");
    await until(() => seen.messages.length === 3, "the own message shown at once");
    assert.equal(seen.messages.at(-1).text, "mine");
    const ack = await acked;
    await until(() => seen.messages.at(-1).seq === ack.seq, "the own message settled with its seq");
    assert.deepEqual(seen.messages.map((m) => m.text), ["before anyone mounted", "live from bob", "mine"]);
    b.typing();
    await until(() => seen.typing.includes("bob"), "bob typing");

    renderer.unmount();
    await until(() => open("/rooms/").length === 0, "the room socket closed after unmount");
  } finally {
    client.close();
    bob.close();
  }
});

test("useDocument follows remote edits and sends local ones; useNotifications and usePresence follow the user socket", async () => {
  const { Tracked, open } = trackedWebSocket();
  const client = createClient({ url: worker.http, token: () => token("carol"), WebSocket: Tracked, ...FAST });
  const dave = sdk(worker.http, "dave");
  const seen = {};
  function Editor() {
    Object.assign(seen, { doc: useDocument("react-doc"), notes: useNotifications(), presence: usePresence(["dave"]) });
    return null;
  }
  try {
    const renderer = renderStrict(h(SwitchboardProvider, { client }, h(Editor)));
    await until(() => seen.doc.ready, "the document loaded");
    assert.equal(open("/docs/").length, 1, "one document socket under StrictMode");
    const d = await dave.doc("react-doc").ready();
    d.insert(0, "hello");
    await until(() => seen.doc.text === "hello", "dave's edit rendered");
    seen.doc.replace("hello, world");
    await until(() => d.text === "hello, world", "carol's edit reached dave");

    await call(worker, "POST", "/v1/notify", { body: { users: ["carol"], notification: { type: "t", title: "ping" } } });
    await until(() => seen.notes.unread === 1 && seen.notes.notifications.length === 1, "the notification and the count");
    await until(() => seen.presence.me?.user === "carol", "own state");
    await dave.me().setStatus("busy");
    await until(() => seen.presence.statuses.dave?.status === "busy", "dave's status");

    renderer.unmount();
    await until(() => open("/docs/").length === 0, "the document socket closed after unmount");
  } finally {
    client.close();
    dave.close();
  }
});

test("useSwitchboard has the seed hook's shape and opens one socket under StrictMode", async () => {
  const { Tracked, made, open } = trackedWebSocket();
  const seen = {};
  function App() {
    Object.assign(seen, useSwitchboard(worker.http, { auth: { token: token("erin") }, reconnectionDelay: 50, WebSocket: Tracked }));
    return null;
  }
  const renderer = renderStrict(h(App));
  await until(() => seen.connected, "connected");
  assert.equal(made.length, 1, "one user socket for StrictMode's double mount");
  const got = [];
  const off = seen.on("notification:count", (n) => got.push(n));
  await call(worker, "POST", "/v1/notify", { body: { users: ["erin"], notification: { type: "t" } } });
  await until(() => got.includes(1), "an event through on()");
  off();
  assert.equal(typeof seen.emit, "function");
  assert.equal(seen.reconnectAttempts, 0);
  renderer.unmount();
  await until(() => open("/users/").length === 0, "closed after unmount");
  await sleep(50);
});
