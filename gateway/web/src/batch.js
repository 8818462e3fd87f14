// Pure helpers of batching and delivery: serialising, sizes, splitting, retry timing.

export const FLUSH_INTERVAL_MS = 5000;
export const FLUSH_BYTES = 256 * 1024; // buffered JSON that triggers a flush
export const KEEPALIVE_MAX = 60 * 1024; // fetch keepalive / sendBeacon body limit
export const GZIP_MIN = 1024; // smaller bodies are sent as they are
export const MAX_TRIES = 5;
export const MAX_RETRY_DELAY_MS = 5 * 60 * 1000;
export const HOLD_MAX = 2 * 1024 * 1024; // buffered JSON waiting for a first activity event
export const MAX_URL = 8192; // the gateway's limit on a batch's url

// Incremental sources the gateway counts as the visitor's own activity:
// MouseMove, MouseInteraction, Scroll, Input, TouchMove, Drag, Selection.
const ACTIVITY_SOURCES = { 1: 1, 2: 1, 3: 1, 5: 1, 6: 1, 12: 1, 14: 1 };

/** Whether an rrweb event shows the visitor doing something. */
export function isActivity(event) {
  return !!event && event.type === 3 && !!event.data && ACTIVITY_SOURCES[event.data.source] === 1;
}

/** UTF-8 length of a string, without encoding it (lone surrogates count 3, as U+FFFD). */
export function utf8Length(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

const SURROGATE = /[\ud800-\udfff]/;
const SURROGATES = /[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]/g;

/** The string with lone UTF-16 surrogates replaced by U+FFFD (JSON decoders refuse them). */
export function fixSurrogates(text) {
  if (!SURROGATE.test(text)) return text;
  return text.replace(SURROGATES, (m) => (m.length === 2 ? m : "\ufffd"));
}

function replacer(key, value) {
  return typeof value === "string" ? fixSurrogates(value) : value;
}

/** JSON of one event, lone surrogates replaced; undefined when it cannot be serialised. */
export function stringifyEvent(event) {
  try {
    return JSON.stringify(event, replacer);
  } catch (e) {
    return undefined;
  }
}

/**
 * The request body: {"session","page","seq","url","events",("consent"),("visitor")}.
 * `events` are already-serialised JSON strings.
 */
export function buildBody(meta, seq, events) {
  let head =
    '{"session":' +
    JSON.stringify(meta.session) +
    ',"page":' +
    JSON.stringify(meta.page) +
    ',"seq":' +
    seq +
    ',"url":' +
    JSON.stringify(fixSurrogates(String(meta.url || "")));
  if (meta.consent === true) head += ',"consent":true';
  if (meta.visitor) head += ',"visitor":' + JSON.stringify(meta.visitor);
  return head + ',"events":[' + events.join(",") + "]}";
}

/** Bytes of a body around its events (everything but the event list's content). */
export function envelopeBytes(meta) {
  return utf8Length(buildBody(meta, 999999999, []));
}

/**
 * Splits serialised events into consecutive chunks whose bodies stay within
 * maxBytes (envelope included). An event too big on its own gets a chunk of its own.
 */
export function splitEvents(events, maxBytes, envelope) {
  const chunks = [];
  let current = [];
  let size = envelope;
  for (const e of events) {
    const n = utf8Length(e) + 1; // + the comma
    if (current.length && size + n > maxBytes) {
      chunks.push(current);
      current = [];
      size = envelope;
    }
    current.push(e);
    size += n;
  }
  if (current.length) chunks.push(current);
  return chunks;
}

/** The two halves of a batch's events (for a 413 answer); null when it cannot be split. */
export function halve(events) {
  if (events.length < 2) return null;
  const mid = Math.ceil(events.length / 2);
  return [events.slice(0, mid), events.slice(mid)];
}

/** Retry-After (delta seconds or an HTTP date) in ms from now; null when absent or bad. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined) return null;
  const text = String(value).trim();
  if (!text) return null;
  if (/^\d+$/.test(text)) return parseInt(text, 10) * 1000;
  const at = Date.parse(text);
  if (isNaN(at)) return null;
  return Math.max(0, at - now);
}

/** Delay before try number `tries` + 1 (tries >= 1): 1 s, 2 s, 4 s, ... or Retry-After when longer. */
export function retryDelay(tries, retryAfterMs) {
  const backoff = 1000 * Math.pow(2, Math.max(0, tries - 1));
  const wait = retryAfterMs !== null && retryAfterMs !== undefined && retryAfterMs > backoff ? retryAfterMs : backoff;
  return Math.min(wait, MAX_RETRY_DELAY_MS);
}

/** What to do with an answer: "ok" | "retry" | "split" | "drop". status 0 = network failure. */
export function classify(status) {
  if (status >= 200 && status < 300) return "ok";
  if (status === 413) return "split";
  if (status === 0 || status === 408 || status === 429 || status >= 500) return "retry";
  return "drop";
}
