import assert from "node:assert/strict";
import { test } from "node:test";
import { StormGuard, mutationCount } from "../src/storm.js";

test("mutationCount", () => {
  assert.equal(mutationCount({ type: 3, data: { source: 0, adds: [1, 2], removes: [1], texts: [], attributes: [1] } }), 4);
  assert.equal(mutationCount({ type: 3, data: { source: 0, adds: [], removes: [], texts: [], attributes: [] } }), 1);
  assert.equal(mutationCount({ type: 3, data: { source: 1 } }), 0);
  assert.equal(mutationCount({ type: 2, data: {} }), 0);
  assert.equal(mutationCount(null), 0);
});

test("a storm drops events until a calm second, once per storm", () => {
  const g = new StormGuard(100, 10, 1000);
  assert.equal(g.note(60, 0), false);
  assert.equal(g.note(30, 500), false);
  assert.equal(g.note(0, 600), false); // non-mutation events pass
  assert.equal(g.note(20, 900), true); // 110 > 100 within one second
  assert.equal(g.storm, true);
  assert.equal(g.storms, 1);
  assert.equal(g.note(0, 950), true); // everything is dropped meanwhile
  assert.equal(g.note(50, 1500), true);
  assert.equal(g.tick(1900), false); // 50 mutations in that second: not calm
  assert.equal(g.note(5, 2100), true);
  assert.equal(g.tick(2900), true); // 5 <= 10: over
  assert.equal(g.storm, false);
  assert.equal(g.note(90, 3000), false);
  assert.equal(g.note(90, 4100), false); // a new window
  assert.equal(g.storms, 1);
});
