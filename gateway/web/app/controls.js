// The player's own controls over an rrweb Replayer: play/pause, speed,
// inactivity skipping, the timeline with its markers, keyboard shortcuts.
import { h } from "./dom.js";
import { formatClock, pathOf } from "./format.js";
import { percentAt } from "./timeline.js";

const STEP_MS = 5000;
const PAGE_STEP_MS = 30000;

export function createControls(replayer, { total, markers, ui, onTime }) {
  let playing = false;
  let finished = false;
  let current = 0;
  let scrubbing = false;
  let frame = 0;

  const clamp = (t) => Math.min(total, Math.max(0, Number(t) || 0));

  function render(time) {
    current = clamp(time);
    ui.currentTime.textContent = formatClock(current);
    if (!scrubbing) ui.timeline.value = String(Math.round(current));
    ui.timeline.setAttribute("aria-valuetext", `${formatClock(current)} of ${formatClock(total)}`);
    onTime(current);
  }

  function showPlaying() {
    ui.play.textContent = playing ? "Pause" : finished ? "Replay" : "Play";
    ui.play.dataset.playing = String(playing);
  }

  function tick() {
    if (!playing) return;
    render(replayer.getCurrentTime());
    frame = requestAnimationFrame(tick);
  }

  function play() {
    if (playing) return;
    // rrweb's play(t) rebuilds up to t; play() alone would start over.
    const from = finished || current >= total ? 0 : current;
    finished = false;
    playing = true;
    replayer.play(from);
    showPlaying();
    frame = requestAnimationFrame(tick);
  }

  function pause() {
    if (!playing) return;
    playing = false;
    cancelAnimationFrame(frame);
    replayer.pause();
    render(replayer.getCurrentTime());
    showPlaying();
  }

  const toggle = () => (playing ? pause() : play());

  function seek(time) {
    const t = clamp(time);
    finished = false;
    // rrweb applies events strictly before the offset when it pauses: +1 ms
    // so that a page's snapshot at exactly t is shown.
    if (playing) replayer.play(t);
    else replayer.pause(t + 1);
    render(t);
    showPlaying();
  }

  replayer.on("finish", () => {
    playing = false;
    finished = true;
    cancelAnimationFrame(frame);
    render(total);
    showPlaying();
  });
  replayer.on("skip-start", () => {
    ui.skipping.hidden = false;
  });
  replayer.on("skip-end", () => {
    ui.skipping.hidden = true;
  });

  // Buttons and fields.
  ui.play.addEventListener("click", toggle);
  for (const button of ui.speeds) {
    button.addEventListener("click", () => {
      replayer.setConfig({ speed: Number(button.dataset.speed) });
      for (const b of ui.speeds) b.setAttribute("aria-pressed", String(b === button));
    });
  }
  ui.skip.addEventListener("change", () => {
    replayer.setConfig({ skipInactive: ui.skip.checked });
    if (!ui.skip.checked) ui.skipping.hidden = true;
  });

  // The timeline: dragging shows the time, releasing seeks (each seek
  // replays the events up to that point, too slow to do while dragging).
  ui.timeline.max = String(Math.round(total));
  ui.totalTime.textContent = formatClock(total);
  ui.timeline.addEventListener("input", () => {
    scrubbing = true;
    ui.currentTime.textContent = formatClock(Number(ui.timeline.value));
  });
  ui.timeline.addEventListener("change", () => {
    scrubbing = false;
    seek(Number(ui.timeline.value));
  });
  // The range's own key steps would be 1 ms: use seconds instead.
  ui.timeline.addEventListener("keydown", (event) => {
    const moves = {
      ArrowLeft: -STEP_MS,
      ArrowDown: -STEP_MS,
      ArrowRight: STEP_MS,
      ArrowUp: STEP_MS,
      PageDown: -PAGE_STEP_MS,
      PageUp: PAGE_STEP_MS,
    };
    if (event.key in moves) seek(current + moves[event.key]);
    else if (event.key === "Home") seek(0);
    else if (event.key === "End") seek(total);
    else return;
    event.preventDefault();
  });

  buildMarkers(markers, total, ui.markers, seek);

  // Space and arrows anywhere outside a control (a focused button keeps its
  // own Space; the timeline has no use for Space, so it plays there too).
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target instanceof Element ? event.target : null;
    const onTimeline = target === ui.timeline;
    const inControl = target && target.closest("input, select, textarea, button, a, [contenteditable], [role=toolbar]");
    if (event.key === " " && (!inControl || onTimeline)) {
      event.preventDefault();
      toggle();
    } else if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && !inControl) {
      event.preventDefault();
      seek(current + (event.key === "ArrowLeft" ? -STEP_MS : STEP_MS));
    }
  });

  render(0);
  showPlaying();
  return { seek, play, pause, get current() { return current; } };
}

function markerLabel(m) {
  const at = formatClock(m.time);
  if (m.kind === "page") return `Page ${pathOf(m.href) || m.href} at ${at}`;
  return m.count > 1 ? `${m.count} clicks from ${at}` : `Click at ${at}`;
}

// One tab stop for all markers (a toolbar with arrow keys between them):
// a long visit can have a hundred of them.
function buildMarkers(markers, total, container, seek) {
  const buttons = markers.map((m, i) => {
    const label = markerLabel(m);
    const b = h("button", {
      type: "button",
      class: `marker marker-${m.kind}`,
      "data-testid": "marker",
      "data-kind": m.kind,
      "data-time": String(Math.round(m.time)),
      "aria-label": label,
      title: label,
      tabindex: i === 0 ? "0" : "-1",
      onclick: () => seek(m.time),
    });
    // CSSOM, not a style="" attribute: allowed by the page's CSP either way.
    b.style.left = `${percentAt(m.time, total)}%`;
    return b;
  });
  container.append(...buttons);
  container.hidden = buttons.length === 0;
  container.addEventListener("keydown", (event) => {
    const index = buttons.indexOf(event.target);
    if (index < 0) return;
    const to = { ArrowRight: index + 1, ArrowDown: index + 1, ArrowLeft: index - 1, ArrowUp: index - 1, Home: 0, End: buttons.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    const next = buttons[Math.max(0, Math.min(buttons.length - 1, to))];
    for (const b of buttons) b.tabIndex = b === next ? 0 : -1;
    next.focus();
  });
}
