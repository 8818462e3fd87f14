import assert from "node:assert/strict";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { browserGzip, Sender } from "../src/transport.js";

const META = { session: "s".repeat(22), page: "p".repeat(22), url: "https://s.test/" };

function response(status, body, headers = {}) {
  return {
    status,
    headers: { get: (name) => headers[name] ?? null },
    json: async () => {
      if (body === undefined) throw new Error("no body");
      return body;
    },
  };
}

// A Sender whose fetch answers from a script, and whose sleeps are recorded.
function harness(answers, extra = {}) {
  const requests = [];
  const sleeps = [];
  let seq = 0;
  const events = { stop: [], drop: [] };
  const sender = new Sender({
    endpoint: "/__rec/v1/batch",
    fetch: async (url, init) => {
      const body = init.headers["Content-Encoding"] === "gzip" ? gunzipSync(init.body).toString() : Buffer.from(init.body).toString();
      requests.push({ url, init, json: JSON.parse(body) });
      const next = answers.length ? answers.shift() : response(200, { record: true });
      if (next instanceof Error) throw next;
      return next;
    },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    nextSeq: () => seq++,
    onStop: (reason) => events.stop.push(reason),
    onDrop: (batch, why) => events.drop.push(why),
    ...extra,
  });
  return { sender, requests, sleeps, events };
}

async function settle(sender) {
  for (let i = 0; i < 100 && (sender.pumping || sender.queue.length); i++) await new Promise((r) => setTimeout(r, 1));
}

test("batches go in order with the wire format and headers", async () => {
  const { sender, requests } = harness([]);
  sender.push(META, ['{"type":4,"data":{},"timestamp":1}']);
  sender.push({ ...META, consent: true, visitor: "v1" }, ['{"type":3,"data":{},"timestamp":2}']);
  await settle(sender);
  assert.equal(requests.length, 2);
  assert.deepEqual(
    requests.map((r) => r.json.seq),
    [0, 1],
  );
  const [first, second] = requests;
  assert.equal(first.url, "/__rec/v1/batch");
  assert.equal(first.init.method, "POST");
  assert.equal(first.init.credentials, "same-origin");
  assert.equal(first.init.keepalive, true);
  assert.deepEqual(first.init.headers, { "Content-Type": "application/json" });
  assert.deepEqual(first.json, { ...META, seq: 0, events: [{ type: 4, data: {}, timestamp: 1 }] });
  assert.equal(second.json.consent, true);
  assert.equal(second.json.visitor, "v1");
  assert.equal(sender.sent, 2);
});

test("gzip when it pays: Content-Encoding: gzip, keepalive by compressed size", async () => {
  const { sender, requests } = harness([], { gzip: browserGzip(globalThis) });
  const big = Array.from({ length: 400 }, (_, i) => JSON.stringify({ type: 3, data: { source: 1, i, pad: "abc".repeat(100) }, timestamp: i }));
  sender.push(META, big);
  sender.push(META, ['{"type":4,"data":{},"timestamp":1}']); // small: as it is
  await settle(sender);
  assert.equal(requests[0].init.headers["Content-Encoding"], "gzip");
  assert.equal(requests[0].init.headers["Content-Type"], "application/json");
  assert.ok(requests[0].init.body.length < 60 * 1024);
  assert.equal(requests[0].init.keepalive, true);
  assert.equal(requests[0].json.events.length, 400);
  assert.equal(requests[1].init.headers["Content-Encoding"], undefined);
});

test("retries with backoff, honouring Retry-After, at most 5 tries", async () => {
  const { sender, requests, sleeps, events } = harness([
    response(503, undefined, { "Retry-After": "3" }),
    new TypeError("network"),
    response(429, undefined, { "Retry-After": "1" }),
    response(200, { record: true }),
  ]);
  sender.push(META, ["{}"]);
  await settle(sender);
  assert.equal(requests.length, 4);
  assert.deepEqual(sleeps, [3000, 2000, 4000]);
  assert.deepEqual(
    requests.map((r) => r.json.seq),
    [0, 0, 0, 0],
  );
  assert.equal(sender.sent, 1);
  assert.deepEqual(events.drop, []);

  const failing = harness(Array.from({ length: 10 }, () => response(500)));
  failing.sender.push(META, ["{}"]);
  failing.sender.push(META, ['{"next":1}']);
  await settle(failing.sender);
  assert.deepEqual(failing.sleeps.slice(0, 4), [1000, 2000, 4000, 8000]);
  assert.deepEqual(failing.events.drop, ["retries", "retries"]);
  assert.equal(failing.requests.filter((r) => r.json.seq === 0).length, 5);
  assert.equal(failing.requests.filter((r) => r.json.seq === 1).length, 5);
});

