import assert from "node:assert/strict";
import { test } from "node:test";
import { formatBytes, formatClock, formatDate, formatDateTime, formatDuration, formatNumber, pathOf } from "../app/format.js";

test("durations read as seconds, minutes, hours", () => {
  assert.equal(formatDuration(0), "0 s");
  assert.equal(formatDuration(999), "0 s");
  assert.equal(formatDuration(45_000), "45 s");
  assert.equal(formatDuration(59_999), "59 s"); // rounded down, like the min_duration filter
  assert.equal(formatDuration(60_000), "1 min 00 s");
  assert.equal(formatDuration(125_000), "2 min 05 s");
  assert.equal(formatDuration(3_725_000), "1 h 02 min");
  assert.equal(formatDuration(null), "\u2013");
  assert.equal(formatDuration(-5), "\u2013");
  assert.equal(formatDuration(Number.NaN), "\u2013");
});

test("the player clock", () => {
  assert.equal(formatClock(0), "0:00");
  assert.equal(formatClock(5_400), "0:05");
  assert.equal(formatClock(125_000), "2:05");
  assert.equal(formatClock(3_725_000), "1:02:05");
  assert.equal(formatClock(-10), "0:00");
  assert.equal(formatClock(undefined), "0:00");
});

test("dates in the viewer's zone, readable", () => {
  const opts = { locale: "en-GB", timeZone: "Europe/Paris" };
  const text = formatDateTime("2024-06-03T12:05:09.000Z", opts);
  assert.match(text, /Mon/);
  assert.match(text, /3 Jun 2024/);
  assert.match(text, /14:05/); // UTC+2 in June
  assert.doesNotMatch(text, /:09/);
  assert.match(formatDateTime("2024-06-03T12:05:09Z", { ...opts, seconds: true }), /14:05:09/);
  assert.equal(formatDateTime("not a date", opts), "\u2013");
  assert.equal(formatDateTime(null, opts), "\u2013");
  assert.equal(formatDate(new Date(Date.UTC(2024, 6, 1)), { locale: "en-GB", timeZone: "UTC" }), "1 July 2024");
});

test("numbers and sizes", () => {
  assert.equal(formatNumber(12345, { locale: "en-US" }), "12,345");
  assert.equal(formatNumber(undefined), "\u2013");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KB");
  assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MB");
  assert.equal(formatBytes(300 * 1024 * 1024), "300 MB");
});

test("paths of recorded URLs", () => {
  assert.equal(pathOf("https://shop.example/checkout?step=2#x"), "/checkout?step=2");
  assert.equal(pathOf("https://shop.example"), "/");
  assert.equal(pathOf("not a url"), "not a url");
  assert.equal(pathOf(undefined), "");
});
