import assert from "node:assert/strict";
import { test } from "node:test";
import { fitScale } from "../app/fit.js";
import { capitalize, pagesSummary, retentionDays, visitorLabel } from "../app/recording.js";
import { playerRoute, revokePath, safeNext } from "../app/route.js";
import { shareStatus } from "../app/share.js";
import { nextMonthStart, usageState } from "../app/usage.js";

test("visitor: identified name or email, else the id, else anonymous", () => {
  assert.equal(visitorLabel({ identity: { name: "Ann", email: "ann@x.io" }, visitor: "v1" }), "Ann (ann@x.io)");
  assert.equal(visitorLabel({ identity: { email: "ann@x.io" }, visitor: "v1" }), "ann@x.io");
  assert.equal(visitorLabel({ identity: { id: "42" }, visitor: "v1" }), "v1");
  assert.equal(visitorLabel({ identity: {}, visitor: null }), "anonymous");
  assert.equal(visitorLabel({}), "anonymous");
});

test("pages: first path and how many more", () => {
  assert.deepEqual(pagesSummary(["https://a.io/x?q=1", "https://a.io/y", "https://a.io/z"]), {
    first: "/x?q=1",
    more: 2,
    all: ["https://a.io/x?q=1", "https://a.io/y", "https://a.io/z"],
  });
  assert.deepEqual(pagesSummary([]), { first: "", more: 0, all: [] });
  assert.deepEqual(pagesSummary(undefined), { first: "", more: 0, all: [] });
});

test("labels and retention", () => {
  assert.equal(capitalize("mobile"), "Mobile");
  assert.equal(capitalize(""), "Unknown");
  assert.equal(retentionDays({ created_at: "2024-06-01T10:00:00Z", expires_at: "2024-06-11T10:00:00Z" }), 10);
  assert.equal(retentionDays({ created_at: "x" }), null);
  assert.equal(retentionDays(undefined), null);
});

test("usage: limit reached means no recordings until the 1st of next month", () => {
  assert.equal(nextMonthStart("2024-06").toISOString(), "2024-07-01T00:00:00.000Z");
  assert.equal(nextMonthStart("2024-12").toISOString(), "2025-01-01T00:00:00.000Z");
  assert.equal(nextMonthStart("June"), null);
  assert.deepEqual(usageState({ used: 10000, limit: 10000, remaining: 0 }), {
    used: 10000, limit: 10000, remaining: 0, percent: 100, reached: true, near: false,
  });
  assert.equal(usageState({ used: 9500, limit: 10000, remaining: 500 }).near, true);
  assert.equal(usageState({ used: 10, limit: 10000, remaining: 9990 }).reached, false);
  assert.equal(usageState({ used: 12, limit: 10 }).remaining, 0);
});

test("player routes: admin and shared, with their API paths", () => {
  assert.deepEqual(playerRoute("/recordings/r-1"), {
    shared: false,
    id: "r-1",
    recording: "/api/v1/recordings/r-1",
    events: "/api/v1/recordings/r-1/events",
    exportUrl: "/api/v1/recordings/r-1/export",
    share: "/api/v1/recordings/r-1/share",
    shares: "/api/v1/recordings/r-1/shares",
  });
  assert.deepEqual(playerRoute("/share/tok.en_1/"), {
    shared: true,
    token: "tok.en_1",
    recording: "/share/tok.en_1/api/recording",
    events: "/share/tok.en_1/api/events",
  });
  assert.equal(playerRoute("/recordings/a%2Fb"), null);
  assert.equal(playerRoute("/recordings/%E0"), null);
  assert.equal(playerRoute("/"), null);
  assert.equal(revokePath("s 1"), "/api/v1/shares/s%201");
});

test("after sign-in, only a player page of this origin", () => {
  assert.equal(safeNext("/recordings/abc"), "/recordings/abc");
  for (const bad of ["//evil.example/recordings/x", "https://evil.example/", "/recordings/a/b", "/share/x", "/recordings/\\x", null]) {
    assert.equal(safeNext(bad), null, String(bad));
  }
});

test("the replay shrinks to fit, never grows", () => {
  assert.equal(fitScale(1920, 1080, 960, 2000), 0.5);
  assert.equal(fitScale(390, 844, 1200, 422), 0.5);
  assert.equal(fitScale(800, 600, 1200, 900), 1);
  assert.equal(fitScale(0, 600, 1200, 900), 1);
});

test("share link status", () => {
  const now = Date.parse("2024-06-05T00:00:00Z");
  assert.equal(shareStatus({ revoked: true, expires_at: "2024-06-09T00:00:00Z" }, now), "revoked");
  assert.equal(shareStatus({ revoked: false, expires_at: "2024-06-01T00:00:00Z" }, now), "expired");
  assert.equal(shareStatus({ revoked: false, expires_at: "2024-06-09T00:00:00Z" }, now), "active");
});
