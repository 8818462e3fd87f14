import assert from "node:assert/strict";
import { test } from "node:test";
import {
  blankText,
  CARD_MASK,
  EMAIL_MASK,
  INPUT_MASK,
  isSecretInput,
  luhn,
  maskCards,
  maskInputValue,
  maskText,
  maskTextNode,
  maskUrl,
  NUMBER_MASK,
} from "../src/mask.js";

// A stand-in for an element: just what the masking functions read.
function el({ type = "text", attrs = {}, masked = false, editable = false } = {}) {
  return {
    type,
    isContentEditable: editable,
    getAttribute: (n) => (n in attrs ? attrs[n] : null),
    hasAttribute: (n) => n in attrs,
    closest: (sel) => (masked && sel.includes("data-rec-mask") ? {} : null),
  };
}

test("luhn", () => {
  for (const ok of ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "79927398713"]) {
    assert.equal(luhn(ok), true, ok);
  }
  for (const bad of ["4111111111111112", "1234567812345678", "", "4111-1111", "abc"]) assert.equal(luhn(bad), false, bad);
});

test("card numbers are masked whole, grouped or not, whatever the settings", () => {
  assert.equal(maskCards("pay 4111111111111111 now"), `pay ${CARD_MASK} now`);
  assert.equal(maskCards("4111 1111 1111 1111"), CARD_MASK);
  assert.equal(maskCards("4111-1111-1111-1111"), CARD_MASK);
  assert.equal(maskCards("amex 3782 822463 10005."), `amex ${CARD_MASK}.`);
  // Not Luhn-valid, or too short: left alone.
  assert.equal(maskCards("order 1234567812345678"), "order 1234567812345678");
  assert.equal(maskCards("call 0123 456 789"), "call 0123 456 789");
  // A card followed by more digit groups ("4111 ... 1111 2029").
  assert.equal(maskCards("4111 1111 1111 1111 2029"), `${CARD_MASK} 2029`);
  assert.equal(maskCards("ref 12 4111 1111 1111 1111"), `ref 12 ${CARD_MASK}`);
  // Two cards in one text.
  assert.equal(maskCards("5555555555554444 and 4111111111111111"), `${CARD_MASK} and ${CARD_MASK}`);
  assert.equal(maskText("4111111111111111", { emails: false, numbers: false }), CARD_MASK);
});

test("emails and numbers follow the settings, with constant-length masks", () => {
  const both = { emails: true, numbers: true };
  assert.equal(maskText("write to jane.doe+x@example.co.uk today", both), `write to ${EMAIL_MASK} today`);
  assert.equal(maskText("a@b.io, c@d.org", both), `${EMAIL_MASK}, ${EMAIL_MASK}`);
  assert.equal(maskText("3 items for 1,299.50", both), `${NUMBER_MASK} items for ${NUMBER_MASK}`);
  assert.equal(maskText("x 123456789012345678901234567890", both), `x ${NUMBER_MASK}`);
  assert.equal(maskText("x 1", both), `x ${NUMBER_MASK}`);
  const none = { emails: false, numbers: false };
  assert.equal(maskText("jane@example.com has 3 items", none), "jane@example.com has 3 items");
  assert.equal(maskText("jane@example.com has 3 items", { emails: true, numbers: false }), `${EMAIL_MASK} has 3 items`);
  assert.equal(maskText("no secrets here", both), "no secrets here");
  assert.equal(maskText("", both), "");
  assert.equal(maskText("@handle and a@", both), "@handle and a@");
  assert.equal(maskText("see https://x.test/?email=a@b.com&n=1", { emails: true }), `see https://x.test/?email=${EMAIL_MASK}&n=1`);
  assert.equal(maskText("<a@b.com>", { emails: true }), `<${EMAIL_MASK}>`);
});

