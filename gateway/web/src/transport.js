// Delivery of batches: one request at a time, in order, gzip where the
// browser can, retries with backoff, 413 splitting, beacons at page hide.
import {
  buildBody,
  classify,
  envelopeBytes,
  GZIP_MIN,
  halve,
  KEEPALIVE_MAX,
  MAX_TRIES,
  parseRetryAfter,
  retryDelay,
  splitEvents,
  utf8Length,
} from "./batch.js";

export const MAX_QUEUE_CHARS = 8 * 1024 * 1024;

const noop = () => {};

/** gzip with CompressionStream, or null when the browser has no CompressionStream. */
export function browserGzip(win) {
  if (typeof win.CompressionStream !== "function" || typeof win.Response !== "function") return null;
  return async (bytes) => {
    const stream = new win.Response(bytes).body.pipeThrough(new win.CompressionStream("gzip"));
    return new Uint8Array(await new win.Response(stream).arrayBuffer());
  };
}

function charsOf(events) {
  let n = 0;
  for (const e of events) n += e.length;
  return n;
}

/**
 * opts: endpoint, fetch(url, init), beacon(url, json) -> bool (optional),
 * gzip(bytes) -> Promise<bytes> (optional), sleep(ms) -> Promise, nextSeq() -> int,
 * onStop(reason) (a 2xx {"record": false}; return false to keep sending), onSent(batch, "fetch" | "refused" | "beacon"),
 * onDrop(batch, why).
 */
export class Sender {
  constructor(opts) {
    this.endpoint = opts.endpoint;
    this.fetch = opts.fetch;
    this.beacon = opts.beacon || null;
    this.gzip = opts.gzip || null;
    this.sleep = opts.sleep;
    this.nextSeq = opts.nextSeq;
    this.onStop = opts.onStop || noop;
    this.onSent = opts.onSent || noop;
    this.onDrop = opts.onDrop || noop;
    this.queue = [];
    this.pumping = false;
    this.stopped = false;
    this.sent = 0;
    this.dropped = 0;
  }

  /**
   * Queues the events as one batch (meta: session, page, url, consent?, visitor?);
   * `later`: not sent yet (page hide: flushBeacon follows).
   */
  push(meta, events, later) {
    if (this.stopped || !events.length) return null;
    const batch = { seq: this.nextSeq(), meta, events, chars: charsOf(events), tries: 0, state: "queued" };
    this.queue.push(batch);
    this.trim(batch);
    if (!later) this.pump();
    return batch;
  }

  /** Past MAX_QUEUE_CHARS (a gateway long unreachable), the oldest waiting batches go. */
  trim(keep) {
    let total = 0;
    for (const b of this.queue) total += b.chars;
    for (let i = 0; total > MAX_QUEUE_CHARS && i < this.queue.length; ) {
      const b = this.queue[i];
      if (b === keep || b.state === "inflight") {
        i++;
        continue;
      }
      total -= b.chars;
      this.remove(b);
      this.drop(b, "overflow");
    }
  }

  remove(batch) {
    batch.state = "done";
    const at = this.queue.indexOf(batch);
    if (at >= 0) this.queue.splice(at, 1);
  }

  drop(batch, why) {
    this.dropped++;
    this.onDrop(batch, why);
  }

  /** Drops every batch not already on the wire. */
  clear() {
    for (const b of this.queue.slice()) if (b.state !== "inflight") this.remove(b);
  }

  /** The gateway said stop: nothing more is sent from this page. */
  stop() {
    this.stopped = true;
    this.clear();
  }

  pump() {
    if (this.pumping) return;
    this.pumping = true;
    this.loop()
      .catch(noop)
      .then(() => {
        this.pumping = false;
      });
  }

