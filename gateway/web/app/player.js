// The player page: /recordings/{id} (admin) and /share/{token} (read-only).
import { Replayer } from "rrweb";
import { createApi } from "./api.js";
import { createControls } from "./controls.js";
import { $, $$, clear, h, timeEl } from "./dom.js";
import { fitScale } from "./fit.js";
import { formatBytes, formatClock, formatDate, formatDateTime, formatDuration, formatNumber, pathOf } from "./format.js";
import { capitalize, visitorLabel } from "./recording.js";
import { playerRoute } from "./route.js";
import { initShare } from "./share.js";
import { pageIndexAt, pageVisits, replayable, timelineMarkers, totalTime } from "./timeline.js";

const FIRST_FRAME_TIMEOUT_MS = 15000;
const api = createApi((path, init) => window.fetch(path, init));
const route = playerRoute(location.pathname);

function setState(value) {
  document.body.dataset.state = value;
}

function toSignIn() {
  location.replace(`/?next=${encodeURIComponent(location.pathname)}`);
}

function fail(title, text) {
  $("#status").hidden = true;
  $("#player").hidden = true;
  $("#load-error-title").textContent = title;
  $("#load-error-text").textContent = text;
  $("#load-error").hidden = false;
  document.title = `${title} · recording gateway`;
  setState("error");
}

function loadFailed(err) {
  if (route.shared) {
    if (err.status === 404) return fail("Unknown link", "This share link does not exist. Check that the whole link was copied.");
    if (err.status === 410 && err.code === "revoked") return fail("Link revoked", "This share link was revoked: the recording can no longer be watched with it.");
    if (err.status === 410) return fail("Link expired", "This share link has expired. Ask the person who sent it for a new one.");
  } else {
    if (err.status === 401) return toSignIn();
    if (err.status === 404) {
      return fail("Recording not found", "This recording does not exist or was deleted: recordings are deleted automatically when their retention period ends.");
    }
  }
  return fail("This recording cannot be shown", err.message);
}

// ---- details -------------------------------------------------------------

function renderDetails(r) {
  const who = visitorLabel(r);
  const identity = r.identity || {};
  const rows = [
    ["Visitor", who],
    identity.id ? ["Identified as", String(identity.id)] : null,
    r.visitor && r.visitor !== who ? ["Visitor id", r.visitor] : null,
    ["Device", capitalize(r.device)],
    ["Browser", r.browser || "Unknown"],
    ["Started", timeEl(r.started_at, formatDateTime(r.started_at, { seconds: true }), r.started_at)],
    ["Duration", formatDuration(r.duration_ms)],
    ["Events", formatNumber(r.events)],
    typeof r.bytes === "number" ? ["Size", formatBytes(r.bytes)] : null,
    r.finalized === false ? ["Status", "Still running: the visitor may still be on the site"] : null,
    r.expires_at ? ["Deleted on", timeEl(r.expires_at, formatDate(r.expires_at), r.expires_at)] : null,
  ];
  const dl = $("#details");
  clear(dl);
  for (const item of rows) {
    if (item) dl.append(h("dt", { text: item[0] }), h("dd", null, item[1]));
  }
  $("#title").textContent = `Visit by ${who}`;
  document.title = `${who}, ${formatDateTime(r.started_at)} · recording gateway`;
}

function renderPages(visits, seek) {
  const list = $("#pages");
  clear(list);
  if (visits.length === 0) list.append(h("li", { class: "muted", text: "No page address was recorded." }));
  const items = visits.map((v) =>
    h(
      "li",
      null,
      h(
        "button",
        { type: "button", class: "page-jump", "data-testid": "page-jump", title: v.href, onclick: () => seek(v.time) },
        h("span", { class: "page-time", text: formatClock(v.time) }),
        h("span", { class: "page-path", text: pathOf(v.href) || v.href }),
      ),
    ),
  );
  list.append(...items);
  let shown = -2;
  // Marks the page on screen as the replay moves.
  return (time) => {
    const index = pageIndexAt(visits, time);
    if (index === shown) return;
    shown = index;
    items.forEach((li, i) => {
      const button = li.firstChild;
      if (i === index) button.setAttribute("aria-current", "step");
      else button.removeAttribute("aria-current");
    });
  };
}

