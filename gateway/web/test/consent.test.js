import assert from "node:assert/strict";
import { test } from "node:test";
import { consentDecision, cookieVerdict, parseCookies, valueGrantsConsent } from "../src/consent.js";

test("parseCookies", () => {
  assert.deepEqual(parseCookies("a=1; b=two; c="), { a: "1", b: "two", c: "" });
  assert.deepEqual(parseCookies("a=1;a=2"), { a: "1" });
  assert.deepEqual(parseCookies('x=a=b; junk; ;y =  z ; q="yes"'), { x: "a=b", y: "z", q: "yes" });
  assert.deepEqual(parseCookies(""), {});
  assert.deepEqual(parseCookies(undefined), {});
});

test("verdict: accepts, refuses, absent", () => {
  const spec = { name: "consent", values: ["yes", "all"] };
  assert.equal(cookieVerdict("consent=yes", spec), true);
  assert.equal(cookieVerdict("other=1; consent=all", spec), true);
  assert.equal(cookieVerdict('consent="yes"', spec), true);
  assert.equal(cookieVerdict("consent=no", spec), false);
  assert.equal(cookieVerdict("consent=YES", spec), false);
  assert.equal(cookieVerdict("xconsent=yes", spec), null);
  assert.equal(cookieVerdict("", spec), null);
  assert.equal(cookieVerdict("consent=yes", null), null);
  assert.equal(cookieVerdict("consent=yes", { name: "", values: ["yes"] }), null);
  assert.equal(cookieVerdict("consent=yes", { name: "consent", values: [] }), false);
});

// The gateway's own examples (gateway/collect/policy.py _cookie_accepts).
test("items of CMP cookies: CookieYes, Cookiebot, OneTrust, pipes", () => {
  const given = "consentid:abc,consent:yes,action:yes,necessary:yes,functional:no,analytics:yes,performance:no";
  assert.equal(valueGrantsConsent(given, ["analytics:yes"]), true);
  assert.equal(valueGrantsConsent(given.replace("analytics:yes", "analytics:no"), ["analytics:yes"]), false);
  assert.equal(valueGrantsConsent(encodeURIComponent(given), ["analytics:yes"]), true);
  assert.equal(valueGrantsConsent("{necessary:true,statistics:true,marketing:false}", ["statistics:true"]), true);
  assert.equal(valueGrantsConsent("-1", ["-1"]), true);
  assert.equal(valueGrantsConsent("ads=0|analytics=1", ["analytics=1"]), true);
  const ot = "isGpcEnabled=0&datestamp=Mon+Jan+01&groups=C0001%3A1%2CC0002%3A1%2CC0003%3A0";
  assert.equal(valueGrantsConsent(ot, ["C0002:1"]), true);
  assert.equal(valueGrantsConsent(ot, ["C0001:1"]), true); // the first group, behind "groups="
  assert.equal(valueGrantsConsent(ot.replace("C0002%3A1", "C0002%3A0"), ["C0002:1"]), false);
  assert.equal(valueGrantsConsent("'yes' , x", ["yes"]), true);
});

test("a value never matches part of an item", () => {
  assert.equal(valueGrantsConsent("analytics:yesno", ["analytics:yes"]), false);
  assert.equal(valueGrantsConsent("analytics:yes", ["yes"]), false);
  assert.equal(valueGrantsConsent("a=yes", ["yes"]), false); // "name=V" only for key:value V
  assert.equal(valueGrantsConsent("yes-please", ["yes"]), false);
  assert.equal(valueGrantsConsent("C0002:10", ["C0002:1"]), false);
  assert.equal(valueGrantsConsent("a;yes", ["yes"]), false);
  assert.equal(valueGrantsConsent("bad%zz,ok", ["ok"]), true);
});

test("the consent decision follows the gateway's", () => {
  const table = [
    // mode, page said, cookie verdict, decision
    ["none", null, null, "ok"],
    ["none", null, false, "ok"],
    ["none", true, null, "given"],
    ["none", false, true, "refused"],
    ["opt-in", null, null, "pending"],
    ["opt-in", true, null, "given"],
    ["opt-in", null, true, "given"],
    ["opt-in", true, false, "pending"], // a refusing cookie wins over the page's yes
    ["opt-in", false, true, "refused"],
    ["opt-out", null, null, "ok"],
    ["opt-out", null, true, "given"],
    ["opt-out", null, false, "refused"],
    ["opt-out", false, null, "refused"],
    ["opt-out", true, null, "given"],
  ];
  for (const [mode, page, cookie, want] of table) assert.equal(consentDecision(mode, page, cookie), want, `${mode} ${page} ${cookie}`);
});
