// The Socket.IO-style facade, driven the way socket.io-client apps drive it: a useSocket-shaped
// connection with reconnection options, a chat that re-joins its room on every `connect`, sends
// with an optimistic id, and listens to message:receive and typing:update.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { io } from "@switchboard/client/socket.io";
import { workerBehindProxy, token, until, call, sleep } from "./helpers.mjs";

const { worker, proxy } = await workerBehindProxy();

/** What a seed app's useSocket() does, minus React: the same options and listeners. */
function useSocket(url, user, claims = {}) {
  const log = [];
  const socket = io(url, {
    auth: { token: token(user, { extra: claims }) },
    transports: ["websocket", "polling"],
    reconnection: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    reconnectionAttempts: 5,
    WebSocket,
  });
  socket.on("connect", () => log.push("connect"));
  socket.on("disconnect", (reason) => log.push(`disconnect:${reason}`));
  socket.io.on("reconnect_attempt", (n) => log.push(`reconnect_attempt:${n}`));
  socket.on("error", (err) => log.push(`error:${err.code}`));
  return { socket, log };
}

/** The seed's ChatRoom, minus React: joins on every connect, optimistic sends. */
function chatRoom(socket, roomId, userId) {
  const chat = { messages: [], typing: [], typingRoom: null };
  socket.on("connect", () => socket.emit("room:join", roomId));
  if (socket.connected) socket.emit("room:join", roomId);
  socket.on("message:receive", (m) => chat.messages.push(m));
  socket.on("typing:update", (users, room) => {
    chat.typing = users;
    chat.typingRoom = room;
  });
  chat.send = (text, ack) => {
    const message = { id: `${userId}-${chat.messages.length}-${text}`, text, roomId, userId, timestamp: new Date().toISOString() };
    chat.messages.push(message); // optimistic
    socket.emit("message:send", message, ack);
    return message;
  };
  return chat;
}

test("a seed-shaped chat works through the facade: join, send with ack, receive, typing, no echo", async () => {
  const alice = useSocket(worker.http, "alice");
  const bob = useSocket(worker.http, "bob");
  try {
    await until(() => alice.socket.connected && bob.socket.connected, "both connected");
    assert.ok(alice.socket.id);
    const a = chatRoom(alice.socket, "lobby", "alice");
    const b = chatRoom(bob.socket, "lobby", "bob");
    await sleep(100);
    const reply = await new Promise((resolve) => a.send("hello bob", resolve));
    assert.equal(reply.ok, true);
    assert.equal(reply.seq, 1);
    await until(() => b.messages.length === 1, "bob got the message");
    const got = b.messages[0];
    assert.equal(got.id, "alice-0-hello bob");
    assert.equal(got.text, "hello bob");
    assert.equal(got.roomId, "lobby");
    assert.equal(got.userId, "alice");
    assert.equal(got.seq, 1);
    assert.ok(!Number.isNaN(Date.parse(got.timestamp)));
    assert.equal(a.messages.length, 1, "not echoed to the sender (it added its own optimistically)");

    alice.socket.emit("typing:start", { roomId: "lobby" });
    await until(() => b.typing.includes("alice"), "typing:update at bob");
    assert.equal(b.typingRoom, "lobby");
    alice.socket.emit("typing:stop", { roomId: "lobby" });
    await until(() => b.typing.length === 0, "typing stopped");

    const unknown = await new Promise((resolve) => alice.socket.emit("room:explode", { roomId: "lobby" }, resolve));
    assert.equal(unknown.ok, false);
    assert.equal(unknown.error.code, "unknown_event");
    assert.ok(alice.log.includes("error:unknown_event"), "the socket reports it too");
  } finally {
    alice.socket.disconnect();
    bob.socket.disconnect();
  }
  assert.equal(alice.log.at(-1), "disconnect:io client disconnect");
});

