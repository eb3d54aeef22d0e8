// Bad input never hurts: every malformed frame gets a stable code, the socket keeps working,
// and the room keeps serving everyone; repeated abuse closes with 4002.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join } from "./harness.mjs";

let worker;
before(async () => (worker = await startWorker({ preventEviction: true })));
after(() => worker?.close());

test("malformed frames get error codes and the socket and room keep working", async () => {
  const alice = await join(worker, "frames-1", "alice");
  const bob = await join(worker, "frames-1", "bob");
  await alice.request("message:send", { text: "before" });

  const bare = async (raw, code) => {
    alice.send(raw);
    const f = await alice.next("error");
    assert.equal(f.error.code, code, raw.slice(0, 60));
    assert.equal(f.ref, undefined);
    assert.equal(typeof f.error.message, "string");
  };
  await bare("not json", "bad_frame");
  await bare("[1,2,3]", "bad_frame");
  await bare('{"d":{}}', "bad_frame");
  await bare('{"t":"no:such"}', "unknown_event");
  await bare('{"t":"message:send","ref":{"nested":true},"d":{"text":"x"}}', "bad_frame");
  // Oversize frames are refused unparsed, so even a ref inside gets a bare error.
  await bare(JSON.stringify({ t: "message:send", ref: "big", d: { text: "x".repeat(70_000) } }), "too_large");
  alice.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.equal((await alice.next("error")).error.code, "bad_frame");

  const replied = async (frame, code) => {
    alice.send(frame);
    const f = await alice.next((x) => x.t === "reply" && x.ref === frame.ref);
    assert.equal(f.ok, false);
    assert.equal(f.error.code, code, JSON.stringify(frame).slice(0, 60));
  };
  await replied({ ref: "no-t" }, "bad_frame");
  await replied({ t: "no:such", ref: "u" }, "unknown_event");
  await replied({ t: "message:send", ref: 7, d: { text: 5 } }, "bad_request");
  await replied({ t: "message:send", ref: "missing", d: {} }, "bad_request");
  await replied({ t: "message:send", ref: "empty", d: { text: "" } }, "bad_request");
  await replied({ t: "message:send", ref: "id", d: { text: "x", id: "" } }, "bad_request");
  await replied({ t: "message:send", ref: "long", d: { text: "é".repeat(4001) } }, "too_large");
  await replied({ t: "history:get", ref: "h", d: { limit: -1 } }, "bad_request");

  // Numeric refs are echoed as numbers.
  const ack = await alice.request("message:send", { text: "after" });
  assert.equal(ack.ok, true);
  assert.equal(ack.d.seq, 2, "rejected frames consumed no sequence numbers");
  assert.deepEqual((await bob.next("message:receive")).d.text, "before");
  assert.deepEqual((await bob.next("message:receive")).d.text, "after");
  const history = await bob.request("history:get", {});
  assert.deepEqual(history.d.messages.map((m) => m.text), ["before", "after"]);
  await alice.close();
  await bob.close();
});

test("repeated bad frames close the socket with 4002", async () => {
  const mallory = await join(worker, "frames-2", "mallory");
  const other = await join(worker, "frames-2", "other");
  for (let i = 0; i < 20; i++) mallory.send("garbage");
  const { code } = await mallory.closed;
  assert.equal(code, 4002);
  assert.deepEqual((await other.next("member:leave")).d, { user: "mallory" });
  const ack = await other.request("message:send", { text: "room still fine" });
  assert.equal(ack.ok, true);
  await other.close();
});
