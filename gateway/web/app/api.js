// JSON calls to the admin API (or a share link's API), same origin, cookie
// sent by the browser. State-changing calls carry Content-Type
// application/json: the server refuses cookie-authenticated POST/DELETE
// without it (a cross-site form cannot set it).

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export function createApi(fetchFn) {
  async function call(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    let res;
    try {
      res = await fetchFn(path, init);
    } catch {
      throw new ApiError(0, "network", "The server could not be reached. Check the connection and try again.");
    }
    const text = res.status === 204 ? "" : await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = undefined;
      }
    }
    if (!res.ok) {
      const code = data && typeof data.error === "string" ? data.error : `http_${res.status}`;
      const detail = data && typeof data.detail === "string" ? data.detail : res.statusText || `HTTP ${res.status}`;
      throw new ApiError(res.status, code, detail);
    }
    if (data === undefined) throw new ApiError(res.status, "bad_answer", "The server's answer was not JSON.");
    return data;
  }

  return {
    get: (path) => call("GET", path),
    post: (path, body) => call("POST", path, body),
    del: (path) => call("DELETE", path),
  };
}
