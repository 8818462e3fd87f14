// Display formatting shared by the dashboard and the player. Pure: the locale
// and time zone can be passed (tests), else the browser's are used.

const DASH = "\u2013";

const pad2 = (n) => String(n).padStart(2, "0");

// "45 s", "2 min 05 s", "1 h 02 min". Whole seconds, rounded down, so a
// 59.6 s visit is not shown as one minute while a 60 s filter leaves it out.
export function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return DASH;
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${pad2(m)} min`;
  if (m > 0) return `${m} min ${pad2(s)} s`;
  return `${s} s`;
}

// Player clock: "0:05", "2:05", "1:02:05".
export function formatClock(ms) {
  const total = Math.max(0, Math.floor((Number.isFinite(ms) ? ms : 0) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${m}:${pad2(s)}`;
}

function toDate(value) {
  const d = value instanceof Date ? value : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

// "Mon, 3 Jun 2024, 14:05" in the viewer's time zone (the API speaks UTC).
export function formatDateTime(value, { locale, timeZone, seconds = false } = {}) {
  const d = value == null ? null : toDate(value);
  if (!d) return DASH;
  return new Intl.DateTimeFormat(locale, {
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: seconds ? "2-digit" : undefined,
    timeZone,
  }).format(d);
}

// "3 June 2024".
export function formatDate(value, { locale, timeZone } = {}) {
  const d = value == null ? null : toDate(value);
  if (!d) return DASH;
  return new Intl.DateTimeFormat(locale, { day: "numeric", month: "long", year: "numeric", timeZone }).format(d);
}

export function formatNumber(n, { locale } = {}) {
  if (typeof n !== "number" || !Number.isFinite(n)) return DASH;
  return new Intl.NumberFormat(locale).format(n);
}

export function formatBytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return DASH;
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

// Path and query of a recorded URL, for display only (never made a link:
// a recorded href is visitor-controlled text).
export function pathOf(href) {
  if (typeof href !== "string" || href === "") return "";
  try {
    const u = new URL(href);
    return (u.pathname || "/") + u.search;
  } catch {
    return href;
  }
}