test("mask length does not depend on the secret's length", () => {
  const opts = { emails: true, numbers: true };
  assert.equal(maskText("a@b.cc", opts).length, maskText("a-much-longer-address@subdomain.example.com", opts).length);
  assert.equal(maskText("7", opts).length, maskText("7777777", opts).length);
  assert.equal(maskInputValue("x", el(), { maskInputs: true }), INPUT_MASK);
  assert.equal(maskInputValue("a much longer secret value", el(), { maskInputs: true }), INPUT_MASK);
});

test("inputs: constant mask for secrets, free-text masks otherwise", () => {
  const open = { maskInputs: false, maskEmails: true, maskNumbers: false };
  assert.equal(maskInputValue("hello", el(), open), "hello");
  assert.equal(maskInputValue("me@example.com", el({ type: "email" }), open), EMAIL_MASK);
  assert.equal(maskInputValue("4111 1111 1111 1111", el(), open), CARD_MASK);
  assert.equal(maskInputValue("hunter2", el({ type: "password" }), open), INPUT_MASK);
  assert.equal(maskInputValue("tok", el({ type: "hidden" }), open), INPUT_MASK);
  assert.equal(maskInputValue("C:\\fakepath\\x.pdf", el({ type: "file" }), open), INPUT_MASK);
  assert.equal(maskInputValue("shown", el({ attrs: { "data-rr-is-password": "true" } }), open), INPUT_MASK);
  for (const ac of ["cc-number", "cc-csc", "cc-exp", "billing cc-exp-month", "one-time-code"]) {
    assert.equal(maskInputValue("123", el({ attrs: { autocomplete: ac } }), open), INPUT_MASK, ac);
  }
  assert.equal(maskInputValue("123", el({ attrs: { name: "cardNumber" } }), open), INPUT_MASK);
  assert.equal(maskInputValue("123", el({ attrs: { id: "cvv" } }), open), INPUT_MASK);
  assert.equal(maskInputValue("plain", el({ masked: true }), open), INPUT_MASK);
  assert.equal(maskInputValue("Send", el({ type: "submit" }), { maskInputs: true }), "Send");
  assert.equal(maskInputValue("", el({ type: "password" }), open), "");
  assert.equal(isSecretInput(el({ attrs: { autocomplete: "email" } })), false);
  assert.equal(isSecretInput(null), false);
});

test("text nodes: masked areas and editable content are blanked", () => {
  const s = { maskInputs: true, maskEmails: true, maskNumbers: true };
  assert.equal(maskTextNode("Jane Doe, 12 Main St", el({ masked: true }), s), "**** **** ** **** **");
  assert.equal(maskTextNode("typed text", el({ editable: true }), s), "***** ****");
  assert.equal(maskTextNode("typed text", el({ editable: true }), { ...s, maskInputs: false }), "typed text");
  assert.equal(maskTextNode("Call 555 1234", el(), s), `Call ${NUMBER_MASK} ${NUMBER_MASK}`);
  assert.equal(maskTextNode("Call 555 1234", null, { maskNumbers: false }), "Call 555 1234");
  assert.equal(blankText(" a b\n"), " * *\n");
});

test("urls: query and fragment masked, path kept", () => {
  const opts = { emails: true };
  assert.equal(maskUrl("https://s.test/p/42?email=a%40b.com&x=1#t", opts), `https://s.test/p/42?email=${EMAIL_MASK}&x=1#t`);
  assert.equal(maskUrl("https://s.test/pay?cc=4111111111111111", { emails: false }), `https://s.test/pay?cc=${CARD_MASK}`);
  assert.equal(maskUrl("https://s.test/u/a@b.com", opts), "https://s.test/u/a@b.com");
  assert.equal(maskUrl("https://s.test/?q=a@b.com", { emails: false }), "https://s.test/?q=a@b.com");
  assert.equal(maskUrl("https://s.test/?to=a@b.com&cc=c@d.org#x@y.io", opts), `https://s.test/?to=${EMAIL_MASK}&cc=${EMAIL_MASK}#${EMAIL_MASK}`);
  assert.equal(maskUrl("https://s.test/p", opts), "https://s.test/p");
});
