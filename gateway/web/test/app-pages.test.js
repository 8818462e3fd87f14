// Static checks of the two HTML pages against their CSP and the test hooks.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

const page = (name) => readFile(new URL(`../pages/${name}`, import.meta.url), "utf8");
const tags = (html, name) => html.match(new RegExp(`<${name}\\b[^>]*>`, "gi")) || [];
const attr = (tag, name) => (new RegExp(`\\s${name}="([^"]*)"`, "i").exec(tag) || [])[1];

for (const [name, assets] of [
  ["dashboard.html", ["/assets/app.css", "/assets/dashboard.js"]],
  ["player.html", ["/assets/rrweb.css", "/assets/app.css", "/assets/player.js"]],
]) {
  test(`${name}: nothing inline, nothing external`, async () => {
    const html = await page(name);
    for (const script of tags(html, "script")) assert.ok(attr(script, "src"), `inline script: ${script}`);
    assert.doesNotMatch(html, /<style\b/i);
    assert.doesNotMatch(html, /\sstyle="/i);
    assert.doesNotMatch(html, /\son[a-z]+="/i);
    assert.doesNotMatch(html, /(src|href|action)="(https?:)?\/\//i);
    assert.doesNotMatch(html, /javascript:/i);
  });

  test(`${name}: assets by their exact paths`, async () => {
    const html = await page(name);
    const refs = [...tags(html, "script").map((t) => attr(t, "src")), ...tags(html, "link").map((t) => attr(t, "href"))];
    assert.deepEqual(refs.sort(), [...assets].sort());
  });

  test(`${name}: every control has a label`, async () => {
    const html = await page(name);
    const labelled = new Set(tags(html, "label").map((t) => attr(t, "for")));
    for (const control of [...tags(html, "input"), ...tags(html, "select")]) {
      const ok = labelled.has(attr(control, "id")) || attr(control, "aria-label") || attr(control, "type") === "hidden";
      assert.ok(ok, `no label: ${control}`);
    }
  });
}

test("dashboard test hooks and filter names", async () => {
  const html = await page("dashboard.html");
  for (const id of ["sign-in", "usage", "limit-warning", "empty-state", "older", "newer"]) {
    assert.match(html, new RegExp(`data-testid="${id}"`), id);
  }
  for (const name of ["token", "from", "to", "min_duration", "url", "device", "browser", "visitor", "live"]) {
    assert.match(html, new RegExp(`name="${name}"`), name);
  }
  // Without JavaScript the token must never end up in a URL.
  const form = tags(html, "form").find((t) => attr(t, "data-testid") === "sign-in");
  assert.equal(attr(form, "method"), "post");
  assert.equal(attr(tags(html, "input").find((t) => attr(t, "name") === "token"), "type"), "password");
});

test("player test hooks", async () => {
  const html = await page("player.html");
  for (const id of ["play", "speed-1", "speed-2", "speed-4", "speed-8", "timeline", "share", "share-url", "download", "replay", "current-time"]) {
    assert.match(html, new RegExp(`data-testid="${id}"`), id);
  }
});
