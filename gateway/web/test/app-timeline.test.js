import assert from "node:assert/strict";
import { test } from "node:test";
import { clickTimes, pageIndexAt, pageVisits, percentAt, replayable, timelineMarkers, totalTime } from "../app/timeline.js";

const T = 1_700_000_000_000;
const meta = (t, href) => ({ type: 4, data: { href, width: 1280, height: 800 }, timestamp: T + t });
const full = (t) => ({ type: 2, data: { node: {}, initialOffset: { top: 0, left: 0 } }, timestamp: T + t });
const click = (t) => ({ type: 3, data: { source: 2, type: 2, id: 5, x: 1, y: 1 }, timestamp: T + t });
const move = (t) => ({ type: 3, data: { source: 1, positions: [] }, timestamp: T + t });
const mousedown = (t) => ({ type: 3, data: { source: 2, type: 1, id: 5 }, timestamp: T + t });

const events = [
  meta(0, "https://shop.example/"),
  full(3),
  move(500),
  mousedown(900),
  click(1000),
  meta(5000, "https://shop.example/checkout"),
  full(5004),
  click(6000),
  meta(7000, "https://shop.example/checkout"), // a new snapshot of the same page
  full(7001),
  { type: 4, data: { href: "https://shop.example/thanks", width: 1, height: 1 }, timestamp: T + 9000 }, // SPA route, no snapshot
  click(9500),
  move(10000),
];

test("total time from the first to the last event", () => {
  assert.equal(totalTime(events), 10000);
  assert.equal(totalTime([]), 0);
});

test("pages: one per Meta href change, shown from their snapshot", () => {
  assert.deepEqual(pageVisits(events), [
    { href: "https://shop.example/", time: 3 },
    { href: "https://shop.example/checkout", time: 5004 },
    { href: "https://shop.example/thanks", time: 9000 },
  ]);
});

test("a snapshot far after the Meta event does not move the page time", () => {
  assert.deepEqual(pageVisits([meta(0, "a"), move(10), full(2500)]), [{ href: "a", time: 0 }]);
});

test("clicks are MouseInteraction Click only", () => {
  assert.deepEqual(clickTimes(events), [1000, 6000, 9500]);
});

test("markers: pages and clicks, by time, page first on a tie", () => {
  const m = timelineMarkers(events);
  assert.deepEqual(
    m.map((x) => [x.kind, x.time]),
    [
      ["page", 3],
      ["click", 1000],
      ["page", 5004],
      ["click", 6000],
      ["page", 9000],
      ["click", 9500],
    ],
  );
  assert.equal(m[1].count, 1);
  assert.equal(m[0].href, "https://shop.example/");
});

test("busy clicks share one marker per slot", () => {
  const many = [full(0), ...Array.from({ length: 1000 }, (_, i) => click(i * 10 + 1)), move(10000)];
  const clicks = timelineMarkers(many, { slots: 10 }).filter((x) => x.kind === "click");
  assert.equal(clicks.length, 10);
  assert.equal(clicks.reduce((n, c) => n + c.count, 0), 1000);
  assert.equal(clicks[0].time, 1);
});

test("positions and the page at a time", () => {
  assert.equal(percentAt(2500, 10000), 25);
  assert.equal(percentAt(20000, 10000), 100);
  assert.equal(percentAt(5, 0), 0);
  const visits = pageVisits(events);
  assert.equal(pageIndexAt(visits, 0), -1);
  assert.equal(pageIndexAt(visits, 3), 0);
  assert.equal(pageIndexAt(visits, 6000), 1);
  assert.equal(pageIndexAt(visits, 99999), 2);
});

test("replayable needs two events and a full snapshot", () => {
  assert.equal(replayable(events), true);
  assert.equal(replayable([full(0)]), false);
  assert.equal(replayable([meta(0, "a"), move(1)]), false);
  assert.equal(replayable(null), false);
});