function renderShared(r) {
  const banner = $("#shared-banner");
  // The share's own expiry when the server sends it; the link never outlives
  // the recording, so its deletion date bounds it otherwise.
  const share = r.share || {};
  const expires = share.expires_at || r.share_expires_at;
  banner.textContent = expires
    ? `Shared recording, read-only. The link expires ${formatDateTime(expires)}.`
    : `Shared recording, read-only. The link expires ${formatDateTime(r.expires_at)} at the latest.`;
  banner.hidden = false;
}

// ---- replay --------------------------------------------------------------

// Keeps the recorded viewport (the wrapper's size) inside the stage with a
// CSS transform; the root gets the scaled size, since transforms do not
// change layout.
function fitReplay(replayer, stage, root) {
  let width = 0;
  let height = 0;
  function fit() {
    if (!width || !height) return;
    const style = getComputedStyle(stage);
    const available = stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const maxHeight = Math.max(240, window.innerHeight * 0.75);
    const scale = fitScale(width, height, available, maxHeight);
    replayer.wrapper.style.transform = `scale(${scale})`;
    root.style.width = `${Math.floor(width * scale)}px`;
    root.style.height = `${Math.floor(height * scale)}px`;
  }
  replayer.on("resize", (d) => {
    width = Number(d.width) || 0;
    height = Number(d.height) || 0;
    fit();
  });
  if (typeof ResizeObserver === "function") new ResizeObserver(fit).observe(stage);
  window.addEventListener("resize", fit);
}

function firstFrame(replayer) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the first frame was not rebuilt")), FIRST_FRAME_TIMEOUT_MS);
    replayer.on("fullsnapshot-rebuilded", () => {
      clearTimeout(timer);
      // Two frames: the iframe has been laid out and painted.
      requestAnimationFrame(() => requestAnimationFrame(resolve));
    });
  });
}

async function main() {
  if (!route) return fail("Not a recording", "This address does not name a recording.");
  // The shared view has no admin controls at all, not even hidden ones.
  if (route.shared) {
    $("#share-panel").remove();
    $("#back").remove();
  }
  let recording;
  let events;
  try {
    [recording, events] = await Promise.all([api.get(route.recording), api.get(route.events)]);
  } catch (err) {
    return loadFailed(err);
  }
  renderDetails(recording);
  if (route.shared) renderShared(recording);
  if (!replayable(events)) {
    return fail("Nothing to replay", "This recording holds no complete page snapshot, so it cannot be replayed (the visit may have been cut short).");
  }

  $("#status").hidden = true;
  $("#player").hidden = false;
  const root = $("#replay");
  const stage = $("#stage");
  let replayer;
  try {
    replayer = new Replayer(events, {
      root,
      skipInactive: $("#skip").checked,
      speed: 1,
      mouseTail: true,
      UNSAFE_replayCanvas: false,
      triggerFocus: false,
      showWarning: false,
    });
  } catch (err) {
    return fail("This recording cannot be replayed", String((err && err.message) || err));
  }
  // The replay is a picture of the visit: keep it out of the tab order.
  replayer.iframe.setAttribute("tabindex", "-1");
  replayer.iframe.setAttribute("title", "Replay of the visit");
  fitReplay(replayer, stage, root);

  const total = totalTime(events);
  const visits = pageVisits(events);
  let markPage = () => {};
  const controls = createControls(replayer, {
    total,
    // About one click marker per 16 px of bar, so that they do not overlap.
    markers: timelineMarkers(events, { slots: Math.max(10, Math.floor($("#markers").clientWidth / 16)) }),
    ui: {
      play: $("#play"),
      currentTime: $("#current-time"),
      totalTime: $("#total-time"),
      timeline: $("#timeline"),
      markers: $("#markers"),
      speeds: $$("[data-speed]"),
      skip: $("#skip"),
      skipping: $("#skipping"),
    },
    onTime: (t) => markPage(t),
  });
  markPage = renderPages(visits, controls.seek);
  markPage(0);

  if (!route.shared) initShare({ api, route, onSignedOut: toSignIn });

  try {
    await firstFrame(replayer);
  } catch (err) {
    return fail("This recording cannot be replayed", err.message);
  }
  setState("ready");
}

main().catch((err) => fail("This recording cannot be shown", String((err && err.message) || err)));