test("presence of friends and notifications arrive as the seed's events", async () => {
  const alice = useSocket(worker.http, "alice2", { friends: ["bob2"] });
  const bob = useSocket(worker.http, "bob2");
  const updates = [];
  const counts = [];
  const notes = [];
  alice.socket.on("presence:update", (p) => updates.push(p));
  alice.socket.on("notification:count", (n) => counts.push(n));
  alice.socket.on("notification:new", (n) => notes.push(n));
  try {
    await until(() => alice.socket.connected && bob.socket.connected, "both connected");
    await sleep(200); // the automatic subscribe to the token's friends
    bob.socket.emit("presence:update", { status: "busy", currentActivity: "coding" });
    await until(() => updates.some((p) => p.userId === "bob2" && p.status === "busy"), "bob's status at alice");
    const p = updates.find((u) => u.userId === "bob2" && u.status === "busy");
    assert.equal(p.currentActivity, "coding");
    assert.ok(!Number.isNaN(Date.parse(p.lastSeen)));
    await call(worker, "POST", "/v1/notify", { body: { users: ["alice2"], notification: { type: "like", title: "Bob liked your post" } } });
    await until(() => notes.length === 1 && counts.includes(1), "notification:new and notification:count");
    assert.equal(notes[0].title, "Bob liked your post");
    const read = await new Promise((resolve) => alice.socket.emit("notification:read", { all: true }, resolve));
    assert.equal(read.unread, 0);
    await until(() => counts.at(-1) === 0, "count back to 0");
  } finally {
    alice.socket.disconnect();
    bob.socket.disconnect();
  }
});

test("after the connection drops: disconnect, reconnect_attempt, connect, the room re-joined, every message once", async () => {
  const alice = useSocket(worker.http, "alice3");
  const bob = useSocket(proxy.url, "bob3");
  try {
    await until(() => alice.socket.connected && bob.socket.connected, "both connected");
    const a = chatRoom(alice.socket, "drops", "alice3");
    const b = chatRoom(bob.socket, "drops", "bob3");
    await sleep(100);
    await new Promise((resolve) => a.send("one", resolve));
    await until(() => b.messages.length === 1, "the first message");

    proxy.refuse = true;
    proxy.sever();
    await until(() => bob.log.includes("disconnect:transport close"), "disconnect");
    await until(() => bob.log.some((l) => l.startsWith("reconnect_attempt")), "reconnect_attempt");
    await new Promise((resolve) => a.send("two", resolve)); // while bob is away
    // Bob sends while disconnected: it waits in the room's outbox.
    const sent = new Promise((resolve) => b.send("from bob offline", resolve));
    proxy.refuse = false;
    await until(() => bob.log.filter((l) => l === "connect").length === 2, "connected again");
    assert.equal((await sent).ok, true);
    await until(() => b.messages.filter((m) => m.userId === "alice3").length === 2, "what bob missed");
    await until(() => a.messages.some((m) => m.text === "from bob offline"), "what bob sent while away");
    await new Promise((resolve) => a.send("three", resolve));
    await until(() => b.messages.filter((m) => m.userId === "alice3").length === 3, "live again");
    assert.deepEqual(b.messages.filter((m) => m.userId === "alice3").map((m) => m.text), ["one", "two", "three"]);
    assert.equal(a.messages.filter((m) => m.text === "from bob offline").length, 1, "once");
  } finally {
    alice.socket.disconnect();
    bob.socket.disconnect();
  }
});

test("reconnectionAttempts is honoured: connect_error per attempt, then reconnect_failed", async () => {
  proxy.refuse = true;
  const failed = [];
  const errors = [];
  const socket = io(proxy.url, { auth: { token: token("dave") }, reconnectionAttempts: 2, reconnectionDelay: 20, reconnectionDelayMax: 40, WebSocket });
  socket.on("connect_error", (e) => errors.push(e));
  socket.io.on("reconnect_failed", () => failed.push(true));
  try {
    await until(() => failed.length === 1, "reconnect_failed");
    assert.equal(errors.length, 3, "the first connect and two reconnects failed");
    assert.equal(socket.connected, false);
  } finally {
    proxy.refuse = false;
    socket.disconnect();
  }
});

