// The loader: policy, consent, first-activity start, rrweb, batching, the page API.
import { record } from "rrweb";
import { FLUSH_BYTES, FLUSH_INTERVAL_MS, HOLD_MAX, isActivity, MAX_URL, stringifyEvent } from "./batch.js";
import { consentDecision, cookieVerdict } from "./consent.js";
import { findTag, isMobile, missingFeature, otherRecorder, parseSettings } from "./env.js";
import { ID_PATTERN, randomId, sampledIn } from "./ids.js";
import { maskUrl, textOptions } from "./mask.js";
import { recordOptions } from "./options.js";
import { compilePatterns, isExcluded } from "./patterns.js";
import { StormGuard, mutationCount } from "./storm.js";
import { browserGzip, Sender } from "./transport.js";

const SESSION_KEY = "__rec_sid";
const OFF_KEY = "__rec_off"; // the gateway said stop: no page of this session records
const CONSENT_KEY = "__rec_consent"; // "1" / "0": the page's last __rec("consent", ...)
const LIVE_KEY = "__rec_live"; // "1": the gateway took a batch of this session (it has started)
const VISITOR_COOKIE = "__rec_vid";
const VISITOR_MAX_AGE = 365 * 24 * 3600;
const CONSENT_POLL_MS = 2000;
const ROUTE_SETTLE_MS = 250;
// {"record": false} reasons that concern this page only, not the session.
const PAGE_REASONS = { excluded: 1, no_activity: 1, consent: 1 };
const ACTIVITY_EVENTS = ["mousemove", "mousedown", "pointerdown", "click", "keydown", "input", "touchstart", "wheel", "scroll"];

