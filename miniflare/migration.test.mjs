// Storage written by the previous release (5a06e97; fixtures/make-release-fixture.mjs made it
// with that build) loads and is served by this one: schema migrations run in order, and the
// document that release let one op brick is repaired instead of refusing every connect.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join as joinPath } from "node:path";
import { fileURLToPath } from "node:url";
import { startWorker, join, open, token, call, connectUser } from "./harness.mjs";

const fixture = joinPath(dirname(fileURLToPath(import.meta.url)), "fixtures", "5a06e97");

async function withFixture(scenario) {
  const dir = mkdtempSync(joinPath(tmpdir(), "switchboard-migration-"));
  cpSync(fixture, dir, { recursive: true });
  const worker = await startWorker({ persist: dir });
  try {
    await scenario(worker);
  } finally {
    await worker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("storage written by 5a06e97 is served: room history and state, the inbox, a document and its duplicate check", () =>
  withFixture(async (worker) => {
    const dave = await join(worker, "lobby", "dave");
    assert.equal(dave.state.seq, 3);
    assert.equal(dave.state.state.topic.value, "migrations");
    const history = await dave.request("history:get", {});
    assert.deepEqual(history.d.messages.map((m) => m.text), ["one", "two", "three"]);
    assert.equal((await dave.request("message:send", { text: "four" })).d.seq, 4);
    await dave.close();
    // Alice's resend of a message the old release stored is still recognized.
    const alice = await join(worker, "lobby", "alice");
    assert.equal((await alice.request("message:send", { text: "three", id: "m-three" })).d.seq, 3);
    await alice.close();

    const bob = await connectUser(worker, "bob");
    assert.equal(bob.state.unread, 1);
    await bob.close();

    const spec = await call(worker, "GET", "/v1/docs/spec");
    assert.equal(spec.status, 200);
    assert.deepEqual([spec.body.text, spec.body.v], ["abc", 3]);
    assert.equal(typeof spec.body.epoch, "string");
    const carol = await open(`${worker.ws}/v1/docs/spec/ws?token=${token("carol")}`);
    await carol.next("doc:snapshot");
    // Her last op, resubmitted across the upgrade, is acknowledged, not applied again.
    const again = await carol.request("op:submit", { v: 2, op: [2, "c"], src: "carol-tab", seq: 3 });
    assert.deepEqual(again.d, { v: 2, src: "carol-tab", seq: 3 });
    const next = await carol.request("op:submit", { v: 3, op: [3, "d"], src: "carol-tab", seq: 4 });
    assert.equal(next.d.v, 3);
    await carol.close();
    assert.equal((await call(worker, "GET", "/v1/docs/spec")).body.text, "abcd");
  }));

test("a document one wrapping op bricked on 5a06e97 loads up to that op, in a new epoch, and is writable", () =>
  withFixture(async (worker) => {
    const doc = await call(worker, "GET", "/v1/docs/bricked");
    assert.equal(doc.status, 200, JSON.stringify(doc.body));
    assert.equal(doc.body.text, "safe");
    assert.equal(doc.body.v, 3, "no version a client held is current");
    const stats = await call(worker, "GET", "/v1/docs/bricked/stats");
    assert.equal(stats.body.repair.droppedFrom, 1);
    assert.equal(stats.body.repair.continuedAt, 3);
    assert.match(stats.body.repair.reason, /op 1/);
    const editor = await open(`${worker.ws}/v1/docs/bricked/ws?token=${token("erin")}&v=1`);
    const snapshot = await editor.next("doc:snapshot");
    assert.equal(snapshot.d.resumed, false, "a resume from before the repair is refused");
    const ok = await editor.request("op:submit", { v: 3, op: [4, "!"], src: "erin-tab", seq: 1 });
    assert.equal(ok.ok, true, JSON.stringify(ok));
    await editor.close();
    assert.equal((await call(worker, "GET", "/v1/docs/bricked")).body.text, "safe!");
  }));