  async loop() {
    while (this.queue.length && !this.stopped) {
      const batch = this.queue[0];
      const answer = await this.sendOnce(batch);
      if (answer === null || batch.state === "done") continue;
      const kind = classify(answer.status);
      if (kind === "ok") {
        this.remove(batch);
        this.sent++;
        this.onSent(batch, answer.body && answer.body.record === false ? "refused" : "fetch");
        if (answer.body && answer.body.record === false) {
          // The owner decides: anything but an explicit false stops this page's sending.
          if (this.onStop(typeof answer.body.reason === "string" ? answer.body.reason : "server") !== false) {
            this.stop();
          }
        }
      } else if (kind === "split") {
        this.remove(batch);
        const halves = halve(batch.events);
        if (!halves) {
          this.drop(batch, "too_large");
          continue;
        }
        const parts = halves.map((events) => ({
          seq: this.nextSeq(),
          meta: batch.meta,
          events,
          chars: charsOf(events),
          tries: 0,
          state: "queued",
        }));
        this.queue.unshift(parts[0], parts[1]);
      } else if (kind === "retry") {
        batch.tries++;
        if (batch.tries >= MAX_TRIES) {
          this.remove(batch);
          this.drop(batch, "retries");
          continue;
        }
        batch.state = "queued";
        await this.sleep(retryDelay(batch.tries, answer.retryAfter));
      } else {
        this.remove(batch);
        this.drop(batch, "status_" + answer.status);
      }
    }
  }

  /** One try; null when the batch was taken away (beacon, clear) before it went out. */
  async sendOnce(batch) {
    batch.state = "prep";
    let body = new TextEncoder().encode(buildBody(batch.meta, batch.seq, batch.events));
    let gzipped = false;
    if (this.gzip && body.length >= GZIP_MIN) {
      try {
        const packed = await this.gzip(body);
        if (packed && packed.length < body.length) {
          body = packed;
          gzipped = true;
        }
      } catch (e) {
        // sent uncompressed
      }
    }
    if (batch.state !== "prep") return null;
    batch.state = "inflight";
    const headers = { "Content-Type": "application/json" };
    if (gzipped) headers["Content-Encoding"] = "gzip";
    const answer = { status: 0, retryAfter: null, body: null };
    try {
      const response = await this.fetch(this.endpoint, {
        method: "POST",
        body,
        headers,
        credentials: "same-origin",
        keepalive: body.length < KEEPALIVE_MAX,
      });
      answer.status = response.status;
      answer.retryAfter = parseRetryAfter(response.headers && response.headers.get("Retry-After"));
      if (answer.status >= 200 && answer.status < 300) {
        try {
          answer.body = await response.json();
        } catch (e) {
          answer.body = null;
        }
      }
    } catch (e) {
      answer.status = 0;
    }
    return answer;
  }

  /**
   * Page hide: every batch not on the wire goes now, uncompressed, by
   * sendBeacon (keepalive fetch when the beacon is refused), in bodies of at
   * most KEEPALIVE_MAX bytes; a batch too big for one gets more seqs.
   */
  flushBeacon() {
    if (this.stopped) return;
    for (const batch of this.queue.slice()) {
      if (batch.state === "inflight") continue;
      this.remove(batch);
      const chunks = splitEvents(batch.events, KEEPALIVE_MAX, envelopeBytes(batch.meta));
      for (let i = 0; i < chunks.length; i++) {
        const seq = i === 0 ? batch.seq : this.nextSeq();
        if (this.sendNow(buildBody(batch.meta, seq, chunks[i]))) {
          this.sent++;
          this.onSent(batch, "beacon");
        } else this.drop(batch, "unload");
      }
    }
  }

  sendNow(json) {
    const small = utf8Length(json) <= KEEPALIVE_MAX;
    if (this.beacon && small) {
      try {
        if (this.beacon(this.endpoint, json)) return true;
      } catch (e) {
        // refused: try a keepalive fetch
      }
    }
    try {
      const pending = this.fetch(this.endpoint, {
        method: "POST",
        body: json,
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        keepalive: small,
      });
      if (pending && pending.catch) pending.catch(noop);
      return true;
    } catch (e) {
      return false;
    }
  }
}
