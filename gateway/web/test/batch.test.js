import assert from "node:assert/strict";
import { test } from "node:test";
import {
  buildBody,
  classify,
  envelopeBytes,
  fixSurrogates,
  halve,
  isActivity,
  parseRetryAfter,
  retryDelay,
  splitEvents,
  stringifyEvent,
  utf8Length,
} from "../src/batch.js";

test("utf8Length equals the encoded length", () => {
  for (const s of ["", "abc", "é", "€", "😀", "a😀b", "\ud800", "x\udc00y", "mixed é€😀\ud83d"]) {
    assert.equal(utf8Length(s), new TextEncoder().encode(s).length, JSON.stringify(s));
  }
});

test("lone surrogates become U+FFFD, pairs stay", () => {
  assert.equal(fixSurrogates("ok"), "ok");
  assert.equal(fixSurrogates("a😀b"), "a😀b");
  assert.equal(fixSurrogates("a\ud83db"), "a\ufffdb");
  assert.equal(fixSurrogates("\ude00x\ud83d"), "\ufffdx\ufffd");
  const json = stringifyEvent({ type: 3, data: { text: "broken \ud83d emoji", ok: "😀" }, timestamp: 1 });
  assert.equal(JSON.parse(json).data.text, "broken \ufffd emoji");
  assert.equal(JSON.parse(json).data.ok, "😀");
  assert.doesNotMatch(json, /\\ud8/);
  const cyclic = {};
  cyclic.self = cyclic;
  assert.equal(stringifyEvent(cyclic), undefined);
});

test("body: the wire format", () => {
  const events = [stringifyEvent({ type: 4, data: { href: "https://s.test/" }, timestamp: 5 })];
  const meta = { session: "S".repeat(22), page: "P".repeat(22), url: "https://s.test/" };
  assert.deepEqual(JSON.parse(buildBody(meta, 3, events)), {
    session: meta.session,
    page: meta.page,
    seq: 3,
    url: "https://s.test/",
    events: [{ type: 4, data: { href: "https://s.test/" }, timestamp: 5 }],
  });
  const full = JSON.parse(buildBody({ ...meta, consent: true, visitor: "V1" }, 0, []));
  assert.equal(full.consent, true);
  assert.equal(full.visitor, "V1");
  assert.deepEqual(full.events, []);
  assert.equal("consent" in JSON.parse(buildBody({ ...meta, consent: false }, 0, [])), false);
});

test("splitEvents keeps every body within the limit, order kept", () => {
  const meta = { session: "s", page: "p", url: "https://s.test/é" };
  const envelope = envelopeBytes(meta);
  const events = [];
  for (let i = 0; i < 300; i++) events.push(JSON.stringify({ i, pad: "é".repeat((i * 37) % 500) }));
  const max = 4096;
  const chunks = splitEvents(events, max, envelope);
  assert.deepEqual(chunks.flat(), events);
  chunks.forEach((chunk, n) => {
    const size = utf8Length(buildBody(meta, 100 + n, chunk));
    assert.ok(size <= max, `chunk ${n}: ${size}`);
    assert.ok(chunk.length > 0);
  });
  // An event bigger than the limit travels alone.
  const big = JSON.stringify({ big: "x".repeat(10000) });
  const mixed = splitEvents(["1", big, "2"], max, envelope);
  assert.deepEqual(mixed, [["1"], [big], ["2"]]);
  assert.deepEqual(splitEvents([], max, envelope), []);
});

test("halve (413 answers)", () => {
  assert.deepEqual(halve(["a", "b", "c"]), [["a", "b"], ["c"]]);
  assert.deepEqual(halve(["a", "b"]), [["a"], ["b"]]);
  assert.equal(halve(["a"]), null);
});

test("retry timing: 1 s, 2 s, 4 s, 8 s, or a longer Retry-After", () => {
  assert.deepEqual([1, 2, 3, 4].map((t) => retryDelay(t, null)), [1000, 2000, 4000, 8000]);
  assert.equal(retryDelay(1, 30000), 30000);
  assert.equal(retryDelay(3, 1000), 4000);
  assert.equal(retryDelay(1, 10 * 3600 * 1000), 5 * 60 * 1000);
  assert.equal(parseRetryAfter("7"), 7000);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter("soon"), null);
  const now = Date.parse("2025-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("Wed, 01 Jan 2025 00:00:10 GMT", now), 10000);
  assert.equal(parseRetryAfter("Tue, 31 Dec 2024 00:00:00 GMT", now), 0);
});

test("classify answers", () => {
  assert.equal(classify(200), "ok");
  assert.equal(classify(204), "ok");
  assert.equal(classify(413), "split");
  for (const s of [0, 408, 429, 500, 502, 503, 504]) assert.equal(classify(s), "retry", String(s));
  for (const s of [400, 401, 403, 404, 415]) assert.equal(classify(s), "drop", String(s));
});

test("activity events: what the gateway counts as the visitor's own", () => {
  for (const source of [1, 2, 3, 5, 6, 12, 14]) assert.equal(isActivity({ type: 3, data: { source } }), true, String(source));
  for (const source of [0, 4, 7, 8, 9, 10, 11, 13, 15, 16]) assert.equal(isActivity({ type: 3, data: { source } }), false, String(source));
  assert.equal(isActivity({ type: 2, data: {} }), false);
  assert.equal(isActivity({ type: 5, data: { tag: "identify" } }), false);
  assert.equal(isActivity(null), false);
});
