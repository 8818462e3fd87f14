import assert from "node:assert/strict";
import { test } from "node:test";
import { compilePatterns, isExcluded, normalizePath } from "../src/patterns.js";

test("normalizePath mirrors the gateway's normalize_path", () => {
  const cases = [
    ["/", "/"],
    ["", "/"],
    ["/a/b", "/a/b"],
    ["/a/b/", "/a/b/"],
    ["//a///b", "/a/b"],
    ["/a/./b/../c", "/a/c"],
    ["/../../a", "/a"],
    ["/a/..", "/"],
    ["/a/../", "/"],
    ["/%61dmin/x", "/admin/x"],
    ["/admin%2Fx", "/admin/x"],
    ["/a\\b", "/a/b"],
    ["/admin;jsessionid=1/x", "/admin/x"],
    ["/a;p/b;q/", "/a/b/"],
    ["/caf%C3%A9", "/café"],
    ["/bad%E9/x", "/bad\ufffd/x"],
  ];
  for (const [raw, want] of cases) assert.equal(normalizePath(raw), want, raw);
});

test("patterns: * spans anything including '/', whole path, case-blind", () => {
  const re = compilePatterns(["/admin/*", "/account", "/a.b/*/c", "*secret*"]);
  assert.equal(isExcluded(re, "/admin/"), true);
  assert.equal(isExcluded(re, "/admin/users/1"), true);
  assert.equal(isExcluded(re, "/ADMIN/x"), true);
  assert.equal(isExcluded(re, "/Admin%2Fx"), true);
  assert.equal(isExcluded(re, "/x/../admin/y"), true);
  assert.equal(isExcluded(re, "/admin;x=1/y"), true);
  assert.equal(isExcluded(re, "/admin"), false);
  assert.equal(isExcluded(re, "/administrator"), false);
  assert.equal(isExcluded(re, "/account"), true);
  assert.equal(isExcluded(re, "/account/"), false);
  assert.equal(isExcluded(re, "/a.b/1/2/c"), true);
  assert.equal(isExcluded(re, "/aXb/1/c"), false); // '.' is literal
  assert.equal(isExcluded(re, "/my/top-secret/page"), true);
  assert.equal(isExcluded(re, "/shop"), false);
});

test("patterns: regex metacharacters are literal", () => {
  const re = compilePatterns(["/p(1)+[x]?/$^|{2}.html"]);
  assert.equal(isExcluded(re, "/p(1)+[x]?/$^|{2}.html"), true);
  assert.equal(isExcluded(re, "/p(1)+[x]?/$^|{2}xhtml"), false);
  assert.equal(isExcluded(re, "/p1/"), false);
});

test("no patterns: nothing excluded", () => {
  assert.equal(compilePatterns([]), null);
  assert.equal(compilePatterns(undefined), null);
  assert.equal(isExcluded(null, "/admin"), false);
  assert.equal(isExcluded(compilePatterns(["*"]), "/anything/at/all"), true);
});
