// The consent cookie, read exactly as the gateway reads it
// (gateway/collect/policy.py: _cookie_verdict, _cookie_accepts), so that the
// page never sends what the gateway would refuse.
import { percentDecode } from "./patterns.js";

/** document.cookie as {name: value}; the first cookie of a name wins; "quoted" values unquoted. */
export function parseCookies(cookieString) {
  const out = {};
  if (typeof cookieString !== "string") return out;
  for (const pair of cookieString.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim();
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value[0] === '"' && value[value.length - 1] === '"') value = value.slice(1, -1);
    if (name && !Object.prototype.hasOwnProperty.call(out, name)) out[name] = value;
  }
  return out;
}

const ITEM_TRIM = /^[ \t{}"']+|[ \t{}"']+$/g;

/**
 * Whether a consent cookie's value holds one of the accepted values. The value
 * is percent-decoded and trimmed; an accepted value V (exact, case included)
 * matches when the whole value is V, or V is one of its items (split on `,` `|`
 * `&`, each trimmed of spaces, braces and quotes), or an item is `name=V` with
 * V a `key:value` pair (OneTrust's `groups=C0001:1,...`).
 */
export function valueGrantsConsent(raw, accepted) {
  if (typeof raw !== "string" || !Array.isArray(accepted)) return false;
  const value = percentDecode(raw).trim();
  if (accepted.indexOf(value) >= 0) return true;
  const items = {};
  for (const part of value.split(/[,|&]/)) {
    const item = part.replace(ITEM_TRIM, "");
    if (!item) continue;
    items["=" + item] = true;
    const eq = item.indexOf("=");
    if (eq >= 0 && item.indexOf(":", eq + 1) >= 0) items["=" + item.slice(eq + 1)] = true;
  }
  return accepted.some((v) => typeof v === "string" && items["=" + v] === true);
}

/** true: the cookie accepts; false: it is there and does not; null: no such cookie (or none configured). */
export function cookieVerdict(cookieString, spec) {
  if (!spec || typeof spec.name !== "string" || !spec.name) return null;
  const cookies = parseCookies(cookieString);
  if (!Object.prototype.hasOwnProperty.call(cookies, spec.name)) return null;
  return valueGrantsConsent(cookies[spec.name], spec.values);
}

/**
 * The consent decision, as the gateway takes it: "none" always records; any
 * refusal wins (the page said no, or the cookie is there and does not accept);
 * "opt-in" then needs a yes (the page's or the cookie's); "opt-out" records.
 * Returns "given" (an explicit yes), "ok" (no objection), "pending" (opt-in,
 * no answer yet) or "refused".
 */
export function consentDecision(mode, pageSays, cookie) {
  if (pageSays === false) return "refused";
  if (mode !== "opt-in" && mode !== "opt-out") return pageSays === true ? "given" : "ok";
  if (cookie === false) return mode === "opt-in" ? "pending" : "refused";
  if (pageSays === true || cookie === true) return "given";
  return mode === "opt-in" ? "pending" : "ok";
}
