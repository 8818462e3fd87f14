// The monthly quota as the usage panel explains it.

// First day of the month after "YYYY-MM", as a UTC Date (the gateway counts
// months in UTC), or null.
export function nextMonthStart(month) {
  const m = /^(\d{4})-(\d{2})$/.exec(month || "");
  if (!m) return null;
  return new Date(Date.UTC(Number(m[1]), Number(m[2]), 1));
}

// {used, limit, remaining, percent, reached, near} from the API's usage.
export function usageState(u) {
  const used = Math.max(0, Number(u && u.used) || 0);
  const limit = Math.max(0, Number(u && u.limit) || 0);
  const remaining =
    u && typeof u.remaining === "number" ? Math.max(0, u.remaining) : Math.max(0, limit - used);
  const percent = limit > 0 ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  return { used, limit, remaining, percent, reached: remaining === 0, near: remaining > 0 && percent >= 90 };
}
