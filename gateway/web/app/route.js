// Which recording a player page shows and where its data comes from:
// /recordings/{id} (admin, cookie) or /share/{token} (shared, no cookie).

function segment(value) {
  try {
    const decoded = decodeURIComponent(value);
    return decoded && !/[/\\]/.test(decoded) ? decoded : null;
  } catch {
    return null;
  }
}

export function playerRoute(pathname) {
  let m = /^\/recordings\/([^/]+)\/?$/.exec(pathname || "");
  if (m) {
    const id = segment(m[1]);
    if (!id) return null;
    const base = `/api/v1/recordings/${encodeURIComponent(id)}`;
    return {
      shared: false,
      id,
      recording: base,
      events: `${base}/events`,
      exportUrl: `${base}/export`,
      share: `${base}/share`,
      shares: `${base}/shares`,
    };
  }
  m = /^\/share\/([^/]+)\/?$/.exec(pathname || "");
  if (m) {
    const token = segment(m[1]);
    if (!token) return null;
    const base = `/share/${encodeURIComponent(token)}/api`;
    return { shared: true, token, recording: `${base}/recording`, events: `${base}/events` };
  }
  return null;
}

export const revokePath = (shareId) => `/api/v1/shares/${encodeURIComponent(shareId)}`;
export const recordingPath = (id) => `/recordings/${encodeURIComponent(id)}`;

// Where the dashboard may send the user after signing in: only a player
// page of this origin (never an arbitrary URL from the query).
export function safeNext(value) {
  if (typeof value !== "string") return null;
  const m = /^\/recordings\/([^/?#\\]+)$/.exec(value);
  return m && segment(m[1]) ? value : null;
}
