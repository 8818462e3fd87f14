"""The recording model: what the store answers with, and how chunks shape a recording.

A recording is the run of one browser session's events with no pause longer
than the store's `session_gap`. It is built from chunks (one browser batch
each) that may arrive late, twice, out of order and from several edge nodes:

* `summarize` reads what one chunk says about its recording (time span, pages
  visited, the last "identify" call);
* `choose` picks the recording of the session whose time span, widened by the
  gap on both sides, meets the chunk's span (the closest one if several do);
* `Draft` is a recordings row while one ingest changes it.

None of this touches the disk: engine.py writes what these decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from gateway.collect.schema import CustomEvent, Event, MetaEvent

MAX_LIMIT = 500
# Event times (ms since the epoch) that RFC 3339 can show: years 1 to 9999.
_FIRST_MS = -62_135_596_800_000.0
_LAST_MS = 253_402_300_799_999.0


class StoreError(Exception):
    """The disk or the database refused: nothing of the batch is visible.

    The caller answers 503 and the sender retries the same batch later.
    """


class Recording(msgspec.Struct, frozen=True):
    id: str  # 32 hex digits, time-ordered (UUIDv7)
    site: str
    session: str
    visitor: str | None  # the first visitor id a batch carried
    name: str | None  # from the last "identify" call's payload
    email: str | None
    identified_id: str | None
    started_at: float  # ms since the epoch: the earliest event
    ended_at: float  # ms: the latest event
    created_at: float  # Unix seconds (store clock) when the store created it
    last_seen_at: float  # Unix seconds (store clock) of the last ingest that added to it
    pages: list[str]  # page URLs in the order first seen, unique
    device: str
    browser: str
    events: int
    bytes: int  # compressed bytes of its chunks on disk
    finalized: bool

    @property
    def duration_ms(self) -> float:
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class RecordingQuery:
    site: str | None = None
    started_from: float | None = None  # ms, inclusive, on started_at
    started_to: float | None = None  # ms, exclusive
    min_duration_ms: float | None = None
    url: str | None = None  # case-insensitive substring of any page URL
    device: str | None = None  # exact, case-insensitive
    browser: str | None = None  # exact, case-insensitive
    visitor: str | None = None  # visitor or identified id exactly, or part of name or email
    live: bool = False  # also recordings not finalized yet
    limit: int = 50  # 1..MAX_LIMIT
    cursor: str | None = None  # `next` of the previous page


@dataclass(frozen=True)
class IngestResult:
    duplicate: bool  # the batch id was already stored: nothing was done
    chunks: int  # browser batches newly written
    skipped: int  # browser batches already stored under (site, session, page, seq)
    events: dict[str, int]  # site -> events written
    started: dict[str, int]  # site -> recordings created
    # Browser batches of an erased visitor (or of an erased recording's session) that
    # were received before the erasure: dropped, so an erasure stays an erasure.
    erased: int = 0


# ---------------------------------------------------------------- one chunk


@dataclass(frozen=True)
class Identify:
    timestamp: float
    id: str | None
    name: str | None
    email: str | None


@dataclass(frozen=True)
class ChunkSummary:
    events: list[Event]  # the chunk's events with a usable timestamp
    first_ts: float
    last_ts: float
    pages: list[str]  # the batch URL, then Meta hrefs in order; unique
    identify: Identify | None  # the chunk's last identify call


def _text(payload: dict[object, object], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def summarize(url: str, events: Sequence[Event]) -> ChunkSummary | None:
    """What one browser batch tells about its recording; None if no event has a time."""
    kept: list[Event] = []
    pages: dict[str, None] = {url: None}  # a dict keeps first-seen order
    identify: Identify | None = None
    first = math.inf
    last = -math.inf
    for event in events:
        ts = event.timestamp
        # NaN, infinity (NaN is NULL to SQLite) or a time no date can show (which would
        # fail every API answer with its recording) cannot be placed in time.
        if not _FIRST_MS <= ts <= _LAST_MS:
            continue
        kept.append(event)
        if ts < first:
            first = ts
        if ts > last:
            last = ts
        # Exact types, as decoded: isinstance on msgspec's Struct classes is slower.
        if type(event) is MetaEvent:
            pages.setdefault(event.data.href, None)
        elif type(event) is CustomEvent and event.data.tag == "identify":
            payload = event.data.payload
            if isinstance(payload, dict) and (identify is None or ts >= identify.timestamp):
                identify = Identify(
                    ts, _text(payload, "id"), _text(payload, "name"), _text(payload, "email")
                )
    if not kept:
        return None
    return ChunkSummary(kept, first, last, list(pages), identify)


# ---------------------------------------------------------------- one recording


@dataclass
class Draft:
    """A recordings row while one ingest changes it."""

    id: str
    site: str
    session: str
    started_at: float
    ended_at: float
    created_at: float
    last_seen_at: float
    visitor: str | None = None
    name: str | None = None
    email: str | None = None
    identified_id: str | None = None
    identify_ts: float | None = None  # when the identify call that set the three above ran
    device: str = ""
    browser: str = ""
    events: int = 0
    bytes: int = 0
    finalized: bool = False
    new: bool = field(default=False, compare=False)  # not in the index yet

    def distance(self, first_ts: float, last_ts: float) -> float:
        """How far (ms) a span lies outside this recording's span; 0 if they overlap."""
        return max(0.0, self.started_at - last_ts, first_ts - self.ended_at)

    def absorb(
        self,
        summary: ChunkSummary,
        *,
        length: int,
        visitor: str | None,
        device: str,
        browser: str,
        now: float,
    ) -> None:
        self.started_at = min(self.started_at, summary.first_ts)
        self.ended_at = max(self.ended_at, summary.last_ts)
        self.events += len(summary.events)
        self.bytes += length
        self.last_seen_at = now
        if self.visitor is None:
            self.visitor = visitor
        self.device = self.device or device
        self.browser = self.browser or browser
        found = summary.identify
        # The latest call by event time wins, whatever order the chunks came in.
        if found is not None and (self.identify_ts is None or found.timestamp >= self.identify_ts):
            self.identify_ts = found.timestamp
            self.identified_id, self.name, self.email = found.id, found.name, found.email


def choose(drafts: Sequence[Draft], first_ts: float, last_ts: float, gap: float) -> Draft | None:
    """The session's recording a chunk spanning [first_ts, last_ts] belongs to, if any.

    It belongs to a recording when the two spans are less than `gap` ms apart
    (or overlap); of several, the closest wins, then the latest started.
    """
    best: Draft | None = None
    best_key = (math.inf, 0.0)
    for draft in drafts:
        distance = draft.distance(first_ts, last_ts)
        if distance > gap:
            continue
        key = (distance, -draft.started_at)
        if best is None or key < best_key:
            best, best_key = draft, key
    return best
