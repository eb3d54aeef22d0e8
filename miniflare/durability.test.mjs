// History and sequence numbers survive hibernation (proven by the wake counter) and restarts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, join, open, token, sleep, withStorage, SERVER_KEY } from "./harness.mjs";

async function stats(worker, room) {
  const res = await fetch(`${worker.http}/v1/rooms/${room}/stats`, { headers: { authorization: `Bearer ${SERVER_KEY}` } });
  assert.equal(res.status, 200);
  return res.json();
}

test("after the object hibernates, sockets stay open and the next message gets the next seq", async () => {
  const worker = await startWorker();
  try {
    const alice = await join(worker, "sleepy", "alice");
    const bob = await join(worker, "sleepy", "bob");
    await alice.request("message:send", { text: "one" });
    const before = await stats(worker, "sleepy");
    assert.equal(before.connections, 2);

    await sleep(12_000); // workerd evicts an idle object with only hibernatable sockets after ~10 s

    const ack = await alice.request("message:send", { text: "two" });
    assert.equal(ack.d.seq, 2);
    // Bob's socket was restored from its attachment after the wake, so he still receives.
    assert.equal((await bob.next((f) => f.t === "message:receive" && f.d.seq === 2)).d.text, "two");
    const after = await stats(worker, "sleepy");
    assert.equal(after.wakes, before.wakes + 1, "the object was evicted and rebuilt exactly once");
    assert.equal(after.connections, 2);
    assert.equal(after.epoch, before.epoch);
    const history = await bob.request("history:get", {});
    assert.deepEqual(history.d.messages.map((m) => [m.seq, m.text]), [[1, "one"], [2, "two"]]);
    await alice.close();
    await bob.close();
  } finally {
    await worker.close();
  }
});

test("a restarted workerd on the same storage serves the old history and recovers sockets", () =>
  withStorage(async (start) => {
    const first = await start();
    const alice = await join(first, "durable", "alice");
    for (const text of ["a", "b", "c"]) await alice.request("message:send", { text });
    const epoch = alice.state.epoch;
    await alice.close();
    await first.close();

    const second = await start();
    try {
      const bob = await join(second, "durable", "bob");
      assert.equal(bob.state.seq, 3);
      assert.equal(bob.state.epoch, epoch);
      const history = await bob.request("history:get", {});
      assert.deepEqual(history.d.messages.map((m) => [m.seq, m.user, m.text]), [
        [1, "alice", "a"],
        [2, "alice", "b"],
        [3, "alice", "c"],
      ]);
      // Alice comes back after the restart having seen only the first message.
      const back = await open(`${second.ws}/v1/rooms/durable/ws?token=${token("alice")}&since=1&epoch=${epoch}`);
      const frames = [await back.next(), await back.next(), await back.next()];
      assert.deepEqual(frames.map((f) => f.d.text ?? f.d.recovered), ["b", "c", true]);
      assert.equal((await bob.request("message:send", { text: "d" })).d.seq, 4);
      await bob.close();
      await back.close();
    } finally {
      await second.close();
    }
  }));
