// The benchmark's smoke profile: every scenario at tiny sizes against Switchboard, the plain-JS
// Durable Object peer, the Socket.IO peer and the native ceiling, with storage on disk, asserting
// only that it ran and counted correctly (no timing).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

test("bench smoke: every scenario runs on every target and loses nothing", async () => {
  const binary = join(root, "target/debug/switchboard-bench");
  const stdout = await new Promise((resolve, reject) =>
    execFile(binary, ["--profile", "smoke"], { cwd: root, env: { ...process.env, SWITCHBOARD_ROOT: root }, timeout: 180_000, maxBuffer: 1 << 24 }, (err, out, errOut) =>
      err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out),
    ),
  );
  const run = JSON.parse(stdout);
  assert.deepEqual(Object.keys(run.results).sort(), ["ceiling", "js-do", "socket.io", "switchboard"]);
  assert.equal(run.storage, "disk");
  for (const [target, r] of Object.entries(run.results)) {
    assert.equal(r.connect[0].failures, 0, target);
    assert.equal(r.connect[0].broadcast_received, r.connect[0].sockets, `${target}: every socket got the broadcast`);
    for (const step of r.fanout.steps) {
      assert.equal(step.delivered, step.sent * r.fanout.receivers, `${target}: fan-out delivered every message`);
    }
    assert.equal(r.rooms.delivered, r.rooms.sent * (r.rooms.members - 1), `${target}: rooms delivered every message`);
    if (target === "ceiling" || target === "js-do") {
      assert.equal(r.notify, null, `${target} has no notify route`);
    } else {
      assert.equal(r.notify.failed_calls, 0, target);
      assert.equal(r.notify.delivered, r.notify.calls * r.notify.connected, `${target}: every connected device got every notification`);
    }
  }
  assert.ok(run.core_us_per_message > 0);
  assert.ok(run.wasm_bytes > 0);
});