export function main(win, doc) {
  const previous = win.__rec;
  if (previous && previous.__recorder === true) return; // loaded twice: the first one runs

  const state = { started: false, reason: "init", session: null, page: null, seq: 0, sent: 0, dropped: 0, storms: 0, site: null };
  let handler = () => undefined;
  const api = function () {
    try {
      return handler(arguments[0], Array.prototype.slice.call(arguments, 1));
    } catch (e) {
      return undefined;
    }
  };
  api.__recorder = true;
  // A stub kept by the page still pushes onto `window.__rec.q`: forward those calls.
  api.q = {
    length: 0,
    push: (args) => {
      if (args && args.length) api.apply(null, args);
      return 0;
    },
  };
  Object.defineProperty(api, "state", {
    enumerable: true,
    get: () => ({
      started: state.started,
      reason: state.reason,
      session: state.session,
      page: state.page,
      seq: state.seq,
      sent: state.sent,
      dropped: state.dropped,
      storms: state.storms,
      site: state.site,
    }),
  });
  const queued = previous && previous.q && previous.q.length ? Array.prototype.slice.call(previous.q) : [];
  win.__rec = api;

  const guard =
    (fn) =>
    function () {
      try {
        return fn.apply(this, arguments);
      } catch (e) {
        return undefined;
      }
    };

  const missing = missingFeature(win);
  if (missing) {
    state.reason = "unsupported";
    return;
  }
  const tag = findTag(doc);
  state.site = tag ? tag.getAttribute("data-rec-site") : null;
  const settings = tag ? parseSettings(tag.getAttribute("data-rec-settings")) : null;
  let endpoint = null;
  try {
    // Against the page's own URL (a <base href> must not send batches elsewhere).
    endpoint = settings ? new win.URL(settings.endpoint, win.location.href).href : null;
  } catch (e) {
    endpoint = null;
  }
  if (!settings || !endpoint) {
    state.reason = "no_settings";
    return;
  }

  const storage = win.sessionStorage;
  const store = {
    get(key) {
      try {
        return storage.getItem(key);
      } catch (e) {
        return null;
      }
    },
    set(key, value) {
      try {
        storage.setItem(key, value);
      } catch (e) {
        // not remembered
      }
    },
  };
  let session = store.get(SESSION_KEY);
  if (!session || !/^[A-Za-z0-9-]{22}$/.test(session)) {
    session = randomId(22, win.crypto);
    store.set(SESSION_KEY, session);
  }
  state.session = session;
  state.page = randomId(22, win.crypto);

  const nav = win.navigator || {};
  const loc = win.location;
  const patterns = compilePatterns(settings.exclude);
  const urlMask = textOptions(settings);

  // Why this page view can never record (null: it may).
  let hard = null;
  try {
    if (win.top !== win.self) hard = "frame"; // the parent page's recording covers same-origin frames
  } catch (e) {
    hard = "frame";
  }
  if (!hard && store.get(OFF_KEY)) hard = store.get(OFF_KEY);
  if (!hard && settings.respectGpc && nav.globalPrivacyControl === true) hard = "gpc";
  if (!hard && !settings.recordMobile && isMobile(nav)) hard = "mobile";
  if (!hard && !sampledIn(session, settings.sampleRate)) hard = "sampled_out";
  if (!hard && otherRecorder(win)) hard = "conflict";

  let apiConsent = store.get(CONSENT_KEY) === "1" ? true : store.get(CONSENT_KEY) === "0" ? false : null;
  let lastConsent = null;
  let activity = false;
  let userStopped = false;
  let pageExcluded = false;
  let routeExcluded = isExcluded(patterns, loc.pathname);
  let routeTimer = null;
  let pollTimer = null;
  let flushTimer = null;
  let stormTimer = null;
  let stopRecording = null;
  let recording = false;
  let liveSession = store.get(LIVE_KEY) === "1";
  let pageActive = false; // the buffer since rrweb started held a user-activity event
  let buffer = [];
  let bufferChars = 0;
  let snapshotChars = 0; // the last full snapshot's share of bufferChars
  let rearmTimer = null;
  let pendingCustom = [];
  let visitor = null;
  let lastHref = loc.href;
  // The page URL of what is being recorded (not an excluded route's, after a pause there).
  let recordedHref = loc.href;
  const storm = new StormGuard();

  function readCookie() {
    try {
      return doc.cookie || "";
    } catch (e) {
      return "";
    }
  }

  function consentState() {
    return consentDecision(settings.consent, apiConsent, cookieVerdict(readCookie(), settings.consentCookie));
  }

  function blockReason() {
    if (hard) return hard;
    if (pageExcluded) return "excluded";
    const consent = consentState();
    if (consent === "refused") return "consent";
    if (consent === "pending") return "waiting_consent";
    if (userStopped) return "stopped";
    if (routeExcluded) return "excluded";
    if (!recording && otherRecorder(win)) {
      hard = "conflict";
      return hard;
    }
    return null;
  }

  function evaluate() {
    lastConsent = consentState();
    const why = blockReason();
    if (why) {
      if (recording) pause();
      state.reason = why;
      if (hard) detach();
      return;
    }
    if (!activity) {
      state.reason = "waiting_activity";
      return;
    }
    if (!recording) start();
  }

  // The consent cookie is read on start and every CONSENT_POLL_MS: a yes starts
  // the recording, a withdrawal stops it and drops what was not sent.
  const pollConsent = guard(() => {
    const now = consentState();
    if (now === lastConsent) return;
    if ((now === "refused" || now === "pending") && recording) dropAll();
    evaluate();
  });

  // ---- recording -------------------------------------------------------

  function start() {
    recording = true;
    recordedHref = loc.href;
    storm.reset();
    if (!liveSession && !pageActive) {
      // A held buffer (no activity yet) is superseded by the new full snapshot.
      buffer = [];
      bufferChars = 0;
      snapshotChars = 0;
    }
    let stop;
    try {
      stop = record(recordOptions(settings, guard(onEvent)));
    } catch (e) {
      stop = undefined;
    }
    if (typeof stop !== "function") {
      recording = false;
      buffer = [];
      bufferChars = 0;
      hard = "error";
      state.reason = hard;
      return;
    }
    stopRecording = stop;
    state.started = true;
    state.reason = "recording";
    for (const custom of pendingCustom) add(Object.assign(custom, { timestamp: Date.now() }));
    pendingCustom = [];
    if (flushTimer === null) flushTimer = win.setInterval(guard(() => flush(false)), FLUSH_INTERVAL_MS);
  }

  /** Stops rrweb; what was recorded until now is still sent (the callers that must drop it drop it first). */
  function pause() {
    recording = false;
    state.started = false;
    const stop = stopRecording;
    stopRecording = null;
    endStorm(false);
    try {
      if (stop) stop();
    } catch (e) {
      // stopped anyway
    }
    flush(false);
  }

  function onEvent(event) {
    if (!recording) return;
    if (storm.note(mutationCount(event), Date.now())) {
      if (stormTimer === null) {
        state.storms = storm.storms;
        stormTimer = win.setInterval(
          guard(() => {
            if (storm.tick(Date.now())) endStorm(true);
          }),
          1000,
        );
      }
      return;
    }
    if (event && event.type === 4 && event.data && typeof event.data.href === "string") {
      event.data.href = maskUrl(event.data.href, urlMask);
    }
    add(event);
  }

  function endStorm(snapshot) {
    if (stormTimer !== null) {
      win.clearInterval(stormTimer);
      stormTimer = null;
    }
    storm.reset();
    if (snapshot && recording) {
      try {
        record.takeFullSnapshot(true);
      } catch (e) {
        // next checkout
      }
    }
  }

  function add(event) {
    const json = stringifyEvent(event);
    if (json === undefined) return;
    if (!pageActive && isActivity(event)) pageActive = true;
    if (event.type === 2) snapshotChars = json.length;
    buffer.push(json);
    bufferChars += json.length;
    if (bufferChars >= FLUSH_BYTES) flush(false);
  }

  // ---- batching and delivery ----------------------------------------------

  function ensureVisitor() {
    if (visitor) return visitor;
    const match = /(?:^|;\s*)__rec_vid=([^;]*)/.exec(readCookie());
    visitor = match && ID_PATTERN.test(match[1]) ? match[1] : randomId(22, win.crypto);
    try {
      const secure = loc.protocol === "https:" ? "; Secure" : "";
      doc.cookie = VISITOR_COOKIE + "=" + visitor + "; Max-Age=" + VISITOR_MAX_AGE + "; Path=/; SameSite=Lax" + secure;
    } catch (e) {
      // sent without the cookie
    }
    return visitor;
  }

  function forgetVisitor() {
    visitor = null;
    try {
      doc.cookie = VISITOR_COOKIE + "=; Max-Age=0; Path=/; SameSite=Lax";
    } catch (e) {
      // nothing to forget
    }
  }

  function batchMeta() {
    const consent = consentState();
    const meta = { session, page: state.page, url: maskUrl(recordedHref, urlMask).slice(0, MAX_URL) };
    if (consent === "given") meta.consent = true;
    if (consent === "given" || consent === "ok") meta.visitor = ensureVisitor();
    return meta;
  }

  const sender = new Sender({
    endpoint,
    fetch: (url, init) => win.fetch(url, init),
    beacon:
      nav.sendBeacon && typeof win.Blob === "function"
        ? (url, json) => nav.sendBeacon(url, new win.Blob([json], { type: "application/json" }))
        : null,
    gzip: browserGzip(win),
    sleep: (ms) => new Promise((resolve) => win.setTimeout(resolve, ms)),
    nextSeq: () => state.seq++,
    onSent: (batch, how) => {
      if (how !== "refused") state.sent++;
      if (how === "fetch" && !liveSession) {
        liveSession = true;
        store.set(LIVE_KEY, "1");
      }
    },
    onDrop: (batch, why) => {
      state.dropped++;
      // Events lost in the middle of a recording: a new full snapshot makes the rest replayable.
      if (why === "overflow" && recording) {
        try {
          record.takeFullSnapshot(true);
        } catch (e) {
          // next batch
        }
      }
    },
    // {"record": false}: false keeps the sender going (no_activity: start over).
    onStop: (reason) => {
      try {
        if (reason === "no_activity") {
          liveSession = false;
          rearm();
          return false;
        }
        if (!PAGE_REASONS[reason]) store.set(OFF_KEY, reason || "server");
        hard = reason || "server";
        dropAll();
        evaluate();
      } catch (e) {
        // stopped all the same
      }
      return true;
    },
  });

  /** The buffer as one batch; `later`: for the page-hide beacons. */
  function flush(later) {
    if (!buffer.length || holding()) return;
    const events = buffer;
    buffer = [];
    bufferChars = 0;
    sender.push(batchMeta(), events, later);
  }

  // The gateway refuses ("no_activity") a session's first batch without a
  // user-activity event; the event that started rrweb is not in the
  // recording, so the buffer waits for the next one. When more than HOLD_MAX
  // piles up behind the snapshot meanwhile (a page busy on its own), all of
  // it goes and the loader waits for the visitor again.
  function holding() {
    if (liveSession || pageActive) return false;
    if (bufferChars - snapshotChars > HOLD_MAX && rearmTimer === null) {
      buffer = [];
      bufferChars = 0;
      // Not from inside rrweb's emit: stopping rrweb waits for the next task.
      rearmTimer = win.setTimeout(
        guard(() => {
          rearmTimer = null;
          rearm();
        }),
        0,
      );
    }
    return true;
  }

  /** Back to waiting for the visitor's activity, nothing kept; the next start takes a new full snapshot. */
  function rearm() {
    dropAll();
    if (recording) pause();
    activity = false;
    pageActive = false;
    if (attached && !hard) addActivityListeners();
    evaluate();
  }

  function dropAll() {
    buffer = [];
    bufferChars = 0;
    snapshotChars = 0;
    pendingCustom = [];
    sender.clear();
  }

  // ---- the page's API -----------------------------------------------------

  function command(name, args) {
    switch (name) {
      case "consent": {
        const given = args[0] === true || args[0] === "true" || args[0] === 1;
        apiConsent = given;
        store.set(CONSENT_KEY, given ? "1" : "0");
        if (!given) {
          dropAll();
          forgetVisitor();
        }
        evaluate();
        return undefined;
      }
      case "exclude":
        pageExcluded = true;
        dropAll();
        evaluate();
        return undefined;
      case "identify": {
        const payload = plainCopy(args[0]);
        if (payload === undefined) return undefined;
        const event = { type: 5, data: { tag: "identify", payload }, timestamp: Date.now() };
        if (recording) add(event);
        else pendingCustom.push(event);
        return undefined;
      }
      case "stop":
        userStopped = true;
        evaluate();
        return undefined;
      case "start":
        userStopped = false;
        activity = true;
        evaluate();
        return undefined;
      case "state":
        return api.state;
      default:
        return undefined;
    }
  }

  function plainCopy(value) {
    if (!value || typeof value !== "object") return undefined;
    try {
      const json = JSON.stringify(value);
      return json.length <= 8192 ? JSON.parse(json) : undefined;
    } catch (e) {
      return undefined;
    }
  }

  // ---- the page's life ------------------------------------------------------

  const onActivity = guard((event) => {
    if (activity || (event && event.isTrusted === false)) return;
    if (event && event.type === "scroll" && !(nav.userActivation && nav.userActivation.hasBeenActive)) return;
    activity = true;
    removeActivityListeners();
    evaluate();
  });
  const listenOptions = { capture: true, passive: true };
  function addActivityListeners() {
    for (const type of ACTIVITY_EVENTS) win.addEventListener(type, onActivity, listenOptions);
  }
  function removeActivityListeners() {
    for (const type of ACTIVITY_EVENTS) win.removeEventListener(type, onActivity, listenOptions);
  }

  const onRoute = guard(() => {
    const href = loc.href;
    if (href === lastHref) return;
    lastHref = href;
    if (isExcluded(patterns, loc.pathname)) {
      if (routeTimer !== null) {
        win.clearTimeout(routeTimer);
        routeTimer = null;
      }
      if (!routeExcluded) {
        routeExcluded = true;
        evaluate(); // pauses now: what came before is flushed
      }
      return;
    }
    if (routeExcluded) {
      // Leaving an excluded route: the new route renders after pushState, so
      // the full snapshot waits a moment (and the path is checked again).
      if (routeTimer === null) {
        routeTimer = win.setTimeout(
          guard(() => {
            routeTimer = null;
            routeExcluded = isExcluded(patterns, loc.pathname);
            evaluate();
          }),
          ROUTE_SETTLE_MS,
        );
      }
      return;
    }
    if (recording) {
      recordedHref = href;
      add({
        type: 4,
        data: { href: maskUrl(href, urlMask), width: win.innerWidth, height: win.innerHeight },
        timestamp: Date.now(),
      });
    }
  });

  function patchHistory() {
    const history = win.history;
    if (!history) return;
    for (const name of ["pushState", "replaceState"]) {
      const original = history[name];
      if (typeof original !== "function") continue;
      history[name] = function () {
        const result = original.apply(this, arguments);
        onRoute();
        return result;
      };
    }
    win.addEventListener("popstate", onRoute);
  }

  const onPageHide = guard(() => {
    flush(true);
    sender.flushBeacon();
  });
  const onVisibility = guard(() => {
    if (doc.visibilityState === "hidden") flush(false);
  });

  let attached = false;
  function attach() {
    attached = true;
    if (settings.consentCookie !== null && settings.consent !== "none") {
      pollTimer = win.setInterval(pollConsent, CONSENT_POLL_MS);
    }
    addActivityListeners();
    patchHistory();
    win.addEventListener("pagehide", onPageHide);
    doc.addEventListener("visibilitychange", onVisibility);
  }
  function detach() {
    if (!attached) return;
    removeActivityListeners();
    if (pollTimer !== null) win.clearInterval(pollTimer);
    pollTimer = null;
  }

  handler = (name, args) => {
    try {
      return command(name, args);
    } catch (e) {
      return undefined;
    }
  };
  for (const call of queued) {
    try {
      if (call && call.length) command(call[0], Array.prototype.slice.call(call, 1));
    } catch (e) {
      // a bad queued call is ignored
    }
  }
  if (hard) {
    state.reason = hard;
    return;
  }
  // A visitor who acted before this async script ran has acted.
  if (nav.userActivation && nav.userActivation.hasBeenActive === true) activity = true;
  attach();
  evaluate();
}
