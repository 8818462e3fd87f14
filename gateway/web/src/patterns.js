// Path exclusion patterns, with the gateway's semantics (gateway/edge/sites.py
// compile_path_patterns + admission.normalize_path): `*` matches any run of
// characters, '/' included; the whole normalised path must match; case-blind.

/** Percent-decode like Python's urllib.parse.unquote (UTF-8, bad bytes become U+FFFD). */
export function percentDecode(raw) {
  if (raw.indexOf("%") < 0) return raw;
  try {
    return decodeURIComponent(raw);
  } catch (e) {
    const decoder = new TextDecoder("utf-8");
    return raw.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
      const bytes = new Uint8Array(run.length / 3);
      for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(run.substr(i * 3 + 1, 2), 16);
      return decoder.decode(bytes);
    });
  }
}

/**
 * The path as an origin may resolve it: percent-decoded, backslashes as
 * slashes, `;parameters` dropped from every segment, empty and dot segments
 * resolved, a trailing slash kept.
 */
export function normalizePath(rawPath) {
  const decoded = percentDecode(String(rawPath || "")).replace(/\\/g, "/");
  const out = [];
  for (const part of decoded.split("/")) {
    const segment = part.split(";", 1)[0];
    if (!segment || segment === ".") continue;
    if (segment === "..") out.pop();
    else out.push(segment);
  }
  let normal = "/" + out.join("/");
  if (decoded.endsWith("/") && normal !== "/") normal += "/";
  return normal;
}

/** One RegExp for a list of patterns, or null when there are none. */
export function compilePatterns(patterns) {
  if (!Array.isArray(patterns)) return null;
  const parts = [];
  for (const p of patterns) {
    if (typeof p !== "string") continue;
    const body = p
      .split("*")
      .map((literal) => literal.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&"))
      .join("[\\s\\S]*");
    parts.push("^" + body + "$");
  }
  return parts.length ? new RegExp(parts.join("|"), "i") : null;
}

/** Whether a raw location.pathname is excluded by the compiled patterns. */
export function isExcluded(compiled, rawPath) {
  return compiled !== null && compiled.test(normalizePath(rawPath));
}
