import assert from "node:assert/strict";
import { createHash, webcrypto } from "node:crypto";
import { test } from "node:test";
import { randomId, sampledIn } from "../src/ids.js";
import { sha256hex } from "../src/sha256.js";

test("sha256hex matches node's crypto", () => {
  const inputs = ["", "abc", "a".repeat(55), "a".repeat(56), "a".repeat(64), "x".repeat(1000), "café ✓ 😀"];
  for (let i = 0; i < 200; i++) inputs.push(randomId(1 + (i % 90)));
  for (const s of inputs) assert.equal(sha256hex(s), createHash("sha256").update(s, "utf8").digest("hex"), s);
});

test("randomId: 22 characters of [A-Za-z0-9-], all different", () => {
  const seen = new Set();
  for (let i = 0; i < 2000; i++) {
    const id = randomId(22, webcrypto);
    assert.match(id, /^[A-Za-z0-9-]{22}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 2000);
  const chars = new Set(Array.from({ length: 200 }, () => randomId(22)).join(""));
  assert.equal(chars.size, 63);
});

test("sampling: deterministic, the gateway's formula, about the rate", () => {
  const formula = (s, r) => parseInt(createHash("sha256").update(s).digest("hex").slice(0, 8), 16) / 2 ** 32 < r;
  let kept = 0;
  for (let i = 0; i < 4000; i++) {
    const s = randomId();
    const got = sampledIn(s, 0.25);
    assert.equal(got, formula(s, 0.25));
    assert.equal(sampledIn(s, 0.25), got);
    if (got) kept++;
  }
  assert.ok(kept > 850 && kept < 1150, String(kept));
  assert.equal(sampledIn("abc", 1), true);
  assert.equal(sampledIn("abc", 0), false);
  assert.equal(sampledIn("abc", undefined), true);
});
