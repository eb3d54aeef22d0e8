// The SDK's wire types (src/types.ts) against the server, both ways:
// - server → client: what the built worker really sends. Every field of every frame is declared,
//   and every field declared as required is there. A field the server adds or renames fails this
//   test until types.ts follows.
// - client → server: the request interfaces against the Rust definitions the server decodes
//   frames with, as examples/wire_requests.rs prints them. An event, a field, or a field's being
//   required on one side only fails it.
// So the types cannot drift from the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { startWorker, join, connectUser, token, call, sleep } from "./helpers.mjs";
import { open } from "../../../miniflare/harness.mjs";

function typesSource() {
  const file = fileURLToPath(new URL("../src/types.ts", import.meta.url));
  return ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2020, true);
}

/** Interface name → {prop: optional?} read from types.ts with the compiler API. */
function declared(source = typesSource()) {
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

test("a large room's frames match the SDK's declared types: room:state with its cursor, members:diff, members:get", async () => {
  const types = declared();
  const worker = await startWorker({ vars: { ROOM_MEMBER_LIST_MAX: "1" } });
  try {
    const alice = await join(worker, "contract-large", "alice");
    const bob = await join(worker, "contract-large", "bob");
    check(types, "RoomState", bob.state, "room:state of a large room");
    assert.equal(bob.state.membersNext, "alice");
    const diff = await alice.next("members:diff");
    check(types, "MembersDiff", diff.d, "members:diff");
    await bob.close();
    const back = await alice.next((f) => f.t === "members:diff" && f.d.members);
    check(types, "MembersDiff", back.d, "members:diff back under the setting");
    const carol = await join(worker, "contract-large", "carol");
    const page = await carol.request("members:get", { limit: 1 });
    check(types, "MembersPage", page.d, "members:get reply");
    for (const m of [...page.d.members, ...diff.d.joins, ...back.d.members]) check(types, "MemberEntry", m, "member entry");
    await alice.close();
    await carol.close();
  } finally {
    await worker.close();
  }
});

// ---- requests (client → server) -------------------------------------------------------------

/** The map in types.ts that lists each object's requests, by the name the Rust program uses. */
const REQUEST_MAPS = { room: "RoomRequests", user: "UserRequests", doc: "DocRequests" };

/**
 * The requests types.ts declares, in the Rust program's shape plus the interface names:
 * `{object: {event: {type: "SendMessageRequest", fields: {text: "required", id: "optional"}}
 * | {type: "void", fields: null}}}`. Shapes this check cannot read are thrown, not skipped.
 */
function declaredRequests(source = typesSource()) {
  const interfaces = new Map();
  source.forEachChild((node) => {
    if (ts.isInterfaceDeclaration(node)) interfaces.set(node.name.text, node);
  });
  const fieldsOf = (name) => {
    const node = interfaces.get(name);
    if (!node) throw new Error(`types.ts: ${name} is not an interface declared in types.ts`);
    if (node.heritageClauses?.length) throw new Error(`types.ts: ${name} extends another type; declare its fields in it`);
    const fields = {};
    for (const m of node.members) {
      if (!ts.isPropertySignature(m)) throw new Error(`types.ts: ${name} has a member that is not a plain field: ${m.getText(source)}`);
      fields[m.name.text] = m.questionToken ? "optional" : "required";
    }
    return fields;
  };
  const out = {};
  for (const [object, map] of Object.entries(REQUEST_MAPS)) {
    if (!interfaces.has(map)) continue;
    out[object] = {};
    for (const m of interfaces.get(map).members) {
      const event = m.name?.text;
      if (!ts.isPropertySignature(m) || m.questionToken || !m.type) throw new Error(`types.ts: ${map}: every member is a required "event": Payload`);
      if (m.type.kind === ts.SyntaxKind.VoidKeyword) out[object][event] = { type: "void", fields: null };
      else if (ts.isTypeReferenceNode(m.type) && !m.type.typeArguments) {
        const type = m.type.typeName.getText(source);
        out[object][event] = { type, fields: fieldsOf(type) };
      } else throw new Error(`types.ts: ${map}["${event}"] must name a request interface or be void, not ${m.type.getText(source)}`);
    }
  }
  return out;
}

/** What the Rust core decodes, printed from its serde definitions by examples/wire_requests.rs. */
function rustRequests() {
  const root = fileURLToPath(new URL("../../../", import.meta.url));
  const env = { ...process.env, PATH: `${path.join(homedir(), ".cargo", "bin")}${path.delimiter}${process.env.PATH}` };
  try {
    const out = execFileSync("cargo", ["run", "--quiet", "-p", "switchboard", "--example", "wire_requests"], {
      cwd: root,
      env,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 16 * 1024 * 1024,
    });
    return JSON.parse(out);
  } catch (err) {
    throw new Error(`cargo run --example wire_requests failed: ${err.stderr || err.message}`);
  }
}

/** Every difference between what Rust decodes and what types.ts declares, one sentence each. */
function requestMismatches(rust, sdk) {
  const problems = [];
  for (const object of new Set([...Object.keys(rust), ...Object.keys(sdk)])) {
    const map = REQUEST_MAPS[object] ?? object;
    const r = rust[object];
    const s = sdk[object];
    if (!r) {
      problems.push(`types.ts declares ${map}, but the Rust core has no ${object} requests`);
      continue;
    }
    if (!s) {
      problems.push(`types.ts has no ${map} for the ${object} object's requests`);
      continue;
    }
    for (const event of Object.keys(r)) {
      if (!(event in s)) problems.push(`${map}: the server accepts "${event}", which types.ts does not list`);
    }
    for (const event of Object.keys(s)) {
      if (!(event in r)) problems.push(`${map}: types.ts lists "${event}", which the server answers with unknown_event`);
    }
    for (const event of Object.keys(r).filter((e) => e in s)) {
      const rf = r[event];
      const { type, fields: sf } = s[event];
      if (rf === null && sf === null) continue;
      if (rf === null) {
        problems.push(`${map}["${event}"]: the server ignores this event's payload, but types.ts gives it ${type}; declare it void`);
        continue;
      }
      if (sf === null) {
        problems.push(`${map}["${event}"]: types.ts declares void, but the server decodes {${Object.keys(rf).join(", ")}}`);
        continue;
      }
      for (const [field, rust] of Object.entries(rf)) {
        if (!(field in sf)) problems.push(`${type} ("${event}"): the server accepts ${rust} field "${field}", which types.ts does not declare`);
        else if (sf[field] !== rust) problems.push(`${type}.${field} ("${event}"): ${sf[field]} in types.ts, ${rust} in the server`);
      }
      for (const field of Object.keys(sf)) {
        if (!(field in rf)) problems.push(`${type}.${field} ("${event}"): declared in types.ts, but the server ignores it`);
      }
    }
  }
  return problems;
}

test("every request the SDK's types declare is what the server decodes, and nothing more", { timeout: 600_000 }, () => {
  const rust = rustRequests();
  assert.deepEqual(Object.keys(rust).sort(), Object.keys(REQUEST_MAPS).sort(), "the Rust program describes every object");
  const problems = requestMismatches(rust, declaredRequests());
  assert.deepEqual(problems, [], `types.ts and the Rust request types differ:\n  ${problems.join("\n  ")}`);
});

test("the request check reports each kind of drift", () => {
  const rust = {
    room: { a: { x: "required", y: "optional" }, b: null, c: { z: "optional" } },
    doc: { d: { v: "required" } },
  };
  const source = ts.createSourceFile(
    "drift.ts",
    `export interface RoomRequests { a: A; b: B; d: void; c: void }
     export interface A { x?: number; w: string }
     export interface B { q: string }`,
    ts.ScriptTarget.ES2020,
    true,
  );
  assert.deepEqual(requestMismatches(rust, declaredRequests(source)), [
    `RoomRequests: types.ts lists "d", which the server answers with unknown_event`,
    `A.x ("a"): optional in types.ts, required in the server`,
    `A ("a"): the server accepts optional field "y", which types.ts does not declare`,
    `A.w ("a"): declared in types.ts, but the server ignores it`,
    `RoomRequests["b"]: the server ignores this event's payload, but types.ts gives it B; declare it void`,
    `RoomRequests["c"]: types.ts declares void, but the server decodes {z}`,
    `types.ts has no DocRequests for the doc object's requests`,
  ]);
  assert.throws(
    () => declaredRequests(ts.createSourceFile("bad.ts", "export interface DocRequests { d: { v: number } }", ts.ScriptTarget.ES2020, true)),
    /must name a request interface or be void/,
  );
});
