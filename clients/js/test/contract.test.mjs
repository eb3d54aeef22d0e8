// The SDK's wire types (src/types.ts) against what the built worker really sends: every field of
// every frame is declared, and every field declared as required is there. A field the server adds
// or renames fails this test until types.ts follows, so the types cannot drift from the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { startWorker, join, connectUser, token, call, sleep } from "./helpers.mjs";
import { open } from "../../../miniflare/harness.mjs";

/** Interface name → {prop: optional?} read from types.ts with the compiler API. */
function declared() {
  const file = fileURLToPath(new URL("../src/types.ts", import.meta.url));
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2020, true);
  const out = {};
  source.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node)) return;
    const props = {};
    for (const m of node.members) if (ts.isPropertySignature(m)) props[m.name.getText(source)] = Boolean(m.questionToken);
    out[node.name.text] = props;
  });
  return out;
}

/** Which interface each server frame's `d` is. */
const FRAMES = {
  "room:state": "RoomState",
  "message:receive": "Message",
  "state:update": "StateUpdate",
  signal: "Signal",
  broadcast: "Broadcast",
  "user:state": "UserState",
  "presence:update": "Presence",
  "notification:new": "Notification",
  "doc:snapshot": "DocSnapshot",
  operation: "Operation",
  "cursor:update": "WireCursor",
};

function check(types, name, value, where) {
  const props = types[name];
  assert.ok(props, `types.ts declares ${name}`);
  for (const key of Object.keys(value)) assert.ok(key in props, `${where}: field "${key}" is not declared in ${name}`);
  for (const [key, optional] of Object.entries(props)) {
    if (!optional) assert.ok(key in value, `${where}: ${name}.${key} is declared required but missing`);
  }
}

test("every frame the worker sends matches the SDK's declared types", async () => {
  const types = declared();
  const worker = await startWorker();
  try {
    const alice = await join(worker, "contract", "alice");
    const bob = await join(worker, "contract", "bob");
    await alice.request("message:send", { text: "hi", data: { x: 1 } });
    const ack = await alice.request("message:send", { text: "plain", id: "c-1" });
    check(types, "SendAck", ack.d, "message:send reply");
    check(types, "SendAck", (await alice.request("message:send", { text: "plain", id: "c-1" })).d, "duplicate reply");
    await alice.request("state:set", { key: "topic", value: "x" });
    await alice.request("signal", { to: "bob", data: { sdp: 1 } });
    alice.send({ t: "broadcast", d: { event: "wave", data: 1 } });
    const history = await bob.request("history:get", {});
    for (const m of history.d.messages) check(types, "Message", m, "history:get");
    const reconnected = await open(`${worker.ws}/v1/rooms/contract/ws?token=${token("carol")}&since=0&epoch=${alice.state.epoch}`);

    const me = await connectUser(worker, "alice", { extra: { friends: ["bob"] } });
    const bobMe = await connectUser(worker, "bob");
    const sub = await me.request("presence:subscribe", { users: ["bob"] });
    for (const p of sub.d.presence) check(types, "Presence", p, "presence:subscribe reply");
    await bobMe.request("presence:set", { status: "busy", activity: "x" });
    await call(worker, "POST", "/v1/notify", { body: { users: ["alice"], notification: { type: "t", title: "a", body: "b", data: { k: 1 } } } });
    const list = await me.request("notification:list", {});
    for (const n of list.d.notifications) check(types, "Notification", n, "notification:list");

    const docA = await open(`${worker.ws}/v1/docs/contract-doc/ws?token=${token("alice")}`);
    const docB = await open(`${worker.ws}/v1/docs/contract-doc/ws?token=${token("bob")}`);
    await docA.next("doc:snapshot");
    await docB.next("doc:snapshot");
    await docA.request("op:submit", { v: 0, op: ["hello"], src: "s", seq: 1 });
    await docA.request("cursor:update", { pos: 2, v: 1 });
    await docA.request("cursor:update", { anchor: 1, head: 3, v: 1 });
    const ops = await docB.request("ops:get", { from: 0 });
    for (const o of ops.d.ops) check(types, "Operation", o, "ops:get");
    await docA.close(); // bob gets the cursor's {pos: null}
    const resumed = await open(`${worker.ws}/v1/docs/contract-doc/ws?token=${token("bob")}&v=0`);
    await sleep(300);

    const seen = new Set();
    for (const client of [alice, bob, reconnected, me, bobMe, docA, docB, resumed]) {
      for (const frame of client.frames) {
        const name = FRAMES[frame.t];
        if (!name) continue;
        seen.add(frame.t);
        check(types, name, frame.d, frame.t);
      }
    }
    // The open frames consumed by join()/connectUser() were checked as they came:
    for (const [client, name] of [[alice, "RoomState"], [bob, "RoomState"], [me, "UserState"], [bobMe, "UserState"]]) check(types, name, client.state, name);
    for (const t of Object.keys(FRAMES)) {
      if (t === "room:state" || t === "user:state" || t === "doc:snapshot") continue;
      assert.ok(seen.has(t), `the scenario produced a ${t} frame`);
    }
    for (const c of [alice, bob, reconnected, me, bobMe, docB, resumed]) await c.close();
  } finally {
    await worker.close();
  }
});
