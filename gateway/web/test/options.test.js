import assert from "node:assert/strict";
import { test } from "node:test";
import { INPUT_MASK } from "../src/mask.js";
import { recordOptions } from "../src/options.js";
import { parseSettings } from "../src/env.js";

const input = (type, value) => ({ type, getAttribute: () => null, hasAttribute: () => false, closest: () => null, value });

test("rrweb options follow the settings", () => {
  const emit = () => {};
  const o = recordOptions({ maskInputs: false, maskEmails: true, maskNumbers: false }, emit);
  assert.equal(o.emit, emit);
  assert.equal("maskAllInputs" in o, false); // would replace maskInputOptions and skip hidden inputs
  for (const key of ["input", "textarea", "select", "hidden", "password", "email", "text", "tel", "number"]) {
    assert.equal(o.maskInputOptions[key], true, key);
  }
  assert.equal(o.maskTextSelector, "*");
  assert.equal(o.blockSelector, "[data-rec-block], .rr-block");
  assert.equal(o.recordCanvas, false);
  assert.equal(o.collectFonts, false);
  assert.equal(o.inlineImages, false);
  assert.deepEqual(o.sampling, { mousemove: 50, scroll: 150, media: 800, input: "last" });
  assert.equal(o.errorHandler(new Error("x")), true);
  assert.equal(o.maskInputFn("Bob", input("text")), "Bob");
  assert.equal(o.maskInputFn("tok", input("hidden")), INPUT_MASK);
  assert.equal(o.maskInputFn("a@b.io", input("email")), "***@***");
  assert.equal(o.maskTextFn("call 555", null), "call 555");
  const masked = recordOptions({ maskInputs: true, maskEmails: true, maskNumbers: true }, emit);
  assert.equal(masked.maskInputFn("Bob", input("text")), INPUT_MASK);
  assert.equal(masked.maskTextFn("call 555", null), "call ***");
});

test("settings: the gateway's JSON, with safe defaults", () => {
  const full = parseSettings(
    JSON.stringify({
      consent: "opt-in",
      consentCookie: { name: "cmp", values: ["yes", 3] },
      endpoint: "/__rec/v1/batch",
      exclude: ["/admin/*", 5],
      maskEmails: false,
      maskInputs: false,
      maskNumbers: false,
      recordMobile: false,
      respectGpc: false,
      sampleRate: 0.5,
    }),
  );
  assert.deepEqual(full, {
    endpoint: "/__rec/v1/batch",
    maskInputs: false,
    maskNumbers: false,
    maskEmails: false,
    recordMobile: false,
    consent: "opt-in",
    consentCookie: { name: "cmp", values: ["yes"] },
    respectGpc: false,
    sampleRate: 0.5,
    exclude: ["/admin/*"],
  });
  const bare = parseSettings('{"endpoint": "/e"}');
  assert.equal(bare.maskInputs && bare.maskEmails && bare.maskNumbers && bare.respectGpc && bare.recordMobile, true);
  assert.equal(bare.consent, "none");
  assert.equal(bare.consentCookie, null);
  assert.equal(bare.sampleRate, 1);
  assert.equal(parseSettings('{"consent": "opt-in"}'), null);
  assert.equal(parseSettings("not json"), null);
  assert.equal(parseSettings(null), null);
  assert.equal(parseSettings('{"endpoint": "/e", "sampleRate": 7}').sampleRate, 1);
});