test("413: split in two halves with new seqs; one event too big is dropped", async () => {
  const { sender, requests, events } = harness([response(413), response(413)]);
  sender.push(META, ["1", "2", "3"]);
  await settle(sender);
  // seq 0 refused -> [1,2] as seq 1, [3] as seq 2; seq 1 refused -> [1] seq 3, [2] seq 4; events stay in order
  assert.deepEqual(
    requests.map((r) => [r.json.seq, r.json.events]),
    [
      [0, [1, 2, 3]],
      [1, [1, 2]],
      [3, [1]],
      [4, [2]],
      [2, [3]],
    ],
  );
  assert.deepEqual(events.drop, []);
  const single = harness([response(413)]);
  single.sender.push(META, ["1"]);
  await settle(single.sender);
  assert.deepEqual(single.events.drop, ["too_large"]);
});

test('200 {"record": false} stops everything', async () => {
  const { sender, requests, events } = harness([response(200, { record: false, reason: "quota" })]);
  sender.push(META, ["1"]);
  sender.push(META, ["2"]);
  await settle(sender);
  assert.equal(requests.length, 1);
  assert.deepEqual(events.stop, ["quota"]);
  assert.equal(sender.stopped, true);
  assert.equal(sender.push(META, ["3"]), null);
});

test('a {"record": false} answered false by the owner keeps the sender going', async () => {
  const { sender, requests } = harness([response(200, { record: false, reason: "no_activity" })], {
    onStop: (reason) => reason !== "no_activity",
  });
  sender.push(META, ["1"]);
  await settle(sender);
  assert.equal(sender.stopped, false);
  sender.push(META, ["2"]);
  await settle(sender);
  assert.equal(requests.length, 2);
});

test("other 4xx: the batch is dropped, the next goes", async () => {
  const { sender, requests, events } = harness([response(400), response(200, {})]);
  sender.push(META, ["1"]);
  sender.push(META, ["2"]);
  await settle(sender);
  assert.equal(requests.length, 2);
  assert.deepEqual(events.drop, ["status_400"]);
});

test("page hide: waiting batches go by beacon, in <= 60 KiB bodies", async () => {
  const beacons = [];
  const { sender, requests } = harness([response(503, undefined, { "Retry-After": "100" })], {
    beacon: (url, json) => {
      beacons.push(JSON.parse(json));
      return true;
    },
    sleep: () => new Promise(() => {}), // stays in its retry wait
  });
  sender.push(META, ["1"]);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(requests.length, 1);
  const big = Array.from({ length: 50 }, (_, i) => JSON.stringify({ i, pad: "x".repeat(3000) }));
  sender.push(META, big, true);
  sender.flushBeacon();
  assert.equal(sender.queue.length, 0);
  assert.deepEqual(beacons[0].events, [1]);
  assert.equal(beacons[0].seq, 0);
  const rest = beacons.slice(1);
  assert.ok(rest.length >= 3);
  assert.deepEqual(
    rest.flatMap((b) => b.events).map((e) => e.i),
    big.map((_, i) => i),
  );
  assert.deepEqual(
    rest.map((b) => b.seq),
    rest.map((_, i) => (i === 0 ? 1 : 1 + i)),
  );
  for (const b of beacons) assert.ok(Buffer.byteLength(JSON.stringify(b)) <= 60 * 1024);
});

test("page hide: a batch pushed for the beacon does not go by fetch first", async () => {
  const beacons = [];
  const { sender, requests } = harness([], { beacon: (url, json) => beacons.push(json) > 0 });
  sender.push(META, ["1"], true);
  sender.flushBeacon();
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(requests.length, 0);
  assert.equal(beacons.length, 1);
});

test("page hide: a refused beacon falls back to a keepalive fetch", async () => {
  const { sender, requests } = harness([], { beacon: () => false, sleep: () => new Promise(() => {}) });
  sender.queue.push({ seq: 7, meta: META, events: ["1"], chars: 1, tries: 0, state: "queued" });
  sender.flushBeacon();
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(requests.length, 1);
  assert.equal(requests[0].init.keepalive, true);
  assert.equal(requests[0].json.seq, 7);
});

test("clear drops what is not on the wire", async () => {
  const { sender, requests } = harness([], { sleep: () => new Promise(() => {}) });
  sender.queue.push({ seq: 1, meta: META, events: ["1"], chars: 1, tries: 0, state: "queued" });
  sender.queue.push({ seq: 2, meta: META, events: ["2"], chars: 1, tries: 0, state: "queued" });
  sender.clear();
  sender.pump();
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(requests.length, 0);
  assert.equal(sender.queue.length, 0);
});
