// How a recording (the API's R object) is described in lists and details.
import { pathOf } from "./format.js";

// The identified name or email, else the visitor id, else "anonymous".
export function visitorLabel(r) {
  const identity = (r && r.identity) || {};
  const name = typeof identity.name === "string" ? identity.name.trim() : "";
  const email = typeof identity.email === "string" ? identity.email.trim() : "";
  if (name && email) return `${name} (${email})`;
  if (name || email) return name || email;
  if (r && typeof r.visitor === "string" && r.visitor) return r.visitor;
  return "anonymous";
}

// The first page's path and how many more: {first, more, all}.
export function pagesSummary(pages) {
  const list = Array.isArray(pages) ? pages.filter((p) => typeof p === "string") : [];
  if (list.length === 0) return { first: "", more: 0, all: [] };
  return { first: pathOf(list[0]), more: list.length - 1, all: list };
}

// "desktop" -> "Desktop"; "" (no User-Agent) -> "Unknown".
export function capitalize(word) {
  if (typeof word !== "string" || word === "") return "Unknown";
  return word.charAt(0).toUpperCase() + word.slice(1);
}

// Whole days a recording is kept (expires_at - created_at), or null.
export function retentionDays(r) {
  if (!r) return null;
  const created = Date.parse(r.created_at);
  const expires = Date.parse(r.expires_at);
  if (!Number.isFinite(created) || !Number.isFinite(expires) || expires <= created) return null;
  return Math.round((expires - created) / 86400000);
}
