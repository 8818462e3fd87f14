// The browser around the loader: what it supports, the tag, the settings.

/** The name of the first missing feature, or null when everything needed is there. */
export function missingFeature(win) {
  const globals = ["Promise", "fetch", "MutationObserver", "WeakMap", "Map", "Set", "JSON", "TextEncoder", "TextDecoder", "URL"];
  for (const name of globals) if (typeof win[name] === "undefined") return name;
  if (!win.crypto || typeof win.crypto.getRandomValues !== "function") return "crypto";
  if (!win.Element || typeof win.Element.prototype.closest !== "function") return "Element.closest";
  if (typeof Array.from !== "function" || typeof Object.assign !== "function") return "ES2015";
  try {
    const s = win.sessionStorage;
    s.setItem("__rec_t", "1");
    s.removeItem("__rec_t");
  } catch (e) {
    return "sessionStorage";
  }
  return null;
}

/** Our <script> tag: document.currentScript, else the one whose src names /recorder.js. */
export function findTag(doc) {
  const current = doc.currentScript;
  if (current && current.getAttribute && current.getAttribute("data-rec-settings") !== null) return current;
  const scripts = doc.getElementsByTagName("script");
  for (let i = 0; i < scripts.length; i++) {
    const src = scripts[i].getAttribute("src") || "";
    if (src.indexOf("/recorder.js") >= 0 && scripts[i].getAttribute("data-rec-settings") !== null) return scripts[i];
  }
  return current || null;
}

/** data-rec-settings parsed with safe defaults; null when unusable. */
export function parseSettings(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return null;
  }
  if (!raw || typeof raw !== "object" || typeof raw.endpoint !== "string" || !raw.endpoint) return null;
  const consent = raw.consent === "opt-in" || raw.consent === "opt-out" ? raw.consent : "none";
  const cookie =
    raw.consentCookie && typeof raw.consentCookie.name === "string" && raw.consentCookie.name
      ? {
          name: raw.consentCookie.name,
          values: Array.isArray(raw.consentCookie.values) ? raw.consentCookie.values.filter((v) => typeof v === "string") : [],
        }
      : null;
  const rate = typeof raw.sampleRate === "number" && raw.sampleRate === raw.sampleRate ? raw.sampleRate : 1;
  return {
    endpoint: raw.endpoint,
    maskInputs: raw.maskInputs !== false,
    maskNumbers: raw.maskNumbers !== false,
    maskEmails: raw.maskEmails !== false,
    recordMobile: raw.recordMobile !== false,
    consent,
    consentCookie: cookie,
    respectGpc: raw.respectGpc !== false,
    sampleRate: Math.min(1, Math.max(0, rate)),
    exclude: Array.isArray(raw.exclude) ? raw.exclude.filter((p) => typeof p === "string") : [],
  };
}

const MOBILE_UA = /Mobi|Android|iPhone|iPad|iPod|Windows Phone|IEMobile|BlackBerry|BB10|Opera Mini|Kindle|Silk/i;

/** Phones and tablets (iPadOS announcing itself as a Mac included). */
export function isMobile(nav) {
  if (!nav) return false;
  if (nav.userAgentData && nav.userAgentData.mobile === true) return true;
  const ua = String(nav.userAgent || "");
  if (MOBILE_UA.test(ua)) return true;
  return /Macintosh/.test(ua) && nav.maxTouchPoints > 1;
}

// Globals other session recorders define: Smartlook, Hotjar, Clarity, FullStory,
// LogRocket, Mouseflow, Inspectlet, Lucky Orange, a page's own rrweb build.
export const OTHER_RECORDERS = [
  "smartlook",
  "hj",
  "clarity",
  "FS",
  "LogRocket",
  "mouseflow",
  "__insp",
  "__lo_site_id",
  "rrweb",
  "rrwebRecord",
];

/** The name of another recorder present in the page, or null. */
export function otherRecorder(win) {
  for (const name of OTHER_RECORDERS) {
    try {
      if (win[name] !== undefined && win[name] !== null) return name;
    } catch (e) {
      return name;
    }
  }
  return null;
}
