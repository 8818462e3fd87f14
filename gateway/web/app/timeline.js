// What the player's timeline and page list show, read from the rrweb events:
// times are milliseconds from the first event, as the Replayer counts them.

const META = 4;
const FULL_SNAPSHOT = 2;
const INCREMENTAL = 3;
const MOUSE_INTERACTION = 2;
const CLICK = 2;
// A page's Meta event comes a few ms before its snapshot; within this window
// the page is shown from the snapshot's time (pausing on the Meta event would
// still show the previous page).
const SNAPSHOT_WINDOW_MS = 1000;

function bounds(events) {
  let start = Infinity;
  let end = -Infinity;
  for (const e of events) {
    if (!e || typeof e.timestamp !== "number") continue;
    if (e.timestamp < start) start = e.timestamp;
    if (e.timestamp > end) end = e.timestamp;
  }
  return start === Infinity ? { start: 0, end: 0 } : { start, end };
}

export function totalTime(events) {
  const { start, end } = bounds(events || []);
  return end - start;
}

// One entry per page shown: {href, time}. Consecutive Meta events with the
// same href (a new snapshot of the same page) are one visit.
export function pageVisits(events) {
  const list = events || [];
  const { start } = bounds(list);
  const out = [];
  for (let i = 0; i < list.length; i += 1) {
    const e = list[i];
    if (!e || e.type !== META || !e.data || typeof e.data.href !== "string") continue;
    let time = e.timestamp;
    for (let j = i + 1; j < list.length && list[j].timestamp - e.timestamp <= SNAPSHOT_WINDOW_MS; j += 1) {
      if (list[j].type === META) break;
      if (list[j].type === FULL_SNAPSHOT) {
        time = list[j].timestamp;
        break;
      }
    }
    if (out.length && out[out.length - 1].href === e.data.href) continue;
    out.push({ href: e.data.href, time: time - start });
  }
  return out;
}

export function clickTimes(events) {
  const list = events || [];
  const { start } = bounds(list);
  const out = [];
  for (const e of list) {
    if (e && e.type === INCREMENTAL && e.data && e.data.source === MOUSE_INTERACTION && e.data.type === CLICK) {
      out.push(e.timestamp - start);
    }
  }
  return out;
}

// Markers for the timeline: every page change, and the clicks grouped so
// that there are at most `slots` click markers (a busy visit has thousands
// of clicks; one marker per slot keeps the bar readable and keyboard-usable).
export function timelineMarkers(events, { slots = 100 } = {}) {
  const total = totalTime(events);
  const markers = pageVisits(events).map((p) => ({ kind: "page", time: p.time, href: p.href }));
  let last = null;
  for (const time of clickTimes(events)) {
    const slot = total > 0 ? Math.min(slots - 1, Math.floor((time / total) * slots)) : 0;
    if (last && last.slot === slot) {
      last.count += 1;
      continue;
    }
    last = { kind: "click", time, count: 1, slot };
    markers.push(last);
  }
  for (const m of markers) delete m.slot;
  return markers.sort((a, b) => a.time - b.time || (a.kind === "page" ? -1 : 1));
}

// Left position of a time on the bar, in percent.
export function percentAt(time, total) {
  if (!(total > 0)) return 0;
  return Math.min(100, Math.max(0, (time / total) * 100));
}

// Index of the page shown at a time (the last visit started at or before it).
export function pageIndexAt(visits, time) {
  let index = -1;
  for (let i = 0; i < visits.length; i += 1) {
    if (visits[i].time <= time) index = i;
    else break;
  }
  return index;
}

// Whether the Replayer can show anything: it needs two events and a snapshot.
export function replayable(events) {
  return Array.isArray(events) && events.length >= 2 && events.some((e) => e && e.type === FULL_SNAPSHOT);
}
