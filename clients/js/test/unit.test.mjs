// The SDK's pure pieces, without a server: backoff, pacing, positions, token expiry.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, toCodePoints, toUtf16 } from "../dist/index.js";
import { Pacer, tokenExpiry, codePointLength, utf8Length } from "../dist/util.js";

test("backoff is full jitter under an exponentially growing, capped ceiling", () => {
  assert.equal(backoffDelay(0, 500, 15000, () => 0.999999), 499);
  assert.equal(backoffDelay(3, 500, 15000, () => 0.999999), 3999);
  assert.equal(backoffDelay(10, 500, 15000, () => 0.999999), 14999);
  assert.equal(backoffDelay(10, 500, 15000, () => 0), 0);
  const samples = Array.from({ length: 200 }, () => backoffDelay(4, 500, 15000));
  assert.ok(samples.every((d) => d >= 0 && d < 8000));
  assert.ok(new Set(samples).size > 100, "spread, not fixed");
});

test("the pacer allows its burst, then its rate, and a pause holds it", () => {
  let now = 0;
  const p = new Pacer(10, 3, () => now);
  for (let i = 0; i < 3; i++) {
    assert.equal(p.delay(), 0);
    p.take();
  }
  assert.equal(p.delay(), 100);
  now += 100;
  assert.equal(p.delay(), 0);
  p.take();
  p.pause(500);
  assert.equal(p.delay(), 600);
});

test("positions convert between UTF-16 units and code points", () => {
  const text = "a😀b é";
  assert.equal(toCodePoints(text, 1), 1);
  assert.equal(toCodePoints(text, 3), 2);
  assert.equal(toCodePoints(text, 2), 1, "inside a surrogate pair rounds down");
  assert.equal(toUtf16(text, 2), 3);
  assert.equal(toUtf16(text, 99), text.length);
  assert.equal(codePointLength("😀😀"), 2);
  assert.equal(utf8Length("é😀"), 6);
});

test("a token's exp is read without verifying it", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  assert.equal(tokenExpiry(`${b64({ alg: "HS256" })}.${b64({ sub: "a", exp: 1700000000 })}.sig`), 1700000000000);
  assert.equal(tokenExpiry("not a jwt"), undefined);
});
