import assert from "node:assert/strict";
import { test } from "node:test";
import { FILTER_KEYS, apiQuery, hasFilters, localDayStart, readQuery, validateFilters, writeQuery } from "../app/filters.js";

test("the filter names are the API's parameters", () => {
  assert.deepEqual(FILTER_KEYS, ["from", "to", "min_duration", "url", "device", "browser", "visitor"]);
});

test("page query -> state: trimmed, empty dropped, unknown ignored", () => {
  const s = readQuery("?site=shop&from=2024-06-01&url=%20%2Fcheckout%20&device=&live=1&cursor=abc&x=1");
  assert.deepEqual(s, { site: "shop", live: true, filters: { from: "2024-06-01", url: "/checkout" } });
  assert.deepEqual(readQuery(""), { site: null, live: false, filters: {} });
  assert.equal(readQuery("live=true").live, true);
  assert.equal(readQuery("live=0").live, false);
});

test("state -> page query: stable order, round trip", () => {
  const state = { site: "shop", live: true, filters: { visitor: "ann@example.com", from: "2024-06-01", min_duration: "30" } };
  const q = writeQuery(state);
  assert.equal(q, "?site=shop&from=2024-06-01&min_duration=30&visitor=ann%40example.com&live=1");
  assert.deepEqual(readQuery(q), state);
  assert.equal(writeQuery({ site: null, live: false, filters: {} }), "");
  assert.equal(writeQuery({ site: null, live: false, filters: { url: "  " } }), "");
});

test("hasFilters ignores the site and the live toggle", () => {
  assert.equal(hasFilters({ site: "a", live: true, filters: {} }), false);
  assert.equal(hasFilters({ site: "a", live: false, filters: { browser: "Chrome" } }), true);
});

test("days are the viewer's local days; 'to' includes its whole day", () => {
  assert.equal(localDayStart("2024-06-01"), new Date(2024, 5, 1).toISOString());
  assert.equal(localDayStart("2024-06-30", 1), new Date(2024, 6, 1).toISOString());
  assert.equal(localDayStart("2024-12-31", 1), new Date(2025, 0, 1).toISOString());
  assert.equal(localDayStart("2024-06-01T10:00:00Z"), null);
  const params = new URLSearchParams(
    apiQuery({ site: "shop", live: false, filters: { from: "2024-06-01", to: "2024-06-03", device: "mobile" } }),
  );
  assert.equal(params.get("from"), new Date(2024, 5, 1).toISOString());
  assert.equal(params.get("to"), new Date(2024, 5, 4).toISOString());
  assert.equal(params.get("device"), "mobile");
  assert.equal(params.get("site"), "shop");
  assert.equal(params.get("limit"), "50");
  assert.equal(params.has("live"), false);
  assert.equal(params.has("cursor"), false);
});

test("apiQuery passes exact times through and adds paging and live", () => {
  const params = new URLSearchParams(
    apiQuery({ site: null, live: true, filters: { from: "2024-06-01T10:00:00Z", visitor: "a b" } }, { cursor: "c1", limit: 20 }),
  );
  assert.equal(params.get("from"), "2024-06-01T10:00:00Z");
  assert.equal(params.get("visitor"), "a b");
  assert.equal(params.get("live"), "1");
  assert.equal(params.get("cursor"), "c1");
  assert.equal(params.get("limit"), "20");
  assert.equal(params.has("site"), false);
});

test("validateFilters catches what the API would refuse", () => {
  assert.equal(validateFilters({}), null);
  assert.equal(validateFilters({ min_duration: "30" }), null);
  assert.match(validateFilters({ min_duration: "-1" }), /^min_duration: /);
  assert.match(validateFilters({ min_duration: "abc" }), /^min_duration: /);
  assert.match(validateFilters({ from: "2024-06-05", to: "2024-06-01" }), /^from: /);
  assert.equal(validateFilters({ from: "2024-06-01", to: "2024-06-01" }), null);
});
