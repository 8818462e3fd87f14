// Mutation storm budget: past `limit` DOM mutations within one second, events
// are dropped until a whole second passes with at most `calm` of them; the
// loader then takes a new full snapshot so the replay is whole again.

export const STORM_LIMIT = 5000;
export const STORM_CALM = 500;
export const STORM_WINDOW_MS = 1000;

/** How many DOM mutations an rrweb event carries (0 for anything but a Mutation event). */
export function mutationCount(event) {
  if (!event || event.type !== 3 || !event.data || event.data.source !== 0) return 0;
  const d = event.data;
  const n =
    (d.adds ? d.adds.length : 0) +
    (d.removes ? d.removes.length : 0) +
    (d.texts ? d.texts.length : 0) +
    (d.attributes ? d.attributes.length : 0);
  return n || 1;
}

export class StormGuard {
  constructor(limit = STORM_LIMIT, calm = STORM_CALM, windowMs = STORM_WINDOW_MS) {
    this.limit = limit;
    this.calm = calm;
    this.windowMs = windowMs;
    this.storm = false;
    this.windowStart = -Infinity;
    this.count = 0;
    this.storms = 0;
  }

  /** Counts an event's mutations; true when the event must be dropped. The first true of a storm sets `storm`. */
  note(mutations, now) {
    if (this.storm) {
      this.count += mutations;
      return true;
    }
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.count = 0;
    }
    this.count += mutations;
    if (this.count > this.limit) {
      this.storm = true;
      this.storms++;
      this.count = 0;
      return true;
    }
    return false;
  }

  /** Called once per window while a storm lasts: true when it is over (the caller re-snapshots). */
  tick(now) {
    if (!this.storm) return false;
    if (this.count <= this.calm) {
      this.storm = false;
      this.windowStart = now;
      this.count = 0;
      return true;
    }
    this.count = 0;
    return false;
  }

  reset() {
    this.storm = false;
    this.windowStart = -Infinity;
    this.count = 0;
  }
}
