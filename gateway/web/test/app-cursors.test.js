import assert from "node:assert/strict";
import { test } from "node:test";
import { CursorStack } from "../app/cursors.js";

test("older and newer walk a stack of cursors", () => {
  const p = new CursorStack();
  assert.equal(p.current, null);
  assert.equal(p.hasOlder, false);
  assert.equal(p.hasNewer, false);
  assert.equal(p.older(), false);
  p.setNext("c2");
  assert.equal(p.hasOlder, true);
  assert.equal(p.older(), true);
  assert.equal(p.current, "c2");
  assert.equal(p.page, 2);
  assert.equal(p.hasNewer, true);
  p.setNext("c3");
  p.older();
  assert.equal(p.current, "c3");
  p.setNext(null);
  assert.equal(p.hasOlder, false);
  assert.equal(p.newer(), true);
  assert.equal(p.current, "c2");
  assert.equal(p.newer(), true);
  assert.equal(p.current, null);
  assert.equal(p.page, 1);
  assert.equal(p.newer(), false);
});

test("reset goes back to the newest page; empty cursors mean none", () => {
  const p = new CursorStack();
  p.setNext("c2");
  p.older();
  p.reset();
  assert.deepEqual([p.current, p.next, p.page], [null, null, 1]);
  p.setNext("");
  assert.equal(p.hasOlder, false);
});
