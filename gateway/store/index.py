"""The store's index: one SQLite file (`index.sqlite3`, WAL, synchronous=FULL).

Tables:

* `recordings`: one row per recording (see recordings.Recording), plus
  casefolded name and email for the visitor filter and the time of the
  identify call that set them;
* `chunks`: one row per stored browser batch, unique on (site, session, page,
  seq) so a batch the edge sends twice is stored once, with where its bytes
  are in the recording's segment file (offset, length, decoded length);
* `pages`: (recording, url) with the chunk time and position it was first
  seen at, for the page list and the url filter;
* `batches`: ids of the upstream batches stored (idempotency), pruned with
  retention;
* `usage`: recordings created per site and UTC month; never decremented.

Every method is synchronous and is called on the store's single worker thread;
writes happen inside `begin()` ... `commit()` (BEGIN IMMEDIATE) so that one
ingest or one delete is all or nothing.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gateway.store.recordings import MAX_LIMIT, Draft, Recording, RecordingQuery
from gateway.store.segments import ChunkRef


@dataclass(frozen=True)
class Erasure:
    """A visitor erased (for one site, or every site when `site` is None) at `at`."""

    visitor: str
    site: str | None
    at: float  # store clock, Unix seconds


_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    session TEXT NOT NULL,
    visitor TEXT,
    name TEXT,
    email TEXT,
    identified_id TEXT,
    identify_ts REAL,
    name_key TEXT,
    email_key TEXT,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    device TEXT NOT NULL,
    browser TEXT NOT NULL,
    events INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    finalized INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recordings_started ON recordings (started_at, id);
CREATE INDEX IF NOT EXISTS recordings_site_started ON recordings (site, started_at, id);
CREATE INDEX IF NOT EXISTS recordings_session ON recordings (site, session);
CREATE INDEX IF NOT EXISTS recordings_visitor ON recordings (visitor);
CREATE INDEX IF NOT EXISTS recordings_identified ON recordings (identified_id);
CREATE INDEX IF NOT EXISTS recordings_created ON recordings (created_at);
CREATE INDEX IF NOT EXISTS recordings_running ON recordings (last_seen_at) WHERE finalized = 0;

CREATE TABLE IF NOT EXISTS chunks (
    site TEXT NOT NULL,
    session TEXT NOT NULL,
    page TEXT NOT NULL,
    seq INTEGER NOT NULL,
    recording_id TEXT NOT NULL,
    file_offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    raw_length INTEGER NOT NULL,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    events INTEGER NOT NULL,
    UNIQUE (site, session, page, seq)
);
CREATE INDEX IF NOT EXISTS chunks_recording ON chunks (recording_id, first_ts);

CREATE TABLE IF NOT EXISTS pages (
    recording_id TEXT NOT NULL,
    url TEXT NOT NULL,
    url_key TEXT NOT NULL,
    first_ts REAL NOT NULL,
    position INTEGER NOT NULL,
    UNIQUE (recording_id, url)
);

CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    stored_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_stored ON batches (stored_at);

CREATE TABLE IF NOT EXISTS erasures (
    kind TEXT NOT NULL,
    site TEXT NOT NULL,
    key TEXT NOT NULL,
    erased_at REAL NOT NULL,
    PRIMARY KEY (kind, site, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS usage (
    site TEXT NOT NULL,
    month TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (site, month)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "id, site, session, visitor, name, email, identified_id, identify_ts, started_at, ended_at,"
    " created_at, last_seen_at, device, browser, events, bytes, finalized"
)
_CURSOR_MAX = 200
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_cursor_decoder = msgspec.json.Decoder(tuple[float, str])


@dataclass(frozen=True)
class ChunkRow:
    key: tuple[str, str, str, int]  # site, session, page, seq
    recording_id: str
    ref: ChunkRef
    first_ts: float
    last_ts: float
    events: int


@dataclass(frozen=True)
class PageRow:
    recording_id: str
    url: str
    first_ts: float  # the chunk's first event
    position: int  # within the chunk: its URL first, then Meta hrefs


# ---------------------------------------------------------------- cursor


def encode_cursor(started_at: float, recording_id: str) -> str:
    raw = msgspec.json.encode((started_at, recording_id))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[float, str]:
    problem = ValueError("cursor: not a cursor this store returned")
    if len(cursor) > _CURSOR_MAX:
        raise problem
    try:
        padded = cursor.encode("ascii") + b"=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        started_at, recording_id = _cursor_decoder.decode(raw)
    except (ValueError, binascii.Error, msgspec.DecodeError) as exc:
        raise problem from exc
    if not math.isfinite(started_at) or not _HEX_ID.fullmatch(recording_id):
        raise problem
    return started_at, recording_id


def check_query(query: RecordingQuery) -> tuple[float, str] | None:
    """The decoded cursor; ValueError names the parameter that is wrong."""
    if isinstance(query.limit, bool) or not 1 <= query.limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIMIT}, got {query.limit!r}")
    return None if query.cursor is None else decode_cursor(query.cursor)


# ---------------------------------------------------------------- the index


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def _draft(row: sqlite3.Row) -> Draft:
    return Draft(
        id=row["id"],
        site=row["site"],
        session=row["session"],
        visitor=row["visitor"],
        name=row["name"],
        email=row["email"],
        identified_id=row["identified_id"],
        identify_ts=row["identify_ts"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        device=row["device"],
        browser=row["browser"],
        events=row["events"],
        bytes=row["bytes"],
        finalized=bool(row["finalized"]),
    )


def _recording(row: sqlite3.Row, pages: list[str]) -> Recording:
    return Recording(
        id=row["id"],
        site=row["site"],
        session=row["session"],
        visitor=row["visitor"],
        name=row["name"],
        email=row["email"],
        identified_id=row["identified_id"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        pages=pages,
        device=row["device"],
        browser=row["browser"],
        events=row["events"],
        bytes=row["bytes"],
        finalized=bool(row["finalized"]),
    )


def _filters(
    query: RecordingQuery, after: tuple[float, str] | None
) -> tuple[list[str], list[object]]:
    """SQL conditions (ANDed) and their parameters for a query."""
    where: list[str] = []
    params: list[object] = []
    if query.site is not None:
        where.append("site = ?")
        params.append(query.site)
    if query.started_from is not None:
        where.append("started_at >= ?")
        params.append(query.started_from)
    if query.started_to is not None:
        where.append("started_at < ?")
        params.append(query.started_to)
    if query.min_duration_ms is not None:
        where.append("ended_at - started_at >= ?")
        params.append(query.min_duration_ms)
    if query.url is not None:
        # instr on casefolded text: no LIKE wildcards to escape, and not ASCII-only.
        where.append(
            "EXISTS (SELECT 1 FROM pages p WHERE p.recording_id = recordings.id"
            " AND instr(p.url_key, ?) > 0)"
        )
        params.append(query.url.casefold())
    if query.device is not None:
        where.append("device = ? COLLATE NOCASE")
        params.append(query.device)
    if query.browser is not None:
        where.append("browser = ? COLLATE NOCASE")
        params.append(query.browser)
    if query.visitor is not None:
        where.append(
            "(visitor = ? OR identified_id = ?"
            " OR instr(name_key, ?) > 0 OR instr(email_key, ?) > 0)"
        )
        # An empty needle would be in every name: it matches ids only (none are empty).
        needle = query.visitor.casefold() or None
        params += [query.visitor, query.visitor, needle, needle]
    if not query.live:
        where.append("finalized = 1")
    if after is not None:
        where.append("(started_at, id) < (?, ?)")
        params += list(after)
    return where, params


class Index:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: Path) -> Index:
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed batch (which the sender then forgets) survives a power cut.
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self._db.close()

    # -- transactions

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # -- ingest

    def has_batch(self, batch_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return row is not None

    def erased_at(self, kind: str, site: str, key: str) -> float | None:
        """When `key` (a visitor or a session) was last erased for `site`, or None."""
        row = self._db.execute(
            "SELECT MAX(erased_at) FROM erasures WHERE kind = ? AND key = ? AND site IN (?, '')",
            (kind, key, site),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def has_chunk(self, site: str, session: str, page: str, seq: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM chunks WHERE site = ? AND session = ? AND page = ? AND seq = ?",
            (site, session, page, seq),
        ).fetchone()
        return row is not None

    def session_drafts(self, site: str, session: str) -> list[Draft]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE site = ? AND session = ?", (site, session)
        ).fetchall()
        return [_draft(row) for row in rows]

    def save(
        self,
        drafts: Iterable[Draft],
        chunks: Iterable[ChunkRow],
        pages: Iterable[PageRow],
        *,
        batch_id: str,
        node: str,
        now: float,
        month: str,
    ) -> None:
        """Write one ingest's rows (inside its transaction)."""
        db = self._db
        created: dict[str, int] = defaultdict(int)
        for draft in drafts:
            values = (
                draft.site,
                draft.session,
                draft.visitor,
                draft.name,
                draft.email,
                draft.identified_id,
                draft.identify_ts,
                _fold(draft.name),
                _fold(draft.email),
                draft.started_at,
                draft.ended_at,
                draft.created_at,
                draft.last_seen_at,
                draft.device,
                draft.browser,
                draft.events,
                draft.bytes,
                int(draft.finalized),
                draft.id,
            )
            if draft.new:
                created[draft.site] += 1
                db.execute(
                    "INSERT INTO recordings (site, session, visitor, name, email, identified_id,"
                    " identify_ts, name_key, email_key, started_at, ended_at, created_at,"
                    " last_seen_at, device, browser, events, bytes, finalized, id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            else:
                db.execute(
                    "UPDATE recordings SET site = ?, session = ?, visitor = ?, name = ?,"
                    " email = ?, identified_id = ?, identify_ts = ?, name_key = ?,"
                    " email_key = ?, started_at = ?, ended_at = ?, created_at = ?,"
                    " last_seen_at = ?, device = ?, browser = ?, events = ?, bytes = ?,"
                    " finalized = ? WHERE id = ?",
                    values,
                )
        db.executemany(
            "INSERT INTO chunks (site, session, page, seq, recording_id, file_offset, length,"
            " raw_length, first_ts, last_ts, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    *chunk.key,
                    chunk.recording_id,
                    chunk.ref.offset,
                    chunk.ref.length,
                    chunk.ref.raw_length,
                    chunk.first_ts,
                    chunk.last_ts,
                    chunk.events,
                )
                for chunk in chunks
            ],
        )
        # A page keeps the earliest place it was seen at, whatever order chunks came in.
        db.executemany(
            "INSERT INTO pages (recording_id, url, url_key, first_ts, position)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (recording_id, url) DO UPDATE"
            " SET first_ts = excluded.first_ts, position = excluded.position"
            " WHERE (excluded.first_ts, excluded.position) < (first_ts, position)",
            [
                (page.recording_id, page.url, page.url.casefold(), page.first_ts, page.position)
                for page in pages
            ],
        )
        db.executemany(
            "INSERT INTO usage (site, month, created) VALUES (?, ?, ?)"
            " ON CONFLICT (site, month) DO UPDATE SET created = created + excluded.created",
            [(site, month, count) for site, count in created.items()],
        )
        db.execute(
            "INSERT INTO batches (id, node, stored_at) VALUES (?, ?, ?)", (batch_id, node, now)
        )

    # -- reading

    def _pages(self, ids: list[str]) -> dict[str, list[str]]:
        pages: dict[str, list[str]] = {i: [] for i in ids}
        if not ids:
            return pages
        marks = ", ".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT recording_id, url FROM pages WHERE recording_id IN ({marks})"
            " ORDER BY recording_id, first_ts, position, rowid",
            ids,
        )
        for recording_id, url in rows:
            pages[recording_id].append(url)
        return pages

    def get(self, recording_id: str) -> Recording | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE id = ?", (recording_id,)
        ).fetchone()
        if row is None:
            return None
        return _recording(row, self._pages([recording_id])[recording_id])

    def find(self, query: RecordingQuery) -> tuple[list[Recording], str | None]:
        where, params = _filters(query, check_query(query))
        sql = f"SELECT {_COLUMNS} FROM recordings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # One row more than asked tells whether there is a next page.
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        params.append(query.limit + 1)
        rows = self._db.execute(sql, params).fetchall()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        pages = self._pages([row["id"] for row in rows])
        found = [_recording(row, pages[row["id"]]) for row in rows]
        last = found[-1] if more else None
        return found, None if last is None else encode_cursor(last.started_at, last.id)

    def chunk_refs(self, recording_id: str) -> list[ChunkRef] | None:
        """The recording's chunks by first event time then arrival; None if no such recording."""
        if self._db.execute("SELECT 1 FROM recordings WHERE id = ?", (recording_id,)).fetchone():
            rows = self._db.execute(
                "SELECT file_offset, length, raw_length FROM chunks WHERE recording_id = ?"
                " ORDER BY first_ts, rowid",
                (recording_id,),
            )
            return [ChunkRef(offset, length, raw) for offset, length, raw in rows]
        return None

    def stored(self, site: str) -> int:
        row = self._db.execute("SELECT count(*) FROM recordings WHERE site = ?", (site,))
        return int(row.fetchone()[0])

    def created_in_month(self, site: str, month: str) -> int:
        row = self._db.execute(
            "SELECT created FROM usage WHERE site = ? AND month = ?", (site, month)
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def recording_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT id FROM recordings")}

    # -- lifecycle

    def finalize(self, last_seen_before: float) -> dict[str, int]:
        """Finalize recordings idle since `last_seen_before` (inclusive); site -> count."""
        counts: dict[str, int] = defaultdict(int)
        self.begin()
        try:
            # RETURNING (SQLite 3.35+) counts exactly the rows changed, via the partial index.
            for (site,) in self._db.execute(
                "UPDATE recordings SET finalized = 1 WHERE finalized = 0 AND last_seen_at <= ?"
                " RETURNING site",
                (last_seen_before,),
            ).fetchall():
                counts[site] += 1
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return dict(counts)

    def delete(
        self,
        where: str,
        params: tuple[object, ...],
        *,
        batches_before: float | None = None,
        erasure: Erasure | None = None,
    ) -> list[tuple[str, str]]:
        """Delete the recordings matching `where` with their chunks and pages (and the
        batch ids and erasure marks from at or before `batches_before`) in one transaction;
        with `erasure`, mark the visitor and the deleted recordings' sessions as erased.

        Returns (id, site) of each recording deleted; their files are the caller's.
        """
        db = self._db
        chosen = f"SELECT id FROM recordings WHERE {where}"
        self.begin()
        try:
            found = db.execute(
                f"SELECT id, site, session FROM recordings WHERE {where}", params
            ).fetchall()
            gone = [(str(row[0]), str(row[1])) for row in found]
            if erasure is not None:
                marks = [("visitor", erasure.site or "", erasure.visitor)]
                marks += [("session", str(row[1]), str(row[2])) for row in found]
                db.executemany(
                    "INSERT OR REPLACE INTO erasures (kind, site, key, erased_at)"
                    " VALUES (?, ?, ?, ?)",
                    [(*mark, erasure.at) for mark in marks],
                )
            db.execute(f"DELETE FROM chunks WHERE recording_id IN ({chosen})", params)
            db.execute(f"DELETE FROM pages WHERE recording_id IN ({chosen})", params)
            db.execute(f"DELETE FROM recordings WHERE {where}", params)
            if batches_before is not None:
                db.execute("DELETE FROM batches WHERE stored_at <= ?", (batches_before,))
                db.execute("DELETE FROM erasures WHERE erased_at <= ?", (batches_before,))
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return gone
