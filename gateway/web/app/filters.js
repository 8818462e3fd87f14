// The dashboard's state <-> the page URL query <-> the API query. The page
// URL keeps what the user typed (dates as YYYY-MM-DD) so that a filtered view
// can be bookmarked; the API gets exact instants.

export const FILTER_KEYS = ["from", "to", "min_duration", "url", "device", "browser", "visitor"];
export const DEVICES = ["desktop", "mobile", "tablet"];
// The names gateway/collect/client.py gives (matched case-blind by the API).
export const BROWSERS = ["Chrome", "Edge", "Firefox", "Safari", "Opera", "Samsung Internet", "Other"];

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

// {site, live, filters} from a query string ("?a=b" or "a=b").
export function readQuery(search) {
  const params = new URLSearchParams(search || "");
  const filters = {};
  for (const key of FILTER_KEYS) {
    const value = (params.get(key) || "").trim();
    if (value) filters[key] = value;
  }
  const site = (params.get("site") || "").trim() || null;
  const live = ["1", "true"].includes(params.get("live") || "");
  return { site, live, filters };
}

// The page URL query for a state, in a stable order: "" or "?site=...".
export function writeQuery({ site, live, filters }) {
  const params = new URLSearchParams();
  if (site) params.set("site", site);
  for (const key of FILTER_KEYS) {
    const value = filters && typeof filters[key] === "string" ? filters[key].trim() : "";
    if (value) params.set(key, value);
  }
  if (live) params.set("live", "1");
  const text = params.toString();
  return text ? `?${text}` : "";
}

export function hasFilters(state) {
  return FILTER_KEYS.some((key) => Boolean(state.filters && state.filters[key]));
}

// Local midnight of a YYYY-MM-DD day (+ days) as an RFC 3339 UTC instant:
// the user means days in their own time zone, the API works in UTC.
export function localDayStart(day, addDays = 0) {
  const m = DAY.exec(day);
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + addDays);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

// The API query string for a state and a page. A "to" day is inclusive for
// the user and the API's "to" is exclusive: send the next day's midnight.
// Values that are not plain days (a hand-written RFC 3339 time) go as they are.
export function apiQuery(state, { cursor = null, limit = 50 } = {}) {
  const params = new URLSearchParams();
  if (state.site) params.set("site", state.site);
  const f = state.filters || {};
  for (const key of FILTER_KEYS) {
    if (!f[key]) continue;
    let value = f[key];
    if (key === "from") value = localDayStart(value) || value;
    if (key === "to") value = localDayStart(value, 1) || value;
    params.set(key, value);
  }
  if (state.live) params.set("live", "1");
  if (limit) params.set("limit", String(limit));
  if (cursor) params.set("cursor", cursor);
  return params.toString();
}

// A first check before asking the API, phrased like its 400 details.
export function validateFilters(filters) {
  const f = filters || {};
  if (f.min_duration !== undefined && f.min_duration !== "") {
    const n = Number(f.min_duration);
    if (!Number.isFinite(n) || n < 0) return "min_duration: expected a number of seconds, 0 or more";
  }
  if (f.from && f.to && DAY.test(f.from) && DAY.test(f.to) && f.from > f.to) {
    return "from: the first day is after the last day";
  }
  return null;
}
