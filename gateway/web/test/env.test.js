import assert from "node:assert/strict";
import { test } from "node:test";
import { isMobile, missingFeature, otherRecorder } from "../src/env.js";

test("mobile: client hints, phone and tablet agents, iPadOS as a Mac", () => {
  assert.equal(isMobile({ userAgentData: { mobile: true }, userAgent: "Mozilla/5.0 (X11; Linux x86_64)" }), true);
  assert.equal(isMobile({ userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148" }), true);
  assert.equal(isMobile({ userAgent: "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Safari/537.36" }), true);
  assert.equal(isMobile({ userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15", maxTouchPoints: 5 }), true);
  assert.equal(isMobile({ userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15", maxTouchPoints: 0 }), false);
  assert.equal(isMobile({ userAgentData: { mobile: false }, userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0" }), false);
  assert.equal(isMobile(undefined), false);
});

test("other recorders", () => {
  assert.equal(otherRecorder({}), null);
  assert.equal(otherRecorder({ hj: () => {} }), "hj");
  assert.equal(otherRecorder({ smartlook: {} }), "smartlook");
  assert.equal(otherRecorder({ FS: {}, clarity: null }), "FS");
  assert.equal(otherRecorder({ LogRocket: {} }), "LogRocket");
});

function browserLike(extra = {}) {
  const store = new Map();
  return {
    Promise,
    fetch: () => {},
    MutationObserver: function MutationObserver() {},
    WeakMap,
    Map,
    Set,
    JSON,
    TextEncoder,
    TextDecoder,
    URL,
    crypto: globalThis.crypto,
    Element: { prototype: { closest() {} } },
    sessionStorage: { setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) },
    ...extra,
  };
}

test("feature detection", () => {
  assert.equal(missingFeature(browserLike()), null);
  assert.equal(missingFeature(browserLike({ fetch: undefined })), "fetch");
  assert.equal(missingFeature(browserLike({ MutationObserver: undefined })), "MutationObserver");
  assert.equal(missingFeature(browserLike({ crypto: undefined })), "crypto");
  const throwing = {
    setItem() {
      throw new Error("SecurityError");
    },
    removeItem() {},
  };
  assert.equal(missingFeature(browserLike({ sessionStorage: throwing })), "sessionStorage");
  const denied = browserLike();
  Object.defineProperty(denied, "sessionStorage", {
    get() {
      throw new Error("access denied");
    },
  });
  assert.equal(missingFeature(denied), "sessionStorage");
});
