import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, createApi } from "../app/api.js";

function fake(response) {
  const calls = [];
  const fetchFn = async (path, init) => {
    calls.push({ path, init });
    if (response instanceof Error) throw response;
    return response;
  };
  return { api: createApi(fetchFn), calls };
}

const json = (status, body) => new Response(body === undefined ? null : JSON.stringify(body), { status });

test("GET: same-origin credentials, no body, JSON back", async () => {
  const { api, calls } = fake(json(200, { sites: [] }));
  assert.deepEqual(await api.get("/api/v1/session"), { sites: [] });
  assert.equal(calls[0].init.method, "GET");
  assert.equal(calls[0].init.credentials, "same-origin");
  assert.equal(calls[0].init.body, undefined);
  assert.equal(calls[0].init.headers["Content-Type"], undefined);
});

test("POST and DELETE send Content-Type application/json (the CSRF rule)", async () => {
  const post = fake(json(201, { id: "s1", url: "/share/t", expires_at: "2024-06-09T00:00:00Z" }));
  assert.equal((await post.api.post("/api/v1/recordings/r/share", { days: 3 })).id, "s1");
  assert.equal(post.calls[0].init.headers["Content-Type"], "application/json");
  assert.equal(post.calls[0].init.body, '{"days":3}');
  const del = fake(new Response(null, { status: 204 }));
  assert.equal(await del.api.del("/api/v1/shares/s1"), null);
  assert.equal(del.calls[0].init.method, "DELETE");
  assert.equal(del.calls[0].init.headers["Content-Type"], "application/json");
  assert.equal(del.calls[0].init.body, "{}");
});

test("errors carry the status, the code and the detail", async () => {
  const { api } = fake(json(400, { error: "bad_request", detail: "min_duration: expected a number" }));
  await assert.rejects(api.get("/api/v1/recordings?min_duration=x"), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 400);
    assert.equal(err.code, "bad_request");
    assert.equal(err.message, "min_duration: expected a number");
    return true;
  });
  await assert.rejects(fake(json(410, { error: "revoked" })).api.get("/x"), { status: 410, code: "revoked" });
  await assert.rejects(fake(new Response("oops", { status: 502, statusText: "Bad Gateway" })).api.get("/x"), {
    status: 502,
    message: "Bad Gateway",
  });
  await assert.rejects(fake(new TypeError("failed")).api.get("/x"), { status: 0, code: "network" });
  await assert.rejects(fake(new Response("<html>", { status: 200 })).api.get("/x"), { code: "bad_answer" });
});