test("a refused token is one connect_error with the server's reason and no retry, as socket.io's middleware error; socket.auth then connect() starts over", async () => {
  const log = [];
  const socket = io(worker.http, { auth: { token: token("erin", { secret: "not-the-secret" }) }, reconnectionDelay: 20, reconnectionDelayMax: 40, WebSocket });
  socket.on("connect", () => log.push("connect"));
  socket.on("connect_error", (e) => log.push(`connect_error:${e.code}`));
  socket.on("error", (e) => log.push(`error:${e.code}`));
  socket.on("reconnect_attempt", (n) => log.push(`reconnect_attempt:${n}`));
  socket.io.on("reconnect_attempt", (n) => log.push(`io.reconnect_attempt:${n}`));
  try {
    await until(() => log.length > 0, "connect_error");
    await sleep(300); // nothing else follows: no retry with the same refused token
    assert.deepEqual(log, ["connect_error:unauthorized"]);
    assert.equal(socket.active, false, "inactive: only connect() tries again");
    assert.equal(socket.connected, false);
    socket.auth = { token: token("erin") };
    socket.connect();
    await until(() => socket.connected, "connected with the new auth");
    assert.deepEqual(log, ["connect_error:unauthorized", "connect"]);
    assert.equal(socket.active, true);
  } finally {
    socket.disconnect();
  }
  assert.equal(socket.active, false);
});

test("after reconnect_failed nothing reconnects by itself (rooms neither) until connect(), which starts over", async () => {
  const log = [];
  const alice = useSocket(worker.http, "alice4");
  const socket = io(proxy.url, { auth: { token: token("bob4") }, reconnectionAttempts: 2, reconnectionDelay: 20, reconnectionDelayMax: 40, WebSocket });
  socket.on("connect", () => log.push("connect"));
  socket.on("disconnect", (r) => log.push(`disconnect:${r}`));
  socket.io.on("reconnect_failed", () => log.push("reconnect_failed"));
  try {
    await until(() => socket.connected && alice.socket.connected, "connected");
    const a = chatRoom(alice.socket, "gives-up", "alice4");
    const b = chatRoom(socket, "gives-up", "bob4");
    await sleep(100);
    proxy.refuse = true;
    proxy.sever();
    await until(() => log.includes("reconnect_failed"), "reconnect_failed");
    assert.equal(socket.active, false);
    proxy.refuse = false;
    const accepted = proxy.accepted;
    await new Promise((resolve) => a.send("while bob gave up", resolve));
    await sleep(400);
    assert.equal(proxy.accepted, accepted, "no socket (user or room) tried again on its own");
    assert.equal(socket.connected, false);
    assert.equal(b.messages.length, 0, "nothing is delivered to a socket that gave up");
    socket.connect();
    await until(() => log.filter((l) => l === "connect").length === 2, "connected again by connect()");
    assert.equal(socket.active, true);
    await new Promise((resolve) => a.send("after connect()", resolve));
    await until(() => b.messages.some((m) => m.text === "after connect()"), "the room re-joined on connect");
    assert.deepEqual(log, ["connect", "disconnect:transport close", "reconnect_failed", "connect"]);
  } finally {
    proxy.refuse = false;
    socket.disconnect();
    alice.socket.disconnect();
  }
});

