// ot-fuzzer 1.3.1 drives the server's OT type (src/core/ot through ot-js): random ops from three
// sites, apply, compose, the diamond property (TP1) and n×m transforms, on documents with astral
// characters and combining marks. OT_FUZZ_ITERATIONS sets the count (default 10,000).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generator, random } from "./gen.mjs";

const require = createRequire(import.meta.url);
const ITERATIONS = Number(process.env.OT_FUZZ_ITERATIONS ?? 10_000);

test(`ot-fuzzer: ${ITERATIONS} iterations against the server's type`, () => {
  // The fuzzer keeps its state file, fuzzercrash.data, in the working directory (it saves there
  // whatever SYNCFILE says), so it runs in a fresh one; SEED is read when it loads.
  const dir = mkdtempSync(join(tmpdir(), "ot-fuzzer-"));
  const cwd = process.cwd();
  process.env.SEED = "1";
  process.chdir(dir);
  try {
    const fuzzer = require("ot-fuzzer");
    const npm = require("ot-text-unicode").type;
    const ours = require("../type.cjs");
    const g = generator(random(7));
    // [op, expected document], the document computed by the generator, not by `apply`.
    const genRandomOp = (doc) => {
      const { components, result } = g.rawOp(doc);
      return [npm.normalize(components), result];
    };
    const calls = { apply: 0, transform: 0, compose: 0 };
    const counted = Object.fromEntries(
      Object.entries(ours).map(([k, f]) => [k, typeof f === "function" && k in calls ? (...a) => (calls[k]++, f(...a)) : f]),
    );
    fuzzer(counted, genRandomOp, ITERATIONS);
    assert.ok(calls.transform > ITERATIONS && calls.compose > 0 && calls.apply > ITERATIONS, JSON.stringify(calls));
  } finally {
    process.chdir(cwd);
    rmSync(dir, { recursive: true, force: true });
  }
});
