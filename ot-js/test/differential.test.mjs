// The server's OT type (src/core/ot through ot-js) against the npm package ot-text-unicode 4.0.0,
// result for result: apply, transform on both sides, compose, transformPosition and normalize on
// random documents and ops. OT_CASES sets the count (default 100,000; `npm run ot:diff` runs a
// million), OT_SEED the seed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { generator, random } from "./gen.mjs";

const require = createRequire(import.meta.url);
const ours = require("../type.cjs");
const npm = require("ot-text-unicode").type;

const CASES = Number(process.env.OT_CASES ?? 100_000);
const SEED = Number(process.env.OT_SEED ?? 20261125);

test(`${CASES} random cases agree with ot-text-unicode 4.0.0 (seed ${SEED})`, () => {
  const g = generator(random(SEED));
  const counts = { apply: 0, transform: 0, compose: 0, transformPosition: 0, normalize: 0 };
  for (let i = 0; i < CASES; i++) {
    const doc = g.doc();
    const rawA = g.rawOp(doc);
    const rawB = g.rawOp(doc);
    const context = () => JSON.stringify({ case: i, doc, a: rawA.components, b: rawB.components });

    // normalize: ours accepts what the npm type's normalize accepts (no empty components).
    // (The npm normalize merges deletes into its input's objects, so it gets copies.)
    const a = npm.normalize(structuredClone(rawA.components));
    const b = npm.normalize(structuredClone(rawB.components));
    assert.deepEqual(ours.normalize(rawA.components), a, `normalize ${context()}`);
    counts.normalize++;

    const afterA = npm.apply(doc, a);
    assert.equal(afterA, rawA.result, `the generator and the npm type disagree ${context()}`);
    assert.equal(ours.apply(doc, a), afterA, `apply ${context()}`);
    counts.apply++;

    for (const side of ["left", "right"]) {
      assert.deepEqual(ours.transform(a, b, side), npm.transform(a, b, side), `transform ${side} ${context()}`);
      counts.transform++;
    }

    const c = npm.normalize(structuredClone(g.rawOp(afterA).components));
    assert.deepEqual(ours.compose(a, c), npm.compose(a, c), `compose ${context()} c=${JSON.stringify(c)}`);
    counts.compose++;

    const cursor = g.int(g.cps(doc).length + 1);
    assert.equal(ours.transformPosition(cursor, a), npm.transformPosition(cursor, a), `position ${cursor} ${context()}`);
    counts.transformPosition++;
  }
  console.log(`ot differential: ${JSON.stringify(counts)}`);
});

test("invalid ops are errors in both, never crashes", () => {
  const bad = [[0], [""], [{ d: 0 }], [{ d: "" }], [1, 2], ["a", 3], [-1], [null], [[1]], "x"];
  // The npm type lets these through (its check has no case for them); the server refuses them.
  const oursOnly = [[true], [1.5, "a"], [{ d: 1, x: 2 }]];
  for (const op of [...bad, ...oursOnly]) {
    if (bad.includes(op)) assert.throws(() => npm.checkOp(op), undefined, `npm accepts ${JSON.stringify(op)}`);
    assert.throws(() => ours.checkOp(op), undefined, `ours accepts ${JSON.stringify(op)}`);
    assert.throws(() => ours.apply("abc", op));
    assert.throws(() => ours.transform(op, [1, "x"], "left"));
  }
  assert.throws(() => ours.apply("ab", [3, "x"]), /past the end/);
  assert.throws(() => ours.apply("ab", [1, { d: 2 }]), /past the end/, "npm silently clips; the server refuses");
  assert.throws(() => ours.transform(["a"], ["b"], "middle"), /side/);
});