test("io(options), io() and io(\"\") connect to the page's origin, as socket.io-client does; without a page they say so", async () => {
  const { serviceUrl } = await import("@switchboard/client/socket.io");
  assert.throws(() => io({ auth: { token: token("gina") }, WebSocket }), /page's origin/);
  assert.throws(() => io(), /page's origin/);
  assert.equal(serviceUrl("rt.example.com"), "https://rt.example.com");
  const had = Object.getOwnPropertyDescriptor(globalThis, "location");
  Object.defineProperty(globalThis, "location", { value: new URL(`${worker.http}/app/index.html`), configurable: true });
  try {
    assert.equal(serviceUrl(""), worker.http);
    assert.equal(serviceUrl("/rt"), `${worker.http}/rt`);
    assert.equal(serviceUrl("//rt.example.com"), "http://rt.example.com");
    const sockets = [io({ auth: { token: token("gina") }, WebSocket }), io("", { auth: { token: token("hal") }, WebSocket })];
    try {
      await until(() => sockets.every((s) => s.connected), "both connected to the page's origin");
    } finally {
      for (const s of sockets) s.disconnect();
    }
  } finally {
    if (had) Object.defineProperty(globalThis, "location", had);
    else delete globalThis.location;
  }
});

test("reconnectionAttempts counts the connection (the user socket): a room socket that fails longer never gives up alone", async () => {
  let blockRooms = false;
  // Room sockets fail to connect while blockRooms is set; the user socket connects as usual.
  class RoomsBlocked extends WebSocket {
    constructor(url, protocols) {
      super(blockRooms && url.includes("/v1/rooms/") ? "ws://127.0.0.1:1/" : url, protocols);
    }
  }
  const alice = useSocket(worker.http, "alice5");
  const log = [];
  const bob = io(proxy.url, { auth: { token: token("bob5") }, transports: ["websocket"], reconnectionAttempts: 2, reconnectionDelay: 20, reconnectionDelayMax: 40, WebSocket: RoomsBlocked });
  bob.on("connect", () => log.push("connect"));
  bob.on("error", (e) => log.push(`error:${e.code}`));
  bob.io.on("reconnect_failed", () => log.push("reconnect_failed"));
  try {
    await until(() => bob.connected && alice.socket.connected, "connected");
    const a = chatRoom(alice.socket, "rooms-retry", "alice5");
    const b = chatRoom(bob, "rooms-retry", "bob5");
    await sleep(100);
    blockRooms = true;
    proxy.sever();
    await until(() => log.filter((l) => l === "connect").length === 2, "the user socket is back");
    await sleep(500); // many more failed room attempts than reconnectionAttempts
    blockRooms = false;
    await new Promise((resolve) => a.send("the room came back", resolve));
    await until(() => b.messages.some((m) => m.text === "the room came back"), "the room socket reconnected and got it", 8000);
    assert.deepEqual(log, ["connect", "connect"], "no error, no reconnect_failed");
    assert.equal(bob.active, true);
  } finally {
    bob.disconnect();
    alice.socket.disconnect();
  }
});

test("reconnection: false: a dropped connection stays down (no reconnect_attempt, no reconnect_failed) until connect()", async () => {
  const log = [];
  const socket = io(proxy.url, { auth: { token: token("ivan") }, reconnection: false, WebSocket });
  socket.on("connect", () => log.push("connect"));
  socket.on("disconnect", (r) => log.push(`disconnect:${r}`));
  socket.on("connect_error", () => log.push("connect_error"));
  socket.on("reconnect_attempt", () => log.push("reconnect_attempt"));
  socket.io.on("reconnect_failed", () => log.push("reconnect_failed"));
  try {
    await until(() => socket.connected, "connected");
    const accepted = proxy.accepted;
    proxy.sever();
    await until(() => log.includes("disconnect:transport close"), "disconnect");
    await sleep(300);
    assert.equal(proxy.accepted, accepted, "nothing tried again");
    assert.equal(socket.active, false);
    assert.deepEqual(log, ["connect", "disconnect:transport close"]);
    proxy.refuse = true;
    socket.connect();
    await until(() => log.includes("connect_error"), "the manual connect fails");
    proxy.refuse = false;
    await sleep(300);
    assert.deepEqual(log, ["connect", "disconnect:transport close", "connect_error"], "and is not retried either");
  } finally {
    proxy.refuse = false;
    socket.disconnect();
  }
});
